"""Vision transformers for small patches, built from MONAI and trained from scratch on a CPU: ``vit`` and ``swin``.

``vit`` is MONAI's ``ViT`` (Dosovitskiy et al. 2021) with its class token and classification head, in a
ViT-Tiny-like size by default (patch 8, width 192, MLP 768, 6 layers, 3 heads: 2.7 M parameters), so that a
48 x 48 patch is 36 tokens and a 64 x 64 patch 64 tokens. ``swin`` is the hierarchical shifted-window
encoder of MONAI's Swin UNETR (``monai.networks.nets.swin_unetr.SwinTransformer``; Liu et al. 2021,
Hatamizadeh et al. 2022) with a pooled classification head: layer norm of the last stage, global average
pooling, one linear layer.

Both networks fix their input size when built (the ViT's learned position embedding has one entry per patch),
so their factories take ``image_size``; it is kept in the resolved arguments (``meta.json``), and the training
pipeline passes the run's ``--image-size`` (:func:`breastdx.models.networks.with_image_size`).

Grad-CAM needs a spatial map with gradients. ``swin`` has one: the last stage ``backbone.layers4.0``,
``(B, 8 * feature_size, S / 16, S / 16)``. ``vit`` gets one: the patch tokens entering its last transformer
block are reshaped to ``(B, hidden_size, S / patch_size, S / patch_size)`` and passed through the identity
module ``token_map`` (the tokens the class token attends to in the last block; the outputs of the last block
reach the logits only through the class token, so their gradient would be zero), as is usual for ViT
Grad-CAM (Chefer et al. 2021 discuss the alternatives).

References:
    Dosovitskiy, A. et al. (2021). An image is worth 16x16 words: transformers for image recognition at scale.
    ICLR, arXiv:2010.11929.
    Liu, Z. et al. (2021). Swin Transformer: hierarchical vision transformer using shifted windows. ICCV,
    doi:10.1109/ICCV48922.2021.00986.
    Hatamizadeh, A. et al. (2022). Swin UNETR: Swin transformers for semantic segmentation of brain tumors in
    MRI images. BrainLes 2021, doi:10.1007/978-3-031-08999-2_22.
    Chefer, H., Gur, S. & Wolf, L. (2021). Transformer interpretability beyond attention visualization. CVPR,
    doi:10.1109/CVPR46437.2021.00084.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
from torch import nn

from breastdx.models.network_registry import register_network

__all__ = ["SwinClassifier", "ViTClassifier", "swin", "vit"]

SWIN_STAGES = 4
"""Stages of MONAI's ``SwinTransformer`` (fixed there); patch merging halves the side between stages."""


def _check_size(name: str, x: torch.Tensor, image_size: int) -> None:
    if tuple(x.shape[-2:]) != (image_size, image_size):
        raise ValueError(f"Network {name!r} was built for {image_size} x {image_size} images (its 'image_size' "
                         f"argument); got {x.shape[-2]} x {x.shape[-1]}.")


class ViTClassifier(nn.Module):
    """MONAI ``ViT`` (class token, classification head) returning logits only, with a spatial map of patch tokens.

    Shape:
        ``(B, in_channels, S, S)`` float32 -> ``(B, out_channels)`` float32 logits; ``S == image_size``, a
        multiple of ``patch_size``.

    Args:
        in_channels: Input channels.
        out_channels: Classes.
        image_size: Side ``S`` of the square input, fixed at build time.
        patch_size: Side of the square patches (tokens); ``image_size`` must be a multiple of it.
        hidden_size: Token width.
        mlp_dim: Hidden width of each transformer block's MLP.
        num_layers: Transformer blocks (at least 1).
        num_heads: Attention heads; ``hidden_size`` must be a multiple of it.
        dropout: Dropout rate of the embedding and the blocks.

    Raises:
        ValueError: If ``image_size`` is not a positive multiple of ``patch_size``, ``num_layers < 1``, or MONAI
            rejects the arguments (e.g. ``hidden_size`` not a multiple of ``num_heads``).

    Attributes:
        vit: The MONAI ``ViT`` (its ``post_activation`` is None: the head is a plain linear layer, logits).
        token_map: Identity applied to the patch tokens entering the last block, shaped ``(B, hidden_size,
            S / patch_size, S / patch_size)``: the Grad-CAM target layer.
        gradcam_layer: ``"token_map"``, read by :func:`breastdx.explain.gradcam.target_layer`.
    """

    def __init__(self, in_channels: int, out_channels: int, *, image_size: int, patch_size: int = 8,
                 hidden_size: int = 192, mlp_dim: int = 768, num_layers: int = 6, num_heads: int = 3,
                 dropout: float = 0.0) -> None:
        super().__init__()
        from monai.networks.nets import ViT

        image_size, patch_size = int(image_size), int(patch_size)
        if patch_size < 1 or image_size < patch_size or image_size % patch_size:
            raise ValueError(f"vit: image_size must be a positive multiple of patch_size {patch_size}, got "
                             f"{image_size}.")
        if int(num_layers) < 1:
            raise ValueError(f"vit: num_layers must be at least 1, got {num_layers}.")
        self.image_size, self.grid = image_size, image_size // patch_size
        self.vit = ViT(in_channels=int(in_channels), img_size=image_size, patch_size=patch_size,
                       hidden_size=int(hidden_size), mlp_dim=int(mlp_dim), num_layers=int(num_layers),
                       num_heads=int(num_heads), classification=True, num_classes=int(out_channels),
                       dropout_rate=float(dropout), spatial_dims=2, post_activation=None)
        self.token_map = nn.Identity()
        self.gradcam_layer = "token_map"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits ``(B, C, S, S) -> (B, K)`` (MONAI ``ViT.forward`` without the hidden states)."""
        _check_size("vit", x, self.image_size)
        v = self.vit
        t = v.patch_embedding(x)  # (B, N, D), N = grid ** 2
        t = torch.cat((v.cls_token.expand(t.shape[0], -1, -1), t), dim=1)
        for blk in v.blocks[:-1]:
            t = blk(t)
        b, n, d = t.shape
        patches = self.token_map(t[:, 1:].transpose(1, 2).reshape(b, d, self.grid, self.grid))
        t = torch.cat((t[:, :1], patches.flatten(2).transpose(1, 2)), dim=1)
        t = v.norm(v.blocks[-1](t))
        return v.classification_head(t[:, 0])


class SwinClassifier(nn.Module):
    """MONAI's Swin UNETR encoder with a pooled classification head (norm, global average pool, linear).

    MONAI's ``SwinTransformer`` merges patches after every one of its four stages; here the last stage's merging
    is removed, so the four stages run on ``S / p, S / 2p, S / 4p, S / 8p`` tokens a side (``p = patch_size``)
    with ``F, 2F, 4F, 8F`` channels (``F = feature_size``), the layout of Liu et al.'s Swin-T (whose patch is 4;
    2 suits 48-96 pixel patches).

    Shape:
        ``(B, in_channels, S, S)`` float32 -> ``(B, out_channels)`` float32 logits; ``S`` a multiple of
        ``8 * patch_size``.

    Args:
        in_channels: Input channels.
        out_channels: Classes.
        image_size: Side ``S`` of the square input (recorded; the windows adapt to it).
        patch_size: Side of the patches embedded by the first (strided convolution) layer.
        feature_size: Channels ``F`` of the first stage (doubled at each stage).
        depths: Four numbers, Swin blocks per stage.
        num_heads: Four numbers, attention heads per stage (each stage's width a multiple of it).
        window_size: Side of the attention windows (MONAI pads a stage to a multiple of it, and uses the whole
            stage where it is smaller).
        dropout: Dropout rate after the patch embedding and in the blocks.
        drop_path: Stochastic depth rate, reached linearly at the last block.

    Raises:
        ValueError: If ``image_size`` is not a positive multiple of ``8 * patch_size``, ``window_size`` is below 1
            (it failed with a division by zero when called), or ``depths`` / ``num_heads`` do not have four entries.

    Attributes:
        backbone: The MONAI ``SwinTransformer`` (``layers4.0.downsample`` is None).
        norm: Layer norm of the last stage's channels.
        head: Linear layer ``8F -> out_channels``.
        gradcam_layer: ``"backbone.layers4.0"`` (the last stage, ``(B, 8F, S / 8p, S / 8p)``).
    """

    def __init__(self, in_channels: int, out_channels: int, *, image_size: int, patch_size: int = 2,
                 feature_size: int = 24, depths: Sequence[int] = (2, 2, 2, 2),
                 num_heads: Sequence[int] = (3, 6, 12, 24), window_size: int = 4, dropout: float = 0.0,
                 drop_path: float = 0.1) -> None:
        super().__init__()
        from monai.networks.nets.swin_unetr import SwinTransformer

        image_size, patch_size = int(image_size), int(patch_size)
        multiple = patch_size * 2 ** (SWIN_STAGES - 1)
        if patch_size < 1 or image_size < multiple or image_size % multiple:
            raise ValueError(f"swin: image_size must be a positive multiple of 8 * patch_size = {multiple}, got "
                             f"{image_size}.")
        if int(window_size) < 1:
            raise ValueError(f"swin: window_size must be at least 1, got {window_size}.")
        if len(depths) != SWIN_STAGES or len(num_heads) != SWIN_STAGES:
            raise ValueError(f"swin: depths and num_heads need {SWIN_STAGES} entries each, got {list(depths)} and "
                             f"{list(num_heads)}.")
        self.image_size = image_size
        self.backbone = SwinTransformer(in_chans=int(in_channels), embed_dim=int(feature_size),
                                        window_size=(int(window_size),) * 2, patch_size=(patch_size,) * 2,
                                        depths=[int(d) for d in depths], num_heads=[int(h) for h in num_heads],
                                        drop_rate=float(dropout), attn_drop_rate=0.0,
                                        drop_path_rate=float(drop_path), spatial_dims=2)
        self.backbone.layers4[0].downsample = None  # the last stage is the output: no patch merging after it
        width = int(feature_size) * 2 ** (SWIN_STAGES - 1)
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, int(out_channels))
        self.gradcam_layer = "backbone.layers4.0"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits ``(B, C, S, S) -> (B, K)``."""
        _check_size("swin", x, self.image_size)
        s = self.backbone
        x = s.pos_drop(s.patch_embed(x))
        for stage in (s.layers1, s.layers2, s.layers3, s.layers4):
            x = stage[0](x.contiguous())
        return self.head(self.norm(x.mean(dim=(2, 3))))  # (B, 8F, h, w) -> (B, 8F) -> (B, K)


def _vit_patch(args: Mapping[str, Any]) -> int:
    return int(args["patch_size"])


def _swin_multiple(args: Mapping[str, Any]) -> int:
    return int(args["patch_size"]) * 2 ** (SWIN_STAGES - 1)


@register_network("vit", kind="classification", gradcam_layer="token_map", min_size=_vit_patch,
                  size_multiple=_vit_patch)
def vit(in_channels: int, out_channels: int, *, image_size: int = 64, patch_size: int = 8, hidden_size: int = 192,
        mlp_dim: int = 768, num_layers: int = 6, num_heads: int = 3, dropout: float = 0.0) -> nn.Module:
    """Vision transformer classifier (MONAI ``ViT``, ViT-Tiny-like defaults), random initial weights.

    See :class:`ViTClassifier`.

    Shape:
        ``(B, in_channels, image_size, image_size)`` float32 -> ``(B, out_channels)`` logits.

    Args:
        in_channels: Input channels.
        out_channels: Classes.
        image_size: Input side in pixels, a multiple of ``patch_size`` (the pipeline passes ``--image-size``).
        patch_size: Patch side in pixels.
        hidden_size: Token width.
        mlp_dim: MLP width of each block.
        num_layers: Transformer blocks.
        num_heads: Attention heads (``hidden_size`` a multiple of it).
        dropout: Dropout rate.

    References:
        Dosovitskiy et al. (2021), arXiv:2010.11929.
    """
    return ViTClassifier(in_channels, out_channels, image_size=int(image_size), patch_size=int(patch_size),
                         hidden_size=int(hidden_size), mlp_dim=int(mlp_dim), num_layers=int(num_layers),
                         num_heads=int(num_heads), dropout=float(dropout))


@register_network("swin", kind="classification", gradcam_layer="backbone.layers4.0", min_size=_swin_multiple,
                  size_multiple=_swin_multiple)
def swin(in_channels: int, out_channels: int, *, image_size: int = 64, patch_size: int = 2, feature_size: int = 24,
         depths: Sequence[int] = (2, 2, 2, 2), num_heads: Sequence[int] = (3, 6, 12, 24), window_size: int = 4,
         dropout: float = 0.0, drop_path: float = 0.1) -> nn.Module:
    """Swin transformer classifier (MONAI Swin UNETR encoder + pooled head), random initial weights.

    See :class:`SwinClassifier`.

    Shape:
        ``(B, in_channels, image_size, image_size)`` float32 -> ``(B, out_channels)`` logits.

    Args:
        in_channels: Input channels.
        out_channels: Classes.
        image_size: Input side in pixels, a multiple of ``8 * patch_size`` (the pipeline passes ``--image-size``).
        patch_size: Patch side of the embedding.
        feature_size: Channels of the first stage.
        depths: Blocks per stage (four).
        num_heads: Heads per stage (four).
        window_size: Attention window side.
        dropout: Dropout rate.
        drop_path: Stochastic depth rate.

    References:
        Liu et al. (2021), doi:10.1109/ICCV48922.2021.00986; Hatamizadeh et al. (2022),
        doi:10.1007/978-3-031-08999-2_22.
    """
    return SwinClassifier(in_channels, out_channels, image_size=int(image_size), patch_size=int(patch_size),
                          feature_size=int(feature_size), depths=tuple(int(d) for d in depths),
                          num_heads=tuple(int(h) for h in num_heads), window_size=int(window_size),
                          dropout=float(dropout), drop_path=float(drop_path))
