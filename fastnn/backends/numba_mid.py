"""The Numba backend's mid-width fused epoch: when it runs, with how many BLAS threads,
and the call into :func:`fastnn.kernels.cpu_mid.train_epoch_mid`.

Three compiled training paths share one plan (``numba_epoch.plan``): hand loops (small
networks), this "mid" path (one compiled call per epoch, products through BLAS called
from compiled code) and the Python-driven BLAS path. :func:`choose_path` is the measured
rule between them (``benchmarks/mid_width.py``, results in
``benchmarks/results/mid_width.md``):

* hand loops while the Dense layers' multiply-adds per row are at most
  :data:`LOOPS_MAX_MACS_PER_ROW` (below that BLAS's fixed cost per call, ~0.3 us, is
  more than the loops' arithmetic);
* the mid path above it, up to :data:`MID_MAX_MACS_PER_ROW`, whenever Numba can call
  BLAS (SciPy importable) and no layer whose activation compiled code computes with
  scalar libm calls (softmax; sigmoid and tanh in float64) has more than
  :data:`TRANSCENDENTAL_MAX` elements a step: the same GEMMs as the Python-driven BLAS
  path, without its per-call Python overhead;
* otherwise (no SciPy, 1024-wide layers, whose GEMMs pay NumPy's BLAS threads, or wide
  transcendental layers, which the BLAS path sends to NumPy's SIMD loops) the backend's
  loops/BLAS rule (``handloop_limit``).

BLAS threads: a mid-path epoch runs its products on ONE thread (set through threadpoolctl
for the epoch and restored after it). :data:`THREADS_MIN_MACS_PER_STEP` would give BLAS
every core from that many multiply-adds a step, but no cell measured on the 2-core
reference machine (shared with other jobs) was faster with a second BLAS thread: it
spin-waits for a core a neighbour holds, and the mid path's products are small. An idle
machine with more cores may pay off threads for wide layers: re-measure there
(``benchmarks/mid_width.py``, column ``mid``) before setting it.
"""

from __future__ import annotations

import functools
import os

#: hand loops up to this many multiply-adds per row (sum of the Dense layers' d_in*d_out)
LOOPS_MAX_MACS_PER_ROW = 300
#: above this many multiply-adds per row (1024-wide layers) the Python-driven BLAS path,
#: on NumPy's BLAS with every core, wins on an idle machine (11-1024-1024-1/32: 405 vs
#: 666 ms an epoch; 784-1024-1024-10/256: 268 vs 497 ms); 512-wide layers tie
MID_MAX_MACS_PER_ROW = 500_000
#: above this many softmax (or float64 sigmoid/tanh) elements in one layer's step, the
#: mid path's scalar libm calls (~8-30 ns an element) lose to the BLAS path's NumPy SIMD
#: passes (11-64-64-1 tanh float64 at batch 32: 103 vs 74 us a step); the backend's own
#: bar for NumPy. float32 sigmoid/tanh are vectorised in compiled code
#: (``kernels.cpu.tanh32``): 11-64-64-1 tanh at batch 32 measured 4.9-6.2 ms an epoch on
#: the mid path against 15.8-16.0 on the BLAS path (5,440 rows, 2-core Xeon, 2026-12-02)
TRANSCENDENTAL_MAX = 1024
#: BLAS gets every core when a step has at least this many multiply-adds (None: never,
#: as measured; see the module docstring)
THREADS_MIN_MACS_PER_STEP: int | None = None


@functools.lru_cache(maxsize=1)
def mid_available() -> bool:
    """True when Numba can call BLAS from compiled code (it needs SciPy)."""
    try:
        _import_cython_blas()
    except ImportError:
        return False
    return True


def _import_cython_blas() -> None:
    """Import ``scipy.linalg.cython_blas``, where Numba's ``np.dot`` finds BLAS, without
    running ``scipy.linalg``'s ``__init__``: that package import (LAPACK wrappers, the
    array API layer) took 0.19-0.44 s of ``fastnn tune``'s start on the 2-core box, the
    extension alone 0.015-0.04 s. The module is put in ``sys.modules`` under its name,
    so Numba and any later ``import scipy.linalg`` use this one; the plain import where
    ``scipy.linalg`` is loaded already or the file is not where SciPy keeps it."""
    import importlib.machinery
    import importlib.util
    import sys

    name = "scipy.linalg.cython_blas"
    spec = None
    if name not in sys.modules and "scipy.linalg" not in sys.modules:
        import scipy

        spec = importlib.machinery.PathFinder.find_spec(
            name, [os.path.join(p, "linalg") for p in scipy.__path__]
        )
    if spec is None or not isinstance(spec.loader, importlib.machinery.ExtensionFileLoader):
        import scipy.linalg.cython_blas  # noqa: F401

        return
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    sys.meta_path.insert(0, _LinalgAttribute)


class _LinalgAttribute:
    """Import hook for the one later ``import scipy.linalg`` after
    :func:`_import_cython_blas`: the package, once run, gets its ``cython_blas``
    attribute (the import system sets it only for submodules it loads itself)."""

    @staticmethod
    def find_spec(fullname, path=None, target=None):
        import importlib.util
        import sys

        if fullname != "scipy.linalg":
            return None
        sys.meta_path.remove(_LinalgAttribute)
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None:
            return spec
        exec_module = spec.loader.exec_module

        def run(module):
            exec_module(module)
            module.cython_blas = sys.modules["scipy.linalg.cython_blas"]

        spec.loader.exec_module = run
        return spec


def transcendental_width(ops, dtype=None) -> int:
    """The widest op of the plan's int table ``ops`` whose activation compiled code
    computes with scalar libm calls: softmax, and sigmoid/tanh unless ``dtype`` is
    float32 (those are vectorised there)."""
    import numpy as np

    from ..kernels import cpu

    f32 = dtype is not None and np.dtype(dtype) == np.float32
    codes = (cpu.SOFTMAX,) if f32 else (cpu.SIGMOID, cpu.TANH, cpu.SOFTMAX)
    widths = [int(r[cpu.C_DOUT]) for r in ops if int(r[cpu.C_ACT]) in codes]
    return max(widths, default=0)


def choose_path(plan, batch_size: int) -> str | None:
    """``"loops"`` or ``"mid"`` for ``plan`` (the backend's ``_Plan``) at this batch
    size, or None where the mid path does not pay (no SciPy, or a layer of more than
    :data:`TRANSCENDENTAL_MAX` scalar-libm elements a step, see
    :func:`transcendental_width`, which the BLAS path sends to NumPy's SIMD loops) and
    the backend's loops/BLAS rule decides."""
    if plan.macs_per_row <= LOOPS_MAX_MACS_PER_ROW:
        return "loops"
    if not mid_available() or plan.macs_per_row > MID_MAX_MACS_PER_ROW:
        return None
    if (
        transcendental_width(plan.ops_units, getattr(plan, "dtype", None)) * batch_size
        > TRANSCENDENTAL_MAX
    ):
        return None
    return "mid"


def blas_threads(macs_per_row: int, batch_size: int) -> int | None:
    """BLAS threads for a mid-path epoch: 1, or None (BLAS's own default: every core)."""
    bar = THREADS_MIN_MACS_PER_STEP
    return None if bar is not None and batch_size * macs_per_row >= bar else 1


@functools.lru_cache(maxsize=1)
def _controller():
    """threadpoolctl's controller of the loaded BLAS libraries (None without it)."""
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return None
    mid_available()  # SciPy's BLAS loaded first, so the controller sees it
    return ThreadpoolController().select(user_api="blas")


def one_blas_thread():
    """A context that runs every loaded BLAS library (NumPy's and SciPy's) on one thread:
    threadpoolctl's ``threadpool_limits(1)`` with the controller found once per process
    (``threadpool_limits`` rescans the process's libraries at every call: 3 ms), or
    nothing when they already run on one (see :func:`_limit`)."""
    return _limit(_all_controller(), 1)


def _limit(ctl, threads: int):
    """``ctl.limit(limits=threads)``, or a null context when ``ctl`` is None or every
    library it controls already has ``threads`` threads. Setting OpenBLAS's thread count
    in a forked child (re)creates its thread pool, even to set 1 or the count it has; a
    new thread then spins ~0.13 s waiting for work, on a core another worker of ``fastnn
    tune`` trains on (``perf``, 2-core box). Reading the count creates nothing."""
    import contextlib

    if ctl is None or all(lib.num_threads == threads for lib in ctl.lib_controllers):
        return contextlib.nullcontext()
    return ctl.limit(limits=threads)


@functools.lru_cache(maxsize=1)
def _all_controller():
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return None
    mid_available()
    return ThreadpoolController()


def blas_limit(macs_per_row: int, batch_size: int):
    """A context that runs BLAS with :func:`blas_threads` threads (nothing to limit:
    a null context)."""
    import contextlib

    threads = blas_threads(macs_per_row, batch_size)
    if threads is None:
        return contextlib.nullcontext()
    return _limit(_controller(), threads)


def run_mid(runner, *args):
    """Train batches ``b0 .. b1-1`` on the mid path and return the loss sum; ``args`` are
    the runner's ``_run_loops``'s: ``X, yf, yi, w, has_w, out, theta, grad, s1, s2, U,
    lc, hp, lr_ts, eps_ts, batch_size, b0, b1``."""
    from ..kernels import cpu_mid

    p = runner.plan
    data, state, (U, lc, hp, lr_ts, eps_ts), steps = args[:6], args[6:10], args[10:15], args[15:]
    kernel_args = (
        data,
        state,
        (runner.ops, p.opf),
        (runner.ws, runner.G0, runner.G1, U),
        (p.loss_code, p.sparse, lc),
        (p.opt_code, hp, lr_ts, eps_ts),
        steps,
    )
    with blas_limit(p.macs_per_row, steps[0]):
        return cpu_mid.train_epoch_mid(*kernel_args)
