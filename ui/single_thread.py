"""Small tensor work on one worker thread that runs torch with one thread per operation.

Why: torch splits any operation over about 32k elements (a 280 x 280 drawing) and the matrix products of the tiny
digit models over every core. On a server whose other core is busy (a browser, another session, a training run),
each split operation waits until the scheduler gives its second thread a turn: measured on this project's 2-core
machine under load, the Draw page's three forwards took 270 ms instead of 5 ms, and a layer norm on 50 x 64 values
5 ms. One thread per operation is what models this small want anyway. ``torch.set_num_threads`` is per thread
(OpenMP) but also sets the default for threads started later, so the worker sets it for itself and the process
default is put back at once (a thread takes that default on its first torch call, so the worker makes one first).

>>> report = run_single_threaded(predict_digits, image, models)
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

import torch

P = ParamSpec("P")
R = TypeVar("R")
_lock = threading.Lock()
_worker: ThreadPoolExecutor | None = None


def _one_thread_here() -> None:
    torch.get_num_threads()  # torch reads the process default on a thread's first use: let it do so now, not later
    torch.set_num_threads(1)


def _single_threaded_worker() -> ThreadPoolExecutor:
    global _worker
    with _lock:
        if _worker is None:
            threads = torch.get_num_threads()
            worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="torch-1-thread")
            worker.submit(_one_thread_here).result()
            torch.set_num_threads(threads)  # the default for threads started later (this one keeps ``threads``)
            _worker = worker
    return _worker


def run_single_threaded(function: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    """``function(*args, **kwargs)`` on the worker; its exceptions are raised here."""
    return _single_threaded_worker().submit(function, *args, **kwargs).result()
