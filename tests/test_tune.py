"""fastnn tune: the cross-validated search, its records, determinism across --jobs,
pruning, shared studies between processes, and the `fastnn tune` command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest
from click.testing import CliRunner

optuna = pytest.importorskip("optuna")
pytest.importorskip("sklearn")

import fastnn  # noqa: E402
from fastnn import tune as tuning  # noqa: E402
from fastnn.cli import main  # noqa: E402

SMALL = {"max_epochs": 4, "patience": 2, "backend": "numpy"}


def blobs(n=240, d=5, task="binary", seed=0):
    """Separable-ish synthetic data for each task."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    z = X[:, 0] + 0.5 * X[:, 1] + 0.3 * rng.normal(size=n)
    if task == "binary":
        return X, (z > 0).astype(np.int64)
    if task == "multiclass":
        return X, np.digitize(z, [-0.5, 0.5]).astype(np.int64)
    return X, z


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def small_binary():
    X, y = blobs()
    return X, y, fastnn.tune(X, y, "binary", n_trials=4, folds=3, jobs=1, seed=3, **SMALL)


def test_records_have_the_documented_fields(small_binary):
    _, _, result = small_binary
    assert [t["number"] for t in result.trials] == [0, 1, 2, 3]
    for t in result.trials:
        assert set(t) >= {"number", "params", "state", "fold_scores", "mean", "std", "seconds"}
        assert t["state"] in ("COMPLETE", "PRUNED", "FAIL")
        if t["state"] == "COMPLETE":
            assert len(t["fold_scores"]) == 3 and len(t["epochs"]) == 3
            assert t["mean"] == pytest.approx(np.mean(t["fold_scores"]))
            assert t["std"] == pytest.approx(np.std(t["fold_scores"]))
            assert all(1 <= e <= SMALL["max_epochs"] for e in t["epochs"])
    done = [t for t in result.trials if t["state"] == "COMPLETE"]
    assert result.best["mean"] == max(t["mean"] for t in done)
    assert json.loads(json.dumps(result.to_dict()))["best"]["number"] == result.best["number"]
    assert "rank" in result.table() and str(result.best["number"]) in result.table()


def test_trial_zero_is_the_default_configuration(small_binary):
    _, _, result = small_binary
    assert result.trials[0]["params"] == tuning.tutorial_config()
    # a default outside the space widens the space instead of failing
    odd = {**tuning.tutorial_config(), "hidden": [100], "batch_size": 48, "lr": 0.5}
    X, y = blobs()
    r = fastnn.tune(X, y, "binary", n_trials=1, folds=2, jobs=1, default=odd, **SMALL)
    assert r.trials[0]["params"] == odd and r.trials[0]["state"] == "COMPLETE"


def test_refit_trains_the_best_for_the_chosen_epochs(small_binary):
    X, y, result = small_binary
    model, history = result.refit(X, y)
    assert len(history.epoch) == result.refit_epochs
    hidden = [layer.units for layer in model.layers if type(layer).__name__ == "Dense"][:-1]
    assert hidden == result.best["params"]["hidden"]
    assert model.predict(X).shape == (len(X), 1)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_same_results_whatever_jobs(backend):
    if backend == "numba":  # the folds' compiled trainer (fastnn.backends.numba_fit)
        pytest.importorskip("numba", reason="numba is not installed")
    X, y = blobs(n=200)
    kw = {"n_trials": 7, "folds": 3, "seed": 11, **SMALL, "backend": backend}
    one = fastnn.tune(X, y, "binary", jobs=1, **kw)
    two = fastnn.tune(X, y, "binary", jobs=2, **kw)
    strip = [{k: t[k] for k in ("params", "state", "fold_scores", "epochs")} for t in one.trials]
    assert strip == [
        {k: t[k] for k in ("params", "state", "fold_scores", "epochs")} for t in two.trials
    ]
    other = fastnn.tune(X, y, "binary", jobs=1, **{**kw, "seed": 12})
    assert [t["params"] for t in other.trials[1:]] != [t["params"] for t in one.trials[1:]]


@pytest.mark.parametrize("task", ["multiclass", "regression"])
def test_other_tasks(task):
    X, y = blobs(task=task)
    result = fastnn.tune(X, y, task, n_trials=2, folds=2, jobs=1, **SMALL)
    assert result.metric == tuning.METRIC[task]
    assert result.best is not None
    yy = (y - y.mean()) / y.std() if task == "regression" else y
    model, _ = result.refit(X, yy)
    assert model.predict(X).shape == (len(X), 3 if task == "multiclass" else 1)


def test_a_regression_is_scored_in_any_units_of_its_target():
    X, z = blobs(task="regression")
    args = {"n_trials": 3, "folds": 3, "jobs": 1, **SMALL, "max_epochs": 20}
    args["pruner"] = optuna.pruners.NopPruner()
    plain = fastnn.tune(X, z, "regression", **args)
    dollars = fastnn.tune(X, 1000.0 * z + 5000.0, "regression", **args)
    scores = [t["fold_scores"] for t in plain.trials]
    assert np.allclose([t["fold_scores"] for t in dollars.trials], scores, atol=1e-4)
    assert plain.best["mean"] > 0.5  # the model does learn z


class _Done:
    def __init__(self, score):
        self.score, self.cancelled = score, False

    def done(self):
        return True

    def result(self):
        return {"score": self.score, "epochs": 1, "seconds": 0.0}

    def cancel(self):
        self.cancelled = True


def test_a_trial_behind_the_median_is_pruned_after_one_fold():
    study = tuning._study(None, None, 0)
    for _ in range(5):  # five finished trials that scored 0.9 on every fold
        trial = study.ask()
        for step in range(3):
            trial.report(0.9, step)
        study.tell(trial, 0.9)
    futures = [_Done(0.6), _Done(0.6), _Done(0.6)]
    run = tuning._Run(study.ask(), tuning.tutorial_config(), 3, futures=futures)
    assert tuning._read(study, run).name == "PRUNED"
    record = tuning._trial_record(study.trials[-1])
    assert record["state"] == "PRUNED" and record["fold_scores"] == [0.6]
    assert futures[1].cancelled and futures[2].cancelled
    good = tuning._Run(study.ask(), tuning.tutorial_config(), 3, futures=[_Done(0.95)] * 3)
    assert tuning._read(study, good).name == "COMPLETE"
    waiting = tuning._Run(study.ask(), tuning.tutorial_config(), 3, futures=[_Done(0.95)])
    assert tuning._read(study, waiting) is None and waiting.next_fold() == 1


def _finished(study, scores):
    """A finished trial that scored ``scores[f]`` on fold f (reported as running means)."""
    trial = study.ask()
    for step in range(len(scores)):
        trial.report(float(np.mean(scores[: step + 1])), step)
    study.tell(trial, float(np.mean(scores)))


def test_before_five_finish_only_a_trial_behind_all_of_two_is_pruned():
    study = tuning._study(None, None, 0)
    config = tuning.tutorial_config()
    _finished(study, [0.90, 0.80, 0.85])
    alone = tuning._Run(study.ask(), config, 3, futures=[_Done(0.5), _Done(0.5), _Done(0.5)])
    assert tuning._read(study, alone).name == "COMPLETE"  # one finished trial: no bar yet
    # two finished now: 0.90 and 0.50 after fold 0, 0.85 and 0.50 after fold 1
    between = tuning._Run(study.ask(), config, 3, futures=[_Done(0.6), _Done(0.9), _Done(0.9)])
    assert tuning._read(study, between).name == "COMPLETE"  # never behind both
    # three finished: after fold 0 the bars are 0.90, 0.50 and 0.60 (0.55 is not behind
    # them all), after fold 1 0.85, 0.50 and 0.75
    late = tuning._Run(study.ask(), config, 3, futures=[_Done(0.55), _Done(0.1), _Done(0.9)])
    assert tuning._read(study, late).name == "PRUNED"  # fold 1: 0.325 is behind all three
    assert tuning._trial_record(study.trials[-1])["fold_scores"] == [0.55, 0.1]
    assert isinstance(study.pruner, optuna.pruners.BasePruner)


def test_a_pruner_of_ones_own():
    X, y = blobs()
    nop = optuna.pruners.NopPruner()
    result = fastnn.tune(X, y, "binary", n_trials=4, folds=3, jobs=1, pruner=nop, **SMALL)
    assert result.study.pruner is nop
    assert [(t["state"], len(t["fold_scores"])) for t in result.trials] == [("COMPLETE", 3)] * 4
    default = fastnn.tune(X, y, "binary", n_trials=1, folds=2, jobs=1, **SMALL)
    assert isinstance(default.study.pruner, tuning.EarlyMedianPruner)


def test_a_failing_fold_fails_the_trial_not_the_search():
    study = tuning._study(None, None, 0)
    run = tuning._Run(study.ask(), tuning.tutorial_config(), 1, futures=[_Done(float("nan"))])
    assert tuning._read(study, run).name == "FAIL"
    assert "diverged" in tuning._trial_record(study.trials[-1])["error"]


def test_bad_arguments_are_one_line_errors():
    X, y = blobs()
    with pytest.raises(fastnn.errors.ConfigError, match="task must be one of"):
        fastnn.tune(X, y, "ranking")
    with pytest.raises(fastnn.errors.ConfigError, match="folds must be between 2"):
        fastnn.tune(X, y, "binary", folds=1)
    with pytest.raises(fastnn.errors.DataError, match="rarest class has 2 rows"):
        fastnn.tune(X, np.r_[np.zeros(len(y) - 2), 1, 1], "binary", folds=3)


@pytest.mark.parametrize(
    "change, task, message",
    [
        (lambda X, y: (X, y + 1), "binary", r"binary target must be 0 or 1; found \[2\]"),
        (lambda X, y: (X, np.where(y, "yes", "no")), "binary", "y must be numbers, got dtype <U3"),
        (lambda X, y: (X, y / 2), "multiclass", r"class indices 0, 1, ..., k-1; found \[0.5\]"),
        (
            lambda X, y: (X, np.r_[np.nan, y[1:]]),
            "regression",
            r"NaN or infinite values in rows \[0\]",
        ),
        (lambda X, y: (X, y[:-1]), "binary", "X has 240 rows, y has shape \\(239,\\)"),
        (lambda X, y: (np.r_[X[:3], [[np.inf] * 5], X[4:]], y), "binary", r"rows \[3\], columns"),
        (lambda X, y: (X * 1e300, y), "binary", r"beyond float32's range .* rows \[0, 1"),
    ],
)
def test_bad_data_is_one_line_error_before_any_trial(change, task, message):
    X, y = change(*blobs())
    with pytest.raises(fastnn.errors.DataError, match=message):
        fastnn.tune(X, y, task, n_trials=1, folds=2, jobs=1, **SMALL)


def test_import_fastnn_and_help_do_not_import_optuna_or_sklearn():
    code = (
        "import sys, fastnn, fastnn.tune, fastnn.explain; from fastnn.cli import main; "
        "print(sorted(m for m in ('optuna', 'sklearn') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    assert callable(fastnn.tune) and fastnn.tune.tune is tuning.tune


# --------------------------------------------------------------------------- the command
@pytest.fixture
def csv_path(tmp_path):
    X, y = blobs(n=200, d=3, seed=1)
    rng = np.random.default_rng(2)
    color = rng.choice(["red", "blue"], size=len(y))
    lines = ["a,b,c,color,label"] + [
        f"{r[0]:.4f},{r[1]:.4f},{r[2]:.4f},{col},{'yes' if t else 'no'}"
        for r, col, t in zip(X, color, y, strict=True)
    ]
    p = tmp_path / "small.csv"
    p.write_text("\n".join(lines) + "\n")
    return p


FAST = ["--epochs", "4", "--patience", "2", "--backend", "numpy", "--quiet"]


def test_tune_command_writes_a_run(csv_path, tmp_path):
    out = tmp_path / "tuned"
    res = run(
        "tune",
        csv_path,
        "--target",
        "label",
        "--trials",
        3,
        "--folds",
        2,
        *FAST,
        "--jobs",
        1,
        "--out",
        out,
    )
    assert res.exit_code == 0, res.stderr
    assert sorted(os.listdir(out)) == sorted(
        [
            "model.safetensors",
            "metrics.json",
            "history.json",
            "history.png",
            "tune.json",
            "tune.png",
        ]
    )
    tune_json = json.loads((out / "tune.json").read_text())
    assert len(tune_json["trials"]) == 3 and tune_json["best"]["state"] == "COMPLETE"
    metrics = json.loads((out / "metrics.json").read_text())
    lo, hi = metrics["test"]["auc_ci"]
    assert lo <= metrics["test"]["auc"] <= hi
    assert metrics["settings"]["hidden"] == tune_json["best"]["params"]["hidden"]
    assert "ROC AUC" in res.stdout and "rank" in res.stdout
    pred = run("predict", out / "model.safetensors", csv_path)
    assert pred.exit_code == 0 and "label_prob" in pred.stdout.splitlines()[0]


def test_a_failed_refit_leaves_no_search_files_behind(csv_path, tmp_path, monkeypatch):
    """tune.json is written and tune.png drawn beside the refit (cli_search._write_search:
    by a plot process or thread, fastnn.plotter); when the refit fails, the command waits
    for the plot before the output folder is put back as it was (here: one file of the
    user's)."""
    from fastnn import cli_search
    from fastnn.errors import FastnnError

    write_search = cli_search._write_search

    def slow_write(*args):
        time.sleep(0.4)
        write_search(*args)

    def broken(self, *args, **kwargs):
        raise FastnnError("refit broke")

    monkeypatch.setattr(cli_search, "_write_search", slow_write)
    monkeypatch.setattr(tuning.TuneResult, "refit", broken)
    out = tmp_path / "tuned"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    res = run("tune", csv_path, "--target", "label", "--trials", 2, "--folds", 2, *FAST,
              "--jobs", 1, "--out", out)  # fmt: skip
    assert res.exit_code == 2 and "refit broke" in res.stderr
    time.sleep(0.6)  # a thread still writing would have written by now
    assert os.listdir(out) == ["keep.txt"]


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--storage", "sqlite:///x.db"], "--storage needs --study"),
        (["--folds", "1"], "--folds"),
        (["--jobs", "-1"], "--jobs"),
    ],
)
def test_tune_command_errors(csv_path, args, fragment):
    res = run("tune", csv_path, "--target", "label", *args)
    assert res.exit_code == 2 and res.stderr.startswith("fastnn: error: ")
    assert res.stderr.count("\n") == 1 and fragment in res.stderr


@pytest.mark.slow
def test_two_processes_share_one_sqlite_study(csv_path, tmp_path):
    db = f"sqlite:///{tmp_path / 'study.db'}"
    cmd = [sys.executable, "-m", "fastnn.cli", "tune", str(csv_path), "--target", "label"]
    cmd += ["--trials", "6", "--folds", "2", *FAST, "--jobs", "1", "--storage", db, "--study", "s"]
    procs = [
        subprocess.Popen(
            [*cmd, "--out", str(tmp_path / f"p{i}")], stderr=subprocess.PIPE, text=True
        )
        for i in range(2)
    ]
    for p in procs:
        assert p.wait(timeout=300) == 0, p.stderr.read()
    import optuna

    study = optuna.load_study(study_name="s", storage=db)
    finished = [t for t in study.trials if t.state.is_finished()]
    assert len(study.trials) == len(finished) == 12
    for i in range(2):
        tune_json = json.loads((tmp_path / f"p{i}" / "tune.json").read_text())
        assert tune_json["best"]["number"] in {t.number for t in finished}
        assert (tmp_path / f"p{i}" / "model.safetensors").is_file()


def test_benchmark_maps_trials_to_scikit_learn_configurations():
    from fastnn.bench import tune as bench

    trials = [{"params": {**tuning.tutorial_config(), "weight_decay": 1e-4, "batch_size": 64}}]
    trials.append({"params": {**tuning.tutorial_config(), "hidden": [8], "activation": "tanh"}})
    grid = bench.sklearn_grid(trials)
    assert grid[0] == {
        "hidden_layer_sizes": [(6, 6)],
        "activation": ["relu"],
        "learning_rate_init": [0.001],
        "batch_size": [64],
        "alpha": [pytest.approx(64e-4)],
    }
    assert grid[1]["hidden_layer_sizes"] == [(8,)] and grid[1]["activation"] == ["tanh"]
    from sklearn.model_selection import ParameterSampler

    # one-point grids are sampled without replacement: exactly these configurations
    drawn = list(ParameterSampler(grid, n_iter=2, random_state=0))
    assert sorted(d["hidden_layer_sizes"] for d in drawn) == [(6, 6), (8,)]


def test_ctrl_c_keeps_the_finished_trials(monkeypatch):
    X, y = blobs(n=120)
    calls = []
    real = tuning.run_fold

    def interrupt_on_the_fifth_fold(*args):
        calls.append(args)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(tuning, "run_fold", interrupt_on_the_fifth_fold)
    result = fastnn.tune(X, y, "binary", n_trials=6, folds=2, jobs=1, **SMALL)
    assert result.interrupted
    states = [t["state"] for t in result.trials]
    assert states[:2] == ["COMPLETE", "COMPLETE"] and set(states[2:]) == {"FAIL"}
    assert result.trials[2]["error"] == "interrupted" and result.best["number"] in (0, 1)


@pytest.mark.parametrize("task", ["multiclass", "regression"])
def test_tune_command_other_tasks_write_what_train_writes(task, tmp_path):
    X, y = blobs(n=150, d=3, task=task, seed=4)
    names = np.array(["ant", "bee", "cat"])
    cells = [f"{v:.4f}" for v in y] if task == "regression" else names[y]
    lines = ["a,b,c,y"] + [
        f"{r[0]:.4f},{r[1]:.4f},{r[2]:.4f},{t}" for r, t in zip(X, cells, strict=True)
    ]
    csv = tmp_path / f"{task}.csv"
    csv.write_text("\n".join(lines) + "\n")
    tuned, trained = tmp_path / "tuned", tmp_path / "trained"
    res = run("tune", csv, "--target", "y", "--trials", 2, "--folds", 2, *FAST, "--jobs", 1,
              "--out", tuned)  # fmt: skip
    assert res.exit_code == 0, res.stderr
    assert (
        run("train", csv, "--target", "y", "--epochs", 3, "--quiet", "--out", trained).exit_code
        == 0
    )
    m_tune = json.loads((tuned / "metrics.json").read_text())
    m_train = json.loads((trained / "metrics.json").read_text())
    assert m_tune["task"] == task and set(m_tune) == set(m_train) | {"tune"}
    for part in ("train", "test", "settings"):
        assert set(m_tune[part]) == set(m_train[part]), part
    assert sorted(os.listdir(tuned)) == sorted(os.listdir(trained) + ["tune.json", "tune.png"])
    assert json.loads((tuned / "tune.json").read_text())["metric"] == tuning.METRIC[task]
    first = "test R2" if task == "regression" else "test accuracy"
    assert first in res.stdout and "rank" in res.stdout


def test_trial_zero_is_train_s_default_for_a_file():
    config, budget = tuning.default_config("csv")
    d = fastnn.defaults.CSV
    assert config["hidden"] == list(d.hidden) and config["lr"] == d.lr
    assert budget == {"max_epochs": d.epochs, "patience": d.patience}
    assert tuning.tutorial_config()["hidden"] == list(fastnn.defaults.TUTORIAL.hidden)


@pytest.mark.slow
def test_benchmark_report_says_whether_both_found_the_same_best():
    from fastnn.bench import tune as bench

    best = {"number": 3, "params": {**tuning.tutorial_config(), "weight_decay": 1e-3}}
    same = {k: str(v[0]) for k, v in bench.sklearn_grid([best])[0].items()}
    assert bench._same_best({"best": best}, {"best_params": same}).endswith(
        "(trial 3) best in both"
    )
    other = {**same, "hidden_layer_sizes": "(8,)"}
    assert "different configuration" in bench._same_best({"best": best}, {"best_params": other})


def test_bench_tune_mode_times_both_searches(tmp_path):
    """`fastnn bench --tune` runs fastnn tune and RandomizedSearchCV over the same
    configurations and folds, and reports both (tiny budget: it measures, asserts no
    timing)."""
    out = tmp_path / "bench"
    cmd = [sys.executable, "-m", "fastnn.cli", "bench", "--tune", "--trials", "2"]
    cmd += ["--folds", "2", "--jobs", "1", "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads((out / "tune.json").read_text())
    assert report["trials"] == 2 and report["folds"] == 2
    assert report["setup"]["untimed_runs"] == 1  # the timed run is a second run
    assert report["sklearn"]["fits"] == 2 * 2 + 1
    assert len(report["sklearn"]["mean_scores"]) == 2
    for key in ("wall_s", "search_s", "refit_s", "best_score"):
        assert report["fastnn"][key] > 0
    text = (out / "tune.md").read_text()
    assert "RandomizedSearchCV" in text and "faster in wall time" in text
    assert report["process_speedup"] > 0 and "whole process" in text


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_a_running_fold_is_stopped_when_its_result_is_no_longer_needed(backend):
    """The flag set in the parent reaches the worker process: the compiled trainer
    (numba) or the callback in ``model.fit`` (numpy) ends the fold."""
    if backend == "numba":
        pytest.importorskip("numba", reason="numba is not installed")
    X, y = blobs(n=400)
    state = {
        "X": X.astype(np.float32), "y": y, "task": "binary", "n_outputs": 1,
        "folds": tuning.fold_indices(y, "binary", 2, 0), "backend": backend,
        "max_epochs": 100_000, "patience": 10**9, "min_delta": 0.0,
    }  # fmt: skip
    folds = tuning._Folds(2, state)
    try:
        config = {**tuning.tutorial_config(), "batch_size": 8}
        fut = folds.submit(config, 0, 0)
        with pytest.raises(TimeoutError):
            fut.result(timeout=1.5)  # 100,000 epochs: still training
        folds.stop([fut])
        assert fut.result(timeout=60)["epochs"] < 100_000  # all of them: minutes
        assert folds.free([]) == 2  # its flag is free for the next fold
        assert fut not in folds.slot_of and len(folds.free_slots) == 4
    finally:
        folds.close()


def test_spawned_workers_give_the_same_results(monkeypatch):
    """macOS and Windows start the workers with spawn (the data and the shared cancel
    flags are sent, not inherited): the same trials as forked workers."""
    pytest.importorskip("numba", reason="numba is not installed")
    X, y = blobs(n=300)
    kw = {"n_trials": 6, "folds": 3, "seed": 1, "max_epochs": 5, "patience": 2, "jobs": 2}
    forked = fastnn.tune(X, y, "binary", **kw)
    monkeypatch.setattr(sys, "platform", "darwin")
    spawned = fastnn.tune(X, y, "binary", **kw)
    assert [t["fold_scores"] for t in spawned.trials] == [t["fold_scores"] for t in forked.trials]


def test_a_missing_optuna_is_reported_before_any_work(monkeypatch):
    def no_work(*args):
        raise AssertionError("the workers started (and, on a first run, kernels compiled)")

    monkeypatch.setitem(sys.modules, "optuna", None)  # import optuna -> ImportError
    monkeypatch.setattr(tuning, "_Folds", no_work)
    X, y = blobs()
    with pytest.raises(
        fastnn.errors.ConfigError, match=r"needs optuna: pip install 'fastnn\[tune\]'"
    ):
        fastnn.tune(X, y, "binary", n_trials=2, folds=2, **SMALL)
