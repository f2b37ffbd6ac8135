"""The CUDA kernels and the CUDA-graph runner, run on the CPU.

``tests/cuda_emu.py`` compiles each ``kernels/*.cu`` source for the host and runs its
kernels over the grids the GPU would use. The kernels are checked against the NumPy
backend's ops, and the graph runner's whole plan (a captured epoch replayed with its
pointers frozen) is trained through ``fit`` against the NumPy backend on the same seed.
This checks the logic of the GPU path, not its speed; the same comparisons run on a
device in tests/test_cupy_graph.py. Skips without a C++20 compiler (except in CI)."""

from __future__ import annotations

import os

import numpy as np
import pytest
from fastnn.kernels import cuda as K

import fastnn
from fastnn.backends import cupy_graph
from fastnn.layers import Dense

cuda_emu = pytest.importorskip("cuda_emu")
from graph_cases import CASES, check_graph_fit  # noqa: E402

NP = fastnn.get_backend("numpy")


@pytest.fixture(scope="module")
def emu(tmp_path_factory):
    """The kernels compiled for the host (once per module)."""
    if cuda_emu.compiler() is None:
        if os.environ.get("FASTNN_CI") or os.environ.get("CI"):
            pytest.fail("CI needs g++ or clang++ for the CUDA emulator", pytrace=False)
        pytest.skip("no C++ compiler for the CUDA emulator")
    return cuda_emu.Emulator(tmp_path_factory.mktemp("emu"))


@pytest.fixture()
def cupy_emu(emu):
    """A fresh CuPy backend over the emulator (its own graph device and counters)."""
    return cuda_emu.emulated_cupy_backend(emu)


def _tol(dtype):
    return {"rtol": 2e-5, "atol": 2e-6} if dtype == np.float32 else {"rtol": 1e-12, "atol": 1e-13}


# --------------------------------------------------------------------------- kernels
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("tile", ["gemm64", "gemm32"])
@pytest.mark.parametrize(
    ("M", "N", "Kd", "ta", "tb"),
    [(37, 21, 50, 0, 0), (70, 33, 19, 1, 0), (5, 1, 6, 0, 1), (65, 66, 17, 1, 1)],
)
def test_tiled_gemm_with_bias_and_activation(emu, dtype, tile, M, N, Kd, ta, tb):
    rng = np.random.default_rng(M)
    A = rng.standard_normal((Kd, M) if ta else (M, Kd)).astype(dtype)
    B = rng.standard_normal((N, Kd) if tb else (Kd, N)).astype(dtype)
    bias = rng.standard_normal(N).astype(dtype)
    C, Y = np.zeros((M, N), dtype), np.zeros((M, N), dtype)
    bm = 64 if tile == "gemm64" else 32
    args = (M, N, Kd, A, A.shape[1], ta, B, B.shape[1], tb, C, N, bias, 1, 4, 0.0, Y, N, 1)
    emu.launch(tile, dtype, (-(-N // bm), -(-M // bm)), 256, args)
    ref = (A.T if ta else A) @ (B.T if tb else B) + bias
    np.testing.assert_allclose(C, ref, **_tol(dtype))
    np.testing.assert_allclose(Y, np.tanh(ref), **_tol(dtype))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("act", ["linear", "relu", "leaky_relu", "sigmoid", "tanh"])
def test_elementwise_kernels_match_numpy(emu, dtype, act):
    rng = np.random.default_rng(2)
    Z = rng.standard_normal((37, 11)).astype(dtype)
    b = rng.standard_normal(11).astype(dtype)
    dY = rng.standard_normal((37, 11)).astype(dtype)
    code = K.ACT_CODES[act]
    Zk, Yk = Z.copy(), np.empty_like(Z)
    emu.launch("bias_act", dtype, 2, 256, (b, 1, code, 0.01, Zk, Yk, Z.size, 11))
    Zn, Yn = NP.bias_act(Z.copy(), b, act)
    np.testing.assert_allclose(Yk, Yn, **_tol(dtype))
    dZ = np.empty_like(Z)
    emu.launch("act_backward", dtype, 1, 256, (Zn, Yn, dY, code, 0.01, dZ, Z.size))
    np.testing.assert_allclose(dZ, NP.activation_backward(act, Zn, Yn, dY), **_tol(dtype))
    dZc, db = np.empty_like(Z), np.empty(11, dtype)
    emu.launch("act_backward_colsum", dtype, 1, 256, (37, 11, Zn, Yn, dY, code, 0.01, dZc, db, 1))
    ref_dZ, ref_db = NP.bias_act_backward(Zn, Yn, dY, act)
    np.testing.assert_allclose(dZc, ref_dZ, **_tol(dtype))
    np.testing.assert_allclose(db, ref_db, **_tol(dtype))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", ["bce", "ce", "ce_sparse", "mse"])
@pytest.mark.parametrize("weighted", [False, True])
def test_loss_rows_match_numpy_losses(emu, dtype, kind, weighted):
    rng = np.random.default_rng(3)
    n, k = 29, 1 if kind == "bce" else 4
    Z = (rng.standard_normal((n, k)) * 4).astype(dtype)
    w = rng.random((n, 1)).astype(dtype) if weighted else None
    sparse = kind == "ce_sparse"
    if kind == "bce":
        y = (rng.random((n, 1)) > 0.5).astype(dtype)
        ref = NP.bce_logits_grad(Z, y, w, 1 / n)
    elif kind == "mse":
        y = rng.standard_normal((n, k)).astype(dtype)
        ref = NP.mse_grad(Z, y, w, 1 / n)
    else:
        yi = rng.integers(0, k, n)
        y = yi if sparse else np.eye(k, dtype=dtype)[yi]
        ref = NP.softmax_ce_grad(Z, y, w, 1 / n, sparse)
    lrow, dZ = np.empty(n, dtype), np.empty_like(Z)
    yf, yi_arg = (Z, y.astype(np.int64)) if sparse else (y, lrow)
    code = K.LOSS_CODES[kind.split("_")[0]]
    wa = w.reshape(n) if weighted else Z
    args = (code, sparse, n, k, Z, yf, yi_arg, wa, weighted, 1 / n, lrow, dZ)
    emu.launch("loss_rows", dtype, 1, 256, args)
    np.testing.assert_allclose(lrow.sum(), ref[0], **_tol(dtype))
    np.testing.assert_allclose(dZ, ref[1], **_tol(dtype))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("decoupled", [False, True])
def test_device_adam_update_with_host_step_scalars_matches_numpy(emu, dtype, decoupled):
    from fastnn.spec import adam_step_scalars

    rng = np.random.default_rng(4)
    n = 300
    theta = rng.standard_normal(n).astype(dtype)
    m, v = np.zeros(n, dtype), np.zeros(n, dtype)
    ref = [theta.copy(), m.copy(), v.copy()]
    lr, b1, b2, eps, wd = 0.01, 0.9, 0.999, 1e-7, 0.01
    l2, decay = (0.0, 1 - lr * wd) if decoupled else (wd, 1.0)
    for step in range(1, 6):
        g = rng.standard_normal(n).astype(dtype)
        s = np.array(adam_step_scalars(lr, b1, b2, eps, np.float64(step)))  # as the runner
        emu.launch("adam_dev", dtype, 2, 256, (g, theta, m, v, s, b1, b2, l2, decay, n))
        NP.adam_update(*ref[:1], g, *ref[1:], lr, b1, b2, eps, step, wd, decoupled)
    np.testing.assert_allclose(theta, ref[0], **_tol(dtype))
    np.testing.assert_allclose(v, ref[2], **_tol(dtype))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sgd_and_dropout_kernels_match_numpy(emu, dtype):
    rng = np.random.default_rng(5)
    n = 200
    theta, g = rng.standard_normal(n).astype(dtype), rng.standard_normal(n).astype(dtype)
    vel = rng.standard_normal(n).astype(dtype)
    ref_t, ref_v = theta.copy(), vel.copy()
    emu.launch("sgd", dtype, 1, 256, (g, theta, vel, 0.1, 0.9, 1, 0.01, n))
    NP.sgd_update(ref_t, g, ref_v, 0.1, 0.9, True, 0.01)
    np.testing.assert_allclose(theta, ref_t, **_tol(dtype))
    U = rng.random(n).astype(dtype)
    X = rng.standard_normal(n).astype(dtype)
    M, Y = np.empty(n, dtype), np.empty(n, dtype)
    emu.launch("dropout_fwd", dtype, 1, 256, (n, U, 0.3, 1 / 0.7, X, M, Y))
    ref_M = (U >= 0.3).astype(dtype) * (1.0 / (1.0 - 0.3))
    np.testing.assert_array_equal(M, ref_M)
    np.testing.assert_array_equal(Y, X * ref_M)


def test_kernel_launch_rejects_a_wrong_argument_count(emu):
    with pytest.raises(TypeError, match="takes 8 arguments"):
        emu.launch("bias_act", np.float32, 1, 256, (1, 2))


# --------------------------------------------------------------------------- runner
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", list(CASES))
def test_graph_epoch_matches_numpy_backend(cupy_emu, dtype, case):
    m = check_graph_fit(case, dtype, cupy_emu, epochs=2, batch_size=16)
    assert cupy_emu.graph_device().replays == 2  # captured once, replayed once per epoch
    assert "one CUDA graph launch per epoch" in m.training_path


MODES = {
    # env setting -> (case, dtype, fit arguments, replays of 2 epochs, path text)
    ("FASTNN_CUPY_GEMM", "cublas"): (
        "adam-bce",
        "float64",
        {"n": 37, "batch_size": 10, "class_weight": {0: 0.5, 1: 2.0}},
        0,
        "cuBLAS for 3 of 3 layers, eager launches",
    ),
    ("FASTNN_CUPY_GEMM", "cublas-graph"): (
        "nesterov-sparse-ce",
        "float64",
        {"batch_size": 16},
        2,
        "cuBLAS (captured) for 2 of 2 layers",
    ),
    ("FASTNN_CUPY_GRAPH", "eager"): (
        "adamw-dropout",
        "float32",
        {"batch_size": 16},
        0,
        "our GEMM, eager launches",
    ),
}


@pytest.mark.parametrize("env", list(MODES), ids=lambda e: f"{e[0]}={e[1]}")
def test_cublas_and_eager_modes_match_numpy(cupy_emu, monkeypatch, env):
    case, dtype, fit, replays, path = MODES[env]
    monkeypatch.setenv(*env)
    m = check_graph_fit(case, dtype, cupy_emu, epochs=2, **fit)
    assert cupy_emu.graph_device().replays == replays and path in m.training_path


def test_later_fits_replay_the_captured_graph(cupy_emu):
    import graph_cases

    dev = cupy_emu.graph_device()
    m = graph_cases.model("adam-bce", "float32", cupy_emu)
    X, y = graph_cases.data("adam-bce", n=32)
    m.fit(X, y, batch_size=16, epochs=1, verbose=0)
    m.fit(X, y, batch_size=16, epochs=2, verbose=0)
    assert (dev.captures, dev.replays) == (1, 3)
    assert m.optimizer.iterations == 6
    m.fit(X, y, batch_size=8, epochs=1, verbose=0)  # a new batch size: a new capture
    assert (dev.captures, dev.replays) == (2, 4)
    m.optimizer.learning_rate = 0.01  # baked into the graph: a new runner, a new capture
    m.fit(X, y, batch_size=8, epochs=1, verbose=0)
    assert (dev.captures, dev.replays) == (3, 5)


def test_replayed_adam_continues_a_step_count_set_elsewhere(cupy_emu):
    """The replayed graph takes each epoch's bias correction from the optimizer, so a
    count moved between fits (a restore, a per-layer epoch) carries on from there."""
    import graph_cases

    X, y = graph_cases.data("adam-bce", n=32)
    runs = []
    for backend in ("numpy", cupy_emu):
        m = graph_cases.model("adam-bce", "float64", backend)
        m.fit(X, y, batch_size=16, epochs=1, verbose=0, seed=0)
        m.optimizer.iterations = 100
        m.fit(X, y, batch_size=16, epochs=2, verbose=0, seed=1)
        runs.append((m.backend.to_numpy(m.theta), m.optimizer.iterations))
    assert cupy_emu.graph_device().replays == 3
    np.testing.assert_allclose(runs[1][0], runs[0][0], rtol=1e-11, atol=1e-12)
    assert runs[0][1] == runs[1][1] == 104


def test_what_the_graph_cannot_train_takes_the_per_layer_path(cupy_emu, monkeypatch):
    """On the per-layer path the CuPy backend's own ops (emulated kernels) agree with
    the NumPy backend too."""
    from fastnn.layers import Activation

    X, y = np.random.default_rng(0).standard_normal((24, 5)), np.arange(24) % 2 * 1.0
    cases = [
        (lambda: [Dense(4), Activation("relu"), Dense(1, activation="sigmoid")], "adam"),
        (lambda: [Dense(4, activation="tanh"), Dense(1, activation="sigmoid")], "rmsprop"),
        (lambda: [Dense(4), Dense(1)], "adam"),  # probabilities, not logits
    ]
    for layers, opt in cases:
        models = []
        for backend in ("numpy", cupy_emu):
            m = fastnn.Sequential(layers(), dtype="float64", backend=backend)
            m.compile(optimizer=opt, loss="binary_crossentropy")
            m.build(5, seed=0)
            m.fit(X, y, batch_size=8, epochs=2, verbose=0, seed=0)
            models.append(m)
        ref, m = models
        assert m.training_path.startswith("per-layer (cupy backend ops"), m.training_path
        np.testing.assert_allclose(m.theta, ref.theta, rtol=1e-11, atol=1e-12)
    m = fastnn.Sequential([Dense(4), Dense(3, activation="softmax")], backend=cupy_emu)
    m.compile(optimizer="adam", loss="mse")
    m.build(5, seed=0)
    assert cupy_emu.epoch_runner(m) is None  # softmax is row-wise
    m = fastnn.Sequential([Dense(4), Dense(1, activation="sigmoid")], backend=cupy_emu)
    m.compile(optimizer="adam", loss="binary_crossentropy")
    m.build(5, seed=0)
    assert cupy_emu.epoch_runner(m) is not None
    monkeypatch.setenv("FASTNN_CUPY_GRAPH", "0")
    assert cupy_emu.epoch_runner(m) is None
    monkeypatch.setenv("FASTNN_CUPY_GRAPH", "sometimes")
    with pytest.raises(fastnn.errors.ConfigError, match="FASTNN_CUPY_GRAPH"):
        cupy_emu.epoch_runner(m)


def test_crossover_constant_and_override(monkeypatch):
    assert cupy_graph.own_gemm_max_macs() == cupy_graph.OWN_GEMM_MAX_MACS
    monkeypatch.setenv("FASTNN_CUPY_OWN_GEMM_MAX_MACS", "1e6")
    assert cupy_graph.own_gemm_max_macs() == 1_000_000
    monkeypatch.setenv("FASTNN_CUPY_OWN_GEMM_MAX_MACS", "lots")
    with pytest.raises(fastnn.errors.ConfigError, match="FASTNN_CUPY_OWN_GEMM_MAX_MACS"):
        cupy_graph.own_gemm_max_macs()
