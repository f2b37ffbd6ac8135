"""The sections of a ``fastnn bench`` run: the training comparisons, the op timings, the
scaling sweeps and the cold start. Each returns the rows ``results.json`` keeps."""

from __future__ import annotations

from .blas import blas_bound, unset_contenders
from .cases import Dataset, NetSpec, churn_dataset, synthetic_dataset
from .compare import compare, log
from .contenders import Contender, Task
from .ops import op_case
from .timing import cold_start_pair, time_callable

__all__ = ["datasets", "run_cold_start", "run_fits", "run_ops", "run_scaling"]

#: The ops ``fastnn bench`` times per size and backend (``fit`` is the comparison).
BENCH_OPS = ("matmul", "bias_act_forward", "bias_act_backward", "train_step", "gemm_floor")


def datasets(cfg, sizes: dict[str, NetSpec]) -> dict[str, Dataset]:
    """Per fit size: the churn data for tiny (eight batches in smoke mode), seeded
    synthetic clusters of ``cfg.big_rows`` rows otherwise."""
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


def _with_variants(spec: NetSpec, contenders: list[Contender], variants: list[Contender]):
    return contenders + variants if blas_bound(spec) else contenders


def run_fits(cfg, sizes, data, contenders: list[Contender], echo) -> list[dict]:
    """The training comparison of every size in ``cfg.sizes``; the BLAS-bound sizes
    also run fastnn with the ``OPENBLAS_*`` variables unset (when they are set)."""
    rows: list[dict] = []
    variants = unset_contenders(cfg.backends)
    for size in cfg.sizes:
        spec = sizes[size]
        epochs = cfg.epochs if size == "tiny" else cfg.big_epochs
        repeats = cfg.repeats if size == "tiny" else (cfg.big_repeats or cfg.repeats)
        task = Task(size, spec, data[size], epochs, budget_s=cfg.slow_budget_s)
        log(
            f"fit {size}: {spec.describe()}, {epochs} epochs, {task.data.Xtr.shape[0]} rows, "
            f"{repeats} repeats",
            echo,
        )
        rows += compare(task, _with_variants(spec, contenders, variants), repeats, echo)
    return rows


def _op_row(cfg, size, spec, backend, op) -> dict:
    row = {"size": size, "backend": backend, "op": op, "network": spec.describe()}
    try:
        case = op_case(op, backend, spec)
        row["warmup_s"] = case.warmup_s
        row["info"] = case.info
        row.update(time_callable(case.fn, cfg.ops_repeats, cfg.ops_target_s))
    except Exception as exc:
        row["error"] = f"{type(exc).__name__}: {exc}"
    return row


def run_ops(cfg, sizes: dict[str, NetSpec], echo) -> list[dict]:
    """Per size, backend and op of :data:`BENCH_OPS`: the median time per call."""
    rows = []
    for size in cfg.sizes:
        for backend in cfg.backends:
            for op in BENCH_OPS:
                row = _op_row(cfg, size, sizes[size], backend, op)
                rows.append(row)
                what = (
                    f"{1e6 * row['median_s']:10.1f} us"
                    if "median_s" in row
                    else f"FAILED {row['error']}"
                )
                log(f"  [ops {size}] {backend:<6} {op:<18} {what}", echo)
    return rows


def run_scaling(cfg, contenders: list[Contender], echo) -> dict[str, list[dict]]:
    """Time per epoch vs hidden width (11-w-w-1, batch 32) and vs batch size (11-6-6-1),
    on ``scaling_rows`` synthetic rows with 11 features; the BLAS-bound widths also run
    fastnn with the ``OPENBLAS_*`` variables unset (when they are set)."""
    data = synthetic_dataset(cfg.scaling_rows, 256, 11, 1, seed=2)
    out: dict[str, list[dict]] = {"width": [], "batch": []}
    sweeps = [("width", w, NetSpec(f"width={w}", (11, w, w, 1), 32)) for w in cfg.widths]
    sweeps += [("batch", b, NetSpec(f"batch={b}", (11, 6, 6, 1), b)) for b in cfg.batches]
    variants = unset_contenders(cfg.backends)
    for axis, x, spec in sweeps:
        task = Task(spec.name, spec, data, cfg.scaling_epochs, budget_s=cfg.slow_budget_s)
        todo = _with_variants(spec, contenders, variants)
        for row in compare(task, todo, cfg.scaling_repeats, None):
            row["x"] = x
            out[axis].append(row)
            what = (
                f"{1e3 * row['per_epoch_s']:9.2f} ms/epoch"
                if "median_s" in row
                else f"FAILED {row.get('error')}"
            )
            log(f"  [scaling {spec.name}] {row['contender']:<16} {what}", echo)
    return out


def run_cold_start(backends: list[str], echo) -> list[dict]:
    """Compilation cost as a user meets it: per backend, a fresh process trains the
    churn network for one epoch twice, first with an empty Numba cache, then again with
    the cache that run left behind (:func:`~fastnn.bench.timing.cold_start_pair`)."""
    rows = []
    for backend in backends:
        try:
            pair = cold_start_pair(backend)
        except Exception as exc:
            pair = ({"error": f"{type(exc).__name__}: {exc}"},) * 2
        for label, probe in zip(("cold cache", "warm cache"), pair, strict=True):
            row = {"backend": backend, "cache": label, **probe}
            rows.append(row)
            if "error" in row:
                log(f"  [cold start] {backend} {label}: FAILED {row['error']}", echo)
            else:
                log(
                    f"  [cold start] {backend:<6} {label}: import {row['import_s']:.2f} s, "
                    f"backend {row['backend_s']:.2f} s, first fit {row['first_fit_s']:.2f} s, "
                    f"second {row['second_fit_s']:.3f} s",
                    echo,
                )
    return rows
