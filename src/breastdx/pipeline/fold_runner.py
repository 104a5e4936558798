"""Train the folds of a cross-validation one after the other, or several at once in worker processes.

Each fold of a cross-validation is a whole training run (``task.train`` on a config of its own). On a machine of
few cores, two single-threaded processes train more per second than one process on two threads, whose waiting
threads spin while their sibling is descheduled; ``--cv-workers N`` trains ``N`` folds at once, each in its own
(spawned) process with ``--threads`` threads and its log in ``<fold_dir>/fold.log``. A fold's run, seed and scores
do not depend on the process it runs in (tests check it for monuseg and busi-seg).

Used by :mod:`breastdx.pipeline.nuclei_crossval` (monuseg), :mod:`breastdx.pipeline.seg_crossval` (busi-seg) and
:mod:`breastdx.pipeline.crossval` (the patient-grouped image classifiers: idc, breakhis). A worker process gets the
task by its registered name (``TASKS``; a spec's readers are closures that do not pickle): unpickling the fold's
config, a dataclass of a task module, imports :mod:`breastdx.tasks` and so registers every task.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def run_folds(task: Any, jobs: Sequence[tuple[Any, Path]], data_root: Path, workers: int,
              describe: Sequence[str] | None = None) -> list[Any]:
    """Run ``task.train(config, data_root, fold_dir)`` for every job, in job order.

    Args:
        task: The task; workers build their own instance of the task registered under ``task.name``.
        jobs: ``(config, fold_dir)`` per fold; each ``fold_dir`` exists.
        data_root: The data root.
        workers: Folds at once (1: one after the other, in this process, with this process's logging).
        describe: Per job, what the log says before training it in this process (e.g. ``"fold 1 of 5: ..."``).

    Returns:
        Each job's :class:`breastdx.pipeline.task.RunResult`, in job order.

    Raises:
        Whatever a fold's ``task.train`` raises (a worker's error is raised here, after the other folds end).
    """
    done = _finished_folds(jobs)
    if done:  # a resumed cross-validation: the folds that had finished are kept, the others (re)trained
        todo = [i for i in range(len(jobs)) if i not in done]
        fresh = run_folds(task, [jobs[i] for i in todo], data_root, workers,
                          [describe[i] for i in todo] if describe is not None else None) if todo else []
        results = {**done, **dict(zip(todo, fresh))}
        return [results[i] for i in range(len(jobs))]
    workers = max(1, min(int(workers), len(jobs)))
    if workers == 1:
        results = []
        for i, (config, fold_dir) in enumerate(jobs):
            if describe is not None:
                log.info("%s", describe[i])
            results.append(task.train(config, data_root, fold_dir))
            mark_fold_finished(fold_dir)
        return results
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    threads = getattr(jobs[0][0], "threads", 0)
    log.info("cross-validation folds: %d at once, each in its own process with %s thread(s); their logs in "
             "folds/f*/fold.log", workers, threads or "PyTorch's default")
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(train_fold, task.name, dataclasses.replace(c, progress_bar=False), data_root, d)
                   for c, d in jobs]
        return [fu.result() for fu in futures]


FOLD_FINISHED = "fold_finished.json"
"""Written into a fold's folder once its ``task.train`` has returned: every file of the fold's run is written (a
fold that stopped while writing its report or model card has ``metrics.json`` and ``model/meta.json`` already)."""


def mark_fold_finished(fold_dir: Path) -> None:
    """Write :data:`FOLD_FINISHED` into ``fold_dir``."""
    from breastdx.runs import utc_now_iso, write_json

    write_json({"finished": utc_now_iso()}, Path(fold_dir) / FOLD_FINISHED)


def _finished_folds(jobs: Sequence[tuple[Any, Path]]) -> dict[int, Any]:
    """In a resumed cross-validation (``breastdx train --resume``, :data:`breastdx.runs.RESUME_ENV`):
    the folds whose run had finished before the stop (:data:`FOLD_FINISHED` written after their training returned),
    as :class:`breastdx.pipeline.task.RunResult` read back from their folders; none otherwise. A fold stopped
    after its metrics but before the rest of its files is trained again."""
    import json
    import os

    from breastdx.pipeline.task import RunResult
    from breastdx.runs import RESUME_ENV

    if not os.environ.get(RESUME_ENV):
        return {}
    done = {}
    for i, (_, fold_dir) in enumerate(jobs):
        if (Path(fold_dir) / FOLD_FINISHED).is_file() and (Path(fold_dir) / "metrics.json").is_file():
            log.info("fold f%d had finished before the stop: its run in %s is kept", i, fold_dir)
            metrics = (Path(fold_dir) / "metrics.json").read_text(encoding="utf-8")
            done[i] = RunResult(Path(fold_dir), json.loads(metrics))
    return done


def train_fold(task: Any, config: Any, data_root: Path, fold_dir: Path) -> Any:
    """One fold in a worker process: its ``--threads``, its log in ``fold_dir/fold.log``, then ``task.train`` (the
    same run, seed and result as in the parent process). ``task``: a task, or the name of a registered one."""
    import os

    if isinstance(task, str):  # unpickling the config imported its task module, hence every task's registration
        from breastdx.pipeline.task import TASKS

        entry = TASKS.get(task)
        task = entry() if isinstance(entry, type) else entry
    os.environ.setdefault("MPLBACKEND", "Agg")
    if int(getattr(config, "threads", 0) or 0) > 0:
        import torch

        torch.set_num_threads(int(config.threads))
    handler = logging.FileHandler(Path(fold_dir) / "fold.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        result = task.train(config, data_root, fold_dir)
        mark_fold_finished(fold_dir)
        return result
    finally:  # a worker may train another fold next: its log goes to that fold's file only
        root.removeHandler(handler)
        handler.close()
