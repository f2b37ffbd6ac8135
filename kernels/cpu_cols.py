"""The hand-loop training epoch for ANY Dense stack, driven by the op tables: one
compiled function for every network, instead of one per network shape.

:mod:`fastnn.backends.numba_compile` writes the hand-loop epoch of one model as straight
Numba source and compiles it: the fastest form for small networks, but a new shape is a
new function (1-3 s of compiling, then cached). A search over network shapes
(``fastnn tune``) meets a new shape every trial. This epoch runs the same five steps,
calling the same feature-major kernels of :mod:`fastnn.kernels.cpu` in the same order on
the same workspace layout, but reads the network from the op tables at run time
(:func:`fastnn.backends.numba_epoch.plan`): it is compiled once, and gives the generated
epoch's results bit for bit (tested).
"""

from __future__ import annotations

from numba import njit

from .cpu import (
    _JIT,
    C_ACT,
    C_BOFF,
    C_DIN,
    C_DOUT,
    C_KIND,
    C_Y,
    C_Z,
    F_ALPHA,
    F_KEEP,
    F_RATE,
    LINEAR,
    OP_ACT,
    OP_DENSE,
    act_backward_t,
    act_forward_t,
    cols_to_rows,
    dense_backward_t,
    dense_forward_t,
    loss_grad,
    opt_update,
    rows_to_cols,
    scale_by,
)
from .cpu_dropout import dropout_cols
from .cpu_mid import _params, first_dense


@njit(**_JIT)
def _cols(buf, off, n, d):
    """The feature-major ``(d, n)`` view of ``buf[off : off + d*n]``."""
    return buf[off : off + d * n].reshape((d, n))


@njit(**_JIT)
def _views(ws, G0, G1, ops, first_param, nb):
    """Feature-major views of one step of ``nb`` rows, the generated epoch's layout: per
    op its input ``A``, ``Z`` (dropout: the mask) and ``Y``; for the backward pass the
    gradient ``gY`` arriving at the op (its activation's backward runs in place) and,
    for a Dense op above the first, ``gX`` in the other buffer of ``G0``/``G1``."""
    n_ops = ops.shape[0]
    A = _cols(ws, 0, nb, ops[0, C_DIN])
    As = [A]  # lists built by append, see cpu_mid._params
    Zs = [A]
    Ys = [A]
    gYs = [A]
    gXs = [A]
    for q in range(n_ops):
        dout = ops[q, C_DOUT]
        Z = A if ops[q, C_KIND] == OP_ACT else _cols(ws, ops[q, C_Z], nb, dout)
        Y = _cols(ws, ops[q, C_Y], nb, dout)
        if q == 0:
            Zs[0], Ys[0] = Z, Y
        else:
            As.append(A)
            Zs.append(Z)
            Ys.append(Y)
            gYs.append(A)
            gXs.append(A)
        A = Y
    G = (G0, G1)
    cur = 0
    for q in range(n_ops - 1, first_param - 1, -1):
        gYs[q] = _cols(G[cur], 0, nb, ops[q, C_DOUT])
        if ops[q, C_KIND] == OP_DENSE and q > first_param:
            gXs[q] = _cols(G[1 - cur], 0, nb, ops[q, C_DIN])
            cur = 1 - cur
    return As, Zs, Ys, gYs, gXs


@njit(**_JIT)
def _forward(ops, opf, Ws, bs, As, Zs, Ys, U, u_pos):
    """Forward pass of one step; returns the new position in the dropout uniforms."""
    for q in range(ops.shape[0]):
        kind = ops[q, C_KIND]
        code = ops[q, C_ACT]
        alpha = opf[q, F_ALPHA]
        if kind == OP_DENSE:
            dense_forward_t(Ws[q], bs[q], ops[q, C_BOFF] >= 0, As[q], Zs[q])
            if code != LINEAR:
                act_forward_t(Zs[q], code, alpha, Ys[q])
        elif kind == OP_ACT:
            act_forward_t(As[q], code, alpha, Ys[q])
        else:
            dropout_cols(As[q], U, u_pos, opf[q, F_RATE], opf[q, F_KEEP], Zs[q], Ys[q])
            u_pos += As[q].size
    return u_pos


@njit(**_JIT)
def _backward(ops, opf, Ws, dWs, dbs, views, first_param):
    """Backward pass of one step, last op first (the update follows, over all of theta)."""
    As, Zs, Ys, gYs, gXs = views
    for q in range(ops.shape[0] - 1, first_param - 1, -1):
        kind = ops[q, C_KIND]
        code = ops[q, C_ACT]
        gY = gYs[q]
        if kind == OP_DENSE:
            if code != LINEAR:
                act_backward_t(Zs[q], Ys[q], gY, code, opf[q, F_ALPHA], gY)
            need = q > first_param
            gX = gXs[q] if need else gY
            dense_backward_t(Ws[q], As[q], gY, dWs[q], dbs[q], ops[q, C_BOFF] >= 0, gX, need)
        elif kind == OP_ACT:
            act_backward_t(As[q], Ys[q], gY, code, opf[q, F_ALPHA], gY)
        else:
            scale_by(gY, Zs[q])


@njit(**_JIT)
def _loss(P, gP, LS, yb, yib, wb, has_w, loss, scale):
    """Loss sum of one step's feature-major outputs ``P (k, nb)``; the gradient into
    ``gP`` (through the row-major scratch ``LS`` when ``k > 1``)."""
    loss_code, sparse, lc = loss
    k, nb = P.shape
    if k == 1:  # (1, nb) and (nb, 1) share their layout: the loss reads P in place
        Pr, gPr = P.reshape((nb, 1)), gP.reshape((nb, 1))
        return loss_grad(Pr, yb, yib, wb, has_w, loss_code, sparse, lc, scale, gPr)
    Pr, gPr = LS[: k * nb].reshape((nb, k)), LS[k * nb : 2 * k * nb].reshape((nb, k))
    cols_to_rows(P, Pr, 0)
    total = loss_grad(Pr, yb, yib, wb, has_w, loss_code, sparse, lc, scale, gPr)
    rows_to_cols(gPr, gP)
    return total


@njit(**_JIT)
def train_epoch_cols(data, state, net, bufs, loss, opt, steps):
    """Train batches ``b_first .. b_last-1`` of an epoch in one call; returns the loss sum.

    The arguments are :func:`fastnn.kernels.cpu_mid.train_epoch_mid`'s (``bufs = (ws,
    G0, G1, LS, U)`` adds the loss's row-major scratch ``LS``), the workspace offsets in
    ``net``'s ops already multiplied by the batch size. A short last batch is fine.
    """
    X, yf, yi, w, has_w, out = data
    theta, grad, s1, s2 = state
    ops, opf = net
    ws, G0, G1, LS, U = bufs
    opt_code, hp, lr_ts, eps_ts = opt
    batch_size, b_first, b_last = steps
    n = X.shape[0]
    n_ops = ops.shape[0]
    first = first_dense(ops)
    Ws, dWs, bs, dbs = _params(ops, theta, grad)
    t = theta.dtype.type
    total = 0.0
    u_pos = 0
    nbv = -1
    views = _views(ws, G0, G1, ops, first, 1)
    for b in range(b_first, b_last):
        start = b * batch_size
        stop = min(start + batch_size, n)
        nb = stop - start
        if nb != nbv:  # the first batch, and the last, shorter one
            nbv = nb
            views = _views(ws, G0, G1, ops, first, nb)
        As, Zs, Ys, gYs, _ = views
        rows_to_cols(X[start:stop], As[0])  # 1. take a batch, feature-major
        u_pos = _forward(ops, opf, Ws, bs, As, Zs, Ys, U, u_pos)  # 2. forward
        P = Ys[n_ops - 1]  # 3. the error (the outputs are kept, row-major, in out)
        cols_to_rows(P, out, start)
        yb, yib, wb = yf[start:stop], yi[start:stop], w[start:stop]
        total += _loss(P, gYs[n_ops - 1], LS, yb, yib, wb, has_w, loss, t(1.0 / nb))
        _backward(ops, opf, Ws, dWs, dbs, views, first)  # 4. backpropagate
        s = b - b_first  # 5. update every weight
        opt_update(theta, grad, s1, s2, 0, theta.size, opt_code, hp, lr_ts[s], eps_ts[s])
    return total


@njit(**_JIT)
def eval_loss_cols(data, theta, net, bufs, loss, batch_size):
    """The loss summed over the rows of ``data = (X, yf, yi, w, has_w)``, forward only,
    in chunks of ``batch_size`` rows; ``net``'s float table must turn dropout off (rate
    0, keep 1: see :func:`fastnn.kernels.cpu_fit.eval_table`) and ``bufs``' ``U`` hold
    one batch of zeros per dropout op."""
    X, yf, yi, w, has_w = data
    ops, opf = net
    ws, G0, G1, LS, U = bufs
    n = X.shape[0]
    n_ops = ops.shape[0]
    first = first_dense(ops)
    Ws, _, bs, _ = _params(ops, theta, theta)
    total = 0.0
    nbv = -1
    views = _views(ws, G0, G1, ops, first, 1)
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        nb = stop - start
        if nb != nbv:
            nbv = nb
            views = _views(ws, G0, G1, ops, first, nb)
        As, Zs, Ys, gYs, _ = views
        rows_to_cols(X[start:stop], As[0])
        _forward(ops, opf, Ws, bs, As, Zs, Ys, U, 0)
        yb, yib, wb = yf[start:stop], yi[start:stop], w[start:stop]
        one = theta.dtype.type(1.0)
        total += _loss(Ys[n_ops - 1], gYs[n_ops - 1], LS, yb, yib, wb, has_w, loss, one)
    return total


from .cache import quick_loads  # noqa: E402  (cached kernels load without the compiler set-up)

quick_loads(globals())
