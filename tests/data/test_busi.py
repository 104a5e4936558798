"""BUSI folder scanning, case loading (mask union) and the data checksum, on synthetic and real folders."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from breastdx.data.busi import (
    BUSI_CLASSES,
    BusiCase,
    busi_checksum,
    class_counts,
    find_busi_root,
    load_case,
    scan_busi,
)
from breastdx.data.errors import DataError
from breastdx.data.images import ImageReadError, read_mask



def test_classes_order():
    assert BUSI_CLASSES == ("normal", "benign", "malignant")


def test_find_busi_root(tmp_path, make_synthetic_busi):
    make_synthetic_busi(tmp_path / "root" / "busi", {"benign": [1]})
    assert find_busi_root(tmp_path / "root") == tmp_path / "root" / "busi"
    assert find_busi_root(tmp_path / "root" / "busi") == tmp_path / "root" / "busi"
    make_synthetic_busi(tmp_path / "rel" / "Dataset_BUSI_with_GT", {"benign": [1]})
    assert find_busi_root(tmp_path / "rel") == tmp_path / "rel" / "Dataset_BUSI_with_GT"
    with pytest.raises(DataError, match=r"BUSI not found: .*empty.*breastdx data download busi"):
        find_busi_root(tmp_path / "empty")


def test_scan_sorts_by_label_then_number_and_pairs_masks(tmp_path, make_synthetic_busi):
    root = make_synthetic_busi(tmp_path, {"normal": [3], "benign": [10, 2, 1], "malignant": [7]},
                               extra_masks={"benign (2)": 2})
    (root / "benign" / ".DS_Store").write_bytes(b"x")  # hidden files are ignored
    cases = scan_busi(root)
    assert [c.name for c in cases] == ["benign (1)", "benign (2)", "benign (10)", "malignant (7)", "normal (3)"]
    two = cases[1]
    assert isinstance(two, BusiCase) and two.label == "benign" and two.number == 2 and two.label_index == 1
    assert [m.name for m in two.masks] == ["benign (2)_mask.png", "benign (2)_mask_1.png", "benign (2)_mask_2.png"]
    assert class_counts(cases) == {"normal": 1, "benign": 3, "malignant": 1}


def test_scan_lists_every_problem(tmp_path, write_png, make_synthetic_busi):
    root = make_synthetic_busi(tmp_path, {"benign": [1, 2], "malignant": [1]})
    (root / "benign" / "benign (2)_mask.png").unlink()  # image without mask
    write_png(root / "malignant" / "malignant (9)_mask.png", np.zeros((4, 5), np.uint8))  # mask without image
    (root / "normal" / "readme.txt").write_text("x")  # stray file
    write_png(root / "normal" / "benign (5).png", np.zeros((4, 5), np.uint8))  # wrong folder
    with pytest.raises(DataError) as info:
        scan_busi(root)
    msg = str(info.value)
    assert "not a valid BUSI folder" in msg
    assert "benign (2).png: image without a mask" in msg
    assert "malignant (9)_mask.png: mask without an image" in msg
    assert "readme.txt: unexpected file" in msg
    assert "benign (5).png: named as class 'benign' but stored in the 'normal' folder" in msg
    assert len(info.value.problems) == 4


def test_scan_refuses_two_images_of_one_case_number(tmp_path, write_png, make_synthetic_busi):
    """``benign (01).png`` beside ``benign (1).png`` is case ``benign (1)`` twice: one image replaced the other
    silently, with both masks merged onto the survivor."""
    root = make_synthetic_busi(tmp_path, {"benign": [1, 2]})
    write_png(root / "benign" / "benign (01).png", np.full((21, 27), 7, np.uint8))
    with pytest.raises(DataError) as info:
        scan_busi(root)
    assert info.value.problems == [f"{root / 'benign' / 'benign (1).png'}: a second image of case 'benign (1)' "
                                   f"(the first is benign (01).png); expected one image per case number"]


def test_scan_missing_class_folder(tmp_path, make_synthetic_busi):
    make_synthetic_busi(tmp_path, {"benign": [1]})
    shutil.rmtree(tmp_path / "normal")
    with pytest.raises(DataError, match="normal: missing class folder"):
        scan_busi(tmp_path)


def test_load_case_unions_masks(tmp_path, make_synthetic_busi):
    root = make_synthetic_busi(tmp_path, {"benign": [4], "normal": [1]}, extra_masks={"benign (4)": 2})
    case = scan_busi(root)[0]
    image, mask = load_case(case)
    assert image.shape == (21, 27) and image.dtype == np.uint8 and mask.dtype == bool
    expected = np.zeros((21, 27), dtype=bool)
    for k in range(3):  # the rectangles make_synthetic_busi draws
        expected[2 + k:5 + k, 3 + 2 * k:9 + 2 * k] = True
    np.testing.assert_array_equal(mask, expected)
    assert int(mask.sum()) == 38  # hand count, rows 2-6: 6 + 8 + 10 + 8 + 6
    rgb, _ = load_case(case, mode="rgb")
    assert rgb.shape == (21, 27, 3)
    normal = [c for c in scan_busi(root) if c.label == "normal"][0]
    assert not load_case(normal)[1].any()


def test_load_case_mask_size_mismatch(tmp_path, write_png, make_synthetic_busi):
    root = make_synthetic_busi(tmp_path, {"benign": [1]})
    write_png(root / "benign" / "benign (1)_mask.png", np.zeros((20, 27), np.uint8))
    with pytest.raises(ImageReadError, match=r"benign \(1\)_mask\.png: mask is 20x27 \(HxW\) but its image is 21x27"):
        load_case(scan_busi(root)[0])


def test_checksum_depends_on_content_not_location(tmp_path, write_png, make_synthetic_busi):
    root = make_synthetic_busi(tmp_path / "a", {"benign": [1, 2], "normal": [1]})
    first = busi_checksum(scan_busi(root))
    shutil.copytree(root, tmp_path / "b")
    assert busi_checksum(scan_busi(tmp_path / "b")) == first
    write_png(tmp_path / "b" / "benign" / "benign (2)_mask.png", np.full((21, 27), 255, np.uint8))
    assert busi_checksum(scan_busi(tmp_path / "b")) != first
    assert len(first) == 64


# -- real data ---------------------------------------------------------------------------------------


def test_real_busi_counts(data_root):
    cases = scan_busi(find_busi_root(data_root))
    assert len(cases) == 780
    assert class_counts(cases) == {"normal": 133, "benign": 437, "malignant": 210}
    # 18 extra mask files (_mask_1, _mask_2) on 17 images: benign (195) has three masks
    assert sum(len(c.masks) for c in cases) == 798  # 454 + 211 + 133
    assert sum(len(c.masks) - 1 for c in cases) == 18
    assert sum(len(c.masks) > 1 for c in cases) == 17
    assert {c.label for c in cases if len(c.masks) > 1} == {"benign", "malignant"}


def test_real_busi_original_sample(busi_sample, data_root):
    cases = scan_busi(busi_sample)
    assert [c.name for c in cases] == ["benign (4)", "benign (13)", "benign (54)", "benign (195)",
                                       "malignant (53)", "normal (1)"]
    assert sum(1 + len(c.masks) for c in cases) == 17
    full = {c.name: c for c in scan_busi(data_root / "busi")}
    for case in cases:
        image, mask = load_case(case)
        union = np.zeros(image.shape, dtype=bool)
        for m in case.masks:
            union |= read_mask(m)
        np.testing.assert_array_equal(mask, union)
        stored_image, stored_mask = load_case(full[case.name])  # the gray / 8-bit copy in busi/
        np.testing.assert_array_equal(image, stored_image)
        np.testing.assert_array_equal(mask, stored_mask)
    by_name = {c.name: c for c in cases}
    assert len(by_name["benign (195)"].masks) == 3
    assert not load_case(by_name["normal (1)"])[1].any()
    # benign (4): a 1-bit mask and an RGBA mask; the union is larger than either
    _, m4 = load_case(by_name["benign (4)"])
    parts = [read_mask(m) for m in by_name["benign (4)"].masks]
    assert m4.sum() > max(p.sum() for p in parts) and m4.sum() <= sum(p.sum() for p in parts)


def test_model_card_names_the_release_only_for_the_release():
    """780 cases are the BUSI release, described with its hospital and year; any other count is a part of it or a
    user's own images in its layout, and the card does not lend them BUSI's origin."""
    from breastdx.data.busi import data_card_line

    release = data_card_line(780, "; with masks")
    assert release.startswith("- BUSI, Breast Ultrasound Images (Al-Dhabyani et al. 2020")
    assert "780 images of 600 women, Baheya Hospital, Cairo, 2018; with masks (CC BY 4.0)." in release
    other = data_card_line(75)
    assert other.startswith("- 75 images in BUSI's folder layout, not the 780 of the BUSI release")
    assert "Baheya" not in other and "600 women" not in other and "data owner's to state" in other
