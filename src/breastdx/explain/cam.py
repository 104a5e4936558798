"""Grad-CAM / Grad-CAM++ on a classifier through MONAI, with per-image class scores and a short backward pass.

Split from :mod:`breastdx.explain.gradcam` (which re-exports :class:`CamExplainer`) so that importing the
rendering helpers does not import MONAI.
"""

from __future__ import annotations

import warnings
from typing import Any, Sequence

import numpy as np
import torch
from monai.visualize.class_activation_maps import GradCAM, GradCAMpp, ModelWithHooks
from torch import nn

from breastdx.explain.gradcam import CAM_METHODS, target_layer, upsample_map


class _PerImageHooks(ModelWithHooks):
    """MONAI's ``ModelWithHooks`` with per-image class scores and removable hooks (see the module docstring)."""

    def __init__(self, nn_module: nn.Module, layers: str | Sequence[str],  # noqa: D107
                 leaf_at_layer: bool = False) -> None:
        self.model = nn_module
        self.target_layers = (layers,) if isinstance(layers, str) else tuple(layers)
        self.gradients: dict[str, torch.Tensor] = {}
        self.activations: dict[str, torch.Tensor] = {}
        self.score: torch.Tensor | None = None
        self.class_idx: torch.Tensor | None = None
        self.register_backward = self.register_forward = True
        self.last_logits: torch.Tensor | None = None
        self.replay = False  # answer from the last pass (one map per target layer from one forward and backward)
        self._last: tuple[Any, ...] | None = None
        modules = dict(nn_module.named_modules())
        self.handles = []
        for layer in self.target_layers:
            if layer not in modules:
                raise ValueError(f"Grad-CAM target layer {layer!r} is not a module of {type(nn_module).__name__}.")
            mod = modules[layer]
            if getattr(mod, "inplace", False):
                mod.inplace = False  # in-place outputs break full backward hooks (as MONAI does)
            if leaf_at_layer:  # the graph starts at the layer's output: backward runs through the layers after it
                self.handles.append(mod.register_forward_hook(self._leaf_forward_hook(layer)))
            else:
                self.handles += [mod.register_full_backward_hook(self.backward_hook(layer)),
                                 mod.register_forward_hook(self.forward_hook(layer))]

    def _leaf_forward_hook(self, name: str):
        def _hook(_module, _input, output):
            if not output.requires_grad:  # nothing before the layer needs gradients: make its output the leaf
                output.requires_grad_(True)
            output.register_hook(lambda grad: self.gradients.__setitem__(name, grad))
            self.activations[name] = output

        return _hook

    def remove(self) -> None:
        """Remove the hooks from the network."""
        for h in self.handles:
            h.remove()
        self.handles = []

    def __call__(self, x, class_idx=None, retain_graph=False, **kwargs):  # noqa: D102 - as ModelWithHooks
        if self.replay and self._last is not None:
            return self._last
        train = self.model.training
        if train:  # eval() walks every module: only when needed (prediction networks are already in eval mode)
            self.model.eval()
        logits = self.model(x, **kwargs)
        if callable(class_idx):
            idx = class_idx(logits.detach())
        elif class_idx is None:
            idx = logits.detach().argmax(1)
        else:
            idx = torch.as_tensor(class_idx, device=logits.device).reshape(-1)
        idx = idx.to(logits.device).long()
        if idx.numel() == 1:
            idx = idx.expand(logits.shape[0])
        self.class_idx = idx
        self.last_logits = logits.detach()
        for layer in self.target_layers:
            self.gradients.pop(layer, None)
        self.score = logits.gather(1, idx[:, None]).view(-1, 1, 1, 1)
        self.model.zero_grad(set_to_none=True)
        with warnings.catch_warnings():  # expected: the input does not require gradients
            warnings.filterwarnings("ignore", message="Full backward hook is firing")
            self.score.sum().backward(retain_graph=retain_graph)
        missing = [layer for layer in self.target_layers if layer not in self.gradients]
        if missing:
            raise RuntimeError(f"Grad-CAM: no gradient reached layer {missing[0]!r}; the network's parameters or "
                               f"input must require gradients.")
        if train:
            self.model.train()
        self._last = (logits, tuple(self.activations[k] for k in self.target_layers),
                      tuple(self.gradients[k] for k in self.target_layers))
        return self._last


class _GradCAMpp(GradCAMpp):
    """MONAI's ``GradCAMpp`` with the weights of Eq. 19 of Chattopadhay et al. (2018).

    MONAI's denominator of ``alpha`` is ``2 g_ij^2 + sum_ab (A_ab g_ab^3)``, the same for every position; the paper's
    is ``2 g_ij^2 + (sum_ab A_ab) g_ij^3`` (their code and pytorch-grad-cam compute it so). With ``Y = exp(S)``:
    ``alpha_ij = g_ij^2 / (2 g_ij^2 + (sum_ab A_ab) g_ij^3)``, ``w_k = sum_ij alpha_ij relu(exp(S) g_ij)``, map
    ``relu(sum_k w_k A_k)``. Positions with ``g_ij <= 0`` add nothing to ``w_k`` (their ``relu`` is 0), so ``alpha``
    is only taken where ``g_ij > 0`` (no 0/0 nor a vanishing denominator there). Computed in float32.
    """

    def compute_map(self, x, class_idx=None, retain_graph=False, layer_idx=-1, **kwargs):  # noqa: D102 - as MONAI
        _, acti, grad = self.nn_module(x, class_idx=class_idx, retain_graph=retain_graph, **kwargs)
        acti, grad = acti[layer_idx].float(), grad[layer_idx].float()
        dims = tuple(range(2, grad.ndim))
        g2 = grad.pow(2)
        denom = 2.0 * g2 + acti.sum(dims, keepdim=True) * grad.pow(3)
        positive = grad > 0
        alpha = torch.where(positive, g2 / torch.where(positive, denom, torch.ones_like(denom)), torch.zeros_like(g2))
        score = self.nn_module.score.float().exp().view(-1, *[1] * (grad.ndim - 1))
        weights = (alpha * torch.relu(score * grad)).sum(dims, keepdim=True)
        return torch.relu((weights * acti).sum(1, keepdim=True))


class CamExplainer:
    """Class activation maps of a classifier by Grad-CAM or Grad-CAM++ (MONAI).

    Args:
        network: The classifier ``(B, C, S, S) -> (B, K)``.
        architecture: Its registry name, for :func:`target_layer`.
        method: ``"gradcam"`` or ``"gradcampp"``.
        layer: Target layer name, overriding :func:`target_layer`; several, comma-separated (an ensemble's members,
            ``cls_ensemble``), give the mean of their maps of the same class score, each resized to the first's
            size.
        fast_backward: Let gradients flow only from the target layer's output on: no parameter requires
            gradients any more (a side effect on ``network``, meant for inference-only networks) and the layer's
            output is the leaf of the graph, so the backward pass runs through the layers after it only and
            computes no weight gradient. The maps are the same (the gradient of the score with respect to the
            layer's output).

    Raises:
        ValueError: For an unknown method or layer.
    """

    def __init__(self, network: nn.Module, architecture: str | None = None, method: str = "gradcam",
                 layer: str | None = None, fast_backward: bool = False) -> None:
        if method not in CAM_METHODS:
            raise ValueError(f"Unknown explanation method {method!r}; expected one of {', '.join(CAM_METHODS)}.")
        self.network = network
        self.method = method
        self.layer = layer or target_layer(network, architecture)
        self.layers = tuple(self.layer.split(","))
        self.hooks = _PerImageHooks(network, self.layers, leaf_at_layer=fast_backward)
        cls = GradCAM if method == "gradcam" else _GradCAMpp
        self.cam = cls(nn_module=self.hooks, target_layers=list(self.layers))
        if fast_backward:
            for p in network.parameters():
                p.requires_grad_(False)

    def remove(self) -> None:
        """Remove the hooks this explainer put on the network."""
        self.hooks.remove()

    def raw_maps(self, x: torch.Tensor, class_idx: Any = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Maps at feature-map resolution, before scaling.

        Args:
            x: Network input ``(B, C, S, S)``.
            class_idx: None (argmax), an int, a ``(B,)`` tensor, or a callable ``logits (B, K) -> (B,)``.

        Returns:
            ``(logits (B, K), class index (B,), maps (B, h, w) >= 0)``.
        """
        with torch.enable_grad():
            maps = self.cam.compute_map(x, class_idx=class_idx, layer_idx=0)
        if len(self.layers) > 1:  # the other layers' maps from the same pass, then the mean
            self.hooks.replay = True
            try:
                for k in range(1, len(self.layers)):
                    m = self.cam.compute_map(x, class_idx=class_idx, layer_idx=k)
                    if m.shape[-2:] != maps.shape[-2:]:
                        m = torch.nn.functional.interpolate(m, size=tuple(maps.shape[-2:]), mode="bilinear",
                                                            align_corners=False)
                    maps = maps + m
            finally:
                self.hooks.replay = False
                self.hooks._last = None
            maps = maps / len(self.layers)
        self.hooks._last = None
        return self.hooks.last_logits, self.hooks.class_idx, maps[:, 0].detach()

    def __call__(self, x: torch.Tensor, class_idx: Any = None,
                 sizes: Sequence[tuple[int, int]] | None = None) -> tuple[torch.Tensor, torch.Tensor, list[np.ndarray]]:
        """Maps scaled to [0, 1], at the network input size or at given sizes.

        Args:
            x: Network input ``(B, C, S, S)``.
            class_idx: As :meth:`raw_maps`.
            sizes: ``(H, W)`` per image (original sizes), or None for ``(S, S)``.

        Returns:
            ``(logits (B, K), class index (B,), maps)``: one float32 ``(H, W)`` array in [0, 1] per image.
        """
        logits, idx, maps = self.raw_maps(x, class_idx)
        sizes = list(sizes) if sizes is not None else [tuple(x.shape[-2:])] * x.shape[0]
        return logits, idx, [upsample_map(maps[i], sizes[i]) for i in range(maps.shape[0])]
