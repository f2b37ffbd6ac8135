"""The scikit-learn estimators: scikit-learn's own checks, the tools analysts use them
in, and pickling through safetensors bytes."""

from __future__ import annotations

import io
import json
import pickle
import struct

import numpy as np
import pytest

pytest.importorskip("sklearn")

from sklearn.base import clone  # noqa: E402
from sklearn.calibration import CalibratedClassifierCV  # noqa: E402
from sklearn.compose import ColumnTransformer  # noqa: E402
from sklearn.inspection import permutation_importance  # noqa: E402
from sklearn.model_selection import GridSearchCV, cross_val_score  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import OneHotEncoder, StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

import fastnn  # noqa: E402
from fastnn.errors import ModelFileError  # noqa: E402
from fastnn.layers import Dense  # noqa: E402
from fastnn.sklearn import FastnnClassifier, FastnnRegressor  # noqa: E402

FAST = {"hidden": (8,), "epochs": 30, "random_state": 0}


@parametrize_with_checks([FastnnClassifier(), FastnnRegressor()])
def test_sklearn_estimator_checks(estimator, check):
    """Default-constructed estimators pass every check scikit-learn runs (none xfailed)."""
    check(estimator)


@pytest.fixture(scope="module")
def churn():
    df = fastnn.data.load_churn().iloc[:800]
    X = df.drop(columns=[*fastnn.data.CHURN_DROP, "Exited"])
    return X, df["Exited"].to_numpy()


def _churn_pipeline(**params):
    X_cols = ["CreditScore", "Age", "Tenure", "Balance", "NumOfProducts", "EstimatedSalary"]
    pre = ColumnTransformer(
        [("num", StandardScaler(), X_cols), ("cat", OneHotEncoder(), ["Geography", "Gender"])],
        remainder="passthrough",
    )
    return make_pipeline(pre, FastnnClassifier(**{**FAST, **params}))


def test_pipeline_with_column_transformer(churn):
    X, y = churn
    pipe = _churn_pipeline().fit(X.iloc[:600], y[:600])
    P = pipe.predict_proba(X.iloc[600:])
    assert P.shape == (200, 2) and np.allclose(P.sum(axis=1), 1.0)
    assert pipe.score(X.iloc[600:], y[600:]) > 0.75  # the majority class is 0.80
    clf = pipe[-1]
    assert clf.n_features_in_ == 13 and list(clf.classes_) == [0, 1]


def test_feature_names_and_string_labels(churn):
    X, y = churn
    num = X.select_dtypes("number")
    labels = np.where(y == 1, "left", "stayed")
    clf = FastnnClassifier(**FAST).fit(num, labels)
    assert list(clf.feature_names_in_) == list(num.columns)
    assert set(clf.predict(num)) <= {"left", "stayed"}
    with pytest.raises(ValueError, match="feature names"):
        clf.predict(num[num.columns[::-1]])


@pytest.mark.parametrize("n_jobs", [1, pytest.param(2, marks=pytest.mark.slow)])
def test_grid_search(churn, n_jobs):
    X, y = churn
    grid = GridSearchCV(
        _churn_pipeline(),
        {"fastnnclassifier__hidden": [(4,), (8,)], "fastnnclassifier__learning_rate": [0.01]},
        cv=2,
        n_jobs=n_jobs,
    ).fit(X, y)
    assert grid.best_params_["fastnnclassifier__hidden"] in [(4,), (8,)]
    assert len(grid.cv_results_["mean_test_score"]) == 2
    assert grid.best_estimator_.predict(X.iloc[:5]).shape == (5,)


def test_cross_val_score_stratifies_classifier(churn):
    X, y = churn
    scores = cross_val_score(_churn_pipeline(), X, y, cv=3)
    assert scores.shape == (3,) and (scores > 0.7).all()


def test_calibrated_classifier(churn):
    X, y = churn
    num = X.select_dtypes("number").to_numpy()
    cal = CalibratedClassifierCV(FastnnClassifier(**FAST), cv=2).fit(num, y)
    P = cal.predict_proba(num)
    assert P.shape == (len(y), 2) and np.allclose(P.sum(axis=1), 1.0)


def test_permutation_importance_finds_the_signal():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 3))
    y = 3.0 * X[:, 1] + 0.1 * rng.normal(size=300)
    reg = FastnnRegressor(**FAST).fit(X, y)
    imp = permutation_importance(reg, X, y, n_repeats=3, random_state=0)
    assert imp.importances_mean.argmax() == 1
    assert reg.score(X, y) > 0.9


def test_regressor_multi_output_in_target_units():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(200, 2))
    Y = np.column_stack([1000.0 + 50.0 * X[:, 0], -3.0 * X[:, 1]])
    reg = FastnnRegressor(**{**FAST, "epochs": 100}).fit(X, Y)
    P = reg.predict(X)
    assert P.shape == (200, 2)
    assert np.abs(P - Y).mean(axis=0)[0] < 10.0  # in the target's units


def test_clone_and_set_params():
    clf = FastnnClassifier(hidden=(3,), epochs=5)
    c2 = clone(clf).set_params(hidden=(4, 2))
    assert c2.hidden == (4, 2) and clf.hidden == (3,)
    assert not hasattr(c2, "model_")


def test_bad_parameters_are_clear_errors():
    X, y = np.random.default_rng(0).normal(size=(20, 2)), np.arange(20) % 2
    with pytest.raises(ValueError, match="hidden"):
        FastnnClassifier(hidden=(4, -1)).fit(X, y)
    with pytest.raises(ValueError, match="validation_fraction"):
        FastnnClassifier(validation_fraction=1.5).fit(X, y)
    with pytest.raises(ValueError, match="optimizer"):
        FastnnClassifier(optimizer="adamm").fit(X, y)
    with pytest.raises(ValueError, match="one class"):
        FastnnClassifier().fit(X, np.zeros(20))


def test_class_weight_balanced_raises_minority_recall():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 2))
    y = (X[:, 0] + 0.8 * rng.normal(size=400) > 1.3).astype(int)  # about 15% positives
    plain = FastnnClassifier(**FAST).fit(X, y)
    balanced = FastnnClassifier(**FAST, class_weight="balanced").fit(X, y)
    recall = [(m.predict(X)[y == 1] == 1).mean() for m in (plain, balanced)]
    assert recall[1] > recall[0]


def test_early_stopping_restores_best_epoch():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 4))
    y = (X[:, 0] > 0).astype(int)
    clf = FastnnClassifier(hidden=(16,), epochs=400, patience=5, random_state=0).fit(X, y)
    assert clf.n_iter_ < 400
    assert "val_loss" in clf.history_


# --------------------------------------------------------------------------- pickling
class OnlyFastnn(pickle.Unpickler):
    """An unpickler that refuses every global but the fastnn classes: fastnn's pickles
    must load through it, i.e. they carry bytes and plain values, no other object."""

    ALLOWED = {
        ("fastnn.layers.sequential", "Sequential"),
        ("fastnn.sklearn", "FastnnClassifier"),
        ("fastnn.sklearn", "FastnnRegressor"),
    }

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed")
        return super().find_class(module, name)


def _restricted_loads(data: bytes):
    return OnlyFastnn(io.BytesIO(data)).load()


@pytest.mark.parametrize("cls", [FastnnClassifier, FastnnRegressor])
def test_fitted_estimator_pickles_through_safetensors(cls, churn):
    X, y = churn
    num = X.select_dtypes("number")
    est = cls(**FAST).fit(num, y)
    data = pickle.dumps(est)
    back = _restricted_loads(data)
    assert np.array_equal(back.predict(num), est.predict(num))
    assert list(back.feature_names_in_) == list(num.columns)
    assert back.get_params() == est.get_params()
    if cls is FastnnClassifier:
        assert np.array_equal(back.classes_, est.classes_)
        assert np.array_equal(back.predict_proba(num), est.predict_proba(num))


def test_string_classes_survive_pickle():
    X = np.random.default_rng(0).normal(size=(60, 2))
    y = np.array(["a", "b", "c"])[np.arange(60) % 3]
    clf = FastnnClassifier(**FAST).fit(X, y)
    back = _restricted_loads(pickle.dumps(clf))
    assert back.classes_.dtype == clf.classes_.dtype
    assert np.array_equal(back.predict(X), clf.predict(X))


def test_sequential_pickles_through_safetensors(backend_name):
    model = fastnn.Sequential([Dense(5, activation="tanh"), Dense(3, activation="softmax")])
    model.to(backend_name)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    X = np.random.default_rng(0).normal(size=(40, 4))
    model.fit(X, np.arange(40) % 3, epochs=2, verbose=0, seed=0)
    model.preprocessing = {"note": "kept"}
    back = _restricted_loads(pickle.dumps(model))
    assert back.backend.name == model.backend.name
    assert np.array_equal(back.predict(X), model.predict(X))
    assert back.preprocessing == {"note": "kept"}
    assert back.get_config() == model.get_config()
    unbuilt = _restricted_loads(pickle.dumps(fastnn.Sequential([Dense(2)])))
    assert not unbuilt.built and unbuilt.layers[0].units == 2


class _Forge:
    """Pickles as a Sequential whose state is whatever the attacker wants."""

    def __init__(self, state):
        self.state = state

    def __reduce__(self):
        return (object.__new__, (fastnn.Sequential,), self.state)


def _with_architecture(data: bytes, arch) -> bytes:
    """Real model bytes with the JSON architecture in the header replaced."""
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    header["__metadata__"]["architecture"] = json.dumps(arch)
    blob = json.dumps(header).encode()
    return struct.pack("<Q", len(blob)) + blob + data[8 + n :]


def test_malicious_pickle_payloads_run_no_code(tmp_path):
    marker = tmp_path / "pwned"
    shell = f"import os; open({str(marker)!r}, 'w').close()"
    model = fastnn.Sequential([Dense(2, activation="sigmoid", input_dim=3)], backend="numpy")
    good = pickle.loads(pickle.dumps(model)).__getstate__()["safetensors"]
    arch = model.get_config()
    evil_archs = [
        {**arch, "layers": [{"class": "__import__('os').system", "config": {}}]},
        {**arch, "layers": [{"class": "Dense", "config": {"units": 2, "__class__": shell}}]},
        {**arch, "compile": {"loss": shell, "optimizer": {"name": "adam"}}},
        {**arch, "compile": {"loss": "mse", "optimizer": {"name": "exec", "source": shell}}},
    ]
    states = [{"safetensors": _with_architecture(good, a)} for a in evil_archs]
    states += [
        {"config": json.dumps(evil_archs[0])},
        {"safetensors": shell},  # text, not bytes
        {"safetensors": pickle.dumps(print)},  # a pickle inside: never unpickled
        {"code": shell},
    ]
    for state in states:
        with pytest.raises(ModelFileError):
            pickle.loads(pickle.dumps(_Forge(state)))
    assert not marker.exists()

    class Exploit:  # the classic payload: refused by an allow-list fastnn's pickles pass
        def __reduce__(self):
            return (exec, (shell,))

    with pytest.raises(pickle.UnpicklingError, match="not allowed"):
        _restricted_loads(pickle.dumps(Exploit()))
    assert not marker.exists()


@pytest.mark.parametrize("optimizer", ["adamw", "sgd", "rmsprop"])
def test_optimizer_choices(optimizer):
    X = np.random.default_rng(0).normal(size=(60, 2))
    clf = FastnnClassifier(optimizer=optimizer, **FAST).fit(X, (X[:, 0] > 0).astype(int))
    opt = clf.model_.optimizer
    assert opt.name == optimizer and opt.learning_rate == clf.learning_rate
    assert opt.weight_decay == (0.004 if optimizer == "adamw" else 0.0)  # its own default
