"""Dropout masks hashed from keys where they are applied (``kernels.cpu_dropout``): what
``fastnn tune``'s folds and refit (``FASTNN_DROPOUT_RNG=kernel``) drop with."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("numba", reason="numba is not installed (pip install 'fastnn[numba]')")

from fastnn.kernels import cpu, cpu_dropout  # noqa: E402
from numba import njit  # noqa: E402


@njit(cache=False)
def _cols(A, U, u_pos, rate, keep, M, Y):
    cpu_dropout.dropout_cols(A, U, u_pos, rate, keep, M, Y)


@njit(cache=False)
def _rows(A, U, u_pos, rate, keep, M, Y):
    cpu_dropout.dropout_rows(A, U, u_pos, rate, keep, M, Y)


def _drop(A, keys, rate, u_pos=0, call=_cols):
    M, Y = np.empty_like(A), np.empty_like(A)
    keep = A.dtype.type(1.0 / (1.0 - rate))
    call(A, np.asarray(keys, dtype=np.uint64), u_pos, A.dtype.type(rate), keep, M, Y)
    return M, Y, keep


@pytest.mark.parametrize("shape", [(400, 257), (1, 100_001), (300, 256)])
@pytest.mark.parametrize("rate", [0.1, 0.3, 0.5])
def test_hashed_masks_drop_the_rate_and_scale_the_kept(shape, rate):
    """About ``rate`` of the elements are dropped (to within 2**-16 of the rate, plus
    sampling noise), the kept ones are scaled by ``1 / (1 - rate)``, ``Y = A * M``; odd
    and even widths, and the flat layout of the mid path."""
    A = np.random.default_rng(0).random(shape, dtype=np.float32) + 0.5
    M, Y, keep = _drop(A, (12345, 678), rate)
    assert set(np.unique(M)) <= {0.0, keep}
    n = A.size
    expected = cpu_dropout.threshold16(rate) / 65536
    assert abs(expected - rate) <= 2**-16
    assert abs((M == 0).mean() - expected) < 4 * np.sqrt(rate * (1 - rate) / n)
    np.testing.assert_array_equal(Y, A * M)


def test_hashed_masks_depend_on_both_keys_and_the_position():
    """Another key, or another counter position, gives an unrelated mask; the same keys
    and position give the same one. The two halves of a row that share a hash are not
    correlated."""
    A = np.ones((200, 512), dtype=np.float32)
    base = _drop(A, (1, 2), 0.5)[0] > 0
    np.testing.assert_array_equal(base, _drop(A, (1, 2), 0.5)[0] > 0)
    for keys, pos in (((1, 3), 0), ((2, 2), 0), ((1, 2), 7)):
        other = _drop(A, keys, 0.5, pos)[0] > 0
        assert abs(np.corrcoef(base.ravel(), other.ravel())[0, 1]) < 0.02
    low, high = base[:, :256].ravel(), base[:, 256:].ravel()
    assert abs(np.corrcoef(low, high)[0, 1]) < 0.02
    rows = base.reshape(200, 512)
    assert abs(np.corrcoef(rows[:-1].ravel(), rows[1:].ravel())[0, 1]) < 0.02


def test_rate_zero_keeps_everything():
    """The validation pass's table (rate 0, keep 1) passes the input through."""
    A = np.random.default_rng(1).standard_normal((30, 65)).astype(np.float32)
    M = np.full_like(A, 7.0)
    Y = np.empty_like(A)
    _cols(A, np.zeros(2, dtype=np.uint64), 0, np.float32(0.0), np.float32(1.0), M, Y)
    np.testing.assert_array_equal(M, 1.0)
    np.testing.assert_array_equal(Y, A)


def test_float_uniforms_still_give_the_per_layer_masks():
    """With float uniforms the dispatchers keep the host stream's layouts: the hand
    loops read them row-major across a feature-major step, the mid path flat."""
    rng = np.random.default_rng(2)
    A = rng.random((12, 40), dtype=np.float32)
    U = rng.random(A.size, dtype=np.float32)
    rate, keep = np.float32(0.25), np.float32(1 / 0.75)
    M, Y = np.empty_like(A), np.empty_like(A)
    _cols(A, U, 0, rate, keep, M, Y)
    M2, Y2 = np.empty_like(A), np.empty_like(A)
    cpu.dropout_forward_t(A, U, 0, rate, keep, M2, Y2)
    np.testing.assert_array_equal(M, M2)
    np.testing.assert_array_equal(Y, Y2)
    flat = A.reshape(1, -1)
    Mf, Yf = np.empty_like(flat), np.empty_like(flat)
    _rows(flat, U, 0, rate, keep, Mf, Yf)
    np.testing.assert_array_equal(Mf[0], np.where(U >= rate, keep, 0).astype(np.float32))
    np.testing.assert_array_equal(Yf, flat * Mf)


def test_calling_a_dispatcher_from_python_is_a_clear_error():
    with pytest.raises(TypeError, match="compiled code only"):
        cpu_dropout.dropout_cols(None, None, 0, 0.1, 1.0, None, None)
