"""Callbacks: hooks ``fit`` calls at the start and end of training and of each epoch.

``logs`` holds the epoch's metrics (``loss``, ``accuracy``, ``val_loss``, ...). A callback
may set ``model.stop_training = True`` to stop after the current epoch.
"""

from __future__ import annotations

import math
import os
import warnings

from .errors import ConfigError


class Callback:
    """Base class; override the hooks you need."""

    model = None

    def set_model(self, model) -> None:
        """Called by ``fit`` before training."""
        self.model = model

    def on_train_begin(self, logs=None):
        """Before the first epoch."""

    def on_epoch_begin(self, epoch: int, logs=None):
        """Before each epoch (0-based)."""

    def on_epoch_end(self, epoch: int, logs=None):
        """After each epoch, with that epoch's metrics."""

    def on_train_end(self, logs=None):
        """After the last epoch."""


def _better(mode: str, monitor: str):
    if mode == "auto":
        mode = (
            "max"
            if any(k in monitor for k in ("acc", "auc", "precision", "recall", "f1", "r2"))
            else "min"
        )
    if mode not in ("min", "max"):
        raise ConfigError(f"mode must be 'min', 'max' or 'auto', got {mode!r}")
    return mode


class NaNGuard(Callback):
    """Stop as soon as an epoch's loss is NaN or infinite, and put back the weights of
    the last epoch whose loss and weights were finite. ``fit`` adds one unless you pass
    your own.

    The weights are checked too: the last step of an epoch can overflow the weights
    while every loss of that epoch was still finite.
    """

    def on_train_begin(self, logs=None):
        be = self.model.backend
        theta = self.model.theta
        self._good = be.copy(theta) if be.all_finite(theta) else None
        self._good_epoch = 0

    def on_epoch_end(self, epoch, logs=None):
        be = self.model.backend
        loss = (logs or {}).get("loss")
        loss_ok = loss is None or math.isfinite(loss)
        if loss_ok and be.all_finite(self.model.theta):
            self._good = be.copy(self.model.theta)
            self._good_epoch = epoch + 1
            return
        if self._good is not None:
            self.model.theta[...] = self._good
        self.model.stop_training = True
        what = f"loss became {loss}" if not loss_ok else "weights became non-finite"
        self.model.stop_reason = (
            f"{what} in epoch {epoch + 1}; training stopped and the weights from the end of "
            f"epoch {self._good_epoch} (the last finite ones) were kept. Try a lower "
            "learning rate or check the data for extreme values"
        )
        warnings.warn(self.model.stop_reason, RuntimeWarning, stacklevel=2)


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved by ``min_delta`` for ``patience`` epochs
    (as in Keras, ``patience=0`` and ``1`` both stop at the first epoch without one).

    With ``restore_best_weights=True`` the weights of the best epoch are put back at the
    end (exactly: they are copied, not recomputed).
    """

    def __init__(
        self, monitor="val_loss", patience=0, min_delta=0.0, mode="auto", restore_best_weights=False
    ):
        self.monitor = monitor
        self.patience = int(patience)
        self.min_delta = abs(float(min_delta))
        self.mode = _better(mode, monitor)
        self.restore_best_weights = bool(restore_best_weights)
        self.best_epoch = None
        self.stopped_epoch = None

    def on_train_begin(self, logs=None):
        self.best = math.inf if self.mode == "min" else -math.inf
        self.wait = 0
        self.best_theta = None
        self.best_epoch = None

    def _improved(self, value):
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.monitor not in logs:
            raise ConfigError(
                f"EarlyStopping monitors {self.monitor!r}, but fit reports only "
                f"{sorted(logs)}; pass validation data for 'val_*' metrics"
            )
        value = logs[self.monitor]
        if math.isfinite(value) and self._improved(value):
            self.best = value
            self.best_epoch = epoch
            self.wait = 0
            if self.restore_best_weights:
                self.best_theta = self.model.backend.copy(self.model.theta)
        else:
            self.wait += 1
            if self.wait >= self.patience:  # as Keras: `patience` epochs without improvement
                self.stopped_epoch = epoch
                self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.restore_best_weights and self.best_theta is not None:
            self.model.theta[...] = self.best_theta


class ModelCheckpoint(Callback):
    """Save the model during ``fit``: the best epoch by ``monitor`` (``save_best_only``),
    or every ``every`` epochs. ``path`` may contain ``{epoch}`` (1-based). Saves are
    atomic (see :func:`fastnn.save`)."""

    def __init__(self, path, monitor="val_loss", save_best_only=True, mode="auto", every=1):
        self.path = os.fspath(path)
        self.monitor = monitor
        self.save_best_only = bool(save_best_only)
        self.mode = _better(mode, monitor)
        if int(every) < 1:
            raise ConfigError(f"ModelCheckpoint every must be >= 1, got {every!r}")
        self.every = int(every)
        self.best = None
        self.saved: list[str] = []

    def on_epoch_end(self, epoch, logs=None):
        from .io import save

        logs = logs or {}
        if self.save_best_only:
            if self.monitor not in logs:
                raise ConfigError(
                    f"ModelCheckpoint monitors {self.monitor!r}, but fit reports only {sorted(logs)}"
                )
            value = logs[self.monitor]
            if not math.isfinite(value):
                return
            if self.best is not None and (
                value >= self.best if self.mode == "min" else value <= self.best
            ):
                return
            self.best = value
        elif (epoch + 1) % self.every:
            return
        path = self.path.format(epoch=epoch + 1)
        save(self.model, path)
        self.saved.append(path)
