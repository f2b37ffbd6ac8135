"""Metrics, computed on the host from predicted probabilities and the targets.

A metric is a function ``f(y_true, y_prob, sparse) -> float`` where ``y_prob (n, k)`` are
the model's outputs (probabilities for classifiers) and ``y_true`` the prepared targets:
``(n, k)`` arrays, or class indices ``(n,)`` when ``sparse``.
"""

from __future__ import annotations

import numpy as np

from .errors import UnknownNameError


def _labels(y_true, y_prob, sparse):
    if y_prob.shape[1] == 1:  # binary
        return y_true.reshape(-1).astype(np.int64), (y_prob[:, 0] >= 0.5).astype(np.int64)
    pred = y_prob.argmax(axis=1)
    true = y_true if sparse else y_true.argmax(axis=1)
    return np.asarray(true).astype(np.int64), pred


def accuracy(y_true, y_prob, sparse=False) -> float:
    """Fraction of rows whose predicted class (p >= 0.5, or argmax) is the true class."""
    t, p = _labels(y_true, y_prob, sparse)
    return float((t == p).mean()) if t.size else float("nan")


def roc_auc(y_true, y_score) -> float:
    """Area under the ROC curve for binary labels (Mann-Whitney U, ties counted half).

    Returns NaN when only one class is present.
    """
    y_true = np.asarray(y_true).reshape(-1)
    y_score = np.asarray(y_score, dtype=np.float64).reshape(-1)
    pos = y_true == 1
    n_pos = int(pos.sum())
    n_neg = y_true.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(y_score, kind="mergesort")
    s = y_score[order]
    ranks = np.empty(s.size, dtype=np.float64)
    # average ranks over ties
    boundaries = np.flatnonzero(np.diff(s)) + 1
    starts = np.concatenate(([0], boundaries))
    ends = np.concatenate((boundaries, [s.size]))
    avg = (starts + ends + 1) / 2.0
    ranks[order] = np.repeat(avg, ends - starts)
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def auc(y_true, y_prob, sparse=False) -> float:
    """ROC AUC of a binary classifier (one output)."""
    return roc_auc(y_true, y_prob[:, 0])


def precision(y_true, y_prob, sparse=False) -> float:
    """Binary precision: TP / (TP + FP) at threshold 0.5 (0 when nothing is predicted)."""
    t, p = _labels(y_true, y_prob, sparse)
    tp = int(((p == 1) & (t == 1)).sum())
    pp = int((p == 1).sum())
    return tp / pp if pp else 0.0


def recall(y_true, y_prob, sparse=False) -> float:
    """Binary recall: TP / (TP + FN) at threshold 0.5."""
    t, p = _labels(y_true, y_prob, sparse)
    tp = int(((p == 1) & (t == 1)).sum())
    ap = int((t == 1).sum())
    return tp / ap if ap else 0.0


def mae(y_true, y_prob, sparse=False) -> float:
    """Mean absolute error."""
    return float(np.abs(np.asarray(y_prob) - y_true).mean())


def confusion_matrix(y_true, y_pred, n_classes: int | None = None) -> np.ndarray:
    """``C[i, j]`` = number of rows of true class ``i`` predicted as ``j``."""
    y_true = np.asarray(y_true).astype(np.int64).reshape(-1)
    y_pred = np.asarray(y_pred).astype(np.int64).reshape(-1)
    k = n_classes or int(max(y_true.max(initial=0), y_pred.max(initial=0)) + 1)
    C = np.zeros((k, k), dtype=np.int64)
    np.add.at(C, (y_true, y_pred), 1)
    return C


METRICS = {
    "accuracy": accuracy,
    "acc": accuracy,
    "auc": auc,
    "precision": precision,
    "recall": recall,
    "mae": mae,
}
#: metrics that only make sense for one sigmoid output
BINARY_ONLY = {"auc", "precision", "recall"}


def get(name: str):
    """Return ``(canonical_name, function)`` for a metric name."""
    if not isinstance(name, str) or name.lower() not in METRICS:
        raise UnknownNameError("metric", name, METRICS)
    name = "accuracy" if name.lower() == "acc" else name.lower()
    return name, METRICS[name]
