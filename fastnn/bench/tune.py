"""`fastnn tune` against scikit-learn's RandomizedSearchCV on the bundled churn data:
the tune mode of ``fastnn bench``.

Run: ``fastnn bench --tune [--trials 20] [--folds 5] [--jobs 0] [--out DIR]`` (or
``python benchmarks/tune_bench.py``, which writes ``benchmarks/results/tune.{md,json}``).

1. fastnn: ``fastnn tune --trials N --folds K --out DIR`` in a fresh process, timed
   from outside (wall clock: start-up, imports, data, the search, the refit on all
   training rows, the test evaluation and writing the run), after one untimed run and
   with the package's bytecode compiled (:func:`warm_up`).
2. scikit-learn: ``RandomizedSearchCV(MLPClassifier, n_jobs=all cores)`` over exactly
   the configurations fastnn's trials sampled (a list of one-point grids, which
   RandomizedSearchCV samples without replacement), on the same folds (fastnn's
   stratified folds of the same 8,000 training rows, given as ``cv``), scored by
   ROC AUC, with ``refit=True``. The mapping: hidden sizes -> ``hidden_layer_sizes``,
   activation, lr -> ``learning_rate_init``, batch size, weight decay -> ``alpha =
   weight_decay * batch_size`` (scikit-learn divides its L2 term by the batch size);
   early stopping as in fastnn (15% validation, patience -> ``n_iter_no_change``, the
   same epoch cap); dropout has no counterpart and is left out. scikit-learn trains every
   fold of every configuration; fastnn prunes, and both numbers are reported.

Both run in their own process; the report gives wall time and CPU time (user + system
of that process and all its workers, from ``getrusage(RUSAGE_CHILDREN)``), since on a
shared machine other work inflates wall time far more than CPU time. Timings are single
runs (scikit-learn's search takes minutes); the load average is recorded before and
after.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

#: where ``python -m fastnn.bench.tune`` writes without ``--out`` (as ``fastnn bench``)
RESULTS = Path("bench-results")


def _machine() -> dict:
    from fastnn.tune import cpu_count

    return {
        "cpu": platform.processor() or platform.machine(),
        "cores": cpu_count(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


def _timed(cmd: list[str]) -> tuple[float, float]:
    """Run ``cmd``; returns ``(wall seconds, CPU seconds of it and its descendants)``."""
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(cmd, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)


def warm_up(trials: int, folds: int, jobs: int, seed: int, out: Path) -> dict:
    """Python's bytecode of the package compiled and one untimed ``fastnn tune``: the
    timed run starts as a user's second run does, with Numba's kernels in their cache
    and bytecode beside the sources (which an interpreter run with
    ``PYTHONDONTWRITEBYTECODE=1``, as some sandboxes and containers are, never writes:
    it compiles every module it imports again, 0.13 s of fastnn's imports alone on the
    2-core box)."""
    import compileall

    import fastnn
    import fastnn.kernels

    dirs = {Path(fastnn.__file__).parent, Path(fastnn.kernels.__file__).parent}
    compiled = all(bool(compileall.compile_dir(str(d), quiet=1)) for d in sorted(dirs))
    run_fastnn(trials, folds, jobs, seed, out)
    return {"bytecode_compiled": compiled, "untimed_runs": 1}


def run_fastnn(trials: int, folds: int, jobs: int, seed: int, out: Path) -> dict:
    """`fastnn tune` in a subprocess; returns its tune.json and metrics.json, wall and CPU."""
    cmd = [sys.executable, "-m", "fastnn.cli", "tune", "--trials", str(trials)]
    cmd += ["--folds", str(folds), "--jobs", str(jobs), "--seed", str(seed)]
    cmd += ["--quiet", "--out", str(out)]
    wall, cpu = _timed(cmd)
    tune = json.loads((out / "tune.json").read_text())
    metrics = json.loads((out / "metrics.json").read_text())
    return {"wall_s": wall, "cpu_s": cpu, "tune": tune, "metrics": metrics}


def sklearn_grid(trials: list[dict]) -> list[dict]:
    """fastnn's sampled configurations as one-point MLPClassifier grids."""
    grid = []
    for t in trials:
        p = t["params"]
        grid.append(
            {
                "hidden_layer_sizes": [tuple(p["hidden"])],
                "activation": [{"sigmoid": "logistic"}.get(p["activation"], p["activation"])],
                "learning_rate_init": [p["lr"]],
                "batch_size": [p["batch_size"]],
                "alpha": [p["weight_decay"] * p["batch_size"]],
            }
        )
    return grid


def run_sklearn(
    trials: list[dict], folds: int, jobs: int, seed: int, max_epochs: int, patience: int
):
    """RandomizedSearchCV over the same configurations and folds; returns timings and scores."""
    from sklearn.model_selection import RandomizedSearchCV
    from sklearn.neural_network import MLPClassifier

    import fastnn
    from fastnn.tune import fold_indices

    X, y, _, _ = fastnn.data.churn_arrays()
    y = y.reshape(-1)
    # fastnn's folds: scikit-learn trains on each fold's training and validation rows
    # (it holds out its own 15% for early stopping) and scores the same test rows
    cv = [
        (np.sort(np.concatenate([tr, va])), te)
        for tr, va, te in fold_indices(y, "binary", folds, seed)
    ]
    mlp = MLPClassifier(
        solver="adam",
        max_iter=max_epochs,
        early_stopping=True,
        validation_fraction=0.15,
        n_iter_no_change=patience,
        random_state=seed,
    )
    search = RandomizedSearchCV(
        mlp,
        sklearn_grid(trials),
        n_iter=len(trials),
        scoring="roc_auc",
        cv=cv,
        n_jobs=jobs,
        refit=True,
        random_state=seed,
    )
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning at the epoch cap
        search.fit(X, y)
    wall = time.perf_counter() - t0
    res = search.cv_results_
    return {
        "wall_s": wall,
        "fits": len(trials) * folds + 1,
        "best_score": float(search.best_score_),
        "best_params": {k: str(v) for k, v in search.best_params_.items()},
        "mean_scores": [float(s) for s in res["mean_test_score"]],
    }


def run_sklearn_process(trials_path: Path, folds: int, jobs: int, seed: int, out: Path) -> dict:
    """:func:`run_sklearn` in a subprocess (so its workers' CPU time is counted)."""
    cmd = [sys.executable, "-m", "fastnn.bench.tune", "--sklearn-trials", str(trials_path)]
    cmd += ["--folds", str(folds)]
    cmd += ["--jobs", str(jobs), "--seed", str(seed), "--out", str(out)]
    wall, cpu = _timed(cmd)
    res = json.loads((out / "sklearn.json").read_text())
    return {**res, "process_wall_s": wall, "cpu_s": cpu}


def _same_best(f: dict, s: dict) -> str:
    """ ", the same configuration (trial N) best in both" when scikit-learn's best
    parameters are fastnn's best trial's, mapped as :func:`sklearn_grid` maps them."""
    best = f.get("best")
    if not best or "best_params" not in s:
        return ""
    mapped = {k: str(v[0]) for k, v in sklearn_grid([best])[0].items()}
    if mapped != s["best_params"]:
        return ", a different configuration best in each"
    return f", the same configuration (trial {best['number']}) best in both"


def render(report: dict) -> str:
    f, s = report["fastnn"], report["sklearn"]
    states = report["trial_states"]
    m = report["machine"]
    compiled = report.get("setup", {}).get("bytecode_compiled", True)
    bytecode = "compiled" if compiled else "not compiled (it could not be written)"
    lines = [
        "# fastnn tune vs scikit-learn RandomizedSearchCV (churn)",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['os']}; load average before "
        f"{report['load_before'][0]:.2f}, after {report['load_after'][0]:.2f}. "
        f"{report['note']}",
        "",
        f"{report['trials']} configurations x {report['folds']} stratified folds of the "
        "8,000 training rows (seed 0), ROC AUC; both refit the best on all training rows.",
        "",
        "| | wall (s) | CPU (s) | fold trainings | best CV ROC AUC |",
        "|---|---:|---:|---:|---:|",
        f"| fastnn tune (`fastnn tune --trials {report['trials']} --folds {report['folds']}`, "
        f"whole command) | {f['wall_s']:.1f} | {f['cpu_s']:.1f} | {f['fold_trainings']} | "
        f"{f['best_score']:.4f} |",
        f"| fastnn search + refit (`fastnn.tune` and `TuneResult.refit`, in that command) | "
        f"{f['search_refit_s']:.1f} | | | |",
        f"| scikit-learn RandomizedSearchCV (MLPClassifier, n_jobs={report['jobs']}; "
        f"`search.fit` only) | {s['wall_s']:.1f} | {s['cpu_s']:.1f} | {s['fits'] - 1} | "
        f"{s['best_score']:.4f} |",
        f"| scikit-learn's whole process (start-up, imports, data, `search.fit`) | "
        f"{s['process_wall_s']:.1f} | | | |",
        "",
        f"**{report['speedup']:.1f}x** faster in wall time (whole command against "
        f"`search.fit`), **{report['search_speedup']:.1f}x** search + refit against "
        f"`search.fit` (both without start-up and imports), "
        f"**{report['process_speedup']:.1f}x** whole command against scikit-learn's whole "
        f"process, **{report['cpu_speedup']:.1f}x** in CPU time (CPU includes each "
        "process's start-up and imports); best CV score "
        f"{'equal or better' if f['best_score'] >= s['best_score'] else 'lower'} "
        f"({f['best_score'] - s['best_score']:+.5f}){_same_best(f, s)}. fastnn trials: "
        f"{states.get('COMPLETE', 0)} complete, {states.get('PRUNED', 0)} pruned, "
        f"{states.get('FAIL', 0)} failed; search {f['search_s']:.1f} s of the wall time. "
        f"Test ROC AUC of fastnn's refit model: {f['test_auc']:.4f}.",
        "",
        "Dropout has no scikit-learn counterpart, so scikit-learn trains those "
        "configurations without it. fastnn is timed on its second run (the first, "
        f"untimed, fills Numba's cache), with the package's Python bytecode {bytecode}.",
    ]
    return "\n".join(lines) + "\n"


def run(
    trials: int = 20,
    folds: int = 5,
    jobs: int = 0,
    seed: int = 0,
    note: str = "",
    out: Path = RESULTS,
) -> dict:
    """Both searches, one after the other; writes ``tune.json`` and ``tune.md`` to
    ``out`` and returns the report."""
    from fastnn.tune import cpu_count

    jobs = jobs or cpu_count()
    load_before = list(os.getloadavg())
    work = Path(tempfile.mkdtemp(prefix="fastnn-tune-bench-"))
    setup = warm_up(trials, folds, jobs, seed, work / "warm")
    f = run_fastnn(trials, folds, jobs, seed, work / "run")
    sampled = f["tune"]["trials"]
    (work / "trials.json").write_text(json.dumps(sampled))
    s = run_sklearn_process(work / "trials.json", folds, jobs, seed, work)
    states = {}
    for t in sampled:
        states[t["state"]] = states.get(t["state"], 0) + 1
    search_refit = f["tune"]["seconds"] + f["metrics"]["train_seconds"]
    report = {
        "trials": trials,
        "folds": folds,
        "jobs": jobs,
        "note": note,
        "machine": _machine(),
        "setup": setup,
        "load_before": load_before,
        "load_after": list(os.getloadavg()),
        "trial_states": states,
        "fastnn": {
            "wall_s": f["wall_s"],
            "cpu_s": f["cpu_s"],
            "search_s": f["tune"]["seconds"],
            "refit_s": f["metrics"]["train_seconds"],
            "search_refit_s": search_refit,
            "fold_trainings": sum(len(t["fold_scores"]) for t in sampled),
            "best_score": f["tune"]["best"]["mean"],
            "best": f["tune"]["best"],
            "test_auc": f["metrics"]["test"]["auc"],
            "trials": sampled,
        },
        "sklearn": s,
        "speedup": s["wall_s"] / f["wall_s"],
        "search_speedup": s["wall_s"] / search_refit,
        "process_speedup": s["process_wall_s"] / f["wall_s"],
        "cpu_speedup": s["cpu_s"] / f["cpu_s"],
    }
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "tune.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "tune.md").write_text(render(report))
    return report


def main(argv=None) -> dict:
    """``python -m fastnn.bench.tune``: :func:`run` from the command line."""
    from fastnn.tune import cpu_count

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--jobs", type=int, default=0, help="0: every core (both searches)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--note", default="", help="a remark for the report (e.g. shared machine)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--sklearn-trials", type=Path, help=argparse.SUPPRESS)  # internal
    args = ap.parse_args(argv)
    if args.sklearn_trials is not None:  # the scikit-learn side, in its own process
        trials = json.loads(args.sklearn_trials.read_text())
        jobs = args.jobs or cpu_count()
        res = run_sklearn(trials, args.folds, jobs, args.seed, max_epochs=100, patience=10)
        (args.out / "sklearn.json").write_text(json.dumps(res))
        return res
    report = run(args.trials, args.folds, args.jobs, args.seed, args.note, args.out)
    print(render(report))
    return report


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
