"""ONNX export: ``fastnn.export_onnx(model, path)`` and ``fastnn export MODEL OUT.onnx``.

Two kinds of graph, chosen by what the model carries:

* A **library model** (no preprocessing state): one input ``X`` of shape ``[N, d]``
  (``tensor(float)``, or ``tensor(double)`` for a float64 model) and one output
  ``output`` ``[N, k]``, exactly what :meth:`Sequential.predict` returns (probabilities
  for a sigmoid or softmax head).
* A **model trained by the CLI** (``fastnn train --out``) exports with its
  preprocessing inside the graph: one input per raw column it uses, named as the
  column, shape ``[N, 1]``: text columns ``tensor(string)`` (the category values, as
  the CSV holds them without surrounding blanks; ``""`` is a missing cell), numeric
  columns ``tensor(float)`` (NaN is a missing cell). The graph standardizes, one-hot
  encodes and imputes exactly as training did. Outputs: classifiers ``label`` ``[N]``
  (the target's own values: ``tensor(string)`` for a text target, ``tensor(int64)``
  for whole-number classes, else ``tensor(double)``) and ``probabilities``
  ``[N, n_classes]`` (columns in the sorted order of the classes); regressors
  ``prediction`` ``[N, 1]`` ``tensor(double)`` in the target's units.
  A graph cannot refuse a row, so a row ``fastnn predict`` would refuse or leave blank
  (a missing cell in a model trained without ``--missing mean``, a category not seen
  in training, unless exported with ``unknown="ignore"``) gets NaN probabilities (and
  predictions); its ``label`` is ``""`` for a text target and meaningless for a
  numeric one.

The graph uses the default ONNX domain only, at opset :data:`OPSET` (19: the first
with string ``Equal``), so onnxruntime 1.15 and later run it. Computation follows
fastnn: the preprocessing in float64, the network in the model's dtype.

Needs the ``onnx`` extra (``pip install "fastnn[onnx]"``: onnx and onnxruntime).
"""

from __future__ import annotations

import os

import numpy as np

from .errors import ConfigError, ModelFileError

#: the ONNX opset of the default domain every exported graph declares
OPSET = 19
#: ONNX IR version written (onnxruntime >= 1.15 reads it)
IR_VERSION = 9
_PREP_KIND = "fastnn.Preprocessor"
#: what the graph does with a category not seen in training (see :func:`to_onnx`)
UNKNOWN_MODES = ("error", "ignore")


def _require_onnx():
    try:
        import onnx
    except ImportError:
        raise ConfigError(
            'ONNX export needs the onnx package: pip install "fastnn[onnx]"'
        ) from None
    return onnx


class _Graph:
    """A small builder: numbered value names, constants as initializers."""

    def __init__(self, onnx, model):
        self.onnx = onnx
        self.dtype, self.out_width = model.dtype, model.output_dim
        self.helper = onnx.helper
        self.nodes, self.inits, self.inputs, self.outputs = [], [], [], []
        self._count = 0

    def _name(self, hint: str) -> str:
        self._count += 1
        return f"{hint}_{self._count}"

    def const(self, value, hint="c") -> str:
        """An initializer holding ``value`` (a NumPy array; object arrays are strings)."""
        name = self._name(hint)
        value = np.asarray(value)
        if value.dtype.kind in "OUS":
            tensor = self.helper.make_tensor(
                name,
                self.onnx.TensorProto.STRING,
                value.shape,
                [str(v).encode("utf-8") for v in value.ravel()],
            )
        else:
            tensor = self.onnx.numpy_helper.from_array(value, name)
        self.inits.append(tensor)
        return name

    def op(self, op_type: str, *inputs: str, out: str | None = None, **attrs) -> str:
        """Add one node; returns the name of its (single) output."""
        out = out or self._name(op_type.lower())
        self.nodes.append(self.helper.make_node(op_type, list(inputs), [out], **attrs))
        return out

    def add_input(self, name: str, elem_type, width) -> str:
        self.inputs.append(self.helper.make_tensor_value_info(name, elem_type, ["N", width]))
        return name

    def add_output(self, name: str, elem_type, shape) -> None:
        self.outputs.append(self.helper.make_tensor_value_info(name, elem_type, shape))

    def model(self, graph_name: str, doc: str):
        helper = self.helper
        graph = helper.make_graph(
            self.nodes, graph_name, self.inputs, self.outputs, initializer=self.inits
        )
        model = helper.make_model(
            graph,
            opset_imports=[helper.make_opsetid("", OPSET)],
            producer_name="fastnn",
            doc_string=doc,
        )
        model.ir_version = IR_VERSION
        self.onnx.checker.check_model(model, full_check=True)
        return model


# --------------------------------------------------------------------------- network
def _check_exportable(model):
    from .layers import Activation, Dense, Dropout, Sequential

    if not isinstance(model, Sequential):
        raise ConfigError(
            f"export_onnx takes a fastnn.Sequential (or a model file), got {type(model).__name__}"
        )
    model._require_built()
    for i, layer in enumerate(model.layers):
        if type(layer) not in (Dense, Dropout) and not isinstance(layer, Activation):
            raise ConfigError(
                f"layer {i} ({type(layer).__name__}) has no ONNX export; exportable layers: "
                "Dense, Dropout and the activation layers"
            )


def _activation(g: _Graph, name: str, X: str, alpha: float) -> str:
    if name == "linear":
        return X
    if name == "relu":
        return g.op("Relu", X)
    if name == "leaky_relu":
        # Where(x > 0, x, alpha x), as fastnn computes it (onnxruntime has no double LeakyRelu)
        zero = g.const(np.array(0, dtype=g.dtype))
        return g.op(
            "Where",
            g.op("Greater", X, zero),
            X,
            g.op("Mul", X, g.const(np.array(alpha, dtype=g.dtype))),
        )
    if name == "sigmoid":
        return g.op("Sigmoid", X)
    if name == "tanh":
        return g.op("Tanh", X)
    if name == "softmax":
        return g.op("Softmax", X, axis=-1)
    raise ConfigError(f"activation {name!r} has no ONNX export")  # pragma: no cover


def _network(g: _Graph, model, X: str) -> str:
    """The layers as ONNX nodes from ``X`` (model dtype, [N, d]); returns the output."""
    from .layers import Dense, Dropout

    dtype = model.dtype
    A = X
    for layer in model.layers:
        if isinstance(layer, Dropout):
            continue  # the identity at inference
        if isinstance(layer, Dense):
            W = model.backend.to_numpy(layer.params["W"]).astype(dtype)
            A = g.op("MatMul", A, g.const(W, "W"))
            if "b" in layer.params:
                A = g.op("Add", A, g.const(model.backend.to_numpy(layer.params["b"]).astype(dtype)))
        A = _activation(g, layer.activation, A, getattr(layer, "alpha", 0.01))
    return A


def _elem_type(onnx, dtype) -> int:
    return onnx.TensorProto.DOUBLE if np.dtype(dtype) == np.float64 else onnx.TensorProto.FLOAT


def _library_graph(onnx, model):
    g = _Graph(onnx, model)
    elem = _elem_type(onnx, model.dtype)
    X = g.add_input("X", elem, model.input_dim)
    g.op("Identity", _network(g, model, X), out="output")
    g.add_output("output", elem, ["N", model.output_dim])
    return g.model("fastnn", f"fastnn model: X [N, {model.input_dim}] -> output")


# --------------------------------------------------------------------------- preprocessing
def _feature_block(g: _Graph, spec: dict, mean, scale, impute: bool) -> str:
    """Standardized features of one raw column, float64 [N, width]; NaN where the
    Preprocessor would refuse the cell, 0 (the mean) where it imputes it."""
    onnx = g.onnx
    name = spec["name"]
    if spec["kind"] == "numeric":
        x = g.add_input(name, onnx.TensorProto.FLOAT, 1)
        x = g.op("Cast", x, to=onnx.TensorProto.DOUBLE)
        missing = g.op("IsNaN", x)
        unknown = None
    else:
        cats = list(spec["categories"])
        raw = g.add_input(name, onnx.TensorProto.STRING, 1)
        hits = g.op("Equal", raw, g.const(np.array([cats[1:]], dtype=object), "cats"))
        x = g.op("Cast", hits, to=onnx.TensorProto.DOUBLE)
        missing = g.op("Equal", raw, g.const(np.array([[""]], dtype=object)))
        all_cats = g.const(np.array([cats], dtype=object), "known")
        seen = g.op("Cast", g.op("Equal", raw, all_cats), to=onnx.TensorProto.INT32)
        seen = g.op("ReduceMax", seen, g.const(np.array([1], dtype=np.int64)), keepdims=1)
        unseen = g.op("Equal", seen, g.const(np.array(0, dtype=np.int32)))
        unknown = g.op("And", unseen, g.op("Not", missing))
    z = g.op("Div", g.op("Sub", x, g.const(mean)), g.const(scale))
    z = g.op("Where", missing, g.const(np.array(0.0 if impute else np.nan)), z)
    if unknown is not None and g.unknown == "error":
        z = g.op("Where", unknown, g.const(np.array(np.nan)), z)
    return z


def _check_state(state: dict) -> dict:
    if not isinstance(state, dict) or state.get("kind") != _PREP_KIND:
        raise ModelFileError("the model's preprocessing state is not a fastnn.Preprocessor state")
    for spec in state.get("columns", []):
        if spec.get("kind") not in ("numeric", "categorical"):
            raise ConfigError(
                f"column {spec.get('name')!r} is preprocessed as {spec.get('kind')!r}, which "
                "has no ONNX export yet"
            )
    return state


def _features(g: _Graph, state: dict, model) -> str:
    """All raw-column inputs -> the network's input (model dtype, [N, n_features])."""
    mean = np.asarray(state["mean"], dtype=np.float64)
    scale = np.asarray(state["scale"], dtype=np.float64)
    impute = state.get("missing") == "mean"
    blocks, j = [], 0
    for spec in state["columns"]:
        width = 1 if spec["kind"] == "numeric" else len(spec["categories"]) - 1
        if width == 0:
            continue
        blocks.append(_feature_block(g, spec, mean[j : j + width], scale[j : j + width], impute))
        j += width
    if j != model.input_dim:
        raise ModelFileError(
            f"the preprocessing gives {j} features but the network takes {model.input_dim}"
        )
    X = blocks[0] if len(blocks) == 1 else g.op("Concat", *blocks, axis=1)
    return g.op("Cast", X, to=_elem_type(g.onnx, model.dtype))


def _classes_const(g: _Graph, classes):
    """The class labels as a constant: strings, int64 or double, as the target holds."""
    onnx = g.onnx
    if all(isinstance(c, str) for c in classes):
        return g.const(np.array(classes, dtype=object), "classes"), onnx.TensorProto.STRING
    if any(isinstance(c, str) for c in classes):
        raise ModelFileError(f"the class labels mix text and numbers: {classes!r}")
    values = np.array(classes, dtype=np.float64)
    if np.all(values == np.round(values)):
        return g.const(values.astype(np.int64), "classes"), onnx.TensorProto.INT64
    return g.const(values, "classes"), onnx.TensorProto.DOUBLE


def _classifier_outputs(g: _Graph, out: str, classes, elem) -> None:
    """``probabilities [N, k]`` and ``label [N]`` (p >= 0.5 for binary, as fastnn)."""
    onnx = g.onnx
    axis1 = g.const(np.array([1], dtype=np.int64))
    if g.out_width == 1:  # one sigmoid output: the probability of classes[1]
        p = out
        probs = g.op("Concat", g.op("Sub", g.const(np.array(1, dtype=g.dtype)), p), p, axis=1)
        half = g.const(np.array(0.5, dtype=g.dtype))
        index = g.op(
            "Cast",
            g.op("Squeeze", g.op("GreaterOrEqual", p, half), axis1),
            to=onnx.TensorProto.INT64,
        )
    else:
        probs = out
        index = g.op("ArgMax", probs, axis=1, keepdims=0)
    g.op("Identity", probs, out="probabilities")
    table, label_type = _classes_const(g, classes)
    label = g.op("Gather", table, index, axis=0)
    if label_type == onnx.TensorProto.STRING:  # no label for a row the CLI would refuse
        bad = g.op("IsNaN", g.op("ReduceSum", probs, axis1, keepdims=0))
        label = g.op("Where", bad, g.const(np.array("", dtype=object)), label)
    g.op("Identity", label, out="label")
    g.add_output("label", label_type, ["N"])
    g.add_output("probabilities", elem, ["N", len(classes)])


def _task(state: dict) -> str:
    task = state.get("task") if state.get("version", 1) >= 2 else "binary"
    if task not in ("binary", "multiclass", "regression"):
        raise ConfigError(f"the model's task {task!r} has no ONNX export")
    return task


def _cli_graph(onnx, model, unknown: str):
    state = _check_state(model.preprocessing)
    g = _Graph(onnx, model)
    g.unknown = unknown
    elem = _elem_type(onnx, model.dtype)
    out = _network(g, model, _features(g, state, model))
    task = _task(state)
    if task == "regression":
        mean, std = _target_scaling(state)  # in float64, as fastnn predict maps it back
        y = g.op("Cast", out, to=onnx.TensorProto.DOUBLE)
        g.op("Add", g.op("Mul", y, g.const(std)), g.const(mean), out="prediction")
        g.add_output("prediction", onnx.TensorProto.DOUBLE, ["N", model.output_dim])
    else:
        classes = state.get("classes")
        if not isinstance(classes, list) or len(classes) < 2:
            raise ModelFileError(f"the preprocessing state has no class list ({classes!r})")
        _classifier_outputs(g, out, classes, elem)
    target = state.get("target")
    return g.model("fastnn", f"fastnn {task} model for target {target!r}, with preprocessing")


def _target_scaling(state: dict):
    """``(mean, std)`` of a standardized regression target (state version 2)."""
    mean, std = state.get("target_mean"), state.get("target_std")
    ok = all(isinstance(x, (int, float)) and np.isfinite(x) for x in (mean, std))
    if not ok or std <= 0:
        raise ModelFileError(
            f"the regression target's mean and std are missing or broken ({mean!r}, {std!r})"
        )
    return np.array([mean], dtype=np.float64), np.array([std], dtype=np.float64)


# --------------------------------------------------------------------------- public
def to_onnx(model, unknown: str = "error"):
    """The ONNX ``ModelProto`` of ``model`` (see the module docstring for its inputs
    and outputs). Raises :class:`ConfigError` for a model ONNX cannot express.

    ``unknown`` (models with preprocessing): a category not seen in training gives NaN
    probabilities ("error", as ``fastnn predict`` refuses it) or the all-zeros one-hot
    row ("ignore", as ``fastnn predict --unknown ignore``)."""
    onnx = _require_onnx()
    if unknown not in UNKNOWN_MODES:
        raise ConfigError(f"unknown must be one of {', '.join(UNKNOWN_MODES)}; got {unknown!r}")
    _check_exportable(model)
    if getattr(model, "preprocessing", None) is None:
        return _library_graph(onnx, model)
    return _cli_graph(onnx, model, unknown)


def export_onnx(model, path, unknown: str = "error") -> str:
    """Write ``model`` (a :class:`fastnn.Sequential`, or the path of a fastnn model
    file) to ``path`` as ONNX; returns the path. See the module docstring and
    :func:`to_onnx`."""
    if isinstance(model, (str, os.PathLike)):
        from .io import load

        model = load(model, backend="numpy")
    proto = to_onnx(model, unknown)
    from .io import atomic_write_bytes

    atomic_write_bytes(path, proto.SerializeToString())
    return os.fspath(path)
