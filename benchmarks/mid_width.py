"""Mid-width networks on the Numba backend: the path rule, and fastnn against a jitted
JAX epoch.

Run: ``python benchmarks/mid_width.py [--quick] [--only SECTION ...]``. Writes
``benchmarks/results/mid_width.{md,json}``. Every number is a median of several runs
measured in this one run, contenders interleaved round-robin (a busy neighbour hits all
of them alike); the host's load average is recorded.

1. ``paths``: time per epoch of the fused epoch (11 -> w -> w -> 1 relu, sigmoid + BCE,
   Adam, float32, 8,192 rows) forced onto each compiled path: hand loops, the mid path
   on one BLAS thread and on BLAS's default threads, and the Python-driven BLAS path.
   The rule in ``fastnn/backends/numba_mid.py`` comes from this table.
2. ``headline``: the three cells of issue 15 (width 64 and 256 at batch 32, width 64 at
   batch 128) and the tutorial network (11-6-6-1, batch 32): ``model.fit`` on the
   Numba backend as the rule picks now ("after"), on the path main's rule picked
   ("before": hand loops or Python-driven BLAS, by ``handloop_limit``), and JAX's
   ``lax.scan`` epoch (``fastnn.bench``'s JAX peer, compile excluded).
3. ``scaling``: the same three contenders over widths 6-1024 (batch 32) and batch sizes
   8-2048 (widths 6 and 64).
4. ``bench``: ``fastnn bench``'s mid and big fits (1024-512-512-10 and 784-1024-1024-10,
   batch 256, softmax cross-entropy) on the same three contenders.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np

from fastnn import bench as B
from fastnn.bench.compare import compare as _compare
from fastnn.bench.peers.jax import prepare as _prepare_jax

RESULTS = Path(__file__).parent / "results"
ROWS = 8192
SCALING_ROWS = 4096  # as `fastnn bench --quick`; seconds are per epoch of these rows


# ---------------------------------------------------------------------------- helpers
@contextlib.contextmanager
def _env(name: str, value: str | None):
    old = os.environ.get(name)
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old


def main_rule_path(spec: B.NetSpec) -> str:
    """The path main's rule picked for ``spec``: hand loops or Python-driven BLAS."""
    from fastnn.backends.numba_backend import handloop_limit

    w = spec.widths
    macs = sum(a * b for a, b in zip(w[:-1], w[1:], strict=True))
    return "loops" if macs <= handloop_limit(spec.batch) else "blas"


def _forced_contender(name: str, label: str, path_of) -> B.Contender:
    """fastnn's ``fit`` on the Numba backend with ``FASTNN_NUMBA_PATH=path_of(spec)``."""
    base = B.fastnn_contender("numba")

    def prepare(task: B.Task) -> B.Prepared:
        path = path_of(task.spec)
        with _env("FASTNN_NUMBA_PATH", path):
            ready = base.prepare(task)

        def run() -> B.Trained:
            with _env("FASTNN_NUMBA_PATH", path):
                return ready.run()

        return B.Prepared(run, ready.warmup_s, {**ready.info, "forced": path})

    return B.Contender(name, label, "fastnn", prepare)


def contenders() -> list[B.Contender]:
    """fastnn now (the rule's pick), fastnn on main's path, and JAX."""
    return [
        _forced_contender("after", "fastnn numba (this branch, auto)", lambda spec: None),
        _forced_contender("before", "fastnn numba (main's rule)", main_rule_path),
        B.Contender("jax", "JAX lax.scan epoch + optax", "peer", _prepare_jax),
    ]


def compare(spec: B.NetSpec, data: B.Dataset, epochs: int, reps: int) -> dict:
    """Round-robin runs of every contender on ``spec``; per contender the median
    seconds per epoch, and the ratios JAX / fastnn."""
    task = B.Task(spec.name, spec, data, epochs)
    rows = {r["contender"]: r for r in _compare(task, contenders(), reps, None)}
    out = {"network": spec.describe(), "epochs": epochs, "reps": reps}
    for name, r in rows.items():
        if "error" in r:
            out[name] = {"error": r["error"]}
            continue
        out[name] = {
            "epoch_ms": 1e3 * r["per_epoch_s"],
            "accuracy": r["accuracy"],
            "path": r["info"].get("training_path") or r["info"].get("device"),
        }
    for name in ("after", "before"):
        if "epoch_ms" in out.get(name, {}) and "epoch_ms" in out.get("jax", {}):
            out[f"jax_over_{name}"] = out["jax"]["epoch_ms"] / out[name]["epoch_ms"]
    line = "  ".join(
        f"{n} {out[n]['epoch_ms']:9.2f} ms"
        for n in ("after", "before", "jax")
        if "epoch_ms" in out[n]
    )
    print(
        f"{spec.describe():<28} {line}  jax/after {out.get('jax_over_after', 0):.2f}x", flush=True
    )
    return out


def _epochs_for(spec: B.NetSpec) -> int:
    """Epochs per timed run: enough that one run lasts ~0.1 s or more."""
    w = spec.widths
    macs = sum(a * b for a, b in zip(w[:-1], w[1:], strict=True))
    return 1 if macs >= 60_000 else (2 if macs >= 4_000 else 5)


# ---------------------------------------------------------------------------- 1. paths
def _runner(width: int, dtype=np.float32):
    import fastnn
    from fastnn.layers import Dense

    m = fastnn.Sequential(
        [Dense(width, "relu"), Dense(width, "relu"), Dense(1, "sigmoid")],
        backend="numba",
        dtype=dtype,
    )
    m.compile(optimizer="adam", loss="binary_crossentropy")
    m.build(11, seed=0)
    m.optimizer.build(m.backend, m.theta.size, m.dtype)
    return m.backend.epoch_runner(m, m.loss, m.optimizer)


def _path_timer(runner, path: str, X, yp, batch: int):
    """A callable training one epoch on ``path`` (``mid1``: the mid path on one BLAS
    thread; ``mid``: on BLAS's default threads, whatever the rule would pick)."""
    from fastnn.backends import numba_mid

    threads = {"mid1": 1, "mid": None}.get(path)

    def run():
        runner.forced = path.rstrip("1")
        rule = numba_mid.blas_threads
        numba_mid.blas_threads = lambda macs, bs: threads
        try:
            runner.run(X, yp, None, batch, np.random.default_rng(1))
        finally:
            numba_mid.blas_threads = rule

    return run


def paths(cells, reps: int) -> list[dict]:
    """Median ms per epoch of each compiled path, per (width, batch) of ``cells``."""
    from fastnn.backends.numba_mid import LOOPS_MAX_MACS_PER_ROW

    rng = np.random.default_rng(0)
    X = rng.standard_normal((ROWS, 11)).astype(np.float32)
    y = (rng.random(ROWS) < 0.3).astype(np.float32).reshape(-1, 1)
    rows = []
    for w in sorted({c[0] for c in cells}):
        runner = _runner(w)
        macs = runner.plan.macs_per_row
        for batch in [b for c, b in cells if c == w]:
            names = ["mid1", "mid", "blas"]
            if macs <= 30 * LOOPS_MAX_MACS_PER_ROW:
                names.insert(0, "loops")
            n = ROWS if macs * batch < 1 << 22 else ROWS // 4  # wide: time a quarter
            fns = {p: _path_timer(runner, p, X[:n], y[:n], batch) for p in names}
            times = {p: [] for p in names}
            for fn in fns.values():
                fn()  # warm-up: compilation, caches
            for _ in range(reps):
                for p, fn in fns.items():
                    t = time.perf_counter()
                    fn()
                    times[p].append((time.perf_counter() - t) * 1e3 * ROWS / n)
            med = {p: statistics.median(v) for p, v in times.items()}
            runner.forced = None
            row = {"width": w, "batch": batch, "macs_per_row": macs, "epoch_ms": med}
            row["fastest"] = min(med, key=med.get)
            row["chosen"] = runner._path(batch)
            rows.append(row)
            print(
                f"paths w={w:5d} B={batch:5d} "
                + "  ".join(f"{p} {v:9.2f}" for p, v in med.items())
                + f"  fastest {row['fastest']}  chosen {row['chosen']}",
                flush=True,
            )
    return rows


# ---------------------------------------------------------------------------- 2-4.
HEADLINE = [(64, 32), (256, 32), (64, 128), (6, 32)]


def headline(reps: int) -> list[dict]:
    data = B.synthetic_dataset(ROWS, 256, 11, 1, seed=2)
    out = []
    for w, batch in HEADLINE:
        spec = B.NetSpec(f"11-{w}-{w}-1/{batch}", (11, w, w, 1), batch)
        out.append(compare(spec, data, _epochs_for(spec), reps))
    return out


def scaling(widths, batches, reps: int) -> dict:
    data = B.synthetic_dataset(SCALING_ROWS, 256, 11, 1, seed=2)
    res = {"width": [], "batch": []}
    for w in widths:
        spec = B.NetSpec(f"width={w}", (11, w, w, 1), 32)
        res["width"].append({"x": w, **compare(spec, data, _epochs_for(spec), reps)})
    for w in (6, 64):
        for b in batches:
            spec = B.NetSpec(f"w{w}/batch={b}", (11, w, w, 1), b)
            res["batch"].append({"x": b, "w": w, **compare(spec, data, _epochs_for(spec), reps)})
    return res


def bench_fits(reps: int) -> list[dict]:
    out = []
    for name in ("mid", "big"):
        spec = B.SIZES[name]
        data = B.synthetic_dataset(4096, 1024, spec.widths[0], spec.widths[-1], seed=1)
        out.append({"case": name, **compare(spec, data, 2, reps)})
    return out


# ---------------------------------------------------------------------------- report
def _ms(cell: dict, name: str) -> str:
    v = cell.get(name, {})
    return f"{v['epoch_ms']:.2f}" if "epoch_ms" in v else v.get("error", "-")


def _ratio(cell: dict, key: str) -> str:
    return f"{cell[key]:.2f}x" if key in cell else "-"


def _target(cell: dict) -> str:
    goal = 2.0 if cell["network"].startswith("11-6-6-1") else 1.2
    r = cell.get("jax_over_after")
    if r is None:
        return f"{cell['network']}: not measured"
    return f"{cell['network']}: {r:.2f}x vs >= {goal}x {'met' if r >= goal else 'NOT met'}"


def _comparison_table(cells, first: str) -> list[str]:
    lines = [
        f"| {first} | before (main) ms | after ms | JAX ms | JAX / before | JAX / after |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for c in cells:
        lines.append(
            f"| {c['network']} | {_ms(c, 'before')} | {_ms(c, 'after')} | {_ms(c, 'jax')} | "
            f"{_ratio(c, 'jax_over_before')} | {_ratio(c, 'jax_over_after')} |"
        )
    return lines


def render(res: dict) -> str:
    lines = [
        "# Mid-width networks: the Numba paths and JAX",
        "",
        f"Machine: {res['machine']}; shared with other jobs while measured (load average "
        f"1 min at start/end: {res['load_start']:.2f} / {res['load_end']:.2f}), so "
        "absolute times are noisy: every number is a median of the stated runs, and the "
        "contenders of a row ran interleaved (round-robin) in one process, so ratios are "
        "same-run ratios. `python benchmarks/mid_width.py`.",
        "",
        "Times are ms per epoch of 8,192 rows (11 -> w -> w -> 1 relu, sigmoid + BCE, Adam "
        "lr 1e-3, float32, `model.fit(verbose=0)`); JAX is `fastnn.bench`'s peer: one "
        "jitted function per epoch (on-device shuffle, `lax.scan` over the minibatches, "
        "optax Adam), compile excluded. *before* is the Numba backend on the path main's "
        "rule picks (hand loops or Python-driven BLAS products), *after* the path this "
        "branch's rule picks. main's Python-driven BLAS path runs NumPy's OpenBLAS on "
        "every core: on a machine other jobs keep busy its threads spin-wait for a core "
        "and it slows down by 10-100x (the issue measured 97.9 ms for 11-256-256-1/32 on "
        "a quieter day), which is why *before* varies so much between runs.",
        "",
    ]
    if "headline" in res:
        lines += ["## Issue 15's cells and the tutorial network", ""]
        lines += _comparison_table(res["headline"], "network")
        lines += [
            "",
            "Targets (JAX / after): " + "; ".join(_target(c) for c in res["headline"]),
            "",
        ]
    if "scaling" in res:
        lines += [
            "## Scaling sweep (11 -> w -> w -> 1, 4,096 rows: ms per epoch of 4,096 rows)",
            "",
        ]
        cells = res["scaling"]["width"] + res["scaling"]["batch"]
        lines += _comparison_table(cells, "network")
        ok = [c for c in cells if c.get("jax_over_after", 0) >= 1.0]
        lines += [
            "",
            f"At least as fast as JAX (JAX / after >= 1) in {len(ok)} of {len(cells)} cells.",
            "",
        ]
    if "bench" in res:
        lines += ["## `fastnn bench`'s mid and big fits (4,096 rows, softmax CE)", ""]
        lines += _comparison_table(res["bench"], "network")
        lines.append("")
    if "paths" in res:
        lines += [
            "## The compiled paths (ms per epoch, medians)",
            "",
            "`loops`: hand loops; `mid1`: BLAS inside the compiled epoch, one thread; "
            "`mid`: the same on BLAS's default threads; `blas`: Python loop over BLAS "
            "calls. *chosen* is this branch's rule.",
            "",
            "| width | batch | MACs/row | loops | mid1 | mid | blas | fastest | chosen |",
            "|---:|---:|---:|---:|---:|---:|---:|---|---|",
        ]
        for r in res["paths"]:
            t = r["epoch_ms"]
            cells = " | ".join(
                f"{t[p]:.2f}" if p in t else "-" for p in ("loops", "mid1", "mid", "blas")
            )
            lines.append(
                f"| {r['width']} | {r['batch']} | {r['macs_per_row']} | {cells} | "
                f"{r['fastest']} | {r['chosen']} |"
            )
        lines.append("")
    return "\n".join(lines)


SECTIONS = ("paths", "headline", "scaling", "bench")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer cells and repetitions")
    ap.add_argument("--only", nargs="*", choices=SECTIONS, default=list(SECTIONS))
    args = ap.parse_args(argv)
    reps = 3 if args.quick else 5
    path = RESULTS / "mid_width.json"
    keep = path.exists() and set(args.only) != set(SECTIONS)  # merge into the last results
    res = json.loads(path.read_text()) if keep else {}
    import numba

    res["machine"] = f"{os.cpu_count()} CPUs, numpy {np.__version__}, numba {numba.__version__}"
    res["load_start"], res["reps"] = os.getloadavg()[0], reps
    widths = (6, 64, 256, 1024) if args.quick else (6, 16, 32, 64, 128, 256, 512, 1024)
    batches = (8, 128, 2048) if args.quick else (8, 32, 128, 512, 2048)
    cells = [(w, b) for w in (6, 16, 64, 256) for b in (8, 32, 128, 2048)]
    cells += [(1024, 32), (1024, 2048)]
    if "paths" in args.only:
        res["paths"] = paths(cells[::3] if args.quick else cells, reps)
    if "headline" in args.only:
        res["headline"] = headline(reps)
    if "scaling" in args.only:
        res["scaling"] = scaling(widths, batches, reps)
    if "bench" in args.only:
        res["bench"] = bench_fits(3 if args.quick else 5)
    res["load_end"] = os.getloadavg()[0]
    RESULTS.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(res, indent=2))
    (RESULTS / "mid_width.md").write_text(render(res))
    print(f"wrote {path} and mid_width.md", flush=True)


if __name__ == "__main__":
    main()
