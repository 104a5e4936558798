"""``breastdx evaluate busi-seg --external DIR``: a lesion segmenter scored on a labelled folder from elsewhere.

The folder is read by :func:`breastdx.data.external.read_external` (a ``labels.csv`` or BUSI class sub-folders); each
image is segmented at its own size by the saved model and scored against the union of its mask files
(:func:`breastdx.data.external.read_lesion_mask`: any channel > 127) with the per-image scores and bootstrap summary
of the split evaluation (:func:`breastdx.evaluation.segmentation.case_scores`, :func:`summarize_segmentation`): Dice,
IoU and HD95 (pixels; mm too when every lesion image has a ``pixel_size_mm``) over the images with a lesion (every
label but ``normal``, pooled and per label), the share of missed lesions, and on ``normal`` images the share given a
false lesion. No image, mask or overlay is written: only ``metrics.json``, ``report.html`` with two score plots,
``cases.csv`` and ``config.yaml``.

A case that cannot be scored is listed in the result's failures (the command's exit status is then 1) and left out:
an unreadable image or mask, a mask whose size differs from its image's, a lesion label without a mask or with an
empty one (a mask of 0s and 1s is named as such: a lesion pixel is > 127), or a ``normal`` image whose mask is not
empty.
"""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from breastdx.evaluation.tables import ci_text

CASES_FILE = "cases.csv"
"""The per-case table."""
NORMAL_LABEL = "normal"
"""The label of images without a lesion: scored by the false-lesion share, not by Dice."""
CASE_FIELDS = ("id", "image", "label", "dice", "iou", "hd95_px", "hd95_mm", "pred_area_px", "true_area_px",
               "missed", "false_positive", "max_prob")
SUMMARY = ("dice", "iou", "hd95", "hd95_mm", "missed_share", "normal_fp_share")
"""Metrics of the command's summary table, in order (those present), followed by Dice per lesion label."""
MIN_FIELD_MM = 10.0
"""A median image width (pixels x ``pixel_size_mm``) below this is implausible for breast ultrasound (a probe's
field is about 40 mm wide): the table's sizes are then likely in another unit, and a warning says so."""


def load_external_case(data: Any, i: int, mode: str) -> tuple[Any, Any]:
    """Image and lesion mask of case ``i`` of an :class:`~breastdx.data.external.ExternalSet`.

    Raises:
        ImageReadError: If the image or a mask cannot be read, or a mask's size differs from the image's.
        DataError: If a lesion label has no mask or an empty one, or a ``normal`` image has a non-empty one.
    """
    from breastdx.data.errors import DataError
    from breastdx.data.external import MASK_THRESHOLD, mask_peak, read_lesion_mask
    from breastdx.data.images import read_image

    image = read_image(data.images[i], mode=mode).array
    files = data.mask_files(i)
    label = data.labels[i]
    if not files and label != NORMAL_LABEL:
        raise DataError(f"{data.images[i]}: labelled {label!r} ({data.where[i]}) but has no mask; only "
                        f"'{NORMAL_LABEL}' images may have none.")
    mask = read_lesion_mask(files, image.shape[:2])
    if label != NORMAL_LABEL and not mask.any():  # Dice would be 1 against an empty prediction
        peak = mask_peak(files)
        if peak:  # a 0/1 label map, saved as 8-bit: not an empty outline
            raise DataError(f"{files[0]}: the mask of a {label!r} image ({data.where[i]}) has no lesion pixel: its "
                            f"highest value is {peak}, and a lesion pixel is > {MASK_THRESHOLD} in some channel (a "
                            f"0/1 mask? save the lesion as 255).")
        raise DataError(f"{files[0]}: the mask of a {label!r} image ({data.where[i]}) is empty; a lesion label needs "
                        f"its lesion outlined (an image without one is labelled '{NORMAL_LABEL}').")
    if label == NORMAL_LABEL and mask.any():
        raise DataError(f"{files[0]}: the mask of a '{NORMAL_LABEL}' image ({data.where[i]}) has "
                        f"{int(mask.sum())} lesion pixel(s); a normal image has no mask or an empty one.")
    return image, mask


def evaluate_external_segmentation(task: Any, predictor: Any, model_dir: Path, run_dir: Path, opts: Any) -> Any:
    """Score ``predictor`` on the folder ``opts.external``; write ``metrics.json``, ``report.html``, ``cases.csv``.

    Args:
        task: The segmentation task (its ``name``).
        predictor: A :class:`breastdx.inference.predictor.SegmentationPredictor`.
        model_dir: Its model folder (named in the outputs).
        run_dir: The output folder.
        opts: The task's evaluate options with ``external`` set (``seed``, ``n_bootstrap`` used).

    Returns:
        A :class:`breastdx.pipeline.task.RunResult` whose failures are the cases left out.

    Raises:
        ConfigError: If ``--split-file`` is given too.
        DataError: If the folder cannot be read, or no case can be scored (every reason listed).
    """
    from breastdx.config import save_yaml
    from breastdx.data.errors import DataError
    from breastdx.data.checksum import image_hash
    from breastdx.data.external import (check_external_options, failure_lines, identical_images, identical_note,
                                        read_external)
    from breastdx.inference.base import (EXTERNAL_ADVICE, logged_overlap, overlap_notes, overlap_summary,
                                         seen_in_training)
    from breastdx.evaluation.segmentation import case_scores, summarize_segmentation
    from breastdx.pipeline.task import RunResult
    from breastdx.runs import write_json, write_versions

    check_external_options(opts)
    data = read_external(opts.external)
    save_yaml({"task": task.name, "model": str(model_dir), **dataclasses.asdict(opts), "tta": predictor.tta,
               "external_source": str(data.source), "external_layout": data.layout}, run_dir / "config.yaml")
    write_versions(run_dir)
    kept, scores, failures = [], [], []
    batch: list[tuple[int, Any, Any]] = []
    hashes: dict[int, str] = {}  # of each image read: copies under two names are said

    hashed = bool(getattr(predictor, "training_hashes", None))

    def flush() -> None:
        outputs = predictor.predict([im for _, im, _ in batch], keep_prob=False)
        for (i, image, target), out in zip(batch, outputs):
            s = case_scores(out.mask, target, data.spacing(i))
            s.update({"max_prob": out.max_prob, "n_components": out.n_components, "width_px": target.shape[1]})
            if hashed:
                s["seen_in_training"] = seen_in_training(predictor, image)
            kept.append(i)
            scores.append(s)
        batch.clear()

    for i in range(len(data)):
        try:
            image, mask = load_external_case(data, i, predictor.preprocessing.mode)
        except (DataError, OSError, ValueError) as e:  # ImageReadError is a DataError
            failures.append((str(data.images[i]), str(e)))
            continue
        batch.append((i, image, mask))
        hashes[i] = image_hash(image)
        if len(batch) >= predictor.batch_size:
            flush()
    if batch:
        flush()
    if not kept:
        raise DataError(f"{data.source}: none of the {len(data)} cases could be scored.",
                        failure_lines(failures))
    labels = [data.labels[i] for i in kept]
    lesion_labels = tuple(dict.fromkeys(lab for lab in labels if lab != NORMAL_LABEL))
    summary = summarize_segmentation(scores, labels, lesion_classes=lesion_labels, normal_class=NORMAL_LABEL,
                                     n_boot=opts.n_bootstrap, seed=opts.seed)
    text = data.describe() + (f"; {len(failures)} case(s) left out, n = {len(kept)} scored" if failures else "")
    metrics = {"task": task.name, "split": text, "n": len(kept), "model": str(model_dir),
               "threshold": predictor.postprocessing.threshold,
               "postprocessing": predictor.postprocessing.to_meta(), "metrics": summary,
               "external": {"source": str(data.source), "layout": data.layout, "label_counts": data.counts(),
                            "n_lesion": sum(lab != NORMAL_LABEL for lab in labels),
                            "n_normal": labels.count(NORMAL_LABEL), "mask_rule": "any channel > 127",
                            "left_out": [{"image": p, "reason": r} for p, r in failures],
                            "identical_images": identical_images([data.ids[i] for i in kept],
                                                                 [hashes[i] for i in kept])}}
    notes = [f"Data: {text}", *filter(None, [identical_note(metrics["external"]["identical_images"])])]
    if hashed:  # per image: cases.csv
        metrics["training_overlap"] = logged_overlap(overlap_summary([s["seen_in_training"] for s in scores],
                                                                     EXTERNAL_ADVICE))
        notes += overlap_notes(metrics)
    widths = [s["width_px"] * data.spacing(i)[1] for i, s in zip(kept, scores) if data.spacing(i) is not None]
    if widths:
        field = float(np.median(widths))
        metrics["external"]["median_image_width_mm"] = field
        if field < MIN_FIELD_MM:
            notes.append(f"Warning: the median image is {field:.1f} mm wide by its pixel_size_mm, implausible for "
                         f"breast ultrasound (about 40 mm): is the column in another unit (cm per pixel: x 10)?")
    write_json(metrics, run_dir / "metrics.json")
    _write_cases(run_dir / CASES_FILE, data, kept, scores, hashed)
    _write_report(run_dir, predictor, metrics, scores, labels, lesion_labels, opts.n_bootstrap)
    rows = [[k, ci_text(summary[k])] for k in (*SUMMARY, *(f"dice_{lab}" for lab in lesion_labels)) if k in summary]
    notes += [f"Per-case table: {run_dir / CASES_FILE}", f"Run folder: {run_dir}"]
    return RunResult(run_dir, metrics, f"{task.name}, external folder (n = {len(kept)}): value [95% CI]",
                     [["metric", "value [95% CI]"], *rows], notes, failures)


def _write_cases(path: Path, data: Any, kept: list[int], scores: list[dict[str, Any]], hashed: bool) -> None:
    """One row per scored case; the image is named relative to the folder, never copied. ``hashed``: the model
    keeps training hashes, and a last column says whether the image is one of its training images."""
    root = data.source.parent if data.source.is_file() else data.source
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=[*CASE_FIELDS, *(["seen_in_training"] if hashed else [])])
        writer.writeheader()
        for i, s in zip(kept, scores):
            image = data.images[i]
            writer.writerow({
                "id": data.ids[i], "image": str(image.relative_to(root) if image.is_relative_to(root) else image),
                "label": data.labels[i], "dice": round(s["dice"], 6), "iou": round(s["iou"], 6),
                "hd95_px": round(s["hd95"], 4), "hd95_mm": "" if s["hd95_mm"] is None else round(s["hd95_mm"], 4),
                "pred_area_px": s["pred_area_px"], "true_area_px": s["target_area_px"], "missed": s["missed"],
                "false_positive": s["false_positive"], "max_prob": round(float(s["max_prob"]), 6),
                **({"seen_in_training": s["seen_in_training"]} if hashed else {})})


def _write_report(run_dir: Path, predictor: Any, metrics: dict[str, Any], scores: list[dict[str, Any]],
                  labels: list[str], lesion_labels: tuple[str, ...], n_bootstrap: int) -> None:
    """``report.html``: the metrics and the distributions of Dice and HD95; no image of a case."""

    from breastdx.evaluation.report import HtmlReport
    from breastdx.evaluation.segmentation_plots import plot_score_distribution
    from breastdx.inference.base import overlap_notes

    groups = {"all lesions": [s for s, lab in zip(scores, labels) if lab != NORMAL_LABEL],
              **{k: [s for s, lab in zip(scores, labels) if lab == k] for k in lesion_labels}}
    rep = HtmlReport("breastdx — lesion segmentation on an external folder (evaluation)")
    rep.paragraph(f"Model: {predictor.meta['architecture']} ({metrics['model']}), input "
                  f"{predictor.preprocessing.image_size}² {predictor.preprocessing.mode}. Data: {metrics['split']}. "
                  f"Scores at the original image size against the union of each image's masks (a pixel is lesion "
                  f"when any channel is > 127); intervals are 95% percentile bootstrap over images ({n_bootstrap} "
                  f"resamples). Dice, IoU and HD95 over the images with a lesion; 'normal_fp_share': the share of "
                  f"'{NORMAL_LABEL}' images given any lesion pixel. HD95 = image diagonal when exactly one mask is "
                  f"empty. No image of a case is shown or written.")
    for note in overlap_notes(metrics):
        rep.paragraph(note)
    field = metrics["external"].get("median_image_width_mm")
    if field is not None and field < MIN_FIELD_MM:
        rep.paragraph(f"Warning: by the folder's pixel_size_mm the median image is {field:.1f} mm wide, implausible "
                      f"for breast ultrasound (about 40 mm); hd95_mm is as the column says (cm per pixel would be "
                      f"x 10).")
    rep.heading("Metrics")
    rep.metrics_table(metrics["metrics"])
    if groups["all lesions"]:
        plot_score_distribution({k: [s["dice"] for s in v] for k, v in groups.items()},
                                run_dir / "dice_distribution.png", "Dice per image", "Dice per image", ylim=(0, 1.02))
        plot_score_distribution({k: [s["hd95"] for s in v] for k, v in groups.items()},
                                run_dir / "hd95_distribution.png", "HD95 per image (pixels)", "HD95 per image")
        rep.heading("Distribution over images with a lesion")
        rep.figure(run_dir / "dice_distribution.png", "Dice per image (all lesions, per label)")
        rep.figure(run_dir / "hd95_distribution.png", "HD95 per image, pixels")
    left_out = metrics["external"]["left_out"]
    if left_out:
        rep.heading("Cases left out")
        rep.table(["file", "reason"], [[str(d["image"]), str(d["reason"])] for d in left_out])
    rep.write(run_dir / "report.html")
