"""ONNX export: onnxruntime against fastnn (the library and `fastnn predict`), on every
CPU backend; the preprocessing inside the graph; unsupported models are clear errors."""

from __future__ import annotations

import copy
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from test_cli import assert_one_line_error, run  # noqa: E402

import fastnn  # noqa: E402
from fastnn.data import preprocessing  # noqa: E402
from fastnn.errors import ConfigError, NotBuiltError  # noqa: E402
from fastnn.layers import Dense, Dropout, LeakyReLU, Sigmoid  # noqa: E402
from fastnn.layers.base import Layer  # noqa: E402
from fastnn.onnx import OPSET, to_onnx  # noqa: E402

TOL = 1e-5
#: multi-class and regression through the CLI arrive with the Preprocessor's state v2
HAS_TASKS = preprocessing.STATE_VERSION >= 2


def _session(path):
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


@pytest.fixture
def cpu_backend(backend_name):
    if backend_name == "cupy":
        pytest.skip("ONNX agreement is checked on the CPU backends")
    return backend_name


# --------------------------------------------------------------------------- library
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_library_model_matches_predict(cpu_backend, dtype, tmp_path):
    model = fastnn.Sequential(
        [
            Dense(7, activation="relu"),
            Dropout(0.3),
            Dense(6, activation="tanh"),
            LeakyReLU(),
            Dense(5, activation="leaky_relu", alpha=0.2),
            Sigmoid(),
            Dense(3, activation="softmax"),
        ],
        dtype=dtype,
        backend=cpu_backend,
    )
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    X = np.random.default_rng(0).normal(size=(300, 4))
    model.fit(X, np.arange(300) % 3, epochs=3, verbose=0, seed=0)
    path = fastnn.export_onnx(model, tmp_path / "m.onnx")
    sess = _session(path)
    [inp] = sess.get_inputs()
    assert inp.name == "X" and inp.shape[1] == 4
    assert inp.type == ("tensor(float)" if dtype == "float32" else "tensor(double)")
    [out] = sess.run(None, {"X": X.astype(dtype)})
    diff = np.abs(out - model.predict(X)).max()
    assert out.shape == (300, 3) and diff <= TOL, diff


def test_exported_graph_declares_the_opset():
    model = fastnn.Sequential([Dense(1, activation="sigmoid")], backend="numpy").build(2)
    proto = to_onnx(model)
    assert [(o.domain, o.version) for o in proto.opset_import] == [("", OPSET)]


class Square(Layer):
    """A layer fastnn has no ONNX mapping for."""

    def forward(self, X, training=False):
        return X * X, lambda dY, need_dX=True: 2 * X * dY


def test_unsupported_models_are_clear_errors(tmp_path):
    with pytest.raises(ConfigError, match=r"layer 1 \(Square\) has no ONNX export"):
        to_onnx(fastnn.Sequential([Dense(2), Square()], backend="numpy").build(3))
    with pytest.raises(NotBuiltError):
        to_onnx(fastnn.Sequential([Dense(2)]))
    with pytest.raises(ConfigError, match="takes a fastnn.Sequential"):
        to_onnx("not a model")
    model = fastnn.Sequential([Dense(1, activation="sigmoid")], backend="numpy").build(4)
    model.preprocessing = {
        **_state([{"name": "when", "kind": "date"}], [0.0] * 4, [1.0] * 4),
        "task": "binary",
        "classes": [0, 1],
    }
    with pytest.raises(ConfigError, match="'when' is preprocessed as 'date'"):
        to_onnx(model)


# --------------------------------------------------------------------------- CLI models
def _table(n=240, task="binary", seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(
        {
            "age": rng.normal(40, 10, n).round(1),
            "city": rng.choice(["Oslo", "Paris", "Rome"], n),
            "income": rng.normal(5e4, 1e4, n).round(2),
            "plan": rng.choice(["basic", "gold"], n),
        }
    )
    score = (df.age - 40) / 10 + 1.5 * (df.city == "Rome") - (df.plan == "gold")
    if task == "binary":
        df["target"] = np.where(score + rng.normal(size=n) > 0, "yes", "no")
    elif task == "multiclass":
        df["target"] = np.digitize(score + 0.5 * rng.normal(size=n), [-0.5, 0.5]) + 1
    else:
        df["target"] = 1000.0 + 80.0 * score + rng.normal(size=n)
    df.loc[5, "age"] = np.nan  # a missing number and a missing category: imputed
    df.loc[7, "city"] = None
    return df


def _feeds(sess, df: pd.DataFrame) -> dict:
    """One [N, 1] array per graph input, from the table's raw columns."""
    feeds = {}
    for inp in sess.get_inputs():
        col = df[inp.name]
        if inp.type == "tensor(string)":
            feeds[inp.name] = col.fillna("").astype(str).to_numpy(dtype=object).reshape(-1, 1)
        else:
            feeds[inp.name] = col.to_numpy(dtype=np.float32, na_value=np.nan).reshape(-1, 1)
    return feeds


def _train_export_predict(tmp_path, task, backend):
    df = _table(task=task)
    csv = tmp_path / "data.csv"
    df.to_csv(csv, index=False)
    out = tmp_path / "run"
    args = ["train", csv, "--target", "target", "--missing", "mean", "--epochs", "15"]
    res = run(*args, "--backend", backend, "--quiet", "--out", out)
    assert res.exit_code == 0, res.stderr
    res = run("export", out / "model.safetensors", tmp_path / "m.onnx")
    assert res.exit_code == 0, res.stderr
    assert f"opset {OPSET}" in res.stdout
    res = run("predict", out / "model.safetensors", csv, "--out", tmp_path / "p.csv")
    assert res.exit_code == 0, res.stderr
    sess = _session(tmp_path / "m.onnx")
    names = {o.name: o for o in sess.get_outputs()}
    results = dict(zip(names, sess.run(None, _feeds(sess, df)), strict=True))
    return df, sess, results, pd.read_csv(tmp_path / "p.csv")


def test_cli_binary_model_matches_fastnn_predict(tmp_path, cpu_backend):
    df, sess, out, pred = _train_export_predict(tmp_path, "binary", cpu_backend)
    types = {i.name: (i.type, i.shape[1]) for i in sess.get_inputs()}
    assert types == {
        "age": ("tensor(float)", 1),
        "city": ("tensor(string)", 1),
        "income": ("tensor(float)", 1),
        "plan": ("tensor(string)", 1),
    }
    P, label = out["probabilities"], out["label"]
    assert P.shape == (len(df), 2) and label.shape == (len(df),)
    diff = np.abs(P[:, 1] - pred["target_prob"]).max()
    assert diff <= TOL, diff
    assert np.array_equal(label, pred["target_pred"].to_numpy(dtype=object))
    assert np.allclose(P.sum(axis=1), 1.0, atol=1e-6)


@pytest.mark.skipif(not HAS_TASKS, reason="the CLI trains binary models only (before tasks)")
def test_cli_multiclass_model_matches_fastnn_predict(tmp_path, cpu_backend):
    df, _, out, pred = _train_export_predict(tmp_path, "multiclass", cpu_backend)
    P = out["probabilities"]
    cols = [f"target_prob_{c}" for c in (1, 2, 3)]
    diff = np.abs(P - pred[cols].to_numpy()).max()
    assert P.shape == (len(df), 3) and diff <= TOL, diff
    assert np.array_equal(out["label"], pred["target_pred"].to_numpy())


@pytest.mark.skipif(not HAS_TASKS, reason="the CLI trains binary models only (before tasks)")
def test_cli_regression_model_matches_fastnn_predict(tmp_path, cpu_backend):
    df, _, out, pred = _train_export_predict(tmp_path, "regression", cpu_backend)
    y = out["prediction"]
    assert y.shape == (len(df), 1)
    # in the target's units (about 1000): 1e-5 relative to the target's spread
    diff = np.abs(y[:, 0] - pred["target_pred"]).max() / df["target"].std()
    assert diff <= TOL, diff


def test_rows_predict_would_refuse_get_nan(tmp_path):
    df = _table()
    csv = tmp_path / "data.csv"
    df.dropna().to_csv(csv, index=False)
    res = run("train", csv, "--target", "target", "--epochs", "2", "--quiet", "--out", tmp_path)
    assert res.exit_code == 0, res.stderr
    assert run("export", tmp_path / "model.safetensors", tmp_path / "m.onnx").exit_code == 0
    sess = _session(tmp_path / "m.onnx")
    rows = pd.DataFrame(
        {
            "age": [30.0, np.nan, 50.0],
            "city": ["Oslo", "Rome", "Berlin"],
            "income": 4e4,
            "plan": ["gold", "basic", "basic"],
        }  # fmt: skip
    )
    label, P = sess.run(["label", "probabilities"], _feeds(sess, rows))
    assert np.isfinite(P[0]).all() and label[0] in ("yes", "no")
    assert np.isnan(P[1:]).all() and list(label[1:]) == ["", ""]  # missing age; unseen Berlin
    # --unknown ignore: the unseen city scores as the all-zeros one-hot row (as predict does)
    res = run("export", tmp_path / "model.safetensors", tmp_path / "i.onnx", "--unknown", "ignore")
    assert res.exit_code == 0, res.stderr
    _, P2 = _session(tmp_path / "i.onnx").run(["label", "probabilities"], _feeds(sess, rows))
    as_oslo = _feeds(sess, rows.assign(city=["Oslo"] * 3))  # Oslo: the reference category
    _, P3 = sess.run(["label", "probabilities"], as_oslo)
    assert np.isnan(P2[1]).all() and np.allclose(P2[2], P3[2])


# --------------------------------------------------------------------------- state v2
def _state(columns, mean, scale, **extra):
    return {
        "kind": "fastnn.Preprocessor",
        "version": 2,
        "target": "y",
        "drop": [],
        "missing": "mean",
        "columns": columns,
        "feature_names": [f"f{i}" for i in range(len(mean))],
        "mean": mean,
        "scale": scale,
        **extra,
    }


COLUMNS = [
    {"name": "x", "kind": "numeric"},
    {"name": "c", "kind": "categorical", "categories": ["a", "b", "c"]},
]


def _reference(state, x, c):
    """What the Preprocessor computes: dummies, mean imputation, standardization."""
    M = np.column_stack([x, c == "b", c == "c"]).astype(np.float64)
    M[c == "", 1:] = np.nan
    M = np.where(np.isnan(M), np.asarray(state["mean"]), M)
    return (M - np.asarray(state["mean"])) / np.asarray(state["scale"])


@pytest.mark.parametrize(
    "task, classes, units, head",
    [
        ("multiclass", [3, 5, 7], 3, "softmax"),
        ("multiclass", ["lo", "mid", "hi"], 3, "softmax"),
        ("regression", None, 1, "linear"),
    ],
)
def test_state_v2_tasks_match_the_preprocessor_rules(tmp_path, cpu_backend, task, classes, units, head):  # fmt: skip
    model = fastnn.Sequential([Dense(5, activation="relu"), Dense(units, activation=head)])
    model.to(cpu_backend).build(3, seed=0)
    extra = {"task": task, "target_kind": "string" if classes and isinstance(classes[0], str)
             else "numeric", "classes": classes}  # fmt: skip
    if task == "regression":
        extra.update(target_mean=250.0, target_std=40.0)
    state = _state(COLUMNS, [1.5, 0.3, 0.4], [2.0, 0.45, 0.5], **extra)
    model.preprocessing = copy.deepcopy(state)
    fastnn.export_onnx(model, tmp_path / "m.onnx")
    sess = _session(tmp_path / "m.onnx")
    rng = np.random.default_rng(0)
    x = rng.normal(size=50)
    x[3] = np.nan
    c = rng.choice(["a", "b", "c", ""], size=50).astype(object)
    out = dict(
        zip(
            [o.name for o in sess.get_outputs()],
            sess.run(None, {"x": x.astype(np.float32).reshape(-1, 1), "c": c.reshape(-1, 1)}),
            strict=True,
        )
    )
    ref = model.predict(_reference(state, np.nan_to_num(x, nan=1.5), c))
    if task == "regression":
        assert np.abs(out["prediction"] - (ref * 40.0 + 250.0)).max() / 40.0 <= TOL
    else:
        assert np.abs(out["probabilities"] - ref).max() <= TOL
        assert list(out["label"]) == [classes[i] for i in ref.argmax(axis=1)]


# --------------------------------------------------------------------------- CLI errors
def test_export_command_errors_are_one_line(tmp_path):
    assert_one_line_error(run("export", tmp_path / "nope.safetensors", tmp_path / "m.onnx"))
    model = fastnn.Sequential([Dense(1)], backend="numpy").build(2)
    fastnn.save(model, tmp_path / "m.safetensors")
    res = run("export", tmp_path / "m.safetensors", tmp_path / "no" / "m.onnx")
    assert_one_line_error(res, "does not exist")
    assert run("export", tmp_path / "m.safetensors", tmp_path / "m.onnx").exit_code == 0


def test_extras_are_not_imported_by_import_or_help():
    code = (
        "import sys, fastnn; from fastnn.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "bad = [m for m in ('sklearn', 'onnx', 'onnxruntime', 'dask', 'distributed')"
        " if m in sys.modules]\nprint('BAD', bad)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip().splitlines()[-1] == "BAD []"
