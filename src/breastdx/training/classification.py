"""Lightning module and training loop for K-class image classification.

Loss: cross-entropy with optional class weights (class imbalance) and label smoothing; for the multi-task
U-Net (:mod:`breastdx.models.multitask`) plus ``seg_weight`` x Dice + cross-entropy of the lesion mask
(MONAI ``DiceCELoss``, lesion channel, whole batch). AdamW with linear warm-up and cosine decay
(:func:`breastdx.training.segmentation.warmup_cosine`). Validation gathers the logits of all validation
images (across processes under DDP) and logs ``val_macro_auroc`` (one-vs-rest), ``val_balanced_accuracy``,
``val_score`` (their mean, the default metric that picks the best epoch) and ``val_nll``.

:func:`fit_classifier` runs the whole training with :func:`breastdx.training.trainer.make_trainer` and
returns the network with the best epoch's weights; :func:`predict_logits` computes logits of a dataset,
with optional left-right flip averaging (test-time augmentation).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from torch import nn

from breastdx.training.segmentation import warmup_cosine

log = logging.getLogger(__name__)

MONITORS = {"val_score": "max", "val_macro_auroc": "max", "val_balanced_accuracy": "max", "val_nll": "min"}
"""Validation metrics that can pick the best epoch, with their direction."""

TTA_MODES = ("none", "hflip")
"""Test-time augmentation: none, or the mean of the logits of the image and its left-right mirror."""


@dataclass(frozen=True)
class ClassifierOptim:
    """Loss, optimiser and schedule.

    Attributes:
        lr: Peak learning rate of AdamW.
        weight_decay: Decoupled weight decay.
        warmup_fraction: Fraction of all steps with a linear warm-up.
        min_lr_ratio: The cosine decay ends at ``lr * min_lr_ratio``.
        label_smoothing: Label smoothing of the cross-entropy.
        seg_weight: Weight of the segmentation loss for networks with ``forward_multitask`` (0: class only).
    """

    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_fraction: float = 0.05
    min_lr_ratio: float = 0.01
    label_smoothing: float = 0.0
    seg_weight: float = 1.0


class ClassificationModule(pl.LightningModule):
    """Train a classifier ``(B, C, S, S) -> (B, K)`` logits.

    Args:
        network: The classifier. A network with ``forward_multitask(x) -> (logits, seg_logits)`` (and
            ``has_decoder`` not False) gets the segmentation loss too when ``optim.seg_weight > 0`` and batches
            carry a ``"mask"``.
        n_classes: ``K``.
        class_weights: Cross-entropy weights ``(K,)``, or None for equal weights.
        optim: Loss, optimiser and schedule.

    References:
        Loshchilov & Hutter (2019). Decoupled weight decay regularization (AdamW). ICLR, arXiv:1711.05101.
        Milletari, Navab & Ahmadi (2016). V-Net (Dice loss). 3DV, doi:10.1109/3DV.2016.79.
    """

    def __init__(self, network: nn.Module, n_classes: int, class_weights: torch.Tensor | None = None,
                 optim: ClassifierOptim | None = None) -> None:
        super().__init__()
        self.network = network
        self.n_classes = int(n_classes)
        self.optim = optim or ClassifierOptim()
        self.register_buffer("class_weights", class_weights.float() if class_weights is not None else None,
                             persistent=False)
        self.multitask = (callable(getattr(network, "forward_multitask", None)) and getattr(network, "has_decoder", True)
                          and self.optim.seg_weight > 0)
        if self.multitask:
            from monai.losses import DiceCELoss

            self.seg_loss = DiceCELoss(include_background=False, to_onehot_y=True, softmax=True, batch=True)
        self._val_logits: list[torch.Tensor] = []
        self._val_labels: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102 - ``(B, C, S, S) -> (B, K)``
        return self.network(x)

    def _class_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(logits.float(), labels, weight=self.class_weights,
                                           label_smoothing=self.optim.label_smoothing)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:  # noqa: D102
        x, y = batch["image"], batch["label"]
        if self.multitask and "mask" in batch:
            logits, seg = self.network.forward_multitask(x)
            cls_loss = self._class_loss(logits, y)
            seg_loss = self.seg_loss(seg.float(), batch["mask"])
            loss = cls_loss + self.optim.seg_weight * seg_loss
            self.log("train_seg_loss", seg_loss, on_step=False, on_epoch=True, batch_size=x.shape[0], sync_dist=True)
        else:
            logits = self(x)
            cls_loss = loss = self._class_loss(logits, y)
        self.log("train_class_loss", cls_loss, on_step=False, on_epoch=True, batch_size=x.shape[0], sync_dist=True)
        self.log("train_loss", loss, on_step=False, on_epoch=True, batch_size=x.shape[0], sync_dist=True)
        return loss

    def on_validation_epoch_start(self) -> None:  # noqa: D102
        self._val_logits, self._val_labels = [], []

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:  # noqa: D102
        self._val_logits.append(self(batch["image"]).float().detach())
        self._val_labels.append(batch["label"].detach())

    def on_validation_epoch_end(self) -> None:  # noqa: D102
        from breastdx.evaluation.calibration import nll
        from breastdx.evaluation.classification import multiclass_metrics

        if not self._val_logits:
            return
        logits = torch.cat(self._val_logits)
        labels = torch.cat(self._val_labels)
        if self.trainer.world_size > 1:  # every process sees all validation images
            logits = self.all_gather(logits).reshape(-1, logits.shape[-1])
            labels = self.all_gather(labels).reshape(-1)
        z = logits.cpu().numpy().astype(float)
        y = labels.cpu().numpy().astype(np.int64)
        names = [str(k) for k in range(self.n_classes)]
        m = multiclass_metrics(y, _softmax_np(z), names)
        auc, bal = float(m["macro_auroc"]), float(m["balanced_accuracy"])
        score = np.nanmean([auc, bal]) if np.isfinite([auc, bal]).any() else float("nan")
        self.log("val_macro_auroc", auc, sync_dist=False)
        self.log("val_balanced_accuracy", bal, sync_dist=False)
        self.log("val_accuracy", float(m["accuracy"]), sync_dist=False)
        self.log("val_score", float(score), prog_bar=True, sync_dist=False)
        self.log("val_nll", nll(y, z), sync_dist=False)

    def configure_optimizers(self):  # noqa: D102
        opt = torch.optim.AdamW(self.parameters(), lr=self.optim.lr, weight_decay=self.optim.weight_decay)
        total = max(1, int(self.trainer.estimated_stepping_batches))
        warmup = int(round(self.optim.warmup_fraction * total))
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda step: warmup_cosine(step, total, warmup, self.optim.min_lr_ratio))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def _softmax_np(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@dataclass(frozen=True)
class FitSettings:
    """How :func:`fit_classifier` trains (tasks copy these from their config).

    Attributes:
        epochs: Largest number of epochs.
        batch_size: Training images per step.
        imbalance: ``"weighted_loss"``, ``"sampler"`` or ``"none"`` (see :mod:`breastdx.data.classification`).
        monitor: Validation metric that picks the best epoch (a key of :data:`MONITORS`).
        patience: Epochs without improvement before stopping (0: never).
        seed: Seed of the data order.
        num_workers: Data-loader processes.
        precision: ``"auto"``, ``"32"``, ``"bf16-mixed"`` (see :class:`breastdx.training.trainer.TrainerSettings`).
        accelerator: Lightning accelerator.
        devices: Lightning devices (``"auto"``, ``"2"``, ``"0,1"``).
        strategy: Lightning strategy.
        num_nodes: Machines.
        deterministic: Deterministic algorithms where PyTorch has them.
        progress_bar: Show the progress bar.
        max_train_batches: Batches per epoch (0: all), for smoke tests.
    """

    epochs: int = 60
    batch_size: int = 32
    imbalance: str = "weighted_loss"
    monitor: str = "val_score"
    patience: int = 0
    seed: int = 0
    num_workers: int = 0
    precision: str = "32"
    accelerator: str = "auto"
    devices: str = "auto"
    strategy: str = "auto"
    num_nodes: int = 1
    deterministic: bool = True
    progress_bar: bool = True
    max_train_batches: int = 0


@dataclass
class FitResult:
    """What :func:`fit_classifier` returns.

    Attributes:
        network: The network with the best epoch's weights, in eval mode.
        best_epoch: The epoch picked (None when unknown).
        best_score: The monitored value at that epoch.
        epochs_run: Epochs trained.
        train_seconds: Wall-clock time of ``fit``.
        is_global_zero: False in the non-zero processes of a distributed run.
        info: Plain data for ``meta.json`` and reports.
    """

    network: nn.Module
    best_epoch: int | None
    best_score: float
    epochs_run: int
    train_seconds: float
    is_global_zero: bool
    info: dict[str, Any]


def make_loaders(train_ds: Any, val_ds: Any, settings: FitSettings):
    """Seeded training and validation loaders (MONAI ``DataLoader``; a balanced sampler when asked).

    Raises:
        ValueError: If ``settings.imbalance`` is unknown.
    """
    from monai.data import DataLoader

    from breastdx.data.classification import IMBALANCE_MODES, balanced_sampler

    if settings.imbalance not in IMBALANCE_MODES:
        raise ValueError(f"imbalance must be one of {', '.join(IMBALANCE_MODES)}, got {settings.imbalance!r}.")
    generator = torch.Generator().manual_seed(settings.seed)
    common = {"num_workers": settings.num_workers, "persistent_workers": settings.num_workers > 0}
    drop_last = len(train_ds) > settings.batch_size
    if settings.imbalance == "sampler":
        sampler = balanced_sampler(train_ds.labels, len(train_ds.class_names), generator=generator)
        train = DataLoader(train_ds, batch_size=settings.batch_size, sampler=sampler, drop_last=drop_last, **common)
    else:
        train = DataLoader(train_ds, batch_size=settings.batch_size, shuffle=True, generator=generator,
                           drop_last=drop_last, **common)
    val = DataLoader(val_ds, batch_size=max(settings.batch_size, 32), shuffle=False, **common)
    return train, val


def fit_classifier(network: nn.Module, train_ds: Any, val_ds: Any, run_dir: Path, settings: FitSettings,
                   optim: ClassifierOptim) -> FitResult:
    """Train ``network`` on ``train_ds``, pick the best epoch on ``val_ds``, return it with the best weights.

    Lightning writes its CSV log into ``run_dir/training_log`` and the best checkpoint into
    ``run_dir/checkpoints``; the checkpoint is read back with ``weights_only=True`` and deleted.

    Args:
        network: The classifier (random or initialised weights).
        train_ds: :class:`breastdx.data.classification.ClassificationDataset` with augmentation.
        val_ds: The validation dataset (no augmentation).
        run_dir: Folder for the log (created when missing).
        settings: Training settings.
        optim: Loss and optimiser.

    Raises:
        ValueError: For an unknown monitor or imbalance mode, or Lightning settings it refuses.
    """
    from breastdx.data.classification import class_weights
    from breastdx.training.trainer import TrainerSettings, best_state_dict, make_trainer, remove_checkpoints

    if settings.monitor not in MONITORS:
        raise ValueError(f"monitor must be one of {', '.join(MONITORS)}, got {settings.monitor!r}.")
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    k = len(train_ds.class_names)
    weights = class_weights(train_ds.labels, k) if settings.imbalance == "weighted_loss" else None
    train_loader, val_loader = make_loaders(train_ds, val_ds, settings)
    module = ClassificationModule(network, k, weights, optim)
    trainer_settings = TrainerSettings(
        max_epochs=settings.epochs, monitor=settings.monitor, mode=MONITORS[settings.monitor],
        patience=settings.patience, accelerator=settings.accelerator, devices=settings.devices,
        strategy=settings.strategy, num_nodes=settings.num_nodes, precision=settings.precision,
        deterministic=settings.deterministic, progress_bar=settings.progress_bar,
        limit_train_batches=settings.max_train_batches, log_every_n_steps=max(1, min(10, len(train_loader))))
    trainer, checkpoint = make_trainer(run_dir, trainer_settings)
    start = time.perf_counter()
    trainer.fit(module, train_loader, val_loader)
    seconds = time.perf_counter() - start
    if not trainer.is_global_zero:
        return FitResult(network, None, float("nan"), int(trainer.current_epoch), seconds, False, {})
    network.load_state_dict(best_state_dict(checkpoint))
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
            "lr": optim.lr, "weight_decay": optim.weight_decay, "label_smoothing": optim.label_smoothing,
            "seg_weight": optim.seg_weight if module.multitask else 0.0, "imbalance": settings.imbalance,
            "class_weights": None if weights is None else [round(float(w), 4) for w in weights],
            "precision": str(trainer.precision), "n_train": len(train_ds), "n_val": len(val_ds),
            "torch_threads": torch.get_num_threads(), "accelerator": type(trainer.accelerator).__name__,
            "devices": trainer.num_devices}
    log.info("trained %d epoch(s) in %.1f min; best epoch %s (%s %.4f)", info["epochs_run"], seconds / 60,
             best_epoch, settings.monitor, best_score)
    return FitResult(network, best_epoch, best_score, info["epochs_run"], seconds, True, info)


@torch.no_grad()
def predict_logits(network: nn.Module, dataset: Any, batch_size: int = 64, tta: str = "none",
                   device: str | torch.device = "cpu") -> np.ndarray:
    """Logits of every item of ``dataset`` (its transform is not applied: items are read unaugmented).

    Args:
        network: The classifier; put in eval mode.
        dataset: A :class:`breastdx.data.classification.ClassificationDataset`.
        batch_size: Images per forward pass.
        tta: ``"none"`` or ``"hflip"`` (mean of the logits of the image and its mirror).
        device: Torch device.

    Returns:
        float64 ``(n, K)``.

    Raises:
        ValueError: If ``tta`` is unknown.
    """
    if tta not in TTA_MODES:
        raise ValueError(f"tta must be one of {', '.join(TTA_MODES)}, got {tta!r}.")
    network = network.to(device).eval()
    prep = dataset.preprocessing
    out = []
    for start in range(0, len(dataset), batch_size):
        x = prep.to_tensor(dataset.images[start:start + batch_size]).to(device)
        z = network(x).float()
        if tta == "hflip":
            z = 0.5 * (z + network(x.flip(-1)).float())
        out.append(z.cpu())
    if not out:
        return np.zeros((0, len(dataset.class_names)))
    return torch.cat(out).numpy().astype(np.float64)


@dataclass
class ArchitectureRun:
    """One architecture trained, calibrated on validation and evaluated on test (:func:`run_architecture`).

    Attributes:
        arch: Registry name.
        arch_args: Resolved network arguments (for ``meta.json``).
        network: The network with the best epoch's weights (eval mode).
        n_parameters: Its parameter count.
        fit: The training result.
        val_logits: Validation logits ``(n_val, K)`` (with the test-time augmentation).
        test_logits: Test logits ``(n_test, K)``.
        calibration: ``{"temperature", "threshold", "target_sensitivity"}`` fitted on validation.
        validation: :func:`breastdx.evaluation.classification.evaluate_logits` on validation.
        test: The same on test.
        init: The initialisation report (plain data), or None for random weights.
    """

    arch: str
    arch_args: dict[str, Any]
    network: nn.Module
    n_parameters: int
    fit: FitResult
    val_logits: np.ndarray
    test_logits: np.ndarray
    calibration: dict[str, float]
    validation: dict[str, Any]
    test: dict[str, Any]
    init: dict[str, Any] | None = None

    @property
    def val_score(self) -> float:
        """Mean of validation macro AUROC and balanced accuracy (temperature-scaled; the selection score)."""
        m = self.validation["metrics"]
        return float(np.nanmean([m["macro_auroc"]["value"], m["balanced_accuracy"]["value"]]))


def run_architecture(arch: str, arch_args: dict[str, Any], in_channels: int, train_ds: Any, val_ds: Any,
                     test_ds: Any, arch_dir: Path, settings: FitSettings, optim: ClassifierOptim, *,
                     tta: str = "none", target_sensitivity: float = 0.9, positive: str = "malignant",
                     n_boot: int = 2000, init: Any = None) -> ArchitectureRun:
    """Build, (initialise,) train, calibrate on validation and evaluate on test one architecture.

    The network is built after seeding with ``settings.seed``, so its initial weights do not depend on
    what ran before. The temperature and the operating threshold are fitted on the validation logits
    (:func:`breastdx.evaluation.classification.fit_calibration`) and applied unchanged to the test logits.

    Args:
        arch: Registry name (see :data:`breastdx.models.networks.NETWORKS`).
        arch_args: Network arguments that differ from the defaults.
        in_channels: Input channels.
        train_ds: Training dataset (with augmentation).
        val_ds: Validation dataset.
        test_ds: Test dataset.
        arch_dir: Folder of this architecture's training log.
        settings: Training settings.
        optim: Loss and optimiser.
        tta: Test-time augmentation for the validation and test logits.
        target_sensitivity: Operating point rule (0: Youden's J).
        positive: Positive class of the binary figures.
        n_boot: Bootstrap resamples.
        init: ``init(network) -> InitReport | None`` applied before training, or None.

    Raises:
        UnknownNameError: For an unknown architecture.
        TypeError: For an argument the architecture does not take.
    """
    from breastdx.evaluation.classification import evaluate_logits, fit_calibration
    from breastdx.models.networks import build_network, count_parameters
    from breastdx.runs import seed_everything

    class_names = list(train_ds.class_names)
    seed_everything(settings.seed)
    network, resolved = build_network(arch, in_channels, len(class_names), **arch_args)
    report = init(network) if init is not None else None
    log.info("training %s (%d parameters) for up to %d epochs", arch, count_parameters(network), settings.epochs)
    fit = fit_classifier(network, train_ds, val_ds, Path(arch_dir), settings, optim)
    net = fit.network
    val_logits = predict_logits(net, val_ds, tta=tta)
    test_logits = predict_logits(net, test_ds, tta=tta)
    cal = fit_calibration(val_ds.labels, val_logits, class_names, positive, target_sensitivity)
    common = {"temperature": cal["temperature"], "threshold": cal["threshold"], "positive": positive,
              "n_boot": n_boot, "seed": settings.seed}
    validation = evaluate_logits(val_ds.labels, val_logits, class_names, **common)
    test = evaluate_logits(test_ds.labels, test_logits, class_names, **common)
    return ArchitectureRun(arch, resolved, net, count_parameters(net), fit, val_logits, test_logits, cal, validation,
                           test, None if report is None else report.to_dict())


def parse_arch_args(text: str, archs: tuple[str, ...] | list[str]) -> dict[str, dict[str, Any]]:
    """Per-architecture network arguments from a JSON object, e.g. ``{"unet_multitask": {"head_levels": 1}}``.

    Args:
        text: The ``--arch-args`` value; empty for defaults everywhere.
        archs: The architectures of the run.

    Returns:
        Architecture to arguments (``{}`` where none are given).

    Raises:
        ValueError: If the text is not a JSON object of objects or names an architecture not in ``archs``.
    """
    import json

    out: dict[str, dict[str, Any]] = {a: {} for a in archs}
    if not text.strip():
        return out
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"Option --arch-args expects a JSON object such as '{{\"resnet18\": {{}}}}', got {text!r} "
                         f"({e}).") from None
    if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
        raise ValueError(f"Option --arch-args expects a JSON object of objects (architecture -> arguments), got {text!r}.")
    unknown = sorted(set(value) - set(archs))
    if unknown:
        raise ValueError(f"Option --arch-args names {', '.join(unknown)}, not among --archs {', '.join(archs)}.")
    out.update(value)
    return out


def check_architectures(archs: tuple[str, ...] | list[str], arch_args: dict[str, dict[str, Any]], in_channels: int,
                        n_classes: int) -> None:
    """Build every architecture once (cheaply) to fail on a wrong name or argument before any work.

    Raises:
        UnknownNameError: For an unknown name ("did you mean ...?").
        ValueError: For a segmentation network, an empty list, or an argument the network does not take.
    """
    from breastdx.models.networks import NETWORKS, SEGMENTATION_NETWORKS, network_args

    if not archs:
        raise ValueError("Option --archs needs at least one architecture.")
    for arch in archs:
        NETWORKS.get(arch)
        if arch in SEGMENTATION_NETWORKS:
            raise ValueError(f"Option --archs: {arch!r} is a segmentation network; choose classification networks "
                             f"such as resnet18, densenet121, efficientnet_b0, resnet50, unet_multitask.")
        try:
            network_args(arch, **arch_args.get(arch, {}))
        except TypeError as e:
            raise ValueError(f"Option --arch-args: {e}") from None
        # The saved model explains itself with Grad-CAM: a network without a target layer must fail here, not
        # after training, when the model is written.
        from breastdx.explain.gradcam import target_layer
        from breastdx.models.networks import build_network

        network, _ = build_network(arch, in_channels, n_classes, **arch_args.get(arch, {}))
        layer = target_layer(network, arch)  # ValueError when none is known
        if layer not in dict(network.named_modules()):
            raise ValueError(f"Option --archs: the Grad-CAM target layer {layer!r} of {arch!r} is not a module of "
                             f"the network built with its arguments.")
