"""Torch datasets for image classification, held in memory at network size, and class-imbalance helpers.

Images are read and resized once (:class:`ClassificationDataset` caches them as ``uint8``), so an epoch
costs only augmentation and the network: BUSI at 128 x 128 is 13 MB. Lesion masks are optional; the
multi-task network (:mod:`breastdx.models.multitask`) uses them as a second target.

Class imbalance (BUSI: 133 normal, 437 benign, 210 malignant) is handled by weighting the loss
(:func:`class_weights`) or by drawing training items with probabilities inverse to their class size
(:func:`balanced_sampler`).
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, WeightedRandomSampler

from breastdx.data.transforms import Preprocessing, cut_source, resize_mask, resize_uint8

log = logging.getLogger(__name__)

IMBALANCE_MODES = ("weighted_loss", "sampler", "none")
"""How training handles unequal class sizes."""


class ClassificationDataset(Dataset):
    """Images with class labels (and optionally lesion masks), resized once and kept as ``uint8`` / ``bool``.

    Each item is a dictionary:

    * ``"image"``: float32 tensor ``(C, S, S)`` in [0, 1];
    * ``"label"``: int64 tensor ``()``, the class index;
    * ``"mask"``: float32 tensor ``(1, S, S)`` in {0, 1} (only when the dataset has masks);
    * ``"index"``: int64 tensor ``()``, the position in the dataset.

    Args:
        images: uint8 array ``(N, S, S)`` (gray) or ``(N, S, S, 3)`` (RGB), already at network size.
        labels: Class indices, integers ``(N,)`` in ``[0, len(class_names))``.
        preprocessing: How the images were made (gives ``S`` and the channels).
        class_names: Class names in index order.
        masks: bool array ``(N, S, S)``, or None.
        names: ``N`` case names (for reports), default ``"0"``, ``"1"``, ...
        transform: A MONAI dictionary transform of ``{"image", "mask"}`` (augmentation), or None. Without
            masks, an empty mask is passed through the transform and dropped afterwards, so the same
            ultrasound augmentation (:func:`breastdx.data.transforms.ultrasound_augmentation`) serves both.

    Raises:
        ValueError: If shapes disagree with each other or with ``preprocessing``, or a label is out of range.
    """

    def __init__(self, images: np.ndarray, labels: Sequence[int] | np.ndarray, preprocessing: Preprocessing,
                 class_names: Sequence[str], masks: np.ndarray | None = None, names: Sequence[str] | None = None,
                 transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None) -> None:
        s = preprocessing.image_size
        want = (s, s) if preprocessing.channels == 1 else (s, s, 3)
        images = np.asarray(images)
        if images.dtype != np.uint8 or images.shape[1:] != want:
            raise ValueError(f"ClassificationDataset: images must be uint8 of shape (N, {', '.join(map(str, want))}), "
                             f"got {images.dtype} {images.shape}.")
        n = images.shape[0]
        y = np.asarray(labels)
        if y.shape != (n,) or (n and not np.issubdtype(y.dtype, np.integer)):
            raise ValueError(f"ClassificationDataset: labels must be {n} integers, got {y.dtype} {y.shape}.")
        k = len(class_names)
        if n and (y.min() < 0 or y.max() >= k):
            raise ValueError(f"ClassificationDataset: labels must be in [0, {k - 1}] for classes "
                             f"{', '.join(class_names)}; got values {sorted(set(y.tolist()))}.")
        if masks is not None and np.asarray(masks).shape != (n, s, s):
            raise ValueError(f"ClassificationDataset: masks must have shape ({n}, {s}, {s}), got "
                             f"{np.asarray(masks).shape}.")
        if names is not None and len(names) != n:
            raise ValueError(f"ClassificationDataset: {len(names)} names for {n} images.")
        self.images = images
        self.labels = y.astype(np.int64)
        self.preprocessing = preprocessing
        self.class_names = tuple(class_names)
        self.masks = None if masks is None else np.asarray(masks).astype(bool, copy=False)
        self.names = list(names) if names is not None else [str(i) for i in range(n)]
        self.transform = transform

    @property
    def has_masks(self) -> bool:
        """Whether items carry a ``"mask"``."""
        return self.masks is not None

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        image = self.preprocessing.to_tensor(self.images[index])
        s = self.preprocessing.image_size
        if self.masks is not None:
            mask = torch.from_numpy(self.masks[index]).float().unsqueeze(0)
        else:
            mask = None
        if self.transform is not None:
            item = dict(self.transform({"image": image, "mask": mask if mask is not None else torch.zeros(1, s, s)}))
            image = item["image"]
            mask = item["mask"] if mask is not None else None
        out: dict[str, Any] = {"image": torch.as_tensor(image, dtype=torch.float32),
                               "label": torch.tensor(int(self.labels[index]), dtype=torch.int64),
                               "index": torch.tensor(index, dtype=torch.int64)}
        if mask is not None:
            out["mask"] = torch.as_tensor(mask, dtype=torch.float32)
        return out

    def class_counts(self) -> np.ndarray:
        """Items per class, ``int64`` ``(K,)``."""
        return np.bincount(self.labels, minlength=len(self.class_names)).astype(np.int64)

    def with_transform(self, transform: Callable | None) -> "ClassificationDataset":
        """The same cached arrays (not copied) with another ``transform``."""
        return ClassificationDataset(self.images, self.labels, self.preprocessing, self.class_names, self.masks,
                                     self.names, transform)

    def subset(self, indices: Sequence[int]) -> "ClassificationDataset":
        """A dataset of the given items (arrays copied), with the same ``transform``."""
        idx = np.asarray(indices, dtype=int)
        return ClassificationDataset(self.images[idx], self.labels[idx], self.preprocessing, self.class_names,
                                     None if self.masks is None else self.masks[idx],
                                     [self.names[i] for i in idx], self.transform)

    @classmethod
    def from_arrays(cls, images: Sequence[np.ndarray], labels: Sequence[int], preprocessing: Preprocessing,
                    class_names: Sequence[str], masks: Sequence[np.ndarray] | None = None,
                    names: Sequence[str] | None = None, transform: Callable | None = None,
                    source_size: int | None = None) -> "ClassificationDataset":
        """Resize uint8 images of any size (and their masks) to the network size and cache them.

        Args:
            images: uint8 ``(H, W)`` or ``(H, W, 3)`` per image, matching ``preprocessing.mode``.
            labels: Class index per image.
            preprocessing: Target size and channels.
            class_names: Class names in index order.
            masks: bool ``(H, W)`` per image, or None.
            names: Case names, or None.
            transform: Augmentation, or None.
            source_size: When given, images are first resized to ``source_size`` (the way a model trained on
                small images, such as BreastMNIST's 28 x 28, sees any image), then to the network size.

        Raises:
            ValueError: If an image is not uint8 of the expected layout or its mask differs in size (the
                message names the case).
        """
        s = preprocessing.image_size
        channels = preprocessing.channels
        out = np.empty((len(images), s, s) + ((3,) if channels == 3 else ()), dtype=np.uint8)
        out_masks = None if masks is None else np.empty((len(images), s, s), dtype=bool)
        for i, image in enumerate(images):
            who = names[i] if names is not None else f"image {i}"
            try:
                out[i] = resize_for_network(image, preprocessing, source_size)
            except ValueError as e:
                raise ValueError(f"{who}: {e}") from None
            if out_masks is not None:
                m = np.asarray(masks[i])  # type: ignore[index]
                if m.shape != image.shape[:2]:
                    raise ValueError(f"{who}: image of size {image.shape[:2]} but mask of size {m.shape}.")
                out_masks[i] = resize_mask(m, s)
        return cls(out, np.asarray(labels, dtype=np.int64), preprocessing, class_names, out_masks, names, transform)

    @classmethod
    def from_busi(cls, cases: Sequence[Any], preprocessing: Preprocessing, with_masks: bool = True,
                  transform: Callable | None = None) -> "ClassificationDataset":
        """Read BUSI cases (:class:`breastdx.data.busi.BusiCase`), resize and cache them.

        Labels are indices in :data:`breastdx.data.busi.BUSI_CLASSES` (normal, benign, malignant).

        Args:
            cases: BUSI cases; multi-lesion masks are merged by :func:`breastdx.data.busi.load_case`.
            preprocessing: Target size and channels.
            with_masks: Keep the lesion masks (normal cases have empty ones).
            transform: Augmentation, or None.

        Raises:
            breastdx.data.images.ImageReadError: If a file cannot be read (the message names it).
        """
        from breastdx.data.busi import BUSI_CLASSES, load_case

        s = preprocessing.image_size
        images = np.empty((len(cases), s, s) + ((3,) if preprocessing.channels == 3 else ()), dtype=np.uint8)
        masks = np.empty((len(cases), s, s), dtype=bool) if with_masks else None
        for i, case in enumerate(cases):
            image, mask = load_case(case, mode=preprocessing.mode)
            images[i] = preprocessing.resize_image(image)
            if masks is not None:
                masks[i] = resize_mask(mask, s)
        log.info("cached %d BUSI images at %dx%d", len(cases), s, s)
        return cls(images, np.array([c.label_index for c in cases], dtype=np.int64), preprocessing, BUSI_CLASSES,
                   masks, [c.name for c in cases], transform)


def resize_for_network(image: np.ndarray, preprocessing: Preprocessing, source_size: int | None = None,
                       source_crop: str | None = None) -> np.ndarray:
    """Resize one uint8 image to the network size, optionally through ``source_size`` first.

    Args:
        image: uint8 ``(H, W)`` or ``(H, W, 3)``.
        preprocessing: The network's preprocessing.
        source_size: Resize to this side first (the size of a model's training images), or None.
        source_crop: ``"central_square"``: cut the central square first (:func:`breastdx.data.transforms.central_square`,
            as MedMNIST made BreastMNIST from BUSI), or None.

    Shape:
        ``(H, W)`` or ``(H, W, 3)`` -> ``(S, S)`` or ``(S, S, 3)``.

    Raises:
        ValueError: If the image is not uint8 of the layout ``preprocessing.mode`` asks for, or ``source_crop`` is
            not None or ``"central_square"``.
    """
    image = cut_source(image, source_crop)
    if source_size:
        image = resize_uint8(image, int(source_size), channels=preprocessing.channels)
    return preprocessing.resize_image(image)


def class_weights(labels: Sequence[int] | np.ndarray, n_classes: int) -> torch.Tensor:
    """Loss weights inverse to class frequency, ``w_k = n / (K * n_k)`` (1 for every class when balanced).

    A class absent from ``labels`` gets weight 0 (it contributes no loss term anyway).

    Args:
        labels: Class index per training item, ``(n,)``.
        n_classes: ``K``.

    Returns:
        float32 tensor ``(K,)``.

    Raises:
        ValueError: If ``labels`` is empty or holds an index outside ``[0, K)``.

    References:
        King, G. & Zeng, L. (2001). Logistic regression in rare events data. Political Analysis 9(2):137-163.
        doi:10.1093/oxfordjournals.pan.a004868 (the "balanced" weighting of scikit-learn).
    """
    y = np.asarray(labels, dtype=np.int64)
    if y.size == 0:
        raise ValueError("class_weights needs at least one label.")
    if y.min() < 0 or y.max() >= n_classes:
        raise ValueError(f"labels must be in [0, {n_classes - 1}], got values {sorted(set(y.tolist()))}.")
    counts = np.bincount(y, minlength=n_classes).astype(float)
    w = np.where(counts > 0, y.size / (n_classes * np.maximum(counts, 1)), 0.0)
    return torch.tensor(w, dtype=torch.float32)


def balanced_sampler(labels: Sequence[int] | np.ndarray, n_classes: int, generator: torch.Generator | None = None,
                     num_samples: int | None = None) -> WeightedRandomSampler:
    """A sampler that draws items with replacement, each class equally often in expectation.

    Args:
        labels: Class index per training item, ``(n,)``.
        n_classes: ``K``.
        generator: Seeded generator (the draws repeat from run to run).
        num_samples: Draws per epoch; default ``n``.

    Returns:
        A ``torch.utils.data.WeightedRandomSampler`` with item weight ``1 / n_{class of item}``.

    Raises:
        ValueError: As :func:`class_weights`.
    """
    y = np.asarray(labels, dtype=np.int64)
    w = class_weights(y, n_classes).numpy()[y]
    return WeightedRandomSampler(torch.as_tensor(w, dtype=torch.double), num_samples or int(y.size),
                                 replacement=True, generator=generator)
