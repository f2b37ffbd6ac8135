"""Seeding. All randomness fastnn uses (initial weights, batch order, dropout masks) is
drawn on the host from NumPy generators, so every backend sees the same stream."""

from __future__ import annotations

import numpy as np

_global: np.random.Generator | None = None


def set_seed(seed: int | None) -> None:
    """Make every later model and ``fit`` without an explicit seed reproducible.

    ``set_seed(None)`` goes back to fresh OS entropy.
    """
    global _global
    _global = None if seed is None else np.random.default_rng(seed)


def make_rng(seed=None) -> np.random.Generator:
    """A generator from ``seed``; else from the :func:`set_seed` stream; else fresh."""
    if seed is not None:
        if isinstance(seed, np.random.Generator):
            return seed
        return np.random.default_rng(seed)
    if _global is not None:
        return np.random.default_rng(_global.integers(2**63))
    return np.random.default_rng()
