"""``breastdx evaluate busi-cls|breastmnist --external DIR``: a shipped classifier scored on a labelled folder."""

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
from breastdx.data.errors import DataError
from breastdx.data.external import label_indices, parse_label_map, read_external
from breastdx.zoo import shipped_models

runner = CliRunner()
CLASSES = ("normal", "benign", "malignant")


def _png(path: Path, seed: int, size: tuple[int, int] = (37, 45)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, size, dtype=np.uint8)).save(path)


def _evaluate(task: str, folder: Path, out: Path, *extra: str):
    return runner.invoke(app, ["evaluate", task, "--model", str(shipped_models()[task]), "--external", str(folder),
                               "--out", str(out), "--n-bootstrap", "20", *extra])


def _cases(out: Path) -> list[dict[str, str]]:
    with open(out / "cases.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture()
def table_folder(tmp_path) -> Path:
    """labels.csv with an extra column, a mask column, a sub-folder path and one file that is not an image."""
    root = tmp_path / "site"
    rows = []
    for i in range(7):
        label = CLASSES[i % 3]
        _png(root / "img" / f"case{i}.png", i)
        rows.append({"id": f"c{i}", "image": f"img/case{i}.png", "mask": "", "label": label, "birads": "3"})
    (root / "img" / "broken.png").write_bytes(b"not a png at all")
    rows.append({"id": "bad", "image": "img/broken.png", "mask": "", "label": "benign", "birads": ""})
    with open(root / "labels.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["id", "image", "mask", "label", "birads"])
        writer.writeheader()
        writer.writerows(rows)
    return root


def test_labels_csv_folder_is_scored_and_the_bad_file_reported(table_folder, tmp_path):
    out = tmp_path / "eval"
    result = _evaluate("busi-cls", table_folder, out)
    assert result.exit_code == 1, result.output  # a failure listed at the end: exit status 1, the rest scored
    assert "broken.png" in result.output and "could not be used" in result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n"] == 7
    assert metrics["confusion_matrix"]["class_names"] == list(CLASSES)
    assert [u["image"] for u in metrics["external"]["unreadable"]] == [str(table_folder / "img" / "broken.png")]
    for key in ("accuracy", "balanced_accuracy", "auroc", "sensitivity", "specificity"):
        assert key in metrics["metrics"]
    assert (out / "report.html").is_file()
    rows = _cases(out)
    assert [r["id"] for r in rows] == [f"c{i}" for i in range(7)]
    assert rows[0]["image"] == "img/case0.png"
    assert set(rows[0]) == {"id", "image", "label", "p_normal", "p_benign", "p_malignant", "label_predicted",
                            "label_argmax", "seen_in_training"}
    assert {r["seen_in_training"] for r in rows} == {"no"}
    assert metrics["training_overlap"] == {"n": 7, "seen_in_training": 0, "near_duplicates": 0, "note": None}
    for r in rows:
        p = [float(r[f"p_{c}"]) for c in CLASSES]
        assert sum(p) == pytest.approx(1.0, abs=1e-4)
        assert r["label_argmax"] == CLASSES[int(np.argmax(p))] and r["label_predicted"] in CLASSES
    assert not list(out.rglob("*.png")) or all(p.stem.startswith(("roc", "confusion", "reliability"))
                                               for p in out.rglob("*.png"))  # figures only, no patient image



def test_copies_under_other_names_are_named(table_folder, tmp_path):
    import shutil

    shutil.copyfile(table_folder / "img" / "case3.png", table_folder / "img" / "copy_of_3.png")
    shutil.copyfile(table_folder / "img" / "case3.png", table_folder / "img" / "again_3.png")
    with open(table_folder / "labels.csv", "a") as f:
        f.write("c3b,img/copy_of_3.png,,normal,\nc3c,img/again_3.png,,normal,\n")
    out = tmp_path / "eval"
    result = _evaluate("busi-cls", table_folder, out)
    said = " ".join(result.output.split())
    assert "2 image(s) are pixel-for-pixel copies of another case of this folder (c3 = c3b = c3c)" in said
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n"] == 9 and metrics["external"]["identical_images"] == [["c3", "c3b", "c3c"]]

def test_class_subfolders_with_some_classes_only(tmp_path):
    """BUSI's layout: masks beside the images are not images; a set without normal images is scored."""
    root = tmp_path / "busi_like"
    for k, label in enumerate(("benign", "malignant")):
        for i in range(3):
            _png(root / label / f"{label} ({i + 1}).png", 10 * k + i)
            _png(root / label / f"{label} ({i + 1})_mask.png", 99)
    (root / "README.txt").write_text("not a class")
    data = read_external(root)
    assert data.layout == "class folders" and len(data) == 6
    assert all(m is not None and m.name.endswith("_mask.png") for m in data.masks)
    out = tmp_path / "eval"
    result = _evaluate("busi-cls", root, out)
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n"] == 6 and metrics["external"]["label_counts"] == {"benign": 3, "malignant": 3}
    assert "lesions_only" not in metrics  # no normal image: the main figures are already benign vs malignant
    assert math.isfinite(metrics["metrics"]["auroc"]["value"])
    assert sorted(r["image"] for r in _cases(out))[0] == "benign/benign (1).png"


def test_unknown_labels_are_refused_with_their_names(table_folder, tmp_path):
    _png(table_folder / "img" / "extra.png", 9)
    with open(table_folder / "labels.csv", "a", newline="") as f:
        f.write("x,img/extra.png,,carcinoma,5\n")
    result = _evaluate("busi-cls", table_folder, tmp_path / "eval")
    assert result.exit_code != 0
    assert "'carcinoma'" in result.output and "row 10" in result.output and "labels.csv" in result.output
    # breastmnist's classes are normal_or_benign and malignant: nothing is mapped unless declared
    result = _evaluate("breastmnist", table_folder, tmp_path / "bm")
    assert result.exit_code != 0 and "'normal'" in result.output and "'benign'" in result.output


def test_a_declared_label_map_and_its_errors(table_folder, tmp_path):
    data = read_external(table_folder / "labels.csv")
    classes = ("normal_or_benign", "malignant")
    y = label_indices(data, classes, {"normal": "normal_or_benign", "benign": "normal_or_benign"})
    assert y.tolist() == [0, 0, 1, 0, 0, 1, 0, 0]
    with pytest.raises(DataError, match="'benign_ish'"):
        label_indices(data, classes, {"normal": "benign_ish"})
    with pytest.raises(DataError, match="The label map sends 'benign' to 'normal_or_benign' and to 'malignant'"):
        parse_label_map(["normal=normal_or_benign", "Benign=normal_or_benign", "benign=malignant"])
    assert parse_label_map(["Benign=malignant", "benign=malignant"]) == {"benign": "malignant"}  # the same, twice
    out = tmp_path / "bm"
    result = _evaluate("breastmnist", table_folder, out, "--label-map",
                       "normal=normal_or_benign,benign=normal_or_benign")
    assert result.exit_code == 1, result.output  # the broken file
    assert json.loads((out / "metrics.json").read_text())["n"] == 7
    rows = _cases(out)
    assert {r["label"] for r in rows} == {"normal_or_benign", "malignant"}
    # the folder's own label is kept beside the class it was mapped to
    assert {(r["label_given"], r["label"]) for r in rows} == {("normal", "normal_or_benign"),
                                                              ("benign", "normal_or_benign"), ("malignant", "malignant")}


def test_folder_errors_name_the_file(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="neither a labels.csv nor class sub-folders"):
        read_external(tmp_path / "empty")
    table = tmp_path / "t.csv"
    table.write_text("file,diagnosis\na.png,benign\n")
    with pytest.raises(DataError, match="t.csv: no column 'image' or 'label'"):
        read_external(table)
    table.write_text("image,label\na.png,\n")
    with pytest.raises(DataError, match="row 2: empty label"):
        read_external(table)
    # one case in two rows would be scored twice: refused, naming both rows (also through another spelling of the path)
    table.write_text("image,label\na.png,benign\nb.png,benign\n./a.png,malignant\n")
    with pytest.raises(DataError) as e:
        read_external(table)
    assert e.value.problems == ["row 4: image './a.png' is that of row 2; each case is one row"]
    table.write_text("id,image,label\nc1,a.png,benign\nc1,b.png,benign\n")
    with pytest.raises(DataError) as e:
        read_external(table)
    assert e.value.problems == ["row 3: id 'c1' is that of row 2; each case is one row"]



def test_when_no_image_can_be_read_each_is_named_once(tmp_path):
    for name in ("a.png", "b.png"):
        (tmp_path / "site" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "site" / name).write_bytes(b"\x00\x01" * 100)
    (tmp_path / "site" / "labels.csv").write_text("image,label\na.png,benign\nb.png,malignant\n")
    result = _evaluate("breastmnist", tmp_path / "site", tmp_path / "out", "--label-map", "benign=normal_or_benign")
    said = " ".join(result.output.split())
    assert result.exit_code != 0 and "none of the 2 images could be read" in said, said
    a = str(tmp_path / "site" / "a.png")
    assert f"{a}: not an image" in said and f"{a}: {a}" not in said

def test_the_real_breast_lesions_usg_sample(tmp_path):
    env = os.environ.get("BREASTDX_DATA")
    folder = Path(env or "") / "breast_lesions_usg_sample"
    if not env or not (folder / "labels.csv").is_file():
        pytest.skip("real data not available: set BREASTDX_DATA to the data root (e.g. ../shared/data)")
    out = tmp_path / "usg"
    result = _evaluate("busi-cls", folder, out)
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n"] == 56
    assert metrics["external"]["label_counts"] == {"benign": 30, "malignant": 22, "normal": 4}
    assert math.isfinite(metrics["metrics"]["auroc"]["value"])
    assert len(_cases(out)) == 56
    lesions = metrics["lesions_only"]  # benign vs malignant: the 4 normal images left out
    assert lesions["n"] == 52 and math.isfinite(lesions["auroc"]["value"])
    assert metrics["training_overlap"]["seen_in_training"] == 0 and metrics["training_overlap"]["near_duplicates"] == 0


def test_training_images_in_an_external_folder_are_flagged(tmp_path):
    """Two of busi-cls's own training images (first two of its split's train part) in a folder: the figures on them
    are optimistic, and the log, metrics.json, report.html and cases.csv say which."""
    import shutil

    env = os.environ.get("BREASTDX_DATA")
    busi = Path(env or "") / "busi"
    if not env or not busi.is_dir():
        pytest.skip("real data not available: set BREASTDX_DATA to the data root (e.g. ../shared/data)")
    train = json.loads((shipped_models()["busi-cls"] / "split.json").read_text())["train"]
    folder = tmp_path / "site"
    for name in train[:2]:
        (folder / name.split(" (")[0]).mkdir(parents=True, exist_ok=True)
        shutil.copy(busi / name.split(" (")[0] / f"{name}.png", folder / name.split(" (")[0] / f"{name}.png")
    _png(folder / "malignant" / "new.png", 3, size=(120, 160))
    out = tmp_path / "eval"
    result = _evaluate("busi-cls", folder, out)
    assert result.exit_code == 0, result.output
    note = ("Of the 3 images scored, 2 are training images of this model: figures on them are optimistic, as on "
            "training data. An external folder should hold cases from elsewhere (see cases.csv, column "
            "seen_in_training).")
    assert json.loads((out / "metrics.json").read_text())["training_overlap"] == {
        "n": 3, "seen_in_training": 2, "near_duplicates": 0, "note": note}
    assert "WARNING: Of the 3 images scored, 2 are training images" in (out / "report.html").read_text()
    assert "2 are training images of this model" in " ".join(result.output.split())
    assert {r["image"]: r["seen_in_training"] for r in _cases(out)} == {
        f"{n.split(' (')[0]}/{n}.png": "yes" for n in train[:2]} | {"malignant/new.png": "no"}


@pytest.mark.parametrize("extra, said", [
    (["--split", "train"], "--split chooses cases of a split"),
    (["--split-file", "x.json", "--max-cases", "5"], "--split-file and --max-cases choose cases of a split"),
])
def test_options_that_choose_a_split_are_refused_with_external(table_folder, tmp_path, extra, said):
    """--split train was taken without a word and written into config.yaml, though the whole folder was scored."""
    result = _evaluate("busi-cls", table_folder, tmp_path / "eval", *extra)
    assert result.exit_code == 2 and said in " ".join(result.output.split()), result.output
