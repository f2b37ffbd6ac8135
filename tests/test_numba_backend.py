"""The Numba backend against the NumPy backend, on the same seed.

Every per-op kernel (forward, backward, loss gradient, optimizer update; float32 and
float64) is compared with the NumPy reference, tolerances scaled by the size of the
inputs; the fused training epoch is compared with the per-layer path after two epochs of
``fit(seed=0, shuffle=True)``, for every loss and optimizer, on both fused paths (hand
loops and BLAS); the churn recipe must reach the tutorial's accuracy; models the fused
path cannot run fall back to the per-layer path and say so.

Skipped as a whole when Numba is not installed. Compilation is cached on disk, so only a
cold run (CI) pays it: about 20-30 s on two cores.
"""

from __future__ import annotations

import inspect
import os
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("numba", reason="numba is not installed (pip install 'fastnn[numba]')")

import fastnn  # noqa: E402
from fastnn import optimizers as O  # noqa: E402
from fastnn.backends.base import Backend  # noqa: E402
from fastnn.layers import Activation, Dense, Dropout  # noqa: E402
from fastnn.layers.base import Layer  # noqa: E402

ACTS = ["linear", "relu", "leaky_relu", "sigmoid", "tanh", "softmax"]
DTYPES = [np.float32, np.float64]
LOSSES = [
    "binary_crossentropy",
    "categorical_crossentropy",
    "sparse_categorical_crossentropy",
    "mse",
]


@pytest.fixture(scope="module")
def nb():
    return fastnn.get_backend("numba")


@pytest.fixture(scope="module")
def npb():
    return fastnn.get_backend("numpy")


def _close(a, b, dtype, scale=1.0):
    """Agreement to float rounding: ``scale`` is the number of terms summed per entry."""
    tol = (2e-5 if dtype == np.float32 else 1e-12) * max(scale, 1.0)
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=tol, atol=tol)


# ---------------------------------------------------------------------------- basics
def test_registered_and_preferred_by_auto(nb):
    assert nb.name == "numba" and nb.device == "cpu" and nb.xp is np
    assert fastnn.get_backend("auto").name == "numba"


def test_signatures_match_the_contract(nb):
    for name, member in inspect.getmembers(Backend, inspect.isfunction):
        if name.startswith("_") or not hasattr(type(nb), name):
            continue
        assert inspect.signature(getattr(type(nb), name)) == inspect.signature(member), name


def test_import_compiles_nothing():
    code = (
        "import fastnn, fastnn.backends.numba_backend as m\n"
        "fastnn.get_backend('numba')\n"
        "import fastnn.kernels.cpu as k\n"
        "assert all(not f.signatures for f in (k.dense_forward_t, k.act_forward, k.loss_grad))\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_first_compile_is_announced_once(tmp_path):
    code = (
        "import numpy as np, fastnn\n"
        "be = fastnn.get_backend('numba')\n"
        "be.dropout_mask((3, 4), 0.5, np.random.default_rng(0), np.float64)\n"
        "be.dropout_mask((3, 4), 0.5, np.random.default_rng(0), np.float32)\n"
    )
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}
    runs = [
        subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
        for _ in range(2)
    ]
    for r in runs:
        assert r.returncode == 0, r.stderr
    assert runs[0].stderr.count("compiling Numba kernels") == 1
    assert "compiling" not in runs[1].stderr  # the second process loads from the cache


# ---------------------------------------------------------------------------- per-op kernels
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("shape", [(37, 11), (3, 1), (64, 40)])
def test_bias_act_forward_backward(nb, npb, act, dtype, shape):
    rng = np.random.default_rng(0)
    Z = (3 * rng.standard_normal(shape)).astype(dtype)
    b = rng.standard_normal(shape[1]).astype(dtype)
    dY = rng.standard_normal(shape).astype(dtype)
    Zn, Yn = npb.bias_act(Z.copy(), b, act)
    Zb, Yb = nb.bias_act(Z.copy(), b, act)
    _close(Zb, Zn, dtype)
    _close(Yb, Yn, dtype)
    dn, dbn = npb.bias_act_backward(Zn, Yn, dY, act)
    db_, dbb = nb.bias_act_backward(Zb, Yb, dY, act)
    _close(db_, dn, dtype)
    _close(dbb, dbn, dtype, scale=shape[0])
    _, nob = nb.bias_act_backward(Zb, Yb, dY, act, need_db=False)
    assert nob is None
    # no bias
    Zn2, Yn2 = npb.bias_act(Z.copy(), None, act)
    _, Yb2 = nb.bias_act(Z.copy(), None, act)
    _close(Yb2, Yn2, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", ACTS)
def test_activation_and_backward(nb, npb, act, dtype):
    rng = np.random.default_rng(1)
    Z = (2 * rng.standard_normal((17, 5))).astype(dtype)
    dY = rng.standard_normal((17, 5)).astype(dtype)
    Yn = npb.activation(act, Z, alpha=0.2)
    Yb = nb.activation(act, Z, alpha=0.2)
    _close(Yb, Yn, dtype)
    out = np.empty_like(Z)
    assert nb.activation(act, Z, alpha=0.2, out=out) is out
    _close(out, Yn, dtype)
    _close(
        nb.activation_backward(act, Z, Yn, dY, 0.2),
        npb.activation_backward(act, Z, Yn, dY, 0.2),
        dtype,
    )


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_sigmoid_logsoftmax_big_and_extreme(nb, npb, dtype):
    rng = np.random.default_rng(2)
    for shape in [(5, 7), (300, 10)]:  # the big one goes to NumPy's SIMD path
        Z = (5 * rng.standard_normal(shape)).astype(dtype)
        big = 1e30 if dtype == np.float64 else 1e4  # exp() of either would overflow
        Z[0, 0] = big
        Z[1, :] = -big
        _close(nb.softmax(Z), npb.softmax(Z), dtype)
        _close(nb.sigmoid(Z), npb.sigmoid(Z), dtype)
        _close(nb.log_softmax(Z), npb.log_softmax(Z), dtype)
        assert np.isfinite(nb.softmax(Z)).all()


@pytest.mark.parametrize("dtype", DTYPES)
def test_nan_and_inf_propagate(nb, npb, dtype):
    Z = np.array([[np.nan, 1.0, -np.inf, np.inf]], dtype=dtype)
    for act in ACTS:
        with np.errstate(invalid="ignore"):
            expect = npb.activation(act, Z)
            got = nb.activation(act, Z)
        np.testing.assert_array_equal(np.isnan(got), np.isnan(expect), err_msg=act)
        finite = np.isfinite(expect)
        np.testing.assert_allclose(got[finite], expect[finite], err_msg=act)


@pytest.mark.parametrize("act", ["tanh", "sigmoid"])
def test_float32_tanh_is_accurate_everywhere(act):
    """The compiled float32 tanh (a vectorised rational approximation) stays within 4e-7
    of the exact function over the whole float32 range, keeps NaN, and maps +-inf to the
    limits; float64 is the exact libm value."""
    from fastnn.kernels import cpu

    kernel = cpu.tanh_forward if act == "tanh" else cpu.sigmoid_forward
    x = np.linspace(-30, 30, 600_000, dtype=np.float32).reshape(3, -1)
    x[0, :1000] = np.geomspace(1e-30, 3e-4, 1000, dtype=np.float32)  # tiny
    y = np.empty_like(x)
    kernel(x, 0.0, y)
    x64 = x.astype(np.float64)
    exact = np.tanh(x64) if act == "tanh" else 0.5 * np.tanh(0.5 * x64) + 0.5
    assert np.abs(y - exact).max() <= 4e-7
    if act == "tanh":  # odd, and tanh(x) = x for tiny x
        np.testing.assert_array_equal(y[0, :1000], x[0, :1000])
    special = np.array([[np.nan, np.inf, -np.inf, 0.0]], dtype=np.float32)
    out = np.empty_like(special)
    kernel(special, 0.0, out)
    limits = [1.0, -1.0, 0.0] if act == "tanh" else [1.0, 0.0, 0.5]
    assert np.isnan(out[0, 0]) and out[0, 1:].tolist() == limits
    y64 = np.empty_like(x64)
    kernel(x64, 0.0, y64)
    np.testing.assert_allclose(y64, exact, rtol=1e-15, atol=1e-16)


def _targets(loss, n, k, rng, dtype):
    if loss == "binary":
        return (rng.random((n, k)) < 0.4).astype(dtype)
    if loss == "sparse":
        return rng.integers(0, k, n)
    if loss == "onehot":
        return np.eye(k, dtype=dtype)[rng.integers(0, k, n)]
    return rng.standard_normal((n, k)).astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize(
    "op, target, k",
    [
        ("bce_logits_grad", "binary", 1),
        ("bce_logits_grad", "binary", 3),
        ("bce_prob_grad", "binary", 2),
        ("softmax_ce_grad/sparse", "sparse", 4),
        ("softmax_ce_grad/dense", "onehot", 4),
        ("cce_prob_grad/sparse", "sparse", 4),
        ("cce_prob_grad/dense", "onehot", 4),
        ("mse_grad", "real", 3),
    ],
)
def test_loss_gradients(nb, npb, op, target, k, weighted, dtype):
    rng = np.random.default_rng(3)
    n = 29
    name, _, variant = op.partition("/")
    y = _targets(target, n, k, rng, dtype)
    w = rng.random((n, 1)).astype(dtype) if weighted else None
    if name in ("bce_prob_grad", "cce_prob_grad"):
        P = rng.random((n, k)).astype(dtype)
        P[0, 0] = 0.0  # the clipped region: zero gradient / clipped log
        P[1, 0] = 1.0
    else:
        P = (4 * rng.standard_normal((n, k))).astype(dtype)
        P[0, 0] = 80.0 if dtype == np.float32 else 800.0  # huge logits stay finite
        P[1, -1] = -(80.0 if dtype == np.float32 else 800.0)
    args = (P, y, w, 1.0 / n)
    if variant:
        args = (*args, variant == "sparse")
    ln, dn = getattr(npb, name)(*args)
    lb, db = getattr(nb, name)(*args)
    assert np.isfinite(lb) and np.isfinite(db).all()
    _close(lb, ln, dtype, scale=n * k)
    _close(db, dn, dtype)


def _opt_case(kind):
    return {
        "sgd": dict(lr=0.1, momentum=0.0, nesterov=False, weight_decay=0.0),
        "sgd-momentum-wd": dict(lr=0.1, momentum=0.9, nesterov=False, weight_decay=1e-2),
        "sgd-nesterov": dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.0),
        "adam": dict(lr=0.01, beta1=0.9, beta2=0.999, eps=1e-7, weight_decay=0.0, decoupled=False),
        "adam-l2": dict(
            lr=0.01, beta1=0.9, beta2=0.99, eps=1e-7, weight_decay=1e-2, decoupled=False
        ),
        "adamw": dict(lr=0.01, beta1=0.8, beta2=0.999, eps=1e-6, weight_decay=4e-3, decoupled=True),
        "rmsprop": dict(lr=0.01, rho=0.9, eps=1e-7, momentum=0.0, weight_decay=0.0),
        "rmsprop-momentum-wd": dict(lr=0.01, rho=0.8, eps=1e-7, momentum=0.5, weight_decay=1e-3),
    }[kind]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "kind",
    [
        "sgd",
        "sgd-momentum-wd",
        "sgd-nesterov",
        "adam",
        "adam-l2",
        "adamw",
        "rmsprop",
        "rmsprop-momentum-wd",
    ],
)
def test_optimizer_updates(nb, npb, kind, dtype):
    rng = np.random.default_rng(4)
    size = 1000
    theta0 = rng.standard_normal(size).astype(dtype)
    results = []
    for be in (npb, nb):
        theta = theta0.copy()
        s1, s2 = np.zeros(size, dtype), np.zeros(size, dtype)
        grng = np.random.default_rng(5)
        cfg = _opt_case(kind)
        for t in range(1, 6):
            grad = grng.standard_normal(size).astype(dtype)
            if kind.startswith("sgd"):
                be.sgd_update(theta, grad, s1, **cfg)
            elif kind.startswith("adam"):
                be.adam_update(theta, grad, s1, s2, t=t, **cfg)
            else:
                be.rmsprop_update(theta, grad, s1, s2, **cfg)
        results.append((theta, s1, s2))
    for a, b in zip(results[0], results[1], strict=True):
        # elementwise, uncontracted, same order of operations: equal up to libm sqrt
        _close(b, a, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_dropout_mask_same_stream(nb, npb, dtype):
    mn = npb.dropout_mask((40, 7), 0.3, np.random.default_rng(6), dtype)
    mb = nb.dropout_mask((40, 7), 0.3, np.random.default_rng(6), dtype)
    assert mb.dtype == dtype
    np.testing.assert_array_equal(mb, mn)


@pytest.mark.parametrize("dtype", DTYPES)
def test_dense_hand_loops_against_matmul(dtype):
    from fastnn.kernels import cpu as K

    rng = np.random.default_rng(7)
    din, dout, n = 13, 9, 21
    X = rng.standard_normal((din, n)).astype(dtype)  # feature-major, as in the fused epoch
    W = rng.standard_normal((din, dout)).astype(dtype)
    b = rng.standard_normal(dout).astype(dtype)
    Z = np.empty((dout, n), dtype)
    K.dense_forward_t(W, b, True, X, Z)
    _close(Z, (X.T @ W + b).T, dtype, scale=din)
    dZ = rng.standard_normal((dout, n)).astype(dtype)
    dW, db, dX = np.empty_like(W), np.empty(dout, dtype), np.empty_like(X)
    K.dense_backward_t(W, X, dZ, dW, db, True, dX, True)
    _close(dW, X @ dZ.T, dtype, scale=n)
    _close(db, dZ.sum(axis=1), dtype, scale=n)
    _close(dX, W @ dZ, dtype, scale=dout)


# ---------------------------------------------------------------------------- fused epoch
def _data(loss, n=150, d=7, k=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    if loss == "binary_crossentropy":
        y = (rng.random((n, 1)) < 0.4).astype(float)
    elif loss == "sparse_categorical_crossentropy":
        y = rng.integers(0, k, n)
    elif loss == "categorical_crossentropy":
        y = np.eye(k)[rng.integers(0, k, n)]
    else:
        y = rng.standard_normal((n, 2))
    return X, y


def _model(loss, backend, dtype, head=True, dropout=0.0):
    k = {"binary_crossentropy": 1, "mse": 2}.get(loss, 3)
    natural = {"binary_crossentropy": "sigmoid", "mse": "linear"}.get(loss, "softmax")
    other = {"binary_crossentropy": "tanh", "mse": "tanh"}.get(loss, "sigmoid")
    layers = [Dense(9, "tanh"), Dense(8, "leaky_relu", alpha=0.1)]
    if dropout:
        layers.append(Dropout(dropout))
    layers += [Dense(5, "relu"), Activation("sigmoid"), Dense(k, natural if head else other)]
    return fastnn.Sequential(layers, backend=backend, dtype=dtype)


OPTS = {
    "sgd": lambda: O.SGD(0.05, momentum=0.9, nesterov=True, weight_decay=1e-3),
    "adam": lambda: O.Adam(0.01, weight_decay=1e-3),
    "adamw": lambda: O.AdamW(0.01),
    "rmsprop": lambda: O.RMSprop(0.01, momentum=0.5),
}


def _train_pair(loss, opt, dtype, head=True, dropout=0.0, class_weight=None, epochs=2):
    X, y = _data(loss)
    out = []
    for be in ("numpy", "numba"):
        m = _model(loss, be, dtype, head, dropout)
        m.compile(optimizer=OPTS[opt](), loss=loss, metrics=["accuracy"] if loss != "mse" else [])
        h = m.fit(
            X,
            y,
            batch_size=16,
            epochs=epochs,
            verbose=0,
            seed=0,
            shuffle=True,
            class_weight=class_weight,
        )
        out.append((m, h))
    return out


def _assert_same_training(pair, dtype):
    (mn, hn), (mb, hb) = pair
    assert mb.training_path.startswith("fused numba epoch"), mb.training_path
    assert mn.training_path.startswith("per-layer")
    assert mb.optimizer.iterations == mn.optimizer.iterations
    scale = max(1.0, float(np.abs(mn.theta).max()))
    tol = 1e-10 if dtype == "float64" else 1e-4
    np.testing.assert_allclose(mb.theta, mn.theta, rtol=tol, atol=tol * scale)
    for key in hn.history:
        np.testing.assert_allclose(hb.history[key], hn.history[key], rtol=tol, atol=tol)
    for s in mn.optimizer.state:
        sc = max(1.0, float(np.abs(mn.optimizer.state[s]).max()))
        np.testing.assert_allclose(
            mb.optimizer.state[s], mn.optimizer.state[s], rtol=tol, atol=tol * sc
        )


_FUSED_CASES = [
    (loss, opt, dtype, path)
    for path in ("loops", "cols")
    for loss in LOSSES
    for opt in OPTS
    for dtype in ("float64", "float32")
] + [(loss, opt, "float64", "blas") for loss in LOSSES for opt in ("sgd", "adam")]


@pytest.mark.parametrize("loss, opt, dtype, path", _FUSED_CASES)
def test_fused_epoch_matches_per_layer(monkeypatch, loss, opt, dtype, path):
    monkeypatch.setenv("FASTNN_NUMBA_PATH", path)
    _assert_same_training(_train_pair(loss, opt, dtype), dtype)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("loss", LOSSES)
def test_table_driven_loops_equal_the_generated_epoch_bit_for_bit(monkeypatch, loss, dtype):
    """``cols`` (one compiled function for every network) runs the generated epoch's
    kernels in its order on its layout: the same weights, to the last bit."""
    runs = []
    for path in ("loops", "cols"):
        monkeypatch.setenv("FASTNN_NUMBA_PATH", path)
        runs.append(_train_pair(loss, "adam", dtype, dropout=0.2, epochs=3)[1])
    (ml, hl), (mc, hc) = runs
    assert "op tables" in mc.training_path, mc.training_path
    np.testing.assert_array_equal(ml.theta, mc.theta)
    for s in ml.optimizer.state:
        np.testing.assert_array_equal(ml.optimizer.state[s], mc.optimizer.state[s])
    assert hl.history == hc.history


@pytest.mark.parametrize("path", ["loops", "cols", "blas"])
@pytest.mark.parametrize("loss", LOSSES)
def test_fused_epoch_without_natural_head(monkeypatch, loss, path):
    monkeypatch.setenv("FASTNN_NUMBA_PATH", path)
    _assert_same_training(_train_pair(loss, "adam", "float64", head=False), "float64")


@pytest.mark.parametrize("path", ["loops", "cols", "blas"])
def test_fused_epoch_dropout_and_class_weight(monkeypatch, path):
    # dropout draws the same uniforms in the same order as the per-layer path, also when
    # an epoch is cut into several calls to bound the uniforms drawn at once
    from fastnn.backends import numba_epoch

    monkeypatch.setenv("FASTNN_NUMBA_PATH", path)
    monkeypatch.setattr(numba_epoch, "_MAX_UNIFORMS", 300)
    pair = _train_pair(
        "binary_crossentropy", "adam", "float64", dropout=0.3, class_weight={0: 0.5, 1: 2.0}
    )
    _assert_same_training(pair, "float64")


@pytest.mark.parametrize("path", ["loops", "blas"])
def test_fused_epoch_odd_stacks(monkeypatch, path):
    """Dropout or an activation first, a Dense without bias, a linear Activation."""
    monkeypatch.setenv("FASTNN_NUMBA_PATH", path)
    X, y = _data("sparse_categorical_crossentropy")
    thetas = []
    for be in ("numpy", "numba"):
        m = fastnn.Sequential(
            [
                Dropout(0.2),
                Activation("tanh"),
                Dense(6, "relu", use_bias=False),
                Activation("linear"),
                Dense(5, "softmax", use_bias=False),
                Activation("softmax"),
                Dense(3),
                Activation("softmax"),
            ],
            backend=be,
            dtype="float64",
        )
        m.compile(optimizer="rmsprop", loss="sparse_categorical_crossentropy")
        m.fit(X, y, batch_size=13, epochs=2, verbose=0, seed=0)
        thetas.append(m.theta.copy())
    assert m.training_path.startswith("fused numba epoch"), m.training_path
    np.testing.assert_allclose(thetas[1], thetas[0], rtol=1e-10, atol=1e-12)


def test_runner_contract(nb):
    X, y = _data("sparse_categorical_crossentropy", n=50)
    m = _model("sparse_categorical_crossentropy", "numba", "float64")
    m.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    m.build(X.shape[1], seed=0)
    m.optimizer.build(nb, m.theta.size, m.dtype)
    runner = nb.epoch_runner(m, m.loss, m.optimizer)
    assert "fused numba epoch (4 Dense layers, adam" in runner.description
    theta0 = m.theta.copy()
    logits_before = m._forward_logits(X, 1024)
    loss_sum, out = runner.run(X, y, None, 16, np.random.default_rng(0))
    assert m.optimizer.iterations == 4  # ceil(50 / 16)
    assert out.shape == (50, 3) and not np.allclose(m.theta, theta0)
    # the first batch is computed with the initial weights: its outputs are the logits
    np.testing.assert_allclose(out[:16], logits_before[:16], rtol=1e-12, atol=1e-12)
    assert np.isfinite(loss_sum) and loss_sum > 0


def test_bad_indices_and_shapes_never_reach_the_kernels(nb):
    from fastnn.errors import ShapeError

    P = np.zeros((4, 3))
    with pytest.raises(IndexError):  # NumPy's error, not a read out of bounds
        nb.softmax_ce_grad(P, np.array([0, 1, 2, 3]), None, 0.25, sparse=True)
    X, y = _data("sparse_categorical_crossentropy", n=20)
    m = _model("sparse_categorical_crossentropy", "numba", "float64")
    m.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    m.build(X.shape[1], seed=0)
    m.optimizer.build(nb, m.theta.size, m.dtype)
    runner = nb.epoch_runner(m, m.loss, m.optimizer)
    rng = np.random.default_rng(0)
    with pytest.raises(ShapeError):
        runner.run(X, np.full(20, 3), None, 8, rng)
    with pytest.raises(ShapeError):
        runner.run(X[:, :3], y, None, 8, rng)
    with pytest.raises(ShapeError):
        runner.run(X, y, np.ones((5, 1)), 8, rng)


def test_unsupported_models_fall_back_and_say_so(nb, npb):
    class Scale(Layer):
        """A custom layer the fused path does not know."""

        def forward(self, X, training=False):
            return 2 * X, lambda dY, need_dX=True: 2 * dY

    X, y = _data("binary_crossentropy")
    thetas = []
    for be in ("numpy", "numba"):
        m = fastnn.Sequential(
            [Dense(4, "relu"), Scale(), Dense(1, "sigmoid")], backend=be, dtype="float64"
        )
        m.compile(optimizer="adam", loss="binary_crossentropy")
        m.fit(X, y, batch_size=16, epochs=2, verbose=0, seed=0)
        assert m.training_path.startswith("per-layer"), m.training_path
        assert nb.epoch_runner(m, m.loss, m.optimizer) is None or be == "numpy"
        thetas.append(m.theta.copy())
    np.testing.assert_allclose(thetas[1], thetas[0], rtol=1e-10, atol=1e-12)

    class MyAdam(O.Adam):
        """A user optimizer: may change ``step``, so it is never fused."""

    m = _model("mse", "numba", "float64")
    m.compile(optimizer=MyAdam(), loss="mse")
    m.fit(*_data("mse"), batch_size=16, epochs=1, verbose=0, seed=0)
    assert m.training_path.startswith("per-layer")


def test_float64_float32_both_fused():
    for dtype in ("float32", "float64"):
        X, y = _data("binary_crossentropy")
        m = _model("binary_crossentropy", "numba", dtype)
        m.compile(optimizer="sgd", loss="binary_crossentropy")
        m.fit(X, y, epochs=1, verbose=0, seed=0)
        assert m.theta.dtype == np.dtype(dtype)
        assert m.training_path.startswith("fused numba epoch")


# ---------------------------------------------------------------------------- the recipe
def _churn():
    return fastnn.data.churn_arrays()


def test_churn_recipe_fused_reaches_tutorial_accuracy():
    X_tr, y_tr, X_te, y_te = _churn()
    model = fastnn.Sequential(
        [Dense(6, "relu"), Dense(6, "relu"), Dense(1, "sigmoid")], backend="numba"
    )
    model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
    model.fit(X_tr, y_tr, batch_size=32, epochs=100, verbose=0, seed=0)
    assert model.training_path.startswith("fused numba epoch"), model.training_path
    assert model.optimizer.iterations == 100 * 250
    acc = model.evaluate(X_te, y_te)["accuracy"]
    assert acc >= 0.85, acc


@pytest.mark.parametrize("dtype", DTYPES)
def test_division_by_zero_gives_nan_as_in_numpy(nb, npb, dtype):
    """The kernels use NumPy's error model: 0/0 is NaN, not a ZeroDivisionError."""
    outs = []
    for be in (npb, nb):
        theta = np.ones(5, dtype=dtype)
        z = np.zeros(5, dtype=dtype)
        with np.errstate(invalid="ignore", divide="ignore"):
            be.adam_update(theta, z.copy(), z.copy(), z.copy(), 0.1, 0.9, 0.999, 0.0, 1, 0.0, False)
        outs.append(theta)
    assert np.isnan(outs[0]).all() and np.isnan(outs[1]).all()


@pytest.mark.parametrize("opt", ["sgd", "adam", "rmsprop"])
def test_numpy_chunked_updates_bit_identical(npb, opt):
    """Big buffers are updated chunk by chunk for cache locality: same bits as at once."""
    from fastnn.backends import numpy_backend
    from fastnn.backends.base import Backend

    rng = np.random.default_rng(0)
    n = 2 * numpy_backend._UPDATE_CHUNK + 12345
    theta, grad = rng.standard_normal((2, n)).astype(np.float32)
    s1, s2 = np.abs(rng.standard_normal((2, n))).astype(np.float32)
    results = []
    for chunked in (True, False):
        th, a, b = theta.copy(), s1.copy(), s2.copy()
        args = {
            "sgd": (th, grad, a, 0.01, 0.9, True, 1e-3),
            "adam": (th, grad, a, b, 0.01, 0.9, 0.999, 1e-7, 3, 1e-3, True),
            "rmsprop": (th, grad, a, b, 0.01, 0.9, 1e-7, 0.5, 1e-3),
        }[opt]
        if chunked:
            getattr(npb, f"{opt}_update")(*args)
        else:  # the base class's whole-buffer update
            getattr(Backend, f"{opt}_update")(npb, *args)
        results.append((th, a, b))
    for x, y in zip(*results, strict=True):
        np.testing.assert_array_equal(x, y)


def test_compiled_cache_stays_out_of_the_installed_package(monkeypatch):
    """pip does not know Numba's cache files: left next to fastnn/kernels/cpu.py they
    survive an uninstall and shadow the next install as a namespace package."""
    import fastnn.kernels.cpu as cpu
    import numba

    monkeypatch.setattr(numba.config, "CACHE_DIR", "")
    X = np.random.default_rng(0).standard_normal((64, 3))
    y = (X[:, 0] > 0).astype(float)
    m = fastnn.Sequential([Dense(4, "relu"), Dense(1, "sigmoid")], backend="numba")
    m.compile("adam", "binary_crossentropy")
    m.fit(X, y, epochs=1, verbose=0, seed=0)
    pycache = os.path.join(os.path.dirname(cpu.__file__), "__pycache__")
    leftovers = (
        [f for f in os.listdir(pycache) if f.endswith((".nbi", ".nbc"))]
        if os.path.isdir(pycache)
        else []
    )
    assert leftovers == []
    assert cpu.dense_forward_t._cache._cache_path != pycache
