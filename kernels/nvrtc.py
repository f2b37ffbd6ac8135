"""Compile CUDA C with NVRTC through ctypes: no CuPy and no GPU needed.

The test suite uses it to compile every ``kernels/*.cu`` source for each target
architecture on a CPU-only machine. NVRTC comes from the pip wheel
``nvidia-cuda-nvrtc-cu12`` (the ``dev`` extra), found through its package folder
(``nvidia/cuda_nvrtc/lib``), else from ``FASTNN_NVRTC`` (a path to ``libnvrtc.so``),
else from the system library path.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import importlib.util
import os
from pathlib import Path


class NvrtcError(RuntimeError):
    """A source failed to compile; the message holds NVRTC's log."""


def _candidates() -> list[str]:
    out = []
    env = os.environ.get("FASTNN_NVRTC")
    if env:
        out.append(env)
    try:
        spec = importlib.util.find_spec("nvidia.cuda_nvrtc")
    except (ImportError, ValueError):
        spec = None
    for folder in list(getattr(spec, "submodule_search_locations", None) or []):
        libs = sorted(Path(folder, "lib").glob("libnvrtc.so*")) + sorted(
            Path(folder, "bin").glob("nvrtc64_*.dll")
        )
        out += [str(p) for p in libs if "builtins" not in p.name and ".alt." not in p.name]
    found = ctypes.util.find_library("nvrtc")
    if found:
        out.append(found)
    return out


@functools.cache
def load() -> ctypes.CDLL:
    """The NVRTC library; raises OSError naming every place it looked."""
    tried = []
    for path in _candidates():
        try:
            lib = ctypes.CDLL(path)
        except OSError as exc:
            tried.append(f"{path} ({exc})")
            continue
        lib.nvrtcGetErrorString.restype = ctypes.c_char_p
        return lib
    raise OSError(
        "NVRTC not found (pip install nvidia-cuda-nvrtc-cu12, or set FASTNN_NVRTC); tried: "
        + ("; ".join(tried) or "no candidates")
    )


def version() -> tuple[int, int]:
    """NVRTC's (major, minor)."""
    major, minor = ctypes.c_int(), ctypes.c_int()
    _check(load().nvrtcVersion(ctypes.byref(major), ctypes.byref(minor)), "nvrtcVersion")
    return major.value, minor.value


def _check(status: int, what: str) -> None:
    if status != 0:
        msg = load().nvrtcGetErrorString(status).decode()
        raise NvrtcError(f"{what} failed: {msg}")


def compile_ptx(source: str, options, name: str = "fastnn.cu") -> str:
    """Compile ``source`` with ``options``; return the PTX text, or raise
    :class:`NvrtcError` with the compiler log."""
    lib = load()
    prog = ctypes.c_void_p()
    _check(
        lib.nvrtcCreateProgram(ctypes.byref(prog), source.encode(), name.encode(), 0, None, None),
        "nvrtcCreateProgram",
    )
    try:
        opts = [o.encode() for o in options]
        arr = (ctypes.c_char_p * len(opts))(*opts)
        status = lib.nvrtcCompileProgram(prog, len(opts), arr)
        size = ctypes.c_size_t()
        _check(lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size)), "nvrtcGetProgramLogSize")
        log = ctypes.create_string_buffer(size.value)
        _check(lib.nvrtcGetProgramLog(prog, log), "nvrtcGetProgramLog")
        if status != 0:
            err = lib.nvrtcGetErrorString(status).decode()
            raise NvrtcError(
                f"{name} failed to compile ({err}) with {' '.join(options)}:\n"
                + log.value.decode(errors="replace")
            )
        _check(lib.nvrtcGetPTXSize(prog, ctypes.byref(size)), "nvrtcGetPTXSize")
        ptx = ctypes.create_string_buffer(size.value)
        _check(lib.nvrtcGetPTX(prog, ptx), "nvrtcGetPTX")
        return ptx.value.decode()
    finally:
        lib.nvrtcDestroyProgram(ctypes.byref(prog))
