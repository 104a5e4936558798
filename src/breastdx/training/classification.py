"""Lightning module and training loop for K-class image classification.

Loss: cross-entropy with optional class weights (class imbalance) and label smoothing; for the multi-task
U-Net (:mod:`breastdx.models.multitask`) plus ``seg_weight`` x Dice + cross-entropy of the lesion mask
(MONAI ``DiceCELoss``, lesion channel, whole batch). AdamW with linear warm-up and cosine decay
(:func:`breastdx.training.optim.warmup_cosine`). Validation gathers the logits of all validation
images (across processes under DDP) and logs ``val_macro_auroc`` (one-vs-rest), ``val_balanced_accuracy``,
``val_score`` (their mean, the default metric that picks the best epoch) and ``val_nll``.

:func:`fit_classifier` runs the whole training with :func:`breastdx.training.trainer.make_trainer` and
returns the network with the best epoch's weights; :func:`predict_logits` computes logits of a dataset,
with optional left-right flip averaging (test-time augmentation).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from torch import nn

from breastdx.training.optim import Optim, adamw_warmup_cosine, moving_average
from breastdx.training.trainer import FitResult, FitSettings  # noqa: F401  (the one fit's settings, re-used here)
from breastdx.training.trainer import gather_validation

log = logging.getLogger(__name__)

MONITORS = {"val_score": "max", "val_macro_auroc": "max", "val_balanced_accuracy": "max", "val_nll": "min"}
"""Validation metrics that can pick the best epoch, with their direction."""


@dataclass(frozen=True)
class ClassifierOptim(Optim):
    """Optimiser, schedule (:class:`breastdx.training.optim.Optim`) and loss of the classification module.

    Attributes:
        label_smoothing: Label smoothing of the cross-entropy.
        seg_weight: Weight of the segmentation loss for networks with ``forward_multitask`` (0: class only).
        ema_decay: Decay per step of the weights' exponential moving average (0 turns it off); when on,
            validation, the best epoch and the exported weights are the average's (Polyak & Juditsky 1992,
            doi:10.1137/0330046).
        mixup_alpha: Mixup (Zhang et al. 2018, mixup: beyond empirical risk minimization, ICLR,
            arXiv:1710.09412): each training batch is mixed with a shuffled copy of itself, ``lam x + (1 - lam)
            x[perm]`` with ``lam ~ Beta(alpha, alpha)`` once per batch, and the loss is ``lam L(y) + (1 - lam)
            L(y[perm])``, the lesion-mask loss of a multi-task network included (0 turns it off).
    """

    label_smoothing: float = 0.0
    seg_weight: float = 1.0
    ema_decay: float = 0.0
    mixup_alpha: float = 0.0


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
        if not self.multitask and callable(getattr(network, "decoder_parameter_names", None)):
            # without the mask loss the decoder learns nothing; frozen, DDP does not wait for its gradients
            params = dict(network.named_parameters())
            for name in network.decoder_parameter_names():
                params[name].requires_grad_(False)
        if self.multitask:
            from monai.losses import DiceCELoss

            self.seg_loss = DiceCELoss(include_background=False, to_onehot_y=True, softmax=True, batch=True)
        self._val_logits: list[torch.Tensor] = []
        self._val_labels: list[torch.Tensor] = []
        self.ema = moving_average(network, self.optim.ema_decay)
        if not 0 <= self.optim.mixup_alpha < float("inf"):
            raise ValueError(f"mixup_alpha must be 0 (off) or positive, got {self.optim.mixup_alpha}.")

    @property
    def state_prefix(self) -> str:
        """Prefix of the exported weights in this module's state dict (``ema.module.`` or ``network.``)."""
        return "ema.module." if self.ema is not None else "network."

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102 - ``(B, C, S, S) -> (B, K)``
        return self.network(x)

    def _class_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(logits.float(), labels, weight=self.class_weights,
                                           label_smoothing=self.optim.label_smoothing)

    def _mixup(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, float]:
        """The batch mixed with a shuffled copy of itself, the shuffle and ``lam`` (no mixing when off).

        Drawn from the global torch generator, which the seed sets and a resumed run restores.
        """
        alpha = self.optim.mixup_alpha
        if alpha <= 0 or x.shape[0] < 2:
            return x, None, 1.0
        lam = float(torch.distributions.Beta(alpha, alpha).sample())
        perm = torch.randperm(x.shape[0]).to(x.device)
        return lam * x + (1.0 - lam) * x[perm], perm, lam

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:  # noqa: D102
        x, y = batch["image"], batch["label"]
        x, perm, lam = self._mixup(x)

        def mixed(loss_fn, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
            loss = loss_fn(out, target)
            return loss if perm is None else lam * loss + (1.0 - lam) * loss_fn(out, target[perm])

        if self.multitask and "mask" in batch:
            logits, seg = self.network.forward_multitask(x)
            cls_loss = mixed(self._class_loss, logits, y)
            seg_loss = mixed(self.seg_loss, seg.float(), batch["mask"])
            loss = cls_loss + self.optim.seg_weight * seg_loss
            self.log("train_seg_loss", seg_loss, on_step=False, on_epoch=True, batch_size=x.shape[0], sync_dist=True)
        else:
            logits = self(x)
            cls_loss = loss = mixed(self._class_loss, logits, y)
        self.log("train_class_loss", cls_loss, on_step=False, on_epoch=True, batch_size=x.shape[0], sync_dist=True)
        self.log("train_loss", loss, on_step=False, on_epoch=True, batch_size=x.shape[0], sync_dist=True)
        return loss

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:  # noqa: D102
        if self.ema is not None:
            self.ema.update_parameters(self.network)

    def on_validation_epoch_start(self) -> None:  # noqa: D102
        self._val_logits, self._val_labels = [], []

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:  # noqa: D102
        net = self.ema.module if self.ema is not None else self.network
        self._val_logits.append(net(batch["image"]).float().detach())
        self._val_labels.append(batch["label"].detach())

    def on_validation_epoch_end(self) -> None:  # noqa: D102
        from breastdx.evaluation.calibration import nll
        from breastdx.evaluation.classification import multiclass_metrics

        if not self._val_logits:
            return
        logits = torch.cat(self._val_logits)
        labels = torch.cat(self._val_labels)
        logits, labels = gather_validation(self, logits), gather_validation(self, labels)  # all images, each once
        z = logits.cpu().numpy().astype(float)
        y = labels.cpu().numpy().astype(np.int64)
        if not np.isfinite(z).all():  # the weights went NaN (too large a learning rate): every later epoch would too
            from breastdx.training.trainer import training_diverged

            raise training_diverged(f"at epoch {self.current_epoch}, the network's outputs on the validation images")
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
        return adamw_warmup_cosine(self.network.parameters(), self.optim, self.trainer.estimated_stepping_batches)


def _softmax_np(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


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
    from breastdx.data.classification import IMBALANCE_MODES, balanced_sampler, class_weights
    from breastdx.training.trainer import fit, make_loaders

    if settings.monitor not in MONITORS:
        raise ValueError(f"monitor must be one of {', '.join(MONITORS)}, got {settings.monitor!r}.")
    if settings.imbalance not in IMBALANCE_MODES:
        raise ValueError(f"imbalance must be one of {', '.join(IMBALANCE_MODES)}, got {settings.imbalance!r}.")
    k = len(train_ds.class_names)
    weights = class_weights(train_ds.labels, k) if settings.imbalance == "weighted_loss" else None
    sampler = None
    if settings.imbalance == "sampler":
        sampler = balanced_sampler(train_ds.labels, k, generator=torch.Generator().manual_seed(settings.seed))
    train_loader, val_loader = make_loaders(train_ds, val_ds, settings, sampler)
    if train_ds.masks is None and optim.seg_weight:
        optim = dataclasses.replace(optim, seg_weight=0.0)  # no lesion masks to learn: the class loss alone
    module = ClassificationModule(network, k, weights, optim)
    result = fit(module, network, train_loader, val_loader, run_dir, settings, MONITORS[settings.monitor])
    result.info.update({"lr": optim.lr, "weight_decay": optim.weight_decay, "label_smoothing": optim.label_smoothing,
                        "seg_weight": optim.seg_weight if module.multitask and train_ds.masks is not None else 0.0,
                        "ema_decay": optim.ema_decay, "mixup_alpha": optim.mixup_alpha,
                        "imbalance": settings.imbalance,
                        "class_weights": None if weights is None else [round(float(w), 4) for w in weights]})
    return result


def dataset_features(network: nn.Module, dataset: Any, batch_size: int = 64) -> np.ndarray:
    """Penultimate features (:mod:`breastdx.models.penultimate`) of every item of ``dataset``, read unaugmented,
    float32 ``(n, F)``."""
    from breastdx.models.penultimate import penultimate_features

    prep = dataset.preprocessing
    return penultimate_features(network.cpu(), (prep.to_tensor(dataset.images[s:s + batch_size])
                                                for s in range(0, len(dataset), batch_size)))


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
    from breastdx.inference.base import TTA_MODES

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
        ood_bank: The normalised penultimate features of the training images (``calibration["ood"]``;
            :func:`breastdx.inference.ood.fit_ood`), float16 ``(n, F)``, or None.
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
    ood_bank: np.ndarray | None = None

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
    from breastdx.evaluation.calibration import softmax
    from breastdx.evaluation.classification import evaluate_logits, fit_calibration
    from breastdx.evaluation.conformal import fit_conformal
    from breastdx.inference.ood import fit_ood
    from breastdx.models.networks import build_network, count_parameters, with_image_size
    from breastdx.runs import seed_everything

    class_names = list(train_ds.class_names)
    seed_everything(settings.seed)
    size = getattr(getattr(train_ds, "preprocessing", None), "image_size", None)  # vit / swin are built for it
    network, resolved = build_network(arch, in_channels, len(class_names), **with_image_size(arch, size, arch_args))
    report = init(network) if init is not None else None
    log.info("training %s (%d parameters) for up to %d epochs", arch, count_parameters(network), settings.epochs)
    fit = fit_classifier(network, train_ds, val_ds, Path(arch_dir), settings, optim)
    net = fit.network
    val_logits = predict_logits(net, val_ds, tta=tta)
    test_logits = predict_logits(net, test_ds, tta=tta)
    cal = fit_calibration(val_ds.labels, val_logits, class_names, positive, target_sensitivity)
    cal["conformal"] = fit_conformal(val_ds.labels, softmax(np.asarray(val_logits, dtype=float), cal["temperature"]))
    cal["ood"], ood_bank = fit_ood(dataset_features(net, train_ds), dataset_features(net, val_ds), seed=settings.seed)
    common = {"temperature": cal["temperature"], "threshold": cal["threshold"], "positive": positive,
              "n_boot": n_boot, "seed": settings.seed}
    validation = evaluate_logits(val_ds.labels, val_logits, class_names, **common)
    test = evaluate_logits(test_ds.labels, test_logits, class_names, **common)
    return ArchitectureRun(arch, resolved, net, count_parameters(net), fit, val_logits, test_logits, cal, validation,
                           test, None if report is None else report.to_dict(), ood_bank)


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
                        n_classes: int, image_size: int | None = None) -> None:
    """Check every architecture against its registry entry before any work: a known classification network,
    arguments it takes, a Grad-CAM target layer (the saved model explains itself), and the input size.

    Raises:
        UnknownNameError: For an unknown name ("did you mean ...?").
        ValueError: For a segmentation network, an empty list, an argument the network does not take or a value it
            refuses (the network is built once, to see), a network without a Grad-CAM layer, or an image size it
            cannot take.
    """
    from breastdx.models.networks import NETWORKS, check_input_size, gradcam_layer, network_args, with_image_size

    if not archs:
        raise ValueError("Option --archs needs at least one architecture.")
    for arch in archs:
        entry = NETWORKS.get(arch)
        if entry.kind == "segmentation" or not entry.trainable:
            what = "a segmentation network" if entry.kind == "segmentation" else "an ensemble of trained models"
            raise ValueError(f"Option --archs: {arch!r} is {what}; choose classification networks to train, such "
                             f"as resnet18, densenet121, efficientnet_b0, resnet50, unet_multitask.")
        try:
            args = with_image_size(arch, image_size, arch_args.get(arch, {}))  # vit / swin are built for the size
            entry.factory(int(in_channels), int(n_classes), **network_args(arch, **args))  # the values too
        except (TypeError, ValueError) as e:
            raise ValueError(f"Option --arch-args: {e}") from None
        if not gradcam_layer(arch, **args):
            raise ValueError(f"Option --archs: {arch!r} has no Grad-CAM target layer in its registry entry; every "
                             f"image classifier explains itself, so declare one (models/network_registry.py).")
        if image_size is not None:
            check_input_size(arch, image_size, image_size, **args)
