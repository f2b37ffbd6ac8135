"""fastnn.data: CSV reading, the bundled data, preprocessing rules and the split."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from fastnn import data
from fastnn.errors import ConfigError, CSVError, DataError


def write(tmp_path, text, name="d.csv", encoding="utf-8"):
    p = tmp_path / name
    p.write_bytes(text.encode(encoding) if isinstance(text, str) else text)
    return p


def frame(**cols):
    return pd.DataFrame(cols)


# --------------------------------------------------------------------------- bundled data
def test_load_churn_shape_and_columns():
    df = data.load_churn()
    assert df.shape == (10000, 14)
    assert list(df.columns)[:3] == ["RowNumber", "CustomerId", "Surname"]
    assert df["Exited"].isin([0, 1]).all()
    assert data.CHURN_TARGET == "Exited"


def test_churn_gives_eleven_features():
    df = data.load_churn()
    prep = data.Preprocessor(target="Exited", drop=data.CHURN_DROP)
    X, y = prep.fit_transform(df)
    assert X.shape == (10000, 11)
    assert prep.feature_names_.count("Geography=Germany") == 1
    assert "Geography=France" not in prep.feature_names_  # first sorted category dropped
    assert [n for n in prep.feature_names_ if n.startswith("Gender")] == ["Gender=Male"]
    np.testing.assert_allclose(X.mean(axis=0), 0, atol=1e-9)
    np.testing.assert_allclose(X.std(axis=0), 1, atol=1e-9)
    assert set(np.unique(y)) == {0, 1}


def test_churn_surname_is_refused_as_identifier():
    df = data.load_churn()
    with pytest.raises(DataError, match=r"'Surname' looks like an identifier.*--drop Surname"):
        data.Preprocessor(target="Exited", drop=["RowNumber", "CustomerId"]).fit(df)


def test_import_fastnn_does_not_import_pandas():
    code = "import sys, fastnn, fastnn.data; print('pandas' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# --------------------------------------------------------------------------- read_csv
def test_read_csv_missing_file_and_folder(tmp_path):
    with pytest.raises(CSVError, match="does not exist"):
        data.read_csv(tmp_path / "nope.csv")
    with pytest.raises(CSVError, match="is a folder"):
        data.read_csv(tmp_path)


@pytest.mark.parametrize(
    "text, match",
    [
        ("", "is empty"),
        ("\n \n", "is empty"),
        ("a,b,c\n", "header line but no data rows"),
        ("a,b,c\n\n\n", "header line but no data rows"),
    ],
)
def test_read_csv_empty_and_header_only(tmp_path, text, match):
    with pytest.raises(CSVError, match=match):
        data.read_csv(write(tmp_path, text))


def test_read_csv_duplicate_columns(tmp_path):
    with pytest.raises(CSVError, match=r"duplicate column names: 'Age' \(columns 1, 3\)"):
        data.read_csv(write(tmp_path, "Age,x,Age\n1,2,3\n"))


@pytest.mark.parametrize("delim", [",", ";", "\t", "|"])
def test_read_csv_detects_delimiter(tmp_path, delim):
    rows = [["name", "age", "city"], ["Ann", "31", "Paris, FR"], ["Bob", "42", "Oslo"]]
    if delim == ",":
        rows[1][2] = '"Paris, FR"'
    text = "\n".join(delim.join(r) for r in rows) + "\n"
    df = data.read_csv(write(tmp_path, text))
    assert list(df.columns) == ["name", "age", "city"]
    assert df["age"].tolist() == [31, 42]
    assert df["city"].tolist() == ["Paris, FR", "Oslo"]
    assert df.attrs["fastnn_delimiter"] == delim


@pytest.mark.parametrize(
    "encoding, expected",
    [("utf-8", "utf-8"), ("utf-8-sig", "utf-8-sig"), ("cp1252", "cp1252"), ("latin-1", "latin-1")],
)
def test_read_csv_detects_encoding(tmp_path, encoding, expected):
    # "\x8f" is undefined in cp1252, so only latin-1 decodes the last file
    city = "Zürich Ž" if encoding == "cp1252" else "Zürich"
    text = f"name,city\nA,{city}\n"
    raw = text.encode(encoding)
    if encoding == "latin-1":
        raw = raw.replace(b"A", b"\x8f")
    df = data.read_csv(write(tmp_path, raw))
    assert list(df.columns) == ["name", "city"]  # no BOM glued to the first name
    assert df["city"][0] == city
    assert df.attrs["fastnn_encoding"] == expected


def test_read_csv_strips_names_and_reads_gz(tmp_path):
    import gzip

    p = tmp_path / "d.csv.gz"
    p.write_bytes(gzip.compress(b" a , b\n1, 2\n"))
    df = data.read_csv(p)
    assert list(df.columns) == ["a", "b"]
    assert df["b"].tolist() == [2]


def test_read_csv_bad_rows_and_binary(tmp_path):
    with pytest.raises(CSVError, match="cannot parse"):
        data.read_csv(write(tmp_path, "a,b\n1,2\n3,4,5,6\n"))
    with pytest.raises(CSVError, match="binary"):
        data.read_csv(write(tmp_path, b"\x00\x01\x02abc\n"))


def test_read_csv_raw_keeps_text(tmp_path):
    df = data.read_csv(write(tmp_path, "id,x\n007,NA\n008,\n"), raw=True)
    assert df["id"].tolist() == ["007", "008"]
    assert df["x"].tolist() == ["NA", ""]


# --------------------------------------------------------------------------- column kinds
def test_numeric_detection_with_blank_and_string_numbers():
    df = frame(a=["1", " 2 ", "", "4"], b=[1.0, 2.0, 3.0, 4.0], c=["x", "y", "x", "y"])
    prep = data.Preprocessor(missing="mean").fit(df)
    kinds = {s["name"]: s["kind"] for s in prep.columns_}
    assert kinds == {"a": "numeric", "b": "numeric", "c": "categorical"}
    assert prep.feature_names_ == ["a", "b", "c=y"]


def test_one_hot_k_minus_one_sorted():
    df = frame(g=["b", "c", "a", "c"], t=[0, 1, 0, 1])
    prep = data.Preprocessor(target="t").fit(df)
    assert prep.feature_names_ == ["g=b", "g=c"]
    X, y = prep.transform(df)
    raw = X * prep.scale_ + prep.mean_  # undo the scaling
    np.testing.assert_allclose(raw, [[1, 0], [0, 1], [0, 0], [0, 1]])
    assert y.tolist() == [0, 1, 0, 1]


def test_identifier_rule_thresholds():
    n = 300
    ids = [f"id{i}" for i in range(n)]
    with pytest.raises(DataError, match="identifier.*drop=\\['k'\\]"):
        data.Preprocessor().fit(frame(k=ids, x=np.arange(n)))
    # few distinct values: a category, even if they are all distinct in a tiny table
    prep = data.Preprocessor().fit(frame(k=ids[:40], x=np.arange(40)))
    assert prep.n_features == 40
    # many rows, 60 distinct (< 20% of rows): still a category
    prep = data.Preprocessor().fit(frame(k=[ids[i % 60] for i in range(n)], x=np.arange(n)))
    assert prep.n_features == 60


def test_mostly_numeric_column_has_bad_cells():
    vals = [str(i) for i in range(20)]
    vals[3], vals[11] = "?", "n/a x"
    df = frame(a=vals, t=[0, 1] * 10)
    with pytest.raises(DataError) as exc:
        data.Preprocessor(target="t").fit(df)
    msg = str(exc.value)
    assert "column 'a'" in msg and "2 non-numeric" in msg
    assert "rows 3, 11 (0-based index)" in msg
    assert "--missing drop" in msg and "\n" not in msg


def test_missing_error_names_csv_lines(tmp_path):
    df = data.read_csv(write(tmp_path, "a,b,t\n1,x,0\n,y,1\n3,x,0\n4,,1\n"))
    with pytest.raises(DataError, match=r"column 'a' has 1 missing cell\(s\) \(CSV line 3\)"):
        data.Preprocessor(target="t").fit(df)
    # the split keeps the index labels, so lines stay right after iloc
    with pytest.raises(DataError, match=r"CSV line 5"):
        data.Preprocessor(target="t").fit(df.iloc[[3, 0, 2]])


def test_missing_drop_and_mean():
    df = frame(a=["1", "", "3", "?", "5"], g=["x", "y", None, "x", "y"], t=[0, 1, 0, 1, 1])
    drop = data.Preprocessor(target="t", missing="drop")
    X, y, keep = drop.fit(df).transform(df, return_mask=True)
    assert keep.tolist() == [True, False, False, False, True]
    assert X.shape == (2, 2) and y.tolist() == [0, 1]

    mean = data.Preprocessor(target="t", missing="mean").fit(df)
    X, y = mean.transform(df)
    assert X.shape == (5, 2) and np.isfinite(X).all()
    raw = X * mean.scale_ + mean.mean_
    np.testing.assert_allclose(raw[:, 0], [1, 3, 3, 3, 5])  # mean of 1, 3, 5
    np.testing.assert_allclose(raw[2, 1], 0.5)  # g=y frequency among x, y, x, y


def test_missing_target_cells():
    df = frame(a=[1, 2, 3, 4], t=["Yes", None, "No", "Yes"])
    with pytest.raises(DataError, match="target 't' is blank in row 1"):
        data.Preprocessor(target="t").fit(df)
    X, y = data.Preprocessor(target="t", missing="drop").fit_transform(df)
    assert y.tolist() == [1, 0, 1]


def test_empty_numeric_column_is_an_error():
    with pytest.raises(DataError, match="'a' has no values"):
        data.Preprocessor().fit(frame(a=[None, None], b=[1, 2]))


# --------------------------------------------------------------------------- target
def test_string_target_mapping_positive_is_later_sorted():
    df = frame(x=[1.0, 2.0, 3.0, 4.0], y=["Yes", "No", "No", "Yes"])
    prep = data.Preprocessor(target="y").fit(df)
    assert prep.target_mapping == {"No": 0, "Yes": 1}
    assert prep.positive_class == "Yes"
    _, y = prep.transform(df)
    assert y.tolist() == [1, 0, 0, 1]
    assert prep.labels([1, 0]).tolist() == ["Yes", "No"]


def test_target_errors():
    with pytest.raises(DataError, match=r"3 different values \('a', 'b', 'c'\).*--task binary"):
        data.Preprocessor(target="y", task="binary").fit(frame(x=[1, 2, 3], y=["a", "b", "c"]))
    with pytest.raises(DataError, match="single value"):
        data.Preprocessor(target="y").fit(frame(x=[1, 2, 3], y=[1, 1, 1]))
    with pytest.raises(DataError, match="target column 'z' not found; columns are: x, y"):
        data.Preprocessor(target="z").fit(frame(x=[1, 2], y=[0, 1]))
    with pytest.raises(DataError, match="column to drop 'q' not found"):
        data.Preprocessor(target="y", drop=["q"]).fit(frame(x=[1, 2], y=[0, 1]))
    with pytest.raises(ConfigError, match="missing must be one of"):
        data.Preprocessor(missing="zero")


def test_numeric_target_kept_and_unseen_target_value():
    df = frame(x=[1, 2, 3, 4], y=[0.0, 1.0, 1.0, 0.0])
    prep = data.Preprocessor(target="y").fit(df)
    assert prep.target_mapping is None and prep.classes_ == [0, 1]
    with pytest.raises(DataError, match="must be 0 or 1; found '2'"):
        prep.transform(frame(x=[1], y=[2]))
    sprep = data.Preprocessor(target="y").fit(frame(x=[1, 2], y=["No", "Yes"]))
    with pytest.raises(DataError, match="not seen in training: 'Maybe'"):
        sprep.transform(frame(x=[1], y=["Maybe"]))


# --------------------------------------------------------------------------- transform
def test_unseen_category_error_names_column_and_values():
    prep = data.Preprocessor(target="t").fit(frame(g=["a", "b", "a"], t=[0, 1, 1]))
    with pytest.raises(DataError, match=r"column 'g' has value\(s\) not seen in training: 'z'"):
        prep.transform(frame(g=["a", "z"], t=[0, 1]))


def test_transform_without_target_and_missing_feature_column():
    df = frame(a=[1.0, 2.0, 3.0], g=["u", "v", "u"], t=["No", "Yes", "No"], junk=[9, 9, 9])
    prep = data.Preprocessor(target="t", drop=["junk"]).fit(df)
    X, y = prep.transform(df[["a", "g"]])  # target and dropped column absent
    assert X.shape == (3, 2) and y is None
    X, y = prep.transform(df, with_target=False)
    assert y is None
    with pytest.raises(DataError, match="'g'.*used in training are missing"):
        prep.transform(df[["a"]])
    with pytest.raises(DataError, match="target column 't' not found"):
        prep.transform(df[["a", "g"]], with_target=True)


def test_constant_column_scale_is_one():
    prep = data.Preprocessor(target="t").fit(frame(a=[5, 5, 5], b=[1, 2, 3], t=[0, 1, 0]))
    assert prep.scale_[0] == 1.0
    X, _ = prep.transform(frame(a=[5, 6], b=[1, 2]))
    assert X[:, 0].tolist() == [0.0, 1.0]


def test_to_dict_from_dict_round_trip():
    df = frame(a=["1", "", "3", "4"], g=["x", "y", "z", "x"], t=["no", "yes", "yes", "no"])
    prep = data.Preprocessor(target="t", missing="mean").fit(df)
    state = json.loads(json.dumps(prep.to_dict(), allow_nan=False))
    back = data.Preprocessor.from_dict(state)
    X1, y1 = prep.transform(df)
    X2, y2 = back.transform(df)
    np.testing.assert_array_equal(X1, X2)
    np.testing.assert_array_equal(y1, y2)
    assert back.target_mapping == {"no": 0, "yes": 1}
    assert back.missing == "mean" and back.feature_names_ == prep.feature_names_


@pytest.mark.parametrize(
    "mutate",
    [
        lambda s: s.update(kind="other"),
        lambda s: s.update(version=99),
        lambda s: s.update(mean=s["mean"][:-1]),
        lambda s: s.update(scale=[0.0] * len(s["scale"])),
        lambda s: s["columns"][0].update(kind="weird"),
        lambda s: s.update(classes=["only"]),
        lambda s: s.pop("columns"),
    ],
)
def test_from_dict_rejects_bad_state(mutate):
    prep = data.Preprocessor(target="t").fit(frame(a=[1, 2], g=["x", "y"], t=[0, 1]))
    state = prep.to_dict()
    mutate(state)
    with pytest.raises(DataError, match="invalid preprocessing state"):
        data.Preprocessor.from_dict(state)


# --------------------------------------------------------------------------- split
def test_train_test_split_is_a_seeded_permutation():
    X = np.arange(20).reshape(10, 2)
    y = np.arange(10)
    Xtr, Xte, ytr, yte = data.train_test_split(X, y, test_size=0.3, seed=1)
    assert len(yte) == 3 and len(ytr) == 7
    assert sorted(ytr.tolist() + yte.tolist()) == list(range(10))
    np.testing.assert_array_equal(Xte[:, 0] // 2, yte)
    perm = np.random.RandomState(1).permutation(10)  # scikit-learn's rows
    assert yte.tolist() == perm[:3].tolist()
    again = data.train_test_split(X, y, test_size=0.3, seed=1)
    np.testing.assert_array_equal(again[3], yte)


def test_train_test_split_dataframe_and_errors():
    df = frame(a=range(5))
    tr, te = data.train_test_split(df, test_size=0.2, seed=0)
    assert len(tr) == 4 and len(te) == 1
    assert sorted(tr.index.tolist() + te.index.tolist()) == list(range(5))
    with pytest.raises(ConfigError):
        data.train_test_split(df, test_size=1.5)
    with pytest.raises(ValueError, match="rows"):
        data.train_test_split(np.zeros((3, 1)), np.zeros(4))


def test_fit_with_train_rows_uses_them_for_statistics_only():
    df = frame(a=[0.0, 2.0, 100.0, 102.0], g=["x", "y", "y", "z"], t=[0, 1, 0, 1])
    prep = data.Preprocessor(target="t").fit(df, train_rows=[0, 1])
    assert prep.mean_[0] == 1.0 and prep.scale_[0] == 1.0  # rows 0 and 1 only
    assert prep.columns_[1]["categories"] == ["x", "y", "z"]  # every row
    X, y = prep.transform(df.iloc[[2, 3]])  # 'z' is not an unseen category
    assert X.shape == (2, 3) and y.tolist() == [0, 1]
    # a bad cell outside the training rows is still reported at fit time
    with pytest.raises(DataError, match="row 3"):
        data.Preprocessor(target="t").fit(
            frame(a=["1", "2", "3", "x"], t=[0, 1, 0, 1]), train_rows=[0, 1]
        )
    mask = np.array([True, True, False, False])
    same = data.Preprocessor(target="t").fit(df, train_rows=mask)
    np.testing.assert_array_equal(same.mean_, prep.mean_)


def test_read_csv_decimal_comma_in_semicolon_files(tmp_path):
    df = data.read_csv(write(tmp_path, "a;b;c\n1,5;x,y;1.234,5\n-3,25;z;7\n"))
    assert df["a"].tolist() == [1.5, -3.25]
    assert df["b"].tolist() == ["x,y", "z"]  # text with a comma stays text
    assert df["c"].tolist() == [1234.5, 7.0]
    comma = data.read_csv(write(tmp_path, 'a,b\n"1,5",2\n', name="c.csv"))
    assert comma["a"].tolist() == ["1,5"]  # comma-separated files keep quoted text
