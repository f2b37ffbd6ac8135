"""cuBLAS GEMMs that a CUDA stream capture can record (experimental, opt-in through
``FASTNN_CUPY_GEMM=cublas-graph``; not yet run on a device).

CuPy refuses its cuBLAS wrappers during a stream capture, but cuBLAS itself supports
capture when the handle has a workspace that it need not allocate while capturing. This
module calls ``cublas{S,D}gemm_v2`` through ctypes on CuPy's own handle (the library
CuPy already loaded), after giving that handle a fixed workspace.
"""

from __future__ import annotations

import ctypes
import functools

import numpy as np

_WORKSPACE_BYTES = 32 << 20
_OP_N, _OP_T = 0, 1


@functools.cache
def _lib():
    import cupy

    cupy.cuda.device.get_cublas_handle()  # makes CuPy load its libcublas
    with open("/proc/self/maps") as maps:
        paths = {line.split()[-1] for line in maps if "libcublas.so" in line}
    paths = sorted(p for p in paths if "libcublasLt" not in p)
    if not paths:
        raise OSError("could not find the libcublas CuPy loaded")
    lib = ctypes.CDLL(paths[0])
    vp, i = ctypes.c_void_p, ctypes.c_int
    for name, real in (("cublasSgemm_v2", ctypes.c_float), ("cublasDgemm_v2", ctypes.c_double)):
        fn = getattr(lib, name)
        ptr = ctypes.POINTER(real)
        fn.argtypes = [vp, i, i, i, i, i, ptr, vp, i, vp, i, ptr, vp, i]
        fn.restype = i
    lib.cublasSetStream_v2.argtypes = [vp, vp]
    lib.cublasSetWorkspace_v2.argtypes = [vp, vp, ctypes.c_size_t]
    return lib


@functools.cache
def _handle():
    """CuPy's cuBLAS handle of the current device, with a fixed workspace."""
    import cupy

    handle = cupy.cuda.device.get_cublas_handle()
    ws = cupy.empty(_WORKSPACE_BYTES, dtype=np.uint8)
    _check(_lib().cublasSetWorkspace_v2(handle, ws.data.ptr, _WORKSPACE_BYTES), "SetWorkspace")
    return handle, ws  # the workspace lives as long as the handle's cache entry


def _check(status: int, what: str) -> None:
    if status != 0:
        raise RuntimeError(f"cublas{what} failed with status {status}")


def prepared_gemm(A, ta, B, tb, C):
    """Row-major ``C (M, N) = op(A) @ op(B)`` as the column-major product
    ``C^T = op(B)^T op(A)^T``: cuBLAS gets B first, then A."""
    import cupy

    lib = _lib()
    handle, _ = _handle()
    M, K = (A.shape[1], A.shape[0]) if ta else A.shape
    N = B.shape[0] if tb else B.shape[1]
    real = ctypes.c_float if C.dtype == np.float32 else ctypes.c_double
    fn = lib.cublasSgemm_v2 if C.dtype == np.float32 else lib.cublasDgemm_v2
    one, zero = real(1.0), real(0.0)
    op_b, op_a = (_OP_T if tb else _OP_N), (_OP_T if ta else _OP_N)
    args = (handle, op_b, op_a, N, M, K, ctypes.byref(one), B.data.ptr, B.shape[1])
    args += (A.data.ptr, A.shape[1], ctypes.byref(zero), C.data.ptr, N)

    def run():
        _check(lib.cublasSetStream_v2(handle, cupy.cuda.get_current_stream().ptr), "SetStream")
        _check(fn(*args), "gemm")

    run.keep = (one, zero, A, B, C)  # the pointers above must stay valid
    return run
