"""The run queue: first in, first out per device, positions, cancel and stop, failures contained, no thread left."""

import dataclasses
import os
import sys
import threading
import time

import pytest

from vision_core.jobs import WORKER_NICENESS, JobNotFoundError, RunQueue, events_frame
from vision_core.training import RunFinished, TrainConfig, TrainConfigError, fine_tune

TINY = TrainConfig(
    model="lenet", train_size=600, batch_size=32, max_steps=2, val_size=200, test_size=200, device="cpu", log_every=1
)
LONG = dataclasses.replace(TINY, max_steps=100_000, epochs=100)


def queue_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("run-queue")]


class Gate:
    """Wraps ``fine_tune``: records the order runs start in, and holds each run until the gate opens."""

    def __init__(self) -> None:
        self.open, self.started = threading.Event(), []

    def __call__(self, cfg, stop):
        self.started.append(cfg.seed)
        self.open.wait(30)
        yield from fine_tune(cfg, stop=stop)


def test_runs_are_served_in_order_with_positions():
    gate = Gate()
    queue = RunQueue(runner=gate)
    jobs = [queue.submit(dataclasses.replace(TINY, seed=seed)) for seed in (3, 1, 2)]
    deadline = time.monotonic() + 30
    while jobs[0].state != "running" and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [queue.position(job) for job in jobs] == [0, 1, 2]
    assert [job.state for job in jobs] == ["running", "queued", "queued"]
    gate.open.set()
    assert all(queue.wait(job, timeout=120) for job in jobs)
    assert gate.started == [3, 1, 2] and [job.state for job in jobs] == ["done"] * 3
    assert jobs[0].started <= jobs[1].started <= jobs[2].started and all(queue.position(job) is None for job in jobs)
    assert all(isinstance(job.result, RunFinished) and job.result.model is not None for job in jobs)
    assert queue.join(timeout=10) and not queue_threads()


def test_cancelling_a_running_job_stops_it_within_a_second_and_leaves_no_thread():
    threads = threading.active_count()
    queue = RunQueue()
    job = queue.submit(LONG)
    deadline = time.monotonic() + 60
    while len(job.events) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    cancelled_at = time.perf_counter()
    queue.cancel(job.id)
    assert queue.wait(job, timeout=5) and time.perf_counter() - cancelled_at < 1.0
    assert job.state == "stopped" and job.result is None and job.events[-1].kind == "stopped"
    assert len(job.events) >= 4 and job.progress().step == job.events[-1].step  # partial results stay
    assert queue.join(timeout=10) and not queue_threads() and threading.active_count() == threads


def test_cancelling_a_waiting_job_takes_it_out_of_the_queue():
    gate = Gate()
    queue = RunQueue(runner=gate)
    _first, second, third = (queue.submit(dataclasses.replace(TINY, seed=s)) for s in (0, 1, 2))
    queue.cancel(second.id)
    assert second.state == "cancelled" and queue.position(second) is None and queue.position(third) in (1, 2)
    gate.open.set()
    assert queue.wait(third, timeout=120) and gate.started == [0, 2] and not second.events
    assert queue.join(timeout=10)


def test_a_failing_run_fails_alone_and_the_next_one_runs():
    def flaky(cfg, stop):
        if cfg.seed == 13:
            yield from fine_tune(dataclasses.replace(cfg, max_steps=1), stop=stop)
            raise RuntimeError("the data loader fell over")
        yield from fine_tune(cfg, stop=stop)

    queue = RunQueue(runner=flaky)
    bad, good = queue.submit(dataclasses.replace(TINY, seed=13)), queue.submit(TINY)
    assert queue.wait(good, timeout=120)
    assert bad.state == "failed" and "RuntimeError: the data loader fell over" in bad.error and bad.events
    assert good.state == "done" and good.result.accuracy >= 0
    assert queue.join(timeout=10)


def test_bad_configs_are_refused_at_submit_and_unknown_jobs_are_explained():
    queue = RunQueue()
    with pytest.raises(TrainConfigError, match="no ImageNet weights"):
        queue.submit(dataclasses.replace(TINY, init="imagenet"))
    assert not queue.jobs() and not queue_threads()
    with pytest.raises(JobNotFoundError, match="no run #99"):
        queue.get(99)


def test_only_recent_models_are_kept_but_every_events_list_is():
    queue = RunQueue(keep_models=1)
    first, second = queue.submit(TINY), queue.submit(dataclasses.replace(TINY, seed=1))
    assert queue.wait(second, timeout=120) and queue.join(timeout=10)
    assert first.model_released and first.result.model is None and first.result.accuracy > 0
    assert not second.model_released and second.result.model is not None
    table = events_frame(first.events)
    assert list(table["kind"]) == ["step", "step", "epoch", "epoch", "done"] and table["loss"].notna().all()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread niceness is Linux's")
def test_runs_train_at_a_lower_priority_than_the_app():
    seen = {}

    def runner(cfg, stop):
        seen["worker"] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        yield from fine_tune(cfg, stop=stop)

    queue = RunQueue(runner=runner)
    job = queue.submit(TINY)
    assert queue.wait(job, timeout=120) and job.state == "done"
    app = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    assert seen["worker"] == min(app + WORKER_NICENESS, 19), "strokes and uploads should win the CPU over training"
