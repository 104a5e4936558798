"""How a saved network's forward pass runs: PyTorch or ONNX Runtime, float32 or bfloat16, chosen per machine.

:class:`NetworkRunner` is what both predictors call for logits. It picks

* the dtype (:func:`breastdx.runtime.choose_inference_dtype`: bfloat16 only where native and validated), and
* the backend: ``auto`` runs ONNX Runtime (CPU execution provider) for a model folder in float32 on the CPU,
  and PyTorch everywhere else (bfloat16, GPUs, networks held in memory during training). Measured on an
  AVX2-only AMD EPYC (2 cores), ONNX Runtime runs the busi-seg U-Net 10-25% faster than eager PyTorch, and
  a command that uses it never imports MONAI (about 3 s of start-up): ``benchmarks/busi_seg_predict.py``.

The ONNX graph is exported from the model folder's safetensors weights once per machine, checked against
PyTorch on a seeded input (largest logit difference below :data:`ONNX_TOLERANCE`, else PyTorch is used and
the log says why), and cached under ``$XDG_CACHE_HOME/breastdx/onnx`` (default ``~/.cache``) by the SHA-256
of the weights, the network description and the code that builds and exports it (:mod:`breastdx.inference.onnx_graphs`, which reads a cached graph
without PyTorch). ONNX files are protocol buffers: nothing is unpickled.
Grad-CAM needs gradients, so :attr:`NetworkRunner.network` (the PyTorch network) is built on first use.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from breastdx.inference import onnx_graphs
from breastdx.inference.onnx_graphs import ONNX_OPSET, onnxruntime_available
from breastdx.models.export import for_export
from breastdx.models.saved import ModelFolderError, load_weights
from breastdx.runtime import check_backend

log = logging.getLogger(__name__)

ONNX_TOLERANCE = 1e-3
"""Largest absolute logit difference between ONNX Runtime and PyTorch accepted when a graph is exported."""

def build_from_meta(model_dir: Path, meta: dict[str, Any]) -> nn.Module:
    """The PyTorch network a model folder describes, with its safetensors weights, in eval mode.

    Raises:
        ModelFolderError: If ``meta.json`` cannot rebuild the network or the weights do not fit it.
    """
    from breastdx.models.networks import build_network

    try:
        network, _ = build_network(meta["architecture"], int(meta["in_channels"]), len(meta["class_names"]) + len(meta.get("extra_outputs", ())),
                                   **meta["architecture_args"])
    except (KeyError, TypeError, ValueError) as e:
        raise ModelFolderError(f"{Path(model_dir) / 'meta.json'}: cannot rebuild network "
                               f"{meta.get('architecture')!r}: {e}") from None
    return load_weights(network, Path(model_dir) / meta["weights_file"]).eval()


class NetworkRunner:
    """The forward pass of one saved network, in the backend and dtype chosen for this machine.

    Args:
        meta: The model folder's ``meta.json`` content (``preprocessing.image_size``, ``in_channels``).
        network: The PyTorch network (in memory), or None to build it from ``model_dir`` when needed.
        model_dir: The model folder (needed for ONNX Runtime and for a network built on demand).
        device: Torch device.
        dtype: ``auto``, ``float32`` or ``bfloat16`` (see :func:`breastdx.runtime.choose_inference_dtype`).
        backend: ``auto``, ``torch`` or ``onnxruntime``.
        onnx_dir: Folder of cached ONNX graphs; default :func:`breastdx.inference.onnx_graphs.onnx_cache_dir`.
        dynamic_size: Export the ONNX graph with dynamic height and width (a fully convolutional network run on
            windows of any size, as the nucleus predictor's); else only the batch size is dynamic.

    Raises:
        ValueError: For an unknown dtype or backend, or ``onnxruntime`` asked for where it cannot run
            (bfloat16, a GPU, no ``onnxruntime`` package, a network not from a model folder).
        ModelFolderError: If the network cannot be rebuilt from the folder.
    """

    def __init__(self, meta: dict[str, Any], *, network: nn.Module | None = None, model_dir: Path | None = None,
                 device: str | torch.device = "cpu", dtype: str | None = "auto", backend: str = "auto",
                 onnx_dir: Path | None = None, dynamic_size: bool = False) -> None:
        from breastdx.runtime import choose_inference_dtype, validated_dtypes

        if network is None and model_dir is None:
            raise ValueError("NetworkRunner needs a network or a model folder.")
        self.meta = meta
        self.dynamic_size = bool(dynamic_size)
        self.model_dir = Path(model_dir) if model_dir is not None else None
        self.device = torch.device(device)
        self.dtype, self.dtype_reason = choose_inference_dtype(dtype, validated_dtypes(meta), self.device,
                                                               model=str(meta.get("task", "model")))
        self._network = network.to(self.device).eval() if network is not None else None
        self.backend, self.backend_reason = self._choose_backend(check_backend(backend))
        self._session = None
        self._threads = 0
        if self.backend == "onnxruntime":
            self._session = self._onnx_session(onnx_dir or onnx_graphs.onnx_cache_dir())
            if self._session is None:
                self.backend = "torch"
        if self.backend == "torch":
            self.network  # noqa: B018 - build now, so that a bad model folder fails here, not at the first image
        log.info("%s: %s backend (%s)", meta.get("task", "model"), self.backend, self.backend_reason)

    def _choose_backend(self, requested: str) -> tuple[str, str]:
        obstacles = []
        if self.dtype != "float32":
            obstacles.append(f"dtype {self.dtype}")
        if self.device.type != "cpu":
            obstacles.append(f"device {self.device}")
        if self.model_dir is None:
            obstacles.append("a network in memory, not a model folder")
        if not onnxruntime_available():
            obstacles.append("the onnxruntime package is not installed")
        if requested == "torch":
            return "torch", "torch asked for"
        if requested == "onnxruntime":
            if obstacles:
                raise ValueError(f"The onnxruntime backend cannot run here: {'; '.join(obstacles)}.")
            return "onnxruntime", "onnxruntime asked for"
        if obstacles:
            return "torch", "auto: " + "; ".join(obstacles)
        return "onnxruntime", "auto: float32 on the CPU, where ONNX Runtime measured faster than eager PyTorch"

    # ------------------------------------------------------------------------------------ PyTorch
    @property
    def network(self) -> nn.Module:
        """The PyTorch network (built from the model folder on first use, e.g. for Grad-CAM)."""
        if self._network is None:
            self._network = build_from_meta(self.model_dir, self.meta).to(self.device)
        return self._network

    def autocast(self):
        """The autocast context of the chosen dtype (a no-op in float32)."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.dtype == "bfloat16")

    @torch.inference_mode()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of a network input.

        Shape:
            ``(B, C, S, S)`` float32 -> the network's output, float32 (``(B, K)`` or ``(B, K, S, S)``).
        """
        if self._session is not None:
            out = self._session.run(None, {"input": np.ascontiguousarray(x.detach().cpu().numpy(), np.float32)})
            return torch.from_numpy(out[0])
        with self.autocast():
            return self.network(x.to(self.device)).float()

    def run_numpy(self, x: np.ndarray) -> np.ndarray:
        """:meth:`__call__` with NumPy in and out (as :class:`breastdx.inference.runners.CachedGraph`), float32."""
        return self(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))).cpu().numpy()

    # ------------------------------------------------------------------------------- ONNX Runtime
    def set_threads(self, threads: int) -> None:
        """Give the ONNX Runtime session ``threads`` intra-op threads (PyTorch takes its count per thread from
        ``torch.set_num_threads``); a no-op under PyTorch or when the count is already that."""
        if self._session is None or self._threads == int(threads):
            return
        self._threads = max(1, int(threads))
        self._session = onnx_graphs.open_session(self._onnx_path, self._threads)

    def _onnx_session(self, cache: Path):
        self._threads = max(1, torch.get_num_threads())
        path = onnx_graphs.graph_path(cache, self.model_dir, self.meta, self.dynamic_size)
        if not path.is_file():
            problem = self._export(path)
            if problem:
                self.backend_reason = f"{problem}; PyTorch used instead"
                log.warning("%s: %s", self.meta.get("task", "model"), self.backend_reason)
                return None
        self._onnx_path = path
        session, problem = onnx_graphs.open_cached(path, self._threads)  # a damaged graph: rebuilt next time
        if problem:
            self.backend_reason = f"{problem}; PyTorch used instead"
            log.warning("%s: %s", self.meta.get("task", "model"), self.backend_reason)
        return session

    def _dynamic_axes(self) -> dict[str, dict[int, str]]:
        axes = {0: "batch", 2: "height", 3: "width"} if self.dynamic_size else {0: "batch"}
        return {"input": dict(axes), "logits": dict(axes)}

    def _export(self, path: Path) -> str | None:
        """Export, check against PyTorch, and write ``path`` atomically; a reason when it cannot be used."""
        import onnxruntime as ort

        size = int(self.meta["preprocessing"]["image_size"])
        x = torch.rand(2, int(self.meta["in_channels"]), size, size, generator=torch.Generator().manual_seed(0))
        network = self.network
        exported = for_export(network)  # the same function in operators ONNX Runtime computes faster
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        try:
            with warnings.catch_warnings(), torch.no_grad():
                warnings.simplefilter("ignore")
                torch.onnx.export(exported, (x,), str(tmp), input_names=["input"], output_names=["logits"],
                                  dynamic_axes=self._dynamic_axes(),
                                  opset_version=ONNX_OPSET, dynamo=False)
            session = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
            with torch.no_grad():
                reference = network(x).float().numpy()
            got = session.run(None, {"input": x.numpy()})[0]
            diff = float(np.abs(got - reference).max())
        except Exception as e:  # noqa: BLE001 - any exporter failure means: run PyTorch
            tmp.unlink(missing_ok=True)
            return f"the network could not be exported to ONNX ({type(e).__name__}: {e})"
        if not diff <= ONNX_TOLERANCE:
            tmp.unlink(missing_ok=True)
            return f"ONNX Runtime differs from PyTorch by {diff:.2g} (tolerance {ONNX_TOLERANCE})"
        os.replace(tmp, path)
        log.info("%s: exported to ONNX (largest logit difference to PyTorch %.1e), cached in %s",
                 self.meta.get("task", "model"), diff, path)
        return None

