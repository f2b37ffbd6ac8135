"""Fuzz the model loader: random bytes and mutations of a valid file either load or raise
fastnn's own ModelFileError, never another exception, and nothing is ever executed."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastnn
from fastnn.errors import ModelFileError
from fastnn.layers import Dense

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def valid_bytes(tmp_path_factory):
    m = fastnn.Sequential([Dense(4, "relu", input_dim=3), Dense(1, "sigmoid")], backend="numpy")
    m.build(3, seed=0)
    m.compile("adam", "binary_crossentropy", ["accuracy"])
    p = tmp_path_factory.mktemp("fuzz") / "m.safetensors"
    fastnn.save(m, p)
    return p.read_bytes()


def _load_bytes(tmp_path, data: bytes):
    p = tmp_path / "f.safetensors"
    p.write_bytes(data)
    try:
        fastnn.load(p)
    except ModelFileError:
        pass


@FUZZ
@given(data=st.binary(max_size=512))
def test_random_bytes(tmp_path_factory, data):
    _load_bytes(tmp_path_factory.mktemp("r"), data)


@FUZZ
@given(data=st.data())
def test_mutated_valid_file(tmp_path_factory, valid_bytes, data):
    b = bytearray(valid_bytes)
    n_mut = data.draw(st.integers(1, 8))
    for _ in range(n_mut):
        kind = data.draw(st.sampled_from(["flip", "truncate", "insert"]))
        if kind == "flip" and b:
            i = data.draw(st.integers(0, len(b) - 1))
            b[i] = data.draw(st.integers(0, 255))
        elif kind == "truncate" and b:
            del b[data.draw(st.integers(0, len(b) - 1)) :]
        else:
            i = data.draw(st.integers(0, len(b)))
            b[i:i] = data.draw(st.binary(min_size=1, max_size=8))
    _load_bytes(tmp_path_factory.mktemp("m"), bytes(b))


def _with_header(valid: bytes, edit) -> bytes:
    (n,) = struct.unpack("<Q", valid[:8])
    header = json.loads(valid[8 : 8 + n])
    body = valid[8 + n :]
    edit(header)
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + body


@FUZZ
@given(
    arch=st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
        lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4),
        max_leaves=20,
    )
)
def test_random_architecture_json(tmp_path_factory, valid_bytes, arch):
    def edit(h):
        h["__metadata__"]["architecture"] = json.dumps(arch)

    _load_bytes(tmp_path_factory.mktemp("a"), _with_header(valid_bytes, edit))


def test_architecture_cannot_name_arbitrary_classes(tmp_path, valid_bytes):
    """The layer 'class' is looked up in fastnn's own table, never imported or evaluated."""
    marker = tmp_path / "pwned"

    def edit(h):
        arch = json.loads(h["__metadata__"]["architecture"])
        arch["layers"][0]["class"] = "os.system"
        arch["layers"][0]["config"] = {"command": f"touch {marker}"}
        h["__metadata__"]["architecture"] = json.dumps(arch)

    p = tmp_path / "evil.safetensors"
    p.write_bytes(_with_header(valid_bytes, edit))
    with pytest.raises(ModelFileError, match="layer class"):
        fastnn.load(p)
    assert not marker.exists()


def test_pickle_payload_is_not_a_model(tmp_path):
    """A pickle that would run code when unpickled is rejected as not-a-model."""
    import pickle

    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    p = tmp_path / "evil.safetensors"
    p.write_bytes(pickle.dumps(Evil()))
    with pytest.raises(ModelFileError):
        fastnn.load(p)
    assert not marker.exists()


def test_loader_never_imports_pickle_machinery(tmp_path, valid_bytes, monkeypatch):
    """No load path calls pickle/eval/exec/import: patch them to fail and load."""
    import builtins
    import pickle

    p = tmp_path / "ok.safetensors"
    p.write_bytes(valid_bytes)
    fastnn.load(p)  # warm up lazy imports (safetensors) before the trap is set

    def trap(*a, **k):
        raise AssertionError("a load path tried to execute code")

    monkeypatch.setattr(pickle, "loads", trap)
    monkeypatch.setattr(pickle, "load", trap)
    monkeypatch.setattr(builtins, "eval", trap)
    monkeypatch.setattr(builtins, "exec", trap)
    m = fastnn.load(p)
    assert np.isfinite(m.get_weights()[0]).all()
