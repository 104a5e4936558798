"""A multi-task U-Net: one encoder shared by a lesion-segmentation decoder and a classification head.

The network is MONAI's residual ``UNet`` (the ``busi-seg`` network, same arguments and the same parameter
names below ``unet.``) with a classification head on pooled encoder features. Trained with the class
label and the lesion mask as two targets, the encoder learns where the lesion is, which helps the class
decision on small data sets; the segmentation weights of a ``busi-seg`` model load into ``unet.`` as they
are (:func:`breastdx.models.init_weights.init_from_busi_seg`).

``forward`` returns class logits only and runs the encoder alone (no decoder), so the network is a
drop-in classifier for training, Grad-CAM and prediction; ``forward_multitask`` returns both outputs.

Registered in :data:`breastdx.models.network_registry.NETWORKS` as ``"unet_multitask"``; look it up through
:mod:`breastdx.models.networks`, which imports this module, so the name is there whichever module comes first.

References:
    Ronneberger, Fischer & Brox (2015). U-Net. MICCAI, doi:10.1007/978-3-319-24574-4_28.
    Kerfoot et al. (2019). Left-ventricle quantification using residual U-Net. STACOM,
    doi:10.1007/978-3-030-12029-0_40.
    Caruana, R. (1997). Multitask learning. Machine Learning 28:41-75. doi:10.1023/A:1007379606734
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from breastdx.models.network_registry import register_network

ARCH_NAME = "unet_multitask"


class MultiTaskUNet(nn.Module):
    """MONAI residual U-Net with a classification head on the deepest encoder levels.

    The head global-average- and global-max-pools the outputs of the last ``head_levels`` encoder levels
    (the bottom block first), concatenates them, and applies dropout and a linear layer.

    Shape:
        ``forward``: ``(B, in_channels, H, W) -> (B, n_classes)`` logits.
        ``forward_multitask``: ``-> ((B, n_classes), (B, seg_channels, H, W))``.
        ``H`` and ``W`` must be divisible by the product of ``strides`` (16 by default).

    Args:
        in_channels: Input channels (1 for gray ultrasound).
        n_classes: Classes of the classification head.
        channels: Feature channels per level, from the top (as MONAI ``UNet``).
        strides: Down-sampling strides between levels (one fewer than ``channels``).
        num_res_units: Residual units per block.
        norm: Normalisation ("instance", "batch").
        dropout: Dropout inside the U-Net blocks.
        seg_channels: Output channels of the segmentation decoder (2: background, lesion).
        head_dropout: Dropout before the linear classification layer.
        head_levels: Encoder levels pooled by the head (1: the bottom block only).
        decoder: Keep the segmentation decoder. Without it the network is the U-Net encoder with the
            classification head (fewer parameters; ``forward_multitask`` is then unavailable), for data
            without masks such as BreastMNIST; busi-seg encoder weights still load.

    Raises:
        ValueError: If ``head_levels`` is not in ``[1, len(channels)]``, ``strides`` does not have one
            entry fewer than ``channels``, or an entry of either is below 1 (a stride of 0 failed when called).
    """

    def __init__(self, in_channels: int, n_classes: int, channels: Sequence[int] = (16, 32, 64, 128, 256),
                 strides: Sequence[int] = (2, 2, 2, 2), num_res_units: int = 2, norm: str = "instance",
                 dropout: float = 0.0, seg_channels: int = 2, head_dropout: float = 0.2, head_levels: int = 2,
                 decoder: bool = True) -> None:
        super().__init__()
        from monai.networks.nets import UNet

        channels = tuple(int(c) for c in channels)
        strides = tuple(int(s) for s in strides)
        if min((*channels, *strides), default=0) < 1:
            raise ValueError(f"MultiTaskUNet: channels and strides must be positive integers, got channels="
                             f"{list(channels)} and strides={list(strides)}.")
        if len(strides) != len(channels) - 1:
            raise ValueError(f"MultiTaskUNet: strides must have one entry fewer than channels, got "
                             f"{len(strides)} strides for {len(channels)} channels.")
        if not 1 <= int(head_levels) <= len(channels):
            raise ValueError(f"MultiTaskUNet: head_levels must be in [1, {len(channels)}], got {head_levels}.")
        self.unet = UNet(spatial_dims=2, in_channels=in_channels, out_channels=seg_channels, channels=channels,
                         strides=strides, num_res_units=int(num_res_units), norm=norm, dropout=float(dropout))
        self.head_levels = int(head_levels)
        # Encoder levels: the down blocks' outputs have channels[0..L-2], the bottom block channels[-1].
        pooled = sum(channels[-self.head_levels:])
        self.head = nn.Sequential(nn.Dropout(float(head_dropout)), nn.Linear(2 * pooled, int(n_classes)))
        self._levels, self._bottom_name = self._walk()
        self.has_decoder = bool(decoder)
        if not self.has_decoder:
            for level in self._levels:
                level[2] = nn.Identity()  # drop the up-sampling blocks (and their parameters)

    def _walk(self) -> tuple[list[nn.Sequential], str]:
        """The U-Net's nested levels (``Sequential(down, SkipConnection(sub), up)``) and the bottom's name."""
        from monai.networks.layers import SkipConnection

        levels: list[nn.Sequential] = []
        name = "unet.model"
        block: nn.Module = self.unet.model
        while True:
            levels.append(block)  # type: ignore[arg-type]
            sub = block[1].submodule  # type: ignore[index]
            name += ".1.submodule"
            if isinstance(sub, nn.Sequential) and len(sub) == 3 and isinstance(sub[1], SkipConnection):
                block = sub
                continue
            return levels, name

    @property
    def gradcam_layer(self) -> str:
        """Name of the bottom (deepest) encoder block, the target layer of Grad-CAM."""
        return self._bottom_name

    @property
    def bottom(self) -> nn.Module:
        """The bottom (deepest) encoder block."""
        return self._levels[-1][1].submodule

    def encoder_parameter_names(self) -> list[str]:
        """Names (as in ``state_dict``) of the encoder's parameters: the down blocks and the bottom block."""
        prefixes = []
        name = "unet.model"
        for _ in self._levels:
            prefixes.append(name + ".0.")
            name += ".1.submodule"
        prefixes.append(name + ".")
        return [k for k in self.state_dict() if any(k.startswith(p) for p in prefixes)]

    def decoder_parameter_names(self) -> list[str]:
        """Names of the decoder's parameters (the up-sampling blocks; none without a decoder): all but the encoder's
        and the class head's."""
        encoder = set(self.encoder_parameter_names())
        return [k for k, _ in self.named_parameters() if k not in encoder and not k.startswith("head.")]

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Encoder outputs from the top level down to the bottom block.

        Shape:
            ``(B, C, H, W)`` -> ``len(channels)`` tensors, level ``i`` of shape
            ``(B, channels[i], H / prod(strides[:i+1]), ...)`` (the bottom keeps the last level's size).
        """
        feats = []
        for level in self._levels:
            x = level[0](x)
            feats.append(x)
        feats.append(self.bottom(x))
        return feats

    def classify(self, feats: list[torch.Tensor]) -> torch.Tensor:
        """Class logits from encoder outputs (:meth:`encode`)."""
        chosen = feats[-self.head_levels:]
        pooled = [torch.cat([f.mean(dim=(2, 3)), f.amax(dim=(2, 3))], dim=1) for f in chosen]
        return self.head(torch.cat(pooled, dim=1))

    def decode(self, feats: list[torch.Tensor]) -> torch.Tensor:
        """Segmentation logits from encoder outputs, exactly as MONAI ``UNet.forward`` computes them.

        Raises:
            RuntimeError: If the network was built without its decoder.
        """
        if not self.has_decoder:
            raise RuntimeError("This MultiTaskUNet was built with decoder=False: it has no segmentation output.")
        y = feats[-1]
        for level, skip in zip(reversed(self._levels), reversed(feats[:-1])):
            y = level[2](torch.cat([skip, y], dim=1))
        return y

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102 - see the class docstring
        return self.classify(self.encode(x))

    def forward_multitask(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Class logits and segmentation logits in one pass (the encoder runs once)."""
        feats = self.encode(x)
        return self.classify(feats), self.decode(feats)


def _bottom_name(args) -> str:
    # one nesting level (".1.submodule") per down-sampling step: MultiTaskUNet._walk's name without a network
    return "unet.model" + ".1.submodule" * (len(args["channels"]) - 1)


def _stride_product(args) -> int:
    return math.prod(int(s) for s in args["strides"])


@register_network(ARCH_NAME, kind="classification", gradcam_layer=_bottom_name,
                  min_size=lambda a: 2 * _stride_product(a), size_multiple=_stride_product)
def unet_multitask(in_channels: int, out_channels: int, *, channels: Sequence[int] = (16, 32, 64, 128, 256),
                   strides: Sequence[int] = (2, 2, 2, 2), num_res_units: int = 2, norm: str = "instance",
                   dropout: float = 0.0, seg_channels: int = 2, head_dropout: float = 0.2,
                   head_levels: int = 2, decoder: bool = True) -> nn.Module:
    """Multi-task U-Net classifier (:class:`MultiTaskUNet`); ``out_channels`` is the number of classes.

    Shape:
        ``(B, in_channels, H, W) -> (B, out_channels)`` logits; ``forward_multitask`` adds
        ``(B, seg_channels, H, W)`` segmentation logits.

    References:
        Ronneberger, Fischer & Brox (2015). U-Net. MICCAI, doi:10.1007/978-3-319-24574-4_28.
    """
    return MultiTaskUNet(in_channels, out_channels, channels=channels, strides=strides, num_res_units=num_res_units,
                         norm=norm, dropout=dropout, seg_channels=seg_channels, head_dropout=head_dropout,
                         head_levels=head_levels, decoder=decoder)
