"""Batch prediction of nuclei to files (``breastdx predict monuseg``): per tile the instance mask, an overlay and
the per-nucleus CSV; for the batch ``tile_features.csv`` and ``predictions.csv``.

Inputs are files and folders, collected by :func:`breastdx.data.image_files.list_images` and read by
:func:`breastdx.data.images.read_image` in RGB, as every other image task reads them (format from the first bytes,
DICOM, 16-bit rescaling, a clear message naming a bad file). A file that cannot be read is returned as a failure
with its reason, and the batch goes on. Each tile is checked against what the model was trained on
(:func:`breastdx.inference.scope.check_scope`: a grey image, a dark image with little colour such as ultrasound, or
a tile under half the training patch size on its shorter side is flagged, ``in_scope`` false with the reason in
``scope_note``; so is a tile whose nuclei are too small for 40x, :func:`magnification_note`), and still
segmented. Imports neither PyTorch nor MONAI.
"""

from __future__ import annotations

import csv
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Sequence

import numpy as np

SMALLEST_MEDIAN_NUCLEUS_PX = 200.0
"""A tile whose segmented nuclei have a median area under this many pixels is flagged out of scope: it is likely
at a lower magnification than MoNuSeg's 40x (0.25 µm/px). Measured with the shipped model
(``benchmarks/monuseg_magnification.py``): on the 8 breast tiles the median is 275-591 px as they are, 107-209 px
halved in size (as at 20x), 487-1416 px doubled (as at 80x, which this check cannot tell from 40x)."""

MIN_NUCLEI_FOR_MAGNIFICATION = 30
"""Fewest nuclei for the magnification check (a tile of stroma or background says nothing of it)."""

PREDICTION_FIELDS = ("source", "height", "width", "n_nuclei", "n_in_summary", "mask", "microns_per_pixel",
                     "resolution_source", "in_scope", "scope_note", "seen_in_training", "seconds")
"""Columns of ``predictions.csv``, one row per tile read."""


def scope_reference(predictor: Any) -> Any:
    """What :func:`~breastdx.inference.scope.check_scope` compares a tile with: an H&E (``rgb``) model trained on
    patches of ``training_config.patch_size`` px (128 for the shipped model)."""
    size = int((predictor.meta.get("training_config") or {}).get("patch_size") or 0) or None
    return SimpleNamespace(preprocessing=SimpleNamespace(mode="rgb", image_size=size))


def magnification_note(labels: np.ndarray) -> str:
    """Why a tile looks like a lower magnification than 40x, or ``""``.

    Args:
        labels: The predicted nucleus instance labels, integer ``(H, W)``, 0 background.

    Returns:
        A note when at least :data:`MIN_NUCLEI_FOR_MAGNIFICATION` nuclei have a median area under
        :data:`SMALLEST_MEDIAN_NUCLEUS_PX` pixels; else an empty string.
    """
    counts = np.bincount(np.asarray(labels, dtype=np.int64).ravel())[1:]
    areas = counts[counts > 0]
    if areas.size < MIN_NUCLEI_FOR_MAGNIFICATION or float(np.median(areas)) >= SMALLEST_MEDIAN_NUCLEUS_PX:
        return ""
    return (f"its nuclei are small for 40x (median {float(np.median(areas)):.0f} px, against 275-591 px on MoNuSeg's "
            f"breast tiles): the tile may be at 20x or less, where this model misses nuclei and its µm figures are "
            f"wrong; resample it to 0.25 µm per pixel (40x) first")


def tile_scope(record: Any, predictor: Any, labels: np.ndarray,
               resolution: tuple[float | None, str] | None = None) -> Any:
    """The :class:`~breastdx.inference.scope.Scope` of one tile: :func:`~breastdx.inference.scope.check_scope`
    against :func:`scope_reference`, :func:`magnification_note` of its predicted ``labels``, and
    :func:`resolution_note` of the resolution it is measured at (``resolution``, what :func:`tile_resolution`
    gives; default its file's pixel spacing, else the model's)."""
    from breastdx.inference.scope import Scope, check_scope

    if resolution is None:
        resolution = tile_resolution(record, float(predictor.meta.get("microns_per_pixel") or 0) or None)
    scope = check_scope(record, scope_reference(predictor))
    extra = [n for n in (magnification_note(labels), resolution_note(*resolution, predictor),
                         black_note(record.array)) if n]
    return Scope(False, "; ".join(filter(None, (scope.note, *extra)))) if extra else scope


MAX_BLACK_SHARE = 0.1
"""Share of black pixels (:data:`breastdx.data.stain.BLACK_LEVEL`) above which a tile is flagged: tissue is never
black, so such a tile holds padding or a painted-out area, where any nucleus found is not tissue."""


def black_note(image: np.ndarray) -> str:
    """Why a tile's black area puts it out of scope, or ``""``."""
    from breastdx.data.stain import BLACK_LEVEL

    a = np.asarray(image)
    share = float(np.all(a <= BLACK_LEVEL, axis=-1).mean()) if a.ndim == 3 else float((a <= BLACK_LEVEL).mean())
    if share <= MAX_BLACK_SHARE:
        return ""
    return (f"{share:.0%} of the tile is black (outside the scanned area, or painted out): nuclei found there are "
            f"not tissue; crop the tile to its tissue")


def resolution_note(mpp: float | None, source: str, predictor: Any) -> str:
    """Why a tile is at another resolution than the model's, or ``""``: the resolution its file (a DICOM pixel
    spacing) or ``--microns-per-pixel`` gives (:func:`tile_resolution`'s ``mpp`` and ``source``, whose note after
    ``"; "`` is not needed here) more than 25% away from the model's ``microns_per_pixel`` (0.25, 40x)."""
    trained = float(predictor.meta.get("microns_per_pixel") or 0)
    source = source.split(";")[0]
    if not trained or not mpp or source not in ("file", "option") or abs(mpp / trained - 1) <= 0.25:
        return ""
    given = "its file gives" if source == "file" else "--microns-per-pixel gives"
    return (f"{given} {mpp:g} µm per pixel, and this model was trained at {trained:g}: resample the tile to "
            f"{trained:g} µm per pixel first")


MAX_FILE_MICRONS_PER_PIXEL = 10.0
"""Largest µm per pixel taken from a file's pixel spacing: a microscopy tile at 1.25x or more; a larger value is
not a microscope's (an ultrasound image's spacing is about 100 µm per pixel) and is not used."""


def tile_resolution(record: Any, default: float | None, from_file: bool = True) -> tuple[float | None, str]:
    """The resolution a tile's nuclei are measured at, µm per pixel, and where it comes from.

    Args:
        record: The tile as read (:class:`~breastdx.data.images.ImageRecord`): ``spacing_mm`` is a DICOM file's
            pixel spacing (PixelSpacing, of the file or of its Shared Functional Groups, as whole-slide
            microscopy writes it); other formats give none (MoNuSeg's TIFFs carry 72-dpi placeholders).
        default: The resolution otherwise: ``--microns-per-pixel``, or the model's (0.25, MoNuSeg at 40x); None
            for unknown (pixels only).
        from_file: Use the file's spacing when it has one (``predict monuseg`` without ``--microns-per-pixel``,
            and the service); False when the user gave the resolution.

    Returns:
        ``(µm per pixel or None, source)``: the file's square pixel spacing within (0,
        :data:`MAX_FILE_MICRONS_PER_PIXEL`] µm, source ``"file"``; else ``default`` with source ``"option"``,
        ``"model"`` or ``"unknown"``, and a note after ``"; "`` when the file's spacing was not used (pixels not
        square, or not a microscope's).
    """
    fallback = ("option" if not from_file else "model") if default else "unknown"
    spacing = getattr(record, "spacing_mm", None)
    if not from_file or spacing is None:
        return default, fallback
    row, col = (1000.0 * float(v) for v in spacing)
    if abs(row - col) > 0.01 * max(row, col):
        return default, f"{fallback}; the file's pixels are not square ({row:g} x {col:g} µm)"
    if not 0 < row <= MAX_FILE_MICRONS_PER_PIXEL:
        return default, f"{fallback}; the file's pixel spacing ({row:g} µm) is not a microscope's"
    return row, "file"


def write_nucleus_predictions(predictor: Any, inputs: Sequence[str | Path], run_dir: Path, *,
                              microns_per_pixel: float | None, resolution_from_file: bool = True,
                              overlays: bool) -> tuple[list[dict], list[tuple[str, str]]]:
    """Segment and measure every tile of ``inputs``; write its files under ``run_dir``.

    Writes ``masks/<tile>.png`` (16-bit instance labels; ``.tif`` beyond 65535 nuclei), ``overlays/<tile>.png``
    (with ``overlays``), ``nuclei/<tile>.csv``, ``tile_features.csv`` (the 30 cytology columns per tile, in px and,
    with ``microns_per_pixel``, in µm) and ``predictions.csv`` (:data:`PREDICTION_FIELDS`). Two tiles of the same
    name from different folders get distinct file names; ``seen_in_training`` is ``yes`` for a tile among the model
    folder's training hashes (the predictor's ``training_hashes``).

    Args:
        predictor: A :class:`~breastdx.inference.nuclei.NucleusPredictor`.
        inputs: Tile files and folders.
        run_dir: The output folder (exists).
        microns_per_pixel: The tiles' resolution, or None when unknown (features in px only).
        resolution_from_file: A tile whose file gives its pixel spacing (DICOM) is measured at that instead
            (:func:`tile_resolution`; ``predictions.csv`` says which, per tile).
        overlays: Write the outline overlays.

    Returns:
        ``(rows, failures)``: the rows of ``predictions.csv`` and ``(file, reason)`` of each input not read.
    """
    from breastdx.data.images import ImageReadError, read_image
    from breastdx.data.image_files import OutputStems, item_stem, list_images
    from breastdx.evaluation.nuclei_report import save_png
    from breastdx.inference.base import seen_in_training
    from breastdx.inference.csv_safety import safe_cell, safe_rows
    from breastdx.morphometry.features import grey_levels
    from breastdx.morphometry.summary import measure_nuclei, tile_rows, write_nuclei_csv, write_tile_csv
    from breastdx.visualize.instances import instance_overlay
    from breastdx.visualize.png import write_instance_labels

    for sub in ("masks", "nuclei", *(("overlays",) if overlays else ())):
        (run_dir / sub).mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    tiles: list[dict] = []
    failures: list[tuple[str, str]] = []
    stems = OutputStems()
    for path in list_images(inputs):
        start = time.perf_counter()
        try:
            record = read_image(path, mode="rgb")
        except ImageReadError as e:  # a batch goes on past a bad file and lists it
            failures.append((str(path), str(e)))
            continue
        image = record.array
        labels, _ = predictor.predict(image)
        mpp, source = tile_resolution(record, microns_per_pixel, resolution_from_file)
        scope = tile_scope(record, predictor, labels, (mpp, source))
        nuclei = measure_nuclei(labels, grey_levels(image), microns_per_pixel=mpp)  # the size limits in µm²
        stem = stems.claim(item_stem(path))  # two inputs of the same name from different folders
        mask_path = write_instance_labels(labels, run_dir / "masks" / stem)
        write_nuclei_csv(nuclei, run_dir / "nuclei" / f"{stem}.csv", mpp)
        if overlays:
            save_png(instance_overlay(image, labels), run_dir / "overlays" / f"{stem}.png")
        tiles.extend(tile_rows(safe_cell(stem), nuclei, mpp))  # the tile name, as predictions.csv writes it
        rows.append({"source": str(path), "height": image.shape[0], "width": image.shape[1],
                     "n_nuclei": len(nuclei), "n_in_summary": sum(n["in_summary"] for n in nuclei),
                     "mask": str(mask_path.relative_to(run_dir)), "microns_per_pixel": mpp or "",
                     "resolution_source": source, "in_scope": str(scope.in_scope).lower(),
                     "scope_note": scope.note,
                     "seen_in_training": seen_in_training(predictor, image) or "no",
                     "seconds": round(time.perf_counter() - start, 3)})
    write_tile_csv(tiles, run_dir / "tile_features.csv")
    with open(run_dir / "predictions.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(PREDICTION_FIELDS))
        writer.writeheader()
        writer.writerows(safe_rows(rows))  # a file name such as '=HYPERLINK(...)' is written as text
    return rows, failures
