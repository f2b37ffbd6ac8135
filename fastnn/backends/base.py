"""The backend contract: where the arithmetic of a network runs.

A :class:`Backend` owns an array module ``xp`` (NumPy or CuPy) and a device. Layers,
losses and optimizers never import numpy or cupy: they call the backend. A concrete
backend must implement the few primitives in the first section below; every hot op in
the second section has a default written once over ``self.xp`` that a backend may
override with fused kernels. All arrays are 2-D ``(batch, features)`` unless said.

Shapes used throughout: ``X (n, d_in)``, ``W (d_in, d_out)``, ``b (d_out,)``,
``Z = X @ W + b`` and ``Y = act(Z)`` both ``(n, d_out)``; ``theta``/``grad`` are the flat
1-D parameter and gradient buffers of a whole model (every layer's weights are views into
them, so the optimizer updates all parameters in one call).
"""

from __future__ import annotations

import numpy as np

from ..errors import BackendMismatchError, UnknownNameError
from ..spec import adam_step_scalars

ACTIVATIONS = ("linear", "relu", "leaky_relu", "sigmoid", "tanh", "softmax")


def check_activation(name: str) -> str:
    """Return ``name`` if it is a known activation, else raise :class:`UnknownNameError`."""
    if name is None:
        return "linear"
    if name not in ACTIVATIONS:
        raise UnknownNameError("activation", name, ACTIVATIONS)
    return name


class Backend:
    """Base class of every backend. See the module docstring for the contract."""

    #: registry name ("numpy", "numba", "cupy")
    name: str = "base"
    #: "cpu" or "cuda:N"
    device: str = "cpu"
    #: the array module (numpy or cupy)
    xp = np

    # ------------------------------------------------------------------ must implement
    def asarray(self, a, dtype=None):
        """Return ``a`` as an array of this backend (copying to the device if needed)."""
        raise NotImplementedError

    def to_numpy(self, a) -> np.ndarray:
        """Return ``a`` as a host NumPy array."""
        raise NotImplementedError

    def synchronize(self) -> None:
        """Block until all queued work on the device is done (no-op on the CPU)."""
        raise NotImplementedError

    def matmul(self, A, B, transA: bool = False, transB: bool = False, out=None):
        """Return ``op(A) @ op(B)`` where ``op`` transposes when the flag is set.

        ``out``, when given, is a C-contiguous array of the result's shape to write into.
        """
        raise NotImplementedError

    def random_uniform(self, shape, rng: np.random.Generator, dtype):
        """Uniform [0, 1) samples of ``shape``, drawn from the host generator ``rng``.

        Drawing on the host keeps every backend on the same random stream for a seed.
        """
        raise NotImplementedError

    # ------------------------------------------------------------------ helpers
    @property
    def inference(self) -> Backend:
        """The backend whose ops run inference (``training=False``) on this backend's
        arrays: itself, unless another one is faster there (see :class:`NumbaBackend`)."""
        return self

    def __repr__(self) -> str:
        return f"<{type(self).__name__} name={self.name!r} device={self.device!r}>"

    def is_native(self, a) -> bool:
        """True when ``a`` is an array of this backend's array module."""
        return isinstance(a, self.xp.ndarray)

    def check_native(self, a, what: str = "array") -> None:
        """Raise :class:`BackendMismatchError` if ``a`` lives on another backend."""
        if not self.is_native(a):
            raise BackendMismatchError(
                f"{what} is a {type(a).__module__}.{type(a).__name__}, but this model runs "
                f"on the {self.name!r} backend ({self.device}); pass a NumPy array (fastnn "
                f"copies it) or move the model with model.to(...)"
            )

    def zeros(self, shape, dtype):
        """A zero-filled array."""
        return self.xp.zeros(shape, dtype=dtype)

    def empty(self, shape, dtype):
        """An uninitialised array."""
        return self.xp.empty(shape, dtype=dtype)

    def copy(self, a):
        """A copy of ``a`` on this backend."""
        return a.copy()

    def all_finite(self, a) -> bool:
        """True when ``a`` holds no NaN or infinity."""
        return bool(self.xp.isfinite(a).all())

    # ------------------------------------------------------------------ activations
    def sigmoid(self, Z, out=None):
        """Logistic function, stable for any ``Z`` (no overflow warnings)."""
        xp = self.xp
        out = xp.multiply(Z, 0.5, out=out)
        xp.tanh(out, out=out)
        out *= 0.5
        out += 0.5
        return out

    def softmax(self, Z, out=None):
        """Row-wise softmax of ``Z (n, k)``, shifted by the row max for stability."""
        xp = self.xp
        out = xp.subtract(Z, Z.max(axis=1, keepdims=True), out=out)
        xp.exp(out, out=out)
        out /= out.sum(axis=1, keepdims=True)
        return out

    def log_softmax(self, Z):
        """Row-wise log-softmax of ``Z (n, k)`` (log-sum-exp, finite for huge logits)."""
        xp = self.xp
        S = Z - Z.max(axis=1, keepdims=True)
        return S - xp.log(xp.exp(S).sum(axis=1, keepdims=True))

    def activation(self, name: str, Z, alpha: float = 0.01, out=None):
        """``Y = act(Z)`` for one of :data:`ACTIVATIONS`; ``alpha`` is leaky_relu's slope."""
        xp = self.xp
        if name == "linear":
            if out is None:
                return Z
            out[...] = Z
            return out
        if name == "relu":
            return xp.maximum(Z, 0, out=out)
        if name == "leaky_relu":
            return (
                xp.where(Z > 0, Z, Z * alpha)
                if out is None
                else _assign(out, xp.where(Z > 0, Z, Z * alpha))
            )
        if name == "sigmoid":
            return self.sigmoid(Z, out=out)
        if name == "tanh":
            return xp.tanh(Z, out=out)
        if name == "softmax":
            return self.softmax(Z, out=out)
        raise UnknownNameError("activation", name, ACTIVATIONS)

    def activation_backward(self, name: str, Z, Y, dY, alpha: float = 0.01):
        """``dZ = dY * act'(Z)`` (``Y = act(Z)`` is passed so no op recomputes it)."""
        xp = self.xp
        if name == "linear":
            return dY
        if name == "relu":
            return dY * (Z > 0)
        if name == "leaky_relu":
            return xp.where(Z > 0, dY, dY * alpha)
        if name == "sigmoid":
            return dY * Y * (1 - Y)
        if name == "tanh":
            return dY * (1 - Y * Y)
        if name == "softmax":
            return Y * (dY - (dY * Y).sum(axis=1, keepdims=True))
        raise UnknownNameError("activation", name, ACTIVATIONS)

    def bias_act(self, Z, b, name: str, alpha: float = 0.01):
        """Fused ``Z += b; Y = act(Z)``. Adds the bias in place; returns ``(Z, Y)``.

        ``b`` may be None (no bias). For ``linear``, ``Y`` is ``Z`` itself.
        """
        if b is not None:
            Z += b
        return Z, self.activation(name, Z, alpha)

    def bias_act_backward(self, Z, Y, dY, name: str, alpha: float = 0.01, need_db: bool = True):
        """Fused backward of :meth:`bias_act`: returns ``(dZ, db)`` (``db`` None if unneeded)."""
        dZ = self.activation_backward(name, Z, Y, dY, alpha)
        return dZ, (dZ.sum(axis=0) if need_db else None)

    # ------------------------------------------------------------------ loss gradients
    # Each returns (loss_sum, dZ): loss_sum is a 0-d array, the sum over the batch of
    # w_i * l_i; dZ is d(loss_sum * scale)/dZ. With scale = 1/batch the step minimises
    # the weighted mean loss, as Keras does.
    def bce_logits_grad(self, Z, y, w, scale: float):
        """Binary cross-entropy on logits ``Z (n, 1)`` and 0/1 targets ``y (n, 1)``.

        ``l = max(z, 0) - z*y + log(1 + exp(-|z|))``, ``dl/dz = sigmoid(z) - y``: finite for
        any logit.
        """
        xp = self.xp
        loss = xp.maximum(Z, 0) - Z * y + xp.log1p(xp.exp(-xp.abs(Z)))
        dZ = self.sigmoid(Z)
        dZ -= y
        if w is not None:
            loss *= w
            dZ *= w
        dZ *= scale
        return loss.sum(), dZ

    def bce_prob_grad(self, P, y, w, scale: float, eps: float = 1e-7):
        """Binary cross-entropy on probabilities ``P`` (clipped to [eps, 1-eps])."""
        xp = self.xp
        Pc = xp.clip(P, eps, 1 - eps)
        loss = -(y * xp.log(Pc) + (1 - y) * xp.log(1 - Pc))
        dP = (Pc - y) / (Pc * (1 - Pc))
        dP *= (P > eps) & (P < 1 - eps)  # clipped region has zero gradient
        if w is not None:
            loss *= w
            dP *= w
        dP *= scale
        return loss.sum(), dP

    def softmax_ce_grad(self, Z, y, w, scale: float, sparse: bool):
        """Cross-entropy on logits ``Z (n, k)``; ``y`` is one-hot ``(n, k)`` or, when
        ``sparse``, class indices ``(n,)``. ``dl/dz = softmax(z) - onehot``."""
        xp = self.xp
        logp = self.log_softmax(Z)
        dZ = xp.exp(logp)
        if sparse:
            rows = xp.arange(Z.shape[0])
            loss = -logp[rows, y]
            dZ[rows, y] -= 1
        else:
            loss = -(y * logp).sum(axis=1)
            dZ -= y
        if w is not None:
            loss = loss * w.reshape(-1)
            dZ *= w
        dZ *= scale
        return loss.sum(), dZ

    def cce_prob_grad(self, P, y, w, scale: float, sparse: bool, eps: float = 1e-7):
        """Cross-entropy on probabilities ``P (n, k)`` (no softmax head)."""
        xp = self.xp
        Pc = xp.clip(P, eps, 1.0)
        if sparse:
            Y1 = xp.zeros_like(P)
            Y1[xp.arange(P.shape[0]), y] = 1
        else:
            Y1 = y
        loss = -(Y1 * xp.log(Pc)).sum(axis=1)
        dP = -Y1 / Pc
        dP *= P > eps  # clipped region: flat loss, zero gradient
        if w is not None:
            loss = loss * w.reshape(-1)
            dP *= w
        dP *= scale
        return loss.sum(), dP

    def mse_grad(self, P, y, w, scale: float):
        """Mean squared error, averaged over outputs: ``l = mean_j (p_j - y_j)^2``."""
        diff = P - y
        k = P.shape[1]
        loss = (diff * diff).sum(axis=1) / k
        dP = diff * (2.0 / k)
        if w is not None:
            loss = loss * w.reshape(-1)
            dP *= w
        dP *= scale
        return loss.sum(), dP

    # ------------------------------------------------------------------ optimizer updates
    # One call updates every parameter of the model: theta and grad are flat buffers.
    def sgd_update(self, theta, grad, velocity, lr, momentum, nesterov, weight_decay):
        """SGD with optional (Nesterov) momentum and L2 weight decay, in place."""
        g = grad + weight_decay * theta if weight_decay else grad
        if momentum:
            velocity *= momentum
            velocity -= lr * g
            if nesterov:
                theta += momentum * velocity - lr * g
            else:
                theta += velocity
        else:
            theta -= lr * g

    def adam_update(self, theta, grad, m, v, lr, beta1, beta2, eps, t, weight_decay, decoupled):
        """Adam (``decoupled=False``, L2 decay added to the gradient) or AdamW, in place.

        ``t`` is the 1-based step count used for bias correction.
        """
        xp = self.xp
        if weight_decay and not decoupled:
            grad = grad + weight_decay * theta
        m *= beta1
        m += (1 - beta1) * grad
        v *= beta2
        v += (1 - beta2) * (grad * grad)
        lr_t, eps_t = adam_step_scalars(lr, beta1, beta2, eps, t)
        if weight_decay and decoupled:
            theta *= 1 - lr * weight_decay
        theta -= lr_t * m / (xp.sqrt(v) + eps_t)

    def rmsprop_update(self, theta, grad, sq, velocity, lr, rho, eps, momentum, weight_decay):
        """RMSprop (Keras form: ``theta -= lr * g / (sqrt(E[g^2]) + eps)``), in place."""
        xp = self.xp
        if weight_decay:
            grad = grad + weight_decay * theta
        sq *= rho
        sq += (1 - rho) * (grad * grad)
        step = lr * grad / (xp.sqrt(sq) + eps)
        if momentum:
            velocity *= momentum
            velocity += step
            theta -= velocity
        else:
            theta -= step

    # ------------------------------------------------------------------ dropout
    def dropout_mask(self, shape, rate: float, rng: np.random.Generator, dtype):
        """Inverted-dropout mask: ``0`` with probability ``rate``, else ``1/(1-rate)``."""
        U = self.random_uniform(shape, rng, dtype)
        return (U >= rate).astype(dtype) * (1.0 / (1.0 - rate))

    # ------------------------------------------------------------------ fused training
    def epoch_runner(self, model, loss=None, optimizer=None):
        """Return an object that trains a whole epoch in one call, or None.

        A backend that can compile the training of ``model`` (for example the Numba
        backend, for stacks of Dense layers) learns it from ``model.training_spec()``
        (:mod:`fastnn.spec`; never by importing layer, loss or optimizer classes) and
        returns an object with ``description`` and ``run(Xp, yp, wp, batch_size, rng) ->
        (loss_sum, outputs)``, which updates the weights and the optimizer's state buffers
        in place and tells the optimizer how many steps ran. None means: use the
        per-layer path (:func:`fastnn.training.train_epoch`). ``loss`` and ``optimizer``
        are ignored (the spec carries them).
        """
        return None


def _assign(out, value):
    out[...] = value
    return out
