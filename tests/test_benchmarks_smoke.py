"""Smoke tests of the benchmarks, so they never rot: every pytest-benchmark suite in
``benchmarks/`` and ``fastnn bench`` run at toy size on every backend that works here,
peers only where installed. Nothing here asserts a timing."""

from __future__ import annotations

import importlib.util
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

import fastnn
from fastnn.bench import PEERS, TOY_SIZES, Task, churn_dataset, synthetic_dataset
from fastnn.cli import BENCH_PEERS, bench_command

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "jax", "keras", "sklearn", "matplotlib", "threadpoolctl")


def test_bench_package_imports_no_peer_at_module_level():
    """`fastnn bench` is a click command named "bench"; the `fastnn.bench` package it
    runs imports no peer, plotting or threadpoolctl library at module level."""
    assert isinstance(bench_command, click.Command)
    assert bench_command.name == "bench"
    code = (
        "import sys, fastnn; before = set(sys.modules); import fastnn.bench; "
        f"print(sorted(m for m in set(sys.modules) - before if m.split('.')[0] in {HEAVY!r}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_cli_names_every_peer():
    """The CLI lists the peers in `--only-peers --help` without importing the package."""
    assert BENCH_PEERS == tuple(PEERS)


@pytest.mark.skipif(
    importlib.util.find_spec("pytest_benchmark") is None, reason="pytest-benchmark not installed"
)
@pytest.mark.skipif(not (ROOT / "benchmarks").is_dir(), reason="no benchmarks/ folder here")
def test_benchmark_suites_run_at_toy_size():
    """`pytest benchmarks` with timing disabled runs every benchmark function once."""
    # One BLAS/OpenMP thread: toy shapes gain nothing from two, and a 2-core VM that
    # deschedules one of them can stall every parallel region of a smoke run.
    env = dict(os.environ, FASTNN_BENCH_TOY="1", OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            str(ROOT / "benchmarks"),
            "--benchmark-disable",
            "-q",
            "-p",
            "no:cacheprovider",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout


def test_fastnn_bench_smoke_writes_all_three_files(tmp_path):
    """`fastnn bench --smoke --no-peers` writes results.json, results.md, scaling.png."""
    out = tmp_path / "bench"
    result = CliRunner().invoke(bench_command, ["--smoke", "--no-peers", "--out", str(out)])
    assert result.exit_code == 0, result.output + repr(result.exception)
    res = json.loads((out / "results.json").read_text())
    for key in (
        "schema",
        "machine",
        "versions",
        "threads",
        "settings",
        "backends",
        "peers",
        "fit",
        "ops",
        "scaling",
        "crossover",
        "blas_env",
        "wall_s",
    ):
        assert key in res, key
    assert {"cpu", "logical_cpus", "os", "python"} <= set(res["machine"])
    assert res["versions"]["numpy"]
    backends = fastnn.available_backends()
    assert res["settings"]["backends"] == backends
    for size in ("tiny", "mid", "big"):
        for b in backends:
            row = next(
                r for r in res["fit"] if r["case"] == size and r["contender"] == f"fastnn-{b}"
            )
            assert "error" not in row, row
            assert {"median_s", "min_s", "max_s", "q1_s", "q3_s", "accuracy", "warmup_s"} <= set(
                row
            )
    assert not [r for r in res["ops"] if "error" in r]
    assert res["scaling"]["width"] and res["scaling"]["batch"]
    assert res["crossover"]["auto_order"]
    assert res["blas_env"]["as_is"]["kernels"]
    md = (out / "results.md").read_text()
    assert "Machine:" in md and "| contender |" in md and "Crossover" in md
    assert "## BLAS environment" in md
    assert (out / "scaling.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_fastnn_bench_rejects_unknown_backend(tmp_path):
    result = CliRunner().invoke(bench_command, ["--backends", "nosuch", "--out", str(tmp_path)])
    assert result.exit_code != 0
    assert "nosuch" in result.output


@pytest.mark.parametrize("peer", list(PEERS))
def test_peer_trains_at_toy_size(peer):
    """Each installed peer trains the toy networks once and reports time and accuracy."""
    label, prepare, installed = PEERS[peer]
    if not installed():
        pytest.skip(f"{peer} is not installed")
    tasks = [Task("tiny", TOY_SIZES["tiny"], churn_dataset().head(128), epochs=2)]
    mid = TOY_SIZES["mid"]
    tasks.append(
        Task("mid", mid, synthetic_dataset(64, 32, mid.widths[0], mid.widths[-1]), epochs=2)
    )
    if peer == "keras-torch":  # a worker process: one task is enough
        tasks = tasks[:1]
    for task in tasks:
        prepared = prepare(task)
        try:
            res = prepared.run()
        finally:
            if prepared.close is not None:
                prepared.close()
        assert res.seconds >= 0
        assert 0.0 <= res.accuracy <= 1.0
        assert 1 <= res.epochs_run <= task.epochs


def _forced_coretype() -> str | None:
    """An OpenBLAS core type every CPU of this architecture runs (None: unknown arch)."""
    return {"x86_64": "Nehalem", "amd64": "Nehalem", "aarch64": "ARMV8", "arm64": "ARMV8"}.get(
        platform.machine().lower()
    )


def test_bench_reports_blas_cases_with_openblas_variables_unset(tmp_path):
    """With OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE set, `fastnn bench` runs the BLAS-bound
    cases again in a worker started without them, and records both runs and the kernel
    each one loaded (threadpoolctl) in results.json and results.md."""
    coretype = _forced_coretype()
    if coretype is None:
        pytest.skip(f"no known OpenBLAS core type for {platform.machine()}")
    env = dict(os.environ, OPENBLAS_CORETYPE=coretype, OPENBLAS_L2_SIZE="262144")
    env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    cmd = [sys.executable, "-c", "import sys; from fastnn.cli import main; sys.exit(main())"]
    cmd += ["bench", "--smoke", "--no-peers", "--backends", "numpy", "--sizes", "tiny,big"]
    proc = subprocess.run(
        [*cmd, "--out", str(tmp_path)], capture_output=True, text=True, env=env, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads((tmp_path / "results.json").read_text())
    blas = res["blas_env"]
    assert blas["unset_run"] is True
    assert blas["as_is"]["env"] == {"OPENBLAS_CORETYPE": coretype, "OPENBLAS_L2_SIZE": "262144"}
    assert blas["unset"]["env"] == {}  # the worker really ran without them
    (pair,) = [p for p in blas["cases"] if p["where"] == "fit"]
    assert (pair["case"], pair["backend"]) == ("big", "fastnn-numpy")
    assert pair["as_is_s"] > 0 and pair["unset_s"] > 0 and pair["as_is_over_unset"] > 0
    cases = {(r["case"], r["contender"]) for r in res["fit"] if "median_s" in r}
    assert ("big", "fastnn-numpy-blas-unset") in cases
    assert ("tiny", "fastnn-numpy-blas-unset") not in cases  # not BLAS-bound
    md = (tmp_path / "results.md").read_text()
    assert "## BLAS environment" in md and f"OPENBLAS_CORETYPE={coretype}" in md
    if importlib.util.find_spec("threadpoolctl") is None:
        assert blas["as_is"]["kernels"] == "threadpoolctl not installed"
        return
    as_is = [k for k in blas["as_is"]["kernels"] if k["internal_api"] == "openblas"]
    unset = [k for k in blas["unset"]["kernels"] if k["internal_api"] == "openblas"]
    if not as_is:
        pytest.skip("NumPy here does not use OpenBLAS")
    assert {k["architecture"].lower() for k in as_is} == {coretype.lower()}
    assert unset and all(k["architecture"] and k["num_threads"] for k in unset)
    assert all(k["version"] for k in as_is + unset)


def test_cold_start_probe_times_a_fresh_process(tmp_path):
    """The probe `fastnn bench` and numba_crossover.py share: a fresh process imports
    fastnn, loads the backend and fits one epoch twice; the result names the path."""
    from fastnn.bench.report import render_markdown
    from fastnn.bench.timing import cold_start_probe

    row = cold_start_probe("numpy", str(tmp_path), rows=256)
    assert "error" not in row, row
    for key in ("import_s", "backend_s", "first_fit_s", "second_fit_s", "compile_s"):
        assert row[key] >= 0, key
    assert row["process_s"] >= row["import_s"] + row["first_fit_s"]
    assert row["training_path"] and row["compile"] is None and row["announced"] is False
    res = {
        "settings": {"sizes": [], "repeats": 1},
        "fit": [],
        "peers": {"skipped": {}},
        "mode": "smoke",
    }
    res.update(machine={"cpu": "x", "logical_cpus": 1, "os": "y", "python": "3"}, versions={})
    res.update(
        created="now", wall_s=1.0, cold_start=[{"backend": "numpy", "cache": "cold cache", **row}]
    )
    assert "| numpy | cold cache |" in render_markdown(res)
