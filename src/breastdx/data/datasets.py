"""Torch datasets over preprocessed image arrays held in memory.

BUSI at 256 × 256 is about 50 MB as uint8, so every image is read, resized and cached once; an epoch then
costs only augmentation and the network. :class:`SegmentationDataset` serves ``(image, mask)`` pairs.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from breastdx.data.transforms import Preprocessing, resize_mask

log = logging.getLogger(__name__)


class SegmentationDataset(Dataset):
    """Images and binary masks, resized once and kept in memory as uint8 / bool.

    Each item is a dictionary:

    * ``"image"``: float32 tensor ``(C, S, S)`` in [0, 1];
    * ``"mask"``: float32 tensor ``(1, S, S)`` in {0, 1} (1 = lesion);
    * ``"has_lesion"``: bool tensor ``()``, whether the resized reference mask holds any lesion pixel;
    * ``"index"``: int tensor ``()``, the position in the dataset.

    Args:
        images: uint8 array ``(N, S, S)`` (gray) or ``(N, S, S, 3)`` (RGB), already resized.
        masks: bool array ``(N, S, S)``.
        preprocessing: How the images were made (gives ``S`` and the channels).
        names: ``N`` case names (for reports), default ``"0"``, ``"1"``, ...
        labels: ``N`` class names (``"normal"``, ``"benign"``, ``"malignant"``), or None.
        transform: A MONAI dictionary transform applied to ``{"image", "mask"}`` (augmentation), or None.

    Raises:
        ValueError: If the arrays' shapes disagree with each other or with ``preprocessing``.
    """

    def __init__(self, images: np.ndarray, masks: np.ndarray, preprocessing: Preprocessing,
                 names: Sequence[str] | None = None, labels: Sequence[str] | None = None,
                 transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None) -> None:
        s = preprocessing.image_size
        want_img = (s, s) if preprocessing.channels == 1 else (s, s, 3)
        if images.dtype != np.uint8 or images.shape[1:] != want_img:
            raise ValueError(f"SegmentationDataset: images must be uint8 of shape (N, {', '.join(map(str, want_img))}),"
                             f" got {images.dtype} {images.shape}.")
        if masks.shape != (images.shape[0], s, s):
            raise ValueError(f"SegmentationDataset: masks must have shape ({images.shape[0]}, {s}, {s}), "
                             f"got {masks.shape}.")
        n = images.shape[0]
        if names is not None and len(names) != n:
            raise ValueError(f"SegmentationDataset: {len(names)} names for {n} images.")
        if labels is not None and len(labels) != n:
            raise ValueError(f"SegmentationDataset: {len(labels)} labels for {n} images.")
        self.images = images
        self.masks = masks.astype(bool, copy=False)
        self.preprocessing = preprocessing
        self.names = list(names) if names is not None else [str(i) for i in range(n)]
        self.labels = list(labels) if labels is not None else None
        self.transform = transform

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        image = self.preprocessing.to_tensor(self.images[index])
        mask = torch.from_numpy(self.masks[index]).float().unsqueeze(0)
        item: dict[str, Any] = {"image": image, "mask": mask}
        if self.transform is not None:
            item = dict(self.transform(item))
        item["has_lesion"] = torch.tensor(bool(self.masks[index].any()))
        item["index"] = torch.tensor(index)
        return item

    def subset(self, indices: Sequence[int], transform: Callable | None = None) -> "SegmentationDataset":
        """A dataset of the given items (arrays are copied), with its own ``transform``."""
        idx = np.asarray(indices, dtype=int)
        return SegmentationDataset(self.images[idx], self.masks[idx], self.preprocessing,
                                   [self.names[i] for i in idx],
                                   [self.labels[i] for i in idx] if self.labels is not None else None, transform)

    @classmethod
    def from_arrays(cls, pairs: Sequence[tuple[np.ndarray, np.ndarray]], preprocessing: Preprocessing,
                    names: Sequence[str] | None = None, labels: Sequence[str] | None = None,
                    transform: Callable | None = None) -> "SegmentationDataset":
        """Resize full-size ``(image uint8 (H, W), mask bool (H, W))`` pairs and build the dataset.

        Raises:
            ValueError: If an image and its mask differ in size (the message names the case).
        """
        s = preprocessing.image_size
        channels = preprocessing.channels
        images = np.empty((len(pairs), s, s) + ((3,) if channels == 3 else ()), dtype=np.uint8)
        masks = np.empty((len(pairs), s, s), dtype=bool)
        for i, (image, mask) in enumerate(pairs):
            if image.shape[:2] != mask.shape:
                who = names[i] if names is not None else f"item {i}"
                raise ValueError(f"{who}: image of size {image.shape[:2]} but mask of size {mask.shape}.")
            images[i] = preprocessing.resize_image(image)
            masks[i] = resize_mask(mask, s)
        return cls(images, masks, preprocessing, names, labels, transform)

    @classmethod
    def from_busi(cls, cases: Sequence[Any], preprocessing: Preprocessing,
                  transform: Callable | None = None, hashes: list[str] | None = None,
                  phashes: list[int] | None = None) -> "SegmentationDataset":
        """Read BUSI cases (:class:`breastdx.data.busi.BusiCase`), resize and cache them.

        Args:
            cases: BUSI cases; multi-lesion masks are merged by :func:`breastdx.data.busi.load_case`.
            preprocessing: Target size and channels.
            transform: Augmentation, or None.
            hashes: When a list, the :func:`breastdx.data.checksum.image_hash` of each image as read (before
                resizing: what ``predict`` reads) is appended to it, in case order.
            phashes: When a list, the :func:`breastdx.data.duplicates.perceptual_hash` of each image as read.

        Raises:
            breastdx.data.images.ImageReadError: If a file cannot be read (the message names it).
        """
        from breastdx.data.busi import load_case
        from breastdx.data.checksum import image_hash

        s = preprocessing.image_size
        channels = preprocessing.channels
        images = np.empty((len(cases), s, s) + ((3,) if channels == 3 else ()), dtype=np.uint8)
        masks = np.empty((len(cases), s, s), dtype=bool)
        for i, case in enumerate(cases):
            image, mask = load_case(case, mode=preprocessing.mode)
            if hashes is not None:
                hashes.append(image_hash(image))
            if phashes is not None:
                from breastdx.data.duplicates import perceptual_hash

                phashes.append(perceptual_hash(image))
            images[i] = preprocessing.resize_image(image)
            masks[i] = resize_mask(mask, s)
        log.info("cached %d BUSI images at %dx%d", len(cases), s, s)
        return cls(images, masks, preprocessing, [c.name for c in cases], [c.label for c in cases], transform)
