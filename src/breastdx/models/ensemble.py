"""An ensemble of networks as one network: the mean of the members' class probabilities.

``seg_ensemble`` holds several trained segmentation networks (the fold models of a cross-validation, as nnU-Net
ships them: Isensee et al. 2021, doi:10.1038/s41592-020-01008-z) and returns ``log`` of the mean of their softmax
probabilities. ``cls_ensemble`` does the same for classifiers (several seeds of one recipe: Lakshminarayanan et al.
2017, arXiv:1612.01474), each member's logits first divided by its own fitted temperature, so that every member
enters the mean calibrated as it was shipped; its Grad-CAM target is every member's layer
(:class:`breastdx.explain.cam.CamExplainer` averages their maps). The softmax of that output is the mean
probability itself, so every consumer of logits (the predictor's softmax, test-time flipping, ONNX export, bfloat16
autocast) treats the ensemble like any other network. Its ``architecture_args`` name each member's architecture and
resolved arguments, and its ``model.safetensors`` holds the members' weights under ``members.<i>.``, so a model folder rebuilds it from
``meta.json`` alone like any other (:func:`breastdx.pipeline.ensemble.write_ensemble` writes such a folder).

This module imports only the registry, so that :mod:`breastdx.models.networks` can import it to register the name;
the members are built from their registry entries.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from breastdx.models.network_registry import NETWORKS, register_network

PROB_FLOOR = 1e-7
"""Probabilities are floored here before the logarithm, so that the output stays finite."""


def _members(args: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    members = args.get("members") or []
    if not members:  # min_size and the rest would fail with max() of an empty sequence
        raise ValueError("An ensemble needs at least one member: 'members' is empty or missing.")
    out = []
    for i, m in enumerate(members):
        if not isinstance(m, Mapping) or "architecture" not in m:
            raise ValueError(f"Ensemble member {i}: expected a mapping with 'architecture' and "
                             f"'architecture_args', got {m!r}.")
        out.append((str(m["architecture"]), dict(m.get("architecture_args") or {})))
    return out


def _build_members(members: Sequence[Mapping[str, Any]], kind: str, name: str, in_channels: int,
                   out_channels: int) -> list[nn.Module]:
    """Build each member from its registry entry; every one must be a single network of ``kind``."""
    built = []
    for i, (arch, kwargs) in enumerate(_members({"members": members})):
        entry = NETWORKS.get(arch)
        if entry.kind != kind or arch in ("seg_ensemble", "cls_ensemble"):
            raise ValueError(f"{name} member {i}: {arch!r} is not a single {kind} network.")
        built.append(entry.factory(int(in_channels), int(out_channels), **kwargs))
    return built


def _min_size(args: Mapping[str, Any]) -> int:
    return max(int(NETWORKS.get(a).resolve("min_size", kw)) for a, kw in _members(args))


def _size_multiple(args: Mapping[str, Any]) -> int:
    return math.lcm(*(int(NETWORKS.get(a).resolve("size_multiple", kw)) for a, kw in _members(args)))


class MeanProbabilityEnsemble(nn.Module):
    """The mean of the members' softmax probabilities, returned as its logarithm.

    Shape:
        ``(B, C_in, H, W) -> (B, C_out, H, W)`` (segmenters) or ``(B, K)`` (classifiers), float32:
        ``log(mean_k softmax(member_k(x) / T_k))``, floored at ``log(1e-7)``; its softmax over dimension 1 is the mean
        probability.

    Args:
        members: The trained member networks, each returning logits ``(B, C_out, H, W)`` or ``(B, K)``.
        temperatures: One positive float per member; its logits are divided by it before the softmax (None: 1).

    Raises:
        ValueError: If ``members`` is empty, or ``temperatures`` is not one positive value per member.
    """

    def __init__(self, members: Sequence[nn.Module], temperatures: Sequence[float] | None = None) -> None:
        super().__init__()
        if not members:
            raise ValueError("An ensemble needs at least one member network.")
        self.members = nn.ModuleList(members)
        temps = [1.0] * len(members) if temperatures is None else [float(t) for t in temperatures]
        if len(temps) != len(members) or not all(t > 0 for t in temps):
            raise ValueError(f"An ensemble of {len(members)} members needs one positive temperature each, got {temps}.")
        self.temperatures = temps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        prob = torch.stack([torch.softmax(m(x).float() / t, dim=1)
                            for m, t in zip(self.members, self.temperatures)]).mean(0)
        return torch.log(prob.clamp_min(PROB_FLOOR))


@register_network("seg_ensemble", kind="segmentation", min_size=_min_size, size_multiple=_size_multiple,
                  trainable=False)
def seg_ensemble(in_channels: int, out_channels: int, *,
                 members: Sequence[Mapping[str, Any]] = ()) -> nn.Module:
    """Mean-probability ensemble of registered segmentation networks (:class:`MeanProbabilityEnsemble`).

    Args:
        in_channels: Input channels of every member.
        out_channels: Output channels of every member (2: background, lesion).
        members: One ``{"architecture": name, "architecture_args": {...}}`` per member, the arguments resolved
            (as a member's ``meta.json`` holds them).

    Raises:
        ValueError: If ``members`` is empty or malformed, or a member is not a segmentation network.
        UnknownNameError: If a member's architecture is not registered.
    """
    return MeanProbabilityEnsemble(_build_members(members, "segmentation", "seg_ensemble", in_channels, out_channels))


def _cls_gradcam_layers(args: Mapping[str, Any]) -> str:
    layers = []
    for i, (arch, kw) in enumerate(_members(args)):
        layer = NETWORKS.get(arch).resolve("gradcam_layer", kw)
        if not layer:
            raise ValueError(f"cls_ensemble member {i}: {arch!r} names no Grad-CAM target layer.")
        layers.append(f"members.{i}.{layer}")
    return ",".join(layers)


@register_network("cls_ensemble", kind="classification", gradcam_layer=_cls_gradcam_layers, min_size=_min_size,
                  size_multiple=_size_multiple, trainable=False)
def cls_ensemble(in_channels: int, out_channels: int, *, members: Sequence[Mapping[str, Any]] = (),
                 temperatures: Sequence[float] | None = None) -> nn.Module:
    """Mean-probability ensemble of registered classifiers (:class:`MeanProbabilityEnsemble`), ``(B, C_in, S, S) ->
    (B, K)`` float32 ``log(mean_k softmax(member_k(x) / T_k))``.

    Its Grad-CAM target (``gradcam_layer`` of the network and of the registry entry) is every member's target layer,
    comma-separated (``members.0.stages.3,members.1.stages.3,...``); the explainer averages the members' maps of the
    ensemble's class score. The out-of-distribution tap (:func:`breastdx.models.penultimate.feature_layer`, the last
    linear layer) reads the last member's features.

    Args:
        in_channels: Input channels of every member.
        out_channels: Classes of every member.
        members: One ``{"architecture": name, "architecture_args": {...}}`` per member, the arguments resolved.
        temperatures: Each member's fitted temperature (its ``meta.json`` ``temperature``); None: 1 for all.

    Raises:
        ValueError: If ``members`` is empty or malformed, a member is not a single classifier or names no Grad-CAM
            layer, or the temperatures do not match the members.
        UnknownNameError: If a member's architecture is not registered.
    """
    built = _build_members(members, "classification", "cls_ensemble", in_channels, out_channels)
    net = MeanProbabilityEnsemble(built, temperatures)
    net.gradcam_layer = _cls_gradcam_layers({"members": members})
    return net
