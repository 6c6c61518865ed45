"""A stopped GPU run hands its memory back, and Stop is quick: GPU memory before, during and after a stopped run.

    python benchmarks/gpu_cancel.py                 # needs a CUDA GPU; without one it says so and exits 0
    python benchmarks/gpu_cancel.py --cpu-latency   # also (or, without a GPU, only) the stop latency on the CPU

The run goes through ``vision_core.jobs.RunQueue`` exactly as the Fine-tune page's Stop button does: the run trains in
a process of its own; ``queue.cancel`` sets its stop flag, ``fine_tune``'s stop hooks raise inside the next layer, the
process reports a "stopped" event and exits, and with it goes every byte it held on the GPU. The device's free
memory (``torch.cuda.mem_get_info``, which sees every process) must come back to what it was before the run.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere, without installing the package

from vision_core.jobs import Caller, RunQueue
from vision_core.training import TrainConfig

TOLERANCE_MIB = 64.0  # the device's free memory after the run may differ by this much (other processes, the driver)
BIG = TrainConfig(  # real GPU memory in use: ResNet-18 from scratch on 128 px digits, batch 256, far longer than we wait
    model="resnet18", init="scratch", mode="full", image_size=128, batch_size=256, train_size=60_000, epochs=20,
    device="cuda", log_every=5,
)  # fmt: skip
CPU_RUN = TrainConfig(model="lenet", train_size=60_000, epochs=5, device="cpu", log_every=1)
ME = Caller("benchmark")


def free_mib() -> float:
    return torch.cuda.mem_get_info()[0] / 2**20


def wait_for_steps(queue: RunQueue, job_id: int, steps: int, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while queue.get(job_id).progress.step < steps:
        if time.monotonic() > deadline or not queue.get(job_id).active:
            raise SystemExit(f"the run did not reach step {steps}: {queue.get(job_id).state} {queue.get(job_id).error}")
        time.sleep(0.05)


def stop(queue: RunQueue, job_id: int) -> float:
    asked = time.perf_counter()
    queue.cancel(job_id, ME)
    if not queue.wait(job_id, timeout=30):
        raise SystemExit("the run did not stop within 30 s")
    return time.perf_counter() - asked


def gpu(work: Path) -> bool:
    queue = RunQueue(work_dir=work)
    before = free_mib()
    job = queue.submit(BIG, ME)
    wait_for_steps(queue, job.id, 20)
    during = free_mib()
    latency = stop(queue, job.id)
    time.sleep(1.0)  # the process has exited; let the driver account for it
    after = free_mib()
    queue.shutdown()
    print(f"GPU: {torch.cuda.get_device_name()}")
    print(f"{'free before the run':28s} {before:10.1f} MiB")
    print(f"{'free while it trains':28s} {during:10.1f} MiB   (the run holds {before - during:,.0f} MiB)")
    print(f"{'free after Stop':28s} {after:10.1f} MiB   (stopped {latency * 1000:.0f} ms after the click)")
    ok = abs(before - after) <= TOLERANCE_MIB and latency < 1.5
    print(
        "OK: a stopped GPU run returns its memory" if ok else "FAIL: the stopped run kept GPU memory or Stop was slow"
    )
    return ok


def cpu_latency(work: Path, repeats: int = 10) -> None:
    queue, latencies = RunQueue(work_dir=work), []
    for seed in range(repeats):
        job = queue.submit(dataclasses.replace(CPU_RUN, seed=seed), ME)
        wait_for_steps(queue, job.id, 3)
        latencies.append(stop(queue, job.id) * 1000)
    queue.shutdown()
    print(
        f"CPU stop latency over {repeats} runs: median {statistics.median(latencies):.0f} ms, max {max(latencies):.0f} ms"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cpu-latency", action="store_true", help="also measure Stop's latency on the CPU")
    args = parser.parse_args()
    ok = True
    with tempfile.TemporaryDirectory() as work:
        if torch.cuda.is_available():
            ok = gpu(Path(work) / "gpu")
        else:
            print("no CUDA GPU here: the GPU part is skipped (run this on a machine with one)")
        if args.cpu_latency or not torch.cuda.is_available():
            cpu_latency(Path(work) / "cpu")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
