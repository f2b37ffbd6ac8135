"""What ``fastnn train`` prints and writes: the data summary, the results of each task,
metrics.json, history.json and the plots (history.png; predicted.png for regression)."""

from __future__ import annotations

import json
import math
import os

import numpy as np


def fmt(x, digits=4) -> str:
    """A number with ``digits`` decimals, or "n/a" for None/NaN."""
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def json_safe(x):
    """``x`` with NumPy values as lists/numbers and non-finite floats as None."""
    if isinstance(x, dict):
        return {str(k): json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [json_safe(v) for v in x]
    if hasattr(x, "tolist"):
        return json_safe(x.tolist())
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def write_json(path, data) -> None:
    """Write ``data`` as indented JSON (see :func:`json_safe`)."""
    from .io import atomic_write_bytes

    atomic_write_bytes(path, (json.dumps(json_safe(data), indent=2) + "\n").encode("utf-8"))


def format_ci(label: str, value: float, ci, digits: int = 3, spec: str | None = None) -> str:
    """``ROC AUC 0.868 (0.846-0.889)``: the value and its interval with ``digits``
    decimals; ``spec`` (e.g. ".4g") replaces them, for numbers in a target's own units:
    the value to that many significant digits and the bounds to the same decimals
    (``MAE 45.30 (38.30-52.23)``). A negative bound is joined with " to "."""
    lo, hi = ci
    if spec is not None and spec.endswith("g"):
        spec = f".{_decimals(value, int(spec[1:-1] or 6))}f"
    spec = spec or f".{digits}f"
    sep = " to " if min(lo, hi) < 0 else "-"
    return f"{label} {value:{spec}} ({lo:{spec}}{sep}{hi:{spec}})"


def _decimals(value: float, significant: int) -> int:
    """Decimals that show ``value`` to ``significant`` digits (0 for big numbers)."""
    if not math.isfinite(value) or value == 0:
        return max(significant - 1, 0)
    return max(significant - 1 - math.floor(math.log10(abs(value))), 0)


def fmt_matrix(C, labels) -> str:
    """A confusion matrix as text, rows and columns labelled with the class names."""
    names = [str(x) for x in labels]
    w = max(max(len(n) for n in names) + 6, max(len(f"{int(v):,}") for v in C.ravel()) + 1, 8)
    head = " " * (w + 2) + "".join(f"{'pred ' + n:>{w}}" for n in names)
    rows = [head]
    for i, n in enumerate(names):
        rows.append(f"  {'true ' + n:<{w}}" + "".join(f"{int(v):>{w},}" for v in C[i]))
    return "\n".join(rows)


# --------------------------------------------------------------------------- summary
def target_lines(prep, y_all, task_given: bool = False) -> list[str]:
    """The summary lines about the target: task, class balance or value range."""
    why = "as given by --task" if task_given else _why(prep)
    lines = [f"task: {prep.task} ({why})"]
    n = len(y_all)
    if prep.task == "binary":
        n_pos = int(y_all.sum())
        lines.append(
            f"positives: {n_pos:,} of {n:,} ({n_pos / n:.1%}); positive class "
            f"{prep.positive_class!r}"
        )
    elif prep.task == "multiclass":
        counts = np.bincount(y_all.astype(np.int64), minlength=len(prep.classes_))
        shown = ", ".join(f"{c}: {int(k):,}" for c, k in zip(prep.classes_, counts, strict=True))
        lines.append(f"classes: {len(prep.classes_)} ({shown})")
    else:
        v = prep.inverse_target(y_all)
        lines.append(
            f"target: mean {prep.target_mean_:.6g}, std {prep.target_std_:.6g} (training rows), "
            f"range {v.min():.6g} .. {v.max():.6g}; standardized for training"
        )
    if prep.target_mapping and prep.task == "binary":
        lines.append(
            "target mapping: " + ", ".join(f"{k!r} -> {v}" for k, v in prep.target_mapping.items())
        )
    return lines


def _why(prep) -> str:
    if prep.task == "binary":
        return "the target has two values"
    if prep.task == "multiclass":
        kind = "text" if prep.target_kind_ == "string" else "integer"
        return f"{kind} target with {len(prep.classes_)} values; --task overrides"
    return "numeric target; --task overrides"


def feature_line(prep, drop_cols) -> str:
    """``features: 11 (8 numeric; one-hot: ...; dates: ...); dropped: ...``."""
    desc = prep.describe()
    cat = ", ".join(f"{k} -> {v}" for k, v in desc["categorical"].items())
    dates = [s["name"] for s in prep.columns_ if s["kind"] == "date"]
    return (
        f"features: {prep.n_features} ({len(desc['numeric'])} numeric"
        + (f"; one-hot: {cat}" if cat else "")
        + (f"; dates -> 4 each: {', '.join(dates)}" if dates else "")
        + ")"
        + (f"; dropped: {', '.join(map(str, drop_cols))}" if drop_cols else "")
    )


def network_line(model, prep, settings) -> str:
    """``backend: numba (cpu); network: 11 -> 6 relu -> 6 relu -> 1 sigmoid``."""
    from .defaults import TASKS

    be = model.backend
    head = TASKS[prep.task]
    drop = f" (dropout {settings.dropout})" if settings.dropout else ""
    parts = [f"{h} {settings.activation}{drop}" for h in settings.hidden]
    parts.append(f"{head.units(prep.n_outputs)} {head.activation}")
    return f"backend: {be.name} ({be.device}); network: {prep.n_features} -> " + " -> ".join(parts)


# --------------------------------------------------------------------------- results
#: what each task prints after training: (key in the test metrics, label, number format)
_RESULT_FIELDS = {
    "binary": (("accuracy", "accuracy", ".4f"), ("auc", "ROC AUC", ".4f"), ("loss", "loss", ".4f")),
    "multiclass": (
        ("accuracy", "accuracy", ".4f"),
        ("f1_macro", "macro F1", ".4f"),
        ("log_loss", "log loss", ".4f"),
    ),
    "regression": (("r2", "R2", ".4f"), ("mae", "MAE", ".6g"), ("rmse", "RMSE", ".6g")),
}


def _result_field(test: dict, key: str, label: str, spec: str) -> str:
    """``ROC AUC 0.868 (0.846-0.889)`` with an interval (3 decimals, or 4 significant
    digits in the target's units), ``ROC AUC 0.8684`` without one."""
    value, ci = test[key], test.get(f"{key}_ci")
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return f"{label} n/a"
    if ci is not None and all(v is not None and math.isfinite(v) for v in ci):
        return format_ci(label, value, ci, spec=".3f" if spec.endswith("f") else ".4g")
    return f"{label} {value:{spec}}"


def result_lines(prep, test: dict) -> list[str]:
    """The lines printed after training (test metrics, with their 95% intervals when
    ``test`` has them; the confusion matrix)."""
    fields = [_result_field(test, *f) for f in _RESULT_FIELDS[prep.task]]
    first = "test " + "   ".join(fields) + f"   ({test['rows']:,} rows)"
    if prep.task == "regression":
        return [first]
    return [
        first,
        "confusion matrix (rows: true class, columns: predicted class):",
        fmt_matrix(test["confusion_matrix"], prep.classes_),
    ]


# --------------------------------------------------------------------------- plots
def _save_figure(fig, path) -> None:
    """Render ``fig`` as PNG and write it atomically (no half-written file on Ctrl-C).
    zlib level 1: a tenth larger than the default 6, 30 ms less a figure."""
    from io import BytesIO

    from .io import atomic_write_bytes

    png = BytesIO()
    fig.savefig(png, format="png", pil_kwargs={"compress_level": 1})
    atomic_write_bytes(path, png.getvalue())


def _figure(size, margins=None):
    """A figure of ``size`` inches at 100 dpi on the Agg canvas. ``margins`` (left,
    right, bottom, top, wspace as figure fractions) place the axes at once: laid out by
    ``tight_layout`` instead, a figure is drawn twice (0.17 -> 0.11 s for tune.png, 0.26
    -> 0.16 for history.png, 2-core EPYC)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=100)
    FigureCanvasAgg(fig)
    if margins is not None:
        left, right, bottom, top, wspace = margins
        fig.subplots_adjust(left=left, right=right, bottom=bottom, top=top, wspace=wspace)
    return fig


def plot_history(history: dict, path, best_epoch=None) -> None:
    """Training and validation curves per epoch: the loss, and the task's metrics
    (accuracy and AUC, or R2); a dotted line at the epoch whose weights were kept."""
    fig = _figure((10, 4), margins=(0.07, 0.985, 0.125, 0.92, 0.2))
    second = "r2" if "r2" in history else "accuracy"
    title = "R2 per epoch" if second == "r2" else "accuracy and AUC per epoch"
    for i, (key, name) in enumerate([("loss", "loss per epoch"), (second, title)]):
        ax = fig.add_subplot(1, 2, i + 1)
        keys = [key, f"val_{key}"] + (["auc", "val_auc"] if key == "accuracy" else [])
        for k in keys:
            vals = history.get(k)
            if vals:
                ax.plot(range(1, len(vals) + 1), vals, label=k)
        if best_epoch:
            ax.axvline(best_epoch, color="grey", linestyle=":", label=f"best epoch {best_epoch}")
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.grid(True, alpha=0.3)
        ax.legend()
    _save_figure(fig, path)


def plot_predicted(actual, predicted, target, path) -> None:
    """Predicted against actual test values, with the line of perfect predictions."""
    fig = _figure((5, 5))
    ax = fig.add_subplot(1, 1, 1)
    ax.scatter(actual, predicted, s=8, alpha=0.5)
    lo = float(min(np.min(actual), np.min(predicted)))
    hi = float(max(np.max(actual), np.max(predicted)))
    ax.plot([lo, hi], [lo, hi], color="grey", linestyle="--", label="predicted = actual")
    ax.set_xlabel(f"actual {target}")
    ax.set_ylabel(f"predicted {target}")
    ax.set_title("test rows: predicted vs actual")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    _save_figure(fig, path)


def draw(plots, fn, *args) -> None:
    """``fn(*args)`` through ``plots`` (a :class:`fastnn.plotter.Plotter`; its caller
    waits for it), or here and now when ``plots`` is None (a library call)."""
    if plots is None:
        fn(*args)
    else:
        plots.submit(fn, *args)


def history_files(out_dir, history, plots=None) -> list[str]:
    """Write history.json and history.png; return their names. ``plots``: a
    :class:`fastnn.plotter.Plotter` the figure is sent to (the caller waits for it), else
    it is drawn here. The commands call it as soon as the training ends, so the child
    draws while the test metrics are computed."""
    write_json(os.path.join(out_dir, "history.json"), history.history)
    path = os.path.join(out_dir, "history.png")
    draw(plots, plot_history, history.history, path, history.best_epoch)
    return ["history.json", "history.png"]


def prediction_files(out_dir, prep, test_pred, plots=None) -> list[str]:
    """predicted.png for a regression's test rows (``test_pred``: actual and predicted
    values), through ``plots`` as :func:`history_files`; the names written."""
    if prep.task != "regression" or test_pred is None:
        return []
    actual, predicted = test_pred
    path = os.path.join(out_dir, "predicted.png")
    draw(plots, plot_predicted, actual, predicted, prep.target, path)
    return ["predicted.png"]
