"""Tabular classifiers for the WDBC features: scikit-learn pipelines with scaling, and their tuning grids.

Each entry of :data:`TABULAR_MODELS` builds an unfitted ``Pipeline(scaler, classifier)`` and names the
hyperparameter grid that is searched inside the training folds (nested cross-validation), never on
the test fold.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from breastdx.registry import Registry


@dataclass(frozen=True)
class TabularModelSpec:
    """An unfitted pipeline and its tuning grid.

    Attributes:
        name: Registry name.
        title: Human-readable name for reports.
        pipeline: Unfitted ``Pipeline`` whose last step is named ``clf``.
        grid: Parameter grid for ``GridSearchCV`` (keys ``clf__...``).
    """

    name: str
    title: str
    pipeline: Pipeline
    grid: dict[str, list[Any]] = field(default_factory=dict)


TABULAR_MODELS: Registry[Callable[[int], TabularModelSpec]] = Registry("tabular model")
"""Factories ``seed -> TabularModelSpec``."""


def _pipe(clf: Any) -> Pipeline:
    return Pipeline([("scale", StandardScaler()), ("clf", clf)])


@TABULAR_MODELS.register("logreg")
def logistic_regression(seed: int) -> TabularModelSpec:
    """L2-regularised logistic regression; C tuned on a log grid."""
    return TabularModelSpec("logreg", "Logistic regression",
                            _pipe(LogisticRegression(max_iter=5000, random_state=seed)),
                            {"clf__C": [0.01, 0.1, 1.0, 10.0, 100.0]})


@TABULAR_MODELS.register("svm")
def svm_rbf(seed: int) -> TabularModelSpec:
    """Support-vector machine with an RBF kernel and Platt-scaled (sigmoid) probabilities; C and gamma tuned.

    References:
        Platt, J. (1999). Probabilistic outputs for support vector machines. Advances in Large Margin Classifiers.
    """
    return TabularModelSpec("svm", "SVM (RBF)",
                            _pipe(CalibratedClassifierCV(SVC(kernel="rbf", random_state=seed), method="sigmoid",
                                                         ensemble=False)),
                            {"clf__estimator__C": [0.3, 1.0, 3.0, 10.0], "clf__estimator__gamma": ["scale", 0.01]})


@TABULAR_MODELS.register("random_forest")
def random_forest(seed: int) -> TabularModelSpec:
    """Random forest of 150 trees; the number of features per split tuned.

    References:
        Breiman, L. (2001). Random forests. Machine Learning 45:5-32. doi:10.1023/A:1010933404324
    """
    return TabularModelSpec("random_forest", "Random forest",
                            _pipe(RandomForestClassifier(n_estimators=150, random_state=seed, n_jobs=1)),
                            {"clf__max_features": ["sqrt", 0.33]})


@TABULAR_MODELS.register("gradient_boosting")
def gradient_boosting(seed: int) -> TabularModelSpec:
    """Histogram gradient boosting; learning rate and tree size tuned.

    References:
        Friedman, J. H. (2001). Greedy function approximation: a gradient boosting machine. Ann. Statist.
        29(5):1189-1232. doi:10.1214/aos/1013203451
    """
    return TabularModelSpec("gradient_boosting", "Gradient boosting",
                            _pipe(HistGradientBoostingClassifier(max_iter=200, early_stopping=False,
                                                                 random_state=seed)),
                            {"clf__learning_rate": [0.05, 0.2], "clf__max_leaf_nodes": [4, 15]})


@TABULAR_MODELS.register("knn")
def k_nearest_neighbours(seed: int) -> TabularModelSpec:
    """k-nearest neighbours on standardised features; k and weighting tuned."""
    return TabularModelSpec("knn", "k-NN", _pipe(KNeighborsClassifier()),
                            {"clf__n_neighbors": [5, 9, 15, 25], "clf__weights": ["uniform", "distance"]})
