"""Scoring a DataFrame piece by piece: :func:`predict_frame` on one pandas DataFrame (a
Dask partition, a chunk of a big CSV), :func:`predict_dask` over a whole Dask DataFrame.

>>> import dask.dataframe as dd                                    # doctest: +SKIP
>>> ddf = dd.read_parquet("customers/")                            # doctest: +SKIP
>>> model = fastnn.load("run1/model.safetensors")                  # doctest: +SKIP
>>> scores = ddf.map_partitions(fastnn.predict_frame, model,
...                             meta=fastnn.frame.frame_meta(model))  # doctest: +SKIP
>>> scores.to_parquet("scores/")                                   # doctest: +SKIP

The model travels to the Dask workers by pickle, which for a fastnn model is its
safetensors bytes and JSON (see :meth:`Sequential.__getstate__`): the workers rebuild
arrays, they run no code of the payload's choosing. Each worker needs fastnn (and, for
Dask, the ``dask`` extra: ``pip install "fastnn[dask]"``).
"""

from __future__ import annotations

import numpy as np

from .errors import ConfigError, DataError


def _preprocessor(model):
    from .data import Preprocessor

    state = getattr(model, "preprocessing", None)
    return None if state is None else Preprocessor.from_dict(state)


def _free(name: str, taken: set) -> str:
    out, i = name, 0
    while out in taken:
        i += 1
        out = f"{name}_{i}"
    taken.add(out)
    return out


def _output_columns(prep, P, taken) -> dict:
    """The columns `fastnn predict` writes (the Preprocessor's own rule when it has one)."""
    if hasattr(prep, "output_columns"):
        return prep.output_columns(P, taken=taken)
    taken = set(map(str, taken))
    base = str(prep.target if prep.target is not None else "target")
    p = np.asarray(P, dtype=np.float64)[:, 0]
    labels = prep.labels((p >= 0.5).astype(np.int64))
    return {_free(f"{base}_prob", taken): p, _free(f"{base}_pred", taken): labels}


def predict_frame(df, model, *, columns=None, unknown: str = "error", batch_size: int = 4096):
    """Score the rows of a pandas DataFrame; returns a DataFrame with the same index.

    * A model from ``fastnn train --out`` (it carries its preprocessing): ``df`` holds
      the raw columns, as in ``fastnn predict``; the result has the columns
      ``fastnn predict`` adds (``<target>_prob``/``<target>_pred`` for binary, ...).
      Rows a ``--missing drop`` model cannot score get NaN / None.
    * Any other model: ``columns`` (default: every column of ``df``) are the features
      in the model's order; the result has ``output`` (one output) or ``output_0``...

    Args:
        df: a pandas DataFrame (one Dask partition).
        model: a built :class:`fastnn.Sequential`, or a model file path.
        columns: feature columns for a model without preprocessing.
        unknown: a category not seen in training: "error" (as ``fastnn predict``) or
            "ignore" (all-zero one-hot, as ``fastnn predict --unknown ignore``).
        batch_size: rows per forward pass.
    """
    import pandas as pd

    from .io import load
    from .layers import Sequential

    if not isinstance(model, Sequential):
        model = load(model)
    if not isinstance(df, pd.DataFrame):
        raise DataError(f"predict_frame takes a pandas DataFrame, got {type(df).__name__}")
    prep = _preprocessor(model)
    if prep is None:
        X = df[list(columns)] if columns is not None else df
        if len(X) == 0:
            P = np.zeros((0, model.output_dim))
        else:
            P = model.predict(X, batch_size=batch_size)
        names = ["output"] if P.shape[1] == 1 else [f"output_{j}" for j in range(P.shape[1])]
        return pd.DataFrame(np.asarray(P, dtype=np.float64), index=df.index, columns=names)
    if columns is not None:
        raise ConfigError("columns= is for models without preprocessing; this one has its own")
    extra = {} if unknown == "error" else {"unknown": unknown}
    try:
        X, _, keep = prep.transform(df, with_target=False, return_mask=True, **extra)
    except TypeError:  # a Preprocessor without unknown= (before multi-class/regression)
        raise ConfigError(f"unknown={unknown!r} needs a newer fastnn Preprocessor") from None
    if X.shape[1] != model.input_dim:
        raise DataError(
            f"the model takes {model.input_dim} features, its preprocessing gives {X.shape[1]}"
        )
    P = np.full((len(df), model.output_dim), np.nan)
    if X.shape[0]:
        P[keep] = model.predict(X, batch_size=batch_size)
    # an empty partition (Dask's meta) is scored as one zero row, then cut to none
    cols = _output_columns(prep, P if len(P) else np.zeros((1, P.shape[1])), df.columns)
    out = pd.DataFrame(index=df.index)
    for name, values in cols.items():
        values = np.asarray(values)[: len(df)]
        if values.dtype.kind in "OUS":  # labels: a real dtype, so Parquet and Dask agree
            values = pd.Series(np.where(keep, values.astype(object), None), index=df.index)
            values = values.astype(_label_dtype(prep.classes_))
        out[name] = values
    return out


def _label_dtype(classes) -> str:
    """Nullable dtype of a label column: "string" for text classes, "Int64" for whole
    numbers, else float64 (a row that cannot be scored is NA)."""
    if all(isinstance(c, str) for c in classes):
        return "string"
    if all(float(c).is_integer() for c in classes):
        return "Int64"
    return "float64"


def frame_meta(model, columns=None):
    """An empty DataFrame with the columns and dtypes :func:`predict_frame` returns
    for ``model``: the ``meta=`` of ``ddf.map_partitions``."""
    import pandas as pd

    prep = _preprocessor(model)
    if prep is None:
        k = model.output_dim
        names = ["output"] if k == 1 else [f"output_{j}" for j in range(k)]
        return pd.DataFrame({n: pd.Series(dtype="float64") for n in names})
    empty = pd.DataFrame({s["name"]: pd.Series(dtype=object) for s in prep.columns_})
    return predict_frame(empty, model)


def predict_dask(ddf, model, **kwargs):
    """``ddf.map_partitions(predict_frame, model, meta=...)``: a lazy Dask DataFrame
    of scores, partition by partition (``compute()`` or ``to_parquet`` runs it)."""
    meta = frame_meta(model, kwargs.get("columns"))
    return ddf.map_partitions(predict_frame, model, meta=meta, **kwargs)
