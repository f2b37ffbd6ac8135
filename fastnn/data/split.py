"""Splitting rows into a training and a test set."""

from __future__ import annotations

import math
import numbers

import numpy as np

from ..errors import ConfigError, ShapeError


def _n_rows(a) -> int:
    shape = getattr(a, "shape", None)
    return int(shape[0]) if shape is not None and len(shape) else len(a)


def _take(a, idx):
    if hasattr(a, "iloc"):  # pandas: keep the index labels (error messages use them)
        return a.iloc[idx]
    if isinstance(a, np.ndarray) or hasattr(a, "__array__"):
        return np.asarray(a)[idx]
    return [a[i] for i in idx]


def split_indices(n: int, test_size: float = 0.2, seed=0) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(train_idx, test_idx)``.

    A permutation split: ``perm = numpy.random.RandomState(seed).permutation(n)``; its
    first ``ceil(n * test_size)`` entries (at least 1, at most n-1) are the test rows,
    the rest the training rows. These are the same rows scikit-learn's
    ``train_test_split(..., test_size=test_size, random_state=seed)`` picks, so results
    compare with the churn tutorial's.
    """
    if isinstance(test_size, bool) or not isinstance(test_size, numbers.Real):
        raise ConfigError(f"test_size must be a number in (0, 1), got {test_size!r}")
    if not 0.0 < float(test_size) < 1.0:
        raise ConfigError(f"test_size must be in (0, 1), got {test_size}")
    if n < 2:
        raise ShapeError(f"need at least 2 rows to split into train and test, got {n}")
    n_test = min(max(math.ceil(float(test_size) * n), 1), n - 1)
    try:
        perm = np.random.RandomState(seed).permutation(n)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"seed must be an integer in [0, 2**32), got {seed!r}: {exc}") from None
    return perm[n_test:], perm[:n_test]


def train_test_split(X, y=None, test_size: float = 0.2, seed=0):
    """Split rows at random into a training and a test set.

    A permutation split: the rows are shuffled with ``numpy.random.RandomState(seed)``
    and the first ``ceil(n * test_size)`` shuffled rows form the test set (see
    :func:`split_indices`: the same rows as scikit-learn's ``train_test_split`` with
    ``random_state=seed``); the same seed always gives the same split. Works on NumPy
    arrays, lists and pandas objects (DataFrames keep their index labels).

    Returns:
        ``(X_train, X_test, y_train, y_test)``, or ``(X_train, X_test)`` when ``y`` is
        None (the order scikit-learn uses).
    """
    n = _n_rows(X)
    if y is not None and _n_rows(y) != n:
        raise ShapeError(f"X has {n} rows but y has {_n_rows(y)}; they must match")
    train, test = split_indices(n, test_size, seed)
    if y is None:
        return _take(X, train), _take(X, test)
    return _take(X, train), _take(X, test), _take(y, train), _take(y, test)
