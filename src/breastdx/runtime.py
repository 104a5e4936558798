"""What the machine at hand runs fast: its CPU, whether bfloat16 is native there, and the precision to use.

bfloat16 is fast on a CPU only where the hardware computes it: Intel AMX (``amx_bf16``) or AVX512-BF16
(``avx512_bf16``). Elsewhere (AVX2-only CPUs such as many AMD EPYC and most laptops, and AVX-512 CPUs
without BF16) oneDNN emulates it, and a bfloat16 network runs 2 to 40 times slower than in float32.
So precision is chosen at run time, from what the machine reports, never stored as an order in a model
folder: a model folder says which dtypes were *validated* (``meta["inference"]``), and
:func:`choose_inference_dtype` picks bfloat16 only where it is both validated and native, and on a CPU only with
AMX (:func:`bf16_auto_cpu`: with AVX512-BF16 alone, float32 on ONNX Runtime measured faster end to end).

Nothing here sets process-wide state but one flag, :func:`declare_long_running`, which the web service raises
while it runs; the command line and the service set thread counts.
"""

from __future__ import annotations

import logging
import os
import platform
from functools import lru_cache
from typing import Any, Sequence

log = logging.getLogger(__name__)

DTYPES = ("auto", "float32", "bfloat16")
"""Accepted values of the ``--dtype`` option of predict, evaluate, explain and serve."""

BACKENDS = ("auto", "torch", "onnxruntime")
"""Accepted values of the ``--backend`` option (see :class:`breastdx.inference.backends.NetworkRunner`)."""

PRECISIONS = ("auto", "32", "bf16-mixed", "16-mixed")
"""Accepted values of the ``--precision`` training option (Lightning's names, plus ``auto``)."""

NATIVE_BF16_FLAGS = ("amx_bf16", "avx512_bf16")


@lru_cache(maxsize=1)
def _cpuinfo() -> tuple[str, frozenset[str]]:
    model, flags = "", frozenset()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and not model:
                    model = value.strip()
                elif key == "flags" and not flags:
                    flags = frozenset(value.split())
                if model and flags:
                    break
    except OSError:
        pass
    return model or platform.processor() or platform.machine(), flags


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``, else what :mod:`platform` reports)."""
    return _cpuinfo()[0]


def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags from ``/proc/cpuinfo`` (empty where the file does not exist)."""
    return _cpuinfo()[1]


def vector_extensions() -> str:
    """The widest vector and matrix extensions of this CPU, e.g. ``"AVX2"`` or ``"AVX-512, AVX512-BF16, AMX"``."""
    flags = cpu_flags()
    names = [name for flag, name in (("avx2", "AVX2"), ("avx512f", "AVX-512"), ("avx512_bf16", "AVX512-BF16"),
                                     ("amx_bf16", "AMX")) if flag in flags]
    if "AVX-512" in names and "AVX2" in names:
        names.remove("AVX2")
    return ", ".join(names) or "none of AVX2 / AVX-512 / AMX"


def bf16_native_cpu() -> bool:
    """True where this CPU computes bfloat16 in hardware (AMX-BF16 or AVX512-BF16).

    On Linux the answer comes from the CPU flags; elsewhere from PyTorch's cpuinfo checks of the same two
    extensions (``torch.cpu._is_avx512_bf16_supported``, ``torch.cpu._is_amx_tile_supported``). Not from oneDNN's
    ``torch.ops.mkldnn._is_mkldnn_bf16_supported``: it asks only for AVX512-BW/VL/DQ, so it answers True on an
    AVX-512 CPU that emulates bfloat16.
    """
    flags = cpu_flags()
    if flags:
        return any(f in flags for f in NATIVE_BF16_FLAGS)
    return _torch_cpu_has("avx512_bf16") or _torch_cpu_has("amx_tile")


def _torch_cpu_has(extension: str) -> bool:
    """``torch.cpu._is_<extension>_supported()``; False where this build lacks the check (assume emulation)."""
    try:
        import torch

        return bool(getattr(torch.cpu, f"_is_{extension}_supported")())
    except Exception:  # noqa: BLE001 - an old or exotic build
        return False


_LONG_RUNNING = False


def declare_long_running(value: bool = True) -> bool:
    """Say whether this process is long-running (the web service); returns the previous value.

    A long-running process pays PyTorch's start-up once, so ``--dtype auto`` runs bfloat16 wherever the CPU
    computes it natively (AVX512-BF16 too), as training does; a one-shot command (the default) needs AMX for it
    (:func:`bf16_auto_cpu`). Measured on the AVX512-BF16 EPYC, one busi-seg image at a time: 11 ms in PyTorch
    bfloat16, 22 ms in float32 ONNX Runtime.
    """
    global _LONG_RUNNING
    before, _LONG_RUNNING = _LONG_RUNNING, bool(value)
    return before


def bf16_auto_cpu() -> bool:
    """True where ``--dtype auto`` runs inference in bfloat16 on this CPU: bfloat16 is native *and* the CPU has
    AMX tiles (``amx_bf16``; where the flags cannot be read, PyTorch's own check of AMX tiles).

    AVX512-BF16 alone is not enough. Measured on such a CPU (2 cores of an AMD EPYC with AVX-512 and AVX512-BF16,
    no AMX; ``benchmarks/where_time_goes.py`` and ``benchmarks/busi_seg_predict.py``): PyTorch in bfloat16 runs the
    U-Nets 1.7 times as fast as float32 ONNX Runtime, but the compact CNNs 0.6 times as fast, and it needs PyTorch
    and MONAI imported (about 4 s of start-up). So ``predict busi-seg`` on 120 images took twice as long end to end
    in bfloat16 as in float32 from the cached ONNX graph. Training keeps bfloat16 there
    (:func:`choose_training_precision`), and so does the web service (:func:`declare_long_running`), where the
    start-up is nothing beside the run.
    """
    flags = cpu_flags()
    return bf16_native_cpu() and ("amx_bf16" in flags if flags else _torch_cpu_has("amx_tile"))


def bf16_native(device: Any = "cpu") -> bool:
    """True where ``device`` (a torch device or its name) runs bfloat16 natively."""
    kind = getattr(device, "type", str(device)).split(":")[0]
    if kind == "cuda":
        import torch

        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    if kind == "cpu":
        return bf16_native_cpu()
    return False


def machine_summary() -> dict[str, Any]:
    """What a speed figure needs beside it: CPU model, extensions, torch's CPU capability, threads, cores.

    Returns:
        ``{"cpu", "extensions", "torch_capability", "bf16_native", "torch_threads", "usable_cores", "torch"}``.
    """
    import torch

    try:
        capability = torch.backends.cpu.get_cpu_capability()
    except Exception:  # noqa: BLE001
        capability = "unknown"
    return {"cpu": cpu_model(), "extensions": vector_extensions(), "torch_capability": capability,
            "bf16_native": bf16_native_cpu(), "torch_threads": torch.get_num_threads(),
            "usable_cores": usable_cores(), "torch": torch.__version__}


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask, else ``os.cpu_count()``)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def validated_dtypes(meta: dict[str, Any]) -> tuple[str, ...]:
    """The inference dtypes a model folder says were validated: float32 always, plus
    ``meta["inference"]["validated_dtypes"]`` or the older ``meta["inference"]["dtype"]``."""
    inference = meta.get("inference") or {}
    listed = inference.get("validated_dtypes")
    if listed is None:
        listed = [inference.get("dtype", "float32")]
    return tuple(dict.fromkeys(["float32", *[str(d) for d in listed]]))


def _check_choice(option: str, value: str, choices: Sequence[str]) -> str:
    if value not in choices:
        raise ValueError(f"The {option!r} option must be one of {', '.join(choices)}. Got {value!r} instead.")
    return value


def check_dtype(value: str) -> str:
    """``value`` if it is one of :data:`DTYPES`.

    Raises:
        ValueError: "The 'dtype' option must be one of auto, float32, bfloat16. Got 'x' instead."
    """
    return _check_choice("dtype", value, DTYPES)


def check_backend(value: str) -> str:
    """``value`` if it is one of :data:`BACKENDS`.

    Raises:
        ValueError: "The 'backend' option must be one of auto, torch, onnxruntime. Got 'x' instead."
    """
    return _check_choice("backend", value, BACKENDS)


def choose_inference_dtype(requested: str | None, validated: Sequence[str] = ("float32",),
                           device: Any = "cpu", *, model: str = "model", quiet: bool = False) -> tuple[str, str]:
    """The dtype to run a network in, and why; one log line says both.

    Args:
        requested: ``"auto"`` (or None), ``"float32"`` or ``"bfloat16"``.
        validated: Dtypes the model folder says were validated (see :func:`validated_dtypes`).
        device: Where the network runs.
        model: Name used in the log line.
        quiet: Log the choice at debug level only (the caller says it).

    Returns:
        ``(dtype, reason)``: ``"float32"`` or ``"bfloat16"``. ``auto`` gives bfloat16 only where it is
        validated for the model *and* native on the device (on a CPU, for a one-shot command: with AMX,
        :func:`bf16_auto_cpu`; in a long-running process, :func:`declare_long_running`, AVX512-BF16 is enough);
        an explicit ``bfloat16`` is honoured, with a warning where it is emulated.

    Raises:
        ValueError: If ``requested`` is not one of :data:`DTYPES`.
    """
    requested = check_dtype(requested or "auto")
    native = bf16_native(device)
    where = f"{cpu_model() or 'this CPU'} ({vector_extensions()})" if str(device).startswith("cpu") else str(device)
    if requested == "float32":
        dtype, reason = "float32", "float32 asked for"
    elif requested == "bfloat16":
        dtype = "bfloat16"
        reason = "bfloat16 asked for" + ("" if native else
                                         f"; {where} has no native bfloat16, so it is emulated and runs several "
                                         f"times (up to 40x) slower than float32")
        if not native:
            log.warning("%s: %s", model, reason)
            return dtype, reason
    elif "bfloat16" not in validated:
        dtype, reason = "float32", "auto: the model folder validates float32 only"
    elif not native:
        dtype, reason = "float32", (f"auto: {where} has no native bfloat16 (AMX or AVX512-BF16); emulated "
                                    f"bfloat16 would be several times slower")
    elif str(device).startswith("cpu") and not _LONG_RUNNING and not bf16_auto_cpu():
        dtype, reason = "float32", (f"auto: {where} has AVX512-BF16 but no AMX; for a one-shot command float32 on "
                                    f"ONNX Runtime measured faster end to end (see breastdx.runtime.bf16_auto_cpu)")
    else:
        dtype, reason = "bfloat16", "auto: bfloat16 is native here and validated for this model"
    log.log(logging.DEBUG if quiet else logging.INFO, "%s: inference in %s (%s)", model, dtype, reason)
    return dtype, reason


def choose_training_precision(requested: str, accelerator: str = "auto") -> tuple[str, str]:
    """Lightning's ``precision`` for a training run, and why.

    ``auto`` gives ``bf16-mixed`` where bfloat16 is native (AMX / AVX512-BF16 CPUs, GPUs with bfloat16) and
    ``32`` elsewhere. ``bf16-mixed`` asked for on a CPU that would emulate it falls back to ``32`` with a
    warning: emulated it crawls (about 40 times slower), which nobody wants silently. ``16-mixed`` on a CPU, which
    Lightning silently turns into ``bf16-mixed`` (a CPU has no float16 AMP), is resolved as ``bf16-mixed``.

    Args:
        requested: One of :data:`PRECISIONS`.
        accelerator: Lightning's accelerator (``"auto"``, ``"cpu"``, ``"gpu"``, ``"cuda"``, ...).

    Raises:
        ValueError: If ``requested`` is not one of :data:`PRECISIONS`.
    """
    if requested not in PRECISIONS:
        raise ValueError(f"The 'precision' option must be one of {', '.join(PRECISIONS)}. "
                         f"Got {requested!r} instead.")
    device = _training_device(accelerator)
    cpu_fp16 = requested == "16-mixed" and device == "cpu"  # Lightning has no float16 AMP on a CPU: it would train
    if requested not in ("auto", "bf16-mixed") and not cpu_fp16:  # in bf16-mixed instead, emulated or not
        return requested, f"{requested} asked for"
    asked = ("--precision 16-mixed asked for, which a CPU has not (Lightning would train in bf16-mixed instead)"
             if cpu_fp16 else "--precision bf16-mixed asked for")
    if bf16_native(device):
        return "bf16-mixed", (f"{asked}; " if cpu_fp16 else "") + f"bfloat16 is native on {device}"
    where = f"{cpu_model()} ({vector_extensions()})" if device == "cpu" else device
    if requested == "auto":
        return "32", f"auto: {where} has no native bfloat16"
    reason = (f"{asked}, but {where} has no native bfloat16 (AMX or AVX512-BF16): "
              f"emulated, training would run many times slower; training in float32 (precision 32) instead")
    log.warning(reason)
    return "32", reason


def _training_device(accelerator: str) -> str:
    if accelerator in ("gpu", "cuda"):
        return "cuda"
    if accelerator == "auto":
        try:
            import torch

            if torch.cuda.is_available():
                return "cuda"
        except Exception:  # noqa: BLE001
            pass
    return "cpu"


def check_accelerator(accelerator: str) -> None:
    """Refuse ``accelerator`` (``--accelerator`` of a training) if this machine lacks it: checked before a run folder
    is made or data read, where Lightning would refuse it only once its trainer is built (BUSI hashed, the folder
    written).

    Raises:
        breastdx.errors.ConfigError: For ``gpu``/``cuda`` without a CUDA device, or ``mps`` without Apple's, naming
            what there is.
    """
    name = str(accelerator).lower()
    if name in ("gpu", "cuda", "mps"):
        import torch

        from breastdx.errors import ConfigError

        if name == "mps" and not torch.backends.mps.is_available():
            raise ConfigError(f"--accelerator {accelerator}: this machine has no Apple GPU (MPS); use --accelerator "
                              f"cpu or auto.")
        if name != "mps" and not torch.cuda.is_available():
            raise ConfigError(f"--accelerator {accelerator}: this machine has no CUDA GPU (torch {torch.__version__}, "
                              f"CUDA build {torch.version.cuda or 'none'}); use --accelerator cpu or auto.")
