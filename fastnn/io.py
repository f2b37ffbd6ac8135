"""Saving and loading models: one safetensors file, no pickle anywhere.

The file holds one tensor per parameter (``layers.<i>.<name>``) and, in the safetensors
metadata header (string to string), ``format`` = "fastnn", ``format_version``, the
``architecture`` (JSON of :meth:`Sequential.get_config`) and, for models trained by the
CLI, ``preprocessing`` (JSON). Loading parses JSON and raw little-endian numbers only:
nothing is unpickled, imported or evaluated.

Writes are atomic: the bytes go to a temp file in the same folder, are fsync'ed, and are
renamed over the target, so a crash mid-save leaves the previous file intact. Temp files
left by an interrupted save are removed by the next save to the same path.
"""

from __future__ import annotations

import glob
import json
import os
import struct
import tempfile

import numpy as np

from .errors import ModelFileError

FORMAT = "fastnn"
FORMAT_VERSION = 1
#: a metadata header larger than this is refused before it is read
MAX_HEADER_BYTES = 16 * 1024 * 1024
_TMP_PREFIX = ".fastnn-tmp-"


def _tmp_pattern(path: str) -> str:
    d, base = os.path.split(os.path.abspath(path))
    return os.path.join(d, f"{_TMP_PREFIX}{glob.escape(base)}.*")


def atomic_write_bytes(path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temp file, fsync, rename, fsync dir)."""
    path = os.fspath(path)
    d, base = os.path.split(os.path.abspath(path))
    if not os.path.isdir(d):
        raise ModelFileError(f"cannot save to {path!r}: folder {d!r} does not exist")
    for stale in glob.glob(_tmp_pattern(path)):  # leftovers of an interrupted save
        try:
            os.remove(stale)
        except OSError:
            pass
    fd, tmp = tempfile.mkstemp(prefix=f"{_TMP_PREFIX}{base}.", dir=d)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise
    try:
        dfd = os.open(d, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:  # some filesystems refuse fsync on folders; the rename is still atomic
        pass


def save(model, path, preprocessing: dict | None = None) -> None:
    """Save ``model`` (architecture, weights, optional preprocessing state) to ``path``."""
    from safetensors.numpy import save as st_save

    model._require_built()
    tensors = {}
    for i, layer in enumerate(model.layers):
        for pname in layer.param_names:
            tensors[f"layers.{i}.{pname}"] = np.ascontiguousarray(
                model.backend.to_numpy(layer.params[pname])
            )
    meta = {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "architecture": json.dumps(model.get_config()),
    }
    prep = preprocessing if preprocessing is not None else getattr(model, "preprocessing", None)
    if prep is not None:
        meta["preprocessing"] = json.dumps(prep)
    atomic_write_bytes(path, st_save(tensors, metadata=meta))


def _read_checked(path) -> bytes:
    path = os.fspath(path)
    if not os.path.exists(path):
        raise ModelFileError(f"model file {path!r} does not exist")
    if os.path.isdir(path):
        raise ModelFileError(
            f"{path!r} is a folder, not a model file (look for model.safetensors in it)"
        )
    size = os.path.getsize(path)
    if size == 0:
        raise ModelFileError(f"model file {path!r} is empty")
    if size < 8:
        raise ModelFileError(f"model file {path!r} is truncated ({size} bytes)")
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        if n > MAX_HEADER_BYTES:
            raise ModelFileError(
                f"{path!r} is not a fastnn model: its header claims {n} bytes "
                f"(limit {MAX_HEADER_BYTES}); the file is corrupt or not safetensors"
            )
        if 8 + n > size:
            raise ModelFileError(
                f"model file {path!r} is truncated: header needs {n} bytes, file has {size - 8}"
            )
        f.seek(0)
        return f.read()


def read_file(path):
    """Return ``(metadata, tensors)`` of a fastnn model file, with clear errors."""
    from safetensors import SafetensorError
    from safetensors.numpy import load as st_load

    data = _read_checked(path)
    (n,) = struct.unpack("<Q", data[:8])
    try:
        header = json.loads(data[8 : 8 + n])
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ModelFileError(
            f"{os.fspath(path)!r} is not a safetensors file (bad header)"
        ) from None
    if not isinstance(header, dict):
        raise ModelFileError(
            f"{os.fspath(path)!r} is not a safetensors file (header is not an object)"
        )
    meta = header.get("__metadata__") or {}
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ModelFileError(f"{os.fspath(path)!r} is a safetensors file but not a fastnn model")
    try:
        version = int(meta.get("format_version", "0"))
    except ValueError:
        raise ModelFileError(
            f"{os.fspath(path)!r} has a bad format_version {meta.get('format_version')!r}"
        ) from None
    if version > FORMAT_VERSION:
        raise ModelFileError(
            f"{os.fspath(path)!r} was written by a newer fastnn (format {version}; this version "
            f"reads up to {FORMAT_VERSION}); upgrade fastnn to load it"
        )
    try:
        tensors = st_load(data)
    except (SafetensorError, ValueError, OverflowError) as exc:
        raise ModelFileError(f"{os.fspath(path)!r} is corrupt: {exc}") from None
    return meta, tensors


#: the model classes files are loaded into, by name. Sequential registers itself
#: here (io does not import it: a model's training runs callbacks, and a callback saves)
MODEL_CLASSES: dict = {}


def load(path, backend=None):
    """Load a model saved by :func:`save`. Its ``preprocessing`` attribute holds the CLI's
    preprocessing state (or None). Raises :class:`ModelFileError` on any bad file."""
    from .backends import get_backend

    backend = get_backend(backend)  # a bad backend is the caller's error, not the file's
    meta, tensors = read_file(path)
    p = os.fspath(path)
    try:
        arch = json.loads(meta["architecture"])
        prep = json.loads(meta["preprocessing"]) if "preprocessing" in meta else None
    except (KeyError, json.JSONDecodeError) as exc:
        raise ModelFileError(f"{p!r} has a missing or broken architecture: {exc}") from None
    try:
        model = MODEL_CLASSES["Sequential"].from_config(arch, backend=backend)
    except ModelFileError:
        raise
    except Exception as exc:
        raise ModelFileError(f"{p!r} describes an invalid model: {exc}") from None
    if not model.built:
        raise ModelFileError(f"{p!r} does not record the model's input width")
    weights = []
    expected = {}
    for i, layer in enumerate(model.layers):
        for pname, shape in layer.param_shapes().items():
            key = f"layers.{i}.{pname}"
            expected[key] = tuple(shape)
            if key not in tensors:
                raise ModelFileError(f"{p!r} lacks tensor {key!r} required by its architecture")
            t = tensors[key]
            if tuple(t.shape) != tuple(shape):
                raise ModelFileError(
                    f"{p!r}: tensor {key!r} has shape {tuple(t.shape)}, the architecture needs {tuple(shape)}"
                )
            if t.dtype.kind != "f" or not np.isfinite(t).all():
                raise ModelFileError(
                    f"{p!r}: tensor {key!r} holds NaN, infinite or non-float values"
                )
            weights.append(t)
    extra = sorted(set(tensors) - set(expected))
    if extra:
        raise ModelFileError(f"{p!r} has tensors the architecture does not use: {extra[:5]}")
    model.set_weights(weights)
    model.preprocessing = prep
    return model
