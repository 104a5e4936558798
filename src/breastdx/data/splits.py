"""Train / validation / test splits that keep near-duplicates together, stored as files with the data's checksum.

A split is made once, written as JSON (:class:`SplitFile`) and reused: reading it back checks that the data
still have the checksum the split was made from. For BUSI (:func:`busi_split`):

1. every image is hashed (:func:`breastdx.data.duplicates.perceptual_hash`) and near-duplicates are
   grouped (:func:`breastdx.data.duplicates.group_near_duplicates`);
2. a group whose members carry different labels is a *conflict*. When two of its members with different
   labels hold the same image (identical pixels, or an :func:`~breastdx.data.duplicates.aligned_correlation`
   of at least :data:`~breastdx.data.duplicates.SAME_IMAGE_CORRELATION`: a re-cropped or rescaled copy),
   the label is contradictory and both cases are *excluded* from every split, with the reason written in
   the file (``benign (433)`` / ``malignant (145)`` is one). Otherwise (different frames of one lesion
   under different labels) the group stays whole and is stratified by its most severe label
   (malignant > benign > normal). Every conflict is listed, with its kind;
3. groups are split by :func:`breastdx.data.grouped_split.grouped_stratified_split`: no group crosses splits and each split's class
   proportions are close to the whole.

The data folder is read-only: a split is never written beside the data. :func:`busi_split` returns it
unsaved unless given a ``split_file`` (a run folder's, or :func:`default_split_path` of a cache folder).
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from breastdx.data.checksum import sha256_arrays
from breastdx.data.errors import DataError
from breastdx.data.grouped_split import (  # noqa: F401  (also imported from here)
    DEFAULT_SPLIT_METHOD,
    LEGACY_SPLIT_METHOD,
    SPLIT_METHODS,
    SPLIT_NAMES,
    check_ratios,
    grouped_stratified_folds,
    grouped_stratified_split,
    single_group_classes,
)

if TYPE_CHECKING:
    from breastdx.data.busi import BusiCase

logger = logging.getLogger(__name__)

CONTRADICTORY = "the label is contradictory"
"""The end of an excluded case's reason when the same image is filed under another label."""

SCHEMA_VERSION = 1
"""Version of the split-file layout written by :meth:`SplitFile.to_json`."""

DEFAULT_SPLIT_NAME = "busi_split_seed{seed}.json"
"""File name of a BUSI split in a cache folder (``.format(seed=...)``)."""

BUSI_SEVERITY = ("malignant", "benign", "normal")
"""BUSI labels from most to least severe: a group of mixed labels is stratified by the first present."""


@dataclass
class SplitFile:
    """A stored split: case names per split, and how it was made.

    Attributes:
        path: The file it was read from or last written to (None while unsaved).
        data_checksum: Checksum of the data it was made from (:func:`breastdx.data.busi.busi_checksum`).
        seed: Random seed of the split.
        ratios: Fractions of train, val and test.
        train: Case names (``"benign (12)"``) in the training split.
        val: Case names in the validation split.
        test: Case names in the test split.
        groups: Near-duplicate groups with two or more members (as detected, excluded cases included).
        conflicts: Groups whose members carry different labels: ``{"members", "labels", "kind"}`` with
            kind ``"identical image"`` (the same image under two labels) or ``"near-duplicate"``
            (different frames), plus ``"same_image_pairs"``: ``[name, name, similarity]``.
        excluded: Cases left out of every split: ``{"name", "label", "reason", "group"}``.
        dataset: Name of the dataset.
        hash_threshold: pHash Hamming threshold used to group near-duplicates.
        summary: Counts per split and class, for people reading the file.
        method: How groups were placed (:data:`SPLIT_METHODS`); ``absolute`` for a file that names none; None for
            a split made otherwise (PCam's official one).
    """

    path: Path | None
    data_checksum: str
    seed: int
    ratios: tuple[float, float, float]
    train: list[str]
    val: list[str]
    test: list[str]
    groups: list[list[str]] = field(default_factory=list)
    conflicts: list[dict] = field(default_factory=list)
    excluded: list[dict] = field(default_factory=list)
    dataset: str = "busi"
    hash_threshold: int | None = None
    summary: dict = field(default_factory=dict)
    method: str | None = DEFAULT_SPLIT_METHOD

    def split(self, name: str) -> list[str]:
        """Case names of split ``name`` (``"train"``, ``"val"`` or ``"test"``).

        Raises:
            ValueError: For another name.
        """
        if name not in SPLIT_NAMES:
            raise ValueError(f"split must be one of {', '.join(SPLIT_NAMES)}; got {name!r}.")
        return list(getattr(self, name))

    def assignment(self) -> dict[str, str]:
        """Case name to split name, for every case in a split."""
        return {n: s for s in SPLIT_NAMES for n in getattr(self, s)}

    def n_cases(self) -> int:
        """Cases the split was made from: train + val + test + excluded."""
        return len(self.train) + len(self.val) + len(self.test) + len(self.excluded)

    def excluded_names(self) -> list[str]:
        """Names of the excluded cases."""
        return [e["name"] for e in self.excluded]

    def excluded_text(self) -> str:
        """The excluded cases counted by reason, for cards and reports: ``"18 cases excluded (contradictory labels
        on the same image)"``, and, in a cross-validation fold, ``"; 152 held out (the test split of the base
        split: kept out of cross-validation)"``."""
        reasons = Counter(CONTRADICTORY if CONTRADICTORY in r else r
                          for r in (str(e.get("reason", "no reason given")) for e in self.excluded))
        return "; ".join([f"{reasons.pop(CONTRADICTORY, 0)} cases excluded (contradictory labels on the same image)"]
                         + [f"{n} held out ({reason})" for reason, n in reasons.items()])

    def to_dict(self) -> dict[str, Any]:
        """The JSON content (see :meth:`to_json`)."""
        from breastdx import __version__

        return {
            "schema_version": SCHEMA_VERSION,
            "dataset": self.dataset,
            "data_checksum": self.data_checksum,
            "seed": int(self.seed),
            "ratios": [float(r) for r in self.ratios],
            "method": self.method,
            "hash_threshold": self.hash_threshold,
            "breastdx_version": __version__,
            "summary": self.summary,
            "train": list(self.train),
            "val": list(self.val),
            "test": list(self.test),
            "groups": [list(g) for g in self.groups],
            "conflicts": list(self.conflicts),
            "excluded": list(self.excluded),
        }

    def to_json(self, path: str | Path) -> None:
        """Write the split as indented JSON (parent folders are created) and set :attr:`path`.

        The file is written to a temporary name and renamed (by global rank 0 only), so a reader never sees half a file.

        Raises:
            ValueError: If ``path`` exists and is not a regular file (a device such as ``/dev/null``, a folder): the
                rename would replace it.
        """
        from breastdx.runs import is_rank_zero, write_json

        path = Path(path)
        if path.exists() and not path.is_file():
            raise ValueError(f"{path}: not a regular file; a split file is written by renaming a new file over the "
                             f"old one, which would replace it. Give a file path.")
        path.parent.mkdir(parents=True, exist_ok=True)
        if is_rank_zero():  # the other ranks of a distributed run write nothing (write_json): nothing to rename
            write_json(self.to_dict(), tmp := path.with_name(f".{path.name}.tmp-{os.getpid()}"))
            os.replace(tmp, path)
        self.path = path

    @classmethod
    def from_json(cls, path: str | Path) -> "SplitFile":
        """Read and check a split file written by :meth:`to_json`.

        Raises:
            FileNotFoundError: If the file does not exist.
            DataError: If it is not valid JSON, lacks a field, has a field of the wrong type, is of a
                newer schema, or puts a case in two splits; the message names the file.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such split file")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise DataError(f"{path}: not a valid split file (invalid JSON: {err}).") from None
        if not isinstance(data, dict):
            raise DataError(f"{path}: not a valid split file (expected a JSON object at the top).")
        problems = []
        version = data.get("schema_version")
        if not isinstance(version, int) or version > SCHEMA_VERSION:
            problems.append(f"schema_version: expected an integer <= {SCHEMA_VERSION}, got {version!r}")
        if not isinstance(data.get("data_checksum"), str):
            problems.append("data_checksum: expected a string")
        if not isinstance(data.get("seed"), int):
            problems.append(f"seed: expected an integer, got {data.get('seed')!r}")
        ratios = data.get("ratios")
        if not (isinstance(ratios, list) and len(ratios) == 3 and all(isinstance(r, (int, float)) for r in ratios)):
            problems.append(f"ratios: expected three numbers, got {ratios!r}")
        if data.get("method", LEGACY_SPLIT_METHOD) not in (*SPLIT_METHODS, None):
            problems.append(f"method: expected one of {', '.join(SPLIT_METHODS)}, got {data.get('method')!r}")
        for key in SPLIT_NAMES:
            v = data.get(key)
            if not (isinstance(v, list) and all(isinstance(n, str) for n in v)):
                problems.append(f"{key}: expected a list of case names")
        for key in ("groups", "conflicts", "excluded"):
            if not isinstance(v := data.get(key, []), list) or (key == "groups" and not all(  # of lists of names
                    isinstance(g, list) and all(isinstance(n, str) for n in g) for g in v)):
                problems.append(f"{key}: expected a list" + (" of lists of case names" if key == "groups" else ""))
        if not problems:
            seen: dict[str, str] = {}
            for key in SPLIT_NAMES:
                for n in data[key]:
                    if n in seen:
                        problems.append(f"case {n!r} is in both {seen[n]} and {key}")
                    seen[n] = key
            for e in data.get("excluded", []):
                if not (isinstance(e, dict) and isinstance(e.get("name"), str)):
                    problems.append(f"excluded: expected objects with a 'name', got {e!r}")
                elif e["name"] in seen:
                    problems.append(f"case {e['name']!r} is excluded but also in {seen[e['name']]}")
        if problems:  # another kind of split (BreastMNIST's official one) names its dataset: said first
            other = data.get("dataset") if not isinstance(data.get("train"), list) else None
            said = f" It is a split of {other!r}, in another layout." if isinstance(other, str) else ""
            raise DataError(f"{path}: not a valid split file.{said}", problems)
        return cls(
            path=path,
            data_checksum=data["data_checksum"],
            seed=int(data["seed"]),
            ratios=tuple(float(r) for r in ratios),  # type: ignore[arg-type]
            train=list(data["train"]),
            val=list(data["val"]),
            test=list(data["test"]),
            groups=[list(g) for g in data.get("groups", [])],
            conflicts=list(data.get("conflicts", [])),
            excluded=list(data.get("excluded", [])),
            dataset=str(data.get("dataset", "busi")),
            hash_threshold=data.get("hash_threshold"),
            summary=dict(data.get("summary", {})),
            method=data.get("method", LEGACY_SPLIT_METHOD),
        )


def default_split_path(cache_dir: str | Path, seed: int = 0) -> Path:
    """``<cache_dir>/busi_split_seed<seed>.json``: where to keep a BUSI split outside any run folder."""
    return Path(cache_dir) / DEFAULT_SPLIT_NAME.format(seed=seed)


# ----------------------------------------------------------------------------------------------------
# BUSI


def busi_split(data_root: str | Path, split_file: str | Path | None = None, seed: int = 0,
               ratios: Sequence[float] = (0.7, 0.1, 0.2), threshold: int | None = None,
               reuse_only: bool = False, method: str = DEFAULT_SPLIT_METHOD) -> SplitFile:
    """The BUSI split: reused from ``split_file`` when it exists, else made (and written there when given, unless
    ``reuse_only``: a user's ``--split-file``, where a mistyped path would otherwise get a new split written to it).

    Making a split reads and hashes the 780 images (a few seconds), groups near-duplicates, excludes
    contradictory copies and splits grouped and stratified (see the module docstring).

    Args:
        data_root: The data root (or BUSI folder; see :func:`breastdx.data.busi.find_busi_root`).
        split_file: A split file to reuse or to write; None to return the split unsaved (the data folder
            is read-only: the caller writes the split into its run folder).
        seed: Random seed of a new split.
        ratios: Fractions of train, val and test of a new split.
        threshold: pHash Hamming threshold; None for
            :data:`~breastdx.data.duplicates.DEFAULT_HASH_THRESHOLD`.
        reuse_only: Refuse a ``split_file`` that does not exist instead of making one there.
        method: How a new split places the near-duplicate groups (:data:`SPLIT_METHODS`).

    Returns:
        The :class:`SplitFile`. A reused file keeps its own seed, ratios and threshold (a warning is
        logged when they differ from the arguments, unless ``reuse_only``: the user named that file).

    Raises:
        FileNotFoundError: With ``reuse_only``, if ``split_file`` does not exist.
        DataError: If BUSI is not found or is invalid, or the split file was made from other data (its
            checksum differs from the data's) or names cases the data do not have.
        ImageReadError: If an image cannot be read while making a split.
    """
    from breastdx.data.busi import busi_checksum, find_busi_root, scan_busi
    from breastdx.data.duplicates import DEFAULT_HASH_THRESHOLD

    if reuse_only and split_file is not None and not Path(split_file).is_file():
        raise FileNotFoundError(f"{split_file}: no such split file")
    root = find_busi_root(data_root)
    cases = scan_busi(root)
    checksum = busi_checksum(cases)
    threshold = DEFAULT_HASH_THRESHOLD if threshold is None else int(threshold)
    if split_file is not None and Path(split_file).exists():
        sf = SplitFile.from_json(split_file)
        _check_reuse(sf, Path(split_file), root, cases, checksum)
        asked = (int(seed), tuple(float(x) for x in ratios), threshold, method)
        stored = (sf.seed, tuple(sf.ratios), sf.hash_threshold, sf.method)
        if asked != stored and not reuse_only:  # a file the user gave (--split-file) is used as it is, silently
            logger.warning("%s: reusing the stored split (seed %s, ratios %s, threshold %s, method %s); the "
                           "requested seed %s, ratios %s, threshold %s, method %s do not apply to an existing split "
                           "file", split_file, *stored, *asked)
        return sf
    sf = make_busi_split(cases, checksum, seed=seed, ratios=ratios, threshold=threshold, method=method)
    if split_file is not None:
        sf.to_json(split_file)
    return sf


def _check_reuse(sf: SplitFile, path: Path, root: Path, cases: list[BusiCase], checksum: str) -> None:
    if sf.dataset != "busi":
        raise DataError(f"{path}: a split of dataset {sf.dataset!r}, not of BUSI.")
    if sf.data_checksum != checksum:
        raise DataError(
            f"{path}: the split was made from data with checksum {sf.data_checksum}, but the BUSI data in "
            f"{root} now have checksum {checksum}: the data changed (files added, removed or altered). "
            f"Restore the data the split was made from; to train on these data, make a new split (train "
            f"without --split-file); to score a model on images it was not split from, use evaluate --external "
            f"DIR, which reads no split."
        )
    names = {c.name for c in cases}
    listed = set(sf.train) | set(sf.val) | set(sf.test) | set(sf.excluded_names())
    unknown = sorted(listed - names)
    missing = sorted(names - listed)
    problems = [f"{n}: in the split file but not in the data" for n in unknown]
    problems += [f"{n}: in the data but in no split and not excluded" for n in missing]
    if problems:
        raise DataError(f"{path}: the split does not match the cases in {root}.", problems)


def _hash_case(case: BusiCase) -> tuple[int, np.ndarray, str]:
    from breastdx.data.duplicates import perceptual_hash, thumbnail
    from breastdx.data.images import read_image

    arr = read_image(case.image, mode="gray").array
    return perceptual_hash(arr), thumbnail(arr), sha256_arrays(arr)


def make_busi_split(cases: list[BusiCase], data_checksum: str, seed: int = 0,
                    ratios: Sequence[float] = (0.7, 0.1, 0.2), threshold: int | None = None,
                    method: str = DEFAULT_SPLIT_METHOD) -> SplitFile:
    """Make a BUSI split from scanned cases (the work behind :func:`busi_split`, without files).

    Args:
        cases: From :func:`breastdx.data.busi.scan_busi`.
        data_checksum: Their :func:`breastdx.data.busi.busi_checksum`.
        seed: Random seed.
        ratios: Fractions of train, val and test.
        threshold: pHash Hamming threshold (None: the default).
        method: How the near-duplicate groups are placed (:data:`SPLIT_METHODS`).

    Returns:
        An unsaved :class:`SplitFile`.

    Raises:
        ValueError: If the ratios or the method are invalid.
        ImageReadError: If an image cannot be read.
    """
    import time

    from breastdx.data.duplicates import (
        DEFAULT_HASH_THRESHOLD,
        DEFAULT_MIN_CORRELATION,
        SAME_IMAGE_CORRELATION,
        aligned_correlation,
        group_near_duplicates,
    )
    from breastdx.data.images import read_image

    r = check_ratios(ratios)
    threshold = DEFAULT_HASH_THRESHOLD if threshold is None else int(threshold)
    start = time.perf_counter()
    workers = max(1, min(8, os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers) as pool:  # decoding releases the GIL
        hashed = list(pool.map(_hash_case, cases))
    hashes = [h for h, _, _ in hashed]
    thumbs = np.stack([t for _, t, _ in hashed])
    pixel_sha = [s for _, _, s in hashed]
    group_ids = group_near_duplicates(hashes, threshold, thumbs, DEFAULT_MIN_CORRELATION)
    logger.info("hashed %d BUSI images in %.1f s", len(cases), time.perf_counter() - start)

    members: dict[int, list[int]] = {}
    for i, g in enumerate(group_ids):
        members.setdefault(g, []).append(i)
    multi = [idx for idx in members.values() if len(idx) > 1]
    groups_out = [[cases[i].name for i in idx] for idx in multi]

    conflicts: list[dict] = []
    contradicted: dict[int, list[tuple[int, str]]] = {}
    for idx in multi:
        labs = [cases[i].label for i in idx]
        if len(set(labs)) < 2:
            continue
        pairs = []
        for a_pos, a in enumerate(idx):
            for b in idx[a_pos + 1:]:
                if cases[a].label == cases[b].label:
                    continue
                if pixel_sha[a] == pixel_sha[b]:
                    sim, how = 1.0, "identical pixels"
                else:
                    sim = aligned_correlation(read_image(cases[a].image).array, read_image(cases[b].image).array)
                    how = f"aligned correlation {sim:.4f}: a re-cropped or rescaled copy"
                if sim >= SAME_IMAGE_CORRELATION:
                    pairs.append([cases[a].name, cases[b].name, round(float(sim), 4)])
                    contradicted.setdefault(a, []).append((b, how))
                    contradicted.setdefault(b, []).append((a, how))
        conflicts.append({
            "members": [cases[i].name for i in idx],
            "labels": labs,
            "kind": "identical image" if pairs else "near-duplicate",
            "same_image_pairs": pairs,
        })
    excluded = []
    for i in sorted(contradicted, key=lambda k: (cases[k].label, cases[k].number)):
        others = "; ".join(f"{cases[j].name} ({how})" for j, how in contradicted[i])
        excluded.append({
            "name": cases[i].name,
            "label": cases[i].label,
            "reason": f"the same image is filed under another label: {others}; {CONTRADICTORY}",
            "group": [cases[k].name for k in members[group_ids[i]]],
        })
    keep = [i for i in range(len(cases)) if i not in contradicted]
    parts = grouped_stratified_split([cases[i].label for i in keep], [group_ids[i] for i in keep],
                                     r, seed, severity=BUSI_SEVERITY, method=method)
    split_names = {s: [cases[keep[k]].name for k in parts[s]] for s in SPLIT_NAMES}
    summary = _summary(cases, split_names, groups_out, conflicts, excluded, threshold)
    logger.info("BUSI split (seed %d): %s", seed, summary["cases"])
    return SplitFile(None, data_checksum, int(seed), r, split_names["train"], split_names["val"],
                     split_names["test"], groups_out, conflicts, excluded, "busi", threshold, summary, method)


def _summary(cases: list[BusiCase], split_names: dict[str, list[str]], groups: list, conflicts: list, excluded: list,
             threshold: int) -> dict:
    from breastdx.data.busi import BUSI_CLASSES

    label = {c.name: c.label for c in cases}
    counts = {s: {c: sum(1 for n in split_names[s] if label[n] == c) for c in BUSI_CLASSES} for s in SPLIT_NAMES}
    return {
        "cases": {s: len(split_names[s]) for s in SPLIT_NAMES} | {"excluded": len(excluded)},
        "per_class": counts,
        "near_duplicate_groups": len(groups),
        "images_in_groups": sum(len(g) for g in groups),
        "images_in_groups_per_split": {s: len({n for g in groups for n in g} & set(split_names[s])) for s in SPLIT_NAMES},
        "conflicts": len(conflicts),
        "hash_threshold": threshold,
    }
