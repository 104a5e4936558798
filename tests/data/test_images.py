"""Image and mask reader: formats by magic bytes, 16-bit rescaling, transparency, DICOM, and every error named."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from breastdx.data.images import (
    MAX_PIXELS,
    ImageReadError,
    read_image,
    read_image_bytes,
    read_images,
    read_mask,
    rescale_to_uint8,
)
from breastdx.data.image_files import list_images


H, W = 33, 35  # odd sizes on purpose


def _gradient(h: int = H, w: int = W) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return ((x * 7 + y * 3) % 256).astype(np.uint8)


def _png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG whose IHDR claims ``width`` x ``height`` but which holds no pixel data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))
    return path


# -- 8-bit formats -----------------------------------------------------------------------------------


def test_gray_png_round_trip_keeps_values(tmp_path, write_png):
    a = _gradient()
    rec = read_image(write_png(tmp_path / "g.png", a))
    assert rec.array.dtype == np.uint8 and rec.array.shape == (H, W)
    np.testing.assert_array_equal(rec.array, a)
    assert (rec.source_format, rec.source_mode, rec.spacing_mm) == ("PNG", "L", None)
    rgb = read_image(tmp_path / "g.png", mode="rgb").array
    assert rgb.shape == (H, W, 3) and all(np.array_equal(rgb[..., c], a) for c in range(3))


def test_rgb_to_gray_uses_itu_601_luma_golden_values(tmp_path, write_png):
    a = np.zeros((3, 5, 3), dtype=np.uint8)
    a[0, 0] = (255, 0, 0)
    a[0, 1] = (0, 255, 0)
    a[0, 2] = (0, 0, 255)
    a[0, 3] = (90, 90, 90)
    rec = read_image(write_png(tmp_path / "c.png", a))
    assert rec.source_mode == "RGB"
    # L = (19595 R + 38470 G + 7471 B + 2**15) >> 16, as Pillow's convert("L")
    assert rec.array[0, :4].tolist() == [76, 150, 29, 90]
    np.testing.assert_array_equal(read_image(tmp_path / "c.png", mode="rgb").array, a)


def test_rgba_is_composited_on_the_modalitys_background(tmp_path, write_png):
    """Colour (H&E) on white, the glass, where whole-slide readers answer transparent outside the scan (on black,
    a tissue tile's transparent half was segmented as three huge nuclei); gray (ultrasound) on black."""
    a = np.zeros((3, 5, 4), dtype=np.uint8)
    a[..., 3] = 255
    a[1, 2] = (200, 100, 50, 128)
    a[2, 4] = (250, 250, 250, 0)
    path = write_png(tmp_path / "a.png", a)
    rec = read_image(path, mode="rgb")
    assert rec.source_mode == "RGBA" and rec.array.shape == (3, 5, 3)
    assert rec.array[1, 2].tolist() == [227, 177, 152]  # round(v * 128 / 255 + 255 * 127 / 255)
    assert rec.array[2, 4].tolist() == [255, 255, 255]
    gray = read_image(path, mode="gray").array
    assert gray[2, 4] == 0 and gray[1, 2] == round(0.299 * 100 + 0.587 * 50 + 0.114 * 25)  # round(v * 128 / 255)


def test_palette_and_one_bit_images(tmp_path, write_png):
    p = Image.fromarray(_gradient()).convert("P")
    p.save(tmp_path / "p.png")
    rec = read_image(tmp_path / "p.png")
    assert rec.source_mode == "P"
    np.testing.assert_array_equal(rec.array, np.asarray(p.convert("L")))
    bits = np.zeros((H, W), dtype=bool)
    bits[4:9, 6:20] = True
    rec = read_image(write_png(tmp_path / "b.png", bits))
    assert rec.source_mode == "1" and set(np.unique(rec.array)) == {0, 255}
    np.testing.assert_array_equal(rec.array == 255, bits)


def test_jpeg(tmp_path):
    a = _gradient() // 2
    Image.fromarray(a).save(tmp_path / "j.jpg", quality=95)
    rec = read_image(tmp_path / "j.jpg")
    assert (rec.source_format, rec.source_mode, rec.array.shape) == ("JPEG", "L", (H, W))
    assert np.abs(rec.array.astype(int) - a).max() <= 8  # lossy


def test_format_comes_from_magic_bytes_not_the_name(tmp_path, grey_dicom):
    a = _gradient()
    Image.fromarray(a).save(tmp_path / "really_a_png.jpg", format="PNG")
    assert read_image(tmp_path / "really_a_png.jpg").source_format == "PNG"
    grey_dicom(tmp_path / "scan.png", np.arange(35).reshape(5, 7) * 10)
    assert read_image(tmp_path / "scan.png").source_format == "DICOM"



@pytest.mark.parametrize("head, says", [
    (b"Doe,John,19800101,MRN4711\n", "its first bytes are text"),
    (b"\xef\xbb\xbfname,id\nDoe", "its first bytes are text"),  # a CSV saved with a byte-order mark
    (b"\x00\x01\xfeDoe^John", "hexadecimal 00 01 fe 44"),
    (b"\x89HDF\r\n\x1a\nDoe", "an HDF5 file"),
])
def test_not_an_image_names_the_kind_of_bytes_but_never_quotes_them(tmp_path, head, says):
    """A text file sent as an image may begin with a patient's name: the message says text, never the bytes."""
    f = tmp_path / "scan.png"
    f.write_bytes(head + b"\x00" * 200)
    for read in (lambda: read_image(f), lambda: read_image_bytes(f.read_bytes(), "scan.png")):
        with pytest.raises(ImageReadError) as err:
            read()
        message = str(err.value)
        assert "scan.png: not an image: " in message
        assert says in message and "whatever its name ends with" in message
        assert "Doe" not in message and "MRN" not in message and "John" not in message

# -- wide data ---------------------------------------------------------------------------------------


def test_16bit_png_is_min_max_rescaled_golden_values(tmp_path):
    a = np.array([[1000, 2000, 3000], [4000, 5000, 1000], [1500, 4999, 1001]], dtype=np.uint16)
    path = tmp_path / "w.png"
    Image.fromarray(a).save(path)
    rec = read_image(path)
    assert rec.source_mode.startswith("I;16") or rec.source_mode == "I"
    # round(255 * (v - 1000) / 4000)
    assert rec.array.tolist() == [[0, 64, 128], [191, 255, 0], [32, 255, 0]]


def test_16bit_tiff_is_min_max_rescaled_golden_values(tmp_path):
    a = np.array([[0, 100, 200, 300, 400], [65535, 0, 0, 0, 0]], dtype=np.uint16)
    path = tmp_path / "w.tif"
    Image.fromarray(a).save(path)
    rec = read_image(path)
    assert rec.source_format == "TIFF" and rec.source_mode.startswith("I;16")
    assert rec.array.tolist() == [[0, 0, 1, 1, 2], [255, 0, 0, 0, 0]]  # round(255 * v / 65535)


def test_rescale_constant_image_is_zero():
    assert rescale_to_uint8(np.full((3, 4), 7.0)).tolist() == [[0] * 4] * 3


def test_multipage_tiff_is_refused(tmp_path):
    frames = [Image.fromarray(_gradient()), Image.fromarray(_gradient()[::-1].copy())]
    frames[0].save(tmp_path / "m.tif", save_all=True, append_images=frames[1:])
    with pytest.raises(ImageReadError, match=r"m\.tif.*2 pages"):
        read_image(tmp_path / "m.tif")


# -- DICOM -------------------------------------------------------------------------------------------


def test_dicom_monochrome2_uint16_keeps_spacing_and_rescales(tmp_path, grey_dicom):
    a = (np.arange(35, dtype=np.uint16).reshape(5, 7) * 100)  # 0 ... 3400
    rec = read_image(grey_dicom(tmp_path / "x.dcm", a, spacing=(0.1, 0.25)))
    assert (rec.source_format, rec.source_mode) == ("DICOM", "MONOCHROME2")
    assert rec.spacing_mm == (0.1, 0.25)
    assert rec.array.shape == (5, 7) and rec.array.dtype == np.uint8
    assert rec.array[0, :4].tolist() == [0, 8, 15, 22]  # round(255 * v / 3400)
    assert rec.array[4, 6] == 255


def test_dicom_window_is_used_when_present(tmp_path, grey_dicom):
    a = np.array([[1500, 1750, 2000, 2250, 2600, 0, 4095]], dtype=np.uint16)
    rec = read_image(grey_dicom(tmp_path / "w.dcm", a, window=(2000, 1000)))
    # LINEAR window (PS3.3 C.11.2.1.2.1): ((v - (c - 0.5)) / (w - 1) + 0.5) * 255, clipped
    assert rec.array[0].tolist() == [0, 64, 128, 191, 255, 0, 255]


def test_dicom_monochrome1_is_inverted_and_spacing_optional(tmp_path, grey_dicom):
    a = np.array([[0, 1000, 2000]], dtype=np.uint16)
    rec = read_image(grey_dicom(tmp_path / "m1.dcm", a, photometric="MONOCHROME1", spacing=None))
    assert rec.array[0].tolist() == [255, 127, 0] and rec.spacing_mm is None  # 255 - round(127.5)
    assert read_image(tmp_path / "m1.dcm", mode="rgb").array.shape == (1, 3, 3)


def test_truncated_dicom_and_dicom_without_pixels(tmp_path, grey_dicom):
    import pydicom

    good = grey_dicom(tmp_path / "g.dcm", np.arange(35).reshape(5, 7) * 100)
    data = good.read_bytes()
    (tmp_path / "t.dcm").write_bytes(data[: len(data) - 30])
    with pytest.raises(ImageReadError, match=r"t\.dcm: cannot decode the DICOM pixel data"):
        read_image(tmp_path / "t.dcm")
    ds = pydicom.dcmread(good)
    del ds.PixelData
    ds.save_as(tmp_path / "empty.dcm", enforce_file_format=True)
    with pytest.raises(ImageReadError, match=r"empty\.dcm: DICOM file without PixelData"):
        read_image(tmp_path / "empty.dcm")


# -- errors ------------------------------------------------------------------------------------------


def test_missing_file(tmp_path):
    with pytest.raises(ImageReadError, match=r"nope\.png: no such file"):
        read_image(tmp_path / "nope.png")


def test_zero_byte_file(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageReadError, match=r"empty\.png: empty file \(0 bytes\)"):
        read_image(tmp_path / "empty.png")


def test_text_file_named_png(tmp_path):
    (tmp_path / "notes.png").write_text("this is not an image\n")
    with pytest.raises(ImageReadError, match=r"notes\.png: not an image"):
        read_image(tmp_path / "notes.png")


@pytest.mark.parametrize("head, says", [
    (b"\x89HDF\r\n\x1a\n" + bytes(8), "those of an HDF5 file: PatchCamelyon's (name ending in .h5) is read"),
    (b"\x1f\x8b\x08\x00" + bytes(12), "those of a gzip archive (PatchCamelyon ships its files as .h5.gz)"),
    (b"PK\x03\x04" + bytes(12), "those of a ZIP archive, or a NumPy .npz"),
    (b"%PDF-1.7\n" + bytes(8), "those of a PDF document"),
])
def test_a_file_sent_in_place_of_an_image_is_named_for_what_it_is(tmp_path, head, says):
    path = tmp_path / "upload.png"  # the name says PNG; the bytes say otherwise
    path.write_bytes(head)
    for read in (lambda: read_image(path), lambda: read_image_bytes(head, "upload.png")):
        with pytest.raises(ImageReadError, match="not an image") as e:
            read()
        assert says in str(e.value)


def test_truncated_png(tmp_path, write_png):
    rng = np.random.default_rng(0)
    path = write_png(tmp_path / "full.png", rng.integers(0, 256, (H, W), dtype=np.uint8))
    data = path.read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match=r"cut\.png: .*(truncated|corrupt)"):
        read_image(tmp_path / "cut.png")


def test_corrupt_png_data(tmp_path, write_png):
    rng = np.random.default_rng(1)
    data = bytearray(write_png(tmp_path / "ok.png", rng.integers(0, 256, (H, W), dtype=np.uint8)).read_bytes())
    start = data.index(b"IDAT") + 8
    data[start:start + 40] = bytes(40)
    (tmp_path / "bad.png").write_bytes(bytes(data))
    with pytest.raises(ImageReadError, match=r"bad\.png"):
        read_image(tmp_path / "bad.png")


def test_pixel_limit_from_header_before_decoding(tmp_path, write_png):
    path = write_png(tmp_path / "big.png", _gradient())
    with pytest.raises(ImageReadError, match=r"big\.png: image is 35x33 = 1,155 pixels, over the limit of 1,000"):
        read_image(path, max_pixels=1000)
    # The header claims 12000 x 9000 (over MAX_PIXELS) and there are no pixels at all: the size check
    # must fire first (a decode would fail differently).
    bomb = _png_header_only(tmp_path / "bomb.png", 12000, 9000)
    assert 12000 * 9000 > MAX_PIXELS
    with pytest.raises(ImageReadError, match=r"bomb\.png: image is 12000x9000 .* over the limit"):
        read_image(bomb)
    with pytest.raises(ImageReadError, match=r"big\.png.*over the limit"):
        read_mask(path, max_pixels=10)


def test_dicom_pixel_limit(tmp_path, grey_dicom):
    path = grey_dicom(tmp_path / "big.dcm", np.zeros((5, 7)))
    with pytest.raises(ImageReadError, match=r"big\.dcm: image is 7x5 = 35 pixels, over the limit of 34"):
        read_image(path, max_pixels=34)


def test_bad_mode_is_value_error(tmp_path, write_png):
    with pytest.raises(ValueError, match="mode must be one of gray, rgb; got 'bgr'"):
        read_image(write_png(tmp_path / "g.png", _gradient()), mode="bgr")


def test_unsupported_pillow_mode(tmp_path, monkeypatch, write_png):
    import breastdx.data.images as images

    path = write_png(tmp_path / "g.png", _gradient())
    monkeypatch.setattr(images, "_PIL_8BIT", images._PIL_8BIT - {"L"})
    with pytest.raises(ImageReadError, match=r"g\.png: unsupported pixel mode 'L'"):
        read_image(path)


# -- masks -------------------------------------------------------------------------------------------


def _mask() -> np.ndarray:
    m = np.zeros((H, W), dtype=bool)
    m[5:12, 7:21] = True
    m[20, 30] = True
    return m


def test_one_bit_gray_and_rgb_masks(tmp_path, write_png):
    m = _mask()
    np.testing.assert_array_equal(read_mask(write_png(tmp_path / "a_mask.png", m)), m)
    np.testing.assert_array_equal(read_mask(write_png(tmp_path / "b_mask.png", m.astype(np.uint8) * 255)), m)
    rgb = np.zeros((H, W, 3), dtype=np.uint8)
    rgb[m, 1] = 255  # only one channel set
    np.testing.assert_array_equal(read_mask(write_png(tmp_path / "c_mask.png", rgb)), m)
    assert read_mask(tmp_path / "c_mask.png").dtype == bool


def test_rgba_mask_uses_colour_then_alpha(tmp_path, write_png):
    m = _mask()
    rgba = np.zeros((H, W, 4), dtype=np.uint8)
    rgba[..., 3] = 255  # as BUSI's RGBA masks: alpha 255 everywhere, colour {0, 255}
    rgba[m, :3] = 255
    np.testing.assert_array_equal(read_mask(write_png(tmp_path / "rgba_mask.png", rgba)), m)
    alpha_only = np.zeros((H, W, 4), dtype=np.uint8)
    alpha_only[m, 3] = 255  # colour all zero: the alpha channel is the mask
    np.testing.assert_array_equal(read_mask(write_png(tmp_path / "alpha_mask.png", alpha_only)), m)


def test_mask_of_another_size_names_both_sizes(tmp_path, write_png):
    path = write_png(tmp_path / "x_mask.png", _mask())
    with pytest.raises(ImageReadError, match=r"x_mask\.png: mask is 33x35 \(HxW\) but its image is 33x36"):
        read_mask(path, expected_shape=(33, 36))
    assert read_mask(path, expected_shape=(H, W)).shape == (H, W)


# -- listing and batches -----------------------------------------------------------------------------


def test_list_images_recursive_sorted_without_masks(tmp_path, caplog):
    a = _gradient()
    for rel in ("b/2.png", "b/c/1.TIF", "a.jpeg", "a_mask.png", "b/c/1_mask_1.png", ".hidden/x.png",
                "b/.y.png", "notes.txt"):
        p = tmp_path / "in" / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")
    Image.fromarray(a).save(tmp_path / "single.png")
    (tmp_path / "in" / "b" / "scan.bmp").write_bytes(b"BM")
    with caplog.at_level("WARNING", logger="breastdx.data.image_files"):
        got = list_images([tmp_path / "in", tmp_path / "single.png", tmp_path / "in" / "a_mask.png"])
    rel = [str(p.relative_to(tmp_path)) for p in got]
    assert rel == ["in/a.jpeg", "in/b/2.png", "in/b/c/1.TIF", "single.png"]
    # the files a folder held that are not read are named (hidden ones are not: they are skipped on purpose)
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 1 and said[0].startswith("2 file(s) in the input folders were not read")
    assert f"{tmp_path / 'in' / 'b' / 'scan.bmp'}, {tmp_path / 'in' / 'notes.txt'}." in said[0]
    caplog.clear()
    with caplog.at_level("WARNING", logger="breastdx.data.image_files"):
        list_images([tmp_path / "in" / "b" / "scan.bmp", tmp_path / "single.png"])
    assert not caplog.records  # named directly: kept, and read_images reports it
    with_masks = list_images([tmp_path / "in"], exclude_masks=False)
    assert len(with_masks) == 5
    assert tmp_path / "in" / "b" / "scan.bmp" in list_images([tmp_path / "in" / "b" / "scan.bmp"])



def test_list_images_leaves_out_breastdx_output_folders_and_names_broken_links(tmp_path, caplog):
    """A run written inside its input folder (predict scans/ --out scans/run1) is not read again as inputs, and a
    link to nothing is named, not passed over."""
    for rel in ("1.png", "sub/2.png", "run1/predictions.csv", "run1/gradcam/1_gradcam_benign.png",
                "sub/ev/metrics.json", "sub/ev/overlays/2.png"):
        p = tmp_path / "in" / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")
    (tmp_path / "in" / "gone.png").symlink_to(tmp_path / "nowhere.png")
    with caplog.at_level("WARNING", logger="breastdx.data.image_files"):
        got = list_images([tmp_path / "in"])
    assert [str(p.relative_to(tmp_path)) for p in got] == ["in/1.png", "in/sub/2.png"]
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 2
    assert said[0].startswith("2 folder(s) inside the input folders hold breastdx's own output")
    assert f"{tmp_path / 'in' / 'run1'}, {tmp_path / 'in' / 'sub' / 'ev'}. Name such a folder" in said[0]
    assert said[1] == f"1 link(s) in the input folders point to no file and are not read: {tmp_path / 'in' / 'gone.png'}."
    # named directly, an output folder is read (and its own predictions.csv is no reason to skip it)
    assert [p.name for p in list_images([tmp_path / "in" / "run1"])] == ["1_gradcam_benign.png"]

def test_list_images_reads_a_file_named_twice_once(tmp_path, monkeypatch, caplog):
    """A file named by two paths (relative and absolute, through '..', through a link, or also in its folder given)
    was predicted twice, as two rows with outputs ``x`` and ``x_2``."""
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("a.png", "b.png"):
        Image.fromarray(_gradient()).save(folder / name)
    (tmp_path / "link").symlink_to(folder, target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    with caplog.at_level("INFO", logger="breastdx.data.image_files"):
        got = list_images(["in/a.png", folder / "a.png", "in/../in/a.png", "in", "link", "link/b.png"])
    assert len(got) == 2 and sorted(p.resolve().name for p in got) == ["a.png", "b.png"]
    assert any("read once" in r.getMessage() for r in caplog.records)
    frames = list_images([f"{folder}/a.png#frame=2", "in/a.png#frame=2", "in/a.png#frame=3"])
    assert sorted(str(p)[-8:] for p in frames) == ["#frame=2", "#frame=3"]  # one file's frames stay apart


def test_output_stems_never_repeat():
    from breastdx.data.image_files import OutputStems

    names = OutputStems()
    assert [names.claim(s) for s in ("x", "x_2", "x", "x", "y", "x_3")] == ["x", "x_2", "x_3", "x_4", "y", "x_3_2"]
    # a/Scan.png and b/scan.png: one output file name on a case-insensitive file system (macOS, Windows)
    assert [names.claim(s) for s in ("Scan", "scan", "SCAN_2")] == ["Scan", "scan_2", "SCAN_2_2"]



def test_output_stems_of_long_file_names_leave_room_for_the_suffixes(tmp_path):
    """An input named with 83 CJK characters (253 bytes) stopped the whole batch: its output file
    <stem>_gradcam_benign.png was over the 255 bytes a file name may have."""
    from breastdx.data.image_files import MAX_STEM_BYTES, OutputStems

    names = OutputStems()
    long_a, long_b = "超" * 83, "超" * 82 + "b"
    a, b = names.claim(long_a), names.claim(long_b)
    assert len(a.encode()) <= MAX_STEM_BYTES and long_a.startswith(a) and b == a + "_2"  # cut alike: kept apart
    (tmp_path / f"{b}_gradcampp_malignant_papillary_carcinoma.png").write_bytes(b"")  # a name the system takes
    assert names.claim("short") == "short"


def test_read_images_goes_on_past_bad_files(tmp_path, write_png):
    good = write_png(tmp_path / "good.png", _gradient())
    (tmp_path / "bad.png").write_text("nope")
    records, failures = read_images([tmp_path / "bad.png", good, tmp_path / "missing.png"])
    assert [r.path.name for r in records] == ["good.png"]
    assert [p.name for p, _ in failures] == ["bad.png", "missing.png"]
    assert "not an image" in failures[0][1] and "no such file" in failures[1][1]


# -- real data: the public release's own files --------------------------------------------------------


def test_busi_original_sample_reads_every_file(busi_sample, data_root):
    files = sorted(busi_sample.glob("*/*.png"))
    masks = [f for f in files if "_mask" in f.stem]
    images = {f.stem for f in files} - {f.stem for f in masks}
    # 6 images and their 11 masks (17 files), as the data README says: benign (195) has 3 masks, benign (4),
    # benign (54) and malignant (53) 2 each, benign (13) and normal (1) one each
    assert len(files) == 17 and len(images) == 6 and len(masks) == 11
    assert {m.stem.split("_mask")[0] for m in masks} == images  # every mask has its image, every image a mask
    modes = set()
    for f in files:
        if "_mask" in f.stem:
            m = read_mask(f)
            assert m.dtype == bool and m.ndim == 2
            stored = read_mask(data_root / "busi" / f.parent.name / f.name)  # 8-bit {0, 255} copy
            np.testing.assert_array_equal(m, stored)
            modes.add(Image.open(f).mode)
        else:
            rec = read_image(f)
            assert rec.source_mode == "RGB" and rec.array.ndim == 2
            np.testing.assert_array_equal(rec.array, read_image(data_root / "busi" / f.parent.name / f.name).array)
    assert {"1", "RGB", "RGBA"} <= modes


@pytest.mark.parametrize("mode, fmt, pil_mode", [("gray", "PNG", "L"), ("rgb", "PNG", "RGB"), ("rgb", "JPEG", "RGB"),
                                                 ("gray", "PNG", "I;16"), ("gray", "PNG", "P"), ("rgb", "PNG", "RGBA")])
def test_reduced_decoding_is_the_box_average_with_the_stored_size(mode, fmt, pil_mode):
    """``max_side`` decodes a large image reduced by an integer factor (JPEG: drafted by the decoder first) and
    keeps the stored size in ``full_shape``; a small image is untouched."""
    from breastdx.data.images import read_image_bytes

    y, x = np.mgrid[0:1500, 0:1000]
    smooth = ((x // 50 * 13 + y // 50 * 7) % 200 + 20).astype(np.uint8)
    im = Image.fromarray(smooth)
    im = {"L": im, "RGB": im.convert("RGB"), "P": im.convert("P"), "RGBA": im.convert("RGBA"),
          "I;16": Image.fromarray(smooth.astype(np.uint16) * 250)}[pil_mode]
    buf = io.BytesIO()
    im.save(buf, fmt)
    full = read_image_bytes(buf.getvalue(), "big", mode=mode)
    small = read_image_bytes(buf.getvalue(), "big", mode=mode, max_side=400)
    assert full.full_shape is None and small.full_shape == (1500, 1000)
    assert max(small.shape) <= 400 and max(small.shape) > 200
    factor = 1500 // small.shape[0]
    assert small.shape == (-(-1500 // factor), -(-1000 // factor))  # a partial block at the edge is averaged too
    h, w = 1500 // factor, 1000 // factor
    expected = full.array[:h * factor, :w * factor].astype(float)
    expected = expected.reshape(h, factor, w, factor, *expected.shape[2:]).mean(axis=(1, 3))
    assert np.abs(small.array[:h, :w].astype(float) - expected).mean() < (4 if fmt == "JPEG" else 1.01)
    tiny = read_image_bytes(buf.getvalue(), "big", mode=mode, max_side=5000)
    assert tiny.full_shape is None and np.array_equal(tiny.array, full.array)


def test_reduced_dicom_keeps_the_area_of_a_pixel(tmp_path, grey_dicom):
    """A reduced DICOM's spacing is that of its reduced pixels, so that areas in mm² are unchanged."""
    from breastdx.data.images import read_image_bytes

    arr = (np.arange(300 * 200).reshape(300, 200) % 4000).astype(np.uint16)
    path = grey_dicom(tmp_path / "big.dcm", arr, spacing=(0.1, 0.2))
    small = read_image_bytes(path.read_bytes(), "big.dcm", max_side=100)
    assert small.full_shape == (300, 200) and small.shape == (100, 67)
    assert small.spacing_mm == pytest.approx((0.3, 0.2 * 200 / 67))


@pytest.mark.parametrize("orientation, stored", [
    (1, lambda a: a),
    (3, lambda a: np.rot90(a, 2)),               # rotated 180
    (6, lambda a: np.rot90(a, 1)),               # viewers rotate it 90 clockwise
    (8, lambda a: np.rot90(a, -1)),              # viewers rotate it 90 anticlockwise
    (2, lambda a: a[:, ::-1]),                   # mirrored
])
def test_exif_orientation_gives_the_image_as_viewers_show_it(tmp_path, orientation, stored):
    """A phone photo or a rotated export stores its pixels turned and an EXIF Orientation tag: read upright (a
    BUSI malignant image read sideways was called normal)."""
    upright = np.add.outer(np.arange(20) * 10, np.arange(30)).astype(np.uint8)  # 20 x 30, every pixel distinct
    exif = Image.Exif()
    exif[0x0112] = orientation
    png = tmp_path / f"o{orientation}.png"
    Image.fromarray(np.ascontiguousarray(stored(upright))).save(png, exif=exif)
    for rec in (read_image(png), read_image_bytes(png.read_bytes(), "o.png")):
        np.testing.assert_array_equal(rec.array, upright)
    jpg = tmp_path / f"o{orientation}.jpg"
    big = np.kron(upright, np.ones((20, 20), np.uint8))  # 400 x 600, decoded reduced through JPEG draft mode
    Image.fromarray(np.ascontiguousarray(stored(big))).save(jpg, exif=exif, quality=95)
    rec = read_image_bytes(jpg.read_bytes(), "o.jpg", max_side=150)
    assert rec.array.shape == (100, 150) and rec.full_shape == (400, 600)
    assert np.abs(rec.array.astype(int) - np.kron(upright, np.ones((5, 5), np.uint8))).mean() < 3


def test_header_only_png_and_a_huge_png_are_named_in_plain_words():
    """Pillow's 'cannot identify image file <_io.BytesIO object at 0x...>' and its own pixel limit (179 million,
    not the caller's) no longer reach the message."""
    import zlib as _z

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", _z.crc32(kind + body) & 0xFFFFFFFF)

    head_only = b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ImageReadError) as info:
        read_image_bytes(head_only + b"\x00" * 8, "u.png")
    assert "_io." not in str(info.value) and str(info.value).startswith("u.png: ")
    huge = head_only + chunk(b"IHDR", struct.pack(">IIBBBBB", 100_000, 100_000, 8, 0, 0, 0, 0)) + chunk(b"IEND", b"")
    with pytest.raises(ImageReadError, match=r"^h.png: image is 10,000,000,000 pixels, over the limit of 40,000,000 "):
        read_image_bytes(huge, "h.png", max_pixels=40_000_000)
