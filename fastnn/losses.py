"""Losses: measure the error of a batch and give its gradient.

Each loss checks and converts its targets once (:meth:`Loss.prepare_targets`), then per
batch returns ``(loss_sum, dOut)`` through the backend's fused loss-gradient ops. The
loss a model reports is the (sample-weighted) mean over the rows.

When the model's last activation is the loss's natural head (sigmoid for binary
cross-entropy, softmax for categorical cross-entropy), the model hands the loss the
logits instead of probabilities: the loss is then computed with log-sum-exp and the
gradient is ``p - y``, so huge logits never give inf or NaN.
"""

from __future__ import annotations

import numpy as np

from .errors import DataError, ShapeError, UnknownNameError
from .spec import LossSpec


class Loss:
    """Base class. Subclasses set ``name`` and ``head`` and implement the methods."""

    name = "loss"
    #: the final activation this loss fuses with (computed from logits), or None
    head: str | None = None
    #: targets are class indices (n,) rather than arrays (n, k)
    sparse = False

    def prepare_targets(self, y, n_out: int, dtype) -> np.ndarray:
        """Validate ``y`` for a model with ``n_out`` outputs; return it as the model needs."""
        raise NotImplementedError

    def grad(self, be, out, y, w, scale: float, from_logits: bool):
        """Return ``(loss_sum, dOut)``: summed weighted loss and ``d(loss_sum*scale)/dOut``."""
        raise NotImplementedError

    #: the kind a compiled path knows this loss by (None: no compiled form)
    kind: str | None = None

    def spec(self, from_logits: bool) -> LossSpec | None:
        """This loss's self-description for a compiled training path, or None (user
        subclasses may change :meth:`grad`, so only the built-in classes have one)."""
        if self.kind is None or type(self) not in LOSSES.values():
            return None
        return LossSpec(self.kind, bool(self.sparse), bool(from_logits))

    def get_config(self) -> str:
        """The name this loss is saved under."""
        return self.name

    def __repr__(self):
        return f"{type(self).__name__}()"


def _as_2d_float(y, n_out: int, dtype, loss_name: str) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim == 1:
        y = y.reshape(-1, 1)
    if y.ndim != 2 or y.shape[1] != n_out:
        raise ShapeError(
            f"{loss_name} targets must have shape (n,) or (n, {n_out}) to match the model's "
            f"{n_out} output(s), got {tuple(np.shape(y))}"
        )
    return y.astype(dtype, copy=False)


class BinaryCrossentropy(Loss):
    """``-[y log p + (1-y) log(1-p)]`` for 0/1 targets; fuses with a sigmoid head."""

    name = "binary_crossentropy"
    kind = "bce"
    head = "sigmoid"

    def prepare_targets(self, y, n_out, dtype):
        """Targets of shape (n,) or (n, n_out), every value 0 or 1."""
        y = _as_2d_float(y, n_out, dtype, self.name)
        bad = ~((y == 0) | (y == 1))
        if bad.any():
            rows = np.flatnonzero(bad.any(axis=1))[:5].tolist()
            vals = np.unique(y[bad])[:5].tolist()
            raise DataError(
                f"binary_crossentropy needs labels 0 or 1; found {vals} in rows {rows}. "
                "Map your classes to 0/1 first (or use sparse_categorical_crossentropy "
                "for more than two classes)"
            )
        return y

    def grad(self, be, out, y, w, scale, from_logits):
        """Logit form when ``from_logits`` (stable), else clipped probabilities."""
        if from_logits:
            return be.bce_logits_grad(out, y, w, scale)
        return be.bce_prob_grad(out, y, w, scale)


class CategoricalCrossentropy(Loss):
    """``-sum_j y_j log p_j`` for one-hot targets ``(n, k)``; fuses with a softmax head."""

    name = "categorical_crossentropy"
    kind = "ce"
    head = "softmax"

    def prepare_targets(self, y, n_out, dtype):
        """One-hot (or probability) rows of width ``n_out``."""
        y = np.asarray(y)
        if y.ndim == 1:
            raise ShapeError(
                f"categorical_crossentropy needs one-hot targets of shape (n, {n_out}), got "
                f"shape {y.shape}; for integer class labels use "
                "loss='sparse_categorical_crossentropy'"
            )
        y = _as_2d_float(y, n_out, dtype, self.name)
        if (y < 0).any() or not np.allclose(y.sum(axis=1), 1.0, atol=1e-3):
            row = int(
                np.flatnonzero((y < 0).any(axis=1) | ~np.isclose(y.sum(axis=1), 1.0, atol=1e-3))[0]
            )
            raise DataError(
                f"categorical_crossentropy targets must be one-hot rows summing to 1; row {row} "
                f"is {y[row].tolist()}"
            )
        return y

    def grad(self, be, out, y, w, scale, from_logits):
        """Log-softmax form when ``from_logits``, else clipped probabilities."""
        if from_logits:
            return be.softmax_ce_grad(out, y, w, scale, sparse=False)
        return be.cce_prob_grad(out, y, w, scale, sparse=False)


class SparseCategoricalCrossentropy(Loss):
    """Categorical cross-entropy with integer class targets ``(n,)`` in ``[0, k)``."""

    name = "sparse_categorical_crossentropy"
    kind = "ce"
    head = "softmax"
    sparse = True

    def prepare_targets(self, y, n_out, dtype):
        """Integer class indices in ``[0, n_out)``."""
        y = np.asarray(y)
        if y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]
        if y.ndim != 1:
            raise ShapeError(
                f"sparse_categorical_crossentropy needs class indices of shape (n,), got {y.shape}"
                "; for one-hot targets use loss='categorical_crossentropy'"
            )
        if y.dtype.kind == "f":
            if not np.all(np.isfinite(y)) or not np.all(y == np.round(y)):
                raise DataError("sparse_categorical_crossentropy needs integer class labels")
        elif y.dtype.kind not in "iub":
            raise DataError(f"class labels must be integers, got dtype {y.dtype}")
        yi = y.astype(np.int64)
        bad = (yi < 0) | (yi >= n_out)
        if bad.any():
            rows = np.flatnonzero(bad)[:5].tolist()
            raise DataError(
                f"class index {int(yi[bad][0])} is out of range for a model with {n_out} "
                f"outputs (valid: 0..{n_out - 1}); rows {rows}"
            )
        return yi

    def grad(self, be, out, y, w, scale, from_logits):
        """Log-softmax form when ``from_logits``, else clipped probabilities."""
        if from_logits:
            return be.softmax_ce_grad(out, y, w, scale, sparse=True)
        return be.cce_prob_grad(out, y, w, scale, sparse=True)


class MeanSquaredError(Loss):
    """``mean_j (p_j - y_j)^2`` for regression targets ``(n,)`` or ``(n, k)``."""

    name = "mse"
    kind = "mse"

    def prepare_targets(self, y, n_out, dtype):
        """Real targets of shape (n,) or (n, n_out)."""
        return _as_2d_float(y, n_out, dtype, self.name)

    def grad(self, be, out, y, w, scale, from_logits):
        """Squared error; never fused with a head."""
        return be.mse_grad(out, y, w, scale)


def _elementwise_loss(be, P, y, w, scale, value, slope):
    """Shared body of the per-output regression losses: ``l = mean_j value(d_j)`` and
    ``dP = slope(d) / k`` with ``d = p - y``, weighted per row and scaled."""
    d = P - y
    k = P.shape[1]
    loss = value(be.xp, d).sum(axis=1) / k
    dP = slope(be.xp, d) * (1.0 / k)
    if w is not None:
        loss = loss * w.reshape(-1)
        dP *= w
    dP *= scale
    return loss.sum(), dP


class MeanAbsoluteError(Loss):
    """``mean_j |p_j - y_j|``: robust to outliers; the gradient is ``sign(p - y) / k``."""

    name = "mae"

    def prepare_targets(self, y, n_out, dtype):
        """Real targets of shape (n,) or (n, n_out)."""
        return _as_2d_float(y, n_out, dtype, self.name)

    def grad(self, be, out, y, w, scale, from_logits):
        """Absolute error; never fused with a head."""
        return _elementwise_loss(
            be, out, y, w, scale, lambda xp, d: xp.abs(d), lambda xp, d: xp.sign(d)
        )


class Huber(Loss):
    """``mean_j h(p_j - y_j)`` with ``h(d) = d^2/2`` for ``|d| <= delta``, else
    ``delta * (|d| - delta/2)``: squared error near the target, absolute error far from
    it. The gradient is ``clip(d, -delta, delta) / k``."""

    name = "huber"

    def __init__(self, delta: float = 1.0):
        delta = float(delta)
        if not delta > 0 or not np.isfinite(delta):
            raise DataError(f"huber delta must be a finite number > 0, got {delta}")
        self.delta = delta

    def prepare_targets(self, y, n_out, dtype):
        """Real targets of shape (n,) or (n, n_out)."""
        return _as_2d_float(y, n_out, dtype, self.name)

    def grad(self, be, out, y, w, scale, from_logits):
        """Huber error; never fused with a head."""
        c = self.delta

        def value(xp, d):
            a = xp.abs(d)
            return xp.where(a <= c, 0.5 * d * d, c * (a - 0.5 * c))

        return _elementwise_loss(be, out, y, w, scale, value, lambda xp, d: xp.clip(d, -c, c))


LOSSES = {
    "binary_crossentropy": BinaryCrossentropy,
    "categorical_crossentropy": CategoricalCrossentropy,
    "sparse_categorical_crossentropy": SparseCategoricalCrossentropy,
    "mse": MeanSquaredError,
    "mean_squared_error": MeanSquaredError,
    "mae": MeanAbsoluteError,
    "mean_absolute_error": MeanAbsoluteError,
    "huber": Huber,
}


def get(loss) -> Loss:
    """Return a :class:`Loss` from a name or an instance."""
    if isinstance(loss, Loss):
        return loss
    if isinstance(loss, str) and loss.lower() in LOSSES:
        return LOSSES[loss.lower()]()
    raise UnknownNameError("loss", loss, LOSSES)
