"""fastnn: a small, fast neural-network library that explains itself.

>>> import fastnn
>>> from fastnn.layers import Dense
>>> model = fastnn.Sequential([Dense(6, activation="relu", input_dim=11),
...                            Dense(6, activation="relu"),
...                            Dense(1, activation="sigmoid")])
>>> model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])

Switch device in one line: ``fastnn.set_backend("numba")``, ``with
fastnn.use_backend("cupy"): ...``, ``FASTNN_BACKEND=numpy``, or ``model.to("cupy")``.
Only NumPy is needed to import fastnn; Numba and CuPy are optional.
``fastnn.tune`` (Optuna, extra "tune"), ``fastnn.permutation_importance`` and
``fastnn.bootstrap_ci`` load their modules on first use.
"""

from . import callbacks, data, errors, initializers, layers, losses, metrics, optimizers
from ._random import set_seed
from .backends import (
    Backend,
    available_backends,
    backend_status,
    get_backend,
    set_backend,
    use_backend,
)
from .io import load, save
from .layers import Sequential
from .steps import explain_step

__version__ = "0.1.0"


def export_onnx(model, path, unknown: str = "error") -> str:
    """Write a model (or a model file) as ONNX; see :mod:`fastnn.onnx` (extra "onnx")."""
    from .onnx import export_onnx as _export_onnx

    return _export_onnx(model, path, unknown)


def predict_frame(df, model, **kwargs):
    """Score a pandas DataFrame (one Dask partition); see :func:`fastnn.frame.predict_frame`."""
    from .frame import predict_frame as _predict_frame

    return _predict_frame(df, model, **kwargs)


#: public names whose modules load on first use: name -> (module, attribute or None)
_LAZY = {
    "tune": ("fastnn.tune", None),
    "permutation_importance": ("fastnn.explain", "permutation_importance"),
    "bootstrap_ci": ("fastnn.explain", "bootstrap_ci"),
}


def __getattr__(name):
    if name not in _LAZY:
        raise AttributeError(f"module 'fastnn' has no attribute {name!r}")
    import importlib

    module, attr = _LAZY[name]
    mod = importlib.import_module(module)
    return mod if attr is None else getattr(mod, attr)


__all__ = [
    "Backend",
    "Sequential",
    "__version__",
    "available_backends",
    "backend_status",
    "bootstrap_ci",
    "callbacks",
    "data",
    "errors",
    "export_onnx",
    "explain_step",
    "get_backend",
    "initializers",
    "layers",
    "load",
    "losses",
    "metrics",
    "optimizers",
    "permutation_importance",
    "predict_frame",
    "save",
    "set_backend",
    "set_seed",
    "tune",
    "use_backend",
]
