"""Dense (fully connected) layer: ``Y = act(X @ W + b)``.

Shapes: ``X (n, d_in)``, ``W (d_in, units)``, ``b (units,)``, ``Y (n, units)``.
Backward: ``dZ = dY * act'(Z)``, ``dW = X^T dZ``, ``db = sum_rows(dZ)``, ``dX = dZ W^T``.
"""

from __future__ import annotations

import numpy as np

from .. import initializers
from ..backends.base import check_activation
from ..errors import ConfigError
from ..spec import LayerSpec
from .base import Layer


class Dense(Layer):
    """A fully connected layer with an optional fused activation.

    Args:
        units: output width (a positive int).
        activation: one of linear, relu, leaky_relu, sigmoid, tanh, softmax (None = linear).
        input_dim: input width; lets the model build before it sees data.
        use_bias: add a bias vector.
        kernel_initializer / bias_initializer: "glorot_uniform", "he_normal", "zeros".
        alpha: slope of leaky_relu for negative inputs.
    """

    param_names = ("W", "b")

    def __init__(
        self,
        units: int,
        activation: str | None = None,
        *,
        input_dim: int | None = None,
        use_bias: bool = True,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        alpha: float = 0.01,
        name: str | None = None,
    ):
        super().__init__(name)
        if isinstance(units, bool) or not isinstance(units, (int, np.integer)) or units < 1:
            raise ConfigError(f"Dense units must be a positive integer, got {units!r}")
        if input_dim is not None and (
            isinstance(input_dim, bool)
            or not isinstance(input_dim, (int, np.integer))
            or input_dim < 1
        ):
            raise ConfigError(f"Dense input_dim must be a positive integer, got {input_dim!r}")
        self.units = int(units)
        self.activation = check_activation(activation)
        self.declared_input_dim = None if input_dim is None else int(input_dim)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = kernel_initializer
        self.bias_initializer = bias_initializer
        initializers.get(kernel_initializer)  # fail now on unknown names
        initializers.get(bias_initializer)
        self.alpha = float(alpha)
        if use_bias:
            self.param_names = ("W", "b")
        else:
            self.param_names = ("W",)

    def build(self, input_dim: int) -> int:
        """Fix ``d_in``; returns ``units``."""
        self.input_dim = int(input_dim)
        self.output_dim = self.units
        return self.units

    def param_shapes(self):
        """``{"W": (d_in, units), "b": (units,)}``."""
        shapes = {"W": (self.input_dim, self.units)}
        if self.use_bias:
            shapes["b"] = (self.units,)
        return shapes

    def init_params(self, rng):
        """Kernel from ``kernel_initializer``, bias from ``bias_initializer``."""
        out = {
            "W": initializers.get(self.kernel_initializer)(
                (self.input_dim, self.units), self.input_dim, self.units, rng
            )
        }
        if self.use_bias:
            out["b"] = initializers.get(self.bias_initializer)(
                (self.units,), self.input_dim, self.units, rng
            )
        return out

    def forward(self, X, training: bool = False, apply_activation: bool = True):
        """``Y = act(X @ W + b)``; ``apply_activation=False`` returns the logits ``Z``."""
        be = self.backend if training else self.backend.inference
        W = self.params["W"]
        b = self.params.get("b")
        act = self.activation if apply_activation else "linear"
        Z, Y = be.bias_act(be.matmul(X, W), b, act, self.alpha)
        grads = self.grads

        def backprop(dY, need_dX: bool = True):
            dZ, db = be.bias_act_backward(Z, Y, dY, act, self.alpha, need_db=b is not None)
            be.matmul(X, dZ, transA=True, out=grads["W"])
            if b is not None:
                grads["b"][...] = db
            return be.matmul(dZ, W, transB=True) if need_dX else None

        return Y, backprop

    def spec(self, offsets, logits=False):
        """``dense`` (None for a subclass that changes :meth:`forward`)."""
        if type(self).forward is not Dense.forward:
            return None
        act = "linear" if logits else self.activation
        return LayerSpec(
            "dense",
            self.input_dim,
            self.output_dim,
            act,
            self.alpha,
            w_offset=offsets["W"],
            b_offset=offsets.get("b", -1),
        )

    def get_config(self):
        """Constructor arguments."""
        cfg = {
            "units": self.units,
            "activation": self.activation,
            "use_bias": self.use_bias,
            "kernel_initializer": self.kernel_initializer
            if isinstance(self.kernel_initializer, str)
            else None,
            "bias_initializer": self.bias_initializer
            if isinstance(self.bias_initializer, str)
            else None,
            "alpha": self.alpha,
            "name": self.name,
        }
        if self.declared_input_dim is not None:
            cfg["input_dim"] = self.declared_input_dim
        return cfg
