"""Training: the epoch loop around the five steps.

A model (:class:`~fastnn.layers.Sequential`) is structure: layers, weights, compile,
predict. This module trains it. :func:`fit` checks the arguments, holds out validation
rows, copies the data to the backend's device, chooses the training path, then runs the
epochs: shuffle, train every batch, measure, call the callbacks, show progress, record
the history.

Every batch takes the five steps of backpropagation (README, "How training works"):

1. take a batch of the training set             :func:`take_batch`
2. forward-propagate it through the layers       :func:`forward`
3. measure the error and its gradient            :func:`measure_error`
4. backpropagate it to every weight               :func:`backpropagate`
5. let the optimizer move the weights            :func:`update`

:func:`train_epoch` runs them over one epoch: that loop is the readable specification of
training. A backend may offer a *compiled copy* of it for models it can describe (the
Numba backend compiles a whole epoch of a Dense stack into one call,
:mod:`fastnn.backends.numba_epoch`); :func:`choose_path` picks that copy when there is
one and records which path runs in ``model.training_path``. The compiled copy is tested
against this loop (``tests/test_numba_backend.py``).
"""

from __future__ import annotations

import math
import time
import warnings

import numpy as np

from ._random import make_rng
from .backends.base import Backend
from .callbacks import Callback, NaNGuard
from .errors import ConfigError, DataError
from .runguard import LastEpoch


class History:
    """What ``fit`` returns: ``history[name]`` is the per-epoch list of each metric."""

    def __init__(self):
        self.history: dict[str, list[float]] = {}
        self.epoch: list[int] = []
        self.params: dict = {}
        self.stop_reason: str | None = None

    def __repr__(self):
        return f"History(epochs={len(self.epoch)}, keys={list(self.history)})"


# ---------------------------------------------------------------------- the five steps
def take_batch(Xp, yp, wp, start: int, stop: int):
    """Step 1: rows ``start:stop`` of the (shuffled) features, targets and row weights."""
    return Xp[start:stop], yp[start:stop], None if wp is None else wp[start:stop]


def forward(model, Xb):
    """Step 2: forward-propagate ``Xb (nb, d_in)`` in training mode.

    Returns ``(out, backprops)``: the outputs ``(nb, k)`` (the logits when the head
    activation is fused into the loss) and each layer's ``backprop`` closure.
    """
    return model._forward_batch(Xb, True, model._head_fused())


def measure_error(model, out, yb, wb):
    """Step 3: ``(loss_sum, dOut)``: the batch's summed (weighted) loss and the gradient
    of its mean with respect to the outputs."""
    scale = 1.0 / out.shape[0]
    return model.loss.grad(model.backend, out, yb, wb, scale, model._head_fused())


def backpropagate(backprops, dout) -> None:
    """Step 4: run the layers' ``backprop`` closures last to first; each writes its
    layer's gradients into ``model.grad`` (the first layer needs no input gradient)."""
    dA = dout
    for i in range(len(backprops) - 1, -1, -1):
        dA = backprops[i](dA, i > 0)


def update(model) -> None:
    """Step 5: one optimizer step over the whole flat parameter buffer."""
    model.optimizer.step(model.backend, model.theta, model.grad)


def train_epoch(model, Xp, yp, wp, batch_size: int):
    """One epoch of the per-layer path over already shuffled rows.

    Returns ``(loss_sum, outputs)``, the outputs (logits for a fused head) in row order.
    """
    be = model.backend
    n = Xp.shape[0]
    out_all = be.empty((n, model.layers[-1].output_dim), model.dtype)
    total = 0.0
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        Xb, yb, wb = take_batch(Xp, yp, wp, start, stop)
        out, backprops = forward(model, Xb)
        out_all[start:stop] = out
        lsum, dout = measure_error(model, out, yb, wb)
        total = total + lsum
        backpropagate(backprops, dout)
        update(model)
    return total, out_all


# ---------------------------------------------------------------------- the path
class _PerLayer:
    """The per-layer path as a runner (the same interface as a compiled epoch)."""

    def __init__(self, model, why: str = ""):
        self.model = model
        why = f"; {why}" if why else ""
        self.description = f"per-layer ({model.backend.name} backend ops{why})"

    def run(self, Xp, yp, wp, batch_size: int, rng):
        return train_epoch(self.model, Xp, yp, wp, batch_size)


def choose_path(model):
    """The runner that trains ``model`` one epoch per ``run`` call: the backend's compiled
    copy of :func:`train_epoch` when it offers one for this model, else the per-layer
    loop. Sets ``model.training_path`` to its description."""
    be = model.backend
    runner = be.epoch_runner(model, model.loss, model.optimizer)
    if runner is None:
        compiles = type(be).epoch_runner is not Backend.epoch_runner
        runner = _PerLayer(model, _no_compiled_form(model) if compiles else "")
    model.training_path = runner.description
    return runner


def _no_compiled_form(model) -> str:
    """Which part of the model a compiling backend could not take (its spec is None)."""
    spec = model.training_spec()
    for i, (layer, ls) in enumerate(zip(model.layers, spec.layers, strict=True)):
        if ls is None:
            return f"layer {i} ({type(layer).__name__}) has no compiled form"
    if spec.loss is None:
        return f"loss {type(model.loss).__name__} has no compiled form"
    if spec.optimizer is None:
        return f"optimizer {type(model.optimizer).__name__} has no compiled form"
    return "no compiled form for this model here"


# ---------------------------------------------------------------------- fit
def fit(
    model,
    X,
    y,
    batch_size: int = 32,
    epochs: int = 1,
    validation_split: float = 0.0,
    validation_data=None,
    shuffle: bool = True,
    class_weight=None,
    callbacks=None,
    verbose: int = 1,
    seed=None,
) -> History:
    """Train ``model``; the body of :meth:`Sequential.fit <fastnn.layers.Sequential.fit>`
    (see there for the arguments)."""
    model._require_compiled()
    epochs = positive_int("epochs", epochs)
    batch_size = positive_int("batch_size", batch_size)
    validation_split = _check_split(validation_split)
    rng = make_rng(seed)
    Xh, yh, wh, val = _training_data(
        model, X, y, class_weight, validation_data, validation_split, rng
    )
    batch_size = _clip_batch(batch_size, Xh.shape[0])
    be = model.backend
    data = (be.asarray(Xh), be.asarray(yh), None if wh is None else be.asarray(wh), yh)
    val_dev = None if val is None else (be.asarray(val[0]), val[1])
    model._seed_dropout(rng)
    runner = choose_path(model)
    cbs = _callbacks(model, callbacks)
    last_epoch = LastEpoch()  # last: after the callbacks that may change the weights
    last_epoch.set_model(model)
    cbs.append(last_epoch)
    history = History()
    history.params = {
        "epochs": epochs,
        "batch_size": batch_size,
        "samples": Xh.shape[0],
        "backend": be.name,
        "training_path": model.training_path,
    }
    model.stop_training = False
    model.stop_reason = None
    progress = _Progress(verbose, epochs, model)
    for cb in cbs:
        cb.on_train_begin()
    t_start = time.perf_counter()
    try:
        for epoch in range(epochs):
            for cb in cbs:
                cb.on_epoch_begin(epoch)
            logs = _run_epoch(model, runner, data, val_dev, batch_size, shuffle, rng)
            if epoch == 0:  # the runner now knows the batch-size-specific path
                model.training_path = history.params["training_path"] = runner.description
            history.epoch.append(epoch)
            for k, v in logs.items():
                history.history.setdefault(k, []).append(v)
            for cb in cbs:
                cb.on_epoch_end(epoch, logs)
            progress.epoch_done(epoch, logs)
            if model.stop_training:
                break
    except KeyboardInterrupt:  # keep the last completed epoch, then let it propagate
        last_epoch.restore(history)
        model.history = history
        raise
    finally:
        progress.close()
    for cb in cbs:
        cb.on_train_end()
    history.params["seconds"] = time.perf_counter() - t_start
    history.stop_reason = model.stop_reason
    model.history = history
    return history


def _run_epoch(model, runner, data, val_dev, batch_size, shuffle, rng) -> dict:
    """Shuffle, train one epoch, and measure it; returns the epoch's logs."""
    be = model.backend
    X_dev, y_dev, w_dev, yh = data
    if shuffle:
        perm = rng.permutation(X_dev.shape[0])
        perm_dev = be.asarray(perm)
        # take(axis=0), not X[perm]: the same rows, 3-4x faster on narrow X
        Xp, yp = X_dev.take(perm_dev, axis=0), y_dev.take(perm_dev, axis=0)
        wp = None if w_dev is None else w_dev.take(perm_dev, axis=0)
        y_host = yh.take(perm, axis=0)
    else:
        Xp, yp, wp, y_host = X_dev, y_dev, w_dev, yh
    loss_sum, out = runner.run(Xp, yp, wp, batch_size, rng)
    logs = {"loss": float(loss_sum) / X_dev.shape[0]}
    if model.metric_names:
        logs.update(model._metrics(y_host, be.to_numpy(model._head(out))))
    if val_dev is not None:
        logs.update(model._evaluate_dev(val_dev[0], val_dev[1], prefix="val_"))
    return logs


class _Progress:
    """verbose=1: a tqdm bar over epochs; 2: the path, then one line per epoch; 0: quiet."""

    def __init__(self, verbose: int, epochs: int, model):
        self.verbose, self.epochs, self.bar = verbose, epochs, None
        be = model.backend
        if verbose == 2:
            print(f"fastnn: training on {be.name} ({be.device}); path: {model.training_path}")
        elif verbose:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=epochs, desc="train", unit="epoch", dynamic_ncols=True)

    def epoch_done(self, epoch: int, logs: dict) -> None:
        if self.bar is not None:
            self.bar.set_postfix({k: f"{v:.4f}" for k, v in logs.items()}, refresh=False)
            self.bar.update(1)
        elif self.verbose == 2:
            text = " ".join(f"{k}={v:.4f}" for k, v in logs.items())
            print(f"epoch {epoch + 1}/{self.epochs} {text}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


# ---------------------------------------------------------------------- checks and data
def positive_int(name: str, value) -> int:
    """``value`` as an int >= 1, or a :class:`ConfigError` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    if value < 1:
        raise ConfigError(f"{name} must be >= 1, got {value}")
    return int(value)


def _check_split(validation_split) -> float:
    try:
        validation_split = float(validation_split)
    except (TypeError, ValueError):
        raise ConfigError(
            f"validation_split must be a number in [0, 1), got {validation_split!r}"
        ) from None
    if not 0.0 <= validation_split < 1.0:
        raise ConfigError(f"validation_split must be in [0, 1), got {validation_split}")
    return validation_split


def _clip_batch(batch_size: int, n: int) -> int:
    if batch_size > n:
        warnings.warn(
            f"batch_size={batch_size} is larger than the {n} training rows; "
            f"training on all {n} rows per step",
            UserWarning,
            stacklevel=4,
        )
        return n
    return batch_size


def _training_data(model, X, y, class_weight, validation_data, validation_split, rng):
    """Checked host arrays ``(X, y, row_weights, validation)``; builds the model (from
    ``rng``) and its optimizer state if needed."""
    Xh = model._prepare_X(X, "X", build_seed=rng)
    model._ensure_optimizer_state()
    model._check_metric_fit()
    yh = model._prepare_y(y, Xh.shape[0])
    _check_classes(model, yh)
    wh = _sample_weights(model, yh, class_weight)
    if validation_data is not None:
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
            raise ConfigError("validation_data must be a tuple (X_val, y_val)")
        Xv = model._prepare_X(validation_data[0], "validation X")
        return Xh, yh, wh, (Xv, model._prepare_y(validation_data[1], Xv.shape[0], "validation y"))
    if validation_split > 0:
        n_val = int(round(Xh.shape[0] * validation_split))
        if n_val < 1 or n_val >= Xh.shape[0]:
            raise DataError(
                f"validation_split={validation_split} leaves {n_val} of {Xh.shape[0]} rows "
                "for validation; need at least one row on each side"
            )
        wh = None if wh is None else wh[:-n_val]
        return Xh[:-n_val], yh[:-n_val], wh, (Xh[-n_val:], yh[-n_val:])
    return Xh, yh, wh, None


def _class_index(model, y):
    if model.loss.sparse:
        return y
    if y.shape[1] == 1:
        return y[:, 0].astype(np.int64)
    return y.argmax(axis=1)


def _check_classes(model, y) -> None:
    """A classifier cannot learn from one class: say so instead of training."""
    if model.loss.head is None:
        return  # regression
    if model.loss.name == "binary_crossentropy" and y.shape[1] != 1:
        return  # multi-label: each column is its own problem
    classes = np.unique(_class_index(model, y))
    if classes.size < 2:
        raise DataError(
            f"the training labels hold only one class ({classes[0].item()!r} in all "
            f"{y.shape[0]} rows); a classifier needs examples of at least two classes"
        )


def _sample_weights(model, y, class_weight):
    if class_weight is None:
        return None
    if not isinstance(class_weight, dict):
        raise ConfigError("class_weight must be a dict {class_index: weight}")
    idx = _class_index(model, y)
    w = np.ones(idx.shape[0], dtype=model.dtype)
    for cls, weight in class_weight.items():
        weight = float(weight)
        if not math.isfinite(weight) or weight < 0:
            raise ConfigError(f"class_weight[{cls!r}] must be a finite weight >= 0, got {weight}")
        w[idx == int(cls)] = weight
    return w.reshape(-1, 1)


def _callbacks(model, callbacks) -> list:
    """The user's callbacks, checked, with a :class:`NaNGuard` first unless one is given."""
    cbs = list(callbacks or [])
    if not any(isinstance(c, NaNGuard) for c in cbs):
        cbs.insert(0, NaNGuard())
    for cb in cbs:
        if not isinstance(cb, Callback):
            raise ConfigError(f"callbacks must be fastnn Callback objects, got {type(cb).__name__}")
        cb.set_model(model)
    return cbs
