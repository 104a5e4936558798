"""The augmentations aimed at other scanners (crop, gain field, lower resolution, Rician noise)."""

import dataclasses

import numpy as np
import torch

from breastdx.data.transforms import AugmentationConfig, ultrasound_augmentation

S = 64
OFF = dict(flip_prob=0.0, affine_prob=0.0, gamma_prob=0.0, gain_prob=0.0, noise_prob=0.0, blur_prob=0.0,
           crop_prob=0.0, gain_field_prob=0.0, low_res_prob=0.0, rician_prob=0.0, scanner=True)


def _sample():
    yy, xx = np.mgrid[:S, :S]
    image = (0.3 + 0.1 * (-1.0) ** (xx + yy))[None].astype(np.float32)  # the finest texture, never clipped
    mask = ((yy - 32) ** 2 + (xx - 32) ** 2 <= 10 ** 2)[None].astype(np.float32)
    return {"image": torch.from_numpy(image), "mask": torch.from_numpy(mask)}


def _run(seed=0, n=20, **on):
    aug = ultrasound_augmentation(S, dataclasses.replace(AugmentationConfig(), **{**OFF, **on}), seed=seed)
    return [aug(_sample()) for _ in range(n)]


def test_all_scanner_transforms_keep_shape_range_and_binary_mask_and_repeat_with_the_seed():
    on = dict(crop_prob=1.0, gain_field_prob=1.0, low_res_prob=1.0, rician_prob=1.0)
    a, b = _run(seed=3, **on), _run(seed=3, **on)
    for x, y in zip(a, b):
        assert x["image"].shape == (1, S, S) and x["mask"].shape == (1, S, S)
        assert set(np.unique(x["mask"].numpy())) <= {0.0, 1.0}
        assert 0.0 <= float(x["image"].min()) and float(x["image"].max()) <= 1.0
        assert torch.equal(x["image"], y["image"]) and torch.equal(x["mask"], y["mask"])
    assert not torch.equal(a[0]["image"], _run(seed=4, **on)[0]["image"])


def test_crop_zooms_image_and_mask_together():
    base_area = float(_sample()["mask"].sum())
    ratios = [float(o["mask"].sum()) / base_area for o in _run(crop_prob=1.0)]
    # a crop of 80-100% of each side, resized back: the centred lesion (never cut) grows by 1 to 1 / 0.8^2
    assert min(ratios) >= 0.97 and max(ratios) <= 1.5625 * 1.05 and max(ratios) > 1.1
    assert all(o["image"].shape == (1, S, S) for o in _run(crop_prob=1.0, n=3))


def test_crop_keeps_the_mask_on_the_image():
    """The scanner crop resized the mask with torch's "nearest" (floor(i * in / out)) and the image bilinear (pixel
    centres): the mask came out shifted by about half a pixel down and right of the image (0.44 px on average)."""
    from scipy import ndimage as ndi

    aug = ultrasound_augmentation(S, dataclasses.replace(AugmentationConfig(), **{**OFF, "crop_prob": 1.0}), seed=1)
    yy, xx = np.mgrid[:S, :S]
    offsets = []
    for cy, cx in ((24, 30), (32, 32), (40, 28), (28, 40), (36, 36)) * 8:
        lesion = ((np.abs(yy - cy) < 10) & (np.abs(xx - cx) < 9)).astype(np.float32)[None]
        out = aug({"image": torch.from_numpy(lesion.copy()), "mask": torch.from_numpy(lesion.copy())})
        image, mask = out["image"][0].numpy(), out["mask"][0].numpy()
        if mask[[0, -1]].any() or mask[:, [0, -1]].any():
            continue  # cut by the crop: the centres differ by the cut, not by the interpolation
        offsets.append(np.subtract(ndi.center_of_mass(mask), ndi.center_of_mass(image)))
    assert len(offsets) >= 20
    assert np.abs(np.mean(offsets, axis=0)).max() < 0.1


def test_gain_field_is_smooth_and_low_resolution_removes_fine_texture():
    src = _sample()["image"][0].numpy()
    for o in _run(gain_field_prob=1.0, n=5):
        ratio = o["image"][0].numpy() / src
        assert np.abs(np.diff(ratio, 2, axis=0)).max() < 0.01  # smooth: second differences tiny
        assert np.abs(ratio - 1).max() > 0.01  # but not the identity
        assert 0.25 < ratio.min() and ratio.max() < 4  # |log gain| <= 10 coefficients x 0.1 at most
        assert torch.equal(o["mask"], _sample()["mask"])  # intensity only
    detail = np.abs(np.diff(src, axis=1)).mean()
    low = [np.abs(np.diff(o["image"][0].numpy(), axis=1)).mean() for o in _run(low_res_prob=1.0, n=5)]
    assert max(low) < 0.8 * detail


def test_off_by_default():
    assert AugmentationConfig().scanner is False
    aug = ultrasound_augmentation(S, dataclasses.replace(AugmentationConfig(), **{**OFF, "scanner": False}), seed=0)
    out = aug(_sample())
    assert torch.equal(out["image"], _sample()["image"]) and torch.equal(out["mask"], _sample()["mask"])


def test_task_options_reach_the_augmentation():
    from types import SimpleNamespace

    from breastdx.data.image_sets import ultrasound_augmentation as from_config
    from breastdx.tasks.busi_cls import BusiClsConfig
    from breastdx.tasks.busi_seg import BusiSegConfig

    assert BusiSegConfig().scanner_augment is False and BusiClsConfig().scanner_augment is False
    plain = from_config(SimpleNamespace(image_size=S, seed=0, scanner_augment=False))
    scanner = from_config(SimpleNamespace(image_size=S, seed=0, scanner_augment=True))
    names = [type(t).__name__ for t in scanner.transforms]
    assert len(scanner.transforms) == len(plain.transforms) + 4
    assert {"OneOf", "RandBiasFieldd", "RandSimulateLowResolutiond", "RandRicianNoised"} <= set(names)
    assert len(from_config(SimpleNamespace(image_size=S, seed=0)).transforms) == len(plain.transforms)  # other tasks
