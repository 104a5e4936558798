"""A data summary of an image-classification set: classes, sizes, quality, colour, duplicates, samples.

:func:`summarize` reads a :class:`~breastdx.data.patches.PatchSource` (PCam, IDC, BreakHis) or a list of
``(image, label)`` pairs (e.g. BUSI's gray ultrasound images) and writes ``summary.json``,
``report.html`` and its PNG figures into a folder. Figures per image, on at most ``max_items`` images
(a seeded random sample; the class distribution always counts every item):

* **size**: ``(H, W)`` and the number of channels;
* **blur**: variance of the Laplacian (``scipy.ndimage.laplace``, 4-neighbour kernel, borders
  reflected) of the gray image in grey levels 0-255; low values mean little edge content: blurred or
  empty (a constant image scores 0) (Pech-Pacheco et al. 2000);
* **brightness**: mean gray level, 0-255;
* **saturation**: mean HSV saturation ``(max - min) / max`` of R, G, B (as ``skimage.color.rgb2hsv``;
  0 where ``max = min``), 0-1; 0 for gray images;
* **colour**: per-channel mean and standard deviation, 0-255, per image and pooled over all pixels
  (the pooled values are the usual normalisation constants).

Gray is ITU-R 601-2 luma, ``0.299 R + 0.587 G + 0.114 B``, not rounded.

Duplicates: **exact** duplicates share the SHA-256 of their pixels (shape, dtype and bytes); **near**
duplicates have 64-bit perceptual hashes (:func:`breastdx.data.duplicates.perceptual_hash`) within
``near_threshold`` bits, grouped transitively. The default threshold, 4, suits patches: on the PCam
training subset the nearest other patch is at distance 0 (a pixel-identical copy) or at 6 bits or more,
and the pairs at 6-10 bits are different patches of near-empty background. Since near-empty patches
have hashes of little information, a hash match also needs the Pearson correlation of the two 32 x 32
gray thumbnails (:func:`breastdx.data.duplicates.thumbnail`) to reach ``NEAR_MIN_CORRELATION`` = 0.9:
on the PCam subset, two different background patches 4 bits apart correlate 0.19, while a JPEG
re-encoding (quality 75) of a patch correlates 0.9999. (For ultrasound frames,
:data:`breastdx.data.duplicates.DEFAULT_HASH_THRESHOLD` = 10 is calibrated on BUSI.) Groups whose
members carry different labels are counted as conflicts.

Items that cannot be read are listed with the reason; they do not stop the summary.

References:
    Pech-Pacheco, J. L., Cristóbal, G., Chamorro-Martínez, J. & Fernández-Valdivia, J. (2000).
    Diatom autofocusing in brightfield microscopy: a comparative study. ICPR 2000, 3:314-317.
    doi:10.1109/ICPR.2000.903548
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from breastdx.data.errors import DataError
from breastdx.data.patches import PatchSource

logger = logging.getLogger(__name__)

NEAR_DUPLICATE_THRESHOLD: int = 4
"""Default largest perceptual-hash distance (bits of 64) of near-duplicate patches; see the module docstring."""

NEAR_MIN_CORRELATION: float = 0.9
"""Smallest correlation of 32 x 32 thumbnails for a hash match to count as a near-duplicate."""

QUALITY_FIGURES = ("blur", "brightness", "saturation")
"""Per-image quality figures summarised per class."""

_LUMA = np.array([0.299, 0.587, 0.114])


# ----------------------------------------------------------------------------------------------------
# Per-image figures


def to_gray(image: np.ndarray) -> np.ndarray:
    """Gray levels as float64 ``(H, W)``: ITU-R 601-2 luma for RGB ``(H, W, 3)``, unchanged for ``(H, W)``.

    Raises:
        ValueError: For another shape.
    """
    a = np.asarray(image)
    if a.ndim == 2:
        return a.astype(np.float64)
    if a.ndim == 3 and a.shape[-1] == 3:
        return a.astype(np.float64) @ _LUMA
    raise ValueError(f"expected an image of shape (H, W) or (H, W, 3); got {a.shape}.")


def laplacian_variance(image: np.ndarray) -> float:
    """Variance of the Laplacian of the gray image (grey levels 0-255, borders reflected): a blur measure.

    Args:
        image: ``(H, W)`` or ``(H, W, 3)``, values 0-255.

    Returns:
        ``var(laplace(gray))``; 0 for a constant image.

    References:
        Pech-Pacheco et al. (2000), doi:10.1109/ICPR.2000.903548
    """
    from scipy.ndimage import laplace

    return float(np.var(laplace(to_gray(image), mode="reflect")))


def mean_saturation(image: np.ndarray) -> float:
    """Mean HSV saturation in [0, 1] (0 for a gray ``(H, W)`` image)."""
    a = np.asarray(image)
    if a.ndim == 2:
        return 0.0
    x = a.astype(np.float64)
    high = x.max(axis=-1)
    delta = high - x.min(axis=-1)
    sat = np.divide(delta, high, out=np.zeros_like(high), where=delta > 0)  # as skimage.color.rgb2hsv
    return float(sat.mean())


def pixel_sha256(image: np.ndarray) -> str:
    """Hex SHA-256 of an image's dtype, shape and C-order bytes: equal only for pixel-identical images."""
    a = np.ascontiguousarray(image)
    h = hashlib.sha256(f"{a.dtype.str}{a.shape}".encode())
    h.update(a.tobytes())
    return h.hexdigest()


def image_figures(image: np.ndarray) -> dict[str, Any]:
    """The per-image figures of the module docstring.

    Args:
        image: ``uint8`` ``(H, W)`` or ``(H, W, 3)``.

    Returns:
        ``{"height", "width", "channels", "blur", "brightness", "saturation", "channel_mean",
        "channel_std"}`` (the last two are lists, one value per channel).
    """
    a = np.asarray(image)
    pixels = a.reshape(-1, 1 if a.ndim == 2 else a.shape[-1]).astype(np.float64)
    return {
        "height": int(a.shape[0]),
        "width": int(a.shape[1]),
        "channels": 1 if a.ndim == 2 else int(a.shape[-1]),
        "blur": laplacian_variance(a),
        "brightness": float(to_gray(a).mean()),
        "saturation": mean_saturation(a),
        "channel_mean": pixels.mean(axis=0).tolist(),
        "channel_std": pixels.std(axis=0).tolist(),
    }


# ----------------------------------------------------------------------------------------------------
# Duplicates


def near_duplicate_groups(hashes: Sequence[int], threshold: int, thumbnails: np.ndarray | None = None,
                          min_correlation: float = NEAR_MIN_CORRELATION, block: int = 1024) -> list[list[int]]:
    """Groups (two or more members) of images whose hashes are within ``threshold`` bits, linked transitively.

    Distances are computed block by block (``block x n`` at a time), so memory grows with ``n``, not
    ``n ** 2`` as in :func:`breastdx.data.duplicates.group_near_duplicates`.

    Args:
        hashes: 64-bit perceptual hashes, one per image.
        threshold: Largest Hamming distance of a link, 0-64.
        thumbnails: Optional ``(n, d)`` zero-mean unit-norm thumbnails
            (:func:`breastdx.data.duplicates.thumbnail`); a link then also needs their correlation to be at
            least ``min_correlation``.
        min_correlation: See ``thumbnails``.
        block: Rows per block.

    Returns:
        Groups of indices, each sorted, ordered by their first index.

    Raises:
        ValueError: If ``threshold`` is outside 0-64 or ``thumbnails`` has not one row per hash.
    """
    if not 0 <= int(threshold) <= 64:
        raise ValueError(f"threshold must be a Hamming distance in 0-64; got {threshold}.")
    h = np.asarray([int(x) for x in hashes], dtype=np.uint64)
    n = h.size
    if thumbnails is not None and (thumbnails.ndim != 2 or thumbnails.shape[0] != n):
        raise ValueError(f"thumbnails must have one row per hash ({n}); got shape {thumbnails.shape}.")
    parent = np.arange(n)

    def find(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = int(parent[a])
        return a

    for start in range(0, n, block):
        x = h[start:start + block, None] ^ h[None, :]
        d = np.bitwise_count(x) if hasattr(np, "bitwise_count") else \
            np.unpackbits(x.view(np.uint8).reshape(x.shape[0], n, 8), axis=-1).sum(-1)
        rows, cols = np.nonzero(d <= threshold)
        for i, j in zip(rows + start, cols):
            if i < j and (thumbnails is None or float(thumbnails[i] @ thumbnails[j]) >= min_correlation):
                ri, rj = find(int(i)), find(int(j))
                if ri != rj:
                    parent[max(ri, rj)] = min(ri, rj)
    members: dict[int, list[int]] = {}
    for i in range(n):
        members.setdefault(find(i), []).append(i)
    return sorted((m for m in members.values() if len(m) > 1), key=lambda m: m[0])


def _group_report(groups: list[list[int]], ids: list[str], labels: list[int], class_names: Sequence[str],
                  examples: int = 20) -> dict[str, Any]:
    conflicts = [g for g in groups if len({labels[i] for i in g}) > 1]
    by_class = Counter(class_names[labels[g[0]]] for g in groups if g not in conflicts)
    return {
        "groups": len(groups),
        "items_in_groups": int(sum(len(g) for g in groups)),
        "redundant_items": int(sum(len(g) - 1 for g in groups)),
        "groups_within_class": {c: int(by_class.get(c, 0)) for c in class_names},
        "groups_across_classes": len(conflicts),
        "examples": [[ids[i] for i in g] for g in groups[:examples]],
        "conflict_examples": [[f"{ids[i]} ({class_names[labels[i]]})" for i in g] for g in conflicts[:examples]],
    }


# ----------------------------------------------------------------------------------------------------
# Input handling


class _Items:
    """A uniform view of a PatchSource or a list of ``(image, label)`` pairs."""

    def __init__(self, data: PatchSource | Sequence[tuple[np.ndarray, Any]], class_names: Sequence[str] | None,
                 name: str | None) -> None:
        if isinstance(data, PatchSource):
            self.source: PatchSource | None = data
            self.pairs: Sequence[tuple[np.ndarray, Any]] | None = None
            self.labels = np.asarray(data.labels, dtype=np.int64)
            self.ids = list(data.ids)
            self.class_names = tuple(class_names or data.class_names)
            self.name = name or data.name
            return
        self.source = None
        self.pairs = data
        raw = [lab for _, lab in data]
        if all(isinstance(lab, str) for lab in raw):
            names = tuple(class_names) if class_names else tuple(sorted(set(raw)))
            unknown = sorted(set(raw) - set(names))
            if unknown:
                raise ValueError(f"labels {unknown} are not in class_names {list(names)}.")
            self.labels = np.asarray([names.index(lab) for lab in raw], dtype=np.int64)
        else:
            try:
                self.labels = np.asarray([int(lab) for lab in raw], dtype=np.int64)
            except (TypeError, ValueError):
                raise ValueError("labels must be all ints or all strings.") from None
            k = int(self.labels.max()) + 1 if self.labels.size else 0
            names = tuple(class_names) if class_names else tuple(str(i) for i in range(k))
            if self.labels.size and (self.labels.min() < 0 or self.labels.max() >= len(names)):
                raise ValueError(f"labels must be in 0..{len(names) - 1} (one per class name).")
        self.class_names = names
        self.ids = [str(i) for i in range(len(data))]
        self.name = name or "images"

    def __len__(self) -> int:
        return int(self.labels.size)

    def image(self, i: int) -> np.ndarray:
        if self.source is not None:
            return self.source.get(i)[0]
        image = self.pairs[i][0]  # type: ignore[index]
        return np.asarray(image() if callable(image) else image)  # a reader: only the analysed items are read


# ----------------------------------------------------------------------------------------------------
# Summary


def _stats(values: np.ndarray) -> dict[str, float]:
    if values.size == 0:
        return {"n": 0, "mean": float("nan"), "std": float("nan"), "min": float("nan"), "p05": float("nan"),
                "median": float("nan"), "p95": float("nan"), "max": float("nan")}
    q = np.percentile(values, [5, 50, 95])
    return {"n": int(values.size), "mean": float(values.mean()), "std": float(values.std()),
            "min": float(values.min()), "p05": float(q[0]), "median": float(q[1]), "p95": float(q[2]),
            "max": float(values.max())}


def summarize(data: PatchSource | Sequence[tuple[np.ndarray, Any]], out_dir: str | Path, max_items: int = 5000,
              seed: int = 0, near_threshold: int = NEAR_DUPLICATE_THRESHOLD, samples_per_class: int = 8,
              class_names: Sequence[str] | None = None, name: str | None = None,
              ids: Sequence[str] | None = None) -> dict[str, Any]:
    """Summarise a labelled image set and write ``summary.json``, ``report.html`` and PNG figures.

    Args:
        data: A :class:`~breastdx.data.patches.PatchSource`, or ``(image, label)`` pairs with ``uint8``
            images ``(H, W)`` (gray) or ``(H, W, 3)``, or functions that read one (called only for the
            analysed items), and labels all ints or all strings.
        out_dir: Output folder (created; existing files of the same names are replaced).
        max_items: Largest number of images read; above it a seeded random sample of this size is
            analysed (the class distribution still counts every item).
        seed: Seed of that sample and of the sample grid.
        near_threshold: Largest perceptual-hash distance of near-duplicates, 0-64.
        samples_per_class: Columns of the sample grid.
        class_names: Class names in label order (default: the source's, or the sorted string labels).
        name: Dataset name shown in the report (default: the source's).
        ids: For pairs, a name per item (BUSI's case names) for the listings and messages; default the index.

    Returns:
        The content of ``summary.json``: ``dataset``, ``n_items``, ``n_analysed``, ``class_counts``,
        ``sizes`` (``"HxWxC"`` to count), ``quality`` (per class and overall: statistics of blur,
        brightness, saturation), ``colour`` (pooled per-channel mean and std per class and overall),
        ``exact_duplicates`` and ``near_duplicates`` (groups, items, conflicts across classes, examples),
        ``lowest_blur`` (ids of the 10 least sharp images), ``failures`` (``{"id", "reason"}``) and
        ``files`` (the written file names).

    Raises:
        ValueError: If ``max_items`` < 1 or the labels do not fit ``class_names``.
    """
    from breastdx.runs import write_json

    if max_items < 1:
        raise ValueError(f"max_items must be >= 1; got {max_items}.")
    if not 0 <= int(near_threshold) <= 64:
        raise ValueError(f"near_threshold must be a Hamming distance in 0-64; got {near_threshold}.")
    items = _Items(data, class_names, name)
    if ids is not None and items.source is None:
        if len(ids) != len(items):
            raise ValueError(f"summarize(): {len(ids)} ids for {len(items)} items.")
        items.ids = [str(i) for i in ids]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    n = len(items)
    rng = np.random.default_rng(seed)
    chosen = np.arange(n) if n <= max_items else np.sort(rng.choice(n, size=max_items, replace=False))

    from breastdx.data.duplicates import perceptual_hash, thumbnail

    rows: list[dict[str, Any]] = []
    kept: list[int] = []
    digests: list[str] = []
    hashes: list[int] = []
    thumbs: list[np.ndarray] = []
    failures: list[dict[str, str]] = []
    sums: dict[tuple[int, int], list[Any]] = {}  # (label, channels): per-channel sum, sum of squares, pixels
    for i in chosen:
        i = int(i)
        try:
            image = items.image(i)
            if image.dtype != np.uint8 or image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[-1] != 3):
                raise DataError(f"expected a uint8 image (H, W) or (H, W, 3); got {image.dtype} {image.shape}")
        except (DataError, OSError) as err:
            failures.append({"id": items.ids[i], "reason": str(err)})
            logger.warning("summary: %s cannot be read: %s", items.ids[i], err)
            continue
        fig = image_figures(image)
        rows.append(fig)
        kept.append(i)
        digests.append(pixel_sha256(image))
        hashes.append(perceptual_hash(image))
        thumbs.append(thumbnail(image))
        pix = image.reshape(-1, fig["channels"]).astype(np.float64)
        acc = sums.setdefault((int(items.labels[i]), fig["channels"]),
                              [np.zeros(fig["channels"]), np.zeros(fig["channels"]), 0])
        acc[0] += pix.sum(0)
        acc[1] += (pix * pix).sum(0)
        acc[2] += pix.shape[0]

    labels = [int(items.labels[i]) for i in kept]
    ids = [items.ids[i] for i in kept]
    names = items.class_names
    result: dict[str, Any] = {
        "dataset": items.name,
        "n_items": n,
        "n_analysed": len(kept),
        "sampled": bool(n > max_items),
        "seed": int(seed),
        "class_names": list(names),
        "class_counts": {c: int(np.sum(items.labels == k)) for k, c in enumerate(names)},
        "class_counts_analysed": {c: int(sum(1 for lab in labels if lab == k)) for k, c in enumerate(names)},
        "sizes": dict(Counter(f"{r['height']}x{r['width']}x{r['channels']}" for r in rows).most_common()),
        "size_range": _size_range(rows),
        "quality": {},
        "colour": {},
    }
    arr = {f: np.asarray([r[f] for r in rows], dtype=np.float64) for f in QUALITY_FIGURES}
    lab = np.asarray(labels, dtype=np.int64)
    for f in QUALITY_FIGURES:
        result["quality"][f] = {"all": _stats(arr[f])}
        for k, c in enumerate(names):
            result["quality"][f][c] = _stats(arr[f][lab == k])
    # gray and RGB images together (a set of pairs may mix them): a gray pixel v counts as (v, v, v), so that none
    # is left out of the colour figures (they kept only the images with the channels of a class's first image)
    width = max((ch for _, ch in sums), default=1)
    pooled = [np.zeros(width), np.zeros(width), 0]
    for k, c in enumerate(names):
        parts = [(np.resize(s, width), np.resize(s2, width), m) for (lab_k, _), (s, s2, m) in sums.items()
                 if lab_k == k and m]
        if parts:
            s, s2, m = (sum(p[j] for p in parts) for j in range(3))
            mean = s / m
            result["colour"][c] = {"mean": mean.tolist(), "std": np.sqrt(np.maximum(s2 / m - mean ** 2, 0)).tolist()}
            pooled = [pooled[0] + s, pooled[1] + s2, pooled[2] + m]
    if pooled[2]:
        mean = pooled[0] / pooled[2]
        result["colour"]["all"] = {"mean": mean.tolist(),
                                   "std": np.sqrt(np.maximum(pooled[1] / pooled[2] - mean ** 2, 0)).tolist()}

    exact: dict[str, list[int]] = {}
    for pos, d in enumerate(digests):
        exact.setdefault(d, []).append(pos)
    exact_groups = sorted((g for g in exact.values() if len(g) > 1), key=lambda g: g[0])
    result["exact_duplicates"] = _group_report(exact_groups, ids, labels, names)
    thumb_arr = np.stack(thumbs) if thumbs else np.zeros((0, 1), np.float32)
    near_groups = near_duplicate_groups(hashes, near_threshold, thumbnails=thumb_arr)
    result["near_duplicates"] = {"threshold": int(near_threshold), "min_correlation": NEAR_MIN_CORRELATION,
                                 **_group_report(near_groups, ids, labels, names)}
    order = np.argsort(arr["blur"], kind="stable")[:10]
    result["lowest_blur"] = [{"id": ids[int(j)], "blur": float(arr["blur"][int(j)])} for j in order]
    result["failures"] = failures

    files = _write_figures(out, items, kept, labels, arr, names, samples_per_class, rng)
    result["files"] = ["summary.json", "report.html"] + [p.name for p in files]
    write_json(result, out / "summary.json")
    _write_report(out, result, files)
    logger.info("summary of %s (%d of %d items) written to %s", items.name, len(kept), n, out)
    return result


# ----------------------------------------------------------------------------------------------------
# Figures and report


def _write_figures(out: Path, items: _Items, kept: list[int], labels: list[int], arr: dict[str, np.ndarray],
                   names: Sequence[str], per_class: int, rng: np.random.Generator) -> list[Path]:
    import matplotlib.pyplot as plt

    from breastdx.evaluation.plots import save_figure

    files = []
    lab = np.asarray(labels, dtype=np.int64)
    counts = [int(np.sum(items.labels == k)) for k in range(len(names))]
    fig, ax = plt.subplots(figsize=(1.2 + 1.1 * len(names), 3.2))
    bars = ax.bar(list(names), counts, color="#4c72b0")
    ax.bar_label(bars, labels=[str(c) for c in counts], fontsize=8)
    ax.set(ylabel="items", title="Class distribution")
    files.append(save_figure(fig, out / "class_distribution.png"))

    units = {"blur": "log10(1 + variance of Laplacian)", "brightness": "mean gray level (0-255)",
             "saturation": "mean HSV saturation (0-1)"}
    fig, axes = plt.subplots(2, 3, figsize=(12, 6.5))
    for col, f in enumerate(QUALITY_FIGURES):
        values = np.log10(1.0 + arr[f]) if f == "blur" else arr[f]
        per = [values[lab == k] for k in range(len(names))]
        ax = axes[0, col]
        if values.size:
            edges = np.histogram_bin_edges(values, bins=40)
            for k, v in enumerate(per):
                if v.size:
                    ax.hist(v, bins=edges, alpha=0.55, label=f"{names[k]} (n={v.size})")
        ax.set(xlabel=units[f], ylabel="images", title=f"{f} per class")
        ax.legend(fontsize=7)
        ax = axes[1, col]
        nonempty = [(names[k], v) for k, v in enumerate(per) if v.size]
        if nonempty:
            ax.boxplot([v for _, v in nonempty], showfliers=False)
            ax.set_xticks(range(1, len(nonempty) + 1), [c for c, _ in nonempty])
        ax.set(ylabel=units[f])
    files.append(save_figure(fig, out / "quality_per_class.png"))

    grid_rows = []
    for k in range(len(names)):
        pos = np.flatnonzero(lab == k)
        if pos.size:
            pick = np.sort(rng.choice(pos, size=min(per_class, pos.size), replace=False))
            grid_rows.append((names[k], [kept[int(p)] for p in pick]))
    if grid_rows:
        cols = max(len(r) for _, r in grid_rows)
        fig, axes = plt.subplots(len(grid_rows), cols, figsize=(1.4 * cols, 1.55 * len(grid_rows)), squeeze=False)
        for r, (cname, chosen) in enumerate(grid_rows):
            for c in range(cols):
                ax = axes[r, c]
                ax.axis("off")
                if c < len(chosen):
                    image = items.image(chosen[c])
                    ax.imshow(image, cmap="gray" if image.ndim == 2 else None, vmin=0, vmax=255)
                    ax.set_title(items.ids[chosen[c]][-18:], fontsize=5)
            axes[r, 0].text(-0.1, 0.5, cname, transform=axes[r, 0].transAxes, ha="right", va="center", fontsize=9)
        fig.suptitle("Random samples per class", fontsize=10)
        files.append(save_figure(fig, out / "samples_per_class.png"))
    return files


def _write_report(out: Path, result: dict[str, Any], files: list[Path]) -> None:
    from breastdx.evaluation.report import HtmlReport

    names = result["class_names"]
    rep = HtmlReport(f"Data summary: {result['dataset']}")
    sample_note = (f"{result['n_analysed']} of {result['n_items']} items analysed (seeded random sample, seed "
                   f"{result['seed']}); the class distribution counts every item." if result["sampled"] else
                   f"All {result['n_analysed']} readable items of {result['n_items']} analysed.")
    rep.paragraph(sample_note)
    rep.heading("Classes")
    rep.table(["class", "items", "analysed"],
              [[c, str(result["class_counts"][c]), str(result["class_counts_analysed"][c])] for c in names])
    rep.heading("Image sizes (H x W x channels)")
    sizes = list(result["sizes"].items())
    if len(sizes) > MAX_SIZES_LISTED:  # many distinct sizes (BUSI has hundreds): their range, then the commonest
        r = result["size_range"]
        rep.paragraph(f"{len(sizes)} distinct sizes: height {r['height'][0]}-{r['height'][2]} px (median "
                      f"{r['height'][1]:g}), width {r['width'][0]}-{r['width'][2]} px (median {r['width'][1]:g}), "
                      f"channels {', '.join(str(c) for c in r['channels'])}. The {MAX_SIZES_LISTED} most common:")
    rep.table(["size", "images"], [[s, str(v)] for s, v in sizes[:MAX_SIZES_LISTED]])
    rep.heading("Quality")
    rep.paragraph("Blur: variance of the Laplacian of the gray image (grey levels; low = little edge content, "
                  "blurred or empty). Brightness: mean gray level 0-255. Saturation: mean HSV saturation 0-1.")
    rows = []
    for f in QUALITY_FIGURES:
        for c in ["all", *names]:
            s = result["quality"][f][c]
            rows.append([f"{f} ({c})", s["mean"], s["std"], s["p05"], s["median"], s["p95"]])
    rep.table(["figure (class)", "mean", "std", "5th pct", "median", "95th pct"], rows)
    rep.heading("Colour (per channel, pooled over pixels, 0-255)")
    rep.table(["class", "mean", "std"],
              [[c, ", ".join(f"{v:.1f}" for v in col["mean"]), ", ".join(f"{v:.1f}" for v in col["std"])]
               for c, col in result["colour"].items()])
    rep.heading("Duplicates")
    ex, ne = result["exact_duplicates"], result["near_duplicates"]
    rep.table(["kind", "groups", "items in groups", "groups across classes"],
              [["exact (identical pixels)", str(ex["groups"]), str(ex["items_in_groups"]),
                str(ex["groups_across_classes"])],
               [f"near (pHash <= {ne['threshold']} bits)", str(ne["groups"]), str(ne["items_in_groups"]),
                str(ne["groups_across_classes"])]])
    if ex["examples"]:
        rep.paragraph("Exact duplicate groups (first ones): " + "; ".join(", ".join(g) for g in ex["examples"][:5]))
    for p in files:
        rep.figure(p, p.stem.replace("_", " "))
    if result["failures"]:
        rep.heading("Items that could not be read")
        rep.table(["item", "reason"], [[f["id"], f["reason"]] for f in result["failures"][:100]])
    rep.write(out / "report.html")


SUMMARY_DATASETS = ("busi", "pcam", "idc", "breakhis")


MAX_SIZES_LISTED = 10
"""The report lists at most this many distinct image sizes, after their range."""


def _size_range(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """``{"height": [min, median, max], "width": [...], "channels": sorted distinct}`` of the analysed images."""
    if not rows:
        return {"height": [], "width": [], "channels": []}
    out: dict[str, Any] = {}
    for key in ("height", "width"):
        v = np.asarray([r[key] for r in rows], dtype=np.float64)
        out[key] = [int(v.min()), float(np.median(v)), int(v.max())]
    out["channels"] = sorted({int(r["channels"]) for r in rows})
    return out
