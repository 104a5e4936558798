"""DeepLabV3+ and FCN-8s on a MONAI ResNet encoder: any input size in, logits at that size out; size facts in the
registry; output strides; a training step; rebuilt from meta.json's arguments and safetensors weights."""

import json

import pytest
import torch

from breastdx.models.networks import NETWORKS, build_network, check_input_size, count_parameters
from breastdx.models.resnet_segmentation import ResNetEncoder
from breastdx.models.saved import load_weights, save_weights

# narrow networks keep these tests to seconds; the defaults are built once each below
SMALL = {"deeplabv3plus": {"width": 8, "aspp_channels": 8, "low_level_channels": 8, "decoder_channels": 8},
         "fcn": {"width": 8, "head_channels": 16}}
NAMES = tuple(SMALL)


@pytest.mark.parametrize("name", NAMES)
def test_registered_as_segmentation_networks_of_any_size(name):
    entry = NETWORKS.get(name)
    assert entry.kind == "segmentation" and entry.gradcam_layer is None
    args = build_network(name, 1, 2)[1]
    assert entry.resolve("min_size", args) == 1 and entry.resolve("size_multiple", args) == 1
    check_input_size(name, 1, 1)
    check_input_size(name, 33, 47)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("in_channels", [1, 3])
@pytest.mark.parametrize("size", [(1, 1), (5, 7), (33, 47), (64, 64), (48, 80), (100, 36)])
def test_logits_have_the_input_size(name, in_channels, size):
    """The declared facts are true: min_size 1 and size_multiple 1 (odd sizes, sides not multiples of 32)."""
    torch.manual_seed(0)
    net, _ = build_network(name, in_channels, 2, **SMALL[name])
    with torch.no_grad():
        y = net.eval()(torch.rand(2, in_channels, *size))
    assert y.shape == (2, 2, *size) and y.dtype == torch.float32 and torch.isfinite(y).all()


@pytest.mark.parametrize("name, n_params", [("deeplabv3plus", 3_534_786), ("fcn", 3_453_030)])
def test_default_networks_are_a_few_million_parameters(name, n_params):
    net, args = build_network(name, 1, 2)
    assert count_parameters(net) == n_params
    with torch.no_grad():
        assert net.eval()(torch.rand(1, 1, 64, 64)).shape == (1, 2, 64, 64)
    json.dumps(args)  # storable in meta.json


@pytest.mark.parametrize("output_stride, strides", [(32, (4, 8, 16, 32)), (16, (4, 8, 16, 16)), (8, (4, 8, 8, 8))])
def test_encoder_output_stride_dilates_instead_of_striding(output_stride, strides):
    enc = ResNetEncoder(1, "resnet18", width=4, output_stride=output_stride).eval()
    with torch.no_grad():
        maps = enc(torch.rand(1, 1, 64, 96))
    assert [tuple(m.shape[-2:]) for m in maps] == [(64 // s, 96 // s) for s in strides]
    assert [m.shape[1] for m in maps] == [4, 8, 16, 32] == list(enc.channels)
    dilations = {m.dilation for m in enc.resnet.layer4.modules() if isinstance(m, torch.nn.Conv2d)}
    assert dilations == {32: {(1, 1)}, 16: {(1, 1), (2, 2)}, 8: {(2, 2), (4, 4), (1, 1)}}[output_stride]


def test_bottleneck_encoder_channels():
    enc = ResNetEncoder(3, "resnet50", width=2, output_stride=32)
    assert enc.channels == (8, 16, 32, 64)


def test_deeplab_output_stride_8_keeps_the_output_size():
    net, args = build_network("deeplabv3plus", 1, 3, output_stride=8, **SMALL["deeplabv3plus"])
    assert args["output_stride"] == 8
    with torch.no_grad():
        assert net.eval()(torch.rand(1, 1, 40, 56)).shape == (1, 3, 40, 56)


def test_fcn_skips_start_at_zero():
    """FCN-8s as in Long et al.: the untrained network is FCN-32s, the stride-16 and stride-8 scores add nothing."""
    net, _ = build_network("fcn", 1, 2, **SMALL["fcn"])
    for layer in (net.score16, net.score8):
        assert not layer.weight.any() and not layer.bias.any()
    assert net.score32.weight.abs().sum() > 0


@pytest.mark.parametrize("name", NAMES)
def test_training_step_reaches_every_parameter(name):
    torch.manual_seed(0)
    net, _ = build_network(name, 1, 2, **SMALL[name])
    net.train()
    x, target = torch.rand(2, 1, 48, 48), torch.randint(0, 2, (2, 48, 48))
    before = {n: p.detach().clone() for n, p in net.named_parameters()}
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    loss = torch.nn.functional.cross_entropy(net(x), target)
    assert torch.isfinite(loss)
    loss.backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing
    assert all(p.grad.abs().sum() > 0 for n, p in net.named_parameters() if "score" in n)  # zero-initialised too
    opt.step()
    # nearly every tensor moves (not SimpleASPP's branch biases: the batch norm after the fusion cancels them)
    assert sum(not torch.equal(p, before[n]) for n, p in net.named_parameters()) > 0.9 * len(before)


@pytest.mark.parametrize("name", NAMES)
def test_bfloat16_autocast_gives_bfloat16_logits_of_the_input_size(name):
    net, _ = build_network(name, 1, 2, **SMALL[name])
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        y = net.eval()(torch.rand(1, 1, 33, 40))
    assert y.shape == (1, 2, 33, 40) and y.dtype == torch.bfloat16


@pytest.mark.parametrize("name", NAMES)
def test_rebuilt_from_its_arguments_and_safetensors_weights(name, tmp_path):
    torch.manual_seed(0)
    net, args = build_network(name, 1, 2, **SMALL[name])
    net.train()
    with torch.no_grad():  # move the batch-norm statistics away from their initial values
        net(torch.rand(4, 1, 64, 64))
    path = save_weights(net.eval(), tmp_path / "model.safetensors")
    again, args2 = build_network(name, 1, 2, **json.loads(json.dumps(args)))  # as meta.json keeps them
    assert args2 == args
    load_weights(again, path)
    x = torch.rand(2, 1, 64, 48)
    with torch.no_grad():
        torch.testing.assert_close(again.eval()(x), net(x), rtol=0, atol=0)


@pytest.mark.parametrize("name, kwargs, message", [
    ("deeplabv3plus", {"output_stride": 32}, "output_stride must be 8 or 16, got 32"),
    ("deeplabv3plus", {"aspp_dilations": [1, 2, 3]}, "aspp_dilations must be four numbers"),
    ("deeplabv3plus", {"backbone": "resnet19"}, "backbone must be one of resnet10, resnet18, resnet34, resnet50"),
    ("fcn", {"width": 0}, "width must be at least 1, got 0"),
    ("fcn", {"head_channels": 0}, "head_channels must be at least 1, got 0"),
])
def test_bad_arguments_say_what_was_expected(name, kwargs, message):
    with pytest.raises(ValueError, match=message):
        build_network(name, 1, 2, **kwargs)
