"""models/export.for_export: single-slope PReLU becomes LeakyReLU, outputs bit for bit the same, ONNX LeakyRelu."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from breastdx.models.export import for_export
from breastdx.models.networks import build_network
from breastdx.models.saved import load_weights
from breastdx.zoo import shipped_models


def _busi_seg() -> nn.Module:
    folder = shipped_models()["busi-seg"]
    meta = json.loads((Path(folder) / "meta.json").read_text(encoding="utf-8"))
    net, _ = build_network(meta["architecture"], meta["in_channels"], len(meta["class_names"]),
                           **meta["architecture_args"])
    return load_weights(net, Path(folder) / meta["weights_file"]).eval()


def test_shipped_unet_same_outputs_bit_for_bit_without_prelu() -> None:
    net = _busi_seg()
    n_prelu = sum(isinstance(m, nn.PReLU) for m in net.modules())
    assert n_prelu == 17  # MONAI's residual U-Net of busi-seg: one PReLU per convolution block
    exported = for_export(net)
    assert sum(isinstance(m, nn.PReLU) for m in exported.modules()) == 0
    assert sum(isinstance(m, nn.LeakyReLU) for m in exported.modules()) == n_prelu
    assert sum(isinstance(m, nn.PReLU) for m in net.modules()) == n_prelu  # the original is untouched
    slopes = sorted(m.weight.item() for m in net.modules() if isinstance(m, nn.PReLU))
    assert sorted(m.negative_slope for m in exported.modules() if isinstance(m, nn.LeakyReLU)) == slopes
    assert len(set(slopes)) > 1  # trained slopes, not the 0.25 every PReLU starts from
    x = torch.randn(2, 1, 64, 64, generator=torch.Generator().manual_seed(0)) * 3
    with torch.no_grad():
        assert torch.equal(net(x), exported(x))
    assert not exported.training


def test_multi_slope_prelu_kept_and_no_copy_without_prelu() -> None:
    net = nn.Sequential(nn.Conv2d(1, 3, 1), nn.PReLU(3), nn.Conv2d(3, 2, 1), nn.PReLU())
    with torch.no_grad():
        net[3].weight.fill_(-0.7)  # any slope, negative too
    exported = for_export(net)
    assert isinstance(exported[1], nn.PReLU) and isinstance(exported[3], nn.LeakyReLU)
    assert exported[3].negative_slope == pytest.approx(-0.7)
    x = torch.randn(4, 1, 5, 5, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(net(x), exported(x))
    plain = nn.Sequential(nn.Conv2d(1, 2, 1), nn.ReLU())
    assert for_export(plain) is plain


def test_onnx_graph_has_leaky_relu_and_matches(tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    net = _busi_seg()
    x = torch.rand(2, 1, 64, 64, generator=torch.Generator().manual_seed(2))
    path = tmp_path / "unet.onnx"
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(for_export(net), (x,), str(path), input_names=["input"], output_names=["logits"],
                          opset_version=17, dynamo=False)
    ops = [node.op_type for node in onnx.load(str(path)).graph.node]
    assert ops.count("LeakyRelu") == 17 and "PRelu" not in ops
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"input": x.numpy()})[0]
    with torch.no_grad():
        np.testing.assert_allclose(got, net(x).numpy(), atol=1e-4)
