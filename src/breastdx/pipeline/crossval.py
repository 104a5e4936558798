"""Patient-grouped k-fold cross-validation of an image-classification spec (``--cv-folds K``).

For a set as small as BreakHis's 44 patients one test split of 9 patients gives wide, split-dependent figures;
k-fold cross-validation tests every patient once (Varoquaux et al. 2017, doi:10.1016/j.neuroimage.2016.10.038).
The patients are cut into ``K`` folds, stratified by each patient's most common class
(:func:`breastdx.data.splits.grouped_stratified_folds`). Fold ``f`` is the test split of run ``folds/f<f>``;
validation patients are drawn from the other folds (``--split-ratios``' share of validation among train and val),
and the rest train. A patient who alone holds a class (BreakHis's adenosis, phyllodes tumour, lobular carcinoma)
is in training in every fold: that class is never tested. Each fold is a whole training run of the spec (split
file, every architecture, model choice, temperature and threshold on its own validation split), so the pooled
figures estimate the whole procedure. ``--cv-workers N`` trains ``N`` folds at once, each in its own process
(:mod:`breastdx.pipeline.fold_runner`); the out-of-fold probabilities are those of one fold after the other.

The run folder holds ``folds/f<k>/`` (full runs, with their models), ``folds.json`` (the fold of every patient),
``oof_predictions.csv`` (each test image's probabilities from the model of its fold), ``report.html``
(:mod:`breastdx.pipeline.cv_report`: the pooled figures, the folds and a link to each fold's report) and
``metrics.json``:
the pooled out-of-fold figures (``auroc`` of the positive class, ``accuracy``, ``balanced_accuracy`` and, for
subtypes, ``subtype_balanced_accuracy``), with 95% intervals from a bootstrap over patients, and the per-fold
figures with their mean and standard deviation. No model is shipped from a cross-validation: train once on a
split for that.
"""

from __future__ import annotations

import csv
import dataclasses
import logging
from pathlib import Path
from typing import Any

import numpy as np

from breastdx.data.splits import DEFAULT_SPLIT_METHOD
from breastdx.pipeline.task import RunResult

log = logging.getLogger(__name__)

CV_METRICS = ("auroc", "accuracy", "balanced_accuracy", "subtype_balanced_accuracy", "sensitivity", "specificity")
"""Per-fold figures read from each fold's metrics.json (those present)."""


def fold_splits(labels: np.ndarray, groups: np.ndarray, k: int, seed: int, val_share: float,
                positive: tuple[int, ...], method: str = DEFAULT_SPLIT_METHOD
                ) -> tuple[list[dict[str, list[int]]], list[str]]:
    """The train/val/test item indices of each fold, and the patients kept in training throughout.

    The folds are stratified by class (subtype); each fold's validation patients are drawn from the other folds
    stratified by positive class or not, so that validation holds both (the threshold is chosen there).

    Args:
        labels: Class index per item ``(n,)``.
        groups: Patient id per item ``(n,)``.
        k: Folds.
        seed: Seed of the folds and of each fold's validation draw.
        val_share: Share of validation among the non-test items, in (0, 1).
        positive: The class indices of the positive class.
        method: How each fold's validation draw places the patients (:data:`breastdx.data.splits.SPLIT_METHODS`).

    Raises:
        ValueError: If there are fewer eligible patients than folds.
    """
    from breastdx.data.splits import grouped_stratified_folds, grouped_stratified_split, single_group_classes

    text = [f"{int(v):06d}" for v in labels]
    sole = set(single_group_classes(text, groups.tolist()).values())
    kept = sorted({str(g) for g in sole})
    always = np.array([g in sole for g in groups.tolist()], dtype=bool)  # ids as given (ints do not match their text)
    eligible = np.flatnonzero(~always)
    _, gid = np.unique(groups, return_inverse=True)
    folds = grouped_stratified_folds([text[i] for i in eligible], gid[eligible].tolist(), k, seed)
    out = []
    for f in range(k):
        test = eligible[folds[f]]
        rest = np.setdiff1d(eligible, test)
        inner = grouped_stratified_split([str(int(labels[i] in positive)) for i in rest], gid[rest].tolist(),
                                         ratios=(1 - val_share, val_share, 0.0), seed=seed + f, method=method)
        out.append({"train": sorted(rest[inner["train"]].tolist() + np.flatnonzero(always).tolist()),
                    "val": sorted(rest[inner["val"]].tolist()), "test": sorted(test.tolist())})
    return out, kept


def cross_validate(task: Any, config: Any, data_root: Path, run_dir: Path) -> RunResult:
    """``--cv-folds K``: ``K`` training runs of ``task`` on patient-grouped folds, and their pooled figures.

    Raises:
        ConfigError: If the data have no patient ids, the spec reads an official split (PCam), or synthetic patches
            are asked for (``--synthetic-idc``).
        DataError: As the spec's reader.
    """
    from breastdx.config import ConfigError, run_config_record, save_yaml
    from breastdx.data.splits import SplitFile
    from breastdx.evaluation.ci import patient_bootstrap
    from breastdx.evaluation.classification import classification_metrics, positive_columns, positive_probability
    from breastdx.evaluation.metrics import auroc
    from breastdx.inference.classifier import ClassificationPredictor
    from breastdx.runs import number, write_json, write_versions

    spec, k = task.spec, int(config.cv_folds)
    if getattr(config, "synthetic_idc", 0):  # read with the data, they would be cut into a fold as one patient
        raise ConfigError(f"--cv-folds with --synthetic-idc {config.synthetic_idc}: cross-validation tests every "
                          f"patient once, so a generator trained on any of them leaks it into the folds that test it, "
                          f"and the generated patches would be tested as a patient of their own; drop one of them.")
    run_dir.mkdir(parents=True, exist_ok=True)
    base = dataclasses.replace(config, cv_folds=0, split_file="")
    data = spec.read(base, data_root, None, run_dir / "split_reference.json")
    if data.split is None or (data.split.summary or {}).get("grouped_by") != "patient":
        raise ConfigError(f"--cv-folds: {task.name} has no patient ids to group folds by, or uses an official split "
                          f"({data.kind}); cross-validation needs patient-grouped data.")
    parts = list(data.parts.values())
    ids = [i for p in parts for i in p.ids]
    labels = np.concatenate([p.labels for p in parts])
    groups = np.array([g for p in parts for g in p.groups])
    readers = [(p, j) for p in parts for j in range(len(p))]
    names = list(data.class_names)
    save_yaml(run_config_record(task.name, config, data_root, **data.record,
                                data_checksum=data.checksum), run_dir / "config.yaml")
    write_versions(run_dir)
    ratios = config.split_ratios
    pos = positive_columns(names, spec.positive)
    folds, kept = fold_splits(labels, groups, k, config.split_seed, ratios[1] / (ratios[0] + ratios[1]), pos,
                              config.split_method)
    write_json({"k": k, "seed": config.split_seed, "train_only_patients": kept,
                "folds": [{"test_patients": sorted(set(groups[f["test"]].tolist())),
                           "val_patients": sorted(set(groups[f["val"]].tolist()))} for f in folds]},
               run_dir / "folds.json")
    from breastdx.pipeline.fold_runner import run_folds

    jobs, describe = [], []
    for f, part in enumerate(folds):
        fold_dir = run_dir / "folds" / f"f{f}"
        fold_dir.mkdir(parents=True, exist_ok=True)
        counts = {s: {c: int((labels[idx] == j).sum()) for j, c in enumerate(names)} for s, idx in part.items()}
        split = SplitFile(path=None, data_checksum=data.checksum, seed=int(config.split_seed),
                          ratios=tuple(len(v) / len(ids) for v in part.values()),  # type: ignore[arg-type]
                          **{s: [ids[i] for i in idx] for s, idx in part.items()}, dataset=data.split.dataset,
                          method=config.split_method,
                          summary={"n_items": len(ids), "class_names": names, "grouped_by": "patient",
                                   "kind": f"fold f{f} ({f + 1} of {k}), patient-grouped cross-validation",
                                   "counts": counts,
                                   "patients": {s: sorted(set(groups[idx].tolist())) for s, idx in part.items()},
                                   "train_only": {"patients": kept}})
        split.to_json(fold_dir / "fold_split.json")
        jobs.append((dataclasses.replace(base, cv_workers=1, split_file=str(fold_dir / "fold_split.json")), fold_dir))
        describe.append(f"cross-validation fold f{f} ({f + 1} of {k}): " + ", ".join(
            f"{len(set(groups[idx].tolist()))} {s} patients" for s, idx in part.items()))
    results = run_folds(task, jobs, data_root, int(getattr(config, "cv_workers", 1)), describe)
    prob = np.full((len(ids), len(names)), np.nan)
    fold_of = np.full(len(ids), -1)
    per_fold: list[dict[str, Any]] = []
    for f, (part, (_, fold_dir), result) in enumerate(zip(folds, jobs, results)):
        predictor = ClassificationPredictor.from_dir(fold_dir / "model", task=task.name)
        test = part["test"]
        prob[test] = predictor.predict_proba([readers[i][0].read(readers[i][1])[0] for i in test])
        fold_of[test] = f
        m = result.metrics["metrics"]
        # the fold's own figures are over the images its run tested (fewer with --max-cases), not the whole fold
        per_fold.append({"fold": f, "model": result.metrics["model"], "n_test": int(result.metrics.get("n", len(test))),
                         "test_patients": len(set(groups[test].tolist())),
                         **{key: number(m[key]["value"]) for key in CV_METRICS if key in m}})  # null: NaN
    tested = fold_of >= 0
    y, p, g = labels[tested], prob[tested], groups[tested]
    yb = np.isin(y, pos)
    p_pos = positive_probability(p, pos)

    def auroc_of(idx: np.ndarray) -> float:
        return float(auroc(yb[idx], p_pos[idx])) if 0 < yb[idx].sum() < idx.size else float("nan")

    def balanced_of(idx: np.ndarray) -> float:
        pred, truth = p[idx].argmax(1), y[idx]
        return float(np.mean([np.mean(pred[truth == c] == c) for c in np.unique(truth)]))

    pooled = {"auroc": patient_bootstrap(auroc_of, g, config.n_bootstrap, config.seed),
              "balanced_accuracy": patient_bootstrap(balanced_of, g, config.n_bootstrap, config.seed),
              "accuracy": patient_bootstrap(lambda idx: float(np.mean(p[idx].argmax(1) == y[idx])), g,
                                            config.n_bootstrap, config.seed)}
    grouped = len(pos) > 1
    if grouped:
        pooled["subtype_balanced_accuracy"] = pooled["balanced_accuracy"]
        pooled["balanced_accuracy_malignant_vs_rest" if spec.positive == "malignant" else
               f"balanced_accuracy_{spec.positive}_vs_rest"] = patient_bootstrap(
            lambda idx: float(np.mean([np.mean((p_pos[idx] >= 0.5)[yb[idx] == v] == v) for v in (True, False)])),
            g, config.n_bootstrap, config.seed)
    image_level = classification_metrics(y, p, names, spec.positive, None, n_boot=config.n_bootstrap, seed=config.seed)
    present = [names[c] for c in sorted(set(y.tolist()))]
    summary = {key: {"mean": float(np.nanmean([r[key] for r in per_fold])),
                     "sd": float(np.nanstd([r[key] for r in per_fold], ddof=1))}
               for key in CV_METRICS if all(key in r for r in per_fold)}
    metrics = {
        "task": task.name, "kind": "cross_validation", "k": k, "positive_class": spec.positive,
        "split": f"{k}-fold patient-grouped cross-validation, out-of-fold test predictions of {int(tested.sum())} "
                 f"{spec.items} of {len(set(g.tolist()))} patients",
        "n": int(tested.sum()), "metrics": pooled,
        "metrics_note": f"pooled out-of-fold probabilities, each from the model its fold chose on validation; 95% "
                        f"percentile intervals from {config.n_bootstrap} bootstrap resamples of the patients; balanced "
                        f"accuracy at argmax, over the classes present in the tested images; the binary balanced "
                        f"accuracy at P({spec.positive}) >= 0.5",
        "classes_tested": present, "classes_not_tested": [c for c in names if c not in present],
        "train_only_patients": kept, "per_fold": per_fold, "per_fold_summary": summary,
        "image_level": {key: image_level[key] for key in ("auroc", "accuracy", "balanced_accuracy") if key in image_level},
        "data_checksum": data.checksum,
    }
    write_json(metrics, run_dir / "metrics.json")
    with open(run_dir / "oof_predictions.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "fold", "label", *[f"p_{c}" for c in names], f"p_{spec.positive}"])
        for i in np.flatnonzero(tested):
            row = prob[i]
            w.writerow([ids[i], int(fold_of[i]), names[labels[i]], *[f"{v:.6f}" for v in row],
                        f"{positive_probability(row, pos):.6f}"])
    from breastdx.evaluation.tables import ci_text
    from breastdx.pipeline.cv_report import write_classification_cv_report

    write_classification_cv_report(run_dir, task.title, metrics, [r.metrics for r in results], spec.items)
    table = [["metric", "pooled out-of-fold [95% CI over patients]", "per fold mean (sd)"]]
    for key, v in pooled.items():
        s = summary.get(key)
        table.append([key, ci_text(v), f"{s['mean']:.3f} ({s['sd']:.3f})" if s else ""])
    notes = [f"Classes never tested (one patient each, kept in training): "
             f"{', '.join(metrics['classes_not_tested']) or 'none'}.",
             f"Run folder: {run_dir} (folds/f0..f{k - 1} hold each fold's full run)."]
    return RunResult(run_dir, metrics, f"{task.title}: {metrics['split']}", table, notes)
