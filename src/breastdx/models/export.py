"""A network rewritten for export to ONNX: the same function, in operators ONNX Runtime computes faster.

:func:`for_export` returns a copy of a network in which every single-slope ``nn.PReLU`` (MONAI's U-Net default
activation, ``num_parameters=1``) is an ``nn.LeakyReLU`` with that slope: ``x if x > 0 else slope * x`` either
way, so the outputs are bit for bit the same. PyTorch exports ``PReLU`` as the ONNX ``PRelu`` operator, whose slope
ONNX Runtime's CPU kernel broadcasts element by element; ``LeakyReLU`` becomes ``LeakyRelu``, a plain element-wise
kernel. Profiled with ONNX Runtime 1.32 on busi-seg's U-Net (batch 8 at 256 x 256, 2 threads, AMD EPYC with
AVX-512): the 17 ``PRelu`` nodes took 26% of the graph's time (``benchmarks/busi_seg_predict.py`` measures the end-to-end
effect). A multi-slope ``PReLU`` (one slope per channel) is kept: ``LeakyRelu`` has one slope.

The original network is not changed. Used by :class:`breastdx.inference.backends.OnnxBackend` when it exports a
model folder's network; the export is still checked against the original network's outputs.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


def for_export(network: nn.Module) -> nn.Module:
    """A copy of ``network`` with each single-slope ``nn.PReLU`` replaced by ``nn.LeakyReLU`` of the same slope.

    Args:
        network: Any network; not modified.

    Returns:
        The copy (in the same training/eval mode), or ``network`` itself when it holds no single-slope PReLU.
        Both compute the same outputs for any input, bit for bit.
    """
    if not any(_single_slope(m) for m in network.modules()):
        return network
    copied = copy.deepcopy(network)
    for parent in copied.modules():
        for name, child in list(parent.named_children()):
            if _single_slope(child):
                with torch.no_grad():
                    slope = float(child.weight.detach().reshape(-1)[0])
                leaky = nn.LeakyReLU(negative_slope=slope)
                leaky.train(child.training)
                setattr(parent, name, leaky)
    return copied


def _single_slope(module: nn.Module) -> bool:
    return isinstance(module, nn.PReLU) and module.weight.numel() == 1
