"""Tasks: one module per task, each tying data, model and metrics together (see :mod:`breastdx.tasks.base`).

The image-classification tasks are specs of one pipeline (:mod:`breastdx.tasks.image_classification`).
"""

from breastdx.tasks import wdbc  # noqa: F401  (registers the task)
from breastdx.tasks import busi_seg  # noqa: F401  (registers the task)
from breastdx.tasks import breastmnist, busi_cls, pcam, idc, breakhis  # noqa: F401  (register the specs)
from breastdx.tasks.base import TASKS, RunResult, Task, explainable_tasks, get_task

__all__ = ["TASKS", "RunResult", "Task", "explainable_tasks", "get_task"]
