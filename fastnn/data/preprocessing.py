"""Turn a table (a pandas DataFrame) into the feature matrix and the target a binary
classifier, a multi-class classifier or a regression trains on, with statistics fitted
on the training rows only.

The rules, applied column by column when :meth:`Preprocessor.fit` sees the training rows:

* **numeric**: a column whose non-blank cells are all numbers. Blank cells (and pandas'
  NA markers) are missing values. A column where at least 80% of the non-blank cells are
  numbers and the rest are not (``"?"``, ``"n/a "``...) is a numeric column with *bad
  cells*; bad cells are handled like missing ones.
* **categorical**: any other column. It is one-hot encoded with k-1 dummy columns: the
  categories are sorted and the first one is dropped (it is the all-zeros row), so the
  churn data gives 11 features: 8 numeric, Geography -> ``Geography=Germany``,
  ``Geography=Spain`` (France dropped), Gender -> ``Gender=Male`` (Female dropped).
* **dates**: a text column of ISO dates (``2024-03-31``, optionally with a time)
  becomes four numeric features (days since 1970, month, day, weekday; see
  :mod:`fastnn.data.dates`); dates in another layout are refused with a hint.
* **identifier-like** string columns are refused with a hint to drop them: more than
  ``id_min_distinct`` (50) distinct values *and* more than ``id_ratio`` (20%) of the
  non-blank rows distinct. The churn Surname (about 2,900 surnames in 10,000 rows)
  is one.
* **missing / bad cells** (``missing=``): ``"error"`` (default) raises a one-line error
  naming the column and the first bad rows; ``"drop"`` drops those rows; ``"mean"`` fills
  them with the training mean of the column (for a categorical column: the training mean
  of each dummy column, i.e. the category frequencies).
* **target** (:mod:`fastnn.data.target`): the task is guessed from it (or given as
  ``task=``): exactly two values -> binary, 0/1 with the later sorted value as the
  positive class 1 ("Yes" over "No", as scikit-learn orders them); text with 3+ values or
  integers with few repeating values -> multi-class, class indices in sorted class order;
  other numbers -> regression, standardized with the training mean and std (mapped back
  by :meth:`Preprocessor.inverse_target`). A blank target is never trained on.
* **scaling**: every output feature (the dummy columns included, as the churn tutorial's
  ``StandardScaler`` does) is standardized with the training mean and standard deviation
  (population std, ``ddof=0``; a constant column gets std 1).

Rows in error messages are 1-based CSV line numbers (the header is line 1) for frames
read by :func:`fastnn.data.read_csv`, else 0-based index labels of the DataFrame.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from ..defaults import TASK_NAMES
from ..errors import ConfigError, DataError
from . import dates
from .loading import ATTR_FIRST_LINE
from .target import _values_text, fit_target

STATE_KIND = "fastnn.Preprocessor"
#: version 2 added the task, multi-class classes, the regression target statistics and
#: date columns; version 1 states (binary only) still load
STATE_VERSION = 2
#: the values of ``missing=``
MISSING_MODES = ("error", "drop", "mean")
#: the values of ``unknown=`` in :meth:`Preprocessor.transform`
UNKNOWN_MODES = ("error", "ignore")
#: a column with at least this share of numbers among its non-blank cells is numeric
NUMERIC_SHARE = 0.5
_SHOW = 5  # rows / values listed in a message


# --------------------------------------------------------------------------- helpers
def _as_frame(df, what="data"):
    import pandas as pd

    if isinstance(df, pd.DataFrame):
        return df
    try:
        return pd.DataFrame(df)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{what} must be a pandas DataFrame (or convertible): {exc}") from None


def _numeric_view(s):
    """Return ``(values, blank, bad)``: float64 values (NaN where blank or bad), the blank
    cells, and the non-blank cells that are not finite numbers."""
    import pandas as pd

    if s.dtype.kind in "biuf":
        v = s.to_numpy(dtype=np.float64, na_value=np.nan)
        blank = np.isnan(v)
        bad = np.isinf(v)
        return np.where(bad, np.nan, v), blank, bad
    obj = s.astype(object)
    isna = obj.isna().to_numpy()
    text = obj.where(~isna, "").map(str).str.strip()
    blank = isna | (text == "").to_numpy()
    v = pd.to_numeric(text, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan).copy()
    bad = ~blank & ~np.isfinite(v)
    v[blank | bad] = np.nan
    return v, blank, bad


def _label(v):
    if v is None:
        return None
    if isinstance(v, (float, np.floating)):
        if math.isnan(v):
            return None
        return str(int(v)) if float(v).is_integer() else str(v)
    try:
        import pandas as pd

        if v is pd.NA or v is pd.NaT:
            return None
    except ImportError:  # pragma: no cover
        pass
    text = str(v).strip()
    return text or None


def _label_view(s) -> np.ndarray:
    """Object array of stripped string labels, None where the cell is blank."""
    import pandas as pd

    if s.dtype.kind not in "biufcmM" and pd.api.types.is_string_dtype(s):
        # every cell is text or missing: the same labels as _label, vectorized
        isna = s.isna().to_numpy(dtype=bool)
        text = s.astype(object).where(~isna, "").astype(str).str.strip()
        out = text.to_numpy(dtype=object)
        out[isna | (text == "").to_numpy(dtype=bool)] = None
        return out
    return np.array([_label(v) for v in s.astype(object).tolist()], dtype=object)


def _rows_text(df, mask) -> str:
    """'CSV lines 3, 7 and 2 more' / 'rows 1, 5 (0-based index)' for the True cells."""
    pos = np.flatnonzero(mask)
    labels = df.index[pos]
    first = df.attrs.get(ATTR_FIRST_LINE)
    if first is not None and labels.dtype.kind in "iu":
        nums = sorted(int(x) + int(first) for x in labels)
        head = "CSV line" if len(nums) == 1 else "CSV lines"
        tail = ""
    else:
        try:
            nums = sorted(labels.tolist())
        except TypeError:
            nums = labels.tolist()
        head = "row" if len(nums) == 1 else "rows"
        tail = " (0-based index)"
    shown = ", ".join(str(x) for x in nums[:_SHOW])
    more = f" and {len(nums) - _SHOW} more" if len(nums) > _SHOW else ""
    return f"{head} {shown}{more}{tail}"


def _columns_text(columns) -> str:
    return ", ".join(str(c) for c in columns)


def _not_found(column, df, role="column") -> DataError:
    return DataError(f"{role} {column!r} not found; columns are: {_columns_text(df.columns)}")


def _free_name(name: str, taken) -> str:
    """``name``, or ``name_1``, ``name_2``... the first one not in ``taken``."""
    if name not in taken:
        return name
    i = 1
    while f"{name}_{i}" in taken:
        i += 1
    return f"{name}_{i}"


def _spec_features(spec: dict) -> list[str]:
    """The feature names one column spec gives."""
    if spec["kind"] == "numeric":
        return [spec["name"]]
    if spec["kind"] == "date":
        return dates.feature_names(spec["name"])
    return [f"{spec['name']}={cat}" for cat in spec["categories"][1:]]


def _state_column(s, bad) -> list[str]:
    """Validate one column spec of a saved state; return its feature names."""
    if not isinstance(s, dict) or not isinstance(s.get("name"), str):
        raise bad(f"bad column entry {s!r}")
    if s.get("kind") == "categorical":
        cats = s.get("categories")
        if not isinstance(cats, list) or not all(isinstance(c, str) for c in cats):
            raise bad(f"column {s['name']!r} has no list of string categories")
    elif s.get("kind") not in ("numeric", "date"):
        raise bad(f"column {s['name']!r} has unknown kind {s.get('kind')!r}")
    return _spec_features(s)


def _state_target(prep, state, version, bad) -> None:
    """Validate and set the task and target encoding of a saved state."""
    task = state.get("task", "binary") if version >= 2 else "binary"
    kind, classes = state.get("target_kind"), state.get("classes")
    if task not in TASK_NAMES:
        raise bad(f"unknown task {task!r}")
    if kind not in ("numeric", "string"):
        raise bad(f"unknown target kind {kind!r}")
    if task == "regression":
        mean, std = state.get("target_mean"), state.get("target_std")
        ok = all(isinstance(x, (int, float)) and math.isfinite(x) for x in (mean, std))
        if not ok or std <= 0:
            raise bad(
                f"regression needs a finite target_mean and target_std > 0, got {mean!r}, {std!r}"
            )
        prep.target_mean_, prep.target_std_ = float(mean), float(std)
        classes = None
    else:
        need = "two" if task == "binary" else "at least two"
        if (
            not isinstance(classes, list)
            or (len(classes) != 2 if task == "binary" else len(classes) < 2)
            or not all(isinstance(c, (str, int, float)) for c in classes)
        ):
            raise bad(f"{task} target classes must be a list of {need} values, got {classes!r}")
        classes = list(classes)
    prep.task, prep.target_kind_, prep.classes_ = task, kind, classes


def _json_number(x: float) -> float:
    x = float(x)
    if not math.isfinite(x):
        raise DataError(f"preprocessing produced a non-finite statistic ({x})")
    return x


# --------------------------------------------------------------------------- Preprocessor
class Preprocessor:
    """Fit on the training rows, then turn any table with the same columns into
    ``X (n, n_features) float64`` and the target ``y (n,)``: int64 0/1 (binary), int64
    class indices in sorted class order (multi-class), or float64 standardized values
    (regression; :meth:`inverse_target` maps them back).

    >>> prep = Preprocessor(target="Exited", drop=["RowNumber", "CustomerId", "Surname"])
    >>> X_train, y_train = prep.fit_transform(train_df)          # doctest: +SKIP
    >>> X_test, y_test = prep.transform(test_df)                 # doctest: +SKIP
    >>> prep.task                                                # doctest: +SKIP
    'binary'
    >>> state = prep.to_dict()   # JSON-safe; Preprocessor.from_dict(state) restores it

    See the module docstring for the rules (numeric/categorical/date detection, k-1
    one-hot, identifier refusal, missing values, the task and target encoding, scaling).

    Args:
        target: the target column (None: features only, ``y`` is None).
        drop: columns to ignore (they need not be present at transform time).
        missing: "error" (default), "drop" (drop rows with a missing or bad cell) or
            "mean" (fill with the training mean).
        task: None (default: guessed from the target), "binary", "multiclass" or
            "regression"; a task the target cannot be is a :class:`DataError`.
        id_ratio, id_min_distinct: a string column with more than ``id_min_distinct``
            distinct values and more than ``id_ratio`` times its non-blank rows is
            refused as identifier-like.
    """

    def __init__(
        self,
        target: str | None = None,
        drop=(),
        missing: str = "error",
        id_ratio: float = 0.2,
        id_min_distinct: int = 50,
        task: str | None = None,
    ):
        if missing not in MISSING_MODES:
            raise ConfigError(f"missing must be one of {', '.join(MISSING_MODES)}; got {missing!r}")
        if task is not None and task not in TASK_NAMES:
            raise ConfigError(f"task must be one of {', '.join(TASK_NAMES)}; got {task!r}")
        if isinstance(drop, str):
            drop = [drop]
        self.target = target
        self.drop = list(dict.fromkeys(drop or ()))
        if target is not None and target in self.drop:
            raise ConfigError(f"column {target!r} is the target; it cannot also be dropped")
        self.missing = missing
        self.task = task
        self.id_ratio = float(id_ratio)
        self.id_min_distinct = int(id_min_distinct)
        self.columns_: list[dict] | None = None
        self.feature_names_: list[str] | None = None
        self.mean_: np.ndarray | None = None
        self.scale_: np.ndarray | None = None
        self.target_kind_: str | None = None
        self.classes_: list | None = None
        self.target_mean_: float | None = None
        self.target_std_: float | None = None
        #: rows dropped at the last fit because the target was blank (missing="drop")
        self.n_blank_target_: int = 0
        #: ``{column: {value: rows}}`` of unseen categories at the last transform
        self.unknown_: dict = {}

    # ------------------------------------------------------------------ properties
    @property
    def fitted(self) -> bool:
        """True once :meth:`fit` (or :meth:`from_dict`) has run."""
        return self.columns_ is not None

    @property
    def n_features(self) -> int:
        """Width of the feature matrix :meth:`transform` returns."""
        self._require_fitted()
        return len(self.feature_names_)

    @property
    def n_outputs(self) -> int:
        """Output units of a model for this target: the classes for multi-class, else 1."""
        self._require_fitted()
        return len(self.classes_) if self.task == "multiclass" else 1

    @property
    def target_mapping(self) -> dict | None:
        """``{"No": 0, "Yes": 1}``: class label -> index, for a classifier whose labels are
        not already 0/1 (None for a 0/1 numeric target and for regression)."""
        if self.classes_ is None or (self.target_kind_ == "numeric" and self.classes_ == [0, 1]):
            return None
        return {c: i for i, c in enumerate(self.classes_)}

    @property
    def positive_class(self):
        """The target value that maps to 1 (binary only; None otherwise)."""
        self._require_fitted()
        return self.classes_[1] if self.task == "binary" else None

    def labels(self, pred) -> np.ndarray:
        """Map class indices (0/1 for binary) back to the target's own values."""
        self._require_fitted()
        if self.classes_ is None:
            raise ConfigError("this Preprocessor has no class labels (no target, or regression)")
        pred = np.asarray(pred).astype(np.int64).reshape(-1)
        return np.asarray(self.classes_, dtype=object)[pred]

    def inverse_target(self, values) -> np.ndarray:
        """Model outputs back in the target's own values.

        Regression: standardized values ``(n,)`` or ``(n, 1)`` -> float64 in the target's
        units. Classifiers: class indices -> labels (as :meth:`labels`).
        """
        self._require_fitted()
        if self.task == "regression":
            v = np.asarray(values, dtype=np.float64).reshape(-1)
            return v * self.target_std_ + self.target_mean_
        return self.labels(values)

    def output_columns(self, P, base: str | None = None, taken=()) -> dict:
        """The columns ``fastnn predict`` writes for model outputs ``P (n, k)``.

        binary: ``<target>_prob`` (probability of the positive class) and
        ``<target>_pred`` (label); multi-class: ``<target>_prob_<class>`` per class and
        ``<target>_pred``; regression: ``<target>_pred`` in the target's units. A name in
        ``taken`` (the input's columns) gets a suffix ``_1``, ``_2``... so nothing clashes.

        Returns:
            An ordered ``{name: array}`` (probabilities float64, labels object arrays).
        """
        self._require_fitted()
        P = np.asarray(P, dtype=np.float64)
        P = P.reshape(len(P), -1)
        base = str(self.target if self.target is not None else "target") if base is None else base
        taken = set(map(str, taken))
        cols = {}

        def add(name, values):
            name = _free_name(name, taken)
            taken.add(name)
            cols[name] = values

        if self.task == "regression":
            add(f"{base}_pred", self.inverse_target(P[:, 0]))
        elif self.task == "multiclass":
            for i, c in enumerate(self.classes_):
                add(f"{base}_prob_{c}", P[:, i])
            add(f"{base}_pred", self.labels(P.argmax(axis=1)) if len(P) else np.array([], object))
        else:
            add(f"{base}_prob", P[:, 0])
            add(f"{base}_pred", self.labels((P[:, 0] >= 0.5).astype(np.int64)))
        return cols

    def _require_fitted(self):
        if not self.fitted:
            raise ConfigError("the Preprocessor is not fitted: call fit(train_df) first")

    # ------------------------------------------------------------------ fit
    def fit(self, df, train_rows=None) -> Preprocessor:
        """Learn column kinds, categories, the target mapping and the scaling; returns
        self. Raises :class:`DataError` naming the problem.

        Args:
            df: the training rows; or, with ``train_rows``, the whole table.
            train_rows: positions (or a boolean mask) of the training rows in ``df``.
                The statistics (means, standard deviations, the fill values of
                ``missing="mean"``) come from these rows only; the column kinds, the
                category lists, the target values and the checks for missing or bad
                cells use every row of ``df``, so a category or a bad cell that only
                occurs in the test rows is handled, or reported, once, in file order.
                The ``fastnn train`` command fits this way.
        """
        df = _as_frame(df)
        cols = list(df.columns)
        if len(set(map(str, cols))) != len(cols):
            raise DataError("the data has duplicate column names; rename them")
        if self.target is not None and self.target not in cols:
            raise _not_found(self.target, df, "target column")
        for c in self.drop:
            if c not in cols:
                raise _not_found(c, df, "column to drop")
        features = [c for c in cols if c != self.target and c not in self.drop]
        if not features:
            raise DataError(
                f"no feature columns are left (target {self.target!r}, dropped {self.drop})"
            )
        n = len(df)
        if n == 0:
            raise DataError("cannot fit on an empty table (0 rows)")
        in_train = np.ones(n, dtype=bool)
        if train_rows is not None:
            rows = np.asarray(train_rows)
            in_train = np.zeros(n, dtype=bool)
            try:
                in_train[rows] = True
            except IndexError as exc:
                raise DataError(f"train_rows does not index the {n} rows of df: {exc}") from None
            if rows.dtype == bool:
                in_train = rows.copy()

        problems: list[tuple[str, str]] = []
        row_missing = np.zeros(n, dtype=bool)
        specs: list[dict] = []
        for c in features:
            spec, miss, problem = self._fit_column(df, c)
            specs.append(spec)
            if problem:
                problems.append((c, problem))
            row_missing |= miss
        if problems and self.missing == "error":
            raise DataError(self._first_problem(problems, fitting=True))

        fitted_target = None
        self.n_blank_target_ = 0
        if self.target is not None:
            fitted_target = fit_target(
                df[self.target],
                self.target,
                self.task,
                _numeric_view,
                _label_view,
                lambda mask: _rows_text(df, mask),
            )
            y_missing = fitted_target.blank
            if y_missing.any():
                if self.missing != "drop":
                    raise DataError(
                        f"target {self.target!r} is blank in {_rows_text(df, y_missing)}; "
                        "fix those rows or drop them (--missing drop, or missing='drop')"
                    )
                self.n_blank_target_ = int((y_missing & in_train).sum())
                row_missing |= y_missing
        keep = ~row_missing if self.missing == "drop" else np.ones(n, dtype=bool)
        keep &= in_train
        if not keep.any():
            raise DataError(
                "every training row has a missing or bad cell, so missing='drop' leaves none"
            )

        self.columns_ = specs
        self.feature_names_ = [name for spec in specs for name in _spec_features(spec)]
        M, _ = self._encode(df)
        M = M[keep]
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            counts = (~np.isnan(M)).sum(axis=0)
            mean = np.where(counts > 0, np.nansum(M, axis=0) / np.maximum(counts, 1), 0.0)
            var = np.nansum((M - mean) ** 2, axis=0) / np.maximum(counts, 1)
        std = np.sqrt(var)
        huge = ~np.isfinite(mean) | ~np.isfinite(std)
        if huge.any():
            j = int(np.flatnonzero(huge)[0])
            raise DataError(
                f"column {self.feature_names_[j]!r} has values too large to standardize "
                f"(largest magnitude {np.nanmax(np.abs(M[:, j])):.3g}); rescale or drop it"
            )
        std[~(std > 0)] = 1.0
        self.mean_ = mean.astype(np.float64)
        self.scale_ = std.astype(np.float64)

        if fitted_target is not None:
            self._set_target(df, fitted_target, keep, in_train)
        else:
            self.task, self.target_kind_, self.classes_ = None, None, None
            self.target_mean_ = self.target_std_ = None
        return self

    def _fit_column(self, df, c):
        """Return ``(spec, missing mask, problem message or None)`` for feature ``c``."""
        n = len(df)
        v, blank, bad = _numeric_view(df[c])
        nonblank = int((~blank).sum())
        if nonblank == 0:
            raise DataError(f"column {c!r} has no values (every cell is blank); drop it")
        n_bad = int(bad.sum())
        if n_bad == 0 or nonblank - n_bad >= NUMERIC_SHARE * nonblank:
            miss = blank | bad
            problem = self._missing_message(df, c, blank, bad) if miss.any() else None
            return {"name": str(c), "kind": "numeric"}, miss, problem
        labels = _label_view(df[c])
        present = np.array([x is not None for x in labels], dtype=bool)
        cats = sorted(set(labels[present].tolist()))
        layout = dates.date_layout(cats)
        if layout == "other":
            raise DataError(
                f"column {c!r} holds dates written like {cats[0]!r}, which fastnn does not "
                f"read (day or month first?); rewrite them as YYYY-MM-DD to use them as "
                f"features, or drop the column (--drop {c}, or drop=[{c!r}])"
            )
        if layout == "iso":
            _, dblank, dbad = dates.date_matrix(labels)
            miss = dblank | dbad
            problem = self._missing_message(df, c, dblank, dbad) if miss.any() else None
            return {"name": str(c), "kind": "date"}, miss, problem
        if len(cats) > self.id_min_distinct and len(cats) > self.id_ratio * nonblank:
            raise DataError(
                f"column {c!r} looks like an identifier or free text "
                f"({len(cats):,} distinct values in {nonblank:,} rows), so it cannot be "
                f"one-hot encoded; drop it (--drop {c}, or drop=[{c!r}])"
            )
        miss = ~present
        problem = self._missing_message(df, c, miss, np.zeros(n, bool)) if miss.any() else None
        return {"name": str(c), "kind": "categorical", "categories": cats}, miss, problem

    def _set_target(self, df, fitted, keep, in_train):
        """Store the task and target encoding; check the training rows can train it."""
        self.task, self.target_kind_, self.classes_ = fitted.task, fitted.kind, fitted.classes
        self.target_mean_ = self.target_std_ = None
        codes = fitted.codes[keep]
        if fitted.task == "regression":
            mean, std = float(codes.mean()), float(codes.std())
            if not (np.isfinite(mean) and np.isfinite(std)):
                raise DataError(
                    f"target {self.target!r} has values too large to standardize "
                    f"(largest magnitude {np.abs(codes).max():.3g}); rescale it"
                )
            if std == 0:
                raise DataError(
                    f"target {self.target!r} has a single value ({mean:g}) in the training "
                    "rows; there is nothing to predict"
                )
            self.target_mean_, self.target_std_ = mean, std
            return
        seen = np.unique(codes).astype(np.int64)
        if seen.size < 2:
            only = self.classes_[int(seen[0])] if seen.size else None
            raise DataError(
                f"target {self.target!r} has a single value ({only!r}) in the training "
                "rows; a classifier needs at least two classes"
            )
        absent = sorted(set(range(len(self.classes_))) - set(seen.tolist()))
        if absent:
            names = [self.classes_[i] for i in absent]
            where = np.isin(fitted.codes, absent) & ~in_train
            raise DataError(
                f"target {self.target!r}: class(es) {_values_text(names)} occur only in rows "
                f"outside the training set ({_rows_text(df, where)}), so the model cannot "
                "learn them; add training rows of those classes or remove those rows"
            )

    # ------------------------------------------------------------------ transform
    @staticmethod
    def _missing_message(df, c, blank, bad) -> str:
        parts = []
        if blank.any():
            parts.append(f"{int(blank.sum()):,} missing")
        if bad.any():
            ex = sorted({str(_label(x)) for x in df[c][bad].tolist()})
            parts.append(f"{int(bad.sum()):,} non-numeric ({_values_text(ex, 3)})")
        return f"column {c!r} has {' and '.join(parts)} cell(s) ({_rows_text(df, blank | bad)})"

    @staticmethod
    def _first_problem(problems, fitting: bool) -> str:
        msg = problems[0][1]
        if len(problems) > 1:
            msg += f" (and more in column(s) {_values_text([c for c, _ in problems[1:]])})"
        hint = (
            "use --missing drop or --missing mean (missing='drop' or 'mean')"
            if fitting
            else "fix them, or train with --missing mean (or drop) so the model handles them"
        )
        return f"{msg}; {hint}"

    def _encode(self, df, unknown: str = "error"):
        """Raw (unscaled) feature matrix with NaN where missing, plus per-column missing
        masks ``[(name, blank, bad)]``. Unseen categories raise, or with
        ``unknown="ignore"`` get all-zero dummy columns (counted in ``self.unknown_``)."""
        n = len(df)
        blocks, masks = [], []
        self.unknown_ = {}
        for s in self.columns_:
            c = s["name"]
            if s["kind"] == "numeric":
                v, blank, bad = _numeric_view(df[c])
                blocks.append(v.reshape(n, 1))
                masks.append((c, blank, bad))
            elif s["kind"] == "date":
                D, blank, bad = dates.date_matrix(_label_view(df[c]))
                blocks.append(D)
                masks.append((c, blank, bad))
            else:
                D, blank = self._one_hot(df, c, s["categories"], unknown)
                blocks.append(D)
                masks.append((c, blank, np.zeros(n, dtype=bool)))
        M = np.concatenate(blocks, axis=1) if blocks else np.zeros((n, 0))
        return M, masks

    def _one_hot(self, df, c, cats, unknown):
        """k-1 dummy columns for categorical column ``c`` (NaN rows where blank)."""
        labels = _label_view(df[c])
        present = np.array([x is not None for x in labels], dtype=bool)
        import pandas as pd

        code = pd.Index(cats, dtype=object).get_indexer(labels).astype(np.int64)  # -1: absent
        unseen_mask = present & (code < 0)
        if unseen_mask.any():
            unseen = sorted(set(labels[unseen_mask].tolist()))
            if unknown != "ignore":
                raise DataError(
                    f"column {c!r} has value(s) not seen in training: {_values_text(unseen)} "
                    f"({_rows_text(df, unseen_mask)}); known values: {_values_text(cats)}"
                    " (fastnn predict --unknown ignore scores them with all-zero one-hot "
                    "columns)"
                )
            values, counts = np.unique(labels[unseen_mask].astype(str), return_counts=True)
            self.unknown_[c] = dict(zip(values.tolist(), counts.tolist(), strict=True))
        D = (code[:, None] == np.arange(1, len(cats))[None, :]).astype(np.float64)
        D[~present] = np.nan
        return D, ~present

    def transform(
        self,
        df,
        *,
        with_target: bool | None = None,
        return_mask: bool = False,
        unknown: str = "error",
    ):
        """Turn ``df`` into ``(X, y)`` with the fitted rules.

        Args:
            df: a DataFrame holding (at least) the feature columns seen by :meth:`fit`;
                extra columns and the dropped ones are ignored.
            with_target: None (default): use the target if its column is present, else
                ``y`` is None; True: require it; False: ignore it (prediction).
            return_mask: also return the boolean mask of input rows kept (all True
                unless ``missing="drop"`` dropped rows with missing or bad cells).
            unknown: "error" (default): a category not seen in training is an error;
                "ignore": such cells get all-zero dummy columns (the reference
                category's encoding), with a warning; ``self.unknown_`` counts them.

        Returns:
            ``(X, y)`` or ``(X, y, mask)``: ``X (n_kept, n_features) float64``; ``y``
            ``(n_kept,)``: int64 0/1 (binary) or class indices (multi-class), float64
            standardized values (regression), or None.

        Raises:
            DataError: a missing feature column, an unseen category or target value, or
            (with ``missing="error"``) a missing or bad cell, naming the column and rows.
        """
        self._require_fitted()
        if unknown not in UNKNOWN_MODES:
            raise ConfigError(f"unknown must be one of {', '.join(UNKNOWN_MODES)}; got {unknown!r}")
        df = _as_frame(df)
        absent = [s["name"] for s in self.columns_ if s["name"] not in df.columns]
        if absent:
            raise DataError(
                f"column(s) {_values_text(absent)} used in training are missing; "
                f"columns are: {_columns_text(df.columns)}"
            )
        n = len(df)
        M, masks = self._encode(df, unknown)
        if self.unknown_:
            warnings.warn(self.unknown_message(self.unknown_), UserWarning, stacklevel=2)
        row_missing = np.zeros(n, dtype=bool)
        problems = []
        for c, blank, bad in masks:
            if blank.any() or bad.any():
                row_missing |= blank | bad
                problems.append((c, self._missing_message(df, c, blank, bad)))
        if problems and self.missing == "error":
            raise DataError(self._first_problem(problems, fitting=False))

        use_target = self.target is not None and (
            with_target or (with_target is None and self.target in df.columns)
        )
        if with_target and self.target is None:
            raise ConfigError("this Preprocessor was fitted without a target")
        if use_target and self.target not in df.columns:
            raise _not_found(self.target, df, "target column")
        y = None
        if use_target:
            y, y_missing = self._transform_target(df)
            if y_missing.any():
                if self.missing != "drop":
                    raise DataError(
                        f"target {self.target!r} is blank in {_rows_text(df, y_missing)}"
                    )
                row_missing |= y_missing
        keep = ~row_missing if self.missing == "drop" else np.ones(n, dtype=bool)
        M = M[keep]
        if self.missing == "mean":
            M = np.where(np.isnan(M), self.mean_, M)
        X = (M - self.mean_) / self.scale_
        if y is not None:
            y = y[keep] if self.task == "regression" else y[keep].astype(np.int64)
        return (X, y, keep) if return_mask else (X, y)

    @staticmethod
    def unknown_message(unknown: dict) -> str:
        """One line about ``{column: {value: rows}}`` of categories unseen in training."""
        rows = sum(sum(v.values()) for v in unknown.values())
        parts = [f"{c!r}: {_values_text(sorted(v), 3)}" for c, v in unknown.items()]
        return (
            f"{rows:,} cell(s) hold categories not seen in training ({'; '.join(parts)}); "
            "they were scored with all-zero one-hot columns"
        )

    def _transform_target(self, df):
        """``(y, blank)``: y as float64 (class index or standardized value; 0 where blank)."""
        s = df[self.target]
        if self.task == "regression":
            v, blank, bad = _numeric_view(s)
            if bad.any():
                vals = sorted({str(_label(x)) for x in s[bad].tolist()})
                raise DataError(
                    f"target {self.target!r} must be a finite number; found "
                    f"{_values_text(vals, 3)} ({_rows_text(df, bad)})"
                )
            return np.where(blank, 0.0, (v - self.target_mean_) / self.target_std_), blank
        if self.target_kind_ == "numeric":
            v, blank, bad = _numeric_view(s)
            known = np.asarray(self.classes_, dtype=np.float64)
            odd = bad | (~blank & ~np.isin(v, known))
            if odd.any():
                vals = sorted({str(_label(x)) for x in s[odd].tolist()})
                if self.classes_ == [0, 1]:
                    raise DataError(
                        f"target {self.target!r} must be 0 or 1; found {_values_text(vals)} "
                        f"({_rows_text(df, odd)})"
                    )
                raise DataError(
                    f"target {self.target!r} has value(s) not seen in training: "
                    f"{_values_text(vals)} ({_rows_text(df, odd)}); known values: "
                    f"{_values_text(self.classes_)}"
                )
            y = np.searchsorted(known, np.where(blank, known[0], v)).astype(np.float64)
            return y, blank
        labels = _label_view(s)
        index = {c: i for i, c in enumerate(self.classes_)}
        present = np.array([x is not None for x in labels], dtype=bool)
        unseen = sorted({x for x in labels[present].tolist() if x not in index})
        if unseen:
            raise DataError(
                f"target {self.target!r} has value(s) not seen in training: "
                f"{_values_text(unseen)}; known values: {_values_text(self.classes_)}"
            )
        y = np.array([index.get(x, 0) if x is not None else 0 for x in labels], dtype=np.float64)
        return y, ~present

    def fit_transform(self, df, **kwargs):
        """``fit(df)`` then ``transform(df, **kwargs)``."""
        return self.fit(df).transform(df, **kwargs)

    # ------------------------------------------------------------------ state
    def to_dict(self) -> dict:
        """The fitted state as JSON-safe data (str/int/float/list/dict only).

        The fields (``version`` 2; :meth:`from_dict` also reads version 1, which had no
        ``task``, ``target_mean`` or ``target_std`` and was always binary):

        * ``kind``: ``"fastnn.Preprocessor"``; ``version``: 2.
        * ``target`` (str or None), ``drop`` (list), ``missing`` ("error"/"drop"/"mean"),
          ``id_ratio``, ``id_min_distinct``: the constructor arguments.
        * ``columns``: one spec per input column, in order: ``{"name", "kind":
          "numeric"}``, ``{"name", "kind": "categorical", "categories": [sorted
          str]}`` (k-1 dummies, the first category is the all-zeros reference) or
          ``{"name", "kind": "date"}`` (features ``name.days``, ``.month``, ``.day``,
          ``.weekday``).
        * ``feature_names``, ``mean``, ``scale``: one entry per feature column of X;
          ``X = (raw - mean) / scale``.
        * ``task``: ``"binary"``, ``"multiclass"``, ``"regression"``, or None without a
          target. The model's head follows from it (:data:`fastnn.defaults.TASKS`).
        * ``target_kind``: ``"numeric"`` (labels / values are numbers) or ``"string"``
          (text labels); None without a target.
        * ``classes``: classifiers: the class labels in sorted order, in the target's
          own values (int/float for numeric labels, str for text); class ``i`` is
          model output ``i`` (multi-class) or 0/1 (binary; ``classes[1]`` is the
          positive class). None for regression.
        * ``target_mean``, ``target_std``: regression only: the training target's mean
          and population std; the model predicts ``(y - target_mean) / target_std`` and
          ``prediction * target_std + target_mean`` is in the target's units. None
          otherwise.
        """
        self._require_fitted()
        regression = self.task == "regression"
        return {
            "kind": STATE_KIND,
            "version": STATE_VERSION,
            "target": self.target,
            "drop": list(self.drop),
            "missing": self.missing,
            "id_ratio": self.id_ratio,
            "id_min_distinct": self.id_min_distinct,
            "columns": [dict(s) for s in self.columns_],
            "feature_names": list(self.feature_names_),
            "mean": [_json_number(x) for x in self.mean_],
            "scale": [_json_number(x) for x in self.scale_],
            "task": self.task,
            "target_kind": self.target_kind_,
            "classes": None if self.classes_ is None else list(self.classes_),
            "target_mean": _json_number(self.target_mean_) if regression else None,
            "target_std": _json_number(self.target_std_) if regression else None,
        }

    @classmethod
    def from_dict(cls, state) -> Preprocessor:
        """Rebuild a fitted Preprocessor from :meth:`to_dict`; validates the state and
        raises :class:`DataError` on anything malformed."""

        def bad(why):
            return DataError(f"invalid preprocessing state: {why}")

        if not isinstance(state, dict) or state.get("kind") != STATE_KIND:
            raise bad(f"not a {STATE_KIND} state")
        version = state.get("version")
        if not isinstance(version, int) or version > STATE_VERSION or version < 1:
            raise bad(f"unsupported version {version!r} (this fastnn reads {STATE_VERSION})")
        try:
            prep = cls(
                target=state["target"],
                drop=state.get("drop", []),
                missing=state.get("missing", "error"),
                id_ratio=state.get("id_ratio", 0.2),
                id_min_distinct=state.get("id_min_distinct", 50),
            )
            columns = state["columns"]
            names = [str(x) for x in state["feature_names"]]
            mean = np.asarray(state["mean"], dtype=np.float64)
            scale = np.asarray(state["scale"], dtype=np.float64)
        except (KeyError, TypeError, ValueError, ConfigError) as exc:
            raise bad(f"{type(exc).__name__}: {exc}") from None
        if not isinstance(columns, list) or not columns:
            raise bad("no columns")
        width = sum(len(_state_column(s, bad)) for s in columns)
        if not (len(names) == mean.shape[0] == scale.shape[0] == width) or mean.ndim != 1:
            raise bad(
                f"{width} features from the columns, but {len(names)} names, "
                f"{mean.shape[0]} means, {scale.shape[0]} scales"
            )
        if not (np.isfinite(mean).all() and np.isfinite(scale).all() and (scale > 0).all()):
            raise bad("non-finite mean or non-positive scale")
        prep.columns_ = [dict(s) for s in columns]
        prep.feature_names_ = names
        prep.mean_, prep.scale_ = mean, scale
        if prep.target is not None:
            _state_target(prep, state, version, bad)
        return prep

    def describe(self) -> dict:
        """Counts for summaries: numeric columns, categorical columns and their dummies."""
        self._require_fitted()
        cat = {
            s["name"]: len(s["categories"]) - 1 for s in self.columns_ if s["kind"] == "categorical"
        }
        return {
            "numeric": [s["name"] for s in self.columns_ if s["kind"] == "numeric"],
            "categorical": cat,
            "n_features": self.n_features,
        }

    def __repr__(self):
        state = f"{self.n_features} features" if self.fitted else "not fitted"
        return (
            f"Preprocessor(target={self.target!r}, drop={self.drop!r}, "
            f"missing={self.missing!r}; {state})"
        )
