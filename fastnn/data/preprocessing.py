"""Turn a table (a pandas DataFrame) into the feature matrix and 0/1 target a binary
classifier trains on, with statistics fitted on the training rows only.

The rules, applied column by column when :meth:`Preprocessor.fit` sees the training rows:

* **numeric**: a column whose non-blank cells are all numbers. Blank cells (and pandas'
  NA markers) are missing values. A column where at least 80% of the non-blank cells are
  numbers and the rest are not (``"?"``, ``"n/a "``...) is a numeric column with *bad
  cells*; bad cells are handled like missing ones.
* **categorical**: any other column. It is one-hot encoded with k-1 dummy columns: the
  categories are sorted and the first one is dropped (it is the all-zeros row), so the
  churn data gives 11 features: 8 numeric, Geography -> ``Geography=Germany``,
  ``Geography=Spain`` (France dropped), Gender -> ``Gender=Male`` (Female dropped).
* **identifier-like** string columns are refused with a hint to drop them: more than
  ``id_min_distinct`` (50) distinct values *and* more than ``id_ratio`` (20%) of the
  non-blank rows distinct. The churn Surname (about 2,900 surnames in 10,000 rows)
  is one.
* **missing / bad cells** (``missing=``): ``"error"`` (default) raises a one-line error
  naming the column and the first bad rows; ``"drop"`` drops those rows; ``"mean"`` fills
  them with the training mean of the column (for a categorical column: the training mean
  of each dummy column, i.e. the category frequencies).
* **target**: a 0/1 numeric column is used as is; a column with exactly two string
  values is mapped to 0/1, the later of the two sorted values being the positive class 1
  ("Yes" over "No", as scikit-learn orders them); anything else is an error that names
  the values found.
* **scaling**: every output feature (the dummy columns included, as the churn tutorial's
  ``StandardScaler`` does) is standardized with the training mean and standard deviation
  (population std, ``ddof=0``; a constant column gets std 1).

Rows in error messages are 1-based CSV line numbers (the header is line 1) for frames
read by :func:`fastnn.data.read_csv`, else 0-based index labels of the DataFrame.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import ConfigError, DataError
from .loading import ATTR_FIRST_LINE

STATE_KIND = "fastnn.Preprocessor"
STATE_VERSION = 1
#: the values of ``missing=``
MISSING_MODES = ("error", "drop", "mean")
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


def _values_text(values, limit=10) -> str:
    values = list(values)
    shown = ", ".join(repr(v) for v in values[:limit])
    return shown + (f", ... ({len(values)} in all)" if len(values) > limit else "")


def _columns_text(columns) -> str:
    return ", ".join(str(c) for c in columns)


def _not_found(column, df, role="column") -> DataError:
    return DataError(f"{role} {column!r} not found; columns are: {_columns_text(df.columns)}")


def _json_number(x: float) -> float:
    x = float(x)
    if not math.isfinite(x):
        raise DataError(f"preprocessing produced a non-finite statistic ({x})")
    return x


# --------------------------------------------------------------------------- Preprocessor
class Preprocessor:
    """Fit on the training rows, then turn any table with the same columns into
    ``X (n, n_features) float64`` and ``y (n,) int64`` (0/1).

    >>> prep = Preprocessor(target="Exited", drop=["RowNumber", "CustomerId", "Surname"])
    >>> X_train, y_train = prep.fit_transform(train_df)          # doctest: +SKIP
    >>> X_test, y_test = prep.transform(test_df)                 # doctest: +SKIP
    >>> state = prep.to_dict()   # JSON-safe; Preprocessor.from_dict(state) restores it

    See the module docstring for the rules (numeric/categorical detection, k-1 one-hot,
    identifier refusal, missing values, target mapping, scaling).

    Args:
        target: the target column (None: features only, ``y`` is None).
        drop: columns to ignore (they need not be present at transform time).
        missing: "error" (default), "drop" (drop rows with a missing or bad cell) or
            "mean" (fill with the training mean).
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
    ):
        if missing not in MISSING_MODES:
            raise ConfigError(f"missing must be one of {', '.join(MISSING_MODES)}; got {missing!r}")
        if isinstance(drop, str):
            drop = [drop]
        self.target = target
        self.drop = list(dict.fromkeys(drop or ()))
        if target is not None and target in self.drop:
            raise ConfigError(f"column {target!r} is the target; it cannot also be dropped")
        self.missing = missing
        self.id_ratio = float(id_ratio)
        self.id_min_distinct = int(id_min_distinct)
        self.columns_: list[dict] | None = None
        self.feature_names_: list[str] | None = None
        self.mean_: np.ndarray | None = None
        self.scale_: np.ndarray | None = None
        self.target_kind_: str | None = None
        self.classes_: list | None = None

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
    def target_mapping(self) -> dict | None:
        """``{"No": 0, "Yes": 1}`` for a string target; None for a 0/1 numeric one."""
        if self.target_kind_ != "string":
            return None
        return {c: i for i, c in enumerate(self.classes_)}

    @property
    def positive_class(self):
        """The target value that maps to 1."""
        self._require_fitted()
        return None if self.classes_ is None else self.classes_[1]

    def labels(self, pred) -> np.ndarray:
        """Map 0/1 predictions back to the target's own values (e.g. "No"/"Yes")."""
        self._require_fitted()
        if self.classes_ is None:
            raise ConfigError("this Preprocessor has no target, so no labels")
        pred = np.asarray(pred).astype(np.int64).reshape(-1)
        return np.asarray(self.classes_, dtype=object)[pred]

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
            v, blank, bad = _numeric_view(df[c])
            nonblank = int((~blank).sum())
            if nonblank == 0:
                raise DataError(f"column {c!r} has no values (every cell is blank); drop it")
            n_bad = int(bad.sum())
            if n_bad == 0 or nonblank - n_bad >= NUMERIC_SHARE * nonblank:
                specs.append({"name": str(c), "kind": "numeric"})
                miss = blank | bad
                if miss.any():
                    problems.append((c, self._missing_message(df, c, blank, bad)))
            else:
                labels = _label_view(df[c])
                present = np.array([x is not None for x in labels], dtype=bool)
                cats = sorted(set(labels[present].tolist()))
                if len(cats) > self.id_min_distinct and len(cats) > self.id_ratio * nonblank:
                    msg = (
                        f"column {c!r} looks like an identifier or free text "
                        f"({len(cats):,} distinct values in {nonblank:,} rows), so it cannot be "
                        f"one-hot encoded; drop it (--drop {c}, or drop=[{c!r}])"
                    )
                    raise DataError(msg)
                specs.append({"name": str(c), "kind": "categorical", "categories": cats})
                miss = ~present
                if miss.any():
                    problems.append((c, self._missing_message(df, c, miss, np.zeros(n, bool))))
            row_missing |= miss
        if problems and self.missing == "error":
            raise DataError(self._first_problem(problems, fitting=True))

        y_vals = None
        if self.target is not None:
            kind, classes, y_vals, y_missing = self._fit_target(df[self.target])
            if y_missing.any():
                if self.missing != "drop":
                    raise DataError(
                        f"target {self.target!r} is blank in {_rows_text(df, y_missing)}; "
                        "fix those rows or drop them (--missing drop, or missing='drop')"
                    )
                row_missing |= y_missing
        keep = ~row_missing if self.missing == "drop" else np.ones(n, dtype=bool)
        keep &= in_train
        if not keep.any():
            raise DataError(
                "every training row has a missing or bad cell, so missing='drop' leaves none"
            )

        self.columns_ = specs
        self.feature_names_ = [
            name
            for s in specs
            for name in (
                [s["name"]]
                if s["kind"] == "numeric"
                else [f"{s['name']}={cat}" for cat in s["categories"][1:]]
            )
        ]
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

        if self.target is not None:
            self.target_kind_, self.classes_ = kind, classes
            present = y_vals[keep]
            present = present[~np.isnan(present)]
            if np.unique(present).size < 2:
                only = classes[int(present[0])] if present.size else None
                raise DataError(
                    f"target {self.target!r} has a single value ({only!r}) in the training "
                    "rows; a binary classifier needs both classes"
                )
        else:
            self.target_kind_, self.classes_ = None, None
        return self

    def _fit_target(self, s):
        """Return ``(kind, classes, y (float, NaN where blank), blank mask)``."""
        v, blank, bad = _numeric_view(s)
        name = self.target
        if not bad.any():
            values = np.unique(v[~blank])
            odd = [x for x in values.tolist() if x not in (0.0, 1.0)]
            if odd:
                shown = [int(x) if float(x).is_integer() else x for x in values.tolist()]
                raise DataError(
                    f"target {name!r} must be 0/1 (or two string values) for a binary model; "
                    f"found values {_values_text(shown)}"
                )
            return "numeric", [0, 1], v, blank
        labels = _label_view(s)
        present = np.array([x is not None for x in labels], dtype=bool)
        classes = sorted(set(labels[present].tolist()))
        if len(classes) > 2:
            raise DataError(
                f"target {name!r} has {len(classes)} different values "
                f"({_values_text(classes)}); a binary model needs exactly two"
            )
        if len(classes) < 2:
            raise DataError(
                f"target {name!r} has a single value ({_values_text(classes)}); a binary "
                "classifier needs two"
            )
        index = {c: i for i, c in enumerate(classes)}
        y = np.array([np.nan if x is None else index[x] for x in labels], dtype=np.float64)
        return "string", classes, y, ~present

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

    def _encode(self, df):
        """Raw (unscaled) feature matrix with NaN where missing, plus per-column missing
        masks ``[(name, blank, bad)]``. Raises on unseen categories."""
        n = len(df)
        blocks, masks = [], []
        for s in self.columns_:
            c = s["name"]
            if s["kind"] == "numeric":
                v, blank, bad = _numeric_view(df[c])
                blocks.append(v.reshape(n, 1))
                masks.append((c, blank, bad))
            else:
                cats = s["categories"]
                labels = _label_view(df[c])
                present = np.array([x is not None for x in labels], dtype=bool)
                index = {cat: i for i, cat in enumerate(cats)}
                unseen = sorted({x for x in labels[present].tolist() if x not in index})
                if unseen:
                    where = _rows_text(df, np.array([x in set(unseen) for x in labels]))
                    raise DataError(
                        f"column {c!r} has value(s) not seen in training: {_values_text(unseen)} "
                        f"({where}); known values: {_values_text(cats)}"
                    )
                code = np.array([index[x] if x is not None else -1 for x in labels])
                D = (code[:, None] == np.arange(1, len(cats))[None, :]).astype(np.float64)
                D[~present] = np.nan
                blocks.append(D)
                masks.append((c, ~present, np.zeros(n, dtype=bool)))
        M = np.concatenate(blocks, axis=1) if blocks else np.zeros((n, 0))
        return M, masks

    def transform(self, df, *, with_target: bool | None = None, return_mask: bool = False):
        """Turn ``df`` into ``(X, y)`` with the fitted rules.

        Args:
            df: a DataFrame holding (at least) the feature columns seen by :meth:`fit`;
                extra columns and the dropped ones are ignored.
            with_target: None (default): use the target if its column is present, else
                ``y`` is None; True: require it; False: ignore it (prediction).
            return_mask: also return the boolean mask of input rows kept (all True
                unless ``missing="drop"`` dropped rows with missing or bad cells).

        Returns:
            ``(X, y)`` or ``(X, y, mask)``: ``X (n_kept, n_features) float64``,
            ``y (n_kept,) int64`` of 0/1 or None.

        Raises:
            DataError: a missing feature column, an unseen category or target value, or
            (with ``missing="error"``) a missing or bad cell, naming the column and rows.
        """
        self._require_fitted()
        df = _as_frame(df)
        absent = [s["name"] for s in self.columns_ if s["name"] not in df.columns]
        if absent:
            raise DataError(
                f"column(s) {_values_text(absent)} used in training are missing; "
                f"columns are: {_columns_text(df.columns)}"
            )
        n = len(df)
        M, masks = self._encode(df)
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
            y = y[keep].astype(np.int64)
        return (X, y, keep) if return_mask else (X, y)

    def _transform_target(self, df):
        s = df[self.target]
        if self.target_kind_ == "numeric":
            v, blank, bad = _numeric_view(s)
            odd = bad | (~blank & ~np.isin(v, (0.0, 1.0)))
            if odd.any():
                vals = sorted({str(_label(x)) for x in s[odd].tolist()})
                raise DataError(
                    f"target {self.target!r} must be 0 or 1; found {_values_text(vals)} "
                    f"({_rows_text(df, odd)})"
                )
            return np.where(blank, 0.0, v), blank
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
        """The fitted state as JSON-safe data (str/int/float/list/dict only)."""
        self._require_fitted()
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
            "target_kind": self.target_kind_,
            "classes": None if self.classes_ is None else list(self.classes_),
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
        except (KeyError, TypeError, ValueError) as exc:
            raise bad(f"{type(exc).__name__}: {exc}") from None
        if not isinstance(columns, list) or not columns:
            raise bad("no columns")
        width = 0
        for s in columns:
            if not isinstance(s, dict) or not isinstance(s.get("name"), str):
                raise bad(f"bad column entry {s!r}")
            if s.get("kind") == "numeric":
                width += 1
            elif s.get("kind") == "categorical":
                cats = s.get("categories")
                if not isinstance(cats, list) or not all(isinstance(c, str) for c in cats):
                    raise bad(f"column {s['name']!r} has no list of string categories")
                width += max(len(cats) - 1, 0)
            else:
                raise bad(f"column {s['name']!r} has unknown kind {s.get('kind')!r}")
        if not (len(names) == mean.shape[0] == scale.shape[0] == width) or mean.ndim != 1:
            raise bad(
                f"{width} features from the columns, but {len(names)} names, "
                f"{mean.shape[0]} means, {scale.shape[0]} scales"
            )
        if not (np.isfinite(mean).all() and np.isfinite(scale).all() and (scale > 0).all()):
            raise bad("non-finite mean or non-positive scale")
        kind, classes = state.get("target_kind"), state.get("classes")
        if prep.target is not None:
            if kind not in ("numeric", "string"):
                raise bad(f"unknown target kind {kind!r}")
            if not isinstance(classes, list) or len(classes) != 2:
                raise bad(f"target classes must be a list of two values, got {classes!r}")
        prep.columns_ = [dict(s) for s in columns]
        prep.feature_names_ = names
        prep.mean_, prep.scale_ = mean, scale
        prep.target_kind_ = kind if prep.target is not None else None
        prep.classes_ = list(classes) if prep.target is not None else None
        return prep

    def describe(self) -> dict:
        """Counts for summaries: numeric columns, categorical columns and their dummies."""
        self._require_fitted()
        cat = {s["name"]: len(s["categories"]) - 1 for s in self.columns_ if s["kind"] != "numeric"}
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
