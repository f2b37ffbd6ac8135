"""Saving and loading models: one safetensors file, no pickle anywhere.

The file holds one tensor per parameter (``layers.<i>.<name>``) and, in the safetensors
metadata header (string to string), ``format`` = "fastnn", ``format_version``, the
``architecture`` (JSON of :meth:`Sequential.get_config`) and, for models trained by the
CLI, ``preprocessing`` (JSON). Loading parses JSON and raw little-endian numbers only:
nothing is unpickled, imported or evaluated.

Writes are atomic: the bytes go to a temp file in the same folder, are fsync'ed, and are
renamed over the target, so a crash mid-save leaves the previous file intact. Several
processes or threads may save to one path at once: every save succeeds and the file
always holds one complete model (the last rename wins). Each writer holds an
``fcntl.flock`` lock on its temp file until the rename, and a save removes only the temp
files of writers that are gone (their lock was released when they died), never a live
writer's. The file gets the permissions a plain ``open()`` would give: those of the file
it replaces, or ``0o666`` less the umask for a new one.
"""

from __future__ import annotations

import glob
import json
import os
import secrets
import struct
import time

import numpy as np

from .errors import ModelFileError

FORMAT = "fastnn"
FORMAT_VERSION = 1
#: a metadata header larger than this is refused before it is read
MAX_HEADER_BYTES = 16 * 1024 * 1024
_TMP_PREFIX = ".fastnn-tmp-"
#: where files cannot be locked, a temp file untouched this long counts as abandoned
_STALE_SECONDS = 3600.0
_OPEN_FLAGS = getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None


def _tmp_pattern(path: str) -> str:
    d, base = os.path.split(os.path.abspath(path))
    return os.path.join(d, f"{_TMP_PREFIX}{glob.escape(base)}.*")


def _lock(fd) -> bool | None:
    """Lock ``fd`` exclusively without waiting: True when locked, False when another
    writer holds the lock, None when there are no locks here (no ``fcntl``, or a
    filesystem that refuses them)."""
    if fcntl is None:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError:
        return None
    return True


def _still_named(fd, name: str) -> bool:
    """True when ``name`` is still the file open as ``fd`` (not removed or replaced)."""
    try:
        st = os.stat(name, follow_symlinks=False)
    except OSError:
        return False
    own = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (own.st_dev, own.st_ino)


def _remove_stale_temps(path: str) -> None:
    """Remove the temp files of earlier saves to ``path`` whose writer is gone.

    A live writer holds the lock on its temp file, so it is skipped. Where there are no
    locks (Windows, some network filesystems) only temp files untouched for
    :data:`_STALE_SECONDS` are removed.
    """
    for stale in glob.glob(_tmp_pattern(path)):
        try:
            fd = os.open(stale, os.O_RDONLY | _OPEN_FLAGS)
        except OSError:  # renamed or removed meanwhile
            continue
        try:
            locked = _lock(fd)
            if locked is None:
                gone = time.time() - os.fstat(fd).st_mtime > _STALE_SECONDS
            else:
                gone = locked and _still_named(fd, stale)
            if gone:
                os.remove(stale)
        except OSError:
            pass
        finally:
            os.close(fd)


def _open_temp(d: str, base: str) -> tuple[int, str]:
    """Create and lock a fresh temp file for a save to ``d/base``; returns ``(fd, name)``.

    Created with mode ``0o666`` so the umask applies, as for a plain ``open()``. A
    cleaner may lock and remove a new temp file in the instant before its writer locks
    it; the writer sees that (the name is gone) and starts over with a new file.
    """
    while True:
        tmp = os.path.join(d, f"{_TMP_PREFIX}{base}.{secrets.token_hex(8)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _OPEN_FLAGS, 0o666)
        locked = _lock(fd)
        if locked is None or (locked and _still_named(fd, tmp)):
            return fd, tmp
        os.close(fd)
        try:
            os.remove(tmp)
        except OSError:
            pass


def _fsync_dir(d: str) -> None:
    try:
        dfd = os.open(d, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:  # some filesystems refuse fsync on folders; the rename is still atomic
        pass


def atomic_write_bytes(path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temp file, fsync, rename, fsync dir).

    Safe to call from several processes or threads for one path at once; see the module
    docstring for the locking and the permissions the file gets.
    """
    path = os.fspath(path)
    d, base = os.path.split(os.path.abspath(path))
    if not os.path.isdir(d):
        raise ModelFileError(f"cannot save to {path!r}: folder {d!r} does not exist")
    _remove_stale_temps(path)
    fd, tmp = _open_temp(d, base)
    try:
        try:
            os.chmod(tmp, os.stat(path).st_mode & 0o777)  # open() keeps an existing mode
        except FileNotFoundError:
            pass
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
        if fcntl is None:  # Windows cannot rename an open file (and there is no lock)
            os.close(fd)
            fd = -1
        os.replace(tmp, path)  # still locked: no cleaner can remove it first
    except BaseException:
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise
    finally:
        if fd >= 0:
            os.close(fd)
    _fsync_dir(d)


def save(model, path, preprocessing: dict | None = None) -> None:
    """Save ``model`` (architecture, weights, optional preprocessing state) to ``path``."""
    atomic_write_bytes(path, model_to_bytes(model, preprocessing))


def model_to_bytes(model, preprocessing: dict | None = None) -> bytes:
    """The bytes :func:`save` writes: a safetensors file (weights as tensors; the
    architecture, format version and preprocessing state as JSON in its header)."""
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
    return st_save(tensors, metadata=meta)


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
    return _parse(_read_checked(path), repr(os.fspath(path)))


def _parse(data: bytes, name: str):
    """``(metadata, tensors)`` of the safetensors bytes ``data``; ``name`` (already
    quoted) says where they came from in error messages."""
    from safetensors import SafetensorError
    from safetensors.numpy import load as st_load

    if len(data) < 8:
        raise ModelFileError(f"{name} is truncated ({len(data)} bytes)")
    (n,) = struct.unpack("<Q", data[:8])
    if n > MAX_HEADER_BYTES or 8 + n > len(data):
        raise ModelFileError(f"{name} is not a fastnn model: bad or truncated header")
    try:
        header = json.loads(data[8 : 8 + n])
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ModelFileError(f"{name} is not a safetensors file (bad header)") from None
    if not isinstance(header, dict):
        raise ModelFileError(f"{name} is not a safetensors file (header is not an object)")
    meta = header.get("__metadata__") or {}
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ModelFileError(f"{name} is a safetensors file but not a fastnn model")
    try:
        version = int(meta.get("format_version", "0"))
    except ValueError:
        raise ModelFileError(
            f"{name} has a bad format_version {meta.get('format_version')!r}"
        ) from None
    if version > FORMAT_VERSION:
        raise ModelFileError(
            f"{name} was written by a newer fastnn (format {version}; this version "
            f"reads up to {FORMAT_VERSION}); upgrade fastnn to load it"
        )
    try:
        tensors = st_load(data)
    except (SafetensorError, ValueError, OverflowError) as exc:
        raise ModelFileError(f"{name} is corrupt: {exc}") from None
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
    return _build(meta, tensors, repr(os.fspath(path)), backend)


def model_from_bytes(data: bytes, backend=None, name: str = "model bytes"):
    """Rebuild a model from :func:`model_to_bytes` output, with the checks of
    :func:`load`: JSON and raw numbers are parsed, nothing is unpickled, imported or
    evaluated. Raises :class:`ModelFileError` on bad bytes."""
    from .backends import get_backend

    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ModelFileError(f"{name} must be bytes, got {type(data).__name__}")
    backend = get_backend(backend)
    meta, tensors = _parse(bytes(data), name)
    return _build(meta, tensors, name, backend)


def _build(meta, tensors, p: str, backend):
    """A built model from parsed metadata and tensors; ``p`` names the source."""
    try:
        arch = json.loads(meta["architecture"])
        prep = json.loads(meta["preprocessing"]) if "preprocessing" in meta else None
    except (KeyError, json.JSONDecodeError) as exc:
        raise ModelFileError(f"{p} has a missing or broken architecture: {exc}") from None
    try:
        model = MODEL_CLASSES["Sequential"].from_config(arch, backend=backend)
    except ModelFileError:
        raise
    except Exception as exc:
        raise ModelFileError(f"{p} describes an invalid model: {exc}") from None
    if not model.built:
        raise ModelFileError(f"{p} does not record the model's input width")
    weights = []
    expected = {}
    for i, layer in enumerate(model.layers):
        for pname, shape in layer.param_shapes().items():
            key = f"layers.{i}.{pname}"
            expected[key] = tuple(shape)
            if key not in tensors:
                raise ModelFileError(f"{p} lacks tensor {key!r} required by its architecture")
            t = tensors[key]
            if tuple(t.shape) != tuple(shape):
                raise ModelFileError(
                    f"{p}: tensor {key!r} has shape {tuple(t.shape)}, the architecture needs {tuple(shape)}"
                )
            if t.dtype.kind != "f" or not np.isfinite(t).all():
                raise ModelFileError(f"{p}: tensor {key!r} holds NaN, infinite or non-float values")
            weights.append(t)
    extra = sorted(set(tensors) - set(expected))
    if extra:
        raise ModelFileError(f"{p} has tensors the architecture does not use: {extra[:5]}")
    model.set_weights(weights)
    model.preprocessing = prep
    return model
