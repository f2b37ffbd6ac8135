"""Activation layers: ``Y = act(X)``, same shape ``(n, d)`` in and out.

The same activations are available by name on :class:`~fastnn.layers.Dense`
(``Dense(6, activation="relu")``), where they are fused with the bias add.
"""

from __future__ import annotations

from ..backends.base import check_activation
from ..spec import LayerSpec
from .base import Layer


class Activation(Layer):
    """Apply an activation by name: linear, relu, leaky_relu, sigmoid, tanh, softmax."""

    def __init__(self, activation: str, alpha: float = 0.01, name: str | None = None):
        super().__init__(name)
        self.activation = check_activation(activation)
        self.alpha = float(alpha)

    def forward(self, X, training: bool = False, apply_activation: bool = True):
        """``Y = act(X)``; ``apply_activation=False`` passes ``X`` through (logit head)."""
        be = self.backend if training else self.backend.inference
        act = self.activation if apply_activation else "linear"
        Y = be.activation(act, X, self.alpha)

        def backprop(dY, need_dX: bool = True):
            return be.activation_backward(act, X, Y, dY, self.alpha) if need_dX else None

        return Y, backprop

    def spec(self, offsets, logits=False):
        """``activation`` (None for a subclass that changes :meth:`forward`)."""
        if type(self).forward is not Activation.forward:
            return None
        act = "linear" if logits else self.activation
        return LayerSpec("activation", self.input_dim, self.output_dim, act, self.alpha)

    def get_config(self):
        """Constructor arguments."""
        return {"activation": self.activation, "alpha": self.alpha, "name": self.name}


def _named(act: str, doc: str):
    class _Act(Activation):
        __doc__ = doc

        def __init__(self, name: str | None = None, **kw):
            super().__init__(act, name=name, **kw)

        def get_config(self):
            """Constructor arguments (the activation is implied by the class)."""
            cfg = super().get_config()
            cfg.pop("activation")
            if act != "leaky_relu":
                cfg.pop("alpha")
            return cfg

    return _Act


ReLU = _named("relu", "``max(x, 0)``.")
ReLU.__name__ = ReLU.__qualname__ = "ReLU"
LeakyReLU = _named("leaky_relu", "``x`` for ``x > 0``, else ``alpha * x`` (alpha=0.01).")
LeakyReLU.__name__ = LeakyReLU.__qualname__ = "LeakyReLU"
Sigmoid = _named("sigmoid", "``1 / (1 + exp(-x))``.")
Sigmoid.__name__ = Sigmoid.__qualname__ = "Sigmoid"
Tanh = _named("tanh", "``tanh(x)``.")
Tanh.__name__ = Tanh.__qualname__ = "Tanh"
Softmax = _named("softmax", "Row-wise ``exp(x) / sum(exp(x))``.")
Softmax.__name__ = Softmax.__qualname__ = "Softmax"
Linear = _named("linear", "The identity.")
Linear.__name__ = Linear.__qualname__ = "Linear"
