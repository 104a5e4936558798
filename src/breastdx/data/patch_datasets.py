"""Training datasets over histopathology patches: cached at network size, with stain and dihedral augmentation.

:func:`cache_patches` reads every item of a :class:`~breastdx.data.patches.PatchSource` once, optionally
normalises its stains (Macenko, :class:`breastdx.data.stain.MacenkoNormalizer`), resizes it to the network
size and keeps it as ``uint8`` in a :class:`breastdx.data.classification.ClassificationDataset` (4,000
PCam patches at 64 x 64 take 49 MB), so that an epoch costs augmentation and the network only.

:class:`PatchAugmentation` is the training transform of such a dataset. Tissue on a slide has no
orientation, so each patch is turned by a random element of the dihedral group D4 (one of 4 rotations by
90 degrees, mirrored or not: 8 poses, each with probability 1/8), which loses no pixel; then its stains are
jittered in HED space (:class:`breastdx.data.stain.HEDJitter`, Tellez et al. 2018), which mimics the
variation of H&E staining between laboratories and slides. Both draw from generators reseeded per
data-loader worker (:meth:`PatchAugmentation.set_random_state`, called by MONAI's ``DataLoader`` from the
loader's seeded generator), so that runs repeat and workers draw different augmentations.

References:
    Veeling, B. S. et al. (2018). Rotation equivariant CNNs for digital pathology. MICCAI,
    doi:10.1007/978-3-030-00934-2_24 (the symmetry of patches under D4).
    Tellez, D. et al. (2019). Quantifying the effects of data augmentation and stain color normalization in
    convolutional neural networks for computational pathology. Med Image Anal 58:101544.
    doi:10.1016/j.media.2019.101544
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Sequence

import numpy as np
import torch

from breastdx.data.classification import ClassificationDataset
from breastdx.data.patches import PatchSource
from breastdx.data.transforms import Preprocessing

log = logging.getLogger(__name__)


class PatchAugmentation:
    """Random D4 pose (rotation by k x 90 degrees, optional mirror) and HED stain jitter of a patch.

    Follows the transform protocol of :class:`~breastdx.data.classification.ClassificationDataset`: it is
    called on ``{"image": float tensor (3, S, S) in [0, 1], ...}`` and returns the dictionary with the
    image replaced (other keys, such as an all-zero ``"mask"``, are turned with it).

    Args:
        dihedral: Draw one of the 8 poses of the dihedral group uniformly.
        hed_sigma: Half-range of the HED stain factors, ``alpha ~ U(1 - sigma, 1 + sigma)`` (0: no jitter).
        hed_bias: Half-range of the HED optical-density shifts, ``beta ~ U(-bias, bias)``.
        hed_prob: Probability of jittering a patch.
        seed: Seed of the generators.

    Shape:
        ``image``: ``(3, S, S)`` in and out; other tensors ``(C, S, S)`` are turned alike.

    Raises:
        ValueError: For stain parameters out of range (see :class:`~breastdx.data.stain.HEDJitter`).
    """

    def __init__(self, dihedral: bool = True, hed_sigma: float = 0.1, hed_bias: float = 0.1, hed_prob: float = 1.0,
                 seed: int = 0) -> None:
        from breastdx.data.stain import HEDJitter

        self.dihedral = bool(dihedral)
        self.jitter = (HEDJitter(sigma=hed_sigma, bias=hed_bias, prob=hed_prob, channel_axis=0, seed=seed)
                       if hed_sigma > 0 or hed_bias > 0 else None)
        self.set_random_state(seed)

    def set_random_state(self, seed: int) -> "PatchAugmentation":
        """Reseed both generators (pose and stain) from ``seed``; returns ``self``.

        MONAI's ``DataLoader`` calls this in every worker (and once without workers) with a seed drawn from
        the loader's seeded generator.
        """
        pose_seed, stain_seed = np.random.SeedSequence(int(seed)).generate_state(2)
        self.rng = np.random.default_rng(int(pose_seed))
        if self.jitter is not None:
            self.jitter.set_random_state(int(stain_seed))
        return self

    def __call__(self, item: dict[str, Any]) -> dict[str, Any]:
        out = dict(item)
        if self.dihedral:
            k = int(self.rng.integers(4))
            mirror = bool(self.rng.integers(2))
            for key, value in item.items():
                if isinstance(value, torch.Tensor) and value.ndim == 3:
                    t = torch.rot90(value, k, dims=(1, 2)) if k else value
                    out[key] = (t.flip(-1) if mirror else t).contiguous()
        if self.jitter is not None:
            out["image"] = self.jitter(torch.as_tensor(out["image"], dtype=torch.float32))
        return out

    def __repr__(self) -> str:
        return f"PatchAugmentation(dihedral={self.dihedral}, jitter={self.jitter!r})"


def cache_patches(source: PatchSource, preprocessing: Preprocessing, *,
                  normalizer: Callable[[np.ndarray], np.ndarray] | None = None,
                  transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None) -> ClassificationDataset:
    """Read every patch of ``source``, (stain-normalise,) resize and cache it as a classification dataset.

    Args:
        source: The patches (any reader: PCam folders or HDF5, IDC, BreakHis, or a subset of one).
        preprocessing: Network size; its mode must be ``"rgb"``.
        normalizer: A stain normaliser ``uint8 (H, W, 3) -> uint8 (H, W, 3)`` applied before resizing (e.g. a
            fitted :class:`~breastdx.data.stain.MacenkoNormalizer`), or None.
        transform: The training augmentation (e.g. :class:`PatchAugmentation`), or None.

    Returns:
        A :class:`~breastdx.data.classification.ClassificationDataset` with the source's labels, class
        names and ids (as ``names``), images ``uint8`` ``(N, S, S, 3)``.

    Raises:
        ValueError: If ``preprocessing`` is not RGB.
        breastdx.data.images.ImageReadError: If a patch cannot be decoded (the message names its file).
    """
    if preprocessing.mode != "rgb":
        raise ValueError(f"cache_patches: patches are RGB; preprocessing.mode must be 'rgb', got "
                         f"{preprocessing.mode!r}.")
    n = len(source)
    s = preprocessing.image_size
    images = np.empty((n, s, s, 3), dtype=np.uint8)
    for i in range(n):
        image, _ = source.get(i)
        if normalizer is not None:
            image = normalizer(image)
        images[i] = preprocessing.resize_image(image)
    log.info("cached %d %s patches at %dx%d%s", n, source.name, s, s,
             " (stain-normalised)" if normalizer is not None else "")
    return ClassificationDataset(images, source.labels, preprocessing, source.class_names,
                                 names=list(source.ids), transform=transform)


def pick_stain_target(source: PatchSource, candidates: Sequence[int] | None = None, min_tissue: float = 0.5) -> int:
    """Index of a reference patch for Macenko normalisation: the first candidate mostly covered by tissue.

    A patch qualifies when at least ``min_tissue`` of its pixels are stained (optical density above the
    normaliser's ``beta`` in every channel, :meth:`~breastdx.data.stain.MacenkoNormalizer.tissue_pixels`);
    among candidates in order, the first that qualifies is taken, so the choice is reproducible.

    Args:
        source: Patches, usually the training split.
        candidates: Indices to try, in order; default every index.
        min_tissue: Smallest stained fraction of the pixels.

    Returns:
        The index in ``source``.

    Raises:
        ValueError: If no candidate has enough tissue.
    """
    from breastdx.data.stain import MacenkoNormalizer

    probe = MacenkoNormalizer()
    order = range(len(source)) if candidates is None else candidates
    for i in order:
        image, _ = source.get(int(i))
        if probe.tissue_pixels(image) >= min_tissue * image.shape[0] * image.shape[1]:
            return int(i)
    raise ValueError(f"{source.name}: no patch with at least {min_tissue:.0%} stained pixels to serve as the Macenko "
                     f"target; pass a target image (--stain-target).")
