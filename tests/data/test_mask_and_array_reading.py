"""Review 31 of the dataset readers: each test failed before its fix."""

from __future__ import annotations

import numpy as np
from PIL import Image

from breastdx.data.external import mask_peak, read_lesion_mask


def _save(tmp_path, name, array, mode):
    path = tmp_path / name
    Image.fromarray(array, mode).save(path)
    return path


def test_external_mask_with_transparent_background_is_its_lesion_only(tmp_path):
    """A mask drawn on a transparent background (RGBA, grey+alpha) is lesion where it is drawn, not everywhere:
    transparency was composited on white, so every transparent pixel was lesion."""
    rgba = np.zeros((20, 20, 4), np.uint8)
    rgba[5:10, 5:10] = (255, 0, 0, 255)  # a red (malignant) lesion, opaque, on transparent black
    la = np.zeros((20, 20, 2), np.uint8)
    la[5:10, 5:10] = (255, 255)
    alpha_only = np.zeros((20, 20, 4), np.uint8)
    alpha_only[5:10, 5:10, 3] = 255  # drawn as transparency: colour 0 everywhere, opaque on the lesion
    for name, array, mode in (("rgba.png", rgba, "RGBA"), ("la.png", la, "LA"), ("alpha.png", alpha_only, "RGBA")):
        path = _save(tmp_path, name, array, mode)
        mask = read_lesion_mask([path], (20, 20))
        assert int(mask.sum()) == 25, name
        assert mask[5:10, 5:10].all(), name
        assert mask_peak([path]) == 255, name
    empty = _save(tmp_path, "empty.png", np.zeros((20, 20, 4), np.uint8), "RGBA")  # fully transparent: no lesion
    assert not read_lesion_mask([empty], (20, 20)).any()
    assert mask_peak([empty]) == 0


def test_colour_array_item_read_gray_equals_the_same_image_read_from_a_png(tmp_path):
    """A colour image of an .npz read as gray was rounded from the float luma, while a PNG of it goes through
    Pillow's convert("L") (fixed point): 1 grey level apart on about 1 pixel in 2,000, so one image gave two inputs."""
    from breastdx.data.images import read_image

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (2, 64, 64, 3)).astype(np.uint8)
    npz = tmp_path / "colour.npz"
    np.savez(npz, test_images=images, test_labels=np.zeros((2, 1), np.uint8))
    png = _save(tmp_path, "one.png", images[1], "RGB")
    from_array = read_image(f"{npz}#test_images[000001]", mode="gray").array
    np.testing.assert_array_equal(from_array, read_image(png, mode="gray").array)
