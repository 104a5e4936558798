"""The cached ONNX graphs of model folders, read without PyTorch.

:class:`breastdx.inference.backends.NetworkRunner` exports a model folder's network to ONNX once per machine and
caches the graph under ``$XDG_CACHE_HOME/breastdx/onnx`` (default ``~/.cache``), named by the SHA-256 of the weights,
the network description and the code behind it (:func:`code_key`). This module holds what needs no PyTorch: where a graph is cached
(:func:`graph_path`) and an ONNX Runtime session on it (:func:`open_session`), so that a command whose graph is
already cached can run the network without importing PyTorch (about 1.3 s of start-up on 2 cores):
:func:`breastdx.inference.runners.open_runner` gives such a runner where it can (``predict monuseg`` and ``predict
busi-seg``). ONNX files are protocol buffers: nothing is unpickled.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any, Mapping

ONNX_OPSET = 17
"""The ONNX operator set of exported graphs (part of the cache key)."""

NETWORK_CODE = Path(__file__).resolve().parents[1] / "models"
"""The folder of breastdx's network code (:mod:`breastdx.models`): its ``.py`` files are part of the cache key."""

CODE_PACKAGES = ("torch", "monai", "onnxruntime")
"""Packages whose versions are part of the cache key: the networks' layers, the exporter, the runtime checked."""


def onnx_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/breastdx/onnx`` (default ``~/.cache/breastdx/onnx``)."""
    from breastdx.config import user_cache_dir

    return user_cache_dir() / "onnx"


def onnxruntime_available() -> bool:
    """True where ``onnxruntime`` can be imported."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def graph_path(cache: Path, model_dir: Path, meta: Mapping[str, Any], dynamic_size: bool = False) -> Path:
    """Where the ONNX graph of a model folder's network is cached (the file may not exist yet).

    Args:
        cache: The cache folder (:func:`onnx_cache_dir`).
        model_dir: The model folder.
        meta: Its ``meta.json`` content (``weights_file``, the network description, ``preprocessing.image_size``).
        dynamic_size: Whether the graph takes any height and width (else only the batch size varies).

    Returns:
        ``cache / "<task>-<32 hex digits>.onnx"``: the digits hash the weights file's SHA-256, the architecture and its
        arguments, input channels, classes, extra outputs, image size, opset and ``dynamic_size``, and the code that
        builds and exports the network (:func:`code_key`), so that a graph exported by older code is not run.
    """
    from breastdx.data.checksum import sha256_file

    h = hashlib.sha256(sha256_file(Path(model_dir) / meta["weights_file"]).encode())
    described = {k: meta.get(k) for k in ("architecture", "architecture_args", "in_channels", "class_names")}
    described["image_size"] = meta["preprocessing"]["image_size"]
    described["opset"] = ONNX_OPSET
    if meta.get("extra_outputs"):  # outputs besides the classes (monuseg's distance)
        described["extra_outputs"] = list(meta["extra_outputs"])
    if dynamic_size:
        described["dynamic_size"] = True
    described["code"] = code_key()
    h.update(json.dumps(described, sort_keys=True).encode())
    return Path(cache) / f"{meta.get('task', 'model')}-{h.hexdigest()[:32]}.onnx"


def code_key() -> dict[str, Any]:
    """What the cache key holds of the code behind a graph: the versions of :data:`CODE_PACKAGES` (None where one
    is not installed) and the SHA-256 of breastdx's network code (:data:`NETWORK_CODE`), read without importing
    either."""
    from importlib.metadata import PackageNotFoundError, version

    versions: dict[str, str | None] = {}
    for name in CODE_PACKAGES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = None
    h = hashlib.sha256()
    for path in sorted(Path(NETWORK_CODE).glob("*.py")):
        h.update(f"{path.name}\0".encode() + path.read_bytes())
    return {"versions": versions, "networks": h.hexdigest()}


def default_threads() -> int:
    """Intra-op threads for a session: PyTorch's count where PyTorch is loaded (``--threads`` sets it), else
    ``OMP_NUM_THREADS`` where it is a positive integer (``--threads`` sets it when PyTorch is not loaded; PyTorch
    would read it too), else the processors this process may run on."""
    if "torch" in sys.modules:
        return max(1, int(sys.modules["torch"].get_num_threads()))
    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    if env.isdigit() and int(env) > 0:
        return int(env)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def open_session(path: Path, threads: int | None = None) -> Any:
    """An ONNX Runtime CPU session on the graph ``path``, ``threads`` intra-op threads (default
    :func:`default_threads`), no busy-waiting between operators (reader and writer threads need the cores a spinning
    pool would burn).

    Raises:
        Exception: Whatever ONNX Runtime raises for a missing or damaged graph.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, int(threads or default_threads()))
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def open_cached(path: Path, threads: int | None = None) -> tuple[Any, str | None]:
    """:func:`open_session` on a cached graph: ``(session, None)``, or ``(None, why)`` after deleting a graph that
    ONNX Runtime cannot load (a damaged cache file), so that the next load exports it again."""
    try:
        return open_session(path, threads), None
    except Exception as e:  # noqa: BLE001 - whatever ONNX Runtime raises for a damaged file
        Path(path).unlink(missing_ok=True)
        return None, f"the cached ONNX graph {path} could not be loaded ({e})"
