"""What is benchmarked: the networks and sizes, their data sets, and fastnn models of them.

The same builders drive ``fastnn bench``, the pytest-benchmark suites in ``benchmarks/``
and the subprocess workers (which rebuild a data set from its recipe).
"""

from __future__ import annotations

import dataclasses
import math
import os

import numpy as np

__all__ = [
    "LEARNING_RATE",
    "SIZES",
    "TOY_SIZES",
    "Dataset",
    "NetSpec",
    "accuracy",
    "bench_backends",
    "bench_sizes",
    "build_model",
    "churn_dataset",
    "dataset_from_recipe",
    "split_names",
    "synthetic_dataset",
]

#: Adam's learning rate in every training comparison (the churn tutorial's).
LEARNING_RATE = 1e-3


@dataclasses.dataclass(frozen=True)
class NetSpec:
    """A benchmark network: layer widths ``(d_in, hidden..., d_out)`` and batch size.

    ``d_out == 1`` means a sigmoid output with binary cross-entropy; ``d_out > 1`` a
    softmax output with sparse categorical cross-entropy. Hidden layers use ``relu``.
    """

    name: str
    widths: tuple[int, ...]
    batch: int

    @property
    def binary(self) -> bool:
        """True for one sigmoid output (binary cross-entropy)."""
        return self.widths[-1] == 1

    @property
    def hidden(self) -> tuple[int, ...]:
        """The hidden-layer widths."""
        return self.widths[1:-1]

    def describe(self) -> str:
        """E.g. ``"11-6-6-1, batch 32"``."""
        return "-".join(map(str, self.widths)) + f", batch {self.batch}"


#: The three sizes of issue 5: the churn network, a mid-sized and a BLAS-bound network.
SIZES = {
    "tiny": NetSpec("tiny", (11, 6, 6, 1), 32),
    "mid": NetSpec("mid", (1024, 512, 512, 10), 256),
    "big": NetSpec("big", (784, 1024, 1024, 10), 256),
}

#: The same three shapes cut down, for smoke tests (``FASTNN_BENCH_TOY=1``).
TOY_SIZES = {
    "tiny": NetSpec("tiny", (11, 6, 6, 1), 32),
    "mid": NetSpec("mid", (32, 16, 16, 10), 16),
    "big": NetSpec("big", (24, 32, 32, 10), 16),
}


def split_names(text: str) -> list[str]:
    """``"a, B,,c"`` -> ``["a", "b", "c"]``."""
    return [t.strip().lower() for t in text.split(",") if t.strip()]


def bench_sizes() -> dict[str, NetSpec]:
    """:data:`SIZES`, or :data:`TOY_SIZES` when ``FASTNN_BENCH_TOY`` is set (CI smoke)."""
    return TOY_SIZES if os.environ.get("FASTNN_BENCH_TOY") else SIZES


def bench_backends() -> list[str]:
    """The fastnn backends to benchmark: every one that works here, or the
    comma-separated list in ``FASTNN_BENCH_BACKENDS``."""
    import fastnn

    names = fastnn.available_backends()
    wanted = os.environ.get("FASTNN_BENCH_BACKENDS")
    if wanted:
        names = [n for n in split_names(wanted) if n in names]
    return names


@dataclasses.dataclass
class Dataset:
    """A train/test split: ``X (n, d)`` float32; ``y (n,)`` 0/1 float32 for binary
    tasks, int64 class indices otherwise."""

    name: str
    Xtr: np.ndarray
    ytr: np.ndarray
    Xte: np.ndarray
    yte: np.ndarray
    source: str
    #: how to rebuild it in another process (see :func:`dataset_from_recipe`)
    recipe: dict | None = None

    def head(self, rows: int) -> Dataset:
        """The first ``rows`` training rows (the test set unchanged)."""
        recipe = None if self.recipe is None else {**self.recipe, "head": rows}
        return dataclasses.replace(self, Xtr=self.Xtr[:rows], ytr=self.ytr[:rows], recipe=recipe)


def dataset_from_recipe(recipe: dict) -> Dataset:
    """Rebuild a :class:`Dataset` from its ``recipe`` (used by subprocess workers)."""
    kw = {k: v for k, v in recipe.items() if k not in ("kind", "head")}
    data = churn_dataset() if recipe["kind"] == "churn" else synthetic_dataset(**kw)
    return data.head(recipe["head"]) if "head" in recipe else data


def churn_dataset(dtype=np.float32) -> Dataset:
    """The bundled bank-churn data with the tutorial's preprocessing.

    Drops RowNumber/CustomerId/Surname, one-hot encodes Geography and Gender with the
    first level dropped (11 features), splits 80/20 with seed 0 and standardizes with the
    training rows' statistics: :func:`fastnn.data.churn_arrays`, the recipe the CLI runs.
    Returns 8,000 training and 2,000 test rows.
    """
    from fastnn.data import churn_arrays

    X_tr, y_tr, X_te, y_te = churn_arrays(dtype=dtype)
    return Dataset(
        "churn",
        X_tr,
        y_tr,
        X_te,
        y_te,
        "fastnn/data/churn.csv.gz (tutorial preprocessing, 80/20 split, seed 0)",
        {"kind": "churn"} if np.dtype(dtype) == np.float32 else None,
    )


def synthetic_dataset(
    n_train: int, n_test: int, d: int, k: int, seed: int = 0, dtype=np.float32
) -> Dataset:
    """Seeded, learnable synthetic data: ``k`` Gaussian clusters (two when ``k == 1``,
    labelled 0/1) in ``d`` dimensions, ``X = mu[y] + N(0, 1)`` with cluster means of
    scale ``4 / sqrt(d)``, so a few epochs reach a clearly-better-than-chance accuracy
    and a broken trainer shows."""
    rng = np.random.default_rng(seed)
    n = n_train + n_test
    n_classes = max(k, 2)
    mu = rng.standard_normal((n_classes, d)) * (4.0 / math.sqrt(d))
    labels = rng.integers(0, n_classes, n)
    X = (mu[labels] + rng.standard_normal((n, d))).astype(dtype)
    y = labels.astype(dtype) if k == 1 else labels.astype(np.int64)
    recipe = {"kind": "synthetic", "n_train": n_train, "n_test": n_test, "d": d, "k": k}
    return Dataset(
        f"synthetic {d}->{k}",
        X[:n_train],
        y[:n_train],
        X[n_train:],
        y[n_train:],
        f"synthetic: {n_classes} Gaussian clusters in {d} dimensions, seed {seed}",
        {**recipe, "seed": seed} if np.dtype(dtype) == np.float32 else None,
    )


def build_model(spec: NetSpec, backend: str, optimizer="adam", dtype="float32", seed: int = 0):
    """A built, compiled fastnn model of ``spec`` on ``backend`` (no metrics: peers train
    without them too). ``optimizer`` is ``"adam"`` (lr 1e-3), ``"sgd_momentum"`` (lr
    0.01, momentum 0.9) or an optimizer instance."""
    import fastnn
    from fastnn.layers import Dense

    layers = [Dense(w, activation="relu") for w in spec.hidden]
    layers.append(Dense(spec.widths[-1], activation="sigmoid" if spec.binary else "softmax"))
    model = fastnn.Sequential(layers, dtype=dtype, backend=backend)
    if optimizer == "adam":
        optimizer = fastnn.optimizers.Adam(learning_rate=LEARNING_RATE)
    elif optimizer == "sgd_momentum":
        optimizer = fastnn.optimizers.SGD(learning_rate=0.01, momentum=0.9)
    model.build(spec.widths[0], seed=seed)
    model.compile(
        optimizer=optimizer,
        loss="binary_crossentropy" if spec.binary else "sparse_categorical_crossentropy",
    )
    return model


def accuracy(P: np.ndarray, y: np.ndarray) -> float:
    """Share of rows whose predicted class (``P >= 0.5`` for one output, else the
    arg-max) equals ``y``."""
    P = np.asarray(P)
    if P.ndim == 1 or P.shape[1] == 1:
        pred = (P.reshape(-1) >= 0.5).astype(np.int64)
    else:
        pred = P.argmax(axis=1)
    return float((pred == np.asarray(y).reshape(-1).astype(np.int64)).mean())
