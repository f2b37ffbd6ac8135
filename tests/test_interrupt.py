"""Nothing lost when a run is interrupted or fails: Ctrl-C in `fastnn train --out`, a
KeyboardInterrupt inside `fit`, and failed train/predict runs."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from click.testing import CliRunner

import fastnn
from fastnn import cli, report, runguard
from fastnn.layers import Dense

posix = pytest.mark.skipif(os.name != "posix", reason="needs POSIX signals")
CMD = [sys.executable, "-c", "import sys; from fastnn.cli import main; sys.exit(main())"]
# slow enough per epoch, and far more epochs than the test waits for: still training
LONG_TRAIN = ["train", "--backend", "numpy", "--epochs", "100000", "--hidden", "32,32"]
OUTPUTS = ["history.json", "history.png", "metrics.json", "model.safetensors"]


class _Proc:
    """A `fastnn` subprocess whose stderr is collected by a thread, so the test can wait
    for a line without blocking (and without sleeping blindly)."""

    def __init__(self, args):
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.p = subprocess.Popen(
            [*CMD, *map(str, args)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        self.err = b""
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        while chunk := self.p.stderr.read1(4096):
            self.err += chunk

    def wait_for(self, pattern: str, timeout: float = 60.0) -> re.Match:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = re.search(pattern, self.err.decode(errors="replace"))
            if m:
                return m
            if self.p.poll() is not None:
                break
            time.sleep(0.01)
        self.p.kill()
        pytest.fail(f"never saw {pattern!r}; stderr: {self.err[-2000:]!r}")

    def finish(self, timeout: float = 60.0):
        out = self.p.stdout.read().decode()
        self.p.wait(timeout)
        self._reader.join(timeout)
        return self.p.returncode, out, self.err.decode(errors="replace")


def _epochs_done(proc: _Proc, at_least: int) -> None:
    """Wait until the progress bar shows ``at_least`` finished epochs."""
    proc.wait_for(rf"\| ([{at_least}-9]|\d\d+)/100000 \[")


@posix
def test_first_ctrl_c_saves_the_model_trained_so_far(tmp_path):
    out = tmp_path / "run"
    proc = _Proc([*LONG_TRAIN, "--out", out])
    _epochs_done(proc, 2)
    proc.p.send_signal(signal.SIGINT)
    code, stdout, stderr = proc.finish()
    assert code == 130, stderr[-2000:]
    assert "Traceback" not in stderr
    assert stderr.count("fastnn: interrupted: stopping at the end of this epoch") == 1
    metrics = json.loads((out / "metrics.json").read_text())
    n = metrics["epochs"]
    assert 2 <= n < 100000
    assert metrics["stopped"] == f"interrupted at epoch {n}"
    assert re.search(rf"^stopped early: interrupted at epoch {n}$", stdout, re.M), stdout
    assert f"trained {n} epochs" in stdout and "test accuracy" in stdout
    assert sorted(os.listdir(out)) == OUTPUTS  # everything a normal run writes, no temp
    assert {"accuracy", "auc", "loss", "confusion_matrix"} <= set(metrics["test"])
    history = json.loads((out / "history.json").read_text())
    assert len(history["loss"]) == n
    model = fastnn.load(out / "model.safetensors")
    assert all(np.isfinite(w).all() for w in model.get_weights())
    assert model.preprocessing is not None


@posix
def test_second_ctrl_c_quits_at_once_and_leaves_no_files(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("mine")  # a user's file in the folder: kept
    proc = _Proc([*LONG_TRAIN, "--hidden", "64,64", "--out", out])
    _epochs_done(proc, 1)
    proc.p.send_signal(signal.SIGINT)
    proc.wait_for("fastnn: interrupted: stopping")  # the first one was handled
    proc.p.send_signal(signal.SIGINT)
    code, stdout, stderr = proc.finish()
    assert code == 130, stderr[-2000:]
    assert stderr.rstrip().endswith("fastnn: aborted") and "Traceback" not in stderr
    assert "wrote" not in stdout
    assert sorted(os.listdir(out)) == ["notes.txt"]
    assert (out / "notes.txt").read_text() == "mine"


@posix
def test_ctrl_c_before_training_aborts(tmp_path):
    """Before `fit` there is nothing to keep: Ctrl-C aborts, and --out is not left behind."""
    g = runguard.GracefulInterrupt()
    with g:
        assert signal.getsignal(signal.SIGINT) == g._handle
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)
        assert not g.requested
        g.arm()
        os.kill(os.getpid(), signal.SIGINT)  # now a request, not an exception
        time.sleep(0.05)
        assert g.requested
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_guard_installs_nothing_in_a_worker_thread():
    seen = {}

    def work():
        with runguard.GracefulInterrupt() as g:
            seen["handler"] = signal.getsignal(signal.SIGINT)
            seen["guard"] = g

    t = threading.Thread(target=work)
    t.start()
    t.join()
    assert seen["handler"] is signal.default_int_handler
    assert runguard.active_interrupt() is not seen["guard"]


# --------------------------------------------------------------------------- fit
def _data(n=2000, d=10):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, d))
    return X, (X[:, 0] - X[:, 1] > 0).astype(float)


def _net(backend, optimizer="adam", wide=64):
    m = fastnn.Sequential(
        [Dense(wide, "relu"), Dense(wide, "tanh"), Dense(1, "sigmoid")], backend=backend
    )
    m.compile(optimizer, "binary_crossentropy", ["accuracy"])
    return m


def _same_weights(a, b) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(a.get_weights(), b.get_weights(), strict=True))


class _BrokenMidUpdate(fastnn.optimizers.Adam):
    """Half-updates the weights at one step (NaN in the first half), then is
    interrupted: what a Ctrl-C inside a chunked optimizer update can leave."""

    def __init__(self, at_step):
        super().__init__()
        self.at_step = at_step

    def step(self, be, theta, grad):
        if self.iterations + 1 == self.at_step:
            theta[: theta.size // 2] = np.nan
            raise KeyboardInterrupt
        super().step(be, theta, grad)


def test_keyboard_interrupt_mid_update_keeps_last_completed_epoch():
    X, y = _data()
    steps_per_epoch = 2000 // 32 + 1
    m = _net("numpy", _BrokenMidUpdate(at_step=3 * steps_per_epoch + 10))
    with pytest.raises(KeyboardInterrupt):
        m.fit(X, y, epochs=10, batch_size=32, seed=3, verbose=0)
    assert m.history.epoch == [0, 1, 2]
    assert {k: len(v) for k, v in m.history.history.items()} == {"loss": 3, "accuracy": 3}
    assert m.history.stop_reason.startswith("KeyboardInterrupt in epoch 4")
    ref = _net("numpy")
    ref.fit(X, y, epochs=3, batch_size=32, seed=3, verbose=0)
    assert _same_weights(m, ref)  # finite, and exactly the end of epoch 3
    assert m.optimizer.iterations == ref.optimizer.iterations
    for k in ("m", "v"):
        np.testing.assert_array_equal(m.optimizer.state[k], ref.optimizer.state[k])


class _AlarmAfter(fastnn.callbacks.Callback):
    """Arms a timer at the end of epoch 2; it raises KeyboardInterrupt wherever the
    training is when it fires (mid-epoch, in Python or after a compiled call)."""

    def on_epoch_end(self, epoch, logs=None):
        if epoch == 1:
            signal.setitimer(signal.ITIMER_REAL, 0.003)


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


@posix
@pytest.mark.parametrize("backend_name", ["numpy", "numba"])
@pytest.mark.parametrize("wide", [8, 64])  # numba: the hand-loop and the BLAS epoch
def test_asynchronous_interrupt_keeps_a_completed_epoch(backend_name, wide):
    pytest.importorskip(backend_name)
    X, y = _data()
    old = signal.signal(signal.SIGALRM, _raise_interrupt)
    try:
        m = _net(backend_name, wide=wide)
        with pytest.raises(KeyboardInterrupt):
            m.fit(X, y, epochs=10000, batch_size=8, seed=5, verbose=0, callbacks=[_AlarmAfter()])
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    k = len(m.history.epoch)
    assert k >= 2 and all(len(v) == k for v in m.history.history.values())
    ref = _net(backend_name, wide=wide)
    ref.fit(X, y, epochs=k, batch_size=8, seed=5, verbose=0)
    assert _same_weights(m, ref)
    assert m.optimizer.iterations == ref.optimizer.iterations


def test_stop_on_interrupt_stops_at_the_epoch_end():
    X, y = _data(400)
    guard = runguard.GracefulInterrupt()

    class PressCtrlC(fastnn.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 2:
                guard.requested = True  # as the handler does, mid-epoch 3

    m = _net("numpy")
    h = m.fit(
        X,
        y,
        epochs=50,
        batch_size=32,
        seed=0,
        verbose=0,
        callbacks=[PressCtrlC(), runguard.StopOnInterrupt(guard)],
    )
    assert h.epoch == [0, 1, 2] and h.stop_reason == "interrupted at epoch 3"
    assert guard.armed


# --------------------------------------------------------------------------- failed runs
def _invoke(*args):
    return CliRunner().invoke(cli.main, [str(a) for a in args], catch_exceptions=False)


def _tree(path):
    return sorted(
        os.path.relpath(os.path.join(d, f), path) for d, ds, fs in os.walk(path) for f in fs + ds
    )


def test_failed_train_leaves_no_new_out_folder(tmp_path):
    csv = tmp_path / "d.csv"
    csv.write_text("a,b,y\n1,2,0\n3,4,1\n5,6,0\n7,8,1\n")
    before = _tree(tmp_path)
    res = _invoke("train", csv, "--target", "nope", "--out", tmp_path / "new" / "run")
    assert res.exit_code == 2 and "nope" in res.stderr
    assert _tree(tmp_path) == before


def test_failed_train_after_writing_removes_only_its_files(tmp_path, monkeypatch):
    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("mine")

    def broken_plot(history, path, best_epoch=None):
        raise OSError(28, "No space left on device", str(path))

    monkeypatch.setattr(report, "plot_history", broken_plot)
    res = _invoke("train", "--epochs", "1", "--backend", "numpy", "-q", "--out", out)
    assert res.exit_code == 2 and "No space left" in res.stderr
    assert sorted(os.listdir(out)) == ["keep.txt"]  # model and json files written: gone


def test_failed_predict_leaves_no_output(tmp_path):
    run = tmp_path / "run"
    assert (
        _invoke("train", "--epochs", "1", "--backend", "numpy", "-q", "--out", run).exit_code == 0
    )
    bad = tmp_path / "bad.csv"
    bad.write_text("x,y\n1,2\n")
    before = _tree(tmp_path)
    res = _invoke("predict", run / "model.safetensors", bad, "--out", tmp_path / "p.csv")
    assert res.exit_code == 2
    assert _tree(tmp_path) == before
    existing = tmp_path / "old.csv"
    existing.write_text("previous predictions\n")
    res = _invoke("predict", run / "model.safetensors", bad, "--out", existing)
    assert res.exit_code == 2 and existing.read_text() == "previous predictions\n"
