"""Same seed, same result: on every CPU backend two trainings with the same seed give
bit-identical weights. (Caveat, documented in the README: with multi-threaded BLAS the
reduction order can depend on the thread count, so compare runs on the same machine with
the same OMP/OPENBLAS/NUMBA thread settings.)"""

from __future__ import annotations

import numpy as np
import pytest

import fastnn
from fastnn.layers import Dense, Dropout

CPU = [b for b in fastnn.available_backends() if b != "cupy"]


def _train(backend, seed, dropout):
    rng = np.random.default_rng(5)
    X = rng.standard_normal((300, 7))
    y = (X[:, 0] - X[:, 2] > 0).astype(float)
    layers = [Dense(12, "relu"), Dense(6, "tanh")]
    if dropout:
        layers.append(Dropout(0.3))
    layers.append(Dense(1, "sigmoid"))
    m = fastnn.Sequential(layers, backend=backend)
    m.compile("adam", "binary_crossentropy", ["accuracy"])
    h = m.fit(X, y, epochs=3, batch_size=32, verbose=0, seed=seed)
    return m.get_weights(), h.history["loss"]


@pytest.mark.parametrize("dropout", [False, True])
@pytest.mark.parametrize("backend", CPU)
def test_same_seed_bit_identical(backend, dropout):
    w1, l1 = _train(backend, 7, dropout)
    w2, l2 = _train(backend, 7, dropout)
    assert l1 == l2
    for a, b in zip(w1, w2, strict=True):
        assert np.array_equal(a, b)
    w3, _ = _train(backend, 8, dropout)
    assert not np.array_equal(w1[0], w3[0])


def test_set_seed_reproduces_unseeded_runs():
    fastnn.set_seed(11)
    try:
        w1, _ = _train("numpy", None, True)
        fastnn.set_seed(11)
        w2, _ = _train("numpy", None, True)
    finally:
        fastnn.set_seed(None)
    for a, b in zip(w1, w2, strict=True):
        assert np.array_equal(a, b)
