"""Which optional packages work here. Never imports CuPy or Numba at ``import fastnn``.

Each probe runs once, on first use, and caches both the answer and the reason.
"""

from __future__ import annotations

import functools
import importlib.util


@functools.cache
def numba_status() -> tuple[bool, str]:
    """Return ``(works, reason)`` for Numba."""
    if importlib.util.find_spec("numba") is None:
        return False, "numba is not installed (pip install 'fastnn[numba]')"
    try:
        import numba  # noqa: F401
    except Exception as exc:  # numba raises ImportError, SystemError... on bad numpy pairs
        return False, f"numba failed to import: {type(exc).__name__}: {exc}"
    return True, f"numba {numba.__version__}"


@functools.cache
def cupy_status() -> tuple[bool, str]:
    """Return ``(works, reason)`` for CuPy with at least one usable CUDA device."""
    if importlib.util.find_spec("cupy") is None:
        return False, "cupy is not installed (pip install 'fastnn[gpu]' on a CUDA machine)"
    try:
        import cupy

        n = cupy.cuda.runtime.getDeviceCount()
        if n < 1:
            return False, "cupy is installed but no CUDA device is visible"
        # A tiny real computation: catches missing drivers and broken toolkits.
        if int(cupy.arange(3).sum()) != 3:
            return False, "cupy computed a wrong result on the device"
        name = cupy.cuda.runtime.getDeviceProperties(0)["name"]
        if isinstance(name, bytes):
            name = name.decode()
    except Exception as exc:
        return False, f"cupy cannot use a GPU here: {type(exc).__name__}: {exc}"
    return True, f"cupy {cupy.__version__} on {name}"


def has_numba() -> bool:
    """True when Numba imports and works."""
    return numba_status()[0]


def has_cupy() -> bool:
    """True when CuPy is installed (it may still have no GPU)."""
    return importlib.util.find_spec("cupy") is not None


def has_cupy_gpu() -> bool:
    """True when CuPy is installed and a CUDA device really computes."""
    return cupy_status()[0]
