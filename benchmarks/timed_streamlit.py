"""``streamlit`` with a stopwatch on every script run: the server time the benchmarks report.

    python benchmarks/timed_streamlit.py RUNS.jsonl run app.py [streamlit options]
    TIMED_STREAMLIT_PROFILE=DIR python benchmarks/timed_streamlit.py ...   # and a cProfile of each run in DIR

Appends one JSON line per script run to RUNS.jsonl:
``{"ms": 12.3, "cpu_ms": 9.1, "fragment": true, "end": <time.time()>}``. "ms" is the wall time of the run in the
script thread (widget callbacks, the page's code, building and queueing every element's message), whether a
whole-page rerun or a fragment rerun; it does not count the websocket send, which happens on the server's event
loop. "cpu_ms" is the CPU time the whole server process used meanwhile (every thread: the script, the worker it
waits for, the event loop sending): with one user, the run's cost, which other load on the machine does not
inflate the way it inflates the wall time. The page itself carries no instrumentation: this wraps
the function Streamlit's script runner calls to execute a run.
"""

from __future__ import annotations

import cProfile
import json
import os
import sys
import threading
import time
from pathlib import Path


def _install_stopwatch(path: Path, profiles: Path | None) -> None:
    from streamlit.runtime.scriptrunner import script_runner

    run_script = script_runner.exec_func_with_error_handling
    lock = threading.Lock()

    def timed(func, ctx):  # the signature of exec_func_with_error_handling
        profile = cProfile.Profile() if profiles else None
        start, cpu_start = time.perf_counter(), time.process_time()
        try:
            return profile.runcall(run_script, func, ctx) if profile else run_script(func, ctx)
        finally:
            if profile:
                profile.dump_stats(profiles / f"run-{time.time():.3f}.pstats")
            record = {
                "ms": (time.perf_counter() - start) * 1000,
                "cpu_ms": (time.process_time() - cpu_start) * 1000,
                "fragment": bool(ctx.fragment_ids_this_run),
                "end": time.time(),
            }
            with lock, path.open("a") as log:
                log.write(json.dumps(record) + "\n")

    script_runner.exec_func_with_error_handling = timed


if __name__ == "__main__":
    profiles = os.environ.get("TIMED_STREAMLIT_PROFILE")
    _install_stopwatch(Path(sys.argv.pop(1)), Path(profiles) if profiles else None)
    from streamlit.web.cli import main

    sys.argv[0] = "streamlit"
    sys.exit(main())
