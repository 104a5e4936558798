"""WDBC cytology: malignant vs benign from the 30 cell-nucleus features of fine-needle aspirates.

``breastdx train wdbc`` compares five tuned scikit-learn pipelines under nested, repeated, stratified
10-fold cross-validation (10 repeats), reports every metric with a 95% bootstrap confidence interval and
an operating point for a target sensitivity chosen inside the training folds, then fits the best model on
all data and saves it (skops + ``meta.json`` + ``MODEL_CARD.md``).

References:
    Street, Wolberg & Mangasarian (1993). Proc. SPIE 1905:861-870. doi:10.1117/12.148698 (MSM-T: 97.5%
    accuracy under 10-fold cross-validation).
"""

from __future__ import annotations

import csv
import logging
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from breastdx.config import ConfigError, option, parse_options, save_yaml, to_dict, validate
from breastdx.data.errors import DataError
from breastdx.data.wdbc import CLASS_NAMES, FEATURE_NAMES, FEATURE_UNITS, load_wdbc, read_wdbc_file
from breastdx.evaluation.tables import OPERATING_POINTS, ci_text, metric_label
from breastdx.pipeline.task import TASKS, RunResult, Task

log = logging.getLogger(__name__)

TARGET_ACCURACY = 0.975  # Street et al. 1993, MSM-T under 10-fold CV
TARGET_AUROC = 0.995


def training_overlap(X: np.ndarray, meta: dict, model_dir: Path) -> dict:
    """How many rows of ``X`` ``(n, 30)`` are cases the model was fit on: every training case when it was fit on
    scikit-learn's copy (its ``data_checksum``), else the training rows its folder keeps (SHAP's background, 50), so
    that a match is certain and no match proves nothing. Values are compared to a relative 1e-7 (a CSV rounds).

    Returns:
        ``{"n_seen", "n", "checked_against"}``; ``checked_against`` says against which rows.
    """
    from breastdx.inference.tabular import BACKGROUND_FILE

    reference = load_wdbc()
    if meta.get("data_checksum") == reference.checksum:
        train, against = reference.X, f"all {reference.n} training cases, scikit-learn's copy"
    elif (Path(model_dir) / BACKGROUND_FILE).is_file():
        train = np.load(Path(model_dir) / BACKGROUND_FILE, allow_pickle=False)
        against = f"the {len(train)} training cases kept in {BACKGROUND_FILE} only"
    else:
        train, against = np.zeros((0, X.shape[1])), "no training rows are known"
    seen = [bool(len(train)) and bool(np.isclose(train, row, rtol=1e-7, atol=0).all(axis=1).any()) for row in X]
    return {"n_seen": int(sum(seen)), "n": int(len(X)), "checked_against": against}


@dataclass(frozen=True)
class WDBCConfig:
    """Options of ``breastdx train wdbc`` (each is also a command-line option, ``--name value``).

    Attributes:
        seed: Seed of splits, models and bootstrap.
        data_file: ``wdbc.data`` or a named CSV; empty for scikit-learn's copy.
        models: Registry names of the models to compare (see ``breastdx.models.tabular``).
        folds: Outer cross-validation folds.
        repeats: Repeats of the outer cross-validation.
        inner_folds: Inner folds for tuning and for choosing the threshold.
        target_sensitivity: Sensitivity the operating point must reach on the training folds.
        n_bootstrap: Bootstrap resamples for the confidence intervals.
        search: Inner-search budget, ``fast`` (default, about 2 minutes on 2 cores) or ``full`` (the protocol of
            breastdx 0.1, about 7 minutes): see :mod:`breastdx.models.tabular`. Logistic regression, the SVM
            and k-NN give the same results under both.
        n_jobs: Worker processes over outer folds (0: every usable core).
        shap_cases: Cases in the global SHAP summary (a seeded sample).
    """

    seed: int = option(0, ge=0, le=2**32 - 1)
    data_file: str = ""
    models: tuple[str, ...] = ("logreg", "svm", "random_forest", "gradient_boosting", "knn")
    folds: int = option(10, ge=2)
    repeats: int = option(10, ge=1)
    inner_folds: int = option(3, ge=2)
    target_sensitivity: float = option(0.98, ge=0, le=1)
    n_bootstrap: int = option(2000, ge=1)
    search: str = option("fast", choices=("fast", "full"))
    n_jobs: int = option(0, ge=0)
    shap_cases: int = option(150, ge=1)


SUMMARY_METRICS = ("accuracy", "auroc", "sensitivity", "specificity", "ppv", "npv", "brier", "ece")


def _point_auroc_brier(y: np.ndarray, prob: np.ndarray) -> tuple[float, float]:
    """The model-choice key: mean AUROC over repeats, then lower mean Brier score (the point values of
    :func:`breastdx.evaluation.metrics.bootstrap_ci`)."""
    from breastdx.evaluation.metrics import binary_metrics

    per_repeat = [binary_metrics(y, p) for p in prob]
    return (float(np.nanmean([m["auroc"] for m in per_repeat])),
            -float(np.nanmean([m["brier"] for m in per_repeat])))


def _summary(title: str, y: np.ndarray, cv: Any, config: WDBCConfig) -> dict[str, Any]:
    """A model's metrics at 0.5 and at its operating point, with bootstrap CIs (runs in a worker process)."""
    from breastdx.evaluation.metrics import bootstrap_ci

    return {
        "title": title,
        "metrics": bootstrap_ci(y, cv.prob, n_boot=config.n_bootstrap, seed=config.seed),
        "operating_point": {
            "target_sensitivity": config.target_sensitivity,
            "threshold_mean": float(cv.thresholds.mean()),
            "threshold_range": [float(cv.thresholds.min()), float(cv.thresholds.max())],
            "metrics": bootstrap_ci(y, cv.prob, cv.pred_op, n_boot=config.n_bootstrap, seed=config.seed),
        },
    }


def _operating_point_note(op: dict[str, Any], threshold: float) -> str:
    """The model card's sentence before the figures at the operating point (``_summary``'s ``operating_point``)."""
    low, high = op["threshold_range"]
    return (f"At the operating point instead of 0.5 (in each outer fold, the highest threshold whose sensitivity "
            f"reaches {op['target_sensitivity']} on its inner folds: {low:.3f} to {high:.3f}, mean "
            f"{op['threshold_mean']:.3f}; this model's, fitted the same way on all cases, is {threshold:.3f}, which "
            f"`predict` uses), the same evaluation gives:")


@contextmanager
def _fold_progress(total: int) -> Iterator[Callable[[str], None]]:
    """A Rich progress bar over outer folds (all models), with the time left, on stderr."""
    from rich.console import Console
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("folds"),
               TimeElapsedColumn(), TextColumn("left"), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), transient=False) as bar:
        job = bar.add_task("cross-validation", total=total)
        yield lambda name: bar.update(job, advance=1, description=f"cross-validation ({name})")


def _label(name: str, point: str) -> str:
    """A metric's name with its operating point, for tables that hold both: ``point`` is ``"argmax"``
    (P(malignant) >= 0.5, the most probable class) or ``"op"`` (the operating threshold); a ranking or probability
    figure (AUROC, Brier, ECE) is named without one, as :func:`~breastdx.evaluation.tables.metric_label` does."""
    return f"{name} @ {point}" if OPERATING_POINTS.get(name) else metric_label(name)


POINTS_TEXT = ("@ argmax: P(malignant) >= 0.5 (the most probable class); @ op: the operating threshold, {rule}; "
               "AUROC, Brier and ECE use the probabilities.")


@dataclass(frozen=True)
class WDBCPredictOptions:
    """Options of ``breastdx predict|explain wdbc`` (declared for ``--help``; :meth:`WDBCTask._shap_rows` reads them).

    Attributes:
        reasons: SHAP contributions given per case, the largest first (explain: at least 1).
    """

    reasons: int = option(3, ge=0)


@dataclass(frozen=True)
class WDBCEvaluateOptions:
    """Options of ``breastdx evaluate wdbc`` (declared for ``--help`` and checked before any work).

    Attributes:
        data_file: Labelled cases to evaluate on, ``wdbc.data`` or a named CSV with a diagnosis column; empty for
            scikit-learn's copy (the training data of the shipped model: resubstitution).
        seed: Seed of the bootstrap confidence intervals.
    """

    data_file: str = ""
    seed: int = option(0, ge=0, le=2**32 - 1)


@TASKS.register("wdbc")
class WDBCTask(Task):
    """Malignant vs benign from WDBC cell-nucleus features (cytology)."""

    name = "wdbc"
    title = "WDBC cytology (fine-needle aspirate features)"
    config_cls = WDBCConfig

    def options_cls(self, verb: str) -> type | None:  # noqa: D102
        return {"train": WDBCConfig, "evaluate": WDBCEvaluateOptions, "predict": WDBCPredictOptions,
                "explain": WDBCPredictOptions}.get(verb)

    # ------------------------------------------------------------------ train
    def train(self, config: WDBCConfig, data_root: Path, run_dir: Path) -> RunResult:
        from concurrent.futures import ThreadPoolExecutor

        from joblib import Parallel, delayed

        from breastdx.models.tabular import TABULAR_MODELS
        from breastdx.runs import seed_everything, write_json, write_versions
        from breastdx.runtime import usable_cores
        from breastdx.training.tabular import cross_validate_models

        validate(config, self.name)  # before any work: each option's declared range
        if not config.models:
            raise ConfigError(f"The 'models' option of {self.name} names no model; choose from "
                              f"{', '.join(self.config_cls.models)}.")
        seed_everything(config.seed)
        try:  # before any work: an unknown model name or search budget
            specs = [TABULAR_MODELS.get(name)(config.seed, config.search) for name in config.models]
        except ValueError as e:  # the factories check the budget (UnknownNameError is no ValueError)
            raise ConfigError(str(e)) from None
        n_jobs = config.n_jobs or usable_cores()
        table = load_wdbc(config.data_file or None)
        save_yaml({"task": self.name, **to_dict(config), "data_root": str(data_root), "data_source": table.source,
                   "data_checksum": table.checksum}, run_dir / "config.yaml")
        write_versions(run_dir)
        X, y = table.X, table.y  # load_wdbc guarantees labels

        log.info("nested cross-validation of %d models (%d x %d outer folds, %s inner search) on %d processes",
                 len(specs), config.repeats, config.folds, config.search, n_jobs)
        with _fold_progress(len(specs) * config.folds * config.repeats) as on_fold:
            results = cross_validate_models(specs, X, y, folds=config.folds, repeats=config.repeats,
                                            inner_folds=config.inner_folds, seed=config.seed,
                                            target_sensitivity=config.target_sensitivity, n_jobs=n_jobs,
                                            on_fold=on_fold)
        log.info("CPU seconds per outer fold: %s", ", ".join(f"{n} {results[n].seconds.mean():.2f}"
                                                               for n in config.models))
        # The bootstrap intervals run in the worker processes while this one fits and explains the final model.
        with ThreadPoolExecutor(max_workers=1) as background:
            pending = background.submit(lambda: dict(zip(config.models, Parallel(n_jobs=n_jobs)(
                delayed(_summary)(spec.title, y, results[spec.name], config) for spec in specs))))
            best = max(config.models, key=lambda n: _point_auroc_brier(y, results[n].prob))
            self._write_split_file(run_dir, table.checksum, config, y)
            self._write_oof(run_dir, table, results)
            final = self._fit_final(config, table, best, lambda: pending.result()[best], run_dir)
            summaries = pending.result()

        metrics = {
            "task": self.name,
            "split": f"nested repeated stratified {config.folds}-fold cross-validation "
                     f"({config.repeats} repeats), out-of-fold predictions",
            "n": table.n,
            "model": best,
            "threshold": 0.5,
            "metrics": summaries[best]["metrics"],
            "operating_point": summaries[best]["operating_point"],
            "models": summaries,
            "benchmark": {
                "accuracy_target": TARGET_ACCURACY, "auroc_target": TARGET_AUROC,
                "best_accuracy": max(s["metrics"]["accuracy"]["value"] for s in summaries.values()),
                "best_auroc": max(s["metrics"]["auroc"]["value"] for s in summaries.values()),
            },
        }
        write_json(metrics, run_dir / "metrics.json")

        self._write_report(run_dir, config, table, results, summaries, best, final)

        names = list(config.models)
        header = ["metric", *[("*" if n == best else "") + n for n in names]]
        rows = [[_label(k, "argmax"), *[ci_text(summaries[n]["metrics"][k]) for n in names]] for k in SUMMARY_METRICS]
        for k in ("sensitivity", "specificity"):
            rows.append([_label(k, "op"), *[ci_text(summaries[n]["operating_point"]["metrics"][k]) for n in names]])
        bench = metrics["benchmark"]
        notes = [
            f"Best model (highest AUROC): {best}; final model fit on all {table.n} cases, threshold "
            f"{final['threshold']:.3f} for sensitivity >= {config.target_sensitivity}.",
            f"Benchmark: best accuracy {bench['best_accuracy']:.4f} (target >= {TARGET_ACCURACY}, MSM-T 1993), "
            f"best AUROC {bench['best_auroc']:.4f} (target >= {TARGET_AUROC}).",
            POINTS_TEXT.format(rule=f"chosen for sensitivity >= {config.target_sensitivity} inside each training "
                                    f"part"),
            f"Run folder: {run_dir}",
        ]
        title = f"WDBC, {config.repeats} x {config.folds}-fold nested CV: value [95% CI]"
        return RunResult(run_dir, metrics, title, [header, *rows], notes)

    def _write_oof(self, run_dir: Path, table: Any, results: dict[str, Any]) -> None:
        """``oof_predictions.csv``: every out-of-fold probability (model, repeat, case), so metrics can be re-derived."""
        with open(run_dir / "oof_predictions.csv", "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["model", "repeat", "id", "diagnosis", "p_malignant", "label_at_operating_point"])
            for name, cv in results.items():
                for r in range(cv.prob.shape[0]):
                    for i in range(table.n):
                        w.writerow([name, r, table.ids[i], CLASS_NAMES[int(table.y[i])], f"{cv.prob[r, i]:.6f}",
                                    CLASS_NAMES[int(cv.pred_op[r, i])]])

    def _write_split_file(self, run_dir: Path, checksum: str, config: WDBCConfig, y: np.ndarray) -> None:
        from sklearn.model_selection import RepeatedStratifiedKFold

        from breastdx.runs import write_json

        outer = RepeatedStratifiedKFold(n_splits=config.folds, n_repeats=config.repeats, random_state=config.seed)
        fold_of = np.zeros((config.repeats, len(y)), dtype=int)
        for k, (_, test) in enumerate(outer.split(np.zeros((len(y), 1)), y)):
            fold_of[k // config.folds, test] = k % config.folds
        write_json({"kind": "repeated stratified k-fold", "folds": config.folds, "repeats": config.repeats,
                    "seed": config.seed, "data_checksum": checksum,
                    "note": "fold_of_case[r][i] is the test fold of case i (row order of the data) in repeat r",
                    "fold_of_case": fold_of.tolist()}, run_dir / "split.json")

    def _fit_final(self, config: WDBCConfig, table: Any, best: str, get_summary: Callable[[], dict[str, Any]],
                   run_dir: Path) -> dict[str, Any]:
        """Fit the best model on all cases, explain it (SHAP), then write its folder with the cross-validated
        metrics that ``get_summary`` returns (computed meanwhile in other processes)."""
        import skops.io as sio

        from breastdx.explain.shap_tabular import TabularExplainer, save_summary_plot
        from breastdx.inference.tabular import BACKGROUND_FILE, SKOPS_FILE
        from breastdx.models.saved import write_meta, write_model_card
        from breastdx.models.tabular import TABULAR_MODELS
        from breastdx.training.tabular import tune_and_threshold

        spec = TABULAR_MODELS.get(best)(config.seed, config.search)
        log.info("fitting the final %s model on all %d cases; SHAP summary", best, table.n)
        model, params, threshold = tune_and_threshold(spec, table.X, table.y, config.inner_folds, config.seed,
                                                      config.target_sensitivity)
        model_dir = run_dir / "model"
        model_dir.mkdir()
        sio.dump(model, model_dir / SKOPS_FILE)
        rng = np.random.default_rng(config.seed)
        background = table.X[np.sort(rng.choice(table.n, size=min(50, table.n), replace=False))]
        np.save(model_dir / BACKGROUND_FILE, background, allow_pickle=False)
        idx = np.sort(rng.choice(table.n, size=min(config.shap_cases, table.n), replace=False))
        explanation = TabularExplainer(model, background, FEATURE_NAMES, seed=config.seed).explain(table.X[idx])
        save_summary_plot(explanation, run_dir / "shap_summary.png")
        summary = get_summary()
        meta = write_meta(model_dir, {
            "task": self.name,
            "architecture": best,
            "architecture_args": {k: v for k, v in params.items()},
            "title": spec.title,
            "weights_file": SKOPS_FILE,
            "class_names": list(CLASS_NAMES),
            "positive_class": "malignant",
            "feature_names": list(FEATURE_NAMES),
            "feature_units": FEATURE_UNITS,
            "preprocessing": "StandardScaler fitted inside the pipeline",
            "threshold": threshold,
            "threshold_rule": f"highest threshold with sensitivity >= {config.target_sensitivity} on inner "
                              f"{config.inner_folds}-fold out-of-fold probabilities of all data",
            "metrics": summary["metrics"],
            "metrics_split": f"nested repeated stratified {config.folds}-fold CV ({config.repeats} repeats)",
            "operating_point_metrics": summary["operating_point"]["metrics"],
            "seed": config.seed,
            "data_source": table.source,
            "data_checksum": table.checksum,
            "n_train": table.n,
        })
        is_wdbc = table.source == "sklearn" or table.checksum == load_wdbc().checksum
        cases = f"{table.n} fine-needle aspirates ({int(table.y.sum())} malignant), 30 features"
        write_model_card(
            model_dir, meta, title=f"WDBC {spec.title}",
            summary=f"scikit-learn pipeline (standardisation + {spec.title}), hyperparameters {params}, "
                    f"tuned by {config.inner_folds}-fold CV on all data.",
            data=(f"- Wisconsin Diagnostic Breast Cancer (Street, Wolberg & Mangasarian 1993; doi:10.24432/C5DW2B), "
                  f"{cases}, source {Path(table.source).name}. Single centre (University of Wisconsin Hospitals, "
                  f"1990s)." if is_wdbc else
                  f"- {cases} from the file {Path(table.source).name}, in the feature layout of the Wisconsin "
                  f"Diagnostic Breast Cancer data (Street, Wolberg & Mangasarian 1993; doi:10.24432/C5DW2B) but not "
                  f"those data: their origin is the file owner's to state."),
            evaluation=f"Nested repeated stratified {config.folds}-fold cross-validation ({config.repeats} repeats): "
                       f"out-of-fold predictions at threshold 0.5, 95% percentile-bootstrap CIs over cases, shifted by the bootstrap bias (evaluation.metrics.bias_corrected_interval). "
                       f"The model was chosen as the best of {len(config.models)} by AUROC, so these figures are "
                       f"slightly optimistic.",
            operating_point=_operating_point_note(summary["operating_point"], threshold),
            limitations=[
                "Features must be measured as in the original study (interactive nucleus outlining, Xcyt); other "
                "image-analysis software gives values on other scales.",
                "Small single-centre data set from the 1990s; no external validation." if is_wdbc else
                "Validated only by cross-validation on its own training file; no external validation.",
                f"The folder holds feature rows of training cases: {len(background)} in {BACKGROUND_FILE} (SHAP's "
                f"background)" + (", and the training rows the model keeps in " + SKOPS_FILE
                                  if spec.keeps_training_rows else "")
                + "; share it only as the training data may be shared.",
                f"The operating threshold targets sensitivity {config.target_sensitivity}; expect more false "
                f"positives than at 0.5.",
                "Research use only; not for diagnosis.",
            ])
        return {"threshold": threshold, "params": params, "model_dir": model_dir}

    def _write_report(self, run_dir: Path, config: WDBCConfig, table: Any, results: dict[str, Any],
                      summaries: dict[str, Any], best: str, final: dict[str, Any]) -> None:
        from breastdx.evaluation.plots import plot_confusion, plot_reliability, plot_roc_curves
        from breastdx.evaluation.report import HtmlReport

        y = table.y
        curves = {f"{n} (AUROC {summaries[n]['metrics']['auroc']['value']:.3f})": (y, results[n].prob[0])
                  for n in config.models}
        plot_roc_curves(curves, run_dir / "roc.png", "ROC, out-of-fold (repeat 1)")
        pooled_y = np.tile(y, config.repeats)
        plot_reliability({n: (pooled_y, results[n].prob.ravel()) for n in config.models}, run_dir / "reliability.png",
                         title="Reliability, out-of-fold (all repeats pooled)")
        cm = np.zeros((2, 2))
        for r in range(config.repeats):
            pred = (results[best].prob[r] >= 0.5).astype(int)
            for t, p in zip(y, pred):
                cm[t, p] += 1.0 / config.repeats
        plot_confusion(cm, CLASS_NAMES, run_dir / "confusion.png", f"{best}, threshold 0.5 (mean of repeats)")

        rep = HtmlReport("breastdx — WDBC cytology")
        rep.paragraph(f"{table.n} cases ({int(y.sum())} malignant), source {table.source}, data SHA-256 "
                      f"{table.checksum[:16]}…; nested repeated stratified {config.folds}-fold cross-validation "
                      f"with {config.repeats} repeats (seed {config.seed}); hyperparameters tuned on "
                      f"{config.inner_folds} inner folds of each training part. Values are means over repeats "
                      f"of out-of-fold metrics; intervals are 95% percentile bootstrap over cases "
                      f"({config.n_bootstrap} resamples), shifted by the bootstrap bias. Positive class: malignant.")
        rep.heading("Model comparison (threshold 0.5)")
        names = list(config.models)
        rep.table(["model", *SUMMARY_METRICS, "balanced_accuracy", "f1"],
                  [[summaries[n]["title"] + (" (best)" if n == best else ""),
                    *[ci_text(summaries[n]["metrics"][k]) for k in (*SUMMARY_METRICS, "balanced_accuracy", "f1")]]
                   for n in names], highlight_row=names.index(best))
        rep.heading(f"Operating point: target sensitivity {config.target_sensitivity} chosen on training folds")
        rep.table(["model", "threshold (mean)", "sensitivity", "specificity", "ppv", "npv", "accuracy"],
                  [[summaries[n]["title"], f"{summaries[n]['operating_point']['threshold_mean']:.3f}",
                    *[ci_text(summaries[n]["operating_point"]["metrics"][k])
                      for k in ("sensitivity", "specificity", "ppv", "npv", "accuracy")]] for n in names])
        rep.heading("Best model: every metric (@ argmax: threshold 0.5)")
        rep.metrics_table(summaries[best]["metrics"])
        rep.heading("Plots")
        rep.figure(run_dir / "roc.png", "ROC curves, out-of-fold predictions of the first repeat")
        rep.figure(run_dir / "reliability.png", "Reliability diagram (calibration)")
        rep.figure(run_dir / "confusion.png", f"Confusion matrix of {best}")
        rep.figure(run_dir / "shap_summary.png",
                   f"Global SHAP summary of the final {best} model (P(malignant), {config.shap_cases} cases)")
        rep.heading("Final model")
        rep.paragraph(f"{summaries[best]['title']} refit on all data with parameters {final['params']}; operating "
                      f"threshold {final['threshold']:.3f}. Saved in model/ with meta.json and MODEL_CARD.md.")
        rep.heading("Benchmark")
        rep.paragraph(f"Targets: accuracy >= {TARGET_ACCURACY} (Street, Wolberg & Mangasarian 1993, MSM-T, 10-fold "
                      f"CV) and AUROC >= {TARGET_AUROC}. Reached: accuracy "
                      f"{max(s['metrics']['accuracy']['value'] for s in summaries.values()):.4f}, AUROC "
                      f"{max(s['metrics']['auroc']['value'] for s in summaries.values()):.4f} (best models).")
        rep.write(run_dir / "report.html")

    # --------------------------------------------------------------- evaluate
    def evaluate(self, model_dir: Path, data_root: Path, run_dir: Path, options: dict[str, str]) -> RunResult:
        from breastdx.evaluation.metrics import bootstrap_ci
        from breastdx.evaluation.plots import plot_confusion, plot_reliability, plot_roc_curves
        from breastdx.evaluation.report import HtmlReport
        from breastdx.inference.tabular import WDBCPredictor
        from breastdx.runs import write_json, write_versions

        parsed = parse_options(WDBCEvaluateOptions, options, "evaluate wdbc")  # an unknown option, a bad seed
        data_file, seed = parsed.data_file or None, parsed.seed
        predictor = WDBCPredictor.from_dir(model_dir)
        table = load_wdbc(data_file)
        save_yaml({"task": self.name, "model": str(model_dir), "data_source": table.source,
                   "data_checksum": table.checksum, "seed": seed}, run_dir / "config.yaml")
        write_versions(run_dir)
        prob = predictor.predict_proba(table.X)
        resub = table.checksum == predictor.meta.get("data_checksum")
        overlap = training_overlap(table.X, predictor.meta, model_dir)
        if not resub and overlap["n_seen"] == table.n:
            resub = True  # the training cases in another order, another file: still resubstitution
        split = ("resubstitution: these are the data the model was fit on, so the figures are optimistic; "
                 "see the cross-validated metrics in the model's meta.json" if resub else f"external: {table.source}")
        if overlap["n_seen"] and not resub:
            split += (f"; but {overlap['n_seen']} of the {table.n} cases are cases the model was fit on "
                      f"({overlap['checked_against']}): the figures are optimistic")
            logging.getLogger(__name__).warning("%s", split)
        metrics = {"task": self.name, "split": split, "n": table.n, "model": str(model_dir), "threshold": 0.5,
                   "training_overlap": overlap,
                   "metrics": bootstrap_ci(table.y, prob, seed=seed),
                   "operating_point": {"threshold": predictor.threshold,
                                       "metrics": bootstrap_ci(table.y, prob, prob >= predictor.threshold,
                                                               seed=seed)}}
        write_json(metrics, run_dir / "metrics.json")
        plot_roc_curves({"model": (table.y, prob)}, run_dir / "roc.png")
        plot_reliability({"model": (table.y, prob)}, run_dir / "reliability.png")
        cm = np.zeros((2, 2))
        np.add.at(cm, (table.y, (prob >= predictor.threshold).astype(int)), 1)
        plot_confusion(cm, CLASS_NAMES, run_dir / "confusion.png", "At the operating threshold")
        rep = HtmlReport("breastdx — WDBC evaluation")
        rep.paragraph(f"Model {model_dir} ({predictor.meta['architecture']}); data {table.source}, n = {table.n}. "
                      f"Split: {split}.")
        rep.heading("Threshold 0.5")
        rep.metrics_table(metrics["metrics"])
        rep.heading(f"Operating threshold {predictor.threshold:.3f}")
        rep.metrics_table(metrics["operating_point"]["metrics"])
        for png, cap in (("roc.png", "ROC"), ("reliability.png", "Reliability"), ("confusion.png", "Confusion")):
            rep.figure(run_dir / png, cap)
        rep.write(run_dir / "report.html")
        rows = [[k, ci_text(metrics["metrics"][k]), ci_text(metrics["operating_point"]["metrics"][k])]
                for k in metrics["metrics"]]
        notes = [f"Split: {split}", POINTS_TEXT.format(rule=predictor.meta.get("threshold_rule", "from meta.json")),
                 f"Run folder: {run_dir}"]
        return RunResult(run_dir, metrics, "WDBC evaluation: value [95% CI]",
                         [["metric", "@ argmax (threshold 0.5)", f"@ op (threshold {predictor.threshold:.3f})"],
                          *rows], notes)

    # ---------------------------------------------------------------- predict
    def _shap_rows(self, model_dir: Path, inputs: list[Path], options: dict[str, str], command: str,
                   least: int = 0) -> tuple[Any, list[dict[str, Any]], list[tuple[str, str]]]:
        """Every case of every input file as a row of :meth:`WDBCPredictor.predict_table` (with its ``source``),
        and the files and rows that could not be used with their reasons (a row whose values are not valid is
        named by file, line and ID, and the other rows are predicted); ``--reasons k`` (at least ``least``) SHAP
        contributions per case."""
        from breastdx.inference.tabular import WDBCPredictor

        n_reasons = parse_options(WDBCPredictOptions, options, command).reasons  # declared: an integer >= 0
        if n_reasons < least:
            raise ConfigError(f"The 'reasons' option of {command} must be an integer >= {least}. Got {n_reasons} "
                              f"instead.")
        predictor = WDBCPredictor.from_dir(model_dir)
        rows: list[dict[str, Any]] = []
        failures: list[tuple[str, str]] = []
        for path in inputs:
            try:
                table = read_wdbc_file(path, skip_bad_rows=True)
            except (DataError, FileNotFoundError, UnicodeDecodeError) as e:
                failures.append((str(path), str(e)))
                continue
            failures.extend(table.rejected)  # rows with values out of range: named, the others predicted
            for row in predictor.predict_table(table, n_reasons=n_reasons) if table.n else []:
                rows.append({"source": str(path), **row})
        return predictor, rows, failures

    @staticmethod
    def _write_rows(rows: list[dict[str, Any]], path: Path) -> None:
        from breastdx.inference.csv_safety import safe_rows

        fields: list[str] = []
        for row in rows:
            fields.extend(k for k in row if k not in fields)
        with open(path, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=fields or ["source"])
            writer.writeheader()
            writer.writerows(safe_rows(rows))  # a case id such as '=HYPERLINK(...)' is written as text

    def predict(self, model_dir: Path, inputs: list[Path], run_dir: Path, options: dict[str, str]) -> RunResult:
        predictor, rows, failures = self._shap_rows(model_dir, inputs, options, "predict wdbc")
        out = run_dir / "predictions.csv"
        self._write_rows(rows, out)
        table_rows = [["id", "P(malignant)", "label", "top SHAP contributions"]] + [
            [r["id"], f"{r['p_malignant']:.3f}", r["label"], r.get("top_features", "")] for r in rows[:50]]
        notes = [f"{len(rows)} case(s) predicted with threshold {predictor.threshold:.3f}; wrote {out}"]
        if len(rows) > 50:
            notes.insert(0, f"(first 50 of {len(rows)} shown)")
        return RunResult(run_dir, {}, "WDBC predictions", table_rows, notes, failures)

    # ---------------------------------------------------------------- explain
    def explain(self, model_dir: Path, inputs: list[Path], run_dir: Path, options: dict[str, str]) -> RunResult:
        """Per-case SHAP explanations of P(malignant), written to ``explanations.csv``.

        The rows and columns are those of ``predict wdbc``'s ``predictions.csv`` (the same SHAP values, same
        seed): ``source, id, p_malignant, label, threshold`` (``diagnosis`` when the file has it), then for
        ``k = 1..--reasons`` (default 3) ``shap_<k>_feature`` and ``shap_<k>_value`` (the feature's signed
        contribution to P(malignant), largest magnitude first; the contributions of all 30 features and the
        model's mean probability on its background cases add up to ``p_malignant``), and ``top_features``.

        Raises:
            ConfigError: For an unknown option or a ``--reasons`` below 1.
            ModelFolderError: If the model folder is not a WDBC model.
        """
        _, rows, failures = self._shap_rows(model_dir, inputs, options, "explain wdbc", least=1)
        out = run_dir / "explanations.csv"
        self._write_rows(rows, out)
        table_rows = [["id", "P(malignant)", "top SHAP contributions"]] + [
            [r["id"], f"{r['p_malignant']:.3f}", r.get("top_features", "")] for r in rows[:50]]
        notes = [f"{len(rows)} case(s) explained; wrote {out}: per case, columns shap_<k>_feature and shap_<k>_value "
                 f"(the k-th largest SHAP contribution to P(malignant), signed) and top_features. "
                 f"`breastdx predict wdbc` writes the same columns into predictions.csv."]
        if len(rows) > 50:
            notes.insert(0, f"(first 50 of {len(rows)} shown)")
        return RunResult(run_dir, {}, "WDBC explanations (SHAP, P(malignant))", table_rows, notes, failures)
