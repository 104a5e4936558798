"""Grouped, stratified train / validation / test splits and k-fold cuts of items with group ids.

Items of one group (a patient, a BUSI near-duplicate group of :func:`breastdx.data.duplicates.group_near_duplicates`)
are alike: a split that puts some in training and others in testing measures memory of the group, not diagnosis.
:func:`grouped_stratified_split` and :func:`grouped_stratified_folds` keep each group whole and each split's class
proportions close to the whole. Group ids may be integers or text (patient ids such as ``"P-12"``); they are
compared as given, never converted. :mod:`breastdx.data.splits` stores a split as a file; BUSI's and the patch
datasets' splits (:mod:`breastdx.data.patch_split`) are made here.
"""

from __future__ import annotations

import numbers
from typing import Any, Hashable, Sequence

import numpy as np

from breastdx.data.errors import DataError

SPLIT_NAMES = ("train", "val", "test")
"""Split names, in the order of ``ratios``."""

SPLIT_METHODS = ("proportional", "absolute")
"""How :func:`grouped_stratified_split` places the groups, largest first: ``proportional`` (the default) gives each
to the split furthest below its target *relative to that target*, so that groups of every size spread over train,
val and test in proportion; ``absolute`` gives each to the split furthest below its target in items, which puts
every group larger than one into training while training has room (for BUSI with 70/10/20: all 149
near-duplicate groups, so that val and test hold single images only; for IDC the test patients have 2-28
patches, the training ones up to 69), leaving the smaller groups to val and test. ``absolute`` was the only rule before 2026-12-06: it reproduces the splits made then (the shipped models'
``split.json`` files), and split files without a ``method`` field were made by it."""

DEFAULT_SPLIT_METHOD = "proportional"  # of a new split
LEGACY_SPLIT_METHOD = "absolute"  # of a split file naming none, and a cross-validation resumed from before the option


def check_ratios(ratios: Sequence[float]) -> tuple[float, float, float]:
    """The fractions of train, val and test as three floats.

    Raises:
        ValueError: If they are not three finite fractions >= 0 that sum to 1.
    """
    r = tuple(float(x) for x in ratios)
    if len(r) != 3 or any(not np.isfinite(x) or x < 0 for x in r) or abs(sum(r) - 1.0) > 1e-6:
        raise ValueError(f"ratios must be three fractions >= 0 (train, val, test) that sum to 1; got {tuple(ratios)}.")
    return r  # type: ignore[return-value]


def _group_order(g: Hashable) -> tuple[int, Any]:
    """How group ids are ordered before the seeded shuffle: numbers by value (integer ids, as before text ids were
    accepted: the shipped splits repeat), then any other id by its text."""
    return (0, g) if isinstance(g, numbers.Real) else (1, str(g))


def _group_id(g: Hashable) -> Hashable:
    """A group id as a plain Python value: NumPy scalars (``np.int64``, ``np.str_``) become ``int``, ``str``."""
    return g.item() if isinstance(g, np.generic) else g


def grouped_stratified_split(labels: Sequence[str], groups: Sequence[Hashable],
                             ratios: Sequence[float] = (0.7, 0.1, 0.2), seed: int = 0,
                             severity: Sequence[str] | None = None,
                             method: str = DEFAULT_SPLIT_METHOD) -> dict[str, list[int]]:
    """Split items into train, val and test so that no group crosses splits and classes keep their proportions.

    Each group gets one stratum: its most severe label when ``severity`` is given (the first label of
    ``severity`` present in the group), else its most common label (ties: alphabetical). Within each
    stratum the groups are shuffled with ``seed``, ordered by size (largest first, so that big groups are
    placed while there is room) and each is given to the split furthest below its target
    (``ratio * stratum size`` items), relative to that target (``method="proportional"``: groups of every size
    spread over the splits in proportion) or in items (``"absolute"``: the rule before 2026-12-06, which puts
    the larger groups into training; see :data:`SPLIT_METHODS`); ties go to the earlier split, and a split of
    ratio 0 gets nothing.

    Args:
        labels: A label per item.
        groups: A group id per item: integers (e.g. from :func:`breastdx.data.duplicates.group_near_duplicates`) or
            text (patient ids), compared as given (``"7"`` and ``"07"`` are two groups).
        ratios: Fractions of train, val and test, >= 0, summing to 1.
        seed: Random seed; the same inputs and seed give the same split.
        severity: Labels from most to least severe, or None.
        method: ``"proportional"`` or ``"absolute"`` (:data:`SPLIT_METHODS`).

    Returns:
        ``{"train": [...], "val": [...], "test": [...]}``: sorted item indices.

    Raises:
        ValueError: If the lengths differ, the ratios are not three fractions summing to 1, or the method is
            unknown.
    """
    r = check_ratios(ratios)
    if method not in SPLIT_METHODS:
        raise ValueError(f"split method must be one of {', '.join(SPLIT_METHODS)}; got {method!r}.")
    if len(labels) != len(groups):
        raise ValueError(f"labels and groups must have the same length; got {len(labels)} and {len(groups)}.")
    members: dict[Hashable, list[int]] = {}
    for i, g in enumerate(groups):
        members.setdefault(_group_id(g), []).append(i)
    rank = {lab: k for k, lab in enumerate(severity or ())}
    strata: dict[str, list[Hashable]] = {}
    for g, idx in members.items():
        labs = [str(labels[i]) for i in idx]
        if severity:
            stratum = min(labs, key=lambda lab: (rank.get(lab, len(rank)), lab))
        else:
            counts: dict[str, int] = {}
            for lab in labs:
                counts[lab] = counts.get(lab, 0) + 1
            stratum = min(counts, key=lambda lab: (-counts[lab], lab))
        strata.setdefault(stratum, []).append(g)
    rng = np.random.default_rng(seed)
    out: dict[str, list[int]] = {s: [] for s in SPLIT_NAMES}
    for stratum in sorted(strata):
        gids = sorted(strata[stratum], key=_group_order)
        gids = [gids[k] for k in rng.permutation(len(gids))]
        gids.sort(key=lambda g: -len(members[g]))  # stable: shuffled order within a size
        total = sum(len(members[g]) for g in gids)
        target = [ratio * total for ratio in r]
        filled = [0, 0, 0]
        for g in gids:
            if method == "absolute":
                k = max(range(3), key=lambda s: (target[s] - filled[s], -s))
            else:
                k = max((s for s in range(3) if target[s] > 0), key=lambda s: (1 - filled[s] / target[s], -s))
            filled[k] += len(members[g])
            out[SPLIT_NAMES[k]].extend(members[g])
    return {s: sorted(v) for s, v in out.items()}


def single_group_classes(labels: Sequence[Any], groups: Sequence[Any]) -> dict[str, Any]:
    """The classes that only one group (patient) holds, with that group.

    Such a class cannot be both learnt and tested on an unseen patient (BreakHis's adenosis, phyllodes tumour and
    lobular carcinoma in the derived copy): the splits below put its patient in training.

    Returns:
        ``{class label (str): group}``, sorted by label.
    """
    holders: dict[str, set] = {}
    for lab, g in zip(labels, groups):
        holders.setdefault(str(lab), set()).add(g)
    return {lab: next(iter(gs)) for lab, gs in sorted(holders.items()) if len(gs) == 1}


def grouped_stratified_folds(labels: Sequence[str], groups: Sequence[Hashable], k: int = 5,
                             seed: int = 0) -> list[list[int]]:
    """Cut items into ``k`` folds so that no group crosses folds and classes keep their proportions.

    The same rule as :func:`grouped_stratified_split` with ``k`` equal parts: each group's stratum is its most
    common label (ties: alphabetical); within a stratum the groups, shuffled with ``seed`` and then ordered by
    size (largest first), each go to the fold furthest below its share of the stratum (ties: the fold with the fewest
    items so far, then the earlier fold).

    Args:
        labels: A label per item.
        groups: A group (patient) id per item.
        k: Number of folds, >= 2.
        seed: Random seed; the same inputs and seed give the same folds.

    Returns:
        ``k`` sorted lists of item indices.

    Raises:
        ValueError: If the lengths differ.
        DataError: If ``k < 2``, or there are fewer groups than folds.
    """
    if len(labels) != len(groups):
        raise ValueError(f"labels and groups must have the same length; got {len(labels)} and {len(groups)}.")
    members: dict[Any, list[int]] = {}
    for i, g in enumerate(groups):
        members.setdefault(g, []).append(i)
    if k < 2 or len(members) < k:  # DataError: the data (patients or lesion groups) set the bound, said plainly
        raise DataError(f"k-fold cross-validation needs 2 <= k <= the number of groups, patients or lesions "
                        f"({len(members)}); got k = {k} (--cv-folds).")
    strata: dict[str, list[Any]] = {}
    for g, idx in members.items():
        counts: dict[str, int] = {}
        for i in idx:
            counts[str(labels[i])] = counts.get(str(labels[i]), 0) + 1
        strata.setdefault(min(counts, key=lambda lab: (-counts[lab], lab)), []).append(g)
    rng = np.random.default_rng(seed)
    folds: list[list[int]] = [[] for _ in range(k)]
    for stratum in sorted(strata):
        gids = sorted(strata[stratum], key=str)
        gids = [gids[j] for j in rng.permutation(len(gids))]
        gids.sort(key=lambda g: -len(members[g]))
        filled = [0] * k
        total = sum(len(members[g]) for g in gids)
        for g in gids:
            f = max(range(k), key=lambda j: (total / k - filled[j], -len(folds[j]), -j))
            filled[f] += len(members[g])
            folds[f].extend(members[g])
    return [sorted(f) for f in folds]
