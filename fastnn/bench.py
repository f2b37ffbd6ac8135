"""``fastnn bench``: compare fastnn's backends with each other and with the tools users
would otherwise pick, side by side in one run.

What it measures (every number is a median over repeats, run round-robin so machine
noise hits every contender alike; ratios are only taken within one run):

* **fit**: the churn recipe (11-6-6-1, relu, sigmoid + binary cross-entropy, Adam lr
  1e-3, batch 32, 100 epochs on the 8,000 training rows of the bundled data) and two
  larger networks on seeded synthetic data, *mid* (1024-512-512-10) and *big*
  (784-1024-1024-10), both batch 256 with softmax cross-entropy. Every fastnn backend
  trains through ``model.fit(verbose=0)``; peers (PyTorch idiomatic and tuned,
  scikit-learn's ``MLPClassifier``, Keras 3 on JAX and on PyTorch, JAX with a
  ``lax.scan`` epoch) train the same network on the same data with the same batch
  size, epochs and optimizer, and the test accuracy is reported next to the time. Warm-up and compilation are excluded from
  the training time and reported on their own.
* **ops**: one matrix product, the fused bias+activation forward and backward, one
  training step (SGD with momentum) and that step's own matrix products alone (the
  "GEMM floor"), per size and backend.
* **scaling**: time per epoch against hidden width (6 to 1024) and against batch size.
* **crossover**: which fastnn backend is fastest in each case; the order "auto" should
  try follows from it.
* **cold start**: a fresh process with an empty, then a warm, Numba cache.

The same case builders (:func:`op_case`, :func:`build_model`, :func:`churn_dataset`,
:func:`synthetic_dataset`) drive the pytest-benchmark suites in ``benchmarks/``.

Only click, NumPy and the standard library are imported at module level, so
``fastnn --help`` stays fast; fastnn's backends, pandas, matplotlib and every peer are
imported when used.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import importlib.metadata
import importlib.util
import json
import math
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import click
import numpy as np

__all__ = [
    "MODES",
    "OPS",
    "PEERS",
    "SIZES",
    "TOY_SIZES",
    "BenchConfig",
    "Case",
    "Contender",
    "Dataset",
    "NetSpec",
    "Prepared",
    "Task",
    "Trained",
    "bench_backends",
    "bench_command",
    "bench_sizes",
    "build_model",
    "churn_dataset",
    "dataset_from_recipe",
    "fastnn_contender",
    "machine_info",
    "op_case",
    "peer_contenders",
    "plot_scaling",
    "render_markdown",
    "render_summary",
    "run_benchmarks",
    "summarize",
    "synthetic_dataset",
    "thread_info",
    "time_callable",
    "versions",
    "write_results",
]

SCHEMA_VERSION = 1
LEARNING_RATE = 1e-3


# ====================================================================== networks, data
@dataclasses.dataclass(frozen=True)
class NetSpec:
    """A benchmark network: layer widths ``(d_in, hidden..., d_out)`` and batch size.

    ``d_out == 1`` means a sigmoid output with binary cross-entropy; ``d_out > 1`` a
    softmax output with sparse categorical cross-entropy. Hidden layers use ``relu``.
    """

    name: str
    widths: tuple[int, ...]
    batch: int

    @property
    def binary(self) -> bool:
        """True for one sigmoid output (binary cross-entropy)."""
        return self.widths[-1] == 1

    @property
    def hidden(self) -> tuple[int, ...]:
        """The hidden-layer widths."""
        return self.widths[1:-1]

    def describe(self) -> str:
        """E.g. ``"11-6-6-1, batch 32"``."""
        return "-".join(map(str, self.widths)) + f", batch {self.batch}"


#: The three sizes of issue 5: the churn network, a mid-sized and a BLAS-bound network.
SIZES = {
    "tiny": NetSpec("tiny", (11, 6, 6, 1), 32),
    "mid": NetSpec("mid", (1024, 512, 512, 10), 256),
    "big": NetSpec("big", (784, 1024, 1024, 10), 256),
}

#: The same three shapes cut down, for smoke tests (``FASTNN_BENCH_TOY=1``).
TOY_SIZES = {
    "tiny": NetSpec("tiny", (11, 6, 6, 1), 32),
    "mid": NetSpec("mid", (32, 16, 16, 10), 16),
    "big": NetSpec("big", (24, 32, 32, 10), 16),
}


def bench_sizes() -> dict[str, NetSpec]:
    """:data:`SIZES`, or :data:`TOY_SIZES` when ``FASTNN_BENCH_TOY`` is set (CI smoke)."""
    return TOY_SIZES if os.environ.get("FASTNN_BENCH_TOY") else SIZES


def bench_backends() -> list[str]:
    """The fastnn backends to benchmark: every one that works here, or the
    comma-separated list in ``FASTNN_BENCH_BACKENDS``."""
    import fastnn

    names = fastnn.available_backends()
    wanted = os.environ.get("FASTNN_BENCH_BACKENDS")
    if wanted:
        names = [n for n in _split_names(wanted) if n in names]
    return names


@dataclasses.dataclass
class Dataset:
    """A train/test split: ``X (n, d)`` float32; ``y (n,)`` 0/1 float32 for binary
    tasks, int64 class indices otherwise."""

    name: str
    Xtr: np.ndarray
    ytr: np.ndarray
    Xte: np.ndarray
    yte: np.ndarray
    source: str
    #: how to rebuild it in another process (see :func:`dataset_from_recipe`)
    recipe: dict | None = None

    def head(self, rows: int) -> Dataset:
        """The first ``rows`` training rows (the test set unchanged)."""
        recipe = None if self.recipe is None else {**self.recipe, "head": rows}
        return dataclasses.replace(self, Xtr=self.Xtr[:rows], ytr=self.ytr[:rows], recipe=recipe)


def dataset_from_recipe(recipe: dict) -> Dataset:
    """Rebuild a :class:`Dataset` from its ``recipe`` (used by subprocess peers)."""
    kw = {k: v for k, v in recipe.items() if k not in ("kind", "head")}
    data = churn_dataset() if recipe["kind"] == "churn" else synthetic_dataset(**kw)
    return data.head(recipe["head"]) if "head" in recipe else data


def churn_dataset(dtype=np.float32) -> Dataset:
    """The bundled bank-churn data with the tutorial's preprocessing.

    Drops RowNumber/CustomerId/Surname, one-hot encodes Geography and Gender with the
    first level dropped (11 features), splits 80/20 with seed 0 and standardizes with the
    training rows' statistics: :func:`fastnn.data.churn_arrays`, the recipe the CLI runs.
    Returns 8,000 training and 2,000 test rows.
    """
    from .data import churn_arrays

    X_tr, y_tr, X_te, y_te = churn_arrays(dtype=dtype)
    return Dataset(
        "churn",
        X_tr,
        y_tr,
        X_te,
        y_te,
        "fastnn/data/churn.csv.gz (tutorial preprocessing, 80/20 split, seed 0)",
        {"kind": "churn"} if np.dtype(dtype) == np.float32 else None,
    )


def synthetic_dataset(
    n_train: int, n_test: int, d: int, k: int, seed: int = 0, dtype=np.float32
) -> Dataset:
    """Seeded, learnable synthetic data: ``k`` Gaussian clusters (two when ``k == 1``,
    labelled 0/1) in ``d`` dimensions, ``X = mu[y] + N(0, 1)`` with cluster means of
    scale ``4 / sqrt(d)``, so a few epochs reach a clearly-better-than-chance accuracy
    and a broken trainer shows."""
    rng = np.random.default_rng(seed)
    n = n_train + n_test
    n_classes = max(k, 2)
    mu = rng.standard_normal((n_classes, d)) * (4.0 / math.sqrt(d))
    labels = rng.integers(0, n_classes, n)
    X = (mu[labels] + rng.standard_normal((n, d))).astype(dtype)
    y = labels.astype(dtype) if k == 1 else labels.astype(np.int64)
    return Dataset(
        f"synthetic {d}->{k}",
        X[:n_train],
        y[:n_train],
        X[n_train:],
        y[n_train:],
        f"synthetic: {n_classes} Gaussian clusters in {d} dimensions, seed {seed}",
        {"kind": "synthetic", "n_train": n_train, "n_test": n_test, "d": d, "k": k, "seed": seed}
        if np.dtype(dtype) == np.float32
        else None,
    )


def build_model(spec: NetSpec, backend: str, optimizer="adam", dtype="float32", seed: int = 0):
    """A built, compiled fastnn model of ``spec`` on ``backend`` (no metrics: peers train
    without them too). ``optimizer`` is ``"adam"`` (lr 1e-3), ``"sgd_momentum"`` (lr
    0.01, momentum 0.9) or an optimizer instance."""
    import fastnn
    from fastnn.layers import Dense

    layers = [Dense(w, activation="relu") for w in spec.hidden]
    layers.append(Dense(spec.widths[-1], activation="sigmoid" if spec.binary else "softmax"))
    model = fastnn.Sequential(layers, dtype=dtype, backend=backend)
    if optimizer == "adam":
        optimizer = fastnn.optimizers.Adam(learning_rate=LEARNING_RATE)
    elif optimizer == "sgd_momentum":
        optimizer = fastnn.optimizers.SGD(learning_rate=0.01, momentum=0.9)
    model.build(spec.widths[0], seed=seed)
    model.compile(
        optimizer=optimizer,
        loss="binary_crossentropy" if spec.binary else "sparse_categorical_crossentropy",
    )
    return model


def _accuracy(P: np.ndarray, y: np.ndarray) -> float:
    P = np.asarray(P)
    if P.ndim == 1 or P.shape[1] == 1:
        pred = (P.reshape(-1) >= 0.5).astype(np.int64)
    else:
        pred = P.argmax(axis=1)
    return float((pred == np.asarray(y).reshape(-1).astype(np.int64)).mean())


# ====================================================================== timing
def time_callable(
    fn: Callable[[], object], repeats: int = 5, target_s: float = 0.05, max_number: int = 100_000
) -> dict:
    """Time ``fn`` (which must synchronize the device itself) like ``timeit``: calibrate
    a number of calls per block that lasts at least ``target_s``, then time ``repeats``
    blocks. Returns :func:`summarize` of the per-call times plus ``number``."""
    number = 1
    while True:
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        elapsed = time.perf_counter() - t0
        if elapsed >= target_s or number >= max_number:
            break
        number = min(max_number, max(number * 2, int(number * target_s / max(elapsed, 1e-9))))
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        samples.append((time.perf_counter() - t0) / number)
    out = summarize(samples)
    out["number"] = number
    return out


def summarize(samples) -> dict:
    """Median, min, max, quartiles and the raw samples (seconds)."""
    s = [float(x) for x in samples]
    if not s:
        return {"n": 0}
    q1, q3 = (float(v) for v in np.percentile(s, [25, 75]))
    return {
        "n": len(s),
        "median_s": statistics.median(s),
        "min_s": min(s),
        "max_s": max(s),
        "q1_s": q1,
        "q3_s": q3,
        "samples_s": s,
    }


# ====================================================================== op-level cases
@dataclasses.dataclass
class Case:
    """A benchmark case: ``fn()`` runs it once and synchronizes the device.

    ``warmup_s`` is the time of the first call (JIT compilation or cache loading
    included), made when the case was built; ``info`` says what ran.
    """

    name: str
    fn: Callable[[], object]
    warmup_s: float
    info: dict = dataclasses.field(default_factory=dict)


#: The op-level cases :func:`op_case` builds (the pytest-benchmark suites run them all).
OPS = ("matmul", "bias_act_forward", "bias_act_backward", "train_step", "gemm_floor", "fit")


def op_case(
    op: str,
    backend: str,
    spec: NetSpec,
    dtype: str = "float32",
    activation: str = "relu",
    seed: int = 0,
    fit_rows: int | None = None,
) -> Case:
    """Build (and warm up) one op-level case on ``backend`` at size ``spec``.

    Ops:
        ``matmul``: ``X (batch, d_in) @ W (d_in, h1)``, written into a preallocated output.
        ``bias_act_forward``: fused ``Z += b; Y = act(Z)`` on ``(batch, h1)``.
        ``bias_act_backward``: its backward, ``dZ = dY * act'(Z)`` and ``db``.
        ``train_step``: one minibatch step of the whole network (forward, loss, backward,
            SGD-with-momentum update) through the path ``fit`` uses on this backend.
        ``gemm_floor``: that step's own matrix products (3 per layer, less one), on this
            backend: the floor a BLAS-bound step can approach.
        ``fit``: ``model.fit`` for one epoch over ``fit_rows`` rows (default 8 batches).
    """
    import fastnn

    if op not in OPS:
        raise ValueError(f"unknown op {op!r}; choose from {OPS}")
    be = fastnn.get_backend(backend)
    rng = np.random.default_rng(seed)
    n, d_in, h1 = spec.batch, spec.widths[0], spec.widths[1]
    info: dict = {"backend": be.name, "size": spec.name, "shape": spec.describe()}

    def dev(shape, scale=1.0):
        return be.asarray((scale * rng.standard_normal(shape)).astype(dtype))

    if op == "matmul":
        X, W, out = dev((n, d_in)), dev((d_in, h1)), be.empty((n, h1), np.dtype(dtype))
        info["shape"] = f"({n}x{d_in}) @ ({d_in}x{h1})"

        def fn():
            be.matmul(X, W, out=out)
            be.synchronize()

    elif op == "bias_act_forward":
        # Z += b accumulates across calls; the tiny bias keeps values in range.
        Z, b = dev((n, h1)), dev((h1,), 1e-6)
        info["shape"] = f"({n}x{h1}) {activation}"

        def fn():
            be.bias_act(Z, b, activation)
            be.synchronize()

    elif op == "bias_act_backward":
        Z, Y = be.bias_act(dev((n, h1)), dev((h1,)), activation)
        dY = dev((n, h1))
        info["shape"] = f"({n}x{h1}) {activation}"

        def fn():
            be.bias_act_backward(Z, Y, dY, activation)
            be.synchronize()

    elif op == "train_step":
        model = build_model(spec, backend, optimizer="sgd_momentum", dtype=dtype, seed=seed)
        data = synthetic_dataset(n, 1, d_in, spec.widths[-1], seed=seed)
        Xd = be.asarray(data.Xtr.astype(dtype))
        yd = be.asarray(model.loss.prepare_targets(data.ytr, spec.widths[-1], model.dtype))
        step_rng = np.random.default_rng(seed)
        runner = be.epoch_runner(model, model.loss, model.optimizer)
        info["training_path"] = getattr(runner, "description", None) or "per-layer"
        info["optimizer"] = "SGD lr 0.01 momentum 0.9"
        if runner is not None:

            def fn():
                runner.run(Xd, yd, None, n, step_rng)
                be.synchronize()

        else:

            def fn():
                model._train_epoch(Xd, yd, None, n)
                be.synchronize()

    elif op == "gemm_floor":
        widths = spec.widths
        acts = [dev((n, w)) for w in widths]
        Ws = [dev((a, b)) for a, b in zip(widths[:-1], widths[1:], strict=True)]
        outs_f = [be.empty((n, w), np.dtype(dtype)) for w in widths[1:]]
        outs_w = [be.empty(W.shape, np.dtype(dtype)) for W in Ws]
        outs_x = [be.empty((n, w), np.dtype(dtype)) for w in widths[1:-1]]
        L = len(Ws)
        info["products"] = 3 * L - 1

        def fn():
            for i in range(L):  # forward
                be.matmul(acts[i], Ws[i], out=outs_f[i])
            for i in range(L - 1, -1, -1):  # backward: dW = A^T dZ, dX = dZ W^T
                be.matmul(acts[i], acts[i + 1], transA=True, out=outs_w[i])
                if i > 0:
                    be.matmul(acts[i + 1], Ws[i], transB=True, out=outs_x[i - 1])
            be.synchronize()

    else:  # fit
        rows = fit_rows or 8 * n
        if spec.widths == SIZES["tiny"].widths and fit_rows is None:
            data = churn_dataset(np.dtype(dtype))
        else:
            data = synthetic_dataset(rows, 1, d_in, spec.widths[-1], seed=seed)
        model = build_model(spec, backend, dtype=dtype, seed=seed)
        Xtr, ytr = data.Xtr, data.ytr
        info["rows"] = int(Xtr.shape[0])
        info["optimizer"] = "Adam lr 1e-3"

        def fn():
            model.fit(Xtr, ytr, batch_size=n, epochs=1, verbose=0, seed=seed)
            be.synchronize()

    t0 = time.perf_counter()
    fn()
    warmup = time.perf_counter() - t0
    if op == "fit":
        info["training_path"] = model.training_path
    return Case(f"{op}[{be.name}-{spec.name}]", fn, warmup, info)


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


def fastnn_contender(backend: str) -> Contender:
    """fastnn's ``model.fit(verbose=0)`` on ``backend``; a one-epoch fit on four batches
    warms it up (JIT compilation or cache loading) and is reported as ``warmup_s``."""

    def prepare(task: Task) -> Prepared:
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
            acc = _accuracy(model.predict(d.Xte), d.yte)
            return Trained(seconds, acc, task.epochs, {"training_path": model.training_path})

        return Prepared(run, warmup, {"training_path": m.training_path, "device": be.device})

    return Contender(f"fastnn-{backend}", f"fastnn {backend}", "fastnn", prepare)


# ---------------------------------------------------------------------- PyTorch
def _torch_net(spec: NetSpec, seed: int):
    import torch
    from torch import nn

    torch.manual_seed(seed)
    mods: list = []
    for a, b in zip(spec.widths[:-1], spec.widths[1:], strict=True):
        mods += [nn.Linear(a, b), nn.ReLU()]
    mods.pop()  # logits out: the loss applies sigmoid/softmax
    return nn.Sequential(*mods)


def _torch_tensors(task: Task):
    import torch

    d = task.data
    Xt = torch.from_numpy(np.ascontiguousarray(d.Xtr, dtype=np.float32))
    if task.spec.binary:
        yt = torch.from_numpy(d.ytr.astype(np.float32).reshape(-1, 1))
        loss = torch.nn.BCEWithLogitsLoss()
    else:
        yt = torch.from_numpy(d.ytr.astype(np.int64))
        loss = torch.nn.CrossEntropyLoss()
    return Xt, yt, loss


def _torch_accuracy(model, task: Task) -> float:
    import torch

    model.eval()
    with torch.inference_mode():
        out = model(torch.from_numpy(np.ascontiguousarray(task.data.Xte, dtype=np.float32)))
        P = torch.sigmoid(out) if task.spec.binary else out
    return _accuracy(P.numpy(), task.data.yte)


def _prepare_torch_idiomatic(task: Task) -> Prepared:
    """The loop in PyTorch's tutorials: DataLoader(shuffle=True) + nn.Sequential + Adam,
    default threads, default Adam implementation."""
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    Xt, yt, loss_fn = _torch_tensors(task)
    spec = task.spec

    def train(epochs: int, limit: int | None = None):
        model = _torch_net(spec, task.seed)
        opt = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
        loader = DataLoader(TensorDataset(Xt, yt), batch_size=spec.batch, shuffle=True)
        t0 = time.perf_counter()
        steps = 0
        for _ in range(epochs):
            model.train()
            for xb, yb in loader:
                opt.zero_grad()
                loss = loss_fn(model(xb), yb)
                loss.backward()
                opt.step()
                steps += 1
                if limit is not None and steps >= limit:
                    return model, time.perf_counter() - t0
        return model, time.perf_counter() - t0

    t0 = time.perf_counter()
    train(1, limit=20)
    warmup = time.perf_counter() - t0

    def run() -> Trained:
        model, seconds = train(task.epochs)
        return Trained(seconds, _torch_accuracy(model, task), task.epochs)

    return Prepared(run, warmup, {"threads": torch.get_num_threads()})


def _prepare_torch_tuned(task: Task) -> Prepared:
    """A hand-tuned loop: tensors shuffled once per epoch with ``randperm`` and sliced
    (no DataLoader), ``zero_grad(set_to_none=True)``, the fused Adam kernel, inference
    under ``torch.inference_mode``, and the thread count (1 or the default) that ran a
    short probe faster on this machine."""
    import torch

    Xt, yt, loss_fn = _torch_tensors(task)
    spec = task.spec
    n = Xt.shape[0]
    default_threads = torch.get_num_threads()

    def make_opt(model):
        try:
            return torch.optim.Adam(model.parameters(), lr=LEARNING_RATE, fused=True), "fused"
        except (RuntimeError, TypeError, ValueError):  # older torch: no fused CPU Adam
            return torch.optim.Adam(model.parameters(), lr=LEARNING_RATE, foreach=False), "for"

    def train(epochs: int, threads: int, limit: int | None = None):
        torch.set_num_threads(threads)
        try:
            model = _torch_net(spec, task.seed)
            opt, kind = make_opt(model)
            model.train()
            t0 = time.perf_counter()
            steps = 0
            for _ in range(epochs):
                perm = torch.randperm(n)
                Xs, ys = Xt[perm], yt[perm]
                for i in range(0, n, spec.batch):
                    opt.zero_grad(set_to_none=True)
                    loss = loss_fn(model(Xs[i : i + spec.batch]), ys[i : i + spec.batch])
                    loss.backward()
                    opt.step()
                    steps += 1
                    if limit is not None and steps >= limit:
                        return model, time.perf_counter() - t0, kind
            return model, time.perf_counter() - t0, kind
        finally:
            torch.set_num_threads(default_threads)

    t0 = time.perf_counter()
    candidates = sorted({1, default_threads})
    probe: dict[int, float] = {}
    for threads in candidates:
        train(1, threads, limit=5)  # allocator warm-up
    for _ in range(3):  # alternate, keep the best of three: the machine may be noisy
        for threads in candidates:
            t = train(1, threads, limit=10)[1]
            probe[threads] = min(probe.get(threads, math.inf), t)
    best = min(probe, key=probe.get)
    warmup = time.perf_counter() - t0

    def run() -> Trained:
        model, seconds, kind = train(task.epochs, best)
        torch.set_num_threads(best)
        try:
            acc = _torch_accuracy(model, task)
        finally:
            torch.set_num_threads(default_threads)
        return Trained(seconds, acc, task.epochs, {"adam": kind})

    return Prepared(run, warmup, {"threads": best, "thread_probe_s": probe})


# ---------------------------------------------------------------------- scikit-learn
def _prepare_sklearn(task: Task) -> Prepared:
    """``MLPClassifier(solver="adam")``, same hidden sizes and batch, ``alpha=0`` (no L2
    penalty), a fixed number of epochs (``max_iter``, with ``tol=0`` and
    ``n_iter_no_change`` past the end so it never stops early)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    spec, d = task.spec, task.data
    ytr = d.ytr.astype(np.int64)

    def make(epochs):
        return MLPClassifier(
            hidden_layer_sizes=spec.hidden,
            activation="relu",
            solver="adam",
            alpha=0.0,
            batch_size=spec.batch,
            learning_rate_init=LEARNING_RATE,
            max_iter=epochs,
            tol=0.0,
            n_iter_no_change=epochs + 1,
            shuffle=True,
            random_state=task.seed,
            early_stopping=False,
        )

    def fit(epochs, X, y):
        clf = make(epochs)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            t0 = time.perf_counter()
            clf.fit(X, y)
            return clf, time.perf_counter() - t0

    rows = min(d.Xtr.shape[0], 4 * spec.batch)
    t0 = time.perf_counter()
    fit(1, d.Xtr[:rows], ytr[:rows])
    warmup = time.perf_counter() - t0

    def run() -> Trained:
        clf, seconds = fit(task.epochs, d.Xtr, ytr)
        acc = float((clf.predict(d.Xte) == d.yte.astype(np.int64)).mean())
        return Trained(seconds, acc, int(clf.n_iter_), {"dtype": str(clf.coefs_[0].dtype)})

    return Prepared(run, warmup)


# ---------------------------------------------------------------------- Keras 3
def _keras_backend_default() -> str:
    if os.environ.get("KERAS_BACKEND"):
        return os.environ["KERAS_BACKEND"]
    for name in ("jax", "torch", "tensorflow"):
        if importlib.util.find_spec(name) is not None:
            return name
    return "jax"


def _prepare_keras(task: Task) -> Prepared:
    """Keras 3 ``model.fit`` (``KERAS_BACKEND`` if set, else JAX, else PyTorch). The
    first epoch holds the trace/compile and is reported as warm-up; training time is
    the median steady epoch times the epochs. When ``task.budget_s`` runs out it stops
    early and scales (``epochs_run`` says how many epochs were timed)."""
    os.environ.setdefault("KERAS_BACKEND", _keras_backend_default())
    import keras

    spec, d = task.spec, task.data

    class EpochClock(keras.callbacks.Callback):
        def __init__(self, budget):
            super().__init__()
            self.budget = budget
            self.durations: list[float] = []
            self._t0 = 0.0

        def on_epoch_begin(self, epoch, logs=None):
            self._t0 = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.durations.append(time.perf_counter() - self._t0)
            if (
                self.budget is not None
                and len(self.durations) >= 3
                and sum(self.durations[1:]) > self.budget
            ):
                self.model.stop_training = True

    def run() -> Trained:
        keras.utils.set_random_seed(task.seed)
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
        clock = EpochClock(task.budget_s)
        model.fit(
            d.Xtr,
            d.ytr,
            batch_size=spec.batch,
            epochs=max(task.epochs, 2),  # a second epoch separates the compile
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
        return Trained(seconds, _accuracy(P, d.yte), min(len(dur), task.epochs), info)

    return Prepared(run, None, {"keras_backend": keras.backend.backend()})


# ---------------------------------------------------------------------- JAX
def _glorot(rng, a, b):
    lim = math.sqrt(6.0 / (a + b))
    return rng.uniform(-lim, lim, (a, b)).astype(np.float32)


def _prepare_jax(task: Task) -> Prepared:
    """What a JAX user writes for speed: a whole epoch (on-device shuffle, then
    ``lax.scan`` over the minibatches, optax Adam) jitted as one function. Compilation
    is timed on its own (``jit(...).lower(...).compile()``) and excluded; a last partial
    batch is dropped."""
    import jax
    import jax.numpy as jnp
    import optax

    spec, d = task.spec, task.data
    B = spec.batch
    n = d.Xtr.shape[0]
    nb = n // B
    X = jnp.asarray(d.Xtr, dtype=jnp.float32)
    y = jnp.asarray(d.ytr.astype(np.float32) if spec.binary else d.ytr.astype(np.int32))
    opt = optax.adam(LEARNING_RATE)

    def forward(params, A):
        for W, b in params[:-1]:
            A = jax.nn.relu(A @ W + b)
        W, b = params[-1]
        return A @ W + b

    def loss_fn(params, xb, yb):
        z = forward(params, xb)
        if spec.binary:
            return optax.sigmoid_binary_cross_entropy(z[:, 0], yb).mean()
        return optax.softmax_cross_entropy_with_integer_labels(z, yb).mean()

    def epoch(params, opt_state, key, X, y):
        perm = jax.random.permutation(key, n)[: nb * B]
        Xb = X[perm].reshape(nb, B, X.shape[1])
        yb = y[perm].reshape(nb, B)

        def step(carry, batch):
            p, s = carry
            loss, g = jax.value_and_grad(loss_fn)(p, *batch)
            upd, s = opt.update(g, s, p)
            return (optax.apply_updates(p, upd), s), loss

        (params, opt_state), losses = jax.lax.scan(step, (params, opt_state), (Xb, yb))
        return params, opt_state, losses.sum()

    def init():
        rng = np.random.default_rng(task.seed)
        return [
            (jnp.asarray(_glorot(rng, a, b)), jnp.zeros((b,), jnp.float32))
            for a, b in zip(spec.widths[:-1], spec.widths[1:], strict=True)
        ]

    params0 = init()
    state0 = opt.init(params0)
    key0 = jax.random.PRNGKey(task.seed)
    t0 = time.perf_counter()
    compiled = jax.jit(epoch).lower(params0, state0, key0, X, y).compile()
    compile_s = time.perf_counter() - t0
    predict = jax.jit(forward)
    jax.block_until_ready(compiled(params0, state0, key0, X, y))
    jax.block_until_ready(predict(params0, jnp.asarray(d.Xte)))

    def run() -> Trained:
        params = init()
        state = opt.init(params)
        keys = jax.random.split(key0, task.epochs)
        jax.block_until_ready((params, state, keys))
        t0 = time.perf_counter()
        for e in range(task.epochs):
            params, state, _ = compiled(params, state, keys[e], X, y)
        jax.block_until_ready(params)
        seconds = time.perf_counter() - t0
        out = np.asarray(predict(params, jnp.asarray(d.Xte)))
        P = 1.0 / (1.0 + np.exp(-out)) if spec.binary else out
        info = {"dropped_rows_per_epoch": n - nb * B} if n != nb * B else {}
        return Trained(seconds, _accuracy(P, d.yte), task.epochs, info)

    return Prepared(run, compile_s, {"compile_s": compile_s, "device": str(jax.devices()[0])})


# ---------------------------------------------------------------------- peers in a subprocess
_WORKER_CODE = "from fastnn.bench import _worker_main; _worker_main()"


def _subprocess_peer(peer: str, env: dict[str, str]) -> Callable[[Task], Prepared]:
    """Run ``peer`` in its own long-lived process with ``env`` (e.g. a second Keras
    backend: Keras fixes its backend at import). The worker rebuilds the data from its
    recipe, prepares once, then trains once per ``run()``; only the worker's own
    measurements count, not the process start or imports."""

    def prepare(task: Task) -> Prepared:
        if task.data.recipe is None:
            raise RuntimeError("this data set has no recipe to rebuild it in a subprocess")
        msg = {
            "peer": peer,
            "name": task.name,
            "spec": dataclasses.asdict(task.spec),
            "recipe": task.data.recipe,
            "epochs": task.epochs,
            "seed": task.seed,
            "budget_s": task.budget_s,
        }
        errlog = tempfile.TemporaryFile(mode="w+")
        proc = subprocess.Popen(
            [sys.executable, "-c", _WORKER_CODE],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=errlog,
            text=True,
            env={**os.environ, **env},
        )

        def ask(line: str) -> dict:
            proc.stdin.write(line + "\n")
            proc.stdin.flush()
            reply = proc.stdout.readline()
            if not reply:
                errlog.seek(0)
                tail = errlog.read().strip().splitlines()[-1:] or ["worker exited"]
                raise RuntimeError(f"{peer} worker died: {tail[0]}")
            out = json.loads(reply)
            if "error" in out:
                raise RuntimeError(out["error"])
            return out

        def close():
            with contextlib.suppress(Exception):
                proc.stdin.write("quit\n")
                proc.stdin.flush()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            errlog.close()

        try:
            ready = ask(json.dumps(msg))
        except Exception:
            close()
            raise

        def run() -> Trained:
            r = ask("run")
            return Trained(r["seconds"], r["accuracy"], r["epochs_run"], r.get("info", {}))

        info = {**ready.get("info", {}), "process": "separate worker process"}
        return Prepared(run, ready.get("warmup_s"), info, close)

    return prepare


def _worker_main() -> None:
    """Entry point of a subprocess peer: one JSON task line on stdin, then ``run`` lines;
    one JSON reply line per request on the original stdout (library output goes to
    stderr so it cannot corrupt the protocol)."""
    reply_fd = os.dup(1)
    os.dup2(2, 1)
    replies = os.fdopen(reply_fd, "w", buffering=1)

    def send(obj):
        replies.write(json.dumps(obj, default=_json_default) + "\n")
        replies.flush()

    msg = json.loads(sys.stdin.readline())
    try:
        task = Task(
            msg["name"],
            NetSpec(msg["spec"]["name"], tuple(msg["spec"]["widths"]), msg["spec"]["batch"]),
            dataset_from_recipe(msg["recipe"]),
            msg["epochs"],
            seed=msg["seed"],
            budget_s=msg["budget_s"],
        )
        prepared = PEERS[msg["peer"]][1](task)
    except Exception as exc:
        send({"error": f"{type(exc).__name__}: {exc}"})
        return
    send({"ready": True, "warmup_s": prepared.warmup_s, "info": prepared.info})
    for line in sys.stdin:
        if line.strip() != "run":
            break
        try:
            send(dataclasses.asdict(prepared.run()))
        except Exception as exc:
            send({"error": f"{type(exc).__name__}: {exc}"})


def _has(*modules: str) -> bool:
    return all(importlib.util.find_spec(m) is not None for m in modules)


def _keras_usable() -> bool:
    if not _has("keras"):
        return False
    backend = _keras_backend_default()
    return _has("tensorflow" if backend == "tensorflow" else backend)


#: Peers: name -> (label, prepare, "installed?" check). Each runs only when installed.
PEERS: dict[str, tuple[str, Callable[[Task], Prepared], Callable[[], bool]]] = {
    "torch-idiomatic": (
        "PyTorch idiomatic (DataLoader)",
        _prepare_torch_idiomatic,
        lambda: _has("torch"),
    ),
    "torch-tuned": ("PyTorch tuned loop", _prepare_torch_tuned, lambda: _has("torch")),
    "sklearn": ("scikit-learn MLPClassifier", _prepare_sklearn, lambda: _has("sklearn")),
    "keras": ("Keras 3", _prepare_keras, _keras_usable),
    "keras-torch": (
        "Keras 3, torch backend",
        _subprocess_peer("keras", {"KERAS_BACKEND": "torch"}),
        lambda: _has("keras", "torch") and _keras_backend_default() != "torch",
    ),
    "jax": ("JAX lax.scan epoch + optax", _prepare_jax, lambda: _has("jax", "optax")),
}

#: Peers that are cheap enough to run at every point of the scaling sweeps.
SCALING_PEERS = ("torch-tuned", "jax")


def peer_contenders(names=None) -> tuple[list[Contender], dict[str, str]]:
    """The installed peers among ``names`` (all by default), and ``{name: why}`` for the
    ones skipped."""
    out, skipped = [], {}
    for name, (label, prepare, installed) in PEERS.items():
        if names is not None and name not in names:
            continue
        if installed():
            out.append(Contender(name, label, "peer", prepare))
        else:
            skipped[name] = "not installed"
    return out, skipped


# ====================================================================== the comparison
@dataclasses.dataclass
class BenchConfig:
    """Settings of one ``fastnn bench`` run (see :data:`MODES` for the presets)."""

    mode: str = "full"
    backends: list[str] = dataclasses.field(default_factory=list)
    peers: list[str] | None = None  # None: every installed peer; []: none
    epochs: int = 100  # the churn recipe
    repeats: int = 5
    big_repeats: int | None = 7  # mid and big runs are short: more repeats (None: repeats)
    sizes: tuple[str, ...] = ("tiny", "mid", "big")
    big_epochs: int = 3
    big_rows: int = 4096
    test_rows: int = 1024
    widths: tuple[int, ...] = (6, 16, 64, 256, 1024)
    batches: tuple[int, ...] = (8, 32, 128, 512, 2048)
    scaling_rows: int = 8192
    scaling_epochs: int = 2
    scaling_repeats: int = 3
    ops: bool = True
    ops_repeats: int = 5
    ops_target_s: float = 0.05
    cold_start: bool = True
    slow_budget_s: float | None = 10.0  # Keras: stop after this much and scale
    toy_sizes: bool = False


#: Presets: ``full`` (~5-10 min on 2 cores), ``quick`` (~1 min), ``smoke`` (CI, seconds).
MODES = {
    "full": {},
    "quick": {
        "epochs": 10,
        "repeats": 1,
        "big_repeats": None,
        "big_epochs": 2,
        "big_rows": 1024,
        "test_rows": 512,
        "widths": (6, 64, 1024),
        "batches": (8, 128, 2048),
        "scaling_epochs": 1,
        "scaling_repeats": 1,
        "scaling_rows": 4096,
        "ops_repeats": 3,
        "ops_target_s": 0.02,
        "cold_start": False,
        "slow_budget_s": 3.0,
    },
    "smoke": {
        "epochs": 1,
        "repeats": 1,
        "big_repeats": None,
        "big_epochs": 1,
        "big_rows": 64,
        "test_rows": 64,
        "widths": (6, 16),
        "batches": (16, 64),
        "scaling_epochs": 1,
        "scaling_repeats": 1,
        "scaling_rows": 256,
        "ops_repeats": 1,
        "ops_target_s": 0.001,
        "cold_start": False,
        "slow_budget_s": 1.0,
        "toy_sizes": True,
    },
}


def _log(msg: str, echo) -> None:
    if echo is not None:
        echo(msg)


def _compare(task: Task, contenders: list[Contender], repeats: int, echo) -> list[dict]:
    """Prepare every contender, then run ``repeats`` rounds, one run of each per round
    (round-robin, so drifts in machine load hit every contender alike)."""
    rows: dict[str, dict] = {}
    ready: list[tuple[Contender, Prepared]] = []
    for c in contenders:
        row = {
            "case": task.name,
            "contender": c.name,
            "label": c.label,
            "kind": c.kind,
            "network": task.spec.describe(),
            "epochs": task.epochs,
            "rows": int(task.data.Xtr.shape[0]),
            "steps": task.epochs * math.ceil(task.data.Xtr.shape[0] / task.spec.batch),
        }
        rows[c.name] = row
        try:
            prepared = c.prepare(task)
        except Exception as exc:  # a broken peer must not sink the whole comparison
            row["error"] = f"{type(exc).__name__}: {exc}"
            _log(f"  {c.name}: FAILED to prepare: {row['error']}", echo)
            continue
        row["warmup_s"] = prepared.warmup_s
        row["info"] = dict(prepared.info)
        row["_runs"] = []
        ready.append((c, prepared))
    try:
        for r in range(repeats):
            for c, prepared in ready:
                row = rows[c.name]
                if "error" in row:
                    continue
                try:
                    res = prepared.run()
                except Exception as exc:
                    row["error"] = f"{type(exc).__name__}: {exc}"
                    _log(f"  {c.name}: FAILED: {row['error']}", echo)
                    continue
                row["_runs"].append(res)
                _log(
                    f"  [{task.name}] {c.name:<16} run {r + 1}/{repeats}: {res.seconds:8.3f} s"
                    f"  acc {res.accuracy:.4f}"
                    + (
                        f"  (timed {res.epochs_run} of {task.epochs} epochs)"
                        if res.epochs_run < task.epochs
                        else ""
                    ),
                    echo,
                )
    finally:
        for _, prepared in ready:
            if prepared.close is not None:
                prepared.close()
    out = []
    for row in rows.values():
        runs = row.pop("_runs", [])
        if runs:
            row.update(summarize([r.seconds for r in runs]))
            row["accuracy"] = statistics.median(r.accuracy for r in runs)
            row["accuracies"] = [r.accuracy for r in runs]
            row["epochs_run"] = min(r.epochs_run for r in runs)
            row["scaled"] = row["epochs_run"] < task.epochs
            row["per_epoch_s"] = row["median_s"] / task.epochs
            row["per_step_us"] = 1e6 * row["median_s"] / row["steps"]
            for r in runs:
                row.setdefault("info", {}).update(r.info)
            if row.get("warmup_s") is None and "compile_s" in row["info"]:
                row["warmup_s"] = row["info"]["compile_s"]  # Keras: its first epoch
        out.append(row)
    return out


def _datasets(cfg: BenchConfig, sizes: dict[str, NetSpec]) -> dict[str, Dataset]:
    out = {}
    for name in cfg.sizes:
        spec = sizes[name]
        if name == "tiny":
            data = churn_dataset()
            if cfg.mode == "smoke":
                data = data.head(8 * spec.batch)
        else:
            data = synthetic_dataset(
                cfg.big_rows, cfg.test_rows, spec.widths[0], spec.widths[-1], seed=1
            )
        out[name] = data
    return out


def _run_ops(cfg: BenchConfig, sizes: dict[str, NetSpec], echo) -> list[dict]:
    rows = []
    for size in cfg.sizes:
        spec = sizes[size]
        for backend in cfg.backends:
            for op in (
                "matmul",
                "bias_act_forward",
                "bias_act_backward",
                "train_step",
                "gemm_floor",
            ):
                row = {"size": size, "backend": backend, "op": op, "network": spec.describe()}
                try:
                    case = op_case(op, backend, spec)
                    row["warmup_s"] = case.warmup_s
                    row["info"] = case.info
                    row.update(time_callable(case.fn, cfg.ops_repeats, cfg.ops_target_s))
                except Exception as exc:
                    row["error"] = f"{type(exc).__name__}: {exc}"
                rows.append(row)
                if "median_s" in row:
                    _log(
                        f"  [ops {size}] {backend:<6} {op:<18} {1e6 * row['median_s']:10.1f} us",
                        echo,
                    )
                else:
                    _log(f"  [ops {size}] {backend:<6} {op:<18} FAILED {row['error']}", echo)
    return rows


def _run_scaling(cfg: BenchConfig, contenders: list[Contender], echo) -> dict[str, list[dict]]:
    """Time per epoch vs hidden width (11-w-w-1, batch 32) and vs batch size (11-6-6-1),
    on ``scaling_rows`` synthetic rows with 11 features."""
    data = synthetic_dataset(cfg.scaling_rows, 256, 11, 1, seed=2)
    out: dict[str, list[dict]] = {"width": [], "batch": []}
    sweeps = [("width", w, NetSpec(f"width={w}", (11, w, w, 1), 32)) for w in cfg.widths]
    sweeps += [("batch", b, NetSpec(f"batch={b}", (11, 6, 6, 1), b)) for b in cfg.batches]
    for axis, x, spec in sweeps:
        task = Task(spec.name, spec, data, cfg.scaling_epochs, budget_s=cfg.slow_budget_s)
        for row in _compare(task, contenders, cfg.scaling_repeats, None):
            row["x"] = x
            out[axis].append(row)
            if "median_s" in row:
                _log(
                    f"  [scaling {spec.name}] {row['contender']:<16} "
                    f"{1e3 * row['per_epoch_s']:9.2f} ms/epoch",
                    echo,
                )
            else:
                _log(
                    f"  [scaling {spec.name}] {row['contender']:<16} FAILED {row.get('error')}",
                    echo,
                )
    return out


_COLD_START_CODE = r"""
import json, sys, time
t0 = time.perf_counter()
import numpy as np
import fastnn
from fastnn.layers import Dense
t_import = time.perf_counter() - t0
rng = np.random.default_rng(0)
X = rng.standard_normal((1024, 11)).astype(np.float32)
y = (X[:, 0] > 0).astype(np.float32)
def fit():
    m = fastnn.Sequential([Dense(6, activation="relu"), Dense(6, activation="relu"),
                           Dense(1, activation="sigmoid")], backend=sys.argv[1])
    m.compile(optimizer="adam", loss="binary_crossentropy")
    t = time.perf_counter()
    m.fit(X, y, batch_size=32, epochs=1, verbose=0, seed=0)
    m.backend.synchronize()
    return time.perf_counter() - t, m.training_path
first, path = fit()
second, _ = fit()
print(json.dumps({"import_s": t_import, "first_fit_s": first, "second_fit_s": second,
                  "training_path": path}))
"""


def _run_cold_start(backends: list[str], echo) -> list[dict]:
    """Compilation cost as a user meets it: a fresh process trains the churn network for
    one epoch twice, first with an empty Numba cache (``NUMBA_CACHE_DIR`` set to a new
    folder), then again with the cache that run left behind."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="fastnn-bench-cache-") as cache:
        for backend in backends:
            for label in ("cold cache", "warm cache"):
                env = dict(os.environ, NUMBA_CACHE_DIR=cache)
                row = {"backend": backend, "cache": label}
                try:
                    t0 = time.perf_counter()
                    proc = subprocess.run(
                        [sys.executable, "-c", _COLD_START_CODE, backend],
                        capture_output=True,
                        text=True,
                        env=env,
                        timeout=300,
                    )
                    row["process_s"] = time.perf_counter() - t0
                    if proc.returncode != 0:
                        row["error"] = proc.stderr.strip().splitlines()[-1:] or ["failed"]
                        row["error"] = row["error"][0]
                    else:
                        row.update(json.loads(proc.stdout.strip().splitlines()[-1]))
                        row["compile_s"] = max(0.0, row["first_fit_s"] - row["second_fit_s"])
                except Exception as exc:
                    row["error"] = f"{type(exc).__name__}: {exc}"
                rows.append(row)
                if "error" in row:
                    _log(f"  [cold start] {backend} {label}: FAILED {row['error']}", echo)
                else:
                    _log(
                        f"  [cold start] {backend:<6} {label}: import {row['import_s']:.2f} s, "
                        f"first fit {row['first_fit_s']:.2f} s, second {row['second_fit_s']:.3f} s",
                        echo,
                    )
    return rows


#: Two backends within this factor of each other count as a tie in the crossover table.
TIE_FACTOR = 1.05


def _crossover(results: dict) -> dict:
    """Fastest fastnn backend per case (fit sizes and every scaling point), and the
    order "auto" should try: the backend with most clear wins (ties, within
    :data:`TIE_FACTOR`, count for no one) first, then the smallest mean slowdown."""
    cases = []

    def add(case, rows):
        times = {
            r["contender"].removeprefix("fastnn-"): r["median_s"]
            for r in rows
            if r["kind"] == "fastnn" and "median_s" in r
        }
        peers = {
            r["contender"]: r["median_s"] for r in rows if r["kind"] == "peer" and "median_s" in r
        }
        if not times:
            return
        order = sorted(times, key=times.get)
        entry = {"case": case, "fastest": order[0], "times_s": times}
        if len(order) > 1:
            entry["runner_up"] = order[1]
            entry["margin"] = times[order[1]] / times[order[0]]
            entry["tie"] = entry["margin"] < TIE_FACTOR
        if peers:
            best_peer = min(peers, key=peers.get)
            entry["fastest_peer"] = best_peer
            entry["vs_fastest_peer"] = peers[best_peer] / times[order[0]]
        cases.append(entry)

    for size in results["settings"]["sizes"]:
        add(f"fit {size}", [r for r in results["fit"] if r["case"] == size])
    for axis in ("width", "batch"):
        rows = results.get("scaling", {}).get(axis, [])
        for x in sorted({r["x"] for r in rows}):
            add(f"{axis}={x}", [r for r in rows if r["x"] == x])
    wins: dict[str, int] = {}
    ties = 0
    geo: dict[str, list[float]] = {}
    for c in cases:
        if c.get("tie"):
            ties += 1
        else:
            wins[c["fastest"]] = wins.get(c["fastest"], 0) + 1
        best = min(c["times_s"].values())
        for b, t in c["times_s"].items():
            geo.setdefault(b, []).append(math.log(t / best))
    backends = list(geo)
    order = sorted(backends, key=lambda b: (-wins.get(b, 0), sum(geo[b]) / len(geo[b])))
    cpu_order = [b for b in order if b != "cupy"]
    return {
        "cases": cases,
        "wins": wins,
        "ties": ties,
        "mean_slowdown_vs_fastest": {b: math.exp(sum(v) / len(v)) for b, v in geo.items()},
        "worst_slowdown_vs_fastest": {b: math.exp(max(v)) for b, v in geo.items()},
        "auto_order": order,
        "auto_order_cpu": cpu_order,
    }


# ---------------------------------------------------------------------- environment
def machine_info() -> dict:
    """CPU model, core counts, memory, OS and Python of this machine."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    if sys.platform == "darwin":
        with contextlib.suppress(Exception):
            cpu = (
                subprocess.run(
                    ["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True
                ).stdout.strip()
                or cpu
            )
    info = {
        "cpu": cpu,
        "logical_cpus": os.cpu_count(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
    }
    if hasattr(os, "sched_getaffinity"):
        info["usable_cpus"] = len(os.sched_getaffinity(0))
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                info["memory_gib"] = round(int(line.split()[1]) / 2**20, 1)
    with contextlib.suppress(OSError, AttributeError):
        info["loadavg_at_start"] = [round(x, 2) for x in os.getloadavg()]
    return info


_VERSION_PACKAGES = (
    "fastnn",
    "numpy",
    "numba",
    "llvmlite",
    "cupy-cuda12x",
    "cupy",
    "torch",
    "jax",
    "jaxlib",
    "optax",
    "keras",
    "scikit-learn",
    "pandas",
    "matplotlib",
    "threadpoolctl",
    "pytest-benchmark",
)


def versions() -> dict:
    """Installed versions of fastnn, NumPy and every peer (None where missing)."""
    out = {"python": platform.python_version()}
    for dist in _VERSION_PACKAGES:
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = None
    with contextlib.suppress(Exception):
        cfg = np.show_config(mode="dicts")
        blas = cfg.get("Build Dependencies", {}).get("blas", {})
        out["numpy_blas"] = f"{blas.get('name')} {blas.get('version', '')}".strip()
    return out


def thread_info() -> dict:
    """Thread counts: BLAS/OpenMP pools (threadpoolctl), Numba, PyTorch, and the
    environment variables that set them."""
    env_keys = (
        "OMP_NUM_THREADS",
        "OPENBLAS_NUM_THREADS",
        "OPENBLAS_CORETYPE",
        "OPENBLAS_L2_SIZE",
        "MKL_NUM_THREADS",
        "NUMBA_NUM_THREADS",
        "NUMBA_THREADING_LAYER",
        "XLA_FLAGS",
    )
    out: dict = {"env": {k: os.environ.get(k) for k in env_keys if os.environ.get(k)}}
    if _has("threadpoolctl"):
        with contextlib.suppress(Exception):
            from threadpoolctl import threadpool_info

            out["threadpools"] = [
                {
                    k: p.get(k)
                    for k in (
                        "user_api",
                        "internal_api",
                        "prefix",
                        "version",
                        "architecture",
                        "num_threads",
                    )
                }
                for p in threadpool_info()
            ]
    else:
        out["threadpools"] = "threadpoolctl not installed"
    if "numba" in sys.modules or _has("numba"):
        with contextlib.suppress(Exception):
            import numba

            out["numba"] = {
                "NUMBA_NUM_THREADS": numba.config.NUMBA_NUM_THREADS,
                "get_num_threads": numba.get_num_threads(),
            }
            with contextlib.suppress(Exception):
                out["numba"]["threading_layer"] = numba.threading_layer()
    if "torch" in sys.modules:
        torch = sys.modules["torch"]
        out["torch"] = {
            "num_threads": torch.get_num_threads(),
            "num_interop_threads": torch.get_num_interop_threads(),
        }
    return out


# ---------------------------------------------------------------------- driver
def run_benchmarks(cfg: BenchConfig, echo=click.echo) -> dict:
    """Run the whole comparison of ``cfg`` and return the results dictionary (what
    ``results.json`` holds). ``echo`` prints progress (None: silent)."""
    import fastnn

    t_start = time.perf_counter()
    sizes = TOY_SIZES if cfg.toy_sizes else SIZES
    status = fastnn.backend_status()
    backends = list(cfg.backends or fastnn.available_backends())
    cfg = dataclasses.replace(cfg, backends=backends)
    peers, skipped = ([], {}) if cfg.peers == [] else peer_contenders(cfg.peers)
    if cfg.peers:
        for name in cfg.peers:
            if name not in PEERS:
                skipped[name] = "unknown peer"
    contenders = [fastnn_contender(b) for b in backends] + peers
    results: dict = {
        "schema": SCHEMA_VERSION,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": None,
        "mode": cfg.mode,
        "machine": machine_info(),
        "versions": versions(),
        "backends": {
            name: {"available": ok, "reason": reason, "benchmarked": name in backends}
            for name, (ok, reason) in status.items()
        },
        "settings": {
            k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(cfg).items()
        },
        "peers": {
            "run": [p.name for p in peers],
            "skipped": skipped,
            "labels": {name: label for name, (label, _, _) in PEERS.items()},
        },
    }
    results["settings"]["backends"] = backends
    results["settings"]["learning_rate"] = LEARNING_RATE
    _log(
        f"fastnn bench ({cfg.mode}): backends {', '.join(backends)}; "
        f"peers {', '.join(p.name for p in peers) or 'none'}"
        + (f" (skipped: {', '.join(f'{k} ({v})' for k, v in skipped.items())})" if skipped else ""),
        echo,
    )

    data = _datasets(cfg, sizes)
    results["data"] = {
        k: {"source": v.source, "train_rows": int(v.Xtr.shape[0]), "test_rows": int(v.Xte.shape[0])}
        for k, v in data.items()
    }
    results["fit"] = []
    for size in cfg.sizes:
        spec = sizes[size]
        epochs = cfg.epochs if size == "tiny" else cfg.big_epochs
        repeats = cfg.repeats if size == "tiny" else (cfg.big_repeats or cfg.repeats)
        task = Task(size, spec, data[size], epochs, budget_s=cfg.slow_budget_s)
        _log(
            f"fit {size}: {spec.describe()}, {epochs} epochs, {task.data.Xtr.shape[0]} rows, "
            f"{repeats} repeats",
            echo,
        )
        results["fit"] += _compare(task, contenders, repeats, echo)

    if cfg.ops:
        _log("ops: per-call medians", echo)
        results["ops"] = _run_ops(cfg, sizes, echo)
    if cfg.widths or cfg.batches:
        _log("scaling: time per epoch vs width and batch size", echo)
        scaling_peers = [p for p in peers if p.name in SCALING_PEERS]
        results["scaling"] = _run_scaling(
            cfg, [fastnn_contender(b) for b in backends] + scaling_peers, echo
        )
        results["scaling"]["data"] = (
            f"{cfg.scaling_rows} synthetic rows x 11 features, {cfg.scaling_epochs} epoch(s) "
            "per run; width sweep 11-w-w-1 at batch 32, batch sweep 11-6-6-1"
        )
    if cfg.cold_start:
        _log("cold start: fresh processes, empty then warm Numba cache", echo)
        results["cold_start"] = _run_cold_start(backends, echo)
    results["crossover"] = _crossover(results)
    results["threads"] = thread_info()
    results["wall_s"] = time.perf_counter() - t_start
    with contextlib.suppress(OSError, AttributeError):
        results["machine"]["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    return results


# ====================================================================== reports
def _fmt_s(s: float | None) -> str:
    if s is None or (isinstance(s, float) and math.isnan(s)):
        return "-"
    if s >= 100:
        return f"{s:.0f} s"
    if s >= 1:
        return f"{s:.2f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.2f} ms"
    return f"{s * 1e6:.1f} us"


def _fmt_ratio(r: float | None) -> str:
    if r is None or not math.isfinite(r):
        return "-"
    return f"{r:.0f}x" if r >= 100 else f"{r:.2f}x" if r < 10 else f"{r:.1f}x"


def _machine_line(res: dict) -> str:
    m, v = res["machine"], res["versions"]
    parts = [
        f"{m['cpu']}, {m.get('usable_cpus', m['logical_cpus'])} cores",
        f"{m.get('memory_gib', '?')} GiB",
        m["os"],
        f"Python {m['python']}",
        f"NumPy {v.get('numpy')}" + (f" ({v['numpy_blas']})" if v.get("numpy_blas") else ""),
    ]
    for dist, label in (
        ("numba", "Numba"),
        ("torch", "PyTorch"),
        ("jax", "JAX"),
        ("keras", "Keras"),
        ("scikit-learn", "scikit-learn"),
    ):
        if v.get(dist):
            parts.append(f"{label} {v[dist]}")
    return "; ".join(parts)


def _threads_line(res: dict) -> str:
    t = res.get("threads", {})
    parts = []
    pools = t.get("threadpools")
    if isinstance(pools, list):
        for p in pools:
            arch = f" ({p['architecture']} kernels)" if p.get("architecture") else ""
            parts.append(f"{p.get('prefix') or p.get('internal_api')}{arch} {p.get('num_threads')}")
    if "numba" in t:
        parts.append(f"numba {t['numba'].get('get_num_threads')}")
    if "torch" in t:
        parts.append(f"torch {t['torch']['num_threads']} (tuned loop: its own probe)")
    return ", ".join(dict.fromkeys(parts)) or "unknown"


def _label(row: dict) -> str:
    """The contender's label, with the Keras backend named when Keras ran."""
    kb = row.get("info", {}).get("keras_backend")
    if kb and row["label"] == "Keras 3":
        return f"Keras 3, {kb} backend"
    return row["label"]


def render_summary(res: dict, case: str = "tiny") -> str:
    """A compact table for the README: every contender of one ``fit`` case, fastest
    first, with its median time, test accuracy and how many times slower it is than
    the fastest fastnn backend."""
    rows = sorted(
        (r for r in res["fit"] if r["case"] == case and "median_s" in r),
        key=lambda r: r["median_s"],
    )
    if not rows:
        return ""
    best = min((r["median_s"] for r in rows if r["kind"] == "fastnn"), default=None)
    r0 = rows[0]
    L = [
        f"{case} ({r0['network']}, {r0['epochs']} epochs, {r0['rows']} rows), medians of "
        f"{len(r0.get('samples_s', []))} runs on {res['machine']['cpu']} "
        f"({res['machine'].get('usable_cpus', res['machine']['logical_cpus'])} cores):",
        "",
        "| contender | training time | test accuracy | time / fastest fastnn |",
        "|---|---:|---:|---:|",
    ]
    for r in rows:
        label = _label(r)
        if r.get("scaled"):
            label += f" ({r['epochs_run']} epochs timed, scaled)"
        ratio = r["median_s"] / best if best else None
        L.append(
            f"| {label} | {_fmt_s(r['median_s'])} | {r['accuracy']:.4f} | {_fmt_ratio(ratio)} |"
        )
    return "\n".join(L)


def render_markdown(res: dict) -> str:
    """``results.md``: medians, spreads, accuracy, ratios vs the NumPy backend and vs
    peers, op timings, scaling, the crossover table and the suggested "auto" order."""
    L: list[str] = []
    s = res["settings"]
    L.append("# fastnn benchmarks")
    L.append("")
    L.append(f"Machine: {_machine_line(res)}.")
    L.append(f"Threads: {_threads_line(res)}.")
    m = res["machine"]
    if m.get("loadavg_at_start"):
        L.append(
            f"Load average (1, 5, 15 min) at start {m['loadavg_at_start']}, at end "
            f"{m.get('loadavg_at_end')}: other work on the machine shows up as spread."
        )
    L.append(
        f"Run: `{res.get('command') or 'fastnn bench'}` ({res['mode']} mode), {res['created']}, "
        f"{res['wall_s']:.0f} s in all. Medians of {s['repeats']} runs per contender"
        + (
            f" ({s['big_repeats']} for mid and big), "
            if s.get("big_repeats") and s["big_repeats"] != s["repeats"]
            else ", "
        )
        + "run round-robin in one process; compare ratios within this file only."
    )
    L.append("")
    summary = render_summary(res)
    if summary:
        L.append("## Summary: the churn recipe")
        L.append("")
        L.append(summary)
        L.append("")
    peers = res["peers"]
    if peers["skipped"]:
        L.append(
            "Peers not run: " + ", ".join(f"{k} ({v})" for k, v in peers["skipped"].items()) + "."
        )
        L.append("")
    notes: list[str] = []
    base = "fastnn-numpy"
    for size in s["sizes"]:
        rows = [r for r in res["fit"] if r["case"] == size]
        if not rows:
            continue
        r0 = rows[0]
        L.append(f"## Training: {size} ({r0['network']}), {r0['epochs']} epochs, {r0['rows']} rows")
        L.append("")
        L.append(
            f"Data: {res['data'][size]['source']}; Adam lr {s['learning_rate']}; test accuracy "
            f"on {res['data'][size]['test_rows']} held-out rows. Warm-up/compile is excluded "
            "from the time and shown on its own."
        )
        L.append("")
        L.append(
            "| contender | median | min-max | per step | test acc | vs fastnn numpy | warm-up / compile | note |"
        )
        L.append("|---|---:|---:|---:|---:|---:|---:|---|")
        tbase = next((r.get("median_s") for r in rows if r["contender"] == base), None)
        for r in rows:
            if "median_s" not in r:
                L.append(f"| {_label(r)} | failed | | | | | | {r.get('error', '')[:80]} |")
                continue
            note = []
            info = r.get("info", {})
            if r.get("scaled"):
                note.append(
                    f"timed {r['epochs_run']} epochs, scaled to {r['epochs']}; "
                    f"accuracy after {r['epochs_run']}"
                )
                notes.append(
                    f"{_label(r)} ({size}): timed {r['epochs_run']} of {r['epochs']} epochs "
                    "(steady epochs after the first), time scaled to the full run."
                )
            if "keras_backend" in info:
                note.append(f"KERAS_BACKEND={info['keras_backend']}")
            if info.get("process"):
                note.append(info["process"])
            if "threads" in info and r["contender"].startswith("torch"):
                note.append(f"{info['threads']} thread(s)")
            if info.get("training_path") and r["kind"] == "fastnn":
                note.append(info["training_path"])
            if info.get("dropped_rows_per_epoch"):
                note.append(f"drops {info['dropped_rows_per_epoch']} rows/epoch")
            if info.get("dtype") and info["dtype"] != "float32":
                note.append(info["dtype"])
            ratio = r["median_s"] / tbase if tbase else None
            L.append(
                f"| {_label(r)} | {_fmt_s(r['median_s'])} | {_fmt_s(r['min_s'])} - {_fmt_s(r['max_s'])} "
                f"| {_fmt_s(r['per_step_us'] * 1e-6)} | {r['accuracy']:.4f} | {_fmt_ratio(ratio)} "
                f"| {_fmt_s(r.get('warmup_s'))} | {'; '.join(note)} |"
            )
        L.append("")
        fast = [r for r in rows if r["kind"] == "fastnn" and "median_s" in r]
        prs = [r for r in rows if r["kind"] == "peer" and "median_s" in r]
        if fast and prs:
            L.append("Speed-up of each fastnn backend over each peer (peer time / fastnn time):")
            L.append("")
            L.append("| fastnn backend | " + " | ".join(_label(p) for p in prs) + " |")
            L.append("|---|" + "---:|" * len(prs))
            for f in fast:
                L.append(
                    f"| {_label(f)} | "
                    + " | ".join(_fmt_ratio(p["median_s"] / f["median_s"]) for p in prs)
                    + " |"
                )
            L.append("")
    ops = [r for r in res.get("ops", []) if "median_s" in r]
    if ops:
        L.append("## Ops: median time per call")
        L.append("")
        backends = [b for b in s["backends"] if any(r["backend"] == b for r in ops)]
        L.append(
            "| size | op | "
            + " | ".join(backends)
            + " | first call ("
            + ", ".join(backends)
            + ") |"
        )
        L.append("|---|---|" + "---:|" * len(backends) + "---|")
        keys = []
        for r in ops:
            if (r["size"], r["op"]) not in keys:
                keys.append((r["size"], r["op"]))
        for size, op in keys:
            cells, first = [], []
            for b in backends:
                r = next(
                    (x for x in ops if x["size"] == size and x["op"] == op and x["backend"] == b),
                    None,
                )
                cells.append(_fmt_s(r["median_s"]) if r else "-")
                first.append(_fmt_s(r.get("warmup_s")) if r else "-")
            L.append(f"| {size} | {op} | " + " | ".join(cells) + " | " + ", ".join(first) + " |")
        L.append("")
        L.append(
            "`train_step` is one minibatch step (SGD momentum 0.9) through the path `fit` uses; "
            "`gemm_floor` is that step's own matrix products alone on the same backend. "
            "Step / floor:"
        )
        L.append("")
        L.append("| size | " + " | ".join(backends) + " |")
        L.append("|---|" + "---:|" * len(backends))
        for size in s["sizes"]:
            cells = []
            for b in backends:
                st = next(
                    (
                        x
                        for x in ops
                        if x["size"] == size and x["op"] == "train_step" and x["backend"] == b
                    ),
                    None,
                )
                fl = next(
                    (
                        x
                        for x in ops
                        if x["size"] == size and x["op"] == "gemm_floor" and x["backend"] == "numpy"
                    ),
                    None,
                )
                cells.append(_fmt_ratio(st["median_s"] / fl["median_s"]) if st and fl else "-")
            L.append(f"| {size} | " + " | ".join(cells) + " |")
        L.append("")
        L.append(
            "(The floor is NumPy's, so the ratios compare every backend to the same BLAS work.)"
        )
        L.append("")
    sc = res.get("scaling")
    if sc and (sc.get("width") or sc.get("batch")):
        L.append("## Scaling: time per epoch")
        L.append("")
        L.append(f"![scaling](scaling.png)  {sc.get('data', '')}.")
        L.append("")
        for axis, title in (
            ("width", "hidden width w (11-w-w-1, batch 32)"),
            ("batch", "batch size (11-6-6-1)"),
        ):
            rows = [r for r in sc.get(axis, []) if "median_s" in r]
            if not rows:
                continue
            names = []
            for r in rows:
                if r["contender"] not in names:
                    names.append(r["contender"])
            labels = {r["contender"]: r["label"] for r in rows}
            L.append(f"Per epoch vs {title}:")
            L.append("")
            L.append(f"| {axis} | " + " | ".join(labels[n] for n in names) + " |")
            L.append("|---:|" + "---:|" * len(names))
            for x in sorted({r["x"] for r in rows}):
                cells = []
                for n in names:
                    r = next((q for q in rows if q["x"] == x and q["contender"] == n), None)
                    cells.append(_fmt_s(r["per_epoch_s"]) if r else "-")
                L.append(f"| {x} | " + " | ".join(cells) + " |")
            L.append("")
    co = res.get("crossover", {})
    if co.get("cases"):
        L.append("## Crossover: the fastest fastnn backend per case")
        L.append("")
        L.append(
            "| case | fastest | runner-up (its time / fastest) | fastest peer "
            "| that peer's time / fastest fastnn |"
        )
        L.append("|---|---|---|---|---:|")
        for c in co["cases"]:
            ru = f"{c['runner_up']} ({_fmt_ratio(c['margin'])})" if "runner_up" in c else "-"
            fastest = f"{c['fastest']} (tie)" if c.get("tie") else f"**{c['fastest']}**"
            fp = c.get("fastest_peer", "-")
            vs = _fmt_ratio(c["vs_fastest_peer"]) if "vs_fastest_peer" in c else "-"
            L.append(f"| {c['case']} | {fastest} | {ru} | {fp} | {vs} |")
        L.append("")
        slow = co.get("mean_slowdown_vs_fastest", {})
        worst = co.get("worst_slowdown_vs_fastest", {})
        L.append(
            f"Clear wins: {', '.join(f'{k} {v}' for k, v in co['wins'].items()) or 'none'}; "
            f"ties (within {TIE_FACTOR - 1:.0%}): {co.get('ties', 0)}. Mean / worst slowdown "
            "vs the fastest backend: "
            + ", ".join(f"{b} {_fmt_ratio(slow[b])} / {_fmt_ratio(worst.get(b))}" for b in slow)
            + f'. Suggested "auto" order on the CPU: **{", ".join(co["auto_order_cpu"]) or "-"}** '
            "(most clear wins first, then the smallest mean slowdown)."
        )
        L.append("")
    cold = res.get("cold_start")
    if cold:
        L.append("## Cold start: a fresh process trains the churn network for one epoch, twice")
        L.append("")
        L.append(
            "| backend | Numba cache | import | first fit (1 epoch) | second fit | compile (first - second) |"
        )
        L.append("|---|---|---:|---:|---:|---:|")
        for r in cold:
            if "error" in r:
                L.append(f"| {r['backend']} | {r['cache']} | failed: {r['error'][:60]} | | | |")
                continue
            L.append(
                f"| {r['backend']} | {r['cache']} | {_fmt_s(r['import_s'])} | {_fmt_s(r['first_fit_s'])} "
                f"| {_fmt_s(r['second_fit_s'])} | {_fmt_s(r['compile_s'])} |"
            )
        L.append("")
    L.append("## Notes")
    L.append("")
    L.append(
        "- Same recipe for everyone: the network above, relu hidden layers, Adam lr 1e-3, "
        "the same batch size and epochs, shuffled every epoch; sigmoid + binary cross-entropy "
        "(tiny) or softmax cross-entropy (mid, big). Accuracy is on held-out rows, so no one "
        "wins by learning less."
    )
    L.append(
        "- fastnn: `model.fit(verbose=0)`; warm-up is a one-epoch fit on four batches "
        "(Numba compilation or cache loading happens there)."
    )
    L.append(
        "- PyTorch idiomatic: DataLoader(shuffle=True), nn.Sequential, Adam, default threads. "
        "Tuned: randperm + slicing, zero_grad(set_to_none=True), fused Adam, inference_mode "
        "for evaluation, the faster of 1 thread and the default in a short probe."
    )
    L.append(
        "- scikit-learn: MLPClassifier(solver='adam', alpha=0, tol=0, n_iter_no_change past "
        "max_iter), so it runs exactly the epochs asked."
    )
    L.append(
        "- JAX: one jitted function per epoch (on-device shuffle, lax.scan over batches, "
        "optax Adam); compile time is the warm-up column. Keras 3: model.fit; its first epoch "
        "(trace and compile) is the warm-up column and the time is the median steady epoch "
        'times the epochs. "Keras 3, torch backend" runs the same in a separate '
        "worker process (Keras fixes its backend at import); only its own timings count."
    )
    blas_env = {
        k: v for k, v in res.get("threads", {}).get("env", {}).items() if k.startswith("OPENBLAS")
    }
    if blas_env:
        L.append(
            "- The environment sets "
            + ", ".join(f"{k}={v}" for k, v in blas_env.items())
            + ": NumPy's OpenBLAS (the matrix products of the numpy and numba backends) runs "
            "with that setting, so the BLAS-bound rows (mid, big, wide layers) depend on it."
        )
    for n in dict.fromkeys(notes):
        L.append(f"- {n}")
    L.append("")
    return "\n".join(L)


def plot_scaling(res: dict, path: Path) -> None:
    """``scaling.png``: time per epoch vs hidden width and vs batch size, one line per
    backend and scaling peer (log-log)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sc = res.get("scaling") or {}
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, axis, xlabel in (
        (axes[0], "width", "hidden width w (11-w-w-1, batch 32)"),
        (axes[1], "batch", "batch size (11-6-6-1)"),
    ):
        rows = [r for r in sc.get(axis, []) if "median_s" in r]
        names = list(dict.fromkeys(r["contender"] for r in rows))
        for name in names:
            pts = sorted(
                (r["x"], r["per_epoch_s"], r["label"], r["kind"])
                for r in rows
                if r["contender"] == name
            )
            xs, ys = [p[0] for p in pts], [p[1] for p in pts]
            style = "-o" if pts[0][3] == "fastnn" else "--s"
            ax.plot(xs, ys, style, label=pts[0][2], markersize=4)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        xs_all = sorted({r["x"] for r in rows})
        if xs_all:
            ax.set_xticks(xs_all)
            ax.set_xticklabels([str(x) for x in xs_all])
            ax.minorticks_off()
        ax.set_xlabel(xlabel)
        ax.set_ylabel("seconds per epoch")
        ax.grid(True, which="both", alpha=0.3)
        if names:
            ax.legend(fontsize=8)
    m = res["machine"]
    fig.suptitle(
        f"fastnn: time per epoch ({m['cpu']}, {m.get('usable_cpus', m['logical_cpus'])} cores; "
        f"{sc.get('data', '')})",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    return repr(o)


def write_results(res: dict, out: str | Path) -> dict[str, Path]:
    """Write ``results.json``, ``results.md`` and ``scaling.png`` into ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "json": out / "results.json",
        "md": out / "results.md",
        "png": out / "scaling.png",
    }
    paths["json"].write_text(json.dumps(res, indent=1, default=_json_default) + "\n")
    paths["md"].write_text(render_markdown(res))
    plot_scaling(res, paths["png"])
    return paths


# ====================================================================== the command
def _split_names(text: str) -> list[str]:
    return [t.strip().lower() for t in text.split(",") if t.strip()]


@click.command("bench")
@click.option("--quick", is_flag=True, help="About a minute: fewer epochs, repeats and sizes.")
@click.option(
    "--backends",
    default="all",
    show_default=True,
    help="Comma-separated fastnn backends, or 'all' for every one that works here.",
)
@click.option(
    "--peers/--no-peers",
    default=True,
    show_default=True,
    help="Also run the installed peers (PyTorch, scikit-learn, Keras 3, JAX).",
)
@click.option(
    "--only-peers",
    default=None,
    metavar="NAMES",
    help=f"Comma-separated subset of peers to run ({', '.join(PEERS)}).",
)
@click.option(
    "--epochs",
    type=click.IntRange(min=1),
    default=None,
    help="Epochs of the churn recipe (100; quick 10).",
)
@click.option(
    "--repeats",
    type=click.IntRange(min=1),
    default=None,
    help="Timed runs per contender (5, and 7 for mid/big; quick 1).",
)
@click.option(
    "--sizes",
    default=None,
    help="Comma-separated subset of tiny,mid,big for the training comparison.",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False),
    default="bench-results",
    show_default=True,
    help="Folder for results.json, results.md and scaling.png.",
)
@click.option("--smoke", is_flag=True, hidden=True, help="Seconds-long toy run (CI).")
def bench_command(quick, backends, peers, only_peers, epochs, repeats, sizes, out_dir, smoke):
    """Compare fastnn's backends with each other and with PyTorch, scikit-learn, Keras 3
    and JAX (each when installed): training time and test accuracy of the churn network
    and two larger ones, op timings, scaling with width and batch size, and which backend
    is fastest where. Writes results.json, results.md and scaling.png to --out.
    """
    import fastnn

    mode = "smoke" if smoke else "quick" if quick else "full"
    cfg = BenchConfig(mode=mode, **MODES[mode])
    status = fastnn.backend_status()
    if backends.strip().lower() in ("all", "auto", ""):
        cfg.backends = fastnn.available_backends()
    else:
        chosen = []
        for name in _split_names(backends):
            if name not in status:
                raise click.BadParameter(
                    f"unknown backend {name!r}; known: {', '.join(status)}", param_hint="--backends"
                )
            ok, reason = status[name]
            if not ok:
                raise click.BadParameter(
                    f"backend {name!r} is not available here: {reason}", param_hint="--backends"
                )
            chosen.append(name)
        cfg.backends = chosen
    if not peers:
        cfg.peers = []
    elif only_peers:
        cfg.peers = _split_names(only_peers)
        unknown = [p for p in cfg.peers if p not in PEERS]
        if unknown:
            raise click.BadParameter(
                f"unknown peer(s) {unknown}; known: {', '.join(PEERS)}", param_hint="--only-peers"
            )
    if epochs is not None:
        cfg.epochs = epochs
    if repeats is not None:
        cfg.repeats = repeats
        cfg.big_repeats = None
    if sizes:
        wanted = _split_names(sizes)
        bad = [w for w in wanted if w not in SIZES]
        if bad:
            raise click.BadParameter(
                f"unknown size(s) {bad}; known: tiny, mid, big", param_hint="--sizes"
            )
        cfg.sizes = tuple(wanted)
    results = run_benchmarks(cfg)
    args = sys.argv[sys.argv.index("bench") + 1 :] if "bench" in sys.argv else []
    results["command"] = " ".join(["fastnn bench", *(shlex.quote(a) for a in args)])
    paths = write_results(results, out_dir)
    co = results["crossover"]
    click.echo("")
    for r in results["fit"]:
        if "median_s" in r:
            click.echo(
                f"{r['case']:<5} {_label(r):<32} {_fmt_s(r['median_s']):>10}  acc {r['accuracy']:.4f}"
            )
    if co.get("auto_order_cpu"):
        click.echo(f"fastest fastnn backend order (for 'auto'): {', '.join(co['auto_order_cpu'])}")
    click.echo(f"wrote {paths['json']}, {paths['md']}, {paths['png']} ({results['wall_s']:.0f} s)")
