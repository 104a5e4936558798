import numpy as np

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
    # every case is predicted once per repeat, at the fold's own threshold
    for r in range(2):
        assert set(np.unique(a.pred_op[r])) <= {0, 1}


def test_every_registered_model_builds_a_pipeline_with_a_grid():
    for name in TABULAR_MODELS:
        spec = TABULAR_MODELS.get(name)(0)
        assert spec.name == name
        params = spec.pipeline.get_params()
        assert all(key in params for key in spec.grid), name
