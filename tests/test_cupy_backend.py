"""CuPy backend vs the NumPy backend, on the same seed. Needs a CUDA GPU: every test here
carries the ``gpu`` mark, so it is skipped (with a reason) on CPU-only machines and fails
under ``--require-gpu`` when no GPU works."""

from __future__ import annotations

import numpy as np
import pytest

import fastnn
from fastnn.layers import Dense, Dropout

pytestmark = pytest.mark.gpu

ACTS = ["linear", "relu", "leaky_relu", "sigmoid", "tanh", "softmax"]


@pytest.fixture(scope="module")
def cp():
    return fastnn.get_backend("cupy")


@pytest.fixture(scope="module")
def npb():
    return fastnn.get_backend("numpy")


def _close(a, b, dtype, scale=1.0):
    tol = (1e-4 if dtype == np.float32 else 1e-10) * max(scale, 1.0)
    np.testing.assert_allclose(a, b, rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("act", ACTS)
def test_bias_act_forward_backward(cp, npb, act, dtype):
    rng = np.random.default_rng(0)
    Z = rng.standard_normal((37, 11)).astype(dtype)
    b = rng.standard_normal(11).astype(dtype)
    dY = rng.standard_normal((37, 11)).astype(dtype)
    Zn, Yn = npb.bias_act(Z.copy(), b, act)
    Zc, Yc = cp.bias_act(cp.asarray(Z), cp.asarray(b), act)
    _close(cp.to_numpy(Zc), Zn, dtype)
    _close(cp.to_numpy(Yc), Yn, dtype)
    dn, dbn = npb.bias_act_backward(Zn, Yn, dY, act)
    dc, dbc = cp.bias_act_backward(Zc, Yc, cp.asarray(dY), act)
    _close(cp.to_numpy(dc), dn, dtype)
    _close(cp.to_numpy(dbc), dbn, dtype, scale=37)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_matmul_transposes(cp, npb, dtype):
    rng = np.random.default_rng(1)
    A = rng.standard_normal((64, 40)).astype(dtype)
    B = rng.standard_normal((64, 30)).astype(dtype)
    _close(
        cp.to_numpy(cp.matmul(cp.asarray(A), cp.asarray(B), transA=True)),
        npb.matmul(A, B, transA=True),
        dtype,
        scale=np.sqrt(64),
    )


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_loss_and_optimizer_kernels(cp, npb, dtype):
    rng = np.random.default_rng(2)
    Z = (rng.standard_normal((50, 1)) * 30).astype(dtype)
    y = (rng.random((50, 1)) > 0.5).astype(dtype)
    ln, dn = npb.bce_logits_grad(Z, y, None, 1 / 50)
    lc, dc = cp.bce_logits_grad(cp.asarray(Z), cp.asarray(y), None, 1 / 50)
    _close(float(lc), float(ln), dtype, scale=50)
    _close(cp.to_numpy(dc), dn, dtype)
    for decoupled in (False, True):
        th, g = rng.standard_normal(200).astype(dtype), rng.standard_normal(200).astype(dtype)
        m, v = np.zeros_like(th), np.zeros_like(th)
        thc, gc, mc, vc = (cp.asarray(a) for a in (th, g, m, v))
        for t in (1, 2, 3):
            npb.adam_update(th, g, m, v, 1e-3, 0.9, 0.999, 1e-7, t, 0.01, decoupled)
            cp.adam_update(thc, gc, mc, vc, 1e-3, 0.9, 0.999, 1e-7, t, 0.01, decoupled)
        _close(cp.to_numpy(thc), th, dtype)
    th, g = rng.standard_normal(200).astype(dtype), rng.standard_normal(200).astype(dtype)
    vel = np.zeros_like(th)
    thc, gc, velc = cp.asarray(th), cp.asarray(g), cp.asarray(vel)
    for _ in range(3):
        npb.sgd_update(th, g, vel, 0.1, 0.9, True, 1e-3)
        cp.sgd_update(thc, gc, velc, 0.1, 0.9, True, 1e-3)
    _close(cp.to_numpy(thc), th, dtype)


def _model(backend, dropout=0.0):
    layers = [Dense(16, "relu", input_dim=11), Dense(8, "tanh")]
    if dropout:
        layers.append(Dropout(dropout))
    layers.append(Dense(1, "sigmoid"))
    m = fastnn.Sequential(layers, dtype="float64", backend=backend)
    m.build(11, seed=0)
    m.compile("adam", "binary_crossentropy", ["accuracy"])
    return m


@pytest.mark.parametrize("graph", ["1", "0"])
def test_fit_agrees_with_numpy_and_moves_between_devices(monkeypatch, graph):
    """Both training paths on "cupy": the CUDA-graph epoch (default) and, with
    FASTNN_CUPY_GRAPH=0, the per-layer path over the backend's own ops."""
    monkeypatch.setenv("FASTNN_CUPY_GRAPH", graph)
    rng = np.random.default_rng(3)
    X = rng.standard_normal((300, 11))
    y = (X[:, 0] + X[:, 1] > 0).astype(float)
    mn, mc = _model("numpy"), _model("cupy")
    mn.fit(X, y, epochs=2, batch_size=32, seed=0, verbose=0)
    mc.fit(X, y, epochs=2, batch_size=32, seed=0, verbose=0)
    path = "cupy graph epoch" if graph == "1" else "per-layer (cupy backend ops"
    assert mc.training_path.startswith(path), mc.training_path
    for a, b in zip(mn.get_weights(), mc.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-9)
    P = mc.predict(X)
    assert isinstance(P, np.ndarray)
    mc.to("numpy")
    np.testing.assert_allclose(mc.predict(X), P, rtol=1e-12)
    mc.to("cupy")
    np.testing.assert_allclose(mc.predict(X), P, rtol=1e-12)


def test_numpy_array_into_cupy_model_names_the_fix():
    m = _model("cupy")
    with pytest.raises(fastnn.errors.BackendMismatchError, match="model.to"):
        m.forward(np.zeros((2, 11)))
