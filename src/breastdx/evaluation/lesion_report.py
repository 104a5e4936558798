"""BUSI lesion segmentation: the run's report (``report.html``: test metrics, score distributions, best / median /
worst cases, training curves, the postprocessing chosen on validation). Used by :mod:`breastdx.tasks.busi_seg`
(train and evaluate).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

LESION_CLASSES = ("benign", "malignant")
"""BUSI's classes with a lesion; normal images have none."""
TARGET_DICE = 0.80
"""Issue 13's target: test Dice over benign + malignant images."""
REPORT_METRICS = ("dice", "iou", "hd95", "missed_share", "dice_benign", "iou_benign", "hd95_benign",
                  "dice_malignant", "iou_malignant", "hd95_malignant", "normal_fp_share")
"""The test metrics of the report and of the run's summary table, in order."""


def write_lesion_report(run_dir: Path, predictor: Any, evaluation: dict[str, Any], metrics: dict[str, Any],
                        training: dict[str, Any] | None, val_table: list[list[Any]] | None, n_bootstrap: int,
                        title: str) -> None:
    """Write ``run_dir/report.html`` with its figures (score distributions, case overlays, training curves).

    Args:
        run_dir: The run folder (existing).
        predictor: The :class:`breastdx.inference.predictor.SegmentationPredictor` that was scored.
        evaluation: The test evaluation: per-image ``scores`` (``dice``, ``hd95`` in pixels, ``pred_area_px``,
            ``fp_area_px``), ``labels`` (BUSI class per image) and ``cases`` (:class:`breastdx.data.busi.BusiCase`).
        metrics: The run's ``metrics.json`` content (``metrics`` with 95% intervals, ``split``).
        training: The training record, or None for an evaluation.
        val_table: Rows of the postprocessing candidates compared on validation, or None.
        n_bootstrap: Bootstrap resamples behind the intervals (stated in the report).
        title: Title of the page.
    """
    from breastdx.evaluation.report import HtmlReport
    from breastdx.evaluation.segmentation_plots import plot_score_distribution, plot_training_curves
    from breastdx.inference.base import overlap_notes
    from breastdx.training.trainer import read_training_log

    scores, labels = evaluation["scores"], evaluation["labels"]
    by_class = {k: [s for s, lab in zip(scores, labels) if lab == k] for k in LESION_CLASSES}
    lesion_all = [s for s, lab in zip(scores, labels) if lab in LESION_CLASSES]
    plot_score_distribution({"benign + malignant": [s["dice"] for s in lesion_all],
                             **{k: [s["dice"] for s in v] for k, v in by_class.items()}},
                            run_dir / "dice_distribution.png", "Dice per image", "Test Dice per image",
                            ylim=(0, 1.02))
    plot_score_distribution({"benign + malignant": [s["hd95"] for s in lesion_all],
                             **{k: [s["hd95"] for s in v] for k, v in by_class.items()}},
                            run_dir / "hd95_distribution.png", "HD95 per image (pixels)", "Test HD95 per image")
    rep = HtmlReport(title)
    m = metrics["metrics"]
    rep.paragraph(f"Model: {predictor.meta['architecture']} ({predictor.meta.get('n_parameters', 0):,} "
                  f"parameters), input {predictor.preprocessing.image_size}² gray. Split: {metrics['split']}. "
                  f"Scores at the original image size; intervals are 95% percentile bootstrap over images "
                  f"({n_bootstrap} resamples). Empty-mask conventions: Dice/IoU 1 when both masks are "
                  f"empty, 0 when one is; HD95 = image diagonal when exactly one is empty.")
    for note in overlap_notes(metrics):
        rep.paragraph(note)
    rep.heading("Test metrics")
    rep.metrics_table({k: m[k] for k in REPORT_METRICS if k in m})
    rep.paragraph(f"Benchmark: test Dice {m['dice']['value']:.3f} over benign + malignant images (target >= "
                  f"{TARGET_DICE}; public U-Net results on random, leaky 70/30 splits ≈ 0.77, TransUNet ≈ 0.80).")
    rep.heading("Distribution over test images")
    rep.figure(run_dir / "dice_distribution.png", "Dice per test image (benign + malignant, per class)")
    rep.figure(run_dir / "hd95_distribution.png", "HD95 per test image, pixels")
    rep.heading("Best, median and worst test cases (green: reference, red: prediction)")
    _case_overlays(rep, run_dir, predictor, evaluation)
    if training is not None:
        rep.heading("Training")
        rep.paragraph(f"{training['epochs_run']} epoch(s) in {training['train_seconds'] / 60:.1f} min on "
                      f"{training['accelerator']} ({training['devices']} device(s), {training['torch_threads']} "
                      f"torch threads), precision {training['precision']}, batch {training['batch_size']}, "
                      f"lr {training['lr']}; best epoch {training['best_epoch']} by validation Dice at network "
                      f"size ({training['best_val_dice_network_size']:.3f}). {training['n_train']} training and "
                      f"{training['n_val']} validation images.")
        curves = read_training_log(run_dir)
        if curves.get("epoch"):
            plot_training_curves(curves, run_dir / "training_curves.png", "Training curves")
            rep.figure(run_dir / "training_curves.png", "Loss and validation Dice per epoch")
    if val_table:
        rep.heading("Postprocessing chosen on validation images")
        rep.table(["candidate", "mean Dice, all images", "Dice, lesion images", "normal FP share"], val_table)
    rep.write(run_dir / "report.html")


def _case_overlays(rep: Any, run_dir: Path, predictor: Any, evaluation: dict[str, Any]) -> None:
    """The best, median and worst test image of each lesion class, and the normal image of largest false area."""
    from breastdx.data.busi import load_case
    from breastdx.visualize import write_overlay_png

    picks: list[tuple[str, str, int]] = []
    for cls in LESION_CLASSES:
        idx = [i for i, lab in enumerate(evaluation["labels"]) if lab == cls]
        if not idx:
            continue
        order = sorted(idx, key=lambda i: (evaluation["scores"][i]["dice"], evaluation["cases"][i].name))
        for what, i in (("best", order[-1]), ("median", order[len(order) // 2]), ("worst", order[0])):
            picks.append((cls, what, i))
    normal = [i for i, lab in enumerate(evaluation["labels"]) if lab == "normal"]
    if normal:
        worst = max(normal, key=lambda i: (evaluation["scores"][i]["fp_area_px"], evaluation["cases"][i].name))
        picks.append(("normal", "largest false-positive area", worst))
    for cls, what, i in picks:
        case = evaluation["cases"][i]
        image, target = load_case(case, mode=predictor.preprocessing.mode)
        pred = predictor.predict([image], keep_prob=False)[0].mask
        png = run_dir / f"case_{cls}_{what.split()[0]}.png"
        write_overlay_png(image, pred, png, reference=target)
        s = evaluation["scores"][i]
        rep.figure(png, f"{cls}, {what}: {case.name}, Dice {s['dice']:.3f}, HD95 {s['hd95']:.1f} px, "
                        f"predicted area {s['pred_area_px']} px")
