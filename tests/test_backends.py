"""The backend registry and selection, the contract every backend keeps, and every
backend against NumPy on the same inputs and the same seed."""

from __future__ import annotations

import importlib
import inspect
import math
import threading

import numpy as np
import pytest

import fastnn
from fastnn import backends as reg
from fastnn.backends.base import ACTIVATIONS, Backend
from fastnn.errors import BackendMismatchError, BackendUnavailableError, UnknownNameError
from fastnn.layers import Dense, Dropout
from fastnn.testing import (
    assert_allclose_scaled,
    assert_backends_agree,
    backend_params,
    default_rtol,
    matmul_scale,
)

OTHER_BACKENDS = [p for p in backend_params() if p.values[0] != "numpy"]


@pytest.fixture(params=OTHER_BACKENDS)
def other(request) -> str:
    """Each registered backend other than the NumPy reference."""
    return request.param


@pytest.fixture(params=[np.float32, np.float64], ids=["float32", "float64"])
def dt(request):
    return request.param


# ---------------------------------------------------------------------- registry/selection
def test_registry_and_status():
    status = fastnn.backend_status()
    assert set(status) == set(reg._REGISTRY) >= {"numpy", "numba", "cupy"}
    for ok, reason in status.values():
        assert isinstance(ok, bool) and isinstance(reason, str) and reason
    avail = fastnn.available_backends()
    assert avail[0] == "numpy" or "numpy" in avail
    assert avail == [n for n, (ok, _) in status.items() if ok]
    for name in avail:
        be = fastnn.get_backend(name)
        assert isinstance(be, Backend) and be.name == name
        assert fastnn.get_backend(name) is be  # shared instances


def test_auto_picks_the_first_working_backend_in_order():
    expected = next(n for n in reg._AUTO_ORDER if n in fastnn.available_backends())
    assert reg.resolve_backend("auto") == expected
    assert reg.resolve_backend("cpu") == expected
    assert reg.resolve_backend(" NumPy ") == "numpy"
    assert fastnn.Sequential([Dense(1)]).backend.name == expected


def test_set_backend_sets_the_default():
    assert fastnn.set_backend("numpy").name == "numpy"
    assert fastnn.Sequential([Dense(1)]).backend.name == "numpy"
    assert reg.resolve_backend(None) == "numpy"
    fastnn.set_backend(None)
    assert reg.resolve_backend(None) == reg.resolve_backend("auto")


def test_use_backend_is_scoped():
    fastnn.set_backend("numpy")
    target = fastnn.available_backends()[-1]
    with fastnn.use_backend(target) as be:
        assert be.name == target
        assert fastnn.Sequential([Dense(1)]).backend.name == target
        with fastnn.use_backend("numpy"):
            assert reg.resolve_backend(None) == "numpy"
        assert reg.resolve_backend(None) == target
        seen = []
        t = threading.Thread(target=lambda: seen.append(reg.resolve_backend(None)))
        t.start()
        t.join()
        assert seen == ["numpy"]  # a ContextVar: other threads keep the default
    assert reg.resolve_backend(None) == "numpy"
    with pytest.raises(RuntimeError), fastnn.use_backend(target):
        raise RuntimeError("boom")
    assert reg.resolve_backend(None) == "numpy"


def test_fastnn_backend_environment_variable(monkeypatch):
    monkeypatch.setenv("FASTNN_BACKEND", "numpy")
    assert reg.resolve_backend(None) == "numpy"
    assert fastnn.Sequential([Dense(1)]).backend.name == "numpy"
    target = fastnn.available_backends()[-1]
    fastnn.set_backend(target)  # an explicit choice beats the environment
    assert reg.resolve_backend(None) == target
    fastnn.set_backend(None)
    monkeypatch.setenv("FASTNN_BACKEND", "numpyy")
    with pytest.raises(UnknownNameError, match="numpyy"):
        fastnn.Sequential([Dense(1)])


def test_unknown_backend_names():
    for bad in ("tpu", "", 3):
        with pytest.raises(UnknownNameError, match="backend"):
            fastnn.get_backend(bad)


def test_gpu_request_without_a_gpu_is_a_clear_error():
    ok, reason = fastnn.backend_status()["cupy"]
    if ok:
        pytest.skip("a GPU works here")
    for name in ("cupy", "gpu", "cuda"):
        with pytest.raises(BackendUnavailableError) as info:
            fastnn.set_backend(name)
        msg = str(info.value)
        assert "cupy" in msg and reason in msg
        assert isinstance(info.value, RuntimeError)
    with pytest.raises(BackendUnavailableError, match="cupy"):
        fastnn.Sequential([Dense(1)], backend="cupy")
    with pytest.raises(BackendUnavailableError):
        fastnn.use_backend("cupy").__enter__()
    assert "cupy" not in fastnn.available_backends()
    with pytest.warns(RuntimeWarning, match="falling back"):
        be = fastnn.get_backend("cupy", fallback=True)
    assert be.device == "cpu"


def test_unavailable_cpu_backend_reports_why(monkeypatch):
    monkeypatch.setitem(
        reg._REGISTRY,
        "numba",
        (
            "fastnn.backends.numba_backend",
            "NumbaBackend",
            lambda: (False, "numba is not installed"),
        ),
    )
    assert fastnn.backend_status()["numba"] == (False, "numba is not installed")
    with pytest.raises(BackendUnavailableError, match="numba is not installed"):
        fastnn.get_backend("numba")
    monkeypatch.setitem(
        reg._REGISTRY, "numba", ("fastnn.backends.not_there", "X", lambda: (True, "fine"))
    )
    assert fastnn.backend_status()["numba"] == (
        False,
        "not implemented yet in this version of fastnn",
    )


def test_foreign_arrays_fail_fast_and_name_the_fix():
    be = fastnn.get_backend("numpy")

    class DeviceArray:  # looks like another library's array
        shape = (2, 3)

    with pytest.raises(BackendMismatchError, match=r"model\.to"):
        be.check_native(DeviceArray(), "X")
    m = fastnn.Sequential([Dense(1, input_dim=3)], backend="numpy").build()
    with pytest.raises(BackendMismatchError, match="numpy"):
        m.forward(DeviceArray())


# ---------------------------------------------------------------------- the contract
def _backend_classes():
    out = []
    for name, (module, cls, _) in reg._REGISTRY.items():
        try:
            mod = importlib.import_module(module)
        except ImportError as exc:
            out.append(pytest.param(name, None, marks=pytest.mark.skip(reason=str(exc)), id=name))
            continue
        if not hasattr(mod, cls):
            out.append(
                pytest.param(name, None, marks=pytest.mark.skip(reason="not implemented"), id=name)
            )
            continue
        out.append(pytest.param(name, getattr(mod, cls), id=name))
    return out


MUST_IMPLEMENT = ("asarray", "to_numpy", "synchronize", "matmul", "random_uniform")


@pytest.mark.parametrize(("name", "cls"), _backend_classes())
def test_backend_keeps_the_base_signatures(name, cls):
    assert issubclass(cls, Backend)
    assert cls.name == name
    for meth in MUST_IMPLEMENT:
        assert getattr(cls, meth) is not getattr(Backend, meth), f"{name} lacks {meth}"
    checked = 0
    for attr, base_fn in vars(Backend).items():
        if attr.startswith("_") or not inspect.isfunction(base_fn):
            continue
        fn = inspect.getattr_static(cls, attr)
        if fn is base_fn:
            continue
        checked += 1
        assert inspect.isfunction(fn), f"{name}.{attr} is no longer a plain method"
        base_sig = inspect.signature(base_fn)
        sig = inspect.signature(fn)
        base_params = [(p.name, p.kind) for p in base_sig.parameters.values()]
        params = [(p.name, p.kind) for p in sig.parameters.values()]
        assert params[: len(base_params)] == base_params, (
            f"{cls.__name__}.{attr}{sig} does not keep Backend.{attr}{base_sig}"
        )
        for extra in list(sig.parameters.values())[len(base_params) :]:
            assert extra.default is not inspect.Parameter.empty, (
                f"{cls.__name__}.{attr} adds a required parameter {extra.name!r}"
            )
        for p in base_sig.parameters.values():
            if p.default is not inspect.Parameter.empty:
                assert sig.parameters[p.name].default == p.default, (
                    f"{cls.__name__}.{attr}: default of {p.name!r} changed"
                )
    assert checked >= len(MUST_IMPLEMENT)


# ---------------------------------------------------------------------- each op vs NumPy
def _rng_arrays(seed, *shapes, dtype=np.float64, scale=1.0):
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal(s) * scale).astype(dtype) for s in shapes]


@pytest.mark.parametrize(("transA", "transB"), [(False, False), (True, False), (False, True)])
@pytest.mark.parametrize("shape", [(7, 5, 3), (64, 300, 33)])
def test_matmul_agrees(other, dt, transA, transB, shape):
    n, k, m = shape
    A, B = _rng_arrays(0, (k, n) if transA else (n, k), (m, k) if transB else (k, m), dtype=dt)

    def fn(be):
        out = be.matmul(be.asarray(A), be.asarray(B), transA=transA, transB=transB)
        assert out.dtype == dt and out.shape == (n, m)
        return out

    assert_backends_agree(
        fn, [other], dtype=dt, scale=matmul_scale(A, B, transA, transB), n_terms=k
    )


def test_matmul_into_out(other, dt):
    A, B = _rng_arrays(1, (9, 4), (9, 6), dtype=dt)

    def fn(be):
        out = be.zeros((4, 6), dt)
        res = be.matmul(be.asarray(A), be.asarray(B), transA=True, out=out)
        return res, out  # the result, and what landed in ``out``

    scale = matmul_scale(A, B, True)
    assert_backends_agree(fn, [other], dtype=dt, scale=[scale, scale], n_terms=9)
    numpy_be = fastnn.get_backend("numpy")
    res, out = fn(numpy_be)
    np.testing.assert_array_equal(res, out)


@pytest.mark.parametrize("act", ACTIVATIONS)
def test_bias_act_forward_and_backward_agree(other, dt, act):
    Z, b, dY = _rng_arrays(2, (40, 7), (7,), (40, 7), dtype=dt, scale=2.0)

    def fn(be):
        Zd, Yd = be.bias_act(be.asarray(Z.copy()), be.asarray(b), act, 0.05)
        dZ, db = be.bias_act_backward(Zd, Yd, be.asarray(dY), act, 0.05)
        Y2 = be.activation(act, be.asarray(Z + b), 0.05)
        dZ2 = be.activation_backward(act, be.asarray(Z + b), Y2, be.asarray(dY), 0.05)
        return Zd, Yd, dZ, db, Y2, dZ2

    scale = [None, 1.0, 1.0, 40.0, 1.0, 1.0]  # db sums 40 rows
    assert_backends_agree(fn, [other], dtype=dt, scale=scale, n_terms=40)


def test_softmax_and_log_softmax_agree(other, dt):
    (Z,) = _rng_arrays(3, (30, 5), dtype=dt, scale=20.0)
    Z[0] = [1e4, -1e4, 0, 3, 1e4]  # huge logits: finite and equal

    def fn(be):
        return be.softmax(be.asarray(Z)), be.log_softmax(be.asarray(Z)), be.sigmoid(be.asarray(Z))

    res = assert_backends_agree(fn, [other], dtype=dt, scale=[1.0, 2e4, 1.0])
    assert res[other] <= 1.0


LOSS_OPS = {
    "bce_logits": lambda be, P, Z, y1, yk, yi, w: be.bce_logits_grad(Z[:, 1:2].copy(), y1, w, 0.1),
    "bce_prob": lambda be, P, Z, y1, yk, yi, w: be.bce_prob_grad(P[:, :1].copy(), y1, w, 0.1),
    "softmax_ce": lambda be, P, Z, y1, yk, yi, w: be.softmax_ce_grad(Z, yk, w, 0.1, False),
    "softmax_sparse": lambda be, P, Z, y1, yk, yi, w: be.softmax_ce_grad(Z, yi, w, 0.1, True),
    "cce_prob": lambda be, P, Z, y1, yk, yi, w: be.cce_prob_grad(P, yk, w, 0.1, False),
    "cce_sparse": lambda be, P, Z, y1, yk, yi, w: be.cce_prob_grad(P, yi, w, 0.1, True),
    "mse": lambda be, P, Z, y1, yk, yi, w: be.mse_grad(Z, yk, w, 0.1),
}


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("op", list(LOSS_OPS))
def test_loss_gradients_agree(other, dt, op, weighted):
    rng = np.random.default_rng(4)
    n, k = 50, 4
    P = rng.uniform(0.01, 0.99, (n, k)).astype(dt)
    P[:3, 0] = [0.0, 1.0, 1e-9]  # the clipped region
    Z = (rng.standard_normal((n, k)) * 5).astype(dt)
    Z[0] = 1e4
    yi = rng.integers(0, k, n)
    yk = np.eye(k, dtype=dt)[yi]
    y1 = (rng.random((n, 1)) > 0.5).astype(dt)
    w = rng.uniform(0.5, 2, (n, 1)).astype(dt) if weighted else None

    def fn(be):
        a = [be.asarray(x) for x in (P, Z, y1, yk)]
        lsum, d = LOSS_OPS[op](be, *a, be.asarray(yi), None if w is None else be.asarray(w))
        return float(lsum), d

    assert_backends_agree(
        fn, [other], dtype=dt, scale=[lambda e: max(abs(float(e)), 1.0), None], n_terms=n
    )


def test_ops_accept_non_contiguous_inputs(other, dt):
    """Column slices and transposed views are valid inputs: a backend whose fast path
    needs contiguous arrays must fall back correctly."""
    (Z,) = _rng_arrays(9, (20, 6), dtype=dt, scale=3.0)
    y1 = (np.random.default_rng(1).random((20, 1)) > 0.5).astype(dt)

    def fn(be):
        Zd = be.asarray(Z)
        col, tr = Zd[:, 1:2], Zd.T
        out = [be.sigmoid(col), be.softmax(tr)]
        out += [be.activation(a, tr, 0.1) for a in ACTIVATIONS]
        out += list(be.bce_logits_grad(col, be.asarray(y1), None, 0.05))
        out += list(be.mse_grad(col, be.asarray(y1), None, 0.05))
        return [float(o) if getattr(o, "ndim", 1) == 0 else o for o in out]

    assert_backends_agree(fn, [other], dtype=dt, scale=20.0, n_terms=20)


OPT_OPS = {
    "sgd": lambda be, s, t: be.sgd_update(s[0], s[1], s[2], 0.1, 0.0, False, 0.0),
    "momentum": lambda be, s, t: be.sgd_update(s[0], s[1], s[2], 0.1, 0.9, False, 0.01),
    "nesterov": lambda be, s, t: be.sgd_update(s[0], s[1], s[2], 0.1, 0.9, True, 0.0),
    "adam": lambda be, s, t: be.adam_update(*s[:4], 1e-2, 0.9, 0.999, 1e-7, t, 0.0, False),
    "adam_l2": lambda be, s, t: be.adam_update(*s[:4], 1e-2, 0.9, 0.999, 1e-7, t, 0.01, False),
    "adamw": lambda be, s, t: be.adam_update(*s[:4], 1e-2, 0.9, 0.999, 1e-7, t, 0.01, True),
    "rmsprop": lambda be, s, t: be.rmsprop_update(
        s[0], s[1], s[2], s[3], 1e-2, 0.9, 1e-7, 0.0, 0.0
    ),
    "rmsprop_mom": lambda be, s, t: be.rmsprop_update(
        s[0], s[1], s[2], s[3], 1e-2, 0.9, 1e-7, 0.5, 0.01
    ),
}


@pytest.mark.parametrize("op", list(OPT_OPS))
def test_optimizer_updates_agree(other, dt, op):
    theta, *grads = _rng_arrays(5, 1000, 1000, 1000, 1000, dtype=dt)

    def fn(be):
        s = [be.asarray(theta.copy()), None, be.zeros((1000,), dt), be.zeros((1000,), dt)]
        for t, g in enumerate(grads, start=1):
            s[1] = be.asarray(g)
            OPT_OPS[op](be, s, t)
        return s[0], s[2], s[3]

    assert_backends_agree(fn, [other], dtype=dt, n_terms=10)


def test_random_draws_and_dropout_masks_are_identical(other, dt):
    def fn(be):
        rng = np.random.default_rng(7)
        return (
            be.random_uniform((20, 6), rng, dt),
            be.dropout_mask((20, 6), 0.4, rng, dt),
            be.dropout_mask((3, 2), 0.9, rng, dt),
        )

    assert_backends_agree(fn, [other], dtype=dt, rtol=0.0 if dt == np.float64 else 1e-7)


# ---------------------------------------------------------------------- whole training
def _fit_same_seed(backend_name, dtype, loss="binary_crossentropy", dropout=0.0):
    rng = np.random.default_rng(8)
    X = rng.standard_normal((150, 6))
    if loss == "binary_crossentropy":
        y, head, k = (X[:, 0] - X[:, 2] > 0).astype(int), "sigmoid", 1
    else:
        y, head, k = np.argmax(X[:, :3], axis=1), "softmax", 3
    layers = [Dense(8, "relu"), Dense(5, "tanh")]
    if dropout:
        layers.append(Dropout(dropout))
    layers.append(Dense(k, head))
    m = fastnn.Sequential(layers, dtype=dtype, backend=backend_name)
    m.compile("adam", loss, ["accuracy"])
    h = m.fit(X, y, batch_size=16, epochs=3, verbose=0, seed=0, validation_split=0.2)
    return m, h, X


@pytest.mark.parametrize("dropout", [0.0, 0.3], ids=["plain", "dropout"])
@pytest.mark.parametrize("loss", ["binary_crossentropy", "sparse_categorical_crossentropy"])
def test_training_agrees_with_numpy_on_the_same_seed(other, dt, loss, dropout):
    ref, h_ref, X = _fit_same_seed("numpy", dt, loss, dropout)
    got, h_got, _ = _fit_same_seed(other, dt, loss, dropout)
    rtol = 1e-9 if dt == np.float64 else 2e-3
    for a, b in zip(got.get_weights(), ref.get_weights(), strict=True):
        assert_allclose_scaled(a, b, dtype=dt, rtol=rtol, scale=1.0)
    for key in h_ref.history:
        np.testing.assert_allclose(h_got.history[key], h_ref.history[key], rtol=rtol, atol=rtol)
    assert_allclose_scaled(got.predict(X), ref.predict(X), dtype=dt, rtol=rtol, scale=1.0)


def test_same_initial_weights_on_every_backend(backend_name):
    def weights(name):
        m = fastnn.Sequential([Dense(4, "relu"), Dense(2)], dtype="float64", backend=name)
        return m.build(3, seed=11).get_weights()

    for a, b in zip(weights(backend_name), weights("numpy"), strict=True):
        np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------------- the helpers
def test_scaled_comparison_accepts_cancellation_that_relative_error_rejects():
    rng = np.random.default_rng(0)
    A = rng.standard_normal((4, 1000)).astype(np.float32)
    B = rng.standard_normal((1000, 4)).astype(np.float32)
    B[:, 0] = 0
    B[0, 0], B[1, 0] = 1, 1
    A[0, 0], A[0, 1] = 1e3, -1e3 + 1e-3  # element (0,0) cancels to ~1e-3
    exact = A.astype(np.float64) @ B.astype(np.float64)
    approx = A @ B
    approx[0, 0] = exact[0, 0] + 3e-5  # off by 3% relatively, tiny against |A||B|
    assert_allclose_scaled(approx, exact, dtype=np.float32, scale=matmul_scale(A, B), n_terms=1000)
    with pytest.raises(AssertionError):
        np.testing.assert_allclose(approx, exact, rtol=1e-2)
    with pytest.raises(AssertionError, match="tolerance"):
        assert_allclose_scaled(exact + 1e-2, exact, dtype=np.float32, scale=1.0)
    with pytest.raises(AssertionError, match="non-finite"):
        assert_allclose_scaled(np.array([np.nan]), np.array([1.0]))
    assert assert_allclose_scaled(np.array([np.inf]), np.array([np.inf])) == 0.0
    assert default_rtol(np.float32) > default_rtol(np.float64)
    assert math.isclose(matmul_scale(np.eye(2), -np.ones((2, 2)))[0, 0], 1.0)


def test_assert_backends_agree_reports_and_catches_differences():
    numpy_be = fastnn.get_backend("numpy")
    report = assert_backends_agree(lambda be: be.asarray(np.arange(3.0)), ["numpy"])
    assert report == {}

    class Off(type(numpy_be)):
        name = "off"

        def softmax(self, Z, out=None):
            return super().softmax(Z) * 1.01

    reg._instances["off"] = Off()
    reg._REGISTRY["off"] = ("fastnn.backends.numpy_backend", "NumpyBackend", lambda: (True, ""))
    try:
        with pytest.raises(AssertionError, match="off vs numpy"):
            assert_backends_agree(lambda be: be.softmax(be.asarray(np.eye(3))), ["off"])
    finally:
        del reg._instances["off"], reg._REGISTRY["off"]
