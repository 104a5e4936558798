"""A class-conditional DCGAN for small RGB patches: generator with label embedding, projection discriminator with
spectral normalisation.

* :class:`ConditionalGenerator`: ``z (B, z_dim)`` and a class index ``(B,)`` -> RGB patch ``(B, 3, S, S)`` in
  [-1, 1]. The class enters twice: its embedding is concatenated to ``z`` before the first linear layer, and every
  batch norm is class-conditional (a per-class scale and shift, "conditional batch norm", as in Miyato & Koyama
  2018). Upsampling is nearest-neighbour resizing followed by a 3 x 3 convolution (no transposed convolutions, so no
  checkerboard artefacts); the sizes double from ``base`` and the last step resizes to ``S`` exactly, so a side such
  as IDC's 50 needs no cropping.
* :class:`ProjectionDiscriminator`: strided 3 x 3 / 4 x 4 convolutions with spectral normalisation (Miyato et al.
  2018) and leaky ReLU, global sum pooling, then ``linear(h) + <embed(y), h>`` (the projection of Miyato & Koyama
  2018).

Trained with the hinge loss and an exponential moving average of the generator's weights
(:mod:`breastdx.training.gan`). Weights are saved as safetensors only (:func:`save_generator`,
:func:`load_generator`): the generator is rebuilt from ``meta.json`` (``architecture_args``), nothing is unpickled.

References:
    Radford, A., Metz, L. & Chintala, S. (2016). Unsupervised representation learning with deep convolutional
    generative adversarial networks (DCGAN). ICLR, arXiv:1511.06434
    Miyato, T., Kataoka, T., Koyama, M. & Yoshida, Y. (2018). Spectral normalization for generative adversarial
    networks. ICLR, arXiv:1802.05957
    Miyato, T. & Koyama, M. (2018). cGANs with projection discriminator. ICLR, arXiv:1802.05637
    Odena, A., Dumoulin, V. & Olah, C. (2016). Deconvolution and checkerboard artifacts. Distill,
    doi:10.23915/distill.00003
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

GENERATOR_ARCH = "dcgan_conditional"
"""``meta.json`` ``architecture`` of a generator folder."""
GENERATOR_KIND = "generator"
"""``meta.json`` ``kind`` of a generator folder (not a predictor: ``predict`` and the service leave it out)."""


class ConditionalBatchNorm(nn.Module):
    """Batch norm without its own affine part, followed by a per-class scale and shift.

    Shape:
        ``x (B, C, H, W)``, ``y (B,)`` int64 -> ``(B, C, H, W)``.
    """

    def __init__(self, channels: int, n_classes: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(channels, affine=False)
        self.gamma = nn.Embedding(n_classes, channels)
        self.beta = nn.Embedding(n_classes, channels)
        nn.init.ones_(self.gamma.weight)
        nn.init.zeros_(self.beta.weight)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.gamma(y)[:, :, None, None] * self.bn(x) + self.beta(y)[:, :, None, None]


class _UpBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, n_classes: int, size: int) -> None:
        super().__init__()
        self.size = int(size)
        self.bn = ConditionalBatchNorm(c_in, n_classes)
        self.conv = nn.Conv2d(c_in, c_out, 3, padding=1)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn(x, y))
        x = nn.functional.interpolate(x, size=(self.size, self.size), mode="nearest")
        return self.conv(x)


def _sizes(image_size: int, base: int) -> list[int]:
    """Map sides from ``base``: doubled while the last step stays at least 1.5x (50 from 6: 6, 12, 24, 50)."""
    sizes = [base]
    while sizes[-1] * 3 < image_size:
        sizes.append(sizes[-1] * 2)
    sizes.append(image_size)
    return sizes


class ConditionalGenerator(nn.Module):
    """Class-conditional DCGAN generator (Radford et al. 2016) with conditional batch norm.

    Args:
        n_classes: Number of classes (IDC: 2).
        image_size: Side ``S`` of the output patch (IDC: 50).
        z_dim: Length of the latent vector.
        widths: Channels from the smallest map to the largest; one up-block per step, so ``len(widths)`` must be
            the number of resizings from ``base`` to ``S`` plus one (50 from 6: 6 -> 12 -> 24 -> 50, four widths).
        base: Side of the first feature map.
        embed_dim: Length of the class embedding concatenated to ``z``.

    Shape:
        ``z (B, z_dim)`` float32, ``y (B,)`` int64 in ``[0, n_classes)`` -> ``(B, 3, S, S)`` float32 in [-1, 1].

    Raises:
        ValueError: If ``widths`` does not have one entry per feature-map size.
    """

    def __init__(self, n_classes: int = 2, image_size: int = 50, z_dim: int = 96,
                 widths: Sequence[int] = (128, 64, 32, 16), base: int = 6, embed_dim: int = 32) -> None:
        super().__init__()
        sizes = _sizes(int(image_size), int(base))
        widths = [int(w) for w in widths]
        if len(widths) != len(sizes):
            raise ValueError(f"ConditionalGenerator: widths needs {len(sizes)} entries for the map sizes "
                             f"{' -> '.join(map(str, sizes))} (base {base}, image {image_size}); got {len(widths)}.")
        self.n_classes, self.image_size, self.z_dim, self.base = int(n_classes), int(image_size), int(z_dim), int(base)
        self.embed = nn.Embedding(self.n_classes, int(embed_dim))
        self.fc = nn.Linear(self.z_dim + int(embed_dim), widths[0] * self.base * self.base)
        self.blocks = nn.ModuleList(_UpBlock(widths[i], widths[i + 1], self.n_classes, sizes[i + 1])
                                    for i in range(len(widths) - 1))
        self.out_bn = ConditionalBatchNorm(widths[-1], self.n_classes)
        self.out = nn.Conv2d(widths[-1], 3, 3, padding=1)
        self.widths = widths

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:  # noqa: D102
        h = self.fc(torch.cat([z, self.embed(y)], dim=1)).view(z.shape[0], self.widths[0], self.base, self.base)
        for block in self.blocks:
            h = block(h, y)
        return torch.tanh(self.out(torch.relu(self.out_bn(h, y))))


class ProjectionDiscriminator(nn.Module):
    """Spectrally normalised convolutional discriminator with a class projection (Miyato & Koyama 2018).

    Args:
        n_classes: Number of classes.
        widths: Channels of the four convolution stages (stride 1, then three strided 4 x 4 convolutions).

    Shape:
        ``x (B, 3, S, S)`` float32 in [-1, 1], ``y (B,)`` int64 -> ``(B,)`` float32 scores (higher: real).
    """

    def __init__(self, n_classes: int = 2, widths: Sequence[int] = (16, 32, 64, 128)) -> None:
        super().__init__()
        w = [int(c) for c in widths]
        layers: list[nn.Module] = [spectral_norm(nn.Conv2d(3, w[0], 3, padding=1)), nn.LeakyReLU(0.1)]
        for c_in, c_out in zip(w[:-1], w[1:]):
            layers += [spectral_norm(nn.Conv2d(c_in, c_out, 4, stride=2, padding=1)), nn.LeakyReLU(0.1),
                       spectral_norm(nn.Conv2d(c_out, c_out, 3, padding=1)), nn.LeakyReLU(0.1)]
        self.features = nn.Sequential(*layers)
        self.linear = spectral_norm(nn.Linear(w[-1], 1))
        self.embed = spectral_norm(nn.Embedding(int(n_classes), w[-1]))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:  # noqa: D102
        h = self.features(x).sum(dim=(2, 3))
        return self.linear(h).squeeze(1) + (self.embed(y) * h).sum(dim=1)


# ------------------------------------------------------------------------------------------------------------
# sampling and the model folder


def latents(n: int, z_dim: int, seed: int) -> torch.Tensor:
    """The latent vectors of ``synthesize``: ``N(0, 1)`` from a CPU generator seeded with ``seed``.

    The same ``(n, z_dim, seed)`` gives the same vectors on every machine (torch's CPU Philox/MT generator), and the
    first ``m`` vectors of ``n`` are those of ``m``.

    Returns:
        float32 ``(n, z_dim)``.
    """
    g = torch.Generator().manual_seed(int(seed))
    return torch.randn(int(n), int(z_dim), generator=g)


@torch.no_grad()
def generate(generator: ConditionalGenerator, n: int, label: int, seed: int = 0, batch_size: int = 256) -> np.ndarray:
    """``n`` patches of class ``label`` from ``generator`` (put in eval mode), deterministic in ``seed``.

    Args:
        generator: The generator.
        n: Number of patches (0 gives an empty array).
        label: Class index in ``[0, n_classes)``.
        seed: Seed of the latent vectors (:func:`latents`).
        batch_size: Patches per forward pass (does not change the result: batch norm uses its running statistics).

    Returns:
        uint8 ``(n, S, S, 3)`` RGB.

    Raises:
        ValueError: If ``n`` is negative or ``label`` is not a class index.
    """
    if int(n) < 0:
        raise ValueError(f"generate: n must be >= 0, got {n}.")
    if not 0 <= int(label) < generator.n_classes:
        raise ValueError(f"generate: label must be a class index in [0, {generator.n_classes - 1}], got {label}.")
    generator = generator.eval()
    z = latents(n, generator.z_dim, seed)
    out = np.empty((int(n), generator.image_size, generator.image_size, 3), dtype=np.uint8)
    for start in range(0, int(n), batch_size):
        zz = z[start:start + batch_size]
        x = generator(zz, torch.full((zz.shape[0],), int(label), dtype=torch.long))
        out[start:start + zz.shape[0]] = to_uint8(x)
    return out


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """``(B, 3, S, S)`` in [-1, 1] -> uint8 ``(B, S, S, 3)`` (rounded, clipped)."""
    x = ((x.detach().float().clamp(-1, 1) + 1.0) * 127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).contiguous().numpy()


def from_uint8(images: np.ndarray) -> torch.Tensor:
    """uint8 ``(B, S, S, 3)`` -> float32 ``(B, 3, S, S)`` in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def save_generator(model_dir: str | Path, generator: ConditionalGenerator, meta: dict[str, Any]) -> dict[str, Any]:
    """Write a generator folder: ``model.safetensors`` (the generator's weights only) and ``meta.json``.

    ``meta`` is completed with ``kind``, ``architecture``, ``architecture_args`` and ``weights_file``, and by
    :func:`breastdx.models.saved.write_meta` with the schema version, package versions, time and research-use
    statement. The model card is the caller's.

    Returns:
        The metadata written.
    """
    from breastdx.models.saved import WEIGHTS_FILE, save_weights, write_meta

    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    save_weights(generator, model_dir / WEIGHTS_FILE)
    args = {"n_classes": generator.n_classes, "image_size": generator.image_size, "z_dim": generator.z_dim,
            "widths": list(generator.widths), "base": generator.base, "embed_dim": generator.embed.embedding_dim}
    return write_meta(model_dir, {**meta, "kind": GENERATOR_KIND, "architecture": GENERATOR_ARCH,
                                  "architecture_args": args, "weights_file": WEIGHTS_FILE})


def load_generator(model_dir: str | Path) -> tuple[ConditionalGenerator, dict[str, Any]]:
    """Rebuild a generator from its folder (``meta.json`` + safetensors; nothing unpickled), in eval mode.

    Returns:
        ``(generator, meta)``.

    Raises:
        ModelFolderError: If the folder is not a generator folder (no ``meta.json``, another kind or architecture,
            missing weights, or weights that do not fit); the message names the folder.
    """
    from breastdx.models.saved import ModelFolderError, check_model_folder, load_meta_json, load_weights

    path, meta = load_meta_json(model_dir)
    if not isinstance(meta, dict) or meta.get("kind") != GENERATOR_KIND or meta.get("architecture") != GENERATOR_ARCH:
        got = (meta.get("kind"), meta.get("architecture")) if isinstance(meta, dict) else type(meta).__name__
        raise ModelFolderError(f"{path}: not a generator folder: expected kind {GENERATOR_KIND!r} and architecture "
                               f"{GENERATOR_ARCH!r}, got {got}.")
    check_model_folder(model_dir, str(meta.get("task")), str(meta.get("weights_file")))
    args = meta.get("architecture_args") or {}
    try:
        generator = ConditionalGenerator(**args)
    except (TypeError, ValueError) as e:
        raise ModelFolderError(f"{path}: architecture_args {json.dumps(args)} do not build a generator ({e}).") from None
    load_weights(generator, Path(model_dir) / meta["weights_file"])
    return generator.eval(), meta
