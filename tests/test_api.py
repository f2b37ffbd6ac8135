"""The public API: what ``import fastnn`` brings (and what it must not import), and
docstrings on everything public."""

from __future__ import annotations

import importlib
import inspect
import json
import subprocess
import sys

import pytest

import fastnn

CORE_MODULES = [
    "fastnn",
    "fastnn.backends",
    "fastnn.backends.base",
    "fastnn.backends.numpy_backend",
    "fastnn.layers",
    "fastnn.losses",
    "fastnn.optimizers",
    "fastnn.metrics",
    "fastnn.initializers",
    "fastnn.callbacks",
    "fastnn.io",
    "fastnn.errors",
    "fastnn.testing",
]


def test_import_fastnn_stays_light():
    """Only NumPy is needed: no CuPy, Numba, pandas, matplotlib or tqdm at import."""
    code = (
        "import sys, json, fastnn; "
        "print(json.dumps(sorted(m for m in ('cupy', 'numba', 'pandas', 'matplotlib', 'tqdm',"
        " 'torch', 'fastnn.cli', 'fastnn.backends.numba_backend', 'fastnn.backends.cupy_backend')"
        " if m in sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_backend_status_does_not_import_cupy_without_it():
    code = (
        "import sys, importlib.util, fastnn; fastnn.backend_status(); "
        "print(importlib.util.find_spec('cupy') is None and 'cupy' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip().splitlines()[-1] == "False"


def test_all_names_exist():
    for name in fastnn.__all__:
        assert hasattr(fastnn, name), name
    for name in ("Sequential", "save", "load", "set_backend", "use_backend", "available_backends"):
        assert name in fastnn.__all__
    assert fastnn.__version__
    from fastnn import layers

    for name in ("Dense", "Dropout", "Activation", "ReLU", "Sigmoid", "Softmax", "Tanh"):
        assert name in layers.__all__


def test_keras_shaped_names():
    from fastnn import losses, metrics, optimizers

    for n in (
        "binary_crossentropy",
        "categorical_crossentropy",
        "sparse_categorical_crossentropy",
        "mse",
    ):
        assert losses.get(n).name in (n, "mse")
    for n in ("sgd", "adam", "adamw", "rmsprop"):
        assert optimizers.get(n).name == n
    for n in ("accuracy", "auc", "precision", "recall", "mae"):
        assert metrics.get(n)[0] == n


def _public_members(module):
    names = getattr(module, "__all__", None) or [n for n in vars(module) if not n.startswith("_")]
    for name in names:
        obj = getattr(module, name)
        if inspect.ismodule(obj):
            continue
        if getattr(obj, "__module__", "").startswith("fastnn") and (
            inspect.isclass(obj) or inspect.isfunction(obj)
        ):
            yield name, obj


@pytest.mark.parametrize("modname", CORE_MODULES)
def test_public_objects_have_docstrings(modname):
    module = importlib.import_module(modname)
    assert module.__doc__, f"{modname} has no module docstring"
    missing = []
    for name, obj in _public_members(module):
        if not inspect.getdoc(obj):
            missing.append(name)
        if inspect.isclass(obj):
            for attr, member in vars(obj).items():
                if attr.startswith("_") or not inspect.isfunction(member):
                    continue
                if not inspect.getdoc(getattr(obj, attr)):
                    missing.append(f"{name}.{attr}")
    assert not missing, f"{modname}: no docstring on {missing}"


def test_errors_are_typed():
    from fastnn import errors

    assert issubclass(errors.UnknownNameError, ValueError)
    assert issubclass(errors.ShapeError, ValueError)
    assert issubclass(errors.ModelFileError, ValueError)
    assert issubclass(errors.BackendUnavailableError, RuntimeError)
    for cls in (errors.UnknownNameError, errors.ShapeError, errors.DataError):
        assert issubclass(cls, errors.FastnnError)


def test_testing_module_doctest():
    import doctest

    import fastnn.testing

    result = doctest.testmod(fastnn.testing, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0
