"""The worker pool that keeps heavy requests out of the server's interpreter: results and errors come back,
time and memory limits hold, a killed or crashed worker is replaced, and light calls never queue behind heavy ones."""

from __future__ import annotations

import os
import sys
import threading
import time

import pytest

from vision_core import sandbox
from vision_core.sandbox import (
    Limits,
    MemoryLimitError,
    PoolBusyError,
    PoolConfig,
    SandboxError,
    TimeLimitError,
    WorkerLostError,
    WorkerPool,
)


@pytest.fixture(scope="module")
def pool():
    workers = WorkerPool(PoolConfig(workers=2, kept_for_light=1, preload=()))  # nothing to import: quick restarts
    assert workers.wait_for_workers()
    yield workers
    workers.close()


def test_a_call_runs_in_another_process_and_its_result_comes_back(pool):
    assert pool.run(sum, [1, 2, 3]) == 6
    assert pool.run(os.getpid) != os.getpid()
    # A call made inside a worker runs there, directly (this one imports vision_core in that worker: seconds).
    assert pool.run(sandbox.run, sandbox.in_worker) is True and sandbox.in_worker() is False


def test_errors_come_back_as_themselves_and_bad_arguments_fail_before_reaching_a_worker(pool):
    with pytest.raises(ValueError, match="invalid literal"):
        pool.run(int, "not a number")
    with pytest.raises((AttributeError, TypeError)):  # a lambda does not pickle
        pool.run(len, lambda: 0)
    assert pool.run(sum, [2, 2]) == 4


def test_a_call_past_its_time_limit_is_killed_and_a_fresh_worker_takes_over(pool):
    start = time.perf_counter()
    with pytest.raises(TimeLimitError, match=r"stopped after 0\.5 s"):
        pool.run(time.sleep, 60, limits=Limits(seconds=0.5))
    assert time.perf_counter() - start < 0.5 + 3.0
    pids = {pool.run(os.getpid) for _ in range(20)}
    assert all(pool.run(sum, [i]) == i for i in range(5)) and len(pids) >= 1


@pytest.mark.skipif(sys.platform != "linux", reason="the memory limit is RLIMIT_DATA, enforced on Linux")
def test_a_call_past_its_memory_limit_fails_in_its_worker(pool):
    with pytest.raises(MemoryLimitError, match="needed more than 100 MB"):
        pool.run(bytearray, 400 * 2**20, limits=Limits(memory_mb=100))
    with pytest.raises(MemoryLimitError):  # pickling the result to send it back counts too
        pool.run(bytearray, 70 * 2**20, limits=Limits(memory_mb=100))
    assert len(pool.run(bytearray, 20 * 2**20, limits=Limits(memory_mb=100))) == 20 * 2**20


def test_a_crashed_worker_is_reported_and_replaced(pool):
    with pytest.raises(WorkerLostError):
        pool.run(os._exit, 3)
    assert pool.run(sum, [1, 1]) == 2


def test_light_calls_never_wait_behind_heavy_ones(pool):
    assert pool.wait_for_workers()  # both up again, after the kills above
    heavy = threading.Thread(target=pool.run, args=(time.sleep, 2.0))
    heavy.start()
    time.sleep(0.3)  # the heavy call holds its worker now
    start = time.perf_counter()
    assert pool.run(sum, [5], limits=Limits(light=True)) == 5
    light_seconds = time.perf_counter() - start
    with pytest.raises(PoolBusyError):  # the one worker for heavy calls is taken
        pool.run(sum, [5], limits=Limits(wait_seconds=0.3))
    still_running = heavy.is_alive()
    heavy.join(10)
    assert light_seconds < 0.5 and still_running


def test_a_closed_pool_refuses_calls():
    closing = WorkerPool(PoolConfig(workers=1, kept_for_light=0, preload=()))
    assert closing.run(sum, [3]) == 3
    closing.close()
    with pytest.raises(SandboxError, match="closed"):
        closing.run(sum, [3])
