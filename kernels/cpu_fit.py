"""A whole training run with early stopping in ONE compiled call: the fold trainer of
``fastnn tune`` (:mod:`fastnn.backends.numba_fit` calls it).

``model.fit`` runs its epoch loop in Python: per epoch it shuffles, calls the compiled
epoch, measures the validation rows through the layers and runs the callbacks, about
0.3-0.4 ms an epoch on the 2-core box, as much as the compiled epoch of a small network
takes. A search trains ~5,000 epochs. Here the same loop runs in compiled code:

1. shuffle the training rows (Fisher-Yates from a counter-based hash, one key an epoch)
   into preallocated buffers;
2. train the epoch: :func:`~fastnn.kernels.cpu_cols.train_epoch_cols` (hand loops) or
   :func:`~fastnn.kernels.cpu_mid.train_epoch_mid` (BLAS products), with dropout masks
   hashed from two keys where they are applied (:mod:`~fastnn.kernels.cpu_dropout`);
3. the validation loss, forward only (:func:`eval_table` turns dropout off);
4. early stopping as :class:`fastnn.callbacks.EarlyStopping` (``monitor="val_loss"``,
   ``min_delta``, ``patience``, ``restore_best_weights=True``): stop after ``patience``
   epochs without an improvement of more than ``min_delta``; the best epoch's weights
   are copied back at the end.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .cpu import _JIT, F_KEEP, F_RATE, _mix32
from .cpu_cols import eval_loss_cols, train_epoch_cols
from .cpu_mid import eval_loss_mid, train_epoch_mid

_M32 = np.uint64(0xFFFFFFFF)


def eval_table(opf: np.ndarray) -> np.ndarray:
    """A copy of the float op table with every dropout off: rate 0 and keep 1, so with
    zero uniforms, or any keys, the masks are ones (inference)."""
    out = opf.copy()
    out[:, F_RATE] = 0.0
    out[:, F_KEEP] = 1.0
    return out


@njit(**_JIT)
def shuffle(perm, key1, key2):
    """``perm`` = a permutation of ``0 .. n-1`` drawn from two 32-bit keys (Fisher-Yates;
    the swap index of position ``i`` from the hash of
    :func:`~fastnn.kernels.cpu.fill_uniforms`; its modulo bias, at most ``n / 2**32``, is
    nothing next to the shuffle's purpose)."""
    n = perm.shape[0]
    for i in range(n):
        perm[i] = i
    a = np.uint64(key1) & _M32
    b = np.uint64(key2) & _M32
    for i in range(n - 1, 0, -1):
        h = _mix32(_mix32((np.uint64(i) + a) & _M32) ^ b)
        j = np.int64(h % np.uint64(i + 1))
        tmp = perm[i]
        perm[i] = perm[j]
        perm[j] = tmp


@njit(**_JIT)
def _gather(src, perm, dst):
    """``dst[i, :] = src[perm[i], :]`` (2-D arrays; element loops: a row view per row
    measured 5x slower than NumPy's take)."""
    d = src.shape[1]
    for i in range(perm.shape[0]):
        r = perm[i]
        for j in range(d):
            dst[i, j] = src[r, j]


@njit(**_JIT)
def _train(mid, data, state, net, bufs, loss, opt, steps):
    """One call of the chosen epoch kernel (``bufs = (ws, G0, G1, LS, U)``)."""
    if mid:
        ws, G0, G1, LS, U = bufs
        return train_epoch_mid(data, state, net, (ws, G0, G1, U), loss, opt, steps)
    return train_epoch_cols(data, state, net, bufs, loss, opt, steps)


@njit(**_JIT)
def _val_loss(mid, data, theta, net, bufs, loss, batch_size):
    if mid:
        ws, G0, G1, LS, U = bufs
        return eval_loss_mid(data, theta, net, (ws, G0, G1, U), loss, batch_size)
    return eval_loss_cols(data, theta, net, bufs, loss, batch_size)


@njit(**_JIT)
def _epoch(mid, e, train, shuffled, state, net, bufs, loss, opt, sizes, keys):
    """Shuffle and train epoch ``e`` (dropout keys renewed per chunk of batches); returns
    its loss sum."""
    X, yf, yi, w, has_w = train
    Xp, yfp, yip, wp, out, perm = shuffled
    ws, G0, G1, LS, U = bufs
    opt_code, hp, lr_ts, eps_ts = opt
    batch_size, n_batches, chunk, dropout_width = sizes
    n = X.shape[0]
    shuffle(perm, keys[e, 0], keys[e, 1])
    _gather(X, perm, Xp)
    if yf.shape[0] == n:  # else the sparse targets' placeholder
        _gather(yf, perm, yfp)
    if yi.shape[0] == n:
        for i in range(n):
            yip[i] = yi[perm[i]]
    if has_w:
        _gather(w, perm, wp)
    total = 0.0
    for b0 in range(0, n_batches, chunk):
        b1 = min(b0 + chunk, n_batches)
        if dropout_width > 0:  # this chunk's dropout keys (kernels.cpu_dropout)
            U[0] = np.uint64(keys[e, 2])
            U[1] = np.uint64(keys[e, 3] + b0) & _M32
        s0 = e * n_batches + b0
        o = (opt_code, hp, lr_ts[s0 : s0 + b1 - b0], eps_ts[s0 : s0 + b1 - b0])
        total += _train(
            mid, (Xp, yfp, yip, wp, has_w, out), state, net, bufs, loss, o, (batch_size, b0, b1)
        )
    return total


@njit(**_JIT)
def fit_early_stop(mid, train, val, shuffled, state, net, bufs, losses, opt, sizes, stop, keys):
    """Train up to ``keys.shape[0]`` epochs with early stopping on the validation loss;
    returns ``(epochs run, best epoch or -1, validation losses)``.

    ``mid``: the BLAS epoch, else the hand loops; ``train`` = ``(X, yf, yi, w, has_w)``;
    ``val`` = the same for the validation rows plus, for the forward-only pass, its
    ``(ops, opf)`` tables (:func:`eval_table`), buffers ``(ws, G0, G1, LS, U)`` (``U``
    any two keys) and rows per chunk; ``shuffled`` = buffers of the training rows'
    shapes plus ``out`` and ``perm``; ``state = (theta, grad, s1, s2)``; ``net = (ops,
    opf)``; ``bufs = (ws, G0, G1, LS, U)`` (``U``: a chunk's two dropout keys, ``uint64``,
    see :mod:`~fastnn.kernels.cpu_dropout`); ``losses``: the training loss tuple (no loss
    value needed: see ``kernels.cpu.L_VALUE``) and the validation one; ``opt`` with the
    step scalars of every step of every epoch; ``sizes = (batch_size, n_batches, chunk
    (batches per key pair), dropout width)``; ``stop = (patience, min_delta, best_theta,
    cancel)``: ``cancel[0] != 0`` (set by another thread or process, e.g. in shared
    memory) ends the run before its next epoch; ``keys (epochs, 4)`` int64 in ``[0,
    2**32)``: per epoch two shuffle keys and two dropout keys."""
    loss, val_loss = losses
    Xv, yfv, yiv, wv, has_wv, val_net, val_bufs, val_rows = val
    val_data = (Xv, yfv, yiv, wv, has_wv)
    patience, min_delta, best_theta, cancel = stop
    theta = state[0]
    max_epochs = keys.shape[0]
    val_losses = np.zeros(max_epochs)
    n_val = Xv.shape[0]
    best = np.inf
    best_epoch = -1
    wait = 0
    e = 0
    while e < max_epochs and cancel[0] == 0:
        _epoch(mid, e, train, shuffled, state, net, bufs, loss, opt, sizes, keys)
        v = _val_loss(mid, val_data, theta, val_net, val_bufs, val_loss, val_rows) / n_val
        val_losses[e] = v
        e += 1
        if np.isfinite(v) and v < best - min_delta:
            best = v
            best_epoch = e - 1
            wait = 0
            best_theta[:] = theta
        else:
            wait += 1
            if wait >= patience:
                break
    if best_epoch >= 0:
        theta[:] = best_theta
    return e, best_epoch, val_losses[:e]


from .cache import quick_loads  # noqa: E402  (cached kernels load without the compiler set-up)

quick_loads(globals())
