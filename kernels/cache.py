"""Loading this package's compiled kernels from Numba's on-disk cache without Numba's
one-time set-up of its compiler.

Before it loads a cached function, Numba's ``Cache.load_overload`` calls
``target_context.refresh()``: it imports and installs every typing and lowering
registry Numba has (``numba.np.arraymath``, ``numba.cpython.unicode``, ``numba.typed``,
...), 0.2 s on the 2-core box, once per process. Machine code read from the cache needs
none of them, only Numba's runtime (NRT, for the arrays it allocates). What compiles
anything refreshes first anyway (``numba.core.compiler.CompilerBase``), so a cache miss,
or any other function compiled later, finds the registries installed as before.

:func:`quick_loads` gives the dispatchers of a module that loader: NRT initialised, the
cached function read, and on any error in that, Numba's own loader (refresh included).
``fastnn tune`` loads its fold trainer this way while a child process reads the table
(:func:`fastnn.tune.warm_kernels`): 0.41 s -> 0.27 s with Numba's import, measured
inside the command on the 2-core box.
"""

from __future__ import annotations

import functools


def quick_loads(namespace: dict) -> None:
    """Give every cached Numba dispatcher in ``namespace`` (a module's ``globals()``)
    :func:`_load` as its cache loader; nothing where Numba's cache has no such method
    (another Numba version)."""
    for obj in list(namespace.values()):
        cache = getattr(obj, "_cache", None)
        load = getattr(type(cache), "load_overload", None)
        if load is None or not hasattr(cache, "_load_overload"):
            continue
        if not isinstance(getattr(cache, "load_overload", None), functools.partial):
            cache.load_overload = functools.partial(_load, cache, load)


def _load(cache, numba_load, sig, target_context):
    """Numba's ``Cache.load_overload`` without the registries' refresh: the compiled
    function for ``sig``, or None (not cached: Numba compiles it, refreshing first)."""
    try:
        from numba.core.runtime import rtsys

        rtsys.initialize(target_context)
        with cache._guard_against_spurious_io_errors():
            return cache._load_overload(sig, target_context)
    except Exception:
        return numba_load(cache, sig, target_context)
