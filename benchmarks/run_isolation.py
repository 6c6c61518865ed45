"""Draw-page latency while a run trains: the run in its own process (the app's design) against a thread of the app.

Measures ``predict_digits`` (one canvas drawing, the three shipped digit models: what the Draw page runs on a stroke)
in this process, idle and while a LeNet run trains on MNIST, and prints median and p95 and the ratio to idle
(target: <= 1.5x with the run in a worker process). For comparison, the same with the run as a thread of this
process, as the app trained before.

    .venv/bin/python benchmarks/run_isolation.py              # 300 predictions per phase
    .venv/bin/python benchmarks/run_isolation.py --repeats 100
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere, without installing the package

from vision_core import load_model, predict_digits
from vision_core.jobs import Caller, RunQueue
from vision_core.training import TrainConfig, fine_tune

RUN = TrainConfig(model="lenet", train_size=60_000, epochs=20, device="cpu", log_every=20)


def canvas() -> np.ndarray:
    drawing = np.zeros((280, 280, 4), np.uint8)
    drawing[60:220, 130:150] = 255  # a "1"
    drawing[60:80, 100:150] = 255
    return drawing


def measure(models: dict, repeats: int) -> list[float]:
    drawing, times = canvas(), []
    for _ in range(repeats):
        start = time.perf_counter()
        predict_digits(drawing, models)
        times.append((time.perf_counter() - start) * 1000)
        time.sleep(0.005)  # a student's strokes come apart, not back to back
    return times


def summary(name: str, times: list[float], idle: float | None) -> str:
    median, p95 = statistics.median(times), float(np.percentile(times, 95))
    ratio = f"{median / idle:5.2f}x" if idle else "   1.00x"
    return f"{name:44s} median {median:6.2f} ms   p95 {p95:6.2f} ms   {ratio}"


def while_in_a_process(models: dict, repeats: int) -> list[float]:
    with tempfile.TemporaryDirectory() as work:
        queue = RunQueue(work_dir=Path(work))
        job = queue.submit(RUN, Caller("benchmark"))
        while queue.get(job.id).event_count < 2:  # training, not starting
            time.sleep(0.05)
        try:
            return measure(models, repeats)
        finally:
            queue.shutdown()


def while_in_a_thread(models: dict, repeats: int) -> list[float]:
    stop, started = threading.Event(), threading.Event()

    def train() -> None:
        for event in fine_tune(RUN, stop=stop):
            if event.step >= 40:
                started.set()

    thread = threading.Thread(target=train)
    thread.start()
    started.wait()
    try:
        return measure(models, repeats)
    finally:
        stop.set()
        thread.join()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=300)
    parser.add_argument("--no-thread", action="store_true", help="skip the comparison with a training thread")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for the predictions (the Draw page: 1)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    models = {name: load_model(name, device="cpu") for name in ("lenet", "vgg", "vit")}
    measure(models, 20)  # warm up
    idle = measure(models, args.repeats)
    median = statistics.median(idle)
    print(f"predict_digits (3 models, one 280 x 280 drawing, {args.threads} torch thread(s)), {args.repeats} calls per phase")
    print(summary("idle", idle, None))
    process = while_in_a_process(models, args.repeats)
    print(summary("while LeNet trains in a worker process", process, median))
    if not args.no_thread:
        print(
            summary("while LeNet trains in a thread (the old design)", while_in_a_thread(models, args.repeats), median)
        )
    ratio = statistics.median(process) / median
    print(f"ratio with a worker process: {ratio:.2f}x (target <= 1.5x): {'met' if ratio <= 1.5 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
