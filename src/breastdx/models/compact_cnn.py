"""A compact convolutional network for small histopathology patches, trained from scratch on a CPU.

``compact_cnn`` is a VGG-style stack (Simonyan & Zisserman 2015) with batch normalisation (Ioffe &
Szegedy 2015): a 3 x 3 stem convolution (stride 2 by default, so a 96 x 96 patch becomes 48 x 48 at
once), then one stage per entry of ``widths``, each two 3 x 3 convolution + batch norm + ReLU layers,
with 2 x 2 max-pooling between stages, global average pooling, dropout and one linear layer. With the
default widths ``(32, 64, 128, 256)`` it has 1.18 M parameters (4.7 MB as float32 safetensors) and costs
about 0.12 GMAC per 96 x 96 patch, a third of a ResNet-18 with its stride-2 stem at that size, so that
CPU inference of thousands of patches per minute and training in minutes are possible.

``compact_cnn`` is registered in :data:`breastdx.models.network_registry.NETWORKS` (look it up through
:mod:`breastdx.models.networks`, which imports this module); its registry entry and the network itself name
the Grad-CAM target layer (``gradcam_layer``: the last stage, before pooling).

References:
    Simonyan, K. & Zisserman, A. (2015). Very deep convolutional networks for large-scale image
    recognition. ICLR, arXiv:1409.1556.
    Ioffe, S. & Szegedy, C. (2015). Batch normalization. ICML, arXiv:1502.03167.
    Veeling, B. S. et al. (2018). Rotation equivariant CNNs for digital pathology. MICCAI,
    doi:10.1007/978-3-030-00934-2_24 (the PCam benchmark this network is meant for).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from breastdx.models.network_registry import register_network

__all__ = ["CompactCNN", "compact_cnn"]


def _conv_bn_relu(c_in: int, c_out: int, stride: int = 1, inplace: bool = True) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=inplace)]


class CompactCNN(nn.Module):
    """VGG-style classifier with batch normalisation, global average pooling and dropout.

    Shape:
        ``(B, in_channels, H, W) -> (B, out_channels)`` logits; ``H`` and ``W`` at least
        ``stem_stride * (2 ** (len(widths) - 1) - 1) + 1`` (15 with the defaults; 64 to 96 pixels is the
        intended size).

    Args:
        in_channels: Input channels (3 for RGB patches).
        out_channels: Classes.
        widths: Channels of each stage; a 2 x 2 max-pooling separates consecutive stages.
        stem_stride: Stride of the first convolution (1 or 2).
        dropout: Dropout probability before the linear layer.

    Raises:
        ValueError: For an empty ``widths``, a width below 1, a stride other than 1 or 2, or a dropout
            outside [0, 1).

    Attributes:
        gradcam_layer: Name of the Grad-CAM target layer (the last stage), read by
            :func:`breastdx.explain.gradcam.target_layer`.
    """

    def __init__(self, in_channels: int, out_channels: int, widths: Sequence[int] = (32, 64, 128, 256),
                 stem_stride: int = 2, dropout: float = 0.2) -> None:
        super().__init__()
        widths = [int(w) for w in widths]
        if not widths or min(widths) < 1:
            raise ValueError(f"compact_cnn: widths must be one or more positive channel counts, got {widths}.")
        if int(stem_stride) not in (1, 2):
            raise ValueError(f"compact_cnn: stem_stride must be 1 or 2, got {stem_stride}.")
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"compact_cnn: dropout must be in [0, 1), got {dropout}.")
        self.stem = nn.Sequential(*_conv_bn_relu(int(in_channels), widths[0], stride=int(stem_stride)))
        stages: list[nn.Module] = []
        c = widths[0]
        for k, w in enumerate(widths):
            last = k == len(widths) - 1
            # The last stage's final ReLU is not in-place: Grad-CAM hooks read its output and gradient.
            stages.append(nn.Sequential(*_conv_bn_relu(c, w), *_conv_bn_relu(w, w, inplace=not last)))
            c = w
        self.stages = nn.ModuleList(stages)
        self.pool = nn.MaxPool2d(2)
        self.dropout = nn.Dropout(float(dropout))
        self.head = nn.Linear(c, int(out_channels))
        self.gradcam_layer = f"stages.{len(widths) - 1}"
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits of a batch ``(B, C, H, W)`` -> ``(B, K)``."""
        x = self.stem(x)
        for k, stage in enumerate(self.stages):
            if k:
                x = self.pool(x)
            x = stage(x)
        return self.head(self.dropout(x.mean(dim=(2, 3))))


def _min_size(args) -> int:
    # the stem's output, ceil(H / stem_stride), must survive len(widths) - 1 halvings
    return int(args["stem_stride"]) * (2 ** (len(args["widths"]) - 1) - 1) + 1


@register_network("compact_cnn", kind="classification", gradcam_layer=lambda a: f"stages.{len(a['widths']) - 1}",
                  min_size=_min_size)
def compact_cnn(in_channels: int, out_channels: int, *, widths: Sequence[int] = (32, 64, 128, 256),
                stem_stride: int = 2, dropout: float = 0.2) -> nn.Module:
    """Compact VGG-style CNN for patches, random initial weights (see :class:`CompactCNN`).

    Shape:
        ``(B, in_channels, H, W) -> (B, out_channels)`` logits.

    Args:
        in_channels: Input channels.
        out_channels: Classes.
        widths: Channels per stage.
        stem_stride: Stride of the first convolution (1 or 2).
        dropout: Dropout before the linear layer.

    References:
        Simonyan & Zisserman (2015), arXiv:1409.1556; Ioffe & Szegedy (2015), arXiv:1502.03167.
    """
    return CompactCNN(in_channels, out_channels, widths=tuple(int(w) for w in widths), stem_stride=int(stem_stride),
                      dropout=float(dropout))
