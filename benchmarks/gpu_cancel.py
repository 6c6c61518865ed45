"""A cancelled GPU run hands its memory back: CUDA memory before, during and after a run stopped from the queue.

    python benchmarks/gpu_cancel.py                 # needs a CUDA GPU; without one it says so and exits 0
    python benchmarks/gpu_cancel.py --cpu-latency   # also (or, without a GPU, only) the stop latency on the CPU

The run goes through ``vision_core.jobs.RunQueue``, exactly as the Fine-tune page's Stop button does:
``queue.cancel(job_id)`` sets the job's ``threading.Event``, ``fine_tune``'s stop hooks raise inside the
next layer, the worker ends the job and calls ``torch.cuda.empty_cache()``. The baseline is taken after a
short warm-up run, because CUDA keeps some memory for the life of the process once used (cuBLAS
workspaces, the context); a cancelled run must bring ``memory_allocated`` back to that baseline and
``memory_reserved`` (what ``nvidia-smi`` shows other processes) no higher than it.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vision_core.jobs import Job, RunQueue
from vision_core.training import TrainConfig

MIB = 2**20
TOLERANCE_MIB = 1.0  # allocated after the cancel may exceed the baseline by at most this (allocator rounding)
# A run with real GPU memory in use: ResNet-18 from scratch on 128 px digits, batch 256, far longer than we wait.
BIG = TrainConfig(
    model="resnet18", init="scratch", mode="full", image_size=128, batch_size=256, train_size=60_000, epochs=20,
    val_size=200, test_size=1_000, device="cuda", log_every=1, augment=True,
)  # fmt: skip
WARMUP = TrainConfig(
    model="lenet", train_size=600, batch_size=64, max_steps=3, val_size=200, test_size=200, device="cuda", log_every=1
)
CPU_RUN = dataclasses.replace(WARMUP, device="cpu", max_steps=100_000, epochs=100)


def memory() -> tuple[float, float]:
    torch.cuda.synchronize()
    return torch.cuda.memory_allocated() / MIB, torch.cuda.memory_reserved() / MIB


def wait_for_steps(job: Job, steps: int, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while len(job.events) < steps and job.active and time.monotonic() < deadline:
        time.sleep(0.01)
    if len(job.events) < steps:
        raise SystemExit(f"run #{job.id} did not reach {steps} events ({job.state}: {job.error})")


def cancel(queue: RunQueue, job: Job) -> float:
    """Stop ``job`` as the page does; seconds from the request to the job's end."""
    asked = time.perf_counter()
    queue.cancel(job.id)
    if not queue.wait(job, timeout=30):
        raise SystemExit(f"run #{job.id} did not stop within 30 s")
    return time.perf_counter() - asked


def gpu_check() -> bool:
    queue = RunQueue()
    print(f"GPU: {torch.cuda.get_device_name()}, torch {torch.__version__}")
    start = memory()
    print(f"{'before anything':28s} allocated {start[0]:9.1f} MiB   reserved {start[1]:9.1f} MiB")
    warm = queue.submit(WARMUP)
    queue.wait(warm, timeout=300)
    assert warm.state == "done", (warm.state, warm.error)
    del warm  # its model was moved to the CPU by the queue; the job list keeps only figures
    baseline = memory()
    print(f"{'baseline (after warm-up)':28s} allocated {baseline[0]:9.1f} MiB   reserved {baseline[1]:9.1f} MiB")

    torch.cuda.reset_peak_memory_stats()
    job = queue.submit(BIG)
    wait_for_steps(job, 20)
    during = memory()
    print(f"{'during (20 steps in)':28s} allocated {during[0]:9.1f} MiB   reserved {during[1]:9.1f} MiB")
    latency = cancel(queue, job)
    peak = torch.cuda.max_memory_allocated() / MIB
    after = memory()
    print(f"{'after the cancel':28s} allocated {after[0]:9.1f} MiB   reserved {after[1]:9.1f} MiB")
    print(f"peak allocated {peak:.1f} MiB; stop took {latency * 1000:.0f} ms; run ended '{job.state}' at step "
          f"{job.events[-1].step} of {job.events[-1].total_steps}")  # fmt: skip
    queue.join(timeout=10)

    ok = True
    if job.state != "stopped" or job.events[-1].kind != "stopped":
        print(f"FAIL: the run ended {job.state!r}, not 'stopped' ({job.error})")
        ok = False
    if during[0] < baseline[0] + 100:
        print("FAIL: the run did not hold GPU memory while training; the check proves nothing")
        ok = False
    if after[0] > baseline[0] + TOLERANCE_MIB:
        print(f"FAIL: {after[0] - baseline[0]:.1f} MiB still allocated after the cancel")
        ok = False
    if after[1] > baseline[1] + TOLERANCE_MIB:
        print(f"FAIL: {after[1] - baseline[1]:.1f} MiB still reserved after the cancel (empty_cache not effective)")
        ok = False
    if latency > 1.0:
        print(f"FAIL: the stop took {latency:.2f} s (promised: within a second)")
        ok = False
    print("OK: a cancelled GPU run returns its memory" if ok else "the cancelled run kept GPU memory")
    return ok


def cpu_latency(repeats: int = 5) -> None:
    """The queue's stop latency on the CPU: LeNet training, cancelled after a few steps, ``repeats`` times."""
    queue, latencies = RunQueue(), []
    for seed in range(repeats):
        job = queue.submit(dataclasses.replace(CPU_RUN, seed=seed))
        wait_for_steps(job, 5)
        latencies.append(cancel(queue, job))
        assert job.state == "stopped", job.state
    queue.join(timeout=10)
    ms = sorted(latency * 1000 for latency in latencies)
    print(f"CPU stop latency over {repeats} cancels: median {statistics.median(ms):.0f} ms, max {ms[-1]:.0f} ms")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cpu-latency", action="store_true", help="also time how fast a CPU run stops")
    args = parser.parse_args()
    if args.cpu_latency:
        cpu_latency()
    if not torch.cuda.is_available():
        print("gpu_cancel: this check needs a CUDA GPU and there is none here; nothing measured (exit 0).")
        return 0
    return 0 if gpu_check() else 1


if __name__ == "__main__":
    sys.exit(main())
