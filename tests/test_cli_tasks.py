"""`fastnn train` / `fastnn predict` for multi-class and regression, validation and early
stopping, Parquet in and out, streaming predict, and the new error paths."""

from __future__ import annotations

import csv
import io
import json
import re

import numpy as np
import pytest
from click.testing import CliRunner

import fastnn
from fastnn import data
from fastnn.cli import main

FAST = ["--epochs", "60", "--lr", "0.01", "--backend", "numpy", "--quiet", "--hidden", "8"]


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def rows(text):
    return list(csv.DictReader(io.StringIO(text)))


def assert_one_line_error(result, *fragments):
    assert result.exit_code == 2, (result.stdout, result.stderr)
    err = result.stderr
    assert err.startswith("fastnn: error: ") and err.count("\n") == 1, err
    for f in fragments:
        assert f in err, err


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    """A multi-class CSV (text classes, a date, a category) and a regression CSV."""
    folder = tmp_path_factory.mktemp("tables")
    rng = np.random.default_rng(0)
    n = 240
    x = rng.normal(size=(n, 2))
    color = rng.choice(["red", "blue"], size=n)
    day = np.datetime64("2024-01-01") + rng.integers(0, 365, size=n)
    kind = np.array(["ant", "bee", "cat"])[np.digitize(x[:, 0] + 0.3 * x[:, 1], [-0.5, 0.5])]
    price = 100 + 20 * x[:, 0] - 10 * x[:, 1] + 5 * (color == "red") + rng.normal(0, 2, n)
    lines = ["x1,x2,color,day,kind,price"] + [
        f"{x[i, 0]:.5f},{x[i, 1]:.5f},{color[i]},{day[i]},{kind[i]},{price[i]:.3f}"
        for i in range(n)
    ]
    path = folder / "table.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def _train_run(tables, tmp_path_factory, name, *args):
    out = tmp_path_factory.mktemp(name)
    res = run("train", tables, *args, *FAST, "--out", out)
    assert res.exit_code == 0, res.stderr
    return out


@pytest.fixture(scope="module")
def multi_run(tables, tmp_path_factory):
    return _train_run(tables, tmp_path_factory, "multi", "--target", "kind", "--drop", "price")


@pytest.fixture(scope="module")
def reg_run(tables, tmp_path_factory):
    out = tmp_path_factory.mktemp("reg")
    res = run(
        "train", tables, "--target", "price", "--drop", "kind", *FAST, "--loss", "huber",
        "--out", out,
    )  # fmt: skip
    assert res.exit_code == 0, res.stderr
    return out


# --------------------------------------------------------------------------- train
def test_multiclass_summary_metrics_and_confusion_labels(tables, multi_run):
    res = run("train", tables, "--target", "kind", "--drop", "price", "--epochs", "2",
              "--backend", "numpy", "--hidden", "4")  # fmt: skip
    out = res.stdout
    assert "task: multiclass (text target with 3 values" in out
    assert "classes: 3 (ant: " in out and "day -> 4 each" not in out
    assert "dates -> 4 each: day" in out
    assert "macro F1" in out and "log loss" in out and "true bee" in out
    m = json.loads((multi_run / "metrics.json").read_text())
    assert m["task"] == "multiclass" and m["classes"] == ["ant", "bee", "cat"]
    for part in ("train", "test"):
        assert {"accuracy", "f1_macro", "log_loss", "loss", "rows"} <= set(m[part])
    assert m["test"]["accuracy"] > 0.8
    assert m["test"]["confusion_matrix_labels"] == ["ant", "bee", "cat"]
    assert np.sum(m["test"]["confusion_matrix"]) == m["test"]["rows"] == 48
    assert m["features"][-4:] == ["day.days", "day.month", "day.day", "day.weekday"]


def test_validation_curves_and_early_stopping_by_default(multi_run):
    hist = json.loads((multi_run / "history.json").read_text())
    assert {"loss", "val_loss", "accuracy", "val_accuracy"} <= set(hist)
    m = json.loads((multi_run / "metrics.json").read_text())
    s = m["settings"]
    assert s["validation_split"] == fastnn.defaults.CSV.validation_split
    assert s["patience"] == fastnn.defaults.CSV.patience
    assert 1 <= m["best_epoch"] <= m["epochs"]
    assert (multi_run / "history.png").stat().st_size > 1000


def test_regression_metrics_in_target_units_and_plot(reg_run, tables):
    m = json.loads((reg_run / "metrics.json").read_text())
    assert m["task"] == "regression" and m["classes"] is None
    assert m["settings"]["loss"] == "huber"
    for part in ("train", "test"):
        assert {"r2", "mae", "rmse", "loss"} <= set(m[part])
    assert m["test"]["r2"] > 0.8 and 0 < m["test"]["mae"] < 15  # price has std ~23
    assert (reg_run / "predicted.png").stat().st_size > 1000
    model = fastnn.load(reg_run / "model.safetensors")
    assert model.preprocessing["task"] == "regression"
    assert model.preprocessing["target_mean"] == pytest.approx(100, abs=5)


def test_tutorial_defaults_stay_without_a_file():
    res = run("train", "--epochs", "1", "--backend", "numpy")
    assert "task: binary (the target has two values)" in res.stdout
    assert "11 -> 6 relu -> 6 relu -> 1 sigmoid" in res.stdout
    assert "validation:" not in res.stdout and "kept the weights" not in res.stdout


def test_optimizer_dropout_weight_decay_class_weight(tables, tmp_path):
    res = run("train", tables, "--target", "kind", "--drop", "price", *FAST, "--optimizer",
              "sgd", "--dropout", "0.2", "--weight-decay", "0.001", "--class-weight",
              "balanced", "--validation-split", "0.2", "--patience", "3", "--out", tmp_path)  # fmt: skip
    assert res.exit_code == 0, res.stderr
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert m["settings"]["optimizer"] == "sgd" and m["settings"]["dropout"] == 0.2
    model = fastnn.load(tmp_path / "model.safetensors")
    assert type(model.optimizer).__name__ == "SGD" and model.optimizer.weight_decay == 0.001
    assert model.optimizer.learning_rate == 0.01  # SGD's own default, not Adam's
    assert [type(layer).__name__ for layer in model.layers] == ["Dense", "Dropout", "Dense"]


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["--target", "kind", "--task", "binary"], ["3 different values", "--task binary"]),
        (["--target", "x1", "--task", "multiclass"], ["non-integer numbers"]),
        (["--target", "color", "--task", "regression"], ["text values", "needs numbers"]),
        (["--target", "kind", "--loss", "mae"], ["--loss chooses the regression loss"]),
        (["--target", "price", "--class-weight", "balanced"], ["applies to classifiers"]),
        (["--target", "kind", "--patience", "5", "--validation-split", "0"], ["--patience 5"]),
        (["--target", "kind", "--task", "trinary"], ["'trinary' is not one of"]),
        (["--target", "kind", "--dropout", "1.5"], ["--dropout"]),
    ],
)
def test_train_option_errors_are_one_line(tables, args, fragments):
    assert_one_line_error(run("train", tables, *args, "--epochs", "1", "-q"), *fragments)


def test_blank_target_rows_cli(tmp_path):
    p = tmp_path / "blank.csv"
    body = [f"{i},{'a' if i % 3 else 'b'}" if i not in (4, 9) else f"{i}," for i in range(60)]
    p.write_text("x,y\n" + "\n".join(body) + "\n")
    assert_one_line_error(run("train", p, "--target", "y", "-q"), "blank in CSV lines 6, 11")
    res = run("train", p, "--target", "y", "--missing", "drop", "--epochs", "1", "--backend",
              "numpy")  # fmt: skip
    assert res.exit_code == 0, res.stderr
    assert "dropped 2 rows with missing or bad cells" in res.stdout


def test_class_only_in_test_rows_cli(tmp_path):
    p = tmp_path / "rare.csv"
    ys = ["a", "b", "c"] * 20 + ["zebra"]
    p.write_text("x,y\n" + "\n".join(f"{i},{y}" for i, y in enumerate(ys)) + "\n")
    tr, te = data.split_indices(len(ys), 0.2, 0)
    assert len(ys) - 1 in te  # the only 'zebra' row is a test row with seed 0
    assert_one_line_error(run("train", p, "--target", "y", "-q"), "'zebra' occur only in rows")


# --------------------------------------------------------------------------- predict
def _library_probs(model_dir, df):
    model = fastnn.load(model_dir / "model.safetensors")
    prep = data.Preprocessor.from_dict(model.preprocessing)
    X, _ = prep.transform(df, with_target=False)
    return prep, model.predict(X)


def test_predict_multiclass_columns_and_values(multi_run, tables):
    res = run("predict", multi_run / "model.safetensors", tables)
    assert res.exit_code == 0, res.stderr
    out = rows(res.stdout)
    names = ["kind_prob_ant", "kind_prob_bee", "kind_prob_cat", "kind_pred"]
    assert list(out[0])[-4:] == names
    P = np.array([[float(r[c]) for c in names[:3]] for r in out])
    np.testing.assert_allclose(P.sum(axis=1), 1, atol=5e-6)
    _, ref = _library_probs(multi_run, data.read_csv(tables))
    np.testing.assert_allclose(P, ref, atol=1e-6)
    labels = np.array(["ant", "bee", "cat"])[ref.argmax(1)]
    assert [r["kind_pred"] for r in out] == labels.tolist()
    assert [r["kind"] for r in out] == data.read_csv(tables, raw=True)["kind"].tolist()


def test_predict_regression_in_units(reg_run, tables):
    res = run("predict", reg_run / "model.safetensors", tables)
    out = rows(res.stdout)
    assert list(out[0])[-1] == "price_pred"
    prep, ref = _library_probs(reg_run, data.read_csv(tables))
    got = np.array([float(r["price_pred"]) for r in out])
    np.testing.assert_allclose(got, prep.inverse_target(ref[:, 0]), rtol=1e-8)
    assert abs(got.mean() - 100) < 10


def test_streaming_gives_the_same_output_as_one_chunk(multi_run, reg_run, tables, tmp_path):
    for run_dir in (multi_run, reg_run):
        a = tmp_path / f"{run_dir.name}-a.csv"
        b = tmp_path / f"{run_dir.name}-b.csv"
        model = run_dir / "model.safetensors"
        assert run("predict", model, tables, "--out", a, "--chunk-rows", "7").exit_code == 0
        assert run("predict", model, tables, "--out", b).exit_code == 0
        ra, rb = rows(a.read_text()), rows(b.read_text())
        assert len(ra) == len(rb) == 240 and list(ra[0]) == list(rb[0])
        for col in ra[0]:
            va, vb = [r[col] for r in ra], [r[col] for r in rb]
            if "_prob" in col or col == "price_pred":  # BLAS may round per batch size
                np.testing.assert_allclose(np.float64(va), np.float64(vb), rtol=1e-6, atol=2e-6)
            else:
                assert va == vb, col


def test_predict_unknown_category_error_or_ignore(multi_run, tables, tmp_path):
    text = tables.read_text().splitlines()
    text[5] = text[5].replace(",red,", ",green,").replace(",blue,", ",green,")
    p = tmp_path / "unknown.csv"
    p.write_text("\n".join(text) + "\n")
    model = multi_run / "model.safetensors"
    assert_one_line_error(run("predict", model, p), "'green'", "CSV line 6", "--unknown ignore")
    res = run("predict", model, p, "--unknown", "ignore")
    assert res.exit_code == 0
    assert "1 cell(s) hold categories not seen in training ('color': 'green')" in res.stderr
    assert rows(res.stdout)[4]["kind_pred"] in ("ant", "bee", "cat")


# --------------------------------------------------------------------------- Parquet
def test_parquet_in_and_out(tables, tmp_path):
    pytest.importorskip("pyarrow")
    import pandas as pd

    pq = tmp_path / "table.parquet"
    data.read_csv(tables).to_parquet(pq)
    out = tmp_path / "run"
    res = run("train", pq, "--target", "kind", "--drop", "price", *FAST, "--out", out)
    assert res.exit_code == 0, res.stderr
    model = out / "model.safetensors"
    a, b = tmp_path / "a.parquet", tmp_path / "b.csv"
    assert run("predict", model, pq, "--out", a, "--chunk-rows", "50").exit_code == 0
    assert run("predict", model, tables, "--out", b).exit_code == 0
    got, ref = pd.read_parquet(a), data.read_csv(b)
    assert got["x1"].dtype == np.float64 and len(got) == 240  # input columns keep their types
    np.testing.assert_allclose(got["kind_prob_cat"], ref["kind_prob_cat"], atol=1e-6)
    assert got["kind_pred"].tolist() == ref["kind_pred"].tolist()
    c = tmp_path / "c.parquet"
    assert run("predict", model, tables, "--out", c).exit_code == 0
    assert pd.read_parquet(c)["color"].tolist() == ref["color"].tolist()


def test_a_parquet_file_that_is_not_parquet(tables, tmp_path, multi_run):
    pytest.importorskip("pyarrow")
    fake = tmp_path / "fake.parquet"
    fake.write_text("x,y\n1,2\n")
    assert_one_line_error(run("train", fake, "--target", "y"), "is not a readable Parquet file")
    model = multi_run / "model.safetensors"
    assert_one_line_error(run("predict", model, fake), "is not a readable Parquet file")
    assert not (tmp_path / "out.csv").exists()


def test_failed_predict_leaves_no_output_file(multi_run, tmp_path):
    p = tmp_path / "bad.csv"
    p.write_text("x1,x2,color,day\n1,2,red,2024-01-02\n1,2,purple,2024-01-02\n")
    out = tmp_path / "preds.csv"
    assert_one_line_error(run("predict", multi_run / "model.safetensors", p, "--out", out))
    assert not out.exists() and list(tmp_path.iterdir()) == [p]


def test_inf_in_a_regression_target_cli(tmp_path):
    p = tmp_path / "inf.csv"
    p.write_text("x,y\n" + "\n".join(f"{i},{'inf' if i == 7 else i * 0.37}" for i in range(40)))
    assert_one_line_error(
        run("train", p, "--target", "y", "-q"), "target 'y' has infinite values in CSV line 9"
    )


def test_parquet_without_pyarrow_says_which_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "pyarrow", None)  # import fails
    p = tmp_path / "t.parquet"
    p.write_bytes(b"PAR1")
    assert_one_line_error(run("train", p, "--target", "y"), 'pip install "fastnn[parquet]"')


# --------------------------------------------------------------------------- intervals, --explain
#: the test metrics of each task that carry a 95% bootstrap interval in metrics.json
INTERVALS = {
    "binary": ("accuracy", "auc", "loss"),
    "multiclass": ("accuracy", "f1_macro", "log_loss", "loss"),
    "regression": ("r2", "mae", "rmse"),
}


@pytest.fixture(scope="module")
def binary_run(tables, tmp_path_factory):
    return _train_run(
        tables, tmp_path_factory, "binary", "--target", "color", "--drop", "kind,price"
    )


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
def test_test_metrics_carry_bootstrap_intervals(task, binary_run, multi_run, reg_run):
    folder = {"binary": binary_run, "multiclass": multi_run, "regression": reg_run}[task]
    m = json.loads((folder / "metrics.json").read_text())
    assert m["task"] == task
    test = m["test"]
    for key in INTERVALS[task]:
        lo, hi = test[f"{key}_ci"]
        assert lo <= test[key] <= hi and lo < hi, (key, lo, test[key], hi)
    assert not any(k.endswith("_ci") for k in m["train"])  # intervals on the test rows only
    if task == "regression":  # in the target's units (price has std ~23), not standardized
        assert "loss_ci" not in test and test["mae_ci"][1] > 1


def test_intervals_are_printed(tables):
    res = run("train", tables, "--target", "price", "--drop", "kind", *FAST)
    line = next(x for x in res.stdout.splitlines() if x.startswith("test R2"))
    assert re.fullmatch(
        r"test R2 [-\d.]+ \([-\d.]+(?:-| to )[-\d.]+\)   MAE \S+ \(\S+\)   RMSE \S+ \(\S+\)   \(48 rows\)",
        line,
    ), line


def test_train_explain_writes_importance_for_the_raw_columns(tables, tmp_path):
    res = run("train", tables, "--target", "kind", "--drop", "price", *FAST, "--explain",
              "--explain-repeats", "3", "--out", tmp_path)  # fmt: skip
    assert res.exit_code == 0, res.stderr
    result = json.loads((tmp_path / "importance.json").read_text())
    names = [f["name"] for f in result["features"]]
    assert sorted(names) == ["color", "day", "x1", "x2"]  # one entry per raw column
    means = [f["mean"] for f in result["features"]]
    assert means == sorted(means, reverse=True) and names[0] == "x1"  # kind follows x1
    assert result["metric"] == "accuracy" and result["n_repeats"] == 3
    assert (tmp_path / "importance.png").stat().st_size > 1000
    assert "drop in accuracy" in res.stdout and "  x1  " in res.stdout


def test_train_explain_without_out_prints_the_ranking(tables):
    res = run("train", tables, "--target", "price", "--drop", "kind", *FAST, "--explain")
    assert res.exit_code == 0, res.stderr
    ranking = res.stdout.split("drop in r2 (mean ± std)")[1].split()
    assert ranking[0] == "x1"  # price depends most on x1
