"""Keras 3 peer: ``model.fit`` on whichever Keras backend is set (or installed)."""

from __future__ import annotations

import importlib.util
import os
import statistics
import time

from ..cases import LEARNING_RATE, accuracy
from ..contenders import Prepared, Task, Trained

__all__ = ["default_backend", "prepare"]


def default_backend() -> str:
    """``KERAS_BACKEND`` if set, else the first of JAX, PyTorch, TensorFlow installed."""
    if os.environ.get("KERAS_BACKEND"):
        return os.environ["KERAS_BACKEND"]
    for name in ("jax", "torch", "tensorflow"):
        if importlib.util.find_spec(name) is not None:
            return name
    return "jax"


def _epoch_clock(keras, budget_s):
    """A callback recording each epoch's seconds; it stops training once the steady
    epochs (after the first) exceed ``budget_s``."""

    class EpochClock(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.durations: list[float] = []
            self._t0 = 0.0

        def on_epoch_begin(self, epoch, logs=None):
            self._t0 = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.durations.append(time.perf_counter() - self._t0)
            steady = sum(self.durations[1:])
            if budget_s is not None and len(self.durations) >= 3 and steady > budget_s:
                self.model.stop_training = True

    return EpochClock()


def _model(keras, spec):
    layers = [keras.Input((spec.widths[0],))]
    layers += [keras.layers.Dense(w, activation="relu") for w in spec.hidden]
    layers.append(
        keras.layers.Dense(spec.widths[-1], activation="sigmoid" if spec.binary else "softmax")
    )
    model = keras.Sequential(layers)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=LEARNING_RATE),
        loss="binary_crossentropy" if spec.binary else "sparse_categorical_crossentropy",
    )
    return model


def prepare(task: Task) -> Prepared:
    """Keras 3 ``model.fit`` (``KERAS_BACKEND`` if set, else JAX, else PyTorch). The
    first epoch holds the trace/compile and is reported as warm-up; training time is
    the median steady epoch times the epochs. When ``task.budget_s`` runs out it stops
    early and scales (``epochs_run`` says how many epochs were timed)."""
    os.environ.setdefault("KERAS_BACKEND", default_backend())
    import keras

    spec, d = task.spec, task.data

    def run() -> Trained:
        keras.utils.set_random_seed(task.seed)
        model = _model(keras, spec)
        clock = _epoch_clock(keras, task.budget_s)
        epochs = max(task.epochs, 2)  # a second epoch separates the compile
        model.fit(
            d.Xtr,
            d.ytr,
            batch_size=spec.batch,
            epochs=epochs,
            verbose=0,
            shuffle=True,
            callbacks=[clock],
        )
        dur = clock.durations
        steady = dur[1:]
        per_epoch = statistics.median(steady)
        # the first epoch (trace + compile) and any epochs cut by the budget count as
        # median steady epochs
        seconds = sum(steady[: task.epochs - 1]) + per_epoch * max(1, task.epochs - len(steady))
        P = model.predict(d.Xte, batch_size=1024, verbose=0)
        info = {
            "keras_backend": keras.backend.backend(),
            "first_epoch_s": dur[0],
            "compile_s": max(0.0, dur[0] - per_epoch),
        }
        if task.epochs < 2:
            info["note"] = "trained 2 epochs to time one after the compile"
        return Trained(seconds, accuracy(P, d.yte), min(len(dur), task.epochs), info)

    return Prepared(run, None, {"keras_backend": keras.backend.backend()})
