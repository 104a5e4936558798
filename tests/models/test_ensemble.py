"""The mean-probability segmentation ensemble: the network, and the model folder that write_ensemble makes of members."""

import json

import numpy as np
import pytest
import torch

from breastdx.data.transforms import Preprocessing
from breastdx.inference.base import load_predictor
from breastdx.models.ensemble import MeanProbabilityEnsemble
from breastdx.models.networks import NETWORKS, build_network, check_input_size
from breastdx.models.saved import ModelFolderError, save_weights, write_meta, write_training_hashes
from breastdx.pipeline.ensemble import write_ensemble

SMALL = {"channels": [4, 8, 16], "strides": [2, 2], "num_res_units": 0}


def _member(path, seed, *, image_size=32, keep_largest=False, min_area=0.0, hashes=(), phashes=None):
    torch.manual_seed(seed)
    net, args = build_network("unet", 1, 2, **SMALL)
    path.mkdir(parents=True)
    save_weights(net, path / "model.safetensors")
    write_meta(path, {"task": "busi-seg", "architecture": "unet", "architecture_args": args, "in_channels": 1,
                      "n_parameters": 100, "weights_file": "model.safetensors", "class_names": ["background", "lesion"],
                      "positive_class": "lesion", "preprocessing": Preprocessing(image_size=image_size).to_meta(),
                      "threshold": 0.5, "postprocessing": {"threshold": 0.5, "keep_largest": keep_largest,
                                                           "min_area_fraction": min_area},
                      "inference": {"validated_dtypes": ["bfloat16", "float32"], "tta": "none"},
                      "validation_metrics": {"dice": {"value": 0.7, "ci95": [0.6, 0.8], "n": 10}}})
    if hashes:
        write_training_hashes(path, list(hashes), phashes)
    return path


def test_output_softmax_is_the_mean_of_the_members_probabilities():
    torch.manual_seed(0)
    members = [build_network("unet", 1, 2, **SMALL)[0].eval() for _ in range(3)]
    ens = MeanProbabilityEnsemble(members).eval()
    x = torch.rand(2, 1, 32, 48)
    with torch.no_grad():
        expected = torch.stack([torch.softmax(m(x), 1) for m in members]).mean(0)
        got = torch.softmax(ens(x), 1)
    assert got.shape == (2, 2, 32, 48)
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-5)
    assert not torch.allclose(expected, torch.softmax(members[0](x), 1))  # the members differ


def test_registry_builds_it_from_json_arguments_and_combines_the_size_rules():
    members = [{"architecture": "unet", "architecture_args": SMALL},
               {"architecture": "unet", "architecture_args": {**SMALL, "channels": [4, 8, 16, 32], "strides": [2, 2, 2]}}]
    net, args = build_network("seg_ensemble", 1, 2, members=json.loads(json.dumps(members)))
    assert isinstance(net, MeanProbabilityEnsemble) and len(net.members) == 2
    assert NETWORKS.get("seg_ensemble").kind == "segmentation"
    check_input_size("seg_ensemble", 16, 24, members=members)  # multiples of 8 (the deeper member), at least 16
    with pytest.raises(ValueError, match="multiple of 8"):
        check_input_size("seg_ensemble", 16, 20, members=members)


@pytest.mark.parametrize("members, match", [([], "at least one"), ([{"arch": "unet"}], "architecture"),
                                            ([{"architecture": "resnet18", "architecture_args": {}}],
                                             "not a single segmentation")])
def test_bad_member_lists_are_refused(members, match):
    with pytest.raises(ValueError, match=match):
        build_network("seg_ensemble", 1, 2, members=members)


def test_the_size_rules_of_an_ensemble_without_members_say_so():
    with pytest.raises(ValueError, match="at least one member"):  # was max() of an empty sequence
        check_input_size("seg_ensemble", 16, 16, members=[])


def test_written_folder_predicts_the_mean_of_its_members(tmp_path):
    dirs = [_member(tmp_path / f"m{i}", i, keep_largest=i > 0, min_area=0.01 if i else 0.0, hashes=[f"h{i}", "c"],
                    phashes=[i, 2**63]) for i in range(3)]
    split = tmp_path / "split.json"
    split.write_text('{"test": []}')
    meta = write_ensemble(dirs, tmp_path / "ens", split_file=split)
    assert meta["architecture"] == "seg_ensemble" and meta["n_parameters"] == 300 and meta["metrics"] == {}
    # the members' majority (2 of 3) postprocessing, not the first member's
    assert meta["postprocessing"] == {"threshold": 0.5, "keep_largest": True, "min_area_fraction": 0.01}
    assert (tmp_path / "ens" / "split.json").read_text() == '{"test": []}'
    hashes = json.loads((tmp_path / "ens" / "training_hashes.json").read_text())["hashes"]
    assert hashes == ["c", "h0", "h1", "h2"]
    assert "validation Dice" in (tmp_path / "ens" / "MODEL_CARD.md").read_text()
    assert "by hash and by perceptual hash (`predict` flags copies and near-duplicates within 8 bits)" in " ".join(
        (tmp_path / "ens" / "MODEL_CARD.md").read_text().split())

    image = np.random.default_rng(0).integers(0, 256, (40, 56), dtype=np.uint8)
    probs = [load_predictor(d, task="busi-seg", dtype="float32", backend="torch").predict([image])[0].prob
             for d in dirs]
    ens = load_predictor(tmp_path / "ens", task="busi-seg", dtype="float32", backend="torch")
    out = ens.predict([image])[0]
    np.testing.assert_allclose(out.prob, np.mean(probs, axis=0), atol=1e-6)
    assert ens.training_hashes == {"c", "h0", "h1", "h2"}
    assert sorted(int(h) for h in ens.training_near.hashes) == [0, 1, 2, 2**63]  # the union, as 64-bit ints
    assert ens.training_near.threshold == 8 and ens.training_near.source_crop is None
    onnx = load_predictor(tmp_path / "ens", task="busi-seg", dtype="float32", backend="onnxruntime",
                          onnx_dir=tmp_path / "onnx")
    np.testing.assert_allclose(onnx.predict([image])[0].prob, out.prob, atol=1e-4)


def test_members_that_disagree_or_a_used_folder_are_refused(tmp_path):
    a, b = _member(tmp_path / "a", 0), _member(tmp_path / "b", 1, image_size=48)
    # perceptual hashes are kept only when every member keeps them
    c, d = _member(tmp_path / "c0", 0, hashes=["x"], phashes=[5]), _member(tmp_path / "d0", 1, hashes=["y"])
    write_ensemble([c, d], tmp_path / "cd")
    assert "perceptual" not in json.loads((tmp_path / "cd" / "training_hashes.json").read_text())
    with pytest.raises(ModelFolderError, match="preprocessing"):
        write_ensemble([a, b], tmp_path / "ens")
    with pytest.raises(ModelFolderError, match="at least 2"):
        write_ensemble([a], tmp_path / "ens")
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "keep.txt").write_text("x")
    with pytest.raises(ModelFolderError, match="not an empty folder"):
        write_ensemble([a, _member(tmp_path / "c", 2)], tmp_path / "used")
    assert (tmp_path / "used" / "keep.txt").read_text() == "x"
    write_ensemble([a, tmp_path / "c"], tmp_path / "ens")
    with pytest.raises(ModelFolderError, match="already an ensemble"):
        write_ensemble([a, tmp_path / "ens"], tmp_path / "ens2")
