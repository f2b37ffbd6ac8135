"""The compiled fold trainer (``fastnn.backends.numba_fit.fit_early_stopping``): a whole
training run with early stopping in one compiled call, as ``fastnn tune`` trains a fold.

Checked against a Python loop over the backend's own compiled epoch with the same
shuffles (float64, to rounding), against ``model.evaluate`` for the validation loss and
the restored weights, against the EarlyStopping rule on its own validation curve; same
seed same weights, and None where it does not apply."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("numba", reason="numba is not installed (pip install 'fastnn[numba]')")
pytest.importorskip("scipy", reason="scipy is not installed (pip install 'fastnn[numba]')")

from fastnn.kernels import cpu, cpu_fit  # noqa: E402

import fastnn  # noqa: E402
from fastnn import training  # noqa: E402
from fastnn._random import make_rng  # noqa: E402
from fastnn.backends.numba_fit import fit_early_stopping  # noqa: E402
from fastnn.layers import Dense, Dropout  # noqa: E402

WIDE = 24  # 11*24 + 24*24 + 24 = 864 multiply-adds a row: the mid (BLAS) path
NARROW = 6  # 11*6 + 6*6 + 6 = 108: the table-driven hand loops


def _data(task="binary", n=300, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 11))
    z = X[:, 0] - 0.7 * X[:, 1] + 0.4 * rng.standard_normal(n)
    if task == "binary":
        y = (z > 0).astype(float).reshape(-1, 1)
    elif task == "multiclass":
        y = np.digitize(z, [-0.5, 0.5])
    else:
        y = z.reshape(-1, 1)
    return X[:220], y[:220], X[220:], y[220:]


def _model(width, task="binary", dtype="float64", dropout=0.0, lr=0.01):
    head = {"binary": Dense(1, "sigmoid"), "multiclass": Dense(3, "softmax")}
    layers = [Dense(width, "tanh")]
    if dropout:
        layers.append(Dropout(dropout))
    layers += [Dense(width, "relu"), head.get(task, Dense(1, "linear"))]
    m = fastnn.Sequential(layers, backend="numba", dtype=dtype)
    loss = {"binary": "binary_crossentropy", "multiclass": "sparse_categorical_crossentropy"}
    m.compile(optimizer=fastnn.optimizers.Adam(lr), loss=loss.get(task, "mse"))
    return m


def _reference(width, X, y, Xv, yv, batch, epochs, seed):
    """The same run as a Python loop: the backend's compiled epoch on the rows in
    cpu_fit.shuffle's order, the validation loss from model.evaluate."""
    m = _model(width)
    rng = make_rng(seed)
    training._training_data(m, X, y, None, (Xv, yv), 0.0, rng)
    m._seed_dropout(rng)
    keys = rng.integers(0, 1 << 32, size=(epochs, 4), dtype=np.int64)
    runner = training.choose_path(m)
    perm = np.empty(len(X), dtype=np.int64)
    val = []
    for e in range(epochs):
        cpu_fit.shuffle(perm, keys[e, 0], keys[e, 1])
        runner.run(X[perm], y[perm], None, batch, rng)
        val.append(m.evaluate(Xv, yv)["loss"])
    return m, val


@pytest.mark.parametrize("width, path", [(NARROW, "cols"), (WIDE, "mid")])
def test_same_training_as_the_python_loop(monkeypatch, width, path):
    monkeypatch.setenv("FASTNN_NUMBA_PATH", path)
    X, y, Xv, yv = _data()
    ref, ref_val = _reference(width, X, y, Xv, yv, batch=16, epochs=4, seed=3)
    m = _model(width)
    run = fit_early_stopping(m, X, y, (Xv, yv), 16, 4, patience=100, seed=3)
    assert run["epochs"] == 4
    assert ("op tables" if path == "cols" else "inside one compiled call") in m.training_path
    np.testing.assert_allclose(run["val_loss"], ref_val, rtol=1e-10)
    np.testing.assert_allclose(m.theta, ref.theta, rtol=1e-10, atol=1e-12)
    assert m.optimizer.iterations == ref.optimizer.iterations == 4 * 14


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
@pytest.mark.parametrize("width", [NARROW, WIDE])
def test_restores_the_best_epoch_and_stops_by_the_rule(task, width):
    """Dropout is off in the validation pass, and the weights put back are the best
    epoch's: model.evaluate gives that epoch's validation loss. The stop follows
    EarlyStopping's rule (patience, min_delta) on the returned curve."""
    X, y, Xv, yv = _data(task)
    m = _model(width, task, dropout=0.3, lr=0.05)
    patience, delta = 3, 1e-3
    run = fit_early_stopping(m, X, y, (Xv, yv), 32, 60, patience, delta, seed=1)
    val = run["val_loss"]
    best, wait, stop = np.inf, 0, len(val)
    for e, v in enumerate(val):
        if v < best - delta:
            best, best_epoch, wait = v, e, 0
        else:
            wait += 1
            if wait >= patience:
                stop = e + 1
                break
    assert (run["epochs"], run["best_epoch"]) == (stop, best_epoch)
    assert len(val) == run["epochs"] < 60  # it did stop early
    assert m.evaluate(Xv, yv)["loss"] == pytest.approx(val[best_epoch], rel=1e-10)


def test_same_seed_same_weights_and_float32():
    X, y, Xv, yv = _data()
    thetas = []
    for seed in (5, 5, 6):
        m = _model(NARROW, dtype="float32", dropout=0.2)
        run = fit_early_stopping(m, X, y, (Xv, yv), 32, 8, 100, seed=seed)
        assert np.isfinite(run["val_loss"]).all()
        thetas.append(m.theta.copy())
    np.testing.assert_array_equal(thetas[0], thetas[1])
    assert not np.array_equal(thetas[0], thetas[2])


def test_none_where_it_does_not_apply(monkeypatch):
    X, y, Xv, yv = _data()
    m = fastnn.Sequential([Dense(4, "relu"), Dense(1, "sigmoid")], backend="numpy")
    m.compile(optimizer="adam", loss="binary_crossentropy")
    assert fit_early_stopping(m, X, y, (Xv, yv), 32, 3, 2) is None
    monkeypatch.setenv("FASTNN_NUMBA_PATH", "blas")
    assert fit_early_stopping(_model(NARROW), X, y, (Xv, yv), 32, 3, 2) is None


def test_shuffle_is_a_permutation_that_depends_on_both_keys():
    perms = []
    for keys in ((1, 2), (1, 2), (1, 3), (2, 2)):
        p = np.empty(1000, dtype=np.int64)
        cpu_fit.shuffle(p, *keys)
        assert np.array_equal(np.sort(p), np.arange(1000))
        perms.append(p)
    assert np.array_equal(perms[0], perms[1])
    assert not np.array_equal(perms[0], perms[2]) and not np.array_equal(perms[0], perms[3])
    # every row lands anywhere: position 0 over many keys is about uniform over 10 rows
    firsts = []
    for k in range(2000):
        p = np.empty(10, dtype=np.int64)
        cpu_fit.shuffle(p, k, 7)
        firsts.append(p[0])
    counts = np.bincount(firsts, minlength=10)
    assert ((counts - 200) ** 2 / 200).sum() < 30  # chi2, 9 dof


@pytest.mark.parametrize("k, weighted", [(1, False), (1, True), (3, False), (3, True)])
def test_loss_without_its_value_gives_the_same_gradient(k, weighted):
    # training asks for the gradient only (a separate, vectorised loop): the same
    # numbers as the pass that also sums the loss, with row weights and several outputs
    rng = np.random.default_rng(k + 2 * weighted)
    for dt in (np.float32, np.float64):
        P = rng.standard_normal((40, k)).astype(dt) * 4
        P[3, 0] = np.nan
        yf = (rng.random((40, k)) < 0.5).astype(dt)
        w = rng.random((40, 1)).astype(dt) if weighted else np.zeros((1, 1), dt)
        grads, totals = [], []
        for value in (1.0, 0.0):
            lc = np.array([1e-7, 1 - 1e-7, 2.0, value], dtype=dt)
            g = np.empty_like(P)
            totals.append(cpu.bce_logits_loss(P, yf, np.zeros(1, np.int64), w, weighted,
                                              False, lc, dt(1 / 40), g))  # fmt: skip
            grads.append(g)
        np.testing.assert_array_equal(grads[0], grads[1])
        assert np.isnan(totals[0]) and totals[1] == 0.0
        assert np.isnan(grads[1][3, 0]) and np.isfinite(np.delete(grads[1].ravel(), 3 * k)).all()


def test_every_kernel_cache_is_checked_against_the_whole_kernel_folder():
    """A compiled function inlines kernels of other files (fit_early_stop holds cpu_mid's
    and cpu's code), so its cache is stamped with every kernel file, not only its own;
    the generated per-model epochs name the same stamp in their source."""
    from fastnn.backends import numba_epoch
    from fastnn.backends.numba_compile import epoch_source

    names = [entry[0] for entry in cpu.source_stamp()]
    assert {"cpu.py", "cpu_mid.py", "cpu_cols.py", "cpu_fit.py"} <= set(names)
    for fn in (cpu_fit.fit_early_stop, cpu.adam_step):
        assert fn._cache._impl.locator.get_source_stamp() == cpu.source_stamp()
    m = _model(NARROW)
    m.build(11)
    plan = numba_epoch.plan(cpu, m.training_spec())
    assert "Built on the kernels " in epoch_source(cpu, plan)


@pytest.mark.parametrize("width", [NARROW, WIDE])
def test_the_cancel_flag_ends_the_run_before_the_next_epoch(width):
    import threading
    import time

    X, y, Xv, yv = _data()
    flag = np.ones(1, dtype=np.int8)  # set before it starts: no epoch at all
    run = fit_early_stopping(_model(width), X, y, (Xv, yv), 16, 50, 100, seed=0, cancel=flag)
    assert run["epochs"] == 0 and run["best_epoch"] is None and run["val_loss"] == []
    flag[0] = 0  # set from another thread while it trains (the call releases the GIL)
    m = _model(width)

    def cancel_once_training():
        """Set the flag after the weights changed twice (initialized, then trained):
        not on a clock, as the run's set-up time varies from machine to machine."""
        while m.theta is None:
            time.sleep(0.002)
        for _ in range(2):
            seen = m.theta.copy()
            while np.array_equal(m.theta, seen):
                time.sleep(0.002)
        flag[0] = 1

    watcher = threading.Thread(target=cancel_once_training, daemon=True)
    watcher.start()
    run = fit_early_stopping(m, X, y, (Xv, yv), 16, 100_000, 10**9, cancel=flag)
    watcher.join(timeout=10)
    assert 0 < run["epochs"] < 100_000  # all of them: 20 s
    with pytest.raises(fastnn.errors.ConfigError, match="1-D int8"):
        fit_early_stopping(_model(width), X, y, (Xv, yv), 16, 2, 2, cancel=np.ones(1))


def test_a_second_process_loads_the_fold_trainer_without_numbas_compiler_set_up():
    """``fastnn tune`` loads the fold trainer from Numba's cache with NRT initialised
    but no registry refresh (kernels/cache.py): the registries stay unimported, and the
    code loaded that way trains the same fold as this process does."""
    import subprocess
    import sys

    from fastnn import tune

    code = (
        "import sys, numpy as np\n"
        "from fastnn import tune\n"
        "tune.warm_kernels()\n"
        "print('numba.np.arraymath' in sys.modules)\n"
        "X = np.random.default_rng(0).normal(size=(300, 11)).astype(np.float32)\n"
        "y = (X[:, 0] + X[:, 1] > 0).astype(np.int64)\n"
        "tune._init_worker(tune._fold_state(X, y, 'binary', 3, 0), in_child=False)\n"
        "cfg = dict(hidden=[24, 8], activation='tanh', lr=0.01, batch_size=32,\n"
        "           dropout=0.2, weight_decay=0.0)\n"
        "print(repr(tune.run_fold(cfg, 1, 7)['score']))\n"
    )
    runs = [
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        for _ in range(2)  # the first may compile (and so refresh); the second loads
    ]
    for r in runs:
        assert r.returncode == 0, r.stderr
    refreshed, score = runs[1].stdout.split()
    assert refreshed == "False"
    X = np.random.default_rng(0).normal(size=(300, 11)).astype(np.float32)
    y = (X[:, 0] + X[:, 1] > 0).astype(np.int64)
    tune._init_worker(tune._fold_state(X, y, "binary", 3, 0), in_child=False)
    cfg = dict(hidden=[24, 8], activation="tanh", lr=0.01, batch_size=32, dropout=0.2,
               weight_decay=0.0)  # fmt: skip
    assert float(score) == tune.run_fold(cfg, 1, 7)["score"]
    assert runs[0].stdout.split()[1] == score


def test_a_failing_quick_load_falls_back_to_numbas_own_loader():
    import contextlib
    import types

    from fastnn.kernels.cache import quick_loads
    from numba.core.registry import cpu_target

    class Cache:
        def load_overload(self, sig, target_context):
            return ("numba's loader", sig)

        def _load_overload(self, sig, target_context):
            raise OSError("unreadable cache file")

        def _guard_against_spurious_io_errors(self):
            return contextlib.nullcontext()

    fn = types.SimpleNamespace(_cache=Cache())
    quick_loads({"fn": fn, "other": 3})
    assert fn._cache.load_overload("sig", cpu_target.target_context) == ("numba's loader", "sig")
    quick_loads({"fn": fn})  # a second call wraps nothing twice
    assert fn._cache.load_overload.args[1] is Cache.load_overload
