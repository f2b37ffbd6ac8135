"""Nothing lost when saves run side by side: many processes and threads saving to one
path, the permissions of saved files, and the clean-up of temp files."""

from __future__ import annotations

import json
import os
import threading

import numpy as np
import pytest

import fastnn
from fastnn import io as fio
from fastnn.layers import Dense

needs_fork = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork (POSIX)")
needs_flock = pytest.mark.skipif(
    getattr(fio, "fcntl", None) is None, reason="needs fcntl.flock (POSIX)"
)

PROCESSES = 4
SAVES_EACH = 100


def _model(seed):
    m = fastnn.Sequential([Dense(32, "relu", input_dim=16), Dense(1, "sigmoid")], backend="numpy")
    m.build(16, seed=seed)
    return m


def _save_and_load(path, models, k, n) -> dict:
    """Save the two models alternately ``n`` times, loading the file after each save."""
    known = [m.get_weights()[0] for m in models]
    out = {"saves": 0, "save_errors": [], "load_errors": []}
    for i in range(n):
        try:
            fastnn.save(models[(i + k) % 2], path)
            out["saves"] += 1
        except Exception as exc:  # what a user would see: a save that raised
            out["save_errors"].append(repr(exc))
        try:
            W0 = fastnn.load(path).get_weights()[0]
            if not any(np.array_equal(W0, w) for w in known):
                out["load_errors"].append("loaded weights of neither model")
        except Exception as exc:
            out["load_errors"].append(repr(exc))
    return out


def _leftovers(folder, keep):
    return sorted(p.name for p in folder.iterdir() if p.name != keep)


@needs_fork
def test_processes_saving_to_one_path_all_succeed(tmp_path):
    path = tmp_path / "model.safetensors"
    models = [_model(1), _model(2)]
    fastnn.save(models[0], path)
    children = []
    for k in range(PROCESSES):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # child: report its counts through the pipe, whatever happens
            try:
                os.close(r)
                res = _save_and_load(path, models, k, SAVES_EACH)
                os.write(w, json.dumps(res).encode())
            finally:
                os._exit(0)
        os.close(w)
        children.append((pid, r))
    results = []
    for pid, r in children:
        with os.fdopen(r, "rb") as f:
            results.append(json.loads(f.read() or b'{"saves": 0}'))
        os.waitpid(pid, 0)
    saves = sum(res["saves"] for res in results)
    save_errors = [e for res in results for e in res.get("save_errors", ["no report"])]
    load_errors = [e for res in results for e in res.get("load_errors", [])]
    assert save_errors == [] and load_errors == [], (save_errors[:3], load_errors[:3])
    assert saves == PROCESSES * SAVES_EACH
    assert _leftovers(tmp_path, "model.safetensors") == []


def test_threads_saving_to_one_path_all_succeed(tmp_path):
    path = tmp_path / "model.safetensors"
    models = [_model(1), _model(2)]
    fastnn.save(models[0], path)
    results = [None] * PROCESSES

    def work(k):
        results[k] = _save_and_load(path, models, k, SAVES_EACH // 2)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(PROCESSES)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [r["save_errors"] + r["load_errors"] for r in results] == [[]] * PROCESSES
    assert sum(r["saves"] for r in results) == PROCESSES * (SAVES_EACH // 2)
    assert _leftovers(tmp_path, "model.safetensors") == []


@needs_flock
def test_live_writers_temp_file_is_kept_a_dead_ones_removed(tmp_path):
    path = tmp_path / "m.safetensors"
    live_fd, live = fio._open_temp(str(tmp_path), path.name)  # a writer mid-save
    dead = tmp_path / f"{fio._TMP_PREFIX}{path.name}.deadbeefdeadbeef"
    dead.write_bytes(b"half a model")  # nobody holds its lock: its writer is gone
    try:
        fastnn.save(_model(1), path)
        assert os.path.exists(live)
        assert not dead.exists()
    finally:
        os.close(live_fd)
    fastnn.save(_model(1), path)  # the writer is gone now: its temp file goes too
    assert _leftovers(tmp_path, path.name) == []


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
@pytest.mark.parametrize("umask", [0o022, 0o027, 0o002])
def test_saved_file_mode_follows_umask_like_open(tmp_path, umask):
    old = os.umask(umask)
    try:
        with open(tmp_path / "plain", "w") as f:
            f.write("x")
        fastnn.save(_model(1), tmp_path / "m.safetensors")
    finally:
        os.umask(old)
    mode = os.stat(tmp_path / "m.safetensors").st_mode & 0o777
    assert mode == os.stat(tmp_path / "plain").st_mode & 0o777 == 0o666 & ~umask


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
def test_overwrite_keeps_the_files_mode(tmp_path):
    path = tmp_path / "m.safetensors"
    fastnn.save(_model(1), path)
    os.chmod(path, 0o640)
    fastnn.save(_model(2), path)
    assert os.stat(path).st_mode & 0o777 == 0o640


def test_without_locks_only_old_temp_files_are_removed(tmp_path, monkeypatch):
    """Where files cannot be locked (Windows, some network filesystems), a temp file
    counts as abandoned only once it is old."""
    monkeypatch.setattr(fio, "fcntl", None)
    path = tmp_path / "m.safetensors"
    young = tmp_path / f"{fio._TMP_PREFIX}{path.name}.0000000000000001"
    old = tmp_path / f"{fio._TMP_PREFIX}{path.name}.0000000000000002"
    young.write_bytes(b"maybe a live writer")
    old.write_bytes(b"abandoned")
    t = os.stat(old).st_mtime - 2 * fio._STALE_SECONDS
    os.utime(old, (t, t))
    fastnn.save(_model(1), path)
    assert _leftovers(tmp_path, path.name) == [young.name]
    assert fastnn.load(path).n_params == _model(1).n_params
