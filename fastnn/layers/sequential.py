"""Sequential: a chain of layers: structure, compile, predict and weights.

Training lives in :mod:`fastnn.training` (:meth:`Sequential.fit` delegates to
:func:`fastnn.training.fit`), which runs the five steps of backpropagation per batch.

All parameters of the model live in one flat buffer ``theta`` (and the gradients in
``grad``): every layer's ``W`` and ``b`` are views into it, so the optimizer updates the
whole model in one fused call, a snapshot of the weights is one copy, and a backend that
compiles a whole epoch sees the model as a few flat arrays.
"""

from __future__ import annotations

import json

import numpy as np

from .. import io, training
from .. import losses as losses_mod
from .. import metrics as metrics_mod
from .. import optimizers as optimizers_mod
from .._random import make_rng
from ..backends import get_backend
from ..errors import ConfigError, DataError, NotBuiltError, ShapeError, UnknownNameError
from ..spec import ModelSpec
from .activations import Activation
from .base import Layer
from .dense import Dense
from .dropout import Dropout

# re-exported: fit returns one
History = training.History
positive_int = training.positive_int

_DTYPES = {"float32": np.float32, "float64": np.float64}


def as_feature_matrix(X, what: str = "X") -> np.ndarray:
    """Turn user data (array, list, DataFrame) into a 2-D float array, or raise a
    :class:`DataError`/:class:`ShapeError` that names the problem."""
    if hasattr(X, "to_numpy") and hasattr(X, "columns"):  # pandas DataFrame
        bad = [c for c in X.columns if X[c].dtype.kind not in "biuf"]
        if bad:
            raise DataError(
                f"{what} has non-numeric column(s) {bad[:5]}; encode them first "
                "(fastnn.data.Preprocessor one-hot encodes string columns)"
            )
        X = X.to_numpy()
    elif type(X).__module__.startswith("cupy"):
        X = X.get()
    try:
        A = np.asarray(X)
    except ValueError as exc:
        raise DataError(f"{what} is not a rectangular array: {exc}") from None
    if A.dtype.kind in "OUS":
        try:
            A = A.astype(np.float64)
        except (TypeError, ValueError):
            raise DataError(
                f"{what} contains strings or objects (dtype {A.dtype}); fastnn needs numbers. "
                "Encode text columns first (fastnn.data.Preprocessor does it)"
            ) from None
    if A.dtype.kind not in "biuf":
        raise DataError(f"{what} must be numeric, got dtype {A.dtype}")
    if A.ndim == 1:
        raise ShapeError(
            f"{what} must be 2-D (n_samples, n_features), got a 1-D array of shape {A.shape}; "
            "use X.reshape(-1, 1) for one feature or X.reshape(1, -1) for one sample"
        )
    if A.ndim != 2:
        raise ShapeError(f"{what} must be 2-D (n_samples, n_features), got shape {A.shape}")
    if A.shape[0] == 0:
        raise DataError(f"{what} is empty (0 rows)")
    if A.shape[1] == 0:
        raise DataError(f"{what} has 0 feature columns")
    if A.dtype.kind == "f" and not np.isfinite(A).all():
        bad = ~np.isfinite(A)
        rows = np.flatnonzero(bad.any(axis=1))[:5].tolist()
        cols = np.flatnonzero(bad.any(axis=0))[:5].tolist()
        raise DataError(
            f"{what} contains NaN or infinite values (rows {rows}, columns {cols}); "
            "drop or impute them first"
        )
    return A


class Sequential:
    """A stack of layers trained with backpropagation.

    >>> model = Sequential([Dense(6, activation="relu"), Dense(6, activation="relu"),
    ...                     Dense(1, activation="sigmoid")])
    >>> model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
    >>> history = model.fit(X, y, batch_size=32, epochs=100)          # doctest: +SKIP

    Args:
        layers: the layers, input first.
        dtype: "float32" (default) or "float64": the dtype of weights and computation.
        backend: backend name ("numpy", "numba", "cupy", "auto") or None for the current
            default (:func:`fastnn.set_backend`, ``use_backend``, ``FASTNN_BACKEND``).
        name: a label for summaries.
    """

    def __init__(self, layers=None, dtype="float32", backend=None, name: str | None = None):
        dtype = np.dtype(dtype).name if not isinstance(dtype, str) else dtype
        if dtype not in _DTYPES:
            raise ConfigError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
        self.dtype = np.dtype(_DTYPES[dtype])
        self.backend = get_backend(backend)
        self.name = name
        self.layers: list[Layer] = []
        for layer in layers or []:
            self.add(layer)
        self.theta = None
        self.grad = None
        self.built = False
        self.loss = None
        self.optimizer = None
        self.metric_names: list[str] = []
        self.stop_training = False
        self.stop_reason = None
        self.training_path: str | None = None
        self.preprocessing: dict | None = None

    # ------------------------------------------------------------------ structure
    def add(self, layer: Layer) -> None:
        """Append a layer (before the model is built)."""
        if not isinstance(layer, Layer):
            raise TypeError(f"Sequential takes fastnn layers, got {type(layer).__name__}")
        if getattr(self, "built", False):
            raise ConfigError("cannot add layers to a model that is already built")
        self.layers.append(layer)

    @property
    def input_dim(self) -> int | None:
        """Number of input features (None until built, unless declared)."""
        if self.layers and self.layers[0].input_dim is not None:
            return self.layers[0].input_dim
        return getattr(self.layers[0], "declared_input_dim", None) if self.layers else None

    @property
    def output_dim(self) -> int | None:
        """Number of outputs (None until built)."""
        return self.layers[-1].output_dim if self.built else None

    def build(self, input_dim: int | None = None, seed=None) -> Sequential:
        """Create the weights for ``input_dim`` features (drawn on the host from ``seed``)."""
        if not self.layers:
            raise ConfigError("the model has no layers")
        if input_dim is None:
            input_dim = getattr(self.layers[0], "declared_input_dim", None)
        if input_dim is None:
            raise NotBuiltError(
                "the model does not know its input width yet: call fit/predict with data, "
                "model.build(input_dim), or pass input_dim= to the first layer"
            )
        declared = getattr(self.layers[0], "declared_input_dim", None)
        if declared is not None and declared != input_dim:
            raise ShapeError(
                f"the first layer declares input_dim={declared}, but the data has "
                f"{input_dim} features"
            )
        rng = make_rng(seed)
        width = int(input_dim)
        init: list[dict] = []
        for layer in self.layers:
            layer.backend = self.backend
            width = layer.build(width)
            init.append(layer.init_params(rng))
        host = np.concatenate(
            [np.asarray(v, dtype=np.float64).ravel() for p in init for v in p.values()]
            or [np.zeros(0)]
        ).astype(self.dtype)
        self._bind(self.backend.asarray(host))
        self.built = True
        self._ensure_optimizer_state()
        self._check_metric_fit()  # compile() before build could not check the output width
        return self

    def _bind(self, theta) -> None:
        """Point every layer's params/grads at views of ``theta``/a fresh ``grad``."""
        be = self.backend
        self.theta = theta
        self.grad = be.zeros(theta.shape, self.dtype)
        self._slices = []
        offset = 0
        for layer in self.layers:
            layer.backend = be
            layer.params, layer.grads = {}, {}
            for pname, shape in layer.param_shapes().items():
                size = int(np.prod(shape))
                layer.params[pname] = theta[offset : offset + size].reshape(shape)
                layer.grads[pname] = self.grad[offset : offset + size].reshape(shape)
                self._slices.append((layer, pname, offset, shape))
                offset += size
        assert offset == theta.size

    @property
    def n_params(self) -> int:
        """Total number of trainable scalars."""
        return int(self.theta.size) if self.built else 0

    def summary(self, print_fn=print) -> str:
        """Print (and return) a table of layers, output shapes and parameter counts."""
        rows = [("Layer", "Output shape", "Params")]
        for i, layer in enumerate(self.layers):
            desc = type(layer).__name__
            if isinstance(layer, Dense):
                desc += f" ({layer.activation})"
            elif isinstance(layer, Activation):
                desc += f" ({layer.activation})"
            elif isinstance(layer, Dropout):
                desc += f" ({layer.rate})"
            out = f"(None, {layer.output_dim})" if layer.output_dim else "(unbuilt)"
            rows.append((f"{i}: {desc}", out, str(layer.n_params) if self.built else "?"))
        w = [max(len(r[c]) for r in rows) for c in range(3)]
        line = "-" * (sum(w) + 6)
        text = [
            f'Model "{self.name or "sequential"}" on backend {self.backend.name!r} '
            f"({self.backend.device}), dtype {self.dtype.name}",
            line,
        ]
        for j, r in enumerate(rows):
            text.append(f"{r[0]:<{w[0]}}   {r[1]:<{w[1]}}   {r[2]:>{w[2]}}")
            if j == 0:
                text.append(line)
        text.append(line)
        text.append(f"Total params: {self.n_params if self.built else '? (not built)'}")
        out = "\n".join(text)
        if print_fn is not None:
            print_fn(out)
        return out

    # ------------------------------------------------------------------ compile
    def compile(self, optimizer="adam", loss="binary_crossentropy", metrics=None) -> None:
        """Choose the optimizer (name or instance), the loss (name) and metrics (names).

        Unknown names fail here, with the list of valid ones.
        """
        self.loss = losses_mod.get(loss)
        self.optimizer = optimizers_mod.get(optimizer)
        names = []
        for m in metrics or []:
            name, _ = metrics_mod.get(m)
            if name not in names:
                names.append(name)
        self.metric_names = names
        self._ensure_optimizer_state()
        self._check_metric_fit()

    def _ensure_optimizer_state(self) -> None:
        """The one place the optimizer state is created: zeroed buffers of the model's
        size on its backend, once the model is built and compiled (kept if they fit)."""
        if self.built and self.optimizer is not None:
            self.optimizer.ensure_state(self.backend, self.theta.size, self.dtype)

    def _check_metric_fit(self):
        if not self.built or self.loss is None:
            return
        k = self.output_dim
        for name in self.metric_names:
            if name in metrics_mod.BINARY_ONLY and k != 1:
                raise ConfigError(
                    f"metric {name!r} needs a model with one sigmoid output; this one has {k}"
                )

    def _require_compiled(self):
        if self.loss is None or self.optimizer is None:
            raise ConfigError("call model.compile(optimizer=..., loss=...) before fit/evaluate")

    def training_spec(self) -> ModelSpec:
        """The model's self-description for a backend's compiled training path (see
        :mod:`fastnn.spec`): every layer's spec (None where a layer has no compiled
        form), the loss's and the optimizer's, the flat buffers, widths and dtype."""
        self._require_built()
        self._require_compiled()
        offsets: dict = {}
        for layer, pname, off, _shape in self._slices:
            offsets.setdefault(id(layer), {})[pname] = off
        fused = self._head_fused()
        last = len(self.layers) - 1
        layers = tuple(
            layer.spec(offsets.get(id(layer), {}), logits=fused and i == last)
            for i, layer in enumerate(self.layers)
        )
        return ModelSpec(
            layers=layers,
            loss=self.loss.spec(fused),
            optimizer=self.optimizer.spec(),
            theta=self.theta,
            grad=self.grad,
            d_in=int(self.input_dim),
            k_out=int(self.output_dim),
            dtype=self.dtype,
        )

    # ------------------------------------------------------------------ forward
    def _head_fused(self) -> bool:
        """True when the last activation is the loss's natural head (computed on logits)."""
        if self.loss is None or self.loss.head is None or not self.layers:
            return False
        last = self.layers[-1]
        return isinstance(last, (Dense, Activation)) and last.activation == self.loss.head

    def _head(self, out):
        """Apply the head activation to stored logits."""
        be = self.backend.inference
        return be.activation(self.loss.head, out) if self._head_fused() else out

    def forward(self, X, training: bool = False):
        """Forward-propagate a backend array ``X (n, d_in)``; returns the outputs."""
        self.backend.check_native(X, "X")
        A = X
        for layer in self.layers:
            A, _ = layer.forward(A, training)
        return A

    def _forward_batch(self, A, training: bool, fused: bool):
        """Forward-propagate one batch; the head activation is left to the loss when
        ``fused`` (the output is then the logits). Returns ``(out, backprops)``."""
        last = len(self.layers) - 1
        backprops = []
        for i, layer in enumerate(self.layers):
            if i == last and fused:
                A, bp = layer.forward(A, training, apply_activation=False)
            else:
                A, bp = layer.forward(A, training)
            backprops.append(bp)
        return A, backprops

    def _forward_logits(self, X, batch_size: int):
        """Outputs in inference mode; logits when the head is fused. Batched."""
        fused = self._head_fused()
        outs = [
            self._forward_batch(X[start : start + batch_size], False, fused)[0]
            for start in range(0, X.shape[0], batch_size)
        ]
        return outs[0] if len(outs) == 1 else self.backend.xp.concatenate(outs)

    # ------------------------------------------------------------------ data helpers
    def _prepare_X(self, X, what="X", build_seed=None):
        A = as_feature_matrix(X, what)
        if not self.built:
            self.build(A.shape[1], seed=build_seed)
        elif A.shape[1] != self.input_dim:
            raise ShapeError(
                f"{what} has {A.shape[1]} features, but the model was built for "
                f"{self.input_dim}; expected shape (n, {self.input_dim}), got {A.shape}"
            )
        return A.astype(self.dtype, copy=False)

    def _prepare_y(self, y, n: int, what="y"):
        if hasattr(y, "to_numpy"):
            y = y.to_numpy()
        elif type(y).__module__.startswith("cupy"):
            y = y.get()
        y = np.asarray(y)
        if y.dtype.kind in "OUS":
            raise DataError(
                f"{what} contains strings (dtype {y.dtype}); map the labels to numbers first "
                "(the fastnn CLI maps two-valued string targets to 0/1)"
            )
        if y.ndim == 0 or y.shape[0] != n:
            raise ShapeError(
                f"X has {n} rows but {what} has {y.shape[0] if y.ndim else 'no'} rows "
                f"(shape {y.shape}); they must match"
            )
        if y.dtype.kind == "f" and not np.isfinite(y).all():
            rows = np.flatnonzero(~np.isfinite(y.reshape(n, -1)).all(axis=1))[:5].tolist()
            raise DataError(f"{what} contains NaN or infinite values in rows {rows}")
        return self.loss.prepare_targets(y, self.output_dim, self.dtype)

    def _metrics(self, y_host, P_host, prefix=""):
        out = {}
        for name in self.metric_names:
            fn = metrics_mod.METRICS[name]
            out[prefix + name] = fn(y_host, P_host, self.loss.sparse)
        return out

    # ------------------------------------------------------------------ training
    def fit(
        self,
        X,
        y,
        batch_size: int = 32,
        epochs: int = 1,
        validation_split: float = 0.0,
        validation_data=None,
        shuffle: bool = True,
        class_weight=None,
        callbacks=None,
        verbose: int = 1,
        seed=None,
    ) -> History:
        """Train with minibatch backpropagation; returns a :class:`History`.

        Args:
            X: features ``(n, d)``; y: targets as the loss expects.
            batch_size: rows per step (larger than ``n``: trains on all ``n``, with a warning).
            epochs: passes over the training data (>= 1).
            validation_split: fraction of the *last* rows held out for validation.
            validation_data: ``(X_val, y_val)``; overrides ``validation_split``.
            shuffle: reshuffle the training rows every epoch.
            class_weight: ``{class: weight}`` multiplies each row's loss.
            callbacks: list of :class:`~fastnn.callbacks.Callback`; a
                :class:`~fastnn.callbacks.NaNGuard` is added unless one is given.
            verbose: 0 silent, 1 a progress bar over epochs, 2 one line per epoch (and
                which training path ran).
            seed: seeds the batch order, dropout, and the initial weights of a model
                that builds itself here.

        Per-epoch training metrics are running means over the batches of that epoch (the
        weights change while they are measured, as in Keras); validation metrics come from
        one pass over the validation data after the epoch.

        Interrupted (``KeyboardInterrupt``, e.g. Ctrl-C): the model keeps the weights and
        optimizer state from the end of the last completed epoch (finite, never a mix
        of two steps), ``model.history`` holds the epochs completed and its
        ``stop_reason`` says so, and the exception propagates. To stop at an epoch's end
        instead, pass :class:`fastnn.runguard.StopOnInterrupt` inside a
        :class:`fastnn.runguard.GracefulInterrupt` block (as ``fastnn train`` does).

        Threads: different models may train in different threads at once; one model
        must not be used (fit, predict, save) from two threads at the same time.
        """
        return training.fit(
            self,
            X,
            y,
            batch_size=batch_size,
            epochs=epochs,
            validation_split=validation_split,
            validation_data=validation_data,
            shuffle=shuffle,
            class_weight=class_weight,
            callbacks=callbacks,
            verbose=verbose,
            seed=seed,
        )

    def _train_epoch(self, Xp, yp, wp, batch_size: int):
        """One epoch of the per-layer path (:func:`fastnn.training.train_epoch`)."""
        return training.train_epoch(self, Xp, yp, wp, batch_size)

    def _seed_dropout(self, rng) -> None:
        """Dropout layers draw their masks from the training generator ``rng``."""
        for layer in self.layers:
            if isinstance(layer, Dropout):
                layer.rng = rng

    # ------------------------------------------------------------------ inference
    def _evaluate_dev(self, X_dev, y_host, prefix="", batch_size=1024):
        be = self.backend.inference
        out = self._forward_logits(X_dev, batch_size)
        n = X_dev.shape[0]
        lsum, _ = self.loss.grad(be, out, be.asarray(y_host), None, 1.0 / n, self._head_fused())
        logs = {prefix + "loss": float(lsum) / n}
        if self.metric_names:
            logs.update(self._metrics(y_host, be.to_numpy(self._head(out)), prefix))
        return logs

    def evaluate(self, X, y, batch_size: int = 1024, verbose: int = 0) -> dict[str, float]:
        """Return ``{"loss": ..., <metric>: ...}`` on ``(X, y)``: the same loss the
        training minimises (unweighted), and the compiled metrics."""
        self._require_compiled()
        Xh = self._prepare_X(X)
        yh = self._prepare_y(y, Xh.shape[0])
        logs = self._evaluate_dev(
            self.backend.asarray(Xh), yh, batch_size=positive_int("batch_size", batch_size)
        )
        if verbose:
            print(" ".join(f"{k}={v:.4f}" for k, v in logs.items()))
        return logs

    def predict(self, X, batch_size: int = 1024, return_backend_array: bool = False):
        """Model outputs for ``X (n, d)``: probabilities for classifiers, shape ``(n, k)``.

        Returns a NumPy array (``return_backend_array=True`` keeps it on the device).
        """
        if self.backend.is_native(X) and not isinstance(X, np.ndarray):
            X_dev = X  # already on this (device) backend
            if not self.built:
                self.build(X.shape[1])
        else:
            X_dev = self.backend.asarray(self._prepare_X(X))
        batch_size = positive_int("batch_size", batch_size)
        out = self._head(self._forward_logits(X_dev, batch_size))
        return out if return_backend_array else self.backend.to_numpy(out)

    def predict_classes(self, X, threshold: float = 0.5, batch_size: int = 1024) -> np.ndarray:
        """Predicted class per row: ``p >= threshold`` for one output, else the argmax."""
        P = self.predict(X, batch_size)
        return (P[:, 0] >= threshold).astype(np.int64) if P.shape[1] == 1 else P.argmax(axis=1)

    # ------------------------------------------------------------------ weights
    def get_weights(self) -> list[np.ndarray]:
        """Copies of the weights as NumPy arrays, in layer order (kernel, bias, ...)."""
        self._require_built()
        return [
            np.array(self.backend.to_numpy(layer.params[p]), copy=True)
            for layer, p, _, _ in self._slices
        ]

    def set_weights(self, weights) -> None:
        """Replace the weights from a list like :meth:`get_weights` returns (shapes must
        match; values must be finite)."""
        self._require_built()
        weights = list(weights)
        if len(weights) != len(self._slices):
            raise ShapeError(f"set_weights expects {len(self._slices)} arrays, got {len(weights)}")
        host = np.empty(self.theta.size, dtype=self.dtype)
        for (layer, pname, off, shape), w in zip(self._slices, weights, strict=True):
            w = np.asarray(w)
            if w.shape != tuple(shape):
                raise ShapeError(
                    f"weight {pname!r} of layer {self.layers.index(layer)} ({type(layer).__name__}) "
                    f"must have shape {tuple(shape)}, got {w.shape}"
                )
            if w.dtype.kind not in "biuf" or not np.isfinite(w).all():
                raise DataError(
                    f"weight {pname!r} of layer {self.layers.index(layer)} has non-finite or non-numeric values"
                )
            host[off : off + w.size] = w.ravel()
        self.theta[...] = self.backend.asarray(host)

    def _require_built(self):
        if not self.built:
            raise NotBuiltError("the model has no weights yet; call fit, build(input_dim) or load")

    def to(self, backend) -> Sequential:
        """Move the model (weights and optimizer state) to another backend; returns self."""
        new = get_backend(backend)
        if new is self.backend:
            return self
        old = self.backend
        self.backend = new
        for layer in self.layers:
            layer.backend = new
        if self.built:
            self._bind(new.asarray(old.to_numpy(self.theta)))
            if self.optimizer is not None and self.optimizer.state:
                self.optimizer.move(old, new)
        return self

    # ------------------------------------------------------------------ config
    def get_config(self) -> dict:
        """The architecture as JSON-serialisable data (saved in model files)."""
        cfg = {
            "class": "Sequential",
            "name": self.name,
            "dtype": self.dtype.name,
            "input_dim": self.input_dim,
            "layers": [{"class": type(l).__name__, "config": l.get_config()} for l in self.layers],
        }
        if self.loss is not None:
            cfg["compile"] = {
                "loss": self.loss.get_config(),
                "optimizer": self.optimizer.get_config(),
                "metrics": list(self.metric_names),
            }
        return cfg

    @classmethod
    def from_config(cls, cfg: dict, backend=None) -> Sequential:
        """Rebuild an (unbuilt unless input_dim is known) model from :meth:`get_config`."""
        layers = []
        for spec in cfg["layers"]:
            kind = spec.get("class")
            if kind not in LAYERS:
                raise UnknownNameError("layer class", kind, LAYERS)
            layers.append(LAYERS[kind](**spec.get("config", {})))
        model = cls(
            layers, dtype=cfg.get("dtype", "float32"), backend=backend, name=cfg.get("name")
        )
        if "compile" in cfg:
            c = cfg["compile"]
            model.compile(optimizer=c["optimizer"], loss=c["loss"], metrics=c.get("metrics"))
        if cfg.get("input_dim") is not None:
            model.build(int(cfg["input_dim"]), seed=0)
        return model

    def __repr__(self):
        return (
            f"Sequential({self.layers!r}, dtype={self.dtype.name!r}, backend={self.backend.name!r})"
        )

    # ------------------------------------------------------------------ pickling
    # Pickle (joblib, Dask, multiprocessing) moves a model as the bytes of its model file:
    # the state is ``{"safetensors": bytes}`` (built) or ``{"config": JSON}`` (unbuilt),
    # and unpickling parses JSON and raw numbers only (fastnn.io.model_from_bytes), so no
    # object of the payload's choosing is rebuilt. Like a model file, the optimizer's
    # moments and the training history are not carried.
    def __getstate__(self) -> dict:
        """``{"safetensors": bytes, "backend": name}``, or the JSON config if unbuilt."""
        from ..io import model_to_bytes

        if self.built:
            return {"safetensors": model_to_bytes(self), "backend": self.backend.name}
        return {"config": json.dumps(self.get_config()), "backend": self.backend.name}

    def __setstate__(self, state: dict) -> None:
        """Rebuild from :meth:`__getstate__` (on the same backend if it works here)."""
        from ..errors import ModelFileError
        from ..io import model_from_bytes

        if not isinstance(state, dict) or not ({"safetensors", "config"} & set(state)):
            raise ModelFileError("not a pickled fastnn model: expected safetensors bytes")
        backend = state.get("backend")
        backend = get_backend(backend if isinstance(backend, str) else None, fallback=True)
        if "safetensors" in state:
            model = model_from_bytes(state["safetensors"], backend, "pickled model")
        else:
            try:
                model = Sequential.from_config(json.loads(state["config"]), backend=backend)
            except Exception as exc:
                raise ModelFileError(f"pickled model has a broken config: {exc}") from None
        self.__dict__.update(model.__dict__)

    def __dask_tokenize__(self):
        """A deterministic Dask token: the hash of the pickled state."""
        import hashlib

        state = self.__getstate__()
        blob = state.get("safetensors") or state["config"].encode()
        return ("fastnn.Sequential", state["backend"], hashlib.sha256(blob).hexdigest())


def _layer_registry():
    from . import activations

    reg = {"Dense": Dense, "Dropout": Dropout, "Activation": Activation}
    for n in ("ReLU", "LeakyReLU", "Sigmoid", "Tanh", "Softmax", "Linear"):
        reg[n] = getattr(activations, n)
    return reg


LAYERS = _layer_registry()
io.MODEL_CLASSES["Sequential"] = Sequential
