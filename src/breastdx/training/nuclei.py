"""Lightning module of nucleus segmentation: three classes (background, interior, boundary).

It is :class:`breastdx.training.segmentation.SegmentationModule` (Dice + cross-entropy over the non-background
classes, AdamW with warm-up and cosine decay, optional moving average of the weights) with its own validation:
``val_dice`` is the Dice of the predicted foreground (interior or boundary) against the reference foreground, summed
over all validation pixels at once (the validation crops are large and all hold nuclei).
"""

from __future__ import annotations

import torch

from breastdx.training.segmentation import SegmentationModule


class NucleusModule(SegmentationModule):
    """Train a ``(B, 3, H, W) -> (B, 3, H, W)`` network on :mod:`breastdx.data.nucleus_patches` items."""

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:  # noqa: D102
        logits = self.eval_network()(batch["image"]).float()
        loss = self.loss_fn(logits, batch["mask"])
        self.log("val_loss", loss, on_step=False, on_epoch=True, batch_size=batch["image"].shape[0], sync_dist=True)
        pred = logits.argmax(1) > 0
        target = batch["mask"][:, 0] > 0
        inter = (pred & target).sum()
        self._val_sums += torch.stack([2 * inter, pred.sum() + target.sum(), inter.new_zeros(()),
                                       inter.new_zeros(())]).double()

    def on_validation_epoch_end(self) -> None:  # noqa: D102
        sums = self._val_sums
        if self.trainer.world_size > 1:
            sums = self.all_gather(sums).reshape(-1, 4).sum(0)
        dice = (sums[0] / sums[1]).item() if sums[1] > 0 else float("nan")
        self.log("val_dice", dice, prog_bar=True, sync_dist=True)
