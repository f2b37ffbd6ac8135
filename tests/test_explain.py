"""Permutation importance (against scikit-learn's on the churn data), bootstrap
intervals, and the `fastnn explain` command."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

import fastnn
from fastnn import data, errors
from fastnn import explain as E
from fastnn.cli import main
from fastnn.metrics import roc_auc


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def churn():
    """A churn model trained the tutorial's way (fewer epochs), its Preprocessor, and the
    raw and transformed test rows."""
    df = data.load_churn()
    train_idx, test_idx = data.split_indices(len(df), 0.2, 0)
    prep = data.Preprocessor(target=data.CHURN_TARGET, drop=data.CHURN_DROP)
    prep.fit(df, train_rows=train_idx)
    X_tr, y_tr = prep.transform(df.iloc[train_idx])
    X_te, y_te = prep.transform(df.iloc[test_idx])
    from fastnn.layers import Dense

    model = fastnn.Sequential([Dense(6, "relu"), Dense(6, "relu"), Dense(1, "sigmoid")])
    model.compile(optimizer="adam", loss="binary_crossentropy")
    model.fit(X_tr, y_tr, batch_size=32, epochs=15, seed=0, verbose=0)
    return model, prep, df.iloc[test_idx], X_te, y_te


def test_groups_follow_the_raw_columns(churn):
    _, prep, *_ = churn
    groups = E.groups_from_preprocessor(prep)
    assert len(groups) == 10
    names = prep.feature_names_
    assert [names[i] for i in groups["Geography"]] == ["Geography=Germany", "Geography=Spain"]
    assert [names[i] for i in groups["Age"]] == ["Age"]
    assert sorted(i for g in groups.values() for i in g) == list(range(11))


def _spearman(a, b):
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def test_ranking_agrees_with_scikit_learn(churn):
    """sklearn shuffles the raw DataFrame column (so Geography moves as one column) and
    scores through the Preprocessor; fastnn shuffles the feature groups."""
    inspection = pytest.importorskip("sklearn.inspection")
    from sklearn.base import BaseEstimator

    model, prep, raw, X_te, y_te = churn

    class Raw(BaseEstimator):  # a fitted estimator over the raw columns
        def fit(self, X, y):
            return self

        def predict(self, X):
            return model.predict(prep.transform(X, with_target=False)[0])[:, 0]

    features = [c for c in raw.columns if c != data.CHURN_TARGET and c not in data.CHURN_DROP]
    ours = fastnn.permutation_importance(
        model, X_te, y_te, groups=E.groups_from_preprocessor(prep), n_repeats=10, seed=0
    )
    theirs = inspection.permutation_importance(
        Raw(),
        raw[features],
        y_te,
        scoring=lambda est, X, y: roc_auc(y, est.predict(X)),
        n_repeats=10,
        random_state=0,
    )
    ours_by_name = {f["name"]: f["mean"] for f in ours["features"]}
    a = np.array([ours_by_name[c] for c in features])
    b = theirs.importances_mean
    assert _spearman(a, b) > 0.9
    top = [features[i] for i in np.argsort(-b)[:3]]
    assert [f["name"] for f in ours["features"][:3]] == top
    assert np.allclose(a, b, atol=0.02)  # the same quantity, other shuffles


class _Recorder:
    """A fake model: records what it is asked to predict; the score is column 0."""

    def __init__(self):
        self.seen = []

    def predict(self, X):
        self.seen.append(np.array(X))
        return X[:, :1]


def test_a_group_is_shuffled_together_and_results_are_seeded():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(50, 3))
    X[:, 1] = X[:, 0]  # a "one-hot group" of two equal columns
    y = (X[:, 0] > 0).astype(float)
    rec = _Recorder()
    groups = {"pair": [0, 1], "noise": [2]}
    res = E.permutation_importance(rec, X, y, groups=groups, metric="roc_auc", n_repeats=3)
    shuffled = rec.seen[1]  # after the baseline call: every shuffled copy in one batch
    assert shuffled.shape == (6 * 50, 3)
    assert np.array_equal(shuffled[:, 0], shuffled[:, 1])  # moved together
    assert not np.array_equal(shuffled[:50, 0], X[:, 0])
    assert [f["name"] for f in res["features"]] == ["pair", "noise"]
    assert res["features"][1]["mean"] == 0 and res["features"][0]["mean"] > 0.2
    again = E.permutation_importance(
        _Recorder(), X, y, groups=groups, n_repeats=3, metric="roc_auc"
    )
    assert again == res
    other = E.permutation_importance(
        _Recorder(), X, y, groups=groups, n_repeats=3, seed=1, metric="roc_auc"
    )
    assert other["features"][0]["mean"] != res["features"][0]["mean"]


def test_importance_errors():
    X, y = np.zeros((10, 2)), np.zeros(10)
    with pytest.raises(errors.ShapeError, match="group 'a' holds feature indices"):
        E.permutation_importance(_Recorder(), X, y, groups={"a": [5]})
    with pytest.raises(errors.ConfigError, match="n_repeats"):
        E.permutation_importance(_Recorder(), X, y, n_repeats=0)
    with pytest.raises(errors.ShapeError, match="10 rows but y has 3"):
        E.permutation_importance(_Recorder(), X, y[:3])
    for bad, message in [
        (np.array(["no", "yes"] * 5), "y must be numbers, got dtype <U3"),
        (np.r_[1.0, 2.0, np.zeros(8)], r"roc_auc needs 0/1 labels; found \[2.0\] in rows \[1\]"),
        (np.r_[np.zeros(9), np.nan], r"y contains NaN or infinite values in rows \[9\]"),
        (np.ones(10), r"roc_auc of the unshuffled rows is nan: y holds one class only \(1\)"),
    ]:
        with pytest.raises(errors.DataError, match=message):
            E.permutation_importance(_Recorder(), X, bad, metric="roc_auc")


# --------------------------------------------------------------------------- bootstrap
@pytest.fixture(scope="module")
def scored():
    rng = np.random.default_rng(1)
    y = (rng.random(800) < 0.3).astype(float)
    p = np.clip(np.round(rng.random(800) * 0.7 + 0.3 * y, 2), 0, 1)  # ties on purpose
    return y, p


def _loop_version(name):
    """The same metric as a plain function (bootstrap_ci calls it per resample)."""
    P1 = lambda p: np.clip(p, 1e-7, 1 - 1e-7)  # noqa: E731
    return {
        "roc_auc": roc_auc,
        "accuracy": lambda y, p: float(((p >= 0.5) == y).mean()),
        "log_loss": lambda y, p: float(-(y * np.log(P1(p)) + (1 - y) * np.log(1 - P1(p))).mean()),
        "mse": lambda y, p: float(((y - p) ** 2).mean()),
        "rmse": lambda y, p: float(np.sqrt(((y - p) ** 2).mean())),
        "mae": lambda y, p: float(np.abs(y - p).mean()),
        "r2": lambda y, p: 1 - ((y - p) ** 2).sum() / ((y - y.mean()) ** 2).sum(),
    }[name]


@pytest.mark.parametrize("name", ["roc_auc", "accuracy", "log_loss", "mse", "rmse", "mae", "r2"])
def test_vectorised_intervals_equal_the_per_resample_loop(scored, name):
    y, p = scored
    fast = fastnn.bootstrap_ci(name, y, p, n=300, seed=4)
    slow = fastnn.bootstrap_ci(_loop_version(name), y, p, n=300, seed=4)
    assert fast == pytest.approx(slow, rel=1e-9, abs=1e-12)


def test_interval_brackets_the_estimate_and_shrinks_with_rows(scored):
    y, p = scored
    lo, hi = fastnn.bootstrap_ci("auc", y, p, seed=0)
    assert lo < roc_auc(y, p) < hi
    lo2, hi2 = fastnn.bootstrap_ci("auc", y[:200], p[:200], seed=0)
    assert hi2 - lo2 > hi - lo
    assert fastnn.bootstrap_ci("auc", y, p, seed=0) == (lo, hi)
    assert fastnn.bootstrap_ci("auc", y, p, seed=1) != (lo, hi)
    lo90, hi90 = fastnn.bootstrap_ci("auc", y, p, seed=0, alpha=0.1)
    assert lo <= lo90 and hi90 <= hi


def test_add_intervals_and_format(scored):
    y, p = scored
    m = {"accuracy": 0.8, "auc": roc_auc(y, p), "loss": 0.5, "rows": 800, "confusion_matrix": [[1]]}
    E.add_intervals(m, y, p, task="binary", n=200)
    assert set(m) >= {"accuracy_ci", "auc_ci", "loss_ci"} and "rows_ci" not in m
    assert len(m["auc_ci"]) == 2
    reg = E.add_intervals({"loss": 1.0, "r2": 0.3}, y, p, task="regression", n=50)
    assert "r2_ci" in reg and "loss_ci" not in reg
    assert E.format_ci("ROC AUC", 0.8684, (0.8461, 0.8893)) == "ROC AUC 0.868 (0.846-0.889)"


@pytest.mark.parametrize(
    "value, ci, spec, text",
    [
        # a target's units: the value to 4 significant digits, the bounds to its decimals
        (45.3, (38.3, 52.23), ".4g", "MAE 45.30 (38.30-52.23)"),
        (12345.6, (11000.2, 13999.9), ".4g", "MAE 12346 (11000-14000)"),
        (0.012345, (0.01, 0.0151), ".4g", "MAE 0.01235 (0.01000-0.01510)"),
        (-0.12, (-0.4, -0.01), None, "MAE -0.120 (-0.400 to -0.010)"),  # not "-0.400--0.010"
        (0.02, (-0.05, 0.1), None, "MAE 0.020 (-0.050 to 0.100)"),
    ],
)
def test_format_ci_aligns_decimals_and_signs(value, ci, spec, text):
    assert E.format_ci("MAE", value, ci, spec=spec) == text


def test_bootstrap_errors(scored):
    y, p = scored
    with pytest.raises(errors.ConfigError, match="unknown metric 'f2'"):
        fastnn.bootstrap_ci("f2", y, p)
    with pytest.raises(errors.ConfigError, match="alpha"):
        fastnn.bootstrap_ci("auc", y, p, alpha=1.5)
    with pytest.raises(errors.ShapeError, match="same number"):
        fastnn.bootstrap_ci("auc", y, p[:5])
    with pytest.raises(errors.DataError, match=r"predictions contain NaN .* rows \[3\]"):
        fastnn.bootstrap_ci("auc", y, np.r_[p[:3], np.inf, p[4:]])
    with pytest.raises(errors.DataError, match=r"roc_auc needs 0/1 labels; found \[2.0\]"):
        fastnn.bootstrap_ci("auc", y + 1, p)
    with pytest.raises(errors.DataError, match=r"accuracy needs class indices 0..2"):
        fastnn.bootstrap_ci("accuracy", np.full(len(y), 3), np.full((len(y), 3), 1 / 3))
    with pytest.raises(errors.DataError, match="y must be numbers"):
        fastnn.bootstrap_ci("auc", np.where(y > 0, "a", "b"), p)
    lo, hi = fastnn.bootstrap_ci("r2", 100 * y + 3, p, n=20)  # any numbers for r2
    assert lo <= hi


# --------------------------------------------------------------------------- the command
def test_explain_command_on_a_train_run(tmp_path):
    out = tmp_path / "run"
    res = run("train", "--epochs", 3, "--backend", "numpy", "--quiet", "--out", out)
    assert res.exit_code == 0, res.stderr
    res = run("explain", out / "model.safetensors", "--repeats", 2)
    assert res.exit_code == 0, res.stderr
    result = json.loads((out / "importance.json").read_text())
    means = [f["mean"] for f in result["features"]]
    assert len(means) == 10 and means == sorted(means, reverse=True)
    assert set(result["features"][0]) >= {"name", "mean", "std"}
    assert (out / "importance.png").stat().st_size > 0
    assert "2,000 rows" in res.stdout

    csv = tmp_path / "some.csv"
    data.load_churn().iloc[:300].to_csv(csv, index=False)
    res = run("explain", out / "model.safetensors", csv, "--out", tmp_path / "ex")
    assert res.exit_code == 0, res.stderr
    assert "300 rows" in res.stdout and (tmp_path / "ex" / "importance.json").is_file()


def test_explain_command_errors(tmp_path):
    from fastnn.layers import Dense

    model = fastnn.Sequential([Dense(1, "sigmoid", input_dim=2)])
    model.build()
    fastnn.save(model, tmp_path / "bare.safetensors")
    res = run("explain", tmp_path / "bare.safetensors")
    assert res.exit_code == 2 and "holds no preprocessing state" in res.stderr
    assert res.stderr.count("\n") == 1


def test_vectorised_macro_f1_and_add_intervals_match_bootstrap_ci():
    from fastnn.metrics import macro_f1

    rng = np.random.default_rng(3)
    y = rng.integers(0, 4, size=500)
    P = rng.dirichlet(np.ones(4), size=500)
    P[np.arange(500), y] += 0.4  # better than chance
    P /= P.sum(axis=1, keepdims=True)
    fast = fastnn.bootstrap_ci("f1_macro", y, P, n=200, seed=2)
    slow = fastnn.bootstrap_ci(lambda t, q: macro_f1(t, q.argmax(axis=1)), y, P, n=200, seed=2)
    assert fast == pytest.approx(slow, rel=1e-9)
    m = E.add_intervals({"f1_macro": macro_f1(y, P.argmax(axis=1)), "log_loss": 1.0}, y, P,
                        "multiclass", n=200, seed=2)  # fmt: skip
    assert tuple(m["f1_macro_ci"]) == fast
    assert tuple(m["log_loss_ci"]) == fastnn.bootstrap_ci("log_loss", y, P, n=200, seed=2)


def test_bootstrap_memory_stays_bounded_on_many_test_rows():
    """Resamples are scored in blocks: 400 resamples of 50,000 rows (20M cells, 160 MB
    per float64 array at once) peak under 400 MB, with the intervals of one big block."""
    import tracemalloc

    from fastnn import explain

    rng = np.random.default_rng(0)
    y = (rng.random(50_000) < 0.3).astype(float)
    p = np.clip(0.3 * y + 0.7 * rng.random(50_000), 0, 1)
    metrics = {"auc": 0.8, "accuracy": 0.7, "loss": 0.5}
    tracemalloc.start()
    try:
        got = explain.add_intervals(dict(metrics), y, p, "binary", n=400, seed=0)
        peak = tracemalloc.get_traced_memory()[1]
        assert got["auc_ci"][0] < got["auc_ci"][1]
    finally:
        tracemalloc.stop()
    assert peak < 400e6, peak
    small = explain.add_intervals(dict(metrics), y[:3000], p[:3000], "binary", n=50, seed=1)
    old_block = explain._BLOCK_CELLS
    try:
        explain._BLOCK_CELLS = 7000  # two resamples a block
        blocked = explain.add_intervals(dict(metrics), y[:3000], p[:3000], "binary", n=50, seed=1)
    finally:
        explain._BLOCK_CELLS = old_block
    for key in ("auc_ci", "accuracy_ci", "loss_ci"):
        np.testing.assert_allclose(blocked[key], small[key], rtol=1e-12)
