"""Tasks: one module per task, each tying data, model and metrics together (see :mod:`breastdx.tasks.base`)."""

from breastdx.tasks import wdbc  # noqa: F401  (registers the task)
from breastdx.tasks import busi_seg  # noqa: F401  (registers the task)
from breastdx.tasks import breastmnist  # noqa: F401  (registers the task)
from breastdx.tasks import busi_cls  # noqa: F401  (registers the task)
from breastdx.tasks import histo  # noqa: F401  (registers pcam, idc, breakhis)
from breastdx.tasks.base import TASKS, RunResult, Task, explainable_tasks, get_task

__all__ = ["TASKS", "RunResult", "Task", "explainable_tasks", "get_task"]
