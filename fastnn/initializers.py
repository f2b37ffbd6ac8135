"""Weight initializers. Each draws on the host from a NumPy ``Generator``, so every
backend starts from the same weights for the same seed.

An initializer is a callable ``init(shape, fan_in, fan_out, rng) -> np.ndarray (float64)``.
"""

from __future__ import annotations

import numpy as np

from .errors import UnknownNameError


def glorot_uniform(shape, fan_in: int, fan_out: int, rng: np.random.Generator) -> np.ndarray:
    """Uniform on ``[-l, l]`` with ``l = sqrt(6 / (fan_in + fan_out))`` (Keras' default)."""
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, size=shape)


def he_normal(shape, fan_in: int, fan_out: int, rng: np.random.Generator) -> np.ndarray:
    """Truncated normal (cut at 2 std) with ``std = sqrt(2 / fan_in)``, for ReLU nets."""
    std = np.sqrt(2.0 / fan_in) / 0.87962566103423978  # std of N(0,1) truncated at +-2
    out = rng.standard_normal(size=shape)
    bad = np.abs(out) > 2
    while bad.any():  # redraw the tails: the result is a truncated normal
        out[bad] = rng.standard_normal(size=int(bad.sum()))
        bad = np.abs(out) > 2
    return out * std


def zeros(shape, fan_in: int, fan_out: int, rng: np.random.Generator) -> np.ndarray:
    """All zeros (the default for biases)."""
    return np.zeros(shape)


INITIALIZERS = {"glorot_uniform": glorot_uniform, "he_normal": he_normal, "zeros": zeros}


def get(name):
    """Return the initializer called ``name`` (or ``name`` itself if it is callable)."""
    if callable(name):
        return name
    if name not in INITIALIZERS:
        raise UnknownNameError("initializer", name, INITIALIZERS)
    return INITIALIZERS[name]
