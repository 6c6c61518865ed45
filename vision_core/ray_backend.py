"""Runs on a Ray cluster, for a class that has outgrown one machine. Optional: ``pip install -r requirements-cluster.txt``.

``VISION_RUNS=ray`` starts (or joins) Ray on this machine; ``VISION_RUNS=ray://head:10001`` or ``VISION_RUNS=auto``
joins a cluster. Two pieces, both Ray's own scheduling, nothing home-made:

- ``RayBackend``: a ``jobs.Backend`` whose runs are Ray actors, one process each on whichever node has room (GPU runs
  ask for ``num_gpus=1``), with the same limits as a local run (``worker.apply_limits``). The supervisor pulls the
  events through the actor, asks it to stop, and receives the trained weights as bytes: the nodes need no shared disk.
- ``RayQueue``: the ``RunQueue`` itself as a named, detached actor in the cluster, and a client with the same methods.
  Several app replicas behind a proxy then share one queue: one FIFO per device, one set of owners and limits.

>>> queue = RayQueue("local")  # doctest: +SKIP
>>> job = queue.submit(TrainConfig(...), Caller("me"))  # doctest: +SKIP
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import ray
from ray.exceptions import RayActorError

from vision_core.device import resolve_device
from vision_core.jobs import DEFAULT_RUNNER, RunQueue
from vision_core.policy import Budget, Policy
from vision_core.runs import WEIGHTS_FILE
from vision_core.training import TrainConfig, TrainEvent

NAMESPACE = "vision-explorer"
QUEUE_NAME = "run-queue"
SILENCE_S = 300.0  # an actor that does not answer a poll for this long is taken for dead


@ray.remote(max_concurrency=4)  # a threaded actor: run() trains in one thread, poll() and stop() answer meanwhile
class RunActor:
    """One training run in its own Ray worker process."""

    def __init__(self) -> None:
        self.events: list[TrainEvent] = []
        self.error: str | None = None
        self.done = False
        self.weights: bytes | None = None
        self.stop_flag = threading.Event()

    def run(self, cfg: TrainConfig, budget: Budget, runner: str) -> None:
        from vision_core.worker import apply_limits, describe_failure, load_runner

        run_dir = Path(tempfile.mkdtemp(prefix="vision-run-"))
        try:
            apply_limits(budget, resolve_device(cfg.device).type)
            for event in load_runner(runner)(cfg, self.stop_flag, run_dir):
                self.events.append(event)
            if (run_dir / WEIGHTS_FILE).is_file():
                self.weights = (run_dir / WEIGHTS_FILE).read_bytes()
        except BaseException as error:  # the app must learn why, whatever it was
            self.error = describe_failure(error, budget)
        finally:
            shutil.rmtree(run_dir, ignore_errors=True)
            self.done = True

    def poll(self, since: int) -> tuple[list[TrainEvent], str | None, bool]:
        return self.events[since:], self.error, self.done

    def stop(self) -> None:
        self.stop_flag.set()

    def take_weights(self) -> bytes | None:
        return self.weights


class RayHandle:
    """The supervisor's view of a ``RunActor``: the ``jobs.Handle`` protocol. One poll is in flight at a time."""

    def __init__(self, actor: Any, run_dir: Path) -> None:
        self.actor, self.run_dir = actor, run_dir
        self.since, self.done, self.note = 0, False, None
        self.pending, self.asked = None, 0.0

    def messages(self, timeout: float) -> list[tuple[str, Any]]:
        if self.pending is None:
            self.pending, self.asked = self.actor.poll.remote(self.since), time.monotonic()
        ready, _ = ray.wait([self.pending], timeout=timeout)
        if not ready:  # a new actor's process is still starting (importing torch), or the run is busy: wait on
            if time.monotonic() - self.asked > SILENCE_S:
                self.done, self.note = True, f"the run's Ray actor did not answer for {SILENCE_S:.0f} s"
            return []
        try:
            events, error, done = ray.get(self.pending)
            if done:
                self._collect_weights()
        except RayActorError as failure:
            self.done, self.note = (
                True,
                f"the run's Ray actor died ({type(failure).__name__}: its node ran out of memory?)",
            )
            return []
        finally:
            self.pending = None
        self.since += len(events)
        self.done = done
        return [("event", event) for event in events] + ([("error", error)] if error else [])

    def _collect_weights(self) -> None:
        weights = ray.get(self.actor.take_weights.remote())
        if weights is not None:
            (self.run_dir / WEIGHTS_FILE).write_bytes(weights)
        ray.kill(self.actor)  # its process goes, and with it whatever memory the run held

    def finished(self) -> bool:
        return self.done

    def stop(self) -> None:
        self.actor.stop.remote()

    def kill(self) -> None:
        ray.kill(self.actor)

    def exit_note(self) -> str | None:
        return self.note


class RayBackend:
    """Each run as a Ray actor: CPU runs ask for ``budget.threads`` CPUs (at least one), GPU runs for one GPU."""

    def __init__(self, runner: str = DEFAULT_RUNNER) -> None:
        self.runner = runner

    def start(self, cfg: TrainConfig, run_dir: Path, budget: Budget) -> RayHandle:
        gpu = resolve_device(cfg.device).type == "cuda"
        actor = RunActor.options(num_cpus=max(1, budget.threads), num_gpus=1 if gpu else 0).remote()
        actor.run.remote(cfg, budget, self.runner)
        return RayHandle(actor, run_dir)


@ray.remote(max_concurrency=32)
class QueueActor:
    """The class's one ``RunQueue``, living in the cluster; every app replica calls it."""

    def __init__(self, policy: Policy, runner: str) -> None:
        self.queue = RunQueue(policy=policy, backend=RayBackend(runner))

    def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return getattr(self.queue, method)(*args, **kwargs)


def connect(address: str) -> None:
    """Join the Ray cluster at ``address`` ("local": start one on this machine; "auto": the running one).

    Every node must have this repository and its requirements installed (the runs import ``vision_core``); a local
    Ray started here gets this checkout on its workers' path.
    """
    if ray.is_initialized():
        return
    options = {"include_dashboard": False, "log_to_driver": False, "namespace": NAMESPACE}
    if address == "local":
        root = str(Path(__file__).resolve().parent.parent)
        paths = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)
        ray.init(runtime_env={"env_vars": {"PYTHONPATH": paths}}, **options)
    else:
        ray.init(address=address, **options)


class RayQueue:
    """A client of the cluster's queue with ``RunQueue``'s methods (submit, get, jobs, events, cancel, weights, ...).

    Errors raised in the queue (``QueueFullError``, ``BudgetError``, ``NotYourRunError``...) reach the caller as
    themselves: Ray re-raises a remote exception as an instance of its own class.
    """

    def __init__(self, address: str = "local", policy: Policy | None = None, runner: str = DEFAULT_RUNNER) -> None:
        connect(address)
        self.policy = policy or Policy()
        self.actor = QueueActor.options(name=QUEUE_NAME, lifetime="detached", get_if_exists=True).remote(self.policy, runner)  # fmt: skip

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return ray.get(self.actor.call.remote(method, *args, **kwargs))

    def __getattr__(self, method: str) -> Any:
        if method.startswith("_") or not hasattr(RunQueue, method):
            raise AttributeError(method)
        return lambda *args, **kwargs: self._call(method, *args, **kwargs)

    def close(self) -> None:
        """End the queue actor (its runs are stopped first): for tests and a class's last session."""
        self._call("shutdown")
        ray.kill(self.actor)
