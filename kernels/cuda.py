"""Loader of fastnn's CUDA kernels: the CUDA C sources ``kernels/*.cu`` through CuPy's
``RawModule``.

Every kernel is a template over the element type with ``extern "C"`` instantiations
``fastnn_<name>_f32`` / ``fastnn_<name>_f64`` (a few dtype-free ones have no suffix).
:data:`KERNELS` lists each kernel with its source file and argument types; it is the one
table the CuPy backend, the CUDA-graph runner, the CPU emulator of the tests and the
NVRTC compile test (``tests/test_cuda_sources.py``) all read.

Nothing here imports CuPy at module import: a module is compiled (by NVRTC, through
CuPy, cached on disk by CuPy) the first time one of its kernels is asked for.

Compiler options: :data:`OPTIONS` (no ``--use_fast_math``; NaN and Inf propagate as in
NumPy). CuPy adds ``-ftz=true`` (float32 subnormals flush to zero) and the
architecture of the current device; :func:`nvrtc_options` gives that same list for a
compute capability, for compiling without CuPy or a GPU.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent

#: prepended to every source (shared device helpers; no ``#include``, so NVRTC needs no
#: header search path)
PRELUDE = "common.cuh"

#: the CUDA sources, in the order they are documented
SOURCES = ("elementwise.cu", "train.cu")

#: options fastnn passes to NVRTC (none: the sources are plain C++ that NVRTC's default
#: dialect compiles; CuPy appends ``-ftz=true`` and the architecture)
OPTIONS: tuple[str, ...] = ()

#: activation codes of the kernels (``FASTNN_ACT_*`` in common.cuh)
ACT_CODES = {"linear": 0, "relu": 1, "leaky_relu": 2, "sigmoid": 3, "tanh": 4}

#: activations the elementwise kernels compute (softmax is row-wise: not here)
FUSABLE_ACTIVATIONS = tuple(ACT_CODES)

#: loss codes of ``loss_rows`` (``FASTNN_LOSS_*`` in train.cu)
LOSS_CODES = {"bce": 0, "ce": 1, "mse": 2}

# Argument types: p pointer (a device array), i int32, l int64, d float64.
_GEMM = "iiipiipiipipiidpii"
#: kernel name -> (source file, argument types, typed: has _f32/_f64 instantiations,
#: uses __syncthreads)
KERNELS = {
    "bias_act": ("elementwise.cu", "piidppli", True, False),
    "act_backward": ("elementwise.cu", "pppidpl", True, False),
    "bce_logits": ("elementwise.cu", "pppidppli", True, False),
    "adam": ("elementwise.cu", "ppppddddddl", True, False),
    "sgd": ("elementwise.cu", "pppddidl", True, False),
    "gemm64": ("train.cu", _GEMM, True, True),
    "gemm32": ("train.cu", _GEMM, True, True),
    "act_backward_colsum": ("train.cu", "iipppidppi", True, True),
    "loss_rows": ("train.cu", "iiiippppidpp", True, False),
    "dropout_fwd": ("train.cu", "lpddppp", True, False),
    "mul": ("train.cu", "lppp", True, False),
    "adam_dev": ("train.cu", "pppppddddl", True, False),
}

#: threads per block of the 1-D kernels, and the most blocks a grid-stride loop asks for
BLOCK = 256
MAX_BLOCKS = 4096

_SCALARS = {"i": np.int32, "l": np.int64, "d": np.float64}
_SUFFIX = {np.dtype(np.float32): "f32", np.dtype(np.float64): "f64"}


def source(filename: str) -> str:
    """The full text NVRTC compiles for ``filename``: the prelude, then the file (after a
    ``#line`` directive, so compiler messages name the file's own lines)."""
    if filename not in SOURCES:
        raise KeyError(f"no CUDA source called {filename!r}; sources: {SOURCES}")
    prelude = (HERE / PRELUDE).read_text()
    return f'{prelude}\n#line 1 "{filename}"\n' + (HERE / filename).read_text()


def symbol(name: str, dtype=None) -> str:
    """The ``extern "C"`` name of kernel ``name`` for ``dtype`` (float32/float64)."""
    _, _, typed, _ = KERNELS[name]
    if not typed:
        return f"fastnn_{name}"
    try:
        return f"fastnn_{name}_{_SUFFIX[np.dtype(dtype)]}"
    except (KeyError, TypeError):
        raise TypeError(f"CUDA kernel {name!r} takes float32 or float64, not {dtype!r}") from None


def symbols(filename: str) -> list[str]:
    """Every ``extern "C"`` name a source must define."""
    out = []
    for name, (src, _, typed, _) in KERNELS.items():
        if src == filename:
            out += [symbol(name, t) for t in _SUFFIX] if typed else [symbol(name)]
    return out


def nvrtc_options(compute_capability: str | int) -> list[str]:
    """The options CuPy's RawModule passes to NVRTC on a device of this compute
    capability (e.g. ``"90"``): ours, then ``-ftz=true`` and the architecture."""
    return [*OPTIONS, "-ftz=true", f"--gpu-architecture=compute_{compute_capability}"]


def convert_args(name: str, args) -> tuple:
    """``args`` with each scalar cast to the exact C type the kernel expects (CuPy and
    ctypes pass raw bytes); raises TypeError on a wrong argument count."""
    kinds = KERNELS[name][1]
    if len(args) != len(kinds):
        raise TypeError(f"CUDA kernel {name!r} takes {len(kinds)} arguments, got {len(args)}")
    return tuple(a if k == "p" else _SCALARS[k](a) for k, a in zip(kinds, args, strict=True))


def grid_1d(n: int, block: int = BLOCK) -> int:
    """Blocks for a grid-stride loop over ``n`` elements."""
    return max(1, min(MAX_BLOCKS, -(-int(n) // block)))


@functools.cache
def _module(filename: str):
    import cupy

    return cupy.RawModule(code=source(filename), options=OPTIONS)


def function(name: str, dtype=None):
    """The compiled CuPy ``RawKernel`` for kernel ``name`` and ``dtype``."""
    return _module(KERNELS[name][0]).get_function(symbol(name, dtype))


def launch(name: str, dtype, grid, block, args) -> None:
    """Launch kernel ``name`` on the current CuPy stream."""
    function(name, dtype)(_dims(grid), _dims(block), convert_args(name, args))


def launch_1d(name: str, dtype, n: int, args) -> None:
    """Launch a grid-stride kernel over ``n`` elements."""
    launch(name, dtype, grid_1d(n), BLOCK, args)


def _dims(d) -> tuple:
    return tuple(int(x) for x in d) if isinstance(d, (tuple, list)) else (int(d),)
