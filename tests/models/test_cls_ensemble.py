"""``cls_ensemble``: the mean of temperature-scaled classifiers, its Grad-CAM, and its model folder."""

import json

import numpy as np
import pytest
import torch

from breastdx.data.transforms import Preprocessing
from breastdx.explain.cam import CamExplainer
from breastdx.inference.classifier import ClassificationPredictor, save_classifier
from breastdx.models.ensemble import MeanProbabilityEnsemble
from breastdx.models.networks import build_network
from breastdx.models.saved import ModelFolderError
from breastdx.pipeline.ensemble import write_ensemble

SMALL = {"widths": [4, 8], "stem_stride": 1, "dropout": 0.0}
CLASSES = ["normal_or_benign", "malignant"]


def _member(path, seed, temperature, split='{"test": []}'):
    torch.manual_seed(seed)
    net, args = build_network("compact_cnn", 1, 2, **SMALL)
    meta = save_classifier(path, net, {
        "task": "breastmnist", "architecture": "compact_cnn", "architecture_args": args, "in_channels": 1,
        "n_parameters": 10, "class_names": CLASSES, "positive_class": "malignant",
        "preprocessing": Preprocessing(image_size=32).to_meta(), "temperature": temperature, "threshold": 0.5,
        "inference": {"tta": "none"}, "gradcam": {"method": "gradcam", "layer": "stages.1"}, "seed": seed,
        "split_file": "split.json", "training": {"best_epoch": 3, "best_monitor_value": 0.8},
        "training_config": {"target_sensitivity": 0.9}})
    (path / "split.json").write_text(split)
    return path, meta


def test_output_is_the_mean_of_the_members_temperature_scaled_probabilities():
    members = [{"architecture": "compact_cnn", "architecture_args": SMALL}] * 3
    torch.manual_seed(0)
    net, args = build_network("cls_ensemble", 1, 2, members=members, temperatures=[0.5, 1.0, 2.0])
    net.eval()
    x = torch.rand(4, 1, 32, 32)
    with torch.no_grad():
        expected = torch.stack([torch.softmax(m(x) / t, 1) for m, t in zip(net.members, (0.5, 1.0, 2.0))]).mean(0)
        got = torch.softmax(net(x), 1)
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-5)
    assert net.gradcam_layer == "members.0.stages.1,members.1.stages.1,members.2.stages.1"
    with pytest.raises(ValueError, match="positive temperature"):
        MeanProbabilityEnsemble(list(net.members), [1.0, 0.0, 1.0])
    from breastdx.models.penultimate import FeatureTap

    with torch.no_grad(), FeatureTap(net) as tap:  # the out-of-distribution tap reads the last member's features
        net(x)
        last = net.members[-1]
        with FeatureTap(last) as own:
            last(x)
    torch.testing.assert_close(tap.features()[:4], own.features())
    with pytest.raises(ValueError, match="not a single classification"):
        build_network("cls_ensemble", 1, 2, members=[{"architecture": "unet", "architecture_args": {}}])


@pytest.mark.parametrize("method", ["gradcam", "gradcampp"])
def test_gradcam_of_the_ensemble_is_the_mean_of_its_members_maps(method):
    members = [{"architecture": "compact_cnn", "architecture_args": SMALL}] * 2
    torch.manual_seed(1)
    net, _ = build_network("cls_ensemble", 1, 2, members=members, temperatures=[0.7, 1.3])
    net.eval()
    x = torch.rand(3, 1, 32, 32)
    both = CamExplainer(net, "cls_ensemble", method=method)
    logits, idx, maps = both.raw_maps(x)
    both.remove()
    singles = []
    for k in range(2):  # each member's map of the same ensemble score, one layer at a time
        one = CamExplainer(net, method=method, layer=f"members.{k}.stages.1")
        singles.append(one.raw_maps(x, class_idx=idx)[2])
        one.remove()
    torch.testing.assert_close(maps, (singles[0] + singles[1]) / 2)
    assert not torch.allclose(singles[0], singles[1])  # the members' maps differ, so the mean is not either one
    torch.testing.assert_close(logits, net(x).detach())


def test_written_folder_predicts_the_mean_and_halves_in_float16(tmp_path):
    dirs, metas = zip(*[_member(tmp_path / f"m{i}", i, t) for i, t in enumerate((0.6, 1.4))])
    meta = write_ensemble(dirs, tmp_path / "ens")
    assert meta["architecture"] == "cls_ensemble" and meta["architecture_args"]["temperatures"] == [0.6, 1.4]
    assert meta["temperature"] == 1.0 and meta["threshold"] is None and meta["ensemble"]["target_sensitivity"] == 0.9
    assert meta["gradcam"]["layer"] == "members.0.stages.1,members.1.stages.1"
    assert (tmp_path / "ens" / "split.json").read_text() == '{"test": []}'
    card = (tmp_path / "ens" / "MODEL_CARD.md").read_text()
    assert "| 1 | " in card and "1.4000" in card

    images = [np.random.default_rng(i).integers(0, 256, (40, 56), dtype=np.uint8) for i in range(3)]
    probs = [ClassificationPredictor.from_dir(d, task="breastmnist", dtype="float32").predict_proba(images)
             for d in dirs]
    ens = ClassificationPredictor.from_dir(tmp_path / "ens", task="breastmnist", dtype="float32", backend="torch")
    got = ens.predict_proba(images)
    np.testing.assert_allclose(got, np.mean(probs, axis=0), atol=1e-6)
    assert (ens.labels_from_proba(got) == got.argmax(1)).all()  # no threshold until calibrate fits one

    half = write_ensemble(dirs, tmp_path / "half", weights_dtype="float16")
    assert half["weights_dtype"] == "float16"
    from safetensors.torch import load_file

    stored = load_file(str(tmp_path / "half" / "model.safetensors"))
    assert {t.dtype for t in stored.values() if t.is_floating_point()} == {torch.float16}
    assert any(t.dtype == torch.int64 for t in stored.values())  # batch-norm counters stay integers
    p16 = ClassificationPredictor.from_dir(tmp_path / "half", task="breastmnist", dtype="float32").predict_proba(images)
    np.testing.assert_allclose(p16, got, atol=2e-3)


def test_classifiers_of_other_splits_or_kinds_are_refused(tmp_path):
    a, _ = _member(tmp_path / "a", 0, 1.0)
    b, _ = _member(tmp_path / "b", 1, 1.0, split='{"test": [1]}')
    with pytest.raises(ModelFolderError, match="split file differs"):
        write_ensemble([a, b], tmp_path / "ens")
    assert not (tmp_path / "ens").exists()
    c, _ = _member(tmp_path / "c", 2, 1.0)
    meta = json.loads((c / "meta.json").read_text())
    meta["positive_class"] = "normal_or_benign"
    (c / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ModelFolderError, match="positive_class"):
        write_ensemble([a, c], tmp_path / "ens")
    with pytest.raises(ValueError, match="weights_dtype"):
        write_ensemble([a, a], tmp_path / "ens", weights_dtype="int8")
    d, _ = _member(tmp_path / "d", 3, 1.0)
    (d / "split.json").unlink()
    for members in ([a, d], [d, d]):  # said before as "differs", or a bare FileNotFoundError when all lacked it
        with pytest.raises(ModelFolderError, match=r"names the split file split.json, which is not in the folder"):
            write_ensemble(members, tmp_path / "ens")
    assert not (tmp_path / "ens").exists()


def test_the_ensemble_card_names_the_data_source_its_members_cards_name(tmp_path):
    """The shipped breastmnist ensemble's card named its data 'BreastMNIST' only, with no paper, DOI, licence or split
    sizes, though every member's card gives them."""
    dirs, _ = zip(*[_member(tmp_path / f"m{i}", i, 1.0) for i in range(2)])
    (dirs[0] / "MODEL_CARD.md").write_text(
        "# Model card\n\n## Data\n- BreastMNIST (Yang et al. 2023, doi:10.1038/s41597-022-01721-8): train 546.\n"
        "- Preprocessing: resize.\n- Data checksum (SHA-256): `abc`\n\n## Evaluation\n- not data\n")
    meta = write_ensemble(dirs, tmp_path / "ens")
    assert meta["data_about"] == ["- BreastMNIST (Yang et al. 2023, doi:10.1038/s41597-022-01721-8): train 546."]
    card = (tmp_path / "ens" / "MODEL_CARD.md").read_text()
    data = card.split("## Data\n")[1].split("\n## ")[0]
    assert data.startswith("- BreastMNIST (Yang et al. 2023, doi:10.1038/s41597-022-01721-8): train 546.\n")
    assert "not data" not in data and data.count("- Preprocessing") == 1  # the ensemble's own, once
