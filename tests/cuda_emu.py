"""Run fastnn's CUDA kernels on the CPU: each ``kernels/*.cu`` source (with the same
prelude NVRTC gets) is compiled by the host C++ compiler against ``cuda_emu.h`` and
loaded with ctypes. Arrays are NumPy arrays; a launch takes the same grid, block and
arguments as on the GPU (``fastnn.kernels.cuda.KERNELS`` gives the argument types).

:class:`EmuDevice` is the device interface of ``fastnn.backends.cupy_graph`` over this
emulator, so the graph runner's plan (pointers baked per step, launch shapes, buffer
ping-pong, the captured-then-replayed op list) runs end to end in CI without a GPU.
"""

from __future__ import annotations

import ctypes
import hashlib
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from fastnn.kernels import cuda

HERE = Path(__file__).resolve().parent
_CTYPES = {"p": ctypes.c_void_p, "i": ctypes.c_int, "l": ctypes.c_longlong, "d": ctypes.c_double}


def compiler() -> str | None:
    """A C++20 host compiler, or None."""
    return shutil.which("g++") or shutil.which("clang++")


def build(filename: str, outdir: Path | None = None) -> ctypes.CDLL:
    """Compile one source for the host; cached by content in ``outdir``."""
    cxx = compiler()
    if cxx is None:
        raise OSError("no C++ compiler (g++ or clang++) for the CUDA emulator")
    text = cuda.source(filename)
    header = (HERE / "cuda_emu.h").read_text()
    key = hashlib.sha256((header + text).encode()).hexdigest()[:16]
    outdir = Path(outdir or tempfile.gettempdir()) / "fastnn-cuda-emu"
    outdir.mkdir(parents=True, exist_ok=True)
    lib = outdir / f"{Path(filename).stem}-{key}.so"
    if not lib.exists():
        src = outdir / f"{Path(filename).stem}-{key}.cpp"
        src.write_text(text)
        cmd = [cxx, "-std=c++20", "-O1", "-shared", "-fPIC", "-pthread"]
        cmd += ["-include", str(HERE / "cuda_emu.h"), str(src), "-o", str(lib) + ".tmp"]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        if proc.returncode != 0:
            raise RuntimeError(f"host build of {filename} failed:\n{proc.stderr[-4000:]}")
        Path(str(lib) + ".tmp").rename(lib)
    return ctypes.CDLL(str(lib))


class Emulator:
    """Launch kernels by name on NumPy arrays."""

    def __init__(self, outdir=None):
        with ThreadPoolExecutor(len(cuda.SOURCES)) as pool:  # the compiles run in parallel
            libs = pool.map(lambda f: build(f, outdir), cuda.SOURCES)
        self.libs = dict(zip(cuda.SOURCES, libs, strict=True))
        self.launches = 0

    def _fn(self, name: str, dtype):
        src, kinds, _, _ = cuda.KERNELS[name]
        fn = getattr(self.libs[src], cuda.symbol(name, dtype))
        fn.argtypes = [_CTYPES[k] for k in kinds]
        fn.restype = None
        return fn

    def launch(self, name: str, dtype, grid, block, args) -> None:
        """Run kernel ``name`` over ``grid`` x ``block`` (ints or up to 3-tuples)."""
        fn = self._fn(name, dtype)
        args = cuda.convert_args(name, args)
        c_args = []
        for kind, a in zip(cuda.KERNELS[name][1], args, strict=True):
            if kind == "p":
                if not (isinstance(a, np.ndarray) and a.flags.c_contiguous):
                    raise TypeError(f"{name}: pointer arguments must be C-contiguous arrays")
                c_args.append(a.ctypes.data)
            else:
                c_args.append(a.item())
        g, b = _dim3(grid), _dim3(block)
        self.libs[cuda.KERNELS[name][0]].fastnn_emu_config(*g, *b, int(cuda.KERNELS[name][3]))
        fn(*c_args)
        self.launches += 1


def _dim3(d) -> tuple[int, int, int]:
    d = tuple(int(x) for x in d) if isinstance(d, (tuple, list)) else (int(d),)
    return (*d, *(1,) * (3 - len(d)))


class EmuDevice:
    """The ``cupy_graph`` device interface on the CPU: NumPy arrays, emulated kernels,
    NumPy products in place of cuBLAS, and a "graph" that records launches during
    capture and replays exactly those launches (arguments frozen at capture)."""

    xp = np
    name = "cpu emulator"
    sm_count = 4

    def __init__(self, emulator: Emulator):
        self.emu = emulator
        self._recording: list | None = None
        self.replays = 0
        self.captures = 0

    def prepare(self, name, dtype, grid, block, args):
        """A zero-argument callable that launches the kernel."""
        return lambda: self._launch(name, dtype, grid, block, args)

    def _launch(self, name, dtype, grid, block, args):
        self._launch_call(lambda: self.emu.launch(name, dtype, grid, block, args))

    def matmul(self, A, B, out):
        """``out[...] = A @ B`` (A, B may be transposed views)."""
        if self._recording is not None:
            raise RuntimeError("cuBLAS cannot run inside a stream capture")
        np.matmul(A, B, out=out)

    def prepare_gemm(self, A, ta, B, tb, C):
        """The capturable product (cuBLAS's C API on the GPU): here a recorded NumPy one."""
        Aop, Bop = (A.T if ta else A), (B.T if tb else B)
        return lambda: self._launch_call(lambda: np.matmul(Aop, Bop, out=C))

    def _launch_call(self, fn):
        if self._recording is not None:
            self._recording.append(fn)
        else:
            fn()

    def capture(self, fn):
        """Record the launches ``fn`` makes; return a replayable graph."""
        self.captures += 1
        self._recording = []
        try:
            fn()
            recorded = self._recording
        finally:
            self._recording = None
        device = self

        class _Graph:
            def launch(self):
                device.replays += 1
                for call in recorded:
                    call()

        return _Graph()

    def synchronize(self):
        """Nothing to wait for on the CPU."""

    def upload(self, host, out):
        """Copy host data into a device buffer."""
        out[...] = host


class EmuKernels:
    """``fastnn.kernels.cuda`` with its launches run by the emulator (the tables are the
    module's own)."""

    def __init__(self, emulator: Emulator):
        self.emu = emulator

    def __getattr__(self, name):
        return getattr(cuda, name)

    def launch(self, name, dtype, grid, block, args) -> None:
        """Run kernel ``name`` on the emulator."""
        self.emu.launch(name, dtype, grid, block, args)

    def launch_1d(self, name, dtype, n, args) -> None:
        """A grid-stride kernel over ``n`` elements, on the emulator."""
        self.emu.launch(name, dtype, cuda.grid_1d(n), cuda.BLOCK, args)


def emulated_cupy_backend(emulator: Emulator):
    """The real :class:`~fastnn.backends.cupy_backend.CupyBackend` (its ops, its
    ``epoch_runner`` and so the graph runner ``fit`` gets) over NumPy arrays, with every
    kernel run by the emulator and :class:`EmuDevice` as the graph's device."""
    from fastnn.backends.cupy_backend import CupyBackend

    class EmuCupyBackend(CupyBackend):
        def __init__(self):  # no CuPy: NumPy arrays, emulated kernels
            self.xp = np
            self._k = EmuKernels(emulator)
            self.device = "cpu emulator"
            self._graph_dev = EmuDevice(emulator)

        def to_numpy(self, a):
            return np.asarray(a)

        def synchronize(self):
            """Nothing to wait for on the CPU."""

    return EmuCupyBackend()
