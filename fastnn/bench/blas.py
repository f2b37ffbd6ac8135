"""The BLAS-bound cases as a user's machine runs them.

Some environments set ``OPENBLAS_CORETYPE`` and ``OPENBLAS_L2_SIZE`` (older OpenBLAS
builds needed them on some processors); a current OpenBLAS runs slower kernels with
them. When either is set, ``fastnn bench`` trains its BLAS-bound cases once more per
CPU backend in a worker process started with both unset (they must be unset before
NumPy loads OpenBLAS), round-robin with the run as the environment is, and records which
OpenBLAS kernel (core type), version and thread count ran in each (threadpoolctl).

BLAS-bound cases: the ``mid`` and ``big`` fits, and the points of the width sweep whose
hidden layers are at least :data:`BLAS_BOUND_WIDTH` wide.
"""

from __future__ import annotations

from .cases import NetSpec
from .compare import blas_pairs
from .contenders import Contender
from .environment import BLAS_TUNING_VARS, blas_kernels, blas_tuning_env
from .worker import in_worker

__all__ = [
    "BLAS_BOUND_SIZES",
    "BLAS_BOUND_WIDTH",
    "VARIANT_SUFFIX",
    "blas_bound",
    "blas_report",
    "unset_contenders",
]

#: The fit sizes whose time is mostly matrix products.
BLAS_BOUND_SIZES = ("mid", "big")
#: Sweep networks with hidden layers at least this wide are BLAS-bound.
BLAS_BOUND_WIDTH = 256
#: Appended to a fastnn contender's name for its run with the variables unset.
VARIANT_SUFFIX = "-blas-unset"
#: Backends whose matrix products go through OpenBLAS (not cuBLAS).
_CPU_BACKENDS = ("numpy", "numba")


def blas_bound(spec: NetSpec) -> bool:
    """True for the cases run a second time with the ``OPENBLAS_*`` variables unset."""
    return spec.name in BLAS_BOUND_SIZES or min(spec.hidden, default=0) >= BLAS_BOUND_WIDTH


def unset_contenders(backends: list[str]) -> list[Contender]:
    """fastnn on each CPU backend of ``backends``, in a worker process started without
    :data:`~fastnn.bench.environment.BLAS_TUNING_VARS`; none when neither is set here
    (then the run as the environment is already is the unset run)."""
    if not blas_tuning_env():
        return []
    return [
        Contender(
            f"fastnn-{b}{VARIANT_SUFFIX}",
            f"fastnn {b}, OPENBLAS_* unset",
            "fastnn-blas-unset",
            in_worker("fastnn.bench.contenders:prepare_fastnn", (b,), unset=BLAS_TUNING_VARS),
        )
        for b in backends
        if b in _CPU_BACKENDS
    ]


def blas_report(results: dict) -> dict:
    """``results["blas_env"]``: the variables as set, the kernels this process loaded,
    and per BLAS-bound case and backend the median as is, unset, and their ratio."""
    env = blas_tuning_env()
    out: dict = {
        "variables": list(BLAS_TUNING_VARS),
        "as_is": {"env": env, "kernels": blas_kernels()},
        "unset_run": bool(env),
    }
    if not env:
        out["note"] = (
            f"neither {' nor '.join(BLAS_TUNING_VARS)} is set here: the run as the "
            "environment is already is the unset run"
        )
        return out
    pairs = blas_pairs(results.get("fit", []), VARIANT_SUFFIX, "fit")
    pairs += blas_pairs(results.get("scaling", {}).get("width", []), VARIANT_SUFFIX, "width")
    out["cases"] = pairs
    out["unset"] = {
        "env": next((p["unset_env"] for p in pairs if p.get("unset_env") is not None), None),
        "kernels": _distinct(p.get("unset_kernels") for p in pairs),
    }
    return out


def _distinct(kernel_lists) -> list[dict] | str | None:
    """The distinct library entries of several workers' ``blas_kernels()`` (or the
    first note, when threadpoolctl was missing there)."""
    seen: dict[tuple, dict] = {}
    note = None
    for kernels in kernel_lists:
        if isinstance(kernels, str):
            note = note or kernels
            continue
        for k in kernels or []:
            seen.setdefault(tuple(sorted((a, str(b)) for a, b in k.items())), k)
    return list(seen.values()) if seen else note
