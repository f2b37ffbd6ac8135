"""The Numba backend's mid-width fused epoch (BLAS called from one compiled call per
epoch) against the per-layer specification, on the same seed.

The same checks as the other fused paths (``test_numba_backend.py``): after two epochs of
``fit(seed=0, shuffle=True)`` the weights, optimizer state and history agree with the
NumPy backend's per-layer path, float64 to rounding and float32 to scaled tolerances, for
every loss and optimizer the fused epoch supports, with dropout, class weights, odd
stacks; the same seed gives the same weights run to run; the rule picks the path and
says so. Skipped without Numba or SciPy (Numba's ``np.dot`` needs SciPy's BLAS).
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("numba", reason="numba is not installed (pip install 'fastnn[numba]')")
pytest.importorskip("scipy", reason="scipy is not installed (pip install 'fastnn[numba]')")

from test_numba_backend import (  # noqa: E402
    LOSSES,
    OPTS,
    _assert_same_training,
    _train_pair,
)

import fastnn  # noqa: E402
from fastnn.errors import ConfigError  # noqa: E402
from fastnn.layers import Dense, Dropout  # noqa: E402


@pytest.fixture
def mid(monkeypatch):
    monkeypatch.setenv("FASTNN_NUMBA_PATH", "mid")


def _has_mid_path(model):
    return "inside one compiled call" in model.training_path


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("opt", list(OPTS))
@pytest.mark.parametrize("loss", LOSSES)
def test_mid_epoch_matches_per_layer(mid, loss, opt, dtype):
    pair = _train_pair(loss, opt, dtype)
    assert _has_mid_path(pair[1][0]), pair[1][0].training_path
    _assert_same_training(pair, dtype)


@pytest.mark.parametrize("loss", LOSSES)
def test_mid_epoch_without_natural_head(mid, loss):
    _assert_same_training(_train_pair(loss, "adam", "float64", head=False), "float64")


def test_mid_epoch_dropout_and_class_weight(mid, monkeypatch):
    # dropout uniforms in the per-layer path's order, also across the chunks of an epoch
    from fastnn.backends import numba_epoch

    monkeypatch.setattr(numba_epoch, "_MAX_UNIFORMS", 300)
    pair = _train_pair(
        "binary_crossentropy", "adam", "float64", dropout=0.3, class_weight={0: 0.5, 1: 2.0}
    )
    _assert_same_training(pair, "float64")


def _wide(backend, dtype, width=48, dropout=0.0):
    layers = [Dense(width, "relu")]
    if dropout:
        layers.append(Dropout(dropout))
    layers += [Dense(width, "leaky_relu", alpha=0.1), Dense(1, "sigmoid")]
    m = fastnn.Sequential(layers, backend=backend, dtype=dtype)
    m.compile(optimizer="adam", loss="binary_crossentropy")
    return m


def _fit_wide(backend, dtype, dropout=0.0, seed=0, width=48):
    rng = np.random.default_rng(1)
    X = rng.standard_normal((200, 11))
    y = (X[:, 0] + 0.3 * rng.standard_normal(200) > 0).astype(float)
    m = _wide(backend, dtype, width=width, dropout=dropout)
    m.fit(X, y, batch_size=32, epochs=2, verbose=0, seed=seed)  # last batch: 8 rows
    return m


@pytest.mark.parametrize("width", [48, 200])  # 200: products cut into row blocks
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_mid_width_network_matches_per_layer(dtype, width):
    """A genuinely mid-width stack on the path the rule picks (no forcing)."""
    mn = _fit_wide("numpy", dtype, dropout=0.2, width=width)
    mb = _fit_wide("numba", dtype, dropout=0.2, width=width)
    assert _has_mid_path(mb), mb.training_path
    tol = 1e-12 if dtype == "float64" else 2e-5
    # sums of ~width products per entry, compounded over 14 Adam steps
    scale = width * max(1.0, float(np.abs(mn.theta).max()))
    np.testing.assert_allclose(mb.theta, mn.theta, rtol=tol * width, atol=tol * scale)


def test_same_seed_same_weights_run_to_run():
    a = _fit_wide("numba", "float32", dropout=0.2, seed=3).theta
    b = _fit_wide("numba", "float32", dropout=0.2, seed=3).theta
    c = _fit_wide("numba", "float32", dropout=0.2, seed=4).theta
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_rule_picks_loops_small_and_mid_wider(monkeypatch):
    from fastnn.backends import numba_mid

    monkeypatch.delenv("FASTNN_NUMBA_PATH", raising=False)
    y = np.arange(40) % 2
    m = _wide("numba", "float32", width=6)
    m.fit(np.zeros((40, 11)), y, batch_size=8, epochs=1, verbose=0)
    assert "hand loops" in m.training_path
    m = _wide("numba", "float32", width=64)
    m.fit(np.zeros((40, 11)), y, batch_size=8, epochs=1, verbose=0)
    assert _has_mid_path(m), m.training_path
    plan = m.backend.epoch_runner(m, m.loss, m.optimizer).plan
    plan.macs_per_row = numba_mid.MID_MAX_MACS_PER_ROW + 1  # 1024-wide: NumPy's BLAS
    assert numba_mid.choose_path(plan, 32) is None
    # a float64 tanh layer of 64 x 32 elements a step: scalar libm in compiled code loses
    # to NumPy's SIMD tanh on the BLAS path; float32 tanh is vectorised: the mid path
    for dtype, path in (
        ("float64", "BLAS products + compiled"),
        ("float32", "BLAS products inside"),
    ):
        m = fastnn.Sequential(
            [Dense(64, "tanh"), Dense(64, "tanh"), Dense(1, "sigmoid")],
            backend="numba",
            dtype=dtype,
        )
        m.compile(optimizer="adam", loss="binary_crossentropy")
        m.fit(np.zeros((64, 11)), np.arange(64) % 2, batch_size=32, epochs=1, verbose=0)
        assert path in m.training_path, (dtype, m.training_path)
        ops = m.backend.epoch_runner(m, m.loss, m.optimizer).plan.ops_units
        assert numba_mid.transcendental_width(ops) == 64
        assert numba_mid.transcendental_width(ops, dtype) == (64 if dtype == "float64" else 0)


def test_threads_limited_only_for_the_epoch(mid):
    """The mid epoch runs BLAS on one thread where threads only cost, and leaves the
    process's BLAS thread settings as it found them."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    from fastnn.backends import numba_mid

    assert numba_mid.blas_threads(11 * 64 + 64 * 64 + 64, 32) == 1
    before = [lib["num_threads"] for lib in threadpoolctl.threadpool_info()]
    _fit_wide("numba", "float32")
    after = [lib["num_threads"] for lib in threadpoolctl.threadpool_info()]
    assert after[: len(before)] == before


def test_bad_forced_path_names_the_choices(monkeypatch):
    monkeypatch.setenv("FASTNN_NUMBA_PATH", "fast")
    m = _wide("numba", "float32")
    with pytest.raises(ConfigError, match="loops, cols, mid, blas or generic; got 'fast'"):
        m.fit(np.zeros((10, 11)), np.arange(10) % 2, batch_size=5, epochs=1, verbose=0)


def test_kernel_uniforms_are_uniform_and_depend_on_both_keys():
    """fill_uniforms: values in [0, 1), mean 1/2, a dropout rate's share below the rate,
    and a different stream for either key."""
    from fastnn.kernels import cpu

    for dtype in (np.float32, np.float64):
        U = np.empty(200_000, dtype=dtype)
        cpu.fill_uniforms(U, 12345, 678)
        assert U.min() >= 0.0 and U.max() < 1.0
        assert abs(U.mean() - 0.5) < 0.005 and abs(U.var() * 12 - 1.0) < 0.02
        assert abs((U < 0.2).mean() - 0.2) < 0.005
        counts, _ = np.histogram(U, bins=100, range=(0, 1))
        assert ((counts - 2000) ** 2 / 2000).sum() < 200  # chi2, 99 dof
        for keys in ((12346, 679), (12345, 679)):
            V = np.empty_like(U)
            cpu.fill_uniforms(V, *keys)
            assert abs(np.corrcoef(U, V)[0, 1]) < 0.01


@pytest.mark.parametrize("path", ["mid", "loops", "cols"])
def test_kernel_dropout_rng_is_seeded_and_drops_the_rate(monkeypatch, path):
    """FASTNN_DROPOUT_RNG=kernel: the same seed gives the same training, another seed
    another; its masks differ from the host stream's but train the same kind of model."""
    monkeypatch.setenv("FASTNN_NUMBA_PATH", path)
    monkeypatch.setenv("FASTNN_DROPOUT_RNG", "kernel")
    a = _fit_wide("numba", "float32", dropout=0.3, seed=5, width=16)
    b = _fit_wide("numba", "float32", dropout=0.3, seed=5, width=16)
    c = _fit_wide("numba", "float32", dropout=0.3, seed=6, width=16)
    np.testing.assert_array_equal(a.theta, b.theta)
    assert not np.array_equal(a.theta, c.theta)
    monkeypatch.setenv("FASTNN_DROPOUT_RNG", "host")
    h = _fit_wide("numba", "float32", dropout=0.3, seed=5, width=16)
    assert not np.array_equal(a.theta, h.theta)
    assert np.isfinite(a.history.history["loss"]).all()
    # the masks keep about 1 - rate of the units: the epoch's uniforms are below 0.3
    # for about 30% of them
    from fastnn.kernels import cpu

    from fastnn.backends import numba_epoch

    monkeypatch.setenv("FASTNN_DROPOUT_RNG", "kernel")
    U = numba_epoch.dropout_uniforms(cpu, np.random.default_rng(0), 100_000, np.float32)
    assert U.dtype == np.float32 and abs((U < 0.3).mean() - 0.3) < 0.01


def test_bad_dropout_rng_setting_is_a_config_error(monkeypatch):
    monkeypatch.setenv("FASTNN_DROPOUT_RNG", "gpu")
    with pytest.raises(fastnn.errors.ConfigError, match="FASTNN_DROPOUT_RNG must be"):
        _fit_wide("numba", "float32", dropout=0.3)
