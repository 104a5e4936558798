"""``breastdx evaluate busi-seg --external DIR``: the shipped segmenter scored on a labelled folder from elsewhere."""

import csv
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from breastdx.cli import app
from breastdx.data.external import read_external, read_lesion_mask
from breastdx.data.images import ImageReadError
from breastdx.zoo import shipped_models

runner = CliRunner()
H, W = 48, 64


def _grey(path: Path, seed: int, size: tuple[int, int] = (H, W)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, size, dtype=np.uint8)).save(path)


def _rgb_mask(path: Path, boxes: list[tuple[slice, slice, tuple[int, int, int]]], size: tuple[int, int] = (H, W)):
    path.parent.mkdir(parents=True, exist_ok=True)
    a = np.zeros((*size, 3), dtype=np.uint8)
    for rows, cols, colour in boxes:
        a[rows, cols] = colour
    Image.fromarray(a, mode="RGB").save(path)


def _evaluate(folder: Path, out: Path, *extra: str):
    return runner.invoke(app, ["evaluate", "busi-seg", "--model", str(shipped_models()["busi-seg"]), "--external",
                               str(folder), "--out", str(out), "--n-bootstrap", "20", *extra])


def _cases(out: Path) -> list[dict[str, str]]:
    with open(out / "cases.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_mask_reader_any_channel_above_127(tmp_path):
    red = tmp_path / "red.png"  # lesion: R = 200 only (10 x 12 = 120 px); R = 127 or a dim green is not lesion
    _rgb_mask(red, [(slice(5, 15), slice(10, 22), (200, 0, 0)), (slice(30, 35), slice(0, 5), (127, 0, 0)),
                    (slice(40, 44), slice(40, 44), (0, 100, 0))])
    grey = tmp_path / "grey.png"  # 8-bit grey: 128 is lesion (4 x 5 = 20 px), 127 is not
    a = np.zeros((H, W), dtype=np.uint8)
    a[20:24, 30:35] = 128
    a[0:3, 0:3] = 127
    Image.fromarray(a).save(grey)
    onebit = tmp_path / "onebit.png"  # 1-bit: 3 x 3 = 9 px, overlapping the red lesion on 2 x 2 = 4 px
    b = np.zeros((H, W), dtype=bool)
    b[13:16, 20:23] = True
    Image.fromarray(b).save(onebit)
    assert int(read_lesion_mask([red], (H, W)).sum()) == 120
    assert int(read_lesion_mask([grey], (H, W)).sum()) == 20
    assert int(read_lesion_mask([onebit], (H, W)).sum()) == 9
    assert int(read_lesion_mask([red, grey, onebit], (H, W)).sum()) == 120 + 20 + 9 - 4  # the union
    assert not read_lesion_mask([], (H, W)).any()
    with pytest.raises(ImageReadError, match="size of its image"):
        read_lesion_mask([red], (H + 1, W))


def test_busi_layout_masks_are_all_found(tmp_path):
    _grey(tmp_path / "benign" / "benign (1).png", 0)
    _rgb_mask(tmp_path / "benign" / "benign (1)_mask.png", [(slice(0, 4), slice(0, 4), (255, 255, 255))])
    _rgb_mask(tmp_path / "benign" / "benign (1)_mask_1.png", [(slice(10, 12), slice(10, 15), (255, 255, 255))])
    _grey(tmp_path / "normal" / "normal (1).png", 1)
    data = read_external(tmp_path)
    assert data.labels == ("benign", "normal")
    files = data.mask_files(0)
    assert [f.name for f in files] == ["benign (1)_mask.png", "benign (1)_mask_1.png"]
    assert int(read_lesion_mask(files, (H, W)).sum()) == 16 + 10
    assert data.mask_files(1) == () and data.spacing(0) is None


@pytest.fixture()
def site(tmp_path) -> Path:
    """labels.csv: lesions with red and green masks, normals with a black mask or none, two broken cases."""
    root = tmp_path / "site"
    rows = []
    for i in range(6):
        label = ("benign", "malignant", "normal")[i % 3]
        _grey(root / "images" / f"c{i}.png", i)
        mask = ""
        if label != "normal" or i == 2:
            colour = {"benign": (0, 255, 0), "malignant": (255, 0, 0), "normal": (0, 0, 0)}[label]
            _rgb_mask(root / "masks" / f"c{i}.png", [(slice(10, 30), slice(20, 44), colour)])
            mask = f"masks/c{i}.png"
        rows.append({"id": f"c{i}", "image": f"images/c{i}.png", "mask": mask, "label": label,
                     "pixel_size_mm": "0.1"})
    _grey(root / "images" / "wrong_size.png", 9)
    _rgb_mask(root / "masks" / "wrong_size.png", [(slice(0, 5), slice(0, 5), (255, 0, 0))], size=(H + 2, W))
    rows.append({"id": "bad", "image": "images/wrong_size.png", "mask": "masks/wrong_size.png", "label": "benign",
                 "pixel_size_mm": "0.1"})
    _grey(root / "images" / "no_mask.png", 10)
    rows.append({"id": "nomask", "image": "images/no_mask.png", "mask": "", "label": "malignant",
                 "pixel_size_mm": "0.1"})
    columns = ("id", "image", "mask", "label", "pixel_size_mm")
    lines = [",".join(columns), *(",".join(r[c] for c in columns) for r in rows)]
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    return root


def test_labels_csv_folder_is_scored_and_bad_cases_reported(site, tmp_path):
    out = tmp_path / "eval"
    result = _evaluate(site, out)
    assert result.exit_code == 1, result.output  # cases left out are listed: exit status 1, the rest scored
    assert "wrong_size.png" in result.output and "no_mask.png" in result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n"] == 6
    assert metrics["external"]["n_lesion"] == 4 and metrics["external"]["n_normal"] == 2
    left_out = {Path(d["image"]).name: d["reason"] for d in metrics["external"]["left_out"]}
    assert set(left_out) == {"wrong_size.png", "no_mask.png"}
    assert "size of its image" in left_out["wrong_size.png"] and "no mask" in left_out["no_mask.png"]
    m = metrics["metrics"]
    assert m["dice"]["n"] == 4 and 0 <= m["dice"]["value"] <= 1 and m["normal_fp_share"]["n"] == 2
    assert m["hd95_mm"]["value"] == pytest.approx(m["hd95"]["value"] * 0.1)
    rows = _cases(out)
    assert [r["id"] for r in rows] == [f"c{i}" for i in range(6)]
    assert {r["true_area_px"] for r in rows if r["label"] != "normal"} == {str(20 * 24)}  # red and green alike
    assert {r["true_area_px"] for r in rows if r["label"] == "normal"} == {"0"}
    assert rows[0]["image"] == "images/c0.png" and float(rows[0]["hd95_mm"]) == pytest.approx(
        float(rows[0]["hd95_px"]) * 0.1, abs=1e-3)
    assert (out / "report.html").is_file()
    assert not list(out.rglob("case_*.png")) and not (out / "overlays").exists()  # no patient image written



def test_a_copy_of_an_image_under_another_name_is_said(site, tmp_path):
    """A copy (not a link) is scored as one more case; the run names it, so the intervals are not read as those
    of independent cases."""
    import shutil

    shutil.copyfile(site / "images" / "c1.png", site / "images" / "again.png")
    with open(site / "labels.csv", "a") as f:
        f.write("c1-again,images/again.png,masks/c1.png,malignant,0.1\n")
    out = tmp_path / "eval"
    result = _evaluate(site, out)
    said = " ".join(result.output.split())
    assert "1 image(s) are pixel-for-pixel copies of another case of this folder (c1 = c1-again)" in said
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n"] == 7 and metrics["external"]["identical_images"] == [["c1", "c1-again"]]

def test_a_normal_image_with_a_lesion_mask_is_left_out(tmp_path):
    root = tmp_path / "site"
    _grey(root / "a.png", 0)
    _grey(root / "b.png", 1)
    _rgb_mask(root / "a_mask.png", [(slice(0, 5), slice(0, 5), (255, 0, 0))])
    (root / "labels.csv").write_text("image,label,mask\na.png,normal,a_mask.png\nb.png,benign,a_mask.png\n")
    out = tmp_path / "eval"
    result = _evaluate(root, out)
    assert result.exit_code == 1, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n"] == 1 and "normal" in metrics["external"]["left_out"][0]["reason"]


UCLM = Path(os.environ.get("BREASTDX_DATA") or "/nonexistent") / "bus_uclm_sample"


@pytest.mark.skipif(not (UCLM / "labels.csv").is_file(), reason="real data: set BREASTDX_DATA (../shared/data)")
def test_the_real_bus_uclm_sample(tmp_path):
    """15 images of a second site (BUS-UCLM), masks colour-coded: benign green, malignant red, normal black."""
    result = _evaluate(UCLM, tmp_path / "uclm")
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "uclm" / "metrics.json").read_text())
    assert metrics["n"] == 15 and metrics["external"]["left_out"] == []
    assert metrics["metrics"]["dice"]["n"] == 10 and math.isfinite(metrics["metrics"]["dice"]["value"])
    rows = _cases(tmp_path / "uclm")
    assert len(rows) == 15
    assert all(int(r["true_area_px"]) > 0 for r in rows if r["label"] != "normal")  # green and red masks read
    assert all(r["true_area_px"] == "0" for r in rows if r["label"] == "normal")
    # another site: none of its images is a training image of the shipped busi-seg
    assert metrics["training_overlap"] == {"n": 15, "seen_in_training": 0, "near_duplicates": 0, "note": None}
    assert {r["seen_in_training"] for r in rows} == {"no"}


def test_lesion_labels_with_an_empty_mask_or_in_capitals(tmp_path):
    """A lesion label whose mask is empty scored Dice 1 against an empty prediction (BUS-UCLM's black masks labelled
    benign); 'Normal' in capitals counted as a lesion class. Both are read as meant now."""
    root = tmp_path / "site"
    for name in ("a", "b", "c"):
        _grey(root / f"{name}.png", ord(name))
    _rgb_mask(root / "a_mask.png", [(slice(10, 30), slice(20, 44), (255, 0, 0))])
    _rgb_mask(root / "b_mask.png", [])  # all black
    (root / "labels.csv").write_text("image,label,mask\na.png,Malignant,a_mask.png\nb.png,Benign,b_mask.png\n"
                                     "c.png,Normal,\n")
    out = tmp_path / "eval"
    result = _evaluate(root, out)
    assert result.exit_code == 1, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    (left,) = metrics["external"]["left_out"]
    assert left["image"].endswith("b.png") and "the mask of a 'benign' image (row 3) is empty" in left["reason"]
    assert metrics["n"] == 2 and metrics["external"]["n_normal"] == 1 and metrics["external"]["n_lesion"] == 1
    assert "dice_malignant" in metrics["metrics"] and "dice_Malignant" not in metrics["metrics"]


def test_class_folders_pair_masks_of_another_extension_and_refuse_one_file_twice(tmp_path):
    root = tmp_path / "cf"
    (root / "Malignant").mkdir(parents=True)
    Image.fromarray(np.full((H, W), 90, np.uint8)).save(root / "Malignant" / "c1.jpg")
    _rgb_mask(root / "Malignant" / "c1_mask.png", [(slice(0, 4), slice(0, 4), (255, 255, 255))])
    _grey(root / "stray.png", 3)  # beside the class folders: no label, not scored (a warning says so)
    data = read_external(root)
    assert data.labels == ("malignant",) and [f.name for f in data.mask_files(0)] == ["c1_mask.png"]
    (root / "benign").mkdir()
    (root / "benign" / "c1.jpg").symlink_to(root / "Malignant" / "c1.jpg")
    from breastdx.data.errors import DataError

    with pytest.raises(DataError, match="1 image\\(s\\) appear more than once") as info:
        read_external(root)
    assert info.value.problems == ["benign/c1.jpg is Malignant/c1.jpg again"] or \
        info.value.problems == ["Malignant/c1.jpg is benign/c1.jpg again"]
