"""Numba's BLAS module is imported without ``scipy.linalg``'s package start-up
(``backends.numba_mid._import_cython_blas``), and SciPy still works as before after it."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("scipy", reason="scipy is not installed (pip install 'fastnn[numba]')")
pytest.importorskip("numba", reason="numba is not installed (pip install 'fastnn[numba]')")

_SCRIPT = textwrap.dedent(
    """
    import sys
    import numpy as np
    from numba import njit
    from fastnn.backends.numba_mid import mid_available

    assert mid_available()
    assert "scipy.linalg.cython_blas" in sys.modules
    assert "scipy.linalg" not in sys.modules, "the package __init__ ran"

    @njit
    def dot(a, b):
        return np.dot(a, b)

    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    assert np.allclose(dot(a, a.T), a @ a.T)

    import scipy.linalg
    import scipy.linalg.cython_blas as blas
    from scipy.linalg import cython_blas

    assert scipy.linalg.cython_blas is blas is cython_blas is sys.modules["scipy.linalg.cython_blas"]
    assert np.allclose(scipy.linalg.solve(np.eye(3) * 2, np.ones(3)), 0.5)
    assert not any(getattr(f, "__name__", "") == "_LinalgAttribute" for f in sys.meta_path)
    print("ok")
    """
)


def test_blas_module_alone_then_scipy_linalg_as_usual():
    res = subprocess.run(
        [sys.executable, "-c", _SCRIPT], capture_output=True, text=True, timeout=300
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.strip() == "ok"


def test_scipy_linalg_loaded_first_is_used_as_is():
    script = (
        "import sys, scipy.linalg\n"
        "from fastnn.backends.numba_mid import mid_available\n"
        "assert mid_available()\n"
        "assert sys.modules['scipy.linalg'].cython_blas is sys.modules['scipy.linalg.cython_blas']\n"
        "assert not any(getattr(f, '__name__', '') == '_LinalgAttribute' for f in sys.meta_path)\n"
    )
    res = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    assert res.returncode == 0, res.stderr[-2000:]
