"""What a dataset reader gives the image-classification pipeline: the parts of a split, read on demand.

A reader (``ClassificationSpec.read`` in :mod:`breastdx.pipeline.classification`) returns a
:class:`SplitData`: ``train``, ``val`` and ``test`` :class:`ImageSet` objects (ids, labels, and a function that
reads one image at its own size, with its lesion mask when there is one), the data checksum, and the split
policy in words. :func:`patch_reader` adapts every :class:`breastdx.data.patches.PatchSource` dataset (PCam,
IDC, BreakHis); :func:`macenko_normalisation` and :func:`hed_augmentation` are the histopathology hooks.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from breastdx.data.checksum import image_hash

log = logging.getLogger(__name__)

SPLIT_FILE = "split.json"
"""The split file of a run folder and of a model folder."""


@dataclass(frozen=True)
class ImageSet:
    """The images of one split part, read on demand at their own size.

    Attributes:
        ids: Case ids (file names or patch ids), in order.
        labels: int64 ``(n,)`` class indices.
        read: ``i -> (uint8 (H, W) or (H, W, 3) image, bool (H, W) lesion mask or None)``; errors name the file.
        groups: Patient (or slide) id per item, or, for busi-cls, lesion id (the near-duplicate group of the split
            file, or the image's own name); None when the data have none. What they name:
            :attr:`breastdx.pipeline.classification.ClassificationSpec.group_unit`.
    """

    ids: tuple[str, ...]
    labels: np.ndarray
    read: Callable[[int], tuple[np.ndarray, np.ndarray | None]]
    groups: tuple[str, ...] | None = None

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, index: Sequence[int] | np.ndarray) -> "ImageSet":
        """The items at ``index`` (positions in this set)."""
        idx = np.asarray(index, dtype=np.int64)
        return ImageSet(tuple(self.ids[i] for i in idx), self.labels[idx], lambda i: self.read(int(idx[i])),
                        None if self.groups is None else tuple(self.groups[i] for i in idx))

    def get(self, index: int) -> tuple[np.ndarray, int]:
        """``(image, label)``, as a :class:`breastdx.data.patches.PatchSource` gives it."""
        return self.read(index)[0], int(self.labels[index])

    def counts(self, class_names: Sequence[str]) -> dict[str, int]:
        """Items per class."""
        return {c: int((self.labels == k).sum()) for k, c in enumerate(class_names)}


@dataclass(frozen=True)
class SplitData:
    """What a spec's reader returns: the three parts of one split, and how to describe them.

    Attributes:
        parts: ``{"train", "val", "test"}`` to :class:`ImageSet`.
        class_names: Class names in index order.
        checksum: The data checksum (SHA-256 of the files or arrays), kept in ``meta.json``.
        kind: The split policy in words ("split by patient", "official MedMNIST v2 split", ...).
        about: Markdown lines on the data (model card and report).
        record: Extra ``config.yaml`` fields (data file, folder, magnification).
        split: The split object (a :class:`breastdx.data.splits.SplitFile` or None), for hooks.
    """

    parts: dict[str, ImageSet]
    class_names: tuple[str, ...]
    checksum: str
    kind: str
    about: str = ""
    record: dict[str, Any] = field(default_factory=dict)
    split: Any = None

    def describe(self, which: str) -> str:
        """``"test split of split.json (split by patient; n = 300: 200 normal, 100 tumour)"``."""
        part = self.parts[which]
        counts = ", ".join(f"{v} {c}" for c, v in part.counts(self.class_names).items())
        return f"{which} split of {SPLIT_FILE} ({self.kind}; n = {len(part)}: {counts})"


@dataclass(frozen=True)
class Normalisation:
    """A stain (or intensity) normalisation fitted at training time and shipped with the model.

    Attributes:
        apply: ``uint8 image -> uint8 image``, before resizing; None for none.
        meta: The ``meta.json`` entry (``{"method": ...}``, with the fitted numbers, e.g. Macenko's stain matrix) that
            the predictor reads back; no dataset image is written into the model folder.
        description: Words for the preprocessing description.
    """

    apply: Callable[[np.ndarray], np.ndarray] | None
    meta: dict[str, Any]
    description: str = ""


def from_patch_source(source: Any) -> ImageSet:
    """A :class:`breastdx.data.patches.PatchSource` (or a view of one) as an :class:`ImageSet` (no masks)."""
    groups = source.groups
    return ImageSet(tuple(source.ids), np.asarray(source.labels, dtype=np.int64), lambda i: (source.get(i)[0], None),
                    None if groups is None else tuple(str(g) for g in groups))


def _refuse_split_options(config: Any, dataset: str) -> None:
    """A dataset read with its official split (PCam) ignores ``--split-seed``, ``--split-ratios`` and
    ``--split-method``: refuse them when given (they were recorded in config.yaml as if they had made the split).

    Raises:
        ConfigError: Naming the options given.
    """
    from breastdx.config import ConfigError, given_options

    given = given_options(config, ("split_seed", "split_ratios", "split_method"))
    if given:
        named = " and ".join([", ".join(given[:-1]), given[-1]] if len(given) > 1 else given)
        raise ConfigError(f"{dataset} is trained on its official split: {named} would not apply. Give "
                          f"another split with --split-file.")


def patch_reader(dataset: str, about: str | Callable[[Any], str], official: Callable[..., Any] | None = None,
                 split_options: dict[str, Callable[[Any], Any]] | None = None,
                 **load_options: Callable[[Any], Any]) -> Callable[[Any, Path, Path | None, Path], SplitData]:
    """A spec's ``read`` for a patch dataset of :data:`breastdx.data.patches.PATCH_DATASETS`.

    The split is reused from the given file (checked against the data), else the dataset's official split when
    ``official(source, **split options)`` gives one (PCam), else made by patient (``--split-seed``,
    ``--split-ratios``, ``--split-method``; stratified by class only when the data have no patient ids, with a warning). It is written
    to the run's ``split.json``. A split summary's ``"description"``, when given, is the split policy in words.

    Args:
        dataset: The dataset name.
        about: Markdown lines on the data for the model card and report, or ``source -> lines`` where they depend
            on the files read (PCam's JPEG subset or its HDF5 release).
        official: ``(source, **split options) -> SplitFile`` of an official split, or None.
        split_options: Keyword of ``official`` to ``config -> value`` (e.g. PCam's ``valid_to_train``), or None.
        **load_options: Reader option name to ``config -> value`` (e.g. BreakHis's magnification).
    """

    def read(config: Any, data_root: Path, reuse: Path | None, out: Path) -> SplitData:
        import os

        from breastdx.data.patch_split import apply_split, check_patch_split, patch_split
        from breastdx.runs import RESUME_ENV
        from breastdx.data.splits import SplitFile
        from breastdx.data.patches import load_patch_dataset

        source = load_patch_dataset(dataset, data_root, **{k: f(config) for k, f in load_options.items()})
        if reuse is None and os.environ.get(RESUME_ENV) and Path(out).is_file():
            reuse = Path(out)  # a resumed run goes on with the split it was trained on, if the data still fit it
        if reuse is not None:  # kept as it is, with its own seed and ratios, once checked against the data
            split = SplitFile.from_json(reuse)
            check_patch_split(source, split)
        elif official is not None:
            _refuse_split_options(config, dataset)
            split = official(source, **{k: f(config) for k, f in (split_options or {}).items()})
        else:
            split = patch_split(source, None, seed=config.split_seed, ratios=config.split_ratios,
                                method=config.split_method)
        split.to_json(out)
        grouped = (split.summary or {}).get("grouped_by")
        official_kind = "official" in str((split.summary or {}).get("kind", ""))
        kind = (split.summary or {}).get("description") or (f"split by {grouped}" if grouped else (
            "official split" if official_kind else "stratified split (no patient ids: optimistic)"))
        views = apply_split(source, split)
        counts = (split.summary or {}).get("counts", {})
        lines = "; ".join(f"{s}: " + ", ".join(f"{v} {c}" for c, v in cs.items()) for s, cs in counts.items())
        how = f" by {grouped} (seed {split.seed}, method {split.method})" if grouped and split.method else ""
        split_line = f"\n- Split{how}: {lines}." if lines else ""
        return SplitData({s: from_patch_source(v) for s, v in views.items()}, tuple(source.class_names),
                         source.checksum, kind,
                         (about(source) if callable(about) else about) + split_line,
                         # the reader's own options apart: under their own names they would shadow the config's
                         # in config.yaml (BreakHis's magnification 0 is the reader's None)
                         {"dataset": dataset, **({"reader_options": {k: f(config) for k, f in load_options.items()}}
                                                 if load_options else {})}, split)

    return read


def cache_images(part: ImageSet, prep: Any, class_names: Sequence[str], *, normalise: Callable | None = None,
                 masks: bool = False, transform: Any = None, source_size: int | None = None,
                 source_crop: str | None = None, hashes: list[str] | None = None,
                 phashes: list[int] | None = None):
    """Read every image of ``part`` once, (normalise,) resize and cache it at network size (through ``source_crop``
    and ``source_size``, see :func:`breastdx.data.classification.resize_for_network`; masks are cropped alike).

    Returns:
        A :class:`breastdx.data.classification.ClassificationDataset` (uint8 ``(N, S, S[, 3])``, masks bool
        ``(N, S, S)`` when asked). With ``hashes`` (a list), the :func:`breastdx.data.checksum.image_hash` of each
        image as read is appended to it; with ``phashes``, its :func:`breastdx.data.duplicates.model_view_hash`
        (through ``source_crop``).

    Raises:
        breastdx.data.images.ImageReadError: If a file cannot be decoded (the message names it).
        ValueError: If an image does not have the layout the spec's mode asks for (the message names it).
    """
    from breastdx.data.classification import ClassificationDataset, resize_for_network
    from breastdx.data.transforms import central_square, resize_mask

    s = prep.image_size
    images = np.empty((len(part), s, s) + ((3,) if prep.channels == 3 else ()), dtype=np.uint8)
    out_masks = np.zeros((len(part), s, s), dtype=bool) if masks else None
    for i in range(len(part)):
        image, mask = part.read(i)
        if hashes is not None:  # of the image as read, before normalisation (what predict reads)
            hashes.append(image_hash(image))
        if phashes is not None:
            from breastdx.data.duplicates import model_view_hash

            phashes.append(model_view_hash(image, source_crop))
        if normalise is not None:
            image = normalise(image)
        try:
            images[i] = resize_for_network(image, prep, source_size, source_crop)
        except ValueError as e:
            raise ValueError(f"{part.ids[i]}: {e}") from None
        if out_masks is not None and mask is not None:
            out_masks[i] = resize_mask(central_square(mask) if source_crop else mask, s)
    log.info("cached %d images at %dx%d", len(part), s, s)
    return ClassificationDataset(images, part.labels, prep, class_names, out_masks, list(part.ids), transform)


def macenko_normalisation(config: Any, train: ImageSet) -> Normalisation:
    """The ``--stain-normalisation`` hook: Macenko to ``--stain-target`` or to the first training image that is
    at least half tissue (Macenko et al. 2009, doi:10.1109/ISBI.2009.5193250); ``none`` ships nothing.

    Raises:
        ConfigError: If the reference image cannot be used (named).
    """
    from breastdx.config import ConfigError
    from breastdx.data.stain import MacenkoNormalizer

    if config.stain_normalisation == "none":
        return Normalisation(None, {"method": "none"})
    if config.stain_target:
        from breastdx.data.images import read_image

        target, target_id = read_image(Path(config.stain_target), mode="rgb").array, str(config.stain_target)
    else:
        from breastdx.data.patch_datasets import pick_stain_target

        idx = pick_stain_target(train)  # reads train.get(i), in order
        target, target_id = train.read(idx)[0], train.ids[idx]
    try:
        normalizer = MacenkoNormalizer().fit(target)
    except ValueError as e:
        raise ConfigError(f"Option --stain-target: {target_id}: {e}") from None
    log.info("Macenko stain normalisation to %s", target_id)
    return Normalisation(normalizer, {"method": "macenko", "target_source": target_id, **normalizer.reference(),
                                      "reference": "Macenko et al. (2009), doi:10.1109/ISBI.2009.5193250"},
                         f"Macenko stain normalisation to the stain matrix of {target_id}")


def hed_augmentation(config: Any):
    """The histopathology augmentation: a random element of the dihedral group and HED stain jitter
    (:class:`breastdx.data.patch_datasets.PatchAugmentation`; Tellez et al. 2018, doi:10.1109/TMI.2018.2820199)."""
    from breastdx.data.patch_datasets import PatchAugmentation

    return PatchAugmentation(dihedral=True, hed_sigma=config.hed_sigma, hed_bias=config.hed_bias, seed=config.seed)


def ultrasound_augmentation(config: Any):
    """The ultrasound augmentation (flips, small affine, gamma, gain, speckle-like noise, blur) at
    ``config.image_size``, with the scanner augmentations where ``config.scanner_augment`` is set
    (:func:`breastdx.data.transforms.ultrasound_augmentation`)."""
    from breastdx.data.transforms import AugmentationConfig
    from breastdx.data.transforms import ultrasound_augmentation as make

    return make(config.image_size, AugmentationConfig(scanner=bool(getattr(config, "scanner_augment", False))),
                seed=config.seed)
