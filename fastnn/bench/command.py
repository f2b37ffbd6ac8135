"""What ``fastnn bench`` runs: its settings and presets, the whole run, and the command
body (``fastnn.cli`` declares the options and calls :func:`main` when the command runs,
so ``fastnn --help`` never imports this package)."""

from __future__ import annotations

import dataclasses
import datetime
import shlex
import sys
import time

import click

from .blas import blas_report
from .cases import LEARNING_RATE, SIZES, TOY_SIZES, split_names
from .compare import crossover, log
from .contenders import fastnn_contender
from .environment import load_average, machine_info, thread_info, versions
from .fmt import fmt_s, label
from .peers import PEERS, SCALING_PEERS, peer_contenders
from .report import write_results
from .suites import datasets, run_cold_start, run_fits, run_ops, run_scaling

__all__ = ["MODES", "SCHEMA_VERSION", "BenchConfig", "configure", "main", "run_benchmarks"]

SCHEMA_VERSION = 1


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


def _header(cfg: BenchConfig, peers, skipped: dict, status: dict) -> dict:
    """The run's metadata: when, where, what was installed and what was asked."""
    settings = {
        k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(cfg).items()
    }
    settings["learning_rate"] = LEARNING_RATE
    return {
        "schema": SCHEMA_VERSION,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": None,
        "mode": cfg.mode,
        "machine": machine_info(),
        "versions": versions(),
        "backends": {
            name: {"available": ok, "reason": reason, "benchmarked": name in cfg.backends}
            for name, (ok, reason) in status.items()
        },
        "settings": settings,
        "peers": {
            "run": [p.name for p in peers],
            "skipped": skipped,
            "labels": {name: label for name, (label, _, _) in PEERS.items()},
        },
    }


def _peers(cfg: BenchConfig):
    peers, skipped = ([], {}) if cfg.peers == [] else peer_contenders(cfg.peers)
    for name in cfg.peers or []:
        if name not in PEERS:
            skipped[name] = "unknown peer"
    return peers, skipped


def _run_sections(cfg: BenchConfig, results: dict, peers, echo) -> None:
    sizes = TOY_SIZES if cfg.toy_sizes else SIZES
    fastnn = [fastnn_contender(b) for b in cfg.backends]
    data = datasets(cfg, sizes)
    results["data"] = {
        k: {"source": v.source, "train_rows": int(v.Xtr.shape[0]), "test_rows": int(v.Xte.shape[0])}
        for k, v in data.items()
    }
    results["fit"] = run_fits(cfg, sizes, data, fastnn + peers, echo)
    if cfg.ops:
        log("ops: per-call medians", echo)
        results["ops"] = run_ops(cfg, sizes, echo)
    if cfg.widths or cfg.batches:
        log("scaling: time per epoch vs width and batch size", echo)
        scaling_peers = [p for p in peers if p.name in SCALING_PEERS]
        results["scaling"] = run_scaling(cfg, fastnn + scaling_peers, echo)
        results["scaling"]["data"] = (
            f"{cfg.scaling_rows} synthetic rows x 11 features, {cfg.scaling_epochs} epoch(s) "
            "per run; width sweep 11-w-w-1 at batch 32, batch sweep 11-6-6-1"
        )
    if cfg.cold_start:
        log("cold start: fresh processes, empty then warm Numba cache", echo)
        results["cold_start"] = run_cold_start(cfg.backends, echo)


def run_benchmarks(cfg: BenchConfig, echo=click.echo) -> dict:
    """Run the whole comparison of ``cfg`` and return the results dictionary (what
    ``results.json`` holds). ``echo`` prints progress (None: silent)."""
    import fastnn

    t_start = time.perf_counter()
    status = fastnn.backend_status()
    cfg = dataclasses.replace(cfg, backends=list(cfg.backends or fastnn.available_backends()))
    peers, skipped = _peers(cfg)
    results = _header(cfg, peers, skipped, status)
    skipped_text = ", ".join(f"{k} ({v})" for k, v in skipped.items())
    log(
        f"fastnn bench ({cfg.mode}): backends {', '.join(cfg.backends)}; "
        f"peers {', '.join(p.name for p in peers) or 'none'}"
        + (f" (skipped: {skipped_text})" if skipped else ""),
        echo,
    )
    _run_sections(cfg, results, peers, echo)
    results["crossover"] = crossover(results)
    results["threads"] = thread_info()
    results["blas_env"] = blas_report(results)
    results["wall_s"] = time.perf_counter() - t_start
    load = load_average()
    if load is not None:
        results["machine"]["loadavg_at_end"] = load
    return results


# ---------------------------------------------------------------------- the command
def _backends(text: str) -> list[str]:
    import fastnn

    if text.strip().lower() in ("all", "auto", ""):
        return fastnn.available_backends()
    status = fastnn.backend_status()
    chosen = []
    for name in split_names(text):
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
    return chosen


def _names(text: str, known, hint: str, what: str) -> list[str]:
    names = split_names(text)
    unknown = [n for n in names if n not in known]
    if unknown:
        raise click.BadParameter(
            f"unknown {what}(s) {unknown}; known: {', '.join(known)}", param_hint=hint
        )
    return names


def configure(
    quick=False,
    backends="all",
    peers=True,
    only_peers=None,
    epochs=None,
    repeats=None,
    sizes=None,
    smoke=False,
) -> BenchConfig:
    """The :class:`BenchConfig` of the ``fastnn bench`` options; a bad value raises
    :class:`click.BadParameter` naming the option."""
    mode = "smoke" if smoke else "quick" if quick else "full"
    cfg = BenchConfig(mode=mode, **MODES[mode])
    cfg.backends = _backends(backends)
    if not peers:
        cfg.peers = []
    elif only_peers:
        cfg.peers = _names(only_peers, list(PEERS), "--only-peers", "peer")
    if epochs is not None:
        cfg.epochs = epochs
    if repeats is not None:
        cfg.repeats = repeats
        cfg.big_repeats = None
    if sizes:
        cfg.sizes = tuple(_names(sizes, list(SIZES), "--sizes", "size"))
    return cfg


def _command_line() -> str:
    args = sys.argv[sys.argv.index("bench") + 1 :] if "bench" in sys.argv else []
    return " ".join(["fastnn bench", *(shlex.quote(a) for a in args)])


def main(out_dir: str = "bench-results", **options) -> dict:
    """The body of ``fastnn bench``: configure from the command's ``options``, run, write
    results.json, results.md and scaling.png to ``out_dir``, print a summary; returns
    the results."""
    cfg = configure(**options)
    results = run_benchmarks(cfg)
    results["command"] = _command_line()
    paths = write_results(results, out_dir)
    click.echo("")
    for r in results["fit"]:
        if "median_s" in r:
            click.echo(
                f"{r['case']:<5} {label(r):<32} {fmt_s(r['median_s']):>10}  acc {r['accuracy']:.4f}"
            )
    order = results["crossover"].get("auto_order_cpu")
    if order:
        click.echo(f"fastest fastnn backend order (for 'auto'): {', '.join(order)}")
    click.echo(f"wrote {paths['json']}, {paths['md']}, {paths['png']} ({results['wall_s']:.0f} s)")
    return results
