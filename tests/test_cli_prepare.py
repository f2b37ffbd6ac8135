"""The table read and prepared in a forked child while the command loads its kernels
(:mod:`fastnn.cli_prepare`): the same result as in the process, the same errors, the
child's warnings shown, no child left behind."""

from __future__ import annotations

import os
import sys
import threading
import warnings

import click
import numpy as np
import pytest

from fastnn import cli_prepare as P
from fastnn.errors import FastnnError

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="forks")
ARGS = dict(missing="drop", task=None, test_size=0.2, seed=0)


def _prepared(csv=None, target=None, drop=(), meanwhile=None):
    return P.prepared_table(csv, target, drop, meanwhile=meanwhile, **ARGS)


def _same(a, b):
    assert a[0] == b[0] and a[1:4] == b[1:4]
    assert a[4].to_dict() == b[4].to_dict()
    for (X1, y1), (X2, y2) in zip(a[5:], b[5:], strict=True):
        np.testing.assert_array_equal(X1, X2)
        np.testing.assert_array_equal(y1, y2)


@pytest.fixture
def csv_path(tmp_path):
    rng = np.random.default_rng(0)
    lines = ["x1,x2,color,label"]
    for i in range(120):
        lines.append(f"{rng.normal():.4f},{rng.normal():.4f},{'rgb'[i % 3]},{i % 2}")
    path = tmp_path / "t.csv"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


@pytest.fixture
def fork_allowed(monkeypatch):
    """The test process may hold threads a command's process would not (tqdm's monitor,
    from earlier tests), which make prepared_table stay in the process."""
    monkeypatch.setattr(P, "_can_fork", lambda: True)


@pytest.fixture
def forks(monkeypatch):
    """Counts the forks prepared_table makes."""
    calls = []
    real = os.fork

    def counting():
        pid = real()
        if pid:  # in the parent: the child's pid
            calls.append(pid)
        return pid

    monkeypatch.setattr(P.os, "fork", counting)
    return calls


@linux_only
def test_the_child_gives_what_the_process_would(fork_allowed, forks, csv_path):
    ran = []
    got = _prepared(meanwhile=lambda: ran.append(os.getpid()))
    assert len(forks) == 1 and ran == [os.getpid()]
    _same(got, P._in_this_process(None, None, (), **ARGS))
    assert got[0] == (10_000, 14)
    _same(_prepared(csv_path, "label"), P._in_this_process(csv_path, "label", (), **ARGS))


@pytest.mark.parametrize(
    "csv, target, error",
    [
        ("no-such-file.csv", "y", FastnnError),
        ("CSV", None, click.UsageError),
        ("CSV", "nope", FastnnError),
    ],
)
def test_errors_are_the_ones_the_process_raises(csv_path, csv, target, error):
    csv = csv_path if csv == "CSV" else csv
    with pytest.raises(error) as here:
        P._in_this_process(csv, target, (), **ARGS)
    with pytest.raises(error) as forked:
        _prepared(csv, target)
    assert str(forked.value) == str(here.value)


@linux_only
def test_the_childs_warnings_are_shown_here(fork_allowed, forks, monkeypatch):
    real = P._in_this_process

    def warns(*args):
        warnings.warn("a cell looked odd", UserWarning, stacklevel=1)
        return real(*args)

    monkeypatch.setattr(P, "_in_this_process", warns)
    with pytest.warns(UserWarning, match="a cell looked odd"):
        _prepared()
    assert len(forks) == 1


@linux_only
def test_a_failing_meanwhile_leaves_no_child(fork_allowed, forks):
    def fail():
        raise RuntimeError("kernels broke")

    with pytest.raises(RuntimeError, match="kernels broke"):
        _prepared(meanwhile=fail)
    assert len(forks) == 1
    with pytest.raises(ChildProcessError):
        os.waitpid(forks[0], os.WNOHANG)  # the child is gone and reaped, not a zombie


def test_no_fork_when_switched_off_or_with_other_threads(forks, monkeypatch):
    monkeypatch.setenv("FASTNN_SERIAL_SETUP", "1")
    _same(_prepared(), P._in_this_process(None, None, (), **ARGS))
    monkeypatch.delenv("FASTNN_SERIAL_SETUP")
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait)
    thread.start()
    try:
        _prepared()
    finally:
        stop.set()
        thread.join()
    assert forks == []


@linux_only
def test_a_child_that_dies_falls_back_to_this_process(fork_allowed, forks, monkeypatch):
    def die(w, args):
        os._exit(3)  # nothing written

    monkeypatch.setattr(P, "_child", die)
    _same(_prepared(), P._in_this_process(None, None, (), **ARGS))
    assert len(forks) == 1


def test_compiler_ready_sets_up_numba_and_nothing_else(monkeypatch):
    pytest.importorskip("numba", reason="numba is not installed (pip install 'fastnn[numba]')")
    from numba.core.registry import cpu_target

    calls = []
    real = cpu_target.target_context.refresh
    monkeypatch.setattr(cpu_target.target_context, "refresh", lambda: calls.append(real()))
    P.compiler_ready("numpy")
    assert calls == []
    P.compiler_ready("numba")
    assert calls  # (refresh calls itself once per registry it installs)


@linux_only
def test_big_or_missing_files_are_read_here(fork_allowed, forks, csv_path, monkeypatch):
    monkeypatch.setattr(P, "CHILD_MAX_BYTES", 100)  # the test CSV is bigger
    _same(_prepared(csv_path, "label"), P._in_this_process(csv_path, "label", (), **ARGS))
    with pytest.raises(FastnnError):
        _prepared("no-such-file.csv", "y")
    assert forks == []
