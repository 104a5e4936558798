"""Network factories by name (MONAI underneath): segmentation networks and classification backbones.

Every factory takes ``in_channels``, ``out_channels`` and keyword arguments whose values are plain
JSON data (numbers, strings, lists), so that :func:`build_network` can return the resolved arguments for
``meta.json`` and a model folder rebuilds the same network from them alone. All networks are 2D and
start from random weights (``pretrained=False``): nothing is downloaded.

:data:`NETWORKS` holds one :class:`~breastdx.models.network_registry.NetworkEntry` per name, with the facts
that are not in the weights (kind, Grad-CAM target layer, smallest image size, size multiple); read them
with :func:`gradcam_layer` and :func:`check_input_size` (both resolve the network's arguments first) or
``NETWORKS.get(name)``. Add a network with
:func:`~breastdx.models.network_registry.register_network` in its own module and import that module here.

Example:
    >>> net, args = build_network("unet", in_channels=1, out_channels=2)
    >>> args["channels"]
    [16, 32, 64, 128, 256]
    >>> vit, args = build_network("vit", 3, 2, image_size=48)  # transformers are built for one input size
    >>> args["image_size"], args["patch_size"]
    (48, 8)
"""

from __future__ import annotations

import inspect
import math
from typing import Any, Mapping, Sequence

from torch import nn

# Networks defined in their own modules register themselves on import; importing them here (one way: they
# import only network_registry) makes NETWORKS complete whichever module a task, the predictor or the
# service imports first.
from breastdx.models import compact_cnn as _compact_cnn  # noqa: F401  ("compact_cnn")
from breastdx.models import ensemble as _ensemble  # noqa: F401  ("seg_ensemble")
from breastdx.models import multitask as _multitask  # noqa: F401  ("unet_multitask")
from breastdx.models import resnet_segmentation as _resnet_segmentation  # noqa: F401  ("deeplabv3plus", "fcn")
from breastdx.models import transformers as _transformers  # noqa: F401  ("vit", "swin")
from breastdx.models.network_registry import NETWORKS, NetworkEntry, NetworkFactory, register_network

__all__ = ["CLASSIFICATION_NETWORKS", "NETWORKS", "SEGMENTATION_NETWORKS", "NetworkEntry", "NetworkFactory",
           "build_network", "check_input_size", "count_parameters", "gradcam_layer", "network_args", "with_image_size"]

SEGMENTATION_NETWORKS = ("unet", "attention_unet", "segresnet", "basic_unetplusplus", "deeplabv3plus", "fcn")
"""Names of the networks that map ``(B, C_in, H, W)`` to per-pixel logits ``(B, C_out, H, W)``: MONAI's, and
DeepLabV3+ and FCN-8s built from MONAI blocks (:mod:`breastdx.models.resnet_segmentation`)."""

CLASSIFICATION_NETWORKS = ("densenet121", "resnet18", "resnet50", "efficientnet_b0")
"""Names of the MONAI networks that map ``(B, C_in, H, W)`` to class logits ``(B, C_out)`` (``compact_cnn`` and
``unet_multitask`` are classifiers too; :attr:`NetworkEntry.kind` says it of every name)."""


def _stride_product(args: Mapping[str, Any]) -> int:
    return math.prod(int(s) for s in args["strides"])


def _twice_stride_product(args: Mapping[str, Any]) -> int:
    # instance normalisation needs more than one pixel at the deepest level
    return 2 * _stride_product(args)


def _ints(values: Sequence[int]) -> tuple[int, ...]:
    return tuple(int(v) for v in values)


def _check_lengths(name: str, longer: str, values: Sequence[int], shorter: str, others: Sequence[int],
                   minimum: int = 1, levels: int = 2) -> None:
    """Refuse ``others`` unless it has one entry fewer than ``values``: MONAI's ``UNet`` and ``AttentionUnet`` ignore
    extra strides (the size facts, computed from all of them, would then be wrong) and fail on too few, and
    ``SegResNet`` builds with any ``blocks_up`` and fails only when called. Every entry must be at least ``minimum``
    (a stride of 0 built a U-Net that failed when called; a SegResNet level may have 0 residual blocks)."""
    for what, seq in ((longer, values), (shorter, others)):
        if any(int(v) < minimum for v in seq):
            raise ValueError(f"Network {name!r}: {what} must be integers >= {minimum}; got {what}={list(seq)}.")
    if len(values) < levels:
        raise ValueError(f"Network {name!r}: {longer} needs at least {levels} entries (levels); got {list(values)}.")
    if len(others) != len(values) - 1:
        raise ValueError(f"Network {name!r}: {shorter} needs one entry fewer than {longer} ({len(values) - 1} for "
                         f"{longer}={list(values)}); got {shorter}={list(others)}.")


# ----------------------------------------------------------------------------------------- segmentation
@register_network("unet", kind="segmentation", min_size=_twice_stride_product, size_multiple=_stride_product)
def unet(in_channels: int, out_channels: int, *, channels: Sequence[int] = (16, 32, 64, 128, 256),
         strides: Sequence[int] = (2, 2, 2, 2), num_res_units: int = 2, norm: str = "instance",
         dropout: float = 0.0) -> nn.Module:
    """Residual U-Net (MONAI ``UNet``).

    Shape:
        ``(B, in_channels, H, W) -> (B, out_channels, H, W)``; ``H`` and ``W`` divisible by the product of
        ``strides`` (16 by default).

    Args:
        in_channels: Input channels (1 for grey-scale ultrasound).
        out_channels: Output channels (2: background, lesion).
        channels: Feature channels per level, from the top.
        strides: Down-sampling stride between levels (one fewer than ``channels``).
        num_res_units: Residual units per block (0 gives plain convolution blocks).
        norm: Normalisation layer ("instance", "batch").
        dropout: Dropout probability.

    Raises:
        ValueError: If ``channels`` has fewer than two entries, ``strides`` not one fewer, or an entry is below 1.

    References:
        Ronneberger, Fischer & Brox (2015). U-Net. MICCAI, doi:10.1007/978-3-319-24574-4_28.
        Kerfoot et al. (2019). Left-ventricle quantification using residual U-Net. STACOM,
        doi:10.1007/978-3-030-12029-0_40.
    """
    from monai.networks.nets import UNet

    _check_lengths("unet", "channels", channels, "strides", strides)
    return UNet(spatial_dims=2, in_channels=in_channels, out_channels=out_channels, channels=_ints(channels),
                strides=_ints(strides), num_res_units=int(num_res_units), norm=norm, dropout=float(dropout))


@register_network("attention_unet", kind="segmentation", min_size=_stride_product, size_multiple=_stride_product)
def attention_unet(in_channels: int, out_channels: int, *, channels: Sequence[int] = (16, 32, 64, 128, 256),
                   strides: Sequence[int] = (2, 2, 2, 2), dropout: float = 0.0) -> nn.Module:
    """U-Net with attention gates on the skip connections (MONAI ``AttentionUnet``).

    Shape:
        ``(B, in_channels, H, W) -> (B, out_channels, H, W)``; ``H``, ``W`` divisible by the product of ``strides``.

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        channels: Feature channels per level.
        strides: Down-sampling strides (one fewer than ``channels``).
        dropout: Dropout probability.

    Raises:
        ValueError: If ``channels`` has fewer than two entries, ``strides`` not one fewer, or an entry is below 1.

    References:
        Oktay et al. (2018). Attention U-Net: learning where to look for the pancreas. MIDL, arXiv:1804.03999.
    """
    from monai.networks.nets import AttentionUnet

    _check_lengths("attention_unet", "channels", channels, "strides", strides)
    return AttentionUnet(spatial_dims=2, in_channels=in_channels, out_channels=out_channels,
                         channels=_ints(channels), strides=_ints(strides), dropout=float(dropout))


@register_network("segresnet", kind="segmentation", min_size=lambda a: 2 ** (len(a["blocks_down"]) - 1),
                  size_multiple=lambda a: 2 ** (len(a["blocks_down"]) - 1))
def segresnet(in_channels: int, out_channels: int, *, init_filters: int = 16,
              blocks_down: Sequence[int] = (1, 2, 2, 4), blocks_up: Sequence[int] = (1, 1, 1),
              dropout: float = 0.0) -> nn.Module:
    """Residual encoder-decoder with group normalisation (MONAI ``SegResNet``, without the VAE branch).

    Shape:
        ``(B, in_channels, H, W) -> (B, out_channels, H, W)``; ``H``, ``W`` divisible by ``2 ** (len(blocks_down) - 1)``.

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        init_filters: Channels of the first level (doubled at each level down).
        blocks_down: Residual blocks per encoder level.
        blocks_up: Residual blocks per decoder level (one fewer than ``blocks_down``).
        dropout: Dropout probability after the first convolution (0 for none).

    Raises:
        ValueError: If ``blocks_up`` does not have one entry fewer than ``blocks_down``, a block count is negative,
            or ``init_filters`` is below 1.

    References:
        Myronenko, A. (2019). 3D MRI brain tumor segmentation using autoencoder regularization. BrainLes,
        doi:10.1007/978-3-030-11726-9_28.
    """
    from monai.networks.nets import SegResNet

    _check_lengths("segresnet", "blocks_down", blocks_down, "blocks_up", blocks_up, minimum=0, levels=1)
    if int(init_filters) < 1:
        raise ValueError(f"Network 'segresnet': init_filters must be a positive integer; got {init_filters}.")
    return SegResNet(spatial_dims=2, init_filters=int(init_filters), in_channels=in_channels,
                     out_channels=out_channels, dropout_prob=float(dropout) or None,
                     blocks_down=_ints(blocks_down), blocks_up=_ints(blocks_up))


@register_network("basic_unetplusplus", kind="segmentation", min_size=32, size_multiple=16)
def basic_unetplusplus(in_channels: int, out_channels: int, *,
                       features: Sequence[int] = (16, 16, 32, 64, 128, 16), dropout: float = 0.0) -> nn.Module:
    """U-Net++ with nested, dense skip pathways (MONAI ``BasicUNetPlusPlus``, no deep supervision).

    Shape:
        ``(B, in_channels, H, W) -> (B, out_channels, H, W)``; ``H``, ``W`` divisible by 16.

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        features: Six numbers: channels of the five encoder levels, then of the last decoder block.
        dropout: Dropout probability.

    References:
        Zhou et al. (2018). UNet++: a nested U-Net architecture for medical image segmentation. DLMIA,
        doi:10.1007/978-3-030-00889-5_1.
    """
    from monai.networks.nets import BasicUNetPlusPlus

    net = BasicUNetPlusPlus(spatial_dims=2, in_channels=in_channels, out_channels=out_channels,
                            features=_ints(features), dropout=float(dropout))
    return _FirstOutput(net)


class _FirstOutput(nn.Module):
    """Return the first tensor of a network that answers with a list (``BasicUNetPlusPlus``)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x):  # noqa: D102 - shape as the wrapped network
        out = self.net(x)
        return out[0] if isinstance(out, (list, tuple)) else out


# --------------------------------------------------------------------------------------- classification
@register_network("densenet121", kind="classification", gradcam_layer="class_layers.relu", min_size=29)
def densenet121(in_channels: int, out_channels: int, *, dropout: float = 0.0) -> nn.Module:
    """DenseNet-121 classifier (MONAI ``DenseNet121``), random initial weights.

    Shape:
        ``(B, in_channels, H, W) -> (B, out_channels)`` logits.

    Raises:
        ValueError: If ``dropout`` is not in [0, 1) (MONAI skips a dropout <= 0 without a word).

    References:
        Huang et al. (2017). Densely connected convolutional networks. CVPR, doi:10.1109/CVPR.2017.243.
    """
    from monai.networks.nets import DenseNet121

    if not 0.0 <= float(dropout) < 1.0:
        raise ValueError(f"Network 'densenet121': dropout must be in [0, 1); got {dropout}.")
    return DenseNet121(spatial_dims=2, in_channels=in_channels, out_channels=out_channels, pretrained=False,
                       dropout_prob=float(dropout))


def _monai_resnet(depth: int) -> NetworkFactory:
    def factory(in_channels: int, out_channels: int) -> nn.Module:
        from monai.networks.nets import resnet

        make = {18: resnet.resnet18, 50: resnet.resnet50}[depth]
        # conv1 7x7 with stride 2 and max-pooling, as in the ImageNet ResNet (MONAI's default stride is 1).
        return make(pretrained=False, spatial_dims=2, n_input_channels=in_channels, num_classes=out_channels,
                    conv1_t_size=7, conv1_t_stride=2)

    factory.__name__ = factory.__qualname__ = f"resnet{depth}"
    factory.__doc__ = f"""ResNet-{depth} classifier (MONAI ``resnet{depth}``, 7x7 stride-2 stem), random initial weights.

    Shape:
        ``(B, in_channels, H, W) -> (B, out_channels)`` logits.

    References:
        He et al. (2016). Deep residual learning for image recognition. CVPR, doi:10.1109/CVPR.2016.90.
    """
    return register_network(f"resnet{depth}", kind="classification", gradcam_layer="layer4")(factory)


resnet18 = _monai_resnet(18)
resnet50 = _monai_resnet(50)


# its ``_swish`` module also runs in the stem, so hooks on it would fire twice: the target is ``_bn1``
@register_network("efficientnet_b0", kind="classification", gradcam_layer="_bn1", min_size=32)
def efficientnet_b0(in_channels: int, out_channels: int) -> nn.Module:
    """EfficientNet-B0 classifier (MONAI ``EfficientNetBN``), random initial weights.

    Shape:
        ``(B, in_channels, H, W) -> (B, out_channels)`` logits.

    References:
        Tan & Le (2019). EfficientNet: rethinking model scaling for CNNs. ICML, arXiv:1905.11946.
    """
    from monai.networks.nets import EfficientNetBN

    return EfficientNetBN("efficientnet-b0", pretrained=False, progress=False, spatial_dims=2,
                          in_channels=in_channels, num_classes=out_channels)


# ------------------------------------------------------------------------------------------------ build
def _plain(value: Any) -> Any:
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    return value


def network_args(name: str, /, **kwargs: Any) -> dict[str, Any]:
    """The keyword arguments of network ``name`` with defaults filled in, as JSON-serialisable data.

    Args:
        name: A registered network name.
        **kwargs: Arguments that differ from the defaults.

    Returns:
        Argument name to value (tuples become lists), every keyword argument of the factory.

    Raises:
        UnknownNameError: If ``name`` is not registered (the message suggests the closest name).
        TypeError: If an argument is not one of the factory's; the message lists those it accepts.
    """
    factory = NETWORKS.get(name).factory
    params = {k: p for k, p in inspect.signature(factory).parameters.items()
              if p.kind is inspect.Parameter.KEYWORD_ONLY}
    unknown = sorted(set(kwargs) - set(params))
    if unknown:
        raise TypeError(f"Network {name!r} has no argument(s) {', '.join(unknown)}; it accepts "
                        f"{', '.join(params) or '(none)'}.")
    return {k: _plain(kwargs.get(k, p.default)) for k, p in params.items()}


def with_image_size(name: str, image_size: int | None, args: Mapping[str, Any]) -> dict[str, Any]:
    """``args`` with ``image_size`` added where network ``name``'s factory takes an ``image_size`` argument.

    The transformers (``vit``, ``swin``) fix their input size when built; the training pipeline passes its
    ``--image-size`` through this function, and the resolved arguments keep it for the model folder.

    Args:
        name: A registered network name.
        image_size: Side of the square network input in pixels, or None (``args`` returned unchanged).
        args: Network arguments that differ from the defaults.

    Returns:
        A new dictionary: ``args``, plus ``image_size`` where the factory takes it.

    Raises:
        UnknownNameError: If ``name`` is not registered.
        ValueError: If ``args`` sets an ``image_size`` other than ``image_size``.
    """
    out = dict(args)
    if image_size is None or "image_size" not in inspect.signature(NETWORKS.get(name).factory).parameters:
        return out
    if "image_size" in out and int(out["image_size"]) != int(image_size):
        raise ValueError(f"Network {name!r}: its argument image_size={out['image_size']} differs from the image size "
                         f"{image_size} of the run; leave it out (the run's size is passed).")
    out["image_size"] = int(image_size)
    return out


def build_network(name: str, /, in_channels: int, out_channels: int,
                  **kwargs: Any) -> tuple[nn.Module, dict[str, Any]]:
    """Create network ``name`` and return it with its resolved arguments.

    ``build_network(name, in_channels, out_channels, **args)`` with the returned ``args`` builds the same
    network again (the weights aside), which is how a model folder is restored from ``meta.json``.

    Args:
        name: A registered network name (see :data:`NETWORKS`).
        in_channels: Input channels.
        out_channels: Output channels (segmentation classes, or classification classes).
        **kwargs: Network arguments that differ from the defaults; ``image_size`` (the input side in pixels) for
            the networks built for one size (``vit``, ``swin``; see :func:`with_image_size`).

    Returns:
        ``(module, args)``: the network with random weights, and every keyword argument as JSON data.

    Raises:
        UnknownNameError: If ``name`` is not registered.
        TypeError: If an argument is unknown to the network.
        ValueError: If ``in_channels`` or ``out_channels`` is below 1.
    """
    if int(in_channels) < 1 or int(out_channels) < 1:
        raise ValueError(f"Network {name!r}: in_channels and out_channels must be at least 1, got "
                         f"{in_channels} and {out_channels}.")
    args = network_args(name, **kwargs)
    module = NETWORKS.get(name).factory(int(in_channels), int(out_channels), **args)
    return module, args


def count_parameters(module: nn.Module) -> int:
    """Number of parameters of ``module`` (trainable or not)."""
    return sum(p.numel() for p in module.parameters())


def gradcam_layer(name: str, /, **kwargs: Any) -> str | None:
    """The Grad-CAM target layer of network ``name`` built with ``kwargs``, from its registry entry.

    Args:
        name: A registered network name.
        **kwargs: Network arguments that differ from the defaults (the layer of ``compact_cnn`` and
            ``unet_multitask`` depends on their depth).

    Returns:
        The layer's name as in ``network.named_modules()``, or None for a network without one (the
        segmentation networks).

    Raises:
        UnknownNameError: If ``name`` is not registered.
        TypeError: If an argument is unknown to the network.
    """
    return NETWORKS.get(name).resolve("gradcam_layer", network_args(name, **kwargs))


def check_input_size(name: str, height: int, width: int, /, **kwargs: Any) -> None:
    """Check that network ``name`` (built with ``kwargs``) runs on images of ``height`` x ``width`` pixels.

    Args:
        name: A registered network name.
        height: Image height in pixels.
        width: Image width in pixels.
        **kwargs: Network arguments that differ from the defaults.

    Raises:
        UnknownNameError: If ``name`` is not registered.
        TypeError: If an argument is unknown to the network.
        ValueError: If a side is below the entry's ``min_size`` or not a multiple of its ``size_multiple``;
            the message gives both rules and the size received.
    """
    entry = NETWORKS.get(name)
    args = network_args(name, **kwargs)
    low, multiple = int(entry.resolve("min_size", args)), int(entry.resolve("size_multiple", args))
    if min(int(height), int(width)) < low or int(height) % multiple or int(width) % multiple:
        rule = f"at least {low} x {low} pixels" + (f", each side a multiple of {multiple}" if multiple > 1 else "")
        raise ValueError(f"Network {name!r} needs images of {rule}; got {height} x {width}.")
