"""Model selection: a cross-validated Optuna search over the network and its training.

>>> result = fastnn.tune(X, y, "binary", n_trials=20, folds=5)       # doctest: +SKIP
>>> result.best["params"], result.best["mean"], result.best["std"]    # doctest: +SKIP
>>> model, history = result.refit(X, y)                               # doctest: +SKIP

What one trial does: it samples a configuration (:class:`Space`: number and width of the
hidden layers, learning rate on a log scale, batch size, dropout, weight decay,
activation) with Optuna's TPE sampler, trains it on each of ``folds`` cross-validation
folds (stratified for classification) with early stopping on a validation part taken
from that fold's training rows, and scores the fold's held-out rows: ROC AUC (binary),
accuracy (multiclass) or R² (regression). The trial's value is the mean over the folds;
after each fold the running mean goes to the pruner (:class:`EarlyMedianPruner`), which
stops trials that are behind the median of the finished ones (before five have finished:
behind all of them, from two on). Trial 0 is the default configuration, so
the best is never worse than the default (on the cross-validation score).

Parallel, and the same result whatever ``jobs`` is: the folds are tasks for a pool of
``jobs`` worker processes (processes: the model building, prediction and scoring around
a fold's training are Python that holds the GIL). On the Numba backend a fold's whole
training, every epoch with its shuffle, validation pass and early-stopping test, is one
compiled call (:mod:`fastnn.backends.numba_fit`); elsewhere ``model.fit`` with
:class:`~fastnn.callbacks.EarlyStopping`. A fold starts only when a worker is free,
folds that are surely needed first (see :func:`_pick`), and the folds still running for
a trial once it is pruned (or for any trial once the search ends) are stopped before
their next epoch through a flag in memory the workers share (:meth:`_Folds.stop`), so a
pruned trial wastes at most an epoch on each worker (nothing with ``jobs=1``). Each fold trains from a seed derived from ``(seed, trial
number, fold)`` and uses one BLAS thread, so a fold's score does not depend on which
process ran it or when. Trials are sampled in a fixed order: trials ``0 .. IN_FLIGHT-1``
first, then trial ``t + IN_FLIGHT`` right after trial ``t`` is told, always with the
sampler seeded from ``(seed, trial number)``; results are told (and pruning decided) in
trial order. What the sampler and pruner see at each decision is therefore the same for
any ``jobs``; only how much work runs at once changes (a pruned trial's folds that
already started are stopped and never read: wasted work, never a different result).
``timeout`` and a shared ``storage`` (several processes on one study) trade this
determinism for wall time.

Several processes or machines work on one study through Optuna's RDB storage
(``storage="sqlite:///study.db"``, or a PostgreSQL URL) and a ``study`` name; every
trial keeps its fold scores and chosen epochs in the storage, so any of them can report
and refit the study's best.

Needs Optuna (the ``tune`` extra), imported on first use. The module is
callable: ``fastnn.tune(...)`` is ``fastnn.tune.tune(...)``.
"""

from __future__ import annotations

import contextlib
import math
import multiprocessing as mp
import os
import signal
import sys
import time
import types
import warnings
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from .callbacks import Callback
from .defaults import CSV, TASK_NAMES, TASKS, TUTORIAL, TrainDefaults
from .errors import ConfigError, DataError

#: the fold score of each task (higher is better): :data:`fastnn.defaults.TASKS`' score
METRIC = {task: head.score for task, head in TASKS.items()}
#: trials sampled ahead of the one being finished, whatever ``jobs`` is (see the module doc)
IN_FLIGHT = 4
#: share of a fold's training rows held out for early stopping
VALIDATION_SHARE = 0.15


def _require(module: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ConfigError(
            f"fastnn tune needs {module.split('.')[0]}: pip install 'fastnn[tune]'"
        ) from None


# --------------------------------------------------------------------------- the space
def tutorial_config() -> dict:
    """The churn tutorial's network and training (:data:`fastnn.defaults.TUTORIAL`)."""
    return default_config("tutorial")[0]


def default_config(preset: str = "tutorial") -> tuple[dict, dict]:
    """``(config, training)``: trial 0's configuration and the early-stopping budget
    (``max_epochs``, ``patience``) of ``fastnn train``'s defaults
    (:mod:`fastnn.defaults`), for ``preset`` "tutorial" (the bundled churn data:
    :data:`~fastnn.defaults.TUTORIAL`) or "csv" (a user's table:
    :data:`~fastnn.defaults.CSV`). The search always trains with Adam, at the preset's
    learning rate; a preset without early stopping gets a patience of 10."""
    if preset not in ("tutorial", "csv"):
        raise ConfigError(f"preset must be 'tutorial' or 'csv', got {preset!r}")
    d = TUTORIAL if preset == "tutorial" else CSV
    config = {
        "hidden": list(d.hidden),
        "activation": d.activation,
        "lr": d.lr,
        "batch_size": d.batch_size,
        "dropout": d.dropout,
        "weight_decay": d.weight_decay or 0.0,  # None: Adam's own default, 0
    }
    return config, {"max_epochs": d.epochs, "patience": d.patience or 10}


def settings_of(config: dict, epochs: int) -> TrainDefaults:
    """A searched configuration as ``fastnn train``'s settings (Adam, ``epochs``, no
    validation split), e.g. for metrics.json or :func:`fastnn.tasks.fit_model`."""
    return TUTORIAL.replace(
        hidden=tuple(int(h) for h in config["hidden"]),
        activation=config["activation"],
        lr=float(config["lr"]),
        batch_size=int(config["batch_size"]),
        dropout=float(config["dropout"]),
        weight_decay=float(config["weight_decay"]),
        epochs=int(epochs),
    )


@dataclass
class Space:
    """What the search samples; :meth:`including` widens it to hold a given configuration
    (the default trial must lie inside the space)."""

    max_layers: int = 3
    units: tuple = (4, 64)
    lr: tuple = (1e-4, 3e-2)
    batch_sizes: tuple = (32, 64, 128, 256)
    dropouts: tuple = (0.0, 0.1, 0.2, 0.3)
    weight_decays: tuple = (0.0, 1e-5, 1e-4, 1e-3)
    activations: tuple = ("relu", "tanh")

    def including(self, config: dict) -> Space:
        """A copy of this space that also contains ``config``."""
        hidden = list(config["hidden"]) or [self.units[0]]

        def span(lo_hi, *values):
            return (min(lo_hi[0], *values), max(lo_hi[1], *values))

        def choices(options, value):
            return tuple(options) if value in options else (*options, value)

        return Space(
            max_layers=max(self.max_layers, len(hidden)),
            units=span(self.units, *hidden),
            lr=span(self.lr, config["lr"]),
            batch_sizes=choices(self.batch_sizes, config["batch_size"]),
            dropouts=choices(self.dropouts, config["dropout"]),
            weight_decays=choices(self.weight_decays, config["weight_decay"]),
            activations=choices(self.activations, config["activation"]),
        )

    def suggest(self, trial) -> dict:
        """Sample a configuration with an Optuna trial (always in the same order)."""
        n = trial.suggest_int("n_layers", 1, self.max_layers)
        return {
            "hidden": [trial.suggest_int(f"units_{i}", *self.units, log=True) for i in range(n)],
            "activation": trial.suggest_categorical("activation", list(self.activations)),
            "lr": trial.suggest_float("lr", *self.lr, log=True),
            "batch_size": trial.suggest_categorical("batch_size", list(self.batch_sizes)),
            "dropout": trial.suggest_categorical("dropout", list(self.dropouts)),
            "weight_decay": trial.suggest_categorical("weight_decay", list(self.weight_decays)),
        }


def optuna_params(config: dict) -> dict:
    """``config`` as the Optuna parameters :meth:`Space.suggest` samples (to enqueue it)."""
    hidden = list(config["hidden"])
    out = {"n_layers": len(hidden)}
    out.update({f"units_{i}": int(h) for i, h in enumerate(hidden)})
    for key in ("activation", "lr", "batch_size", "dropout", "weight_decay"):
        out[key] = config[key]
    return out


def build_model(config: dict, task: str, n_outputs: int = 1, backend=None, metrics=None):
    """A compiled :class:`~fastnn.Sequential` for ``config``: what
    :func:`fastnn.tasks.build_model` builds for :func:`settings_of` ``config`` (hidden
    Dense layers, each followed by Dropout when ``config["dropout"] > 0``, the task's
    head and loss); ``metrics`` as there (None: the task's, ``()``: only the loss)."""
    from .tasks import build_model as build

    _check_task(task)
    return build(task, n_outputs, settings_of(config, 1), backend=backend, metrics=metrics)


def _check_task(task):
    if task not in TASK_NAMES:
        raise ConfigError(f"task must be one of {', '.join(TASK_NAMES)}; got {task!r}")


# --------------------------------------------------------------------------- folds
def fold_indices(y, task: str, folds: int, seed: int) -> list[tuple]:
    """``[(train, validation, test) row positions]`` per fold: (stratified) K-fold for
    the test part, and a seeded (stratified) holdout of the training part for early
    stopping (:mod:`fastnn.folds`). The same for every trial, so trials are compared on
    the same rows."""
    from . import folds as cv

    classify = task != "regression"
    y = np.asarray(y)
    if folds < 2 or folds > len(y):
        raise ConfigError(f"folds must be between 2 and the {len(y)} rows; got {folds}")
    if classify:
        _, counts = np.unique(y, return_counts=True)
        if counts.min() < folds:
            raise DataError(
                f"the rarest class has {counts.min()} rows, fewer than the {folds} folds; "
                "use fewer folds"
            )
    tests = cv.kfold(len(y), folds, seed, stratify=y if classify else None)
    out = []
    for i, test in enumerate(tests):
        rest = np.ones(len(y), dtype=bool)
        rest[test] = False
        rest = np.flatnonzero(rest)  # the other rows, sorted
        tr, va = cv.holdout(
            rest, VALIDATION_SHARE, seed + i, stratify=y[rest] if classify else None
        )
        out.append((tr, va, test))
    return out


def score(task: str, y, P) -> float:
    """The task's fold score of outputs ``P (n, k)``: ROC AUC, accuracy or R²."""
    from .metrics import r2, roc_auc

    P = np.asarray(P)
    if task == "binary":
        return roc_auc(y, P[:, 0])
    if task == "multiclass":
        return float((P.argmax(axis=1) == np.asarray(y).reshape(-1)).mean())
    return r2(y, P[:, 0])


def _seed(*parts) -> int:
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0])


# The worker's data (set once per process by _init_worker; inherited or sent once).
_W: dict = {}


def _init_worker(state: dict, in_child: bool = True) -> None:
    if in_child:  # Ctrl-C goes to the parent, which stops the search cleanly
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    _W.clear()
    _W.update(state)
    if state.get("cancel_flags") is not None:  # shared with the parent (see _Folds)
        _W["cancel"] = np.frombuffer(state["cancel_flags"], dtype=np.int8)


@contextlib.contextmanager
def _one_compiled_epoch():
    """Train every trial on the Numba backend's ``generic`` paths unless
    ``FASTNN_NUMBA_PATH`` is set: the table-driven hand loops ("cols") for small
    networks, the mid path (BLAS from compiled code) above them, each one compiled
    function for any Dense stack. The model's own hand-loop epoch compiles once per
    network shape (seconds each), which a search over 20 shapes would pay 20 times
    (measured on churn, 20 trials x 5 folds, 2 cores: 50 s against 16 s). And,
    unless ``FASTNN_DROPOUT_RNG`` is set, draw dropout masks in compiled code
    (:func:`fastnn.backends.numba_epoch.dropout_rng`): a fold needs masks that are the
    same for its seed, not the same as another backend's, and host uniforms cost more
    than the rest of dropout (11-50-9-1, dropout 0.2, batch 256, interleaved medians:
    3.6 ms an epoch with host uniforms, 2.6 with these, 1.7 without dropout)."""

    saved = {k: os.environ.get(k) for k in ("FASTNN_NUMBA_PATH", "FASTNN_DROPOUT_RNG")}
    if saved["FASTNN_NUMBA_PATH"] is None:
        os.environ["FASTNN_NUMBA_PATH"] = "generic"
    if saved["FASTNN_DROPOUT_RNG"] is None:
        os.environ["FASTNN_DROPOUT_RNG"] = "kernel"
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def run_fold(config: dict, fold: int, seed: int, slot: int | None = None) -> dict:
    """Train ``config`` on one fold (data from :func:`_init_worker`); returns
    ``{"score", "epochs" (best epoch, 1-based), "seconds"}``. ``slot``: this fold's
    cancel flag in the shared ``_W["cancel"]`` (see :class:`_Folds`)."""
    from .backends.numba_mid import one_blas_thread

    X, y, task = _W["X"], _W["y"], _W["task"]
    tr, va, te = _W["folds"][fold]
    y_tr, y_va, y_te = y[tr], y[va], y[te]
    if task == "regression":  # train and score on a standardized target: the same R²
        mu, sd = float(y_tr.mean()), float(y_tr.std()) or 1.0
        y_tr, y_va, y_te = (y_tr - mu) / sd, (y_va - mu) / sd, (y_te - mu) / sd
    t0 = time.perf_counter()
    with one_blas_thread(), warnings.catch_warnings(), _one_compiled_epoch():
        warnings.simplefilter("ignore")  # a diverging trial is scored, not reported
        model = build_model(config, task, _W["n_outputs"], _W["backend"], metrics=())
        cancel = None if slot is None else _W["cancel"][slot : slot + 1]
        epochs, best = _train_fold(model, config, (X[tr], y_tr), (X[va], y_va), seed, cancel)
        P = model.predict(X[te])
    best = epochs if best is None else best + 1
    return {"score": score(task, y_te, P), "epochs": best, "seconds": time.perf_counter() - t0}


def _train_fold(model, config, train, val, seed, cancel=None):
    """Train one fold with early stopping; ``(epochs run, best epoch 0-based or None)``.
    In one compiled call where the backend has one
    (:func:`fastnn.backends.numba_fit.fit_early_stopping`: 2x faster for small networks,
    whose epochs cost no more than the Python around them), else ``model.fit``.
    ``cancel``: a shared int8 flag that ends the training before its next epoch."""
    from .backends.numba_fit import fit_early_stopping
    from .callbacks import EarlyStopping

    batch, epochs, patience, delta = (
        int(config["batch_size"]), _W["max_epochs"], _W["patience"], _W["min_delta"],
    )  # fmt: skip
    run = fit_early_stopping(model, *train, val, batch, epochs, patience, delta, seed, cancel)
    if run is not None:
        return run["epochs"], run["best_epoch"]
    stop = EarlyStopping(patience=patience, min_delta=delta, restore_best_weights=True)
    callbacks = [stop] if cancel is None else [stop, _Cancelled(cancel)]
    history = model.fit(
        *train, batch_size=batch, epochs=epochs, validation_data=val, callbacks=callbacks,
        verbose=0, seed=seed,
    )  # fmt: skip
    return len(history.epoch), stop.best_epoch


class _Cancelled(Callback):
    """Stops ``fit`` at the end of an epoch once the shared flag ``flag[0]`` is set."""

    def __init__(self, flag):
        self.flag = flag

    def on_epoch_end(self, epoch, logs=None):
        if self.flag[0]:
            self.model.stop_training = True


def _warm_up(state: dict) -> None:
    """One tiny training of the default network, so the kernels it loads are loaded."""
    _init_worker(state, in_child=False)
    rows = np.arange(min(64, len(state["y"])))
    _W["folds"] = [(rows, rows, rows)]
    _W["max_epochs"] = 1
    run_fold(tutorial_config(), 0, 0)
    _W.clear()
    _WARM["done"] = state["backend"] == "numba"


#: whether this process has loaded the fold trainer's kernels (:func:`warm_kernels`)
_WARM = {"done": False}


def warm_kernels(backend=None) -> None:
    """Load the compiled kernels the folds train with, as :func:`tune` does before it
    forks its workers (the fold trainer from Numba's cache, without Numba's registry
    set-up, see :mod:`fastnn.kernels.cache`: 0.25-0.3 s with Numba's import on the
    2-core box, 0.4 s with the set-up), on a stand-in data set of the same dtypes;
    nothing for the NumPy backend or once done. ``fastnn tune`` calls it while a child
    process reads the table (:mod:`fastnn.cli_prepare`)."""
    backend = _cpu_backend(backend)
    if _WARM["done"] or backend != "numba":
        return
    y = np.arange(64, dtype=np.int64) % 2
    X = np.zeros((64, 2), dtype=np.float32)
    X[:, 0] = y
    state = {
        "X": X, "y": y, "task": "binary", "n_outputs": 1, "folds": None, "backend": backend,
        "max_epochs": 1, "patience": 1, "min_delta": 0.0,
    }  # fmt: skip
    _warm_up(state)


class _Inline:
    """A fold already run in this process (jobs=1): the future-like :class:`_Folds`
    hands out then."""

    def __init__(self, args):
        try:
            self._result, self._error = run_fold(*args), None
        except Exception as exc:  # kept for result(), as a pool's future would
            self._result, self._error = None, exc

    def done(self):
        return True

    def result(self):
        if self._error is not None:
            raise self._error
        return self._result

    def cancel(self):
        return False


class _Folds:
    """Runs folds on a pool of ``jobs`` worker processes, or in this process for
    ``jobs=1``, one fold per free worker (:meth:`free`): nothing waits in a queue, so
    the folds of a trial that gets pruned are not started behind its back, and those
    already running are stopped at their next epoch (:meth:`stop`: a flag per running
    fold in memory the workers share; measured on churn, 20 trials x 5 folds, 2 cores:
    10 of 78 folds run were never read, 2.5 of 12.2 s of fold time, before they could
    be stopped)."""

    def __init__(self, jobs: int, state: dict):
        from .backends.numba_mid import one_blas_thread

        self.pool, self.jobs = None, jobs
        self.slot_of, self.free_slots, self.flags = {}, [], None  # running fold -> flag
        self.limits = contextlib.ExitStack()
        if jobs > 1:
            # the workers fork with BLAS on one thread: they inherit that and never set it,
            # which would start a BLAS thread that spins beside the other worker
            # (numba_mid._limit)
            self.limits.enter_context(one_blas_thread())
            # fork: the workers inherit the data and the loaded kernels (no re-import);
            # spawn where fork is unsafe (macOS, Windows)
            method = "fork" if sys.platform.startswith("linux") else "spawn"
            context = mp.get_context(method)
            # one flag per running fold (at most jobs: see free), and spare
            self.flags = context.RawArray("b", 2 * jobs)
            self.free_slots = list(range(2 * jobs))
            state = {**state, "cancel_flags": self.flags}
            if method == "fork" and not _WARM["done"]:  # load the compiled kernels
                _warm_up(state)  # once, here, for every worker
            self.pool = ProcessPoolExecutor(
                jobs, mp_context=context, initializer=_init_worker, initargs=(state,)
            )
            self.pool.submit(int).result()  # start the workers now, before any thread
        else:
            _init_worker(state, in_child=False)

    def free(self, runs) -> int:
        """Folds that may start now: idle workers (jobs=1: one fold, once every finished
        fold has been read, so the single process never runs ahead of the pruner)."""
        if self.pool is None:
            return 0 if any(r.read < len(r.futures) for r in runs) else 1
        for fut in [f for f in self.slot_of if f.done()]:
            self.free_slots.append(self.slot_of.pop(fut))
        return self.jobs - len(self.slot_of)

    def submit(self, *args):
        if self.pool is None:
            return _Inline(args)
        slot = self.free_slots.pop()
        self.flags[slot] = 0
        fut = self.pool.submit(run_fold, *args, slot)
        self.slot_of[fut] = slot
        return fut

    def stop(self, futures) -> None:
        """The results of ``futures`` will not be read: those not started never start,
        those running end before their next epoch."""
        for fut in futures:
            fut.cancel()
            slot = self.slot_of.get(fut)
            if slot is not None and not fut.done():
                self.flags[slot] = 1

    def wait(self) -> None:
        """Until some running fold finishes."""
        from concurrent.futures import FIRST_COMPLETED
        from concurrent.futures import wait as wait_for

        if self.slot_of:
            wait_for(self.slot_of, return_when=FIRST_COMPLETED)

    def close(self):
        if self.pool is not None:
            self.stop(list(self.slot_of))  # nothing more is read: do not wait for them
            self.pool.shutdown(wait=True, cancel_futures=True)
        self.limits.close()
        _W.clear()


# --------------------------------------------------------------------------- results
def _trial_record(t) -> dict:
    """One trial as tune.json lists it."""
    scores = list(t.user_attrs.get("fold_scores", []))
    rec = {
        "number": t.number,
        "params": t.user_attrs.get("config"),
        "state": t.state.name,
        "fold_scores": scores,
        "mean": float(np.mean(scores)) if scores else None,
        "std": float(np.std(scores)) if scores else None,
        "seconds": t.user_attrs.get("seconds"),
        "epochs": t.user_attrs.get("epochs"),
    }
    if t.user_attrs.get("error"):
        rec["error"] = t.user_attrs["error"]
    return rec


@dataclass
class TuneResult:
    """What :func:`tune` found: every trial of the study, the best one, and the study.

    ``trials`` and ``best`` are the records tune.json holds (``number``, ``params``,
    ``state``, ``fold_scores``, ``mean``, ``std``, ``seconds``, ``epochs``: the epochs
    early stopping chose on each fold); ``best`` is None when no trial completed.
    """

    task: str
    metric: str
    trials: list
    best: dict | None
    study: object = field(repr=False)
    seed: int = 0
    folds: int = 5
    seconds: float = 0.0
    interrupted: bool = False

    @property
    def refit_epochs(self) -> int:
        """Epochs for a refit on all rows: the mean of the best trial's early-stopped
        epochs over its folds."""
        self._require_best()
        return max(1, int(round(float(np.mean(self.best["epochs"])))))

    def _require_best(self):
        if self.best is None:
            raise DataError("no trial completed, so there is no best configuration")

    def best_settings(self) -> TrainDefaults:
        """The best configuration as ``fastnn train`` settings, for
        :attr:`refit_epochs` epochs."""
        self._require_best()
        return settings_of(self.best["params"], self.refit_epochs)

    def refit(self, X, y, n_outputs: int | None = None, backend=None, verbose=0, callbacks=()):
        """Train the best configuration on all of ``(X, y)`` for :attr:`refit_epochs`
        (:func:`fastnn.tasks.fit_model` with :meth:`best_settings`; ``callbacks`` run
        too); returns ``(model, history)``. For regression, standardize ``y`` first (as
        the folds did) or expect the same R² only after inverting your scaling."""
        from .tasks import fit_model

        settings = self.best_settings()
        y = np.asarray(y)
        if n_outputs is None:
            n_outputs = int(y.max()) + 1 if self.task == "multiclass" else 1
        model = build_model(self.best["params"], self.task, n_outputs, backend)
        seed = _seed(self.seed, self.best["number"], 10**6)
        with _one_compiled_epoch():  # the folds' training path, and no compile per shape
            history = fit_model(
                model, X, y, settings, seed=seed, verbose=verbose, callbacks=callbacks
            )
        return model, history

    def to_dict(self) -> dict:
        """JSON-ready: what tune.json holds."""
        return {
            "task": self.task,
            "metric": self.metric,
            "folds": self.folds,
            "seed": self.seed,
            "seconds": self.seconds,
            "interrupted": self.interrupted,
            "study": getattr(self.study, "study_name", None),
            "trials": self.trials,
            "best": self.best,
        }

    def table(self, top: int = 5) -> str:
        """The ``top`` completed trials, best first, as a text table."""
        done = [t for t in self.trials if t["state"] == "COMPLETE"]
        done.sort(key=lambda t: (-t["mean"], t["number"]))
        lines = [f"{'rank':>4} {'trial':>5}  {self.metric + ' (mean ± std)':<22} configuration"]
        for i, t in enumerate(done[:top], 1):
            p = t["params"]
            cfg = (
                f"hidden {','.join(map(str, p['hidden']))} {p['activation']}, lr {p['lr']:.2g}, "
                f"batch {p['batch_size']}, dropout {p['dropout']:.2f}, wd {p['weight_decay']:g}, "
                f"epochs ~{round(float(np.mean(t['epochs'])))}"
            )
            lines.append(f"{i:>4} {t['number']:>5}  {t['mean']:.4f} ± {t['std']:.4f}{'':<5} {cfg}")
        return "\n".join(lines)

    def plot(self, path) -> None:
        """tune.png: each trial's score (pruned ones at their last running mean) and the
        best so far (:func:`plot_trials`)."""
        plot_trials(self.trials, self.metric, self.folds, path)


def plot_trials(trials: list, metric: str, folds: int, path) -> None:
    """tune.png from :attr:`TuneResult.trials` records: each trial's score (pruned ones
    at their last running mean) and the best so far (a plot job of
    :mod:`fastnn.plotter`)."""
    from .report import _figure, _save_figure

    fig = _figure((8, 4.5), margins=(0.1, 0.98, 0.11, 0.93, 0.2))
    ax = fig.add_subplot(1, 1, 1)
    for state, marker, label in (("COMPLETE", "o", "trial"), ("PRUNED", "x", "pruned")):
        pts = [(t["number"], t["mean"]) for t in trials if t["state"] == state]
        if pts:
            ax.scatter(*zip(*pts, strict=True), marker=marker, label=label, alpha=0.8)
    best, xs, ys = -math.inf, [], []
    for t in sorted(trials, key=lambda t: t["number"]):
        if t["state"] == "COMPLETE" and t["mean"] is not None and t["mean"] > best:
            best = t["mean"]
        if best > -math.inf:
            xs.append(t["number"])
            ys.append(best)
    if xs:
        ax.step(xs, ys, where="post", color="black", label="best so far")
    ax.set_xlabel("trial")
    ax.set_ylabel(f"{metric} (mean over {folds} folds)")
    ax.set_title("fastnn tune")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right")
    _save_figure(fig, path)


# --------------------------------------------------------------------------- the search
def _study(storage, study_name, seed, pruner=None, attempts: int = 5):
    optuna = _require("optuna")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if storage is None and study_name is None:
        study_name = "fastnn-tune"
    for attempt in range(attempts):
        try:
            return optuna.create_study(
                storage=_storage(optuna, storage),
                study_name=study_name,
                direction="maximize",
                sampler=_sampler(seed, 0),
                pruner=_pruner() if pruner is None else pruner,
                load_if_exists=True,
            )
        except Exception as exc:  # two processes creating one schema at once: try again
            if storage is None or attempt == attempts - 1:
                if storage is None:
                    raise
                msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                raise ConfigError(f"cannot open the study storage {storage!r}: {msg}") from None
            time.sleep(0.2 * (attempt + 1))


class EarlyMedianPruner:
    """Optuna's median pruner once ``startup`` trials have finished; before that, from
    ``early`` finished trials on, a trial whose running mean after a fold is below every
    finished trial's running mean after that fold.

    The median pruner waits for five finished trials because the median of fewer is a
    noisy bar; "behind all of at least two" is a stricter test that catches a clearly
    bad early trial (say a learning rate too small to get anywhere in 100 epochs)
    before it trains all its folds. Measured by ``benchmarks/pruner.py``
    (``benchmarks/results/pruner.md``: 20 trials x 5 folds on the 2-core box; churn with
    12 seeds, scikit-learn's digits, breast cancer and diabetes with 4 each) against the
    median pruner alone: churn 16% fewer fold trainings (786 -> 664) and a median 25%
    less fold time, the others 1-9% fewer; the same best score in 22 of the 24 searches,
    lower in two of churn's (seed 2: 0.8562 against 0.8567 ROC AUC; seed 11: by 4e-6).
    Both pruners missed the best of the configurations they sampled (each trained on
    every fold afterwards) in 3 of the 24.

    Duck-typed (Optuna only calls :meth:`prune`), so this module imports without
    Optuna; :func:`_pruner` registers it as an ``optuna.pruners.BasePruner``."""

    def __init__(self, startup: int = 5, early: int = 2):
        optuna = _require("optuna")
        self.median = optuna.pruners.MedianPruner(n_startup_trials=startup, n_warmup_steps=0)
        self.startup, self.early = startup, early

    def prune(self, study, trial) -> bool:
        """Whether ``trial`` (maximising) should stop after its last reported fold."""
        optuna = _require("optuna")
        done = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        if len(done) >= self.startup:
            return self.median.prune(study, trial)
        step = trial.last_step
        if step is None:
            return False
        bars = [t.intermediate_values[step] for t in done if step in t.intermediate_values]
        return len(bars) >= self.early and trial.intermediate_values[step] < min(bars)


def _pruner() -> EarlyMedianPruner:
    optuna = _require("optuna")
    optuna.pruners.BasePruner.register(EarlyMedianPruner)
    return EarlyMedianPruner()


def _storage(optuna, url):
    if url is None or not str(url).startswith("sqlite"):
        return url
    # several processes on one SQLite file: wait for the lock instead of failing
    return optuna.storages.RDBStorage(str(url), engine_kwargs={"connect_args": {"timeout": 60}})


def _sampler(seed, number):
    optuna = _require("optuna")
    return optuna.samplers.TPESampler(seed=_seed(seed, number), constant_liar=True)


@dataclass
class _Run:
    """A trial in flight: its folds' futures (submitted in fold order, as workers free
    up), how many of their results have been read, and what they gave."""

    trial: object
    config: dict
    n_folds: int
    seed: int = 0
    futures: list = field(default_factory=list)
    read: int = 0
    scores: list = field(default_factory=list)
    epochs: list = field(default_factory=list)
    seconds: float = 0.0
    stopped: bool = False  # pruned or failed: no more folds

    def next_fold(self):
        """The fold to start next, or None."""
        if self.stopped or len(self.futures) >= self.n_folds:
            return None
        return len(self.futures)


def _start(study, space, n_folds, seed) -> _Run:
    """Ask the study for the next trial and sample its configuration (no fold runs yet)."""
    trial = study.ask()
    # the sampler draws this trial's values from (seed, trial number), so the stream does
    # not depend on which process asked first or how many are working on the study
    study.sampler = _sampler(seed, trial.number)
    config = space.suggest(trial)
    trial.set_user_attr("config", config)
    return _Run(trial, config, n_folds, seed)


def _pick(runs):
    """The trial whose next fold should start: folds that are surely needed first (the
    oldest trial's when all its earlier folds have been read, every trial's first fold),
    then the rest oldest trial first (a fold after one not yet read is wasted if the
    trial is pruned there)."""
    head = runs[0]
    if head.next_fold() is not None and head.read == len(head.futures):
        return head
    fresh = next((r for r in runs if not r.futures and r.next_fold() is not None), None)
    return fresh or next((r for r in runs if r.next_fold() is not None), None)


def _submit(runs, folds) -> None:
    """Start folds on the free workers (see :func:`_pick`)."""
    for _ in range(folds.free(runs)):
        run = _pick(runs)
        if run is None:
            return
        f = run.next_fold()
        run.futures.append(folds.submit(run.config, f, _seed(run.seed, run.trial.number, f)))


def _read(study, run: _Run):
    """Read the finished folds of ``run`` in fold order: report each running mean,
    prune, fail on an error; returns the trial's final state once it is told, or None
    while it still waits for a fold."""
    optuna = _require("optuna")
    state = error = None
    while state is None and run.read < len(run.futures) and run.futures[run.read].done():
        f = run.read
        run.read += 1
        try:
            r = run.futures[f].result()
            run.seconds += r["seconds"]
            if not math.isfinite(r["score"]):
                raise DataError(f"fold {f} scored {r['score']} (training diverged?)")
        except Exception as exc:  # a failing configuration is recorded, the search goes on
            state, error = optuna.trial.TrialState.FAIL, f"{type(exc).__name__}: {exc}"
            break
        run.scores.append(r["score"])
        run.epochs.append(r["epochs"])
        run.trial.report(float(np.mean(run.scores)), f)
        if f == run.n_folds - 1:
            state = optuna.trial.TrialState.COMPLETE
        elif run.trial.should_prune():
            state = optuna.trial.TrialState.PRUNED
    if state is None:
        return None
    run.stopped = True
    for fut in run.futures[run.read :]:
        fut.cancel()  # not started: never starts (running ones: the caller stops them)
    trial = run.trial
    for key, value in (("fold_scores", run.scores), ("epochs", run.epochs)):
        trial.set_user_attr(key, value)
    trial.set_user_attr("seconds", run.seconds)
    if error:
        trial.set_user_attr("error", error)
    if state == optuna.trial.TrialState.COMPLETE:
        study.tell(trial, float(np.mean(run.scores)))
    else:
        study.tell(trial, state=state)
    return state


def _result(study, task, seed, n_folds, seconds, interrupted) -> TuneResult:
    trials = [_trial_record(t) for t in study.get_trials(deepcopy=False)]
    done = [t for t in trials if t["state"] == "COMPLETE"]
    best = max(done, key=lambda t: (t["mean"], -t["number"])) if done else None
    return TuneResult(task, METRIC[task], trials, best, study, seed, n_folds, seconds, interrupted)


def _progress(total, enabled):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="tune", unit="trial", dynamic_ncols=True, leave=True)


def tune(
    X,
    y,
    task: str = "binary",
    n_trials: int = 20,
    folds: int = 5,
    *,
    timeout: float | None = None,
    jobs: int | None = None,
    storage: str | None = None,
    study: str | None = None,
    seed: int = 0,
    default: dict | None = None,
    space: Space | None = None,
    max_epochs: int = 100,
    patience: int = 10,
    min_delta: float = 1e-4,
    backend: str | None = None,
    n_outputs: int | None = None,
    progress: bool = False,
    pruner=None,
) -> TuneResult:
    """Search for a better network with cross-validation; returns a :class:`TuneResult`.

    Args:
        X: features ``(n, d)`` (already encoded and scaled, e.g. by the Preprocessor).
        y: targets ``(n,)``: 0/1 (binary), class indices 0..k-1 (multiclass), numbers
            (regression).
        task: "binary", "multiclass" or "regression".
        n_trials: trials this call runs (with a shared study: adds this many).
        folds: K of the (stratified) K-fold cross-validation.
        timeout: stop starting trials after this many seconds.
        jobs: worker processes for the folds (None or 0: every core).
        storage, study: an Optuna RDB storage URL and study name shared by several
            processes (default: a study in memory).
        seed: seeds the folds, the sampler and every training.
        default: the configuration of trial 0 (default: :func:`tutorial_config`); the
            space is widened to contain it.
        space: the :class:`Space` to sample.
        max_epochs, patience, min_delta: early stopping on each fold's validation loss:
            stop after ``patience`` epochs without an improvement of more than
            ``min_delta`` (as scikit-learn's ``n_iter_no_change`` and ``tol``), keep the
            best epoch's weights.
        backend: training backend (default: the CPU one ``auto`` picks).
        n_outputs: classes of a multiclass target (default: ``y.max() + 1``).
        progress: a progress bar over trials with the best so far.
        pruner: an Optuna pruner the running mean after each fold is reported to
            (default: :class:`EarlyMedianPruner`; ``optuna.pruners.NopPruner()`` trains
            every trial on every fold).
    """
    _check_task(task)
    _require("optuna")  # before minutes of first-run kernel compiling, not after
    X, y = _inputs(X, y, task)
    if n_trials < 1:
        raise ConfigError(f"n_trials must be >= 1, got {n_trials}")
    jobs = int(jobs) if jobs else cpu_count()
    if jobs < 1:
        raise ConfigError(f"jobs must be >= 1 (or 0 for every core), got {jobs}")
    default = dict(default or tutorial_config())
    space = (space or Space()).including(default)
    budget = (max_epochs, patience, min_delta)
    state = _fold_state(X, y, task, folds, seed, backend, n_outputs, budget)
    runner = _Folds(min(jobs, n_trials * folds), state)  # before any thread starts (fork)
    t0, asked, interrupted = time.perf_counter(), 0, False
    in_flight: deque = deque()
    bar = the_study = None
    try:
        the_study = _study(storage, study, seed, pruner)
        the_study.enqueue_trial(optuna_params(default), skip_if_exists=True)
        bar = _progress(n_trials, progress)
        while True:
            while len(in_flight) < IN_FLIGHT and asked < n_trials:
                if timeout is not None and time.perf_counter() - t0 > timeout:
                    break
                in_flight.append(_start(the_study, space, folds, seed))
                asked += 1
            if not in_flight:
                break
            _submit(in_flight, runner)
            # results are read, and trials told, in trial order (see the module doc)
            if _read(the_study, in_flight[0]) is None:
                runner.wait()
                continue
            told = in_flight.popleft()
            runner.stop(told.futures[told.read :])  # a pruned or failed trial's other folds
            _tick(bar, the_study)
    except KeyboardInterrupt:
        if the_study is None:  # nothing ran yet: nothing to keep
            raise
        interrupted = True
        _abandon(the_study, in_flight)
    finally:
        runner.close()
        if bar is not None:
            bar.close()
    return _result(the_study, task, seed, folds, time.perf_counter() - t0, interrupted)


def _fold_state(X, y, task, folds, seed, backend=None, n_outputs=None, budget=(100, 10, 1e-4)):
    """What :func:`run_fold` reads (:func:`_init_worker`): checked ``X`` and ``y`` (see
    :func:`_inputs`), the folds of ``seed``, the backend and the early-stopping
    ``budget = (max_epochs, patience, min_delta)``."""
    max_epochs, patience, min_delta = budget
    return {
        "X": X,
        "y": y.astype(np.int64) if task != "regression" else y.astype(np.float32),
        "task": task,
        "n_outputs": n_outputs or (int(y.max()) + 1 if task == "multiclass" else 1),
        "folds": fold_indices(y, task, folds, seed),
        "backend": _cpu_backend(backend),
        "max_epochs": int(max_epochs),
        "patience": int(patience),
        "min_delta": float(min_delta),
    }


def _inputs(X, y, task):
    """``X`` as C-contiguous float32 and ``y`` as one number a row, checked for ``task``;
    a one-line :class:`DataError` naming the problem otherwise (before any worker
    starts: a bad target would fail every trial)."""
    from .layers.sequential import as_feature_matrix
    from .metrics import nonfinite_rows, odd_labels

    X = as_feature_matrix(X)
    with np.errstate(over="ignore"):  # reported below, by rows
        X32 = np.ascontiguousarray(X, dtype=np.float32)
    rows = nonfinite_rows(X32)
    if rows:
        raise DataError(f"X has values beyond float32's range (about 3.4e38) in rows {rows}")
    y = np.asarray(y.to_numpy() if hasattr(y, "to_numpy") else y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1 or len(y) != len(X):
        raise DataError(
            f"y must hold one target per row of X: X has {len(X)} rows, y has shape {y.shape}"
        )
    if y.dtype.kind not in "biuf":
        raise DataError(
            f"y must be numbers, got dtype {y.dtype}; map the labels to class indices first "
            "(fastnn.data.Preprocessor does it, as the fastnn command does)"
        )
    rows = nonfinite_rows(y)
    if rows:
        raise DataError(f"y contains NaN or infinite values in rows {rows}")
    if task != "regression":
        odd = odd_labels(y, 1 if task == "binary" else None)
        want = "0 or 1" if task == "binary" else "class indices 0, 1, ..., k-1"
        if odd is not None:
            raise DataError(f"a {task} target must be {want}; found {odd[0]} in rows {odd[1]}")
    return X32, y


def _abandon(study, runs):
    """Ctrl-C: the trials still in flight are told as failed (the finished ones stay)."""
    optuna = _require("optuna")
    for run in runs:
        for fut in run.futures:
            fut.cancel()
        run.trial.set_user_attr("error", "interrupted")
        try:
            study.tell(run.trial, state=optuna.trial.TrialState.FAIL)
        except (RuntimeError, ValueError):  # already told just before the interrupt
            pass


def cpu_count() -> int:
    """Cores this process may use (its CPU affinity where the OS reports one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _tick(bar, study):
    if bar is None:
        return
    try:
        bar.set_postfix_str(f"best {study.best_value:.4f} (trial {study.best_trial.number})")
    except ValueError:  # nothing completed yet
        pass
    bar.update(1)


def _cpu_backend(name):
    """The backend the folds train on: as asked, else the CPU backend ``auto`` picks
    (many small models are faster on CPU cores than queued on one GPU)."""
    from .backends import available_backends, resolve_backend

    if name is not None:
        return resolve_backend(name)
    return "numba" if "numba" in available_backends() else "numpy"


class _CallableModule(types.ModuleType):
    """``fastnn.tune(...)`` calls :func:`tune` even where ``fastnn.tune`` is this module."""

    def __call__(self, *args, **kwargs):
        return tune(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
