"""Shared test setup: the (backend, dtype) parameters, built once from the registry.

- ``backend_name``: every registered backend. NumPy always runs; a CPU backend that does
  not work here (e.g. Numba not installed) is skipped with the registry's reason; GPU
  backends carry the ``gpu`` mark.
- Tests marked ``gpu`` are skipped with a reason when no CUDA GPU works here. With
  ``--require-gpu`` (or ``FASTNN_REQUIRE_GPU=1``) those skips become failures, so a GPU
  CI job cannot pass by silently skipping its GPU tests.
- ``dtype``: float32 and float64 (NumPy dtypes).
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from fastnn._compat import cupy_status
from fastnn.testing import backend_params

BACKEND_PARAMS = backend_params()
DTYPE_PARAMS = [
    pytest.param(np.float32, id="float32"),
    pytest.param(np.float64, id="float64"),
]


def pytest_addoption(parser):
    parser.addoption(
        "--require-gpu",
        action="store_true",
        default=False,
        help="fail (instead of skip) tests marked 'gpu' when no CUDA GPU works here "
        "(also FASTNN_REQUIRE_GPU=1)",
    )


def _require_gpu(config) -> bool:
    env = os.environ.get("FASTNN_REQUIRE_GPU", "").strip().lower()
    return bool(config.getoption("--require-gpu")) or env in ("1", "true", "yes", "on")


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    # Runs before fixtures are set up, so a GPU fixture never sees a GPU-less machine.
    if item.get_closest_marker("gpu") is None:
        return
    ok, reason = cupy_status()
    if ok:
        return
    if _require_gpu(item.config):
        pytest.fail(f"--require-gpu: this GPU test cannot run: {reason}", pytrace=False)
    pytest.skip(f"needs a CUDA GPU: {reason}")


@pytest.fixture(params=BACKEND_PARAMS)
def backend_name(request) -> str:
    """Name of each registered backend (skipped/marked as described above)."""
    return request.param


@pytest.fixture
def backend(backend_name):
    """The shared backend instance for ``backend_name``."""
    import fastnn

    return fastnn.get_backend(backend_name)


@pytest.fixture(params=DTYPE_PARAMS)
def dtype(request):
    """``np.float32`` and ``np.float64``."""
    return request.param


@pytest.fixture(autouse=True)
def _restore_global_state():
    """A test that calls set_backend or set_seed does not leak it into the next test."""
    import fastnn._random as random_mod
    import fastnn.backends as backends

    saved_backend, saved_rng = backends._default, random_mod._global
    yield
    backends._default, random_mod._global = saved_backend, saved_rng
