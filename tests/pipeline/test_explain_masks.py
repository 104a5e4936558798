"""The lesion masks ``breastdx explain`` finds beside its images (breastdx.pipeline.explain_masks), through the CLI
with the shipped breastmnist model (28 x 28, seconds on a CPU)."""

import csv
from pathlib import Path

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from breastdx.cli import app
from breastdx.pipeline.explain_masks import LesionMasks

runner = CliRunner()


def _image(path: Path, seed: int = 0) -> Path:
    yy, xx = np.mgrid[:64, :64]
    rng = np.random.default_rng(seed)
    a = 120 + 60 * np.sin(xx / 7.0) * np.cos(yy / 9.0) + rng.normal(0, 5, (64, 64))
    Image.fromarray(np.clip(a, 0, 255).astype(np.uint8)).save(path)
    return path


def _mask(path: Path, box: tuple[int, int, int, int]) -> Path:
    m = np.zeros((64, 64), np.uint8)
    m[box[0]:box[1], box[2]:box[3]] = 255
    Image.fromarray(m).save(path)
    return path


def _rows(out: Path) -> list[dict[str, str]]:
    with open(out / "explanations.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_explain_goes_on_past_an_image_whose_name_is_too_long_for_a_mask_name(tmp_path):
    """83 CJK characters + .png (253 bytes): ``<stem>_mask.png`` would be 258 bytes, over the 255 a file name may
    have. Checking for it raised OSError 'File name too long' and stopped the run; the image has no mask."""
    long = _image(tmp_path / ("乳" * 83 + ".png"))
    short = _image(tmp_path / "short.png", seed=1)
    out = tmp_path / "out"
    result = runner.invoke(app, ["explain", "breastmnist", str(long), str(short), "--out", str(out)])
    assert result.exit_code == 0, result.output
    rows = _rows(out)
    assert {r["source"] for r in rows} == {str(long), str(short)}
    assert all(r["cam_mass_in_mask"] == "" for r in rows)


def test_explain_scores_a_jpeg_against_its_png_mask(tmp_path):
    """``scan.jpg`` with ``scan_mask.png`` beside it (BUSI's masks are PNG whatever the image): the mask is found,
    so each non-empty map has its mass in the lesion and a pointing-game hit."""
    scan = _image(tmp_path / "scan.jpg")
    _mask(tmp_path / "scan_mask.png", (16, 48, 16, 48))
    out = tmp_path / "out"
    result = runner.invoke(app, ["explain", "breastmnist", str(scan), "--classes", "all", "--out", str(out)])
    assert result.exit_code == 0, result.output
    rows = _rows(out)
    scored = [r for r in rows if r["empty_map"] == "false"]
    assert scored, rows
    assert all(0 <= float(r["cam_mass_in_mask"]) <= 1 and r["pointing_game_hit"] in ("0", "1") for r in scored)


def test_the_masks_of_an_image_are_busi_names_with_any_image_suffix(tmp_path):
    for name in ("a.jpg", "a_mask.png", "a_mask_1.PNG", "a_mask_2.tif", "b.png", "b_mask.jpg", "b_mask.png",
                 "c.tif", "c_mask.bmp", "c_mask.txt", "d.png", "d_MASK.png"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "e_mask.png").mkdir()  # a folder of that name is no mask
    masks = LesionMasks()
    assert masks.files(tmp_path / "a.jpg") == [tmp_path / n for n in ("a_mask.png", "a_mask_1.PNG", "a_mask_2.tif")]
    assert masks.files(tmp_path / "b.png") == [tmp_path / "b_mask.png"]  # the image's own suffix first
    assert masks.files(tmp_path / "b.jpg") == [tmp_path / "b_mask.jpg"]
    assert masks.files(tmp_path / "c.tif") == []  # .bmp and .txt are no image suffixes of the project
    assert masks.files(tmp_path / "d.png") == [tmp_path / "d_MASK.png"]
    assert masks.files(tmp_path / "e.png") == []
    assert masks.files(tmp_path / ("乳" * 83 + ".png")) == []
    assert masks.files(tmp_path / "missing_folder" / "a.png") == []
    assert masks.files(Path(f"{tmp_path / 'a.npz'}#test_images[000017]")) == []
    assert masks.files(Path(f"{tmp_path / 'a.jpg'}#frame=2")) == []


def test_the_lesion_is_the_union_of_the_masks_and_a_bad_one_is_reported(tmp_path):
    _mask(tmp_path / "x_mask.png", (0, 10, 0, 10))
    _mask(tmp_path / "x_mask_1.png", (50, 60, 50, 60))
    Image.fromarray(np.full((32, 32), 255, np.uint8)).save(tmp_path / "x_mask_2.png")  # another size
    mask, problems = LesionMasks().read(tmp_path / "x.png", (64, 64))
    assert mask is not None and mask.sum() == 200 and mask[5, 5] and mask[55, 55]
    assert len(problems) == 1 and problems[0][0] == str(tmp_path / "x_mask_2.png")
    assert "mask not used" in problems[0][1] and "32x32" in problems[0][1]
    _mask(tmp_path / "y_mask.png", (0, 0, 0, 0))
    assert LesionMasks().read(tmp_path / "y.png", (64, 64)) == (None, [])  # an empty mask: none
    assert LesionMasks().read(tmp_path / "z.png", (64, 64)) == (None, [])  # no mask

