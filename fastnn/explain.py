"""Explanations and error bars: permutation importance and bootstrap intervals.

>>> imp = fastnn.permutation_importance(model, X_test, y_test, groups=groups)  # doctest: +SKIP
>>> imp["features"][0]                     # the column whose shuffling hurts most
{'name': 'Age', 'mean': 0.11, 'std': 0.004}                                  # doctest: +SKIP
>>> fastnn.bootstrap_ci("roc_auc", y_test, p_test)                       # doctest: +SKIP
(0.846, 0.889)

*Permutation importance* of a column: how much the model's score drops when that
column's values are shuffled among the rows (the model is not retrained). A one-hot
group is shuffled as the one raw column it came from (``groups``, derived from a
:class:`~fastnn.data.Preprocessor` by :func:`groups_from_preprocessor`). Every shuffled
copy of the rows is scored in one batched ``predict``.

*Bootstrap interval* of a metric: the ``alpha/2`` and ``1 - alpha/2`` quantiles of the
metric over ``n`` resamples of the rows drawn with replacement (seeded). ROC AUC,
accuracy, macro F1, log loss, MSE, RMSE, MAE and R² are computed for all resamples at once from
the resamples' row counts; any other metric function is called once per resample.

Only NumPy is needed (matplotlib for the plot).
"""

from __future__ import annotations

import math
import os

import numpy as np

from .errors import ConfigError, DataError, ShapeError
from .report import format_ci  # noqa: F401  (public here too: fastnn.explain.format_ci)

#: rows of shuffled copies scored per predict call
_CHUNK_ROWS = 1 << 18
_EPS = 1e-7


# --------------------------------------------------------------------------- scores
def _p1(P):
    P = np.asarray(P, dtype=np.float64)
    return P[:, 0] if P.ndim == 2 else P


def _roc_auc(y, P):
    from .metrics import roc_auc

    return roc_auc(y, _p1(P))


def _accuracy(y, P):
    P = np.asarray(P)
    y = np.asarray(y).reshape(-1)
    pred = P.argmax(axis=1) if P.ndim == 2 and P.shape[1] > 1 else (_p1(P) >= 0.5)
    return float((pred == y).mean())


def _r2(y, P):
    from .metrics import r2

    return r2(y, _p1(P))


#: score functions ``f(y, P) -> float`` by name (higher is better)
SCORES = {"roc_auc": _roc_auc, "accuracy": _accuracy, "r2": _r2}


def task_of(model) -> str:
    """ "binary", "multiclass" or "regression", from the model's loss (or its stored
    preprocessing's ``task``)."""
    task = (getattr(model, "preprocessing", None) or {}).get("task")
    if task:
        return task
    name = getattr(getattr(model, "loss", None), "name", "")
    if name == "binary_crossentropy":
        return "binary"
    return "multiclass" if "categorical" in name else "regression"


#: metrics that read ``y`` as 0/1 labels (one score a row) or class indices (k columns)
_CLASS_METRICS = ("roc_auc", "accuracy", "log_loss", "f1_macro")


def _check_targets(y, P=None, metric=None) -> np.ndarray:
    """``y`` as a float64 vector after a one-line :class:`DataError` for what no score
    can use: text labels, NaN or infinite targets or predictions ``P``, and, for a
    classification ``metric`` (a name of :data:`_CLASS_METRICS`), labels other than 0/1
    (one score a row) or the class indices of ``P``'s columns."""
    from .metrics import nonfinite_rows, odd_labels

    y = np.asarray(y)
    if y.dtype.kind not in "biuf":
        raise DataError(f"y must be numbers, got dtype {y.dtype}; map the labels to 0/1 first")
    y = y.astype(np.float64).reshape(-1)
    for what, A in (("y contains", y), ("the predictions contain", P)):
        rows = [] if A is None else nonfinite_rows(A)
        if rows:
            raise DataError(f"{what} NaN or infinite values in rows {rows}")
    if metric in _CLASS_METRICS:
        k = 1 if P is None or np.ndim(P) == 1 else np.shape(P)[1]
        top = 1 if k == 1 else k - 1
        odd = odd_labels(y, top)
        if odd is not None:
            want = "0/1 labels" if k == 1 else f"class indices 0..{top}"
            raise DataError(f"{metric} needs {want}; found {odd[0]} in rows {odd[1]}")
    return y


def default_score(task: str) -> str:
    """The score a task is judged by: roc_auc, accuracy or r2
    (:data:`fastnn.defaults.TASKS`)."""
    from .defaults import TASKS

    return TASKS[task].score if task in TASKS else "r2"


# --------------------------------------------------------------------------- importance
def groups_from_preprocessor(prep) -> dict:
    """``{raw column: [feature indices]}`` of a fitted Preprocessor: a numeric column is
    one feature, a categorical one its one-hot columns (a date column its parts)."""
    names = list(prep.feature_names_)
    groups, j = {}, 0
    for spec in prep.columns_:
        c = spec["name"]
        if spec["kind"] == "numeric":
            width = 1
        elif spec["kind"] == "categorical":
            width = len(spec["categories"]) - 1
        else:  # other encodings name their features "<column>.<part>"
            width = 0
            while j + width < len(names) and names[j + width].startswith(f"{c}."):
                width += 1
        if width > 0:
            groups[c] = list(range(j, j + width))
        j += width
    if j != len(names):  # an encoding this function does not know: one group per feature
        return {name: [i] for i, name in enumerate(names)}
    return groups


def _check_groups(groups, d, names):
    if groups is None:
        names = list(names) if names is not None else [f"x{j}" for j in range(d)]
        if len(names) != d:
            raise ShapeError(f"names has {len(names)} entries for {d} feature columns")
        return {str(n): [j] for j, n in enumerate(names)}
    out = {}
    for name, idx in groups.items():
        idx = [int(i) for i in np.atleast_1d(idx)]
        bad = [i for i in idx if not 0 <= i < d]
        if not idx or bad:
            raise ShapeError(f"group {name!r} holds feature indices {idx}; X has {d} columns")
        out[str(name)] = idx
    return out


def _score_fn(metric, task):
    if metric is None:
        metric = default_score(task)
    if callable(metric):
        return getattr(metric, "__name__", "score"), metric
    if metric not in SCORES:
        raise ConfigError(f"unknown score {metric!r}; choose one of {', '.join(SCORES)}")
    return metric, SCORES[metric]


def permutation_importance(
    model,
    X,
    y,
    groups: dict | None = None,
    names=None,
    metric=None,
    n_repeats: int = 5,
    seed: int = 0,
) -> dict:
    """Drop in score when each column (or group of columns) is shuffled.

    Args:
        model: anything with ``predict(X) -> (n, k)`` (a fastnn model).
        X: features ``(n, d)``; y: targets ``(n,)`` as the score expects.
        groups: ``{name: [feature indices]}`` shuffled together (one raw column and its
            one-hot features); default: every feature alone, named by ``names``.
        metric: "roc_auc", "accuracy", "r2" or a function ``f(y, P)``, higher is better
            (default: the model's task's score, see :func:`default_score`).
        n_repeats: shuffles per column; seed: seeds them (the same seed, the same
            numbers).

    Returns:
        ``{"metric", "baseline", "n_repeats", "seed", "features": [{"name", "mean",
        "std"}, ...]}``, features sorted by mean importance, largest first.
    """
    X = np.asarray(X)
    if X.ndim != 2:
        raise ShapeError(f"X must be 2-D (rows, features), got shape {X.shape}")
    y = np.asarray(y)
    n, d = X.shape
    if len(y) != n:
        raise ShapeError(f"X has {n} rows but y has {len(y)}")
    if int(n_repeats) < 1:
        raise ConfigError(f"n_repeats must be >= 1, got {n_repeats}")
    groups = _check_groups(groups, d, names)
    name, fn = _score_fn(metric, task_of(model))
    P = model.predict(X)
    _check_targets(y, P, name)
    baseline = float(fn(y, P))
    if not math.isfinite(baseline):
        only = np.unique(np.asarray(y, dtype=np.float64))
        why = f"y holds one class only ({only[0]:g})" if only.size == 1 else "undefined here"
        raise DataError(
            f"the {name} of the unshuffled rows is {baseline}: {why}, so no drop can be "
            "measured; explain on rows with both classes (in Python: or pass another metric)"
        )
    rng = np.random.default_rng(seed)
    jobs = [(g, idx, rng.permutation(n)) for g, idx in groups.items() for _ in range(n_repeats)]
    scores = np.empty(len(jobs))
    per_call = max(1, _CHUNK_ROWS // max(n, 1))
    for start in range(0, len(jobs), per_call):
        part = jobs[start : start + per_call]
        stack = np.tile(X, (len(part), 1))
        for i, (_, idx, perm) in enumerate(part):
            stack[i * n : (i + 1) * n, idx] = X[perm][:, idx]
        P = model.predict(stack)
        for i in range(len(part)):
            scores[start + i] = fn(y, P[i * n : (i + 1) * n])
    drops = baseline - scores.reshape(len(groups), n_repeats)
    feats = [
        {"name": g, "mean": float(drops[i].mean()), "std": float(drops[i].std())}
        for i, g in enumerate(groups)
    ]
    feats.sort(key=lambda f: -f["mean"])
    return {
        "metric": name,
        "baseline": baseline,
        "n_repeats": int(n_repeats),
        "seed": seed,
        "features": feats,
    }


def plot_importance(result: dict, path) -> None:
    """importance.png: one bar per column (mean drop in score) with its std as error bar."""
    from .report import _figure, _save_figure

    feats = result["features"][::-1]  # largest at the top
    fig = _figure((7, 0.45 * len(feats) + 1.5))
    ax = fig.add_subplot(1, 1, 1)
    ax.barh(
        [f["name"] for f in feats],
        [f["mean"] for f in feats],
        xerr=[f["std"] for f in feats],
        capsize=3,
        color="tab:blue",
    )
    ax.set_xlabel(f"drop in {result['metric']} when shuffled ({result['n_repeats']} repeats)")
    ax.set_title("permutation importance")
    ax.grid(True, axis="x", alpha=0.3)
    fig.tight_layout()
    _save_figure(fig, path)


def write_importance(result: dict, out_dir, plots=None) -> list[str]:
    """Write importance.json and importance.png into ``out_dir``; returns the names.
    ``plots``: a :class:`fastnn.plotter.Plotter` to draw the figure (the caller waits
    for it), else it is drawn here."""
    from .report import draw, write_json

    write_json(os.path.join(out_dir, "importance.json"), result)
    draw(plots, plot_importance, result, os.path.join(out_dir, "importance.png"))
    return ["importance.json", "importance.png"]


def explain_to(out_dir, model, prep, X, y, n_repeats: int = 5, seed: int = 0, plots=None) -> dict:
    """Permutation importance of ``model`` over the raw columns of ``prep`` on rows
    ``(X, y)`` (transformed by ``prep``), scored by the task's score, and written to
    ``out_dir`` (None: not written; ``plots`` as in :func:`write_importance`). What
    ``fastnn explain`` and ``fastnn train --explain`` call."""
    result = permutation_importance(
        model,
        X,
        y,
        groups=groups_from_preprocessor(prep),
        metric=default_score(prep.task),
        n_repeats=n_repeats,
        seed=seed,
    )
    if out_dir is not None:
        write_importance(result, out_dir, plots)
    return result


def format_importance(result: dict, top: int | None = None) -> str:
    """The ranking as text: one line per column, ``mean ± std``."""
    feats = result["features"][:top]
    w = max((len(f["name"]) for f in feats), default=4)
    lines = [f"  {'column':<{w}}  drop in {result['metric']} (mean ± std)"]
    lines += [f"  {f['name']:<{w}}  {f['mean']:+.4f} ± {f['std']:.4f}" for f in feats]
    return "\n".join(lines)


# --------------------------------------------------------------------------- bootstrap
#: resamples are drawn and scored in blocks of at most this many (resample, row) cells: 2 MB
#: a float64 block, so memory stays bounded whatever the number of test rows, and each
#: block's arrays stay in cache (one 1,000 x 2,000 block cost 0.2-0.4 s in page faults
#: and memory traffic on the 2-core box; 0.03 s in blocks of this size)
_BLOCK_CELLS = 1 << 18


def _resample_blocks(n: int, n_boot: int, seed, rows=None):
    """``(b, n)`` blocks of row indices drawn with replacement, one resample per row,
    ``n_boot`` rows in all: the same draws as one ``(n_boot, n)`` call of the seeded
    generator, block by block. ``rows``: where each drawn row now is (the rows were
    reordered by :func:`_by_score`)."""
    rng = np.random.default_rng(seed)
    step = max(1, _BLOCK_CELLS // max(n, 1))
    for start in range(0, n_boot, step):
        draws = rng.integers(0, n, size=(min(step, n_boot - start), n))
        yield draws if rows is None else rows[draws]


def _by_score(y, P):
    """``(y, P, rows)``: the rows in ascending order of the (positive-class) score when
    there is one score a row, and ``rows[i]``, where row ``i`` went; the resamples are
    the same rows, so every metric is unchanged, and ROC AUC needs no sort per block."""
    if P.ndim == 2 and P.shape[1] > 1:
        return y, P, None
    order = np.argsort(_p1(P), kind="mergesort")
    rows = np.empty_like(order)
    rows[order] = np.arange(len(order))
    return y[order], P[order], rows


def _counts(draws: np.ndarray, n: int) -> np.ndarray:
    """``(n_boot, n)`` float counts: how often each row is drawn in each resample."""
    n_boot = len(draws)
    flat = (draws + (np.arange(n_boot) * n)[:, None]).ravel()
    return np.bincount(flat, minlength=n_boot * n).reshape(n_boot, n).astype(np.float64)


def _w_auc(W, y, s):
    """Weighted Mann-Whitney AUC for every row of weights ``W`` (ties count half): per
    group of equal scores, in ascending order, its positives times the negatives below
    it plus half the negatives in it."""
    if np.any(s[1:] < s[:-1]):
        order = np.argsort(s, kind="mergesort")
        W, y, s = W[:, order], y[order], s[order]
    wneg = W * (y != 1)
    wpos = W - wneg
    starts = np.flatnonzero(np.concatenate([[True], s[1:] != s[:-1]]))
    if len(starts) < len(s):  # ties: sum each group of equal scores
        wneg = np.add.reduceat(wneg, starts, axis=1)
        wpos = np.add.reduceat(wpos, starts, axis=1)
    cneg = np.cumsum(wneg, axis=1)
    num = (wpos * (cneg - 0.5 * wneg)).sum(axis=1)
    den = wpos.sum(axis=1) * cneg[:, -1]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / den, np.nan)


def _w_mean(W, v):
    return W @ v / W.sum(axis=1)


def _w_r2(W, y, p):
    m1, m2 = _w_mean(W, y), _w_mean(W, y * y)
    sse = _w_mean(W, (y - p) ** 2)
    with np.errstate(invalid="ignore", divide="ignore"):
        return 1.0 - sse / (m2 - m1 * m1)


def _row_log_loss(y, P):
    P = np.asarray(P, dtype=np.float64)
    if P.ndim == 2 and P.shape[1] > 1:
        return -np.log(np.clip(P[np.arange(len(y)), y.astype(np.int64)], _EPS, 1.0))
    p = np.clip(_p1(P), _EPS, 1 - _EPS)
    return -(y * np.log(p) + (1 - y) * np.log(1 - p))


def _w_macro_f1(W, y, P):
    """Weighted macro F1 of the predicted classes for every row of weights ``W``, over
    the classes each resample holds (as true or predicted class)."""
    P = np.asarray(P)
    pred = P.argmax(axis=1) if P.ndim == 2 and P.shape[1] > 1 else (_p1(P) >= 0.5)
    t = y.astype(np.int64)
    k = int(max(t.max(initial=0), pred.max(initial=0))) + 1
    T = np.eye(k)[t]
    Q = np.eye(k)[pred.astype(np.int64)]
    tp, denom = W @ (T * Q), W @ (T + Q)
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(denom > 0, 2 * tp / denom, 0.0)
        return f1.sum(axis=1) / (denom > 0).sum(axis=1)


def _correct(y, P):
    P = np.asarray(P)
    pred = P.argmax(axis=1) if P.ndim == 2 and P.shape[1] > 1 else (_p1(P) >= 0.5)
    return (pred == y).astype(np.float64)


#: metrics computed for all resamples at once: ``f(W, y, P) -> (n_boot,)``
_VECTORISED = {
    "roc_auc": lambda W, y, P: _w_auc(W, y, _p1(P)),
    "accuracy": lambda W, y, P: _w_mean(W, _correct(y, P)),
    "log_loss": lambda W, y, P: _w_mean(W, _row_log_loss(y, P)),
    "mse": lambda W, y, P: _w_mean(W, (y - _p1(P)) ** 2),
    "rmse": lambda W, y, P: np.sqrt(_w_mean(W, (y - _p1(P)) ** 2)),
    "mae": lambda W, y, P: _w_mean(W, np.abs(y - _p1(P))),
    "r2": lambda W, y, P: _w_r2(W, y, _p1(P)),
    "f1_macro": _w_macro_f1,
}
_ALIASES = {"auc": "roc_auc", "acc": "accuracy", "loss": "log_loss", "macro_f1": "f1_macro"}


def bootstrap_ci(metric, y, p, n: int = 1000, seed=0, alpha: float = 0.05) -> tuple:
    """``(lo, hi)``: the ``1 - alpha`` percentile bootstrap interval of a metric.

    Args:
        metric: a name (roc_auc/auc, accuracy, log_loss, mse, rmse, mae, r2, f1_macro:
            all resamples at once) or a function ``f(y, p) -> float`` (called per resample).
        y: targets ``(n,)``; p: predictions ``(n,)`` or ``(n, k)`` (probabilities for
            classifiers).
        n: resamples of the rows (with replacement); seed: seeds them.
        alpha: 0.05 gives a 95% interval.

    Resamples where the metric is undefined (one class only, for ROC AUC) are skipped.
    Text labels, NaN or infinite values, and (for the classification metrics) labels
    other than 0/1 or ``p``'s class indices are a one-line :class:`DataError`.
    """
    name = None if callable(metric) else _ALIASES.get(metric, metric)
    y, P = _check_bootstrap(y, p, n, alpha, name)
    if callable(metric):
        blocks = _resample_blocks(len(y), int(n), seed)
        stats = [metric(y[rows], P[rows]) for draws in blocks for rows in draws]
        return _interval(np.array(stats, dtype=np.float64), alpha)
    if name not in _VECTORISED:
        names = ", ".join(sorted(_VECTORISED))
        raise ConfigError(f"unknown metric {metric!r} for bootstrap_ci; choose one of {names}")
    y, P, rows = _by_score(y, P)
    blocks = _resample_blocks(len(y), int(n), seed, rows)
    stats = [_VECTORISED[name](_counts(draws, len(y)), y, P) for draws in blocks]
    return _interval(np.concatenate(stats), alpha)


def _check_bootstrap(y, p, n, alpha, metric=None):
    P = np.asarray(p)
    if len(P) != len(np.asarray(y).reshape(-1)) or len(P) < 2:
        raise ShapeError(
            f"y and p need the same number (>= 2) of rows; got {np.size(y)} and {len(P)}"
        )
    y = _check_targets(y, P, metric)
    if not 0 < alpha < 1:
        raise ConfigError(f"alpha must be in (0, 1), got {alpha}")
    if int(n) < 1:
        raise ConfigError(f"n must be >= 1 resample, got {n}")
    return y, P


def _interval(stats, alpha) -> tuple:
    """The percentile interval of the finite ``stats`` ((nan, nan) when none is)."""
    stats = np.asarray(stats, dtype=np.float64)
    stats = stats[np.isfinite(stats)]
    if stats.size == 0:
        return (math.nan, math.nan)
    lo, hi = np.quantile(stats, [alpha / 2, 1 - alpha / 2])
    return (float(lo), float(hi))


def add_intervals(
    metrics: dict, y, p, task: str = "binary", n: int = 1000, seed=0, alpha: float = 0.05
) -> dict:
    """Add ``<metric>_ci: [lo, hi]`` to ``metrics`` (e.g. metrics.json's ``test`` dict)
    for each key it holds that :func:`bootstrap_ci` knows: ``auc``, ``accuracy``, ``r2``,
    ``mae``, ``rmse``, ``mse``, ``log_loss``, ``f1_macro``, and ``loss`` (as log loss)
    for a classifier; returns ``metrics``. Every interval uses the same resamples (drawn
    once from ``seed``: each equals :func:`bootstrap_ci` with that seed)."""
    y, P = _check_bootstrap(y, p, n, alpha, None if task == "regression" else "accuracy")
    keys = [
        key
        for key in metrics
        if _ALIASES.get(key, key) in _VECTORISED
        and isinstance(metrics[key], (int, float))
        and not (key == "loss" and task == "regression")  # mse, mae or huber: not known
    ]
    if not keys:
        return metrics
    stats = {key: [] for key in keys}
    y, P, rows = _by_score(y, P)
    for draws in _resample_blocks(len(y), int(n), seed, rows):
        W = _counts(draws, len(y))
        for key in keys:
            stats[key].append(_VECTORISED[_ALIASES.get(key, key)](W, y, P))
    for key in keys:
        metrics[f"{key}_ci"] = list(_interval(np.concatenate(stats[key]), alpha))
    return metrics
