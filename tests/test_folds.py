"""fastnn.folds: the cross-validation splits fastnn tune trains and scores on."""

from __future__ import annotations

import numpy as np
import pytest

from fastnn import folds as cv
from fastnn.errors import ConfigError


@pytest.mark.parametrize("n,k", [(10, 2), (101, 5), (7, 7), (1000, 3)])
def test_kfold_test_parts_partition_the_rows_evenly(n, k):
    parts = cv.kfold(n, k, seed=0)
    assert np.array_equal(np.sort(np.concatenate(parts)), np.arange(n))
    sizes = [p.size for p in parts]
    assert max(sizes) - min(sizes) <= 1
    assert all(np.all(np.diff(p) > 0) for p in parts)  # sorted, no repeats


def test_stratified_kfold_keeps_every_class_share_to_one_row():
    rng = np.random.default_rng(1)
    y = rng.choice([0, 1, 2], size=997, p=[0.7, 0.25, 0.05])
    parts = cv.kfold(len(y), 5, seed=3, stratify=y)
    assert np.array_equal(np.sort(np.concatenate(parts)), np.arange(len(y)))
    for c in range(3):
        per_part = [(y[p] == c).sum() for p in parts]
        assert max(per_part) - min(per_part) <= 1, (c, per_part)
    sizes = [p.size for p in parts]
    assert max(sizes) - min(sizes) <= 1


def test_folds_depend_on_the_seed_only():
    y = np.arange(200) % 2
    a = cv.kfold(200, 4, seed=5, stratify=y)
    b = cv.kfold(200, 4, seed=5, stratify=y)
    c = cv.kfold(200, 4, seed=6, stratify=y)
    assert all(np.array_equal(x, z) for x, z in zip(a, b, strict=True))
    assert not all(np.array_equal(x, z) for x, z in zip(a, c, strict=True))


def test_holdout_takes_the_share_of_each_class():
    rows = np.arange(100, 1100)
    y = (np.arange(1000) % 10 == 0).astype(int)  # 10% positives
    kept, held = cv.holdout(rows, 0.15, seed=0, stratify=y)
    assert np.array_equal(np.sort(np.concatenate([kept, held])), rows)
    assert held.size == 150 and (y[held - 100] == 1).sum() == 15
    plain_kept, plain_held = cv.holdout(rows, 0.2, seed=0)
    assert plain_held.size == 200 and plain_kept.size == 800


def test_holdout_always_leaves_a_row_on_each_side():
    kept, held = cv.holdout(np.arange(3), 0.01, seed=0)
    assert held.size == 1 and kept.size == 2
    kept, held = cv.holdout(np.arange(2), 0.99, seed=0)
    assert held.size == 1 and kept.size == 1


def test_bad_fold_counts_are_config_errors():
    with pytest.raises(ConfigError, match="folds must be between 2 and the 5 rows"):
        cv.kfold(5, 6, seed=0)
    with pytest.raises(ConfigError, match="folds must be between 2"):
        cv.kfold(5, 1, seed=0)
    with pytest.raises(ConfigError, match="cannot hold out"):
        cv.holdout(np.arange(10), 1.5, seed=0)
