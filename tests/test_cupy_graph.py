"""The CUDA-graph runner on a GPU against the NumPy backend, on the same seed: float32
and float64, with and without dropout, Adam's device-side step count after several
epochs, and the cuBLAS (eager) path. Marked ``gpu``: skipped without a CUDA device,
failures under ``--require-gpu``. The same cases run on the CPU emulator of the kernels
in test_cuda_emu.py."""

from __future__ import annotations

import numpy as np
import pytest
from graph_cases import CASES, check_graph_fit

pytestmark = pytest.mark.gpu


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", list(CASES))
def test_graph_epoch_on_gpu_matches_numpy(monkeypatch, dtype, case):
    # 5 steps an epoch, the last one partial; check_graph_fit also checks Adam's
    # device-side step count against optimizer.iterations (20)
    m, _ = check_graph_fit(case, dtype, "cupy", monkeypatch, epochs=4, n=70, batch_size=16)
    assert "one CUDA graph launch per epoch" in m.training_path


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_cublas_eager_path_on_gpu_matches_numpy(monkeypatch, dtype):
    monkeypatch.setenv("FASTNN_CUPY_GEMM", "cublas")
    m, _ = check_graph_fit(
        "adamw-dropout", dtype, "cupy", monkeypatch, n=50, batch_size=16, class_weight={0: 2.0}
    )
    assert "cuBLAS for 2 of 2 layers, eager launches" in m.training_path


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_captured_cublas_path_on_gpu_matches_numpy(monkeypatch, dtype):
    """Experimental: cuBLAS through its C API inside the captured graph."""
    monkeypatch.setenv("FASTNN_CUPY_GEMM", "cublas-graph")
    m, _ = check_graph_fit("adam-bce", dtype, "cupy", monkeypatch, n=50, batch_size=16)
    assert "cuBLAS (captured) for 3 of 3 layers, one CUDA graph launch" in m.training_path


def test_graph_keeps_training_after_model_moves_its_step_count(monkeypatch):
    """A runner re-reads optimizer.iterations when someone else changed it."""
    import fastnn
    from fastnn.backends import cupy_graph

    X = np.random.default_rng(0).standard_normal((64, 5))
    y = (X[:, 0] > 0).astype(float)
    m = fastnn.Sequential(
        [fastnn.layers.Dense(4, activation="relu"), fastnn.layers.Dense(1, activation="sigmoid")],
        backend="cupy",
    )
    m.compile(optimizer="adam", loss="binary_crossentropy")
    m.build(5, seed=0)
    r = cupy_graph.make_runner(m, m.loss, m.optimizer)
    be = m.backend
    Xd, yd = be.asarray(X.astype(np.float32)), be.asarray(y.reshape(-1, 1).astype(np.float32))
    rng = np.random.default_rng(1)
    r.run(Xd, yd, None, 16, rng)
    assert r.device_step() == 4
    m.optimizer.iterations = 100
    r.run(Xd, yd, None, 16, rng)
    assert r.device_step() == m.optimizer.iterations == 104
