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


def nonfinite_rows(A, most: int = 5) -> list[int]:
    """The first ``most`` rows of ``A`` holding a NaN or an infinity (none: ``[]``), for
    the one-line errors of the functions that take targets or predictions."""
    A = np.asarray(A, dtype=np.float64)
    return np.flatnonzero(~np.isfinite(A.reshape(len(A), -1)).all(axis=1))[:most].tolist()


def odd_labels(y, top: int | None = None, most: int = 5):
    """``(values, rows)``, the first ``most`` of each, of the entries of ``y`` that are not
    class indices ``0..top`` (any index >= 0 when ``top`` is None), or None when all are."""
    y = np.asarray(y).reshape(-1)
    f = y.astype(np.float64)
    odd = (f < 0) | (f != np.round(f))
    if top is not None:
        odd |= f > top
    if not odd.any():
        return None
    return np.unique(y[odd])[:most].tolist(), np.flatnonzero(odd)[:most].tolist()


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
    P = np.asarray(y_prob, dtype=np.float64)
    P = P.reshape(P.shape[0], -1)
    return float(np.abs(P - np.asarray(y_true, dtype=np.float64).reshape(P.shape)).mean())


def _f1_per_class(t, p, labels) -> list[float]:
    out = []
    for c in labels:
        tp = int(((p == c) & (t == c)).sum())
        denom = int((p == c).sum()) + int((t == c).sum())
        out.append(2.0 * tp / denom if denom else 0.0)
    return out


def f1(y_true, y_prob, sparse=False) -> float:
    """F1 score: of the positive class for one sigmoid output (threshold 0.5); for several
    outputs the macro average over the classes present in the true or predicted labels
    (as scikit-learn's ``f1_score(average="macro")``)."""
    t, p = _labels(y_true, y_prob, sparse)
    if y_prob.shape[1] == 1:
        return _f1_per_class(t, p, [1])[0]
    return macro_f1(t, p)


def macro_f1(y_true, y_pred) -> float:
    """Macro-averaged F1 of class indices ``y_true`` and ``y_pred`` (both ``(n,)``)."""
    t = np.asarray(y_true).astype(np.int64).reshape(-1)
    p = np.asarray(y_pred).astype(np.int64).reshape(-1)
    labels = np.union1d(t, p)
    return float(np.mean(_f1_per_class(t, p, labels))) if labels.size else float("nan")


def log_loss(y_true, y_prob, sparse=False, eps: float = 1e-15) -> float:
    """Mean cross-entropy of the predicted probabilities (clipped to ``[eps, 1-eps]``):
    binary for one output, categorical for several (one-hot or, when ``sparse``, class
    indices)."""
    P = np.clip(np.asarray(y_prob, dtype=np.float64), eps, 1 - eps)
    if P.shape[0] == 0:
        return float("nan")
    if P.shape[1] == 1:
        y = np.asarray(y_true, dtype=np.float64).reshape(-1)
        p = P[:, 0]
        return float(-(y * np.log(p) + (1 - y) * np.log(1 - p)).mean())
    idx = np.asarray(y_true).astype(np.int64).reshape(-1) if sparse else y_true.argmax(axis=1)
    return float(-np.log(P[np.arange(P.shape[0]), idx]).mean())


def r2(y_true, y_pred, sparse=False) -> float:
    """Coefficient of determination ``1 - SS_res / SS_tot`` (averaged over outputs; NaN
    when the targets are constant). Unchanged by standardizing the target."""
    P = np.asarray(y_pred, dtype=np.float64)
    P = P.reshape(P.shape[0], -1)
    Y = np.asarray(y_true, dtype=np.float64).reshape(P.shape)
    ss_tot = ((Y - Y.mean(axis=0)) ** 2).sum(axis=0)
    if P.shape[0] == 0 or not (ss_tot > 0).all():
        return float("nan")
    return float((1 - ((Y - P) ** 2).sum(axis=0) / ss_tot).mean())


def rmse(y_true, y_pred, sparse=False) -> float:
    """Root mean squared error."""
    P = np.asarray(y_pred, dtype=np.float64)
    P = P.reshape(P.shape[0], -1)
    Y = np.asarray(y_true, dtype=np.float64).reshape(P.shape)
    return float(np.sqrt(((Y - P) ** 2).mean())) if P.size else float("nan")


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
    "f1": f1,
    "log_loss": log_loss,
    "r2": r2,
    "rmse": rmse,
}
#: metrics that only make sense for one sigmoid output
BINARY_ONLY = {"auc", "precision", "recall"}


def get(name: str):
    """Return ``(canonical_name, function)`` for a metric name."""
    if not isinstance(name, str) or name.lower() not in METRICS:
        raise UnknownNameError("metric", name, METRICS)
    name = "accuracy" if name.lower() == "acc" else name.lower()
    return name, METRICS[name]
