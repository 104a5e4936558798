"""Grouped, stratified k-fold cross-validation of BUSI lesion segmentation (``breastdx train busi-seg --cv-folds K``).

The 76 validation images of the grouped BUSI split cannot tell two segmenters apart (issue 13: validation Dice 0.81,
test 0.72). Cross-validation scores every training and validation image once instead (Varoquaux et al. 2017,
doi:10.1016/j.neuroimage.2016.10.038): the train + val cases of the base split are cut into ``K`` folds
(:func:`breastdx.data.splits.grouped_stratified_folds`: near-duplicate groups never cross folds, classes keep their
proportions); fold ``f`` is the test part of run ``folds/f<f>``, its validation part is drawn grouped and stratified
from the other folds (the base split's share of validation among train + val), and the rest train. Each fold is a
whole training run of the recipe (epochs, early stopping and the postprocessing chosen on its own validation part),
so the pooled figures estimate the recipe, not one model.

**The base split's test cases are in no fold**: every fold's split file lists them as excluded ("the test split of
the base split: kept out of cross-validation"), with the base split's own exclusions, so cross-validation never reads
them and they stay the final, once-read test.

The run folder holds ``folds/f<k>/`` (full runs: model, ``test_per_image.csv``, report), ``folds.json`` (the fold of
every case), ``oof_per_image.csv`` (each image's scores from the model of its fold), ``report.html``
(:mod:`breastdx.pipeline.cv_report`: the pooled figures, the folds and a link to each fold's report) and
``metrics.json``: the pooled
out-of-fold figures of :func:`breastdx.evaluation.segmentation.summarize_segmentation` (Dice, IoU, HD95 over benign
+ malignant images, missed lesions, normal images with a false lesion; 95% bootstrap intervals over images, and in
``metrics_by_group`` over near-duplicate groups, :func:`group_intervals`: the ones to report), and
per fold its validation and test Dice, with their mean and standard deviation; and ``ensemble/``, the model folder of
the fold ensemble (the mean of the fold models' probabilities, :func:`breastdx.pipeline.ensemble.write_ensemble`),
which ``predict`` and ``evaluate`` load like any model folder. Whether the fold ensemble or one model trained on
all cases should ship is a separate question, answered by a nested cross-validation
(``benchmarks/busi_seg_cv_ensemble.py``).
"""

from __future__ import annotations

import csv
import dataclasses
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np

from breastdx.data.splits import DEFAULT_SPLIT_METHOD

log = logging.getLogger(__name__)

BASE_TEST_REASON = "the test split of the base split: kept out of cross-validation"


GROUP_METRICS = ("dice", "iou", "hd95", "missed_share", "normal_fp_share")
"""The pooled figures that also get an interval over near-duplicate groups."""


def group_intervals(rows: list[dict[str, Any]], groups: list[list[str]], *, n_boot: int = 2000,
                    seed: int = 0) -> dict[str, dict[str, Any]]:
    """:data:`GROUP_METRICS` of out-of-fold rows with 95% intervals from resampling near-duplicate groups.

    The frames of one lesion (a group of the split file) are scored together, so resampling images treats them as
    independent and narrows the interval; a cluster bootstrap resamples the groups, each image outside a group being
    a group of its own (Field & Welsh 2007, :func:`breastdx.evaluation.ci.patient_bootstrap`).

    Args:
        rows: Per image ``case``, ``label`` and the scores of :func:`breastdx.evaluation.segmentation.case_scores`.
        groups: Near-duplicate groups of case names (:attr:`breastdx.data.splits.SplitFile.groups`).
        n_boot: Resamples of the groups.
        seed: Seed of the resampling.

    Returns:
        ``{name: {"value", "ci95", "n_images", "n_groups"}}``; Dice, IoU, HD95 and ``missed_share`` over the lesion
        images, ``normal_fp_share`` over the normal ones (left out when there are none).
    """
    from breastdx.evaluation.ci import patient_bootstrap

    group_of = {name: k for k, members in enumerate(groups) for name in members}
    out: dict[str, dict[str, Any]] = {}
    for name in GROUP_METRICS:
        normal = name == "normal_fp_share"
        chosen = [r for r in rows if (r["label"] == "normal") == normal]
        values = np.asarray([float(r["false_positive" if normal else "missed" if name == "missed_share" else name])
                             for r in chosen])
        keep = np.isfinite(values)
        if not keep.any():
            continue
        values = values[keep]
        ids = np.asarray([str(group_of.get(r["case"], r["case"])) for r, k in zip(chosen, keep) if k])
        r = patient_bootstrap(lambda idx: float(values[idx].mean()), ids, n_boot=n_boot, seed=seed)
        out[name] = {"value": r["value"], "ci95": r["ci95"], "n_images": int(values.size),
                     "n_groups": r["n_patients"]}
    return out


def busi_fold_splits(split: Any, labels_by_name: dict[str, str], k: int, seed: int,
                     method: str = DEFAULT_SPLIT_METHOD) -> list[Any]:
    """``k`` split files over the train + val cases of a BUSI split.

    Args:
        split: The base :class:`breastdx.data.splits.SplitFile`.
        labels_by_name: The class of every case (:attr:`breastdx.data.busi.BusiCase.label` by name).
        k: Folds, >= 2.
        seed: Seed of the folds and of each fold's validation draw.
        method: How each fold's validation draw places the near-duplicate groups
            (:data:`breastdx.data.splits.SPLIT_METHODS`; the folds themselves spread them evenly either way).

    Returns:
        ``k`` :class:`~breastdx.data.splits.SplitFile`: fold ``f``'s ``test`` is fold ``f``; its ``val`` is drawn
        from the other folds, grouped and stratified, in the base split's share of validation among train + val;
        the base split's test cases and exclusions are ``excluded``.

    Raises:
        ValueError: If ``k < 2`` or there are fewer near-duplicate groups than folds.
    """
    from breastdx.data.splits import SplitFile, grouped_stratified_folds, grouped_stratified_split

    names = sorted(split.train + split.val)
    label = {n: labels_by_name[n] for n in names}
    group_of = {n: i for i, n in enumerate(names)}
    for g, members in enumerate(split.groups):
        for n in members:
            if n in group_of:
                group_of[n] = len(names) + g
    labels = [label[n] for n in names]
    gid = [group_of[n] for n in names]
    folds = grouped_stratified_folds(labels, gid, k, seed)
    val_share = len(split.val) / (len(split.train) + len(split.val))
    base_test = [{"name": n, "label": labels_by_name[n], "reason": BASE_TEST_REASON, "group": [n]} for n in split.test]
    out = []
    for f in range(k):
        test = set(folds[f])
        rest = [i for i in range(len(names)) if i not in test]
        inner = grouped_stratified_split([labels[i] for i in rest], [gid[i] for i in rest],
                                         ratios=(1 - val_share, val_share, 0.0), seed=seed + f, method=method)
        parts = {"train": [names[rest[j]] for j in inner["train"]], "val": [names[rest[j]] for j in inner["val"]],
                 "test": [names[i] for i in sorted(test)]}
        counts = {s: {c: sum(label[n] == c for n in v) for c in sorted(set(labels))} for s, v in parts.items()}
        out.append(SplitFile(path=None, data_checksum=split.data_checksum, seed=int(seed),
                             ratios=tuple(len(v) / len(names) for v in parts.values()),  # type: ignore[arg-type]
                             **parts, groups=split.groups, conflicts=split.conflicts,
                             excluded=list(split.excluded) + base_test, dataset=split.dataset,
                             hash_threshold=split.hash_threshold, method=method,
                             summary={"kind": f"fold f{f} ({f + 1} of {k}), grouped stratified cross-validation of the "
                                              f"base split's train + val cases", "per_class": counts,
                                      "base_test_cases_excluded": len(split.test)}))
    return out


def _read_per_image(path: Path) -> list[dict[str, Any]]:
    def num(v: str) -> float:
        return float(v) if v not in ("", "None") else math.nan

    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return [{**r, "dice": num(r["dice"]), "iou": num(r["iou"]), "hd95": num(r["hd95"]),
             "missed": r["missed"] == "True", "false_positive": r["false_positive"] == "True"} for r in rows]


def cross_validate_busi_seg(task: Any, config: Any, data_root: Path, run_dir: Path) -> Any:
    """``--cv-folds K``: ``K`` training runs of busi-seg on grouped folds of the train + val cases, pooled.

    With ``--max-cases N`` (smoke tests) each fold's run keeps ``N`` evenly spaced cases of each of its parts, so
    only those are scored out of fold.

    Raises:
        ConfigError: For ``--cv-folds 1``.
        DataError: As :func:`breastdx.data.splits.busi_split`.
    """
    from breastdx.config import ConfigError, save_yaml, to_dict
    from breastdx.data.busi import find_busi_root, scan_busi
    from breastdx.data.splits import busi_split
    from breastdx.evaluation.segmentation import SCORE_TERMS, summarize_segmentation
    from breastdx.pipeline.task import RunResult
    from breastdx.runs import number, write_json, write_versions

    k = int(config.cv_folds)
    if k < 2:
        raise ConfigError(f"--cv-folds must be 2 or more (0: no cross-validation); got {k}.")
    run_dir.mkdir(parents=True, exist_ok=True)
    base = busi_split(data_root, Path(config.split_file) if config.split_file else None, seed=config.split_seed,
                      reuse_only=True, method=config.split_method)
    base.to_json(run_dir / "base_split.json")
    save_yaml({"task": task.name, **to_dict(config), "data_root": str(data_root)}, run_dir / "config.yaml")
    write_versions(run_dir)
    labels = {c.name: c.label for c in scan_busi(find_busi_root(data_root))}
    splits = busi_fold_splits(base, labels, k, config.split_seed, config.split_method)
    write_json({"k": k, "seed": config.split_seed, "base_split": "base_split.json",
                "base_test_cases_excluded": len(base.test),
                "folds": [{"test": s.test, "val": s.val} for s in splits]}, run_dir / "folds.json")
    from breastdx.pipeline.fold_runner import run_folds

    jobs = []
    for f, split in enumerate(splits):
        fold_dir = run_dir / "folds" / f"f{f}"
        fold_dir.mkdir(parents=True, exist_ok=True)
        split.to_json(fold_dir / "fold_split.json")
        jobs.append((dataclasses.replace(config, cv_folds=0, cv_workers=1,
                                         split_file=str(fold_dir / "fold_split.json")), fold_dir))
    results = run_folds(task, jobs, data_root, config.cv_workers,
                        [f"cross-validation fold f{f} ({f + 1} of {k}): {len(s.train)} train, {len(s.val)} val, "
                         f"{len(s.test)} test cases" for f, s in enumerate(splits)])
    rows, per_fold = [], []
    for f, ((_, fold_dir), result) in enumerate(zip(jobs, results)):
        fold_rows = [{**r, "fold": f} for r in _read_per_image(fold_dir / "test_per_image.csv")]
        rows += fold_rows
        m = result.metrics
        per_fold.append({"fold": f, "n_test": len(fold_rows),
                         "val_dice": number(m["validation_metrics"]["dice"]["value"])  # a resumed fold's
                         if "dice" in m.get("validation_metrics", {}) else None,  # metrics.json has null for NaN
                         "test_dice": number(m["metrics"]["dice"]["value"]),
                         "test_normal_fp_share": m["metrics"].get("normal_fp_share", {}).get("value"),
                         "postprocessing": m.get("postprocessing")})
    pooled = summarize_segmentation(rows, [r["label"] for r in rows], n_boot=config.n_bootstrap, seed=config.seed)
    by_group = group_intervals(rows, base.groups, n_boot=config.n_bootstrap, seed=config.seed)
    summary = {key: {"mean": float(np.mean([p[key] for p in per_fold])),
                     "sd": float(np.std([p[key] for p in per_fold], ddof=1))}
               for key in ("val_dice", "test_dice") if all(isinstance(p[key], float) for p in per_fold)}
    metrics = {"task": task.name, "kind": "cross_validation", "k": k, "n": len(rows),
               "split": f"{k}-fold grouped stratified cross-validation of the {len(rows)} train + val cases of the "
                        f"base split (its {len(base.test)} test cases excluded); out-of-fold images",
               "metrics": pooled, "metrics_by_group": by_group, "per_fold": per_fold, "per_fold_summary": summary,
               "metrics_note": f"pooled out-of-fold scores, each image scored by the model of its fold after the "
                               f"postprocessing that fold chose on its own validation part; 95% percentile intervals "
                               f"from {config.n_bootstrap} bootstrap resamples of the images ('metrics'), and of the "
                               f"near-duplicate groups, each with all its images ('metrics_by_group': the intervals "
                               f"to report, since the frames of one lesion are not independent). {SCORE_TERMS}",
               "data_checksum": base.data_checksum}
    write_json(metrics, run_dir / "metrics.json")
    fields = ["case", "label", "fold", "dice", "iou", "hd95", "missed", "false_positive"]
    with open(run_dir / "oof_per_image.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    from breastdx.evaluation.tables import ci_text
    from breastdx.pipeline.ensemble import write_ensemble
    from breastdx.runs import new_model_dir

    write_ensemble([run_dir / "folds" / f"f{f}" / "model" for f in range(k)],
                   new_model_dir(run_dir, make=False, name="ensemble"),
                   split_file=run_dir / "base_split.json", title="BUSI lesion segmentation: fold ensemble",
                   notes=f"The {k} fold models of a grouped {k}-fold cross-validation (`{run_dir}`); pooled "
                         f"out-of-fold Dice of the recipe: {ci_text(pooled['dice'])}. The base split's test cases "
                         f"(`split.json`'s test part) were read by no member.")

    from breastdx.pipeline.cv_report import write_seg_cv_report

    write_seg_cv_report(run_dir, task.title, metrics, [r.metrics for r in results], base)
    table = [["metric", "pooled out-of-fold [95% CI over images]", "[95% CI over near-duplicate groups]"]]
    table += [[key, ci_text(v), ci_text(by_group[key]) if key in by_group else ""] for key, v in pooled.items()]
    table += [[f"{key} per fold", f"{s['mean']:.3f} (sd {s['sd']:.3f})"] for key, s in summary.items()]
    return RunResult(run_dir, metrics, f"busi-seg: {metrics['split']}", table,
                     [SCORE_TERMS, f"Run folder: {run_dir} (folds/f0..f{k - 1} hold each fold's full run); the base split's "
                      f"test cases were not read. The fold ensemble (the mean of the {k} fold models' probabilities) "
                      f"is the model folder {run_dir / 'ensemble'}."])
