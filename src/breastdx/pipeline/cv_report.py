"""``report.html`` of a cross-validation run (``breastdx train busi-seg|idc|breakhis|monuseg --cv-folds K``).

Each fold of a cross-validation is a whole run with its own ``report.html``; the run folder's page holds the figure
the project quotes: the pooled out-of-fold figures with their 95% intervals, what was cross-validated (task, ``K``,
the options of ``config.yaml``, the base split and what was held out), a table of the folds (their size, figures,
validation figure and the threshold or postprocessing each chose on its own validation part) and a link to each
fold's report. Written by :mod:`breastdx.pipeline.seg_crossval` (:func:`write_seg_cv_report`),
:mod:`breastdx.pipeline.crossval` (:func:`write_classification_cv_report`) and
:mod:`breastdx.pipeline.nuclei_crossval` (:func:`write_nuclei_cv_report`: means over the held-out tiles, no interval)
after ``metrics.json``, so a run resumed with ``--resume`` ends with it as well.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from breastdx.evaluation.report import Markup, fmt
from breastdx.evaluation.tables import ci_text


def fold_link(run_dir: Path, f: int) -> str:
    """The link (relative to the run folder) to fold ``f``'s ``report.html``, as table markup; ``none`` when the
    fold's folder holds no report."""
    href = f"folds/f{f}/report.html"
    if not (run_dir / href).is_file():
        return "none"
    return Markup(f'<a href="{html.escape(href)}">{html.escape(href)}</a>')


def _text(value: Any) -> str:
    """A value of ``config.yaml`` or of a fold as table text (lists comma-joined, floats to 4 digits; the table
    escapes it)."""
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{k} {v}" for k, v in value.items())
    if isinstance(value, float):
        return "n/a" if value != value else f"{value:.4g}"
    return "" if value is None else str(value)


def write_cv_report(run_dir: Path, title: str, what: Sequence[str], pooled: Sequence[tuple[str, str, list[str],
                    list[list[str]]]], fold_header: Sequence[str], fold_rows: Sequence[Sequence[str]],
                    notes: Sequence[str] = (), pooled_heading: str = "Pooled out-of-fold figures") -> Path:
    """Write ``run_dir/report.html`` of a cross-validation.

    Args:
        run_dir: The run folder (``config.yaml`` and ``folds/f<k>/`` in it).
        title: Title of the page.
        what: Paragraphs on what was cross-validated (task, ``K``, base split, what was held out).
        pooled: Sections of pooled figures: ``(heading, paragraph, header, rows)``; the cells are escaped text.
        fold_header: Header of the per-fold table (without the link column, which is added).
        fold_rows: Per fold (in fold order) its cells, escaped text.
        notes: Further paragraphs, at the end.
        pooled_heading: Heading of the ``pooled`` sections.

    Returns:
        The path of the report (``run_dir/report.html``).
    """
    import yaml

    from breastdx.evaluation.report import HtmlReport

    rep = HtmlReport(title)
    rep.heading("What was cross-validated")
    for p in what:
        rep.paragraph(p)
    config_path = run_dir / "config.yaml"
    record = yaml.safe_load(config_path.read_text(encoding="utf-8")) if config_path.is_file() else {}
    if record:
        rep.heading("Options of the recipe (config.yaml)", level=3)
        rep.table(["option", "value"], [[str(k), _text(v)] for k, v in record.items()])
    rep.heading(pooled_heading)
    for heading, paragraph, header, rows in pooled:
        rep.heading(heading, level=3)
        rep.paragraph(paragraph)
        rep.table(header, rows)
    rep.heading("Per fold")
    rep.table([*fold_header, "fold report"], [[*row, fold_link(run_dir, f)] for f, row in enumerate(fold_rows)])
    for note in notes:
        rep.paragraph(note)
    return rep.write(run_dir / "report.html")


def _summary_row(summary: Mapping[str, Any], key: str) -> str:
    s = summary.get(key)
    return f"{s['mean']:.3f} (sd {s['sd']:.3f})" if s and s.get("mean") is not None and s.get("sd") is not None else ""


def write_seg_cv_report(run_dir: Path, title: str, metrics: Mapping[str, Any], fold_metrics: Sequence[Mapping[str, Any]],
                        base: Any) -> Path:
    """``report.html`` of a busi-seg cross-validation (:func:`breastdx.pipeline.seg_crossval.cross_validate_busi_seg`).

    Args:
        run_dir: The run folder.
        title: The task's title.
        metrics: The run's ``metrics.json`` content.
        fold_metrics: Each fold's own ``metrics.json`` content (its test figures).
        base: The base :class:`breastdx.data.splits.SplitFile` (its test cases held out of every fold).

    Returns:
        The path of the report (``run_dir/report.html``).

    Raises:
        KeyError: If ``metrics`` lacks ``k``, ``task``, ``split``, ``metrics``, ``metrics_note``, ``per_fold`` or
            ``per_fold_summary`` (the fields :func:`~breastdx.pipeline.seg_crossval.cross_validate_busi_seg` writes).
    """
    k = metrics["k"]
    pooled, by_group, summary = metrics["metrics"], metrics.get("metrics_by_group") or {}, metrics["per_fold_summary"]
    what = [f"Task {metrics['task']}, K = {k}: grouped, stratified k-fold cross-validation of the recipe below, each "
            f"fold a whole training run (epochs, early stopping and postprocessing chosen on its own validation "
            f"part). Scored: {metrics['split']}.",
            f"Base split: base_split.json ({len(base.train)} train, {len(base.val)} val, {len(base.test)} test "
            f"cases; split method {base.method}). Its {len(base.train) + len(base.val)} "
            f"train + val cases are cut into the {k} folds, near-duplicate groups within one fold, classes in "
            f"proportion; each fold's validation part is drawn from the other folds (folds.json lists each fold's "
            f"test and validation cases). Held out: the base split's {len(base.test)} test cases, read by no fold "
            f"(every fold's split file lists them as excluded), and the {len(base.excluded)} cases the base split "
            f"excludes."]
    rows = [[key, ci_text(v), ci_text(by_group[key]) if key in by_group else ""]
            for key, v in pooled.items()]
    quoted = ci_text(by_group.get("dice"))
    sections = [("Dice, IoU, HD95, missed lesions, false lesions on normal images",
                 f"Quote the intervals over near-duplicate groups (metrics_by_group: the frames of one lesion are "
                 f"not independent, so resampling images narrows the interval): Dice {quoted} over benign + "
                 f"malignant images. The column over images is metrics.json's 'metrics'. {metrics['metrics_note']}",
                 ["metric", "pooled out-of-fold [95% CI over images] (metrics)",
                  "[95% CI over near-duplicate groups] (metrics_by_group)"], rows)]
    fold_rows = []
    for p, fm in zip(metrics["per_fold"], fold_metrics):
        m = fm.get("metrics") or {}
        fold_rows.append([str(p["fold"]), str(p["n_test"]), fmt(p.get("test_dice")),
                          *[fmt((m.get(key) or {}).get("value")) for key in ("iou", "hd95", "missed_share")],
                          fmt(p.get("test_normal_fp_share")), fmt(p.get("val_dice")),
                          _text(p.get("postprocessing"))])
    notes = [f"Per fold: test Dice {_summary_row(summary, 'test_dice')}, validation Dice "
             f"{_summary_row(summary, 'val_dice')} (mean and sd over the folds).",
             f"Files: metrics.json, oof_per_image.csv (each image's scores from the model of its fold), folds.json, "
             f"base_split.json, folds/f0..f{k - 1} (each fold's full run), ensemble/ (the fold ensemble's model "
             f"folder: the mean of the {k} fold models' probabilities)."]
    return write_cv_report(run_dir, f"{title}: {k}-fold cross-validation", what, sections,
                           ["fold", "n test images", "test Dice", "test IoU", "test HD95 (px)", "test missed share",
                            "test normal FP share", "validation Dice", "postprocessing chosen on validation"],
                           fold_rows, notes)


def write_classification_cv_report(run_dir: Path, title: str, metrics: Mapping[str, Any],
                                   fold_metrics: Sequence[Mapping[str, Any]], items: str) -> Path:
    """``report.html`` of a patient-grouped cross-validation (:func:`breastdx.pipeline.crossval.cross_validate`).

    Args:
        run_dir: The run folder.
        title: The task's title.
        metrics: The run's ``metrics.json`` content.
        fold_metrics: Each fold's own ``metrics.json`` content (its chosen model, threshold, validation figures).
        items: What an item is, plural ("images", "patches").

    Returns:
        The path of the report (``run_dir/report.html``).

    Raises:
        KeyError: If ``metrics`` lacks ``k``, ``task``, ``split``, ``metrics``, ``metrics_note``, ``per_fold`` or
            ``per_fold_summary`` (the fields :func:`~breastdx.pipeline.crossval.cross_validate` writes).
    """
    k = metrics["k"]
    pooled, summary = metrics["metrics"], metrics["per_fold_summary"]
    kept = metrics.get("train_only_patients") or []
    what = [f"Task {metrics['task']}, K = {k}: patient-grouped k-fold cross-validation of the recipe below, each "
            f"fold a whole training run (every architecture, model choice, temperature and threshold on its own "
            f"validation patients). Scored: {metrics['split']}.",
            f"Base split: all the data's patients, cut into {k} folds stratified by each patient's most common class; "
            f"each fold's validation patients are drawn from the other folds (folds.json lists each fold's test and "
            f"validation patients), and each patient is tested once. Held out of testing: "
            + (f"{len(kept)} patient(s) who alone hold a class ({', '.join(map(str, kept))}), in training in every "
               f"fold; classes never tested: {', '.join(metrics.get('classes_not_tested') or []) or 'none'}."
               if kept else "none (no class is held by one patient alone).")]
    n_patients = next((v.get("n_patients") for v in pooled.values() if isinstance(v, dict) and v.get("n_patients")),
                      None)
    rows = [[key, ci_text(v), _summary_row(summary, key)] for key, v in pooled.items()]
    image_level = metrics.get("image_level") or {}
    sections = [(f"Intervals over patients{f' ({n_patients} patients)' if n_patients else ''}: the figures to quote",
                 f"positive class: {metrics.get('positive_class')}. {metrics['metrics_note']}",
                 ["metric", "pooled out-of-fold [95% CI over patients]", "per fold mean (sd)"], rows)]
    if image_level:
        sections.append((f"Intervals over {items} (narrower: the {items} of one patient are not independent)",
                         f"The same pooled out-of-fold probabilities, bootstrapped over {items} (metrics.json's "
                         f"'image_level').", ["metric", f"pooled out-of-fold [95% CI over {items}]"],
                         [[key, ci_text(v)] for key, v in image_level.items()]))
    figures = [key for key in ("auroc", "balanced_accuracy", "subtype_balanced_accuracy", "sensitivity", "specificity")
               if any(key in p for p in metrics["per_fold"])]
    fold_rows = []
    for p, fm in zip(metrics["per_fold"], fold_metrics):
        model = fm.get("model", p.get("model"))
        val = (fm.get("models") or {}).get(model, {}).get("val_score")
        val_auroc = ((fm.get("validation_metrics") or {}).get("auroc") or {}).get("value")
        fold_rows.append([str(p["fold"]), str(p.get("test_patients", "")), str(p["n_test"]), _text(model),
                          *[fmt(p.get(key)) for key in figures], fmt(val), fmt(val_auroc),
                          fmt(fm.get("threshold"))])
    notes = [f"The per-fold figures are those of each fold's own run (sensitivity and specificity at the threshold "
             f"it chose on validation). Files: metrics.json, oof_predictions.csv (each tested item's "
             f"probabilities from the model of its fold), folds.json, folds/f0..f{k - 1} (each fold's full run); no "
             f"model ships from a cross-validation."]
    return write_cv_report(run_dir, f"{title}: {k}-fold cross-validation", what, sections,
                           ["fold", "test patients", f"n test {items}", "model chosen", *figures,
                            "validation val_score", "validation AUROC", "threshold on P(positive)"], fold_rows, notes)


def write_nuclei_cv_report(run_dir: Path, title: str, metrics: Mapping[str, Any],
                           fold_metrics: Sequence[Mapping[str, Any]], tissue_source_site: Callable[[str], str],
                           scores_shown: Sequence[str] = ("dice", "aji", "pq", "sq", "dq")) -> Path:
    """``report.html`` of a leave-site-out monuseg cross-validation
    (:func:`breastdx.pipeline.nuclei_crossval.cross_validate_monuseg`).

    Args:
        run_dir: The run folder.
        title: The task's title.
        metrics: The run's ``metrics.json`` content (means over the held-out tiles, each tile's scores).
        fold_metrics: Each fold's own ``metrics.json`` content (its held-out tiles' figures).
        tissue_source_site: A tile's site (:func:`breastdx.pipeline.nuclei_crossval.tissue_source_site`).
        scores_shown: The scores of ``metrics["metrics"]`` shown per tile.

    Returns:
        The path of the report (``run_dir/report.html``).

    Raises:
        KeyError: If ``metrics`` lacks ``k``, ``tiles``, ``metrics`` (with ``value`` and ``per_tile`` of each of
            ``scores_shown``), ``per_fold`` or ``split``.
    """
    k, tiles, scores = metrics["k"], metrics["tiles"], metrics["metrics"]
    fold_of = {t: p["fold"] for p in metrics["per_fold"] for t in p["held_out_tiles"]}
    sites = sorted({tissue_source_site(t) for t in tiles})

    def held_sites(p: Mapping[str, Any]) -> str:
        return ", ".join(sorted({tissue_source_site(t) for t in p["held_out_tiles"]}))

    what = [f"Task {metrics['task']}, K = {k}: leave-site-out cross-validation of the recipe below. The {len(tiles)} "
            f"training tiles come from {len(sites)} TCGA tissue source sites ({', '.join(sites)}); a site's tiles "
            f"stay in one fold, so each fold holds out whole sites: "
            + "; ".join(f"fold {p['fold']} site(s) {held_sites(p)}" for p in metrics["per_fold"])
            + ". Each fold is a whole training run on the other tiles (their bottom rows choose the epoch, the "
              "test-time augmentation and the watershed), scored on its held-out tiles, whole; every training tile "
              "is scored once, by the model that saw neither it nor its site (folds.json lists the folds).",
            f"Scored: {metrics['split']}. Stain normalisation: {metrics.get('stain_normalisation')}."]
    mean_rows = [[s, fmt(scores[s]["value"]),
                  f"{fmt(min(scores[s]['per_tile']))} – {fmt(max(scores[s]['per_tile']))}"] for s in scores_shown]
    tile_rows = [[t, tissue_source_site(t), str(fold_of.get(t, "")),
                  *[fmt(scores[s]["per_tile"][i]) for s in scores_shown]] for i, t in enumerate(tiles)]
    tile_rows.append(["mean", "", "", *[fmt(scores[s]["value"]) for s in scores_shown]])
    sections = [(f"Means over the {len(tiles)} held-out tiles",
                 f"{len(tiles)} tiles from {len(sites)} sites give no interval worth printing (metrics.json's ci95 "
                 f"is null): the means and each tile's scores are what there is; compare two recipes tile by tile "
                 f"(benchmarks/monuseg_cv_compare.py). PQ counts a match at IoU > 0.5; SQ and DQ are its factors.",
                 ["metric", "mean over tiles", "lowest – highest tile"], mean_rows),
                ("Per held-out tile", "Each tile's scores from the model of the fold that held it out "
                 "(oof_per_tile.csv).", ["tile", "site", "fold", *scores_shown], tile_rows)]
    fold_rows = []
    for p, fm in zip(metrics["per_fold"], fold_metrics):
        m = fm.get("metrics") or {}
        per_tta = ", ".join(f"{r[0]} {fmt(r[1])}" for r in p.get("held_out_aji_per_tta") or [])
        fold_rows.append([str(p["fold"]), held_sites(p), _text(p["held_out_tiles"]),
                          *[fmt((m.get(s) or {}).get("value")) for s in ("dice", "aji", "pq")],
                          _text(p.get("best_epoch")), fmt(p.get("best_val_dice")), _text(p.get("postprocessing")),
                          _text(p.get("tta")), per_tta])
    notes = [f"Files: metrics.json, oof_per_tile.csv, folds.json, config.yaml, folds/f0..f{k - 1} (each fold's full "
             f"run: model, per_tile.csv, report). The test tiles were not read: they stay the final, once-read test "
             f"of the recipe chosen here; no model ships from a cross-validation."]
    return write_cv_report(run_dir, f"{title}: {k}-fold leave-site-out cross-validation", what, sections,
                           ["fold", "held-out site(s)", "held-out tiles", "Dice", "AJI", "PQ", "best epoch",
                            "held-out-row Dice", "watershed chosen on held-out rows", "test-time augmentation chosen",
                            "held-out-row AJI per augmentation"], fold_rows, notes,
                           pooled_heading="Out-of-fold figures")
