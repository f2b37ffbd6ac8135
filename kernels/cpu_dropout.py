"""Dropout masks hashed where they are applied: the compiled fused epochs' dropout when
its randomness comes from keys (``FASTNN_DROPOUT_RNG=kernel``, ``fastnn tune``).

The fused epochs (:mod:`~fastnn.kernels.cpu_cols`, :mod:`~fastnn.kernels.cpu_mid`) take
their dropout randomness as ``U``, in one of two forms, chosen when Numba compiles the
call (the dispatchers :func:`dropout_cols` and :func:`dropout_rows`):

* floats: uniforms drawn beforehand, one per element in the per-layer path's order
  (batch row, then feature), as every backend draws them from the training generator;
* two unsigned 32-bit keys (a ``uint64`` array of 2): each element's mask comes from a
  counter-based hash of its position, in the same pass that applies it
  (:func:`dropout_hashed`). No uniforms are written or read back: the feature-major
  hand loops read the float uniforms across the batch (a stride of the layer width), and
  the uniforms alone cost as much as the rest (50x256 elements, 2-core Xeon, medians:
  drawing them 1.3 ns an element, the strided mask 1.35-1.9; hashed in place, 16 bits an
  element, 0.7-0.8 ns for both, against 0.5-0.6 for the mask with no hash at all).
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic, overload

from .cpu import _JIT, dropout_forward_t, dropout_mask


@intrinsic
def _lowbias32(typingctx, x):
    """:func:`~fastnn.kernels.cpu._mix32` of the low 32 bits of a ``uint64``, computed on
    32-bit integers (Numba widens ``uint32`` arithmetic to 64 bits, which the vectoriser
    then runs as 64-bit products: 8 lanes, 3 micro-ops each, instead of 16 lanes).
    Returns the hash zero-extended to ``uint64``."""

    def codegen(context, builder, signature, args):
        i32 = ir.IntType(32)
        v = builder.trunc(args[0], i32)
        for mul, shift in ((0x7FEB352D, 16), (0x846CA68B, 15)):
            v = builder.xor(v, builder.lshr(v, ir.Constant(i32, shift)))
            v = builder.mul(v, ir.Constant(i32, mul))
        v = builder.xor(v, builder.lshr(v, ir.Constant(i32, 16)))
        return builder.zext(v, ir.IntType(64))

    return types.uint64(types.uint64), codegen


@njit(**_JIT)
def threshold16(rate):
    """The 16-bit threshold of a dropout ``rate`` (``uint64``): an element whose 16
    random bits are below it is dropped, so the rate is kept to within 2**-16 (0.1 ->
    0.100006)."""
    return np.uint64(min(np.ceil(np.float64(rate) * 65536.0), 65536.0))


@njit(**_JIT)
def dropout_hashed(A, keys, u_pos, rate, keep, M, Y):
    """Inverted dropout of a C-contiguous 2-D ``A (d, n)``: mask ``M`` (``keep`` or 0)
    and ``Y = A * M``. Per row ``j``, hash ``h = mix(mix(c + keys[0]) ^ keys[1])`` (32
    bits, :func:`_lowbias32`) of the counter ``c = u_pos + j * n + r`` for ``r <
    n // 2`` decides two elements: ``r`` with its low 16 bits, ``r + n // 2`` with its
    high 16 (an odd ``n``'s last element: the low bits of counter ``u_pos + j * n + n``).
    An element is dropped when its 16 bits are below :func:`threshold16` ``(rate)``.
    ``rate <= 0`` (inference) keeps everything without hashing."""
    d, n = A.shape
    zero = A.dtype.type(0)
    if rate <= 0:
        for j in range(d):
            for r in range(n):
                M[j, r] = keep
                Y[j, r] = A[j, r] * keep
        return
    t = threshold16(rate)
    a = np.uint64(keys[0])
    b = np.uint64(keys[1])
    low = np.uint64(0xFFFF)
    half = n // 2
    for j in range(d):
        c = np.uint64(u_pos + j * n) + a
        for r in range(half):
            h = _lowbias32(_lowbias32(c + np.uint64(r)) ^ b)
            mk = keep if (h & low) >= t else zero
            M[j, r] = mk
            Y[j, r] = A[j, r] * mk
            mk = keep if (h >> np.uint64(16)) >= t else zero
            M[j, r + half] = mk
            Y[j, r + half] = A[j, r + half] * mk
        if n % 2:
            h = _lowbias32(_lowbias32(c + np.uint64(n)) ^ b)
            mk = keep if (h & low) >= t else zero
            M[j, n - 1] = mk
            Y[j, n - 1] = A[j, n - 1] * mk


def _keyed(U) -> bool:
    """True for the keys form of ``U`` (an integer array), at compile time."""
    return isinstance(U, types.Array) and isinstance(U.dtype, types.Integer)


def _dispatch(uniform):
    """The overload of a dispatcher: :func:`dropout_hashed` for keys, ``uniform`` for
    float uniforms."""

    def typer(A, U, u_pos, rate, keep, M, Y):
        impl = dropout_hashed if _keyed(U) else uniform
        return lambda A, U, u_pos, rate, keep, M, Y: impl(A, U, u_pos, rate, keep, M, Y)

    return typer


def dropout_cols(A, U, u_pos, rate, keep, M, Y):
    """Dropout of a feature-major ``(d, n)`` step (the hand-loop epoch): with float
    ``U``, :func:`~fastnn.kernels.cpu.dropout_forward_t` (row-major uniforms from
    ``u_pos``); with keys, :func:`dropout_hashed`. Compiled code only."""
    raise TypeError("dropout_cols is called from compiled code only")


def dropout_rows(A, U, u_pos, rate, keep, M, Y):
    """Dropout of a flat ``(1, size)`` step (the mid epoch): with float ``U``, the mask
    from ``U[u_pos : u_pos + size]`` then ``Y = A * M``; with keys, :func:`dropout_hashed`.
    Compiled code only."""
    raise TypeError("dropout_rows is called from compiled code only")


@njit(**_JIT)
def _rows_uniform(A, U, u_pos, rate, keep, M, Y):
    size = A.size
    dropout_mask(U[u_pos : u_pos + size].reshape((1, size)), rate, keep, M)
    for i in range(size):
        Y[0, i] = A[0, i] * M[0, i]


overload(dropout_cols, jit_options=_JIT)(_dispatch(dropout_forward_t))
overload(dropout_rows, jit_options=_JIT)(_dispatch(_rows_uniform))


from .cache import quick_loads  # noqa: E402  (cached kernels load without the compiler set-up)

quick_loads(globals())
