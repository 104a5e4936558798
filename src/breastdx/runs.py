"""Run folders and reproducibility: seeding, package versions, and the files every run folder holds.

A run folder (``runs/<task>/<UTC timestamp>`` by default) holds ``config.yaml`` (resolved),
``versions.json`` (Python, platform, package versions and the CPU), ``metrics.json``, ``report.html`` with its
PNG plots, the split used and ``model/``. An existing non-empty folder is never overwritten.
"""

from __future__ import annotations

import atexit
import datetime as _dt
import importlib.metadata
import json
import logging
import math
import os
import platform
import random
import sys
from pathlib import Path
from typing import Any

import numpy as np

from breastdx import __version__

TRACKED_PACKAGES = (
    "breastdx", "numpy", "scipy", "pandas", "scikit-learn", "skops", "shap", "matplotlib", "torch",
    "monai", "lightning", "safetensors", "scikit-image", "pillow", "pydicom",
    "onnxruntime", "onnx", "imagehash", "torchstain", "h5py",  # test inference, BUSI's split, Macenko, PCam
)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and (when installed) PyTorch random generators.

    Args:
        seed: Any integer in [0, 2**32 - 1].
    """
    random.seed(seed)
    np.random.seed(seed % (2**32))
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return
    torch.manual_seed(seed)


def package_versions() -> dict[str, str]:
    """Versions of Python, the platform and the packages breastdx uses (``"not installed"`` when absent)."""
    out = {"python": sys.version.split()[0], "platform": platform.platform(), "breastdx": __version__}
    for name in TRACKED_PACKAGES[1:]:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def utc_timestamp() -> str:
    """The current UTC time as ``YYYYmmdd-HHMMSS``, for folder names."""
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%d-%H%M%S")


def utc_now_iso() -> str:
    """The current UTC time in ISO 8601 with seconds."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


RUN_DIR_ENV = "BREASTDX_RUN_DIR"
"""Set by the rank-0 process of ``breastdx train`` to its run folder, so that the processes Lightning starts for
the other ranks of a distributed run (they inherit the environment) use the same folder instead of a new one."""


def is_rank_zero() -> bool:
    """False in the processes of a distributed run other than global rank 0.

    Reads what launchers set before any process group exists: ``RANK`` (torchrun), else ``NODE_RANK`` and
    ``LOCAL_RANK`` (Lightning's launcher). A plain process is rank zero.
    """
    if os.environ.get("RANK") not in (None, ""):
        return int(os.environ["RANK"]) == 0
    return int(os.environ.get("NODE_RANK") or 0) == 0 and int(os.environ.get("LOCAL_RANK") or 0) == 0


class RunFolderError(ValueError):
    """The output folder (``--out``) cannot be used: it is a file, or it cannot be created or written to."""


class RunFolderExistsError(RunFolderError, FileExistsError):
    """The output folder exists and is not empty; breastdx never overwrites a run."""


def make_run_dir(task: str, out: str | os.PathLike[str] | None, kind: str = "train") -> Path:
    """Create the output folder of a run.

    Args:
        task: Task name, used in the default path.
        out: Requested folder, or None for ``runs/<task>/<UTC timestamp>`` (``runs/<task>/<kind>-<ts>``
            for kinds other than train).
        kind: ``"train"``, ``"evaluate"`` or ``"predict"``.

    Returns:
        The created folder.

    Raises:
        RunFolderExistsError: If the folder exists and is not empty.
        RunFolderError: If the path is a file (or below one), or the folder cannot be created or written to
            (read-only, no permission); the message names the path and the reason.
    """
    made: list[Path] = []
    if out is None:
        stamp = utc_timestamp()
        path = _new_default_folder(Path("runs") / task / (stamp if kind == "train" else f"{kind}-{stamp}"), made)
    else:
        path = Path(out)
    if path.exists() and not path.is_dir():
        raise RunFolderError(f"Output folder {path} is a file, not a folder; choose another --out.")
    if (path / FAILED_RUN_FILE).is_file():
        first = (path / FAILED_RUN_FILE).read_text(encoding="utf-8", errors="replace").splitlines()[:1]
        raise RunFolderExistsError(
            f"Output folder {path} holds a run that failed ({FAILED_RUN_FILE}: {first[0] if first else '?'}); "
            f"remove it or choose another --out (runs are never overwritten)."
        )
    if path.exists() and any(path.iterdir()):
        raise RunFolderExistsError(
            f"Output folder {path} exists and is not empty; choose another --out (runs are never overwritten)."
        )
    created = made or [p for p in (path, *path.parents) if not p.exists()]  # the folder, then the parents made for it
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".breastdx-write-test"
        probe.touch()
        probe.unlink()
    except OSError as e:
        raise RunFolderError(f"Output folder {path} cannot be created or written to ({e.strerror or e}); choose "
                             f"another --out, in a folder you may write to.") from None
    if created:  # a command that fails before writing anything (data not found) leaves no empty folder behind
        atexit.register(_remove_if_empty, created)
    return path


def _new_default_folder(path: Path, made: list[Path]) -> Path:
    """``path``, or ``path-2``, ``path-3``, ... : the first of them this call creates itself (an atomic ``mkdir``),
    so that two runs started in the same second never share a timestamped folder. The folders created (it, then
    the parents made for it) are appended to ``made``."""
    parents = [p for p in path.parents if not p.exists()]
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError:  # a file in the way, read-only or not allowed: make_run_dir says so, naming the folder
        return path
    for k in range(1, 1000):
        candidate = path if k == 1 else path.with_name(f"{path.name}-{k}")
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        except OSError:  # read-only or not allowed: make_run_dir says so, naming the folder
            return candidate
        made.extend([candidate, *parents])
        return candidate
    raise RunFolderError(f"{path}: 999 run folders of this second exist already; choose an --out.")


FAILED_RUN_FILE = "error.txt"
"""Written into a run folder by :func:`record_failure` when its run stops on an error or an interrupt."""


def record_failure(run_dir: Path, reason: str, stopped: str | None = None) -> Path | None:
    """Keep a failed run's folder honest: write ``error.txt`` (the UTC time and ``reason``) beside the config, split
    and versions the run wrote before it stopped, so that the folder is not mistaken for a finished run and a second
    ``--out`` to it is refused with the reason (:func:`make_run_dir`). Only global rank 0 writes.

    Args:
        run_dir: The run folder; nothing is written when it does not exist or is empty (it is removed at exit).
        reason: What stopped the run, one line or more.
        stopped: When it stopped, as text; default now (UTC).

    Returns:
        The file written, or None.
    """
    if not is_rank_zero() or not run_dir.is_dir() or not any(run_dir.iterdir()):
        return None
    path = run_dir / FAILED_RUN_FILE
    try:
        path.write_text(f"{reason.strip()}\nstopped at {stopped or utc_now_iso()}\n", encoding="utf-8")
    except OSError:
        return None
    return path


RUNNING_FILE = "running.json"
"""In a training run's folder while its process runs: ``{"host", "pid", "started"}`` (:func:`mark_running`). Left
behind by a process that was killed without a word (SIGKILL, out of memory, the machine stopped), it tells
``--resume`` that the run stopped: its process is gone from this host."""


def mark_running(run_dir: Path) -> None:
    """Write :data:`RUNNING_FILE` for this process (global rank 0 only)."""
    import socket

    if is_rank_zero():
        write_json({"host": socket.gethostname(), "pid": os.getpid(), "started": utc_now_iso()},
                   Path(run_dir) / RUNNING_FILE)


def clear_running(run_dir: Path) -> None:
    """Remove :data:`RUNNING_FILE` (the run finished, or its failure is recorded in ``error.txt``)."""
    if is_rank_zero():
        (Path(run_dir) / RUNNING_FILE).unlink(missing_ok=True)


def _gone_without_a_word(run_dir: Path) -> str | None:
    """Why a run without ``error.txt`` counts as stopped: its :data:`RUNNING_FILE` names a process of this host
    that no longer exists; None when there is no such file (a finished run).

    Raises:
        RunFolderError: If the process still runs, or ran on another host (which this one cannot check).
    """
    import socket

    path = Path(run_dir) / RUNNING_FILE
    if not path.is_file():
        return None
    try:
        owner = json.loads(path.read_text(encoding="utf-8", errors="replace"))
        host, pid = owner["host"], int(owner["pid"])
    except (ValueError, TypeError, KeyError) as e:  # cut short by a kill while it was written, or edited
        raise RunFolderError(f"{path}: not readable as the record of a training process ({type(e).__name__}: {e}); "
                             f"expected JSON with 'host' and 'pid'. If that training is not running, delete the file "
                             f"and resume again.") from None
    if host != socket.gethostname():
        raise RunFolderError(f"{run_dir}: its training ran on host {host!r} (process {pid}); resume it there, or, "
                             f"if that process is gone, delete {path} and resume it here.")
    gone = (f"Stopped without a word (process {pid}, started {owner.get('started')}, is gone: killed, out of "
            f"memory, or the machine stopped).")
    if pid == os.getpid() or _started_after(pid, owner.get("started")):  # its number now names another process
        return gone                                                       # (a container restarted, say)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return gone
    except PermissionError:
        pass  # a process of another user holds this number: it exists
    raise RunFolderError(f"{run_dir}: its training is still running (process {pid} on this host); leave it, or stop "
                         f"it first. If that process is not the training (its number was reused), delete {path} and "
                         f"resume again.")


def _started_after(pid: int, started: Any) -> bool:
    """Whether process ``pid`` of this host started after ``started`` (the ISO time a training wrote into its
    :data:`RUNNING_FILE`, after its process had started), so that it is another process given the same number;
    False where Linux's ``/proc`` cannot tell."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8")
        since_boot = int(stat.rsplit(")", 1)[1].split()[19])  # field 22, in ticks
        boot = next(int(line.split()[1]) for line in Path("/proc/stat").read_text(encoding="utf-8").splitlines()
                    if line.startswith("btime "))
        began = boot + since_boot / os.sysconf("SC_CLK_TCK")
        recorded = _dt.datetime.fromisoformat(str(started).replace("Z", "+00:00")).timestamp()
    except (OSError, ValueError, IndexError, StopIteration, AttributeError):
        return False
    return began > recorded + 2.0  # /proc's start time is whole seconds since boot, btime whole seconds


RESUME_ENV = "BREASTDX_RESUME"
"""Set (to ``1``) by ``breastdx train --resume``: a training continues from its folder's last checkpoint
(:func:`breastdx.training.trainer.fit`), and what a stopped run left half-written is written again."""


def new_model_dir(run_dir: Path, make: bool = True, name: str = "model") -> Path:
    """``run_dir/<name>``, the path of a training's model folder (``model``, or a cross-validation's ``ensemble``),
    created (``make``) or left for the caller to create (a copy of another model folder). In a resumed run (:data:`RESUME_ENV`), a model folder the stopped run
    had begun to write (it stopped while testing or exporting) is removed first, and the log says so; otherwise an
    existing one is an error.

    Raises:
        FileExistsError: If the folder exists and the run is not resumed.
    """
    import shutil

    path = Path(run_dir) / name
    if path.exists() and os.environ.get(RESUME_ENV):
        logging.getLogger(__name__).info("%s: left half-written by the stopped run; written again", path)
        shutil.rmtree(path)
    if path.exists():
        raise FileExistsError(f"{path}: a model folder is there already; a run never overwrites one.")
    if make:
        path.mkdir()
    return path


RESUME_LOG = "resumed.txt"
"""Each resumption of a stopped run: why it had stopped (its ``error.txt``) and when it was resumed."""


def stopped_run_config(run_dir: Path, task: str) -> dict[str, Any]:
    """Check that ``run_dir`` holds a stopped training run of ``task`` and return its ``config.yaml``.

    Args:
        run_dir: The run folder given to ``breastdx train TASK --resume``.
        task: The task named on the command line.

    Returns:
        The content of the run's ``config.yaml`` (its options, ``data_root``, ...).

    Raises:
        RunFolderError: If the folder is missing, holds no ``config.yaml``, is a run of another task, or holds no
            ``error.txt`` (a finished run has nothing to resume) and no :data:`RUNNING_FILE` of a process gone from
            this host (one still running, or of another host, is refused too). A run whose process vanished gets
            its ``error.txt`` written here, saying so.
    """
    import yaml

    config = Path(run_dir) / "config.yaml"
    if not Path(run_dir).is_dir() or not config.is_file():
        raise RunFolderError(f"{run_dir}: not a breastdx run folder (no config.yaml); --resume takes the folder of "
                             f"a training run that stopped.")
    data = yaml.safe_load(config.read_text(encoding="utf-8")) or {}
    if data.get("task") != task:
        raise RunFolderError(f"{run_dir}: a run of task {data.get('task')!r}, not {task!r}.")
    if not (Path(run_dir) / FAILED_RUN_FILE).is_file():
        gone = _gone_without_a_word(run_dir)
        if gone is None:
            raise RunFolderError(f"{run_dir}: not a stopped run (no {FAILED_RUN_FILE} and no {RUNNING_FILE}): a "
                                 f"finished run has nothing to resume.")
        record_failure(Path(run_dir), gone, stopped=f"an unknown time (found stopped at {utc_now_iso()})")
    return data


def mark_resumed(run_dir: Path) -> None:
    """Move a stopped run's ``error.txt`` into ``resumed.txt`` (appended, with the UTC time of resuming), so that
    the folder says it was resumed and why it had stopped."""
    failed = Path(run_dir) / FAILED_RUN_FILE
    reason = failed.read_text(encoding="utf-8", errors="replace").strip()
    with open(Path(run_dir) / RESUME_LOG, "a", encoding="utf-8") as f:
        f.write(f"{reason}\nresumed at {utc_now_iso()}\n\n")
    failed.unlink()
    clear_running(run_dir)


def _remove_if_empty(folders: list[Path]) -> None:
    """At exit: remove the folders this process created for a run (the run folder first, then the parents made
    for it, as ``runs/<task>``) that are still empty; a folder given empty, or one written to, is kept."""
    for folder in folders:
        try:
            folder.rmdir()  # only an empty folder: rmdir refuses the others
        except OSError:
            return


def json_ready(data: Any) -> Any:
    """``data`` with every non-finite float (NaN, infinity; Python or NumPy, in arrays too) replaced by None,
    NumPy scalars and arrays turned into Python numbers and lists, and tuples into lists; other values as they are.

    JSON has no NaN or infinity (Python's ``json`` writes the tokens ``NaN`` and ``Infinity``, which ``jq``,
    JavaScript's ``JSON.parse`` and most other readers reject), so breastdx writes them as ``null``: a figure that
    could not be computed (the sensitivity of a class never tested, say). A reader that computes with such a value
    turns it back into NaN with :func:`number`.
    """
    if isinstance(data, (np.generic, np.ndarray)):
        data = data.tolist() if isinstance(data, np.ndarray) else data.item()
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):  # NumPy keys (a Counter of labels) as Python ones: json refuses np.int64 keys
        return {(k.item() if isinstance(k, np.generic) else k): json_ready(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [json_ready(v) for v in data]
    return data


def number(value: Any) -> float:
    """``value`` as a float, None (a non-finite figure that :func:`json_ready` wrote as ``null``) as NaN."""
    return float("nan") if value is None else float(value)


def write_json(data: Any, path: Path) -> None:
    """Write ``data`` as indented JSON; only global rank 0 of a distributed run writes.

    NumPy scalars and arrays are written as numbers and lists, paths as text, and NaN or infinite floats as
    ``null`` (:func:`json_ready`), so that the file is standard JSON for any reader; read such a figure back as a
    number with :func:`number`.
    """
    if not is_rank_zero():
        return

    def default(o: Any) -> Any:
        if isinstance(o, Path):
            return str(o)
        raise TypeError(f"Object of type {type(o).__name__} is not JSON serialisable")

    write_text_atomic(path, json.dumps(json_ready(data), indent=2, default=default, allow_nan=False) + "\n")


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` through a temporary file of the same folder renamed over it: a reader sees
    the old file or the new one whole, never a half-written one (a process killed while writing, a disk full)."""
    import tempfile

    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o666 & ~_UMASK)  # as an ordinary new file (mkstemp makes it 0600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _read_umask() -> int:
    mask = os.umask(0o022)  # read once, at import: setting it later would race with the threads of the service
    os.umask(mask)
    return mask


_UMASK = _read_umask()


def machine_versions() -> dict[str, Any]:
    """What of the machine shapes a run's figures beside the packages: the CPU, its vector extensions, PyTorch's CPU
    capability (the kernels it dispatches to), whether bfloat16 is native (``--precision auto`` trains in
    bf16-mixed there), and the CUDA device where there is one."""
    import torch

    from breastdx.runtime import machine_summary

    machine = machine_summary()
    out: dict[str, Any] = {"cpu": machine["cpu"], "cpu_extensions": machine["extensions"],
                           "bf16_native_cpu": machine["bf16_native"], "torch_cpu_capability": machine["torch_capability"],
                           "cuda": torch.version.cuda or "none"}
    if torch.cuda.is_available():
        out["cuda_device"] = torch.cuda.get_device_name(0)
    return out


def write_versions(run_dir: Path) -> dict[str, Any]:
    """Write ``versions.json`` into ``run_dir`` (:func:`package_versions` and :func:`machine_versions`) and return
    its content."""
    versions = {**package_versions(), **machine_versions()}
    write_json(versions, run_dir / "versions.json")
    return versions
