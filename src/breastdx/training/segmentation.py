"""Lightning module for binary lesion segmentation: Dice + cross-entropy loss, AdamW, warm-up + cosine schedule.

The network maps ``(B, C, S, S)`` images to ``(B, 2, S, S)`` logits (background, lesion). With
``ema_decay > 0`` an exponential moving average of the weights is kept after every step; validation and
the exported model then use the averaged weights, which are smoother from epoch to epoch than the raw
ones (so the best epoch chosen on a small validation set is less of a lucky spike). Validation
computes, at network size, the mean per-image Dice over images with a lesion (``val_dice``, the metric
that picks the best epoch) and the share of lesion-free images with any predicted lesion pixel
(``val_normal_fp``). Both are summed over all validation images, across processes under DDP, before
dividing, so they do not depend on batch or device count.

With ``precise_bn_batches > 0`` (busi-seg's default), a network with batch normalisation (``deeplabv3plus``,
``fcn``) gets its running statistics recomputed before each validation ("precise BN"): the moving average of
the weights comes with a moving average of the statistics of other weights, which do not fit it (measured on
deeplabv3plus at epoch 8: validation Dice 0.14 with the averaged statistics, 0.73 with statistics recomputed
on training images). The last ``precise_bn_batches`` training batches of the epoch are kept and passed once
through the network in training mode (:func:`torch.optim.swa_utils.update_bn`), so the validated and exported
weights carry statistics of their own. Networks without batch-norm statistics (the U-Net's instance normalisation)
are untouched. The batches are kept in memory only, not in ``last.ckpt`` (busi-seg's 32 batches of 8 images are
tens of MB, and more at larger sizes): being the current epoch's, they are the same in a run resumed from its last
checkpoint as in the run never stopped (an epoch with fewer batches than ``precise_bn_batches`` uses them all).

References:
    Izmailov, P. et al. (2018). Averaging weights leads to wider optima and better generalization (SWA, the
    batch-norm update). UAI, arXiv:1803.05407.
    Wu, Y. & Johnson, J. (2021). Rethinking "batch" in BatchNorm (precise BN). arXiv:2105.07576.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import lightning.pytorch as pl
import torch
from torch import nn

from breastdx.evaluation.segmentation import dice_per_case
from breastdx.training.optim import Optim, adamw_warmup_cosine, moving_average


@dataclass(frozen=True)
class OptimConfig(Optim):
    """Optimiser, schedule (:class:`breastdx.training.optim.Optim`) and loss of the segmentation module.

    Attributes:
        lambda_dice: Weight of the Dice loss.
        lambda_ce: Weight of the cross-entropy loss.
        focal_gamma: 0: plain cross-entropy; > 0: the softmax focal loss in its place, each pixel's cross-entropy
            weighted by ``(1 - p_true) ** focal_gamma`` (Lin et al. 2017), so that pixels the network already
            classifies well count less than faint or ambiguous ones.
        ema_decay: Decay per step of the weights' exponential moving average (0 turns it off).
        precise_bn_batches: The epoch's last training batches kept to recompute the batch-norm statistics of the
            validated network before each validation (0 turns it off; no effect on a network without batch norm).
    """

    warmup_fraction: float = 0.03
    lambda_dice: float = 1.0
    lambda_ce: float = 1.0
    focal_gamma: float = 0.0
    ema_decay: float = 0.0
    precise_bn_batches: int = 0


class _DiceFocal(nn.Module):
    """``lambda_dice * Dice + lambda_focal * focal``: MONAI's Dice of the non-background classes over the batch, and
    its softmax focal loss over all classes (the background included, as cross-entropy is), times the number of
    classes, since MONAI averages it over the class channels too: with ``gamma`` near 0 it is ``DiceCELoss``."""

    def __init__(self, lambda_dice: float, lambda_focal: float, gamma: float) -> None:
        super().__init__()
        from monai.losses import DiceLoss, FocalLoss

        self.dice = DiceLoss(include_background=False, to_onehot_y=True, softmax=True, batch=True)
        self.focal = FocalLoss(include_background=True, to_onehot_y=True, gamma=gamma, use_softmax=True)
        self.lambda_dice, self.lambda_focal = float(lambda_dice), float(lambda_focal)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:  # noqa: D102
        focal = self.focal(logits, target) * logits.shape[1]
        return self.lambda_dice * self.dice(logits, target) + self.lambda_focal * focal


class SegmentationModule(pl.LightningModule):
    """Train a 2-class segmentation network with MONAI's ``DiceCELoss`` (or Dice + focal loss, ``focal_gamma`` > 0).

    The loss is ``lambda_dice * Dice + lambda_ce * CE`` on softmax outputs (the focal loss in place of CE when
    ``optim.focal_gamma`` > 0); the Dice term covers the
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
        Lin, T.-Y. et al. (2017). Focal loss for dense object detection. ICCV. doi:10.1109/ICCV.2017.324
        Loshchilov & Hutter (2019). Decoupled weight decay regularization (AdamW). ICLR, arXiv:1711.05101.
        Polyak & Juditsky (1992). Acceleration of stochastic approximation by averaging. SIAM J. Control Optim.
        30(4):838-855. doi:10.1137/0330046
    """

    def __init__(self, network: nn.Module, optim: OptimConfig | None = None) -> None:
        super().__init__()
        from monai.losses import DiceCELoss

        self.network = network
        self.optim = optim or OptimConfig()
        if self.optim.focal_gamma > 0:
            self.loss_fn = _DiceFocal(self.optim.lambda_dice, self.optim.lambda_ce, self.optim.focal_gamma)
        else:
            self.loss_fn = DiceCELoss(include_background=False, to_onehot_y=True, softmax=True, batch=True,
                                      lambda_dice=self.optim.lambda_dice, lambda_ce=self.optim.lambda_ce)
        self._val_rows: list[torch.Tensor] = []
        self._has_bn = any(isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats
                           for m in network.modules())
        self._bn_batches: deque[torch.Tensor] = deque(maxlen=max(0, int(self.optim.precise_bn_batches)))
        self.ema = moving_average(network, self.optim.ema_decay)

    @property
    def state_prefix(self) -> str:
        """Prefix of the exported weights in this module's state dict (``ema.module.`` or ``network.``)."""
        return "ema.module." if self.ema is not None else "network."

    def eval_network(self) -> nn.Module:
        """The weights validation uses: the moving average when kept, else the trained network."""
        return self.ema.module if self.ema is not None else self.network

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102 - ``(B, C, S, S) -> (B, 2, S, S)``
        return self.network(x)

    def compute_loss(self, logits: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The loss of float32 logits ``(B, K, S, S)`` against the batch's ``mask`` (a scalar tensor)."""
        return self.loss_fn(logits, batch["mask"])

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:  # noqa: D102
        logits = self(batch["image"])
        loss = self.compute_loss(logits.float(), batch)
        if self._has_bn and self._bn_batches.maxlen:
            self._bn_batches.append(batch["image"].detach())
        self.log("train_loss", loss, on_step=False, on_epoch=True, batch_size=batch["image"].shape[0],
                 sync_dist=True)
        return loss

    def on_train_epoch_start(self) -> None:  # noqa: D102
        # the epoch's own batches only: a run resumed from last.ckpt, which does not hold them, has the same ones
        self._bn_batches.clear()

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:  # noqa: D102
        if self.ema is not None:
            self.ema.update_parameters(self.network)

    def on_validation_epoch_start(self) -> None:  # noqa: D102
        self._val_rows = []
        if self._bn_batches:
            from torch.optim.swa_utils import update_bn

            with torch.no_grad():
                update_bn(list(self._bn_batches), self.eval_network())

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:  # noqa: D102
        logits = self.eval_network()(batch["image"]).float()
        loss = self.loss_fn(logits, batch["mask"])
        self.log("val_loss", loss, on_step=False, on_epoch=True, batch_size=batch["image"].shape[0], sync_dist=True)
        pred = logits.argmax(1) == 1
        target = batch["mask"][:, 0] > 0.5
        has = batch["has_lesion"].bool()
        dice = dice_per_case(pred, target)
        fp = pred.flatten(1).any(1)
        self._val_rows.append(torch.stack([torch.where(has, dice, 0.0), has, fp & ~has, ~has], 1).double())

    def _validation_sums(self) -> torch.Tensor:
        """The validation steps' per-image rows (4 numbers each), summed over every validation image once: under
        DDP gathered from all processes, without the images Lightning's sampler repeats. Float64 ``(4,)``."""
        from breastdx.training.trainer import gather_validation

        rows = torch.cat(self._val_rows) if self._val_rows else torch.zeros(0, 4, dtype=torch.float64,
                                                                             device=self.device)
        return gather_validation(self, rows).sum(0)

    def on_validation_epoch_end(self) -> None:  # noqa: D102
        sums = self._validation_sums()
        dice = (sums[0] / sums[1]).item() if sums[1] > 0 else float("nan")
        fp = (sums[2] / sums[3]).item() if sums[3] > 0 else float("nan")
        self.log("val_dice", dice, prog_bar=True, sync_dist=True)  # identical on every process
        self.log("val_normal_fp", fp, sync_dist=True)

    def configure_optimizers(self):  # noqa: D102
        return adamw_warmup_cosine(self.network.parameters(), self.optim, self.trainer.estimated_stepping_batches)
