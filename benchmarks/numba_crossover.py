"""Numba backend measurements: the loops/BLAS crossover, the churn recipe, compilation,
and the BLAS-bound step against its own GEMMs.

Run: ``python benchmarks/numba_crossover.py [--quick] [--only SECTION ...] [--out DIR]``.
Writes ``benchmarks/results/numba_crossover.{md,json,png}`` (or into ``--out``). Every timing is the median of
several repetitions measured in this one run (and the host's load average is recorded,
since a busy neighbour inflates BLAS timings most).

1. Crossover: a ``d_in=32 -> w -> w -> 1`` network (relu, sigmoid + BCE, Adam) at several
   batch sizes; time per step of the fused epoch forced onto hand loops
   (``FASTNN_NUMBA_PATH=loops``) and onto BLAS products (``=blas``). The rule in
   ``fastnn/backends/numba_backend.py`` (``handloop_limit``) comes from here.
2. Churn recipe (11 -> 6 relu -> 6 relu -> 1 sigmoid, Adam 1e-3, BCE, batch 32, 8000
   rows, 100 epochs): ``model.fit(..., verbose=0)`` on the numba and numpy backends.
3. Compilation: a fresh ``NUMBA_CACHE_DIR`` in a subprocess (first-ever compile), then the
   same cache again (load only).
4. 784-1024-1024-10 (relu, softmax cross-entropy, SGD momentum 0.9, batch 256): time per
   training step on both backends vs the eight float32 NumPy GEMMs of that step.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np

import fastnn
from fastnn import optimizers as O
from fastnn.bench import SIZES, Task, churn_dataset, fastnn_contender
from fastnn.bench.compare import compare
from fastnn.bench.contenders import (
    force_path,
    fused_runner,
    handloop_rule,
    macs_per_row,
    prepared_targets,
)
from fastnn.bench.timing import cold_start_pair, interleaved_times, median_time
from fastnn.layers import Dense

RESULTS = Path(__file__).parent / "results"


# ---------------------------------------------------------------------------- 1. crossover
def crossover(batches, widths, reps: int) -> list[dict]:
    """Time per step of the loops and BLAS paths for each (batch, width)."""
    rows = []
    rng = np.random.default_rng(0)
    d_in = 32
    for B in batches:
        n = max(B * 16, 2048)
        X = rng.standard_normal((n, d_in)).astype(np.float32)
        y = (rng.random(n) < 0.3).astype(np.float32)
        for w in widths:
            m = fastnn.Sequential(
                [Dense(w, "relu"), Dense(w, "relu"), Dense(1, "sigmoid")], backend="numba"
            )
            m.compile(optimizer="adam", loss="binary_crossentropy")
            m.build(d_in, seed=0)
            runner = fused_runner(m)
            yp = prepared_targets(m, y, 1)
            steps = -(-n // B)
            res = {"batch": B, "width": w, "macs_per_row": macs_per_row(runner)}
            for path in ("loops", "blas"):
                force_path(runner, path)
                epoch_rng = np.random.default_rng(1)
                t = median_time(
                    lambda r=runner, X=X, yp=yp, B=B, g=epoch_rng: r.run(X, yp, None, B, g), reps
                )
                res[f"{path}_us_per_step"] = t / steps * 1e6
            force_path(runner, None)
            res["faster"] = (
                "loops" if res["loops_us_per_step"] <= res["blas_us_per_step"] else "blas"
            )
            rows.append(res)
            print(
                f"crossover B={B:5d} w={w:5d} macs/row={res['macs_per_row']:7d} "
                f"loops {res['loops_us_per_step']:9.1f} us  blas {res['blas_us_per_step']:9.1f} us"
                f"  faster {res['faster']}",
                flush=True,
            )
    return rows


# ---------------------------------------------------------------------------- 2. churn
def churn(reps: int, epochs: int = 100) -> dict:
    """fit() time of the churn recipe on both CPU backends, round-robin, medians
    (``fastnn bench``'s comparison, with the fastnn contenders only)."""
    task = Task("tiny", SIZES["tiny"], churn_dataset(), epochs)
    rows = compare(task, [fastnn_contender(b) for b in ("numba", "numpy")], reps, None)
    out = {}
    for row in rows:
        if "error" in row:
            raise RuntimeError(f"{row['contender']}: {row['error']}")
        out[row["contender"].removeprefix("fastnn-")] = {
            "accuracy": row["accuracy"],
            "path": row["info"].get("training_path"),
            "fit_seconds_median": row["median_s"],
            "fit_seconds_all": row["samples_s"],
            "us_per_step": row["per_step_us"],
        }
    out["speedup_numba_over_numpy"] = (
        out["numpy"]["fit_seconds_median"] / out["numba"]["fit_seconds_median"]
    )
    print(
        f"churn fit {epochs} epochs: numba {out['numba']['fit_seconds_median']:.3f} s, "
        f"numpy {out['numpy']['fit_seconds_median']:.3f} s, "
        f"acc {out['numba']['accuracy']:.4f}/{out['numpy']['accuracy']:.4f}",
        flush=True,
    )
    return out


# ---------------------------------------------------------------------------- 3. compile
def compile_cost(rows: int = 8000) -> dict:
    """First-ever compile (empty cache) and cached load, each in a fresh process
    (``fastnn bench``'s cold-start probe on the numba backend)."""
    cold, warm = cold_start_pair("numba", rows)
    for probe in (cold, warm):
        if "error" in probe:
            raise RuntimeError(f"cold-start probe failed: {probe['error']}")
    out = {
        "first_compile_s": cold["compile"]["seconds"],
        "first_fit_1_epoch_cold_s": cold["first_fit_s"],
        "cached_load_s": warm["first_fit_s"] - warm["second_fit_s"],
        "first_fit_1_epoch_cached_s": warm["first_fit_s"],
        "import_fastnn_and_numba_s": warm["import_s"] + warm["backend_s"],
        "announced_cold": cold["announced"],
        "announced_cached": warm["announced"],
        "compilations_cached_run": warm["compile"]["count"],
    }
    print(
        f"compile: first-ever {out['first_compile_s']:.2f} s, cached load "
        f"{out['cached_load_s']:.3f} s",
        flush=True,
    )
    return out


# ---------------------------------------------------------------------------- 4. BLAS-bound
def blas_bound(reps: int, steps: int = 20) -> dict:
    """784-1024-1024-10 step time on both backends vs its eight NumPy GEMMs."""
    B = 256
    dims = [784, 1024, 1024, 10]
    rng = np.random.default_rng(0)
    X = rng.standard_normal((B * steps, dims[0])).astype(np.float32)
    y = rng.integers(0, 10, B * steps)
    Ws = [rng.standard_normal((dims[i], dims[i + 1])).astype(np.float32) * 0.03 for i in range(3)]
    Xb = X[:B]
    Zs = [np.empty((B, d), np.float32) for d in dims[1:]]
    dWs = [np.empty_like(W) for W in Ws]
    dAs = [np.empty((B, d), np.float32) for d in dims[:-1]]

    def gemms():
        for _ in range(steps):
            np.matmul(Xb, Ws[0], out=Zs[0])
            np.matmul(Zs[0], Ws[1], out=Zs[1])
            np.matmul(Zs[1], Ws[2], out=Zs[2])
            np.matmul(Zs[1].T, Zs[2], out=dWs[2])
            np.matmul(Zs[2], Ws[2].T, out=dAs[2])
            np.matmul(Zs[0].T, dAs[2], out=dWs[1])
            np.matmul(dAs[2], Ws[1].T, out=dAs[1])
            np.matmul(Xb.T, dAs[1], out=dWs[0])

    models = {}
    for be in ("numba", "numpy"):
        m = fastnn.Sequential(
            [Dense(1024, "relu"), Dense(1024, "relu"), Dense(10, "softmax")], backend=be
        )
        m.compile(optimizer=O.SGD(0.01, momentum=0.9), loss="sparse_categorical_crossentropy")
        models[be] = m

    def epoch(m):
        m.fit(X, y, batch_size=B, epochs=1, verbose=0, shuffle=False, seed=0)

    fns = {"gemm": gemms}
    fns.update({be: (lambda m=m: epoch(m)) for be, m in models.items()})
    # interleaved, re-measured when a noisy neighbour stalled BLAS
    times = {k: [t / steps * 1e3 for t in v] for k, v in interleaved_times(fns, reps).items()}
    med = {k: float(np.median(v)) for k, v in times.items()}
    out = {
        "gemm_ms_per_step": med["gemm"],
        "numba_ms_per_step": med["numba"],
        "numpy_ms_per_step": med["numpy"],
        "numba_ratio": med["numba"] / med["gemm"],
        "numpy_ratio": med["numpy"] / med["gemm"],
        "numba_path": models["numba"].training_path,
        "numpy_path": models["numpy"].training_path,
        "all_ms": times,
    }
    print(
        f"BLAS-bound step: gemm {med['gemm']:.2f} ms, numba {out['numba_ratio']:.3f}x, "
        f"numpy {out['numpy_ratio']:.3f}x",
        flush=True,
    )
    return out


# ---------------------------------------------------------------------------- report
def _crossover_lines(res: dict) -> list[str]:
    lines = [
        "# Numba backend: crossover, churn, compilation, BLAS-bound step",
        "",
        f"Machine: {res['machine']}. Load average (1 min) at start/end of the last run: "
        f"{res['load_start']:.2f} / {res['load_end']:.2f}. Medians of {res['reps']} "
        "repetitions (a cell whose spread exceeded 1.5x was re-measured, up to 3 times), "
        "by `python benchmarks/numba_crossover.py`; each section's numbers come from one "
        "run of it.",
        "",
        "## Hand loops vs BLAS (fused epoch, d_in=32 -> w -> w -> 1, Adam, float32)",
        "",
        "| batch | width | MACs/row | loops us/step | BLAS us/step | faster | chosen |",
        "|---:|---:|---:|---:|---:|---|---|",
    ]
    handloop_limit = handloop_rule()["limit"]
    for r in res["crossover"]:  # "chosen" by the rule as it is now
        r["chosen"] = "loops" if r["macs_per_row"] <= handloop_limit(r["batch"]) else "blas"
        lines.append(
            f"| {r['batch']} | {r['width']} | {r['macs_per_row']} | "
            f"{r['loops_us_per_step']:.1f} | {r['blas_us_per_step']:.1f} | {r['faster']} | "
            f"{r['chosen']} |"
        )
    return lines + [
        "",
        f"Rule (`handloop_limit` in `fastnn/backends/numba_backend.py`): hand loops when "
        f"the Dense layers' `sum(d_in * d_out)` (multiply-adds per row) is at most "
        f"{res['threshold_macs_per_row']} x sqrt(min(1, {res['threshold_batch_knee']} / "
        "batch_size)), BLAS above. Up to a batch of 128 the crossover sits at a fixed "
        "number of multiply-adds *per row* (the loops vectorise over the batch, so their "
        "cost per row is flat, while a BLAS step pays a fixed Python/BLAS-call overhead per "
        "layer that only wider layers amortise); at bigger batches BLAS amortises that "
        "overhead over more rows and takes over earlier. The churn network (108 "
        "multiply-adds per row) is far on the loops side at any batch size.",
        "",
    ]


def _churn_lines(c: dict) -> list[str]:
    lines = [
        "## Churn recipe, `fit(..., verbose=0)`, 100 epochs (25,000 steps)",
        "",
        "| backend | fit s (median) | us/step | test accuracy | path |",
        "|---|---:|---:|---:|---|",
    ]
    for be in ("numba", "numpy"):
        lines.append(
            f"| {be} | {c[be]['fit_seconds_median']:.3f} | {c[be]['us_per_step']:.2f} | "
            f"{c[be]['accuracy']:.4f} | {c[be]['path']} |"
        )
    return lines + ["", f"numba is {c['speedup_numba_over_numpy']:.1f}x the numpy backend.", ""]


def _compile_lines(k: dict) -> list[str]:
    return [
        "## Compilation (churn network, float32)",
        "",
        f"- first-ever compile (empty `NUMBA_CACHE_DIR`): {k['first_compile_s']:.2f} s "
        f"(first 1-epoch fit {k['first_fit_1_epoch_cold_s']:.2f} s); announced once on "
        f"stderr: {k['announced_cold']}",
        f"- cached load: {k['cached_load_s']:.3f} s (first 1-epoch fit in a fresh process "
        f"with a warm cache {k['first_fit_1_epoch_cached_s']:.3f} s; compilations: "
        f"{k['compilations_cached_run']}; announced: {k['announced_cached']})",
        f"- `import fastnn` + Numba backend module: {k['import_fastnn_and_numba_s']:.2f} s",
        "",
    ]


def _blas_lines(b: dict) -> list[str]:
    return [
        "## BLAS-bound step (784-1024-1024-10, relu, softmax CE, SGD momentum, batch 256)",
        "",
        "| | ms/step (median) | ratio to GEMMs |",
        "|---|---:|---:|",
        f"| eight NumPy float32 GEMMs | {b['gemm_ms_per_step']:.2f} | 1.000 |",
        f"| numba backend ({b['numba_path']}) | {b['numba_ms_per_step']:.2f} | "
        f"{b['numba_ratio']:.3f} |",
        f"| numpy backend ({b['numpy_path']}) | {b['numpy_ms_per_step']:.2f} | "
        f"{b['numpy_ratio']:.3f} |",
        "",
    ]


def _plot(res: dict, path: Path) -> None:
    try:
        import matplotlib
    except ImportError:
        return
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for i, B in enumerate(sorted({r["batch"] for r in res["crossover"]})):
        rs = [r for r in res["crossover"] if r["batch"] == B]
        x = [r["macs_per_row"] for r in rs]
        c = f"C{i}"
        ax.plot(x, [r["loops_us_per_step"] / B for r in rs], "o-", c=c, label=f"loops, B={B}")
        ax.plot(x, [r["blas_us_per_step"] / B for r in rs], "s--", c=c, label=f"BLAS, B={B}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("multiply-adds per row (sum of d_in*d_out)")
    ax.set_ylabel("us per row per step")
    ax.set_title("fused numba epoch: hand loops vs BLAS")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_report(res: dict, out: Path = RESULTS) -> None:
    """``numba_crossover.{json,md,png}`` in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "numba_crossover.json").write_text(json.dumps(res, indent=2))
    lines = _crossover_lines(res)
    lines += _churn_lines(res["churn"]) + _compile_lines(res["compile"])
    lines += _blas_lines(res["blas_bound"])
    (out / "numba_crossover.md").write_text("\n".join(lines))
    _plot(res, out / "numba_crossover.png")


SECTIONS = ("compile", "crossover", "churn", "blas")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer sizes and repetitions")
    ap.add_argument(
        "--only",
        nargs="*",
        choices=SECTIONS,
        default=list(SECTIONS),
        help="measure only these sections; the others are kept from the last results file",
    )
    ap.add_argument("--out", type=Path, default=RESULTS, help=f"results folder ({RESULTS})")
    args = ap.parse_args(argv)
    rule = handloop_rule()
    reps = 3 if args.quick else 5
    path = args.out / "numba_crossover.json"
    res = json.loads(path.read_text()) if path.exists() and set(args.only) != set(SECTIONS) else {}
    res.update(
        {
            "machine": f"{os.cpu_count()} CPUs, numpy {np.__version__}, "
            f"numba {__import__('numba').__version__}",
            "load_start": os.getloadavg()[0],
            "reps": reps,
            "threshold_macs_per_row": rule["max_macs_per_row"],
            "threshold_batch_knee": rule["batch_knee"],
        }
    )
    batches = [32, 256] if args.quick else [8, 32, 128, 512]
    widths = [6, 32, 64, 128] if args.quick else [6, 16, 32, 48, 64, 96, 128, 256]
    if "compile" in args.only:
        res["compile"] = compile_cost()
    if "crossover" in args.only:
        res["crossover"] = crossover(batches, widths, reps)
    if "churn" in args.only:
        res["churn"] = churn(3)
    if "blas" in args.only:
        res["blas_bound"] = blas_bound(reps)
    res["load_end"] = os.getloadavg()[0]
    if all(k in res for k in ("compile", "crossover", "churn", "blas_bound")):
        write_report(res, args.out)
    else:
        print(json.dumps(res, indent=2, default=str))


if __name__ == "__main__":
    main()
