"""The contract every task follows, and the task registry.

A task ties a dataset, models and metrics together behind three verbs:

* ``train(config, data_root, run_dir)`` writes a run folder (``config.yaml``, ``versions.json``, the split
  file, ``metrics.json``, ``report.html`` with PNG plots, ``model/``);
* ``evaluate(model_dir, data_root, run_dir, options)`` re-computes metrics for a saved model;
* ``predict(model_dir, inputs, run_dir, options)`` writes ``predictions.csv`` (and overlays for images),
  going on past bad inputs and listing them in the result.

Task modules import heavy libraries (torch, MONAI) inside functions, so that listing tasks stays fast.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from breastdx.config import option
from breastdx.registry import Registry


@dataclass
class RunResult:
    """What a verb returns for the command line to show.

    Attributes:
        run_dir: The folder written.
        metrics: Contents of ``metrics.json`` (empty for predict).
        table_title: Title of the summary table.
        table: Header row then data rows of a summary table (strings or numbers).
        notes: Lines to print after the table (benchmarks, where files are).
        failures: ``(input, reason)`` for every input that could not be used.
    """

    run_dir: Path
    metrics: dict[str, Any] = field(default_factory=dict)
    table_title: str = ""
    table: list[list[Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class EvaluateOptions:
    """Options of ``breastdx evaluate`` for every task evaluated on a split file (a task may add its own).

    Attributes:
        split: Which part of the split file: ``train``, ``val`` or ``test``.
        split_file: The split file (default: the model folder's ``split.json``).
        seed: Seed of the bootstrap, 0 to 2^32 - 1.
        n_bootstrap: Bootstrap resamples.
        batch_size: Images per network call.
    """

    split: str = option("test", choices=("train", "val", "test"))
    split_file: str = ""
    seed: int = option(0, ge=0, le=2**32 - 1)  # NumPy's bootstrap seeds: a negative one failed after the work
    n_bootstrap: int = option(2000, ge=1)
    batch_size: int = option(16, ge=1)


class Task(ABC):
    """A diagnosis task. Subclasses set ``name``, ``title``, ``config_cls`` and implement the verbs."""

    name: ClassVar[str]
    title: ClassVar[str]
    config_cls: ClassVar[type]

    @abstractmethod
    def train(self, config: Any, data_root: Path, run_dir: Path) -> RunResult:
        """Train and evaluate; write the run folder."""

    @abstractmethod
    def evaluate(self, model_dir: Path, data_root: Path, run_dir: Path, options: dict[str, str]) -> RunResult:
        """Re-compute metrics for a saved model."""

    @abstractmethod
    def predict(self, model_dir: Path, inputs: list[Path], run_dir: Path, options: dict[str, str]) -> RunResult:
        """Predict new cases; write ``predictions.csv``."""

    def options_cls(self, verb: str) -> type | None:
        """The dataclass declaring ``verb``'s options (``train``: the config), for ``--help``; None if undeclared."""
        return self.config_cls if verb == "train" else None


def with_data_options(options_cls: type, config_cls: type, names: tuple[str, ...]) -> type:
    """``options_cls`` with the data options ``names`` of the training config ``config_cls`` added, for the ``--help``
    of a verb that accepts them (an image classifier's ``evaluate`` and ``calibrate``: they read the data as the model
    was trained, unless told otherwise). Each keeps its description and rule from ``config_cls``; its default reads
    ``(the model's)``. For help only: the verb parses its options with ``options_cls``."""
    if not names:
        return options_cls
    from breastdx.config import describe_options

    text = {opt[2:].replace("-", "_"): meaning for opt, _, meaning in describe_options(config_cls)}
    doc = "Attributes:\n" + "".join(f"        {n}: {text[n]} Not given: the value the model was trained with.\n"
                                    for n in names)
    return dataclasses.make_dataclass(options_cls.__name__, [(n, str, field(default="(the model's)")) for n in names],
                                      bases=(options_cls,), frozen=True, namespace={"__doc__": doc})


TASKS: Registry[Task | type[Task]] = Registry("task")
"""Tasks by name: a task instance (an image-classification spec, :func:`breastdx.pipeline.classification.register`)
or a task class (wdbc, busi-seg). ``breastdx.tasks`` imports every task module so that they register."""


def evenly_spaced(n: int, k: int) -> np.ndarray:
    """``k`` evenly spaced indices of ``range(n)`` (all of them when ``k`` is 0 or at least ``n``), for
    ``--max-cases`` smoke runs: int64 ``(min(n, k),)``, sorted, unique."""
    if k <= 0 or k >= n:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, k).round().astype(np.int64))
