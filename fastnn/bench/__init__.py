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
  size, epochs and optimizer, and the test accuracy is reported next to the time.
  Warm-up and compilation are excluded from the training time and reported on their own.
* **ops**: one matrix product, the fused bias+activation forward and backward, one
  training step (SGD with momentum) and that step's own matrix products alone (the
  "GEMM floor"), per size and backend.
* **scaling**: time per epoch against hidden width (6 to 1024) and against batch size.
* **crossover**: which fastnn backend is fastest in each case; the order "auto" should
  try follows from it.
* **cold start**: a fresh process with an empty, then a warm, Numba cache.
* **BLAS environment**: where ``OPENBLAS_CORETYPE``/``OPENBLAS_L2_SIZE`` are set, the
  BLAS-bound cases once more with both unset, and which OpenBLAS kernel ran in each.

The modules, one concern each: :mod:`~fastnn.bench.cases` (networks, sizes, data),
:mod:`~fastnn.bench.ops` (op-level cases), :mod:`~fastnn.bench.timing` (timer, medians,
warm-up, device sync, cold-start probe), :mod:`~fastnn.bench.contenders` (fastnn as a
contender, and the only module that touches fastnn internals), :mod:`~fastnn.bench.peers`
(one module per peer library), :mod:`~fastnn.bench.worker` (contenders in their own
process), :mod:`~fastnn.bench.compare` (round-robin runs, ratios, crossover),
:mod:`~fastnn.bench.environment` (machine, versions, threads, BLAS),
:mod:`~fastnn.bench.blas` (the ``OPENBLAS_*``-unset variant),
:mod:`~fastnn.bench.suites` (the sections of a run), :mod:`~fastnn.bench.report` and
:mod:`~fastnn.bench.plot` (results.md, results.json, scaling.png) and
:mod:`~fastnn.bench.command` (what ``fastnn bench`` runs).

Only click, NumPy and the standard library are imported at module level; fastnn's
backends, pandas, matplotlib, threadpoolctl and every peer are imported when used.
``import fastnn`` and ``fastnn --help`` never import this package.
"""

from __future__ import annotations

from .cases import (
    SIZES,
    TOY_SIZES,
    Dataset,
    NetSpec,
    bench_backends,
    bench_sizes,
    build_model,
    churn_dataset,
    dataset_from_recipe,
    synthetic_dataset,
)
from .command import MODES, BenchConfig, run_benchmarks
from .contenders import Contender, Prepared, Task, Trained, fastnn_contender
from .environment import machine_info, thread_info, versions
from .ops import OPS, Case, op_case
from .peers import PEERS, peer_contenders
from .plot import plot_scaling
from .report import render_markdown, render_summary, write_results
from .timing import median_time, summarize, time_callable

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
    "bench_sizes",
    "build_model",
    "churn_dataset",
    "dataset_from_recipe",
    "fastnn_contender",
    "machine_info",
    "median_time",
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
