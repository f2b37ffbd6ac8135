"""save/load: one safetensors file with the architecture in its metadata; atomic writes;
every kind of bad file raises ModelFileError."""

from __future__ import annotations

import json
import os
import struct

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import save_file

import fastnn
from fastnn import io as fio
from fastnn.errors import ModelFileError, NotBuiltError
from fastnn.layers import Activation, Dense, Dropout, LeakyReLU


def _trained(dtype="float32", layers=None, loss="binary_crossentropy", k=1):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((50, 5))
    y = (X[:, 0] > 0).astype(int) if k == 1 else rng.integers(0, k, 50)
    layers = layers or [Dense(6, "relu"), Dropout(0.1), Dense(1, "sigmoid")]
    m = fastnn.Sequential(layers, dtype=dtype, backend="numpy", name="churny")
    m.compile(fastnn.optimizers.AdamW(0.01, weight_decay=0.001), loss, ["accuracy"])
    m.fit(X, y, epochs=2, verbose=0, seed=0)
    return m, X, y


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_round_trip(tmp_path, dtype):
    m, X, y = _trained(dtype)
    prep = {"columns": ["a", "b"], "mean": [0.5, 1.5], "target": {"No": 0, "Yes": 1}}
    path = tmp_path / "model.safetensors"
    fastnn.save(m, path, preprocessing=prep)
    m2 = fastnn.load(path, backend="numpy")
    np.testing.assert_array_equal(m2.predict(X), m.predict(X))
    assert m2.dtype == m.dtype
    assert m2.get_config() == m.get_config()
    assert m2.get_config()["compile"] == {
        "loss": "binary_crossentropy",
        "optimizer": m.optimizer.get_config(),
        "metrics": ["accuracy"],
    }
    assert m2.preprocessing == prep
    assert m2.name == "churny"
    for a, b in zip(m.get_weights(), m2.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    # the loaded model is compiled and trains on
    assert m2.evaluate(X, y)["loss"] == pytest.approx(m.evaluate(X, y)["loss"], rel=1e-6)
    m2.fit(X, y, epochs=1, verbose=0)


def test_round_trip_of_every_layer_kind(tmp_path):
    layers = [
        Dense(4, "leaky_relu", alpha=0.2, use_bias=False, kernel_initializer="he_normal"),
        Activation("tanh"),
        LeakyReLU(alpha=0.3),
        Dropout(0.25),
        Dense(3),
        Activation("softmax"),
    ]
    m, X, _ = _trained("float64", layers, "sparse_categorical_crossentropy", k=3)
    fastnn.save(m, tmp_path / "m.safetensors")
    m2 = fastnn.load(tmp_path / "m.safetensors", backend="numpy")
    assert m2.get_config() == m.get_config()
    assert [type(layer).__name__ for layer in m2.layers] == [
        "Dense",
        "Activation",
        "LeakyReLU",
        "Dropout",
        "Dense",
        "Activation",
    ]
    assert m2.layers[2].alpha == 0.3 and m2.layers[0].use_bias is False
    np.testing.assert_array_equal(m2.predict(X), m.predict(X))


def test_preprocessing_attribute_is_saved(tmp_path):
    m, X, _ = _trained()
    m.preprocessing = {"scaler": [1, 2, 3]}
    fastnn.save(m, tmp_path / "m.safetensors")
    assert fastnn.load(tmp_path / "m.safetensors").preprocessing == {"scaler": [1, 2, 3]}
    m.preprocessing = None
    fastnn.save(m, tmp_path / "n.safetensors")
    assert fastnn.load(tmp_path / "n.safetensors").preprocessing is None


def test_file_is_plain_safetensors_with_metadata(tmp_path):
    m, _, _ = _trained()
    path = tmp_path / "model.safetensors"
    fastnn.save(m, path, preprocessing={"x": 1})
    with safe_open(str(path), framework="numpy") as f:
        meta = f.metadata()
        keys = sorted(f.keys())
        W0 = f.get_tensor("layers.0.W")
    assert meta["format"] == "fastnn"
    assert int(meta["format_version"]) == fio.FORMAT_VERSION
    arch = json.loads(meta["architecture"])
    assert arch["class"] == "Sequential" and len(arch["layers"]) == 3
    assert json.loads(meta["preprocessing"]) == {"x": 1}
    assert keys == ["layers.0.W", "layers.0.b", "layers.2.W", "layers.2.b"]
    np.testing.assert_array_equal(W0, m.get_weights()[0])
    # no pickle: the header is JSON, everything after it raw numbers
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    json.loads(raw[8 : 8 + n])


def test_unbuilt_model_cannot_be_saved(tmp_path):
    with pytest.raises(NotBuiltError):
        fastnn.save(fastnn.Sequential([Dense(1)]), tmp_path / "m.safetensors")


def test_load_onto_a_backend(tmp_path, backend_name):
    m, X, _ = _trained("float64")
    fastnn.save(m, tmp_path / "m.safetensors")
    m2 = fastnn.load(tmp_path / "m.safetensors", backend=backend_name)
    assert m2.backend.name == backend_name
    np.testing.assert_allclose(m2.predict(X), m.predict(X), rtol=1e-10, atol=1e-12)


def test_bad_backend_on_load_is_not_blamed_on_the_file(good_file):
    from fastnn.errors import BackendUnavailableError, UnknownNameError

    with pytest.raises(UnknownNameError, match="nump"):
        fastnn.load(good_file, backend="nump")
    if not fastnn.backend_status()["cupy"][0]:
        with pytest.raises(BackendUnavailableError, match="cupy"):
            fastnn.load(good_file, backend="cupy")


# ---------------------------------------------------------------------- atomic writes
def test_save_leaves_no_temp_files_and_overwrites(tmp_path):
    m, X, _ = _trained()
    path = tmp_path / "model.safetensors"
    fastnn.save(m, path)
    m.set_weights([w * 0.5 for w in m.get_weights()])
    fastnn.save(m, path)
    assert os.listdir(tmp_path) == ["model.safetensors"]
    np.testing.assert_array_equal(fastnn.load(path, backend="numpy").predict(X), m.predict(X))


def test_leftover_temp_files_are_removed_by_the_next_save(tmp_path):
    m, _, _ = _trained()
    stale = [
        tmp_path / ".fastnn-tmp-model.safetensors.abc123",
        tmp_path / ".fastnn-tmp-model.safetensors.zzz",
    ]
    other = tmp_path / ".fastnn-tmp-other.safetensors.abc123"
    for p in [*stale, other]:
        p.write_bytes(b"half a model")
    fastnn.save(m, tmp_path / "model.safetensors")
    assert not any(p.exists() for p in stale)
    assert other.exists()  # belongs to a save of another file


def test_crash_mid_save_keeps_the_old_file(tmp_path, monkeypatch):
    m, X, _ = _trained()
    path = tmp_path / "model.safetensors"
    fastnn.save(m, path)
    before = path.read_bytes()

    def boom(*a, **kw):
        raise OSError("disk unplugged")

    monkeypatch.setattr(fio.os, "replace", boom)
    m.set_weights([w + 1 for w in m.get_weights()])
    with pytest.raises(OSError, match="disk unplugged"):
        fastnn.save(m, path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["model.safetensors"]


def test_save_into_missing_folder_fails_clearly(tmp_path):
    m, _, _ = _trained()
    with pytest.raises(ModelFileError, match="does not exist"):
        fastnn.save(m, tmp_path / "nope" / "m.safetensors")


# ---------------------------------------------------------------------- bad files
@pytest.fixture
def good_file(tmp_path):
    m, _, _ = _trained()
    path = tmp_path / "good.safetensors"
    fastnn.save(m, path)
    return path


def _write(tmp_path, data: bytes, name="bad.safetensors"):
    p = tmp_path / name
    p.write_bytes(data)
    return p


def test_missing_file(tmp_path):
    with pytest.raises(ModelFileError, match="does not exist"):
        fastnn.load(tmp_path / "missing.safetensors")


def test_folder_instead_of_file(tmp_path):
    with pytest.raises(ModelFileError, match="folder"):
        fastnn.load(tmp_path)


def test_empty_file(tmp_path):
    with pytest.raises(ModelFileError, match="empty"):
        fastnn.load(_write(tmp_path, b""))


@pytest.mark.parametrize("keep", [3, 8, 20, 0.5, -1])
def test_truncated_file(tmp_path, good_file, keep):
    data = good_file.read_bytes()
    cut = (
        int(len(data) * keep) if isinstance(keep, float) else (keep if keep > 0 else len(data) - 1)
    )
    with pytest.raises(ModelFileError):
        fastnn.load(_write(tmp_path, data[:cut]))


@pytest.mark.parametrize(
    "data",
    [
        b"this is a CSV file,not a model\n1,2,3\n",
        b"\x80\x04\x95pickle-ish bytes\x00\x00\x00\x00",
        struct.pack("<Q", 2**40) + b"{}",
        struct.pack("<Q", 5) + b"\xff\xfe\xfd\xfc\xfb",
        struct.pack("<Q", 2) + b"[]",
        struct.pack("<Q", 2) + b"{}",
    ],
    ids=["text", "binary", "huge-header", "bad-utf8", "header-list", "no-metadata"],
)
def test_not_a_fastnn_file(tmp_path, data):
    with pytest.raises(ModelFileError):
        fastnn.load(_write(tmp_path, data))


def test_plain_safetensors_file_is_refused(tmp_path):
    p = tmp_path / "x.safetensors"
    save_file({"w": np.zeros(3, dtype=np.float32)}, str(p), metadata={"format": "pt"})
    with pytest.raises(ModelFileError, match="not a fastnn model"):
        fastnn.load(p)


def _rewrite(good_file, tmp_path, meta_update=None, tensor_update=None):
    with safe_open(str(good_file), framework="numpy") as f:
        meta = dict(f.metadata())
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    meta.update(meta_update or {})
    for k, v in (tensor_update or {}).items():
        if v is None:
            tensors.pop(k)
        else:
            tensors[k] = v
    p = tmp_path / "edited.safetensors"
    save_file(tensors, str(p), metadata=meta)
    return p


def test_newer_format_is_refused_with_upgrade_hint(tmp_path, good_file):
    p = _rewrite(good_file, tmp_path, {"format_version": str(fio.FORMAT_VERSION + 1)})
    with pytest.raises(ModelFileError, match="newer fastnn"):
        fastnn.load(p)


@pytest.mark.parametrize(
    ("meta", "tensors", "match"),
    [
        ({"format_version": "one"}, None, "format_version"),
        ({"architecture": "{not json"}, None, "architecture"),
        ({"architecture": json.dumps({"layers": [{"class": "Conv2D"}]})}, None, "Conv2D"),
        (None, {"layers.0.W": None}, "layers.0.W"),
        (None, {"layers.0.W": np.zeros((2, 2), np.float32)}, "shape"),
        (None, {"layers.0.b": np.full(6, np.nan, np.float32)}, "NaN"),
        (None, {"layers.9.W": np.zeros(2, np.float32)}, "does not use"),
    ],
    ids=["version", "arch-json", "arch-class", "missing-tensor", "shape", "nan", "extra"],
)
def test_inconsistent_files_are_refused(tmp_path, good_file, meta, tensors, match):
    p = _rewrite(good_file, tmp_path, meta, tensors)
    with pytest.raises(ModelFileError, match=match):
        fastnn.load(p)


def test_model_file_error_is_a_value_error(tmp_path):
    with pytest.raises(ValueError):
        fastnn.load(tmp_path / "missing.safetensors")
