"""Every bad input of issue 6's list gets a typed fastnn error whose message names the
problem. Table-driven so the list is easy to read and to count."""

from __future__ import annotations

import numpy as np
import pytest

import fastnn
from fastnn import errors
from fastnn.layers import Dense


def _model(loss="binary_crossentropy", out=1, act="sigmoid"):
    m = fastnn.Sequential([Dense(4, "relu"), Dense(out, act)], backend="numpy")
    m.compile("adam", loss, ["accuracy"])
    return m


X = np.random.default_rng(0).standard_normal((20, 3))
y = np.arange(20) % 2


def _built():
    m = _model()
    m.fit(X, y, batch_size=8, epochs=1, verbose=0, seed=0)
    return m


def _nan_X():
    A = X.copy()
    A[3, 1] = np.nan
    return A


CASES = {
    "X/y length mismatch": (
        lambda: _model().fit(X, y[:-1], verbose=0),
        errors.ShapeError,
        "20 rows",
    ),
    "wrong feature count for a built model": (
        lambda: _built().predict(np.zeros((2, 5))),
        errors.ShapeError,
        "5 features",
    ),
    "NaN in X": (lambda: _model().fit(_nan_X(), y, verbose=0), errors.DataError, r"rows \[3\]"),
    "inf in y": (
        lambda: _model("mse", 1, "linear").fit(X, np.where(y == 1, np.inf, 0.0), verbose=0),
        errors.DataError,
        "NaN or infinite",
    ),
    "labels outside {0,1} for BCE": (
        lambda: _model().fit(X, y * 2, verbose=0),
        errors.DataError,
        "labels 0 or 1",
    ),
    "class index out of range": (
        lambda: _model("sparse_categorical_crossentropy", 3, "softmax").fit(X, y * 3, verbose=0),
        errors.DataError,
        "out of range",
    ),
    "string data passed to fit": (
        lambda: _model().fit(np.array([["a", "b", "c"]] * 20), y, verbose=0),
        errors.DataError,
        "strings",
    ),
    "empty data": (
        lambda: _model().fit(np.zeros((0, 3)), [], verbose=0),
        errors.DataError,
        "empty",
    ),
    "a single class": (
        lambda: _model().fit(X, np.zeros(20), verbose=0),
        errors.DataError,
        "only one class",
    ),
    "epochs 0": (lambda: _model().fit(X, y, epochs=0, verbose=0), errors.ConfigError, "epochs"),
    "epochs negative": (
        lambda: _model().fit(X, y, epochs=-2, verbose=0),
        errors.ConfigError,
        "epochs",
    ),
    "unknown loss": (lambda: _model("hinge"), errors.UnknownNameError, "unknown loss 'hinge'"),
    "unknown optimizer": (
        lambda: fastnn.Sequential([Dense(1)]).compile("adamm", "mse"),
        errors.UnknownNameError,
        "did you mean 'adam'",
    ),
    "unknown activation": (lambda: Dense(3, "rellu"), errors.UnknownNameError, "'rellu'"),
    "unknown backend": (
        lambda: fastnn.set_backend("tpu"),
        errors.UnknownNameError,
        "backend 'tpu'",
    ),
    "1-D X": (lambda: _model().fit(np.zeros(20), y, verbose=0), errors.ShapeError, "reshape"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_gets_a_named_error(case):
    fn, exc, fragment = CASES[case]
    with pytest.raises(exc, match=fragment):
        fn()


def test_batch_size_larger_than_data_trains_and_says_so():
    m = _model()
    with pytest.warns(UserWarning, match="larger than the 20 training rows"):
        h = m.fit(X, y, batch_size=1000, epochs=2, verbose=0, seed=0)
    assert h.params["batch_size"] == 20
    assert m.optimizer.iterations == 2  # one full-batch step per epoch


def test_errors_are_builtin_subclasses():
    assert issubclass(errors.ShapeError, ValueError)
    assert issubclass(errors.DataError, ValueError)
    assert issubclass(errors.UnknownNameError, ValueError)
    assert issubclass(errors.BackendMismatchError, TypeError)
