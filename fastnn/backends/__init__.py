"""Backend registry and selection.

``set_backend(name)`` sets the process default, ``use_backend(name)`` sets it inside a
``with`` block (a ContextVar, so threads and async tasks do not leak it), and the
``FASTNN_BACKEND`` environment variable gives the default when neither was used.
``"auto"`` picks the fastest backend that really works on this machine.
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib
import importlib.util
import os
import threading
import warnings

from .._compat import cupy_status, numba_status
from ..errors import BackendUnavailableError, UnknownNameError
from .base import ACTIVATIONS, Backend, check_activation

__all__ = [
    "ACTIVATIONS",
    "Backend",
    "available_backends",
    "backend_status",
    "check_activation",
    "get_backend",
    "resolve_backend",
    "set_backend",
    "use_backend",
]

# name -> (module, class, probe returning (works, reason))
_REGISTRY = {
    "numpy": ("fastnn.backends.numpy_backend", "NumpyBackend", lambda: (True, "always")),
    "numba": ("fastnn.backends.numba_backend", "NumbaBackend", numba_status),
    "cupy": ("fastnn.backends.cupy_backend", "CupyBackend", cupy_status),
}

#: The order "auto" tries, fastest first, from benchmarks/results/results.md ("Crossover"):
#: on the 2-core CPU machine the Numba backend was fastest in all 13 cases measured (up
#: to 15x on small layers, 1.15x on BLAS-bound ones), so it goes first. "auto" does not
#: pick the GPU: no GPU crossover has been measured yet, and for small networks a GPU is
#: slower than the CPU.
_AUTO_ORDER = ("numba", "numpy")
_gpu_notice_given = False


def _notice_unusable_gpu() -> None:
    """One line, once per process, when CuPy is installed but cannot use a GPU."""
    global _gpu_notice_given
    if _gpu_notice_given or importlib.util.find_spec("cupy") is None:
        return
    _gpu_notice_given = True
    ok, reason = cupy_status()
    if not ok:
        warnings.warn(f"fastnn: {reason}; 'auto' uses the CPU", RuntimeWarning, stacklevel=3)


_instances: dict[str, Backend] = {}
_instances_lock = threading.Lock()  # two threads asking first get one shared instance
_default: str | None = None
_current: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "fastnn_backend", default=None
)


def _module_status(name: str) -> tuple[bool, str]:
    module, cls, probe = _REGISTRY[name]
    works, reason = probe()
    if not works:
        return False, reason
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name == module:
            return False, "not implemented yet in this version of fastnn"
        return False, f"failed to import: {exc}"
    if not hasattr(mod, cls):
        return False, "not implemented yet in this version of fastnn"
    return True, reason


def backend_status() -> dict[str, tuple[bool, str]]:
    """Map every registered backend name to ``(works_here, reason)``."""
    return {name: _module_status(name) for name in _REGISTRY}


def available_backends() -> list[str]:
    """Names of the backends that really work on this machine."""
    return [name for name, (ok, _) in backend_status().items() if ok]


def resolve_backend(name: str | None) -> str:
    """Turn a name, "auto" or None (the current default) into a working backend name.

    Raises :class:`UnknownNameError` for unknown names and
    :class:`BackendUnavailableError` for known backends that cannot run here.
    """
    if name is None:
        name = _current.get() or _default or os.environ.get("FASTNN_BACKEND") or "auto"
    if not isinstance(name, str):
        raise UnknownNameError("backend", name, [*_REGISTRY, "auto"])
    name = name.strip().lower()
    if name == "auto":
        _notice_unusable_gpu()
        for candidate in _AUTO_ORDER:
            if _module_status(candidate)[0]:
                return candidate
        return "numpy"
    if name in ("cpu",):
        return resolve_backend("auto")
    if name in ("gpu", "cuda"):
        name = "cupy"
    if name not in _REGISTRY:
        raise UnknownNameError("backend", name, [*_REGISTRY, "auto"])
    ok, reason = _module_status(name)
    if not ok:
        raise BackendUnavailableError(f"backend {name!r} is not available here: {reason}")
    return name


def get_backend(name: str | Backend | None = None, fallback: bool = False) -> Backend:
    """Return the (shared) backend instance for ``name`` (see :func:`resolve_backend`).

    With ``fallback=True`` an unavailable backend gives a one-line warning and the best
    CPU backend instead of an error.
    """
    if isinstance(name, Backend):
        return name
    try:
        resolved = resolve_backend(name)
    except BackendUnavailableError as exc:
        if not fallback:
            raise
        resolved = resolve_backend("auto")
        warnings.warn(f"{exc}; falling back to {resolved!r}", RuntimeWarning, stacklevel=2)
    with _instances_lock:
        if resolved not in _instances:
            module, cls, _ = _REGISTRY[resolved]
            _instances[resolved] = getattr(importlib.import_module(module), cls)()
        return _instances[resolved]


def set_backend(name: str | None) -> Backend:
    """Set the process-wide default backend (None restores ``FASTNN_BACKEND``/auto).

    Returns the backend instance; raises a clear error if it cannot run here.
    """
    global _default
    backend = get_backend(name) if name is not None else None
    _default = backend.name if backend is not None else None
    return backend if backend is not None else get_backend(None)


@contextlib.contextmanager
def use_backend(name: str):
    """``with fastnn.use_backend("numba"):`` builds and runs models on that backend."""
    backend = get_backend(name)
    token = _current.set(backend.name)
    try:
        yield backend
    finally:
        _current.reset(token)
