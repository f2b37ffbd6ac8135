"""Peak memory and speed of ``fastnn predict`` on big CSV files (streamed in chunks).

Builds an N-row CSV by repeating the bundled churn rows (about 68 bytes a row), trains
the churn tutorial network for one epoch (the weights do not matter here), then runs
``fastnn predict MODEL big.csv --out preds.csv`` in a subprocess and reads its peak
resident memory (``getrusage(RUSAGE_CHILDREN).ru_maxrss``; one subprocess per size, so
the figure is that run's). Files go to a temporary folder and are deleted afterwards.

    python benchmarks/predict_streaming.py --rows 1000000 10000000 --out benchmarks/results
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time


def make_csv(path: str, n_rows: int) -> int:
    """Write ``n_rows`` churn rows (the bundled 10,000 repeated); returns the bytes."""
    from fastnn import data

    block = data.load_churn(raw=True)
    text = block.to_csv(index=False, lineterminator="\n")
    header, body = text.split("\n", 1)
    with open(path, "w", encoding="utf-8") as f:
        f.write(header + "\n")
        left = n_rows
        while left > 0:
            take = min(left, len(block))
            f.write(body if take == len(block) else "".join(body.splitlines(True)[:take]))
            left -= take
    return os.path.getsize(path)


def peak_rss_mb(cmd: list[str]) -> tuple[float, float]:
    """Run ``cmd`` in a fresh child (via a tiny wrapper, so the figure is its own);
    return ``(seconds, peak RSS in MB)``."""
    wrapper = (
        "import resource, subprocess, sys, time; t = time.perf_counter(); "
        "r = subprocess.run(sys.argv[1:]); s = time.perf_counter() - t; "
        "print(s, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(r.returncode)"
    )
    res = subprocess.run(
        [sys.executable, "-c", wrapper, *cmd], capture_output=True, text=True, check=True
    )
    seconds, kb = res.stdout.split()
    return float(seconds), int(kb) / 1024


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 10_000_000])
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    fastnn = [sys.executable, "-m", "fastnn.cli"]
    results = []
    with tempfile.TemporaryDirectory(prefix="fastnn-stream-") as folder:
        run = os.path.join(folder, "run")
        subprocess.run(
            [*fastnn, "train", "--epochs", "1", "--quiet", "--out", run], check=True,
            capture_output=True,
        )  # fmt: skip
        model = os.path.join(run, "model.safetensors")
        for n in args.rows:
            src, dst = os.path.join(folder, "big.csv"), os.path.join(folder, "preds.csv")
            t0 = time.perf_counter()
            size = make_csv(src, n)
            made = time.perf_counter() - t0
            seconds, mb = peak_rss_mb([*fastnn, "predict", model, src, "--out", dst])
            out_rows = sum(1 for _ in open(dst, encoding="utf-8")) - 1
            row = {
                "rows": n,
                "input_mb": size / 1e6,
                "output_rows": out_rows,
                "seconds": seconds,
                "rows_per_second": n / seconds,
                "peak_rss_mb": mb,
            }
            results.append(row)
            print(f"{n:>11,} rows ({size / 1e6:,.0f} MB, made in {made:.0f} s): {seconds:.1f} s, "
                  f"{n / seconds:,.0f} rows/s, peak RSS {mb:,.0f} MB", flush=True)  # fmt: skip
            os.remove(src)
            os.remove(dst)
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "predict_streaming.json"), "w", encoding="utf-8") as f:
            json.dump(results, f, indent=2)
        lines = [
            "# `fastnn predict` on big CSV files (streamed, 100,000-row chunks)",
            "",
            "Churn rows repeated; the tutorial network; output CSV with the input columns and "
            "two prediction columns. Peak RSS of the whole `fastnn predict` process. Shared "
            "2-core machine: speeds are noisy.",
            "",
            "| rows | input MB | seconds | rows/s | peak RSS MB |",
            "|---:|---:|---:|---:|---:|",
        ] + [
            f"| {r['rows']:,} | {r['input_mb']:,.0f} | {r['seconds']:.1f} | "
            f"{r['rows_per_second']:,.0f} | {r['peak_rss_mb']:,.0f} |"
            for r in results
        ]
        with open(os.path.join(args.out, "predict_streaming.md"), "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
