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

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

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


TASKS: Registry[type[Task]] = Registry("task")
"""Task classes by name; ``breastdx.tasks`` imports every task module so that they register."""


def get_task(name: str) -> Task:
    """An instance of the task registered as ``name``.

    Raises:
        UnknownNameError: With the closest name and the choices.
    """
    import breastdx.tasks  # noqa: F401  (fills the registry)

    return TASKS.get(name)()


def explainable_tasks() -> list[str]:
    """Names of the tasks whose class has an ``explain(model_dir, inputs, run_dir, options)`` verb."""
    import breastdx.tasks  # noqa: F401  (fills the registry)

    return [name for name in TASKS.names() if hasattr(TASKS.get(name), "explain")]
