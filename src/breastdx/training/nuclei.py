"""Lightning module of nucleus segmentation: three classes (background, interior, boundary).

It is :class:`breastdx.training.segmentation.SegmentationModule` (Dice + cross-entropy over the non-background
classes, AdamW with warm-up and cosine decay, optional moving average of the weights) with its own validation:
``val_dice`` is the Dice of the predicted foreground (interior or boundary) against the reference foreground, summed
over all validation pixels at once (the validation crops are large and all hold nuclei).

After training, :func:`choose_inference` picks the test-time augmentation and the watershed thresholds on the
held-out rows of the training tiles (``breastdx train monuseg`` and ``breastdx calibrate monuseg``).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from breastdx.training.segmentation import SegmentationModule


class NucleusModule(SegmentationModule):
    """Train a ``(B, 3, H, W) -> (B, 3, H, W)`` network on :mod:`breastdx.data.nucleus_patches` items.

    Args:
        network: ``(B, 3, H, W)`` images to ``(B, 3, H, W)`` class logits (background, interior, boundary), or to
            ``(B, 4, H, W)`` with a distance logit last when ``distance_weight`` > 0.
        optim: Optimiser, schedule and class loss (:class:`~breastdx.training.segmentation.OptimConfig`).
        distance_weight: 0: no distance output; > 0: the weight of the distance output's loss, the binary
            cross-entropy of its sigmoid against the items' ``distance`` maps (float32 ``(B, 1, H, W)`` in [0, 1],
            :func:`breastdx.data.nucleus_patches.nucleus_distance`), added to the class loss.

    Raises:
        ValueError: If ``distance_weight`` is negative.
    """

    def __init__(self, network: torch.nn.Module, optim: Any = None, distance_weight: float = 0.0) -> None:
        super().__init__(network, optim)
        if distance_weight < 0:
            raise ValueError(f"distance_weight must be >= 0, got {distance_weight}")
        self.distance_weight = float(distance_weight)

    def compute_loss(self, logits: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:  # noqa: D102
        if self.distance_weight == 0:
            return self.loss_fn(logits, batch["mask"])
        distance = torch.nn.functional.binary_cross_entropy_with_logits(logits[:, 3:4], batch["distance"])
        return self.loss_fn(logits[:, :3], batch["mask"]) + self.distance_weight * distance

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:  # noqa: D102
        logits = self.eval_network()(batch["image"]).float()
        loss = self.compute_loss(logits, batch)
        self.log("val_loss", loss, on_step=False, on_epoch=True, batch_size=batch["image"].shape[0], sync_dist=True)
        pred = logits[:, :3].argmax(1) > 0
        target = batch["mask"][:, 0] > 0
        inter = (pred & target).flatten(1).sum(1)
        size = pred.flatten(1).sum(1) + target.flatten(1).sum(1)
        self._val_rows.append(torch.stack([2 * inter, size, torch.zeros_like(inter), torch.zeros_like(inter)],
                                          1).double())

    def on_validation_epoch_end(self) -> None:  # noqa: D102
        sums = self._validation_sums()
        dice = (sums[0] / sums[1]).item() if sums[1] > 0 else float("nan")
        self.log("val_dice", dice, prog_bar=True, sync_dist=True)


def choose_postprocessing(predictor: Any, images: list[np.ndarray], instances: list[np.ndarray], stop: int,
                          grid: Sequence[tuple]) -> tuple[dict[str, Any], list[list[Any]]]:
    """The watershed thresholds of best mean AJI (Kumar et al. 2017) on the held-out rows of the training tiles.

    Args:
        predictor: A :class:`breastdx.inference.nuclei.NucleusPredictor` (its ``min_size`` is kept).
        images: Training tiles, RGB uint8 ``(H, W, 3)``.
        instances: Their instance labels, int ``(H, W)``.
        stop: First held-out row; rows ``stop:`` of every tile are scored.
        grid: ``(seed_threshold, foreground_threshold, min_seed)`` candidates, in order (the first best wins); a
            fourth item, a dict, sets other :class:`~breastdx.inference.nuclei.InstancePostprocessing` fields.

    Returns:
        The chosen :class:`~breastdx.inference.nuclei.InstancePostprocessing` record and one row
        ``[seed, foreground, min_seed, mean AJI]`` per candidate (``[seed, foreground, min_seed, extra, mean AJI]``
        for a candidate with a fourth item).
    """
    probs = [predictor.probabilities(im[stop:]) for im in images]
    return choose_from_probabilities(predictor.postprocessing, probs, [lab[stop:] for lab in instances], grid)


def choose_from_probabilities(base: Any, probs: list[np.ndarray], refs: list[np.ndarray],
                              grid: Sequence[tuple]) -> tuple[dict[str, Any], list[list[Any]]]:
    """:func:`choose_postprocessing` on probabilities already computed.

    Args:
        base: The :class:`~breastdx.inference.nuclei.InstancePostprocessing` whose fields the candidates replace.
        probs: Class probabilities, float ``(3, H, W)`` each.
        refs: Their reference instance labels, int ``(H, W)``.
        grid: Candidates as in :func:`choose_postprocessing`.
    """
    import dataclasses

    from breastdx.evaluation.instances import aji

    rows, best = [], None
    for s, f, m, *extra in grid:
        fields = extra[0] if extra else {}
        post = dataclasses.replace(base, seed_threshold=s, foreground_threshold=f, min_seed=m, **fields)
        score = float(np.mean([aji(post.apply(p), r) for p, r in zip(probs, refs)]))
        rows.append([s, f, m, *([fields] if extra else []), score])
        if best is None or score > best[0] + 1e-9:
            best = (score, post)
    return best[1].to_meta(), rows


def choose_inference(predictor: Any, images: list[np.ndarray], instances: list[np.ndarray], stop: int,
                     modes: Sequence[str], grid: Sequence[tuple[float, float, int]],
                     margin: float) -> tuple[str, dict[str, Any], list[list[Any]], list[list[Any]]]:
    """The test-time augmentation and watershed thresholds of best mean AJI on the held-out rows.

    Each of ``modes`` (keys of :data:`breastdx.inference.nuclei.TTA_TRANSFORMS`, cheapest first) gets its own
    :func:`choose_postprocessing`; a costlier one is chosen only when its AJI beats the best cheaper one's by more than
    ``margin``, so that an eightfold cost is not paid for noise.

    Returns:
        The augmentation, its watershed record, its grid rows, and ``[mode, best held-out AJI]`` per mode.

    Raises:
        ValueError: If ``modes`` is empty or names an unknown augmentation.
    """
    from breastdx.inference.nuclei import NucleusPredictor

    if not modes:
        raise ValueError("choose_inference: no test-time augmentation to compare")
    best, rows = None, []
    for mode in modes:
        turned = NucleusPredictor(predictor.runner or predictor.network, predictor.meta, windows=predictor.windows,
                                  postprocessing=predictor.postprocessing, normalizer=predictor.normalizer, tta=mode)
        choice, candidates = choose_postprocessing(turned, images, instances, stop, grid)
        score = max(r[-1] for r in candidates)
        rows.append([mode, round(score, 4)])
        if best is None or score > best[0] + margin:
            best = (score, mode, choice, candidates)
    return best[1], best[2], best[3], rows
