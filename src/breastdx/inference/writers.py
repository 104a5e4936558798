"""Batch prediction to files: ``predictions.csv`` (rows of :mod:`breastdx.inference.records`) and the
pictures of each image (masks and contour overlays, Grad-CAM overlays).

Files are read one batch ahead of the network (:meth:`~breastdx.inference.base.ImagePredictor.predict_files`)
and pictures are encoded in ``workers`` threads while the next batch runs. A file that cannot be read is
skipped and returned as a failure with its reason; the others are predicted.
"""

from __future__ import annotations

import csv
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from breastdx.inference.csv_safety import safe_rows
from breastdx.inference.records import SEGMENTATION_FIELDS, classification_record, csv_row, segmentation_record
from breastdx.inference.scope import check_scope, warn_out_of_scope
from breastdx.visualize import SEEN_SQUARE, write_cam_png, write_mask_png, write_overlay_png

log = logging.getLogger(__name__)

Failures = list[tuple[str, str]]

RowMaker = Callable[[Path, Any, Any, str, Callable[..., Future]], dict[str, Any]]


def _predict_to_csv(predictor: Any, inputs: Sequence[str | Path], run_dir: Path, fields: list[str],
                    make_row: RowMaker, workers: int, **options: Any) -> tuple[list[dict[str, Any]], Failures, float]:
    """Predict every image of ``inputs``, make each row with ``make_row(path, record, output, stem, submit)``
    (``submit`` queues a picture to write; ``stem`` is the file's stem, made unique), write ``predictions.csv``.
    When the model folder keeps its training images' hashes (``training_hashes.json``), a last column
    ``seen_in_training`` flags an input with the pixels of a training image (``yes``), a near-duplicate of one
    (``near-duplicate``: perceptual hash within the folder's threshold, where the folder keeps those: another frame of
    the lesion, a re-saved or re-cropped copy, a BUSI file whose BreastMNIST version was trained on) or neither
    (``no``), and a warning counts them, as another counts the inputs out of the model's scope (``in_scope``
    false)."""
    from breastdx.data.image_files import OutputStems, item_stem, list_images
    from breastdx.inference.base import seen_in_training

    known = getattr(predictor, "training_hashes", frozenset())
    start = time.perf_counter()
    rows: list[dict[str, Any]] = []
    failures: Failures = []
    stems = OutputStems()  # two inputs of one name (from two folders) never share output files
    with ThreadPoolExecutor(max_workers=max(1, int(workers))) as pool:
        jobs: list[Future] = []

        def submit(fn: Callable[..., Any], *args: Any) -> Future:
            jobs.append(pool.submit(fn, *args))
            return jobs[-1]

        for path, rec, out, err in predictor.predict_files(list_images(inputs), workers=workers, **options):
            if err is not None:
                failures.append((str(path), err))
                continue
            rows.append(make_row(path, rec, out, stems.claim(item_stem(path)), submit))
            if known:
                rows[-1]["seen_in_training"] = seen_in_training(predictor, rec.array)
        for job in jobs:
            job.result()
    warn_out_of_scope(rows, "input image", "predictions.csv")
    if known:
        fields = [*fields, "seen_in_training"]
        seen = sum(r["seen_in_training"] == "yes" for r in rows)
        if seen:
            log.warning("%d of %d input image(s) are images this model was trained on (column seen_in_training): "
                        "its output on them is not that of a new case.", seen, len(rows))
        close = sum(r["seen_in_training"] == "near-duplicate" for r in rows)
        if close:
            log.warning("%d of %d input image(s) are near-duplicates of images this model was trained on (another "
                        "frame of the lesion, or a re-saved or re-cropped copy; column seen_in_training): its output "
                        "on them is not that of a new case.", close, len(rows))
    with open(Path(run_dir) / "predictions.csv", "w", newline="", encoding="utf-8") as f:  # not the locale's
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(safe_rows(rows))  # a file name such as '=HYPERLINK(...)' is written as text
    return rows, failures, time.perf_counter() - start


def write_predictions(predictor: Any, inputs: Sequence[str | Path], run_dir: Path, *, gradcam: bool = True,
                      workers: int = 2) -> tuple[list[dict[str, Any]], Failures, float]:
    """Classify every image of ``inputs`` (files and folders); write ``predictions.csv`` and Grad-CAM overlays.

    ``predictions.csv`` has one row per image read: ``source``, ``height``, ``width``, then the classification
    record (:func:`~breastdx.inference.records.classification_record`): ``p_<class>`` for every class (after
    temperature scaling) and, for classes in groups (subtypes), ``p_<group>`` (e.g. ``p_malignant``), ``label``
    (at the operating point), ``label_argmax``, ``threshold``; when the model folder has a conformal record,
    ``prediction_set`` (classes joined by ``|``; more than one: the model is uncertain between them) and
    ``prediction_set_level`` (its coverage level); ``in_scope``, ``scope_note``
    (:func:`~breastdx.inference.scope.check_scope`); when the model folder has an out-of-distribution record,
    ``ood_distance`` (:mod:`breastdx.inference.ood`; over the record's threshold the image is out of scope);
    ``frame`` (:func:`frame_cell`); and, with Grad-CAM, ``gradcam`` (the overlay PNG in ``gradcam/``, relative
    to ``run_dir``).

    Args:
        predictor: A :class:`~breastdx.inference.classifier.ClassificationPredictor`.
        inputs: Image files and folders (see :func:`breastdx.data.image_files.list_images`).
        run_dir: Output folder (exists).
        gradcam: Write a Grad-CAM overlay of the reported label per image.
        workers: Reader and writer threads.

    Returns:
        ``(rows, failures, seconds)``: the CSV rows, ``(input, reason)`` per failure, wall-clock seconds.
    """
    cam_dir = Path(run_dir) / "gradcam"
    if gradcam:
        cam_dir.mkdir(exist_ok=True)

    def make_row(path: Path, rec: Any, out: Any, stem: str, submit: Callable[..., Future]) -> dict[str, Any]:
        h, w = rec.shape
        row = {"source": str(path), "height": h, "width": w,
               **csv_row(classification_record(out.prob, predictor.class_names, out.label, predictor.threshold,
                                               out.prediction_set, predictor.conformal_level))}
        row["in_scope"], row["scope_note"] = _scope_cells(rec, predictor, out)
        if ood:
            row["ood_distance"] = "" if out.ood_distance is None else f"{out.ood_distance:.4f}"
        row["frame"] = frame_cell(rec)
        if gradcam and out.cam is not None:
            png = cam_dir / f"{stem}_gradcam_{out.label.replace('/', '_')}.png"  # a subtype's '/' is not a folder
            legend = [f"Grad-CAM of {out.label} (P = {float(out.prob[out.label_index]):.3f})", path.name,
                      *([SEEN_SQUARE] if getattr(predictor, "source_crop", None) else [])]
            submit(write_cam_png, rec.array, out.cam, png, None, legend)
            row["gradcam"] = str(png.relative_to(run_dir))
        return row

    groups = list(dict.fromkeys(c.split("/", 1)[0] for c in predictor.class_names if "/" in c))
    sets = ["prediction_set", "prediction_set_level"] if getattr(predictor, "conformal", None) else []
    ood = ["ood_distance"] if getattr(predictor, "ood", None) is not None else []
    fields = ["source", "height", "width", *[f"p_{c}" for c in (*predictor.class_names, *groups)], "label",
              "label_argmax", "threshold", *sets, "in_scope", "scope_note", *ood, "frame",
              *(["gradcam"] if gradcam else [])]
    return _predict_to_csv(predictor, inputs, run_dir, fields, make_row, workers, gradcam=gradcam)


def _scope_cells(rec: Any, predictor: Any, out: Any = None) -> tuple[str, str]:
    """``in_scope`` (``true``/``false``) and ``scope_note`` of one input
    (:func:`~breastdx.inference.scope.check_scope`)."""
    scope = check_scope(rec, predictor, out)
    return str(scope.in_scope).lower(), scope.note


def frame_cell(rec: Any) -> str:
    """The ``frame`` column: ``"<frame read> of <frames>"`` (``"1 of 40"``) for a multi-frame DICOM, else empty."""
    frame = getattr(rec, "frame", None)
    return "" if frame is None else f"{frame[0]} of {frame[1]}"


def write_segmentation_predictions(predictor: Any, inputs: Sequence[str | Path], run_dir: Path, *,
                                   overlays: bool = True,
                                   workers: int = 2) -> tuple[list[dict[str, Any]], Failures, float]:
    """Segment every image of ``inputs`` (files and folders); write ``masks/``, ``overlays/`` and ``predictions.csv``.

    ``predictions.csv`` has one row per image read: ``source``, ``mask`` and ``overlay`` (PNG files relative to
    ``run_dir``; ``overlay`` empty without overlays), ``height``, ``width``, then the segmentation record
    (:func:`~breastdx.inference.records.segmentation_record`): ``lesion_found``, ``lesion_area_px``,
    ``lesion_area_mm2`` (empty without a pixel spacing), ``lesion_max_diameter_px``, ``lesion_max_diameter_mm``
    (empty without a pixel spacing), ``lesion_fraction``, ``n_components``, ``max_prob``; ``spacing_mm``
    (``"<row>x<col>"``, empty when unknown), ``spacing_note`` (why a DICOM calibration gives no spacing, e.g.
    ultrasound regions that disagree; empty else), ``frame`` (:func:`frame_cell`), ``in_scope`` and ``scope_note``
    (colour and size, :func:`~breastdx.inference.scope.check_scope`); with a presence gate
    (``predictor.presence``, :mod:`breastdx.inference.presence`), ``p_normal``: the classifier's P(normal), at or
    over whose threshold ``lesion_found`` is false. Masks are gray PNGs
    {0, 255} at the original size; overlays show the contour in red on the image.

    Args:
        predictor: A :class:`~breastdx.inference.predictor.SegmentationPredictor`.
        inputs: Image files and folders (see :func:`breastdx.data.image_files.list_images`).
        run_dir: Output folder (exists).
        overlays: Also write ``overlays/<stem>_overlay.png``.
        workers: Reader and writer threads.

    Returns:
        ``(rows, failures, seconds)``: the CSV rows (``lesion_found`` a bool, numbers as numbers), ``(input,
        reason)`` per failure, wall-clock seconds.
    """
    mask_dir, overlay_dir = Path(run_dir) / "masks", Path(run_dir) / "overlays"
    mask_dir.mkdir(exist_ok=True)
    if overlays:
        overlay_dir.mkdir(exist_ok=True)

    def make_row(path: Path, rec: Any, out: Any, stem: str, submit: Callable[..., Future]) -> dict[str, Any]:
        mask_png = mask_dir / f"{stem}_mask.png"
        submit(write_mask_png, out.mask, mask_png)
        overlay = ""
        if overlays:
            submit(write_overlay_png, rec.array, out.mask, overlay_dir / f"{stem}_overlay.png")
            overlay = str((overlay_dir / f"{stem}_overlay.png").relative_to(run_dir))
        h, w = rec.shape
        spacing = rec.spacing_mm
        return {"source": str(path), "mask": str(mask_png.relative_to(run_dir)), "overlay": overlay,
                "height": h, "width": w, **csv_row(segmentation_record(out)),
                "spacing_mm": "" if spacing is None else f"{spacing[0]}x{spacing[1]}",
                "spacing_note": rec.spacing_note, "frame": frame_cell(rec),
                **dict(zip(("in_scope", "scope_note"), _scope_cells(rec, predictor))),
                **({} if out.p_normal is None else {"p_normal": round(out.p_normal, 6)})}

    gate = getattr(predictor, "presence", None)
    fields = ["source", "mask", "overlay", "height", "width", *SEGMENTATION_FIELDS, "spacing_mm", "spacing_note",
              "frame", "in_scope", "scope_note", *([] if gate is None else ["p_normal"])]
    return _predict_to_csv(predictor, inputs, run_dir, fields, make_row, workers)
