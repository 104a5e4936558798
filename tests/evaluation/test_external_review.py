"""Bad external folders a user would plausibly give ``evaluate --external``: each gets an error naming the file and
the row, or is scored as meant (:mod:`breastdx.data.external`, :mod:`breastdx.evaluation.external_segmentation`)."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from breastdx.data.errors import DataError
from breastdx.data.external import read_external


def _png(path: Path, value: int = 0, size: tuple[int, int] = (12, 10)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full(size, value, dtype=np.uint8)).save(path)


def _table(root: Path, text: bytes) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "labels.csv").write_bytes(text)
    return root


def test_a_row_with_more_cells_than_the_header_is_named(tmp_path):
    # an unquoted comma in a free-text column: the row has a cell more than the header
    root = _table(tmp_path / "site", b"id,image,label,diagnosis\n"
                                     b"c0,a.png,benign,fibroadenoma\n"
                                     b"c1,b.png,malignant,IDC, grade 2\n"
                                     b"c2,c.png,normal,\n")
    with pytest.raises(DataError) as e:
        read_external(root)
    text = str(e.value)
    assert str(root / "labels.csv") in text
    assert "row 3" in text and "5 cells" in text and "has 4 columns" in text
    assert "row 2" not in text and "row 4" not in text


def test_a_table_not_in_utf8_is_named_with_its_row(tmp_path):
    root = _table(tmp_path / "site", "id,image,label,diagnosis\nc0,a.png,benign,x\nc1,b.png,benign,fibroadénome\n"
                  .encode("latin-1"))
    with pytest.raises(DataError) as e:
        read_external(root)
    assert str(root / "labels.csv") in str(e.value)
    assert "UTF-8" in str(e.value) and "line 3" in str(e.value)


def test_a_semicolon_table_with_capitalised_column_names_is_read(tmp_path):
    # a spreadsheet in a decimal-comma locale: ';' between cells, headers as typed by a person
    root = _table(tmp_path / "site", b"ID;Image;Mask;Label;pixel_size_mm\n"
                                     b"c0;img/a.png;m/a.png;Benign;0,1\n"
                                     b"c1;img/b.png;;Normal\n")
    data = read_external(root)
    assert data.ids == ("c0", "c1")
    assert data.labels == ("benign", "normal")
    assert data.images == (root / "img" / "a.png", root / "img" / "b.png")
    assert data.mask_files(0) == (root / "m" / "a.png",) and data.mask_files(1) == ()
    assert data.where == ("row 2", "row 3")
    assert data.pixel_size_mm == (0.1, None) and data.spacing(0) == (0.1, 0.1)


def test_a_column_named_twice_is_refused(tmp_path):
    root = _table(tmp_path / "site", b"image,label,Label\na.png,benign,malignant\n")
    with pytest.raises(DataError, match=r"labels\.csv: the column\(s\) 'label' appear more than once"):
        read_external(root)


def test_row_numbers_count_the_lines_of_the_file(tmp_path):
    # a blank line is skipped, and the rows after it are named by their line in the file
    root = _table(tmp_path / "site", b"image,label\na.png,benign\n\nb.png,\n")
    with pytest.raises(DataError) as e:
        read_external(root)
    assert "row 4: empty label" in str(e.value)


def _site_with_masks(root: Path, mask_value: int) -> Path:
    """Two 12 x 10 images labelled benign and normal; the benign one's mask has a 4 x 5 box of ``mask_value``."""
    _png(root / "a.png", 80)
    _png(root / "b.png", 90)
    mask = np.zeros((12, 10), dtype=np.uint8)
    mask[2:6, 3:8] = mask_value
    Image.fromarray(mask).save(root / "a_mask.png")
    (root / "labels.csv").write_text("image,mask,label\na.png,a_mask.png,benign\nb.png,,normal\n")
    return root


def test_a_lesion_mask_of_zeros_and_ones_is_named_as_such_not_as_empty(tmp_path):
    from breastdx.evaluation.external_segmentation import load_external_case

    data = read_external(_site_with_masks(tmp_path / "site", 1))
    with pytest.raises(DataError) as e:
        load_external_case(data, 0, "gray")
    text = str(e.value)
    assert str(tmp_path / "site" / "a_mask.png") in text and "row 2" in text
    assert "highest value is 1" in text and "> 127" in text and "is empty" not in text
    image, mask = load_external_case(data, 1, "gray")  # the normal image, no mask: scored
    assert image.shape[:2] == (12, 10) and not mask.any()


def test_a_lesion_mask_of_255_is_read_with_its_area(tmp_path):
    from breastdx.evaluation.external_segmentation import load_external_case

    data = read_external(_site_with_masks(tmp_path / "site", 255))
    _, mask = load_external_case(data, 0, "gray")
    assert mask.sum() == 20 and mask[2:6, 3:8].all()


def test_when_no_case_can_be_scored_each_file_is_named_once(tmp_path):
    from types import SimpleNamespace

    from breastdx.evaluation.external_segmentation import evaluate_external_segmentation
    from breastdx.tasks.busi_seg import SegEvaluateOptions

    root = tmp_path / "site"
    root.mkdir()
    (root / "a.png").write_bytes(b"not an image")
    _png(root / "b.png", 90)
    _png(root / "b_mask.png", 1)  # a 0/1 mask, all ones: no lesion pixel
    (root / "labels.csv").write_text("image,mask,label\na.png,,normal\nb.png,b_mask.png,malignant\n")
    opts = SegEvaluateOptions(external=str(root), n_bootstrap=10)
    predictor = SimpleNamespace(tta="none", preprocessing=SimpleNamespace(mode="gray"), batch_size=4)
    task = SimpleNamespace(name="busi-seg")
    run_dir = tmp_path / "out"
    run_dir.mkdir()
    with pytest.raises(DataError) as e:
        evaluate_external_segmentation(task, predictor, tmp_path, run_dir, opts)
    lines = str(e.value).splitlines()
    assert lines[0] == f"{root / 'labels.csv'}: none of the 2 cases could be scored."
    assert lines[1].startswith(f"  - {root / 'a.png'}: not an image") and lines[1].count("a.png") == 1
    assert lines[2].startswith(f"  - {root / 'b.png'}: {root / 'b_mask.png'}: the mask of a 'malignant' image")
    assert lines[2].count("b.png") == 1


def test_an_unrelated_sub_folder_is_named_with_how_to_leave_it_out(tmp_path):
    from breastdx.data.external import label_indices

    root = tmp_path / "site"
    for folder in ("benign", "Malignant", "thumbnails"):
        _png(root / folder / "x.png", 50)
    data = read_external(root)
    with pytest.raises(DataError) as e:
        label_indices(data, ("normal", "benign", "malignant"))
    text = str(e.value)
    assert "'thumbnails': 1 image(s) (folder thumbnails/)" in text and "'benign'" not in text.split("\n")[0]
    assert f"move the folder(s) thumbnails/ out of {root}" in text and "labels.csv" in text
    assert label_indices(data, ("normal", "benign", "malignant", "thumbnails")).tolist() == [2, 1, 3]  # Malignant/ first


def test_a_row_is_named_by_the_line_it_begins_on(tmp_path):
    # Windows line ends, a byte-order mark, and a quoted note over two lines
    root = _table(tmp_path / "site", b'\xef\xbb\xbfimage,label,note\r\na.png,Benign,"two\r\nlines"\r\nb.png,,x\r\n')
    with pytest.raises(DataError) as e:
        read_external(root)
    assert "row 4: empty label" in str(e.value)
    (root / "labels.csv").write_bytes(b'image,label,note\na.png,Benign,"two\nlines"\nb.png,malignant,x\n')
    data = read_external(root)
    assert data.where == ("row 2", "row 4") and data.labels == ("benign", "malignant")


def test_a_run_folder_written_inside_a_folder_of_class_folders_is_not_a_class(tmp_path, caplog):
    # 'evaluate --external site --out site/run1' first: run1/ holds metrics.json and its plots
    root = tmp_path / "site"
    _png(root / "benign" / "a.png", 50)
    _png(root / "malignant" / "b.png", 60)
    _png(root / "run1" / "roc.png", 70)
    (root / "run1" / "metrics.json").write_text("{}")
    with caplog.at_level("WARNING", logger="breastdx"):
        data = read_external(root)
    assert data.labels == ("benign", "malignant") and data.ids == ("benign/a.png", "malignant/b.png")
    assert "run1" in caplog.text and "metrics.json" in caplog.text


def test_the_report_escapes_the_names_and_reasons_of_the_cases_left_out(tmp_path):
    """The "Cases left out" table put a file name (from the user's folder) and its reason into the page as markup."""
    from types import SimpleNamespace

    from breastdx.evaluation.external_segmentation import _write_report

    predictor = SimpleNamespace(meta={"architecture": "unet"},
                                preprocessing=SimpleNamespace(image_size=64, mode="gray"))
    bad = "<img src=x onerror=alert(1)>.png"
    metrics = {"model": "m", "split": "folder <b>x</b>", "metrics": {},
               "external": {"left_out": [{"image": bad, "reason": "not an image: <script>alert(2)</script>"}]}}
    _write_report(tmp_path, predictor, metrics, [], [], (), 10)
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "<img src=x" not in page and "<script>" not in page and "<b>x</b>" not in page
    assert "&lt;img src=x onerror=alert(1)&gt;.png" in page and "&lt;script&gt;alert(2)&lt;/script&gt;" in page
