"""A Lightning ``Trainer`` factory shared by the image tasks, and export of the best checkpoint to safetensors.

The trainer keeps the best epoch by a validation metric (``ModelCheckpoint``, weights only), stops early
when that metric stops improving (``EarlyStopping``), shows a Rich progress bar and logs every epoch to
``<run_dir>/training_log/metrics.csv`` (``CSVLogger``). Accelerator, devices, strategy, number of nodes
and precision pass through unchanged, so the same run works on CPU, one GPU or DDP over several GPUs
and nodes (``devices="4", strategy="ddp"``). One line per epoch also goes to the ``logging`` log.

Lightning checkpoints are an intermediate: :func:`best_state_dict` reads the best one with
``torch.load(weights_only=True)`` (no unpickling of arbitrary objects) and :func:`remove_checkpoints`
deletes them once the weights are exported as ``model.safetensors``. Until then ``checkpoints/last.ckpt`` holds the
whole training state after the last finished epoch (weights, their moving average, optimiser, schedule, early
stopping and best-epoch bookkeeping), so a run that stops can be resumed (``breastdx train TASK --resume RUN``,
:data:`RESUME_ENV`): Lightning reads it back with ``weights_only=True`` too. Once a fit of a ``breastdx train`` run
has finished, ``checkpoints/`` keeps only its result (:data:`FITTED`: the best weights as safetensors and the fit's
figures) until the run ends, so that a run stopped after it (testing, exporting, the next architecture of a
comparison or fold of a cross-validation) does not train that network again when resumed.
"""

from __future__ import annotations

import logging
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from breastdx.config import ConfigError
from breastdx.runs import RESUME_ENV
from breastdx.training.options import LightningOptions

log = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoints"
LOG_DIR = "training_log"
LAST_CHECKPOINT = "last.ckpt"
"""The whole training state after the last finished epoch, in ``CHECKPOINT_DIR``."""


@dataclass(frozen=True)
class FitSettings(LightningOptions):
    """How :func:`fit` trains, for every image task (tasks copy these fields from their config by name): the
    :class:`LightningOptions`, and

    Attributes:
        epochs: Largest number of epochs.
        batch_size: Training images per step.
        monitor: Logged validation metric that picks the best epoch and drives early stopping.
        patience: Validation epochs without improvement before stopping (0 disables early stopping).
        seed: Seed of the data order.
        imbalance: ``"weighted_loss"``, ``"sampler"`` or ``"none"`` (classification; see
            :mod:`breastdx.data.classification`).
    """

    epochs: int = 60
    batch_size: int = 32
    monitor: str = "val_score"
    patience: int = 0
    seed: int = 0
    imbalance: str = "weighted_loss"

    @classmethod
    def from_config(cls, config: Any, **changes: Any) -> "FitSettings":
        """The fields of a task config that have the same names, then ``changes``."""
        import dataclasses

        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{**{n: getattr(config, n) for n in names if hasattr(config, n)}, **changes})


@dataclass
class FitResult:
    """What :func:`fit` returns.

    Attributes:
        network: The network with the best epoch's weights, in eval mode.
        best_epoch: The epoch picked (None when the checkpoint does not say; a warning says why).
        best_score: The monitored value at that epoch.
        epochs_run: Epochs trained.
        train_seconds: Wall-clock time of ``fit``.
        is_global_zero: False in the non-zero processes of a distributed run.
        info: Plain data for ``meta.json`` and reports.
    """

    network: torch.nn.Module
    best_epoch: int | None
    best_score: float
    epochs_run: int
    train_seconds: float
    is_global_zero: bool
    info: dict[str, Any]


def parse_devices(value: str | int) -> int | str | list[int]:
    """Lightning's ``devices`` from a command-line string.

    ``"auto"`` stays a string, ``"2"`` becomes 2 (two devices), ``"0,1"`` or ``"1,"`` become a list of
    device indices, ``"-1"`` means all devices.

    Raises:
        ConfigError: For anything else (a ``ValueError``); the message shows the accepted forms.
    """
    text = str(value).strip()
    if text == "auto":
        return "auto"
    try:
        if "," in text:
            return [int(v) for v in text.split(",") if v.strip()]
        return int(text)
    except ValueError:
        raise ConfigError(f"The 'devices' option must be 'auto', a number such as '2', or device indices such as "
                          f"'0,1'. Got {value!r} instead.") from None


def _epoch_logger():
    """A callback that logs one line per epoch (elapsed time and logged metrics): at the training epoch's end, when
    its own training losses are aggregated and its validation has run (at the validation's end, the training
    figures shown were those of the epoch before)."""
    import time

    from lightning.pytorch.callbacks import Callback

    class EpochLogger(Callback):
        def on_fit_start(self, trainer, pl_module) -> None:  # noqa: D102
            self.start = time.perf_counter()

        def on_train_epoch_end(self, trainer, pl_module) -> None:  # noqa: D102
            if trainer.sanity_checking or not trainer.is_global_zero:
                return
            values = ", ".join(f"{k} {float(v):.4f}" for k, v in sorted(trainer.callback_metrics.items()))
            log.info("epoch %d (%.0f s): %s", trainer.current_epoch, time.perf_counter() - self.start, values)

    return EpochLogger()


def _training_clock():
    """A callback that keeps the training time in each checkpoint (``{"seconds"}``, up to that epoch), so that a
    resumed run's ``train_seconds`` counts the epochs of the parts before the stop (``before``)."""
    import time

    from lightning.pytorch.callbacks import Callback

    class TrainingClock(Callback):
        def __init__(self) -> None:
            self.before, self.start = 0.0, time.perf_counter()

        def state_dict(self) -> dict[str, float]:  # noqa: D102
            return {"seconds": self.before + time.perf_counter() - self.start}

        def load_state_dict(self, state_dict: dict[str, float]) -> None:  # noqa: D102
            self.before = float(state_dict.get("seconds", 0.0))

    return TrainingClock()


def make_trainer(run_dir: Path, settings: FitSettings, mode: str = "max", log_every_n_steps: int = 10,
                 callbacks: list[Any] | None = None):
    """A Lightning ``Trainer`` writing into ``run_dir``.

    Args:
        run_dir: The run folder (checkpoints in ``checkpoints/``, the CSV log in ``training_log/``).
        settings: The options.
        mode: ``"max"`` when a larger ``settings.monitor`` is better, ``"min"`` otherwise.
        log_every_n_steps: Interval of step-level logging.
        callbacks: Extra Lightning callbacks.

    Returns:
        ``(trainer, checkpoint_callback)``.

    Raises:
        ValueError: If ``mode`` is not ``"max"`` or ``"min"`` or ``devices`` cannot be parsed.
    """
    import lightning.pytorch as pl
    from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint, RichProgressBar
    from lightning.pytorch.loggers import CSVLogger

    from breastdx.runtime import choose_training_precision

    if mode not in ("max", "min"):
        raise ValueError(f"mode must be 'max' or 'min', got {mode!r}.")
    precision, reason = choose_training_precision(settings.precision, settings.accelerator)
    log.info("training precision %s (%s)", precision, reason)
    checkpoint = ModelCheckpoint(dirpath=Path(run_dir) / CHECKPOINT_DIR, filename="best", monitor=settings.monitor,
                                 mode=mode, save_top_k=1, save_last=False, save_weights_only=True,
                                 auto_insert_metric_name=False, enable_version_counter=False)
    # For --resume: the latest epoch's whole state (no monitor and top 1: each epoch replaces the file).
    last = ModelCheckpoint(dirpath=Path(run_dir) / CHECKPOINT_DIR, filename=Path(LAST_CHECKPOINT).stem, monitor=None,
                           save_top_k=1, save_last=False, save_weights_only=False, enable_version_counter=False)
    cbs: list[Any] = [checkpoint, last, _epoch_logger(), *(callbacks or [])]
    if settings.patience > 0:
        cbs.append(EarlyStopping(monitor=settings.monitor, mode=mode, patience=settings.patience,
                                 check_finite=True))
    if settings.progress_bar:
        cbs.append(RichProgressBar())
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    try:
        trainer = pl.Trainer(
            accelerator=settings.accelerator, devices=parse_devices(settings.devices), strategy=settings.strategy,
            num_nodes=settings.num_nodes, precision=precision, max_epochs=settings.epochs,
            logger=CSVLogger(save_dir=str(run_dir), name=LOG_DIR, version=""), callbacks=cbs,
            deterministic="warn" if settings.deterministic else None,
            enable_progress_bar=settings.progress_bar, enable_model_summary=False, num_sanity_val_steps=0,
            limit_train_batches=settings.max_train_batches or None, log_every_n_steps=log_every_n_steps,
            default_root_dir=str(run_dir),
        )
    except (MisconfigurationException, ValueError, RuntimeError, ImportError) as e:  # no GPU, a bad name, ...
        raise ConfigError(f"--accelerator {settings.accelerator} --devices {settings.devices} --strategy "
                          f"{settings.strategy} --num-nodes {settings.num_nodes}: Lightning cannot train so on this "
                          f"machine ({type(e).__name__}: {e}).") from None
    return trainer, checkpoint


def make_loaders(train_ds: Any, val_ds: Any, settings: FitSettings, sampler: Any = None):
    """Seeded training and validation loaders (MONAI ``DataLoader``).

    Args:
        train_ds: The training dataset (with augmentation).
        val_ds: The validation dataset.
        settings: Batch size, seed and workers.
        sampler: A sampler of training items (e.g. class-balanced), or None to shuffle.
    """
    from monai.data import DataLoader

    generator = torch.Generator().manual_seed(settings.seed)
    common = {"num_workers": settings.num_workers, "persistent_workers": settings.num_workers > 0}
    order = {"sampler": sampler} if sampler is not None else {"shuffle": True, "generator": generator}
    train = DataLoader(train_ds, batch_size=settings.batch_size, drop_last=len(train_ds) > settings.batch_size,
                       **order, **common)
    val = DataLoader(val_ds, batch_size=max(settings.batch_size, 32), shuffle=False, **common)
    return train, val


def fit(module: Any, network: torch.nn.Module, train_loader: Any, val_loader: Any, run_dir: Path,
        settings: FitSettings, mode: str = "max") -> FitResult:
    """The one training loop of breastdx (Lightning): train ``module``, keep the best epoch by
    ``settings.monitor`` on validation, load its weights into ``network`` and export nothing else.

    Lightning writes its CSV log into ``run_dir/training_log`` and the best checkpoint into
    ``run_dir/checkpoints``; the checkpoint is read back with ``weights_only=True`` and deleted.

    Args:
        module: The LightningModule (classification or segmentation); its ``state_prefix`` (default
            ``"network."``) names the weights to export.
        network: The network inside ``module`` that receives the best weights.
        train_loader: Training batches.
        val_loader: Validation batches.
        run_dir: Folder of the log (created when missing).
        settings: The options.
        mode: ``"max"`` or ``"min"`` for ``settings.monitor``.

    Returns:
        The :class:`FitResult`; in the non-zero ranks of a distributed run, ``is_global_zero`` is False and the
        network keeps its last weights.

    Raises:
        ValueError: For Lightning settings it refuses or a bad ``mode``.
        FileNotFoundError: If no validation epoch wrote a checkpoint.
        TrainingDivergedError: If the module finds the network's outputs, or this the best epoch's weights, not
            finite (the fit's checkpoints are removed).
    """
    import time

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    from breastdx.training.random_state import random_state_callback

    done = _fitted(run_dir, network)
    if done is not None:  # a resumed run whose network had finished training before the stop
        return done
    trainer, checkpoint = make_trainer(run_dir, settings, mode, log_every_n_steps=max(1, min(10, len(train_loader))),
                                       callbacks=[random_state_callback(train_loader), clock := _training_clock()])
    resume, resumed_after = resume_checkpoint(run_dir) or (None, None)
    if resume is not None and getattr(train_loader, "num_workers", 0) > 0:
        log.warning("resuming with %d data-loader worker processes: their augmentation streams lived in the stopped "
                    "run's workers, so the epochs from here draw other augmentations than the run never stopped "
                    "(with --num-workers 0 it would be the same run)", train_loader.num_workers)
    earlier_log = _read_log_rows(run_dir) if resume is not None else []  # Lightning's CSV logger starts afresh
    start = time.perf_counter()
    try:
        with warnings.catch_warnings():
            if resume is not None:  # the folders are this run's own: the log's earlier rows are put back below
                warnings.filterwarnings("ignore", message=r".*(Experiment logs|Checkpoint) directory .* exists and "
                                                          r"is not empty.*")
            trainer.fit(module, train_loader, val_loader, ckpt_path=resume, weights_only=True)
    except TrainingDivergedError:  # said by the module at a validation (NaN weights stay NaN): resuming would
        remove_checkpoints(run_dir)  # diverge again
        raise
    finally:  # also when this part stops in its turn: the next resume must find the earlier epochs' rows
        if earlier_log and trainer.is_global_zero:
            _prepend_log_rows(run_dir, earlier_log)
    seconds = time.perf_counter() - start + clock.before  # a resumed run counts its earlier parts' epochs too
    if not trainer.is_global_zero:
        return FitResult(network, None, float("nan"), int(trainer.current_epoch), seconds, False, {})
    best_state = best_state_dict(checkpoint, prefix=getattr(module, "state_prefix", "network."))
    try:
        _check_finite(best_state)
    except TrainingDivergedError:
        remove_checkpoints(run_dir)  # the same weights: nothing to resume from
        raise
    network.load_state_dict(best_state)
    best_epoch = None
    try:
        best_epoch = int(torch.load(checkpoint.best_model_path, map_location="cpu", weights_only=True)["epoch"])
    except (OSError, KeyError, RuntimeError) as e:  # said, not hidden: the report then shows no best epoch
        log.warning("the best epoch could not be read from %s (%s: %s)", checkpoint.best_model_path,
                    type(e).__name__, e)
    best_score = float(checkpoint.best_model_score) if checkpoint.best_model_score is not None else float("nan")
    remove_checkpoints(run_dir)
    network.eval()
    info = {"train_seconds": round(seconds, 1), "epochs_run": int(trainer.current_epoch), "best_epoch": best_epoch,
            "monitor": settings.monitor, "best_monitor_value": best_score, "batch_size": settings.batch_size,
            "precision": str(trainer.precision), "n_train": len(train_loader.dataset), "n_val": len(val_loader.dataset),
            "torch_threads": torch.get_num_threads(), "accelerator": type(trainer.accelerator).__name__,
            "devices": trainer.num_devices}
    if resume is not None:
        info["resumed_after_epoch"] = resumed_after
    log.info("trained %d epoch(s) in %.1f min; best epoch %s (%s %.4f)", info["epochs_run"], seconds / 60,
             best_epoch, settings.monitor, best_score)
    result = FitResult(network, best_epoch, best_score, info["epochs_run"], seconds, True, info)
    _keep_fitted(run_dir, result)
    return result


def gather_validation(module: Any, rows: torch.Tensor) -> torch.Tensor:
    """A Lightning module's validation rows ``(m, ...)`` of every process, each image once and in the dataset's
    order (:func:`gathered_in_order`); on one process the rows as they are."""
    if module.trainer.world_size <= 1:
        return rows
    return gathered_in_order(module.all_gather(rows), getattr(module.trainer.val_dataloaders, "sampler", None))


def gathered_in_order(gathered: torch.Tensor, sampler: Any) -> torch.Tensor:
    """The validation rows of all processes, ``(world, m, ...)`` from ``all_gather``, as ``(n, ...)``: each image once.

    Lightning splits an unshuffled validation loader among ``world`` processes with a ``DistributedSampler``:
    process ``r`` gets images ``r, r + world, ...``, and the first images again at the end so that every process
    gets ``m``. Those rows are put back in the dataset's order and the ``world * m - n`` repeats dropped. With
    another sampler the rows are returned as gathered, ``(world * m, ...)``.
    """
    from torch.utils.data import DistributedSampler

    if isinstance(sampler, DistributedSampler) and not sampler.shuffle:
        return gathered.transpose(0, 1).reshape(-1, *gathered.shape[2:])[:len(sampler.dataset)]
    return gathered.reshape(-1, *gathered.shape[2:])


class TrainingDivergedError(ConfigError):
    """The training diverged (too large a learning rate): the network's weights or outputs are NaN or infinite."""


def training_diverged(what: str) -> TrainingDivergedError:
    """The error saying that ``what`` ("the weights of its best epoch", ...) hold NaN or infinite values, and what
    to change; the command line prints it as a user's error, not as a bug."""
    return TrainingDivergedError(f"The training diverged: {what} hold NaN or infinite values. Train again with a "
                                 f"smaller --lr (or a longer --warmup-fraction).")


def _check_finite(state: dict[str, torch.Tensor]) -> None:
    """Refuse the best epoch's weights when they are not finite: no later step (calibration, export) can use them.

    Raises:
        TrainingDivergedError: Naming how many tensors are not finite.
    """
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise training_diverged(f"the weights of its best epoch ({len(bad)} of {len(state)} tensors, such as "
                                f"{bad[0]})")


def resumed_note(info: dict[str, Any]) -> str:
    """``", resumed after epoch K"`` for the model card of a training that stopped and was resumed (its fit's
    ``resumed_after_epoch``, 0-based), else ``""``."""
    after = info.get("resumed_after_epoch")
    return f", resumed after epoch {after}" if after is not None else ""


def resume_epoch(path: Path) -> int | None:
    """The last finished epoch (0-based) a ``last.ckpt`` holds, or None when it cannot be read."""
    try:
        return int(torch.load(path, map_location="cpu", weights_only=True)["epoch"])
    except (OSError, KeyError, RuntimeError, ValueError):
        return None


def resume_checkpoint(run_dir: Path) -> tuple[Path, int | None] | None:
    """The checkpoint :func:`fit` resumes from and the last epoch it finished: ``run_dir/checkpoints/last.ckpt`` when
    ``breastdx train --resume`` set :data:`RESUME_ENV` and the file is there, else None (a fresh start; said in the
    log when resuming was asked, as for an architecture of a comparison that had not started). The file is read
    once here (its epoch, and its paths if the folder moved: :func:`_relocate`); Lightning reads it again to resume."""
    import os

    if not os.environ.get(RESUME_ENV):
        return None
    path = Path(run_dir) / CHECKPOINT_DIR / LAST_CHECKPOINT
    if not path.is_file():
        log.info("%s: no checkpoint to resume from; this training starts from the first epoch", run_dir)
        return None
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, ValueError) as e:  # Lightning's own reading of it will say what is wrong
        log.warning("%s cannot be read (%s: %s)", path, type(e).__name__, e)
        return path, None
    _relocate(path, ckpt)
    epoch = int(ckpt["epoch"]) if "epoch" in ckpt else None
    log.info("resuming %s after epoch %s (%s)", run_dir, epoch, path)
    return path, epoch


def best_state_dict(checkpoint_callback: Any, prefix: str = "network.") -> dict[str, torch.Tensor]:
    """The state dict of the best checkpoint, keys without ``prefix``.

    The checkpoint is read with ``torch.load(weights_only=True)``: only tensors and plain data are accepted.

    Args:
        checkpoint_callback: The ``ModelCheckpoint`` returned by :func:`make_trainer`, after fitting.
        prefix: Attribute name of the network in the LightningModule, followed by a dot.

    Raises:
        FileNotFoundError: If no checkpoint was written (no validation epoch ran).
    """
    path = getattr(checkpoint_callback, "best_model_path", "")
    if not path or not Path(path).is_file():
        raise FileNotFoundError("No best checkpoint was written: training ran no validation epoch with a finite "
                                f"{getattr(checkpoint_callback, 'monitor', 'metric')}.")
    state = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


FITTED = "fitted"
"""``checkpoints/fitted.safetensors`` and ``checkpoints/fitted.json``: a finished fit's best weights and figures,
kept while its ``breastdx train`` run goes on (:func:`fit`), removed when it ends (:func:`remove_fit_states`)."""


def _keeps_fit_state(run_dir: Path) -> bool:
    """Whether ``run_dir`` is (in) the folder of a ``breastdx train`` run (:data:`breastdx.runs.RUN_DIR_ENV`), whose
    command removes the kept fit results when the run ends; a fit called on its own leaves nothing behind."""
    import os

    from breastdx.runs import RUN_DIR_ENV

    top = os.environ.get(RUN_DIR_ENV)
    if not top:
        return False
    here, top_path = Path(run_dir).resolve(), Path(top).resolve()
    return here == top_path or top_path in here.parents


def _keep_fitted(run_dir: Path, result: FitResult) -> None:
    """Write :data:`FITTED` for a finished fit (global rank 0, inside a ``breastdx train`` run only)."""
    import json

    from breastdx.models.saved import save_weights
    from breastdx.runs import is_rank_zero, json_ready

    if not is_rank_zero() or not _keeps_fit_state(run_dir):
        return
    folder = Path(run_dir) / CHECKPOINT_DIR
    folder.mkdir(parents=True, exist_ok=True)
    save_weights(result.network, folder / f"{FITTED}.safetensors")
    figures = {"best_epoch": result.best_epoch, "best_score": result.best_score, "epochs_run": result.epochs_run,
               "train_seconds": result.train_seconds, "info": result.info}
    text = json.dumps(json_ready(figures), indent=2, default=str, allow_nan=False)  # NaN (no validation score): null
    (folder / f"{FITTED}.json").write_text(text + "\n", encoding="utf-8")  # written last


def _fitted(run_dir: Path, network: torch.nn.Module) -> FitResult | None:
    """In a resumed run (:data:`RESUME_ENV`), the result of a fit that had finished before the stop, its weights
    loaded into ``network`` (in eval mode); None otherwise (the fit is run, or resumed from ``last.ckpt``)."""
    import json
    import os

    from breastdx.models.saved import load_weights
    from breastdx.runs import number

    folder = Path(run_dir) / CHECKPOINT_DIR
    if not os.environ.get(RESUME_ENV) or not (folder / f"{FITTED}.json").is_file():
        return None
    figures = json.loads((folder / f"{FITTED}.json").read_text(encoding="utf-8"))
    load_weights(network, folder / f"{FITTED}.safetensors")
    network.eval()
    log.info("%s: its training had finished before the stop (best epoch %s of %s): its weights are read back, not "
             "trained again", run_dir, figures["best_epoch"], figures["epochs_run"])
    info = figures["info"]
    if "best_monitor_value" in info:  # written as null when NaN, as best_score
        info["best_monitor_value"] = number(info["best_monitor_value"])
    return FitResult(network, figures["best_epoch"], number(figures["best_score"]), int(figures["epochs_run"]),
                     float(figures["train_seconds"]), True, info)


def remove_fit_states(run_dir: Path) -> None:
    """Delete every ``checkpoints`` folder under ``run_dir`` (its fits' kept results): the run has ended."""
    for folder in sorted(Path(run_dir).rglob(CHECKPOINT_DIR), reverse=True):
        if folder.is_dir():
            shutil.rmtree(folder, ignore_errors=True)


def remove_checkpoints(run_dir: Path) -> None:
    """Delete ``run_dir/checkpoints`` (Lightning files are never kept once weights are exported)."""
    shutil.rmtree(Path(run_dir) / CHECKPOINT_DIR, ignore_errors=True)


def _relocate(path: Path, ckpt: dict[str, Any]) -> None:
    """Make ``ckpt``, the ``last.ckpt`` at ``path`` of a run folder that was moved or copied since it stopped (to
    resume it on another machine, say), name its checkpoints where they are now, and write it back. Lightning's
    ``ModelCheckpoint`` otherwise drops its best score and its best checkpoints when the folder differs, with a
    warning, and the resumed run picks its best epoch among the epochs after the stop only."""
    import os

    here = os.path.realpath(path.parent)
    moved_from = set()
    for state in (ckpt.get("callbacks") or {}).values():
        old = state.get("dirpath") if isinstance(state, dict) else None
        if not isinstance(old, str) or old == here:
            continue
        moved_from.add(old)

        def move(p: Any, old: str = old) -> Any:
            return here + p[len(old):] if isinstance(p, str) and (p == old or p.startswith(old + os.sep)) else p

        for key in ("dirpath", "best_model_path", "kth_best_model_path", "last_model_path"):
            if key in state:
                state[key] = move(state[key])
        if isinstance(state.get("best_k_models"), dict):
            state["best_k_models"] = {move(k): v for k, v in state["best_k_models"].items()}
    if moved_from:
        log.info("the run folder was moved since it stopped (its checkpoints were in %s): their paths are updated",
                 ", ".join(sorted(moved_from)))
        import tempfile

        # each process of a distributed run may do this at once: each writes a file of its own, renamed whole
        fd, part = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".part")
        os.close(fd)
        try:
            os.chmod(part, path.stat().st_mode & 0o777)  # mkstemp's file is the owner's only
            torch.save(ckpt, part)
            os.replace(part, path)
        finally:
            Path(part).unlink(missing_ok=True)


def _read_log_rows(run_dir: Path) -> list[dict[str, str]]:
    """The rows of ``training_log/metrics.csv`` as written so far (none when there is no file)."""
    import csv

    path = Path(run_dir) / LOG_DIR / "metrics.csv"
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _prepend_log_rows(run_dir: Path, earlier: list[dict[str, str]]) -> None:
    """After a resumed fit: put the stopped run's log rows of the epochs before the resumed ones back in front of
    the new rows, so that ``metrics.csv`` and the training curves cover the whole run."""
    import csv

    later = _read_log_rows(run_dir)
    first = min((int(float(r["epoch"])) for r in later if r.get("epoch")), default=None)
    kept = [r for r in earlier if r.get("epoch") and (first is None or int(float(r["epoch"])) < first)]
    fields = list(dict.fromkeys([*(k for r in kept for k in r), *(k for r in later for k in r)]))
    with open(Path(run_dir) / LOG_DIR / "metrics.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=fields, restval="")
        writer.writeheader()
        writer.writerows([*kept, *later])


def read_training_log(run_dir: Path) -> dict[str, list[float]]:
    """Per-epoch values of the CSV log: column name to values, with ``epoch`` first.

    Rows of one epoch (Lightning writes training and validation values on separate rows) are merged;
    a value missing in an epoch is NaN.
    """
    import csv

    path = Path(run_dir) / LOG_DIR / "metrics.csv"
    if not path.is_file():
        return {}
    by_epoch: dict[int, dict[str, float]] = {}
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            if not row.get("epoch"):
                continue
            entry = by_epoch.setdefault(int(float(row["epoch"])), {})
            for k, v in row.items():
                if k not in ("epoch", "step") and v not in ("", None):
                    entry[k] = float(v)
    epochs = sorted(by_epoch)
    names = sorted({k for e in by_epoch.values() for k in e})
    out: dict[str, list[float]] = {"epoch": [float(e) for e in epochs]}
    for name in names:
        out[name] = [by_epoch[e].get(name, float("nan")) for e in epochs]
    return out
