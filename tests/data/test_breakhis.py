"""BreakHis: the file-name convention (the 12 real sample names, and errors for names off it), the folder reader
(real fixture and synthetic trees) and the patient-level split."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from breastdx.data.breakhis import (
    CLASS_NAMES,
    SUBTYPES,
    BreakHisName,
    BreakHisNameError,
    load_breakhis,
    parse_breakhis_name,
    read_breakhis_folder,
)
from breastdx.data.errors import DataError
from breastdx.data.patch_split import make_patch_split

# (file name, class, subtype, year, patient, magnification, number): the 12 files of breakhis_samples/
SAMPLES = [
    ("SOB_B_A-14-22549AB-40-001.png", "benign", "A", "14", "22549AB", 40, 1),
    ("SOB_B_F-14-25197-100-001.png", "benign", "F", "14", "25197", 100, 1),
    ("SOB_B_F-14-25197-200-032.png", "benign", "F", "14", "25197", 200, 32),
    ("SOB_B_F-14-25197-40-023.png", "benign", "F", "14", "25197", 40, 23),
    ("SOB_B_F-14-25197-400-033.png", "benign", "F", "14", "25197", 400, 33),
    ("SOB_B_F-14-9133-40-001.png", "benign", "F", "14", "9133", 40, 1),
    ("SOB_B_PT-14-21998AB-40-001.png", "benign", "PT", "14", "21998AB", 40, 1),
    ("SOB_B_TA-14-3411F-40-001.png", "benign", "TA", "14", "3411F", 40, 1),
    ("SOB_M_DC-14-2523-40-010.png", "malignant", "DC", "14", "2523", 40, 10),
    ("SOB_M_LC-14-12204-40-001.png", "malignant", "LC", "14", "12204", 40, 1),
    ("SOB_M_MC-14-10147-40-001.png", "malignant", "MC", "14", "10147", 40, 1),
    ("SOB_M_PC-14-9146-40-001.png", "malignant", "PC", "14", "9146", 40, 1),
]


@pytest.fixture(scope="module")
def samples() -> Path:
    env = os.environ.get("BREASTDX_DATA")
    if not env:
        pytest.skip("real data not available: set BREASTDX_DATA to the data root (e.g. ../shared/data)")
    p = Path(env) / "breakhis_samples"
    if not p.is_dir():
        pytest.skip(f"real data not available: {p} does not exist")
    return p


@pytest.mark.parametrize("name, cls, subtype, year, patient, mag, number", SAMPLES)
def test_parse_sample_names(name, cls, subtype, year, patient, mag, number):
    r = parse_breakhis_name(Path("some/folder") / name)
    assert r == BreakHisName(name, cls, subtype, year, patient, mag, number)
    assert r.label == CLASS_NAMES.index(cls)
    assert r.patient_id == re.match(r"\d+", patient).group(0)  # slides AB and CD of one biopsy: one patient
    assert r.subtype_name == SUBTYPES[subtype][1]


def test_subtype_table():
    benign = [c for c, (k, _) in SUBTYPES.items() if k == "benign"]
    malignant = [c for c, (k, _) in SUBTYPES.items() if k == "malignant"]
    assert benign == ["A", "F", "PT", "TA"] and malignant == ["DC", "LC", "MC", "PC"]
    assert SUBTYPES["PT"][1] == "phyllodes tumour"


@pytest.mark.parametrize("name, reason", [
    ("SOB_B_A-14-22549AB-40-001.jpg", r"suffix '.jpg' is not .png"),
    ("SOB_B_A_14-22549AB-40-001.png", r"'A_14-22549AB-40-001' has 4 parts"),
    ("CNB_B_A-14-22549AB-40-001.png", r"procedure 'CNB' is not 'SOB'"),
    ("SOB_X_A-14-22549AB-40-001.png", r"class 'X' is not B \(benign\) or M \(malignant\)"),
    ("SOB_B_ZZ-14-22549AB-40-001.png", r"unknown subtype 'ZZ'"),
    ("SOB_B_DC-14-22549AB-40-001.png", r"subtype DC \(ductal carcinoma\) is malignant but the class code says B"),
    ("SOB_M_F-14-22549AB-40-001.png", r"subtype F \(fibroadenoma\) is benign but the class code says M"),
    ("SOB_B_A-2014-22549AB-40-001.png", r"year '2014' is not two digits"),
    ("SOB_B_A-14-22549AB-50-001.png", r"magnification '50' is not one of 40, 100, 200, 400"),
    ("SOB_B_A-14-22549AB-40X-001.png", r"magnification '40X'"),
    ("SOB_B_A-14-22549AB-40-00a.png", r"image number '00a' is not digits"),
    ("SOB_B_A-14-22549AB-40.png", r"has 4 parts separated by '-', expected 5"),
    ("benign (1).png", r"expected three parts separated by '_'"),
])
def test_bad_names_are_refused_with_the_reason(name, reason):
    with pytest.raises(BreakHisNameError, match=reason) as info:
        parse_breakhis_name(Path("d") / name)
    msg = str(info.value)
    assert msg.startswith(f"d/{name}: not a BreakHis file name")
    assert "expected SOB_<B|M>_<subtype>-<year>-<patient>-<magnification>-<n>.png" in msg
    assert isinstance(info.value, DataError)


# ----------------------------------------------------------------------------------------------------
# Folder reader


def test_real_samples(samples):
    src = load_breakhis(samples)
    assert len(src) == 12 and src.name == "breakhis"
    assert src.class_counts() == {"benign": 8, "malignant": 4}
    assert sorted(Path(i).name for i in src.ids) == sorted(s[0] for s in SAMPLES)
    assert len(set(src.groups)) == len({re.match(r"\d+", s[4]).group(0) for s in SAMPLES})
    assert sorted(set(src.metadata["subtype"])) == sorted(SUBTYPES)
    k = [Path(i).name for i in src.ids].index("SOB_B_F-14-25197-200-032.png")
    assert src.groups[k] == "25197" and src.metadata["magnification"][k] == 200
    image, label = src.get(k)
    assert image.shape == (460, 700, 3) and image.dtype == np.uint8 and label == 0
    at40 = read_breakhis_folder(samples, magnification=40)
    assert len(at40) == 9 and set(at40.metadata["magnification"]) == {40}


def _tree(root: Path, names: list[str], under=lambda n: "") -> Path:
    rng = np.random.default_rng(0)
    for name in names:
        d = root / under(name)
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (23, 37, 3), dtype=np.uint8)).save(d / name)
    return root


def _release_path(name: str) -> str:
    """The release's layout: .../<benign|malignant>/SOB/<subtype folder>/<SOB_B_A_14-22549AB>/<40X>/<file>."""
    r = parse_breakhis_name(name)
    return f"{r.tumour_class}/SOB/{r.subtype_name.replace(' ', '_')}/SOB_{name[4]}_{r.subtype}_{r.year}-{r.patient}/{r.magnification}X"


def test_release_layout_is_read_recursively(tmp_path):
    root = _tree(tmp_path / "BreaKHis_v1", [s[0] for s in SAMPLES], under=_release_path)
    (root / "README.txt").write_text("not an image")  # ignored
    (root / "benign" / ".hidden").mkdir()
    src = load_breakhis(tmp_path)
    assert len(src) == 12
    assert src.ids[0].startswith("benign/SOB/adenosis/SOB_B_A_14-22549AB/40X/")


def test_folder_disagreements_and_bad_names_are_all_listed(tmp_path):
    names = ["SOB_B_A-14-22549AB-40-001.png", "SOB_M_DC-14-2523-40-010.png"]
    root = _tree(tmp_path, names, under=lambda n: "benign/100X")  # DC under benign/, 40 under 100X
    (root / "benign" / "100X" / "scan 1.png").write_bytes(b"x")
    _tree(root / "copy", names[:1])  # the same name twice
    with pytest.raises(DataError) as info:
        read_breakhis_folder(root)
    msg = str(info.value)
    assert "SOB_M_DC-14-2523-40-010.png: the name says malignant but the file is in a folder named 'benign'" in msg
    assert "SOB_B_A-14-22549AB-40-001.png: the name says 40x but the file is in a folder named '100X'" in msg
    assert "scan 1.png: not a BreakHis file name" in msg


def test_duplicate_file_names_are_an_error(tmp_path):
    _tree(tmp_path / "a", SAMPLES[0][:1])
    _tree(tmp_path / "b", SAMPLES[0][:1])
    with pytest.raises(DataError, match=r"SOB_B_A-14-22549AB-40-001.png: the same file name is also at"):
        read_breakhis_folder(tmp_path)


def test_missing_and_empty_folders(tmp_path):
    with pytest.raises(DataError, match=r"BreakHis not found below"):
        load_breakhis(tmp_path)
    (tmp_path / "breakhis").mkdir()
    with pytest.raises(DataError, match=r"no BreakHis image below this folder"):
        load_breakhis(tmp_path)
    with pytest.raises(ValueError, match="magnification must be one of"):
        read_breakhis_folder(tmp_path, magnification=50)
    with pytest.raises(ValueError, match="no official split"):
        load_breakhis(tmp_path, split="test")


def test_patient_level_split(tmp_path):
    rng = np.random.default_rng(2)
    names = []
    for p in range(24):
        code = ["A", "F", "PT", "TA", "DC", "LC", "MC", "PC"][p % 8]
        cls = "B" if p % 8 < 4 else "M"
        for mag in (40, 100, 200, 400):
            for k in range(int(rng.integers(1, 3))):
                names.append(f"SOB_{cls}_{code}-14-{1000 + p}-{mag}-{k + 1:03d}.png")
    # one patient filed under two subtypes stays one group
    names.append("SOB_M_LC-14-1004-40-009.png")
    src = read_breakhis_folder(_tree(tmp_path, names))
    assert len(set(src.groups)) == 24
    split = make_patch_split(src, ratios=(0.6, 0.2, 0.2), seed=5)
    seen = {}
    position = {item: i for i, item in enumerate(src.ids)}
    for s in ("train", "val", "test"):
        for item in split.split(s):
            g = src.groups[position[item]]
            assert seen.setdefault(g, s) == s
    assert sum(split.summary["n_patients"].values()) == 24
    assert all(v > 0 for v in split.summary["n_patients"].values())


# ----------------------------------------------------------------------------------------------------
# The derived 224 x 224 copy (../shared/data/breakhis_224)


def test_derived_names_parse_and_group_slides_of_one_patient(tmp_path):
    from breastdx.data.breakhis import parse_breakhis_derived_name

    r = parse_breakhis_derived_name("F/29960AB/SOBderived_B_F_29960AB_200X_i003.jpg")
    assert (r.tumour_class, r.subtype, r.patient, r.magnification, r.number) == ("benign", "F", "29960AB", 200, 3)
    assert r.patient_id == "29960"
    with pytest.raises(BreakHisNameError, match="not a malignant BreakHis subtype"):
        parse_breakhis_derived_name("SOBderived_M_F_1_200X_i001.jpg")
    with pytest.raises(BreakHisNameError, match="expected SOBderived_"):
        parse_breakhis_derived_name("SOBderived_B_F_1_200_i001.jpg")
    names = ["SOBderived_B_F_29960AB_200X_i000.jpg", "SOBderived_B_A_29960CD_200X_i000.jpg",
             "SOBderived_M_DC_2523_200X_i001.jpg"]
    root = _tree(tmp_path / "breakhis_224", names, under=lambda n: n.split("_")[2] + "/" + n.split("_")[3])
    src = load_breakhis(tmp_path)
    assert len(src) == 3 and src.class_counts() == {"benign": 2, "malignant": 1}
    assert sorted(set(src.groups)) == ["2523", "29960"]  # F 29960AB and A 29960CD: one patient
    assert root.is_dir()


def test_real_derived_copy_counts():
    env = os.environ.get("BREASTDX_DATA")
    if not env or not (Path(env) / "breakhis_224").is_dir():
        pytest.skip("real data not available: set BREASTDX_DATA to the data root (e.g. ../shared/data)")
    src = load_breakhis(Path(env) / "breakhis_224")
    assert len(src) == 839 and src.class_counts() == {"benign": 202, "malignant": 637}  # PROVENANCE.md's counts
    assert len(set(src.groups)) == 44  # 48 slide ids, 44 patient numbers
    image, _ = src.get(0)
    assert image.shape == (224, 224, 3)
