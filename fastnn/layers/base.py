"""The Layer base class.

A layer maps ``X (n, d_in)`` to ``Y (n, d_out)``. ``forward(X, training)`` returns
``(Y, backprop)``; ``backprop(dY)`` writes the layer's parameter gradients into
``self.grads`` and returns ``dX``. Layers never import numpy or cupy: they call
``self.backend``. Parameters live in the model's flat buffer: ``self.params[name]`` and
``self.grads[name]`` are views into ``model.theta`` and ``model.grad``.
"""

from __future__ import annotations

import numpy as np


class Layer:
    """Base class: subclasses declare parameters in :meth:`build` and implement
    :meth:`forward`."""

    #: parameter names in the order get_weights()/set_weights() use
    param_names: tuple[str, ...] = ()

    def __init__(self, name: str | None = None):
        self.name = name
        self.backend = None
        self.input_dim: int | None = None
        self.output_dim: int | None = None
        self.params: dict = {}
        self.grads: dict = {}

    def build(self, input_dim: int) -> int:
        """Fix the input width; return the output width. Parameterless layers keep it."""
        self.input_dim = input_dim
        self.output_dim = input_dim
        return input_dim

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        """Shapes of the parameters, in :attr:`param_names` order (after :meth:`build`)."""
        return {}

    def init_params(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Initial parameter values, drawn on the host (float64)."""
        return {}

    def forward(self, X, training: bool = False):
        """Return ``(Y, backprop)``; see the module docstring."""
        raise NotImplementedError

    def spec(self, offsets: dict, logits: bool = False):
        """This layer's :class:`~fastnn.spec.LayerSpec` for a compiled training path, or
        None (the default) when it has no compiled form. ``offsets`` maps parameter
        names to their offsets in the model's flat ``theta``; ``logits`` is True for a
        last layer whose activation the loss computes."""
        return None

    def get_config(self) -> dict:
        """JSON-serialisable constructor arguments (saved in model files)."""
        return {"name": self.name}

    @property
    def n_params(self) -> int:
        """Number of scalar parameters."""
        return int(sum(int(np.prod(s)) for s in self.param_shapes().values()))

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items() if v is not None)
        return f"{type(self).__name__}({args})"
