"""The NumPy backend: the reference implementation, on the CPU, with the vendor BLAS."""

from __future__ import annotations

import numpy as np

from .base import Backend


class NumpyBackend(Backend):
    """Runs everything with NumPy on the CPU. Always available; the reference others
    are tested against."""

    name = "numpy"
    device = "cpu"
    xp = np

    def asarray(self, a, dtype=None):
        """Return ``a`` as a NumPy array (no copy when it already is one of ``dtype``)."""
        if not isinstance(a, np.ndarray) and hasattr(a, "get") and hasattr(a, "device"):
            a = a.get()  # a CuPy array: copy it to the host
        return np.asarray(a, dtype=dtype)

    def to_numpy(self, a) -> np.ndarray:
        """Return ``a`` unchanged (it already is a NumPy array)."""
        return np.asarray(a)

    def synchronize(self) -> None:
        """Nothing to wait for on the CPU."""

    def matmul(self, A, B, transA: bool = False, transB: bool = False, out=None):
        """``op(A) @ op(B)`` through NumPy's BLAS (transposes are free views)."""
        return np.matmul(A.T if transA else A, B.T if transB else B, out=out)

    def random_uniform(self, shape, rng: np.random.Generator, dtype):
        """Uniform samples from the host generator, cast to ``dtype``."""
        return rng.random(shape, dtype=np.float64).astype(dtype, copy=False)
