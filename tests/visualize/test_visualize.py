"""Rendering: colour tables, contours, overlays, PNG encoding and display sizes, on small odd-sized arrays."""

import io
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from breastdx.visualize import (CONTOUR_RGBA, OVERLAY_ALPHA, PREDICTION_COLOR, REFERENCE_COLOR, blend_table, contour,
                                contour_rgba, display_size, heat_lut, heatmap_overlay, heatmap_rgba, jet_lut, overlay_contours,
                                png_bytes, png_data_url, resize_image, resize_map, to_gray, to_rgb, write_cam_png,
                                write_mask_png, write_overlay_png)


def test_imports_nothing_above_it():
    code = ("import sys, breastdx.visualize; "
            "print(sorted(m for m in sys.modules if m.startswith('breastdx.') and not m.startswith('breastdx.visualize')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    assert "matplotlib" not in subprocess.run([sys.executable, "-c", "import sys, breastdx.visualize as v; v.jet_lut(); "
                                               "print(sorted(sys.modules))"], capture_output=True, text=True,
                                              check=True).stdout


def test_jet_lut_is_matplotlibs_jet():
    colormaps = pytest.importorskip("matplotlib").colormaps
    expected = (colormaps["jet"](np.linspace(0, 1, 256))[:, :3] * 255).round().astype(np.uint8)
    np.testing.assert_array_equal(jet_lut(), expected)
    np.testing.assert_array_equal(jet_lut()[[0, 255]], [[0, 0, 128], [128, 0, 0]])  # dark blue to dark red


def test_to_rgb_and_to_gray():
    gray = np.arange(35, dtype=np.uint8).reshape(5, 7)
    rgb = to_rgb(gray)
    assert rgb.shape == (5, 7, 3) and (rgb == gray[..., None]).all()
    assert to_rgb(rgb) is rgb  # RGB as is
    assert to_gray(gray) is gray
    np.testing.assert_array_equal(to_gray(rgb), gray)
    # ITU-R 601-2 luma: L = (299 R + 587 G + 114 B) / 1000
    assert to_gray(np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255]]], np.uint8)).tolist() == [[76, 150, 29]]
    with pytest.raises(ValueError, match="Expected a uint8 image"):
        to_rgb(np.zeros((4, 4), np.float32))
    with pytest.raises(ValueError, match="Expected a uint8 image"):
        to_gray(np.zeros((4, 4, 4), np.uint8))


def test_contour_and_overlay_contours():
    mask = np.zeros((30, 41), bool)
    mask[5:20, 10:30] = True
    line = contour(mask, 1)
    assert line.sum() == 2 * 15 + 2 * 20 - 4  # the rectangle's border
    assert not contour(np.zeros_like(mask)).any()
    image = np.full((30, 41), 100, np.uint8)
    unchanged = overlay_contours(image, [np.zeros_like(mask)], [(255, 0, 0)])
    assert (unchanged == 100).all()  # an empty mask draws nothing
    rgb = np.dstack([image] * 3)
    drawn = overlay_contours(rgb, [mask], [PREDICTION_COLOR], thickness=1)
    assert (drawn[line] == PREDICTION_COLOR).all() and (rgb == 100).all()  # drawn on a copy
    with pytest.raises(ValueError, match="does not fit"):
        overlay_contours(image, [mask[:10]], [(255, 0, 0)])
    with pytest.raises(ValueError, match="1 masks but 2 colours"):
        overlay_contours(image, [mask], [(255, 0, 0), (0, 0, 0)])


def test_contour_rgba():
    mask = np.zeros((33, 34), bool)
    mask[4:9, 6:20] = True
    rgba = contour_rgba(mask)
    assert rgba.shape == (33, 34, 4) and rgba.dtype == np.uint8
    np.testing.assert_array_equal(rgba[..., 3] > 0, contour(mask, 1))
    assert (rgba[contour(mask, 1)] == CONTOUR_RGBA).all()


def test_mask_and_overlay_files(tmp_path):
    mask = np.zeros((30, 41), bool)
    mask[5:20, 10:30] = True
    write_mask_png(mask, tmp_path / "m.png")
    back = np.asarray(Image.open(tmp_path / "m.png"))
    assert back.shape == (30, 41) and set(np.unique(back)) == {0, 255}
    np.testing.assert_array_equal(back > 0, mask)
    image = np.full((30, 41), 100, np.uint8)
    write_overlay_png(image, mask, tmp_path / "o.png", reference=np.roll(mask, 3, axis=1))
    rgb = np.asarray(Image.open(tmp_path / "o.png").convert("RGB"))
    assert rgb.shape == (30, 41, 3)
    assert (rgb == PREDICTION_COLOR).all(axis=2).any() and (rgb == REFERENCE_COLOR).all(axis=2).any()
    assert abs(rgb[0, 0].astype(int) - 100).max() <= 1  # gray kept within half a level
    write_overlay_png(np.dstack([image] * 3), mask, tmp_path / "c.png")  # RGB input
    assert np.asarray(Image.open(tmp_path / "c.png")).shape == (30, 41, 3)
    with pytest.raises(ValueError, match="does not fit"):
        write_overlay_png(image, mask[:10], tmp_path / "x.png")


def test_heatmap_overlay_and_cam_png(tmp_path):
    image = (np.arange(30 * 40) % 256).astype(np.uint8).reshape(30, 40)
    cam = np.zeros((30, 40), np.float32)
    cam[10:20, 10:20] = 1.0
    out = heatmap_overlay(image, cam)
    assert out.shape == (30, 40, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[0, 0], [image[0, 0]] * 3)  # cold pixels keep the image
    mask = np.zeros((30, 40), bool)
    mask[5:25, 5:25] = True
    png = write_cam_png(image, cam, tmp_path / "x.png", contour_mask=mask)
    assert Image.open(png).size == (40, 30)
    assert (np.asarray(Image.open(png))[contour(mask, 1)] == REFERENCE_COLOR).all()
    with pytest.raises(ValueError, match="does not fit"):
        heatmap_overlay(image, cam[:10])


def test_heatmap_table_blend_equals_the_formula():
    rng = np.random.default_rng(0)
    gray = rng.integers(0, 256, (17, 23), dtype=np.uint8)
    cam = rng.random((17, 23)).astype(np.float32)
    level = np.clip(cam * 255 + 0.5, 0, 255).astype(np.uint8)
    w = (OVERLAY_ALPHA * level / 255.0)[..., None]
    expected = np.repeat(gray[..., None], 3, axis=2) * (1 - w) + heat_lut()[level] * w
    assert np.abs(heatmap_overlay(gray, cam).astype(float) - expected).max() <= 1.0  # table lookup = the formula
    # the RGB path (arithmetic) agrees with the gray path (table) on a gray picture
    np.testing.assert_array_equal(heatmap_overlay(np.dstack([gray] * 3), cam), heatmap_overlay(gray, cam))
    assert blend_table(0.3).shape == (256, 256, 3) and (blend_table(0.3)[:, 0] == np.arange(256)[:, None]).all()


def test_heatmap_rgba():
    cam = np.array([[0.0, 0.5, 1.0, 2.0, -1.0]], np.float32)
    rgba = heatmap_rgba(cam)
    assert rgba.shape == (1, 5, 4)
    assert rgba[0, :, 3].tolist() == [0, 128, 255, 255, 0]  # opacity = the map, clipped to [0, 1]
    np.testing.assert_array_equal(rgba[0, 2, :3], heat_lut()[255])


@pytest.mark.parametrize("shape", [(17, 23), (17, 23, 3), (17, 23, 4), (1, 1)])
def test_png_bytes_round_trip_gray_rgb_rgba(shape):
    a = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(png_bytes(a)))), a)
    with pytest.raises(ValueError, match="Expected a uint8 image"):
        png_bytes(np.zeros((4, 4, 2), np.uint8))


def test_png_data_url():
    import base64

    a = np.random.default_rng(1).integers(0, 256, (5, 9, 3), dtype=np.uint8)
    url = png_data_url(a)
    assert url.startswith("data:image/png;base64,")
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))), a)


def test_display_size_and_resizing():
    assert display_size((300, 700), 140) == (60, 140)
    assert display_size((33, 34), 1000) == (33, 34)  # never scaled up
    assert display_size((1, 5000), 10) == (1, 10)  # at least one pixel
    image = np.random.default_rng(2).integers(0, 256, (33, 35), dtype=np.uint8)
    assert resize_image(image, (33, 35)) is image
    assert resize_image(image, (11, 12), Image.NEAREST).shape == (11, 12)
    cam = np.array([[0.0, 2.0], [-1.0, 0.5]], np.float32)
    small = resize_map(cam, (2, 2))
    assert small.tolist() == [[0.0, 1.0], [0.0, 0.5]]  # clipped
    assert resize_map(cam, (7, 9)).shape == (7, 9) and resize_map(cam, (7, 9)).dtype == np.float32


def test_heat_lut_is_matplotlibs_viridis_and_the_css_stops_match():
    from matplotlib import colormaps

    from breastdx.visualize import HEAT_STOPS

    expected = (colormaps["viridis"](np.linspace(0, 1, 256))[:, :3] * 255).round().astype(np.uint8)
    np.testing.assert_array_equal(heat_lut(), expected)
    assert list(HEAT_STOPS) == ["#%02x%02x%02x" % tuple(heat_lut()[i]) for i in (0, 64, 128, 192, 255)]


def test_legend_strip_and_label_region():
    from breastdx.visualize import mark_region, with_legend

    overlay = np.zeros((96, 96, 3), np.uint8)
    marked = mark_region(overlay, 32 / 96)
    assert (marked[32, 32:64] == (0, 230, 255)).all() and (marked[63, 32:64] == (0, 230, 255)).all()
    assert (marked[33:63, 33:63] == 0).all() and (marked[:31] == 0).all()  # only the outline of the centre square
    out = with_legend(overlay, ["Grad-CAM of tumour (P = 0.912)", "patch.png"], reference=True)
    assert out.shape[1] == 240 and out.shape[0] > 96 + 5 * 13  # the strip: colour bar and 5 lines
    assert (out[:96, :96] == 0).all() and (out[:96, 96:] == 255).all()
    bar = out[96 + 6, 40:240 - 40]
    assert (bar[0] == heat_lut()[0]).all() and (bar[-1] == heat_lut()[255]).all()  # low to high
    assert (out[96 + 20:, :] < 128).any()  # text drawn


def test_instance_labels_round_trip_as_png_and_beyond_65535_as_tiff(tmp_path):
    import tifffile

    from breastdx.visualize.png import write_instance_labels

    small = np.zeros((5, 7), np.int64)
    small[1:3, 2:4], small[4, 6] = 7, 65535
    path = write_instance_labels(small, tmp_path / "small")
    assert path.name == "small.png"
    back = np.asarray(Image.open(path))
    assert back.dtype == np.uint16 and np.array_equal(back, small)
    large = small.copy()
    large[0, 0] = 70000  # over 16 bits: a PNG would wrap it to 4464
    path = write_instance_labels(large, tmp_path / "large")
    assert path.name == "large.tif" and np.array_equal(tifffile.imread(path), large)



def test_instance_labels_of_dotted_tile_names_do_not_overwrite_each_other(tmp_path):
    """predict monuseg wrote the masks of slide.01.jpg and slide.02.jpg both to masks/slide.png (the suffix took the
    place of '.01'), the second over the first, while predictions.csv named that one file for both."""
    from breastdx.visualize.png import write_instance_labels

    first, second = np.ones((4, 4), np.int64), np.full((4, 4), 2, np.int64)
    paths = [write_instance_labels(first, tmp_path / "slide.01"), write_instance_labels(second, tmp_path / "slide.02")]
    assert [p.name for p in paths] == ["slide.01.png", "slide.02.png"]
    assert [int(np.asarray(Image.open(p)).max()) for p in paths] == [1, 2]
    first[0, 0] = 70000
    assert write_instance_labels(first, tmp_path / "slide.03").name == "slide.03.tif"


def test_wrap_text_cuts_at_spaces_and_inside_a_word_only_when_it_must():
    from breastdx.visualize.heatmap import wrap_text

    assert wrap_text("aa bb cc", len, 5) == ["aa bb", "cc"]
    assert wrap_text("aa bb cc", len, 8) == ["aa bb cc"]
    assert wrap_text("x abcdefghij y", len, 4) == ["x", "abcd", "efgh", "ij y"]
    assert wrap_text("", len, 4) == [""]


def test_legend_wraps_a_long_line_instead_of_cutting_it_off():
    # the PCam / BreastMNIST overlays (96 px x 3, 28 px) are narrower than their legend lines: the end of
    # "...; label normal_or_benign" and of the out-of-scope warning fell off the right edge
    from PIL import Image, ImageDraw, ImageFont

    from breastdx.visualize import with_legend

    lines = ["gradcampp of normal_or_benign (P = 0.909); label normal_or_benign",
             "OUT OF SCOPE: unlike this model's training images (scope_note)", "bmnist_1_y1.png"]
    out = with_legend(np.zeros((28, 28, 3), np.uint8), lines)
    text = out[28 + 20:]
    assert out.shape[1] == 240 and not (text[:, -4:] < 128).any()  # nothing drawn up to the right edge
    # every line drawn whole: as much ink as the lines drawn on a strip wide enough for them
    wide = Image.new("L", (1000, 13 * 4), 255)
    draw = ImageDraw.Draw(wide)
    for i, line in enumerate([*lines, "Research use only - not for diagnosis."]):
        draw.text((4, i * 13), line, fill=0, font=ImageFont.load_default())
    ink = int((np.asarray(wide) < 128).sum())
    assert abs(int((text.min(axis=2) < 128).sum()) - ink) <= 0.03 * ink
    assert text.shape[0] >= 13 * 6  # 4 lines, two of them wrapped
