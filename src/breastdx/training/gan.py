"""Training loop of the class-conditional GAN (:mod:`breastdx.models.gan`): hinge loss, spectral norm, two time-scale
learning rates, differentiable augmentation, class-balanced batches, and an exponential moving average of the
generator's weights (the EMA generator is the one saved and sampled).

Plain PyTorch (no Lightning): two optimisers stepping in turn do not fit Lightning's automatic optimisation, and the
loop is short. Budgeted by steps and by wall time, whichever ends first.

* Hinge loss (Lim & Ye 2017; Miyato et al. 2018): ``L_D = E[relu(1 - D(x))] + E[relu(1 + D(G(z)))]``,
  ``L_G = -E[D(G(z))]``.
* Two time-scale update rule (Heusel et al. 2017): the discriminator learns faster than the generator.
* Real patches are drawn class-balanced (each class half of a batch), so the minority class is learnt as well as
  the majority, and turned by a random one of the 8 symmetries of the square (H&E tissue has no orientation).
* DiffAugment (Zhao et al. 2020): the same random translation and cutout are applied, differentiably, to real and
  generated batches before the discriminator sees them, which keeps the discriminator from memorising a few
  thousand patches.
* EMA of the generator (Karras et al. 2018; Yazici et al. 2019), decay 0.999, buffers (batch-norm statistics)
  copied.

References:
    Lim, J. H. & Ye, J. C. (2017). Geometric GAN. arXiv:1705.02894
    Miyato, T. et al. (2018). Spectral normalization for generative adversarial networks. ICLR, arXiv:1802.05957
    Heusel, M. et al. (2017). GANs trained by a two time-scale update rule converge to a local Nash equilibrium.
    NeurIPS, arXiv:1706.08500
    Zhao, S., Liu, Z., Lin, J., Zhu, J.-Y. & Han, S. (2020). Differentiable augmentation for data-efficient GAN
    training. NeurIPS, arXiv:2006.10738
    Yazici, Y. et al. (2019). The unusual effectiveness of averaging in GAN training. ICLR, arXiv:1806.04498
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from breastdx.models.gan import ConditionalGenerator, ProjectionDiscriminator, from_uint8

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GanSettings:
    """Settings of :func:`train_gan`.

    Attributes:
        steps: Generator updates at most.
        max_minutes: Wall-time budget in minutes (0: none); training stops after the step that passes it.
        batch_size: Real (and generated) patches per step.
        lr_g: Generator learning rate (Adam, betas 0.0 / 0.9).
        lr_d: Discriminator learning rate (two time-scale rule: larger than ``lr_g``).
        ema_decay: Decay of the generator's moving average.
        z_dim: Latent length.
        g_widths: Generator channels, smallest map first.
        d_widths: Discriminator channels.
        diffaugment: Apply translation (1/8 of the side) and cutout (1/4 of the side) to D's inputs.
        seed: Seed of weights, batches and latents.
        log_every: Steps between log lines (and ``progress`` calls).
    """

    steps: int = 20000
    max_minutes: float = 0.0
    batch_size: int = 32
    lr_g: float = 2e-4
    lr_d: float = 4e-4
    ema_decay: float = 0.999
    z_dim: int = 96
    g_widths: tuple[int, ...] = (128, 64, 32, 16)
    d_widths: tuple[int, ...] = (16, 32, 64, 128)
    diffaugment: bool = True
    seed: int = 0
    log_every: int = 100


def dihedral(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Each patch turned by one of the 8 symmetries of the square.

    Args:
        x: ``(B, C, S, S)``.
        k: ``(B,)`` int in [0, 8): rotation by ``k % 4`` quarter turns, mirrored left-right when ``k >= 4``.

    Returns:
        ``(B, C, S, S)``.
    """
    out = torch.empty_like(x)
    for j in range(8):
        m = k == j
        if m.any():
            t = torch.rot90(x[m], j % 4, dims=(2, 3))
            out[m] = t.flip(3) if j >= 4 else t
    return out


def diff_augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """DiffAugment translation and cutout (Zhao et al. 2020), differentiable in ``x``.

    Translation: each patch shifted by up to 1/8 of its side in each direction, the uncovered border zero (mid grey
    in [-1, 1]). Cutout: a square of 1/4 of the side set to zero at a random place.

    Shape:
        ``(B, C, S, S)`` -> ``(B, C, S, S)``.
    """
    b, _, s, _ = x.shape
    shift = max(1, s // 8)
    pad = nn.functional.pad(x, (shift, shift, shift, shift))
    dy = torch.randint(0, 2 * shift + 1, (b,), generator=gen)
    dx = torch.randint(0, 2 * shift + 1, (b,), generator=gen)
    rows = (dy[:, None] + torch.arange(s)[None, :])  # (B, S)
    cols = (dx[:, None] + torch.arange(s)[None, :])
    bi = torch.arange(b)[:, None, None]
    x = pad.permute(0, 2, 3, 1)[bi, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)
    c = max(1, s // 4)
    cy = torch.randint(0, s - c + 1, (b,), generator=gen)
    cx = torch.randint(0, s - c + 1, (b,), generator=gen)
    ar = torch.arange(s)
    keep = ~(((ar[None, :] >= cy[:, None]) & (ar[None, :] < cy[:, None] + c))[:, :, None]
             & ((ar[None, :] >= cx[:, None]) & (ar[None, :] < cx[:, None] + c))[:, None, :])
    return x * keep[:, None].to(x.dtype)


@torch.no_grad()
def _ema_update(ema: nn.Module, model: nn.Module, decay: float) -> None:
    for pe, pm in zip(ema.parameters(), model.parameters()):
        pe.lerp_(pm, 1.0 - decay)
    for be, bm in zip(ema.buffers(), model.buffers()):
        be.copy_(bm)


def train_gan(images: np.ndarray, labels: np.ndarray, settings: GanSettings, n_classes: int = 2,
              progress: Callable[[int, ConditionalGenerator, dict[str, float]], None] | None = None
              ) -> tuple[ConditionalGenerator, dict[str, Any]]:
    """Train a class-conditional GAN on ``images`` and return the EMA generator.

    Args:
        images: uint8 ``(N, S, S, 3)`` RGB training patches.
        labels: int ``(N,)`` class indices in ``[0, n_classes)``; every class present.
        settings: Budget and hyperparameters.
        n_classes: Number of classes.
        progress: Called every ``settings.log_every`` steps with ``(step, EMA generator, last losses)`` (to save
            snapshots or sample grids), or None.

    Returns:
        ``(EMA generator in eval mode, info)``; ``info`` holds the settings, steps run, seconds, the losses logged
        (``history``: one ``{"step", "loss_d", "loss_g", "d_real", "d_fake"}`` per log line) and the torch threads.

    Raises:
        ValueError: If the images are not uint8 ``(N, S, S, 3)``, the labels do not match, or a class is missing.
    """
    images = np.asarray(images)
    y_all = np.asarray(labels).astype(np.int64)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[3] != 3 or images.shape[1] != images.shape[2]:
        raise ValueError(f"train_gan: images must be uint8 (N, S, S, 3), got {images.dtype} {images.shape}.")
    if y_all.shape != (images.shape[0],):
        raise ValueError(f"train_gan: labels must be one per image, shape ({images.shape[0]},); got {y_all.shape}.")
    missing = [c for c in range(n_classes) if not (y_all == c).any()]
    if missing:
        raise ValueError(f"train_gan: no training image of class(es) {missing}; every class needs examples.")
    torch.manual_seed(settings.seed)
    gen = torch.Generator().manual_seed(settings.seed)
    rng = np.random.default_rng(settings.seed)
    s = images.shape[1]
    G = ConditionalGenerator(n_classes, s, settings.z_dim, settings.g_widths)
    D = ProjectionDiscriminator(n_classes, settings.d_widths)
    G_ema = copy.deepcopy(G).eval()
    for p in G_ema.parameters():
        p.requires_grad_(False)
    opt_g = torch.optim.Adam(G.parameters(), lr=settings.lr_g, betas=(0.0, 0.9))
    opt_d = torch.optim.Adam(D.parameters(), lr=settings.lr_d, betas=(0.0, 0.9))
    by_class = [np.flatnonzero(y_all == c) for c in range(n_classes)]
    real_all = from_uint8(images)
    history: list[dict[str, float]] = []
    start = time.perf_counter()
    aug = (lambda t: diff_augment(t, gen)) if settings.diffaugment else (lambda t: t)
    step = 0
    sums = np.zeros(4)
    for step in range(1, settings.steps + 1):
        y = torch.from_numpy(rng.integers(0, n_classes, settings.batch_size))
        idx = np.array([rng.choice(by_class[c]) for c in y.tolist()])
        real = dihedral(real_all[idx], torch.from_numpy(rng.integers(0, 8, settings.batch_size)))
        z = torch.randn(settings.batch_size, settings.z_dim, generator=gen)
        # discriminator
        with torch.no_grad():
            fake = G(z, y)
        d_real = D(aug(real), y)
        d_fake = D(aug(fake), y)
        loss_d = torch.relu(1.0 - d_real).mean() + torch.relu(1.0 + d_fake).mean()
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
        # generator
        z = torch.randn(settings.batch_size, settings.z_dim, generator=gen)
        loss_g = -D(aug(G(z, y)), y).mean()
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        _ema_update(G_ema, G, settings.ema_decay if step > 500 else 0.0)  # follow G closely at first
        sums += [loss_d.item(), loss_g.item(), d_real.mean().item(), d_fake.mean().item()]
        out_of_time = settings.max_minutes and time.perf_counter() - start > 60 * settings.max_minutes
        if step % settings.log_every == 0 or out_of_time or step == settings.steps:
            n = step - (history[-1]["step"] if history else 0)
            row = {"step": step, "seconds": round(time.perf_counter() - start, 1),
                   **{k: round(float(v) / n, 4) for k, v in zip(("loss_d", "loss_g", "d_real", "d_fake"), sums)}}
            history.append(row)
            sums[:] = 0
            log.info("GAN step %d: %s", step, row)
            if progress is not None:
                progress(step, G_ema, row)
        if out_of_time:
            break
    info = {"settings": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(settings).items()},
            "steps_run": step, "train_seconds": round(time.perf_counter() - start, 1),
            "n_train": int(images.shape[0]), "n_train_per_class": [int(b.size) for b in by_class],
            "torch_threads": torch.get_num_threads(), "history": history}
    return G_ema.eval(), info
