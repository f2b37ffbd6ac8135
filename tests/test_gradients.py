"""Float64 central-difference gradient checks: every layer, activation and loss, and a
whole model (dL/dtheta), on every backend. Inputs are kept away from kinks (relu and
leaky_relu at 0, the clipping edges of the probability losses)."""

from __future__ import annotations

import numpy as np
import pytest

import fastnn
from fastnn import losses
from fastnn.layers import (
    Activation,
    Dense,
    Dropout,
    LeakyReLU,
    Linear,
    ReLU,
    Sigmoid,
    Softmax,
    Tanh,
)
from fastnn.testing import (
    check_gradients,
    check_layer_gradients,
    check_loss_gradients,
    loss_and_grad,
    numeric_grad,
    relative_error,
)

TOL = 1e-6
ACTS = ["linear", "relu", "leaky_relu", "sigmoid", "tanh", "softmax"]
#: pre-activations closer than this to a kink are avoided
MARGIN = 0.05


def _off_kinks(rng, shape):
    """Normal samples pushed at least MARGIN away from 0."""
    Z = rng.standard_normal(shape)
    return np.sign(Z) * (np.abs(Z) + MARGIN) + 0.0


def _dense_off_kinks(be, d_in, units, activation, n=6):
    """A built float64 Dense layer and inputs whose pre-activations avoid 0."""
    for seed in range(100):
        rng = np.random.default_rng(seed)
        X = rng.standard_normal((n, d_in))
        W = rng.standard_normal((d_in, units)) * 0.7
        b = rng.standard_normal(units) * 0.3
        if np.abs(X @ W + b).min() > MARGIN:
            break
    else:  # pragma: no cover - the search above always succeeds for these sizes
        raise AssertionError("no seed keeps Dense pre-activations off the kink")
    layer = Dense(units, activation=activation, alpha=0.1)
    layer.backend = be
    layer.build(d_in)
    layer.params = {"W": be.asarray(W), "b": be.asarray(b)}
    return layer, X


# ---------------------------------------------------------------------- the checker itself
def test_numeric_grad_matches_closed_form():
    x = np.array([0.3, -1.2, 2.0])
    g = numeric_grad(lambda: float(np.sum(np.sin(x) * x**2)), x)
    exact = np.cos(x) * x**2 + 2 * x * np.sin(x)
    assert relative_error(exact, g) < 1e-8
    np.testing.assert_array_equal(x, [0.3, -1.2, 2.0])  # restored


def test_checker_catches_a_wrong_gradient():
    x = np.array([0.5, 1.5])
    g = numeric_grad(lambda: float((x**3).sum()), x)
    assert relative_error(2 * x**2, g) > 0.1  # a deliberately wrong derivative
    with pytest.raises(TypeError):
        numeric_grad(lambda: 0.0, np.zeros(2, dtype=np.float32))


def test_relative_error_floor_treats_tiny_values_absolutely():
    assert relative_error([1e-12], [0.0]) < 1e-7
    assert relative_error([1.0], [1.1]) == pytest.approx(0.1 / 1.1)
    assert relative_error(np.zeros(0), np.zeros(0)) == 0.0


# ---------------------------------------------------------------------- layers
@pytest.mark.parametrize("activation", ACTS)
def test_dense_gradients(backend, activation):
    layer, X = _dense_off_kinks(backend, 4, 3, activation)
    errs = check_layer_gradients(layer, X, backend=backend)
    assert set(errs) == {"X", "W", "b"}
    assert max(errs.values()) < TOL, errs


def test_dense_without_bias_gradients(backend):
    rng = np.random.default_rng(0)
    layer = Dense(3, activation="tanh", use_bias=False)
    errs = check_layer_gradients(layer, rng.standard_normal((5, 4)), backend=backend)
    assert set(errs) == {"X", "W"}
    assert max(errs.values()) < TOL, errs


@pytest.mark.parametrize(
    "layer",
    [
        Activation("linear"),
        Activation("relu"),
        Activation("leaky_relu", alpha=0.2),
        Activation("sigmoid"),
        Activation("tanh"),
        Activation("softmax"),
        ReLU(),
        LeakyReLU(),
        Sigmoid(),
        Tanh(),
        Softmax(),
        Linear(),
    ],
    ids=lambda layer: repr(layer),
)
def test_activation_layer_gradients(backend, layer):
    X = _off_kinks(np.random.default_rng(1), (5, 4))
    errs = check_layer_gradients(layer, X, backend=backend)
    assert errs["X"] < TOL, errs


@pytest.mark.parametrize("rate", [0.0, 0.3, 0.5])
def test_dropout_gradients_with_fixed_mask(backend, rate):
    X = np.random.default_rng(2).standard_normal((8, 5))
    layer = Dropout(rate)
    assert check_layer_gradients(layer, X, backend=backend)["X"] < TOL
    # the mask really drops something, and inference is the identity
    layer.rng = np.random.default_rng(0)
    Y, _ = layer.forward(backend.asarray(X), training=True)
    Yh = backend.to_numpy(Y)
    if rate:
        kept = Yh != 0
        assert 0 < kept.mean() < 1
        np.testing.assert_allclose(Yh[kept], X[kept] / (1 - rate), rtol=1e-12)
    Y0, _ = layer.forward(backend.asarray(X), training=False)
    np.testing.assert_array_equal(backend.to_numpy(Y0), X)


def test_check_gradients_accepts_a_layer():
    X = np.random.default_rng(3).standard_normal((4, 3))
    assert check_gradients(Dense(2, "tanh"), X) < TOL


# ---------------------------------------------------------------------- losses
def _loss_case(name, from_logits, n=7, k=3, seed=0):
    """(loss name, outputs, targets) for a gradient check, off the clipping edges."""
    rng = np.random.default_rng(seed)
    if name == "binary_crossentropy":
        y = rng.integers(0, 2, n)
        out = rng.standard_normal((n, 1)) * 3 if from_logits else rng.uniform(0.05, 0.95, (n, 1))
    elif name == "categorical_crossentropy":
        y = np.eye(k)[rng.integers(0, k, n)]
        out = rng.standard_normal((n, k)) * 2 if from_logits else rng.uniform(0.05, 0.95, (n, k))
    elif name == "sparse_categorical_crossentropy":
        y = rng.integers(0, k, n)
        out = rng.standard_normal((n, k)) * 2 if from_logits else rng.uniform(0.05, 0.95, (n, k))
    else:
        y = rng.standard_normal((n, 2))
        out = rng.standard_normal((n, 2))
    return out, y


LOSS_CASES = [
    ("binary_crossentropy", True),
    ("binary_crossentropy", False),
    ("categorical_crossentropy", True),
    ("categorical_crossentropy", False),
    ("sparse_categorical_crossentropy", True),
    ("sparse_categorical_crossentropy", False),
    ("mse", False),
]


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize(
    ("name", "from_logits"),
    LOSS_CASES,
    ids=[f"{n}-{'logits' if f else 'probs'}" for n, f in LOSS_CASES],
)
def test_loss_gradients(backend, name, from_logits, weighted):
    out, y = _loss_case(name, from_logits)
    w = np.random.default_rng(9).uniform(0.2, 3.0, out.shape[0]) if weighted else None
    err = check_loss_gradients(
        name, out, y, sample_weight=w, from_logits=from_logits, backend=backend
    )
    assert err < TOL


def _reference_loss(name, out, y, from_logits):
    """Per-row losses, written directly from the textbook formulas."""
    out = np.asarray(out, dtype=np.float64)
    if name == "binary_crossentropy":
        p = 1 / (1 + np.exp(-out[:, 0])) if from_logits else out[:, 0]
        return -(y * np.log(p) + (1 - y) * np.log(1 - p))
    if name == "mse":
        return ((out - y) ** 2).mean(axis=1)
    if from_logits:
        e = np.exp(out - out.max(axis=1, keepdims=True))
        p = e / e.sum(axis=1, keepdims=True)
    else:
        p = out
    onehot = np.eye(out.shape[1])[y] if name.startswith("sparse") else y
    return -(onehot * np.log(p)).sum(axis=1)


@pytest.mark.parametrize(("name", "from_logits"), LOSS_CASES)
def test_loss_values_match_textbook_formulas(backend, name, from_logits):
    out, y = _loss_case(name, from_logits, seed=4)
    loss = losses.get(name)
    w = np.random.default_rng(5).uniform(0.5, 2.0, out.shape[0])
    yd = loss.prepare_targets(y, out.shape[1], np.float64)
    ref = _reference_loss(name, out, y, from_logits)
    lsum, _ = loss.grad(backend, backend.asarray(out), backend.asarray(yd), None, 1.0, from_logits)
    np.testing.assert_allclose(float(lsum), ref.sum(), rtol=1e-10)
    lsum, _ = loss.grad(
        backend,
        backend.asarray(out),
        backend.asarray(yd),
        backend.asarray(w.reshape(-1, 1)),
        1.0,
        from_logits,
    )
    np.testing.assert_allclose(float(lsum), (w * ref).sum(), rtol=1e-10)


def test_probability_loss_gradient_is_zero_where_clipped():
    be = fastnn.get_backend("numpy")
    P = np.array([[0.0], [1.0], [0.5]])
    y = np.array([[1.0], [0.0], [1.0]])
    lsum, dP = be.bce_prob_grad(P, y, None, 1.0)
    assert np.isfinite(float(lsum)) and np.isfinite(dP).all()
    assert dP[0, 0] == 0 and dP[1, 0] == 0 and dP[2, 0] != 0


# ---------------------------------------------------------------------- whole models
def _model(backend, layers, loss, input_dim):
    m = fastnn.Sequential(layers, dtype="float64", backend=backend)
    m.compile(fastnn.optimizers.SGD(0.1), loss)
    m.build(input_dim, seed=0)
    return m


MODEL_CASES = {
    "churn-bce": (
        lambda: [Dense(6, "relu"), Dense(6, "relu"), Dense(1, "sigmoid")],
        "binary_crossentropy",
        lambda rng, n: rng.integers(0, 2, n),
    ),
    "bce-sigmoid-activation-layer": (
        # the head is an Activation layer: still fused with BCE
        lambda: [Dense(5, "tanh"), Dense(1), Activation("sigmoid")],
        "binary_crossentropy",
        lambda rng, n: rng.integers(0, 2, n),
    ),
    "bce-unfused-probabilities": (
        # a non-matching head: the loss sees probabilities
        lambda: [Dense(5, "leaky_relu"), Dense(1, "linear"), Activation("sigmoid"), Linear()],
        "binary_crossentropy",
        lambda rng, n: rng.integers(0, 2, n),
    ),
    "softmax-cce": (
        lambda: [Dense(5, "tanh"), Dropout(0.3), Dense(3, "softmax")],
        "categorical_crossentropy",
        lambda rng, n: np.eye(3)[rng.integers(0, 3, n)],
    ),
    "softmax-sparse": (
        lambda: [Dense(5, "sigmoid"), Dense(3), Softmax()],
        "sparse_categorical_crossentropy",
        lambda rng, n: rng.integers(0, 3, n),
    ),
    "mse": (
        lambda: [
            Dense(5, "leaky_relu"),
            Dense(4, "relu", kernel_initializer="he_normal"),
            Dense(2),
        ],
        "mse",
        lambda rng, n: rng.standard_normal((n, 2)),
    ),
}


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("case", list(MODEL_CASES))
def test_model_gradients(backend, case, weighted):
    make_layers, loss, make_y = MODEL_CASES[case]
    rng = np.random.default_rng(7)
    X, y = rng.standard_normal((10, 4)), make_y(rng, 10)
    m = _model(backend, make_layers(), loss, 4)
    w = rng.uniform(0.5, 2.0, 10) if weighted else None
    err, analytic, numeric = check_gradients(m, X, y, sample_weight=w, return_grads=True)
    assert np.abs(analytic).max() > 1e-3  # a real gradient, not all zeros
    assert err < TOL


@pytest.mark.parametrize("loss", ["binary_crossentropy", "sparse_categorical_crossentropy", "mse"])
def test_fit_step_follows_the_gradient(backend, loss):
    """One full-batch SGD step of ``fit`` (whatever fused path the backend uses) moves
    theta by exactly ``-lr * dL/dtheta``, with dL/dtheta from central differences."""
    k = 1 if loss == "binary_crossentropy" else 3
    head = {"binary_crossentropy": "sigmoid", "mse": "linear"}.get(loss, "softmax")
    rng = np.random.default_rng(11)
    X = rng.standard_normal((12, 4))
    y = rng.integers(0, 2, 12) if k == 1 else rng.integers(0, 3, 12)
    if loss == "mse":
        y = rng.standard_normal((12, k))
    cw = None if loss == "mse" else {0: 0.5, 1: 2.0}
    m = fastnn.Sequential(
        [Dense(5, "tanh"), Dense(4, "sigmoid"), Dense(k, head)], dtype="float64", backend=backend
    )
    m.compile(fastnn.optimizers.SGD(learning_rate=1.0), loss)
    m.build(4, seed=3)
    theta0 = backend.to_numpy(m.theta).copy()
    w = None
    if cw is not None:
        w = np.ones(12)
        cls = y if y.ndim == 1 else y[:, 0]
        for c, v in cw.items():
            w[cls == c] = v
    _, _, numeric = check_gradients(m, X, y, sample_weight=w, return_grads=True)
    m.fit(X, y, batch_size=12, epochs=1, shuffle=False, class_weight=cw, verbose=0, seed=0)
    step = theta0 - backend.to_numpy(m.theta)
    assert relative_error(step, numeric) < TOL


def test_loss_and_grad_equals_evaluate_loss():
    rng = np.random.default_rng(12)
    X, y = rng.standard_normal((20, 3)), rng.integers(0, 2, 20)
    m = _model("numpy", [Dense(4, "relu"), Dense(1, "sigmoid")], "binary_crossentropy", 3)
    loss, _ = loss_and_grad(m, X, y)
    assert m.evaluate(X, y)["loss"] == pytest.approx(loss, rel=1e-12)
