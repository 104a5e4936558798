"""Lightning module for binary lesion segmentation: Dice + cross-entropy loss, AdamW, warm-up + cosine schedule.

The network maps ``(B, C, S, S)`` images to ``(B, 2, S, S)`` logits (background, lesion). With
``ema_decay > 0`` an exponential moving average of the weights is kept after every step; validation and
the exported model then use the averaged weights, which are smoother from epoch to epoch than the raw
ones (so the best epoch chosen on a small validation set is less of a lucky spike). Validation
computes, at network size, the mean per-image Dice over images with a lesion (``val_dice``, the metric
that picks the best epoch) and the share of lesion-free images with any predicted lesion pixel
(``val_normal_fp``). Both are summed over all validation images, across processes under DDP, before
dividing, so they do not depend on batch or device count.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import lightning.pytorch as pl
import torch
from torch import nn


@dataclass(frozen=True)
class OptimConfig:
    """Optimiser and schedule.

    Attributes:
        lr: Peak learning rate of AdamW.
        weight_decay: Decoupled weight decay of AdamW.
        warmup_fraction: Fraction of all steps with a linear warm-up from 0 to ``lr``.
        min_lr_ratio: The cosine decay ends at ``lr * min_lr_ratio``.
        lambda_dice: Weight of the Dice loss.
        lambda_ce: Weight of the cross-entropy loss.
        ema_decay: Decay per step of the weights' exponential moving average (0 turns it off).
    """

    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_fraction: float = 0.03
    min_lr_ratio: float = 0.01
    lambda_dice: float = 1.0
    lambda_ce: float = 1.0
    ema_decay: float = 0.0


def warmup_cosine(step: int, total: int, warmup: int, min_ratio: float) -> float:
    """Learning-rate factor at ``step``: linear warm-up over ``warmup`` steps, then cosine to ``min_ratio``.

    References:
        Loshchilov & Hutter (2017). SGDR: stochastic gradient descent with warm restarts. ICLR, arXiv:1608.03983.
    """
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def dice_per_image(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Dice similarity coefficient of binary masks, one value per image.

    Args:
        pred: Predicted masks, bool ``(B, H, W)``.
        target: Reference masks, bool ``(B, H, W)``.

    Returns:
        float ``(B,)`` in [0, 1]; an image where both masks are empty scores 1.0.

    References:
        Dice, L. R. (1945). Ecology 26(3):297-302. doi:10.2307/1932409
    """
    inter = (pred & target).flatten(1).sum(1).float()
    total = pred.flatten(1).sum(1).float() + target.flatten(1).sum(1).float()
    return torch.where(total > 0, 2 * inter / total.clamp(min=1), torch.ones_like(total))


class SegmentationModule(pl.LightningModule):
    """Train a 2-class segmentation network with MONAI's ``DiceCELoss``.

    The loss is ``lambda_dice * Dice + lambda_ce * CE`` on softmax outputs; the Dice term covers the
    lesion channel only and is computed over the whole batch (``batch=True``), so lesion-free images in a
    batch do not make it undefined.

    Args:
        network: ``(B, C, S, S) -> (B, 2, S, S)`` logits.
        optim: Optimiser and schedule.

    Attributes:
        network: The trained network.
        ema: ``torch.optim.swa_utils.AveragedModel`` of the network (``ema.module``), or None.

    References:
        Milletari, Navab & Ahmadi (2016). V-Net (Dice loss). 3DV, doi:10.1109/3DV.2016.79.
        Loshchilov & Hutter (2019). Decoupled weight decay regularization (AdamW). ICLR, arXiv:1711.05101.
        Polyak & Juditsky (1992). Acceleration of stochastic approximation by averaging. SIAM J. Control Optim.
        30(4):838-855. doi:10.1137/0330046
    """

    def __init__(self, network: nn.Module, optim: OptimConfig | None = None) -> None:
        super().__init__()
        from monai.losses import DiceCELoss

        self.network = network
        self.optim = optim or OptimConfig()
        self.loss_fn = DiceCELoss(include_background=False, to_onehot_y=True, softmax=True, batch=True,
                                  lambda_dice=self.optim.lambda_dice, lambda_ce=self.optim.lambda_ce)
        self._val_sums = torch.zeros(4, dtype=torch.float64)
        self.ema = None
        if self.optim.ema_decay > 0:
            from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

            if not 0.0 < self.optim.ema_decay < 1.0:
                raise ValueError(f"ema_decay must be in [0, 1), got {self.optim.ema_decay}.")
            self.ema = AveragedModel(network, multi_avg_fn=get_ema_multi_avg_fn(self.optim.ema_decay),
                                     use_buffers=True)
            self.ema.requires_grad_(False)

    @property
    def state_prefix(self) -> str:
        """Prefix of the exported weights in this module's state dict (``ema.module.`` or ``network.``)."""
        return "ema.module." if self.ema is not None else "network."

    def eval_network(self) -> nn.Module:
        """The weights validation uses: the moving average when kept, else the trained network."""
        return self.ema.module if self.ema is not None else self.network

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102 - ``(B, C, S, S) -> (B, 2, S, S)``
        return self.network(x)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:  # noqa: D102
        logits = self(batch["image"])
        loss = self.loss_fn(logits.float(), batch["mask"])
        self.log("train_loss", loss, on_step=False, on_epoch=True, batch_size=batch["image"].shape[0],
                 sync_dist=True)
        return loss

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:  # noqa: D102
        if self.ema is not None:
            self.ema.update_parameters(self.network)

    def on_validation_epoch_start(self) -> None:  # noqa: D102
        self._val_sums = torch.zeros(4, dtype=torch.float64, device=self.device)

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:  # noqa: D102
        logits = self.eval_network()(batch["image"]).float()
        loss = self.loss_fn(logits, batch["mask"])
        self.log("val_loss", loss, on_step=False, on_epoch=True, batch_size=batch["image"].shape[0], sync_dist=True)
        pred = logits.argmax(1) == 1
        target = batch["mask"][:, 0] > 0.5
        has = batch["has_lesion"].bool()
        dice = dice_per_image(pred, target)
        fp = pred.flatten(1).any(1)
        self._val_sums += torch.stack([dice[has].sum(), has.sum(), fp[~has].sum(), (~has).sum()]).double()

    def on_validation_epoch_end(self) -> None:  # noqa: D102
        sums = self._val_sums
        if self.trainer.world_size > 1:
            sums = self.all_gather(sums).reshape(-1, 4).sum(0)
        dice = (sums[0] / sums[1]).item() if sums[1] > 0 else float("nan")
        fp = (sums[2] / sums[3]).item() if sums[3] > 0 else float("nan")
        self.log("val_dice", dice, prog_bar=True, sync_dist=True)  # identical on every process
        self.log("val_normal_fp", fp, sync_dist=True)

    def configure_optimizers(self):  # noqa: D102
        opt = torch.optim.AdamW(self.network.parameters(), lr=self.optim.lr, weight_decay=self.optim.weight_decay)
        total = max(1, int(self.trainer.estimated_stepping_batches))
        warmup = int(round(self.optim.warmup_fraction * total))
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda step: warmup_cosine(step, total, warmup, self.optim.min_lr_ratio))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
