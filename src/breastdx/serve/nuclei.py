"""The ``monuseg`` answer of the service: nuclei of one H&E tile and their morphometry.

An uploaded tile is decoded at its full size (nuclei are measured in its pixels, so it is never reduced; a tile
over :data:`NUCLEI_MAX_PIXELS` is refused with a pointer to ``breastdx predict monuseg``, which reads any size in
windows), segmented by the model folder's :class:`~breastdx.inference.nuclei.NucleusPredictor`, and measured with the
ten features of Street, Wolberg & Mangasarian (1993) per nucleus (:mod:`breastdx.morphometry`). The answer holds the
count, the 30 per-tile columns under the cytology names (``radius_mean`` ... ``fractal_dimension_worst``) in pixels
and, at the tile's resolution (a DICOM file's pixel spacing, else the model's: 0.25 µm per pixel, MoNuSeg at 40x),
in µm, the outlines as an RGBA layer, the scope checks of ``predict monuseg`` (colour, size, nuclei too small for
40x, a file's resolution far from the model's) and why these features carry no diagnosis
(:data:`~breastdx.evaluation.nuclei_report.CYTOLOGY_NOTE`).

References:
    Street, W.N., Wolberg, W.H. & Mangasarian, O.L. (1993). Nuclear feature extraction for breast tumor diagnosis.
    Proc. SPIE 1905, 861-870. doi:10.1117/12.148698
    Kumar, N. et al. (2017). IEEE Trans Med Imaging 36(7):1550-1560. doi:10.1109/TMI.2017.2677499 (MoNuSeg)
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from PIL import Image

from breastdx.serve.inputs import ServeInputError, read_upload

NUCLEI_MAX_PIXELS = 2048 * 2048
"""Largest tile the service segments: 4 MoNuSeg tiles. With the shipped model's 8-fold test-time augmentation a
1000 x 1000 tile took 3.2 s of server time and a 2000 x 2000 one 22 s (AMD EPYC, 2 cores, AVX-512, the running
service); ``breastdx predict monuseg`` takes larger ones."""


def predict_nuclei(model: Any, data: bytes, filename: str, *, max_pixels: int, display_max_side: int,
                   composites: bool = False, decoder: Any = None, frame: int | None = None,
                   per_nucleus: bool = False) -> dict[str, Any]:
    """Decode one uploaded H&E tile, segment its nuclei and measure them.

    Args:
        model: The served ``monuseg`` model (:class:`breastdx.serve.models.LoadedModel` of kind
            ``nucleus_instances``).
        data: The uploaded bytes (PNG, JPEG, TIFF or DICOM; read in RGB).
        filename: The client's file name (messages and the answer only).
        max_pixels: The service's largest image; the tile must also be within :data:`NUCLEI_MAX_PIXELS`.
        display_max_side: Largest side of the images in the answer.
        composites: Also answer the outlines drawn on the image (``outline_composite_png``).
        decoder: The :class:`breastdx.data.decode_worker.DecoderPool`, or None to decode in this process.
        frame: The frame of a multi-frame DICOM to read (1-based), or None for the first; refused for another image.
        per_nucleus: Also answer ``per_nucleus``: one row per nucleus, the columns of ``predict monuseg``'s
            ``nuclei/<tile>.csv`` (:func:`breastdx.morphometry.summary.nucleus_rows`; centroids in pixels).

    Returns:
        ``{"image", "nuclei", "segmentation": None, "classification": None, "timings_ms", "disagreement": None}``:
        ``image`` as for :func:`breastdx.serve.models.predict_image` (``in_scope`` false for a grey image, a tile
        under half the training patch size, or nuclei too small for 40x:
        :func:`breastdx.inference.nuclei_writer.magnification_note`); ``nuclei`` holds ``n_nuclei`` (instances
        found), ``n_in_summary`` (those of 1.9 to 1,000 µm², 30 to 16,000 px at 0.25 µm per pixel, that do not touch
        the tile's edge, which the features summarise), ``microns_per_pixel`` and ``resolution_source`` (a DICOM tile's pixel spacing, else the
        model's: :func:`breastdx.inference.nuclei_writer.tile_resolution`), ``median_area_px`` and
        ``median_area_um2`` (over the summarised nuclei, None when there are none), ``features_px`` and ``features_um`` (the 30 columns; ``features_um`` None when
        the model states no resolution; a column is None when no nucleus gives it), ``outline_overlay_png`` (RGBA,
        yellow outlines at the display size), ``outline_composite_png`` (with ``composites``), ``per_nucleus``
        (with ``per_nucleus``, else None) and ``cytology_note``.

    Raises:
        ServeInputError: 413 ``image_too_large`` for a tile over the pixel limits; the errors of
            :func:`breastdx.serve.inputs.read_upload` for an upload that is not a usable image.
    """
    from breastdx.evaluation.nuclei_report import CYTOLOGY_NOTE
    from breastdx.inference.base import seen_in_training
    from breastdx.inference.nuclei_writer import tile_resolution, tile_scope
    from breastdx.morphometry.features import grey_levels
    from breastdx.morphometry.summary import in_microns, measure_nuclei, nucleus_rows, tile_summary
    from breastdx.visualize import display_size, png_data_url, resize_image
    from breastdx.visualize.instances import instance_outlines_rgba, instance_overlay

    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    limit = min(max_pixels, NUCLEI_MAX_PIXELS)
    try:
        record = read_upload(data, filename, "rgb", limit, decoder, frame=frame)
    except ServeInputError as e:
        if e.code == "image_too_large":
            raise ServeInputError(413, e.code, f"{e} The service segments nuclei in tiles of at most "
                                  f"{limit:,} pixels (measured at their full size); cut the image into tiles, or "
                                  f"run 'breastdx predict monuseg', which reads any size in windows.") from None
        raise
    image = record.array
    timings["decode"] = (time.perf_counter() - t0) * 1000
    t = time.perf_counter()
    predictor = model.predictor
    with model.lock:
        labels, _ = predictor.predict(image)
    mpp, resolution_source = tile_resolution(record, float(predictor.meta.get("microns_per_pixel") or 0) or None)
    nuclei = measure_nuclei(labels, grey_levels(image), microns_per_pixel=mpp)  # the size limits in µm²
    timings["nuclei"] = (time.perf_counter() - t) * 1000
    scope = tile_scope(record, predictor, labels, (mpp, resolution_source))
    summarised = [n for n in nuclei if n["in_summary"]]
    median_px = float(np.median([n["area"] for n in summarised])) if summarised else None

    size = display_size(image.shape[:2], display_max_side)
    disp = resize_image(image, size, Image.BILINEAR)
    rows = (np.arange(size[0]) * labels.shape[0]) // size[0]  # nearest-neighbour: labels are not blended
    cols = (np.arange(size[1]) * labels.shape[1]) // size[1]
    shown = labels[np.ix_(rows, cols)]
    answer: dict[str, Any] = {
        "image": {"filename": filename, "width": int(image.shape[1]), "height": int(image.shape[0]),
                  "format": record.source_format, "mode": record.source_mode,
                  "spacing_mm": None if record.spacing_mm is None else list(record.spacing_mm),
                  "spacing_note": record.spacing_note, "frame": None if record.frame is None else list(record.frame),
                  "in_scope": scope.in_scope, "scope_note": scope.note,
                  "seen_in_training": seen_in_training(predictor, image),
                  "display_width": int(disp.shape[1]), "display_height": int(disp.shape[0]),
                  "image_png": png_data_url(disp)},
        "segmentation": None, "classification": None,
        "nuclei": {
            "model": model.ref,
            "n_nuclei": len(nuclei),
            "n_in_summary": len(summarised),
            "microns_per_pixel": mpp,
            "resolution_source": resolution_source,
            "median_area_px": median_px,
            "median_area_um2": None if median_px is None or mpp is None else median_px * mpp * mpp,
            "features_px": tile_summary(nuclei),
            "features_um": tile_summary(in_microns(nuclei, mpp)) if mpp else None,
            "outline_overlay_png": png_data_url(instance_outlines_rgba(shown)),
            "outline_composite_png": png_data_url(instance_overlay(disp, shown)) if composites else None,
            "per_nucleus": nucleus_rows(nuclei, mpp) if per_nucleus else None,
            "cytology_note": CYTOLOGY_NOTE,
        },
        "timings_ms": {k: round(v, 2) for k, v in timings.items()},
        "disagreement": None,
    }
    return answer
