"""Clocks: a timeit-style timer, medians and spreads, warm-up, device synchronization,
and the cold-start probe (a fresh process with an empty or a warm Numba cache).

Every benchmark in fastnn (``fastnn bench``, the pytest-benchmark suites,
``benchmarks/numba_crossover.py``) times through these functions.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

import numpy as np

__all__ = [
    "cold_start_pair",
    "cold_start_probe",
    "first_call",
    "interleaved_times",
    "median_time",
    "summarize",
    "synchronized",
    "time_callable",
]


def synchronized(fn: Callable[[], object], backend) -> Callable[[], None]:
    """``fn`` followed by ``backend.synchronize()``, so a clock read after it sees the
    device's work finished (a no-op on the CPU backends)."""

    def run():
        fn()
        backend.synchronize()

    return run


def first_call(fn: Callable[[], object]) -> float:
    """Call ``fn`` once (the warm-up: JIT compilation, cache loading, allocation) and
    return how long that took, in seconds."""
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def summarize(samples) -> dict:
    """Median, min, max, quartiles and the raw samples (seconds)."""
    s = [float(x) for x in samples]
    if not s:
        return {"n": 0}
    q1, q3 = (float(v) for v in np.percentile(s, [25, 75]))
    return {
        "n": len(s),
        "median_s": statistics.median(s),
        "min_s": min(s),
        "max_s": max(s),
        "q1_s": q1,
        "q3_s": q3,
        "samples_s": s,
    }


def _calibrate(fn: Callable[[], object], target_s: float, max_number: int) -> int:
    """The number of calls of ``fn`` whose block lasts at least ``target_s``."""
    number = 1
    while True:
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        elapsed = time.perf_counter() - t0
        if elapsed >= target_s or number >= max_number:
            return number
        number = min(max_number, max(number * 2, int(number * target_s / max(elapsed, 1e-9))))


def time_callable(
    fn: Callable[[], object], repeats: int = 5, target_s: float = 0.05, max_number: int = 100_000
) -> dict:
    """Time ``fn`` (which must synchronize the device itself) like ``timeit``: calibrate
    a number of calls per block that lasts at least ``target_s``, then time ``repeats``
    blocks. Returns :func:`summarize` of the per-call times plus ``number``."""
    number = _calibrate(fn, target_s, max_number)
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        samples.append((time.perf_counter() - t0) / number)
    out = summarize(samples)
    out["number"] = number
    return out


def interleaved_times(
    fns: dict[str, Callable[[], object]], reps: int, attempts: int = 3, spread: float = 1.5
) -> dict[str, list[float]]:
    """Single-call timings of several callables, ``reps`` rounds of one call each,
    interleaved so a drift in machine load hits all alike; every callable is called once
    first (the warm-up).

    On a shared machine a busy neighbour can stall a multi-threaded BLAS call 100x: when
    an attempt's worst spread (max / min of one callable) exceeds ``spread`` it is
    measured again (up to ``attempts`` times) and the attempt with the smallest spread
    is kept. Returns ``{name: [seconds, ...]}``.
    """
    for fn in fns.values():
        fn()
    best: tuple[float, dict[str, list[float]]] | None = None
    for _ in range(attempts):
        times: dict[str, list[float]] = {name: [] for name in fns}
        for _ in range(reps):
            for name, fn in fns.items():
                t = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t)
        worst = max(max(v) / max(min(v), 1e-12) for v in times.values())
        if best is None or worst < best[0]:
            best = (worst, times)
        if worst <= spread:
            break
    return best[1]


def median_time(fn: Callable[[], object], reps: int, attempts: int = 3, spread: float = 1.5):
    """Median of ``reps`` single-call timings of ``fn`` after one warm-up call, measured
    again when the spread says a neighbour stalled it (see :func:`interleaved_times`)."""
    return float(np.median(interleaved_times({"fn": fn}, reps, attempts, spread)["fn"]))


# ---------------------------------------------------------------------- cold start
#: Run as ``python -c CODE BACKEND ROWS``: trains the churn network (11-6-6-1) for one
#: epoch twice in a fresh process and prints one JSON line.
_COLD_START_CODE = r"""
import json, sys, time
t0 = time.perf_counter()
import numpy as np
import fastnn
from fastnn.layers import Dense
t_import = time.perf_counter() - t0
backend, rows = sys.argv[1], int(sys.argv[2])
t0 = time.perf_counter()
fastnn.get_backend(backend)
t_backend = time.perf_counter() - t0
rng = np.random.default_rng(0)
X = rng.standard_normal((rows, 11)).astype(np.float32)
y = (X[:, 0] > 0).astype(np.float32)
def fit():
    m = fastnn.Sequential([Dense(6, activation="relu"), Dense(6, activation="relu"),
                           Dense(1, activation="sigmoid")], backend=backend)
    m.compile(optimizer="adam", loss="binary_crossentropy")
    t = time.perf_counter()
    m.fit(X, y, batch_size=32, epochs=1, verbose=0, seed=0)
    m.backend.synchronize()
    return time.perf_counter() - t, m.training_path
first, path = fit()
second, _ = fit()
from fastnn.bench.contenders import compile_stats
print(json.dumps({"import_s": t_import, "backend_s": t_backend, "first_fit_s": first,
                  "second_fit_s": second, "training_path": path, "compile": compile_stats()}))
"""

#: What the Numba backend prints on stderr when it really compiles (not a cache load).
_ANNOUNCEMENT = "compiling Numba kernels"


def cold_start_probe(backend: str, cache_dir: str, rows: int = 1024, timeout: float = 300):
    """One fresh process with ``NUMBA_CACHE_DIR=cache_dir``: ``import fastnn``, load
    ``backend``, then a one-epoch fit of the churn network on ``rows`` rows, twice.

    Returns ``import_s``, ``backend_s``, ``first_fit_s``, ``second_fit_s``,
    ``compile_s`` (first - second), ``training_path``, ``compile`` (the Numba backend's
    compile seconds and count, None on other backends), ``announced`` (whether it said
    it was compiling) and ``process_s``; or ``error``.
    """
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir)
    cmd = [sys.executable, "-c", _COLD_START_CODE, backend, str(rows)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    row: dict = {"process_s": time.perf_counter() - t0}
    if proc.returncode != 0:
        row["error"] = (proc.stderr.strip().splitlines()[-1:] or ["failed"])[0]
        return row
    row.update(json.loads(proc.stdout.strip().splitlines()[-1]))
    row["compile_s"] = max(0.0, row["first_fit_s"] - row["second_fit_s"])
    row["announced"] = _ANNOUNCEMENT in proc.stderr
    return row


def cold_start_pair(backend: str, rows: int = 1024) -> tuple[dict, dict]:
    """:func:`cold_start_probe` with an empty Numba cache, then again with the cache
    that run left behind (both in a temporary folder)."""
    with tempfile.TemporaryDirectory(prefix="fastnn-bench-cache-") as cache:
        cold = cold_start_probe(backend, cache, rows)
        warm = cold_start_probe(backend, cache, rows)
    return cold, warm
