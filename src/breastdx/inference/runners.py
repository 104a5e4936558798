"""Which runner does a saved network's forward pass: its cached ONNX graph without PyTorch, or a NetworkRunner.

:func:`open_runner` is what the predictors that work in NumPy call (busi-seg's
:class:`~breastdx.inference.predictor.SegmentationPredictor` and monuseg's
:class:`~breastdx.inference.nuclei.NucleusPredictor`): where the model folder's ONNX graph is already cached
(:mod:`breastdx.inference.onnx_graphs`) and float32 on the CPU is chosen, a :class:`CachedGraph` runs it and
neither PyTorch nor MONAI is imported; elsewhere a :class:`~breastdx.inference.backends.NetworkRunner` does
(and exports the graph the first time).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from breastdx.inference.onnx_graphs import (default_threads, graph_path, onnx_cache_dir, onnxruntime_available,
                                            open_cached, open_session)

log = logging.getLogger(__name__)


class CachedGraph:
    """A model folder's network as its cached ONNX graph on ONNX Runtime, run without PyTorch.

    It answers what predictors ask of a :class:`~breastdx.inference.backends.NetworkRunner` (``backend``,
    ``dtype``, ``device``, ``set_threads``, ``network``, ``run_numpy``), but its call takes and returns NumPy arrays.

    Args:
        session: The ONNX Runtime session (:func:`open_session`).
        model_dir: The model folder (for :attr:`network`).
        meta: Its ``meta.json`` content.
        path: The cached graph (to reopen the session with another thread count).
        threads: The session's intra-op threads.
        dtype_reason: Why float32 was chosen (:func:`breastdx.runtime.choose_inference_dtype`).

    Attributes:
        backend: ``"onnxruntime"``.
        dtype: ``"float32"``.
        device: ``"cpu"``.
    """

    backend = "onnxruntime"
    dtype = "float32"
    device = "cpu"

    def __init__(self, session: Any, model_dir: Path, meta: Mapping[str, Any], path: Path | None = None,
                 threads: int | None = None, dtype_reason: str = "float32") -> None:
        self.session, self.model_dir, self.meta, self._network = session, Path(model_dir), meta, None
        self.path, self.threads, self.dtype_reason = path, int(threads or default_threads()), dtype_reason
        self.backend_reason = f"the cached graph {path.name if path else ''}, float32 on the CPU"

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Logits ``(B, K, ...)`` float32 of a float32 batch ``(B, C, H, W)`` (NumPy in, NumPy out)."""
        return self.session.run(None, {"input": np.ascontiguousarray(x, dtype=np.float32)})[0]

    run_numpy = __call__

    def set_threads(self, threads: int) -> None:
        """Reopen the session with ``threads`` intra-op threads (a no-op when it has that many, or no path)."""
        threads = max(1, int(threads))
        if self.path is not None and threads != self.threads:
            self.session, self.threads = open_session(self.path, threads), threads

    @property
    def network(self) -> Any:
        """The PyTorch network (built from the folder on first use; imports PyTorch and MONAI)."""
        if self._network is None:
            from breastdx.inference.backends import build_from_meta

            self._network = build_from_meta(self.model_dir, dict(self.meta))
        return self._network


def open_runner(meta: Mapping[str, Any], model_dir: Path | None, *, network: Any = None, device: Any = "cpu",
                dtype: str | None = "auto", backend: str = "auto", onnx_dir: Path | None = None,
                dynamic_size: bool = False) -> Any:
    """The forward pass of a network, without importing PyTorch where that is possible.

    Where the network comes from a model folder, the backend is ``auto`` or ``onnxruntime``, the device is the CPU,
    :func:`breastdx.runtime.choose_inference_dtype` picks float32 and the folder's graph is already cached, this is
    a :class:`CachedGraph` (NumPy in and out; PyTorch and MONAI are never imported: about 1.5 s less start-up on 2
    cores). Otherwise it is a :class:`~breastdx.inference.backends.NetworkRunner` (which exports the graph the
    first time), whose call takes and returns torch tensors.

    Args:
        meta: The model folder's ``meta.json`` (``preprocessing.image_size`` is the size the graph is checked at).
        model_dir: The model folder, or None for a network in memory.
        network: A PyTorch network in memory (always run by PyTorch), or None.
        device, dtype, backend, onnx_dir, dynamic_size: As :class:`~breastdx.inference.backends.NetworkRunner`.

    Raises:
        ValueError: For an unknown dtype or backend.
        ModelFolderError: If the network cannot be rebuilt from the folder.
    """
    from breastdx.runtime import check_backend, choose_inference_dtype, validated_dtypes

    task = str(meta.get("task", "model"))
    if (network is None and model_dir is not None and check_backend(backend) != "torch"
            and str(device) == "cpu" and onnxruntime_available()):
        chosen, reason = choose_inference_dtype(dtype, validated_dtypes(meta), "cpu", model=task, quiet=True)
        path = graph_path(onnx_dir or onnx_cache_dir(), Path(model_dir), meta, dynamic_size)
        if chosen == "float32" and path.is_file():
            threads = default_threads()
            session, problem = open_cached(path, threads)
            if session is not None:
                log.info("%s: inference in float32 (%s)", task, reason)
                log.info("%s: onnxruntime backend (the cached graph %s, float32 on the CPU)", task, path.name)
                return CachedGraph(session, Path(model_dir), meta, path, threads, reason)
            log.warning("%s: %s; exporting it again", task, problem)
    from breastdx.inference.backends import NetworkRunner

    return NetworkRunner(meta, network=network, model_dir=model_dir, device=device, dtype=dtype, backend=backend,
                         onnx_dir=onnx_dir, dynamic_size=dynamic_size)
