"""Numba CPU kernels: fused elementwise ops, loss gradients, optimizer updates, and the
pieces of the compiled training epoch (which ``fastnn.backends.numba_compile`` writes
for each model out of these kernels).

Imported lazily by :class:`fastnn.backends.numba_backend.NumbaBackend`, never by
``import fastnn``. Every function here is ``@njit(cache=True)`` without a signature, so
nothing compiles at import: each kernel compiles on its first call for the argument types
it sees (float32 and float64 are separate specialisations) and is stored in Numba's
on-disk cache, so later processes only load it.

The math is the NumPy backend's, formula for formula (``fastnn/backends/base.py``): the
same sigmoid (``0.5*tanh(0.5*z) + 0.5``), the same log-sum-exp, the same order of
operations in every optimizer update, and every constant cast to the array dtype first
(``X.dtype.type(c)``), as NumPy does with Python scalars, so float32 stays float32. The
elementwise kernels use no ``fastmath`` at all: without FP contraction they round exactly
as NumPy does (the optimizer updates are bit-identical). Only the hand-written matrix
products (``dense_*_t``) allow ``reassoc`` and ``contract`` (vectorised sums and FMA, the
freedom BLAS takes too; 2-5x faster measured); no kernel enables ``nnan``/``ninf``, so NaN
and infinity behave as in NumPy. What differs from NumPy is summation order and FMA
rounding inside products and row sums, so results agree to float rounding.

Conventions: per-op kernels take ``(rows, features)`` arrays; the fused epoch keeps its
activations feature-major ``(features, rows)`` (see ``dense_forward_t``). ``W (d_in,
d_out)`` is a reshaped view of the flat parameter buffer ``theta``; outputs are written
into caller-provided arrays. Transcendentals (``np.exp``, ``np.tanh``, ``np.log1p``) compile
to scalar libm calls, 10-40x slower per element than NumPy's SIMD loops: fine inside a
small network's step, which is why the backend sends big softmax (and float64
sigmoid/tanh) arrays to NumPy instead. The float32 tanh and sigmoid activations are the
exception: :func:`tanh32` is a rational approximation LLVM vectorises (within 4e-7 of
the exact tanh, as XLA's and ONNX Runtime's).

Codes (``ACT_CODES``, ``LOSS_*``, ``OPT_*``) are small ints naming the kernels; every
activation, loss and optimizer has its own small kernel, so a compiled epoch compiles
only the ones its model uses, and the per-op dispatchers (``act_forward``, ``loss_grad``,
``opt_update``) pick one by code.
"""

from __future__ import annotations

import functools
import os

import numba
import numpy as np
from numba import njit


@functools.lru_cache(maxsize=1)
def source_stamp() -> tuple:
    """``(name, size, content hash)`` of every ``.py`` file of this folder: what every
    compiled kernel here (and every epoch :mod:`fastnn.backends.numba_compile` writes
    from them) is checked against before its cache is used."""
    import hashlib

    here = os.path.dirname(os.path.abspath(__file__))
    out = []
    for name in sorted(n for n in os.listdir(here) if n.endswith(".py")):
        with open(os.path.join(here, name), "rb") as f:
            data = f.read()
        out.append((name, len(data), hashlib.sha256(data).hexdigest()[:16]))
    return tuple(out)


def _cache_outside_the_package() -> None:
    """Store these kernels' compiled cache in the user's cache folder, not in
    ``site-packages/fastnn/kernels/__pycache__``, and keep it in step with this folder.

    Numba's default puts ``.nbi``/``.nbc`` files next to the source. pip does not know
    them, so uninstalling (or replacing ``pip install .`` with ``pip install -e .``) leaves
    a ``fastnn/kernels`` folder in site-packages that shadows the real package as an empty
    namespace package. ``NUMBA_CACHE_DIR``, when set, still says where. Registered before
    the first ``@njit(cache=True)`` below, for this folder's files only.

    Numba checks a cached function against its own file only, but a function here inlines
    kernels of the other files (``cpu_fit`` holds ``cpu_mid``'s and ``cpu``'s code): after
    an edit or an upgrade that touched only ``cpu.py``, ``cpu_fit``'s cache would run the
    old ``cpu.py`` code. So every function here is stamped with all of this folder's
    ``.py`` files: any change recompiles them all.
    """
    from numba.core import caching

    impl = getattr(caching, "CacheImpl", None) or getattr(caching, "_CacheImpl", None)
    wide = getattr(caching, "UserWideCacheLocator", None)
    given = getattr(caching, "UserProvidedCacheLocator", None)
    if impl is None or wide is None or given is None:
        return  # an unknown Numba layout: keep its default
    here = os.path.dirname(os.path.abspath(__file__))

    def ours(py_file):
        return os.path.dirname(os.path.abspath(py_file)) == here

    class FastnnCacheLocator(wide):
        def get_source_stamp(self):
            return source_stamp()

        @classmethod
        def from_function(cls, py_func, py_file):
            if numba.config.CACHE_DIR or not ours(py_file):
                return None
            return super().from_function(py_func, py_file)

    class FastnnGivenCacheLocator(given):
        def get_source_stamp(self):
            return source_stamp()

        @classmethod
        def from_function(cls, py_func, py_file):
            if not ours(py_file):
                return None
            return super().from_function(py_func, py_file)

    names = {k.__name__ for k in impl._locator_classes}
    for cls in (FastnnCacheLocator, FastnnGivenCacheLocator):
        if cls.__name__ not in names:
            impl._locator_classes.insert(0, cls)


_cache_outside_the_package()

# No fastmath (NaN/Inf semantics and NumPy-identical rounding); nogil so a caller's other
# threads keep running during a long epoch. error_model "numpy": a float division by zero
# gives inf/NaN as in NumPy instead of raising ZeroDivisionError, and without that check
# in every loop LLVM vectorises the loops that divide (the Adam update: 10x faster).
_JIT = {"cache": True, "nogil": True, "error_model": "numpy"}

LINEAR, RELU, LEAKY_RELU, SIGMOID, TANH, SOFTMAX = 0, 1, 2, 3, 4, 5
#: activation name -> kernel code
ACT_CODES = {
    "linear": LINEAR,
    "relu": RELU,
    "leaky_relu": LEAKY_RELU,
    "sigmoid": SIGMOID,
    "tanh": TANH,
    "softmax": SOFTMAX,
}

LOSS_BCE_LOGITS, LOSS_BCE_PROB, LOSS_CE_LOGITS, LOSS_CE_PROB, LOSS_MSE = 0, 1, 2, 3, 4
OPT_SGD, OPT_ADAM, OPT_RMSPROP = 0, 1, 2

#: op kinds in a fused network table
OP_DENSE, OP_ACT, OP_DROPOUT = 0, 1, 2
#: columns of the int op table (``ops[k, col]``)
(
    C_KIND,
    C_ACT,
    C_DIN,
    C_DOUT,
    C_WOFF,
    C_BOFF,
    C_IN,
    C_Z,
    C_Y,
    C_MASK,
) = range(10)
N_OPCOLS = 10
#: columns of the float op table: leaky_relu slope, dropout rate, 1/(1-rate)
F_ALPHA, F_RATE, F_KEEP = 0, 1, 2
N_OPFCOLS = 3
#: slots of the optimizer hyper-parameter vector (model dtype)
(
    H_LR,
    H_MOM,
    H_NESTEROV,
    H_WD,
    H_B1,
    H_1MB1,
    H_B2,
    H_1MB2,
    H_DECAY,
    H_DECOUPLED,
    H_RHO,
    H_1MRHO,
    H_EPS,
) = range(13)
N_HYPER = 13
#: slots of the loss constant vector (model dtype): clip eps, 1-eps, 2/k for mse, and
#: 1 to compute the loss value (0: only the gradient, where nobody reads the value; the
#: binary cross-entropy on logits then skips its scalar log1p/exp, 30% of a small
#: network's epoch)
L_EPS, L_1MEPS, L_2K, L_VALUE = 0, 1, 2, 3
N_LOSSC = 4


# ---------------------------------------------------------------------------- activations
# One small kernel per activation, ``f(Z, alpha, Y)`` forward and ``f(Z, Y, dY, alpha,
# dZ)`` backward (any 2-D layout; softmax has a row-major and a feature-major form), so
# a compiled epoch calls, and compiles, only the ones its model uses. ``act_forward``
# and ``act_backward`` pick one by code for the per-op path.
@njit(**_JIT)
def linear_forward(Z, alpha, Y):
    """``Y = Z`` (a copy; harmless when ``Y`` is ``Z``)."""
    n, d = Z.shape
    for r in range(n):
        for j in range(d):
            Y[r, j] = Z[r, j]


@njit(**_JIT)
def relu_forward(Z, alpha, Y):
    """``Y = max(Z, 0)``; NaN propagates, as in ``np.maximum``."""
    n, d = Z.shape
    zero = Z.dtype.type(0)
    for r in range(n):
        for j in range(d):
            z = Z[r, j]
            Y[r, j] = z if (z > zero or z != z) else zero


@njit(**_JIT)
def leaky_relu_forward(Z, alpha, Y):
    """``Y = Z`` where positive, else ``alpha * Z``."""
    n, d = Z.shape
    zero = Z.dtype.type(0)
    for r in range(n):
        for j in range(d):
            z = Z[r, j]
            Y[r, j] = z if z > zero else z * alpha


# float32 tanh as a rational function that LLVM vectorises: the minimax approximation
# of Eigen's ``generic_fast_tanh_float``, which XLA (JAX on CPU) and ONNX Runtime's MLAS
# also use. At most 3.6e-7 from the exact tanh (about 3 float32 ulps of 1; NumPy's own
# SIMD tanh: 1.4 ulps), 1.6 ns an element against 29 ns for the scalar libm call
# (128x26 block, measured). NaN stays NaN, +-inf gives +-1. float64 keeps np.tanh.
# Its own function (LLVM inlines it) with FP contraction, as Eigen evaluates it: the
# Horner steps become FMAs, 0.88 -> 0.56 ns an element on a 4,608-element row (2-core
# Xeon), and the largest error over [-10, 10] went from 3.9e-7 to 2.7e-7.
_T_CLAMP = np.float32(7.90531110763549805)  # tanh rounds to +-1 in float32 beyond this
_T_TINY = np.float32(0.0004)  # below this tanh(x) is x in float32
_T_P = tuple(
    np.float32(c)
    for c in (
        -2.76076847742355e-16,
        2.00018790482477e-13,
        -8.60467152213735e-11,
        5.12229709037114e-08,
        1.48572235717979e-05,
        6.37261928875436e-04,
        4.89352455891786e-03,
    )
)
_T_Q = tuple(
    np.float32(c)
    for c in (
        1.19825839466702e-06,
        1.18534705686654e-04,
        2.26843463243900e-03,
        4.89352518554385e-03,
    )
)


@njit(**{**_JIT, "fastmath": {"contract"}})
def tanh32(x):
    """``tanh(x)`` for a float32 ``x``, vectorisable (see ``_T_P``)."""
    c = _T_CLAMP if x > _T_CLAMP else x  # comparisons with NaN are false: NaN passes
    c = -_T_CLAMP if c < -_T_CLAMP else c
    c2 = c * c
    p = c2 * _T_P[0] + _T_P[1]
    p = c2 * p + _T_P[2]
    p = c2 * p + _T_P[3]
    p = c2 * p + _T_P[4]
    p = c2 * p + _T_P[5]
    p = c2 * p + _T_P[6]
    q = c2 * _T_Q[0] + _T_Q[1]
    q = c2 * q + _T_Q[2]
    q = c2 * q + _T_Q[3]
    t = (c * p) / q
    t = x if abs(x) < _T_TINY else t
    one = np.float32(1.0)  # the limits exactly (FMA rounding leaves 1 - 2.4e-7 there)
    return one if x >= _T_CLAMP else (-one if x <= -_T_CLAMP else t)


@njit(**_JIT)
def sigmoid_forward(Z, alpha, Y):
    """``Y = 0.5 * tanh(0.5 * Z) + 0.5`` (float32: :func:`tanh32`)."""
    n, d = Z.shape
    half = Z.dtype.type(0.5)
    if Z.itemsize == 4:
        for r in range(n):
            for j in range(d):
                Y[r, j] = half * tanh32(Z[r, j] * half) + half
    else:
        for r in range(n):
            for j in range(d):
                Y[r, j] = half * np.tanh(Z[r, j] * half) + half


@njit(**_JIT)
def tanh_forward(Z, alpha, Y):
    """``Y = tanh(Z)`` (float32: :func:`tanh32`)."""
    n, d = Z.shape
    if Z.itemsize == 4:
        for r in range(n):
            for j in range(d):
                Y[r, j] = tanh32(Z[r, j])
    else:
        for r in range(n):
            for j in range(d):
                Y[r, j] = np.tanh(Z[r, j])


@njit(inline="always", **_JIT)
def _row_max(Z, r):
    """The largest value of row ``r`` of ``Z``; NaN wins, as in ``np.max``."""
    m = Z[r, 0]
    for j in range(1, Z.shape[1]):
        if Z[r, j] > m or Z[r, j] != Z[r, j]:
            m = Z[r, j]
    return m


@njit(**_JIT)
def softmax_forward(Z, alpha, Y):
    """Row-wise softmax of ``Z (n, k)``, shifted by the row max."""
    n, d = Z.shape
    zero = Z.dtype.type(0)
    for r in range(n):
        m = _row_max(Z, r)
        s = zero
        for j in range(d):
            e = np.exp(Z[r, j] - m)
            Y[r, j] = e
            s += e
        for j in range(d):
            Y[r, j] = Y[r, j] / s


@njit(**_JIT)
def linear_backward(Z, Y, dY, alpha, dZ):
    """``dZ = dY`` (a copy; harmless when ``dZ`` is ``dY``)."""
    linear_forward(dY, alpha, dZ)


@njit(**_JIT)
def relu_backward(Z, Y, dY, alpha, dZ):
    """``dZ = dY * (Z > 0)``."""
    n, d = Z.shape
    zero = Z.dtype.type(0)
    one = Z.dtype.type(1)
    for r in range(n):
        for j in range(d):
            dZ[r, j] = dY[r, j] * (one if Z[r, j] > zero else zero)


@njit(**_JIT)
def leaky_relu_backward(Z, Y, dY, alpha, dZ):
    """``dZ = dY`` where ``Z > 0``, else ``alpha * dY``."""
    n, d = Z.shape
    zero = Z.dtype.type(0)
    for r in range(n):
        for j in range(d):
            g = dY[r, j]
            dZ[r, j] = g if Z[r, j] > zero else g * alpha


@njit(**_JIT)
def sigmoid_backward(Z, Y, dY, alpha, dZ):
    """``dZ = dY * Y * (1 - Y)``."""
    n, d = Z.shape
    one = Z.dtype.type(1)
    for r in range(n):
        for j in range(d):
            y = Y[r, j]
            dZ[r, j] = dY[r, j] * y * (one - y)


@njit(**_JIT)
def tanh_backward(Z, Y, dY, alpha, dZ):
    """``dZ = dY * (1 - Y^2)``."""
    n, d = Z.shape
    one = Z.dtype.type(1)
    for r in range(n):
        for j in range(d):
            y = Y[r, j]
            dZ[r, j] = dY[r, j] * (one - y * y)


@njit(**_JIT)
def softmax_backward(Z, Y, dY, alpha, dZ):
    """Row-wise ``dZ = Y * (dY - sum(dY * Y))``."""
    n, d = Z.shape
    for r in range(n):
        s = Z.dtype.type(0)
        for j in range(d):
            s += dY[r, j] * Y[r, j]
        for j in range(d):
            dZ[r, j] = Y[r, j] * (dY[r, j] - s)


@njit(inline="always", **_JIT)
def act_forward(Z, code, alpha, Y):
    """``Y = act(Z)`` for ``Z, Y (n, d)`` (``Y`` may be ``Z``: in place)."""
    if code == LINEAR:
        linear_forward(Z, alpha, Y)
    elif code == RELU:
        relu_forward(Z, alpha, Y)
    elif code == LEAKY_RELU:
        leaky_relu_forward(Z, alpha, Y)
    elif code == SIGMOID:
        sigmoid_forward(Z, alpha, Y)
    elif code == TANH:
        tanh_forward(Z, alpha, Y)
    else:
        softmax_forward(Z, alpha, Y)


@njit(inline="always", **_JIT)
def act_backward(Z, Y, dY, code, alpha, dZ):
    """``dZ = dY * act'(Z)`` for ``(n, d)`` arrays; ``dZ`` may be ``dY`` (in place)."""
    if code == LINEAR:
        linear_backward(Z, Y, dY, alpha, dZ)
    elif code == RELU:
        relu_backward(Z, Y, dY, alpha, dZ)
    elif code == LEAKY_RELU:
        leaky_relu_backward(Z, Y, dY, alpha, dZ)
    elif code == SIGMOID:
        sigmoid_backward(Z, Y, dY, alpha, dZ)
    elif code == TANH:
        tanh_backward(Z, Y, dY, alpha, dZ)
    else:
        softmax_backward(Z, Y, dY, alpha, dZ)


@njit(**_JIT)
def add_bias(Z, b):
    """``Z += b`` for ``Z (n, d)``, ``b (d,)``."""
    n, d = Z.shape
    for r in range(n):
        for j in range(d):
            Z[r, j] += b[j]


@njit(**_JIT)
def bias_act(Z, b, has_b, code, alpha, Y):
    """Fused ``Z += b; Y = act(Z)`` (``Y`` may be ``Z`` for linear). ``b (d,)``."""
    if has_b:
        add_bias(Z, b)
    act_forward(Z, code, alpha, Y)


@njit(**_JIT)
def col_sum(dZ, db):
    """``db[j] = sum_r dZ[r, j]`` (the bias gradient)."""
    n, d = dZ.shape
    for j in range(d):
        db[j] = dZ.dtype.type(0)
    for r in range(n):
        for j in range(d):
            db[j] += dZ[r, j]


@njit(**_JIT)
def bias_act_backward(Z, Y, dY, code, alpha, dZ, db, need_db):
    """Fused backward of :func:`bias_act`: ``dZ = dY * act'(Z)`` and ``db = sum_rows dZ``."""
    act_backward(Z, Y, dY, code, alpha, dZ)
    if need_db:
        col_sum(dZ, db)


@njit(**_JIT)
def log_softmax(Z, out):
    """Row-wise ``Z - max - log(sum(exp(Z - max)))`` into ``out (n, k)``."""
    n, k = Z.shape
    zero = Z.dtype.type(0)
    for r in range(n):
        m = _row_max(Z, r)
        s = zero
        for j in range(k):
            out[r, j] = Z[r, j] - m
            s += np.exp(out[r, j])
        ls = np.log(s)
        for j in range(k):
            out[r, j] = out[r, j] - ls


# ---------------------------------------------------------------------------- losses
# One kernel per loss, all ``f(P, yf, yi, w, has_w, sparse, lc, scale, dP) -> loss_sum``:
# ``P (n, k)`` logits or outputs; targets ``yf (n, k)`` floats or, when ``sparse``, class
# indices ``yi (n,)``; ``w (n, 1)`` row weights when ``has_w``; ``lc`` the loss constants
# (``L_*``); ``dP = d(loss_sum * scale)/dP`` as in the NumPy backend's ``*_grad`` methods.
# ``loss_grad`` picks one by code for the per-op path.
@njit(inline="always", **_JIT)
def _start(P):
    """``n, k, 0, 1`` of ``P (n, k)``, the constants in its dtype (every loss opens so)."""
    t = P.dtype.type
    return P.shape[0], P.shape[1], t(0), t(1)


@njit(inline="always", **_JIT)
def _weigh(l, g, wr, has_w):
    """One element's loss and gradient times its row's weight (when there are weights)."""
    return (l * wr, g * wr) if has_w else (l, g)


@njit(inline="always", **_JIT)
def _bce(P, yf, w, has_w, lc, scale, dP, logits):
    """Binary cross-entropy, element by element: on logits (log1p form, gradient
    ``sigmoid(z) - y``, float32's sigmoid through :func:`tanh32`; the value only when
    ``lc[L_VALUE]`` is set) or on probabilities
    clipped to ``[eps, 1-eps]``. ``logits`` is a
    literal at every call, so each form compiles without the other."""
    n, k, zero, one = _start(P)
    half = P.dtype.type(0.5)
    eps = lc[L_EPS]
    hi = lc[L_1MEPS]
    f32 = P.itemsize == 4
    value = lc[L_VALUE] != zero
    if logits and not value:
        _bce_logits_grad(P, yf, w, has_w, scale, dP)
        return 0.0
    total = 0.0
    for r in range(n):
        wr = w[r, 0] if has_w else one
        for j in range(k):
            p = P[r, j]
            y = yf[r, j]
            if logits:
                l = zero
                if value:
                    ap = p if p >= zero else -p
                    l = (p if p > zero else zero) - p * y + np.log1p(np.exp(-ap))
                t = tanh32(p * half) if f32 else np.tanh(p * half)
                g = (half * t + half) - y
            else:
                pc = eps if p < eps else (hi if p > hi else p)
                l = -(y * np.log(pc) + (one - y) * np.log(one - pc))
                g = (pc - y) / (pc * (one - pc))
                g = g * (one if (p > eps and p < hi) else zero)
            l, g = _weigh(l, g, wr, has_w)
            total += l
            dP[r, j] = g * scale
    return total


@njit(inline="always", **_JIT)
def _bce_logits_grad(P, yf, w, has_w, scale, dP):
    """Only the gradient of :func:`_bce` on logits, the same arithmetic element by
    element, without the loss sum that kept the loop scalar: vectorised, and a one-output
    head in one loop over the rows (8 -> 0.5 ns a row at 256 rows, 2-core EPYC)."""
    n, k, zero, one = _start(P)
    half = P.dtype.type(0.5)
    f32 = P.itemsize == 4
    if k == 1:
        for r in range(n):
            p = P[r, 0]
            t = tanh32(p * half) if f32 else np.tanh(p * half)
            g = (half * t + half) - yf[r, 0]
            g = g * w[r, 0] if has_w else g
            dP[r, 0] = g * scale
        return
    for r in range(n):
        for j in range(k):
            p = P[r, j]
            t = tanh32(p * half) if f32 else np.tanh(p * half)
            g = (half * t + half) - yf[r, j]
            g = g * w[r, 0] if has_w else g
            dP[r, j] = g * scale


@njit(**_JIT)
def bce_logits_loss(P, yf, yi, w, has_w, sparse, lc, scale, dP):
    """Binary cross-entropy on logits; the gradient is ``sigmoid(z) - y``."""
    return _bce(P, yf, w, has_w, lc, scale, dP, True)


@njit(**_JIT)
def bce_prob_loss(P, yf, yi, w, has_w, sparse, lc, scale, dP):
    """Binary cross-entropy on probabilities clipped to ``[eps, 1-eps]``."""
    return _bce(P, yf, w, has_w, lc, scale, dP, False)


@njit(**_JIT)
def ce_logits_loss(P, yf, yi, w, has_w, sparse, lc, scale, dP):
    """Cross-entropy on logits (log-sum-exp); the gradient is ``softmax(z) - y``."""
    n, k, zero, one = _start(P)
    total = 0.0
    log_softmax(P, dP)  # dP holds logp until overwritten below
    for r in range(n):
        wr = w[r, 0] if has_w else one
        if sparse:
            c = yi[r]
            l = -dP[r, c]
            for j in range(k):
                dP[r, j] = np.exp(dP[r, j])
            dP[r, c] = dP[r, c] - one
        else:
            l = zero
            for j in range(k):
                l += yf[r, j] * dP[r, j]
            l = -l
            for j in range(k):
                dP[r, j] = np.exp(dP[r, j]) - yf[r, j]
        if has_w:
            l = l * wr
            for j in range(k):
                dP[r, j] = dP[r, j] * wr
        total += l
        for j in range(k):
            dP[r, j] = dP[r, j] * scale
    return total


@njit(inline="always", **_JIT)
def _row_loss(P, yf, yi, w, has_w, sparse, lc, scale, dP, mse):
    """A loss summed over each row's outputs: cross-entropy on probabilities clipped
    below at ``eps`` or (``mse``, a literal at every call) the mean of ``(p - y)^2``."""
    n, k, zero, one = _start(P)
    total = 0.0
    eps = lc[L_EPS]
    two_k = lc[L_2K]
    kk = P.dtype.type(k)
    for r in range(n):
        wr = w[r, 0] if has_w else one
        l = zero
        for j in range(k):
            p = P[r, j]
            if mse:
                diff = p - yf[r, j]
                l += diff * diff
                g = diff * two_k
            else:
                pc = eps if p < eps else (one if p > one else p)
                if sparse:
                    y = one if j == yi[r] else zero
                else:
                    y = yf[r, j]
                l += y * np.log(pc)
                g = -y / pc
                g = g * (one if p > eps else zero)  # clipped region: flat loss, zero gradient
            if has_w:
                g = g * wr
            dP[r, j] = g * scale
        l = l / kk if mse else -l
        if has_w:
            l = l * wr
        total += l
    return total


@njit(**_JIT)
def ce_prob_loss(P, yf, yi, w, has_w, sparse, lc, scale, dP):
    """Cross-entropy on probabilities clipped below at ``eps``."""
    return _row_loss(P, yf, yi, w, has_w, sparse, lc, scale, dP, False)


@njit(**_JIT)
def mse_loss(P, yf, yi, w, has_w, sparse, lc, scale, dP):
    """Mean over outputs of ``(p - y)^2``."""
    return _row_loss(P, yf, yi, w, has_w, sparse, lc, scale, dP, True)


@njit(inline="always", **_JIT)
def loss_grad(P, yf, yi, w, has_w, code, sparse, lc, scale, dP):
    """Loss and gradient of one batch by loss ``code``: returns ``loss_sum`` (float64),
    writes ``dP`` (see the kernels above)."""
    if code == LOSS_BCE_LOGITS:
        return bce_logits_loss(P, yf, yi, w, has_w, sparse, lc, scale, dP)
    if code == LOSS_BCE_PROB:
        return bce_prob_loss(P, yf, yi, w, has_w, sparse, lc, scale, dP)
    if code == LOSS_CE_LOGITS:
        return ce_logits_loss(P, yf, yi, w, has_w, sparse, lc, scale, dP)
    if code == LOSS_CE_PROB:
        return ce_prob_loss(P, yf, yi, w, has_w, sparse, lc, scale, dP)
    return mse_loss(P, yf, yi, w, has_w, sparse, lc, scale, dP)


# ---------------------------------------------------------------------------- optimizers
# One kernel per optimizer, ``f(theta, grad, s1, s2, hp, lr_t, eps_t)``, one step over
# whole flat buffers (model dtype) in place; ``hp`` holds the ``H_*`` slots. Loops index
# from 0 over whole arrays: indices LLVM knows are >= 0 vectorise (``range(lo, hi)``
# indexing measured 3x slower on a 1.9 M-parameter update). ``opt_update`` slices a
# range and picks one by code for the per-op path and the BLAS-driven epoch.
@njit(**_JIT)
def sgd_step(theta, grad, s1, s2, hp, lr_t, eps_t):
    """SGD; ``s1`` the velocity (momentum, Nesterov), L2 decay added to the gradient."""
    zero = theta.dtype.type(0)
    wd = hp[H_WD]
    lr = hp[H_LR]
    mom = hp[H_MOM]
    size = theta.shape[0]
    if mom != zero:
        nesterov = hp[H_NESTEROV] != zero
        for i in range(size):
            g = grad[i] + wd * theta[i] if wd != zero else grad[i]
            v = s1[i] * mom
            v = v - lr * g
            s1[i] = v
            if nesterov:
                theta[i] += mom * v - lr * g
            else:
                theta[i] += v
    else:
        for i in range(size):
            g = grad[i] + wd * theta[i] if wd != zero else grad[i]
            theta[i] -= lr * g


@njit(**_JIT)
def adam_step(theta, grad, s1, s2, hp, lr_t, eps_t):
    """Adam/AdamW; ``s1`` m, ``s2`` v; ``lr_t`` and ``eps_t`` the bias-corrected step size
    and epsilon of this step (the optimizer computes them)."""
    zero = theta.dtype.type(0)
    wd = hp[H_WD]
    b1 = hp[H_B1]
    c1 = hp[H_1MB1]
    b2 = hp[H_B2]
    c2 = hp[H_1MB2]
    decoupled = hp[H_DECOUPLED] != zero
    l2 = wd != zero and not decoupled
    decay = wd != zero and decoupled
    dfac = hp[H_DECAY]
    for i in range(theta.shape[0]):
        g = grad[i] + wd * theta[i] if l2 else grad[i]
        m = s1[i] * b1
        m = m + c1 * g
        s1[i] = m
        v = s2[i] * b2
        v = v + c2 * (g * g)
        s2[i] = v
        th = theta[i] * dfac if decay else theta[i]
        theta[i] = th - lr_t * m / (np.sqrt(v) + eps_t)


@njit(**_JIT)
def rmsprop_step(theta, grad, s1, s2, hp, lr_t, eps_t):
    """RMSprop (Keras form); ``s1`` the mean square, ``s2`` the velocity (momentum)."""
    zero = theta.dtype.type(0)
    wd = hp[H_WD]
    lr = hp[H_LR]
    mom = hp[H_MOM]
    rho = hp[H_RHO]
    c = hp[H_1MRHO]
    eps = hp[H_EPS]
    for i in range(theta.shape[0]):
        g = grad[i] + wd * theta[i] if wd != zero else grad[i]
        sq = s1[i] * rho
        sq = sq + c * (g * g)
        s1[i] = sq
        step = lr * g / (np.sqrt(sq) + eps)
        if mom != zero:
            v = s2[i] * mom
            v = v + step
            s2[i] = v
            theta[i] -= v
        else:
            theta[i] -= step


@njit(inline="always", **_JIT)
def opt_update(theta, grad, s1, s2, lo, hi, code, hp, lr_t, eps_t):
    """One optimizer step on ``theta[lo:hi]`` in place: ``code`` is ``OPT_SGD``,
    ``OPT_ADAM`` or ``OPT_RMSPROP`` (see the kernels above)."""
    th, g, a, b = theta[lo:hi], grad[lo:hi], s1[lo:hi], s2[lo:hi]
    if code == OPT_SGD:
        sgd_step(th, g, a, b, hp, lr_t, eps_t)
    elif code == OPT_ADAM:
        adam_step(th, g, a, b, hp, lr_t, eps_t)
    else:
        rmsprop_step(th, g, a, b, hp, lr_t, eps_t)


# ---------------------------------------------------------------------------- dropout
@njit(**_JIT)
def dropout_mask(U, rate, keep_scale, mask):
    """Inverted-dropout mask from uniforms: ``mask = (U >= rate) * keep_scale``."""
    n, d = U.shape
    zero = U.dtype.type(0)
    for r in range(n):
        for j in range(d):
            mask[r, j] = keep_scale if U[r, j] >= rate else zero


_M32 = np.uint64(0xFFFFFFFF)


@njit(inline="always", **_JIT)
def _mix32(x):
    """Chris Wellons' ``lowbias32`` integer hash of a 32-bit value (held in a uint64:
    Numba widens uint32 arithmetic, so products are masked back to 32 bits)."""
    x = x ^ (x >> np.uint64(16))
    x = (x * np.uint64(0x7FEB352D)) & _M32
    x = x ^ (x >> np.uint64(15))
    x = (x * np.uint64(0x846CA68B)) & _M32
    return x ^ (x >> np.uint64(16))


@njit(**_JIT)
def fill_uniforms(U, key1, key2):
    """``U[i]`` = uniform [0, 1) from the counter ``i`` and two 32-bit keys: ``h =
    mix(mix(i + key1) ^ key2)``, float32 from its top 24 bits, float64 from all 32.

    A counter-based generator (no state between elements, so LLVM vectorises it: 1 ns an
    element against NumPy's 4-5 ns on the 2-core box). The dropout masks of
    ``FASTNN_DROPOUT_RNG=kernel`` (see ``fastnn.backends.numba_epoch``), drawn with fresh
    random keys for every call: enough for dropout, not for statistics."""
    a = np.uint64(key1) & _M32
    b = np.uint64(key2) & _M32
    if U.itemsize == 4:
        sc = np.float32(1.0 / (1 << 24))
        for i in range(U.size):
            h = _mix32(_mix32((np.uint64(i) + a) & _M32) ^ b)
            U[i] = np.float32(h >> np.uint64(8)) * sc
    else:
        for i in range(U.size):
            h = _mix32(_mix32((np.uint64(i) + a) & _M32) ^ b)
            U[i] = np.float64(h) * (1.0 / 4294967296.0)


# ---------------------------------------------------------------------------- dense loops
# The fused epoch keeps activations feature-major, ``(features, batch)``: every inner
# loop then runs over the batch (contiguous, 32+ long, vectorised) whatever the layer
# widths, and tiny layers (churn: 11-6-6-1) do not pay a loop set-up per 6 elements.
# Sums in these products may be reassociated ('reassoc': vectorised reductions) and
# contracted to FMA ('contract'), as BLAS does; NaN and infinity keep their IEEE meaning
# (no 'nnan'/'ninf'). The elementwise kernels above stay uncontracted.
_MM = {"cache": True, "nogil": True, "error_model": "numpy", "fastmath": {"reassoc", "contract"}}


# The sums over a layer's inputs keep their order (contraction only, no reassociation:
# the same FMA after FMA, bit for bit, as one pass per input), four or eight inputs a
# pass with the partial sums in registers: a pass per input loaded and stored the output
# row again for every input (11-10 at 64 rows: 1.4 -> 0.65 us, 2-core EPYC).
_MV = {**_MM, "fastmath": {"contract"}}


@njit(inline="always", **_MV)
def _rows4(C, In, Out, q, p, first):
    c0, c1, c2, c3 = C[q, p], C[q + 1, p], C[q + 2, p], C[q + 3, p]
    zero = In.dtype.type(0)
    for r in range(In.shape[1]):
        z = zero if first else Out[p, r]
        z += c0 * In[q, r]
        z += c1 * In[q + 1, r]
        z += c2 * In[q + 2, r]
        z += c3 * In[q + 3, r]
        Out[p, r] = z


@njit(inline="always", **_MV)
def _rows8(C, In, Out, q, p, first):
    c0, c1, c2, c3 = C[q, p], C[q + 1, p], C[q + 2, p], C[q + 3, p]
    c4, c5, c6, c7 = C[q + 4, p], C[q + 5, p], C[q + 6, p], C[q + 7, p]
    zero = In.dtype.type(0)
    for r in range(In.shape[1]):
        z = zero if first else Out[p, r]
        z += c0 * In[q, r]
        z += c1 * In[q + 1, r]
        z += c2 * In[q + 2, r]
        z += c3 * In[q + 3, r]
        z += c4 * In[q + 4, r]
        z += c5 * In[q + 5, r]
        z += c6 * In[q + 6, r]
        z += c7 * In[q + 7, r]
        Out[p, r] = z


@njit(inline="always", **_MV)
def _rows_tail(C, In, Out, q, p, first):
    """The last ``m - q < 4`` inputs (1-3) in one pass, in order."""
    k = In.shape[0] - q
    c0 = C[q, p]
    c1 = C[q + 1, p] if k > 1 else c0
    c2 = C[q + 2, p] if k > 2 else c0
    zero = In.dtype.type(0)
    if k == 1:
        for r in range(In.shape[1]):
            z = zero if first else Out[p, r]
            z += c0 * In[q, r]
            Out[p, r] = z
    elif k == 2:
        for r in range(In.shape[1]):
            z = zero if first else Out[p, r]
            z += c0 * In[q, r]
            z += c1 * In[q + 1, r]
            Out[p, r] = z
    else:
        for r in range(In.shape[1]):
            z = zero if first else Out[p, r]
            z += c0 * In[q, r]
            z += c1 * In[q + 1, r]
            z += c2 * In[q + 2, r]
            Out[p, r] = z


@njit(**_MV)
def combine_rows(C, In, Out):
    """``Out[p, :] = sum_q C[q, p] * In[q, :]``, summed from ``q = 0`` up, each term an
    FMA on the running sum from zero: ``C (m, k)``, ``In (m, n)``, ``Out (k, n)``. Eight
    inputs a pass, then four, then the last one to three in one pass."""
    m, n = In.shape
    zero = In.dtype.type(0)
    for p in range(C.shape[1]):
        q = 0
        while q + 8 <= m:
            _rows8(C, In, Out, q, p, q == 0)
            q += 8
        if q + 4 <= m:
            _rows4(C, In, Out, q, p, q == 0)
            q += 4
        if q < m:
            _rows_tail(C, In, Out, q, p, q == 0)
        elif m == 0:
            for r in range(n):
                Out[p, r] = zero


@njit(**_MM)
def dense_forward_t(W, b, has_b, X, Z):
    """``Z = (X^T W + b)^T``: ``X (d_in, n)``, ``W (d_in, d_out)``, ``Z (d_out, n)``."""
    combine_rows(W, X, Z)
    if has_b:
        n = X.shape[1]
        for j in range(W.shape[1]):
            bj = b[j]
            for r in range(n):
                Z[j, r] = Z[j, r] + bj


@njit(**_MM)
def dense_backward_t(W, X, dZ, dW, db, has_b, dX, need_dx):
    """Backward of :func:`dense_forward_t`: ``dW = X dZ^T``, ``db = sum_batch dZ`` and,
    when ``need_dx``, ``dX = W dZ`` (all feature-major, ``dZ (d_out, n)``)."""
    din, n = X.shape
    dout = W.shape[1]
    zero = X.dtype.type(0)
    for i in range(din):
        for j in range(dout):
            s = zero
            for r in range(n):
                s += X[i, r] * dZ[j, r]
            dW[i, j] = s
    if has_b:
        for j in range(dout):
            s = zero
            for r in range(n):
                s += dZ[j, r]
            db[j] = s
    if need_dx:
        combine_rows(W.T, dZ, dX)


@njit(**_JIT)
def softmax_forward_t(Z, alpha, Y):
    """Softmax of feature-major ``Z (k, n)`` over its ``k`` features (the row-wise kernel
    on the transposed views: the same loops, the same memory order)."""
    softmax_forward(Z.T, alpha, Y.T)


@njit(**_JIT)
def softmax_backward_t(Z, Y, dY, alpha, dZ):
    """Backward of :func:`softmax_forward_t`."""
    softmax_backward(Z.T, Y.T, dY.T, alpha, dZ.T)


@njit(inline="always", **_JIT)
def act_forward_t(Z, code, alpha, Y):
    """:func:`act_forward` on feature-major ``(d, n)`` arrays (softmax over ``d``)."""
    if code == SOFTMAX:
        softmax_forward_t(Z, alpha, Y)
    else:
        act_forward(Z, code, alpha, Y)


@njit(inline="always", **_JIT)
def act_backward_t(Z, Y, dY, code, alpha, dZ):
    """:func:`act_backward` on feature-major ``(d, n)`` arrays."""
    if code == SOFTMAX:
        softmax_backward_t(Z, Y, dY, alpha, dZ)
    else:
        act_backward(Z, Y, dY, code, alpha, dZ)


# ---------------------------------------------------------------------------- epoch pieces
# Small steps of the compiled epoch that fastnn.backends.numba_compile generates for a
# model (the epoch itself is generated: only the kernels its model uses are compiled).
@njit(**_JIT)
def rows_to_cols(A, B):
    """``B = A^T``: a row-major ``A (n, d)`` into feature-major ``B (d, n)``."""
    n, d = A.shape
    for j in range(d):  # j outer: contiguous writes (r outer thrashed at 4 KiB strides)
        for r in range(n):
            B[j, r] = A[r, j]


@njit(**_JIT)
def cols_to_rows(B, A, start):
    """``A[start + r, j] = B[j, r]``: feature-major ``B (d, n)`` into rows of ``A``."""
    d, n = B.shape
    for r in range(n):
        for j in range(d):
            A[start + r, j] = B[j, r]


@njit(**_JIT)
def dropout_forward_t(A, U, u_pos, rate, keep, M, Y):
    """Inverted dropout of feature-major ``A (d, n)`` with the uniforms ``U[u_pos:]``
    (drawn per row, then feature, as the per-layer path draws them): the mask into
    ``M``, ``Y = A * M``."""
    d, n = A.shape
    zero = A.dtype.type(0)
    for j in range(d):
        for r in range(n):
            mk = keep if U[u_pos + r * d + j] >= rate else zero
            M[j, r] = mk
            Y[j, r] = A[j, r] * mk


@njit(**_JIT)
def scale_by(G, M):
    """``G *= M`` elementwise (the backward of dropout)."""
    d, n = G.shape
    for j in range(d):
        for r in range(n):
            G[j, r] = G[j, r] * M[j, r]


from .cache import quick_loads  # noqa: E402  (cached kernels load without the compiler set-up)

quick_loads(globals())
