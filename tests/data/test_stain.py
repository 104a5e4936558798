"""HED colour jitter (identity at zero strength, golden values, types and layouts, seeding) and Macenko
normalisation on synthetic H&E-like images made from known stain vectors (Beer-Lambert)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from breastdx.data.stain import HEDJitter, MacenkoNormalizer, hed_od_to_rgb, rgb_to_hed_od

H = np.array([0.65, 0.70, 0.29])
E = np.array([0.07, 0.99, 0.11])


def _unit(v):
    return v / np.linalg.norm(v)


def _he_image(h=H, e=E, shape=(37, 41), seed=0, io=240.0):
    """An H&E-like uint8 image: I = io * exp(-(c_h h + c_e e)) - 1, with pure-H, pure-E and mixed pixels."""
    rng = np.random.default_rng(seed)
    n = shape[0] * shape[1]
    c = rng.uniform(0.2, 1.5, size=(n, 2))
    third = n // 3
    c[:third, 1] = 0.0            # pure haematoxylin
    c[third:2 * third, 0] = 0.0   # pure eosin
    od = c @ np.stack([_unit(h), _unit(e)])
    rgb = io * np.exp(-od) - 1.0
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8).reshape(shape + (3,))


# ----------------------------------------------------------------------------------------------------
# HED jitter


def test_zero_strength_is_identity_uint8_and_float():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(33, 34, 3), dtype=np.uint8)
    image[0, 0] = 0
    image[0, 1] = 255
    out = HEDJitter(sigma=0.0, bias=0.0, seed=1)(image)
    assert out.dtype == np.uint8 and out.shape == image.shape
    np.testing.assert_array_equal(out, image)
    f = image.astype(np.float32) / 255
    out_f = HEDJitter(sigma=0.0, bias=0.0)(f)
    assert out_f.dtype == np.float32
    np.testing.assert_allclose(out_f, f, atol=1e-6)


def test_unmixing_is_exactly_invertible():
    rgb = np.random.default_rng(2).uniform(0.01, 1.0, size=(17, 19, 3))
    np.testing.assert_allclose(hed_od_to_rgb(rgb_to_hed_od(rgb)), rgb, rtol=1e-10)


def test_golden_haematoxylin_shift_of_white():
    # white has zero optical density; adding 1 to H gives exp(-rgb_from_hed[0]) = exp(-(0.65, 0.70, 0.29))
    white = np.full((2, 3, 3), 255, np.uint8)
    out = HEDJitter().apply(white, alpha=np.ones(3), beta=np.array([1.0, 0.0, 0.0]))
    np.testing.assert_array_equal(out[0, 0], [133, 127, 191])  # 255 * (0.52205, 0.49659, 0.74826), rounded


def test_layouts_types_and_seeding():
    image = _he_image()
    a = HEDJitter(seed=7)(image)
    b = HEDJitter(seed=7)(image)
    c = HEDJitter(seed=8)(image)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert a.shape == image.shape and a.dtype == np.uint8
    assert 0 < np.abs(a.astype(int) - image).mean() < 20  # a light jitter
    chw = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float() / 255
    t = HEDJitter(seed=7, channel_axis=0)(chw)
    assert isinstance(t, torch.Tensor) and t.dtype == torch.float32 and tuple(t.shape) == (3, 37, 41)
    np.testing.assert_allclose(t.numpy().transpose(1, 2, 0) * 255, a, atol=0.51)
    j = HEDJitter(seed=0, prob=0.0)
    assert j(image) is image
    j.set_random_state(7)
    np.testing.assert_array_equal(HEDJitter(seed=7).draw()[0], j.draw()[0])


@pytest.mark.parametrize("kwargs, match", [
    ({"sigma": 1.0}, "sigma must be in"), ({"bias": -0.1}, "bias must be >= 0"), ({"prob": 2}, "prob must be"),
    ({"channel_axis": 1}, "channel_axis must be"),
])
def test_jitter_parameters_are_checked(kwargs, match):
    with pytest.raises(ValueError, match=match):
        HEDJitter(**kwargs)


def test_jitter_refuses_wrong_images():
    with pytest.raises(ValueError, match=r"3 channels on axis -1"):
        HEDJitter()(np.zeros((5, 6), np.uint8))
    with pytest.raises(ValueError, match=r"uint8 image or a float image"):
        HEDJitter()(np.zeros((5, 6, 3), np.int32))


# ----------------------------------------------------------------------------------------------------
# Macenko


def test_macenko_recovers_the_stain_vectors():
    m = MacenkoNormalizer().fit(_he_image())
    s = m.stain_matrix
    assert s.shape == (3, 2) and m.max_concentrations.shape == (2,)
    assert float(_unit(s[:, 0]) @ _unit(H)) > 0.99  # column 0: haematoxylin (cosine of H and E: 0.77)
    assert float(_unit(s[:, 1]) @ _unit(E)) > 0.99  # column 1: eosin


def test_macenko_normalising_the_target_to_itself_is_near_identity():
    target = _he_image()
    out = MacenkoNormalizer().fit(target)(target)
    assert out.dtype == np.uint8 and out.shape == target.shape
    diff = np.abs(out.astype(int) - target)
    assert diff.mean() < 1.5 and np.percentile(diff, 99) <= 3


def test_macenko_output_has_the_target_stains():
    target = _he_image(seed=1)
    source = _he_image(h=np.array([0.50, 0.80, 0.33]), e=np.array([0.20, 0.95, 0.25]), seed=2)
    out = MacenkoNormalizer().fit(target)(source)
    refit = MacenkoNormalizer().fit(out).stain_matrix
    want = MacenkoNormalizer().fit(target).stain_matrix
    for k in range(2):
        assert float(_unit(refit[:, k]) @ _unit(want[:, k])) > 0.99


def test_macenko_blank_patches_and_errors():
    m = MacenkoNormalizer()
    blank = np.full((20, 20, 3), 245, np.uint8)
    with pytest.raises(RuntimeError, match="call fit"):
        m(blank)
    with pytest.raises(ValueError, match=r"target has 0 stained pixels"):
        m.fit(blank)
    m.fit(_he_image())
    np.testing.assert_array_equal(m(blank), blank)  # too little tissue: unchanged
    with pytest.raises(ValueError, match=r"uint8 RGB image of shape \(H, W, 3\)"):
        m(np.zeros((4, 4), np.uint8))


def test_macenko_reference_round_trips_through_json(tmp_path):
    import json

    from breastdx.data.stain import load_stain_normalizer
    from breastdx.models.saved import ModelFolderError

    target, source = _he_image(seed=1), _he_image(h=np.array([0.50, 0.80, 0.33]), seed=2)
    fitted = MacenkoNormalizer().fit(target)
    record = json.loads(json.dumps(fitted.reference()))  # as meta.json stores it
    assert np.array(record["stain_matrix"]).shape == (3, 2) and len(record["max_concentrations"]) == 2
    rebuilt = load_stain_normalizer(tmp_path, {"stain_normalisation": {"method": "macenko", **record}})
    np.testing.assert_array_equal(rebuilt(source), fitted(source))  # no image in the folder, same output
    with pytest.raises(RuntimeError, match="call fit"):
        MacenkoNormalizer().reference()
    with pytest.raises(ModelFolderError, match="3 x 2 stain_matrix"):
        load_stain_normalizer(tmp_path, {"stain_normalisation": {"method": "macenko", "stain_matrix": [[1, 2]],
                                                                 "max_concentrations": [1, 1]}})
    with pytest.raises(ModelFolderError, match="stain_target.png"):  # neither numbers nor an image
        load_stain_normalizer(tmp_path, {"stain_normalisation": {"method": "macenko"}})


def test_macenko_leaves_black_pixels_out_of_the_stain_estimate_and_as_they_are():
    """A black area (a scanner's padding, a painted-out region) is no stain: its optical density set the stains of
    the whole tile, and the tissue beside it came out wrong (monuseg then found no nucleus in it)."""
    target = _he_image(seed=1)
    source = _he_image(h=np.array([0.50, 0.80, 0.33]), e=np.array([0.20, 0.95, 0.25]), seed=2, shape=(40, 40))
    m = MacenkoNormalizer().fit(target)
    alone = m(source)
    padded = np.concatenate([np.zeros((40, 40, 3), np.uint8), source], axis=0)  # top half black
    out = m(padded)
    np.testing.assert_array_equal(out[:40], 0)
    assert np.abs(out[40:].astype(int) - alone).mean() < 2.0  # the tissue normalised as without the black half
