"""The run service: training runs out of the app's process, budgeted, queued, owned.

A class shares one server. Every run is checked before it is queued (``check_config``; its memory and time estimated
against the class's budget, ``cost.check_budget``; the owner's and the class's limits on waiting and running runs),
then waits in a first-in, first-out queue per device, one run at a time per device. A run trains in a process of its
own (``vision_core.worker``: niced, its memory capped by the operating system) and streams its events back; a
supervisor thread per device (which only waits on a pipe) keeps them, enforces the wall-clock budget and turns
whatever ends the process (done, stopped, out of memory, killed, crashed) into the run's state and a plain message.

Runs belong to the browser that submitted them (``Caller.owner``): only the owner (or the teacher) stops, saves or
bundles a run; everyone may watch. Pages get ``JobView`` snapshots and read events incrementally (``events(id,
since)``), so the same interface serves the Ray backend, whose queue lives in the cluster (``ray_backend``).

>>> queue = RunQueue()
>>> job = queue.submit(TrainConfig(train_size=600, max_steps=2, val_size=200, test_size=200, device="cpu"), Caller("me"))
>>> queue.wait(job.id, timeout=120), queue.get(job.id).state
(True, 'done')
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import multiprocessing
import shutil
import signal
import sys
import threading
import time
import types
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import pandas as pd

from vision_core.cost import Estimate, check_budget
from vision_core.datasets import get_dataset
from vision_core.device import describe_device, resolve_device
from vision_core.policy import Budget, Policy, load_policy
from vision_core.registry import get_spec
from vision_core.runs import RUNS_DIR, TrainedWeights, write_bundle
from vision_core.training import INIT_TITLES, RunFinished, TrainConfig, TrainEvent, check_config

JobState = Literal["queued", "running", "done", "stopped", "failed", "cancelled"]
DEFAULT_RUNNER = "vision_core.worker:train_and_save"
WORK_DIR = RUNS_DIR / ".work"  # one folder per run: its weights (and download bundles) once it is done
STOP_GRACE_S = 10.0  # a run asked to stop that is still alive after this is killed
STALE_WORK_S = 24 * 3600


class JobNotFoundError(KeyError):
    """No run with that id (never submitted, or forgotten to bound memory)."""


class QueueFullError(ValueError):
    """The owner's or the class's limit on waiting and running runs is reached."""


class NotYourRunError(PermissionError):
    """Only a run's owner (or the teacher) may stop, save or bundle it."""


@dataclass(frozen=True)
class Caller:
    """Who asks: the browser's owner id (a hash of its token), and whether the teacher's password was given."""

    owner: str
    teacher: bool = False


@dataclass(frozen=True)
class Progress:
    fraction: float  # of the planned training steps
    step: int
    total_steps: int
    eta_s: float | None  # training time left at the current pace (evaluation not included)
    samples_per_s: float | None
    elapsed: float


@dataclass(frozen=True)
class RunInfo:
    """What a run is, fixed when it is queued."""

    id: int
    cfg: TrainConfig
    label: str
    owner: str
    group: str | None  # runs submitted together (a sweep)
    device_key: str  # the queue it waits in: "cpu" or "cuda:N"
    device: str  # readable: "CPU (2 threads)" or the GPU's name
    estimate: Estimate | None
    submitted: float


@dataclass(frozen=True)
class JobView(RunInfo):
    """A run as the pages see it: what it is and how far it got. A snapshot, cheap to make and safe to keep."""

    state: JobState
    error: str | None
    started: float | None
    ended: float | None
    event_count: int
    progress: Progress
    result: RunFinished | None
    position: int | None  # 0 running, 1 next, ...; None once ended

    @property
    def active(self) -> bool:
        return self.state in ("queued", "running")

    def owned_by(self, caller: Caller) -> bool:
        return caller.owner == self.owner


# --- Backends: where a run's process runs --------------------------------------------------------------------------


class Handle(Protocol):
    def messages(self, timeout: float) -> list[tuple[str, Any]]: ...  # ("event", TrainEvent) or ("error", text)
    def finished(self) -> bool: ...
    def stop(self) -> None: ...  # ask: the run ends within a second with a "stopped" event
    def kill(self) -> None: ...  # force
    def exit_note(self) -> str | None: ...  # why the process died, when it said nothing


class Backend(Protocol):
    """Starts a run somewhere; by the time its handle reports it finished, its weights are in ``run_dir``."""

    def start(self, cfg: TrainConfig, run_dir: Path, budget: Budget) -> Handle: ...


class ProcessHandle:
    """A run's local process: its event pipe and its stop flag."""

    def __init__(self, process: multiprocessing.Process, connection: Any, stop_flag: Any) -> None:
        self.process, self.connection, self.stop_flag = process, connection, stop_flag
        self.closed = False

    def messages(self, timeout: float) -> list[tuple[str, Any]]:
        found: list[tuple[str, Any]] = []
        with contextlib.suppress(EOFError, OSError):
            while not self.closed and self.connection.poll(timeout if not found else 0):
                found.append(self.connection.recv())
            return found
        self.closed = True  # the pipe's other end is gone: the process has exited (or died)
        return found

    def finished(self) -> bool:
        return self.closed and not self.process.is_alive()

    def stop(self) -> None:
        self.stop_flag.set()

    def kill(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.process.kill()

    def exit_note(self) -> str | None:
        self.process.join(timeout=5)
        code = self.process.exitcode
        if code is not None and code < 0:
            name = signal.Signals(-code).name
            cause = " (the machine ran out of memory, or it was killed at its time limit)" if name == "SIGKILL" else ""
            return f"the run's process was killed by {name}{cause}"
        return f"the run's process exited with code {code}" if code else None


def _context() -> Any:
    """Linux: a forkserver, so each run starts in milliseconds from a clean server that has already imported torch
    and vision_core (never a fork of the app's threads); elsewhere: spawn."""
    if sys.platform.startswith("linux"):
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["vision_core.worker"])
        return context
    return multiprocessing.get_context("spawn")


@contextlib.contextmanager
def _plain_main() -> Iterator[None]:
    """While a process starts, ``__main__`` is an empty module. multiprocessing re-imports the parent's ``__main__``
    in every child (and in the forkserver), and under Streamlit ``__main__`` is the app script itself (its script
    runner installs it): each run would otherwise execute the whole app first, in bare mode."""
    with _MAIN_LOCK:
        main = sys.modules.get("__main__")
        sys.modules["__main__"] = types.ModuleType("__main__")
        try:
            yield
        finally:
            if main is not None:
                sys.modules["__main__"] = main


_MAIN_LOCK = threading.Lock()


class LocalBackend:
    """Each run in a process of its own on this machine."""

    def __init__(self, runner: str = DEFAULT_RUNNER) -> None:
        self.runner, self.context = runner, _context()

    def start(self, cfg: TrainConfig, run_dir: Path, budget: Budget) -> ProcessHandle:
        from vision_core import worker

        receive, send = self.context.Pipe(duplex=False)
        stop_flag = self.context.Event()
        args = (cfg, str(run_dir), budget, send, stop_flag, self.runner)
        process = self.context.Process(target=worker.main, args=args, name=f"run-{run_dir.name}", daemon=True)
        with _plain_main():
            process.start()
        send.close()  # the child holds the sending end: when it exits, recv() sees EOF
        return ProcessHandle(process, receive, stop_flag)


# --- The queue -------------------------------------------------------------------------------------------------------


def describe_config(cfg: TrainConfig) -> str:
    """A one-line label: "LeNet-style CNN · MNIST · adamw lr 0.002 · batch 128 · 6,000 images · 2 epochs"."""
    title = get_spec(cfg.model).title
    start = "" if cfg.init == "scratch" else f" {INIT_TITLES[cfg.init].replace('its trained ', '')}"
    frozen = " (frozen backbone)" if cfg.mode == "features" else ""
    length = f"{cfg.max_steps} steps max" if cfg.max_steps else f"{cfg.epochs} epoch{'s' if cfg.epochs > 1 else ''}"
    images = "my pictures" if cfg.class_set else f"{cfg.train_size:,} images"
    return f"{title}{start}{frozen} · {get_dataset(cfg.dataset).title} · {cfg.optimizer} lr {cfg.lr:g} · batch {cfg.batch_size} · {images} · {length}"  # fmt: skip


def device_key(device: str) -> str:
    resolved = resolve_device(device)
    return f"cuda:{resolved.index or 0}" if resolved.type == "cuda" else resolved.type


@dataclass(eq=False)
class _Job:
    """A run inside the queue: its fixed facts, and what changes as it goes (the supervisor writes, pages read)."""

    info: RunInfo
    run_dir: Path
    state: JobState = "queued"
    events: list[TrainEvent] = field(default_factory=list)
    error: str | None = None
    started: float | None = None
    ended: float | None = None
    stop: threading.Event = field(default_factory=threading.Event)
    ended_event: threading.Event = field(default_factory=threading.Event)

    @property
    def active(self) -> bool:
        return self.state in ("queued", "running")

    def progress(self) -> Progress:
        """Where the run is: fraction of steps, ETA and throughput from its latest event."""
        last = self.events[-1] if self.events else None
        if last is None:
            return Progress(0.0, 0, 0, None, None, 0.0)
        fraction = last.step / last.total_steps if last.total_steps else 0.0
        running = last.step and self.state == "running"
        eta = last.elapsed / last.step * (last.total_steps - last.step) if running else None
        return Progress(min(fraction, 1.0), last.step, last.total_steps, eta, last.samples_per_s or None, last.elapsed)


class RunQueue:
    """Runs from every session: checked, limited per owner and in all, one at a time per device, each in its own process.

    A supervisor thread per device starts when a run is queued and ends when its queue is empty, so an idle queue
    holds no thread. Finished runs are kept (their events for late viewers, their weights on disk for saving) up to
    ``policy.queue.max_jobs_kept``; forgetting one deletes its folder.
    """

    def __init__(
        self, policy: Policy | None = None, backend: Backend | None = None,
        check: Callable[[TrainConfig], object] = check_config, work_dir: Path | None = None,
        stop_grace_s: float = STOP_GRACE_S,
    ) -> None:  # fmt: skip
        self.policy = policy or load_policy()
        self.backend = backend or LocalBackend()
        self._check, self._grace = check, stop_grace_s
        self._work_dir = Path(work_dir or WORK_DIR) / f"queue-{uuid.uuid4().hex[:8]}"
        self._lock = threading.Lock()
        self._jobs: dict[int, _Job] = {}
        self._waiting: dict[str, deque[_Job]] = {}
        self._workers: dict[str, threading.Thread] = {}
        self._ids = itertools.count(1)
        _remove_stale_work(self._work_dir.parent)

    # --- asking --------------------------------------------------------------------------------------------------

    def submit(self, cfg: TrainConfig, caller: Caller, label: str | None = None, group: str | None = None) -> JobView:
        """Queue a run. Raises ``TrainConfigError`` / ``WeightsMissingError`` (it cannot work), ``BudgetError`` (too
        big for this server: the message says what to lower) or ``QueueFullError`` (too many runs waiting)."""
        return self.submit_many([cfg], caller, group, [label] if label else None)[0]

    def submit_many(
        self, cfgs: Sequence[TrainConfig], caller: Caller, group: str | None = None, labels: Sequence[str] | None = None
    ) -> list[JobView]:
        """Queue several runs (a sweep) all together or none: each is checked, and all count against the limits."""
        estimates = [self._admit(cfg) for cfg in cfgs]
        with self._lock:
            self._check_limits(caller, len(cfgs))
            labels = labels or [None] * len(cfgs)
            jobs = [self._new_job(*args, caller=caller, group=group) for args in zip(cfgs, estimates, labels, strict=True)]  # fmt: skip
            for job in jobs:
                self._jobs[job.info.id] = job
                self._waiting.setdefault(job.info.device_key, deque()).append(job)
                self._ensure_worker(job.info.device_key)
            self._forget_old()
            return [self._view(job) for job in jobs]

    def _admit(self, cfg: TrainConfig) -> Estimate:
        self._check(cfg)
        return check_budget(cfg, self.policy.budget(resolve_device(cfg.device).type))

    def _check_limits(self, caller: Caller, count: int) -> None:
        limits = self.policy.queue
        active = [job for job in self._jobs.values() if job.active]
        mine = sum(job.info.owner == caller.owner for job in active)
        if mine + count > limits.max_active_per_owner:
            raise QueueFullError(
                f"you have {mine} run(s) waiting or running and this class allows {limits.max_active_per_owner} at "
                f"once{f' (this asks for {count} more)' if count > 1 else ''}: wait for one to finish, or stop one"
            )
        if len(active) + count > limits.max_active_total:
            raise QueueFullError(
                f"the class's queue is full ({len(active)} runs waiting or running, at most "
                f"{limits.max_active_total}): try again when some have finished"
            )

    def _new_job(self, cfg: TrainConfig, estimate: Estimate, label: str | None, caller: Caller, group: str | None) -> _Job:  # fmt: skip
        info = RunInfo(
            id=next(self._ids), cfg=cfg, label=label or describe_config(cfg), owner=caller.owner, group=group,
            device_key=device_key(cfg.device), device=describe_device(cfg.device), estimate=estimate, submitted=time.time(),
        )  # fmt: skip
        return _Job(info=info, run_dir=self._work_dir / f"run-{info.id}")

    def get(self, job_id: int) -> JobView:
        return self._view(self._job(job_id))

    def jobs(self, group: str | None = None, owner: str | None = None) -> list[JobView]:
        """Kept runs, oldest first; only those of ``group`` (a sweep) or ``owner`` when given."""
        with self._lock:
            chosen = [j for j in self._jobs.values() if (group is None or j.info.group == group) and (owner is None or j.info.owner == owner)]  # fmt: skip
            return [self._view(job) for job in chosen]

    def events(self, job_id: int, since: int = 0, kind: str | None = None) -> list[TrainEvent]:
        """The run's events from number ``since`` on (a page that keeps what it has asks only for the new ones), or
        only those of one ``kind`` ("epoch": the curves the Compare page overlays)."""
        events = self._job(job_id).events[since:]
        return events if kind is None else [event for event in events if event.kind == kind]

    def cancel(self, job_id: int, caller: Caller) -> JobView:
        """Take a waiting run out of the queue, or stop a running one (it ends within a second, partial events kept)."""
        job = self._job(job_id)
        self._require_owner(job, caller, "stop")
        with self._lock:
            if job.state == "queued":
                self._waiting[job.info.device_key].remove(job)
                job.state, job.ended = "cancelled", time.time()
                job.ended_event.set()
            elif job.state == "running":
                job.stop.set()
            return self._view(job)

    def weights(self, job_id: int, caller: Caller) -> TrainedWeights:
        """A finished run's trained weights (to save it): its owner's, or the teacher's, to take."""
        return TrainedWeights.read(self._finished(job_id, caller, "save").run_dir)

    def bundle(self, job_id: int, caller: Caller, name: str) -> bytes:
        """A finished run's download bundle (zip), built once per name and kept in the run's folder."""
        job = self._finished(job_id, caller, "download")
        return write_bundle(job.info.cfg, job.events[-1], job.run_dir, name, job.events).read_bytes()

    def _finished(self, job_id: int, caller: Caller, action: str) -> _Job:
        job = self._job(job_id)
        self._require_owner(job, caller, action)
        if job.state != "done":
            raise ValueError(f"run #{job_id} has not finished ({job.state}): only a finished, tested run can be kept")
        return job

    def wait(self, job_id: int, timeout: float | None = None) -> bool:
        """Block until the run has ended; False on timeout."""
        return self._job(job_id).ended_event.wait(timeout)

    def join(self, timeout: float | None = None) -> bool:
        """Wait for every supervisor thread to finish its queue and exit; False on timeout."""
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

    def shutdown(self, timeout: float | None = 30.0) -> bool:
        """Cancel everything waiting, stop what runs, wait for the supervisors, and delete the runs' folders."""
        for job in list(self._jobs.values()):
            if job.active:
                self.cancel(job.info.id, Caller(job.info.owner))
        done = self.join(timeout)
        shutil.rmtree(self._work_dir, ignore_errors=True)
        return done

    # --- inside -------------------------------------------------------------------------------------------------

    def _job(self, job_id: int) -> _Job:
        try:
            return self._jobs[job_id]
        except KeyError:
            raise JobNotFoundError(f"no run #{job_id} (finished runs are kept up to {self.policy.queue.max_jobs_kept})") from None  # fmt: skip

    @staticmethod
    def _require_owner(job: _Job, caller: Caller, action: str) -> None:
        if not caller.teacher and caller.owner != job.info.owner:
            raise NotYourRunError(f"run #{job.info.id} belongs to someone else: only its owner (or the teacher) may {action} it")  # fmt: skip

    def _position(self, job: _Job) -> int | None:
        if job.state == "running":
            return 0
        waiting = self._waiting.get(job.info.device_key, ())
        return next((i + 1 for i, queued in enumerate(waiting) if queued is job), None)

    def _view(self, job: _Job) -> JobView:
        last = job.events[-1] if job.events else None
        return JobView(
            **{f.name: getattr(job.info, f.name) for f in dataclasses.fields(RunInfo)},
            state=job.state, error=job.error, started=job.started, ended=job.ended, event_count=len(job.events),
            progress=job.progress(), result=last if isinstance(last, RunFinished) else None, position=self._position(job),
        )  # fmt: skip

    def _ensure_worker(self, key: str) -> None:
        if key not in self._workers:
            worker = threading.Thread(target=self._serve, args=(key,), name=f"run-queue-{key}", daemon=True)
            self._workers[key] = worker
            worker.start()

    def _serve(self, key: str) -> None:
        while True:
            with self._lock:
                waiting = self._waiting.get(key)
                if not waiting:
                    del self._workers[key]  # under the lock: a submit now starts a fresh supervisor
                    return
                job = waiting.popleft()
                job.state, job.started = "running", time.time()
            try:
                self._supervise(job)
            finally:
                job.ended = time.time()
                job.ended_event.set()
                with self._lock:
                    self._forget_old()

    def _supervise(self, job: _Job) -> None:
        """Run ``job`` in its process until it ends, within its wall-clock budget; then set its state and message."""
        budget = self.policy.budget(job.info.device_key.split(":")[0])
        job.run_dir.mkdir(parents=True, exist_ok=True)
        try:
            handle = self.backend.start(job.info.cfg, job.run_dir, budget)
        except Exception as error:  # a backend that cannot start (Ray gone, no processes left) fails this run only
            job.state, job.error = "failed", f"the run could not start: {type(error).__name__}: {error}"
            return
        deadline, asked = time.monotonic() + budget.wall_seconds, None
        while not handle.finished():
            for kind, payload in handle.messages(timeout=0.2):
                if kind == "event":
                    job.events.append(payload)
                else:
                    job.error = payload
            now = time.monotonic()
            if asked is None and (job.stop.is_set() or now > deadline):
                handle.stop()
                asked = now
                if now > deadline:
                    job.error = f"stopped at this class's time limit for a run ({budget.wall_seconds:,} s)"
            elif asked is not None and now - asked > self._grace:
                handle.kill()
        last = job.events[-1] if job.events else None
        if isinstance(last, RunFinished):
            job.state = "done"
        elif last is not None and last.kind == "stopped":
            job.state = "stopped"
        else:
            job.state = "failed"
            job.error = job.error or handle.exit_note() or "the run's process ended without a word"

    def _forget_old(self) -> None:
        """Bound memory and disk (called under the lock): the oldest ended runs go, with their folders."""
        ended = [job for job in self._jobs.values() if not job.active]
        for job in ended[: max(0, len(self._jobs) - self.policy.queue.max_jobs_kept)]:
            del self._jobs[job.info.id]
            shutil.rmtree(job.run_dir, ignore_errors=True)


def _remove_stale_work(folder: Path) -> None:
    """Run folders left by app processes that ended a day ago or more (a restart, a crash)."""
    for old in folder.glob("queue-*") if folder.is_dir() else ():
        with contextlib.suppress(OSError):
            if time.time() - old.stat().st_mtime > STALE_WORK_S:
                shutil.rmtree(old, ignore_errors=True)


EVENT_COLUMNS = ["kind", "step", "epoch", "split", "loss", "accuracy", "lr", "samples_per_s", "elapsed"]


def events_frame(events: Sequence[TrainEvent]) -> pd.DataFrame:
    """A run's events as a table, one row each (what the charts draw)."""
    return pd.DataFrame([{c: getattr(e, c) for c in EVENT_COLUMNS} for e in events], columns=EVENT_COLUMNS)
