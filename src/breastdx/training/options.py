"""The training options every image task shares, declared once (light: no torch, so that listing tasks and their
``--help`` stay fast)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from breastdx.config import option


@dataclass(frozen=True)
class LightningOptions:
    """Where and how Lightning trains: the options every image task's ``train`` shares (``--name value``).

    Attributes:
        precision: ``"auto"``, ``"32"`` or ``"bf16-mixed"`` (Lightning's names, resolved by
            :func:`breastdx.runtime.choose_training_precision`: ``auto`` is bf16-mixed only where bfloat16 is
            native, AMX / AVX512-BF16 CPUs and recent GPUs; bf16-mixed on a CPU that would emulate it falls back
            to 32 with a warning); ``16-mixed``, where the choices list it (GPUs without bfloat16), counts as bf16-mixed
            on a CPU.
        accelerator: Lightning accelerator (``auto``, ``cpu``, ``gpu``).
        devices: ``auto``, a count (``2``) or device indices (``0,1``).
        strategy: Lightning strategy (``auto``, ``ddp``, ...).
        num_nodes: Machines for distributed training.
        num_workers: Data-loader worker processes (0: load in the main process; the data are cached).
        threads: Torch CPU threads, set by the command line (0: PyTorch's default). On a busy machine 1 thread can
            be several times faster than 2, because waiting threads spin while their sibling is descheduled.
        max_train_batches: Batches per epoch (0: all), for smoke tests.
        deterministic: Deterministic algorithms where PyTorch has them (warns where an operation has none).
        progress_bar: Show the Rich progress bar.
    """

    options_last: ClassVar[bool] = True  # listed after a task's own options in --help

    precision: str = option("32", choices=("auto", "32", "bf16-mixed", "16-mixed"))
    accelerator: str = "auto"
    devices: str = "auto"
    strategy: str = "auto"
    num_nodes: int = option(1, ge=1)
    num_workers: int = option(0, ge=0)
    threads: int = option(0, ge=0)
    max_train_batches: int = option(0, ge=0)
    deterministic: bool = True
    progress_bar: bool = True
