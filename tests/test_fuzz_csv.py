"""Fuzz the CSV loader and the preprocessor: arbitrary bytes and mangled versions of the
churn CSV either load or raise fastnn's own errors (FastnnError), never anything else."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastnn.data import Preprocessor, read_csv
from fastnn.errors import FastnnError

FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))

HEADER = "Age,City,Score,Balance,Left"
ROWS = [
    "42,Paris,619,0,1",
    "41,Madrid,608,83807.86,0",
    "39,Paris,699,0,0",
    "43,Berlin,502,159660.8,1",
    "44,Madrid,850,125510.82,0",
    "50,Berlin,645,113755.78,1",
]
cells = st.sampled_from(
    [
        "",
        " ",
        "NaN",
        "inf",
        "-1e308",
        "1e400",
        "abc",
        "Paris",
        "0",
        "1",
        "2",
        "Yes",
        "No",
        '"q,uoted"',
        "é",
        "\x00",
        ";",
        "\t",
        "1,5",
    ]
)


def _run(tmp_path, data: bytes, suffix=".csv"):
    p = tmp_path / f"f{suffix}"
    p.write_bytes(data)
    try:
        df = read_csv(p)
        prep = Preprocessor(target="Left" if "Left" in df.columns else None, missing="mean")
        X, y = prep.fit_transform(df)
        assert np.isfinite(X).all()
        X2, _ = Preprocessor.from_dict(prep.to_dict()).transform(df)
        assert np.array_equal(X, X2)
    except FastnnError:
        pass


@FUZZ
@given(data=st.binary(max_size=300))
def test_random_bytes(tmp_path_factory, data):
    _run(tmp_path_factory.mktemp("b"), data)


@FUZZ
@given(data=st.data())
def test_mangled_csv(tmp_path_factory, data):
    rows = [r.split(",") for r in ROWS]
    for _ in range(data.draw(st.integers(0, 6))):
        r = data.draw(st.integers(0, len(rows) - 1))
        c = data.draw(st.integers(0, 4))
        rows[r][c] = data.draw(cells)
    if data.draw(st.booleans()):
        del rows[data.draw(st.integers(0, len(rows) - 1))][-1]  # a short row
    sep = data.draw(st.sampled_from([",", ";", "\t", "|"]))
    header = HEADER.replace(",", sep)
    if data.draw(st.booleans()):
        header = header.replace("Score", "Age")  # duplicate column name
    text = "\n".join([header] + [sep.join(r) for r in rows]) + "\n"
    enc = data.draw(st.sampled_from(["utf-8", "utf-8-sig", "latin-1", "utf-16"]))
    try:
        raw = text.encode(enc)
    except UnicodeEncodeError:
        raw = text.encode("utf-8")
    _run(tmp_path_factory.mktemp("m"), raw)


def test_values_too_large_to_standardize_are_named():
    import pytest

    from fastnn.data import read_csv_text
    from fastnn.errors import DataError

    df = read_csv_text("a,b,y\n1,1e308,0\n2,-1e308,1\n3,5,0\n")
    with pytest.raises(DataError, match="'b' has values too large"):
        Preprocessor(target="y").fit(df)
