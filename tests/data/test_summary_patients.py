"""The per-patient part of `data summary` on files in IDC's own layout, with hand-counted golden values."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from breastdx.data.summary_patients import background_share, stain_means


def _idc(root: Path) -> None:
    rng = np.random.default_rng(0)
    plan = {"10250": [0, 0, 1, 1], "10251": [0, 0, 0], "10252": [1]}
    for patient, labels in plan.items():
        for k, label in enumerate(labels):
            d = root / "idc" / "IDC_regular_ps50_idx5" / patient / str(label)
            d.mkdir(parents=True, exist_ok=True)
            tissue = rng.integers(60, 200, size=(50, 50, 3), dtype=np.uint8)
            tissue[..., 2] //= 2  # H&E-ish: not gray
            image = tissue
            if patient == "10251" and k == 0:
                image = np.full((50, 50, 3), 245, np.uint8)  # blank background
            if patient == "10250" and k == 1:
                image = tissue[:21]  # an edge patch: 21 x 50 as stored
            Image.fromarray(image).save(d / f"{patient}_idx5_x{50 * k}_y0_class{label}.png")


def test_idc_patient_summary_counts(tmp_path):
    from breastdx.data.summary_datasets import summarize_dataset

    _idc(tmp_path / "data")
    result = summarize_dataset("idc", tmp_path / "data", tmp_path / "out")
    pp = result["patients"]
    assert pp["n_patients"] == 3 and pp["patches_per_patient"] == {"min": 1, "median": 3.0, "max": 4}
    assert pp["patients_with_one_class"] == {"normal": 1, "tumour": 1}
    rows = {r["patient"]: r for r in pp["rows"]}
    assert rows["10250"]["positive_share"] == 0.5 and rows["10251"]["positive_share"] == 0.0
    assert pp["positive_share"]["mean"] == pytest.approx((0.5 + 0 + 1) / 3)
    assert pp["blank"]["n"] == 1 and rows["10251"]["blank"] == 1
    assert pp["size_defects"]["n"] == 1 and pp["size_defects"]["examples"][0]["stored"] == [21, 50]
    for name in ("patients.json", "patients.html", "patients_share_and_stain.png"):
        assert (tmp_path / "out" / name).is_file()


def test_background_and_stain_figures():
    white = np.full((4, 4, 3), 250, np.uint8)
    assert background_share(white) == 1.0
    pink = np.zeros((4, 4, 3), np.uint8) + np.array([230, 120, 200], np.uint8)  # bright but saturated: tissue
    assert background_share(pink) == 0.0
    h_white, _ = stain_means(white)
    h_purple, _ = stain_means(np.zeros((4, 4, 3), np.uint8) + np.array([90, 40, 140], np.uint8))
    assert h_purple > h_white  # haematoxylin-like colour has the larger H optical density


def test_an_unreadable_image_is_listed_and_the_summary_goes_on(tmp_path):
    """One bad file among the patches stopped the whole summary (and left report.html without its patients part)."""
    from breastdx.data.summary_datasets import summarize_dataset, summary_table

    _idc(tmp_path / "data")
    bad = tmp_path / "data" / "idc" / "IDC_regular_ps50_idx5" / "10251" / "0" / "10251_idx5_x100_y0_class0.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)  # cut short after its signature
    result = summarize_dataset("idc", tmp_path / "data", tmp_path / "out")
    pp = result["patients"]
    assert [u["id"] for u in pp["unreadable"]] == ["10251/0/10251_idx5_x100_y0_class0.png"]
    assert pp["n_patients"] == 3 and {r["patient"]: r["n"] for r in pp["rows"]}["10251"] == 3  # still counted
    assert np.isfinite({r["patient"]: r for r in pp["rows"]}["10251"]["mean_h_od"])  # over its 2 readable images
    assert "Unreadable images: 1" in (tmp_path / "out" / "patients.html").read_text()
    _, _, _, notes = summary_table("idc", result, tmp_path / "out")
    assert "1 of all images" in notes[0]


def test_busi_has_no_split_to_summarise(tmp_path):
    from breastdx.data.summary_datasets import summarize_dataset

    with pytest.raises(ValueError, match="busi has no --split for a summary"):
        summarize_dataset("busi", tmp_path, tmp_path / "out", split="test")


@pytest.mark.parametrize("name", ["idc", "breakhis"])
def test_patient_datasets_refuse_split_in_the_command_lines_words(tmp_path, name):
    """idc and breakhis have no official split: ``--split`` is refused before anything is read, saying so in the
    command line's words, not with a Python function to call (the data folder here does not even exist)."""
    from breastdx.data.summary_datasets import summarize_dataset

    with pytest.raises(ValueError) as e:
        summarize_dataset(name, tmp_path / "nowhere", tmp_path / "out", split="test")
    assert str(e.value).startswith(f"{name} has no --split for a summary")
    assert "split.json" in str(e.value) and "breastdx.data" not in str(e.value)
    assert not (tmp_path / "out").exists()
