"""The test setup itself: GPU tests skip with a reason, and ``--require-gpu`` (or
``FASTNN_REQUIRE_GPU=1``) turns those skips into failures."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fastnn._compat import cupy_status

HERE = Path(__file__).resolve().parent

GPU_TEST = """
import pytest

@pytest.mark.gpu
def test_needs_gpu():
    import fastnn
    fastnn.get_backend("cupy")

def test_backends(backend_name, dtype):
    assert backend_name and dtype
"""


def _run(tmp_path, *args, env=None):
    shutil.copy2(HERE / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "test_x.py").write_text(GPU_TEST)
    (tmp_path / "pytest.ini").write_text(
        "[pytest]\nmarkers =\n    gpu: needs a GPU\naddopts = -rfEs -p no:cacheprovider\n"
    )
    e = {k: v for k, v in os.environ.items() if k != "FASTNN_REQUIRE_GPU"}
    e.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", str(tmp_path), *args],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=e,
        timeout=120,
    )


@pytest.fixture(scope="module")
def no_gpu():
    ok, reason = cupy_status()
    if ok:
        pytest.skip("a GPU works here: the skip path cannot be exercised")
    return reason


def test_gpu_tests_skip_with_a_reason(tmp_path, no_gpu):
    proc = _run(tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "needs a CUDA GPU" in proc.stdout
    assert "failed" not in proc.stdout


@pytest.mark.parametrize("how", ["flag", "env"])
def test_require_gpu_turns_skips_into_failures(tmp_path, no_gpu, how):
    if how == "flag":
        proc = _run(tmp_path, "--require-gpu")
    else:
        proc = _run(tmp_path, env={"FASTNN_REQUIRE_GPU": "1"})
    assert proc.returncode == 1, proc.stdout + proc.stderr
    bad = [line for line in proc.stdout.splitlines() if line.startswith(("ERROR", "FAILED"))]
    assert bad and all("--require-gpu" in line for line in bad), proc.stdout
    # the GPU test and the cupy cases of the backend_name fixture; CPU cases still pass
    assert all("test_needs_gpu" in line or "cupy" in line for line in bad), proc.stdout
    assert "passed" in proc.stdout
