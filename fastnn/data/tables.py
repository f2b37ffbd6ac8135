"""CSV or Parquet, whole or in chunks, chosen by the file's extension.

* :func:`read_table` reads a whole file (training): ``.parquet``/``.pq`` with pyarrow,
  anything else with :func:`~fastnn.data.read_csv`.
* :func:`iter_table` yields it in chunks of rows, so scoring a file of any length keeps
  memory flat (``fastnn predict``).
* :class:`TableWriter` writes chunks to a CSV or a Parquet file (atomically: a temporary
  file in the same folder, renamed at the end) or as CSV to a text stream.

pyarrow is the optional extra ``parquet`` (``pip install "fastnn[parquet]"``), imported
only when a Parquet file is read or written.
"""

from __future__ import annotations

import gzip
import os
from dataclasses import dataclass

from ..errors import CSVError, DataError
from .loading import (
    ATTR_DELIMITER,
    ATTR_FIRST_LINE,
    ATTR_SOURCE,
    _check_header,
    _convert_decimal_commas,
    _decode,
    check_file,
    delimiter_name,
    read_csv,
)

#: file name endings read and written as Parquet
PARQUET_SUFFIXES = (".parquet", ".pq")
#: rows per chunk of :func:`iter_table`
CHUNK_ROWS = 100_000
_HEAD_BYTES = 1 << 16


def is_parquet(path) -> bool:
    """True when ``path`` ends in ``.parquet`` or ``.pq``."""
    return os.fspath(path).lower().endswith(PARQUET_SUFFIXES)


def _pyarrow():
    try:
        import pyarrow
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        raise DataError(
            'reading or writing Parquet needs pyarrow: pip install "fastnn[parquet]"'
        ) from None
    return pyarrow


def _parquet_file(path):
    pa = _pyarrow()
    path = check_file(path, "Parquet")
    try:
        return pa.parquet.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        msg = " ".join(str(exc).split())
        raise DataError(f"{path!r} is not a readable Parquet file ({msg})") from None


def read_table(path):
    """Read a whole CSV or Parquet file into a DataFrame (see the module docstring)."""
    if not is_parquet(path):
        return read_csv(path)
    pf = _parquet_file(path)
    df = pf.read().to_pandas()
    if len(df) == 0:
        raise DataError(f"{os.fspath(path)!r} has no rows")
    df.attrs[ATTR_SOURCE] = os.fspath(path)
    return df


@dataclass
class Chunk:
    """Rows of an input file: ``typed`` for the Preprocessor; ``raw``, the cells as the
    exact text of a CSV (None for Parquet, whose typed columns are written back as is)."""

    typed: object
    raw: object | None


def _csv_head(path: str) -> tuple[str, str, int]:
    """Sniff ``(delimiter, encoding, first non-blank line)`` from the first 64 KiB of a CSV file."""
    check_file(path)
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            head = f.read(_HEAD_BYTES)
    except (OSError, EOFError) as exc:
        raise CSVError(f"cannot read {path!r}: {exc}") from None
    if not head.strip():
        raise CSVError(f"{path} is empty")
    if b"\x00" in head[:4096]:
        raise CSVError(f"{path} looks like a binary file, not a CSV text file")
    if len(head) == _HEAD_BYTES and b"\n" in head:
        head = head[: head.rindex(b"\n")]  # never cut a multi-byte character
    text, encoding = _decode(head, path, None)
    lines = text.splitlines()
    first = next((i for i, line in enumerate(lines) if line.strip()), 0)
    return _check_header(path, lines, first, None), encoding, first


def _iter_csv(path: str, chunk_rows: int):
    import pandas as pd

    delimiter, encoding, first = _csv_head(path)
    opts = dict(sep=delimiter, encoding=encoding, skipinitialspace=True, chunksize=chunk_rows)
    with (
        pd.read_csv(path, **opts) as typed,
        pd.read_csv(path, dtype=str, keep_default_na=False, **opts) as raw,
    ):
        yield from _csv_chunks(path, typed, raw, delimiter, first)


def _csv_chunks(path, typed, raw, delimiter, first):
    import pandas as pd

    try:
        for t, r in zip(typed, raw, strict=True):
            t.columns = r.columns = [str(c).strip() for c in t.columns]
            if delimiter != ",":
                _convert_decimal_commas(t)
            t.attrs[ATTR_SOURCE] = path
            t.attrs[ATTR_FIRST_LINE] = first + 2
            t.attrs[ATTR_DELIMITER] = delimiter
            yield Chunk(t, r)
    except (pd.errors.ParserError, ValueError, UnicodeDecodeError) as exc:
        msg = " ".join(str(exc).split())
        raise CSVError(
            f"{path}: cannot parse as CSV ({delimiter_name(delimiter)}-separated): {msg}"
        ) from None


def _iter_parquet(path: str, chunk_rows: int):
    pf = _parquet_file(path)
    offset = 0
    for batch in pf.iter_batches(batch_size=chunk_rows):
        df = batch.to_pandas()
        df.index = df.index + offset
        offset += len(df)
        df.attrs[ATTR_SOURCE] = path
        yield Chunk(df, None)
    if offset == 0:
        raise DataError(f"{path!r} has no rows")


def iter_table(path, chunk_rows: int = CHUNK_ROWS):
    """Yield :class:`Chunk` objects of at most ``chunk_rows`` rows from a CSV or Parquet
    file. The DataFrames' index continues across chunks and ``attrs`` carry the source
    and (CSV) line numbers, so errors name the file's lines."""
    path = os.fspath(path)
    if is_parquet(path):
        return _iter_parquet(path, chunk_rows)
    return _iter_csv(path, chunk_rows)


def csv_delimiter(chunk: Chunk) -> str:
    """The delimiter of the input (comma for Parquet)."""
    return chunk.typed.attrs.get(ATTR_DELIMITER, ",")


class TableWriter:
    """Write DataFrames chunk by chunk to ``path`` (CSV or Parquet by extension) or, with
    ``path=None``, as CSV to ``stream``. Use as a context manager: the file appears
    (atomically renamed) only when the block ends without an error."""

    def __init__(self, path=None, stream=None, delimiter: str = ","):
        self.path = None if path is None else os.fspath(path)
        self.stream = stream
        self.delimiter = delimiter
        self.rows = 0
        self._parquet = self.path is not None and is_parquet(self.path)
        self._writer = None
        self._schema = None
        self._file = None
        self._tmp = None
        if self.path is not None:
            folder = os.path.dirname(os.path.abspath(self.path))
            if not os.path.isdir(folder):
                raise DataError(f"cannot write {self.path!r}: folder {folder!r} does not exist")
            if self._parquet:
                _pyarrow()
            self._tmp = os.path.join(folder, f".{os.path.basename(self.path)}.{os.getpid()}.tmp")

    def write(self, df) -> None:
        """Append the rows of ``df`` (the first call fixes the columns)."""
        if self._parquet:
            self._write_parquet(df)
        else:
            text = df.to_csv(
                index=False, header=self.rows == 0, sep=self.delimiter, lineterminator="\n"
            )
            if self.path is None:
                self.stream.write(text)
            else:
                if self._file is None:
                    self._file = open(self._tmp, "w", encoding="utf-8", newline="")  # noqa: SIM115
                self._file.write(text)
        self.rows += len(df)

    def _write_parquet(self, df) -> None:
        pa = _pyarrow()
        if self._writer is None:
            table = pa.Table.from_pandas(df, preserve_index=False)
            self._schema = table.schema
            self._writer = pa.parquet.ParquetWriter(self._tmp, self._schema)
        else:
            table = pa.Table.from_pandas(df, schema=self._schema, preserve_index=False)
        self._writer.write_table(table)

    @property
    def parquet(self) -> bool:
        """True when writing a Parquet file (typed columns), False for CSV text."""
        return self._parquet

    def close(self, error: BaseException | None = None) -> None:
        """Finish: rename the temporary file into place, or remove it after ``error``."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._tmp is not None and os.path.exists(self._tmp):
            if error is None:
                os.replace(self._tmp, self.path)
            else:
                os.remove(self._tmp)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.close(exc)
        return False
