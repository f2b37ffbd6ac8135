"""The CuPy backend: data and weights live on an NVIDIA GPU.

Matrix products go to cuBLAS (``cupy.matmul``); the elementwise hot ops run as fused
CUDA kernels (``kernels/elementwise.cu``, loaded by :mod:`fastnn.kernels.cuda`: one launch
instead of several); everything else uses the defaults of
:class:`~fastnn.backends.base.Backend` written over ``xp = cupy``. Random numbers are drawn on the host (so a seed gives the same initial weights,
batch order and dropout masks as on the CPU) and copied over.

Training: :meth:`CupyBackend.epoch_runner` hands ``fit`` the CUDA-graph epoch runner
(:mod:`fastnn.backends.cupy_graph`: a whole epoch captured once, then replayed) for every
model it can describe (Dense and Dropout layers, cross-entropy on logits or mse, SGD or
Adam/AdamW, float32/float64), else None and ``fit`` takes the per-layer path.
``FASTNN_CUPY_GRAPH=0`` turns the graph path off; ``FASTNN_CUPY_GRAPH=eager`` keeps its
plan but launches it kernel by kernel instead of capturing it.

TF32 stays off (CuPy's default); opt in with the ``CUPY_TF32=1`` environment variable.
CuPy is imported when this backend is first created, never by ``import fastnn``.
"""

from __future__ import annotations

import numpy as np

from ..errors import BackendUnavailableError
from ..spec import adam_step_scalars
from .base import Backend


class CupyBackend(Backend):
    """Runs on the current CUDA device through CuPy."""

    name = "cupy"

    def __init__(self, device_id: int | None = None):
        try:
            import cupy
        except ImportError as exc:  # pragma: no cover - registry checks first
            raise BackendUnavailableError(f"cupy is not installed: {exc}") from None
        from ..kernels import cuda as cuda_kernels

        self.xp = cupy
        self._k = cuda_kernels
        dev = cupy.cuda.Device(device_id) if device_id is not None else cupy.cuda.Device()
        self.device = f"cuda:{dev.id}"

    # ------------------------------------------------------------------ primitives
    def asarray(self, a, dtype=None):
        """Copy host data to the device (no copy for a CuPy array of ``dtype``)."""
        return self.xp.asarray(a, dtype=dtype)

    def to_numpy(self, a) -> np.ndarray:
        """Copy a device array to the host."""
        return self.xp.asnumpy(a) if isinstance(a, self.xp.ndarray) else np.asarray(a)

    def synchronize(self) -> None:
        """Wait for the current stream's queued kernels."""
        self.xp.cuda.get_current_stream().synchronize()

    def matmul(self, A, B, transA: bool = False, transB: bool = False, out=None):
        """``op(A) @ op(B)`` through cuBLAS."""
        return self.xp.matmul(A.T if transA else A, B.T if transB else B, out=out)

    def random_uniform(self, shape, rng: np.random.Generator, dtype):
        """Drawn on the host from ``rng`` (same stream as the CPU backends), then copied."""
        return self.xp.asarray(rng.random(shape, dtype=np.float64).astype(dtype, copy=False))

    # ------------------------------------------------------------------ fused hot ops
    # Each op is one launch of a kernel from kernels/elementwise.cu on C-contiguous
    # arrays; anything else (softmax, strided views) takes the default of the base class.
    def _contiguous(self, *arrays) -> bool:
        return all(a.flags.c_contiguous for a in arrays)

    def bias_act(self, Z, b, name: str, alpha: float = 0.01):
        """One kernel: ``Z += b; Y = act(Z)`` (softmax falls back to the default)."""
        fusable = name in self._k.FUSABLE_ACTIVATIONS and name != "linear"
        if not fusable or not self._contiguous(Z, *(() if b is None else (b,))):
            return super().bias_act(Z, b, name, alpha)
        Y = self.xp.empty_like(Z)
        has_b = b is not None
        self._k.launch_1d(
            "bias_act",
            Z.dtype,
            Z.size,
            (b if has_b else Z, has_b, self._k.ACT_CODES[name], alpha, Z, Y, Z.size, Z.shape[-1]),
        )
        return Z, Y

    def activation_backward(self, name: str, Z, Y, dY, alpha: float = 0.01):
        """One kernel for the elementwise activations."""
        if (
            name not in self._k.FUSABLE_ACTIVATIONS
            or name == "linear"
            or not self._contiguous(Z, Y, dY)
            or Z.shape != dY.shape
        ):
            return super().activation_backward(name, Z, Y, dY, alpha)
        dZ = self.xp.empty_like(dY)
        code = self._k.ACT_CODES[name]
        self._k.launch_1d("act_backward", Z.dtype, Z.size, (Z, Y, dY, code, alpha, dZ, Z.size))
        return dZ

    def bce_logits_grad(self, Z, y, w, scale: float):
        """One kernel for the per-row loss and gradient; one reduction for the sum."""
        y = self.xp.ascontiguousarray(y, dtype=Z.dtype)
        has_w = w is not None
        w = self.xp.ascontiguousarray(w, dtype=Z.dtype) if has_w else Z
        if not self._contiguous(Z) or y.shape != Z.shape:
            return super().bce_logits_grad(Z, y, w if has_w else None, scale)
        loss = self.xp.empty_like(Z)
        dZ = self.xp.empty_like(Z)
        args = (Z, y, w, has_w, float(scale), loss, dZ, Z.size, Z.shape[-1])
        self._k.launch_1d("bce_logits", Z.dtype, Z.size, args)
        return loss.sum(), dZ

    def adam_update(self, theta, grad, m, v, lr, beta1, beta2, eps, t, weight_decay, decoupled):
        """The whole Adam/AdamW step over the flat buffers in one kernel."""
        lr_t, eps_t = adam_step_scalars(lr, beta1, beta2, eps, t)
        l2 = 0.0 if decoupled else float(weight_decay)
        decay = 1.0 - lr * weight_decay if decoupled else 1.0
        args = (grad, theta, m, v, lr_t, eps_t, beta1, beta2, l2, decay, theta.size)
        self._k.launch_1d("adam", theta.dtype, theta.size, args)

    def sgd_update(self, theta, grad, velocity, lr, momentum, nesterov, weight_decay):
        """SGD / momentum / Nesterov over the flat buffers in one kernel."""
        args = (grad, theta, velocity, lr, momentum, bool(nesterov), weight_decay, theta.size)
        self._k.launch_1d("sgd", theta.dtype, theta.size, args)

    # ------------------------------------------------------------------ fused training
    def epoch_runner(self, model, loss=None, optimizer=None):
        """The CUDA-graph epoch runner (:mod:`fastnn.backends.cupy_graph`) for a model it
        can capture, learnt from ``model.training_spec()``, or None (per-layer path; also
        when ``FASTNN_CUPY_GRAPH=0``). The runner and its graph are kept for the model
        while its layers, hyper-parameters and buffers stay the same."""
        from . import cupy_graph

        if cupy_graph.graph_mode() == "0":
            return None
        return cupy_graph.make_runner(model.training_spec(), self.graph_device(), owner=model)

    def graph_device(self):
        """The device interface the graph runner launches through (made once)."""
        dev = getattr(self, "_graph_dev", None)
        if dev is None:
            from .cupy_graph import CupyDevice

            dev = self._graph_dev = CupyDevice()
        return dev
