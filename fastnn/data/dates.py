"""Date columns: recognised, and expanded to numeric features instead of being one-hot
encoded as hundreds of strings.

A text column whose distinct values are (at least :data:`DATE_SHARE` of them) ISO dates,
``YYYY-MM-DD`` or ``YYYY/MM/DD``, optionally with a time, becomes the numeric features in
:data:`DATE_PARTS`: days since 1970-01-01 (with the time as a fraction), month (1-12),
day of the month (1-31) and weekday (0 = Monday). Dates in another layout
(``03/04/2020``: day or month first?) are refused with a hint to rewrite or drop them.
"""

from __future__ import annotations

import re

import numpy as np

#: the features a date column expands to, named ``<column>.<part>``
DATE_PARTS = ("days", "month", "day", "weekday")
#: share of a column's distinct values that must look like dates
DATE_SHARE = 0.9

_ISO = re.compile(
    r"^\d{4}[-/]\d{1,2}[-/]\d{1,2}"
    r"([ T]\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?)?(Z|[+-]\d{2}:?\d{2})?$"
)
_OTHER = re.compile(
    r"^(\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4}|\d{1,2}[- ][A-Za-z]{3,9}[- ,]+\d{2,4}"
    r"|[A-Za-z]{3,9}\.? \d{1,2},? \d{4})([ T]\d{1,2}:\d{2}(:\d{2})?)?$"
)


def date_layout(distinct) -> str | None:
    """``"iso"`` when the distinct values look like ISO dates, ``"other"`` when they look
    like dates in another layout, else None."""
    values = [str(v) for v in distinct]
    if not values:
        return None
    need = DATE_SHARE * len(values)
    if sum(1 for v in values if _ISO.match(v)) >= need:
        return "iso"
    if sum(1 for v in values if _OTHER.match(v)) >= need:
        return "other"
    return None


def feature_names(column: str) -> list[str]:
    """``["Date.days", "Date.month", "Date.day", "Date.weekday"]`` for column Date."""
    return [f"{column}.{p}" for p in DATE_PARTS]


def date_matrix(labels) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Parse an object array of stripped labels (None where blank) as ISO dates.

    Returns ``(M, blank, bad)``: ``M (n, 4) float64`` with the :data:`DATE_PARTS`
    (NaN where blank or unparseable), the blank cells and the cells that are not dates.
    """
    import pandas as pd

    blank = np.array([x is None for x in labels], dtype=bool)
    text = pd.Series(np.where(blank, "", labels).astype(str)).str.replace("/", "-", regex=False)
    ok = text.str.match(_ISO.pattern).to_numpy(dtype=bool) & ~blank
    stamps = pd.to_datetime(text.where(ok), format="ISO8601", errors="coerce", utc=True)
    ok &= stamps.notna().to_numpy()
    M = np.full((len(labels), len(DATE_PARTS)), np.nan)
    good = stamps[ok]
    epoch = pd.Timestamp("1970-01-01", tz="UTC")
    M[ok, 0] = ((good - epoch) / pd.Timedelta(days=1)).to_numpy(dtype=np.float64)
    M[ok, 1] = good.dt.month.to_numpy(dtype=np.float64)
    M[ok, 2] = good.dt.day.to_numpy(dtype=np.float64)
    M[ok, 3] = good.dt.day_of_week.to_numpy(dtype=np.float64)
    return M, blank, ~blank & ~ok
