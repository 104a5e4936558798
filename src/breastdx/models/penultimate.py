"""The penultimate features of a classifier: the input of its last linear layer, tapped by a forward hook.

Every classification network of :mod:`breastdx.models.networks` ends in a linear layer that maps pooled
features to class logits (``CompactCNN.head``, ``MultiTaskUNet.head``, MONAI ``DenseNet``/``ResNet``/``ViT``
heads). The input of that layer is the representation a feature-space out-of-distribution score reads
(:mod:`breastdx.inference.ood`). :class:`FeatureTap` captures it during any forward pass (the prediction's or
Grad-CAM's), so that the score costs no second pass.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
from torch import nn


def feature_layer(network: nn.Module) -> nn.Linear:
    """The last :class:`torch.nn.Linear` of ``network`` in registration order (its classification layer).

    Raises:
        ValueError: If the network has no linear layer.
    """
    linear = [m for m in network.modules() if isinstance(m, nn.Linear)]
    if not linear:
        raise ValueError(f"{type(network).__name__} has no linear layer, so it has no penultimate features to tap.")
    return linear[-1]


class FeatureTap:
    """Context manager that records the input of a network's last linear layer at every forward pass.

    ``with FeatureTap(net) as tap: net(x1); net(x2)`` leaves ``tap.features()``: float32 ``(n1 + n2, F)`` on
    the CPU, detached; ``F`` is the width of the layer's input (768 for busi-cls's multi-task U-Net, 256 for
    the compact CNN). The hook is removed on exit.

    Args:
        network: A classifier whose logits are ``feature_layer(network)(features)``.

    Raises:
        ValueError: As :func:`feature_layer`.
    """

    def __init__(self, network: nn.Module) -> None:
        self.layer = feature_layer(network)
        self._chunks: list[torch.Tensor] = []
        self._handle: Any = None

    def __enter__(self) -> "FeatureTap":
        self._handle = self.layer.register_forward_pre_hook(self._record)
        return self

    def __exit__(self, *exc: Any) -> None:
        self._handle.remove()

    def _record(self, module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        self._chunks.append(args[0].detach().float().flatten(1).cpu())

    def features(self) -> torch.Tensor:
        """The recorded features, float32 ``(n, F)``, in call order; ``(0, 0)`` when nothing ran."""
        return torch.cat(self._chunks) if self._chunks else torch.zeros((0, 0))


@torch.no_grad()
def penultimate_features(network: nn.Module, batches: Iterable[torch.Tensor]) -> np.ndarray:
    """Penultimate features of every input batch, in one eval-mode forward pass each.

    Args:
        network: A classifier (put in eval mode).
        batches: Network inputs ``(B, C, S, S)``.

    Returns:
        float32 ``(n, F)``, the batches' rows in order (``(0, 0)`` for no batch).

    Raises:
        ValueError: As :func:`feature_layer`.
    """
    network.eval()
    with FeatureTap(network) as tap:
        for x in batches:
            network(x)
    return tap.features().numpy()
