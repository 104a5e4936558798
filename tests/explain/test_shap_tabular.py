"""SHAP explanations of a tabular model (breastdx.explain.shap_tabular), on a small synthetic model."""

from __future__ import annotations

import numpy as np

from breastdx.explain.shap_tabular import TabularExplainer


class _Interacting:
    """P(positive) = sigmoid(x0 * x1 - x2 * x3 + x4): interactions, so the permutation order matters."""

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        z = X[:, 0] * X[:, 1] - X[:, 2] * X[:, 3] + X[:, 4]
        p = 1 / (1 + np.exp(-z))
        return np.column_stack([1 - p, p])


def _explainer(seed: int = 0) -> tuple[TabularExplainer, np.ndarray]:
    rng = np.random.default_rng(7)
    background, X = rng.normal(size=(20, 5)), rng.normal(size=(6, 5)) * 2
    return TabularExplainer(_Interacting(), background, [f"f{j}" for j in range(5)], seed=seed), X


def test_a_case_is_explained_the_same_alone_and_anywhere_in_a_batch():
    """Case 4 of a batch had the 4th permutation of shap's generator, so its reasons changed with the rows before
    it (``predict wdbc`` on a file) and differed from the same case sent alone (the REST service)."""
    explainer, X = _explainer()
    batch = explainer.explain(X)
    alone = explainer.explain(X[[3]])
    reordered = explainer.explain(X[[5, 3, 0]])
    np.testing.assert_array_equal(alone.values[0], batch.values[3])
    np.testing.assert_array_equal(reordered.values[1], batch.values[3])
    assert batch.values.shape == (6, 5) and batch.base_values.shape == (6,)
    np.testing.assert_array_equal(batch.data, X)
    # efficiency: the base value plus the contributions is the probability, for every case
    p = _Interacting().predict_proba(X)[:, 1]
    np.testing.assert_allclose(batch.base_values + batch.values.sum(axis=1), p, atol=1e-12)


def test_the_same_seed_gives_the_same_values_and_the_global_generator_is_left_alone():
    np.random.seed(123)
    expected_draw = np.random.random()
    np.random.seed(123)
    explainer, X = _explainer(seed=5)
    first = explainer.explain(X).values
    assert np.random.random() == expected_draw  # shap seeds NumPy's global generator; it is restored
    again, _ = _explainer(seed=5)
    np.testing.assert_array_equal(again.explain(X).values, first)


def test_more_feature_orders_come_closer_to_the_exact_values():
    """With interactions the values depend on the orders sampled: 10 orders (the default) are nearer to 200 than
    one order, which the reasons used before; fewer than one is refused."""
    import pytest

    rng = np.random.default_rng(7)
    background, X = rng.normal(size=(20, 5)), rng.normal(size=(6, 5)) * 2
    names = [f"f{j}" for j in range(5)]

    def values(permutations: int, seed: int) -> np.ndarray:
        return TabularExplainer(_Interacting(), background, names, seed=seed,
                                permutations=permutations).explain(X).values

    exact = values(200, 99)
    one = np.mean([np.abs(values(1, s) - exact).sum() for s in range(3)])
    ten = np.mean([np.abs(values(10, s) - exact).sum() for s in range(3)])
    assert TabularExplainer(_Interacting(), background, names).permutations == 10
    assert ten < 0.6 * one, (ten, one)
    with pytest.raises(ValueError, match="permutations must be 1 or more, got 0"):
        TabularExplainer(_Interacting(), background, names, permutations=0)


def test_the_summary_plot_closes_its_figure_when_shap_fails(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt
    import pytest
    import shap

    from breastdx.explain.shap_tabular import save_summary_plot

    def broken(*args, **kwargs):
        plt.figure()  # as the beeswarm does, then fails
        raise RuntimeError("beeswarm failed")

    monkeypatch.setattr(shap.plots, "beeswarm", broken)
    before = len(plt.get_fignums())
    with pytest.raises(RuntimeError, match="beeswarm failed"):
        save_summary_plot(object(), tmp_path / "s.png")
    assert len(plt.get_fignums()) == before
