"""Multi-class and regression in the library: task guessing, target encoding and its
inverse, dates, unseen categories, the new metrics and regression losses."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest

from fastnn import data, losses, metrics
from fastnn.data.target import guess_task
from fastnn.errors import DataError
from fastnn.tasks import balanced_class_weight, build_model, evaluate, fit_model
from fastnn.testing import check_loss_gradients


def frame(**cols):
    return pd.DataFrame(cols)


# --------------------------------------------------------------------------- task guess
@pytest.mark.parametrize(
    ("y", "task"),
    [
        (["No", "Yes", "No", "Yes"], "binary"),
        ([1, 2, 2, 1], "binary"),
        (["a", "b", "c", "a"], "multiclass"),
        ([0, 1, 2] * 5, "multiclass"),
        ([0, 1, 2], "regression"),  # integers that do not repeat
        ([0.5, 1.5, 2.25, 3.0, 7.0], "regression"),
        (list(range(40)) * 2, "regression"),  # too many distinct integers
    ],
)
def test_task_is_guessed_from_the_target(y, task):
    prep = data.Preprocessor(target="y").fit(frame(x=np.arange(len(y), dtype=float), y=y))
    assert prep.task == task


def test_guess_task_rules_directly():
    assert guess_task(True, np.array([0.0, 1.0]), 10) == "binary"
    assert guess_task(True, np.arange(20.0), 100) == "multiclass"
    assert guess_task(True, np.arange(21.0), 1000) == "regression"
    assert guess_task(False, np.array(["a", "b", "c"]), 3) == "multiclass"


@pytest.mark.parametrize(
    ("task", "y", "fragment"),
    [
        ("binary", ["a", "b", "c"], "3 different values ('a', 'b', 'c'); --task binary needs"),
        ("multiclass", [0.5, 1.5, 2.0], "non-integer numbers (0.5, 1.5); --task multiclass"),
        ("regression", ["a", "b", "3"], "text values ('a', 'b' in rows 0, 1"),
        ("multiclass", [1, 1, 1], "single value"),
    ],
)
def test_impossible_task_override_is_one_error(task, y, fragment):
    with pytest.raises(DataError) as info:
        data.Preprocessor(target="y", task=task).fit(frame(x=[1.0, 2.0, 3.0], y=y))
    assert fragment in str(info.value)


def test_class_seen_only_in_test_rows_is_an_error():
    df = frame(x=np.arange(9.0), y=["a", "b", "a", "b", "a", "b", "a", "b", "c"])
    with pytest.raises(DataError, match=r"class\(es\) 'c' occur only in rows outside the training"):
        data.Preprocessor(target="y").fit(df, train_rows=np.arange(8))


def test_inf_in_a_regression_target_names_the_rows():
    df = data.read_csv_text("x,y\n1,0.5\n2,inf\n3,2.5\n4,1.0\n")
    with pytest.raises(DataError, match="target 'y' has infinite values in CSV line 3"):
        data.Preprocessor(target="y").fit(df)
    ok = data.Preprocessor(target="y").fit(frame(x=[1.0, 2, 3], y=[0.5, 1.5, 3.0]))
    with pytest.raises(DataError, match="must be a finite number; found 'inf'"):
        ok.transform(frame(x=[1.0], y=[np.inf]))


def test_blank_target_rows_error_or_are_dropped_and_counted():
    text = "x,y\n1,a\n2,\n3,b\n4,c\n5,\n6,a\n"
    with pytest.raises(DataError, match="target 'y' is blank in CSV lines 3, 6"):
        data.Preprocessor(target="y").fit(data.read_csv_text(text))
    prep = data.Preprocessor(target="y", missing="drop").fit(data.read_csv_text(text))
    assert prep.n_blank_target_ == 2
    X, y = prep.transform(data.read_csv_text(text))
    assert X.shape == (4, 1) and y.tolist() == [0, 1, 2, 0]


# --------------------------------------------------------------------------- encoding
def test_multiclass_encoding_labels_and_state_round_trip():
    df = frame(x=np.arange(6.0), y=["cat", "ant", "bee", "ant", "cat", "bee"])
    prep = data.Preprocessor(target="y").fit(df)
    assert prep.task == "multiclass" and prep.classes_ == ["ant", "bee", "cat"]
    assert prep.n_outputs == 3
    _, y = prep.transform(df)
    assert y.dtype == np.int64 and y.tolist() == [2, 0, 1, 0, 2, 1]
    assert prep.inverse_target(y).tolist() == df["y"].tolist()
    state = json.loads(json.dumps(prep.to_dict(), allow_nan=False))
    assert state["task"] == "multiclass" and state["classes"] == ["ant", "bee", "cat"]
    back = data.Preprocessor.from_dict(state)
    np.testing.assert_array_equal(back.transform(df)[1], y)


def test_numeric_classes_stay_numbers():
    df = frame(x=np.arange(15.0), y=[3, 5, 9] * 5)
    prep = data.Preprocessor(target="y").fit(df)
    assert prep.classes_ == [3, 5, 9] and prep.target_kind_ == "numeric"
    cols = prep.output_columns(np.eye(3)[[2, 0]], taken={"y_prob_3"})
    assert list(cols) == ["y_prob_3_1", "y_prob_5", "y_prob_9", "y_pred"]
    assert cols["y_pred"].tolist() == [9, 3]
    with pytest.raises(DataError, match="not seen in training: '4'"):
        prep.transform(frame(x=[1.0], y=[4]))


def test_regression_target_is_standardized_and_mapped_back():
    rng = np.random.default_rng(0)
    df = frame(x=rng.normal(size=50), y=rng.normal(100.0, 15.0, size=50))
    prep = data.Preprocessor(target="y").fit(df, train_rows=np.arange(40))
    assert prep.task == "regression" and prep.classes_ is None
    assert prep.target_mean_ == pytest.approx(df["y"][:40].mean())
    assert prep.target_std_ == pytest.approx(df["y"][:40].std(ddof=0))
    _, y = prep.transform(df)
    assert y.dtype == np.float64
    np.testing.assert_allclose(prep.inverse_target(y), df["y"], rtol=1e-12)
    back = data.Preprocessor.from_dict(json.loads(json.dumps(prep.to_dict())))
    assert back.target_mean_ == prep.target_mean_ and back.target_std_ == prep.target_std_
    cols = back.output_columns(y.reshape(-1, 1))
    assert list(cols) == ["y_pred"]
    np.testing.assert_allclose(cols["y_pred"], df["y"], rtol=1e-12)


def test_version_1_state_loads_as_binary():
    prep = data.Preprocessor(target="y").fit(frame(x=[1.0, 2, 3], y=["n", "y", "n"]))
    state = prep.to_dict()
    state["version"] = 1
    for key in ("task", "target_mean", "target_std"):
        state.pop(key)
    back = data.Preprocessor.from_dict(state)
    assert back.task == "binary" and back.positive_class == "y"


def test_bad_regression_state_is_refused():
    prep = data.Preprocessor(target="y").fit(frame(x=[1.0, 2, 3], y=[0.5, 1.5, 3.0]))
    state = prep.to_dict()
    state["target_std"] = 0
    with pytest.raises(DataError, match="target_std > 0"):
        data.Preprocessor.from_dict(state)


# --------------------------------------------------------------------------- columns
def test_iso_dates_expand_to_numeric_features():
    df = frame(
        d=["2024-01-01", "2024-03-15", "2023-12-31 18:00", "2024/02/29"],
        y=[0, 1, 0, 1],
    )
    prep = data.Preprocessor(target="y").fit(df)
    assert prep.feature_names_ == ["d.days", "d.month", "d.day", "d.weekday"]
    M, _ = prep._encode(df)
    assert M[0].tolist() == [19723.0, 1.0, 1.0, 0.0]  # 2024-01-01 was a Monday
    assert M[2, 0] == pytest.approx(19722.75)
    assert M[3, 1:].tolist() == [2.0, 29.0, 3.0]
    with pytest.raises(DataError, match="column 'd' has 1 non-numeric"):
        prep.transform(frame(d=["not a date"], y=[0]))


def test_other_date_layouts_are_refused_with_a_hint():
    df = frame(d=[f"{i % 28 + 1:02d}/03/2024" for i in range(60)], y=[0, 1] * 30)
    with pytest.raises(DataError, match=r"dates written like .*YYYY-MM-DD.*--drop d"):
        data.Preprocessor(target="y").fit(df)


def test_unknown_ignore_gives_zero_dummies_and_counts():
    prep = data.Preprocessor(target="t").fit(frame(g=["a", "b", "c", "a"], t=[0, 1, 1, 0]))
    new = frame(g=["b", "zz", "zz", "q"])
    with pytest.raises(DataError, match=r"not seen in training: 'q', 'zz'.*--unknown ignore"):
        prep.transform(new)
    with pytest.warns(UserWarning, match="3 cell"):
        X, _ = prep.transform(new, unknown="ignore")
    assert prep.unknown_ == {"g": {"q": 1, "zz": 2}}
    ref, _ = prep.transform(frame(g=["a"]))  # all-zero dummies = the reference category
    np.testing.assert_array_equal(X[1], ref[0])


# --------------------------------------------------------------------------- metrics
def test_metrics_agree_with_scikit_learn():
    sk = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(1)
    P = rng.dirichlet(np.ones(4), size=200)
    y = rng.integers(0, 4, size=200)
    assert metrics.f1(y, P, sparse=True) == pytest.approx(
        sk.f1_score(y, P.argmax(1), average="macro")
    )
    assert metrics.log_loss(y, P, sparse=True) == pytest.approx(sk.log_loss(y, P, labels=range(4)))
    p = rng.uniform(size=(200, 1))
    yb = rng.integers(0, 2, size=200)
    assert metrics.f1(yb, p) == pytest.approx(sk.f1_score(yb, p[:, 0] >= 0.5))
    assert metrics.log_loss(yb, p) == pytest.approx(sk.log_loss(yb, p[:, 0]))
    t, q = rng.normal(size=(100, 1)), rng.normal(size=(100, 1))
    assert metrics.r2(t, q) == pytest.approx(sk.r2_score(t, q))
    assert metrics.rmse(t, q) == pytest.approx(np.sqrt(sk.mean_squared_error(t, q)))
    assert np.isnan(metrics.r2(np.ones((3, 1)), q[:3]))


@pytest.mark.parametrize("name", ["f1", "log_loss", "r2", "rmse"])
def test_new_metrics_compile_by_name(name):
    loss = "mse" if name in ("r2", "rmse") else "sparse_categorical_crossentropy"
    from fastnn import Sequential
    from fastnn.layers import Dense

    head = Dense(1) if loss == "mse" else Dense(3, activation="softmax")
    model = Sequential([Dense(4, activation="relu"), head], backend="numpy")
    model.compile(optimizer="adam", loss=loss, metrics=[name])
    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, 2))
    y = rng.normal(size=30) if loss == "mse" else rng.integers(0, 3, size=30)
    h = model.fit(X, y, batch_size=8, epochs=2, validation_split=0.2, verbose=0, seed=0)
    assert np.isfinite(h.history[name]).all() and f"val_{name}" in h.history


# --------------------------------------------------------------------------- losses
@pytest.mark.parametrize("name", ["mae", "huber"])
@pytest.mark.parametrize("weighted", [False, True])
def test_regression_loss_gradients_float64(name, weighted):
    rng = np.random.default_rng(3)
    out = rng.normal(size=(12, 2)) * 2
    y = rng.normal(size=(12, 2))
    w = rng.uniform(0.2, 3.0, 12) if weighted else None
    assert check_loss_gradients(name, out, y, sample_weight=w) < 1e-6


def test_regression_loss_values():
    from fastnn.backends import get_backend

    be = get_backend("numpy")
    out, y = np.array([[0.5], [3.0], [-2.0]]), np.zeros((3, 1))
    mae, _ = losses.get("mae").grad(be, out, y, None, 1.0, False)
    hub, d = losses.get("huber").grad(be, out, y, None, 1.0, False)
    assert float(mae) == pytest.approx(5.5)
    assert float(hub) == pytest.approx(0.125 + 2.5 + 1.5)
    assert d[:, 0].tolist() == [0.5, 1.0, -1.0]


# --------------------------------------------------------------------------- workflow
def test_library_regression_and_multiclass_end_to_end():
    from fastnn.defaults import CSV

    rng = np.random.default_rng(0)
    n = 300
    x = rng.normal(size=(n, 3))
    df = pd.DataFrame(x, columns=["a", "b", "c"])
    df["price"] = 50 + 10 * x[:, 0] - 5 * x[:, 1] + rng.normal(0, 1, n)
    df["kind"] = np.array(["low", "mid", "high"])[np.digitize(x[:, 0], [-0.5, 0.5])]
    settings = CSV.replace(hidden=(16,), epochs=200)
    tr, te = data.split_indices(n, 0.2, 0)
    for target, drop, key, floor in [
        ("price", ["kind"], "r2", 0.9),
        ("kind", ["price"], "accuracy", 0.85),
    ]:
        prep = data.Preprocessor(target=target, drop=drop).fit(df, train_rows=tr)
        X_tr, y_tr = prep.transform(df.iloc[tr])
        X_te, y_te = prep.transform(df.iloc[te])
        model = build_model(prep.task, prep.n_outputs, settings, backend="numpy")
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            history = fit_model(model, X_tr, y_tr, settings, seed=0)
        assert "val_loss" in history.history
        assert evaluate(model, prep, X_te, y_te)[key] > floor


def test_balanced_class_weight():
    w = balanced_class_weight(np.array([0, 0, 0, 1]), 2)
    assert w == {0: pytest.approx(4 / 6), 1: pytest.approx(2.0)}
