"""fastnn as a contender, and the one place the benchmarks reach into fastnn's internals.

Everything the benchmark code needs beyond fastnn's public API (``Sequential``,
``fit``/``predict``, ``training_path``, the backend registry and the backend contract's
array ops) is wrapped here, so a change to the training internals is adapted in this
file alone:

* ``Backend.epoch_runner(model, loss, optimizer)`` and the runner's ``run(...)``,
  ``description``, ``plan.macs_per_row`` and ``forced`` (the compiled training path;
  see :func:`force_path`, :func:`macs_per_row`);
* ``Sequential._train_epoch`` (the per-layer path, for one training step);
* ``Loss.prepare_targets`` and ``Optimizer.build`` (what ``fit`` does before training);
* ``fastnn.backends.numba_backend``: ``handloop_limit``, ``HANDLOOP_MAX_MACS_PER_ROW``,
  ``HANDLOOP_BATCH_KNEE`` and ``compile_stats``.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

import numpy as np

from .cases import Dataset, NetSpec, accuracy, build_model

__all__ = [
    "Contender",
    "Prepared",
    "Task",
    "Trained",
    "compile_stats",
    "fastnn_contender",
    "force_path",
    "fused_runner",
    "handloop_rule",
    "macs_per_row",
    "prepared_targets",
    "train_step_fn",
    "training_path",
]


# ====================================================================== fastnn internals
def prepared_targets(model, y: np.ndarray, k: int) -> np.ndarray:
    """``y`` as ``fit`` hands it to the training path (``Loss.prepare_targets``)."""
    return model.loss.prepare_targets(y, k, model.dtype)


def fused_runner(model):
    """The backend's compiled whole-epoch runner for ``model`` (optimizer state built as
    ``fit`` builds it), or None when the model trains on the per-layer path. The runner
    has ``run(X, y, w, batch_size, rng)``, ``description``, ``plan.macs_per_row`` and
    ``forced`` (``"loops"``, ``"blas"`` or None) on the Numba backend."""
    model.optimizer.build(model.backend, model.theta.size, model.dtype)
    return model.backend.epoch_runner(model, model.loss, model.optimizer)


def force_path(runner, path: str | None) -> None:
    """Force the Numba runner onto ``"loops"`` or ``"blas"`` products (None: the rule)."""
    runner.forced = path


def macs_per_row(runner) -> int:
    """Multiply-adds per row of the runner's Dense stack (what the loops/BLAS rule reads)."""
    return runner.plan.macs_per_row


def train_step_fn(model, X, y, batch_size: int, rng) -> tuple[Callable[[], None], str]:
    """A callable that trains one epoch of ``X``/``y`` (device arrays, targets already
    prepared) through the path ``fit`` uses on the model's backend (the caller
    synchronizes), and that path's description."""
    runner = model.backend.epoch_runner(model, model.loss, model.optimizer)
    if runner is not None:
        return (
            lambda: runner.run(X, y, None, batch_size, rng),
            getattr(runner, "description", None) or "per-layer",
        )
    return lambda: model._train_epoch(X, y, None, batch_size), "per-layer"


def handloop_rule() -> dict:
    """The Numba backend's loops/BLAS rule: ``limit(batch)`` (multiply-adds per row up to
    which hand loops run) and its two constants."""
    from fastnn.backends import numba_backend as nbm

    return {
        "limit": nbm.handloop_limit,
        "max_macs_per_row": nbm.HANDLOOP_MAX_MACS_PER_ROW,
        "batch_knee": nbm.HANDLOOP_BATCH_KNEE,
    }


def compile_stats() -> dict | None:
    """Seconds and count of fastnn's Numba compilations in this process (None when the
    Numba backend was never loaded)."""
    import sys

    nbm = sys.modules.get("fastnn.backends.numba_backend")
    return None if nbm is None else nbm.compile_stats()


def training_path(model) -> str | None:
    """Which training path the model's last ``fit`` ran (``model.training_path``)."""
    return model.training_path


# ====================================================================== contenders
@dataclasses.dataclass
class Task:
    """One training comparison: a network, its data, epochs and the shared recipe
    (Adam lr 1e-3). ``budget_s`` lets a slow peer stop early and scale its time."""

    name: str
    spec: NetSpec
    data: Dataset
    epochs: int
    seed: int = 0
    budget_s: float | None = None


@dataclasses.dataclass
class Trained:
    """One timed training run: seconds for ``epochs`` (compile excluded; scaled when
    only ``epochs_run`` were timed), test accuracy, and notes."""

    seconds: float
    accuracy: float
    epochs_run: int
    info: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class Prepared:
    """A contender ready to train ``task``: ``run()`` trains a fresh model once."""

    run: Callable[[], Trained]
    warmup_s: float | None
    info: dict = dataclasses.field(default_factory=dict)
    close: Callable[[], None] | None = None


@dataclasses.dataclass
class Contender:
    """Something that trains a :class:`Task`: a fastnn backend or a peer library."""

    name: str
    label: str
    kind: str  # "fastnn" or "peer"
    prepare: Callable[[Task], Prepared]


def prepare_fastnn(backend: str, task: Task) -> Prepared:
    """Warm ``backend`` up on ``task`` (a one-epoch fit on four batches: JIT compilation
    or cache loading) and return a :class:`Prepared` whose ``run()`` trains a fresh
    model with ``model.fit(verbose=0)``."""
    import fastnn

    be = fastnn.get_backend(backend)
    spec, d = task.spec, task.data
    warm_rows = min(d.Xtr.shape[0], 4 * spec.batch)
    t0 = time.perf_counter()
    m = build_model(spec, backend, seed=task.seed)
    m.fit(d.Xtr[:warm_rows], d.ytr[:warm_rows], batch_size=spec.batch, epochs=1, verbose=0)
    be.synchronize()
    warmup = time.perf_counter() - t0

    def run() -> Trained:
        model = build_model(spec, backend, seed=task.seed)
        be.synchronize()
        t0 = time.perf_counter()
        model.fit(
            d.Xtr, d.ytr, batch_size=spec.batch, epochs=task.epochs, verbose=0, seed=task.seed
        )
        be.synchronize()
        seconds = time.perf_counter() - t0
        acc = accuracy(model.predict(d.Xte), d.yte)
        return Trained(seconds, acc, task.epochs, {"training_path": training_path(model)})

    return Prepared(run, warmup, {"training_path": training_path(m), "device": be.device})


def fastnn_contender(backend: str) -> Contender:
    """fastnn's ``model.fit(verbose=0)`` on ``backend``; a one-epoch fit on four batches
    warms it up (JIT compilation or cache loading) and is reported as ``warmup_s``."""
    return Contender(
        f"fastnn-{backend}",
        f"fastnn {backend}",
        "fastnn",
        lambda task: prepare_fastnn(backend, task),
    )
