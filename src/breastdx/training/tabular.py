"""Nested, repeated, stratified cross-validation of tabular pipelines, and the final fit on all data.

For each of ``repeats x folds`` outer folds: the hyperparameters are tuned by ``GridSearchCV`` on the
training part alone (inner stratified folds); an operating threshold for a target sensitivity is chosen
on the inner out-of-fold probabilities of the tuned model (never on training-set fits, which are
optimistic, nor on the test fold); the held-out fold is then predicted. Every case thus receives one
out-of-fold probability per repeat.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from joblib import Parallel, delayed
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, RepeatedStratifiedKFold, StratifiedKFold, cross_val_predict
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
    """

    model: str
    prob: np.ndarray
    pred_op: np.ndarray
    thresholds: np.ndarray
    best_params: list[dict[str, Any]] = field(default_factory=list)


def tune_and_threshold(spec: TabularModelSpec, X: np.ndarray, y: np.ndarray, inner_folds: int, seed: int,
                       target_sensitivity: float) -> tuple[Pipeline, dict[str, Any], float]:
    """Tune ``spec`` on ``(X, y)`` by inner CV, refit, and choose the operating threshold.

    Args:
        spec: Model and grid.
        X: Features, shape ``(n, 30)``.
        y: Labels in {0, 1}, shape ``(n,)``.
        inner_folds: Number of stratified inner folds.
        seed: Seed of the inner splits.
        target_sensitivity: Sensitivity the threshold must reach on inner out-of-fold probabilities.

    Returns:
        The tuned pipeline fit on all of ``(X, y)``, its parameters, and the threshold.
    """
    inner = StratifiedKFold(n_splits=inner_folds, shuffle=True, random_state=seed)
    search = GridSearchCV(clone(spec.pipeline), spec.grid, cv=inner, scoring="roc_auc", n_jobs=1, refit=True)
    search.fit(X, y)
    tuned = clone(spec.pipeline).set_params(**search.best_params_)
    oof = cross_val_predict(tuned, X, y, cv=inner, method="predict_proba", n_jobs=1)[:, 1]
    threshold = threshold_for_sensitivity(y, oof, target_sensitivity)
    return search.best_estimator_, dict(search.best_params_), threshold


def _outer_fold(spec: TabularModelSpec, X: np.ndarray, y: np.ndarray, train: np.ndarray, test: np.ndarray,
                inner_folds: int, seed: int, target_sensitivity: float):
    model, params, threshold = tune_and_threshold(spec, X[train], y[train], inner_folds, seed, target_sensitivity)
    return test, model.predict_proba(X[test])[:, 1], threshold, params


def cross_validate(spec: TabularModelSpec, X: np.ndarray, y: np.ndarray, *, folds: int = 10, repeats: int = 10,
                   inner_folds: int = 5, seed: int = 0, target_sensitivity: float = 0.98,
                   n_jobs: int = 1) -> CVResult:
    """Nested repeated stratified k-fold cross-validation of one model.

    Args:
        spec: Model and grid.
        X: Features, float64, shape ``(n, d)``.
        y: Labels in {0, 1}, shape ``(n,)``.
        folds: Outer folds per repeat.
        repeats: Number of repeats (each with a different seeded shuffle).
        inner_folds: Inner folds for tuning and for choosing the threshold.
        seed: Seed of the outer and inner splits; the same seed gives the same result for any ``n_jobs``.
        target_sensitivity: Target sensitivity of the operating point.
        n_jobs: Outer folds run in parallel on this many processes.

    Returns:
        A :class:`CVResult`.
    """
    outer = RepeatedStratifiedKFold(n_splits=folds, n_repeats=repeats, random_state=seed)
    splits = list(outer.split(X, y))
    results = Parallel(n_jobs=n_jobs)(
        delayed(_outer_fold)(spec, X, y, train, test, inner_folds, seed + 1 + k, target_sensitivity)
        for k, (train, test) in enumerate(splits)
    )
    n = len(y)
    prob = np.full((repeats, n), np.nan)
    pred = np.zeros((repeats, n), dtype=np.int64)
    thresholds = np.zeros(len(splits))
    params = []
    for k, (test, p, thr, best) in enumerate(results):
        r = k // folds
        prob[r, test] = p
        pred[r, test] = (p >= thr).astype(np.int64)
        thresholds[k] = thr
        params.append(best)
    return CVResult(spec.name, prob, pred, thresholds, params)
