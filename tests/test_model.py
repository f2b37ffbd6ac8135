"""Sequential end to end: the churn network, dtypes, building, compile errors, every
optimizer against a NumPy reference, training on each loss, evaluate/fit consistency,
history, validation, class weights, callbacks, seeding and weights."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

import fastnn
from fastnn.callbacks import Callback, EarlyStopping, ModelCheckpoint, NaNGuard
from fastnn.errors import (
    ConfigError,
    DataError,
    NotBuiltError,
    ShapeError,
    UnknownNameError,
)
from fastnn.layers import Activation, Dense, Dropout
from fastnn.optimizers import SGD, Adam, AdamW, RMSprop

CHURN = Path(fastnn.__file__).parent / "data" / "churn.csv.gz"


# ---------------------------------------------------------------------- helpers
def _blobs(n=200, d=4, seed=0):
    """A nearly separable binary problem."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    y = (X[:, 0] + 0.5 * X[:, 1] - 0.3 * X[:, 2] > 0).astype(np.int64)
    return X, y


def _three_class(n=300, seed=0):
    rng = np.random.default_rng(seed)
    centers = np.array([[2.5, 0.0], [-2.5, 0.0], [0.0, 2.5]])
    y = rng.integers(0, 3, n)
    X = centers[y] + rng.standard_normal((n, 2)) * 0.6
    return X, y


def _binary_model(dtype="float64", backend="numpy", metrics=("accuracy",), opt=None, seed=0):
    m = fastnn.Sequential([Dense(8, "relu"), Dense(1, "sigmoid")], dtype=dtype, backend=backend)
    m.compile(opt if opt is not None else Adam(0.01), "binary_crossentropy", list(metrics))
    m.build(4, seed=seed)
    return m


def _bce(p, y):
    p = np.clip(p.reshape(-1).astype(np.float64), 1e-300, 1 - 1e-16)
    return -(y * np.log(p) + (1 - y) * np.log1p(-p))


class Recorder(Callback):
    """Keeps each epoch's logs and a copy of the weights at its end."""

    def on_train_begin(self, logs=None):
        self.logs, self.weights = [], []

    def on_epoch_end(self, epoch, logs=None):
        self.logs.append(dict(logs))
        self.weights.append(self.model.get_weights())


def _assert_weights_equal(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)


# ---------------------------------------------------------------------- the churn network
@pytest.fixture(scope="module")
def churn_split():
    X_tr, y_tr, X_te, y_te = fastnn.data.churn_arrays()
    assert X_tr.shape == (8000, 11) and X_te.shape == (2000, 11)
    return X_tr, y_tr, X_te, y_te


@pytest.mark.slow
def test_churn_network_reaches_tutorial_accuracy(churn_split):
    Xtr, ytr, Xte, yte = churn_split
    model = fastnn.Sequential(
        [Dense(6, activation="relu"), Dense(6, activation="relu"), Dense(1, activation="sigmoid")],
        backend="numpy",
    )
    model.compile(
        optimizer=fastnn.optimizers.Adam(learning_rate=1e-3),
        loss="binary_crossentropy",
        metrics=["accuracy", "auc"],
    )
    history = model.fit(Xtr, ytr, batch_size=32, epochs=100, verbose=0, seed=0)
    assert model.dtype == np.float32
    assert len(history.history["loss"]) == 100
    assert history.history["loss"][-1] < history.history["loss"][0]
    result = model.evaluate(Xte, yte)
    assert result["accuracy"] >= 0.85, result
    assert result["auc"] >= 0.8, result
    assert history.history["accuracy"][-1] >= 0.84


# ---------------------------------------------------------------------- dtypes and building
@pytest.mark.parametrize("dtype", [None, "float32", "float64", np.float64])
def test_dtypes(dtype):
    kw = {} if dtype is None else {"dtype": dtype}
    m = fastnn.Sequential([Dense(3, "tanh"), Dense(1, "sigmoid")], backend="numpy", **kw)
    m.compile("adam", "binary_crossentropy")
    X, y = _blobs(40, 4)
    m.fit(X, y, epochs=2, verbose=0, seed=0)
    want = np.float32 if dtype in (None, "float32") else np.float64
    assert m.dtype == want and m.theta.dtype == want
    assert all(w.dtype == want for w in m.get_weights())
    assert m.predict(X).dtype == want


def test_unknown_dtype_fails():
    with pytest.raises(ConfigError, match="float16"):
        fastnn.Sequential([Dense(1)], dtype="float16")


def test_builds_from_data_or_input_dim():
    m = fastnn.Sequential([Dense(6, "relu"), Dense(1, "sigmoid")], backend="numpy")
    assert not m.built
    with pytest.raises(NotBuiltError):
        m.get_weights()
    m.predict(np.zeros((2, 5)))
    assert m.built and m.input_dim == 5
    assert [w.shape for w in m.get_weights()] == [(5, 6), (6,), (6, 1), (1,)]

    m2 = fastnn.Sequential([Dense(6, "relu", input_dim=11), Dense(1, "sigmoid")])
    m2.build()
    assert m2.input_dim == 11 and m2.n_params == 11 * 6 + 6 + 6 + 1
    with pytest.raises(ShapeError, match="11"):
        m2.predict(np.zeros((2, 5)))
    m3 = fastnn.Sequential([Dense(6, input_dim=11)])
    with pytest.raises(ShapeError, match="input_dim=11"):
        m3.build(5)


def test_summary_lists_layers_and_parameter_counts():
    m = fastnn.Sequential(
        [Dense(6, "relu", input_dim=11), Dense(6, "relu"), Dropout(0.2), Dense(1, "sigmoid")]
    )
    m.build()
    lines = []
    text = m.summary(print_fn=lines.append)
    assert lines == [text]
    for piece in ("Dense (relu)", "Dropout", "Dense (sigmoid)", "72", "42", "7", "121", "float32"):
        assert piece in text
    assert "Total params: 121" in text
    assert "not built" in fastnn.Sequential([Dense(2)]).summary(print_fn=None)


@pytest.mark.parametrize(
    ("make", "kind", "bad"),
    [
        (lambda: Dense(3, activation="rleu"), "activation", "rleu"),
        (lambda: Activation("swish"), "activation", "swish"),
        (lambda: Dense(3, kernel_initializer="glorot"), "initializer", "glorot"),
        (lambda: _compiled(loss="binary_crossentropie"), "loss", "binary_crossentropie"),
        (lambda: _compiled(optimizer="adma"), "optimizer", "adma"),
        (lambda: _compiled(optimizer={"name": "sgdd"}), "optimizer", "sgdd"),
        (lambda: _compiled(metrics=["acuracy"]), "metric", "acuracy"),
        (lambda: fastnn.Sequential([Dense(1)], backend="nump"), "backend", "nump"),
        (lambda: fastnn.set_backend("tpu"), "backend", "tpu"),
    ],
)
def test_unknown_names_fail_at_once_and_name_themselves(make, kind, bad):
    with pytest.raises(UnknownNameError) as info:
        make()
    msg = str(info.value)
    assert kind in msg and repr(bad) in msg
    assert isinstance(info.value, ValueError)


def test_unknown_name_suggests_the_close_one():
    with pytest.raises(UnknownNameError, match="did you mean 'relu'"):
        Dense(3, activation="rleu")


def _compiled(optimizer="adam", loss="binary_crossentropy", metrics=None):
    m = fastnn.Sequential([Dense(1, "sigmoid")], backend="numpy")
    m.compile(optimizer=optimizer, loss=loss, metrics=metrics)
    return m


def test_bad_argument_values_fail_with_config_errors():
    with pytest.raises(ConfigError, match="learning_rate"):
        Adam(learning_rate=-1)
    with pytest.raises(ConfigError, match="momentum"):
        SGD(momentum=1.5)
    with pytest.raises(ConfigError, match="units"):
        Dense(0)
    with pytest.raises(ConfigError, match="rate"):
        Dropout(1.0)
    m = _binary_model()
    X, y = _blobs(20)
    with pytest.raises(ConfigError, match="epochs"):
        m.fit(X, y, epochs=0, verbose=0)
    with pytest.raises(ConfigError, match="batch_size"):
        m.fit(X, y, batch_size=-1, verbose=0)
    with pytest.raises(ConfigError, match="validation_split"):
        m.fit(X, y, validation_split=1.5, verbose=0)
    with pytest.raises(ConfigError, match="auc"):
        mm = fastnn.Sequential([Dense(3, "softmax")], backend="numpy")
        mm.compile("adam", "sparse_categorical_crossentropy", ["auc"])
        mm.build(2)


def test_bad_data_fails_with_clear_errors():
    m = _binary_model()
    X, y = _blobs(20)
    with pytest.raises(ShapeError, match="2-D"):
        m.fit(X[:, 0], y, verbose=0)
    with pytest.raises(ShapeError, match="rows"):
        m.fit(X, y[:-1], verbose=0)
    Xn = X.copy()
    Xn[3, 1] = np.nan
    with pytest.raises(DataError, match="NaN"):
        m.fit(Xn, y, verbose=0)
    with pytest.raises(DataError, match="0 or 1"):
        m.fit(X, y + 1, verbose=0)


# ---------------------------------------------------------------------- optimizers
def _reference_steps(name, theta, grads, kw):
    """Hand-written NumPy versions of each update rule (Keras/paper formulas)."""
    theta = theta.copy()
    lr = kw.get("learning_rate")
    wd = kw.get("weight_decay", 0.0)
    state = {}
    for t, g in enumerate(grads, start=1):
        if name in ("sgd", "momentum", "nesterov"):
            g = g + wd * theta
            mom = kw.get("momentum", 0.0)
            if not mom:
                theta = theta - lr * g
                continue
            v = state.get("v", np.zeros_like(theta))
            v = mom * v - lr * g
            state["v"] = v
            theta = theta + (mom * v - lr * g if kw.get("nesterov") else v)
        elif name in ("adam", "adamw"):
            b1, b2, eps = kw.get("beta_1", 0.9), kw.get("beta_2", 0.999), kw.get("epsilon", 1e-7)
            if name == "adam":
                g = g + wd * theta
            else:
                theta = theta - lr * wd * theta
            m = b1 * state.get("m", 0.0) + (1 - b1) * g
            v = b2 * state.get("v", 0.0) + (1 - b2) * g * g
            state.update(m=m, v=v)
            m_hat, v_hat = m / (1 - b1**t), v / (1 - b2**t)
            theta = theta - lr * m_hat / (np.sqrt(v_hat) + eps)
        elif name == "rmsprop":
            rho, eps, mom = kw.get("rho", 0.9), kw.get("epsilon", 1e-7), kw.get("momentum", 0.0)
            g = g + wd * theta
            s = rho * state.get("s", 0.0) + (1 - rho) * g * g
            state["s"] = s
            step = lr * g / (np.sqrt(s) + eps)
            if mom:
                vel = mom * state.get("vel", 0.0) + step
                state["vel"] = vel
                step = vel
            theta = theta - step
    return theta


OPTIMIZERS = {
    "sgd": (SGD, {"learning_rate": 0.1}),
    "sgd-wd": (SGD, {"learning_rate": 0.1, "weight_decay": 0.01}),
    "momentum": (SGD, {"learning_rate": 0.05, "momentum": 0.9}),
    "nesterov": (SGD, {"learning_rate": 0.05, "momentum": 0.9, "nesterov": True}),
    "adam": (Adam, {"learning_rate": 0.01}),
    "adam-l2": (Adam, {"learning_rate": 0.01, "weight_decay": 0.05}),
    "adamw": (AdamW, {"learning_rate": 0.01, "weight_decay": 0.05}),
    "rmsprop": (RMSprop, {"learning_rate": 0.01}),
    "rmsprop-momentum": (RMSprop, {"learning_rate": 0.01, "momentum": 0.8, "weight_decay": 0.01}),
}


@pytest.mark.parametrize("case", list(OPTIMIZERS))
def test_optimizer_matches_numpy_reference(backend, case):
    cls, kw = OPTIMIZERS[case]
    rng = np.random.default_rng(1)
    theta0 = rng.standard_normal(50)
    grads = [rng.standard_normal(50) for _ in range(5)]
    opt = cls(**kw)
    opt.build(backend, 50, np.float64)
    theta = backend.asarray(theta0.copy())
    for g in grads:
        opt.step(backend, theta, backend.asarray(g))
    name = case.split("-")[0]
    if case == "rmsprop-momentum":
        name = "rmsprop"
    expected = _reference_steps(name, theta0, grads, kw)
    np.testing.assert_allclose(backend.to_numpy(theta), expected, rtol=1e-12, atol=1e-14)
    assert opt.iterations == 5


@pytest.mark.parametrize("case", list(OPTIMIZERS))
def test_each_optimizer_decreases_the_loss(case):
    cls, kw = OPTIMIZERS[case]
    X, y = _blobs(160, 4, seed=2)
    m = _binary_model(opt=cls(**kw))
    before = m.evaluate(X, y)["loss"]
    h = m.fit(X, y, epochs=15, batch_size=16, verbose=0, seed=0)
    after = m.evaluate(X, y)["loss"]
    assert after < 0.7 * before, (before, after)
    assert h.history["loss"][-1] < h.history["loss"][0]


@pytest.mark.parametrize("beta_1, beta_2", [(0.9, 0.999), (0.5, 0.9999), (0.0, 0.99), (0.99, 1.0)])
def test_adam_step_scalars_are_the_plain_formula_over_a_long_run(beta_1, beta_2):
    # the compiled paths take the bias-corrected step size of every step of a run at
    # once; the shortcut past the powers' underflow must not change one of them
    from fastnn.spec import adam_step_scalars

    t = np.arange(1, 60_001, dtype=np.float64)
    with np.errstate(all="ignore"):
        c2 = (1 - beta_2**t) ** 0.5
        want = (1e-3 * c2 / (1 - beta_1**t), 1e-7 * c2)
        got = adam_step_scalars(1e-3, beta_1, beta_2, 1e-7, t)
    for a, b in zip(got, want, strict=True):
        np.testing.assert_array_equal(a, b)
    c2 = (1 - beta_2**7.0) ** 0.5  # one step, as the per-step paths ask
    assert adam_step_scalars(1e-3, beta_1, beta_2, 1e-7, 7.0) == (
        1e-3 * c2 / (1 - beta_1**7.0),
        1e-7 * c2,
    )


def test_optimizer_by_name_and_config_dict():
    m = _compiled(optimizer="rmsprop")
    assert isinstance(m.optimizer, RMSprop)
    m = _compiled(optimizer={"name": "sgd", "learning_rate": 0.5, "momentum": 0.9})
    assert m.optimizer.learning_rate == 0.5 and m.optimizer.momentum == 0.9
    cfg = AdamW(learning_rate=0.02).get_config()
    assert fastnn.optimizers.get(cfg).get_config() == cfg


# ---------------------------------------------------------------------- losses in training
@pytest.mark.parametrize("loss", ["categorical_crossentropy", "sparse_categorical_crossentropy"])
def test_softmax_classifier_trains_three_classes(loss):
    X, y = _three_class()
    target = np.eye(3)[y] if loss == "categorical_crossentropy" else y
    m = fastnn.Sequential([Dense(8, "tanh"), Dense(3, "softmax")], backend="numpy")
    m.compile(Adam(0.05), loss, ["accuracy"])
    h = m.fit(X, target, epochs=20, batch_size=16, verbose=0, seed=0)
    assert h.history["accuracy"][-1] > 0.9
    P = m.predict(X)
    assert P.shape == (300, 3)
    np.testing.assert_allclose(P.sum(axis=1), 1.0, rtol=1e-5)
    assert (m.predict_classes(X) == y).mean() > 0.9
    assert m.evaluate(X, target)["accuracy"] > 0.9


def test_mse_regression():
    rng = np.random.default_rng(3)
    X = rng.standard_normal((256, 3))
    y = X @ np.array([1.5, -2.0, 0.5]) + 0.3
    m = fastnn.Sequential([Dense(16, "tanh"), Dense(1)], dtype="float64", backend="numpy")
    m.compile(Adam(0.02), "mse", ["mae"])
    h = m.fit(X, y, epochs=60, batch_size=32, verbose=0, seed=0)
    assert h.history["loss"][-1] < 0.02 * h.history["loss"][0]
    P = m.predict(X)[:, 0]
    res = m.evaluate(X, y)
    assert res["loss"] == pytest.approx(np.mean((P - y) ** 2), rel=1e-10)
    assert res["mae"] == pytest.approx(np.mean(np.abs(P - y)), rel=1e-10)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(
    "loss", ["binary_crossentropy", "categorical_crossentropy", "sparse_categorical_crossentropy"]
)
def test_huge_logits_give_finite_loss_and_gradients(loss, dtype):
    k = 1 if loss == "binary_crossentropy" else 3
    m = fastnn.Sequential(
        [Dense(k, "sigmoid" if k == 1 else "softmax", input_dim=2)], dtype=dtype, backend="numpy"
    )
    m.compile(SGD(1e-6), loss)
    m.build()
    # logits +-1e4: row 0 confidently right, row 1 confidently wrong
    W = np.zeros((2, k))
    W[0, 0] = 1e4
    X = np.array([[1.0, 0.0], [1.0, 0.0]])
    if k == 1:
        y, wrong = np.array([1, 0]), 1e4
    else:
        y, wrong = np.array([0, 1]), 1e4
    target = np.eye(3)[y] if loss == "categorical_crossentropy" else y
    m.set_weights([W, np.zeros(k)])
    res = m.evaluate(X, target)
    assert math.isfinite(res["loss"])
    assert res["loss"] == pytest.approx(wrong / 2, rel=1e-5)
    P = m.predict(X)
    assert np.isfinite(P).all()
    if m.dtype == np.float64:
        from fastnn.testing import loss_and_grad

        value, grad = loss_and_grad(m, X, target)
        assert value == pytest.approx(wrong / 2, rel=1e-9)
        assert np.isfinite(grad).all() and np.abs(grad).max() <= 1.0
    h = m.fit(X, target, epochs=2, batch_size=2, verbose=0, seed=0)
    assert all(math.isfinite(v) for v in h.history["loss"])
    assert h.stop_reason is None


# ---------------------------------------------------------------------- evaluate and fit
def test_evaluate_returns_the_loss_training_minimises():
    X, y = _blobs(64, 4, seed=5)
    m = _binary_model(opt=SGD(1e-3))
    P = m.predict(X)[:, 0]
    res = m.evaluate(X, y)
    assert res["loss"] == pytest.approx(_bce(P, y).mean(), rel=1e-10)
    assert res["accuracy"] == pytest.approx(((P >= 0.5) == y).mean())
    # one full-batch epoch reports the loss at the starting weights: the same number
    h = m.fit(X, y, batch_size=64, epochs=1, shuffle=False, verbose=0)
    assert h.history["loss"][0] == pytest.approx(res["loss"], rel=1e-12)
    # and the step went downhill
    assert m.evaluate(X, y)["loss"] < res["loss"]


def test_training_metrics_are_running_means_without_an_extra_pass():
    X, y = _blobs(100, 4, seed=6)
    m = _binary_model(opt=SGD(1e-9), metrics=["accuracy"])
    calls = []
    layer = m.layers[0]
    original = layer.forward

    def counting(*a, **kw):
        calls.append(1)
        return original(*a, **kw)

    layer.forward = counting
    h = m.fit(X, y, batch_size=10, epochs=3, verbose=0, seed=0)
    assert len(calls) == 3 * 10  # one forward per batch, no extra pass for the metrics
    # weights barely move, so the running mean equals a fresh evaluation
    assert h.history["accuracy"][-1] == pytest.approx(m.evaluate(X, y)["accuracy"])


def test_history_keys_and_lengths():
    X, y = _blobs(80, 4)
    m = _binary_model(metrics=["accuracy", "auc", "precision", "recall"])
    h = m.fit(X, y, epochs=4, batch_size=16, verbose=0, seed=0)
    assert set(h.history) == {"loss", "accuracy", "auc", "precision", "recall"}
    assert all(len(v) == 4 for v in h.history.values())
    assert h.epoch == [0, 1, 2, 3]
    assert h.params["epochs"] == 4 and h.params["samples"] == 80
    assert m.history is h


def test_validation_split_uses_the_last_rows():
    X, y = _blobs(100, 4)
    m = _binary_model(metrics=["accuracy"])
    h = m.fit(X, y, epochs=3, batch_size=16, validation_split=0.2, verbose=0, seed=0)
    assert set(h.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert all(len(v) == 3 for v in h.history.values())
    assert h.params["samples"] == 80
    res = m.evaluate(X[80:], y[80:])
    assert h.history["val_loss"][-1] == pytest.approx(res["loss"], rel=1e-12)
    assert h.history["val_accuracy"][-1] == pytest.approx(res["accuracy"])


def test_validation_data():
    X, y = _blobs(100, 4)
    Xv, yv = _blobs(30, 4, seed=9)
    m = _binary_model(metrics=["accuracy", "auc"])
    h = m.fit(X, y, epochs=2, validation_data=(Xv, yv), verbose=0, seed=0)
    assert {"val_loss", "val_accuracy", "val_auc"} <= set(h.history)
    assert h.history["val_loss"][-1] == pytest.approx(m.evaluate(Xv, yv)["loss"], rel=1e-12)
    with pytest.raises(ConfigError, match="validation_data"):
        m.fit(X, y, validation_data=Xv, verbose=0)


def test_class_weight_weights_each_rows_loss():
    X, y = _blobs(64, 4, seed=7)
    cw = {0: 0.5, 1: 3.0}
    m = _binary_model(opt=SGD(1e-3))
    l_rows = _bce(m.predict(X)[:, 0], y)
    w = np.where(y == 1, 3.0, 0.5)
    h = m.fit(X, y, batch_size=64, epochs=1, shuffle=False, class_weight=cw, verbose=0)
    assert h.history["loss"][0] == pytest.approx((w * l_rows).sum() / 64, rel=1e-10)
    assert h.history["loss"][0] != pytest.approx(l_rows.mean(), rel=1e-3)
    # evaluate reports the unweighted loss
    m2 = _binary_model(opt=SGD(1e-3))
    assert m2.evaluate(X, y)["loss"] == pytest.approx(l_rows.mean(), rel=1e-10)
    with pytest.raises(ConfigError):
        m2.fit(X, y, class_weight={0: -1.0}, verbose=0)


def test_sparse_class_weight():
    X, y = _three_class(60)
    m = fastnn.Sequential([Dense(3, "softmax")], dtype="float64", backend="numpy")
    m.compile(SGD(1e-3), "sparse_categorical_crossentropy")
    m.build(2, seed=0)
    P = m.predict(X)
    l_rows = -np.log(P[np.arange(60), y])
    cw = {0: 1.0, 1: 2.0, 2: 0.25}
    w = np.array([cw[c] for c in y])
    h = m.fit(X, y, batch_size=60, epochs=1, shuffle=False, class_weight=cw, verbose=0)
    assert h.history["loss"][0] == pytest.approx((w * l_rows).sum() / 60, rel=1e-10)


def test_batch_larger_than_data_warns():
    X, y = _blobs(10, 4)
    m = _binary_model()
    with pytest.warns(UserWarning, match="batch_size"):
        m.fit(X, y, batch_size=64, epochs=1, verbose=0)


def test_fit_requires_compile():
    m = fastnn.Sequential([Dense(1)])
    with pytest.raises(ConfigError, match="compile"):
        m.fit(np.zeros((3, 2)), np.zeros(3), verbose=0)


def test_verbose_modes_print(capsys):
    X, y = _blobs(40, 4)
    m = _binary_model()
    m.fit(X, y, epochs=2, verbose=2, seed=0)
    out = capsys.readouterr().out
    assert "epoch 2/2" in out and "loss=" in out and "numpy" in out
    m.fit(X, y, epochs=2, verbose=1, seed=0)  # a tqdm bar; must not crash


# ---------------------------------------------------------------------- callbacks
def test_early_stopping_restores_exactly_the_best_weights():
    X, y = _blobs(120, 4, seed=3)
    Xv, yv = _blobs(40, 4, seed=4)
    yv = 1 - yv  # validation labels flipped: val_loss rises as training succeeds
    m = _binary_model(opt=Adam(0.05))
    rec = Recorder()
    es = EarlyStopping(monitor="val_loss", patience=2, restore_best_weights=True)
    h = m.fit(X, y, epochs=30, validation_data=(Xv, yv), callbacks=[rec, es], verbose=0, seed=0)
    val = h.history["val_loss"]
    best = int(np.argmin(val))
    assert len(val) < 30 and es.stopped_epoch == len(val) - 1
    assert es.best_epoch == best and best < len(val) - 1
    _assert_weights_equal(m.get_weights(), rec.weights[best])
    assert m.evaluate(Xv, yv)["loss"] == pytest.approx(val[best], rel=1e-12)


def test_early_stopping_on_training_metric_without_restore():
    X, y = _blobs(60, 4)
    m = _binary_model(opt=SGD(1e-9))
    es = EarlyStopping(monitor="accuracy", patience=1)
    h = m.fit(X, y, epochs=20, callbacks=[es], verbose=0, seed=0)
    assert len(h.history["loss"]) < 20
    with pytest.raises(ConfigError, match="val_loss"):
        m.fit(X, y, epochs=2, callbacks=[EarlyStopping()], verbose=0)


class _Script(Callback):
    """Puts a scripted ``score`` into each epoch's logs (runs before the callbacks after it)."""

    def __init__(self, values):
        self.values = values

    def on_epoch_end(self, epoch, logs=None):
        logs["score"] = self.values[epoch]


@pytest.mark.parametrize(
    ("patience", "epochs_run"), [(0, 3), (1, 3), (2, 4), (3, 5), (4, 10)], ids=lambda v: str(v)
)
def test_early_stopping_patience_counts_epochs_without_improvement(patience, epochs_run):
    # best at epoch index 1; then no improvement until index 5
    scores = [5.0, 4.0, 4.5, 4.2, 4.1, 3.0, 9.0, 9.0, 9.0, 9.0]
    X, y = _blobs(20, 4)
    m = _binary_model()
    es = EarlyStopping(monitor="score", mode="min", patience=patience)
    h = m.fit(X, y, epochs=10, batch_size=10, callbacks=[_Script(scores), es], verbose=0, seed=0)
    assert len(h.history["loss"]) == epochs_run
    assert es.stopped_epoch == epochs_run - 1


def _diverging_model():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((64, 3))
    y = X @ np.array([1.0, 2.0, 3.0])
    m = fastnn.Sequential([Dense(8, "tanh"), Dense(1)], backend="numpy")
    m.compile(SGD(1.0), "mse")
    return m, X, y


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
def test_nan_guard_keeps_the_last_finite_weights():
    m, X, y = _diverging_model()
    rec = Recorder()
    with pytest.warns(RuntimeWarning, match="loss became"):
        h = m.fit(X, y, epochs=60, batch_size=64, callbacks=[rec], verbose=0, seed=0)
    losses = h.history["loss"]
    assert not math.isfinite(losses[-1]) and all(math.isfinite(v) for v in losses[:-1])
    assert len(losses) >= 3 and len(losses) < 60
    assert h.stop_reason and "learning rate" in h.stop_reason
    assert all(np.isfinite(w).all() for w in m.get_weights())
    # the weights at the end of the last finite epoch (the recorder runs after the guard,
    # so its last entry already shows the restored weights)
    _assert_weights_equal(m.get_weights(), rec.weights[-2])
    _assert_weights_equal(rec.weights[-1], rec.weights[-2])


class _Poison(Callback):
    """Makes the weights non-finite at the end of one epoch (after the guard ran)."""

    def __init__(self, epoch):
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.epoch:
            self.model.theta[0] = np.inf


def test_nan_guard_never_restores_non_finite_weights():
    X, y = _blobs(40, 4)
    m = _binary_model(opt=SGD(0.01))
    rec = Recorder()
    with pytest.warns(RuntimeWarning):
        h = m.fit(X, y, epochs=10, callbacks=[rec, _Poison(2)], verbose=0, seed=0)
    assert len(h.history["loss"]) == 4
    assert all(np.isfinite(w).all() for w in m.get_weights())
    _assert_weights_equal(m.get_weights(), rec.weights[2])


def test_explicit_nan_guard_is_not_duplicated():
    X, y = _blobs(40, 4)
    m = _binary_model()
    guard = NaNGuard()
    m.fit(X, y, epochs=1, callbacks=[guard], verbose=0)
    assert guard.model is m
    with pytest.raises(ConfigError, match="Callback"):
        m.fit(X, y, epochs=1, callbacks=[object()], verbose=0)


def test_model_checkpoint_best_only(tmp_path):
    X, y = _blobs(120, 4, seed=3)
    Xv, yv = _blobs(40, 4, seed=4)
    yv = 1 - yv
    m = _binary_model(opt=Adam(0.05))
    rec = Recorder()
    ck = ModelCheckpoint(tmp_path / "best.safetensors", monitor="val_loss")
    h = m.fit(X, y, epochs=8, validation_data=(Xv, yv), callbacks=[rec, ck], verbose=0, seed=0)
    val = h.history["val_loss"]
    improving = [i for i, v in enumerate(val) if v < min(val[:i], default=np.inf)]
    assert len(ck.saved) == len(improving) and len(improving) < len(val)
    best = fastnn.load(tmp_path / "best.safetensors")
    _assert_weights_equal(best.get_weights(), rec.weights[int(np.argmin(val))])


def test_model_checkpoint_every_n_epochs(tmp_path):
    X, y = _blobs(40, 4)
    m = _binary_model()
    rec = Recorder()
    ck = ModelCheckpoint(str(tmp_path / "ep{epoch}.safetensors"), save_best_only=False, every=2)
    m.fit(X, y, epochs=6, callbacks=[rec, ck], verbose=0, seed=0)
    assert [Path(p).name for p in ck.saved] == [f"ep{i}.safetensors" for i in (2, 4, 6)]
    _assert_weights_equal(fastnn.load(tmp_path / "ep4.safetensors").get_weights(), rec.weights[3])
    with pytest.raises(ConfigError):
        ModelCheckpoint(tmp_path / "x", every=0)


# ---------------------------------------------------------------------- seeds and weights
def test_same_seed_gives_identical_weights():
    X, y = _blobs(100, 4)
    runs = []
    for _ in range(2):
        m = fastnn.Sequential(
            [Dense(6, "relu"), Dropout(0.2), Dense(1, "sigmoid")], backend="numpy"
        )
        m.compile("adam", "binary_crossentropy")
        m.fit(X, y, epochs=3, batch_size=16, verbose=0, seed=123)  # builds inside fit
        runs.append(m.get_weights())
    _assert_weights_equal(*runs)
    other = fastnn.Sequential([Dense(6, "relu"), Dropout(0.2), Dense(1, "sigmoid")])
    other.compile("adam", "binary_crossentropy")
    other.fit(X, y, epochs=3, batch_size=16, verbose=0, seed=124)
    assert not np.array_equal(other.get_weights()[0], runs[0][0])


def test_fit_seed_seeds_the_initial_weights():
    def initial(seed):
        m = fastnn.Sequential([Dense(5, "relu"), Dense(1, "sigmoid")], backend="numpy")
        m.compile(SGD(1e-3), "binary_crossentropy")
        rec = []

        class First(Callback):
            def on_train_begin(self, logs=None):
                rec.append(self.model.get_weights())

        m.fit(*_blobs(20, 3), batch_size=8, epochs=1, callbacks=[First()], verbose=0, seed=seed)
        return rec[0]

    _assert_weights_equal(initial(7), initial(7))
    assert not np.array_equal(initial(7)[0], initial(8)[0])


def test_set_seed_makes_unseeded_runs_reproducible():
    X, y = _blobs(50, 4)
    runs = []
    for _ in range(2):
        fastnn.set_seed(42)
        m = _binary_model()
        m2 = fastnn.Sequential([Dense(3), Dense(1, "sigmoid")])
        m2.compile("sgd", "binary_crossentropy")
        m2.fit(X, y, epochs=2, verbose=0)
        runs.append(m2.get_weights())
    _assert_weights_equal(*runs)
    del m


def test_get_set_weights_round_trip_and_errors():
    m = _binary_model()
    ws = m.get_weights()
    assert [w.shape for w in ws] == [(4, 8), (8,), (8, 1), (1,)]
    new = [np.full_like(w, i + 1.0) for i, w in enumerate(ws)]
    m.set_weights(new)
    _assert_weights_equal(m.get_weights(), new)
    got = m.get_weights()
    got[0][...] = 99  # copies: changing them leaves the model alone
    assert m.get_weights()[0][0, 0] == 1.0
    m.layers[0].params["W"][0, 0] = 5.0  # layer views share the flat buffer
    assert m.theta[0] == 5.0
    with pytest.raises(ShapeError, match=r"\(4, 8\)"):
        m.set_weights([np.zeros((8, 4)), *new[1:]])
    with pytest.raises(ShapeError, match="4 arrays"):
        m.set_weights(new[:3])
    with pytest.raises(DataError):
        m.set_weights([np.full((4, 8), np.nan), *new[1:]])


@pytest.mark.parametrize("target", ["numpy", "numba"])
def test_model_to_round_trip(target):
    if target not in fastnn.available_backends():
        pytest.skip(f"backend {target!r} is not available here")
    X, y = _blobs(60, 4)
    m = _binary_model()
    m.fit(X, y, epochs=2, verbose=0, seed=0)
    P = m.predict(X)
    assert m.to(target) is m and m.backend.name == target
    np.testing.assert_allclose(m.predict(X), P, rtol=1e-12, atol=1e-12)
    m.fit(X, y, epochs=1, verbose=0, seed=0)  # optimizer state moved along
    assert m.to("numpy").backend.name == "numpy"
    assert isinstance(m.theta, np.ndarray)
    assert all(layer.backend is m.backend for layer in m.layers)


def test_layer_params_are_views_after_to():
    m = _binary_model()
    m.to("numpy")
    off = 0
    for layer in m.layers:
        for p in layer.param_names:
            assert np.shares_memory(layer.params[p], m.theta)
            off += layer.params[p].size
    assert off == m.theta.size


def test_dropout_outside_fit():
    m = fastnn.Sequential([Dense(8, input_dim=3), Dropout(0.5)], dtype="float64", backend="numpy")
    m.build(seed=0)
    X = m.backend.asarray(np.ones((4, 3)))
    fastnn.set_seed(1)
    A = m.forward(X, training=True)
    assert (A == 0).any() and not np.array_equal(A, m.forward(X, training=False))
    np.testing.assert_array_equal(m.forward(X), m.predict(np.ones((4, 3))))


def test_fit_accepts_dataframes_with_one_hot_bool_columns():
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame({"a": [1.0, 2.0, 3.0, 4.0] * 5, "g": ["x", "y", "x", "z"] * 5})
    df = pd.get_dummies(df, columns=["g"], drop_first=True)  # bool columns
    y = pd.Series([0, 1, 0, 1] * 5)
    m = fastnn.Sequential([Dense(1, "sigmoid")], backend="numpy")
    m.compile("adam", "binary_crossentropy", ["accuracy"])
    m.fit(df, y, epochs=2, batch_size=8, verbose=0, seed=0)
    assert m.input_dim == 3 and m.predict(df).shape == (20, 1)
    with pytest.raises(DataError, match="non-numeric"):
        m.predict(pd.DataFrame({"a": [1.0], "b": ["s"], "c": [True]}))
