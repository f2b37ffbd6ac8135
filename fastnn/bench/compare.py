"""Side by side: run contenders round-robin on one task and summarize each, pick the
fastest fastnn backend per case (the crossover and the order "auto" should try), and
pair the BLAS-bound cases as the environment is with their ``OPENBLAS_*``-unset runs."""

from __future__ import annotations

import math
import statistics

from .contenders import Contender, Prepared, Task
from .timing import summarize

__all__ = ["TIE_FACTOR", "blas_pairs", "compare", "crossover", "log"]

#: Two backends within this factor of each other count as a tie in the crossover table.
TIE_FACTOR = 1.05


def log(msg: str, echo) -> None:
    """``echo(msg)`` unless ``echo`` is None (silent)."""
    if echo is not None:
        echo(msg)


def _row(task: Task, c: Contender) -> dict:
    return {
        "case": task.name,
        "contender": c.name,
        "label": c.label,
        "kind": c.kind,
        "network": task.spec.describe(),
        "epochs": task.epochs,
        "rows": int(task.data.Xtr.shape[0]),
        "steps": task.epochs * math.ceil(task.data.Xtr.shape[0] / task.spec.batch),
    }


def _prepare_all(task, contenders, rows, echo) -> list[tuple[Contender, Prepared]]:
    ready = []
    for c in contenders:
        row = rows[c.name] = _row(task, c)
        try:
            prepared = c.prepare(task)
        except Exception as exc:  # a broken peer must not sink the whole comparison
            row["error"] = f"{type(exc).__name__}: {exc}"
            log(f"  {c.name}: FAILED to prepare: {row['error']}", echo)
            continue
        row["warmup_s"] = prepared.warmup_s
        row["info"] = dict(prepared.info)
        row["_runs"] = []
        ready.append((c, prepared))
    return ready


def _run_once(task, c, prepared, row, label, echo) -> None:
    try:
        res = prepared.run()
    except Exception as exc:
        row["error"] = f"{type(exc).__name__}: {exc}"
        log(f"  {c.name}: FAILED: {row['error']}", echo)
        return
    row["_runs"].append(res)
    scaled = res.epochs_run < task.epochs
    log(
        f"  [{task.name}] {c.name:<16} run {label}: {res.seconds:8.3f} s  acc {res.accuracy:.4f}"
        + (f"  (timed {res.epochs_run} of {task.epochs} epochs)" if scaled else ""),
        echo,
    )


def _finish(row: dict, task: Task) -> dict:
    runs = row.pop("_runs", [])
    if not runs:
        return row
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
    return row


def compare(task: Task, contenders: list[Contender], repeats: int, echo) -> list[dict]:
    """Prepare every contender, then run ``repeats`` rounds, one run of each per round
    (round-robin, so drifts in machine load hit every contender alike). One row per
    contender: :func:`~fastnn.bench.timing.summarize` of its times, median accuracy,
    per-epoch and per-step times, warm-up and notes (or ``error``)."""
    rows: dict[str, dict] = {}
    ready = _prepare_all(task, contenders, rows, echo)
    try:
        for r in range(repeats):
            for c, prepared in ready:
                if "error" not in rows[c.name]:
                    _run_once(task, c, prepared, rows[c.name], f"{r + 1}/{repeats}", echo)
    finally:
        for _, prepared in ready:
            if prepared.close is not None:
                prepared.close()
    return [_finish(row, task) for row in rows.values()]


# ---------------------------------------------------------------------- crossover
def _crossover_case(case: str, rows: list[dict]) -> dict | None:
    """The fastest fastnn backend of one case, its margin, and the fastest peer."""
    times = {
        r["contender"].removeprefix("fastnn-"): r["median_s"]
        for r in rows
        if r["kind"] == "fastnn" and "median_s" in r
    }
    peers = {r["contender"]: r["median_s"] for r in rows if r["kind"] == "peer" and "median_s" in r}
    if not times:
        return None
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
    return entry


def _crossover_cases(results: dict) -> list[dict]:
    groups = [
        (f"fit {size}", [r for r in results["fit"] if r["case"] == size])
        for size in results["settings"]["sizes"]
    ]
    for axis in ("width", "batch"):
        rows = results.get("scaling", {}).get(axis, [])
        for x in sorted({r["x"] for r in rows}):
            groups.append((f"{axis}={x}", [r for r in rows if r["x"] == x]))
    return [e for e in (_crossover_case(c, rows) for c, rows in groups) if e is not None]


def crossover(results: dict) -> dict:
    """Fastest fastnn backend per case (fit sizes and every scaling point), and the
    order "auto" should try: the backend with most clear wins (ties, within
    :data:`TIE_FACTOR`, count for no one) first, then the smallest mean slowdown."""
    cases = _crossover_cases(results)
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
    order = sorted(geo, key=lambda b: (-wins.get(b, 0), sum(geo[b]) / len(geo[b])))
    return {
        "cases": cases,
        "wins": wins,
        "ties": ties,
        "mean_slowdown_vs_fastest": {b: math.exp(sum(v) / len(v)) for b, v in geo.items()},
        "worst_slowdown_vs_fastest": {b: math.exp(max(v)) for b, v in geo.items()},
        "auto_order": order,
        "auto_order_cpu": [b for b in order if b != "cupy"],
    }


# ---------------------------------------------------------------------- BLAS environment
def blas_pairs(rows: list[dict], variant_suffix: str, where: str) -> list[dict]:
    """Pair each fastnn row with its ``<contender><variant_suffix>`` row (the same case
    run with the ``OPENBLAS_*`` variables unset): both medians and as-is / unset."""
    by_name = {(r["case"], r.get("x"), r["contender"]): r for r in rows}
    out = []
    for r in rows:
        if r["kind"] != "fastnn":
            continue
        v = by_name.get((r["case"], r.get("x"), r["contender"] + variant_suffix))
        if v is None:
            continue
        pair = {"where": where, "case": r["case"], "backend": r["contender"]}
        pair["as_is_s"] = r.get("median_s")
        pair["unset_s"] = v.get("median_s")
        if pair["as_is_s"] and pair["unset_s"]:
            pair["as_is_over_unset"] = pair["as_is_s"] / pair["unset_s"]
        pair["unset_kernels"] = v.get("info", {}).get("blas")
        pair["unset_env"] = v.get("info", {}).get("blas_env")
        if "error" in v:
            pair["error"] = v["error"]
        out.append(pair)
    return out
