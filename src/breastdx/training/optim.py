"""The optimiser and learning-rate schedule of every image task: AdamW with linear warm-up, then cosine decay.

References:
    Loshchilov, I. & Hutter, F. (2019). Decoupled weight decay regularization. ICLR, arXiv:1711.05101 (AdamW)
    Loshchilov, I. & Hutter, F. (2017). SGDR: stochastic gradient descent with warm restarts. ICLR, arXiv:1608.03983
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable


@dataclass(frozen=True)
class Optim:
    """Optimiser and schedule (the task modules' settings extend it with their loss weights).

    Attributes:
        lr: Peak learning rate of AdamW.
        weight_decay: Decoupled weight decay of AdamW.
        warmup_fraction: Fraction of all steps with a linear warm-up from 0 to ``lr``.
        min_lr_ratio: The cosine decay ends at ``lr * min_lr_ratio``.
    """

    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_fraction: float = 0.05
    min_lr_ratio: float = 0.01


def warmup_cosine(step: int, total: int, warmup: int, min_ratio: float) -> float:
    """Learning-rate factor at ``step``: linear warm-up over ``warmup`` steps, then cosine to ``min_ratio``."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def adamw_warmup_cosine(parameters: Iterable[Any], optim: Optim, total_steps: int) -> dict[str, Any]:
    """Lightning's ``configure_optimizers`` answer: AdamW and a per-step warm-up + cosine schedule.

    Args:
        parameters: The parameters to train.
        optim: Learning rate, weight decay and schedule.
        total_steps: Optimiser steps of the whole fit (``trainer.estimated_stepping_batches``).
    """
    import torch

    opt = torch.optim.AdamW(parameters, lr=optim.lr, weight_decay=optim.weight_decay)
    total = max(1, int(total_steps))
    warmup = int(round(optim.warmup_fraction * total))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: warmup_cosine(step, total, warmup, optim.min_lr_ratio))
    return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def moving_average(network: Any, decay: float) -> Any:
    """An exponential moving average of ``network``'s weights and buffers, updated by the caller after every
    optimiser step (``ema.update_parameters(network)``), or None when ``decay`` is 0.

    Args:
        network: The trained ``torch.nn.Module``.
        decay: Decay per step, in [0, 1); 0 turns the average off.

    Returns:
        A ``torch.optim.swa_utils.AveragedModel`` (its ``module`` is the averaged network, gradients off), or None.

    Raises:
        ValueError: If ``decay`` is not in [0, 1).
    """
    if decay == 0:
        return None
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    if not 0.0 < decay < 1.0:
        raise ValueError(f"ema_decay must be in [0, 1), got {decay}.")
    ema = AveragedModel(network, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)
    ema.requires_grad_(False)
    return ema
