"""Patient-level train / validation / test splits of patch datasets, stored as files with the data's checksum.

Patches of one patient (or slide) are alike: a split that puts some in training and others in testing
measures memory of the patient, not diagnosis. :func:`make_patch_split` therefore keeps every group
(:attr:`~breastdx.data.patches.PatchSource.groups`: the patient of IDC_regular and BreakHis) in one split,
stratified by class, with :func:`breastdx.data.splits.grouped_stratified_split`. A source without groups
(the Kaggle IDC ``X.npy``, PCam folders) is split stratified only, and the split records that it may
leak (``summary["grouped_by"] is None`` plus a ``"warning"``).

A split is a :class:`breastdx.data.splits.SplitFile` whose case names are the sources' item ids, with
``summary`` holding the counts per split and class and the patients of each split. :func:`patch_split`
reuses a split file when it exists, after checking that the data still have the checksum the split was
made from, that every id exists, and that no patient crosses splits.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import numpy as np

from breastdx.data.errors import DataError
from breastdx.data.patches import PatchSource
from breastdx.data.splits import DEFAULT_SPLIT_METHOD, SPLIT_NAMES, SplitFile, grouped_stratified_split

logger = logging.getLogger(__name__)

LEAK_WARNING = ("This dataset has no patient ids: the split is stratified by class only, so patches of one "
                "patient can fall in both training and test, and test figures are optimistic.")


def make_patch_split(source: PatchSource, ratios: Sequence[float] = (0.7, 0.1, 0.2), seed: int = 0,
                     method: str = DEFAULT_SPLIT_METHOD) -> SplitFile:
    """Split a patch source into train, val and test by patient, stratified by class.

    Each patient's group is stratified by its most common label (ties: the lower label); groups are
    placed largest first into the split furthest below its target, relative to it by default (see
    :func:`~breastdx.data.splits.grouped_stratified_split` and ``method``). Without groups every patch is its own group.
    A class that one patient alone holds (BreakHis subtypes A, PT, LC) cannot be tested on an unseen patient:
    that patient is kept in training and the summary's ``train_only`` says so.

    Args:
        source: The patches.
        ratios: Fractions of train, val and test, >= 0, summing to 1.
        seed: Random seed; the same data and seed give the same split.
        method: How the patients are placed (:data:`~breastdx.data.splits.SPLIT_METHODS`).

    Returns:
        An unsaved :class:`~breastdx.data.splits.SplitFile` (``dataset`` = the source's name,
        ``data_checksum`` = its checksum, case names = item ids).

    Raises:
        ValueError: If the ratios are not three fractions summing to 1, or the method is unknown.
    """
    n = len(source)
    groups = source.groups
    if groups is None:
        logger.warning("%s: %s", source.name, LEAK_WARNING)
        gid = np.arange(n)
    else:
        _, gid = np.unique(groups, return_inverse=True)
    labels = [f"{int(v):06d}" for v in source.labels]  # strings that sort like the ints
    parts = grouped_stratified_split(labels, gid.tolist(), ratios=ratios, seed=seed, method=method)
    train_only = train_only_groups(source, gid) if groups is not None else {}
    if train_only:  # a class of one patient: learnt, never tested (it could not be tested on an unseen patient)
        moved = {i for s in ("val", "test") for i in parts[s] if int(gid[i]) in set(train_only.values())}
        parts = {"train": sorted(set(parts["train"]) | moved),
                 **{s: [i for i in parts[s] if i not in moved] for s in ("val", "test")}}
    ids = source.ids
    split = SplitFile(
        path=None,
        data_checksum=source.checksum,
        seed=int(seed),
        ratios=tuple(float(r) for r in ratios),  # type: ignore[arg-type]
        train=[ids[i] for i in parts["train"]],
        val=[ids[i] for i in parts["val"]],
        test=[ids[i] for i in parts["test"]],
        dataset=source.name,
        summary=_summary(source, parts),
        method=method,
    )
    if train_only:
        names = source.class_names
        split.summary["train_only"] = {
            "classes": [names[int(c)] for c in train_only], "patients": [str(groups[gid == g][0]) for g in
                                                                       train_only.values()],
            "note": "each of these classes comes from one patient, who is kept in training: the class cannot be "
                    "tested on an unseen patient, and class figures cover the other classes only"}
    return split


def train_only_groups(source: PatchSource, gid: np.ndarray) -> dict[int, int]:
    """``{class index: group index}`` of the classes that one patient alone holds (see
    :func:`breastdx.data.splits.single_group_classes`); such patients stay in training."""
    from breastdx.data.splits import single_group_classes

    return {int(c): int(g) for c, g in single_group_classes(np.asarray(source.labels).tolist(), gid.tolist()).items()}


def _summary(source: PatchSource, parts: dict[str, list[int]]) -> dict:
    labels = source.labels
    groups = source.groups
    out: dict = {
        "n_items": len(source),
        "class_names": list(source.class_names),
        "grouped_by": "patient" if groups is not None else None,
        "counts": {},
    }
    for s in SPLIT_NAMES:
        idx = np.asarray(parts[s], dtype=np.int64)
        counts = np.bincount(labels[idx], minlength=len(source.class_names)) if idx.size else \
            np.zeros(len(source.class_names), np.int64)
        out["counts"][s] = {c: int(counts[k]) for k, c in enumerate(source.class_names)}
    if groups is not None:
        out["patients"] = {s: sorted(set(groups[np.asarray(parts[s], dtype=np.int64)].tolist())) for s in SPLIT_NAMES}
        out["n_patients"] = {s: len(out["patients"][s]) for s in SPLIT_NAMES}
    else:
        out["warning"] = LEAK_WARNING
    return out


def check_patch_split(source: PatchSource, split: SplitFile) -> None:
    """Check that ``split`` was made from ``source``'s data, covers every item and keeps every patient in one split.

    Raises:
        DataError: If the checksums differ (saying so when the split names another dataset), an id of the split
            is not in the source, an item of the source is in no split and not excluded (it would be dropped
            silently), or a patient has items in two splits; the message names the split file.
    """
    where = split.path or "split"
    if split.data_checksum != source.checksum:
        if split.dataset and split.dataset != source.name:
            raise DataError(f"{where}: a split of dataset {split.dataset!r}, not of {source.name}.")
        raise DataError(f"{where}: made from data with checksum {split.data_checksum}, but the {source.name} "
                        f"data now have checksum {source.checksum}. The data changed since the split was made: "
                        f"make a new split (or restore the data).")
    position = {item: i for i, item in enumerate(source.ids)}
    problems = []
    missing = [item for s in SPLIT_NAMES for item in split.split(s) if item not in position]
    if missing:
        problems.append(f"{len(missing)} ids are not in the {source.name} data (first: {missing[0]!r})")
    listed = {item for s in SPLIT_NAMES for item in split.split(s)} | set(split.excluded_names())
    unlisted = [item for item in source.ids if item not in listed]
    if unlisted:
        problems.append(f"{len(unlisted)} of the {len(position)} {source.name} items are in no split and not "
                        f"excluded (first: {unlisted[0]!r}); expected every item in train, val or test")
    groups = source.groups
    if groups is not None and not missing:
        where_patient: dict[str, str] = {}
        for s in SPLIT_NAMES:
            for item in split.split(s):
                g = str(groups[position[item]])
                if where_patient.setdefault(g, s) != s:
                    problems.append(f"patient {g!r} has items in both {where_patient[g]} and {s}")
                    where_patient[g] = s  # report each crossing once per new split
    if problems:
        raise DataError(f"{where}: does not fit the {source.name} data.", problems)


def patch_split(source: PatchSource, split_file: str | Path | None = None, seed: int = 0,
                ratios: Sequence[float] = (0.7, 0.1, 0.2), method: str = DEFAULT_SPLIT_METHOD) -> SplitFile:
    """The split of ``source``: reused from ``split_file`` when it exists, else made (and written there).

    Args:
        source: The patches.
        split_file: A split file to reuse or write; None to return a new split unsaved.
        seed: Random seed of a new split.
        ratios: Fractions of train, val and test of a new split.
        method: How a new split places the patients (:data:`~breastdx.data.splits.SPLIT_METHODS`).

    Returns:
        The :class:`~breastdx.data.splits.SplitFile`. A reused file keeps its own seed, ratios and method.

    Raises:
        DataError: If a reused file is invalid or does not fit the data (see :func:`check_patch_split`).
    """
    if split_file is not None and Path(split_file).exists():
        split = SplitFile.from_json(split_file)
        check_patch_split(source, split)
        if (split.seed, tuple(split.ratios), split.method) != (seed, tuple(float(r) for r in ratios), method):
            logger.warning("%s: reused with its own seed %d, ratios %s and method %s (asked: seed %d, ratios %s, "
                           "method %s)", split_file, split.seed, split.ratios, split.method, seed, tuple(ratios), method)
        return split
    split = make_patch_split(source, ratios=ratios, seed=seed, method=method)
    if split_file is not None:
        split.to_json(split_file)
    return split


def apply_split(source: PatchSource, split: SplitFile) -> dict[str, PatchSource]:
    """The three splits of ``source`` as views.

    Returns:
        ``{"train": ..., "val": ..., "test": ...}``, each a :class:`~breastdx.data.patches.PatchSubset` in
        the order of the split file.

    Raises:
        DataError: If an id of the split is not in ``source``.
    """
    position = {item: i for i, item in enumerate(source.ids)}
    out = {}
    for s in SPLIT_NAMES:
        try:
            idx = [position[item] for item in split.split(s)]
        except KeyError as err:
            raise DataError(f"{split.path or 'split'}: id {err.args[0]!r} of {s} is not in the "
                            f"{source.name} data.") from None
        out[s] = source.subset(idx)
    return out
