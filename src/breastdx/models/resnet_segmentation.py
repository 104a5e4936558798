"""Segmentation networks on a MONAI ResNet encoder: ``deeplabv3plus`` and ``fcn`` (FCN-8s).

Both networks read the feature maps of MONAI's ``ResNet`` (``monai.networks.nets.resnet.ResNet``, built without
its classification head; random initial weights, nothing downloaded) at strides 4, 8, 16 and 32, as MONAI's
``ResNetFeatures`` and ``FlexibleUNet`` do, and are narrower than the ImageNet ResNet (``width`` channels in the
first stage instead of 64) so that they train on a CPU. Both take any ``in_channels >= 1`` (1 for grey-scale
ultrasound) and return logits at the input's own height and width, whatever it is: the last step is a bilinear
resize to the input size, so no side has to be a multiple of the output stride (one that is aligns the feature
grid with the pixels, and is what the training pipeline uses).

``deeplabv3plus`` (Chen et al. 2018): the encoder's last stage (or last two) is dilated instead of strided, so
that it ends at output stride 16 (or 8); atrous spatial pyramid pooling (MONAI ``SimpleASPP``: a 1 x 1 and
three dilated 3 x 3 convolutions in parallel, concatenated and fused by a 1 x 1 convolution with batch norm and
ReLU); a decoder that upsamples the pyramid's output bilinearly to stride 4, concatenates it with the stride-4
features reduced to ``low_level_channels`` by a 1 x 1 convolution, and refines them with two 3 x 3
convolutions; then a 1 x 1 classifier and a bilinear resize to the input size. Unlike the paper, the encoder is
a ResNet rather than an aligned Xception, the convolutions are not depth-wise separable, and the pyramid has no
image-level pooling branch (``SimpleASPP`` has none); the default dilations ``(1, 3, 6, 9)`` are the paper's
6, 12, 18 at output stride 16 scaled to a 256-pixel input (a 16 x 16 map).

``fcn`` (Long, Shelhamer & Darrell 2015, FCN-8s): a head on the stride-32 features in place of VGG's fc6/fc7
(a 3 x 3 and a 1 x 1 convolution, each with batch norm and ReLU, then dropout) scores every class; the score
map is upsampled by 2 and added to a score map of the stride-16 features, upsampled by 2 again and added to a
score map of the stride-8 features, then resized to the input size. As in the paper, the two skip score layers
start at zero, so the untrained network is FCN-32s. The paper's in-network upsampling is a deconvolution
initialised to bilinear interpolation (the last one fixed); here each is a fixed bilinear resize to the next
map's size, which lets any input size through.

References:
    Chen, L.-C., Zhu, Y., Papandreou, G., Schroff, F. & Adam, H. (2018). Encoder-decoder with atrous separable
    convolution for semantic image segmentation (DeepLabV3+). ECCV, arXiv:1802.02611.
    Long, J., Shelhamer, E. & Darrell, T. (2015). Fully convolutional networks for semantic segmentation. CVPR,
    arXiv:1411.4038.
    He, K., Zhang, X., Ren, S. & Sun, J. (2016). Deep residual learning for image recognition. CVPR,
    doi:10.1109/CVPR.2016.90.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from breastdx.models.network_registry import register_network

__all__ = ["DeepLabV3Plus", "FCN8s", "ResNetEncoder", "deeplabv3plus", "fcn"]

BACKBONES = ("resnet10", "resnet18", "resnet34", "resnet50")
"""MONAI ResNet depths the encoder takes (``monai.networks.nets.resnet.resnet_params``)."""


def _resize(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Bilinear resize of ``(B, C, h, w)`` to ``(B, C, *size)``; a no-op when the size is already right."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


def _dilate_stage(stage: nn.Module, dilation: int, previous: int) -> None:
    """Make a strided ResNet stage keep its input's resolution: stride 1, 3 x 3 convolutions dilated instead.

    The first 3 x 3 convolution keeps the dilation of the stage before (``previous``) and the others get
    ``dilation``, as torchvision's ``replace_stride_with_dilation`` does; the 1 x 1 shortcut loses its stride too.
    """
    first = True
    for conv in (m for m in stage.modules() if isinstance(m, nn.Conv2d)):
        conv.stride = (1, 1)
        if conv.kernel_size == (3, 3):
            d = previous if first else dilation
            first = False
            conv.dilation, conv.padding = (d, d), (d, d)


class ResNetEncoder(nn.Module):
    """Multi-scale features of a MONAI ``ResNet`` (ImageNet stem: 7 x 7 stride-2 convolution and max-pooling).

    Shape:
        ``(B, in_channels, H, W)`` float -> a list of four maps, ``(B, channels[k], ceil(H / s_k), ceil(W / s_k))``
        with strides ``s = (4, 8, 16, 32)`` for ``output_stride=32``, ``(4, 8, 16, 16)`` for 16 and
        ``(4, 8, 8, 8)`` for 8 (each stride-2 step rounds up).

    Args:
        in_channels: Input channels.
        backbone: One of :data:`BACKBONES` (blocks per stage and block type as in MONAI's ``resnet_params``).
        width: Channels of the first stage; the stages have ``width * (1, 2, 4, 8)`` times the block's expansion
            (1 for the basic block of resnet10/18/34, 4 for the bottleneck of resnet50).
        output_stride: 32 (no dilation), 16 (last stage dilated by 2) or 8 (the last two by 2 and 4).

    Raises:
        ValueError: For an unknown ``backbone``, a ``width`` below 1 or another ``output_stride``.

    Attributes:
        resnet: The MONAI ``ResNet`` (``feed_forward=False``: no classification layer); 1 x 1 convolution +
            batch norm shortcuts (type ``"B"``).
        channels: Channels of the four maps.
    """

    def __init__(self, in_channels: int, backbone: str = "resnet18", width: int = 32, output_stride: int = 32) -> None:
        super().__init__()
        from monai.networks.nets.resnet import ResNet, ResNetBlock, ResNetBottleneck, resnet_params

        if backbone not in BACKBONES:
            raise ValueError(f"backbone must be one of {', '.join(BACKBONES)}, got {backbone!r}.")
        if int(width) < 1:
            raise ValueError(f"width must be at least 1, got {width}.")
        if output_stride not in (8, 16, 32):
            raise ValueError(f"output_stride must be 8, 16 or 32, got {output_stride}.")
        block, layers = resnet_params[backbone][:2]
        expansion = (ResNetBottleneck if block == "bottleneck" else ResNetBlock).expansion
        planes = [int(width) * m for m in (1, 2, 4, 8)]
        self.resnet = ResNet(block, list(layers), planes, spatial_dims=2, n_input_channels=int(in_channels),
                             conv1_t_size=7, conv1_t_stride=2, shortcut_type="B", bias_downsample=False,
                             feed_forward=False)
        if output_stride <= 16:
            _dilate_stage(self.resnet.layer4, 2 if output_stride == 16 else 4, 1 if output_stride == 16 else 2)
        if output_stride == 8:
            _dilate_stage(self.resnet.layer3, 2, 1)
        self.channels = tuple(p * expansion for p in planes)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The four stage outputs, from stride 4 to the deepest (see the class's Shape)."""
        r = self.resnet
        x = r.maxpool(r.act(r.bn1(r.conv1(x))))
        out = []
        for stage in (r.layer1, r.layer2, r.layer3, r.layer4):
            x = stage(x)
            out.append(x)
        return out


class DeepLabV3Plus(nn.Module):
    """DeepLabV3+ on a MONAI ResNet encoder with MONAI's ``SimpleASPP`` (see the module docstring).

    Shape:
        ``(B, in_channels, H, W)`` float32 (or bfloat16 under autocast) -> ``(B, out_channels, H, W)`` logits
        of the same dtype; any ``H, W >= 1``.

    Args:
        in_channels: Input channels.
        out_channels: Classes (2 for background, lesion).
        backbone: Encoder depth, one of :data:`BACKBONES`.
        width: Channels of the encoder's first stage.
        output_stride: 16 or 8: the stride of the features the pyramid sees.
        aspp_channels: Channels of each of the four pyramid branches (the pyramid outputs four times as many).
        aspp_dilations: Dilations of the four branches (the first, with a 1 x 1 kernel, is 1 in the paper).
        low_level_channels: Channels the stride-4 features are reduced to before fusion (48 in the paper).
        decoder_channels: Channels of the decoder's two 3 x 3 convolutions (256 in the paper).
        dropout: Dropout probability after the pyramid and before the classifier.

    Raises:
        ValueError: For an unknown backbone, an output stride other than 8 or 16, four dilations not given, or
            a channel count below 1.
    """

    def __init__(self, in_channels: int, out_channels: int, backbone: str = "resnet18", width: int = 32,
                 output_stride: int = 16, aspp_channels: int = 64, aspp_dilations: Sequence[int] = (1, 3, 6, 9),
                 low_level_channels: int = 48, decoder_channels: int = 64, dropout: float = 0.1) -> None:
        super().__init__()
        from monai.networks.blocks import Convolution, SimpleASPP

        if output_stride not in (8, 16):
            raise ValueError(f"DeepLabV3+ output_stride must be 8 or 16, got {output_stride}.")
        if len(aspp_dilations) != 4:
            raise ValueError(f"aspp_dilations must be four numbers, got {list(aspp_dilations)}.")
        if min(aspp_channels, low_level_channels, decoder_channels) < 1:
            raise ValueError("aspp_channels, low_level_channels and decoder_channels must be at least 1, got "
                             f"{aspp_channels}, {low_level_channels}, {decoder_channels}.")
        self.encoder = ResNetEncoder(in_channels, backbone, width, output_stride)
        c_low, c_deep = self.encoder.channels[0], self.encoder.channels[3]
        self.aspp = SimpleASPP(2, c_deep, aspp_channels, kernel_sizes=(1, 3, 3, 3),
                               dilations=tuple(int(d) for d in aspp_dilations), norm_type="BATCH", acti_type="RELU")
        self.aspp_dropout = nn.Dropout(float(dropout))

        def conv(c_in: int, c_out: int, k: int) -> nn.Module:
            return Convolution(2, c_in, c_out, kernel_size=k, act="RELU", norm="BATCH", bias=False)

        self.low_level = conv(c_low, low_level_channels, 1)
        self.decoder = nn.Sequential(conv(4 * aspp_channels + low_level_channels, decoder_channels, 3),
                                     conv(decoder_channels, decoder_channels, 3), nn.Dropout(float(dropout)))
        self.classifier = nn.Conv2d(decoder_channels, out_channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Per-pixel logits ``(B, out_channels, H, W)`` of images ``(B, in_channels, H, W)``."""
        low, _, _, deep = self.encoder(x)
        y = _resize(self.aspp_dropout(self.aspp(deep)), low.shape[-2:])
        y = self.decoder(torch.cat([y, self.low_level(low)], dim=1))
        return _resize(self.classifier(y), x.shape[-2:])


class FCN8s(nn.Module):
    """FCN-8s on a MONAI ResNet encoder: score maps at strides 32, 16 and 8 fused by addition.

    Shape:
        ``(B, in_channels, H, W)`` float32 (or bfloat16 under autocast) -> ``(B, out_channels, H, W)`` logits
        of the same dtype; any ``H, W >= 1``.

    Args:
        in_channels: Input channels.
        out_channels: Classes.
        backbone: Encoder depth, one of :data:`BACKBONES`.
        width: Channels of the encoder's first stage.
        head_channels: Channels of the head on the stride-32 features (fc6/fc7 of the paper, 4096 there).
        dropout: Dropout probability after the head (0.5 in the paper).

    Raises:
        ValueError: For an unknown backbone or a channel count below 1.

    Attributes:
        score32, score16, score8: 1 x 1 convolutions giving class scores at strides 32, 16 and 8; the last two
            start at zero.
    """

    def __init__(self, in_channels: int, out_channels: int, backbone: str = "resnet18", width: int = 32,
                 head_channels: int = 256, dropout: float = 0.1) -> None:
        super().__init__()
        from monai.networks.blocks import Convolution

        if int(head_channels) < 1:
            raise ValueError(f"head_channels must be at least 1, got {head_channels}.")
        self.encoder = ResNetEncoder(in_channels, backbone, width, output_stride=32)
        _, c8, c16, c32 = self.encoder.channels
        self.head = nn.Sequential(
            Convolution(2, c32, head_channels, kernel_size=3, act="RELU", norm="BATCH", bias=False),
            Convolution(2, head_channels, head_channels, kernel_size=1, act="RELU", norm="BATCH", bias=False),
            nn.Dropout(float(dropout)))
        self.score32 = nn.Conv2d(head_channels, out_channels, kernel_size=1)
        self.score16 = nn.Conv2d(c16, out_channels, kernel_size=1)
        self.score8 = nn.Conv2d(c8, out_channels, kernel_size=1)
        for layer in (self.score16, self.score8):  # FCN-8s: the skips start at zero (Long et al. 2015, sec. 4.2)
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Per-pixel logits ``(B, out_channels, H, W)`` of images ``(B, in_channels, H, W)``."""
        _, f8, f16, f32 = self.encoder(x)
        y = self.score32(self.head(f32))
        y = _resize(y, f16.shape[-2:]) + self.score16(f16)
        y = _resize(y, f8.shape[-2:]) + self.score8(f8)
        return _resize(y, x.shape[-2:])


@register_network("deeplabv3plus", kind="segmentation")
def deeplabv3plus(in_channels: int, out_channels: int, *, backbone: str = "resnet18", width: int = 32,
                  output_stride: int = 16, aspp_channels: int = 64, aspp_dilations: Sequence[int] = (1, 3, 6, 9),
                  low_level_channels: int = 48, decoder_channels: int = 64, dropout: float = 0.1) -> nn.Module:
    """DeepLabV3+ on a MONAI ResNet-18 (width 32) with ``SimpleASPP``, random initial weights (:class:`DeepLabV3Plus`).

    Shape:
        ``(B, in_channels, H, W) -> (B, out_channels, H, W)`` logits; any size (bilinear resize to the input).

    Args:
        in_channels: Input channels.
        out_channels: Classes.
        backbone: ``resnet10``, ``resnet18``, ``resnet34`` or ``resnet50``.
        width: Channels of the encoder's first stage (64 in the ImageNet ResNet).
        output_stride: 16 or 8.
        aspp_channels: Channels of each pyramid branch.
        aspp_dilations: Dilations of the four pyramid branches.
        low_level_channels: Channels of the reduced stride-4 features.
        decoder_channels: Channels of the decoder's 3 x 3 convolutions.
        dropout: Dropout probability after the pyramid and in the decoder.

    References:
        Chen et al. (2018). Encoder-decoder with atrous separable convolution for semantic image segmentation.
        ECCV, arXiv:1802.02611.
    """
    return DeepLabV3Plus(in_channels, out_channels, backbone=str(backbone), width=int(width),
                         output_stride=int(output_stride), aspp_channels=int(aspp_channels),
                         aspp_dilations=tuple(int(d) for d in aspp_dilations),
                         low_level_channels=int(low_level_channels), decoder_channels=int(decoder_channels),
                         dropout=float(dropout))


@register_network("fcn", kind="segmentation")
def fcn(in_channels: int, out_channels: int, *, backbone: str = "resnet18", width: int = 32, head_channels: int = 256,
        dropout: float = 0.1) -> nn.Module:
    """FCN-8s on a MONAI ResNet-18 (width 32), random initial weights (:class:`FCN8s`).

    Shape:
        ``(B, in_channels, H, W) -> (B, out_channels, H, W)`` logits; any size (bilinear resize to the input).

    Args:
        in_channels: Input channels.
        out_channels: Classes.
        backbone: ``resnet10``, ``resnet18``, ``resnet34`` or ``resnet50``.
        width: Channels of the encoder's first stage (64 in the ImageNet ResNet).
        head_channels: Channels of the head on the stride-32 features.
        dropout: Dropout probability after the head.

    References:
        Long, Shelhamer & Darrell (2015). Fully convolutional networks for semantic segmentation. CVPR,
        arXiv:1411.4038.
    """
    return FCN8s(in_channels, out_channels, backbone=str(backbone), width=int(width),
                 head_channels=int(head_channels), dropout=float(dropout))
