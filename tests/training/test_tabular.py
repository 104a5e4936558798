import numpy as np
import pytest

from breastdx.data.wdbc import load_wdbc
from breastdx.models.tabular import TABULAR_MODELS
from breastdx.training.tabular import cross_validate


def test_nested_cv_is_reproducible_and_parallel_safe():
    t = load_wdbc()
    spec = TABULAR_MODELS.get("logreg")(0)
    a = cross_validate(spec, t.X, t.y, folds=3, repeats=2, inner_folds=3, seed=5, target_sensitivity=0.95, n_jobs=1)
    b = cross_validate(spec, t.X, t.y, folds=3, repeats=2, inner_folds=3, seed=5, target_sensitivity=0.95, n_jobs=2)
    np.testing.assert_array_equal(a.prob, b.prob)
    np.testing.assert_array_equal(a.thresholds, b.thresholds)
    assert a.prob.shape == (2, 569) and np.isfinite(a.prob).all()
    assert len(a.best_params) == 6
    # every case is predicted once per repeat, at the fold's own threshold: the outer folds rebuilt with
    # scikit-learn (3 folds x 2 repeats, seed 5), each fold's test cases are malignant when prob >= its threshold
    from sklearn.model_selection import RepeatedStratifiedKFold

    splits = list(RepeatedStratifiedKFold(n_splits=3, n_repeats=2, random_state=5).split(t.X, t.y))
    for k, (_, test) in enumerate(splits):
        r = k // 3
        np.testing.assert_array_equal(a.pred_op[r, test], (a.prob[r, test] >= a.thresholds[k]).astype(np.int64))
    assert np.array_equal(np.sort(np.concatenate([s[1] for s in splits[:3]])), np.arange(569))
    assert len(set(a.thresholds.tolist())) > 1 and 0 < a.pred_op.mean() < 1  # the folds' thresholds differ


def test_every_registered_model_builds_a_pipeline_with_a_grid():
    for name in TABULAR_MODELS:
        spec = TABULAR_MODELS.get(name)(0)
        assert spec.name == name
        params = spec.pipeline.get_params()
        assert all(key in params for key in spec.grid), name


def _grid_search_reference(spec, X, y, inner_folds, seed, target):
    """The protocol of breastdx 0.1: GridSearchCV(roc_auc) on the calibrated pipeline, then cross_val_predict."""
    from sklearn.base import clone
    from sklearn.model_selection import GridSearchCV, StratifiedKFold, cross_val_predict

    from breastdx.evaluation.metrics import threshold_for_sensitivity

    inner = StratifiedKFold(n_splits=inner_folds, shuffle=True, random_state=seed)
    search = GridSearchCV(clone(spec.pipeline), spec.grid, cv=inner, scoring="roc_auc", n_jobs=1).fit(X, y)
    tuned = clone(spec.pipeline).set_params(**search.best_params_)
    oof = cross_val_predict(tuned, X, y, cv=inner, method="predict_proba")[:, 1]
    return search.best_estimator_, search.best_params_, threshold_for_sensitivity(y, oof, target)


def test_one_pass_search_and_the_svm_surrogate_match_grid_search():
    """The inner search keeps every candidate's out-of-fold probabilities (and tunes the SVM on its bare
    decision function): the same parameters, threshold and predictions as GridSearchCV + cross_val_predict."""
    from breastdx.training.tabular import tune_and_threshold

    t = load_wdbc()
    rng = np.random.default_rng(3)
    train = np.sort(rng.choice(t.n, 400, replace=False))
    test = np.setdiff1d(np.arange(t.n), train)
    for name in ("svm", "logreg", "knn"):
        spec = TABULAR_MODELS.get(name)(0)
        model, params, threshold = tune_and_threshold(spec, t.X[train], t.y[train], 3, 7, 0.98)
        ref_model, ref_params, ref_threshold = _grid_search_reference(spec, t.X[train], t.y[train], 3, 7, 0.98)
        assert params == ref_params and threshold == ref_threshold, name
        np.testing.assert_allclose(model.predict_proba(t.X[test]), ref_model.predict_proba(t.X[test]), atol=1e-12)


def test_out_of_bag_search_fits_once_and_thresholds_on_out_of_bag_probabilities():
    from breastdx.evaluation.metrics import threshold_for_sensitivity
    from breastdx.training.tabular import tune_and_threshold

    t = load_wdbc()
    spec = TABULAR_MODELS.get("random_forest")(0, "fast")
    assert spec.search == "oob" and spec.grid == {}
    model, params, threshold = tune_and_threshold(spec, t.X, t.y, 3, 0, 0.98)
    oob = model[-1].oob_decision_function_[:, 1]
    assert threshold == threshold_for_sensitivity(t.y, oob, 0.98)
    assert (oob[t.y == 1] >= threshold).mean() >= 0.98
    full = TABULAR_MODELS.get("random_forest")(0, "full")
    assert full.search == "cv" and full.grid == {"clf__max_features": ["sqrt", 0.33]}
    with pytest.raises(ValueError, match="'search' option of wdbc must be one of fast, full. Got 'quick'"):
        TABULAR_MODELS.get("svm")(0, "quick")


def test_all_models_in_one_pool_report_each_fold():
    from breastdx.training.tabular import cross_validate_models

    t = load_wdbc()
    specs = [TABULAR_MODELS.get(n)(0) for n in ("logreg", "random_forest")]
    seen = []
    out = cross_validate_models(specs, t.X, t.y, folds=3, repeats=1, inner_folds=3, seed=1, n_jobs=1,
                                on_fold=seen.append)
    assert seen == ["logreg"] * 3 + ["random_forest"] * 3
    alone = cross_validate(specs[0], t.X, t.y, folds=3, repeats=1, inner_folds=3, seed=1)
    np.testing.assert_array_equal(out["logreg"].prob, alone.prob)
    assert (out["random_forest"].seconds > 0).all()
