"""What runs inside a training run's own process: limits first, then ``fine_tune``, every event sent to the app.

The app (``vision_core.jobs``) starts one process per run. Here, before any work, the process lowers its priority
(niceness +10: a class's strokes and uploads win the CPU), caps its data segment with the operating system's
``RLIMIT_DATA`` (an allocation beyond the budget fails in this process, which reports "out of memory"; the server
never notices), pins its torch threads and, on a GPU, its share of the GPU's memory. Then it trains, sends each event
through the pipe, writes the trained weights into the run's folder (before the last event, so "done" means "saved
on disk") and exits. Torch's global random generator is this process's own: nothing the app does can change a seeded
run, and a run cannot change the app's previews.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import os
import resource
import sys
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from vision_core.policy import MB, Budget
from vision_core.training import RunFinished, Stop, TrainConfig, TrainEvent, build_for_training, fine_tune

NICENESS = 10
Runner = Callable[[TrainConfig, Stop, Path], Iterator[TrainEvent]]


def train_and_save(cfg: TrainConfig, stop: Stop, run_dir: Path) -> Iterator[TrainEvent]:
    """The default runner: ``fine_tune`` on a fresh model; the weights go into ``run_dir`` before the last event."""
    from vision_core.registry import get_spec
    from vision_core.runs import write_weights

    model = build_for_training(cfg)
    for event in fine_tune(cfg, model=model, stop=stop):
        if isinstance(event, RunFinished):
            write_weights(model, get_spec(cfg.model).architecture, run_dir)
        yield event


def apply_limits(budget: Budget, device_type: str) -> None:
    """Priority, memory, threads: the run's share of the machine, set by the operating system where it can be."""
    if hasattr(os, "nice"):
        with contextlib.suppress(OSError):
            os.nice(NICENESS)
    limit = budget.memory_mb * MB
    with contextlib.suppress(ValueError, OSError):  # an unprivileged process may lower its limits, never raise them
        _, hard = resource.getrlimit(resource.RLIMIT_DATA)
        resource.setrlimit(resource.RLIMIT_DATA, (min(limit, hard) if hard > 0 else limit, hard))
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):  # glibc: two malloc arenas, not 8 per core of address space
            ctypes.CDLL("libc.so.6").mallopt(-8, 2)  # M_ARENA_MAX
    # Always set, never inherited: Ray sets OMP_NUM_THREADS=1 in its workers, and a seeded run gives the same numbers
    # on every backend only with the same number of threads.
    torch.set_num_threads(budget.threads or os.cpu_count() or 1)
    if device_type == "cuda" and torch.cuda.is_available():
        torch.cuda.set_per_process_memory_fraction(budget.gpu_memory_fraction)


def load_runner(path: str) -> Runner:
    """``"package.module:function"`` -> the function (tests swap in runners that fail or hog memory)."""
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def describe_failure(error: BaseException, budget: Budget) -> str:
    """A plain sentence for what ended the run, with what to change."""
    text = str(error)
    if isinstance(error, MemoryError) or "can't allocate memory" in text or "DefaultCPUAllocator" in text:
        return (
            f"the run ran out of its memory budget ({budget.memory_mb:,} MB) and was ended; nothing else was affected. "
            "Lower the batch size or the image size, or pick a smaller model"
        )
    if isinstance(error, torch.cuda.OutOfMemoryError):
        return "the GPU ran out of memory for this run; lower the batch size or the image size"
    return f"{type(error).__name__}: {text[:500]}"


def main(cfg: TrainConfig, run_dir: str, budget: Budget, connection: Any, stop: Stop, runner: str) -> None:
    """The process's entry point: ("event", TrainEvent) messages, then ("error", text) if it failed, then it exits."""
    from vision_core.device import resolve_device

    try:
        apply_limits(budget, resolve_device(cfg.device).type)
        for event in load_runner(runner)(cfg, stop, Path(run_dir)):
            connection.send(("event", event))
    except BaseException as error:  # everything ends here with a message: the app must learn why, whatever it was
        with contextlib.suppress(Exception):
            message = describe_failure(error, budget)
            connection.send(("error", message))
            if "memory" not in message and not isinstance(error, KeyboardInterrupt):  # a bug: the log gets the trace
                traceback.print_exc()
        sys.exit(1)
    finally:
        with contextlib.suppress(Exception):
            connection.close()
