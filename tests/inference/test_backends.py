"""The forward-pass backend: ONNX Runtime for a model folder in float32 on the CPU, PyTorch elsewhere; the
exported graph is checked against PyTorch, cached, reused, and rebuilt when damaged."""

import numpy as np
import pytest
import torch

from breastdx.data.transforms import Preprocessing
from breastdx.inference import backends
from breastdx.inference.backends import NetworkRunner
from breastdx.inference.predictor import WEIGHTS_FILE, save_weights
from breastdx.models.networks import build_network
from breastdx.models.saved import ModelFolderError, write_meta


def _folder(tmp_path, arch="unet", classes=2, **args):
    torch.manual_seed(1)
    net, resolved = build_network(arch, 1, classes, **args)
    d = tmp_path / "model"
    d.mkdir()
    save_weights(net, d / WEIGHTS_FILE)
    meta = write_meta(d, {"task": "busi-seg", "architecture": arch, "architecture_args": resolved, "in_channels": 1,
                          "weights_file": WEIGHTS_FILE, "class_names": [f"c{i}" for i in range(classes)],
                          "preprocessing": Preprocessing(image_size=32).to_meta()})
    return d, meta, net.eval()


UNET = {"channels": [4, 8, 16], "strides": [2, 2], "num_res_units": 1}


def test_auto_exports_once_checks_and_reuses_the_cached_graph(tmp_path, monkeypatch):
    monkeypatch.setattr("breastdx.runtime.bf16_native_cpu", lambda: False)
    d, meta, net = _folder(tmp_path, **UNET)
    cache = tmp_path / "cache"
    first = NetworkRunner(meta, model_dir=d, onnx_dir=cache)
    assert first.backend == "onnxruntime" and "faster" in first.backend_reason
    files = list(cache.glob("busi-seg-*.onnx"))
    assert len(files) == 1
    x = torch.rand(3, 1, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        np.testing.assert_allclose(first(x).numpy(), net(x).numpy(), atol=1e-4)
    stamp = files[0].stat().st_mtime_ns
    again = NetworkRunner(meta, model_dir=d, onnx_dir=cache)
    assert files[0].stat().st_mtime_ns == stamp      # reused, not exported again
    assert again._network is None                   # and PyTorch's network was never built
    np.testing.assert_array_equal(again(x).numpy(), first(x).numpy())
    # other weights, another graph
    torch.manual_seed(5)
    save_weights(build_network("unet", 1, 2, **UNET)[0], d / WEIGHTS_FILE)
    NetworkRunner(meta, model_dir=d, onnx_dir=cache)
    assert len(list(cache.glob("busi-seg-*.onnx"))) == 2


def test_torch_where_onnx_runtime_cannot_or_should_not_run(tmp_path, monkeypatch, bf16_cpu):
    d, meta, net = _folder(tmp_path, **UNET)
    bf16_cpu("amx")
    bf16 = {**meta, "inference": {"validated_dtypes": ["float32", "bfloat16"]}}
    runner = NetworkRunner(bf16, model_dir=d, onnx_dir=tmp_path / "c")
    assert runner.dtype == "bfloat16" and runner.backend == "torch" and "dtype bfloat16" in runner.backend_reason
    with pytest.raises(ValueError, match="onnxruntime backend cannot run here: dtype bfloat16"):
        NetworkRunner(bf16, model_dir=d, backend="onnxruntime", onnx_dir=tmp_path / "c")
    in_memory = NetworkRunner(meta, network=net)
    assert in_memory.backend == "torch" and "in memory" in in_memory.backend_reason
    with pytest.raises(ValueError, match="'backend' option must be one of auto, torch, onnxruntime. Got 'ort'"):
        NetworkRunner(meta, model_dir=d, backend="ort")


def test_a_graph_that_disagrees_with_pytorch_is_not_used(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr("breastdx.runtime.bf16_native_cpu", lambda: False)
    monkeypatch.setattr(backends, "ONNX_TOLERANCE", -1.0)  # no graph can pass
    d, meta, _ = _folder(tmp_path, **UNET)
    with caplog.at_level("WARNING", logger="breastdx.inference.backends"):
        runner = NetworkRunner(meta, model_dir=d, onnx_dir=tmp_path / "c")
    assert runner.backend == "torch" and "differs from PyTorch" in runner.backend_reason
    assert not list((tmp_path / "c").glob("*.onnx")) and caplog.records


def test_a_damaged_cache_file_is_replaced(tmp_path, monkeypatch):
    monkeypatch.setattr("breastdx.runtime.bf16_native_cpu", lambda: False)
    d, meta, _ = _folder(tmp_path, **UNET)
    cache = tmp_path / "c"
    NetworkRunner(meta, model_dir=d, onnx_dir=cache)
    (graph,) = cache.glob("*.onnx")
    graph.write_bytes(b"not a graph")
    damaged = NetworkRunner(meta, model_dir=d, onnx_dir=cache)
    assert damaged.backend == "torch" and "could not be loaded" in damaged.backend_reason
    assert NetworkRunner(meta, model_dir=d, onnx_dir=cache).backend == "onnxruntime"


def test_weights_that_do_not_fit_fail_at_load_time_with_either_backend(tmp_path):
    d, meta, _ = _folder(tmp_path, **UNET)
    torch.manual_seed(0)
    save_weights(build_network("unet", 1, 2, channels=[4, 8], strides=[2])[0], d / WEIGHTS_FILE)
    for backend in ("torch", "auto"):
        with pytest.raises(ModelFolderError, match="do not fit"):
            NetworkRunner(meta, model_dir=d, backend=backend, onnx_dir=tmp_path / "c")


def test_thread_count_of_the_onnx_session_can_be_set_after_loading(tmp_path, monkeypatch):
    monkeypatch.setattr("breastdx.runtime.bf16_native_cpu", lambda: False)
    d, meta, _ = _folder(tmp_path, **UNET)
    runner = NetworkRunner(meta, model_dir=d, onnx_dir=tmp_path / "c")
    x = torch.rand(1, 1, 32, 32)
    before = runner(x).numpy()
    runner.set_threads(1)
    assert runner._threads == 1
    np.testing.assert_allclose(runner(x).numpy(), before, atol=1e-6)
