"""The target column: which task it asks for, and its encoding.

Rules (:func:`guess_task`), on the non-blank target cells:

* exactly two distinct values -> ``"binary"`` (the later sorted value is class 1);
* text with three or more values -> ``"multiclass"``;
* integers with few distinct values that repeat (at most :data:`GUESS_MAX_INT_CLASSES`
  values, each seen :data:`GUESS_MIN_ROWS_PER_CLASS` times on average) -> ``"multiclass"``;
* any other numbers -> ``"regression"``.

Classes are kept in sorted order (numbers numerically, text as strings) in the target's
own values; class ``i`` is model output ``i`` (for binary: ``classes[1]`` is the positive
class). A regression target is standardized with the training rows' mean and standard
deviation, and predictions are mapped back to the target's units.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..defaults import TASK_NAMES
from ..errors import ConfigError, DataError

#: the most classes a classifier target may have
MAX_CLASSES = 200
#: an integer target with at most this many distinct values may be multi-class ...
GUESS_MAX_INT_CLASSES = 20
#: ... if each value appears at least this many times on average
GUESS_MIN_ROWS_PER_CLASS = 5


@dataclass
class TargetFit:
    """What :func:`fit_target` learned from the target column.

    Attributes:
        task: one of :data:`fastnn.defaults.TASK_NAMES`.
        kind: "numeric" (labels are numbers) or "string" (labels are text).
        classes: the sorted class labels (None for regression).
        codes: float64 per row: the class index, or the target value for regression;
            NaN where blank.
        blank: the blank cells.
    """

    task: str
    kind: str
    classes: list | None
    codes: np.ndarray
    blank: np.ndarray


def _number(x: float):
    """A class label from a float: int when integral, so JSON and CSV show ``3``."""
    x = float(x)
    return int(x) if x.is_integer() else x


def guess_task(numeric: bool, distinct, n_rows: int) -> str:
    """The task for a target with these ``distinct`` non-blank values over ``n_rows``
    non-blank cells (``numeric``: every non-blank cell is a number); see the module
    docstring for the rules."""
    k = len(distinct)
    if k == 2:
        return "binary"
    if not numeric:
        return "multiclass"
    integral = bool(np.all(np.asarray(distinct, dtype=np.float64) % 1 == 0))
    if integral and 3 <= k <= GUESS_MAX_INT_CLASSES and n_rows >= GUESS_MIN_ROWS_PER_CLASS * k:
        return "multiclass"
    return "regression"


def _values_text(values, limit=10) -> str:
    """``'a', 'b', ... (12 in all)``: the first ``limit`` values for a message."""
    values = list(values)
    shown = ", ".join(repr(v) for v in values[:limit])
    return shown + (f", ... ({len(values)} in all)" if len(values) > limit else "")


def _check_override(task, name, numeric, distinct, bad_text, rows_text):
    """One-line errors for a ``task`` the target cannot be."""
    k = len(distinct)
    shown = _values_text([_number(v) for v in distinct] if numeric else distinct, limit=6)
    if task == "binary" and k != 2:
        raise DataError(
            f"target {name!r} has {k} different values ({shown}); --task binary needs exactly two"
        )
    if task == "multiclass":
        if k < 2:
            raise DataError(f"target {name!r} has a single value ({shown}); a classifier needs two")
        if numeric and not np.all(np.asarray(distinct) % 1 == 0):
            frac = [_number(v) for v in distinct if v % 1 != 0][:3]
            raise DataError(
                f"target {name!r} has non-integer numbers ({_values_text(frac)}); --task "
                "multiclass needs class labels (use --task regression for a quantity)"
            )
    if task == "regression" and not numeric:
        raise DataError(
            f"target {name!r} has text values ({_values_text(bad_text, 3)} in {rows_text}); "
            "--task regression needs numbers"
        )


def fit_target(s, name, task: str | None, numeric_view, label_view, rows_text) -> TargetFit:
    """Decide the task of target column ``s`` (or check ``task``) and encode it.

    Args:
        s: the target column (a pandas Series), all rows.
        name: its name (for messages).
        task: None to guess, else one of :data:`~fastnn.defaults.TASK_NAMES`.
        numeric_view, label_view: the Preprocessor's cell readers.
        rows_text: ``mask -> "CSV lines 3, 7"`` for messages.

    Raises:
        DataError: an impossible ``task``, infinite or non-numeric values in a regression
            target, a single value, or more than :data:`MAX_CLASSES` classes.
    """
    if task is not None and task not in TASK_NAMES:
        raise ConfigError(f"task must be one of {', '.join(TASK_NAMES)}; got {task!r}")
    v, blank, bad = numeric_view(s)
    inf = bad & _is_inf_text(s, bad)
    numeric = not (bad & ~inf).any()
    if numeric:
        if inf.any():
            raise DataError(
                f"target {name!r} has infinite values in {rows_text(inf)}; fix or remove those rows"
            )
        distinct = np.unique(v[~blank])
        labels, text_bad = None, []
    else:
        labels = label_view(s)
        present = np.array([x is not None for x in labels], dtype=bool)
        blank = ~present
        distinct = np.array(sorted(set(labels[present].tolist())), dtype=object)
        text_bad = sorted({str(x) for x in labels[bad & ~inf]})
    n_rows = int((~blank).sum())
    if task is None:
        task = guess_task(numeric, distinct, n_rows)
    else:
        _check_override(task, name, numeric, distinct, text_bad, rows_text(bad & ~inf))
    if task == "regression":
        return TargetFit(task, "numeric", None, v, blank)
    if len(distinct) < 2:
        raise DataError(
            f"target {name!r} has a single value ({_values_text(distinct.tolist())}); a "
            "classifier needs two"
        )
    if len(distinct) > MAX_CLASSES:
        raise DataError(
            f"target {name!r} has {len(distinct):,} different values, more than the "
            f"{MAX_CLASSES} classes a classifier may have; use --task regression for a "
            "quantity, or drop the rows of rare classes"
        )
    if numeric:
        classes = [_number(x) for x in distinct]
        codes = np.full(len(v), np.nan)
        codes[~blank] = np.searchsorted(distinct, v[~blank])
        return TargetFit(task, "numeric", classes, codes, blank)
    classes = distinct.tolist()
    index = {c: i for i, c in enumerate(classes)}
    codes = np.array([np.nan if x is None else index[x] for x in labels], dtype=np.float64)
    return TargetFit(task, "string", classes, codes, blank)


def _is_inf_text(s, bad) -> np.ndarray:
    """Which of the ``bad`` cells spell an infinity ("inf", "-Infinity", or a float inf)."""
    out = np.zeros(len(s), dtype=bool)
    if not bad.any():
        return out
    cells = s.astype(object).to_numpy()[bad]
    out[np.flatnonzero(bad)] = [
        str(x).strip().lower().lstrip("+-") in ("inf", "infinity") for x in cells
    ]
    return out
