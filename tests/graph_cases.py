"""Shared cases of the CUDA-graph runner tests: the same model, data and seed trained by
the NumPy backend's per-layer path and by the graph runner (on the CPU emulator in
test_cuda_emu.py, on a GPU in test_cupy_graph.py), compared weight for weight."""

from __future__ import annotations

import numpy as np

import fastnn
from fastnn.layers import Dense, Dropout

#: name -> (layers, loss, optimizer, outputs)
CASES = {
    "adam-bce": (
        lambda: [
            Dense(8, activation="relu"),
            Dense(7, activation="tanh"),
            Dense(1, activation="sigmoid"),
        ],
        "binary_crossentropy",
        "adam",
        1,
    ),
    "adamw-dropout": (
        lambda: [Dense(9, activation="leaky_relu"), Dropout(0.3), Dense(1, activation="sigmoid")],
        "binary_crossentropy",
        {"name": "adamw", "weight_decay": 0.01},
        1,
    ),
    "nesterov-sparse-ce": (
        lambda: [Dense(6, activation="sigmoid"), Dense(3, activation="softmax")],
        "sparse_categorical_crossentropy",
        {"name": "sgd", "momentum": 0.9, "nesterov": True, "learning_rate": 0.05},
        3,
    ),
    "sgd-mse-sigmoid-out": (
        lambda: [Dense(6, activation="relu", use_bias=False), Dense(2, activation="sigmoid")],
        "mse",
        "sgd",
        2,
    ),
}


def data(case: str, n=40, d=5, seed=0):
    """Features and targets fitting ``CASES[case]``."""
    _, loss, _, k = CASES[case]
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    if loss == "mse":
        y = (X[:, :k] > 0).astype(float) * 0.8 + 0.1
    elif k == 1:
        y = (X[:, 0] + X[:, 1] > 0).astype(float)
    else:
        y = np.argmax(X[:, :k] + 0.3 * rng.standard_normal((n, k)), axis=1)
    return X, y


def model(case: str, dtype: str, backend: str, d=5):
    """A built, compiled model of ``CASES[case]`` with fixed initial weights."""
    layers, loss, opt, _ = CASES[case]
    m = fastnn.Sequential(layers(), dtype=dtype, backend=backend)
    m.compile(optimizer=opt, loss=loss)
    m.build(d, seed=1)
    return m


def check_graph_fit(case, dtype, backend, epochs=3, **fit):
    """Fit ``case`` on the NumPy backend and on ``backend`` (``"cupy"``, or the CuPy
    backend over the CPU emulator) from the same weights and seed, through ``fit``'s own
    choice of path; assert that the graph path ran, that they agree and that the optimizer
    counted every step; return the model."""
    X, y = data(case, n=fit.pop("n", 40))
    ref = model(case, dtype, "numpy")
    h_ref = ref.fit(X, y, epochs=epochs, seed=3, verbose=0, **fit)
    m = model(case, dtype, backend)
    h = m.fit(X, y, epochs=epochs, seed=3, verbose=0, **fit)
    assert m.training_path.startswith("cupy graph epoch"), m.training_path
    tol = {"rtol": 2e-5, "atol": 2e-6} if dtype == "float32" else {"rtol": 1e-11, "atol": 1e-12}
    np.testing.assert_allclose(m.backend.to_numpy(m.theta), ref.theta, **tol)
    np.testing.assert_allclose(h.history["loss"], h_ref.history["loss"], **tol)
    steps = epochs * -(-len(X) // fit["batch_size"])
    assert m.optimizer.iterations == ref.optimizer.iterations == steps
    return m
