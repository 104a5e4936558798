"""Tabular classifiers for the WDBC features: scikit-learn pipelines with scaling, and their tuning grids.

Each entry of :data:`TABULAR_MODELS` builds an unfitted ``Pipeline(scaler, classifier)`` and names the
hyperparameter grid that is searched inside the training folds (nested cross-validation), never on
the test fold.

Two search budgets (``search``): ``"fast"`` (the default of ``breastdx train wdbc``) and ``"full"`` (the
protocol of breastdx 0.1). Logistic regression, the SVM and k-NN are tuned alike in both, with the same
results. In ``fast`` the random forest (100 trees, sqrt(d) features per split) is fit once per training
part and its threshold chosen on its out-of-bag probabilities, and gradient boosting runs 100 iterations
of 4-leaf trees untuned; in ``full`` both are tuned on inner folds (150 trees, 2 feature fractions; 200
iterations, 2 learning rates x 2 tree sizes).
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

SEARCH_BUDGETS = ("fast", "full")
SEARCH_METHODS = ("cv", "oob")


@dataclass(frozen=True)
class TabularModelSpec:
    """An unfitted pipeline and its tuning grid.

    Attributes:
        name: Registry name.
        title: Human-readable name for reports.
        pipeline: Unfitted ``Pipeline`` whose last step is named ``clf``.
        grid: Parameter grid (keys ``clf__...``), searched by AUROC.
        search: ``"cv"``: each candidate scored on inner stratified folds; ``"oob"``: on the out-of-bag
            predictions of a bagged ensemble fit once on the training part (the classifier must take
            ``oob_score``).
        rank_surrogate: A cheaper pipeline whose scores rank cases exactly as ``pipeline``'s probabilities do
            (the SVM without its monotone Platt sigmoid): tuning by AUROC on it picks the same candidate at a
            fraction of the cost. None to tune ``pipeline`` itself.
        surrogate_prefix: ``(prefix in grid, prefix for the surrogate)``, e.g. ``("clf__estimator__", "clf__")``.
        keeps_training_rows: The fitted model stores training cases' feature rows (k-NN all of them, an SVM its
            support vectors), which its model card says.

    Raises:
        ValueError: If ``search`` is unknown.
    """

    name: str
    title: str
    pipeline: Pipeline
    grid: dict[str, list[Any]] = field(default_factory=dict)
    search: str = "cv"
    rank_surrogate: Pipeline | None = None
    surrogate_prefix: tuple[str, str] = ("", "")
    keeps_training_rows: bool = False

    def __post_init__(self) -> None:
        if self.search not in SEARCH_METHODS:
            raise ValueError(f"TabularModelSpec.search must be one of {', '.join(SEARCH_METHODS)}, "
                             f"got {self.search!r}.")

    def surrogate_params(self, params: dict[str, Any]) -> dict[str, Any]:
        """``params`` (keys of ``pipeline``) renamed for ``rank_surrogate``."""
        old, new = self.surrogate_prefix
        return {(new + k[len(old):] if old and k.startswith(old) else k): v for k, v in params.items()}


TABULAR_MODELS: Registry[Callable[..., TabularModelSpec]] = Registry("tabular model")
"""Factories ``(seed, search="fast") -> TabularModelSpec``; ``search`` is one of :data:`SEARCH_BUDGETS`."""


def _pipe(clf: Any) -> Pipeline:
    return Pipeline([("scale", StandardScaler()), ("clf", clf)])


def _check_budget(search: str) -> str:
    if search not in SEARCH_BUDGETS:
        raise ValueError(f"The 'search' option of wdbc must be one of {', '.join(SEARCH_BUDGETS)}. "
                         f"Got {search!r} instead.")
    return search


@TABULAR_MODELS.register("logreg")
def logistic_regression(seed: int, search: str = "fast") -> TabularModelSpec:
    """L2-regularised logistic regression; C tuned on a log grid (same in both budgets)."""
    _check_budget(search)
    return TabularModelSpec("logreg", "Logistic regression",
                            _pipe(LogisticRegression(max_iter=5000, random_state=seed)),
                            {"clf__C": [0.01, 0.1, 1.0, 10.0, 100.0]})


@TABULAR_MODELS.register("svm")
def svm_rbf(seed: int, search: str = "fast") -> TabularModelSpec:
    """Support-vector machine with an RBF kernel and Platt-scaled (sigmoid) probabilities; C and gamma tuned.

    The sigmoid is monotone, so the AUROC of each candidate is that of the bare SVC's decision function:
    the search runs on the bare SVC (``rank_surrogate``), six times fewer fits, the same choice. Same in
    both budgets.

    References:
        Platt, J. (1999). Probabilistic outputs for support vector machines. Advances in Large Margin Classifiers.
    """
    _check_budget(search)
    return TabularModelSpec("svm", "SVM (RBF)",
                            _pipe(CalibratedClassifierCV(SVC(kernel="rbf", random_state=seed), method="sigmoid",
                                                         ensemble=False)),
                            {"clf__estimator__C": [0.3, 1.0, 3.0, 10.0], "clf__estimator__gamma": ["scale", 0.01]},
                            rank_surrogate=_pipe(SVC(kernel="rbf", random_state=seed)),
                            surrogate_prefix=("clf__estimator__", "clf__"), keeps_training_rows=True)


@TABULAR_MODELS.register("random_forest")
def random_forest(seed: int, search: str = "fast") -> TabularModelSpec:
    """Random forest. ``fast``: 100 trees, sqrt(d) features per split (Breiman's default), one fit per
    training part, the threshold chosen on its out-of-bag probabilities; ``full``: 150 trees, the features
    per split tuned on inner folds.

    References:
        Breiman, L. (2001). Random forests. Machine Learning 45:5-32. doi:10.1023/A:1010933404324
    """
    if _check_budget(search) == "fast":
        return TabularModelSpec("random_forest", "Random forest",
                                _pipe(RandomForestClassifier(n_estimators=100, max_features="sqrt",
                                                             random_state=seed, n_jobs=1)), {}, search="oob")
    return TabularModelSpec("random_forest", "Random forest",
                            _pipe(RandomForestClassifier(n_estimators=150, random_state=seed, n_jobs=1)),
                            {"clf__max_features": ["sqrt", 0.33]})


@TABULAR_MODELS.register("gradient_boosting")
def gradient_boosting(seed: int, search: str = "fast") -> TabularModelSpec:
    """Histogram gradient boosting. ``fast``: 100 iterations of 4-leaf trees at learning rate 0.1, untuned
    (the inner folds only choose the threshold; in our runs early stopping on an internal validation part
    was as fast and worse at the operating point); ``full``: learning rate and tree size tuned on inner
    folds, 200 iterations.

    References:
        Friedman, J. H. (2001). Greedy function approximation: a gradient boosting machine. Ann. Statist.
        29(5):1189-1232. doi:10.1214/aos/1013203451
    """
    if _check_budget(search) == "fast":
        clf = HistGradientBoostingClassifier(max_iter=100, learning_rate=0.1, max_leaf_nodes=4, early_stopping=False,
                                             random_state=seed)
        return TabularModelSpec("gradient_boosting", "Gradient boosting", _pipe(clf), {})
    return TabularModelSpec("gradient_boosting", "Gradient boosting",
                            _pipe(HistGradientBoostingClassifier(max_iter=200, early_stopping=False,
                                                                 random_state=seed)),
                            {"clf__learning_rate": [0.05, 0.2], "clf__max_leaf_nodes": [4, 15]})


@TABULAR_MODELS.register("knn")
def k_nearest_neighbours(seed: int, search: str = "fast") -> TabularModelSpec:
    """k-nearest neighbours on standardised features; k and weighting tuned (same in both budgets)."""
    _check_budget(search)
    return TabularModelSpec("knn", "k-NN", _pipe(KNeighborsClassifier()),
                            {"clf__n_neighbors": [5, 9, 15, 25], "clf__weights": ["uniform", "distance"]},
                            keeps_training_rows=True)
