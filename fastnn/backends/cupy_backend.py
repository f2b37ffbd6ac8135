"""The CuPy backend: data and weights live on an NVIDIA GPU.

Matrix products go to cuBLAS (``cupy.matmul``); the elementwise hot ops run as fused
CUDA kernels from :mod:`fastnn.kernels.cuda` (one launch instead of several); everything
else uses the defaults of :class:`~fastnn.backends.base.Backend` written over ``xp =
cupy``. Random numbers are drawn on the host (so a seed gives the same initial weights,
batch order and dropout masks as on the CPU) and copied over.

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
    def bias_act(self, Z, b, name: str, alpha: float = 0.01):
        """One kernel: ``Z += b; Y = act(Z)`` (softmax falls back to the default)."""
        if name not in self._k.FUSABLE_ACTIVATIONS:
            return super().bias_act(Z, b, name, alpha)
        if b is None:
            b = self.xp.zeros((Z.shape[1],), dtype=Z.dtype)
        if name == "linear":
            Z += b
            return Z, Z
        Y = self.xp.empty_like(Z)
        self._k.get(f"bias_act_{name}")(b, alpha, Z, Y)
        return Z, Y

    def activation_backward(self, name: str, Z, Y, dY, alpha: float = 0.01):
        """One kernel for the elementwise activations."""
        if name not in self._k.FUSABLE_ACTIVATIONS or name == "linear":
            return super().activation_backward(name, Z, Y, dY, alpha)
        dZ = self.xp.empty_like(dY)
        self._k.get(f"act_backward_{name}")(Z, Y, dY, alpha, dZ)
        return dZ

    def bce_logits_grad(self, Z, y, w, scale: float):
        """One kernel for the per-row loss and gradient; one reduction for the sum."""
        if w is None:
            w = self.xp.ones((1, 1), dtype=Z.dtype)
        loss = self.xp.empty_like(Z)
        dZ = self.xp.empty_like(Z)
        self._k.get("bce_logits")(Z, y, w, float(scale), loss, dZ)
        return loss.sum(), dZ

    def adam_update(self, theta, grad, m, v, lr, beta1, beta2, eps, t, weight_decay, decoupled):
        """The whole Adam/AdamW step over the flat buffers in one kernel."""
        lr_t, eps_t = adam_step_scalars(lr, beta1, beta2, eps, t)
        l2 = 0.0 if decoupled else float(weight_decay)
        decay = 1.0 - lr * weight_decay if decoupled else 1.0
        self._k.get("adam")(grad, lr_t, beta1, beta2, eps_t, l2, decay, theta, m, v)

    def sgd_update(self, theta, grad, velocity, lr, momentum, nesterov, weight_decay):
        """SGD / momentum / Nesterov over the flat buffers in one kernel."""
        self._k.get("sgd")(
            grad,
            float(lr),
            float(momentum),
            int(bool(nesterov)),
            float(weight_decay),
            theta,
            velocity,
        )
