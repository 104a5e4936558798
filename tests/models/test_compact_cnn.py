"""The compact CNN: registered by name, shapes at odd sizes, rebuilt from its arguments, small, explainable."""

import json

import pytest
import torch

from breastdx.models.compact_cnn import CompactCNN
from breastdx.models.networks import NETWORKS, build_network, count_parameters


def test_registered_and_rebuilt_from_its_resolved_arguments():
    assert "compact_cnn" in NETWORKS
    torch.manual_seed(0)
    net, args = build_network("compact_cnn", 3, 2)
    assert args == {"widths": [32, 64, 128, 256], "stem_stride": 2, "dropout": 0.2}
    again, args2 = build_network("compact_cnn", 3, 2, **json.loads(json.dumps(args)))
    assert args2 == args
    again.load_state_dict(net.state_dict())
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(net.eval()(x), again.eval()(x))


@pytest.mark.parametrize("shape,stride", [((3, 96, 96), 2), ((3, 50, 70), 2), ((1, 33, 34), 1), ((3, 8, 8), 1)])
def test_logits_shape_at_odd_sizes(shape, stride):
    net, _ = build_network("compact_cnn", shape[0], 3, widths=(8, 16, 32, 64), stem_stride=stride)
    with torch.no_grad():
        y = net.eval()(torch.rand(2, *shape))
    assert y.shape == (2, 3)
    assert torch.isfinite(y).all()


def test_default_fits_the_zoo_size_limit_and_is_compact():
    net, _ = build_network("compact_cnn", 3, 2)
    n = count_parameters(net)
    assert n == 1_183_010
    assert n * 4 < 10 * 1024 * 1024  # float32 bytes
    resnet, _ = build_network("resnet18", 3, 2)
    assert n < count_parameters(resnet) / 9


@pytest.mark.parametrize("kwargs,match", [({"widths": ()}, "widths"), ({"widths": (8, 0)}, "widths"),
                                          ({"stem_stride": 3}, "stem_stride"), ({"dropout": 1.0}, "dropout")])
def test_bad_arguments_name_the_argument(kwargs, match):
    with pytest.raises(ValueError, match=match):
        CompactCNN(3, 2, **kwargs)


def test_unknown_argument_lists_the_accepted_ones():
    with pytest.raises(TypeError, match="widths, stem_stride, dropout"):
        build_network("compact_cnn", 3, 2, depth=4)


def test_gradcam_target_layer_and_maps():
    from breastdx.explain.cam import CamExplainer
    from breastdx.explain.gradcam import target_layer

    torch.manual_seed(0)
    net, _ = build_network("compact_cnn", 3, 2, widths=(8, 16, 32))
    assert target_layer(net, "compact_cnn") == "stages.2"
    explainer = CamExplainer(net.eval(), "compact_cnn", method="gradcam")
    logits, idx, maps = explainer(torch.rand(3, 3, 48, 48), class_idx=1, sizes=[(96, 96)] * 3)
    assert logits.shape == (3, 2) and idx.tolist() == [1, 1, 1]
    assert len(maps) == 3 and maps[0].shape == (96, 96)
    assert all(0.0 <= float(m.min()) and float(m.max()) <= 1.0 for m in maps)


def test_safetensors_round_trip_gives_identical_logits(tmp_path):
    from breastdx.inference.predictor import load_weights, save_weights

    torch.manual_seed(1)
    net, args = build_network("compact_cnn", 3, 2)
    save_weights(net, tmp_path / "model.safetensors")
    again, _ = build_network("compact_cnn", 3, 2, **args)
    load_weights(again, tmp_path / "model.safetensors")
    x = torch.rand(4, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(net.eval()(x), again.eval()(x), rtol=0, atol=0)
