"""Runners for the run service's tests: each runs in a run's own worker process (``jobs.LocalBackend(runner=...)``)."""

from __future__ import annotations

import json
import os
import resource
import time
from pathlib import Path

import torch

from vision_core.worker import train_and_save


def gated(cfg, stop, run_dir: Path):
    """Waits (stoppable) until the file ``gate`` appears next to the run folders, then trains."""
    gate = Path(run_dir).parent / "gate"
    while not gate.exists() and not stop.is_set():
        time.sleep(0.02)
    yield from train_and_save(cfg, stop, run_dir)


def fails_after_a_step(cfg, stop, run_dir: Path):
    events = train_and_save(cfg, stop, run_dir)
    yield next(events)
    raise RuntimeError("the data loader fell over")


def hogs_memory(cfg, stop, run_dir: Path):
    """Asks for far more memory than the budget allows, the way a too-large batch does."""
    yield from []
    hog = torch.empty(8 * 2**30, dtype=torch.uint8)  # 8 GB
    hog.fill_(1)


def ignores_stop(cfg, stop, run_dir: Path):
    """A run stuck in something that never checks the stop flag (a hung data read)."""
    yield from []
    time.sleep(3600)


def reports_limits(cfg, stop, run_dir: Path):
    """Writes what the operating system gave this process, then trains."""
    limits = {
        "niceness": os.getpriority(os.PRIO_PROCESS, 0),
        "data_limit": resource.getrlimit(resource.RLIMIT_DATA)[0],
        "threads": torch.get_num_threads(),
        "pid": os.getpid(),
    }
    (Path(run_dir) / "limits.json").write_text(json.dumps(limits))
    yield from train_and_save(cfg, stop, run_dir)
