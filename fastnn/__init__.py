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

__all__ = [
    "Backend",
    "Sequential",
    "__version__",
    "available_backends",
    "backend_status",
    "callbacks",
    "data",
    "errors",
    "explain_step",
    "get_backend",
    "initializers",
    "layers",
    "load",
    "losses",
    "metrics",
    "optimizers",
    "save",
    "set_backend",
    "set_seed",
    "use_backend",
]
