"""The run folder of ``breastdx train``: a new one, a stopped one resumed (``--resume``), a failure recorded in it.

Beside :mod:`breastdx.cli`, which calls these from its ``train`` command; the folders themselves are made and checked
by :mod:`breastdx.runs`, and the resumption from the last checkpoint happens in :func:`breastdx.training.trainer.fit`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional


def new_run_dir(task: str, out: Optional[Path]) -> Path:
    """The folder of a new training run: made by global rank 0; the processes of the other ranks of a distributed
    run use rank 0's (:data:`breastdx.runs.RUN_DIR_ENV`, inherited, or ``--out`` on other nodes) and write nothing."""
    from breastdx.config import ConfigError
    from breastdx.runs import RUN_DIR_ENV, is_rank_zero, make_run_dir, mark_running

    if is_rank_zero():
        run_dir = make_run_dir(task, out)
        mark_running(run_dir)
        os.environ[RUN_DIR_ENV] = str(run_dir)  # the other ranks' processes inherit it: one run folder
        return run_dir
    shared = os.environ.get(RUN_DIR_ENV) or (str(out) if out else "")
    if not shared:
        raise ConfigError("Training on several nodes needs --out: the same run folder on every node.")
    run_dir = Path(shared)
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


RESUME_OPTIONS = {"threads", "progress-bar", "num-workers"}
"""Task options ``train --resume`` accepts: they change how fast the run goes, not what it computes."""


def resumed(t: Any, run_dir: Path, args: list[str], out: Optional[Path], seed: Optional[int],
             data_dir: Optional[Path]) -> tuple[Any, Path, Optional[Path]]:
    """``train --resume RUN``: the stopped run's config and data root, the folder marked as resumed and
    :data:`breastdx.runs.RESUME_ENV` set for :func:`breastdx.training.trainer.fit`."""
    import yaml

    from breastdx.config import ConfigError, load_config, parse_extra_args, validate, with_overrides
    from breastdx.runs import (RESUME_ENV, RUN_DIR_ENV, is_rank_zero, mark_resumed, mark_running,
                               stopped_run_config)

    how = parse_extra_args(list(args))  # how the machine runs it may change; what it computes may not
    refused = sorted({k.replace("_", "-") for k in how} - RESUME_OPTIONS) + ["out"] * (out is not None) \
        + ["seed"] * (seed is not None)
    if refused:
        raise ConfigError(f"--resume trains on with the stopped run's own options (its config.yaml): give no --out, "
                          f"--seed or task option with it but {', '.join('--' + o for o in sorted(RESUME_OPTIONS))} "
                          f"(given: {', '.join('--' + o for o in refused)}).")
    if not is_rank_zero():  # another rank of a distributed run: rank 0 has checked and marked the folder
        recorded = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8")) or {}
    else:
        recorded = stopped_run_config(run_dir, t.name)
    try:
        recorded_config = load_config(t.config_cls, run_dir / "config.yaml")
    except ConfigError as e:
        raise ConfigError(f"{run_dir / 'config.yaml'}: {e}") from None
    config = with_overrides(recorded_config, how)  # a bad --threads is the command line's, not the file's
    validate(config, t.name)  # before the folder is marked resumed: a refused --threads -1 leaves it as it was
    if hasattr(config, "split_method") and int(getattr(config, "cv_folds", 0) or 0) > 0 \
            and "split_method" not in recorded:  # a cross-validation begun before the option: its folds were
        import dataclasses  # drawn by the rule of then, and are redrawn on resuming

        from breastdx.data.splits import LEGACY_SPLIT_METHOD

        config = dataclasses.replace(config, split_method=LEGACY_SPLIT_METHOD)
    if int(recorded.get("num_workers", 0) or 0) > 0 and int(getattr(config, "num_workers", 0) or 0) == 0:
        import logging

        logging.getLogger(__name__).warning(
            "the stopped run loaded its data with %s worker processes, whose augmentation streams were lost with "
            "them: the resumed epochs draw other augmentations than the run never stopped",
            recorded["num_workers"])
    if not hasattr(config, "epochs"):
        raise ConfigError(f"{t.name} runs cannot be resumed (only trainings in epochs can); start it again with "
                          f"another --out.")
    if is_rank_zero():
        mark_resumed(run_dir)
        mark_running(run_dir)
    os.environ[RESUME_ENV] = "1"
    os.environ[RUN_DIR_ENV] = str(run_dir)
    return config, run_dir, data_dir or (Path(recorded["data_root"]) if recorded.get("data_root") else None)


def finished_run(run_dir: Path) -> None:
    """A training run that ended well: the results its fits kept for a resume are removed (global rank 0)."""
    from breastdx.runs import is_rank_zero
    from breastdx.training.trainer import remove_fit_states

    if is_rank_zero():
        remove_fit_states(run_dir)


def failed_run(task: str, run_dir: Path, message: str, resumable: bool = True) -> str:
    """Record a command's failure in its run folder (``error.txt``; a training's ``running.json`` removed) and return
    the message, with the folder named and, for a training that can go on, how to resume it (``resumable`` False:
    a failure that resuming would meet again, such as a diverged training)."""
    from breastdx.runs import clear_running, record_failure
    from breastdx.training.trainer import CHECKPOINT_DIR

    clear_running(run_dir)  # first: a run that wrote nothing else leaves an empty folder, removed at exit
    written = record_failure(run_dir, message)
    if not written:
        return message
    resumable = resumable and any(d.is_dir() and any(d.iterdir())  # last.ckpt or a finished fit
                                  for d in run_dir.rglob(CHECKPOINT_DIR))
    return (f"{message}\n(The run folder {run_dir} keeps what the run wrote and this error in {written.name}"
            + (f"; 'breastdx train {task} --resume {run_dir}' goes on after its last finished epoch.)" if resumable
               else ".)"))
