"""Peak memory of reading an official-layout PCam HDF5 file of N patches (default 50,000), one patch at a time.

Writes ``camelyonpatch_level_2_split_train_{x,y}.h5`` (uncompressed, like the official files; 50,000
patches are 1.38 GB) into a temporary folder in chunks of 1,000 patches, then reads every patch in a
fresh Python process, one by one and then in batches of 256, and prints that process's peak resident
memory before and after reading: ``VmHWM`` of ``/proc/self/status`` on Linux (the process's own high-water mark;
``ru_maxrss`` starts from the parent's peak, which holds torch and the writer's buffers), ``ru_maxrss``
elsewhere. The issue's target is < 1 GB.

In the same run, the naive notebook reader (``h5py.File(...)["x"][:]``: the whole array in memory) reads
the same file in another fresh process, and the ratio of peak memories is printed, with the machine line.

Usage::

    python benchmarks/pcam_hdf5_memory.py [--n 50000] [--dir /tmp/somewhere] [--keep]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

PEAK = r"""
import resource

def peak_mib():
    try:  # Linux: this process's own high-water mark (ru_maxrss keeps the parent's across fork and exec)
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM")) / 1024.0
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux, bytes on macOS
"""
"""The readers' peak memory in MiB (the code both child processes start with)."""

CHILD = PEAK + r"""
import json, sys, time
import numpy as np
from breastdx.data.pcam import read_pcam_h5

source = read_pcam_h5(sys.argv[1], "train")
before = peak_mib()
t0 = time.perf_counter()
total = 0
for i in range(len(source)):
    image, label = source.get(i)
    total += int(image[48, 48, 0]) + label
t1 = time.perf_counter()
for start in range(0, len(source), 256):
    images, labels = source.get_many(range(start, min(len(source), start + 256)))
    total += int(images[:, 0, 0, 0].sum())
t2 = time.perf_counter()
print(json.dumps({"n": len(source), "peak_rss_mib_after_open": round(before, 1),
                  "peak_rss_mib": round(peak_mib(), 1), "seconds_one_by_one": round(t1 - t0, 2),
                  "seconds_batches_of_256": round(t2 - t1, 2), "checksum_of_reads": total}))
"""

NAIVE_CHILD = PEAK + r"""
import glob, json, sys, time
import h5py
t0 = time.perf_counter()
with h5py.File(glob.glob(sys.argv[1] + "/*_x.h5")[0], "r") as f:
    x = f["x"][:]
total = int(x[:, 48, 48, 0].sum())
print(json.dumps({"peak_rss_mib": round(peak_mib(), 1),
                  "seconds": round(time.perf_counter() - t0, 2), "checksum": total}))
"""


def write_file(folder: Path, n: int, chunk: int = 1000, seed: int = 0) -> None:
    """Write an official-layout train pair of ``n`` patches in chunks (bounded memory)."""
    import h5py

    from breastdx.data.pcam import h5_paths

    x_path, y_path = h5_paths(folder, "train")
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, size=(chunk, 96, 96, 3), dtype=np.uint8)
    with h5py.File(x_path, "w") as f:
        x = f.create_dataset("x", shape=(n, 96, 96, 3), dtype=np.uint8)
        for k, start in enumerate(range(0, n, chunk)):
            stop = min(n, start + chunk)
            x[start:stop] = base[: stop - start] + np.uint8(k % 256)
    with h5py.File(y_path, "w") as f:
        f.create_dataset("y", data=(np.arange(n) % 2).astype(np.uint8).reshape(n, 1, 1, 1))


def measure(n: int = 50_000, folder: Path | None = None, keep: bool = False) -> dict:
    """Write the file, read it in a child process and return the child's figures."""
    own = folder is None
    folder = Path(tempfile.mkdtemp(prefix="pcam-h5-memory-")) if own else Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    try:
        write_file(folder, n)
        out = subprocess.run([sys.executable, "-c", CHILD, str(folder)], check=True, capture_output=True, text=True)
        result = json.loads(out.stdout.strip().splitlines()[-1])
        naive = subprocess.run([sys.executable, "-c", NAIVE_CHILD, str(folder)], check=True, capture_output=True,
                               text=True)
        result["naive_whole_array"] = json.loads(naive.stdout.strip().splitlines()[-1])
        result["peak_memory_ratio_naive_to_lazy"] = round(result["naive_whole_array"]["peak_rss_mib"]
                                                          / result["peak_rss_mib"], 1)
        return result
    finally:
        if own and not keep:
            shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=50_000, help="patches in the file")
    parser.add_argument("--dir", type=Path, default=None, help="folder for the file (default: a temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args()
    result = measure(args.n, args.dir, args.keep)
    sys.path.insert(0, str(Path(__file__).parent))
    from _machine import machine_line

    print(json.dumps(machine_line()))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
