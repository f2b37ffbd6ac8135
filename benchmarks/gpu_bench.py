"""GPU benchmark: fastnn's CuPy backend (CUDA-graph path and eager per-layer path) against
PyTorch eager and PyTorch replaying a captured CUDA graph, on the same card.

Cases (issue 14): the churn recipe (11-6-6-1, batch 32, Adam, 100 epochs), mid
1024-512-512-10 at batch 256 and big 1024-4096-4096-4096-10 at batch 4096 (softmax
cross-entropy on seeded synthetic clusters). TF32 is off on both sides. Every contender
trains a fresh model per repeat after a warm-up (capture, compile, allocator) that is
reported on its own; the device is synchronized before each clock read; medians.
Contenders too slow for the whole run (eager churn) train fewer epochs and are scaled,
and say so. A time budget (``--budget-s``) bounds the run: what does not fit is
recorded as skipped. Also measures our tiled GEMM against cuBLAS per layer shape (the
crossover of ``fastnn.backends.cupy_graph.OWN_GEMM_MAX_MACS``).

    python benchmarks/gpu_bench.py --out OUTDIR            # on a GPU machine
    python benchmarks/gpu_bench.py --dry-run --out /tmp/x  # CPU, toy sizes: checks the script

Writes OUTDIR/results.json and OUTDIR/results.md.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

from fastnn.bench import NetSpec, build_model, churn_dataset, synthetic_dataset


@dataclasses.dataclass(frozen=True)
class GpuCase:
    """A benchmark case: network, rows, epochs timed, repeats, and the epochs the slow
    (eager) contenders train before their time is scaled to ``epochs``."""

    spec: NetSpec
    n_train: int
    epochs: int
    repeats: int
    slow_epochs: int

    @property
    def n_batches(self) -> int:
        """Steps per epoch (whole batches only)."""
        return self.n_train // self.spec.batch


CASES = {
    "churn": GpuCase(NetSpec("churn", (11, 6, 6, 1), 32), 8000, 100, 3, 10),
    "mid": GpuCase(NetSpec("mid", (1024, 512, 512, 10), 256), 256 * 40, 5, 3, 5),
    "big": GpuCase(NetSpec("big", (1024, 4096, 4096, 4096, 10), 4096), 4096 * 8, 2, 2, 2),
}
#: toy versions for --dry-run (CPU): the same code paths in seconds
DRY_CASES = {
    "churn": GpuCase(NetSpec("churn", (11, 6, 6, 1), 32), 32 * 8, 2, 1, 1),
    "mid": GpuCase(NetSpec("mid", (32, 16, 16, 10), 16), 16 * 8, 2, 1, 1),
    "big": GpuCase(NetSpec("big", (24, 32, 32, 32, 10), 32), 32 * 4, 1, 1, 1),
}
#: fastnn-graph: the CUDA-graph runner as its crossover picks the products;
#: fastnn-cublas: the same runner with every product on cuBLAS (eager launches);
#: fastnn-cublas-graph: every product on cuBLAS called so that the graph captures it
#: (experimental); fastnn-eager: the CuPy backend's per-layer path
CONTENDERS = (
    "fastnn-graph",
    "fastnn-cublas-graph",
    "fastnn-cublas",
    "fastnn-eager",
    "torch-eager",
    "torch-graph",
)
LEARNING_RATE = 1e-3


class Budget:
    """Seconds left of the run; cases and contenders check it before they start."""

    def __init__(self, seconds: float):
        self.deadline = time.perf_counter() + seconds

    def left(self) -> float:
        return self.deadline - time.perf_counter()


# ============================================================================ data
def case_data(name: str, case: GpuCase):
    """``(Xtr, ytr, Xte, yte)`` float32 (binary labels float32, classes int64)."""
    if name == "churn":
        d = churn_dataset(np.float32)
    else:
        w = case.spec.widths
        d = synthetic_dataset(case.n_train, 2048, w[0], w[-1], seed=0)
    n = min(len(d.Xtr), case.n_train) // case.spec.batch * case.spec.batch  # whole batches
    return d.Xtr[:n], d.ytr[:n], d.Xte, d.yte


def _accuracy(P, y) -> float:
    """Test accuracy from probabilities ``(n, 1)`` (threshold 0.5) or ``(n, k)``."""
    P = np.asarray(P)
    pred = P.argmax(axis=1) if P.shape[1] > 1 else (P[:, 0] >= 0.5)
    return float(np.mean(pred.astype(np.int64) == np.asarray(y).reshape(-1).astype(np.int64)))


# ============================================================================ fastnn
def _fastnn_model(spec: NetSpec, backend: str):
    return build_model(spec, backend, optimizer="adam", dtype="float32", seed=0)


@contextlib.contextmanager
def _env(name: str, value: str | None):
    old = os.environ.get(name)
    if value is not None:
        os.environ[name] = value
    try:
        yield
    finally:
        if value is not None and old is None:
            del os.environ[name]
        elif value is not None:
            os.environ[name] = old


def run_fastnn(case: GpuCase, data, epochs: int, graph: bool, backend: str, gemm=None):
    """One repeat: fresh model, 1 warm-up epoch, ``epochs`` timed epochs of ``fit``."""
    import fastnn

    Xtr, ytr, Xte, yte = data
    be = fastnn.get_backend(backend)
    model = _fastnn_model(case.spec, backend)
    # the CuPy backend hands fit its CUDA-graph runner unless FASTNN_CUPY_GRAPH=0
    with _env("FASTNN_CUPY_GRAPH", "1" if graph else "0"), _env("FASTNN_CUPY_GEMM", gemm):
        t0 = time.perf_counter()
        model.fit(Xtr, ytr, batch_size=case.spec.batch, epochs=1, verbose=0, seed=1)
        be.synchronize()
        warm = time.perf_counter() - t0
        t0 = time.perf_counter()
        model.fit(Xtr, ytr, batch_size=case.spec.batch, epochs=epochs, verbose=0, seed=2)
        be.synchronize()
        seconds = time.perf_counter() - t0
    acc = _accuracy(model.predict(Xte), yte)
    return {"seconds": seconds, "warmup_s": warm, "accuracy": acc, "path": model.training_path}


# ============================================================================ torch
def _torch_setup(device: str):
    import torch

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    return torch


def _torch_parts(case: GpuCase, data, device: str, capturable: bool):
    torch = _torch_setup(device)
    if device == "cpu":
        torch.set_num_threads(1)  # dry run: toy sizes, shared machines
    Xtr, ytr, _, _ = data
    torch.manual_seed(0)
    widths = case.spec.widths
    mods = []
    for i in range(len(widths) - 1):  # relu between Linear layers, logits out
        mods += [torch.nn.Linear(widths[i], widths[i + 1])] + [torch.nn.ReLU()] * (
            i < len(widths) - 2
        )
    model = torch.nn.Sequential(*mods).to(device)
    X = torch.from_numpy(np.ascontiguousarray(Xtr)).to(device)
    if case.spec.binary:
        y = torch.from_numpy(ytr.astype(np.float32).reshape(-1, 1)).to(device)
        loss_fn = torch.nn.BCEWithLogitsLoss()
    else:
        y = torch.from_numpy(ytr.astype(np.int64)).to(device)
        loss_fn = torch.nn.CrossEntropyLoss()
    kw = {"capturable": True} if capturable else {}
    opt = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE, **kw)
    return torch, model, X, y, loss_fn, opt


def _torch_accuracy(torch, model, data, spec, device):
    _, _, Xte, yte = data
    with torch.inference_mode():
        out = model(torch.from_numpy(np.ascontiguousarray(Xte)).to(device))
        P = torch.sigmoid(out) if spec.binary else out
    return _accuracy(P.cpu().numpy(), yte)


def _sync(torch, device):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def run_torch_eager(case: GpuCase, data, epochs: int, device: str):
    """One repeat of the idiomatic GPU loop: randperm on the device, slicing, Adam."""
    torch, model, X, y, loss_fn, opt = _torch_parts(case, data, device, capturable=False)
    n, B = X.shape[0], case.spec.batch

    def epoch():
        perm = torch.randperm(n, device=device)
        for s in range(0, n, B):
            idx = perm[s : s + B]
            opt.zero_grad(set_to_none=True)
            loss_fn(model(X[idx]), y[idx]).backward()
            opt.step()

    t0 = time.perf_counter()
    epoch()
    _sync(torch, device)
    warm = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(epochs):
        epoch()
    _sync(torch, device)
    seconds = time.perf_counter() - t0
    acc = _torch_accuracy(torch, model, data, case.spec, device)
    return {"seconds": seconds, "warmup_s": warm, "accuracy": acc, "path": "torch eager"}


def run_torch_graph(case: GpuCase, data, epochs: int, device: str):
    """One repeat of PyTorch replaying its whole step (forward, backward, capturable Adam)
    from one CUDA graph; each step copies its batch into the static input first."""
    torch, model, X, y, loss_fn, opt = _torch_parts(case, data, device, capturable=True)
    n, B = X.shape[0], case.spec.batch
    sx, sy = X[:B].clone(), y[:B].clone()
    t0 = time.perf_counter()
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):  # warm-up on a side stream, as torch.cuda.graphs documents
            opt.zero_grad(set_to_none=True)
            loss_fn(model(sx), sy).backward()
            opt.step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    opt.zero_grad(set_to_none=True)
    with torch.cuda.graph(graph):
        loss_fn(model(sx), sy).backward()
        opt.step()

    def epoch():
        perm = torch.randperm(n, device=device)
        for s in range(0, n, B):
            idx = perm[s : s + B]
            sx.copy_(X[idx])
            sy.copy_(y[idx])
            graph.replay()

    epoch()
    torch.cuda.synchronize()
    warm = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(epochs):
        epoch()
    torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    acc = _torch_accuracy(torch, model, data, case.spec, device)
    return {"seconds": seconds, "warmup_s": warm, "accuracy": acc, "path": "torch CUDA graph"}


# ============================================================================ running
def contender_runner(name: str, dry: bool):
    """``(fn(case, data, epochs), slow)`` for a contender, or a string saying why not."""
    import importlib.util

    has_torch = importlib.util.find_spec("torch") is not None
    backend = "numpy" if dry else "cupy"
    if name == "fastnn-graph":
        return (lambda c, d, e: run_fastnn(c, d, e, True, backend)), False
    if name == "fastnn-cublas-graph":
        return (lambda c, d, e: run_fastnn(c, d, e, True, backend, gemm="cublas-graph")), False
    if name == "fastnn-cublas":
        return (lambda c, d, e: run_fastnn(c, d, e, True, backend, gemm="cublas")), True
    if name == "fastnn-eager":
        return (lambda c, d, e: run_fastnn(c, d, e, False, backend)), True
    if not has_torch:
        return "torch is not installed"
    device = "cpu" if dry else "cuda"
    if name == "torch-eager":
        return (lambda c, d, e: run_torch_eager(c, d, e, device)), True
    if dry:
        return "CUDA graphs need a GPU (dry run on the CPU)"
    return (lambda c, d, e: run_torch_graph(c, d, e, device)), False


def measure(name: str, case: GpuCase, data, budget: Budget, dry: bool, log) -> dict:
    """Median seconds for ``case.epochs`` epochs (scaled when the contender is slow)."""
    how = contender_runner(name, dry)
    if isinstance(how, str):
        return {"skipped": how}
    fn, slow = how
    epochs = case.slow_epochs if slow else case.epochs
    runs = []
    for r in range(case.repeats):
        if budget.left() <= 0:
            break
        try:
            runs.append(fn(case, data, epochs))
        except Exception as exc:  # a contender that breaks must not end the run
            return {"error": f"{type(exc).__name__}: {exc}"[:500], "runs": runs}
        log(f"  {name} repeat {r + 1}: {runs[-1]['seconds']:.3f} s / {epochs} epochs")
    if not runs:
        return {"skipped": "time budget spent"}
    scale = case.epochs / epochs
    samples = [run["seconds"] * scale for run in runs]
    return {
        "median_s": float(np.median(samples)),
        "samples_s": samples,
        "epochs_timed": epochs,
        "scaled_to_epochs": case.epochs if scale != 1 else None,
        "per_step_us": float(np.median(samples)) / (case.epochs * case.n_batches) * 1e6,
        "warmup_s": runs[0]["warmup_s"],
        "accuracy": runs[-1]["accuracy"],
        "path": runs[0]["path"],
    }


def run_case(name: str, case: GpuCase, who, budget: Budget, dry: bool, log) -> dict:
    """Every contender on one case, and the ratios of the fastnn graph path."""
    data = case_data(name, case)
    case = dataclasses.replace(case, n_train=len(data[0]))
    log(f"case {name}: {case.spec.describe()}, {case.n_train} rows, {case.epochs} epochs")
    res = {"net": case.spec.describe(), "rows": case.n_train, "epochs": case.epochs}
    res["contenders"] = {c: measure(c, case, data, budget, dry, log) for c in who}
    ours = res["contenders"]["fastnn-graph"].get("median_s")
    res["speedup_of_fastnn_graph"] = {
        c: (r["median_s"] / ours if ours and "median_s" in r else None)
        for c, r in res["contenders"].items()
        if c != "fastnn-graph"
    }
    return res


def _time_gemm(B: int, d: int) -> dict:
    """Microseconds per launch of our GEMM and of cuBLAS for ``(B, d) @ (d, d)``."""
    import cupy
    from fastnn.kernels import cuda as K

    A = cupy.random.standard_normal((B, d), dtype=cupy.float32)
    W = cupy.random.standard_normal((d, d), dtype=cupy.float32)
    C = cupy.empty((B, d), dtype=cupy.float32)
    sm = cupy.cuda.Device().attributes["MultiProcessorCount"]
    name, bm = ("gemm64", 64) if -(-B // 64) * -(-d // 64) >= sm else ("gemm32", 32)
    args = (B, d, d, A, d, 0, W, d, 0, C, d, C, 0, 0, 0.0, C, d, 0)
    grid = (-(-d // bm), -(-B // bm))
    row = {"batch": B, "d_in": d, "d_out": d, "macs": B * d * d, "kernel": name}
    for label, fn in (
        ("own_us", lambda: K.launch(name, np.float32, grid, 256, args)),
        ("cublas_us", lambda: cupy.matmul(A, W, out=C)),
    ):
        fn()
        start, stop = cupy.cuda.Event(), cupy.cuda.Event()
        start.record()
        for _ in range(50):
            fn()
        stop.record()
        stop.synchronize()
        row[label] = cupy.cuda.get_elapsed_time(start, stop) * 1000 / 50
    return row


def gemm_crossover(dry: bool, budget: Budget, log) -> list[dict]:
    """Our tiled GEMM (as the graph runs it) vs cuBLAS, the forward product of one layer
    at batch 256, timed with CUDA events over 50 launches each."""
    if dry or budget.left() < 20:
        return []
    rows = []
    for d in (64, 128, 256, 512, 1024, 2048):
        rows.append(_time_gemm(256, d))
        r = rows[-1]
        log(f"  gemm 256x{d}x{d}: own {r['own_us']:.1f} us, cuBLAS {r['cublas_us']:.1f} us")
    return rows


# ============================================================================ report
def environment(dry: bool) -> dict:
    """Card, driver and CUDA versions, library versions, TF32 settings."""
    from importlib import metadata

    from fastnn.backends.gpu_info import describe, gpu_report

    env = {"python": platform.python_version(), "machine": platform.machine(), "dry_run": dry}
    for dist in ("fastnn", "numpy", "cupy-cuda13x", "cupy-cuda12x", "torch"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            env[dist] = metadata.version(dist)
    rep = gpu_report()
    env["gpu"] = describe(rep)
    env["cards"] = rep.cards
    env["driver_cuda"] = rep.driver_cuda
    env["cupy_runtime_cuda"] = rep.runtime_cuda
    env["tf32"] = {"CUPY_TF32": os.environ.get("CUPY_TF32", "unset (off)"), "torch": "off"}
    return env


def _fmt(x, unit=""):
    return "-" if x is None else f"{x:.3g}{unit}"


def render_markdown(res: dict) -> str:
    """The results as Markdown tables."""
    env = res["environment"]
    card = ", ".join(f"{n} (cc {cc})" for n, cc in env.get("cards") or []) or "no GPU"
    out = [
        "# fastnn GPU benchmark"
        + (" (DRY RUN on the CPU: not a measurement)" if env["dry_run"] else ""),
        "",
        f"Card: {card}; driver CUDA {env.get('driver_cuda')}; CuPy runtime CUDA "
        f"{env.get('cupy_runtime_cuda')}; CuPy {env.get('cupy-cuda13x') or env.get('cupy-cuda12x')}; "
        f"PyTorch {env.get('torch')}; NumPy {env.get('numpy')}; Python {env['python']}. "
        "TF32 off on both sides. Medians of fresh-model repeats after a warm-up.",
        "",
    ]
    for name, case in res["cases"].items():
        out += [f"## {name}: {case['net']}, {case['rows']} rows, {case['epochs']} epochs", ""]
        out += ["| contender | median s | us / step | accuracy | warm-up s | path | note |"]
        out += ["|---|---|---|---|---|---|---|"]
        for c, r in case["contenders"].items():
            if "median_s" not in r:
                out.append(f"| {c} | - | - | - | - | - | {r.get('skipped') or r.get('error')} |")
                continue
            note = f"scaled from {r['epochs_timed']} epochs" if r["scaled_to_epochs"] else ""
            out.append(
                f"| {c} | {_fmt(r['median_s'])} | {_fmt(r['per_step_us'])} | "
                f"{r['accuracy']:.4f} | {_fmt(r['warmup_s'])} | {r['path']} | {note} |"
            )
        ratios = ", ".join(
            f"{_fmt(v, 'x')} vs {c}" for c, v in case["speedup_of_fastnn_graph"].items()
        )
        out += ["", f"fastnn graph path speed-up: {ratios}", ""]
    if res.get("gemm_crossover"):
        out += ["## Our GEMM vs cuBLAS (one forward product, batch 256)", ""]
        out += ["| shape | MACs | own us | cuBLAS us |", "|---|---|---|---|"]
        for r in res["gemm_crossover"]:
            shape = f"{r['batch']}x{r['d_in']}x{r['d_out']}"
            out.append(f"| {shape} | {r['macs']:.3g} | {r['own_us']:.1f} | {r['cublas_us']:.1f} |")
        out.append("")
    out.append(f"Total {res['seconds']:.0f} s; skipped for time: {res['skipped_cases'] or 'none'}.")
    return "\n".join(out) + "\n"


def main(argv=None) -> int:
    """Parse arguments, run the cases within the budget, write the results."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="folder for results.json and results.md")
    p.add_argument("--budget-s", type=float, default=240.0, help="stop starting work after this")
    p.add_argument("--cases", default="churn,mid,big", help="comma-separated subset of cases")
    p.add_argument("--contenders", default=",".join(CONTENDERS), help="comma-separated subset")
    p.add_argument("--dry-run", action="store_true", help="CPU, toy sizes: check the script")
    args = p.parse_args(argv)
    table = DRY_CASES if args.dry_run else CASES
    names = [c.strip() for c in args.cases.split(",") if c.strip()]
    who = [c.strip() for c in args.contenders.split(",") if c.strip()]
    bad = [c for c in names if c not in table] + [c for c in who if c not in CONTENDERS]
    if bad:
        p.error(f"unknown case(s)/contender(s) {bad}; cases {list(table)}, contenders {CONTENDERS}")
    if args.budget_s <= 0:
        p.error("--budget-s must be > 0")
    if not args.dry_run:
        import fastnn

        fastnn.get_backend("cupy")  # a clear error now if the GPU is not usable
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    budget = Budget(args.budget_s)

    def log(msg):
        print(f"[{time.perf_counter() - t_start:6.1f}s] {msg}", flush=True)

    res = {"environment": environment(args.dry_run), "cases": {}, "skipped_cases": []}
    res["gemm_crossover"] = []
    for name in names:
        if budget.left() <= 0:
            res["skipped_cases"].append(name)
            continue
        res["cases"][name] = run_case(name, table[name], who, budget, args.dry_run, log)
        write_results(res, out, t_start)  # after every case: a killed run keeps its results
    res["gemm_crossover"] = gemm_crossover(args.dry_run, budget, log)
    write_results(res, out, t_start)
    log(f"wrote {out / 'results.json'} and {out / 'results.md'}")
    return 0


def write_results(res: dict, out: Path, t_start: float) -> None:
    """results.json and results.md in ``out``."""
    res["seconds"] = time.perf_counter() - t_start
    (out / "results.json").write_text(json.dumps(res, indent=2, default=str))
    (out / "results.md").write_text(render_markdown(res))


if __name__ == "__main__":
    sys.exit(main())
