"""The machine a benchmark ran on: CPU, cores, memory, OS, versions, thread counts, and
which BLAS library and kernel did the matrix products (threadpoolctl, when installed)."""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import os
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np

__all__ = [
    "BLAS_TUNING_VARS",
    "blas_kernels",
    "blas_tuning_env",
    "load_average",
    "machine_info",
    "thread_info",
    "versions",
]

#: Variables some environments set for older OpenBLAS builds (which computed wrong
#: results or crashed on some processors without them); they slow a current OpenBLAS.
#: ``fastnn bench`` runs its BLAS-bound cases once more with both unset.
BLAS_TUNING_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")

_THREAD_ENV = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    *BLAS_TUNING_VARS,
    "MKL_NUM_THREADS",
    "NUMBA_NUM_THREADS",
    "NUMBA_THREADING_LAYER",
    "XLA_FLAGS",
)

_VERSION_PACKAGES = (
    "fastnn",
    "numpy",
    "numba",
    "llvmlite",
    "cupy-cuda12x",
    "cupy",
    "torch",
    "jax",
    "jaxlib",
    "optax",
    "keras",
    "scikit-learn",
    "pandas",
    "matplotlib",
    "threadpoolctl",
    "pytest-benchmark",
)

_POOL_KEYS = ("user_api", "internal_api", "prefix", "version", "architecture", "num_threads")


def _cpu_model() -> str:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    if sys.platform == "darwin":
        with contextlib.suppress(Exception):
            cmd = ["sysctl", "-n", "machdep.cpu.brand_string"]
            cpu = subprocess.run(cmd, capture_output=True, text=True).stdout.strip() or cpu
    return cpu


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages (None where the OS has none)."""
    with contextlib.suppress(OSError, AttributeError):
        return [round(x, 2) for x in os.getloadavg()]
    return None


def machine_info() -> dict:
    """CPU model, core counts, memory, OS and Python of this machine."""
    info = {
        "cpu": _cpu_model(),
        "logical_cpus": os.cpu_count(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
    }
    if hasattr(os, "sched_getaffinity"):
        info["usable_cpus"] = len(os.sched_getaffinity(0))
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                info["memory_gib"] = round(int(line.split()[1]) / 2**20, 1)
    load = load_average()
    if load is not None:
        info["loadavg_at_start"] = load
    return info


def versions() -> dict:
    """Installed versions of fastnn, NumPy and every peer (None where missing)."""
    out = {"python": platform.python_version()}
    for dist in _VERSION_PACKAGES:
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = None
    with contextlib.suppress(Exception):
        cfg = np.show_config(mode="dicts")
        blas = cfg.get("Build Dependencies", {}).get("blas", {})
        out["numpy_blas"] = f"{blas.get('name')} {blas.get('version', '')}".strip()
    return out


def blas_tuning_env(environ=None) -> dict[str, str]:
    """The :data:`BLAS_TUNING_VARS` set in ``environ`` (default: this process's)."""
    environ = os.environ if environ is None else environ
    return {k: environ[k] for k in BLAS_TUNING_VARS if environ.get(k)}


def blas_kernels() -> list[dict] | str:
    """The BLAS/OpenMP libraries loaded in this process, from threadpoolctl's
    ``threadpool_info()``: API, library, version, ``architecture`` (the OpenBLAS
    kernel/core type that runs) and ``num_threads``; or a note when threadpoolctl is
    not installed (it is optional: the ``bench`` extra)."""
    if importlib.util.find_spec("threadpoolctl") is None:
        return "threadpoolctl not installed"
    try:
        from threadpoolctl import threadpool_info

        return [{k: p.get(k) for k in _POOL_KEYS} for p in threadpool_info()]
    except Exception as exc:  # a broken library must not sink the report
        return f"threadpoolctl failed: {type(exc).__name__}: {exc}"


def _numba_threads() -> dict | None:
    if "numba" not in sys.modules and importlib.util.find_spec("numba") is None:
        return None
    with contextlib.suppress(Exception):
        import numba

        out = {
            "NUMBA_NUM_THREADS": numba.config.NUMBA_NUM_THREADS,
            "get_num_threads": numba.get_num_threads(),
        }
        with contextlib.suppress(Exception):
            out["threading_layer"] = numba.threading_layer()
        return out
    return None


def thread_info() -> dict:
    """Thread counts: BLAS/OpenMP pools (threadpoolctl), Numba, PyTorch, and the
    environment variables that set them."""
    out: dict = {"env": {k: os.environ[k] for k in _THREAD_ENV if os.environ.get(k)}}
    out["threadpools"] = blas_kernels()
    numba_threads = _numba_threads()
    if numba_threads is not None:
        out["numba"] = numba_threads
    if "torch" in sys.modules:
        torch = sys.modules["torch"]
        out["torch"] = {
            "num_threads": torch.get_num_threads(),
            "num_interop_threads": torch.get_num_interop_threads(),
        }
    return out
