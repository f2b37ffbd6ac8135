"""Reading CSV files and the bundled data sets, with errors that name the problem.

pandas is imported inside the functions, so ``import fastnn`` stays NumPy-only.
"""

from __future__ import annotations

import collections
import csv
import gzip
import io
import os

from ..errors import CSVError

#: delimiters :func:`read_csv` tries, in order of preference on a tie
DELIMITERS = (",", ";", "\t", "|")
#: encodings :func:`read_csv` tries, in order (latin-1 decodes any bytes, so it is last)
ENCODINGS = ("utf-8-sig", "cp1252", "latin-1")
#: lines read to detect the delimiter
_SNIFF_LINES = 50

# DataFrame.attrs keys that read_csv sets (pandas keeps attrs through iloc/take/copy)
ATTR_SOURCE = "fastnn_source"
ATTR_FIRST_LINE = "fastnn_first_line"
ATTR_DELIMITER = "fastnn_delimiter"
ATTR_ENCODING = "fastnn_encoding"

_DELIMITER_NAMES = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}


def delimiter_name(delimiter: str) -> str:
    """A readable name for a delimiter ("comma", "tab", ...)."""
    return _DELIMITER_NAMES.get(delimiter, repr(delimiter))


def _decode(data: bytes, name: str, encoding: str | None) -> tuple[str, str]:
    """Return ``(text, encoding_used)``: utf-8 (with or without BOM), else cp1252, else
    latin-1."""
    if encoding is not None:
        try:
            return data.decode(encoding), encoding
        except (UnicodeDecodeError, LookupError) as exc:
            raise CSVError(f"{name}: cannot decode as {encoding}: {exc}") from None
    for enc in ENCODINGS:
        try:
            text = data.decode(enc)
        except UnicodeDecodeError:
            continue
        if enc == "utf-8-sig" and not data.startswith(b"\xef\xbb\xbf"):
            enc = "utf-8"
        return text, enc
    raise AssertionError("latin-1 decodes every byte string")  # pragma: no cover


def _sniff_delimiter(lines: list[str]) -> str:
    """Pick the delimiter that splits the header into the most columns while every
    sampled row has the same number of fields; comma when nothing splits the header."""
    best, best_key = ",", (False, 1)
    for delim in DELIMITERS:
        try:
            rows = list(csv.reader(lines, delimiter=delim))
        except csv.Error:
            continue
        rows = [r for r in rows if r]
        if not rows or len(rows[0]) < 2:
            continue
        width = len(rows[0])
        consistent = all(len(r) == width for r in rows[1:])
        key = (consistent, width)
        if key > best_key:
            best, best_key = delim, key
    return best


_DECIMAL_COMMA = r"^[+-]?(\d+|\d{1,3}(\.\d{3})+),\d+$|^[+-]?\d+$"


def _convert_decimal_commas(df) -> None:
    """In a file not separated by commas, a text column whose cells are all numbers
    written with a decimal comma ("1,5", "1.234,5") becomes a float column."""
    import pandas as pd

    for c in df.columns:
        s = df[c]
        if s.dtype.kind not in "OSU":  # object, or pandas' string dtype
            continue
        text = s.dropna().astype(str).str.strip()
        text = text[text != ""]
        if text.empty or not text.str.contains(",", regex=False).any():
            continue
        if text.str.match(_DECIMAL_COMMA).all():
            cleaned = s.astype(str).str.strip().str.replace(".", "", regex=False)
            cleaned = cleaned.str.replace(",", ".", regex=False).where(s.notna())
            df[c] = pd.to_numeric(cleaned.where(cleaned != "", None), errors="coerce")


def _check_header(name: str, lines: list[str], first: int, delimiter: str | None) -> str:
    """Detect the delimiter (unless given) from the lines from ``first`` on, refuse
    duplicate column names and a header without data rows; return the delimiter."""
    sample = [line for line in lines[first : first + _SNIFF_LINES] if line.strip()]
    if delimiter is None:
        delimiter = _sniff_delimiter(sample)
    try:
        header = next(csv.reader([lines[first]], delimiter=delimiter))
    except csv.Error as exc:
        raise CSVError(f"{name}: cannot parse the header line: {exc}") from None
    names = [h.strip() for h in header]
    counts = collections.Counter(n for n in names if n)
    dups = [n for n, c in counts.items() if c > 1]
    if dups:
        where = ", ".join(
            f"{d!r} (columns {', '.join(str(i + 1) for i, n in enumerate(names) if n == d)})"
            for d in dups
        )
        raise CSVError(f"{name} has duplicate column names: {where}; rename them so each is unique")
    if not any(line.strip() for line in lines[first + 1 :]):
        raise CSVError(f"{name} has a header line but no data rows")
    return delimiter


def _parse(
    data: bytes, name: str, delimiter: str | None, encoding: str | None, raw: bool
):  # -> pandas.DataFrame
    import pandas as pd

    if not data.strip():
        raise CSVError(f"{name} is empty")
    if b"\x00" in data[:4096]:
        raise CSVError(f"{name} looks like a binary file, not a CSV text file")
    text, used = _decode(data, name, encoding)
    lines = text.splitlines()
    first = next((i for i, line in enumerate(lines) if line.strip()), None)
    if first is None:
        raise CSVError(f"{name} is empty")
    delimiter = _check_header(name, lines, first, delimiter)
    kwargs = dict(sep=delimiter, skipinitialspace=True)
    if raw:
        kwargs.update(dtype=str, keep_default_na=False)
    try:
        df = pd.read_csv(io.StringIO(text), **kwargs)
    except pd.errors.EmptyDataError:
        raise CSVError(f"{name} is empty") from None
    except (pd.errors.ParserError, ValueError) as exc:
        msg = " ".join(str(exc).split())
        raise CSVError(
            f"{name}: cannot parse as CSV ({delimiter_name(delimiter)}-separated): {msg}"
        ) from None
    if len(df) == 0:
        raise CSVError(f"{name} has a header line but no data rows")
    df.columns = [str(c).strip() for c in df.columns]
    if not raw and delimiter != ",":
        _convert_decimal_commas(df)
    df.attrs[ATTR_SOURCE] = name
    df.attrs[ATTR_FIRST_LINE] = first + 2  # 1-based line number of the first data row
    df.attrs[ATTR_DELIMITER] = delimiter
    df.attrs[ATTR_ENCODING] = used
    return df


def check_file(path, kind: str = "CSV") -> str:
    """``path`` as a string; a :class:`CSVError` if it is missing or a folder."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise CSVError(f"file {path!r} does not exist")
    if os.path.isdir(path):
        raise CSVError(f"{path!r} is a folder, not a {kind} file")
    return path


def read_csv(path, *, delimiter: str | None = None, encoding: str | None = None, raw=False):
    """Read a CSV file into a pandas DataFrame, or raise a :class:`~fastnn.errors.CSVError`
    that names the problem.

    * The delimiter is detected from the first lines (comma, semicolon, tab or pipe: the
      one that splits the header into the most columns, consistently over the rows).
    * The encoding is detected: UTF-8 (with or without a byte-order mark), else cp1252,
      else latin-1. ``.gz`` files are decompressed.
    * Errors: a missing file, a folder, an empty file, a header without data rows,
      duplicate column names (pandas would silently rename them to ``Age.1``), rows
      that do not parse.
    * In a file separated by something other than commas, a column whose cells are all
      numbers with a decimal comma (``1,5`` or ``1.234,5``, as spreadsheets in many
      locales write them) is read as numbers.
    * Column names are stripped of surrounding spaces. Blank cells and pandas' usual NA
      markers (``NA``, ``N/A``, ``null``, ``NaN``...) become missing values.

    Args:
        path: the file.
        delimiter: force a delimiter instead of detecting it.
        encoding: force an encoding instead of detecting it.
        raw: keep every cell as the exact string in the file (no type inference, no NA
            markers: blank cells are ``""``); ``fastnn predict`` uses it to copy the
            input columns unchanged.

    Returns:
        A DataFrame with a 0-based RangeIndex. ``df.attrs`` records the source name, the
        delimiter, the encoding and the 1-based line number of the first data row, so
        error messages can give CSV line numbers.
    """
    path = check_file(path)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise CSVError(f"cannot read {path!r}: {exc.strerror or exc}") from None
    if path.endswith(".gz"):
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as exc:
            raise CSVError(f"{path!r} is not a valid gzip file: {exc}") from None
    return _parse(data, path, delimiter, encoding, raw)


def read_csv_text(text: str, name: str = "<text>", *, delimiter: str | None = None, raw=False):
    """Like :func:`read_csv`, from a string (handy in tests and notebooks)."""
    return _parse(text.encode("utf-8"), name, delimiter, "utf-8", raw)


#: the tutorial's settings for the bundled churn data
CHURN_TARGET = "Exited"
CHURN_DROP = ("RowNumber", "CustomerId", "Surname")


def _churn_bytes() -> bytes:
    from importlib.resources import files

    return gzip.decompress(files("fastnn.data").joinpath("churn.csv.gz").read_bytes())


def load_churn(raw: bool = False):
    """The bundled bank-churn data set as a pandas DataFrame (10,000 rows, 14 columns).

    Columns: RowNumber, CustomerId, Surname, CreditScore, Geography, Gender, Age, Tenure,
    Balance, NumOfProducts, HasCrCard, IsActiveMember, EstimatedSalary, Exited (the
    target: 1 = the customer left the bank). The tutorial drops RowNumber, CustomerId and
    Surname (:data:`CHURN_DROP`) and predicts Exited (:data:`CHURN_TARGET`).

    The file ships inside the package (``fastnn/data/churn.csv.gz``) and is read with
    :mod:`importlib.resources`, so it works from a wheel or a zip install.
    """
    return _parse(_churn_bytes(), "churn.csv.gz (bundled)", ",", "utf-8", raw)
