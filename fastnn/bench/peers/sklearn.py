"""scikit-learn peer: ``MLPClassifier`` with the shared recipe."""

from __future__ import annotations

import time
import warnings

import numpy as np

from ..cases import LEARNING_RATE
from ..contenders import Prepared, Task, Trained

__all__ = ["prepare"]


def _classifier(task: Task, epochs: int):
    from sklearn.neural_network import MLPClassifier

    spec = task.spec
    return MLPClassifier(
        hidden_layer_sizes=spec.hidden,
        activation="relu",
        solver="adam",
        alpha=0.0,
        batch_size=spec.batch,
        learning_rate_init=LEARNING_RATE,
        max_iter=epochs,
        tol=0.0,
        n_iter_no_change=epochs + 1,
        shuffle=True,
        random_state=task.seed,
        early_stopping=False,
    )


def prepare(task: Task) -> Prepared:
    """``MLPClassifier(solver="adam")``, same hidden sizes and batch, ``alpha=0`` (no L2
    penalty), a fixed number of epochs (``max_iter``, with ``tol=0`` and
    ``n_iter_no_change`` past the end so it never stops early)."""
    from sklearn.exceptions import ConvergenceWarning

    spec, d = task.spec, task.data
    ytr = d.ytr.astype(np.int64)

    def fit(epochs, X, y):
        clf = _classifier(task, epochs)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            t0 = time.perf_counter()
            clf.fit(X, y)
            return clf, time.perf_counter() - t0

    rows = min(d.Xtr.shape[0], 4 * spec.batch)
    t0 = time.perf_counter()
    fit(1, d.Xtr[:rows], ytr[:rows])
    warmup = time.perf_counter() - t0

    def run() -> Trained:
        clf, seconds = fit(task.epochs, d.Xtr, ytr)
        acc = float((clf.predict(d.Xte) == d.yte.astype(np.int64)).mean())
        return Trained(seconds, acc, int(clf.n_iter_), {"dtype": str(clf.coefs_[0].dtype)})

    return Prepared(run, warmup)
