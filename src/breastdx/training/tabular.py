"""Nested, repeated, stratified cross-validation of tabular pipelines, and the final fit on all data.

For each of ``repeats x folds`` outer folds: the hyperparameters are tuned on the training part alone
(inner stratified folds, or out-of-bag predictions for bagged ensembles), by AUROC; an operating threshold
for a target sensitivity is chosen on the inner out-of-fold probabilities of the tuned model (never on
training-set fits, which are optimistic, nor on the test fold); the held-out fold is then predicted.
Every case thus receives one out-of-fold probability per repeat.

The inner search keeps the out-of-fold probabilities of every candidate, so the threshold of the chosen
one costs no second round of fits: the same folds, fits and choice as ``GridSearchCV(scoring="roc_auc")``
followed by ``cross_val_predict``, with fewer fits. The outer folds of all models run in one pool of
processes, so that both cores stay busy to the end, and report each finished fold to a callback (the
progress bar).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
from joblib import Parallel, delayed
from sklearn.base import clone
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import ParameterGrid, RepeatedStratifiedKFold, StratifiedKFold, cross_val_predict
from sklearn.pipeline import Pipeline

from breastdx.evaluation.metrics import threshold_for_sensitivity
from breastdx.models.tabular import TabularModelSpec


@dataclass
class CVResult:
    """Out-of-fold predictions of one model under repeated cross-validation.

    Attributes:
        model: Registry name of the model.
        prob: Probability of malignancy, float64, shape ``(repeats, n)``.
        pred_op: Labels at the operating threshold chosen inside each training part, shape ``(repeats, n)``.
        thresholds: Operating threshold of each outer fold, shape ``(repeats * folds,)``.
        best_params: Tuned hyperparameters of each outer fold.
        seconds: CPU-process seconds spent on each outer fold, shape ``(repeats * folds,)``.
    """

    model: str
    prob: np.ndarray
    pred_op: np.ndarray
    thresholds: np.ndarray
    best_params: list[dict[str, Any]] = field(default_factory=list)
    seconds: np.ndarray = field(default_factory=lambda: np.zeros(0))


def _positive_scores(model: Pipeline, X: np.ndarray) -> np.ndarray:
    if hasattr(model, "predict_proba"):
        return model.predict_proba(X)[:, 1]
    return model.decision_function(X)


def _search_cv(spec: TabularModelSpec, X: np.ndarray, y: np.ndarray, folds: list[tuple[np.ndarray, np.ndarray]]
               ) -> tuple[dict[str, Any], np.ndarray | None]:
    """The candidate with the best mean inner-fold AUROC (the first among ties), and its out-of-fold
    probabilities (None when they came from the rank surrogate, which gives scores, not probabilities)."""
    pipeline = spec.rank_surrogate if spec.rank_surrogate is not None else spec.pipeline
    best_score, best_params, best_oof = -np.inf, {}, None
    for params in ParameterGrid(spec.grid) if spec.grid else [{}]:
        fit_params = spec.surrogate_params(params) if spec.rank_surrogate is not None else params
        oof = np.empty(len(y))
        scores = []
        for train, test in folds:
            model = clone(pipeline).set_params(**fit_params).fit(X[train], y[train])
            oof[test] = _positive_scores(model, X[test])
            scores.append(roc_auc_score(y[test], oof[test]))
        score = float(np.mean(scores))
        if score > best_score:
            best_score, best_params, best_oof = score, dict(params), oof
    return best_params, None if spec.rank_surrogate is not None else best_oof


def _search_oob(spec: TabularModelSpec, X: np.ndarray, y: np.ndarray) -> tuple[Pipeline, dict[str, Any], np.ndarray]:
    """Each candidate fit once on all of ``(X, y)``; the best out-of-bag AUROC wins; its out-of-bag
    probabilities stand for out-of-fold ones."""
    best = (-np.inf, None, {}, None)
    for params in ParameterGrid(spec.grid) if spec.grid else [{}]:
        model = clone(spec.pipeline).set_params(**params, clf__oob_score=True).fit(X, y)
        oob = model[-1].oob_decision_function_[:, 1]
        oob = np.where(np.isfinite(oob), oob, 0.5)  # a case in every bootstrap sample (vanishingly rare)
        score = float(roc_auc_score(y, oob))
        if score > best[0]:
            best = (score, model, dict(params), oob)
    return best[1], best[2], best[3]


def tune_and_threshold(spec: TabularModelSpec, X: np.ndarray, y: np.ndarray, inner_folds: int, seed: int,
                       target_sensitivity: float) -> tuple[Pipeline, dict[str, Any], float]:
    """Tune ``spec`` on ``(X, y)`` by AUROC, refit, and choose the operating threshold.

    Args:
        spec: Model, grid and search method.
        X: Features, shape ``(n, 30)``.
        y: Labels in {0, 1}, shape ``(n,)``.
        inner_folds: Number of stratified inner folds (``search="cv"``).
        seed: Seed of the inner splits.
        target_sensitivity: Sensitivity the threshold must reach on inner out-of-fold probabilities.

    Returns:
        The tuned pipeline fit on all of ``(X, y)``, its parameters, and the threshold.
    """
    if spec.search == "oob":
        model, params, oof = _search_oob(spec, X, y)
        return model, params, threshold_for_sensitivity(y, oof, target_sensitivity)
    inner = StratifiedKFold(n_splits=inner_folds, shuffle=True, random_state=seed)
    folds = list(inner.split(X, y))
    params, oof = _search_cv(spec, X, y, folds)
    tuned = clone(spec.pipeline).set_params(**params)
    if oof is None:
        oof = cross_val_predict(tuned, X, y, cv=folds, method="predict_proba", n_jobs=1)[:, 1]
    threshold = threshold_for_sensitivity(y, oof, target_sensitivity)
    return tuned.fit(X, y), params, threshold


def _outer_fold(spec: TabularModelSpec, X: np.ndarray, y: np.ndarray, train: np.ndarray, test: np.ndarray,
                inner_folds: int, seed: int, target_sensitivity: float):
    import time

    start = time.process_time()
    model, params, threshold = tune_and_threshold(spec, X[train], y[train], inner_folds, seed, target_sensitivity)
    return test, model.predict_proba(X[test])[:, 1], threshold, params, time.process_time() - start


def cross_validate_models(specs: Sequence[TabularModelSpec], X: np.ndarray, y: np.ndarray, *, folds: int = 10,
                          repeats: int = 10, inner_folds: int = 3, seed: int = 0, target_sensitivity: float = 0.98,
                          n_jobs: int = 1, on_fold: Callable[[str], None] | None = None) -> dict[str, CVResult]:
    """Nested repeated stratified k-fold cross-validation of several models, their folds in one pool.

    Every model sees the same outer folds; fold ``k`` tunes with inner seed ``seed + 1 + k``.

    Args:
        specs: Models, grids and search methods.
        X: Features, float64, shape ``(n, d)``.
        y: Labels in {0, 1}, shape ``(n,)``.
        folds: Outer folds per repeat.
        repeats: Number of repeats (each with a different seeded shuffle).
        inner_folds: Inner folds for tuning and for choosing the threshold.
        seed: Seed of the outer and inner splits; the same seed gives the same result for any ``n_jobs``.
        target_sensitivity: Target sensitivity of the operating point.
        n_jobs: Worker processes (1 runs in this process).
        on_fold: Called with the model's name after each finished outer fold (a progress bar).

    Returns:
        Model name to :class:`CVResult`.
    """
    outer = RepeatedStratifiedKFold(n_splits=folds, n_repeats=repeats, random_state=seed)
    splits = list(outer.split(X, y))
    jobs = [(spec, k, train, test) for spec in specs for k, (train, test) in enumerate(splits)]
    results = Parallel(n_jobs=n_jobs, return_as="generator")(
        delayed(_outer_fold)(spec, X, y, train, test, inner_folds, seed + 1 + k, target_sensitivity)
        for spec, k, train, test in jobs)
    n = len(y)
    out = {spec.name: CVResult(spec.name, np.full((repeats, n), np.nan), np.zeros((repeats, n), dtype=np.int64),
                               np.zeros(len(splits)), [{} for _ in splits], np.zeros(len(splits)))
           for spec in specs}
    for (spec, k, _, _), (test, p, thr, best, seconds) in zip(jobs, results):
        cv = out[spec.name]
        r = k // folds
        cv.prob[r, test] = p
        cv.pred_op[r, test] = (p >= thr).astype(np.int64)
        cv.thresholds[k] = thr
        cv.best_params[k] = best
        cv.seconds[k] = seconds
        if on_fold is not None:
            on_fold(spec.name)
    return out


def cross_validate(spec: TabularModelSpec, X: np.ndarray, y: np.ndarray, *, folds: int = 10, repeats: int = 10,
                   inner_folds: int = 5, seed: int = 0, target_sensitivity: float = 0.98,
                   n_jobs: int = 1) -> CVResult:
    """Nested repeated stratified k-fold cross-validation of one model (see :func:`cross_validate_models`).

    Returns:
        A :class:`CVResult`.
    """
    return cross_validate_models([spec], X, y, folds=folds, repeats=repeats, inner_folds=inner_folds, seed=seed,
                                 target_sensitivity=target_sensitivity, n_jobs=n_jobs)[spec.name]
