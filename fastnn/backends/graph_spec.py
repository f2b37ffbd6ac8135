"""Which models the CUDA-graph training path takes: a check over the model's self-description.

The graph runner (:mod:`fastnn.backends.cupy_graph`) never sees layer, loss or optimizer
objects. It trains a :class:`~fastnn.spec.ModelSpec` (``model.training_spec()``) whose
layers are Dense and Dropout :class:`~fastnn.spec.LayerSpec` records, with a loss and an
optimizer it has kernels for. :func:`graph_layers` picks out the layers it launches
(Dense, and Dropout with a non-zero rate) or returns None with nothing launched, for a
model the per-layer path must train instead.
"""

from __future__ import annotations

import numpy as np

#: activations the step kernels apply elementwise (kernels/common.cuh)
GRAPH_ACTIVATIONS = ("linear", "relu", "leaky_relu", "sigmoid", "tanh")
#: loss kinds: "bce" (sigmoid head on logits), "ce" (softmax head on logits), "mse"
GRAPH_LOSSES = ("bce", "ce", "mse")
GRAPH_OPTIMIZERS = ("sgd", "adam")
_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def graph_layers(spec) -> tuple | None:
    """The layers of ``spec`` the graph launches, input first, or None when some part of
    the model is not one the graph trains (a layer kind or activation without a kernel,
    cross-entropy on probabilities instead of logits, RMSprop, another dtype)."""
    if not spec.compilable or np.dtype(spec.dtype) not in _DTYPES:
        return None
    loss, opt = spec.loss, spec.optimizer
    if loss.kind not in GRAPH_LOSSES or opt.kind not in GRAPH_OPTIMIZERS:
        return None
    if (loss.kind in ("bce", "ce") and not loss.from_logits) or (loss.sparse and loss.kind != "ce"):
        return None
    layers = []
    for ls in spec.layers:
        if ls.kind == "dense" and ls.activation in GRAPH_ACTIVATIONS:
            layers.append(ls)
        elif ls.kind == "dropout":
            if not 0.0 <= ls.rate < 1.0:
                return None
            if ls.rate > 0.0:
                layers.append(ls)
        else:
            return None
    if not layers or layers[-1].kind != "dense" or not _fits(spec, layers):
        return None
    return tuple(layers)


def _fits(spec, layers) -> bool:
    """Widths chain from ``d_in`` to ``k_out`` and every W and b lies inside theta."""
    width, n_params = spec.d_in, int(spec.theta.size)
    for ls in layers:
        if ls.d_in != width:
            return False
        if ls.kind == "dense":
            end = max(ls.w_offset + ls.d_in * ls.d_out, ls.b_offset + ls.d_out)
            if ls.w_offset < 0 or end > n_params:
                return False
        width = ls.d_out
    return width == spec.k_out
