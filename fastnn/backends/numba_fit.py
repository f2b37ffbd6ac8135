"""A training run with early stopping as one compiled call, on the Numba backend: what
``fastnn tune`` trains each fold with (:func:`fit_early_stopping`).

The same training as ``model.fit(X, y, batch_size, epochs, validation_data=(Xv, yv),
callbacks=[EarlyStopping(patience=..., min_delta=..., restore_best_weights=True)],
seed=seed)`` on ``FASTNN_NUMBA_PATH=generic`` with ``FASTNN_DROPOUT_RNG=kernel``: the
same initial weights for the seed, the same epochs, validation loss, stopping rule and
restored weights, but its epoch order and dropout masks come from counter-based hashes
in compiled code (:mod:`fastnn.kernels.cpu_fit`), not from the NumPy generator, so the
two agree in distribution, not draw for draw. What it saves is the Python of every
epoch (shuffle, take, the validation pass through the layers, callbacks, history):
0.3-0.4 ms an epoch on the 2-core box, as much as a small network's compiled epoch.
"""

from __future__ import annotations

import numpy as np

from .. import training
from .._random import make_rng
from ..errors import ConfigError
from . import numba_epoch, numba_mid


def fit_early_stopping(
    model, X, y, validation_data, batch_size, epochs, patience, min_delta=0.0, seed=None,
    cancel=None,
):  # fmt: skip
    """Train ``model`` (compiled, on the Numba backend) with early stopping on the
    validation loss, in one compiled call. Returns ``{"epochs": epochs run, "best_epoch":
    0-based or None, "val_loss": [per-epoch means]}`` (no training loss: it is not
    computed), or None when
    this model has no such path (another backend, a layer or loss without a compiled
    form, or a network the rule sends to the Python-driven BLAS path): then train it
    with ``model.fit`` and :class:`~fastnn.callbacks.EarlyStopping`.

    ``cancel``: a 1-D int8 array whose first element, once another thread or process
    sets it non-zero (shared memory), ends the run before its next epoch (``fastnn
    tune`` stops the folds of a pruned trial with it); the weights are then those of
    the best epoch so far, or of the last one if none was better."""
    model._require_compiled()
    if getattr(model.backend, "name", None) != "numba":
        return None
    batch_size = training.positive_int("batch_size", batch_size)
    epochs = training.positive_int("epochs", epochs)
    rng = make_rng(seed)
    Xh, yh, wh, val = training._training_data(model, X, y, None, validation_data, 0.0, rng)
    model._seed_dropout(rng)
    runner = model.backend.epoch_runner(model, model.loss, model.optimizer)
    if not isinstance(runner, numba_epoch.EpochRunner):
        return None
    batch_size = training._clip_batch(batch_size, Xh.shape[0])
    path = numba_epoch.choose_path(runner.plan, batch_size, runner.forced or "generic")
    if path not in ("cols", "mid"):
        return None
    cancel = np.zeros(1, dtype=np.int8) if cancel is None else cancel
    ok = isinstance(cancel, np.ndarray) and cancel.dtype == np.int8 and cancel.ndim == 1
    if not ok or cancel.size == 0:
        raise ConfigError("cancel must be a 1-D int8 array (its first element is the flag)")
    with numba_mid.blas_limit(runner.plan.macs_per_row, batch_size):
        e, best, val_losses = _run(runner, path == "mid", (Xh, yh, wh), val, batch_size,
                                           epochs, (patience, min_delta, cancel), rng)  # fmt: skip
    runner.spec.optimizer.advance(e * -(-Xh.shape[0] // batch_size))
    model.training_path = runner.description = runner._describe(batch_size)
    return {
        "epochs": int(e),
        "best_epoch": None if best < 0 else int(best),
        "val_loss": [float(v) for v in val_losses],
    }


#: the validation pass runs in chunks of at least this many rows (its own workspace):
#: a forward pass over 32-row chunks costs twice as much a row
VAL_CHUNK_ROWS = 256


def _run(runner, mid, train, val, batch_size, epochs, stop, rng):
    """The call into :func:`fastnn.kernels.cpu_fit.fit_early_stop`."""
    from ..kernels import cpu_fit

    p, spec = runner.plan, runner.spec
    dt = spec.dtype
    X, yf, yi, w, has_w = runner._targets(*train)
    Xv, yfv, yiv, wv, _ = runner._targets(val[0], val[1], None)
    n = X.shape[0]
    runner._buffers(batch_size)
    s1, s2 = runner._state()
    n_batches = -(-n // batch_size)
    lr_ts, eps_ts = (a.astype(dt) for a in spec.optimizer.step_scalars(epochs * n_batches))
    width = p.dropout_width
    # dropout masks hashed from two keys a chunk (kernels.cpu_dropout); chunks keep the
    # hash counters small, as the uniform buffers of model.fit
    chunk = n_batches if width == 0 else max(1, numba_epoch._MAX_UNIFORMS // (batch_size * width))
    U = np.zeros(2, dtype=np.uint64)
    shuffled = (
        np.empty_like(X),
        np.empty_like(yf),
        np.empty_like(yi),
        np.empty_like(w),
        np.empty((n, p.k_out), dtype=dt),
        np.empty(n, dtype=np.int64),
    )
    keys = rng.integers(0, 1 << 32, size=(epochs, 4), dtype=np.int64)
    val_args = (Xv, yfv, yiv, wv, False, *_val_workspace(runner, max(batch_size, VAL_CHUNK_ROWS)))
    return cpu_fit.fit_early_stop(
        mid,
        (X, yf, yi, w, has_w),
        val_args,
        shuffled,
        (spec.theta, spec.grad, s1, s2),
        (runner.ops, p.opf),
        (runner.ws, runner.G0, runner.G1, runner.LS, U),
        tuple((p.loss_code, p.sparse, numba_epoch._loss_consts(dt, p.k_out, v)) for v in (0, 1)),
        (p.opt_code, runner.hp, lr_ts, eps_ts),
        (batch_size, n_batches, chunk, width),
        (int(stop[0]), float(stop[1]), np.empty_like(spec.theta), stop[2][:1]),
        keys,
    )


def _val_workspace(runner, rows: int):
    """``(ops, opf), (ws, G0, G1, LS, U), rows``: tables and buffers of a forward-only
    pass over chunks of ``rows`` rows, dropout off (:func:`~fastnn.kernels.cpu_fit.eval_table`;
    ``U``: keys, unused at rate 0)."""
    from ..kernels import cpu_fit

    p, k, dt = runner.plan, runner._k, runner.spec.dtype
    ops = p.ops_units.copy()
    for col in (k.C_IN, k.C_Z, k.C_Y):
        ops[:, col] *= rows
    bufs = tuple(np.zeros(size * rows, dtype=dt) for size in (p.ws_units, p.max_w, p.max_w))
    bufs += (np.zeros(2 * p.k_out * rows, dtype=dt), np.zeros(2, dtype=np.uint64))
    return (ops, cpu_fit.eval_table(p.opf)), bufs, rows
