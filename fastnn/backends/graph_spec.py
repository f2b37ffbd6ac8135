"""What the CUDA-graph training path needs to know about a model: a flat description.

The graph runner (:mod:`fastnn.backends.cupy_graph`) never sees layer, loss or optimizer
objects. It trains a :class:`TrainSpec`: the input width, a tuple of
:class:`DenseOp` / :class:`DropoutOp` (each Dense op names the offsets of its ``W`` and
``b`` inside the model's flat ``theta``), the loss kind and the optimizer kind with its
hyper-parameters. :func:`spec_from_model` builds one from a compiled, built
``Sequential`` by reading attributes only; it returns None for anything the graph path
does not train (the per-layer path then runs).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import ConfigError

#: activations the step kernels apply elementwise (kernels/common.cuh)
GRAPH_ACTIVATIONS = ("linear", "relu", "leaky_relu", "sigmoid", "tanh")
#: loss kinds: "bce" (sigmoid head on logits), "ce" (softmax head on logits), "mse"
GRAPH_LOSSES = ("bce", "ce", "mse")
GRAPH_OPTIMIZERS = ("sgd", "adam")


@dataclass(frozen=True)
class DenseOp:
    """``Y = act(X @ W + b)``: ``W`` is ``theta[w_offset : w_offset + d_in * d_out]``
    (row-major ``(d_in, d_out)``), ``b`` is ``theta[b_offset : b_offset + d_out]`` or
    absent (``b_offset`` None)."""

    d_in: int
    d_out: int
    activation: str
    w_offset: int
    b_offset: int | None = None
    alpha: float = 0.01


@dataclass(frozen=True)
class DropoutOp:
    """Inverted dropout of a ``width``-wide activation with drop probability ``rate``."""

    width: int
    rate: float


@dataclass(frozen=True)
class TrainSpec:
    """A Dense stack, its loss and its optimizer, as the graph runner trains it.

    ``hyper`` for "sgd": learning_rate, momentum, nesterov, weight_decay; for "adam":
    learning_rate, beta_1, beta_2, epsilon, weight_decay, decoupled (AdamW).
    """

    d_in: int
    ops: tuple
    loss: str
    optimizer: str
    hyper: dict = field(default_factory=dict)
    sparse: bool = False
    n_params: int = 0

    @property
    def k_out(self) -> int:
        """Width of the output."""
        return self.ops[-1].d_out

    @property
    def dense(self) -> list[DenseOp]:
        """The Dense ops, input first."""
        return [op for op in self.ops if isinstance(op, DenseOp)]

    def validate(self) -> TrainSpec:
        """Raise :class:`ConfigError` naming the first thing the runner cannot train."""
        if not self.ops or not isinstance(self.ops[-1], DenseOp):
            raise ConfigError("the graph path needs a Dense layer last")
        if self.loss not in GRAPH_LOSSES or self.optimizer not in GRAPH_OPTIMIZERS:
            raise ConfigError(f"graph path: unsupported loss {self.loss!r} / {self.optimizer!r}")
        if self.sparse and self.loss != "ce":
            raise ConfigError("graph path: only cross-entropy takes class-index targets")
        width = self.d_in
        for i, op in enumerate(self.ops):
            d_in = op.d_in if isinstance(op, DenseOp) else op.width
            if d_in != width:
                raise ConfigError(f"graph path: op {i} takes {d_in} inputs, gets {width}")
            if isinstance(op, DenseOp):
                if op.activation not in GRAPH_ACTIVATIONS:
                    raise ConfigError(f"graph path: activation {op.activation!r} of op {i}")
                end = op.w_offset + op.d_in * op.d_out
                if op.b_offset is not None:
                    end = max(end, op.b_offset + op.d_out)
                if op.w_offset < 0 or end > self.n_params:
                    raise ConfigError(f"graph path: op {i} reaches past theta ({end})")
                width = op.d_out
            elif not 0.0 <= op.rate < 1.0:
                raise ConfigError(f"graph path: dropout rate {op.rate} of op {i}")
        if self.loss in ("bce", "ce") and self.ops[-1].activation != "linear":
            raise ConfigError("graph path: cross-entropy takes logits (a linear last layer)")
        return self


_LOSSES = {
    "binary_crossentropy": ("bce", "sigmoid"),
    "categorical_crossentropy": ("ce", "softmax"),
    "sparse_categorical_crossentropy": ("ce", "softmax"),
    "mse": ("mse", None),
}


def _optimizer(optimizer) -> tuple[str, dict] | None:
    name = getattr(optimizer, "name", None)
    lr, wd = getattr(optimizer, "learning_rate", None), getattr(optimizer, "weight_decay", 0.0)
    if name == "sgd":
        hyper = {"momentum": optimizer.momentum, "nesterov": bool(optimizer.nesterov)}
        return "sgd", {"learning_rate": lr, "weight_decay": wd, **hyper}
    if name in ("adam", "adamw"):
        hyper = {"beta_1": optimizer.beta_1, "beta_2": optimizer.beta_2}
        hyper.update(epsilon=optimizer.epsilon, decoupled=bool(optimizer.decoupled))
        return "adam", {"learning_rate": lr, "weight_decay": wd, **hyper}
    return None


def spec_from_model(model, loss, optimizer) -> TrainSpec | None:
    """Describe a built, compiled ``Sequential`` of Dense and Dropout layers, or None."""
    loss_kind = _LOSSES.get(getattr(loss, "name", None))
    opt = _optimizer(optimizer)
    if not getattr(model, "built", False) or loss_kind is None or opt is None:
        return None
    kind, head = loss_kind
    offsets = {(id(layer), p): off for layer, p, off, _ in model._slices}
    layers, ops = model.layers, []
    for i, layer in enumerate(layers):
        cls = type(layer).__name__
        if cls == "Dense":
            act = layer.activation
            if i == len(layers) - 1 and head is not None:
                if act != head:
                    return None  # probabilities, not logits: the per-layer path
                act = "linear"
            if act not in GRAPH_ACTIVATIONS:
                return None
            b_off = offsets.get((id(layer), "b")) if layer.use_bias else None
            w_off = offsets[(id(layer), "W")]
            ops.append(DenseOp(layer.input_dim, layer.output_dim, act, w_off, b_off, layer.alpha))
        elif cls == "Dropout":
            if layer.rate > 0.0:
                ops.append(DropoutOp(layer.output_dim, layer.rate))
        else:
            return None
    spec = TrainSpec(
        d_in=int(model.input_dim),
        ops=tuple(ops),
        loss=kind,
        optimizer=opt[0],
        hyper=opt[1],
        sparse=bool(getattr(loss, "sparse", False)),
        n_params=int(model.theta.size),
    )
    try:
        return spec.validate()
    except ConfigError:
        return None
