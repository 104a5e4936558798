"""An ensemble of segmentation networks as one network: the mean of the members' class probabilities.

``seg_ensemble`` holds several trained segmentation networks (the fold models of a cross-validation, as nnU-Net
ships them: Isensee et al. 2021, doi:10.1038/s41592-020-01008-z) and returns ``log`` of the mean of their softmax
probabilities. The softmax of that output is the mean probability itself, so every consumer of segmentation
logits (the predictor's softmax, test-time flipping, ONNX export, bfloat16 autocast) treats the ensemble like any
other network. Its ``architecture_args`` name each member's architecture and resolved arguments, and its
``model.safetensors`` holds the members' weights under ``members.<i>.``, so a model folder rebuilds it from
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
    out = []
    for i, m in enumerate(members):
        if not isinstance(m, Mapping) or "architecture" not in m:
            raise ValueError(f"seg_ensemble member {i}: expected a mapping with 'architecture' and "
                             f"'architecture_args', got {m!r}.")
        out.append((str(m["architecture"]), dict(m.get("architecture_args") or {})))
    return out


def _min_size(args: Mapping[str, Any]) -> int:
    return max(int(NETWORKS.get(a).resolve("min_size", kw)) for a, kw in _members(args))


def _size_multiple(args: Mapping[str, Any]) -> int:
    return math.lcm(*(int(NETWORKS.get(a).resolve("size_multiple", kw)) for a, kw in _members(args)))


class MeanProbabilityEnsemble(nn.Module):
    """The mean of the members' softmax probabilities, returned as its logarithm.

    Shape:
        ``(B, C_in, H, W) -> (B, C_out, H, W)``, float32: ``log(mean_k softmax(member_k(x)))``, floored at
        ``log(1e-7)``; its softmax over the channels is the mean probability.

    Args:
        members: The trained member networks, each ``(B, C_in, H, W) -> (B, C_out, H, W)`` logits.

    Raises:
        ValueError: If ``members`` is empty.
    """

    def __init__(self, members: Sequence[nn.Module]) -> None:
        super().__init__()
        if not members:
            raise ValueError("seg_ensemble needs at least one member network.")
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        prob = torch.stack([torch.softmax(m(x).float(), dim=1) for m in self.members]).mean(0)
        return torch.log(prob.clamp_min(PROB_FLOOR))


@register_network("seg_ensemble", kind="segmentation", min_size=_min_size, size_multiple=_size_multiple)
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
    built = []
    for i, (arch, kwargs) in enumerate(_members({"members": members})):
        entry = NETWORKS.get(arch)
        if entry.kind != "segmentation" or arch == "seg_ensemble":
            raise ValueError(f"seg_ensemble member {i}: {arch!r} is not a single segmentation network.")
        built.append(entry.factory(int(in_channels), int(out_channels), **kwargs))
    return MeanProbabilityEnsemble(built)
