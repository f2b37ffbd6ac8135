"""CPU-only machines: a GPU request is a clear error, "auto" falls back with one notice."""

from __future__ import annotations

import importlib.util

import pytest

import fastnn
from fastnn import backends
from fastnn.errors import BackendUnavailableError


@pytest.fixture
def broken_cupy(monkeypatch):
    """Pretend CuPy is installed but finds no working GPU."""
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda n, *a: object() if n == "cupy" else real(n, *a)
    )
    monkeypatch.setattr(backends, "cupy_status", lambda: (False, "no CUDA device is visible"))
    monkeypatch.setitem(
        backends._REGISTRY, "cupy", (*backends._REGISTRY["cupy"][:2], backends.cupy_status)
    )
    monkeypatch.setattr(backends, "_gpu_notice_given", False)


def test_auto_falls_back_to_cpu_with_one_notice(broken_cupy):
    with pytest.warns(RuntimeWarning, match="no CUDA device is visible; 'auto' uses the CPU"):
        name = backends.resolve_backend("auto")
    assert name in ("numba", "numpy")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert backends.resolve_backend("auto") == name  # once per process, not every call


def test_asking_for_the_gpu_is_a_clear_error(broken_cupy):
    with pytest.raises(BackendUnavailableError, match="'cupy' is not available here"):
        fastnn.set_backend("cupy")
    with pytest.raises(BackendUnavailableError):
        fastnn.Sequential([], backend="gpu")


def test_fallback_flag_warns_and_uses_cpu(broken_cupy, monkeypatch):
    monkeypatch.setattr(backends, "_gpu_notice_given", True)  # only the fallback warning here
    with pytest.warns(RuntimeWarning, match="falling back"):
        be = backends.get_backend("cupy", fallback=True)
    assert be.device == "cpu"
