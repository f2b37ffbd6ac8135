"""The CUDA-graph runner on a GPU against the NumPy backend, on the same seed, through
``fit`` on the "cupy" backend (``CupyBackend.epoch_runner`` hands ``fit`` the graph
runner): float32 and float64, with and without dropout, Adam's step count over several
epochs, and the cuBLAS (eager and captured) paths. Marked ``gpu``: skipped without a
CUDA device, failures under ``--require-gpu``. The same cases run on the CPU emulator of
the kernels in test_cuda_emu.py."""

from __future__ import annotations

import numpy as np
import pytest
from graph_cases import CASES, check_graph_fit

pytestmark = pytest.mark.gpu


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", list(CASES))
def test_graph_epoch_on_gpu_matches_numpy(dtype, case):
    # 5 steps an epoch, the last one partial; check_graph_fit also checks the optimizer's
    # step count (20)
    m = check_graph_fit(case, dtype, "cupy", epochs=4, n=70, batch_size=16)
    assert "one CUDA graph launch per epoch" in m.training_path


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_cublas_eager_path_on_gpu_matches_numpy(monkeypatch, dtype):
    monkeypatch.setenv("FASTNN_CUPY_GEMM", "cublas")
    m = check_graph_fit("adamw-dropout", dtype, "cupy", n=50, batch_size=16, class_weight={0: 2.0})
    assert "cuBLAS for 2 of 2 layers, eager launches" in m.training_path


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_captured_cublas_path_on_gpu_matches_numpy(monkeypatch, dtype):
    """Experimental: cuBLAS through its C API inside the captured graph."""
    monkeypatch.setenv("FASTNN_CUPY_GEMM", "cublas-graph")
    m = check_graph_fit("adam-bce", dtype, "cupy", n=50, batch_size=16)
    assert "cuBLAS (captured) for 3 of 3 layers, one CUDA graph launch" in m.training_path


def test_replayed_graph_continues_a_step_count_set_elsewhere():
    """Each replay takes its bias correction from the optimizer: a count moved between
    fits carries on, as on the NumPy backend."""
    import graph_cases

    X, y = graph_cases.data("adam-bce", n=64)
    runs = []
    for backend in ("numpy", "cupy"):
        m = graph_cases.model("adam-bce", "float64", backend)
        m.fit(X, y, batch_size=16, epochs=1, verbose=0, seed=0)
        m.optimizer.iterations = 100
        m.fit(X, y, batch_size=16, epochs=1, verbose=0, seed=1)
        runs.append((m.backend.to_numpy(m.theta), m.optimizer.iterations, m.training_path))
    assert runs[1][2].startswith("cupy graph epoch")
    np.testing.assert_allclose(runs[1][0], runs[0][0], rtol=1e-11, atol=1e-12)
    assert runs[0][1] == runs[1][1] == 104


def test_graph_path_off_trains_per_layer(monkeypatch):
    monkeypatch.setenv("FASTNN_CUPY_GRAPH", "0")
    import graph_cases

    X, y = graph_cases.data("adam-bce")
    m = graph_cases.model("adam-bce", "float32", "cupy")
    m.fit(X, y, batch_size=16, epochs=1, verbose=0)
    assert m.training_path.startswith("per-layer (cupy backend ops")
