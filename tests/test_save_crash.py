"""Nothing lost: a process killed at random points while saving never leaves a broken
model file where a good one was."""

from __future__ import annotations

import os
import random
import signal
import sys
import time

import numpy as np
import pytest

import fastnn
from fastnn.layers import Dense

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork (POSIX)")


def _model(seed):
    m = fastnn.Sequential(
        [Dense(64, "relu", input_dim=32), Dense(64, "relu"), Dense(1, "sigmoid")], backend="numpy"
    )
    m.build(32, seed=seed)
    return m


def test_kill_during_repeated_saves_never_breaks_the_file(tmp_path):
    path = tmp_path / "model.safetensors"
    models = [_model(1), _model(2)]
    fastnn.save(models[0], path)
    known = [m.get_weights()[0] for m in models]
    rnd = random.Random(0)
    kills = 0
    for _ in range(100):
        pid = os.fork()
        if pid == 0:  # child: save alternating models as fast as it can until killed
            try:
                i = 0
                while True:
                    fastnn.save(models[i % 2], path)
                    i += 1
            finally:
                os._exit(0)
        time.sleep(rnd.uniform(0.0, 0.02))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        kills += 1
        loaded = fastnn.load(path)  # must always be a complete, valid model
        W0 = loaded.get_weights()[0]
        assert any(np.array_equal(W0, k) for k in known)
    assert kills == 100
    # one ordinary save afterwards cleans the temp files the killed saves left behind
    fastnn.save(models[0], path)
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "model.safetensors"]
    assert leftovers == [], leftovers


def test_failed_save_keeps_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "m.safetensors"
    good = _model(3)
    fastnn.save(good, path)
    before = path.read_bytes()

    def boom(*a, **k):
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(OSError, match="disk full"):
        fastnn.save(_model(4), path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors"]


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__]))
