"""Two threads, each training its own model at the same time, get exactly the weights
they get one after the other (NumPy and Numba backends, every Numba training path, and
the first Numba compilation happening inside the threads)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

import fastnn
from fastnn.layers import Dense, Dropout

# (hidden sizes, activation, optimizer, batch size, dropout): the Numba hand-loop path
# for the narrow ones, the BLAS path for the wide one, dropout drawing from its stream
CASES = [
    ([16, 8], "relu", "adam", 16, 0.0),
    ([96, 96], "tanh", "sgd", 32, 0.2),
    ([5], "sigmoid", "rmsprop", 8, 0.1),
]


def _train(backend, i, epochs=3):
    hidden, act, opt, batch, rate = CASES[i]
    rng = np.random.default_rng(i)
    X = rng.normal(size=(300, 12))
    y = (X[:, 0] + X[:, 1] > 0).astype(float)
    layers = []
    for h in hidden:
        layers.append(Dense(h, act))
        if rate:
            layers.append(Dropout(rate))
    model = fastnn.Sequential([*layers, Dense(1, "sigmoid")], backend=backend)
    model.compile(opt, "binary_crossentropy", ["accuracy", "auc"])
    model.fit(X, y, epochs=epochs, batch_size=batch, seed=i, verbose=0, validation_split=0.2)
    return model.get_weights(), model.history.history


def _side_by_side(backend, n_threads, case=None):
    results = [None] * n_threads
    errors = []
    start = threading.Barrier(n_threads)

    def work(i):
        try:
            start.wait()
            results[i] = _train(backend, i % len(CASES) if case is None else case)
        except BaseException as exc:  # a thread's error must fail the test
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    return results


@pytest.mark.parametrize("backend_name", ["numpy", "numba"])
def test_threads_train_as_if_one_after_the_other(backend_name):
    pytest.importorskip(backend_name)
    together = _side_by_side(backend_name, 2 * len(CASES))
    for i, (weights, history) in enumerate(together):
        alone_w, alone_h = _train(backend_name, i % len(CASES))
        assert all(np.array_equal(a, b) for a, b in zip(weights, alone_w, strict=True)), i
        assert history == alone_h


def test_threads_asking_first_share_one_backend(monkeypatch):
    pytest.importorskip("numba")
    from fastnn import backends

    monkeypatch.setattr(backends, "_instances", {})  # as in a fresh process
    start = threading.Barrier(8)
    got = []

    def work():
        start.wait()
        got.append(backends.get_backend("numba"))

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 8 and all(b is got[0] for b in got)


_FIRST_COMPILE = """
import sys
sys.path.insert(0, {tests!r})
import numpy as np
from fastnn.backends.numba_backend import compile_stats
from test_threads import _side_by_side, _train
together = _side_by_side("numba", 2, case=0)  # the same kernels, wanted at once
assert compile_stats()["count"] > 0, "nothing was compiled: the cache was not empty"
w1, h1 = _train("numba", 0)
for i, (w, h) in enumerate(together):
    assert all(np.array_equal(a, b) for a, b in zip(w, w1)), i
    assert h == h1
print("same weights")
"""


@pytest.mark.slow
def test_first_numba_compilation_in_two_threads(tmp_path):
    """Empty kernel cache: both threads need the same kernels' first compilation at
    once (BLAS path: fewer kernels to compile than the hand loops, same locking)."""
    pytest.importorskip("numba")
    code = _FIRST_COMPILE.format(tests=os.path.dirname(__file__))
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "cache"), "FASTNN_NUMBA_PATH": "blas"}
    res = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.strip() == "same weights"
    assert res.stderr.count("fastnn: compiling Numba kernels") == 1, res.stderr
