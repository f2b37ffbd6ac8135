"""``results.md``, ``results.json`` and ``scaling.png`` from a results dictionary.

:func:`render_markdown` is the sections in order, one function each; every section
returns its lines (none when the run has no such data).
"""

from __future__ import annotations

import json
from pathlib import Path

from .compare import TIE_FACTOR
from .environment import BLAS_TUNING_VARS
from .fmt import cores, fmt_ratio, fmt_s, kernels_text, label, table
from .plot import AXES, plot_scaling
from .worker import json_default

__all__ = ["render_markdown", "render_summary", "write_results"]


# ---------------------------------------------------------------------- header
def _machine_line(res: dict) -> str:
    m, v = res["machine"], res["versions"]
    parts = [
        f"{m['cpu']}, {cores(m)} cores",
        f"{m.get('memory_gib', '?')} GiB",
        m["os"],
        f"Python {m['python']}",
        f"NumPy {v.get('numpy')}" + (f" ({v['numpy_blas']})" if v.get("numpy_blas") else ""),
    ]
    for dist, name in (
        ("numba", "Numba"),
        ("torch", "PyTorch"),
        ("jax", "JAX"),
        ("keras", "Keras"),
        ("scikit-learn", "scikit-learn"),
    ):
        if v.get(dist):
            parts.append(f"{name} {v[dist]}")
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


def _section_header(res: dict) -> list[str]:
    s, m = res["settings"], res["machine"]
    L = ["# fastnn benchmarks", "", f"Machine: {_machine_line(res)}."]
    L.append(f"Threads: {_threads_line(res)}.")
    if m.get("loadavg_at_start"):
        L.append(
            f"Load average (1, 5, 15 min) at start {m['loadavg_at_start']}, at end "
            f"{m.get('loadavg_at_end')}: other work on the machine shows up as spread."
        )
    big = s.get("big_repeats")
    L.append(
        f"Run: `{res.get('command') or 'fastnn bench'}` ({res['mode']} mode), {res['created']}, "
        f"{res['wall_s']:.0f} s in all. Medians of {s['repeats']} runs per contender"
        + (f" ({big} for mid and big), " if big and big != s["repeats"] else ", ")
        + "run round-robin in one process; compare ratios within this file only."
    )
    return [*L, ""]


# ---------------------------------------------------------------------- summary
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
    r0, m = rows[0], res["machine"]
    cells = []
    for r in rows:
        name = label(r) + (f" ({r['epochs_run']} epochs timed, scaled)" if r.get("scaled") else "")
        ratio = r["median_s"] / best if best else None
        cells.append([name, fmt_s(r["median_s"]), f"{r['accuracy']:.4f}", fmt_ratio(ratio)])
    head = (
        f"{case} ({r0['network']}, {r0['epochs']} epochs, {r0['rows']} rows), medians of "
        f"{len(r0.get('samples_s', []))} runs on {m['cpu']} ({cores(m)} cores):"
    )
    cols = ["contender", "training time", "test accuracy", "time / fastest fastnn"]
    return "\n".join([head, "", *table(cols, "lrrr", cells)])


def _section_summary(res: dict) -> list[str]:
    summary = render_summary(res)
    L = ["## Summary: the churn recipe", "", summary, ""] if summary else []
    skipped = res["peers"]["skipped"]
    if skipped:
        L += ["Peers not run: " + ", ".join(f"{k} ({v})" for k, v in skipped.items()) + ".", ""]
    return L


# ---------------------------------------------------------------------- training
def _notes_of(r: dict) -> list[str]:
    """The note column of one training row."""
    info, note = r.get("info", {}), []
    if r.get("scaled"):
        note.append(
            f"timed {r['epochs_run']} epochs, scaled to {r['epochs']}; "
            f"accuracy after {r['epochs_run']}"
        )
    if "keras_backend" in info:
        note.append(f"KERAS_BACKEND={info['keras_backend']}")
    if info.get("process"):
        note.append(info["process"])
    if "threads" in info and r["contender"].startswith("torch"):
        note.append(f"{info['threads']} thread(s)")
    if info.get("training_path") and r["kind"].startswith("fastnn"):
        note.append(info["training_path"])
    if info.get("dropped_rows_per_epoch"):
        note.append(f"drops {info['dropped_rows_per_epoch']} rows/epoch")
    if info.get("dtype") and info["dtype"] != "float32":
        note.append(info["dtype"])
    return note


def _training_row(r: dict, tbase: float | None) -> list[str]:
    if "median_s" not in r:
        return [label(r), "failed", "", "", "", "", "", r.get("error", "")[:80]]
    ratio = r["median_s"] / tbase if tbase else None
    return [
        label(r),
        fmt_s(r["median_s"]),
        f"{fmt_s(r['min_s'])} - {fmt_s(r['max_s'])}",
        fmt_s(r["per_step_us"] * 1e-6),
        f"{r['accuracy']:.4f}",
        fmt_ratio(ratio),
        fmt_s(r.get("warmup_s")),
        "; ".join(_notes_of(r)),
    ]


def _speedup_table(rows: list[dict]) -> list[str]:
    fast = [r for r in rows if r["kind"] == "fastnn" and "median_s" in r]
    prs = [r for r in rows if r["kind"] == "peer" and "median_s" in r]
    if not (fast and prs):
        return []
    cells = [[label(f), *(fmt_ratio(p["median_s"] / f["median_s"]) for p in prs)] for f in fast]
    head = "Speed-up of each fastnn backend over each peer (peer time / fastnn time):"
    cols = ["fastnn backend", *(label(p) for p in prs)]
    return [head, "", *table(cols, "l" + "r" * len(prs), cells), ""]


def _section_training(res: dict, size: str) -> list[str]:
    rows = [r for r in res["fit"] if r["case"] == size]
    if not rows:
        return []
    s, r0, data = res["settings"], rows[0], res["data"][size]
    L = [f"## Training: {size} ({r0['network']}), {r0['epochs']} epochs, {r0['rows']} rows", ""]
    L += [
        f"Data: {data['source']}; Adam lr {s['learning_rate']}; test accuracy "
        f"on {data['test_rows']} held-out rows. Warm-up/compile is excluded "
        "from the time and shown on its own.",
        "",
    ]
    tbase = next((r.get("median_s") for r in rows if r["contender"] == "fastnn-numpy"), None)
    cols = ["contender", "median", "min-max", "per step", "test acc", "vs fastnn numpy"]
    cols += ["warm-up / compile", "note"]
    L += [*table(cols, "lrrrrrrl", (_training_row(r, tbase) for r in rows)), ""]
    return L + _speedup_table(rows)


# ---------------------------------------------------------------------- ops
def _op_lookup(ops: list[dict]):
    by_key = {(r["size"], r["op"], r["backend"]): r for r in ops}
    return lambda size, op, b: by_key.get((size, op, b))


def _section_ops(res: dict) -> list[str]:
    ops = [r for r in res.get("ops", []) if "median_s" in r]
    if not ops:
        return []
    get = _op_lookup(ops)
    backends = [b for b in res["settings"]["backends"] if any(r["backend"] == b for r in ops)]
    keys = list(dict.fromkeys((r["size"], r["op"]) for r in ops))
    cells = []
    for size, op in keys:
        found = [get(size, op, b) for b in backends]
        times = [fmt_s(r["median_s"]) if r else "-" for r in found]
        first = ", ".join(fmt_s(r.get("warmup_s")) if r else "-" for r in found)
        cells.append([size, op, *times, first])
    cols = ["size", "op", *backends, f"first call ({', '.join(backends)})"]
    L = ["## Ops: median time per call", "", *table(cols, "ll" + "r" * len(backends) + "l", cells)]
    return [*L, "", *_step_over_floor(res, get, backends)]


def _step_over_floor(res: dict, get, backends: list[str]) -> list[str]:
    cells = []
    for size in res["settings"]["sizes"]:
        floor = get(size, "gemm_floor", "numpy")
        steps = [get(size, "train_step", b) for b in backends]
        ratios = [st["median_s"] / floor["median_s"] if st and floor else None for st in steps]
        cells.append([size, *map(fmt_ratio, ratios)])
    return [
        "`train_step` is one minibatch step (SGD momentum 0.9) through the path `fit` uses; "
        "`gemm_floor` is that step's own matrix products alone on the same backend. "
        "Step / floor:",
        "",
        *table(["size", *backends], "l" + "r" * len(backends), cells),
        "",
        "(The floor is NumPy's, so the ratios compare every backend to the same BLAS work.)",
        "",
    ]


# ---------------------------------------------------------------------- scaling
def _scaling_table(rows: list[dict], axis: str, title: str) -> list[str]:
    names = list(dict.fromkeys(r["contender"] for r in rows))
    labels = {r["contender"]: r["label"] for r in rows}
    by_key = {(r["x"], r["contender"]): r for r in rows}
    cells = []
    for x in sorted({r["x"] for r in rows}):
        found = [by_key.get((x, n)) for n in names]
        cells.append([str(x), *(fmt_s(r["per_epoch_s"]) if r else "-" for r in found)])
    cols = [axis, *(labels[n] for n in names)]
    return [f"Per epoch vs {title}:", "", *table(cols, "r" * (len(names) + 1), cells), ""]


def _section_scaling(res: dict) -> list[str]:
    sc = res.get("scaling")
    if not sc or not (sc.get("width") or sc.get("batch")):
        return []
    L = ["## Scaling: time per epoch", "", f"![scaling](scaling.png)  {sc.get('data', '')}.", ""]
    for axis, title in AXES:
        rows = [r for r in sc.get(axis, []) if "median_s" in r]
        if rows:
            L += _scaling_table(rows, axis, title)
    return L


# ---------------------------------------------------------------------- crossover
def _crossover_row(c: dict) -> list[str]:
    ru = f"{c['runner_up']} ({fmt_ratio(c['margin'])})" if "runner_up" in c else "-"
    fastest = f"{c['fastest']} (tie)" if c.get("tie") else f"**{c['fastest']}**"
    vs = fmt_ratio(c["vs_fastest_peer"]) if "vs_fastest_peer" in c else "-"
    return [c["case"], fastest, ru, c.get("fastest_peer", "-"), vs]


def _section_crossover(res: dict) -> list[str]:
    co = res.get("crossover", {})
    if not co.get("cases"):
        return []
    cols = ["case", "fastest", "runner-up (its time / fastest)", "fastest peer"]
    cols.append("that peer's time / fastest fastnn")
    L = ["## Crossover: the fastest fastnn backend per case", ""]
    L += [*table(cols, "llllr", map(_crossover_row, co["cases"])), ""]
    slow = co.get("mean_slowdown_vs_fastest", {})
    worst = co.get("worst_slowdown_vs_fastest", {})
    L.append(
        f"Clear wins: {', '.join(f'{k} {v}' for k, v in co['wins'].items()) or 'none'}; "
        f"ties (within {TIE_FACTOR - 1:.0%}): {co.get('ties', 0)}. Mean / worst slowdown "
        "vs the fastest backend: "
        + ", ".join(f"{b} {fmt_ratio(slow[b])} / {fmt_ratio(worst.get(b))}" for b in slow)
        + f'. Suggested "auto" order on the CPU: **{", ".join(co["auto_order_cpu"]) or "-"}** '
        "(most clear wins first, then the smallest mean slowdown)."
    )
    return [*L, ""]


# ---------------------------------------------------------------------- cold start
def _cold_row(r: dict) -> list[str]:
    if "error" in r:
        return [r["backend"], r["cache"], f"failed: {r['error'][:60]}", "", "", "", ""]
    keys = ("import_s", "backend_s", "first_fit_s", "second_fit_s", "compile_s")
    return [r["backend"], r["cache"], *(fmt_s(r.get(k)) for k in keys)]


def _section_cold_start(res: dict) -> list[str]:
    cold = res.get("cold_start")
    if not cold:
        return []
    cols = ["backend", "Numba cache", "import fastnn", "load backend", "first fit (1 epoch)"]
    cols += ["second fit", "compile (first - second)"]
    title = "## Cold start: a fresh process trains the churn network for one epoch, twice"
    return [title, "", *table(cols, "llrrrrr", map(_cold_row, cold)), ""]


# ---------------------------------------------------------------------- BLAS environment
def _blas_pair_row(p: dict) -> list[str]:
    where = p["case"] if p["where"] == "fit" else f"scaling {p['case']}"
    backend = p["backend"].removeprefix("fastnn-")
    if p.get("error") or not p.get("unset_s"):
        return [where, backend, fmt_s(p.get("as_is_s")), f"failed: {p.get('error', '')[:60]}", ""]
    return [
        where,
        backend,
        fmt_s(p["as_is_s"]),
        fmt_s(p["unset_s"]),
        fmt_ratio(p.get("as_is_over_unset")),
    ]


def _section_blas_env(res: dict) -> list[str]:
    b = res.get("blas_env")
    if not b:
        return []
    names = " and ".join(f"`{v}`" for v in BLAS_TUNING_VARS)
    L = [f"## BLAS environment: as set, and with {names} unset", ""]
    as_is = b["as_is"]
    env = ", ".join(f"{k}={v}" for k, v in as_is["env"].items()) or "neither set"
    L.append(f"- As the environment is ({env}): {kernels_text(as_is['kernels'])}.")
    if not b.get("unset_run"):
        return [*L, f"- {b.get('note', '')}.", ""]
    unset = b.get("unset", {})
    left = ", ".join(f"{k}={v}" for k, v in (unset.get("env") or {}).items()) or "neither set"
    L += [f"- Unset (worker processes; {left}): {kernels_text(unset.get('kernels'))}.", ""]
    cols = ["case", "fastnn backend", "as is", "unset", "as is / unset"]
    L += [*table(cols, "llrrr", map(_blas_pair_row, b.get("cases", []))), ""]
    L.append(
        "Both run round-robin in the same repeats; the unset runs train in a worker process "
        "started without the variables (OpenBLAS reads them when NumPy loads it)."
    )
    return [*L, ""]


# ---------------------------------------------------------------------- notes
_RECIPE_NOTES = (
    "- Same recipe for everyone: the network above, relu hidden layers, Adam lr 1e-3, "
    "the same batch size and epochs, shuffled every epoch; sigmoid + binary cross-entropy "
    "(tiny) or softmax cross-entropy (mid, big). Accuracy is on held-out rows, so no one "
    "wins by learning less.",
    "- fastnn: `model.fit(verbose=0)`; warm-up is a one-epoch fit on four batches "
    "(Numba compilation or cache loading happens there).",
    "- PyTorch idiomatic: DataLoader(shuffle=True), nn.Sequential, Adam, default threads. "
    "Tuned: randperm + slicing, zero_grad(set_to_none=True), fused Adam, inference_mode "
    "for evaluation, the faster of 1 thread and the default in a short probe.",
    "- scikit-learn: MLPClassifier(solver='adam', alpha=0, tol=0, n_iter_no_change past "
    "max_iter), so it runs exactly the epochs asked.",
    "- JAX: one jitted function per epoch (on-device shuffle, lax.scan over batches, "
    "optax Adam); compile time is the warm-up column. Keras 3: model.fit; its first epoch "
    "(trace and compile) is the warm-up column and the time is the median steady epoch "
    'times the epochs. "Keras 3, torch backend" runs the same in a separate '
    "worker process (Keras fixes its backend at import); only its own timings count.",
)


def _scaled_notes(res: dict) -> list[str]:
    notes = [
        f"- {label(r)} ({r['case']}): timed {r['epochs_run']} of {r['epochs']} epochs "
        "(steady epochs after the first), time scaled to the full run."
        for r in res["fit"]
        if r.get("scaled") and "median_s" in r
    ]
    return list(dict.fromkeys(notes))


def _section_notes(res: dict) -> list[str]:
    L = ["## Notes", "", *_RECIPE_NOTES]
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
    return [*L, *_scaled_notes(res), ""]


# ---------------------------------------------------------------------- the file
def render_markdown(res: dict) -> str:
    """``results.md``: medians, spreads, accuracy, ratios vs the NumPy backend and vs
    peers, op timings, scaling, the crossover table and the suggested "auto" order, cold
    start, and the BLAS-bound cases with the ``OPENBLAS_*`` variables set and unset."""
    L = _section_header(res) + _section_summary(res)
    for size in res["settings"]["sizes"]:
        L += _section_training(res, size)
    for section in (
        _section_ops,
        _section_scaling,
        _section_crossover,
        _section_cold_start,
        _section_blas_env,
        _section_notes,
    ):
        L += section(res)
    return "\n".join(L)


def write_results(res: dict, out: str | Path) -> dict[str, Path]:
    """Write ``results.json``, ``results.md`` and ``scaling.png`` into ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "json": out / "results.json",
        "md": out / "results.md",
        "png": out / "scaling.png",
    }
    paths["json"].write_text(json.dumps(res, indent=1, default=json_default) + "\n")
    paths["md"].write_text(render_markdown(res))
    plot_scaling(res, paths["png"])
    return paths
