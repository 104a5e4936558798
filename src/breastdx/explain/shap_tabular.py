"""SHAP explanations of a tabular model's probability of malignancy.

The model-agnostic permutation algorithm with an independent (interventional) masker explains
``P(malignant | x)`` directly, in probability units: for each case, the base value plus the SHAP values
equals the predicted probability.

References:
    Lundberg, S. M. & Lee, S.-I. (2017). A unified approach to interpreting model predictions. NeurIPS.
    arXiv:1705.07874
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np


class TabularExplainer:
    """Permutation SHAP for a fitted classifier with ``predict_proba``.

    Args:
        model: Fitted classifier (a scikit-learn Pipeline); column 1 of ``predict_proba`` is malignant.
        background: Reference cases, shape ``(m, d)``; 50 to 100 rows is plenty.
        feature_names: ``d`` names.
        seed: Seed of the permutations.
    """

    def __init__(self, model: Any, background: np.ndarray, feature_names: Sequence[str], seed: int = 0) -> None:
        import shap

        self.feature_names = list(feature_names)
        masker = shap.maskers.Independent(np.asarray(background, dtype=float), max_samples=len(background))
        self._explainer = shap.Explainer(lambda X: model.predict_proba(X)[:, 1], masker, algorithm="permutation",
                                         feature_names=self.feature_names, seed=seed)

    def explain(self, X: np.ndarray) -> Any:
        """SHAP values of the probability of malignancy.

        Args:
            X: Cases, shape ``(n, d)``.

        Returns:
            A ``shap.Explanation`` with ``values`` of shape ``(n, d)`` and ``base_values`` of shape ``(n,)``.
        """
        X = np.asarray(X, dtype=float)
        return self._explainer(X, max_evals=2 * X.shape[1] + 1, silent=True)


def top_contributions(values: np.ndarray, feature_names: Sequence[str], k: int = 3) -> list[list[tuple[str, float]]]:
    """The ``k`` features with the largest absolute SHAP value, per case, largest first.

    Args:
        values: SHAP values, shape ``(n, d)``.
        feature_names: ``d`` names.
        k: How many to keep.

    Returns:
        For each case, ``k`` pairs ``(feature name, signed SHAP value)``.
    """
    order = np.argsort(-np.abs(values), axis=1, kind="stable")[:, :k]
    return [[(feature_names[j], float(values[i, j])) for j in row] for i, row in enumerate(order)]


def save_summary_plot(explanation: Any, path: Path, max_display: int = 15) -> Path:
    """Write SHAP's beeswarm summary plot to a PNG file."""
    import matplotlib.pyplot as plt
    import shap

    plt.figure()
    shap.plots.beeswarm(explanation, max_display=max_display, show=False)
    fig = plt.gcf()
    fig.set_size_inches(8, 6)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
