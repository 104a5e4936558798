"""The network registry: one frozen record per network, filled by a decorator.

This module sits below every module that defines a network (``networks.py``, ``compact_cnn.py``,
``multitask.py``) and imports none of them, so that registering a network never imports the registry's
users back. Look networks up through :mod:`breastdx.models.networks`, which imports every defining module
and so holds every name whichever module was imported first.

A :class:`NetworkEntry` keeps every fact about a network that is not in its weights: what it outputs,
its Grad-CAM target layer, and which image sizes it accepts (like timm's model registry with its
``PretrainedCfg``). A fact that depends on the network's arguments (the target layer of a
``compact_cnn`` with three stages, the size multiple of a U-Net with other strides) is given as a
function of the resolved arguments (:func:`breastdx.models.networks.network_args`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Literal, Mapping, Union

from torch import nn

from breastdx.registry import Registry

NetworkFactory = Callable[..., nn.Module]
"""``factory(in_channels, out_channels, **args) -> nn.Module``; every ``args`` value is JSON data."""

ArgsRule = Callable[[Mapping[str, Any]], Any]
"""A fact computed from the network's resolved arguments (every keyword argument, defaults filled in)."""

NetworkKind = Literal["segmentation", "classification"]


@dataclass(frozen=True)
class NetworkEntry:
    """What breastdx knows about one registered network.

    Attributes:
        name: Registry name (``--arch``/``--archs``, ``meta.json``'s ``architecture``).
        factory: ``factory(in_channels, out_channels, **args) -> nn.Module``, random initial weights; every
            network is 2-D and takes any ``in_channels >= 1``.
        kind: ``"segmentation"``: ``(B, C_in, H, W) -> (B, C_out, H, W)`` per-pixel logits;
            ``"classification"``: ``(B, C_in, H, W) -> (B, C_out)`` class logits.
        gradcam_layer: Name (as in ``named_modules()``) of the Grad-CAM target layer, or a function of the
            resolved arguments that returns it; None for a network without one (every segmentation network).
        min_size: Smallest height and width, in pixels, that the network runs on (int, or a function of the
            arguments); measured with the default arguments where a constant.
        size_multiple: Height and width must be multiples of this (1: any size), or a function of the
            arguments that returns it.
        trainable: False for a network built from trained models (the ensembles of :mod:`breastdx.models.ensemble`),
            which ``--arch``/``--archs`` refuse.
    """

    name: str
    factory: NetworkFactory
    kind: NetworkKind
    gradcam_layer: str | ArgsRule | None = None
    min_size: Union[int, ArgsRule] = 1
    size_multiple: Union[int, ArgsRule] = 1
    trainable: bool = True

    def resolve(self, fact: str, args: Mapping[str, Any]) -> Any:
        """The value of fact ``fact`` ("gradcam_layer", "min_size", "size_multiple") for resolved ``args``."""
        value = getattr(self, fact)
        return value(args) if callable(value) else value


NETWORKS: Registry[NetworkEntry] = Registry("network")
"""Network records by name; complete only once :mod:`breastdx.models.networks` is imported."""


def register_network(name: str, *, kind: NetworkKind, gradcam_layer: str | ArgsRule | None = None,
                     min_size: Union[int, ArgsRule] = 1,
                     size_multiple: Union[int, ArgsRule] = 1,
                     trainable: bool = True) -> Callable[[NetworkFactory], NetworkFactory]:
    """Decorator that registers a factory as :class:`NetworkEntry` ``name`` and returns the factory unchanged.

    Args:
        name: Registry name.
        kind: "segmentation" or "classification".
        gradcam_layer: Grad-CAM target layer (or a function of the arguments); None for none.
        min_size: Smallest height and width in pixels (or a function of the arguments).
        size_multiple: Height and width must be multiples of this (or a function of the arguments).
        trainable: False for a network built from trained models (an ensemble).

    Raises:
        ValueError: If ``name`` is already registered, or ``kind`` is neither kind.
    """
    if kind not in ("segmentation", "classification"):
        raise ValueError(f"Network {name!r}: kind must be 'segmentation' or 'classification', got {kind!r}.")

    def decorator(factory: NetworkFactory) -> NetworkFactory:
        NETWORKS.register(name)(NetworkEntry(name, factory, kind, gradcam_layer, min_size, size_multiple,
                                              trainable))
        return factory

    return decorator
