"""The prepared GPU check can run on a lent machine the first time: its shell script
parses, installs offline and runs the GPU tests and the benchmark, and the benchmark
script runs end to end in its CPU dry mode (toy sizes, PyTorch on the CPU when
installed) and writes results.json and results.md."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"
BENCH = ROOT / "benchmarks" / "gpu_bench.py"


def test_gpu_check_script_parses_and_runs_the_prepared_steps():
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("no bash here")
    proc = subprocess.run([bash, "-n", str(SCRIPT)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    text = SCRIPT.read_text()
    assert "pip install -q --no-deps --no-build-isolation --no-index -e ." in text
    assert "pytest --require-gpu" in text and "-m gpu" in text
    assert 'gpu_bench.py --out "$OUT" --budget-s' in text
    assert 'tee "$OUT/test.log"' in text


def test_gpu_check_script_needs_an_outdir():
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("no bash here")
    proc = subprocess.run([bash, str(SCRIPT)], capture_output=True, text=True, timeout=30)
    assert proc.returncode != 0 and "usage: bash benchmarks/gpu_check.sh OUTDIR" in proc.stderr


def _bench(*args, timeout=180):
    return subprocess.run(
        [sys.executable, str(BENCH), *args], capture_output=True, text=True, timeout=timeout
    )


def test_gpu_bench_dry_run_writes_results(tmp_path):
    proc = _bench("--dry-run", "--out", str(tmp_path), "--cases", "churn,mid")
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads((tmp_path / "results.json").read_text())
    assert res["environment"]["dry_run"] is True
    churn = res["cases"]["churn"]["contenders"]
    assert churn["fastnn-graph"]["median_s"] > 0
    assert 0.0 <= churn["fastnn-graph"]["accuracy"] <= 1.0
    assert "skipped" in churn["torch-graph"]  # CUDA graphs need a GPU
    md = (tmp_path / "results.md").read_text()
    assert "DRY RUN" in md and "## mid: 32-16-16-10, batch 16" in md


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--cases", "huge"], "unknown case(s)/contender(s) ['huge']"),
        (["--contenders", "jax"], "unknown case(s)/contender(s) ['jax']"),
        (["--budget-s", "0"], "--budget-s must be > 0"),
    ],
)
def test_gpu_bench_rejects_bad_arguments(tmp_path, args, message):
    proc = _bench("--dry-run", "--out", str(tmp_path), *args, timeout=60)
    assert proc.returncode == 2 and message in proc.stderr
