"""Review 31: defects found in cross-validation folds and ensembles (each test failed before its fix)."""

from __future__ import annotations

import numpy as np
import pytest

from breastdx.pipeline.crossval import fold_splits


@pytest.mark.parametrize("as_text", [False, True])
def test_a_class_of_one_patient_stays_in_training_whatever_the_id_type(as_text: bool) -> None:
    """With integer patient ids, the patient who alone holds a class was listed as kept in training but was cut into
    a fold and tested (its id was compared as text with the integer ids)."""
    labels = np.array([0, 0, 1, 1, 0, 0, 1, 1, 2, 2, 0, 1, 0, 1])
    groups = np.array([1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 8])
    if as_text:
        groups = groups.astype(str)
    folds, kept = fold_splits(labels, groups, 2, 0, 0.2, (1,))
    assert kept == ["5"]
    sole = np.flatnonzero(labels == 2)
    for f in folds:
        assert set(sole) <= set(f["train"])
        assert not set(sole) & (set(f["val"]) | set(f["test"]))
        assert sorted(f["train"] + f["val"] + f["test"]) == list(range(len(labels)))
    tested = sorted(i for f in folds for i in f["test"])
    assert tested == sorted(set(range(len(labels))) - set(sole))


def test_mean_probability_ensemble_documents_temperatures_as_an_argument() -> None:
    """The class docstring listed ``temperatures`` under a first "Raises:" heading, so it read as an error raised."""
    import inspect

    from breastdx.models.ensemble import MeanProbabilityEnsemble

    doc = inspect.getdoc(MeanProbabilityEnsemble)
    assert doc.count("Raises:") == 1
    args = doc.split("Args:")[1].split("Raises:")[0]
    assert "temperatures:" in args and "members:" in args
