"""Run a ``breastdx`` command line in a child process and measure it: shared by the predict benchmarks.

A benchmark script imports it as ``from _child import ...`` (scripts run as ``python benchmarks/NAME.py``
have this folder first on ``sys.path``).
"""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator


@dataclass(frozen=True)
class ChildRun:
    """What one child process did: its result, wall-clock seconds, CPU seconds and peak resident memory."""

    proc: subprocess.CompletedProcess
    wall_s: float
    cpu_s: float
    peak_rss_mib: float

    @property
    def stderr_tail(self) -> list[str]:
        """The last three lines of stderr when the command failed, else nothing."""
        return self.proc.stderr.strip().splitlines()[-3:] if self.proc.returncode != 0 else []


def run_cli(args: list[str], env: dict[str, str] | None = None) -> ChildRun:
    """Run ``python -m breastdx.cli ARGS...`` and measure it: CPU seconds and peak memory of this child alone
    (``os.wait4``'s usage; ``ru_maxrss`` in KiB on Linux). ``RUSAGE_CHILDREN`` would give the largest of every
    child so far, e.g. a naive-loop process run before it."""
    cmd = [sys.executable, "-m", "breastdx.cli", *args]
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        t0 = time.perf_counter()
        child = subprocess.Popen(cmd, stdout=out, stderr=err, text=True,
                                 env=dict(os.environ) if env is None else env)
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - t0
        child.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        proc = subprocess.CompletedProcess(cmd, child.returncode, out.read(), err.read())
    return ChildRun(proc, wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024.0)


def read_rows(path: Path) -> list[dict]:
    """The rows of a ``predictions.csv`` (none when the command wrote no file)."""
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@contextmanager
def scratch_folder(prefix: str, keep: bool) -> Iterator[Path]:
    """A temporary folder for the commands' outputs, removed afterwards unless ``keep``."""
    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield tmp
    finally:
        if keep:
            print(f"outputs kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
