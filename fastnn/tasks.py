"""One tabular task end to end: the model for a fitted Preprocessor, training with
validation and early stopping, metrics in the target's own units, and scoring a file
in chunks. ``fastnn train`` and ``fastnn predict`` are thin wrappers around these.

>>> from fastnn import data, tasks
>>> from fastnn.defaults import CSV
>>> prep = data.Preprocessor(target="species")                     # doctest: +SKIP
>>> X, y = prep.fit_transform(train_df)                             # doctest: +SKIP
>>> model = tasks.build_model(prep.task, prep.n_outputs, CSV)       # doctest: +SKIP
>>> history = tasks.fit_model(model, X, y, CSV, seed=0)             # doctest: +SKIP
>>> tasks.evaluate(model, prep, X_test, y_test)["accuracy"]         # doctest: +SKIP
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from .defaults import OPTIMIZER_NAMES, REGRESSION_LOSSES, TASKS, TrainDefaults
from .errors import ConfigError

#: the values of ``--class-weight``
CLASS_WEIGHTS = ("none", "balanced")


def make_optimizer(name: str, lr: float | None = None, weight_decay: float | None = None):
    """An optimizer by name; ``lr`` / ``weight_decay`` None keep the optimizer's own
    defaults."""
    from . import optimizers

    if name not in OPTIMIZER_NAMES:
        raise ConfigError(f"optimizer must be one of {', '.join(OPTIMIZER_NAMES)}; got {name!r}")
    kwargs = {}
    if lr is not None:
        kwargs["learning_rate"] = lr
    if weight_decay is not None:
        kwargs["weight_decay"] = weight_decay
    return optimizers.OPTIMIZERS[name](**kwargs)


def build_model(
    task: str,
    n_outputs: int,
    settings: TrainDefaults,
    loss=None,
    backend=None,
    lr="preset",
    metrics=None,
):
    """A compiled :class:`~fastnn.Sequential` for ``task``: the hidden layers of
    ``settings`` (each followed by Dropout when ``settings.dropout``), then the task's
    head (:data:`fastnn.defaults.TASKS`).

    Args:
        task: "binary", "multiclass" or "regression".
        n_outputs: output units (``Preprocessor.n_outputs``).
        settings: a :class:`~fastnn.defaults.TrainDefaults`.
        loss: regression only: "mse" (default), "mae" or "huber".
        backend: a backend name or object (None: the current default).
        lr: the learning rate; "preset" uses ``settings.lr``, None the optimizer's own.
        metrics: metric names to compile (None: the task's, ``()``: none, only the loss).
    """
    from .layers import Dense, Dropout, Sequential

    if task not in TASKS:
        raise ConfigError(f"task must be one of {', '.join(TASKS)}; got {task!r}")
    head = TASKS[task]
    if loss is not None and task != "regression":
        raise ConfigError(
            f"--loss chooses the regression loss ({', '.join(REGRESSION_LOSSES)}); this "
            f"target is a {task} task, trained with {head.loss}"
        )
    if loss is not None and loss not in REGRESSION_LOSSES:
        raise ConfigError(f"loss must be one of {', '.join(REGRESSION_LOSSES)}; got {loss!r}")
    layers = []
    for units in settings.hidden:
        layers.append(Dense(units, activation=settings.activation))
        if settings.dropout:
            layers.append(Dropout(settings.dropout))
    layers.append(Dense(head.units(n_outputs), activation=head.activation))
    model = Sequential(layers, backend=backend)
    rate = settings.lr if lr == "preset" else lr
    model.compile(
        optimizer=make_optimizer(settings.optimizer, rate, settings.weight_decay),
        loss=loss or head.loss,
        metrics=list(head.metrics if metrics is None else metrics),
    )
    return model


def balanced_class_weight(y, n_classes: int) -> dict[int, float]:
    """``{class: n / (k * count)}`` over the classes in ``y`` (scikit-learn's
    "balanced"): every class contributes the same total weight."""
    y = np.asarray(y).astype(np.int64).reshape(-1)
    counts = np.bincount(y, minlength=n_classes)
    k = int((counts > 0).sum())
    return {c: y.size / (k * int(n)) for c, n in enumerate(counts) if n > 0}


def fit_model(
    model, X, y, settings: TrainDefaults, class_weight=None, seed=0, verbose=0, callbacks=()
):
    """``model.fit`` with the settings' epochs, batch size, validation split and (when
    ``settings.patience`` and a validation split) early stopping on ``val_loss`` that
    restores the best epoch's weights; ``callbacks`` run too. Returns the History;
    ``history.best_epoch`` is the 1-based epoch whose weights were kept (None without
    early stopping)."""
    from .callbacks import EarlyStopping

    callbacks = list(callbacks)
    stopper = None
    if settings.patience and settings.validation_split > 0:
        stopper = EarlyStopping("val_loss", patience=settings.patience, restore_best_weights=True)
        callbacks.append(stopper)
    history = model.fit(
        X,
        y,
        batch_size=settings.batch_size,
        epochs=settings.epochs,
        validation_split=settings.validation_split,
        class_weight=class_weight,
        callbacks=callbacks,
        seed=seed,
        verbose=verbose,
    )
    best = None if stopper is None or stopper.best_epoch is None else stopper.best_epoch + 1
    history.best_epoch = best
    return history


def evaluate(model, prep, X, y, intervals: bool = False, seed=0, n_boot: int = 1000) -> dict:
    """Metrics of ``model`` on prepared rows ``(X, y)``, in the target's own units.

    binary: loss, accuracy, auc, confusion_matrix; multi-class: loss, accuracy, f1_macro,
    log_loss, confusion_matrix; regression: loss (on the standardized target), r2, mae,
    rmse. ``rows`` in all. With ``intervals``, each of those numbers that
    :func:`fastnn.explain.add_intervals` knows (all but the regression loss) gets
    ``<metric>_ci: [lo, hi]``, a 95% bootstrap interval over ``n_boot`` resamples of the
    rows, seeded by ``seed``.
    """
    from . import metrics

    logs = model.evaluate(X, y)
    out = {"loss": logs["loss"], "rows": int(len(y))}
    P = model.predict(X)
    if prep.task == "regression":
        actual, pred = prep.inverse_target(y), prep.inverse_target(P[:, 0])
        out.update(
            r2=metrics.r2(actual, pred),
            mae=metrics.mae(actual, pred),
            rmse=metrics.rmse(actual, pred),
        )
        return _with_intervals(out, actual, pred, prep.task, intervals, seed, n_boot)
    k = len(prep.classes_)
    if prep.task == "binary":
        pred = (P[:, 0] >= 0.5).astype(np.int64)
        out.update(accuracy=logs["accuracy"], auc=metrics.roc_auc(y, P[:, 0]))
    else:
        pred = P.argmax(axis=1)
        out.update(
            accuracy=float((pred == y).mean()) if len(y) else math.nan,
            f1_macro=metrics.macro_f1(y, pred),
            log_loss=metrics.log_loss(y, P, sparse=True),
        )
    _with_intervals(
        out, y, P if prep.task == "multiclass" else P[:, 0], prep.task, intervals, seed, n_boot
    )
    out["confusion_matrix"] = metrics.confusion_matrix(y, pred, n_classes=k)
    return out


def _with_intervals(out, y, p, task, intervals, seed, n_boot) -> dict:
    if intervals and len(y) >= 2:
        from .explain import add_intervals

        add_intervals(out, y, p, task, n=n_boot, seed=seed)
    return out


def _csv_cells(values, keep, fmt=None) -> list[str]:
    if fmt is None:
        return ["" if not k else str(v) for v, k in zip(values, keep, strict=True)]
    return ["" if not k else format(v, fmt) for v, k in zip(values, keep, strict=True)]


def _typed_cells(values, keep, classes):
    import pandas as pd

    if values.dtype.kind == "f":
        return np.where(keep, values, np.nan)
    if all(isinstance(c, int) for c in classes):
        return pd.array([int(v) if k else None for v, k in zip(values, keep, strict=True)], "Int64")
    if all(isinstance(c, (int, float)) for c in classes):
        return np.where(keep, values.astype(np.float64), np.nan)
    return pd.array([str(v) if k else None for v, k in zip(values, keep, strict=True)], "string")


def score_chunk(model, prep, chunk, unknown="error", as_text=True):
    """Score one :class:`~fastnn.data.tables.Chunk`: returns ``(frame, kept, unknown)``,
    the input columns with the prediction columns added (text cells when ``as_text``,
    blank where a row could not be scored), the number of rows scored, and
    ``{column: {value: rows}}`` of categories unseen in training."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # counted and reported once, by the caller
        X, _, keep = prep.transform(
            chunk.typed, with_target=False, return_mask=True, unknown=unknown
        )
    n = len(chunk.typed)
    P = np.full((n, prep.n_outputs), np.nan)
    if X.shape[0]:
        P[keep] = model.predict(X)
    base = chunk.raw if chunk.raw is not None else chunk.typed
    out = base.copy() if chunk.raw is None else base
    columns = list(prep.output_columns(P, taken=base.columns).items())
    for i, (name, values) in enumerate(columns):
        values = np.asarray(values)
        if not as_text:
            out[name] = _typed_cells(values, keep, prep.classes_ or [0.0])
        elif prep.task == "regression":
            out[name] = _csv_cells(values, keep, ".10g")
        else:  # the last column is the label, the others are probabilities
            out[name] = _csv_cells(values, keep, None if i == len(columns) - 1 else ".6f")
    return out, int(keep.sum()), dict(prep.unknown_)
