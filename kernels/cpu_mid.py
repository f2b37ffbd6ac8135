"""The fused training epoch for mid-width Dense stacks: every minibatch inside ONE
compiled call, the matrix products through BLAS called from compiled code.

The hand loops of :func:`fastnn.kernels.cpu.train_epoch` win while a step is a few
thousand multiply-adds; above that, BLAS's register-blocked GEMM is 3-10x faster per
multiply-add, but calling it from a Python loop costs several microseconds a call (eight
calls a step), more than the arithmetic of a 64-wide layer. Here Numba's ``np.dot`` calls
BLAS (``?gemm`` through SciPy's ``cython_blas``) straight from the compiled epoch: the
products run at BLAS speed and the step pays no Python. Everything between the products
is the per-op kernels of :mod:`fastnn.kernels.cpu`, on row-major ``(rows, features)``
activations, so this file adds only the step's plumbing.

Needs SciPy (Numba's linear algebra calls its BLAS). The BLAS threads are SciPy's
OpenBLAS pool: the backend sets how many run (see ``fastnn.backends.numba_backend``).
Same math, same formulas, same order of the optimizer updates as the per-layer path;
only the summation order inside the products differs (as with NumPy's BLAS).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .cpu import (
    _JIT,
    C_ACT,
    C_BOFF,
    C_DIN,
    C_DOUT,
    C_IN,
    C_KIND,
    C_WOFF,
    C_Y,
    C_Z,
    F_ALPHA,
    F_KEEP,
    F_RATE,
    LINEAR,
    OP_ACT,
    OP_DENSE,
    SOFTMAX,
    act_backward,
    act_forward,
    add_bias,
    loss_grad,
    opt_update,
)
from .cpu_dropout import dropout_rows


@njit(**_JIT)
def _rows(buf, off, n, d):
    """The row-major ``(n, d)`` view of ``buf[off : off + n*d]``."""
    return buf[off : off + n * d].reshape((n, d))


@njit(**_JIT)
def first_dense(ops):
    """The first Dense op (the backward pass stops there), or ``len(ops)``."""
    for q in range(ops.shape[0]):
        if ops[q, C_KIND] == OP_DENSE:
            return q
    return ops.shape[0]


@njit(**_JIT)
def _weight(buf, ops, q):
    """Op ``q``'s ``(d_in, d_out)`` weights as a view of ``buf`` (theta or grad; a 1x1
    placeholder for an op without)."""
    if ops[q, C_KIND] != OP_DENSE:
        return buf[0:1].reshape((1, 1))
    wo, din, dout = ops[q, C_WOFF], ops[q, C_DIN], ops[q, C_DOUT]
    return buf[wo : wo + din * dout].reshape((din, dout))


@njit(**_JIT)
def _bias(buf, ops, q):
    """Op ``q``'s bias as a view of ``buf`` (a 1-element placeholder for an op without)."""
    bo = ops[q, C_BOFF]
    return buf[bo : bo + ops[q, C_DOUT]] if bo >= 0 else buf[0:1]


@njit(**_JIT)
def _params(ops, theta, grad):
    """Per op: ``W``, ``dW``, ``b``, ``db`` as views of ``theta``/``grad``.

    Lists built by ``append``: Numba may turn a list comprehension that does not leave
    its function into an array, and the "views" into copies."""
    Ws = [_weight(theta, ops, 0)]
    dWs = [_weight(grad, ops, 0)]
    bs = [_bias(theta, ops, 0)]
    dbs = [_bias(grad, ops, 0)]
    for q in range(1, ops.shape[0]):
        Ws.append(_weight(theta, ops, q))
        dWs.append(_weight(grad, ops, q))
        bs.append(_bias(theta, ops, q))
        dbs.append(_bias(grad, ops, q))
    return Ws, dWs, bs, dbs


@njit(**_JIT)
def _step_views(ws, G0, G1, ops, first_param, nb):
    """Row-major views of one step of ``nb`` rows: per op its input ``A``, ``Z``, ``Y``
    and, for the backward pass, the incoming gradient ``gY``, the gradient ``dZ`` after
    the op's activation (or mask) and ``gX`` (Dense: the gradient passed down); last,
    the flat ``(1, nb*d)`` views of ``As, Zs, Ys, gYs, dZs`` (:func:`_flats`).

    Every elementwise backward pass writes to the other buffer of the pair ``G0``/``G1``
    than it reads (an in-place pass through two argument names defeats LLVM's
    vectoriser: measured 5x slower), and a Dense op writes ``gX`` over its own ``gY``,
    which its activation pass has already consumed."""
    n_ops = ops.shape[0]
    Z = _rows(ws, ops[0, C_Z], nb, ops[0, C_DOUT])
    As = [_rows(ws, ops[0, C_IN], nb, ops[0, C_DIN])]  # appended, see _params
    Ys = [_rows(ws, ops[0, C_Y], nb, ops[0, C_DOUT])]
    Zs = [Z]
    gYs = [Z]  # placeholders, set below for the ops the backward pass visits
    dZs = [Z]
    gXs = [Z]
    for q in range(1, n_ops):
        Z = _rows(ws, ops[q, C_Z], nb, ops[q, C_DOUT])
        As.append(_rows(ws, ops[q, C_IN], nb, ops[q, C_DIN]))
        Ys.append(_rows(ws, ops[q, C_Y], nb, ops[q, C_DOUT]))
        Zs.append(Z)
        gYs.append(Z)
        dZs.append(Z)
        gXs.append(Z)
    G = (G0, G1)
    cur = 0
    for q in range(n_ops - 1, first_param - 1, -1):
        dout = ops[q, C_DOUT]
        gYs[q] = _rows(G[cur], 0, nb, dout)
        linear_dense = ops[q, C_KIND] == OP_DENSE and ops[q, C_ACT] == LINEAR
        if linear_dense:
            dZs[q] = gYs[q]
        else:
            dZs[q] = _rows(G[1 - cur], 0, nb, dout)
        if ops[q, C_KIND] == OP_DENSE:
            if linear_dense:
                cur = 1 - cur
            gXs[q] = _rows(G[cur], 0, nb, ops[q, C_DIN])
        else:
            cur = 1 - cur
    flats = (_flats(As), _flats(Zs), _flats(Ys), _flats(gYs), _flats(dZs))
    return As, Zs, Ys, gYs, dZs, gXs, flats


@njit(**_JIT)
def _flat(A):
    """A row-major ``(n, d)`` view as one row ``(1, n*d)``: an elementwise kernel then
    runs one long vectorised loop instead of ``n`` loops of ``d`` (a narrow layer's
    short loops leave most of each vector unused: bias + tanh on 128x27 measured 7.4 us
    in rows, 4.4 flat; bias + relu 4.9 and 2.2)."""
    return A.reshape((1, A.size))


@njit(**_JIT)
def _flats(views):
    """:func:`_flat` of each view in the list ``views``. Made once per batch size with the
    row views (:func:`_step_views`), not per step: a reshape calls Numba's C helper, and
    the six to twelve of them a step cost 5-7% of a 10-60-5 tanh step at batch 64."""
    out = [_flat(views[0])]  # appended, see _params
    for q in range(1, len(views)):
        out.append(_flat(views[q]))
    return out


@njit(**_JIT)
def _bias_act(Z, b, has_b, code, alpha, Y, fZ, fY):
    """``Z += b; Y = act(Z)``, the activation over the flat views ``fZ``, ``fY`` of ``Z``
    and ``Y`` (softmax by rows)."""
    if has_b:
        add_bias(Z, b)
    if code == SOFTMAX:
        act_forward(Z, code, alpha, Y)
    else:
        act_forward(fZ, code, alpha, fY)


@njit(**_JIT)
def _act_backward(Z, Y, dY, code, alpha, dZ, flat):
    """:func:`~fastnn.kernels.cpu.act_backward` over the flat views ``flat = (fZ, fY,
    fdY, fdZ)`` of the other four (softmax by rows)."""
    if code == SOFTMAX:
        act_backward(Z, Y, dY, code, alpha, dZ)
    else:
        fZ, fY, fdY, fdZ = flat
        act_backward(fZ, fY, fdY, code, alpha, fdZ)


@njit(**_JIT)
def _mul(A, B, out):
    """``out = A * B`` elementwise, ``(n, d)`` arrays (``out`` may be ``A``)."""
    n, d = A.shape
    for r in range(n):
        for j in range(d):
            out[r, j] = A[r, j] * B[r, j]


#: OpenBLAS runs a GEMM of at most this many multiply-adds (m*n*k) through its
#: small-matrix kernels, which skip packing the operands: a 32x256 by 256x256 product
#: measured 1.6x faster cut into row blocks below this size than in one call
SMALL_GEMM_MACS = 1_000_000


@njit(**_JIT)
def _matmul_rows(A, W, Z):
    """``Z = A @ W`` in row blocks small enough for BLAS's small-matrix kernels, when the
    whole product is not and ``W`` is small enough for a block of 4+ rows."""
    n = A.shape[0]
    kn = W.shape[0] * W.shape[1]
    m = SMALL_GEMM_MACS // max(kn, 1)
    if n * kn <= SMALL_GEMM_MACS or m < 4:
        np.dot(A, W, Z)
        return
    for r0 in range(0, n, m):
        r1 = min(r0 + m, n)
        np.dot(A[r0:r1], W, Z[r0:r1])


# A Dense layer with one output (a binary or regression head) on a small input runs its
# products in loops: three BLAS calls' fixed cost is more than their arithmetic (measured
# 14% of a 11-16-16-1 step at batch 32; even at 64x32 inputs, 5% slower at 64x128).
HEAD_LOOPS_MAX = 2048
# Sums may be reassociated (vectorised) and contracted to FMA, as BLAS does; no
# nnan/ninf: NaN and infinity keep their meaning (as kernels/cpu.py's dense loops).
_MM = {**_JIT, "fastmath": {"reassoc", "contract"}}


@njit(**_MM)
def _head_forward(A, W, Z):
    """``Z = A @ W`` for ``W (d_in, 1)``."""
    n, din = A.shape
    w = W.reshape(din)
    for r in range(n):
        s = A.dtype.type(0)
        for i in range(din):
            s += A[r, i] * w[i]
        Z[r, 0] = s


@njit(**_MM)
def _head_backward(A, W, dZ, dW, dX, need_dx):
    """``dW = A.T @ dZ`` and, when ``need_dx``, ``dX = dZ @ W.T`` for ``W (d_in, 1)``."""
    n, din = A.shape
    w = W.reshape(din)
    dw = dW.reshape(din)
    for i in range(din):
        dw[i] = A.dtype.type(0)
    for r in range(n):
        g = dZ[r, 0]
        for i in range(din):
            dw[i] += A[r, i] * g
    if need_dx:
        for r in range(n):
            g = dZ[r, 0]
            for i in range(din):
                dX[r, i] = g * w[i]


@njit(**_JIT)
def _forward(ops, opf, Ws, bs, As, Zs, Ys, U, u_pos, flats):
    """Forward pass of one step; returns the new position in the dropout uniforms.
    ``flats``: the flat views of ``As``, ``Zs``, ``Ys`` (:func:`_step_views`)."""
    fAs, fZs, fYs = flats[0], flats[1], flats[2]
    for q in range(ops.shape[0]):
        kind = ops[q, C_KIND]
        code = ops[q, C_ACT]
        alpha = opf[q, F_ALPHA]
        A, Z, Y = As[q], Zs[q], Ys[q]
        if kind == OP_DENSE:
            if Z.shape[1] == 1 and A.size <= HEAD_LOOPS_MAX:
                _head_forward(A, Ws[q], Z)
            else:
                _matmul_rows(A, Ws[q], Z)
            _bias_act(Z, bs[q], ops[q, C_BOFF] >= 0, code, alpha, Y, fZs[q], fYs[q])
        elif kind == OP_ACT:
            if code == SOFTMAX:
                act_forward(A, code, alpha, Y)
            else:
                act_forward(fAs[q], code, alpha, fYs[q])
        else:  # dropout: Z holds the mask (uniforms or keys: kernels.cpu_dropout)
            dropout_rows(fAs[q], U, u_pos, opf[q, F_RATE], opf[q, F_KEEP], fZs[q], fYs[q])
            u_pos += Z.size
    return u_pos


#: ``dX = dZ @ W.T`` goes through a transposed copy of ``W`` up to this size: BLAS's
#: small kernel for a transposed operand is ~1.7x slower than for a plain one (32x64 by
#: 64x64: 4.1 vs 2.4 us), more than the copy costs while ``W`` is small; bigger copies
#: cost more than they save (measured 5% faster at 11-64-64-1/128, 10% slower at 128 wide)
WT_COPY_MAX = 4096


@njit(**_JIT)
def _matmul_wt(dZ, W, dX, scratch):
    """``dX = dZ @ W.T`` (``scratch``: at least :data:`WT_COPY_MAX` elements)."""
    din, dout = W.shape
    if W.size > WT_COPY_MAX:
        np.dot(dZ, W.T, dX)
        return
    WT = scratch[: W.size].reshape((dout, din))
    for j in range(dout):
        for i in range(din):
            WT[j, i] = W[i, j]
    np.dot(dZ, WT, dX)


@njit(**_JIT)
def _bias_grad(dZ, db, ones):
    """``db = sum_rows dZ`` as one matrix-vector product, ``ones @ dZ``, through BLAS: the
    column-sum loop loads and stores all of ``db`` once a row (256x41: 1.8 -> 0.96 us,
    256x52: 3.1 -> 0.86 us, 2-core EPYC); BLAS sums in its own order, as in the products."""
    np.dot(ones[: dZ.shape[0]], dZ, db)


@njit(**_JIT)
def _backward_update(ops, opf, Ws, dWs, dbs, views, first_param, upd, WT, ones):
    """Backward pass of one step; each Dense layer's parameters are updated right after
    their gradient is written (``upd`` = theta, grad, s1, s2, opt_code, hp, lr_t, eps_t),
    while they are in cache. ``dX`` uses the old weights, as in the per-layer path.
    ``ones``: at least a batch of ones (:func:`_bias_grad`)."""
    theta, grad, s1, s2, opt_code, hp, lr_t, eps_t = upd
    As, Zs, Ys, gYs, dZs, gXs, flats = views
    fAs, fZs, fYs, fgYs, fdZs = flats
    for q in range(ops.shape[0] - 1, first_param - 1, -1):
        kind = ops[q, C_KIND]
        code = ops[q, C_ACT]
        gY = gYs[q]
        dZ = dZs[q]
        if kind == OP_DENSE:
            if code != LINEAR:
                flat = (fZs[q], fYs[q], fgYs[q], fdZs[q])
                _act_backward(Zs[q], Ys[q], gY, code, opf[q, F_ALPHA], dZ, flat)
            if dZ.shape[1] == 1 and As[q].size <= HEAD_LOOPS_MAX:
                _head_backward(As[q], Ws[q], dZ, dWs[q], gXs[q], q > first_param)
            else:
                if q > first_param:
                    _matmul_wt(dZ, Ws[q], gXs[q], WT)
                np.dot(As[q].T, dZ, dWs[q])
            wo = ops[q, C_WOFF]
            hi = wo + Ws[q].size
            bo = ops[q, C_BOFF]
            if bo >= 0:
                _bias_grad(dZ, dbs[q], ones)
                if bo == hi:  # b right after W (the usual layout): one update for both
                    hi = bo + ops[q, C_DOUT]
                else:
                    opt_update(
                        theta, grad, s1, s2, bo, bo + ops[q, C_DOUT], opt_code, hp, lr_t, eps_t
                    )
            opt_update(theta, grad, s1, s2, wo, hi, opt_code, hp, lr_t, eps_t)
        elif kind == OP_ACT:
            flat = (fAs[q], fYs[q], fgYs[q], fdZs[q])
            _act_backward(As[q], Ys[q], gY, code, opf[q, F_ALPHA], dZ, flat)
        else:
            _mul(fgYs[q], fZs[q], fdZs[q])


@njit(**_JIT)
def train_epoch_mid(data, state, net, bufs, loss, opt, steps):
    """Train batches ``b_first .. b_last-1`` of an epoch in one call; returns the loss sum.

    The arguments are :func:`fastnn.kernels.cpu.train_epoch`'s, grouped in tuples:
    ``data = (X, yf, yi, w, has_w, out)``, ``state = (theta, grad, s1, s2)``, ``net =
    (ops, opf)`` (the same op tables and workspace offsets), ``bufs = (ws, G0, G1, U)``
    (dropout uniforms in the same order), ``loss = (loss_code, sparse, lc)``, ``opt =
    (opt_code, hp, lr_ts, eps_ts)``, ``steps = (batch_size, b_first, b_last)``; no
    transposition scratch: activations here are row-major ``(rows, features)`` views of
    ``ws``, and every product is one BLAS call (or a few, see :func:`_matmul_rows`).
    Each batch of ``X`` is copied to ``ws[0:]`` (the first op's input).
    """
    X, yf, yi, w, has_w, out = data
    theta, grad, s1, s2 = state
    ops, opf = net
    ws, G0, G1, U = bufs
    loss_code, sparse, lc = loss
    opt_code, hp, lr_ts, eps_ts = opt
    batch_size, b_first, b_last = steps
    n = X.shape[0]
    d_x = X.shape[1]
    n_ops = ops.shape[0]
    first_param = first_dense(ops)
    Ws, dWs, bs, dbs = _params(ops, theta, grad)
    WT = np.empty(WT_COPY_MAX, dtype=theta.dtype)
    ones = np.ones(batch_size, dtype=theta.dtype)
    nbv = min(batch_size, n - b_first * batch_size)
    views = _step_views(ws, G0, G1, ops, first_param, nbv)
    t = theta.dtype.type
    total = 0.0
    u_pos = 0
    for b in range(b_first, b_last):
        start = b * batch_size
        stop = min(start + batch_size, n)
        nb = stop - start
        if nb != nbv:  # the last, shorter batch
            nbv = nb
            views = _step_views(ws, G0, G1, ops, first_param, nb)
        Xb = _rows(ws, 0, nb, d_x)
        Xb[:, :] = X[start:stop]
        u_pos = _forward(ops, opf, Ws, bs, views[0], views[1], views[2], U, u_pos, views[6])
        P = views[2][n_ops - 1]
        out[start:stop] = P
        gP = views[3][n_ops - 1]
        yb, yib, wb = yf[start:stop], yi[start:stop], w[start:stop]
        total += loss_grad(P, yb, yib, wb, has_w, loss_code, sparse, lc, t(1.0 / nb), gP)
        s = b - b_first
        upd = (theta, grad, s1, s2, opt_code, hp, lr_ts[s], eps_ts[s])
        _backward_update(ops, opf, Ws, dWs, dbs, views, first_param, upd, WT, ones)
    return total


@njit(**_JIT)
def eval_loss_mid(data, theta, net, bufs, loss, batch_size):
    """The loss summed over the rows of ``data = (X, yf, yi, w, has_w)``, forward only,
    in chunks of ``batch_size`` rows (``bufs = (ws, G0, G1, U)``; dropout off as in
    :func:`fastnn.kernels.cpu_cols.eval_loss_cols`)."""
    X, yf, yi, w, has_w = data
    ops, opf = net
    ws, G0, G1, U = bufs
    loss_code, sparse, lc = loss
    n = X.shape[0]
    d_x = X.shape[1]
    n_ops = ops.shape[0]
    first_param = first_dense(ops)
    Ws, _, bs, _ = _params(ops, theta, theta)
    one = theta.dtype.type(1.0)
    total = 0.0
    nbv = -1
    views = _step_views(ws, G0, G1, ops, first_param, 1)
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        nb = stop - start
        if nb != nbv:
            nbv = nb
            views = _step_views(ws, G0, G1, ops, first_param, nb)
        Xb = _rows(ws, 0, nb, d_x)
        Xb[:, :] = X[start:stop]
        _forward(ops, opf, Ws, bs, views[0], views[1], views[2], U, 0, views[6])
        P, gP = views[2][n_ops - 1], views[3][n_ops - 1]
        yb, yib, wb = yf[start:stop], yi[start:stop], w[start:stop]
        total += loss_grad(P, yb, yib, wb, has_w, loss_code, sparse, lc, one, gP)
    return total


from .cache import quick_loads  # noqa: E402  (cached kernels load without the compiler set-up)

quick_loads(globals())
