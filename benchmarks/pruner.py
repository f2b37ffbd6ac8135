"""What `fastnn tune`'s pruner saves and what it costs: :class:`fastnn.tune.EarlyMedianPruner`
against Optuna's median pruner alone (five finished trials before it prunes), over
seeds and data sets.

Run: ``python benchmarks/pruner.py [--seeds 12] [--trials 20] [--folds 5] [--quick]``.
Writes ``benchmarks/results/pruner.{md,json}``. For every data set and seed, both
searches run (``fastnn.tune``, every core); then every configuration either sampled is
trained on the folds its search skipped, so each search's best can be compared with the
best of the configurations it sampled (the "oracle": what an unpruned search over the
same configurations, scikit-learn's ``RandomizedSearchCV`` for example, would find). The
data sets: the bundled churn data (ROC AUC) and scikit-learn's digits (accuracy), breast
cancer (ROC AUC) and diabetes (R²), standardized.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results"
DATASETS = ("churn", "digits", "cancer", "diabetes")


def dataset(name: str):
    """``(X, y, task)`` of one data set, float32 features."""
    if name == "churn":
        from fastnn.data.recipes import churn_arrays

        X, y, _, _ = churn_arrays(dtype="float32")
        return X, y.astype(np.int64), "binary"
    from sklearn import datasets
    from sklearn.preprocessing import StandardScaler

    load, task = {
        "digits": (datasets.load_digits, "multiclass"),
        "cancer": (datasets.load_breast_cancer, "binary"),
        "diabetes": (datasets.load_diabetes, "regression"),
    }[name]
    X, y = load(return_X_y=True)
    return StandardScaler().fit_transform(X).astype(np.float32), y, task


def pruners() -> dict:
    import optuna

    import fastnn.tune as tuning

    return {
        "median": lambda: optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=0),
        "early": tuning.EarlyMedianPruner,
    }


def search(X, y, task, seed, pruner, trials, folds) -> dict:
    import fastnn

    result = fastnn.tune(X, y, task, trials, folds, seed=seed, pruner=pruner())
    return {
        "seconds": result.seconds,
        "fold_seconds": sum(t["seconds"] for t in result.trials),
        "fold_trainings": sum(len(t["fold_scores"]) for t in result.trials),
        "pruned": sum(t["state"] == "PRUNED" for t in result.trials),
        "best": result.best["mean"],
        "best_trial": result.best["number"],
        "trials": [
            {"number": t["number"], "params": t["params"], "fold_scores": t["fold_scores"]}
            for t in result.trials
        ],
    }


def oracle(X, y, task, seed, runs, folds) -> None:
    """Each run's ``oracle``: the best mean over all ``folds`` folds of the configurations
    it sampled (the folds it skipped trained here, as the search would have)."""
    import fastnn.tune as tuning

    state = tuning._fold_state(X, y, task, folds, seed)  # as fastnn.tune trains them
    tuning._init_worker(state, in_child=False)
    full: dict = {}
    for run in runs:
        means = []
        for t in run["trials"]:
            key = (t["number"], json.dumps(t["params"], sort_keys=True))
            if key not in full:
                scores = list(t["fold_scores"])
                for f in range(len(scores), folds):
                    fold_seed = tuning._seed(seed, t["number"], f)
                    scores.append(tuning.run_fold(t["params"], f, fold_seed)["score"])
                full[key] = float(np.mean(scores))
            means.append(full[key])
        run["oracle"] = max(means)
        del run["trials"]


def measure(names, seeds, trials, folds) -> list[dict]:
    rows = []
    for name in names:
        X, y, task = dataset(name)
        for seed in range(seeds[name]):
            runs = {
                p: search(X, y, task, seed, make, trials, folds) for p, make in pruners().items()
            }
            oracle(X, y, task, seed, list(runs.values()), folds)
            rows.append({"data": name, "seed": seed, **runs})
            print(
                f"{name} seed {seed}: "
                + ", ".join(
                    f"{p} {r['fold_trainings']} folds {r['fold_seconds']:.2f} s best {r['best']:.4f}"
                    for p, r in runs.items()
                ),
                flush=True,
            )
    return rows


def summary(rows) -> list[dict]:
    out = []
    for name in dict.fromkeys(r["data"] for r in rows):
        rs = [r for r in rows if r["data"] == name]
        m, e = [r["median"] for r in rs], [r["early"] for r in rs]
        out.append(
            {
                "data": name,
                "searches": len(rs),
                "fold_trainings": [
                    sum(x["fold_trainings"] for x in m),
                    sum(x["fold_trainings"] for x in e),
                ],
                "fold_time_ratio_median": statistics.median(
                    b["fold_seconds"] / a["fold_seconds"] for a, b in zip(m, e, strict=True)
                ),
                "same_best": sum(
                    abs(a["best"] - b["best"]) < 1e-12 for a, b in zip(m, e, strict=True)
                ),
                "early_lower": [
                    (r["seed"], r["early"]["best"] - r["median"]["best"])
                    for r in rs
                    if r["early"]["best"] < r["median"]["best"] - 1e-12
                ],
                "missed_oracle": [
                    sum(x["best"] < x["oracle"] - 1e-12 for x in m),
                    sum(x["best"] < x["oracle"] - 1e-12 for x in e),
                ],
            }
        )
    return out


def render(report) -> str:
    lines = [
        "# fastnn tune's pruner: EarlyMedianPruner against Optuna's median pruner alone",
        "",
        f"{report['trials']} trials x {report['folds']} folds a search, every core "
        f"({report['cores']}); {report['machine']}; {report['date']}. "
        '"Oracle": the best mean over all folds of the configurations the search sampled.',
        "",
        "| data | searches | fold trainings (median -> early) | fold time, early / median (median) "
        "| same best | early's best lower | missed the oracle (median, early) |",
        "|---|---:|---:|---:|---:|---|---:|",
    ]
    for s in report["summary"]:
        lower = ", ".join(f"seed {seed}: {d:+.5f}" for seed, d in s["early_lower"]) or "none"
        lines.append(
            f"| {s['data']} | {s['searches']} | {s['fold_trainings'][0]} -> {s['fold_trainings'][1]} "
            f"| {s['fold_time_ratio_median']:.2f} | {s['same_best']} | {lower} "
            f"| {s['missed_oracle'][0]}, {s['missed_oracle'][1]} |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None) -> dict:
    import os
    import platform

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=12, help="churn seeds (the others: a third)")
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="2 seeds of churn and cancer only")
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args(argv)
    if args.quick:
        names, seeds = ("churn", "cancer"), {"churn": 2, "cancer": 2}
    else:
        names = DATASETS
        seeds = {n: args.seeds if n == "churn" else max(1, args.seeds // 3) for n in names}
    np.seterr(all="ignore")
    rows = measure(names, seeds, args.trials, args.folds)
    report = {
        "trials": args.trials,
        "folds": args.folds,
        "cores": os.cpu_count(),
        "machine": f"{platform.machine()}, {platform.platform()}",
        "date": time.strftime("%Y-%m-%d"),
        "summary": summary(rows),
        "runs": rows,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "pruner.json").write_text(json.dumps(report, indent=1))
    (out / "pruner.md").write_text(render(report))
    print(render(report))
    return report


if __name__ == "__main__":
    main()
