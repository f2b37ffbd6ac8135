"""The ``fastnn`` process ends without the interpreter's module teardown
(:func:`fastnn.cli._exit_now`): nothing it writes may be lost by that, exit handlers
still run, and ``main`` called from another program still raises SystemExit."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import threading

import pytest

from fastnn import cli, data

FAST = ["--epochs", "2", "--backend", "numpy", "--quiet"]
#: block-buffered stdout, as in most shells' pipes (this sandbox sets it unbuffered)
BUFFERED = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}


def _python(*args):
    return subprocess.run(
        [sys.executable, *map(str, args)], capture_output=True, text=True, timeout=300, env=BUFFERED
    )


def _command(*args):
    """``python -m fastnn.cli ARGS``: the process the quick exit is for."""
    return _python("-m", "fastnn.cli", *args)


@pytest.fixture(scope="module")
def churn_csv(tmp_path_factory):
    path = tmp_path_factory.mktemp("exit") / "churn.csv"
    data.load_churn().to_csv(path, index=False)
    return path


def test_train_and_predict_leave_complete_files_and_output(tmp_path, churn_csv):
    out = tmp_path / "run"
    res = _command("train", *FAST, "--out", out)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("test accuracy") and "confusion matrix" in res.stdout
    assert res.stdout.endswith("\n")
    assert json.loads((out / "metrics.json").read_text())["test"]["accuracy"] > 0.5
    assert len(json.loads((out / "history.json").read_text())["loss"]) == 2
    assert (out / "history.png").read_bytes().startswith(b"\x89PNG")
    # 10,000 scored rows on stdout (far past any pipe or stdio buffer) all arrive
    scored = _command("predict", out / "model.safetensors", churn_csv)
    assert scored.returncode == 0, scored.stderr
    rows = list(csv.DictReader(scored.stdout.splitlines()))
    assert len(rows) == 10_000 and rows[-1]["Exited_pred"] in ("0", "1")
    to_file = _command("predict", out / "model.safetensors", churn_csv, "--out", tmp_path / "p.csv")
    assert to_file.returncode == 0, to_file.stderr
    assert (tmp_path / "p.csv").read_text() == scored.stdout


def test_errors_keep_their_exit_code_and_one_line(tmp_path):
    res = _command("train", "--epochs", "-3")
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr.startswith("fastnn: error: ") and res.stderr.count("\n") == 1


def test_exit_handlers_still_run():
    code = (
        "import atexit, runpy, sys\n"
        "atexit.register(print, 'exit handler ran')\n"
        "sys.argv = ['fastnn', '--version']\n"
        "runpy.run_module('fastnn.cli', run_name='__main__')\n"
        "print('not reached: the command ends the process')\n"
    )
    res = _python("-c", code)
    assert res.returncode == 0, res.stderr
    assert "version" in res.stdout and res.stdout.rstrip().endswith("exit handler ran")
    assert "not reached" not in res.stdout


def test_main_from_another_program_raises_system_exit():
    code = (
        "import sys\n"
        "from fastnn.cli import main\n"
        "sys.argv = ['-c', '--version']\n"
        "try:\n"
        "    main()\n"
        "except SystemExit as exc:\n"
        "    print('caught', exc.code)\n"
    )
    res = _python("-c", code)
    assert res.returncode == 0, res.stderr
    assert res.stdout.rstrip().endswith("caught 0")


def test_who_gets_the_quick_exit(monkeypatch):
    monkeypatch.delenv("FASTNN_FULL_EXIT", raising=False)
    monkeypatch.setattr(sys, "gettrace", lambda: None)  # also under a coverage tracer
    monkeypatch.setattr(sys, "getprofile", lambda: None)
    monkeypatch.setattr(sys, "argv", ["/usr/local/bin/fastnn", "train"])
    assert cli._is_the_command()
    monkeypatch.setenv("FASTNN_FULL_EXIT", "1")  # the opt-out
    assert not cli._is_the_command()
    monkeypatch.setenv("FASTNN_FULL_EXIT", "0")
    assert cli._is_the_command()
    monkeypatch.setattr(sys, "argv", ["/usr/lib/ipykernel_launcher.py", "-f", "k.json"])
    assert not cli._is_the_command()  # a notebook calling main() keeps its kernel
    monkeypatch.setattr(sys, "argv", ["fastnn.cli"])
    assert not cli._is_the_command()
    monkeypatch.setattr(sys, "argv", ["fastnn"])
    monkeypatch.setattr(sys, "getprofile", lambda: object())  # python -m cProfile ...
    assert not cli._is_the_command()
    monkeypatch.setattr(sys, "getprofile", lambda: None)
    release = threading.Event()
    worker = threading.Thread(target=release.wait, daemon=False)
    worker.start()
    try:
        assert not cli._is_the_command()  # a thread to wait for: the normal exit
    finally:
        release.set()
        worker.join()
    assert cli._is_the_command()
