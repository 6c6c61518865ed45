"""The run queue: one training run at a time per device, shared by every browser session.

A classroom shares one GPU server: runs submitted from any session wait in a first-in, first-out
queue per device and show their position; a worker thread per device runs them one after the
other and keeps every event, so a page can leave and come back (or another session can watch).
``cancel`` removes a waiting run or stops a running one within a second (``fine_tune``'s ``stop``);
GPU memory is handed back after every run.

>>> from vision_core.training import TrainConfig
>>> queue = RunQueue()
>>> job = queue.submit(TrainConfig(train_size=600, max_steps=2, val_size=200, test_size=200, device="cpu"))
>>> queue.wait(job, timeout=120), job.state
(True, 'done')
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import itertools
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal

import pandas as pd
import torch

from vision_core.device import describe_device, resolve_device
from vision_core.registry import get_spec
from vision_core.training import RunFinished, TrainConfig, TrainEvent, check_config, fine_tune

JobState = Literal["queued", "running", "done", "stopped", "failed", "cancelled"]
Runner = Callable[..., Iterator[TrainEvent]]  # fine_tune's signature: (cfg, stop=threading.Event)
# Training is the batch job and the class's strokes and uploads are interactive: on Linux the worker thread runs at
# this niceness, and the OpenMP threads it starts inherit it, so a run takes the CPU time that inference leaves.
WORKER_NICENESS = 10


def _lower_this_threads_priority() -> None:
    if sys.platform.startswith("linux"):  # setpriority on a thread id is Linux's per-thread niceness
        with contextlib.suppress(OSError):  # raising niceness needs no privilege; a sandbox may still refuse it
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), WORKER_NICENESS)


class JobNotFoundError(KeyError):
    """No job with that id (it was never submitted, or it has been forgotten to bound memory)."""


@dataclass(frozen=True)
class Progress:
    fraction: float  # of the planned training steps
    step: int
    total_steps: int
    eta_s: float | None  # training time left at the current pace (evaluation not included)
    samples_per_s: float | None
    elapsed: float


@dataclass(eq=False)
class Job:
    """One run in the queue. The worker appends to ``events``; readers take ``list(job.events)``."""

    id: int
    cfg: TrainConfig
    label: str
    device_key: str  # the queue it waits in: "cpu" or "cuda:N"
    device: str  # readable: "CPU (2 threads)" or the GPU's name
    group: str | None = None  # runs submitted together (a sweep)
    state: JobState = "queued"
    events: list[TrainEvent] = field(default_factory=list)
    error: str | None = None
    submitted: float = field(default_factory=time.time)
    started: float | None = None
    ended: float | None = None
    model_released: bool = False  # the trained model was dropped to bound memory: metrics stay, saving does not
    stop: threading.Event = field(default_factory=threading.Event, repr=False)
    ended_event: threading.Event = field(default_factory=threading.Event, repr=False)  # set once the job has ended

    @property
    def active(self) -> bool:
        return self.state in ("queued", "running")

    @property
    def result(self) -> RunFinished | None:
        last = self.events[-1] if self.events else None
        return last if isinstance(last, RunFinished) else None

    def progress(self) -> Progress:
        """Where the run is: fraction of steps, ETA and throughput from its latest event."""
        last = self.events[-1] if self.events else None
        if last is None:
            return Progress(0.0, 0, 0, None, None, 0.0)
        fraction = last.step / last.total_steps if last.total_steps else 0.0
        eta = (
            last.elapsed / last.step * (last.total_steps - last.step) if last.step and self.state == "running" else None
        )
        return Progress(min(fraction, 1.0), last.step, last.total_steps, eta, last.samples_per_s or None, last.elapsed)


def describe_config(cfg: TrainConfig) -> str:
    """A one-line label: "LeNet-style CNN · adamw lr 0.002 · batch 128 · 6,000 images · 2 epochs"."""
    title = get_spec(cfg.model).title
    start = {"scratch": "", "checkpoint": " from checkpoint", "imagenet": " from ImageNet"}[cfg.init]
    frozen = " (frozen backbone)" if cfg.mode == "features" else ""
    length = f"{cfg.max_steps} steps max" if cfg.max_steps else f"{cfg.epochs} epoch{'s' if cfg.epochs > 1 else ''}"
    return f"{title}{start}{frozen} · {cfg.optimizer} lr {cfg.lr:g} · batch {cfg.batch_size} · {min(cfg.train_size, 60_000):,} images · {length}"


EVENT_COLUMNS = ["kind", "step", "epoch", "split", "loss", "accuracy", "lr", "samples_per_s", "elapsed"]


def events_frame(events: Sequence[TrainEvent]) -> pd.DataFrame:
    """A run's events as a table, one row each (what the charts draw)."""
    return pd.DataFrame([{c: getattr(e, c) for c in EVENT_COLUMNS} for e in events], columns=EVENT_COLUMNS)


def device_key(device: str) -> str:
    resolved = resolve_device(device)
    return f"cuda:{resolved.index or 0}" if resolved.type == "cuda" else resolved.type


class RunQueue:
    """First-in, first-out training runs, one at a time per device, each device served by its own worker thread.

    Workers start when a run is submitted and end when their queue is empty, so an idle queue holds
    no thread. Finished jobs are kept (their events for late viewers) up to ``max_jobs``; only the
    ``keep_models`` most recent trained models stay in memory (a VGG16 weighs half a gigabyte).
    """

    def __init__(
        self,
        runner: Runner = fine_tune,
        check: Callable[[TrainConfig], object] = check_config,
        max_jobs: int = 200,
        keep_models: int = 4,
    ) -> None:
        self._runner, self._check = runner, check
        self._max_jobs, self._keep_models = max_jobs, keep_models
        self._lock = threading.Lock()
        self._jobs: dict[int, Job] = {}
        self._waiting: dict[str, deque[Job]] = {}
        self._workers: dict[str, threading.Thread] = {}
        self._ids = itertools.count(1)

    def submit(self, cfg: TrainConfig, label: str | None = None, group: str | None = None) -> Job:
        """Queue a run; raises ``TrainConfigError`` / ``WeightsMissingError`` now rather than failing later."""
        self._check(cfg)
        key = device_key(cfg.device)
        job = Job(
            id=next(self._ids),
            cfg=cfg,
            label=label or describe_config(cfg),
            device_key=key,
            device=describe_device(cfg.device),
            group=group,
        )
        with self._lock:
            self._jobs[job.id] = job
            self._waiting.setdefault(key, deque()).append(job)
            if key not in self._workers:
                worker = threading.Thread(target=self._work, args=(key,), name=f"run-queue-{key}", daemon=True)
                self._workers[key] = worker
                worker.start()
            self._forget_old()
        return job

    def get(self, job_id: int) -> Job:
        try:
            return self._jobs[job_id]
        except KeyError:
            raise JobNotFoundError(
                f"no run #{job_id} in the queue (finished runs are kept up to {self._max_jobs})"
            ) from None

    def jobs(self, group: str | None = None) -> list[Job]:
        """All kept jobs, oldest first (or those of one ``group``)."""
        with self._lock:
            return [job for job in self._jobs.values() if group is None or job.group == group]

    def position(self, job: Job) -> int | None:
        """0 while running, 1 for the next to run, 2 after it, ...; None once it has ended."""
        with self._lock:
            if job.state == "running":
                return 0
            waiting = self._waiting.get(job.device_key, ())
            return next((i + 1 for i, queued in enumerate(waiting) if queued is job), None)

    def cancel(self, job_id: int) -> Job:
        """Take a waiting run out of the queue, or stop a running one (it ends within a second, partial events kept)."""
        job = self.get(job_id)
        with self._lock:
            if job.state == "queued":
                self._waiting[job.device_key].remove(job)
                job.state, job.ended = "cancelled", time.time()
                job.ended_event.set()
            elif job.state == "running":
                job.stop.set()
        return job

    def wait(self, job: Job, timeout: float | None = None) -> bool:
        """Block until ``job`` has ended; False on timeout."""
        return job.ended_event.wait(timeout)

    def join(self, timeout: float | None = None) -> bool:
        """Wait for every worker thread to finish its queue and exit; False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._lock:
                workers = list(self._workers.values())
            if not workers:
                return True
            for worker in workers:
                worker.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
            if deadline is not None and time.monotonic() >= deadline:
                with self._lock:
                    return not self._workers

    def shutdown(self, timeout: float | None = 10.0) -> bool:
        """Cancel everything waiting, stop what runs, and wait for the workers to exit."""
        for job in self.jobs():
            if job.active:
                self.cancel(job.id)
        return self.join(timeout)

    # --- the worker --------------------------------------------------------------------------------------------

    def _work(self, key: str) -> None:
        _lower_this_threads_priority()
        while True:
            with self._lock:
                waiting = self._waiting.get(key)
                if not waiting:
                    del self._workers[key]  # under the lock: a submit now starts a fresh worker
                    return
                job = waiting.popleft()
                job.state, job.started = "running", time.time()
            self._run(job)

    def _run(self, job: Job) -> None:
        try:
            for event in self._runner(job.cfg, stop=job.stop):
                if isinstance(event, RunFinished):
                    event.model.cpu()  # in place: the GPU copy goes, the result stays usable
                job.events.append(event)
            job.state = "done" if job.result is not None else "stopped"
        except torch.cuda.OutOfMemoryError as error:
            job.state, job.error = "failed", f"the GPU ran out of memory ({error}); try a smaller batch or image size"
        except Exception as error:  # a failing run must end that run only, never the worker serving the others
            job.state, job.error = "failed", f"{type(error).__name__}: {error}"
        finally:
            job.ended = time.time()
            if job.device_key.startswith("cuda"):
                gc.collect()  # the finished generator's tensors, then the allocator's cache
                torch.cuda.empty_cache()
            job.ended_event.set()
            with self._lock:
                self._forget_old()

    def _forget_old(self) -> None:
        """Bound memory (called under the lock): drop old models, then the oldest ended jobs."""
        ended = [job for job in self._jobs.values() if not job.active]
        with_models = [job for job in ended if job.result is not None and not job.model_released]
        for job in with_models[: max(0, len(with_models) - self._keep_models)]:
            job.events[-1] = dataclasses.replace(job.result, model=None)
            job.model_released = True
        for job in ended[: max(0, len(self._jobs) - self._max_jobs)]:
            del self._jobs[job.id]
