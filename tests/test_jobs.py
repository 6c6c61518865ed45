"""The run service: runs in their own processes, in order, stoppable, budgeted, owned; failures contained."""

import dataclasses
import json
import os
import sys
import threading
import time

import numpy as np
import pytest
import torch

from vision_core import load_model, predict_digits
from vision_core.augment import SHIPPED_DIGIT_PRESET, preview
from vision_core.cost import BudgetError
from vision_core.jobs import Caller, JobNotFoundError, LocalBackend, NotYourRunError, QueueFullError, RunQueue
from vision_core.policy import Budget, Policy, QueueLimits
from vision_core.training import RunFinished, TrainConfig, TrainConfigError

TINY = TrainConfig(
    model="lenet", train_size=600, batch_size=32, max_steps=3, val_size=200, test_size=200, device="cpu", log_every=1
)
LONG = dataclasses.replace(TINY, max_steps=100_000, epochs=100, train_size=60_000)
ALICE, BOB, TEACHER = Caller("alice"), Caller("bob"), Caller("teacher", teacher=True)
GENEROUS = Policy(cpu=Budget(memory_mb=3_000, wall_seconds=600, gflops_per_second=25.0))


def queue_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("run-queue")]


@pytest.fixture
def make_queue(tmp_path):
    """Queues that are shut down (their processes stopped, folders deleted) whatever the test did."""
    made = []

    def make(runner: str = "vision_core.worker:train_and_save", **options) -> RunQueue:
        options.setdefault("policy", GENEROUS)
        queue = RunQueue(backend=LocalBackend(runner), work_dir=tmp_path / f"work{len(made)}", **options)
        made.append(queue)
        return queue

    yield make
    for queue in made:
        queue.shutdown(timeout=30)


def wait_until(condition, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_runs_are_served_in_order_in_their_own_processes_with_positions(make_queue):
    queue = make_queue("workers:gated")
    jobs = [queue.submit(dataclasses.replace(TINY, seed=seed), ALICE if seed != 2 else BOB) for seed in (3, 1, 2)]
    wait_until(lambda: queue.get(jobs[0].id).state == "running")
    assert [queue.get(job.id).position for job in jobs] == [0, 1, 2]
    assert [queue.get(job.id).state for job in jobs] == ["running", "queued", "queued"]
    (queue._work_dir / "gate").touch()
    assert all(queue.wait(job.id, timeout=180) for job in jobs)
    views = [queue.get(job.id) for job in jobs]
    assert [v.state for v in views] == ["done"] * 3 and views[0].started <= views[1].started <= views[2].started
    assert all(isinstance(v.result, RunFinished) and v.position is None for v in views)
    assert queue.events(jobs[0].id, since=2) == queue.events(jobs[0].id)[2:]  # pages read only what is new
    assert queue.join(timeout=10) and not queue_threads()


def test_a_run_gets_its_own_niced_process_with_a_memory_limit(make_queue):
    queue = make_queue("workers:reports_limits")
    job = queue.submit(TINY, ALICE)
    assert queue.wait(job.id, timeout=180) and queue.get(job.id).state == "done"
    limits = json.loads((queue._work_dir / f"run-{job.id}" / "limits.json").read_text())
    assert limits["pid"] != os.getpid(), "training must not run in the app's process"
    if sys.platform.startswith("linux"):
        assert limits["niceness"] >= os.getpriority(os.PRIO_PROCESS, 0) + 10 or limits["niceness"] == 19
        assert limits["data_limit"] == GENEROUS.cpu.memory_mb * 2**20
    assert limits["threads"] == (os.cpu_count() or 1)


def test_stop_ends_a_run_within_a_second_and_keeps_its_events(make_queue):
    queue = make_queue()
    job = queue.submit(LONG, ALICE)
    wait_until(lambda: queue.get(job.id).event_count >= 3, timeout=120)
    asked = time.perf_counter()
    queue.cancel(job.id, ALICE)
    assert queue.wait(job.id, timeout=5) and time.perf_counter() - asked < 1.5
    view = queue.get(job.id)
    assert view.state == "stopped" and view.result is None and queue.events(job.id)[-1].kind == "stopped"
    assert view.progress.step == queue.events(job.id)[-1].step >= 3  # the partial run stays on the page
    assert queue.join(timeout=10) and not queue_threads()


def test_a_run_that_ignores_stop_is_killed_after_the_grace_period(make_queue):
    queue = make_queue("workers:ignores_stop", stop_grace_s=1.0)
    job = queue.submit(TINY, ALICE)
    wait_until(lambda: queue.get(job.id).state == "running")
    time.sleep(0.5)
    queue.cancel(job.id, ALICE)
    assert queue.wait(job.id, timeout=15)
    view = queue.get(job.id)
    assert view.state == "failed" and "killed by SIGKILL" in view.error


def test_a_run_over_its_time_limit_is_stopped_with_a_plain_message(make_queue):
    queue = make_queue(policy=Policy(cpu=Budget(memory_mb=3_000, wall_seconds=3, gflops_per_second=1e6)))
    job = queue.submit(LONG, ALICE)
    assert queue.wait(job.id, timeout=60)
    view = queue.get(job.id)
    assert view.state == "stopped" and "time limit for a run (3 s)" in view.error


def test_a_run_over_its_memory_budget_fails_alone_and_the_app_answers_meanwhile(make_queue):
    """The worker asks for 8 GB with a 1.5 GB budget: the operating system refuses it in that process only."""
    queue = make_queue("workers:hogs_memory", policy=Policy(cpu=Budget(memory_mb=1_500, wall_seconds=60, gflops_per_second=25.0)))  # fmt: skip
    models = {"lenet": load_model("lenet", device="cpu")}
    canvas = np.zeros((280, 280, 4), np.uint8)
    canvas[60:220, 130:150] = 255
    job = queue.submit(TINY, ALICE)
    answers = []
    while True:  # another session draws while the run blows up, and after
        answers.append(predict_digits(canvas, models).labels["lenet"])
        if queue.wait(job.id, timeout=0.05):
            break
    answers.append(predict_digits(canvas, models).labels["lenet"])
    view = queue.get(job.id)
    assert view.state == "failed" and "ran out of its memory budget (1,500 MB)" in view.error
    assert "Lower the batch size" in view.error and answers and set(answers) == {1}
    service = make_queue()  # and training goes on for everyone else
    after = service.submit(TINY, BOB)
    assert service.wait(after.id, timeout=180) and service.get(after.id).state == "done"


def test_a_failing_run_fails_alone_and_the_next_one_runs(make_queue):
    queue = make_queue("workers:fails_after_a_step")
    bad = queue.submit(TINY, ALICE)
    assert queue.wait(bad.id, timeout=180)
    view = queue.get(bad.id)
    assert view.state == "failed" and "RuntimeError: the data loader fell over" in view.error and view.event_count == 1
    good_queue = make_queue()
    good = good_queue.submit(TINY, ALICE)
    assert good_queue.wait(good.id, timeout=180) and good_queue.get(good.id).state == "done"


def test_owners_limits_refuse_a_thousand_submissions_clearly(make_queue):
    queue = make_queue("workers:gated", policy=dataclasses.replace(GENEROUS, queue=QueueLimits(max_active_per_owner=3, max_active_total=5)))  # fmt: skip
    refused = []
    for _ in range(1_000):
        try:
            queue.submit(TINY, ALICE)
        except QueueFullError as error:
            refused.append(str(error))
    assert len(queue.jobs(owner=ALICE.owner)) == 3 and len(refused) == 997
    assert "you have 3 run(s) waiting or running and this class allows 3 at once" in refused[0]
    with pytest.raises(QueueFullError, match=r"this asks for 4 more"):  # a sweep counts as its runs
        queue.submit_many([TINY] * 4, BOB)
    queue.submit_many([TINY] * 2, BOB)
    with pytest.raises(QueueFullError, match="the class's queue is full"):
        queue.submit(TINY, Caller("carol"))


def test_only_the_owner_or_the_teacher_stops_saves_or_bundles_a_run(make_queue):
    queue = make_queue()
    job = queue.submit(TINY, ALICE)
    with pytest.raises(NotYourRunError, match="belongs to someone else"):
        queue.cancel(job.id, BOB)
    assert queue.wait(job.id, timeout=180)
    for action in (lambda c: queue.weights(job.id, c), lambda c: queue.bundle(job.id, c, "bobs-copy")):
        with pytest.raises(NotYourRunError):
            action(BOB)
    assert queue.weights(job.id, ALICE).architecture == "lenet"
    first = queue.bundle(job.id, ALICE, "alices")
    folder = queue._work_dir / f"run-{job.id}"
    built = (folder / "bundle-alices.zip").stat().st_mtime_ns
    assert queue.bundle(job.id, TEACHER, "alices") == first and (folder / "bundle-alices.zip").stat().st_mtime_ns == built  # fmt: skip
    running = queue.submit(LONG, BOB)
    wait_until(lambda: queue.get(running.id).event_count >= 1, timeout=120)
    queue.cancel(running.id, TEACHER)
    assert queue.wait(running.id, timeout=30) and queue.get(running.id).state == "stopped"


def test_runs_too_big_for_the_server_are_refused_before_they_queue(make_queue):
    queue = make_queue()
    huge = TrainConfig(model="vgg16", init="scratch", mode="features", image_size=224, batch_size=512, epochs=50, train_size=60_000, device="cpu")  # fmt: skip
    with pytest.raises(BudgetError) as refused:
        queue.submit(huge, ALICE)
    message = str(refused.value)
    assert "MB and a run may use 3,000 MB: lower the batch size to at most" in message and "fewer epochs" in message
    with pytest.raises(BudgetError, match=r"alone need [\d,]+ MB: train only the new head"):
        queue.submit(dataclasses.replace(huge, mode="full", batch_size=1), ALICE)
    with pytest.raises(TrainConfigError, match=r"no ImageNet weights|trains on"):
        queue.submit(dataclasses.replace(TINY, dataset="cifar10"), ALICE)
    assert not queue.jobs() and not queue_threads()
    with pytest.raises(JobNotFoundError, match="no run #99"):
        queue.get(99)


def test_a_seeded_run_gives_the_same_metrics_with_and_without_a_concurrent_preview(make_queue):
    queue = make_queue()
    cfg = dataclasses.replace(TINY, max_steps=6, seed=7)
    quiet = queue.submit(cfg, ALICE)
    assert queue.wait(quiet.id, timeout=180)
    stop, digit = threading.Event(), torch.zeros(1, 28, 28)
    digit[:, 6:22, 12:16] = 1

    def previews():
        while not stop.is_set():
            preview(digit, SHIPPED_DIGIT_PRESET, n=4, seed=1)

    thread = threading.Thread(target=previews)
    thread.start()
    try:
        busy = queue.submit(cfg, ALICE)
        assert queue.wait(busy.id, timeout=180)
    finally:
        stop.set()
        thread.join()
    a, b = queue.get(quiet.id).result, queue.get(busy.id).result
    assert (a.accuracy, a.loss, a.predicted) == (b.accuracy, b.loss, b.predicted)


def test_the_same_seeded_run_gives_the_same_metrics_on_the_local_and_the_ray_backend(make_queue):
    pytest.importorskip("ray", reason="Ray is the optional cluster backend (requirements-cluster.txt)")
    from vision_core.ray_backend import RayBackend, RayQueue, connect

    cfg = dataclasses.replace(TINY, max_steps=6, seed=11)
    local = make_queue()
    job = local.submit(cfg, ALICE)
    assert local.wait(job.id, timeout=180)
    connect("local")
    on_ray = RunQueue(policy=GENEROUS, backend=RayBackend())
    shared = RayQueue("auto", policy=GENEROUS)  # the queue as a cluster actor: what several app replicas share
    try:
        ray_job = on_ray.submit(cfg, ALICE)
        assert on_ray.wait(ray_job.id, timeout=300)
        shared_job = shared.submit(cfg, BOB)
        assert shared.wait(shared_job.id, 300), "the shared queue did not finish its run"
        with pytest.raises(NotYourRunError):  # the cluster's queue enforces owners too
            shared.weights(shared_job.id, ALICE)
        expected = local.get(job.id).result
        ran = [on_ray.get(ray_job.id), shared.get(shared_job.id)]
        assert [view.state for view in ran] == ["done", "done"], [view.error for view in ran]
        for result in (view.result for view in ran):
            assert (result.accuracy, result.loss, result.predicted) == (
                expected.accuracy,
                expected.loss,
                expected.predicted,
            )
        assert shared.weights(shared_job.id, BOB).architecture == "lenet"
    finally:
        on_ray.shutdown()
        shared.close()
