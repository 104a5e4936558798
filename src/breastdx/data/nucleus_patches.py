"""Training targets and patches for nucleus instance segmentation (three classes: background, interior, boundary).

A nucleus instance mask becomes a class map: 0 background, 1 nucleus interior, 2 nucleus boundary (the pixels of a
nucleus within ``boundary_width`` pixels of another label or of the background). A network that separates interiors
from boundaries splits touching nuclei: the interiors are the seeds of a watershed
(:mod:`breastdx.inference.nuclei`). Training patches are drawn at random positions of the training region of each
tile, flipped and rotated by multiples of 90°, with stain (HED) jitter and brightness / contrast jitter.

References:
    Kumar, N. et al. (2017). A dataset and a technique for generalized nuclear segmentation for computational
    pathology. IEEE Trans Med Imaging 36(7):1550-1560. doi:10.1109/TMI.2017.2677499 (the three-class formulation)
    Tellez, D. et al. (2019). Quantifying the effects of data augmentation and stain color normalization in
    convolutional neural networks for computational pathology. Med Image Anal 58:101544.
    doi:10.1016/j.media.2019.101544
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

CLASS_NAMES = ("background", "interior", "boundary")


def nucleus_targets(labels: np.ndarray, boundary_width: int = 2) -> np.ndarray:
    """Class map of an instance mask: 0 background, 1 interior, 2 boundary, uint8 ``(H, W)``.

    Args:
        labels: Instance labels, int ``(H, W)``, 0 background.
        boundary_width: Width of the boundary band inside each nucleus, pixels (>= 1).
    """
    from scipy import ndimage as ndi
    from skimage.segmentation import find_boundaries

    labels = np.asarray(labels)
    edge = find_boundaries(labels, connectivity=1, mode="inner")
    if boundary_width > 1:
        edge = ndi.binary_dilation(edge, iterations=boundary_width - 1)
    out = np.zeros(labels.shape, np.uint8)
    fg = labels > 0
    out[fg] = 1
    out[fg & edge] = 2
    return out


def nucleus_distance(labels: np.ndarray) -> np.ndarray:
    """Distance map of an instance mask, each nucleus scaled to its own maximum: float32 ``(H, W)`` in [0, 1].

    Inside a nucleus, a pixel's value is 1 + its Euclidean distance (pixels) to the nearest pixel of the nucleus's
    inner outline (:func:`skimage.segmentation.find_boundaries`, ``mode="inner"``: where it meets the background or
    another nucleus), divided by the largest such value in that nucleus; so each nucleus peaks at 1 at its centre,
    whatever its size, touching nuclei are separated by a valley, and the background is 0. The target of the
    optional distance output (``breastdx train monuseg --distance-weight``), after the distance maps of DIST
    (Naylor et al. 2019) and HoVer-Net (Graham et al. 2019), normalised per nucleus as HoVer-Net's are.

    Args:
        labels: Instance labels, int ``(H, W)``, 0 background.

    References:
        Naylor, P. et al. (2019). Segmentation of nuclei in histopathology images by deep regression of the distance
        map. IEEE Trans Med Imaging 38(2):448-459. doi:10.1109/TMI.2018.2865709
        Graham, S. et al. (2019). HoVer-Net. Med Image Anal 58:101563. doi:10.1016/j.media.2019.101563
    """
    from scipy import ndimage as ndi
    from skimage.segmentation import find_boundaries

    labels = np.asarray(labels)
    fg = labels > 0
    inner = find_boundaries(labels, connectivity=1, mode="inner")
    d = np.where(fg, ndi.distance_transform_edt(fg & ~inner) + 1.0, 0.0)
    n = int(labels.max()) if labels.size else 0
    if n == 0:
        return np.zeros(labels.shape, np.float32)
    peak = np.zeros(n + 1)
    peak[1:] = ndi.maximum(d, labels, np.arange(1, n + 1))
    peak[0] = 1.0
    return (d / np.where(peak > 0, peak, 1.0)[labels]).astype(np.float32)


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """RGB uint8 ``(H, W, 3)`` as float32 ``(3, H, W)`` in [0, 1] (the network input)."""
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float().div_(255.0)


@dataclass(frozen=True)
class PatchAugment:
    """Augmentation of training patches.

    Attributes:
        hed_sigma: Half-range of the HED stain factor (:class:`breastdx.data.stain.HEDJitter`).
        hed_bias: Half-range of the HED optical-density shift.
        brightness: Half-range of an additive brightness shift, fraction of full scale.
        contrast: Half-range of a multiplicative contrast factor around the patch mean.
        blur_sigma: Largest standard deviation, pixels, of a Gaussian blur given to half the patches (a sigma drawn
            uniformly in ``[0, blur_sigma]``; 0: none): focus and section-thickness differences, such as those of
            frozen sections.
        scale: Half-range of a zoom factor (``[1 - scale, 1 + scale]``; 0: none): a square of side
            ``round(size / factor)`` is resized to the patch, the image bilinear and the class map nearest, so
            nuclei look larger or smaller, as across scanners and magnification calibrations.
        pale_nuclei: Largest fading of the nuclei (0: none): in half the patches, the haematoxylin optical density
            of the nucleus pixels (interior and boundary, edges softened by a Gaussian of sigma 1 px) is multiplied
            by a factor drawn uniformly in ``[1 - pale_nuclei, 1]``, so that pale, vesicular nuclei with little
            chromatin, which the networks miss most on unseen sites, are seen in training; the background is
            left as it is.
    """

    hed_sigma: float = 0.1
    hed_bias: float = 0.05
    brightness: float = 0.08
    contrast: float = 0.15
    blur_sigma: float = 0.0
    scale: float = 0.0
    pale_nuclei: float = 0.0


class NucleusPatches(torch.utils.data.Dataset):
    """Random square patches of tiles with their class maps, augmented; ``n`` items per epoch.

    Args:
        images: RGB tiles, uint8 ``(H, W, 3)`` each.
        targets: Class maps (:func:`nucleus_targets`), uint8 ``(H, W)`` each.
        size: Patch side, pixels.
        n: Items per epoch.
        rows: ``(first, stop)`` rows of each tile patches may come from (the rest is held out), or None for all.
        augment: The augmentation, or None.
        seed: Seed of positions and augmentation (item ``i`` of epoch ``e`` is reproducible; with data-loader
            workers, each epoch is a fresh draw, the same from run to run with the same number of workers).
        distances: Distance maps (:func:`nucleus_distance`), float32 ``(H, W)`` each, cut, turned and resized with
            the class maps; or None.

    Shape:
        An item is ``{"image": float32 (3, size, size) in [0, 1], "mask": int64 (1, size, size)}``, with
        ``"distance": float32 (1, size, size)`` in [0, 1] when ``distances`` are given.

    Raises:
        ValueError: If the numbers of images, class maps and distance maps differ, or a patch does not fit.
    """

    def __init__(self, images: Sequence[np.ndarray], targets: Sequence[np.ndarray], size: int, n: int,
                 rows: tuple[int, int] | None = None, augment: PatchAugment | None = PatchAugment(),
                 seed: int = 0, distances: Sequence[np.ndarray] | None = None) -> None:
        if not images or len(images) != len(targets) or (distances is not None and len(distances) != len(images)):
            raise ValueError(f"NucleusPatches needs as many images as class maps (and distance maps), got "
                             f"{len(images)}, {len(targets)} and {'none' if distances is None else len(distances)}.")
        self.images, self.targets, self.size, self.n = list(images), list(targets), int(size), int(n)
        self.distances = None if distances is None else list(distances)
        self.rows, self.augment, self.seed, self.epoch = rows, augment, int(seed), 0
        for im in self.images:
            first, stop = rows or (0, im.shape[0])
            if stop - first < size or im.shape[1] < size:
                raise ValueError(f"NucleusPatches: a {size} px patch does not fit rows {first}-{stop} of a "
                                 f"{im.shape[1]}x{im.shape[0]} tile.")
        self._calls = 0

    def __len__(self) -> int:
        return self.n

    def resume_state(self) -> dict[str, int]:
        """What decides the next draws: the patches drawn so far (with the seed, which the config holds); kept in
        a training's last checkpoint (:mod:`breastdx.training.random_state`)."""
        return {"calls": self._calls}

    def restore_resume_state(self, state: dict[str, int]) -> None:
        """Go on from :meth:`resume_state` (a resumed training)."""
        self._calls = int(state["calls"])

    def _draw_key(self, i: int) -> list[int]:
        """The seed of item ``i``'s draw: ``[seed, epoch, i]`` in the main process, where the count of draws gives
        the epoch. A data-loader worker counts only its own share of the draws (a copy of the dataset each), so
        that count gave the same epoch, hence the same patches, for ``num_workers`` epochs in a row; a worker's
        draw is keyed by the worker and its own count instead: fresh every time, and the same from run to run
        with the same number of workers (batches go to the workers in turn)."""
        worker = torch.utils.data.get_worker_info()
        if worker is None:
            return [self.seed, self._calls // self.n, i]
        return [self.seed, 1 << 20, worker.num_workers, worker.id, self._calls]

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        from breastdx.data.stain import HEDJitter

        rng = np.random.default_rng(self._draw_key(i))
        self._calls += 1
        k = int(rng.integers(len(self.images)))
        im, tg = self.images[k], self.targets[k]
        first, stop = self.rows or (0, im.shape[0])
        a = self.augment
        side = self.size
        if a is not None and a.scale > 0:
            side = int(round(self.size / rng.uniform(1 - a.scale, 1 + a.scale)))
            side = min(max(side, 8), stop - first, im.shape[1])
        r = int(rng.integers(first, stop - side + 1))
        c = int(rng.integers(0, im.shape[1] - side + 1))
        x = im[r:r + side, c:c + side]
        y = tg[r:r + side, c:c + side]
        d = None if self.distances is None else self.distances[k][r:r + side, c:c + side]
        if side != self.size:
            x, y = _resize_pair(x, y, self.size)
            if d is not None:
                from skimage.transform import resize

                d = resize(d, (self.size, self.size), order=1, preserve_range=True).astype(np.float32)
        rot, flip = int(rng.integers(4)), bool(rng.integers(2))
        x, y = np.rot90(x, rot), np.rot90(y, rot)
        d = None if d is None else np.rot90(d, rot)
        if flip:
            x, y = x[:, ::-1], y[:, ::-1]
            d = None if d is None else d[:, ::-1]
        x = np.ascontiguousarray(x)
        if a is not None:
            jitter = HEDJitter(sigma=a.hed_sigma, bias=a.hed_bias, seed=int(rng.integers(2 ** 31)))
            xf = x.astype(np.float32) / 255.0
            if a.pale_nuclei > 0 and rng.random() < 0.5:  # no draw without it: the default stream is unchanged
                xf = fade_nuclei(xf, y > 0, rng.uniform(1 - a.pale_nuclei, 1))
            xf = jitter(xf)
            gain = rng.uniform(1 - a.contrast, 1 + a.contrast)
            xf = (xf - xf.mean()) * gain + xf.mean() + rng.uniform(-a.brightness, a.brightness)
            if a.blur_sigma > 0 and rng.random() < 0.5:
                from scipy.ndimage import gaussian_filter

                xf = gaussian_filter(xf, sigma=(rng.uniform(0, a.blur_sigma),) * 2 + (0,), mode="reflect")
            x = (np.clip(xf, 0, 1) * 255).round().astype(np.uint8)
        return _item(x, y, d)


def fade_nuclei(image: np.ndarray, nuclei: np.ndarray, factor: float) -> np.ndarray:
    """Multiply the haematoxylin optical density of the nucleus pixels by ``factor`` (H&E colour deconvolution,
    Ruifrok & Johnston 2001, doi:10.1097/00000478-200102000-00004, as :func:`skimage.color.rgb2hed`), and the
    residual (DAB) channel's with it; only positive densities are scaled, eosin is kept.

    Args:
        image: RGB float ``(H, W, 3)`` in [0, 1].
        nuclei: Boolean ``(H, W)``, True on nucleus pixels; its edges are softened by a Gaussian of sigma 1 px.
        factor: Haematoxylin factor inside the nuclei, in [0, 1] (1: unchanged).

    Returns:
        The image, float32 ``(H, W, 3)`` in [0, 1]; pixels away from the nuclei are unchanged.
    """
    from scipy.ndimage import gaussian_filter

    from breastdx.data.stain import hed_od_to_rgb, rgb_to_hed_od

    weight = gaussian_filter(nuclei.astype(np.float64), 1.0)
    hed = rgb_to_hed_od(np.asarray(image, np.float64))
    scale = 1.0 - (1.0 - float(factor)) * weight
    for c in (0, 2):  # haematoxylin, and the residual channel, which is nuclear there too
        hed[..., c] = np.where(hed[..., c] > 0, hed[..., c] * scale, hed[..., c])
    out = np.clip(hed_od_to_rgb(hed), 0, 1).astype(np.float32)
    far = weight < 1e-6
    out[far] = image[far]
    return out


def _item(x: np.ndarray, y: np.ndarray, d: np.ndarray | None) -> dict[str, torch.Tensor]:
    """A dataset item: the image as the network input, the class map, and the distance map when there is one."""
    item = {"image": to_tensor(x), "mask": torch.from_numpy(np.ascontiguousarray(y)).long()[None]}
    if d is not None:
        item["distance"] = torch.from_numpy(np.ascontiguousarray(d, dtype=np.float32))[None]
    return item


def _resize_pair(image: np.ndarray, target: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """A square RGB uint8 crop ``(s, s, 3)`` and its class map ``(s, s)`` resized to ``(size, size)``: the image
    bilinear (anti-aliased when shrinking), the class map nearest, so that no class value is invented."""
    from skimage.transform import resize

    x = resize(image, (size, size, 3), order=1, preserve_range=True, anti_aliasing=image.shape[0] > size)
    y = resize(target, (size, size), order=0, preserve_range=True, anti_aliasing=False)
    return np.clip(x, 0, 255).round().astype(np.uint8), y.astype(target.dtype)


class NucleusCrops(torch.utils.data.Dataset):
    """Fixed crops (validation): ``crops`` are ``(tile index, row, col, height, width)``; items as
    :class:`NucleusPatches` (with ``distances``, their distance maps too), without augmentation."""

    def __init__(self, images: Sequence[np.ndarray], targets: Sequence[np.ndarray],
                 crops: Sequence[tuple[int, int, int, int, int]],
                 distances: Sequence[np.ndarray] | None = None) -> None:
        self.images, self.targets, self.crops = list(images), list(targets), list(crops)
        self.distances = None if distances is None else list(distances)

    def __len__(self) -> int:
        return len(self.crops)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        k, r, c, h, w = self.crops[i]
        x = self.images[k][r:r + h, c:c + w]
        y = self.targets[k][r:r + h, c:c + w]
        return _item(x, y, None if self.distances is None else self.distances[k][r:r + h, c:c + w])
