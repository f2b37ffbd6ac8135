"""What the GPU of this machine is, and which fastnn extra fits it (``fastnn info``).

Asks the NVIDIA driver directly (``libcuda`` through ctypes), so it answers before CuPy
is installed; when CuPy is installed it also reports CuPy's CUDA runtime and whether the
installed CuPy wheel fits the driver. Never raises: every failure becomes the reason
no GPU is usable.
"""

from __future__ import annotations

import ctypes
import importlib.util
from dataclasses import dataclass, field

#: pip extra -> (CuPy wheel, CUDA major version it is built for)
EXTRAS = {"gpu": ("cupy-cuda12x", 12), "gpu-cuda13": ("cupy-cuda13x", 13)}

_CC_MAJOR, _CC_MINOR = 75, 76  # CUdevice_attribute: compute capability
_LIBCUDA = ("libcuda.so.1", "libcuda.so", "nvcuda.dll", "libcuda.dylib")


@dataclass
class GpuReport:
    """The answer: ``cards`` as ``(name, "major.minor")``; versions as ``(major, minor)``."""

    cards: list = field(default_factory=list)
    driver_cuda: tuple | None = None
    runtime_cuda: tuple | None = None
    cupy: str | None = None  # "cupy-cuda13x 14.0.0"
    extra: str | None = None
    problem: str | None = None  # why no GPU is usable here (None: it is)
    notes: list = field(default_factory=list)


def _version(v: int) -> tuple[int, int]:
    return v // 1000, (v % 1000) // 10


def _load_driver():
    for name in _LIBCUDA:
        try:
            return ctypes.CDLL(name)
        except OSError:
            continue
    return None


def _driver_cards(lib) -> tuple[int, list]:
    """The driver's CUDA version and its devices, or raise RuntimeError."""
    if lib.cuInit(0) != 0:
        raise RuntimeError("the NVIDIA driver is installed but cuInit failed (no usable device?)")
    ver, count = ctypes.c_int(), ctypes.c_int()
    lib.cuDriverGetVersion(ctypes.byref(ver))
    if lib.cuDeviceGetCount(ctypes.byref(count)) != 0 or count.value < 1:
        raise RuntimeError("the NVIDIA driver sees no CUDA device")
    cards = []
    for i in range(count.value):
        dev, major, minor = ctypes.c_int(), ctypes.c_int(), ctypes.c_int()
        lib.cuDeviceGet(ctypes.byref(dev), i)
        buf = ctypes.create_string_buffer(256)
        lib.cuDeviceGetName(buf, 256, dev)
        lib.cuDeviceGetAttribute(ctypes.byref(major), _CC_MAJOR, dev)
        lib.cuDeviceGetAttribute(ctypes.byref(minor), _CC_MINOR, dev)
        cards.append((buf.value.decode(errors="replace"), f"{major.value}.{minor.value}"))
    return ver.value, cards


def _installed_cupy() -> str | None:
    from importlib import metadata

    for wheel in ("cupy-cuda13x", "cupy-cuda12x", "cupy-cuda11x", "cupy"):
        try:
            return f"{wheel} {metadata.version(wheel)}"
        except metadata.PackageNotFoundError:
            continue
    return None


def extra_for(driver_major: int) -> str | None:
    """The extra whose CuPy wheel this driver's CUDA version runs (None: too old)."""
    fits = [name for name, (_, cuda) in EXTRAS.items() if cuda <= driver_major]
    return max(fits, key=lambda n: EXTRAS[n][1]) if fits else None


def gpu_report(driver=None) -> GpuReport:
    """Look at the driver (``driver``: a loaded libcuda, for tests) and CuPy."""
    rep = GpuReport(cupy=_installed_cupy())
    lib = driver if driver is not None else _load_driver()
    if lib is None:
        rep.problem = "no NVIDIA driver here (libcuda not found), so no CUDA GPU is usable"
        return rep
    try:
        ver, rep.cards = _driver_cards(lib)
    except (RuntimeError, AttributeError, OSError) as exc:
        rep.problem = str(exc)
        return rep
    rep.driver_cuda = _version(ver)
    rep.extra = extra_for(rep.driver_cuda[0])
    if rep.extra is None:
        rep.problem = (
            f"the driver supports CUDA {rep.driver_cuda[0]}.{rep.driver_cuda[1]}; "
            "fastnn's GPU extras need CUDA 12 or newer (update the NVIDIA driver)"
        )
    _check_cupy(rep)
    return rep


def _check_cupy(rep: GpuReport) -> None:
    if rep.cupy is None:
        return
    wheel = rep.cupy.split()[0]
    needs = {w: cuda for w, cuda in EXTRAS.values()}.get(wheel)
    if needs is not None and rep.driver_cuda is not None and needs > rep.driver_cuda[0]:
        rep.notes.append(
            f"{wheel} needs a CUDA {needs} driver; this one is CUDA "
            f"{rep.driver_cuda[0]}.{rep.driver_cuda[1]}: install fastnn[{rep.extra}] instead"
        )
    if importlib.util.find_spec("cupy") is None:
        return
    try:
        import cupy

        rep.runtime_cuda = _version(cupy.cuda.runtime.runtimeGetVersion())
    except Exception as exc:  # a broken CuPy install: say so, do not fail
        rep.notes.append(f"cupy is installed but failed: {type(exc).__name__}: {exc}")


def describe(rep: GpuReport) -> list[str]:
    """The lines ``fastnn info`` prints under ``gpu:``."""
    lines = []
    for i, (name, cc) in enumerate(rep.cards):
        lines.append(f"card {i}   {name} (compute capability {cc})")
    if rep.driver_cuda is not None:
        line = f"driver   CUDA {rep.driver_cuda[0]}.{rep.driver_cuda[1]}"
        if rep.runtime_cuda is not None:
            line += f"; CuPy's CUDA runtime {rep.runtime_cuda[0]}.{rep.runtime_cuda[1]}"
        lines.append(line)
    if rep.problem is not None:
        lines.append(f"none usable: {rep.problem}")
    if rep.extra is not None:
        wheel = EXTRAS[rep.extra][0]
        lines.append(f"extra    pip install 'fastnn[{rep.extra}]' ({wheel})")
    lines.append(f"cupy     {rep.cupy or 'not installed'}")
    lines += [f"note     {n}" for n in rep.notes]
    return lines
