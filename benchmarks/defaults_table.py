"""Measure ``fastnn train FILE --target COL`` with no other option against
scikit-learn's MLPClassifier / MLPRegressor defaults on the same 80/20 split.

Data sets are scikit-learn's bundled ones (no network): iris, wine, breast_cancer,
digits (classification), diabetes and Friedman #1 (regression, 1,000 generated rows).
Each is written to a CSV under a temporary folder and trained with the real CLI in a
subprocess; scikit-learn gets the same split and the same standardized features (its
documentation recommends scaling the inputs) and the raw target; a linear model
(Ridge / LogisticRegression) is listed for reference. Seconds are wall-clock
of the training call (fastnn: the CLI's reported training time, compilation excluded).

    python benchmarks/defaults_table.py [--seeds 0 1 2] [--out benchmarks/results]
    python benchmarks/defaults_table.py -- --hidden 32,32 --patience 10   # try settings

Writes ``defaults.json`` and ``defaults.md``. Benchmarks measure; they assert nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings

import numpy as np

CLASSIFICATION = ("iris", "wine", "breast_cancer", "digits")
REGRESSION = ("diabetes", "friedman1")


def load(name: str):
    """``(DataFrame, target column, task)`` for a bundled data set."""
    import pandas as pd
    from sklearn import datasets

    if name == "friedman1":
        X, y = datasets.make_friedman1(n_samples=1000, noise=1.0, random_state=0)
        df = pd.DataFrame(X, columns=[f"x{i}" for i in range(X.shape[1])])
        df["y"] = y
        return df, "y", "regression"
    bunch = getattr(datasets, f"load_{name}")(as_frame=True)
    df = bunch.frame.copy()
    if name in ("iris", "wine"):  # class names as text, as a user's file would have them
        names = np.asarray(bunch.target_names)
        df["target"] = names[bunch.target.to_numpy()]
    task = "regression" if name in REGRESSION else "classification"
    return df, "target", task


def run_fastnn(csv: str, target: str, seed: int, extra: list[str], folder: str) -> dict:
    """Run the CLI; return its test metrics and reported training seconds."""
    out = os.path.join(folder, f"run-{os.path.basename(csv)}-{seed}")
    cmd = [sys.executable, "-m", "fastnn.cli", "train", csv, "--target", target]
    cmd += ["--seed", str(seed), "--out", out, "--quiet", *extra]
    t0 = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {res.stderr.strip()}")
    with open(os.path.join(out, "metrics.json"), encoding="utf-8") as f:
        m = json.load(f)
    score = m["test"]["r2"] if m["task"] == "regression" else m["test"]["accuracy"]
    return {"score": score, "seconds": m["train_seconds"], "wall": wall, "epochs": m["epochs"]}


def run_sklearn(df, target: str, task: str, seed: int) -> dict:
    """scikit-learn MLP defaults on fastnn's split and standardized features."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.neural_network import MLPClassifier, MLPRegressor

    from fastnn import data

    tr, te = data.split_indices(len(df), 0.2, seed)
    prep = data.Preprocessor(target=target, drop=[]).fit(df, train_rows=tr)
    X_tr, _ = prep.transform(df.iloc[tr], with_target=False)
    X_te, _ = prep.transform(df.iloc[te], with_target=False)
    y = df[target].to_numpy()
    est = (MLPRegressor if task == "regression" else MLPClassifier)(random_state=seed)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X_tr, y[tr])
    seconds = time.perf_counter() - t0
    linear = Ridge() if task == "regression" else LogisticRegression(max_iter=5000)
    linear.fit(X_tr, y[tr])
    return {
        "score": float(est.score(X_te, y[te])),
        "seconds": seconds,
        "linear": float(linear.score(X_te, y[te])),
    }


def measure(names, seeds, extra, with_sklearn=True):
    rows = []
    with tempfile.TemporaryDirectory(prefix="fastnn-defaults-") as folder:
        for name in names:
            df, target, task = load(name)
            csv = os.path.join(folder, f"{name}.csv")
            df.to_csv(csv, index=False)
            fn = [run_fastnn(csv, target, s, extra, folder) for s in seeds]
            nan = {"score": float("nan"), "seconds": float("nan"), "linear": float("nan")}
            sk = [run_sklearn(df, target, task, s) if with_sklearn else nan for s in seeds]
            row = {
                "data": name,
                "rows": len(df),
                "features": df.shape[1] - 1,
                "metric": "R2" if task == "regression" else "accuracy",
                "fastnn": statistics.median(r["score"] for r in fn),
                "sklearn": statistics.median(r["score"] for r in sk),
                "linear": statistics.median(r["linear"] for r in sk),
                "fastnn_seconds": statistics.median(r["seconds"] for r in fn),
                "fastnn_wall_seconds": statistics.median(r["wall"] for r in fn),
                "sklearn_seconds": statistics.median(r["seconds"] for r in sk),
                "fastnn_epochs": statistics.median(r["epochs"] for r in fn),
                "per_seed": {
                    "fastnn": [r["score"] for r in fn],
                    "sklearn": [r["score"] for r in sk],
                },
            }
            rows.append(row)
            print(
                f"{name:>14}: fastnn {row['fastnn']:.4f} ({row['fastnn_seconds']:.2f} s, "
                f"{row['fastnn_epochs']:.0f} epochs)  sklearn {row['sklearn']:.4f} "
                f"({row['sklearn_seconds']:.2f} s)",
                flush=True,
            )
    return rows


def to_markdown(rows, seeds, extra) -> str:
    from fastnn.defaults import CSV

    lines = [
        "# Defaults on data sets fastnn was not developed on",
        "",
        f"`fastnn train FILE --target COL{' ' + ' '.join(extra) if extra else ''}` against "
        "scikit-learn's MLPClassifier/MLPRegressor defaults (standardized features, the "
        f"same 80/20 split); medians over seeds {', '.join(map(str, seeds))} "
        "(split, initial weights, batch order).",
        f"fastnn defaults: {CSV.to_dict()}.",
        "Linear model: scikit-learn's Ridge / LogisticRegression on the same features, "
        "for reference. Seconds: training only (fastnn: compilation excluded, as the CLI reports it). "
        "Shared 2-core machine: timings are noisy.",
        "",
        "| data set | rows | features | metric | fastnn | scikit-learn MLP | linear model | "
        "fastnn s | scikit-learn MLP s | fastnn epochs |",
        "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['data']} | {r['rows']:,} | {r['features']} | {r['metric']} | "
            f"{r['fastnn']:.4f} | {r['sklearn']:.4f} | {r['linear']:.4f} | "
            f"{r['fastnn_seconds']:.2f} | "
            f"{r['sklearn_seconds']:.2f} | {r['fastnn_epochs']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--data", nargs="+", default=[*CLASSIFICATION, *REGRESSION])
    ap.add_argument("--out", default=None, help="folder for defaults.json / defaults.md")
    ap.add_argument(
        "--fastnn-only", action="store_true", help="skip scikit-learn (to try settings)"
    )
    ap.add_argument("extra", nargs="*", help="options passed to fastnn train (after --)")
    args = ap.parse_args(argv)
    rows = measure(args.data, args.seeds, args.extra, with_sklearn=not args.fastnn_only)
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "defaults.json"), "w", encoding="utf-8") as f:
            json.dump({"seeds": args.seeds, "extra": args.extra, "rows": rows}, f, indent=2)
        with open(os.path.join(args.out, "defaults.md"), "w", encoding="utf-8") as f:
            f.write(to_markdown(rows, args.seeds, args.extra))


if __name__ == "__main__":
    main()
