"""The `fastnn` command end to end: train, predict, info, and its one-line errors."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from fastnn import data
from fastnn.cli import main

FAST = ["--epochs", "2", "--backend", "numpy", "--quiet"]


def run(*args, **kw):
    """Invoke the CLI in-process; returns the click Result."""
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False, **kw)


def rows(text):
    return list(csv.DictReader(io.StringIO(text)))


def assert_one_line_error(result, *fragments):
    assert result.exit_code == 2, (result.stdout, result.stderr)
    err = result.stderr
    assert err.startswith("fastnn: error: ")
    assert err.count("\n") == 1, err
    assert "Traceback" not in err and "Usage:" not in err
    for f in fragments:
        assert f in err, err


@pytest.fixture(scope="module")
def churn_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    res = run("train", *FAST, "--out", out)
    assert res.exit_code == 0, res.stderr
    return out, res


@pytest.fixture
def yes_no_csv(tmp_path):
    """A small CSV with a Yes/No target, a categorical column and an ID column."""
    rng = np.random.default_rng(0)
    n = 120
    x1 = rng.normal(size=n)
    color = rng.choice(["red", "green", "blue"], size=n)
    y = np.where(x1 + (color == "red") > 0.3, "Yes", "No")
    lines = ["id;x1;color;Churn"] + [f"C{i:04d};{x1[i]:.4f};{color[i]};{y[i]}" for i in range(n)]
    p = tmp_path / "yesno.csv"
    p.write_text("\n".join(lines) + "\n")
    return p


# --------------------------------------------------------------------------- train
def test_train_bundled_writes_four_files(churn_run):
    out, res = churn_run
    assert sorted(os.listdir(out)) == [
        "history.json",
        "history.png",
        "metrics.json",
        "model.safetensors",
    ]
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"accuracy", "auc", "loss"} <= set(metrics["train"])
    assert {"accuracy", "auc", "loss", "confusion_matrix"} <= set(metrics["test"])
    C = np.array(metrics["test"]["confusion_matrix"])
    assert C.shape == (2, 2) and C.sum() == 2000 == metrics["test"]["rows"]
    assert metrics["backend"] == "numpy" and metrics["training_path"]
    assert len(metrics["features"]) == 11
    history = json.loads((out / "history.json").read_text())
    assert len(history["loss"]) == 2 and len(history["accuracy"]) == 2
    assert (out / "history.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "test accuracy" in res.stdout and "confusion matrix" in res.stdout


def test_train_prints_summary_backend_and_path():
    res = CliRunner().invoke(main, ["train", "--epochs", "1", "--backend", "numpy"])
    assert res.exit_code == 0, res.stderr
    out = res.stdout
    assert "10,000 rows" in out and "features: 11" in out and "positives: 2,037" in out
    assert "backend: numpy" in out and "training path:" in out
    assert "ROC AUC" in out and "true 1" in out
    assert "epoch" in res.stderr  # the tqdm progress bar


def test_model_file_holds_preprocessing(churn_run):
    import fastnn

    model = fastnn.load(churn_run[0] / "model.safetensors")
    prep = data.Preprocessor.from_dict(model.preprocessing)
    assert prep.target == "Exited" and prep.n_features == 11 == model.input_dim


@pytest.mark.slow
def test_default_recipe_reaches_085_test_accuracy(tmp_path):
    res = run("train", "--backend", "numpy", "--quiet", "--out", tmp_path)
    assert res.exit_code == 0, res.stderr
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["settings"]["epochs"] == 100 and metrics["epochs"] == 100
    assert metrics["test"]["accuracy"] >= 0.85, metrics["test"]
    assert metrics["test"]["auc"] >= 0.8


# --------------------------------------------------------------------------- predict
def test_predict_with_and_without_target(churn_run, tmp_path):
    model = churn_run[0] / "model.safetensors"
    df = data.load_churn(raw=True).head(30)
    with_target = tmp_path / "with.csv"
    df.to_csv(with_target, index=False)
    res = run("predict", model, with_target)
    assert res.exit_code == 0, res.stderr
    got = rows(res.stdout)
    assert len(got) == 30
    assert list(got[0])[:14] == list(df.columns)
    assert got[0]["Exited_prob"] and got[0]["Exited_pred"] in ("0", "1")
    assert got[0]["Surname"] == df["Surname"][0] and got[2]["Balance"] == df["Balance"][2]
    probs = np.array([float(r["Exited_prob"]) for r in got])
    assert ((probs >= 0) & (probs <= 1)).all()
    assert [r["Exited_pred"] for r in got] == [str(int(p >= 0.5)) for p in probs]

    no_target = tmp_path / "without.csv"
    df.drop(columns=["Exited", "RowNumber"]).to_csv(no_target, index=False)
    out = tmp_path / "preds.csv"
    res = run("predict", model, no_target, "--out", out)
    assert res.exit_code == 0, res.stderr
    got2 = rows(out.read_text())
    assert [r["Exited_prob"] for r in got2] == [r["Exited_prob"] for r in got]


def test_predict_output_names_do_not_clash(churn_run, tmp_path):
    df = data.load_churn(raw=True).head(5)
    df["Exited_prob"] = "mine"
    df["Exited_prob_1"] = "mine too"
    df["Exited_pred"] = "keep"
    p = tmp_path / "clash.csv"
    df.to_csv(p, index=False)
    res = run("predict", churn_run[0] / "model.safetensors", p)
    assert res.exit_code == 0, res.stderr
    got = rows(res.stdout)
    assert got[0]["Exited_prob"] == "mine" and got[0]["Exited_pred"] == "keep"
    assert float(got[0]["Exited_prob_2"]) >= 0 and got[0]["Exited_pred_1"] in ("0", "1")


def test_string_target_round_trip(yes_no_csv, tmp_path):
    out = tmp_path / "run"
    res = run("train", yes_no_csv, "--target", "Churn", "--drop", "id", *FAST, "--out", out)
    assert res.exit_code == 0, res.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["target_mapping"] == {"No": 0, "Yes": 1}
    assert metrics["positive_class"] == "Yes"
    res = run("train", yes_no_csv, "--target", "Churn", "--drop", "id", "--epochs", "1")
    assert "'No' -> 0, 'Yes' -> 1" in res.stdout
    res = run("predict", out / "model.safetensors", yes_no_csv)
    assert res.exit_code == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0] == "id;x1;color;Churn;Churn_prob;Churn_pred"  # input's delimiter kept
    assert {line.split(";")[-1] for line in lines[1:]} <= {"Yes", "No"}


def test_train_refuses_id_column_with_hint(yes_no_csv):
    res = run("train", yes_no_csv, "--target", "Churn", *FAST)
    assert_one_line_error(res, "'id' looks like an identifier", "--drop id")


def test_missing_values_error_drop_mean(tmp_path, churn_run):
    df = data.load_churn(raw=True).head(400).copy()
    df.loc[[5, 9], "Age"] = ""
    df.loc[7, "Balance"] = "?"
    p = tmp_path / "holes.csv"
    df.to_csv(p, index=False)
    res = run("train", p, "--target", "Exited", "--drop", "RowNumber,CustomerId,Surname", *FAST)
    assert_one_line_error(res, "column 'Age' has 2 missing", "CSV lines 7, 11", "--missing drop")
    assert "'Balance'" in res.stderr
    for mode in ("drop", "mean"):
        out = tmp_path / mode
        res = run(
            "train", p, "--target", "Exited", "--drop", "RowNumber", "--drop", "CustomerId",
            "--drop", "Surname", "--missing", mode, *FAST, "--out", out,
        )  # fmt: skip
        assert res.exit_code == 0, res.stderr
        metrics = json.loads((out / "metrics.json").read_text())
        total = metrics["train"]["rows"] + metrics["test"]["rows"]
        assert total == (397 if mode == "drop" else 400)
        pred = run("predict", out / "model.safetensors", p)
        assert pred.exit_code == 0, pred.stderr
        got = rows(pred.stdout)
        assert len(got) == 400
        blank = [i for i, r in enumerate(got) if r["Exited_prob"] == ""]
        assert blank == ([5, 7, 9] if mode == "drop" else [])
    # a model trained without --missing refuses holes at predict time, naming them
    res = run("predict", churn_run[0] / "model.safetensors", p)
    assert_one_line_error(res, "column 'Age'", "train with --missing mean")


# --------------------------------------------------------------------------- info
def test_info_lists_backends_and_versions():
    import fastnn

    res = run("info")
    assert res.exit_code == 0
    for name, (ok, _) in fastnn.backend_status().items():
        line = next(line for line in res.stdout.splitlines() if line.strip().startswith(name))
        assert ("works" if ok else "no") in line
    assert "numpy" in res.stdout and "cupy" in res.stdout and "auto picks:" in res.stdout


# --------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    "args, fragments",
    [
        (["train", "nope.csv", "--target", "x"], ["'nope.csv' does not exist"]),
        (["train", "--target", "Foo"], ["column 'Foo' not found; columns are: RowNumber"]),
        (["train", "--drop", "Foo"], ["'Foo' not found"]),
        (["train", "--epochs", "0"], ["--epochs"]),
        (["train", "--epochs", "x"], ["--epochs"]),
        (["train", "--lr", "-1"], ["--lr"]),
        (["train", "--test-size", "1"], ["--test-size"]),
        (["train", "--hidden", "6,a"], ["--hidden"]),
        (["train", "--missing", "zero"], ["--missing"]),
        (["train", "--activation", "relux"], ["unknown activation 'relux'"]),
        (["train", "--backend", "tpu"], ["unknown backend 'tpu'"]),
        (["train", "--bogus"], ["--bogus"]),
        (["frobnicate"], ["frobnicate"]),
        (["predict", "nope.safetensors", "x.csv"], ["does not exist"]),
        (["predict"], ["Missing argument"]),
    ],
)
def test_errors_are_one_line_exit_2(args, fragments):
    assert_one_line_error(run(*args), *fragments)


def test_train_csv_errors(tmp_path):
    p = tmp_path / "d.csv"
    p.write_text("a,b,y\n1,2,0\n3,4,1\n")
    assert_one_line_error(run("train", p), "--target is required", "columns are: a, b, y")
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    assert_one_line_error(run("train", empty, "--target", "y"), "is empty")
    header = tmp_path / "header.csv"
    header.write_text("a,b,y\n")
    assert_one_line_error(run("train", header, "--target", "y"), "no data rows")
    three = tmp_path / "three.csv"
    three.write_text("a,y\n" + "".join(f"{i},{'abc'[i % 3]}\n" for i in range(30)))
    assert_one_line_error(
        run("train", three, "--target", "y", "--task", "binary"), "3 different values"
    )
    assert_one_line_error(run("train", tmp_path, "--target", "y"), "is a folder")


def test_predict_errors(tmp_path, churn_run):
    model = churn_run[0] / "model.safetensors"
    p = tmp_path / "d.csv"
    p.write_text("a,b\n1,2\n")
    assert_one_line_error(run("predict", p, p), "not a fastnn model")
    assert_one_line_error(run("predict", model, p), "used in training are missing")
    unseen = tmp_path / "unseen.csv"
    df = data.load_churn(raw=True).head(3).copy()
    df.loc[1, "Geography"] = "Italy"
    df.to_csv(unseen, index=False)
    assert_one_line_error(run("predict", model, unseen), "'Geography'", "'Italy'", "CSV line 3")
    res = run("predict", model, unseen.with_name("x.csv"))
    assert_one_line_error(res, "does not exist")
    out = tmp_path / "nofolder" / "p.csv"
    assert_one_line_error(run("predict", model, p.with_name("unseen.csv"), "--out", out))


def test_out_is_a_file(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    assert_one_line_error(run("train", *FAST, "--out", f), "not a folder")


def test_help_exits_zero():
    for args in ([], ["--help"], ["train", "--help"], ["predict", "-h"], ["info", "--help"]):
        res = run(*args)
        assert res.exit_code == 0, args
        assert "Usage:" in res.stdout


def test_console_script_error_and_help_subprocess(tmp_path):
    """The real entry point: no traceback, one line, exit 2; --help exits 0."""
    cmd = [sys.executable, "-c", "import sys; from fastnn.cli import main; sys.exit(main())"]
    bad = subprocess.run([*cmd, "train", "--epochs", "-3"], capture_output=True, text=True)
    assert bad.returncode == 2
    assert bad.stderr.count("\n") == 1 and "Traceback" not in bad.stderr
    assert bad.stdout == ""
    missing = subprocess.run(
        [*cmd, "predict", str(tmp_path / "m.safetensors"), "x.csv"], capture_output=True, text=True
    )
    assert missing.returncode == 2 and missing.stderr.startswith("fastnn: error: model file")
    ok = subprocess.run([*cmd, "--help"], capture_output=True, text=True)
    assert ok.returncode == 0 and "train" in ok.stdout


def test_bench_is_registered():
    assert "bench" in main.commands


def test_warnings_are_one_line_and_version(tmp_path):
    p = tmp_path / "small.csv"
    p.write_text("a,b,y\n1,2,0\n3,4,1\n5,6,1\n7,1,0\n2,2,1\n")
    res = run("train", p, "--target", "y", "--batch-size", "100", *FAST)
    assert res.exit_code == 0, res.stderr
    warn = [line for line in res.stderr.splitlines() if line.startswith("fastnn: warning:")]
    assert len(warn) == 1 and "batch_size=100" in warn[0]
    assert "warnings.warn" not in res.stderr
    res = run("--version")
    assert res.exit_code == 0 and "0.1.0" in res.stdout
