"""Per-nucleus rows and the per-tile 30 cytology columns from an instance label mask.

Per tile, each of the ten features of :mod:`breastdx.morphometry.features` becomes three columns under the cytology
names (``radius_mean`` ... ``fractal_dimension_worst``), as in the WDBC table (``wdbc.names``): the mean over the
nuclei, the standard error (sample standard deviation / sqrt(n)) and the "worst", the mean of the three largest
values. **Choice**: nuclei that touch the tile's edge (cut by it) and objects smaller than ``min_area`` pixels are
measured in the per-nucleus rows but left out of the tile's columns.

References:
    Street, W. N., Wolberg, W. H. & Mangasarian, O. L. (1993). Nuclear feature extraction for breast tumor
    diagnosis. Proc. SPIE 1905:861-870. doi:10.1117/12.148698
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import Any

import numpy as np

from breastdx.morphometry.features import (LENGTH_POWER, NUCLEUS_FEATURES, MorphometryOptions, nucleus_features,
                                           to_microns)

log = logging.getLogger(__name__)

STATISTICS = ("mean", "se", "worst")
TILE_COLUMNS: tuple[str, ...] = tuple(f"{f}_{s}" for s in STATISTICS for f in NUCLEUS_FEATURES)
"""The 30 per-tile columns in the cytology order: the ten means, the ten standard errors, the ten worst."""
MIN_AREA = 30
"""Smallest object, pixels, counted in a tile's columns (at 0.25 µm/px, 1.9 µm²: debris, not a nucleus)."""
MAX_AREA = 16000
"""Largest object, pixels, counted in a tile's columns (at 0.25 µm/px, 1,000 µm², a disc 36 µm across: over four
times the largest of the 2,189 reference nuclei of MoNuSeg's breast tiles, 3,638 px). A larger region is a stain
blob, a fold or a merged cluster, which would otherwise set the 'worst' columns (the mean of the three largest)."""
LIMITS_MICRONS_PER_PIXEL = 0.25
"""The resolution :data:`MIN_AREA` and :data:`MAX_AREA` are given at (MoNuSeg's 40x); at another resolution the
limits are the same areas in µm² (:func:`area_limits`)."""
NUCLEUS_COLUMNS: tuple[str, ...] = ("label", "centroid_row", "centroid_col", "touches_edge", "in_summary",
                                    *NUCLEUS_FEATURES)
"""Columns of the per-nucleus rows (lengths in the unit of the row)."""


def area_limits(microns_per_pixel: float | None = None) -> tuple[float, float]:
    """``(min_area, max_area)`` in pixels: :data:`MIN_AREA` and :data:`MAX_AREA` at
    :data:`LIMITS_MICRONS_PER_PIXEL`, and the same areas in µm² at another resolution (at 0.5 µm/px: 7.5 and 4,000
    pixels). None: the tile's resolution is unknown, the pixel limits as they are.

    Raises:
        ValueError: If ``microns_per_pixel`` is not a positive number.
    """
    if microns_per_pixel is None:
        return float(MIN_AREA), float(MAX_AREA)
    if not (isinstance(microns_per_pixel, (int, float)) and 0 < microns_per_pixel < float("inf")):
        raise ValueError(f"area_limits(): microns_per_pixel must be a positive number, got {microns_per_pixel!r}.")
    scale = (LIMITS_MICRONS_PER_PIXEL / float(microns_per_pixel)) ** 2
    return MIN_AREA * scale, MAX_AREA * scale


def measure_nuclei(labels: np.ndarray, grey: np.ndarray | None = None, *, min_area: float | None = None,
                   max_area: float | None = None, microns_per_pixel: float | None = None,
                   options: MorphometryOptions = MorphometryOptions()) -> list[dict[str, Any]]:
    """The ten features of every nucleus of an instance mask, lengths in pixels.

    Args:
        labels: Instance labels, int ``(H, W)``: 0 background, one positive id per nucleus.
        grey: Grey levels ``(H, W)`` (0-255, :func:`breastdx.morphometry.features.grey_levels`), or None.
        min_area: Smallest nucleus, pixels, kept in the tile's columns (``in_summary``); None: from
            :func:`area_limits` at ``microns_per_pixel``.
        max_area: Largest nucleus, pixels, kept in the tile's columns; larger regions keep their row, with
            ``in_summary`` false. None: from :func:`area_limits`.
        microns_per_pixel: The tile's resolution, for the default limits (None: unknown, the pixel limits at
            0.25 µm/px).
        options: How outlines are drawn.

    Returns:
        One dict per nucleus (ascending label) with :data:`NUCLEUS_COLUMNS`; centroids in tile pixels.

    Raises:
        ValueError: If ``labels`` is not 2-D, ``grey`` has another shape or ``microns_per_pixel`` is not positive.
    """
    from skimage.measure import regionprops

    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"measure_nuclei(): labels must be a 2-D instance mask, got shape {labels.shape}.")
    if grey is not None and np.shape(grey) != labels.shape:
        raise ValueError(f"measure_nuclei(): grey image of shape {np.shape(grey)} for labels of shape "
                         f"{labels.shape}.")
    low, high = area_limits(microns_per_pixel)
    min_area, max_area = low if min_area is None else min_area, high if max_area is None else max_area
    h, w = labels.shape
    rows = []
    for region in regionprops(labels.astype(np.int64, copy=False)):
        r0, c0, r1, c1 = region.bbox
        crop = region.image
        g = None if grey is None else np.asarray(grey)[r0:r1, c0:c1]
        f = nucleus_features(crop, g, options)
        edge = r0 == 0 or c0 == 0 or r1 == h or c1 == w
        rows.append({"label": int(region.label), "centroid_row": f.pop("centroid_row") + r0,
                     "centroid_col": f.pop("centroid_col") + c0, "touches_edge": bool(edge),
                     "in_summary": bool(not edge and min_area <= f["area"] <= max_area), **f})
    return rows


def tile_summary(nuclei: list[dict[str, Any]]) -> dict[str, float]:
    """The 30 cytology columns over the nuclei with ``in_summary`` (NaN where there are none; the standard error
    needs two nuclei, the worst uses all of them when fewer than three)."""
    kept = [n for n in nuclei if n.get("in_summary", True)]
    out: dict[str, float] = {}
    for f in NUCLEUS_FEATURES:
        v = np.array([n[f] for n in kept], dtype=np.float64)
        v = v[np.isfinite(v)]
        out[f"{f}_mean"] = float(v.mean()) if len(v) else float("nan")
        out[f"{f}_se"] = float(v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else float("nan")
        out[f"{f}_worst"] = float(np.sort(v)[-3:].mean()) if len(v) else float("nan")
    return {k: out[k] for k in TILE_COLUMNS}


def in_microns(nuclei: list[dict[str, Any]], microns_per_pixel: float) -> list[dict[str, Any]]:
    """Per-nucleus rows with lengths in µm and areas in µm²; centroids stay in pixels."""
    return [to_microns(n, microns_per_pixel) for n in nuclei]


def _cell(v: Any) -> Any:
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, float):
        return "" if v != v else f"{v:.6g}"
    return v


def nucleus_columns(microns_per_pixel: float | None = None) -> list[str]:
    """The columns of :func:`nucleus_rows`: :data:`NUCLEUS_COLUMNS`, then with a resolution ``radius_um`` ...
    ``area_um2``."""
    um = [f"{k}_um2" if LENGTH_POWER[k] == 2 else f"{k}_um" for k in LENGTH_POWER] if microns_per_pixel else []
    return [*NUCLEUS_COLUMNS, *um]


def nucleus_rows(nuclei: list[dict[str, Any]], microns_per_pixel: float | None = None) -> list[dict[str, Any]]:
    """One row per nucleus (:func:`nucleus_columns`): lengths in pixels, then (with a resolution) the four lengths
    and the area again in µm / µm²; NaN where a feature is undefined."""
    columns = nucleus_columns(microns_per_pixel)
    um = in_microns(nuclei, microns_per_pixel) if microns_per_pixel else [{}] * len(nuclei)
    return [dict(zip(columns, [*(n[k] for k in NUCLEUS_COLUMNS), *(u[k] for k in LENGTH_POWER if u)]))
            for n, u in zip(nuclei, um)]


def write_nuclei_csv(nuclei: list[dict[str, Any]], path: Path, microns_per_pixel: float | None = None) -> Path:
    """Write :func:`nucleus_rows` as a CSV (booleans as 0/1, NaN as an empty cell)."""
    columns = nucleus_columns(microns_per_pixel)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(columns)
        for row in nucleus_rows(nuclei, microns_per_pixel):
            w.writerow([_cell(row[k]) for k in columns])
    return path


def tile_rows(name: str, nuclei: list[dict[str, Any]], microns_per_pixel: float | None = None
              ) -> list[dict[str, Any]]:
    """Rows of the per-tile table: ``tile``, ``unit`` (``px``; ``um`` with a resolution), ``n_in_summary`` (the
    nuclei summarised, as in ``predictions.csv``, whose ``n_nuclei`` counts every nucleus found),
    ``microns_per_pixel``, then the 30 :data:`TILE_COLUMNS`."""
    n = sum(bool(x["in_summary"]) for x in nuclei)
    rows = [{"tile": name, "unit": "px", "n_in_summary": n, "microns_per_pixel": "", **tile_summary(nuclei)}]
    if microns_per_pixel:
        rows.append({"tile": name, "unit": "um", "n_in_summary": n, "microns_per_pixel": microns_per_pixel,
                     **tile_summary(in_microns(nuclei, microns_per_pixel))})
    return rows


def write_tile_csv(rows: list[dict[str, Any]], path: Path) -> Path:
    """Write :func:`tile_rows` of several tiles as one CSV."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=["tile", "unit", "n_in_summary", "microns_per_pixel", *TILE_COLUMNS])
        w.writeheader()
        for r in rows:
            w.writerow({k: _cell(v) for k, v in r.items()})
    return path
