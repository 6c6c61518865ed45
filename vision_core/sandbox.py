"""Run a function in a worker process, under a time limit and a memory limit.

Heavy or user-shaped work (an augmentation preview built from pasted parameters, say) leaves the server's
interpreter this way: a call that runs past its time limit is killed with its worker, and a fresh worker takes
its place; a call that allocates past the memory limit fails in its own process (``RLIMIT_DATA``); and each
worker has its own global state, torch's global random generator included, so no lock is held across calls.

>>> from vision_core.sandbox import Limits, run
>>> run(sum, [1, 2, 3], limits=Limits(seconds=5))
6

The function and its arguments travel by pickle (a module-level function, plain data, tensors, PIL images).
Workers are forked from a "zygote": a fresh interpreter (``python -c``, started once) that imports
``PoolConfig.preload`` (torch, vision_core: seconds) and then forks a worker on each request, so a worker starts
in ~50 ms and shares those imports' memory (a worker dirtied 10-20 MB of its own here, not 460 MB). This is
``multiprocessing``'s forkserver in small, without one trait of it: multiprocessing re-runs the parent's
``__main__`` in every child, and under Streamlit ``__main__`` is the app script itself (its script runner installs
it), so each worker would have run the whole app. Unix only (fork, and file descriptors passed over a socket).
Some workers are kept for light calls (``Limits(light=True)``), so a small request never queues behind a slow
one. A call made inside a worker runs directly: it is already isolated.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import os
import pickle
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any, NoReturn, TypeVar

T = TypeVar("T")
_OK, _ERROR, _OUT_OF_MEMORY = "ok", "error", "out of memory"
_IN_WORKER = False  # set in worker processes: calls made there run directly
# The zygote's first lines: this module alone, by its file (importing the vision_core package would import torch
# and everything else, whatever the preload says); the package finds it in sys.modules later.
_BOOT = """
import importlib.util, sys
sys.path[:0] = {path!r}
spec = importlib.util.spec_from_file_location({name!r}, {file!r})
sandbox = sys.modules[spec.name] = importlib.util.module_from_spec(spec)
spec.loader.exec_module(sandbox)
sandbox.zygote_main({preload!r}, {threads!r})
"""
_START_ATTEMPTS = 5


class SandboxError(RuntimeError):
    """A call that did not complete in its worker; the subclass says why."""


class TimeLimitError(SandboxError):
    """The call ran past its time limit; its worker was killed."""


class MemoryLimitError(SandboxError):
    """The call tried to allocate past its worker's memory limit."""


class WorkerLostError(SandboxError):
    """The worker died during the call (a crash, or the system's out-of-memory killer)."""


class PoolBusyError(SandboxError):
    """No worker came free within the call's waiting limit."""


@dataclass(frozen=True)
class Limits:
    """What one call may take: ``seconds`` of wall-clock time and ``memory_mb`` of memory in its worker (beyond
    what the worker held at its start; enforced on Linux), and ``wait_seconds`` for a worker to come free."""

    seconds: float = 10.0
    memory_mb: int = 1024
    wait_seconds: float = 10.0
    light: bool = False  # light calls may also use the workers kept free for them


@dataclass(frozen=True)
class PoolConfig:
    workers: int = 2
    kept_for_light: int = 1  # heavy calls never hold these workers
    threads: int = 1  # torch (OpenMP) threads per worker
    preload: tuple[str, ...] = ("vision_core",)  # imported once, by the zygote that forks the workers
    start_seconds: float = 180.0  # the zygote's start imports torch: slow on a busy machine

    def __post_init__(self) -> None:
        if not 0 <= self.kept_for_light < self.workers:
            raise ValueError("kept_for_light must leave at least one worker for heavy calls")


@dataclass(eq=False)  # identity: workers live in a set
class _Worker:
    pid: int
    conn: Connection
    pidfd: int | None  # Linux: signals reach this very process, even once its pid could be reused


def _memory_in_use() -> int | None:
    """This process's data segment in bytes (what RLIMIT_DATA counts), from /proc; None where there is none."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmData:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _limit_memory(base: int | None, growth_mb: int) -> None:
    """Let this process's data segment grow ``growth_mb`` beyond ``base`` bytes (a soft limit: the next call may
    raise it again). Without /proc (not Linux) there is no limit; the time limit still holds."""
    if base is None:
        return
    import resource

    resource.setrlimit(resource.RLIMIT_DATA, (base + growth_mb * 2**20, resource.RLIM_INFINITY))


def is_out_of_memory(error: BaseException) -> bool:
    """A failed allocation: Python's MemoryError, or torch's allocator error (a RuntimeError)."""
    return isinstance(error, MemoryError) or (
        isinstance(error, RuntimeError) and "can't allocate memory" in str(error).lower()
    )


def _answer(task: bytes, base: int | None) -> tuple[str, Any]:
    try:
        fn, args, kwargs, memory_mb = pickle.loads(task)
        _limit_memory(base, memory_mb)
        return _OK, fn(*args, **kwargs)
    except Exception as error:
        return (_OUT_OF_MEMORY, str(error)) if is_out_of_memory(error) else (_ERROR, error)


def _reply(status: str, value: Any) -> tuple[str, bytes]:
    """The answer as bytes: a result that cannot be pickled, or not within the memory limit, becomes an error."""
    try:
        return status, pickle.dumps((status, value), protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as error:
        if is_out_of_memory(error):
            return _OUT_OF_MEMORY, pickle.dumps((_OUT_OF_MEMORY, f"sending the result back: {error}"))
        return _ERROR, pickle.dumps((_ERROR, SandboxError(f"the result could not be sent back: {error}")))


def _serve(conn: Connection) -> None:
    """A worker's life: say it is ready, then answer calls until the pool closes the connection."""
    global _IN_WORKER
    _IN_WORKER = True
    base = _memory_in_use()
    conn.send_bytes(pickle.dumps((_OK, os.getpid())))
    while True:
        try:
            task = conn.recv_bytes()
        except (EOFError, OSError):
            return
        status, reply = _reply(*_answer(task, base))
        conn.send_bytes(reply)
        if status == _OUT_OF_MEMORY:
            return  # a fresh worker replaces this one, whatever its heap looks like now


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise EOFError("the other end closed the socket")
        data += chunk
    return data


def zygote_main(preload: tuple[str, ...], threads: int) -> None:
    """The zygote (run by ``_BOOT``): import ``preload``, say ready, then fork a worker for each socket the pool
    passes over stdin (a Unix socket), answering with the worker's pid; leave when the pool closes it."""
    control = socket.socket(fileno=os.dup(0))
    with open(os.devnull, "rb") as nothing:
        os.dup2(nothing.fileno(), 0)
    os.dup2(2, 1)  # what the work prints goes to the server's log, never into the pool's messages
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl+C on the server is the server's to handle
    for name in preload:
        importlib.import_module(name)
    if "torch" in sys.modules:  # else OMP_NUM_THREADS, set at the start, holds when a call imports it
        sys.modules["torch"].set_num_threads(threads)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps the workers
    control.sendall(b"R")
    while True:
        try:
            message, fds, _, _ = socket.recv_fds(control, 1, 1)
        except OSError:
            return
        if not message or not fds:
            return
        pid = os.fork()
        if pid == 0:
            _worker_life(control, fds[0])
        os.close(fds[0])
        control.sendall(pid.to_bytes(8, "big"))


def _worker_life(control: socket.socket, fd: int) -> NoReturn:
    """In a fresh fork of the zygote: serve on ``fd``, then leave without running anything of the zygote's."""
    code = 0
    try:
        control.close()
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        _serve(Connection(fd))
    except BaseException:
        traceback.print_exc()
        code = 1
    finally:
        os._exit(code)


class _Zygote:
    """The pool's handle on its zygote process: started once (seconds), it forks workers (milliseconds)."""

    def __init__(self, config: PoolConfig) -> None:
        ours, theirs = socket.socketpair()
        boot = _BOOT.format(path=sys.path, file=__file__, name=__name__, preload=config.preload, threads=config.threads)
        threads = str(config.threads)
        self.process = subprocess.Popen(
            [sys.executable, "-c", boot],
            stdin=theirs,
            env={**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads},
        )
        theirs.close()
        self.control, self.lock = ours, threading.Lock()
        try:
            ours.settimeout(config.start_seconds)
            if _recv_exactly(ours, 1) != b"R":
                raise EOFError("the zygote did not start")
            ours.settimeout(60.0)  # a fork is milliseconds; a minute means it is stuck
        except (OSError, EOFError):
            self.close()
            raise

    def fork(self) -> tuple[int, socket.socket]:
        """A new worker: its pid, and the pool's end of its socket."""
        ours, theirs = socket.socketpair()
        try:
            with self.lock:
                socket.send_fds(self.control, [b"F"], [theirs.fileno()])
                pid = int.from_bytes(_recv_exactly(self.control, 8), "big")
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        return pid, ours

    def alive(self) -> bool:
        return self.process.poll() is None

    def close(self) -> None:
        self.control.close()  # the zygote leaves when its socket closes; the kill is for one that is stuck
        self.process.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=5)


class WorkerPool:
    """A few warm worker processes that run calls under ``Limits``; thread-safe, started on first use."""

    def __init__(self, config: PoolConfig = PoolConfig()) -> None:
        self.config = config
        self._idle: queue.Queue[_Worker] = queue.Queue()
        self._heavy = threading.BoundedSemaphore(config.workers - config.kept_for_light)
        self._ready = threading.Event()  # set once the first worker is ready, or every start has failed
        self._gave_up = 0  # workers whose every start attempt failed
        self._lock = threading.Lock()
        self._started = False
        self._closed = False
        self._workers: set[_Worker] = set()
        self._zygote: _Zygote | None = None
        self._zygote_lock = threading.Lock()

    def start(self) -> None:
        """Start the workers in the background (idempotent); ``run`` does it too."""
        with self._lock:
            if self._started or self._closed:
                return
            self._started = True
        for _ in range(self.config.workers):
            threading.Thread(target=self._add_worker, daemon=True, name="sandbox-start").start()

    def run(self, fn: Callable[..., T], /, *args: Any, limits: Limits = Limits(), **kwargs: Any) -> T:
        """``fn(*args, **kwargs)`` in a worker; its exceptions are raised here, ``SandboxError`` when it did not end."""
        if _IN_WORKER:
            return fn(*args, **kwargs)
        if self._closed:
            raise SandboxError("the worker pool is closed")
        task = pickle.dumps((fn, args, kwargs, limits.memory_mb), protocol=pickle.HIGHEST_PROTOCOL)  # fails here
        self.start()
        if not self._ready.wait(self.config.start_seconds):
            raise PoolBusyError(f"the worker processes did not start within {self.config.start_seconds:g} s")
        if self._gave_up >= self.config.workers and not self._workers:
            raise SandboxError("the worker processes could not start (their errors are in the server's log)")
        deadline = time.monotonic() + limits.wait_seconds
        with self._lane(limits, deadline):
            try:
                worker = self._idle.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise PoolBusyError(f"no worker came free within {limits.wait_seconds:g} s") from None
            return self._call(worker, task, limits)

    def wait_for_workers(self, timeout: float | None = None) -> bool:
        """Start the pool and wait until every worker is up (after a kill, its replacement starts in seconds)."""
        self.start()
        deadline = time.monotonic() + (self.config.start_seconds if timeout is None else timeout)
        while len(self._workers) < self.config.workers:
            if time.monotonic() > deadline or self._closed:
                return False
            time.sleep(0.05)
        return True

    def close(self) -> None:
        """Stop every worker and the zygote; later calls are refused."""
        with self._lock:
            self._closed = True
            workers, self._workers = list(self._workers), set()
        for worker in workers:
            _stop(worker)
        with self._zygote_lock:
            if self._zygote is not None:
                self._zygote.close()

    @contextlib.contextmanager
    def _lane(self, limits: Limits, deadline: float) -> Iterator[None]:
        if limits.light:
            yield
            return
        if not self._heavy.acquire(timeout=max(0.0, deadline - time.monotonic())):
            raise PoolBusyError(f"every worker for large requests stayed busy for {limits.wait_seconds:g} s")
        try:
            yield
        finally:
            self._heavy.release()

    def _call(self, worker: _Worker, task: bytes, limits: Limits) -> Any:
        try:
            worker.conn.send_bytes(task)
            if not worker.conn.poll(limits.seconds):
                raise TimeLimitError(f"stopped after {limits.seconds:g} s")
            reply = worker.conn.recv_bytes()
        except (EOFError, OSError):
            self._retire(worker)
            raise WorkerLostError("the worker process ended during the call") from None
        except BaseException:  # the time limit, or the caller interrupted: the worker may be busy for long yet
            self._retire(worker)
            raise
        try:
            status, value = pickle.loads(reply)
        except Exception as error:  # an exception type that cannot be rebuilt here
            self._idle.put(worker)
            raise SandboxError(f"the worker's answer could not be read: {error}") from None
        if status == _OUT_OF_MEMORY:
            self._retire(worker)
            raise MemoryLimitError(f"needed more than {limits.memory_mb} MB ({value})")
        self._idle.put(worker)
        if status == _ERROR:
            raise value
        return value

    def _retire(self, worker: _Worker) -> None:
        """Kill ``worker`` (it may be stuck) and start another in the background."""
        with self._lock:
            self._workers.discard(worker)
        _stop(worker)
        threading.Thread(target=self._add_worker, daemon=True, name="sandbox-restart").start()

    def _add_worker(self) -> None:
        """Start one worker and hand it to the idle queue once it is ready; a failed start is tried again."""
        for attempt in range(_START_ATTEMPTS):
            if self._closed:
                return
            worker = self._start_worker()
            if worker is None:
                time.sleep(0.5 * 2**attempt)
                continue
            with self._lock:
                if not self._closed:
                    self._workers.add(worker)
                    self._idle.put(worker)
                    self._ready.set()
                    return
            _stop(worker)
            return
        with self._lock:
            self._gave_up += 1
            if self._gave_up >= self.config.workers and not self._workers:
                self._ready.set()  # wake the callers: run() says why

    def _start_worker(self) -> _Worker | None:
        """A worker forked by the zygote (started first, or again if it died), once it says ready; else None."""
        try:
            with self._zygote_lock:
                if self._closed:
                    return None
                if self._zygote is None or not self._zygote.alive():
                    self._zygote = _Zygote(self.config)
                zygote = self._zygote
            pid, sock = zygote.fork()
        except (OSError, EOFError):
            return None
        pidfd = None
        if hasattr(os, "pidfd_open"):
            with contextlib.suppress(OSError):
                pidfd = os.pidfd_open(pid)
        worker = _Worker(pid, Connection(sock.detach()), pidfd)
        try:
            if worker.conn.poll(self.config.start_seconds):
                worker.conn.recv_bytes()  # "ready"
                return worker
        except (EOFError, OSError):
            pass
        _stop(worker)
        return None


def _stop(worker: _Worker) -> None:
    """Kill a worker (it may be stuck; its zygote reaps it)."""
    worker.conn.close()
    pidfd, worker.pidfd = worker.pidfd, None
    with contextlib.suppress(OSError):  # it has already gone
        if pidfd is None:
            os.kill(worker.pid, signal.SIGKILL)
        else:
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
    if pidfd is not None:
        os.close(pidfd)


_DEFAULT: WorkerPool | None = None
_DEFAULT_LOCK = threading.Lock()


def default_pool() -> WorkerPool:
    """This process's shared pool (``PoolConfig()``), created on first use."""
    global _DEFAULT
    with _DEFAULT_LOCK:
        if _DEFAULT is None:
            _DEFAULT = WorkerPool()
            atexit.register(_DEFAULT.close)  # workers and zygote leave by themselves when their sockets close
        return _DEFAULT


def run(fn: Callable[..., T], /, *args: Any, limits: Limits = Limits(), **kwargs: Any) -> T:
    """``fn(*args, **kwargs)`` in a worker of the shared pool, under ``limits``."""
    return default_pool().run(fn, *args, limits=limits, **kwargs)


def in_worker() -> bool:
    """Whether this code runs in a sandbox worker (where calls run directly)."""
    return _IN_WORKER
