"""Scoring DataFrames by partition: predict_frame equals `fastnn predict`, and a real
two-process Dask cluster scores a Dask DataFrame with the model shipped by pickle."""

from __future__ import annotations

import os
import sys

import numpy as np
import pandas as pd
import pytest

import fastnn
from fastnn.errors import DataError
from fastnn.frame import frame_meta, predict_dask, predict_frame
from fastnn.layers import Dense

CHURN_ROWS = 1200


@pytest.fixture(scope="module")
def churn_model(tmp_path_factory):
    """A CLI-trained churn model (numpy backend, 2 epochs) and the rows it scores."""
    from click.testing import CliRunner

    from fastnn.cli import main

    out = tmp_path_factory.mktemp("run")
    res = CliRunner().invoke(
        main, ["train", "--epochs", "2", "--backend", "numpy", "--quiet", "--out", str(out)]
    )
    assert res.exit_code == 0, res.stderr
    model = fastnn.load(out / "model.safetensors", backend="numpy")
    df = fastnn.data.load_churn().iloc[:CHURN_ROWS]
    return model, df, out


def test_predict_frame_matches_fastnn_predict(churn_model, tmp_path):
    from click.testing import CliRunner

    from fastnn.cli import main

    model, df, out = churn_model
    csv = tmp_path / "rows.csv"
    df.to_csv(csv, index=False)
    res = CliRunner().invoke(
        main, ["predict", str(out / "model.safetensors"), str(csv), "--out", str(tmp_path / "p")]
    )
    assert res.exit_code == 0, res.stderr
    cli = pd.read_csv(tmp_path / "p")
    got = predict_frame(df, model)
    assert list(got.columns) == ["Exited_prob", "Exited_pred"]
    assert got.index.equals(df.index)
    assert np.abs(got["Exited_prob"].to_numpy() - cli["Exited_prob"].to_numpy()).max() < 1e-6
    assert (got["Exited_pred"].astype(int).to_numpy() == cli["Exited_pred"].to_numpy()).all()
    meta = frame_meta(model)
    assert list(meta.columns) == list(got.columns) and len(meta) == 0


def test_predict_frame_library_model_and_errors():
    model = fastnn.Sequential([Dense(2, activation="softmax")], backend="numpy").build(3)
    df = pd.DataFrame(np.random.default_rng(0).normal(size=(7, 4)), columns=list("abcd"))
    got = predict_frame(df, model, columns=["a", "b", "c"])
    assert list(got.columns) == ["output_0", "output_1"]
    assert np.allclose(got.to_numpy(), model.predict(df[["a", "b", "c"]].to_numpy()))
    with pytest.raises(DataError, match="DataFrame"):
        predict_frame(df.to_numpy(), model)
    with pytest.raises(ValueError, match="4 features"):
        predict_frame(df, model)


def _partition_pid(part):
    return pd.DataFrame({"pid": [os.getpid()]}, index=part.index[:1])


@pytest.mark.slow
def test_dask_local_cluster_scores_partitions(churn_model, monkeypatch, tmp_path):
    """Two worker processes on loopback; the model goes to them by pickle."""
    dd = pytest.importorskip("dask.dataframe")
    distributed = pytest.importorskip("distributed")
    # Workers start by multiprocessing "spawn", which re-runs the __main__ file; a
    # pytest launcher script without an `if __name__ == "__main__"` guard would then
    # start pytest again inside each worker. The workers need nothing from __main__.
    main = sys.modules["__main__"]
    if getattr(main, "__spec__", None) is None:
        monkeypatch.delattr(main, "__file__", raising=False)
    model, df, _ = churn_model
    ddf = dd.from_pandas(df, npartitions=4)
    with distributed.LocalCluster(
        n_workers=2,
        processes=True,
        threads_per_worker=1,
        dashboard_address=None,
        host="127.0.0.1",
        silence_logs=40,
    ) as cluster, distributed.Client(cluster) as client:  # fmt: skip
        scores = predict_dask(ddf, model).compute()
        lazy = ddf.map_partitions(predict_frame, model, meta=frame_meta(model))
        lazy.to_parquet(tmp_path / "scores")  # written by the workers, partition by partition
        pids = ddf.map_partitions(_partition_pid, meta={"pid": "int64"}).compute()["pid"]
        workers = set(client.run(os.getpid).values())
    expected = predict_frame(df, model)
    pd.testing.assert_frame_equal(scores, expected)
    written = dd.read_parquet(tmp_path / "scores").compute()
    pd.testing.assert_frame_equal(written, expected, check_index_type=False)
    assert set(pids) <= workers and os.getpid() not in workers and len(workers) == 2


def test_unseen_category(churn_model):
    model, df, _ = churn_model
    rows = df.iloc[:3].assign(Geography=["France", "Narnia", "Spain"])
    with pytest.raises(DataError, match="Narnia"):
        predict_frame(rows, model)
    if not hasattr(fastnn.data.Preprocessor, "output_columns"):
        pytest.skip("unknown='ignore' arrives with the multi-class/regression Preprocessor")
    got = predict_frame(rows, model, unknown="ignore")
    as_france = predict_frame(rows.assign(Geography=["France"] * 3), model)  # the reference
    assert got["Exited_prob"].iloc[1] == as_france["Exited_prob"].iloc[1]
