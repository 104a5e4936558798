"""``evaluate`` says when the cases it scores hold the model's training images (its ``training_hashes.json``):
a split file other than the model's own, its train part, or an official split with near-duplicates."""

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from breastdx.cli import app
from breastdx.inference.base import (OWN_SPLIT_ADVICE, SPLIT_FILE_ADVICE, TRAIN_PART_ADVICE, overlap_summary,
                                     training_overlap)
from breastdx.zoo import shipped_models

runner = CliRunner()


def test_overlap_summary_counts_and_words():
    assert overlap_summary(["no", "no"]) == {"n": 2, "seen_in_training": 0, "near_duplicates": 0, "note": None,
                                            "per_image": ["no", "no"]}
    one = overlap_summary(["yes", "no", "near-duplicate"], "Advice.")
    assert one["note"] == ("Of the 3 images scored, 1 is a training image of this model and 1 is a near-duplicate "
                           "of one (another frame, a re-saved or re-cropped copy): figures on them are optimistic, "
                           "as on training data. Advice.")
    many = overlap_summary(["near-duplicate"] * 2)
    assert many["note"].startswith("Of the 2 images scored, 2 are near-duplicates of one")
    assert (many["seen_in_training"], many["near_duplicates"]) == (0, 2)


def test_a_model_without_training_hashes_is_not_checked():
    class NoHashes:
        training_hashes = frozenset()

    assert training_overlap(NoHashes(), []) is None


def _data_root(name: str) -> Path:
    env = os.environ.get("BREASTDX_DATA")
    if not env or not (Path(env) / name).is_dir():
        pytest.skip("real data not available: set BREASTDX_DATA to the data root (e.g. ../shared/data)")
    return Path(env)


def _evaluate(task: str, out: Path, *extra: str):
    return runner.invoke(app, ["evaluate", task, "--out", str(out), "--n-bootstrap", "20", *extra])


def _swapped_split(task: str, path: Path, n: int) -> Path:
    """The shipped model's split file with ``n`` of its training cases as the test part, so that no patient or
    near-duplicate group straddles two parts: IDC's first ``n`` (its test cases become the train part, the other
    training cases are excluded), BUSI's first ``n`` outside any group (every BUSI case must be in a part)."""
    split = json.loads((shipped_models()[task] / "split.json").read_text())
    if split["dataset"] == "busi":
        grouped = {c for g in split["groups"] for c in g}
        moved = [c for c in split["train"] if c not in grouped][:n]
        split["test"], split["train"] = moved, [c for c in split["train"] if c not in moved] + split["test"]
    else:  # every item must be in a part or excluded (check_patch_split): the other training cases are excluded
        split["excluded"] += [{"name": c, "reason": "left out by this test"} for c in split["train"][n:]]
        split["test"], split["train"] = split["train"][:n], split["test"]
    path.write_text(json.dumps(split))
    return path


def test_idc_its_own_test_part_another_split_file_and_its_train_part(tmp_path):
    root = _data_root("idc")
    own = _evaluate("idc", tmp_path / "own", "--data-dir", str(root), "--max-cases", "40",
                    "--localisation", "false")
    assert own.exit_code == 0, own.output
    assert json.loads((tmp_path / "own/metrics.json").read_text())["training_overlap"]["seen_in_training"] == 0
    swapped = _swapped_split("idc", tmp_path / "swapped.json", 30)
    result = _evaluate("idc", tmp_path / "swap", "--data-dir", str(root), "--split-file", str(swapped),
                       "--localisation", "false")
    assert result.exit_code == 0, result.output
    overlap = json.loads((tmp_path / "swap/metrics.json").read_text())["training_overlap"]
    assert (overlap["n"], overlap["seen_in_training"]) == (30, 30)
    assert overlap["note"].endswith(SPLIT_FILE_ADVICE)
    assert "WARNING: Of the 30 images scored, 30 are training images" in " ".join(result.output.split())
    assert "WARNING: Of the 30 images scored" in (tmp_path / "swap/report.html").read_text()
    train = _evaluate("idc", tmp_path / "train", "--data-dir", str(root), "--split", "train", "--max-cases", "20",
                      "--localisation", "false")
    assert train.exit_code == 0, train.output
    overlap = json.loads((tmp_path / "train/metrics.json").read_text())["training_overlap"]
    assert overlap["seen_in_training"] == 20 and overlap["note"].endswith(TRAIN_PART_ADVICE)


def test_breastmnist_official_test_split_holds_near_duplicates_of_training_images(tmp_path):
    """MedMNIST's random split: 1 test image is a training image and 58 are near-duplicates (other frames of
    training lesions), as the model card says; evaluate says so on every run."""
    root = _data_root("breastmnist")
    result = _evaluate("breastmnist", tmp_path / "bm", "--data-dir", str(root))
    assert result.exit_code == 0, result.output
    overlap = json.loads((tmp_path / "bm/metrics.json").read_text())["training_overlap"]
    assert (overlap["n"], overlap["seen_in_training"], overlap["near_duplicates"]) == (156, 1, 58)
    assert overlap["note"].endswith(OWN_SPLIT_ADVICE)


def test_busi_seg_with_another_split_file(tmp_path):
    root = _data_root("busi")
    swapped = _swapped_split("busi-seg", tmp_path / "swapped.json", 3)
    result = _evaluate("busi-seg", tmp_path / "swap", "--data-dir", str(root), "--split-file", str(swapped))
    assert result.exit_code == 0, result.output
    overlap = json.loads((tmp_path / "swap/metrics.json").read_text())["training_overlap"]
    assert (overlap["n"], overlap["seen_in_training"]) == (3, 3) and overlap["note"].endswith(SPLIT_FILE_ADVICE)
    assert set(overlap) == {"n", "seen_in_training", "near_duplicates", "note"}  # per image: not in metrics.json
    assert "WARNING: Of the 3 images scored, 3 are training images" in (tmp_path / "swap/report.html").read_text()


def test_calibrate_on_training_images_is_said(tmp_path):
    """Temperature, threshold and conformal sets fitted on training images cover too little: calibrate says so."""
    from breastdx.pipeline.calibrate import CALIBRATE_ADVICE

    root = _data_root("idc")
    split = json.loads((shipped_models()["idc"] / "split.json").read_text())
    split["excluded"] += [{"name": c, "reason": "left out by this test"} for c in split["train"][30:]]
    split["val"], split["train"] = split["train"][:30], split["val"]
    path = tmp_path / "val_of_training.json"
    path.write_text(json.dumps(split))
    result = runner.invoke(app, ["calibrate", "idc", "--data-dir", str(root), "--split-file", str(path), "--out",
                                 str(tmp_path / "cal")])
    assert result.exit_code == 0, result.output
    overlap = json.loads((tmp_path / "cal" / "training_overlap.json").read_text())
    assert (overlap["n"], overlap["seen_in_training"]) == (30, 30) and overlap["note"].endswith(CALIBRATE_ADVICE)
    assert "30 are training images of this model" in " ".join(result.output.split())
