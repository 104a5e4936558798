"""Tasks: one module per task, each tying data, model and metrics together (the contract:
:mod:`breastdx.pipeline.task`). The image-classification tasks are specs of one pipeline
(:mod:`breastdx.pipeline.classification`); importing this package registers every task.
"""

from breastdx.pipeline.task import TASKS, RunResult, Task
from breastdx.tasks import wdbc  # noqa: F401  (registers the task)
from breastdx.tasks import busi_seg  # noqa: F401  (registers the task)
from breastdx.tasks import monuseg  # noqa: F401  (registers the task)
from breastdx.tasks import breastmnist, busi_cls, pcam, idc, breakhis  # noqa: F401  (register the specs)

__all__ = ["TASKS", "RunResult", "Task", "explainable_tasks", "get_task"]


def get_task(name: str) -> Task:
    """An instance of the task registered as ``name``.

    Raises:
        UnknownNameError: With the closest name and the choices.
    """
    entry = TASKS.get(name)
    return entry() if isinstance(entry, type) else entry


def calibratable_tasks() -> list[str]:
    """Names of the tasks ``breastdx calibrate`` works on: the image classifiers (conformal prediction sets) and
    the tasks whose class has a ``calibrate`` verb (monuseg: test-time augmentation and watershed)."""
    return [name for name in TASKS.names() if is_calibratable(TASKS.get(name))]


def is_calibratable(task: object) -> bool:
    """Whether ``breastdx calibrate`` works on ``task`` (see :func:`calibratable_tasks`)."""
    return hasattr(task, "calibrate") or hasattr(getattr(task, "spec", None), "data_options")


def explainable_tasks() -> list[str]:
    """Names of the tasks whose class has an ``explain(model_dir, inputs, run_dir, options)`` verb."""
    return [name for name in TASKS.names() if hasattr(TASKS.get(name), "explain")]
