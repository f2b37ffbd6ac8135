"""Dropout: during training, zero each input with probability ``rate`` and scale the
rest by ``1/(1-rate)`` (inverted dropout), so inference is the identity. Shapes
``(n, d)`` in and out."""

from __future__ import annotations

from .._random import make_rng
from ..errors import ConfigError
from ..spec import LayerSpec
from .base import Layer


class Dropout(Layer):
    """Inverted dropout with drop probability ``rate`` in [0, 1)."""

    def __init__(self, rate: float, name: str | None = None):
        super().__init__(name)
        try:
            rate = float(rate)
        except (TypeError, ValueError):
            raise ConfigError(f"Dropout rate must be a number in [0, 1), got {rate!r}") from None
        if not 0.0 <= rate < 1.0:
            raise ConfigError(f"Dropout rate must be in [0, 1), got {rate!r}")
        self.rate = rate
        self.rng = None  # set by the model before training (a host numpy Generator)

    def forward(self, X, training: bool = False):
        """Identity at inference; masked and rescaled in training."""
        if not training or self.rate == 0.0:
            return X, lambda dY, need_dX=True: dY
        if self.rng is None:  # training outside fit (model.forward(X, training=True))
            self.rng = make_rng()
        mask = self.backend.dropout_mask(X.shape, self.rate, self.rng, X.dtype)

        def backprop(dY, need_dX: bool = True):
            return dY * mask if need_dX else None

        return X * mask, backprop

    def spec(self, offsets, logits=False):
        """``dropout`` (None for a subclass)."""
        if type(self) is not Dropout:
            return None
        return LayerSpec("dropout", self.input_dim, self.output_dim, rate=self.rate)

    def get_config(self):
        """Constructor arguments."""
        return {"rate": self.rate, "name": self.name}
