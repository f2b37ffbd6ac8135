"""BLAS threads around ``fastnn tune``: its forked workers start none, and the thread
counts are restored after a run (``backends.numba_mid._limit``)."""

from __future__ import annotations

import multiprocessing as mp
import os
import sys

import numpy as np
import pytest

threadpoolctl = pytest.importorskip("threadpoolctl", reason="threadpoolctl is not installed")
pytest.importorskip("scipy", reason="scipy is not installed (pip install 'fastnn[numba]')")

from fastnn.backends import numba_mid  # noqa: E402

linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="counts threads in /proc and forks"
)


def _counts():
    return [lib.num_threads for lib in numba_mid._all_controller().lib_controllers]


def _child_threads(queue):
    """In a forked child: what a tune worker does with BLAS (a fold's limit, a product),
    then how many threads the process has."""
    with numba_mid.one_blas_thread():
        a = np.ones((64, 64), dtype=np.float32)
        a @ a
    queue.put(len(os.listdir("/proc/self/task")))


def _fork_and_count(limit_in_parent: bool) -> int:
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    guard = numba_mid.one_blas_thread() if limit_in_parent else numba_mid._limit(None, 1)
    with guard:
        child = ctx.Process(target=_child_threads, args=(queue,))
        child.start()
        n = queue.get(timeout=60)
        child.join(60)
    return n


@linux_only
def test_a_child_forked_on_one_blas_thread_starts_no_blas_thread():
    """The parent limits BLAS to one thread before forking (as tune's pool does): the
    child's own limit then sets nothing, and it runs with its main thread alone (and
    the queue's feeder). Setting the count in the child would start a thread per BLAS
    library, each spinning ~0.13 s beside the other worker."""
    numba_mid.mid_available()
    if not numba_mid._all_controller().lib_controllers:
        pytest.skip("no BLAS library that threadpoolctl controls")
    if max(_counts()) == 1:
        pytest.skip("BLAS has one thread here already (one core, or OPENBLAS_NUM_THREADS=1)")
    assert _fork_and_count(limit_in_parent=True) <= 2


def test_a_limit_that_is_already_in_force_sets_nothing(monkeypatch):
    """No library call when every library already has the count; a real limit, and its
    restore, otherwise."""
    ctl = numba_mid._all_controller()
    before = _counts()
    with numba_mid.one_blas_thread():
        assert set(_counts()) <= {1}
        calls = []
        monkeypatch.setattr(type(ctl), "limit", lambda self, **kw: calls.append(kw))
        with numba_mid.one_blas_thread(), numba_mid.blas_limit(100, 32):
            pass
        assert calls == []
        monkeypatch.undo()
    assert _counts() == before


def test_the_tune_command_restores_the_blas_threads(tmp_path):
    """`fastnn tune` runs on one BLAS thread and leaves the counts as it found them."""
    pytest.importorskip("optuna", reason="optuna is not installed (pip install 'fastnn[tune]')")
    from click.testing import CliRunner

    from fastnn.cli import main

    before = _counts()
    args = ["tune", "--trials", "2", "--folds", "2", "--epochs", "2", "--jobs", "1", "-q"]
    result = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "t")])
    assert result.exit_code == 0, result.output
    assert _counts() == before
