"""fastnn.plotter: plots drawn by a forked child process, or by a thread without one,
with the same files written and the same errors raised either way."""

from __future__ import annotations

import os
import time

import pytest
from click.testing import CliRunner

from fastnn import plotter
from fastnn.cli import main
from fastnn.errors import DataError


def write_pid(path):
    with open(path, "w") as f:
        f.write(str(os.getpid()))


def slow_write_pid(path, seconds):
    time.sleep(seconds)
    write_pid(path)


def fail(message):
    raise DataError(message)


def die_in_child(parent_pid, path):
    if os.getpid() != parent_pid:  # the child dies; drawn again here, the job succeeds
        os._exit(3)
    write_pid(path)


@pytest.fixture(params=[True, False], ids=["forked", "thread"])
def mode(request, monkeypatch):
    monkeypatch.setattr(plotter, "_can_fork", lambda: request.param)
    return request.param


def test_jobs_run_beside_the_caller_and_are_done_after_wait(mode, tmp_path):
    with plotter.start() as plots:
        assert plots.forked is mode
        paths = [tmp_path / f"{i}.txt" for i in range(3)]
        for p in paths:
            plots.submit(write_pid, str(p))
        plots.wait()
        pids = {p.read_text() for p in paths}
    if mode:  # drawn by one other process
        assert len(pids) == 1 and pids != {str(os.getpid())}
    else:  # by a thread of this one
        assert pids == {str(os.getpid())}


def test_a_jobs_error_is_raised_by_wait_once(mode, tmp_path):
    with plotter.start() as plots:
        plots.submit(fail, "no plot for you")
        plots.submit(write_pid, str(tmp_path / "after.txt"))
        with pytest.raises(DataError, match="no plot for you"):
            plots.wait()
        plots.wait()  # reported once
    assert (tmp_path / "after.txt").exists()  # the jobs after it still ran


def test_a_failing_body_waits_for_the_jobs_before_it_goes_on(mode, tmp_path):
    """A command that fails cleans up its output folder after the plotter's context:
    no plot may be written after that."""
    out = tmp_path / "late.txt"
    with pytest.raises(RuntimeError, match="body"):
        with plotter.start() as plots:
            plots.submit(slow_write_pid, str(out), 0.3)
            raise RuntimeError("body")
    assert out.exists()


def test_a_child_that_dies_leaves_its_jobs_to_this_process(monkeypatch, tmp_path):
    monkeypatch.setattr(plotter, "_can_fork", lambda: True)
    with plotter.start() as plots:
        assert plots.forked
        plots.submit(die_in_child, os.getpid(), str(tmp_path / "a.txt"))
        plots.submit(write_pid, str(tmp_path / "b.txt"))
        plots.wait()
        assert not plots.forked
        plots.submit(write_pid, str(tmp_path / "c.txt"))
    assert all((tmp_path / f"{n}.txt").read_text() == str(os.getpid()) for n in "abc")


def test_disabled_forks_nothing(monkeypatch):
    monkeypatch.setattr(plotter, "_can_fork", lambda: True)
    with plotter.start(enabled=False) as plots:
        assert not plots.forked


def test_train_and_tune_write_their_plots_through_the_child(monkeypatch, tmp_path):
    pytest.importorskip("optuna")
    monkeypatch.setattr(plotter, "_can_fork", lambda: True)
    forked = []
    start = plotter.start

    def recording_start(enabled=True):
        p = start(enabled)
        forked.append(p.forked)
        return p

    monkeypatch.setattr(plotter, "start", recording_start)
    runner = CliRunner()
    out = tmp_path / "run"
    args = ["train", "--epochs", "3", "--explain", "--quiet", "--out", str(out)]
    res = runner.invoke(main, args)
    assert res.exit_code == 0, res.output
    res = runner.invoke(
        main,
        ["tune", "--trials", "2", "--folds", "2", "--epochs", "3", "--jobs", "1", "--quiet",
         "--out", str(tmp_path / "tuned")],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert forked == [True, True]
    for png in (
        out / "history.png",
        out / "importance.png",
        tmp_path / "tuned" / "history.png",
        tmp_path / "tuned" / "tune.png",
    ):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
