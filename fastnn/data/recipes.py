"""The churn tutorial's data, ready to train on: the one definition every test, benchmark
and example uses (the CLI's default ``fastnn train`` runs the same steps)."""

from __future__ import annotations

import numpy as np

from .loading import CHURN_DROP, CHURN_TARGET, load_churn
from .preprocessing import Preprocessor
from .split import split_indices


def churn_arrays(test_size: float = 0.2, seed: int = 0, dtype="float64"):
    """The bundled churn data with the tutorial's preprocessing, split for training.

    Drops RowNumber/CustomerId/Surname, one-hot encodes Geography and Gender (k-1
    columns: 11 features in all), splits with :func:`~fastnn.data.split_indices`
    (seed 0 picks the same rows as scikit-learn's ``train_test_split(random_state=0)``)
    and standardizes with the training rows' statistics.

    Returns:
        ``(X_train, y_train, X_test, y_test)``: ``X`` of shape ``(n, 11)``, ``y`` of
        shape ``(n,)`` with 0/1 labels, all of ``dtype`` (8,000 and 2,000 rows by default).
    """
    df = load_churn()
    train_idx, test_idx = split_indices(len(df), test_size, seed)
    prep = Preprocessor(target=CHURN_TARGET, drop=CHURN_DROP).fit(df, train_rows=train_idx)
    X_tr, y_tr = prep.transform(df.iloc[train_idx])
    X_te, y_te = prep.transform(df.iloc[test_idx])
    dt = np.dtype(dtype)
    return X_tr.astype(dt), y_tr.astype(dt), X_te.astype(dt), y_te.astype(dt)
