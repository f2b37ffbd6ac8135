"""scikit-learn estimators: :class:`FastnnClassifier` and :class:`FastnnRegressor`.

They follow scikit-learn's conventions (``__init__`` only stores its arguments; ``fit``
sets ``classes_``, ``n_features_in_`` and, for DataFrames, ``feature_names_in_``;
``predict_proba`` has one column per class) and pass
``sklearn.utils.estimator_checks.check_estimator``, so they work inside ``Pipeline``,
``ColumnTransformer``, ``GridSearchCV`` (also with ``n_jobs``), ``cross_val_score``,
``CalibratedClassifierCV``, ``permutation_importance`` and ``clone``.

As ``fastnn train`` does, ``fit`` standardizes every feature with the training mean
and standard deviation (and, for regression, the target too, mapping predictions back
to the target's units), holds out ``validation_fraction`` of the rows and stops early
after ``patience`` epochs without a better validation loss, restoring the best epoch's
weights.

Pickling (joblib, Dask) moves a fitted estimator as its parameters, the safetensors
bytes of its network and a JSON description of the rest (classes, scaling), so
unpickling parses JSON and numbers only.

Needs the ``sklearn`` extra (``pip install "fastnn[sklearn]"``).
"""

from __future__ import annotations

import json

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, check_random_state, validate_data

from .callbacks import Callback, EarlyStopping
from .errors import ConfigError, DataError, ModelFileError

# The defaults of ``fastnn train data.csv`` (a user's own table): fastnn.defaults.CSV.
# Until that module is merged (tasks branch) the same values are spelled out here.
try:
    from .defaults import CSV as _CSV

    CLI_DEFAULTS = {**_CSV.to_dict(), "hidden": tuple(_CSV.hidden)}
except ImportError:  # pragma: no cover - before fastnn.defaults exists
    CLI_DEFAULTS = {
        "hidden": (64, 64),
        "activation": "relu",
        "epochs": 500,
        "batch_size": 32,
        "optimizer": "adam",
        "lr": 0.001,
        "weight_decay": None,
        "dropout": 0.0,
        "validation_split": 0.15,
        "patience": 20,
    }
_D = CLI_DEFAULTS
_STATE_KIND = "fastnn.sklearn"


class _WeightedValLoss(Callback):
    """Adds the class-weighted validation cross-entropy to each epoch's logs (the
    model's own ``val_loss`` is unweighted, so early stopping on it would undo the
    weights)."""

    key = "val_weighted_loss"

    def __init__(self, X, y, class_weight: dict):
        self.X, self.y = X, np.asarray(y, dtype=np.int64).reshape(-1)
        self.w = np.array([class_weight[i] for i in range(max(class_weight) + 1)])[self.y]

    def on_epoch_end(self, epoch, logs=None):
        P = np.clip(self.model.predict(self.X).astype(np.float64), 1e-12, 1.0)
        if P.shape[1] == 1:
            P = np.hstack([1.0 - P, P])
        nll = -np.log(np.maximum(P[np.arange(self.y.size), self.y], 1e-12))
        logs[self.key] = float((self.w * nll).sum() / max(self.w.sum(), 1e-12))


class _FastnnEstimator(BaseEstimator):
    """What the classifier and the regressor share: the network, fit loop, pickling."""

    def _check_params(self):
        hidden = self.hidden
        if isinstance(hidden, (int, np.integer)) and not isinstance(hidden, bool):
            hidden = (hidden,)
        try:
            hidden = tuple(int(h) for h in (hidden or ()))
        except (TypeError, ValueError):
            raise ConfigError(
                f"hidden must be a tuple of positive layer sizes, got {self.hidden!r}"
            ) from None
        if any(h < 1 for h in hidden):
            raise ConfigError(f"hidden must hold positive layer sizes, got {self.hidden!r}")
        f = self.validation_fraction
        if not isinstance(f, (int, float, np.floating)) or not 0.0 <= f < 1.0:
            raise ConfigError(f"validation_fraction must be in [0, 1), got {f!r}")
        if isinstance(self.patience, bool) or not isinstance(self.patience, (int, np.integer)):
            raise ConfigError(f"patience must be an integer >= 0, got {self.patience!r}")
        if self.patience < 0:
            raise ConfigError(f"patience must be >= 0, got {self.patience!r}")
        return hidden

    def _build_model(self, n_out: int, head: str, loss: str):
        import fastnn
        from fastnn import optimizers
        from fastnn.layers import Dense, Dropout

        hidden = self._check_params()
        layers = []
        for h in hidden:
            layers.append(Dense(h, activation=self.activation))
            if self.dropout:
                layers.append(Dropout(self.dropout))
        layers.append(Dense(n_out, activation=head))
        # float64: predictions of a row do not depend on the batch it came in (float32
        # sums in BLAS differ by an ulp between batch shapes), as scikit-learn checks
        model = fastnn.Sequential(layers, dtype="float64", backend=self.backend)
        if isinstance(self.optimizer, optimizers.Optimizer):  # a fresh copy for every fit
            opt = optimizers.get(self.optimizer.get_config())
        else:
            kwargs = {"learning_rate": self.learning_rate}
            if self.weight_decay is not None:  # None: the optimizer's own default
                kwargs["weight_decay"] = self.weight_decay
            opt = type(optimizers.get(self.optimizer))(**kwargs)
        model.compile(optimizer=opt, loss=loss)
        return model

    def _split(self, n: int, strata, rng):
        """Training and validation row positions (None when no validation is used)."""
        n_val = int(round(n * float(self.validation_fraction)))
        if n_val < 1 or n - n_val < 2:
            return None
        perm = rng.permutation(n)
        if strata is None:
            return perm[n_val:], perm[:n_val]
        # stratified: take the validation share of every class, at least one row each
        val = []
        for c in np.unique(strata):
            rows = perm[strata[perm] == c]
            k = int(round(rows.size * n_val / n))
            if rows.size - k >= 1:
                val.append(rows[:k])
        val = np.concatenate(val) if val else np.zeros(0, dtype=np.int64)
        if val.size == 0:
            return None
        train = np.setdiff1d(perm, val, assume_unique=True)
        return rng.permutation(train), val

    def _fit_network(self, X, Y, n_out, head, loss, strata=None, class_weight=None):
        """Standardize X, train the network; sets ``model_``, ``history_``, ``n_iter_``."""
        rs = check_random_state(self.random_state)
        rng = np.random.default_rng(rs.randint(0, 2**31 - 1))
        self._x_mean = X.mean(axis=0)
        scale = X.std(axis=0)
        scale[~(scale > 0) | ~np.isfinite(scale)] = 1.0
        self._x_scale = scale
        Xs = self._scale_X(X)
        model = self._build_model(n_out, head, loss)
        split = self._split(Xs.shape[0], strata, rng)
        val, callbacks = None, []
        if split is not None:
            tr, va = split
            val = (Xs[va], Y[va])
            Xs, Y = Xs[tr], Y[tr]
            if self.patience > 0:
                monitor = "val_loss"
                if class_weight is not None:  # stop on the loss being minimised
                    callbacks.append(_WeightedValLoss(val[0], val[1], class_weight))
                    monitor = _WeightedValLoss.key
                callbacks.append(
                    EarlyStopping(monitor, patience=self.patience, restore_best_weights=True)
                )
        history = model.fit(
            Xs,
            Y,
            batch_size=min(int(self.batch_size), Xs.shape[0]),
            epochs=self.epochs,
            validation_data=val,
            class_weight=class_weight,
            callbacks=callbacks,
            verbose=self.verbose,
            seed=rng,
        )
        self.model_ = model
        self.history_ = {k: list(v) for k, v in history.history.items()}
        self.n_iter_ = len(history.epoch)
        return self

    def _scale_X(self, X):
        return (np.asarray(X, dtype=np.float64) - self._x_mean) / self._x_scale

    def _forward(self, X):
        check_is_fitted(self, "model_")
        X = validate_data(self, X, reset=False)
        return self.model_.predict(self._scale_X(X)).astype(np.float64)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        tags.non_deterministic = False
        return tags

    # -------------------------------------------------------------- pickling
    _FITTED = ("n_features_in_", "feature_names_in_", "n_iter_", "history_")

    def _fitted_state(self) -> dict:
        """The fitted attributes besides the network, as JSON-safe data."""
        out = {"kind": _STATE_KIND, "x_mean": self._x_mean.tolist()}
        out["x_scale"] = self._x_scale.tolist()
        for name in self._FITTED:
            if hasattr(self, name):
                value = getattr(self, name)
                out[name] = value.tolist() if isinstance(value, np.ndarray) else value
        return out

    def _restore_fitted(self, state: dict) -> None:
        if not isinstance(state, dict) or state.get("kind") != _STATE_KIND:
            raise ModelFileError("not a pickled fastnn estimator state")
        self._x_mean = np.asarray(state["x_mean"], dtype=np.float64)
        self._x_scale = np.asarray(state["x_scale"], dtype=np.float64)
        for name in self._FITTED:
            if name in state:
                value = state[name]
                if name == "feature_names_in_":
                    value = np.asarray(value, dtype=object)
                setattr(self, name, value)

    def __getstate__(self) -> dict:
        """Parameters (plain values), the network as safetensors bytes, the rest as JSON."""
        import sklearn

        from .io import model_to_bytes

        state = {"params": self.get_params(deep=False), "_sklearn_version": sklearn.__version__}
        if hasattr(self, "model_"):
            state["model"] = model_to_bytes(self.model_)
            state["backend"] = self.model_.backend.name
            state["fitted"] = json.dumps(self._fitted_state())
        return state

    def __setstate__(self, state: dict) -> None:
        """Rebuild from :meth:`__getstate__`: JSON and safetensors bytes only."""
        from .backends import get_backend
        from .io import model_from_bytes

        if not isinstance(state, dict) or not isinstance(state.get("params"), dict):
            raise ModelFileError("not a pickled fastnn estimator")
        self.__dict__.update(state["params"])
        if "model" in state:
            backend = get_backend(state.get("backend"), fallback=True)
            self.model_ = model_from_bytes(state["model"], backend, "pickled estimator")
            try:
                self._restore_fitted(json.loads(state["fitted"]))
            except (KeyError, TypeError, ValueError) as exc:
                raise ModelFileError(f"pickled estimator has a broken state: {exc}") from None


class FastnnClassifier(ClassifierMixin, _FastnnEstimator):
    """A fastnn network as a scikit-learn classifier (binary or multi-class).

    Two classes: one sigmoid output and binary cross-entropy; more: softmax outputs and
    sparse categorical cross-entropy. ``predict_proba`` returns ``(n, n_classes)``
    (two columns for binary), columns in the order of ``classes_``.

    Args:
        hidden: hidden layer sizes, input side first.
        activation: hidden-layer activation (relu, tanh, sigmoid, leaky_relu, linear).
        epochs: the most epochs to train (early stopping may stop sooner).
        batch_size: rows per step (at most the number of training rows).
        learning_rate: the optimizer's learning rate.
        optimizer: "adam", "adamw", "sgd", "rmsprop" (or a fastnn optimizer instance).
        dropout: dropout rate after each hidden layer (0: none).
        weight_decay: the optimizer's weight decay (None: its own default, 0 except
            AdamW's 0.004).
        validation_fraction: share of the rows held out (stratified) for validation.
        patience: stop after this many epochs without a better validation loss and
            restore the best weights (0: train all ``epochs``).
        class_weight: None, "balanced" or ``{label: weight}``.
        backend: fastnn backend name (None: the current default, see
            :func:`fastnn.set_backend`).
        random_state: seeds the split, the initial weights, the batch order, dropout.
        verbose: 0 silent, 1 a progress bar, 2 one line per epoch.

    Attributes:
        classes_, n_features_in_, feature_names_in_ (DataFrames with string column
        names), model_ (the trained :class:`fastnn.Sequential`), history_ (per-epoch
        metrics), n_iter_ (epochs run).
    """

    def __init__(
        self,
        hidden=_D["hidden"],
        activation=_D["activation"],
        epochs=_D["epochs"],
        batch_size=_D["batch_size"],
        learning_rate=_D["lr"],
        optimizer=_D["optimizer"],
        dropout=_D["dropout"],
        weight_decay=_D["weight_decay"],
        validation_fraction=_D["validation_split"],
        patience=_D["patience"],
        class_weight=None,
        backend=None,
        random_state=None,
        verbose=0,
    ):
        self.hidden = hidden
        self.activation = activation
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.optimizer = optimizer
        self.dropout = dropout
        self.weight_decay = weight_decay
        self.validation_fraction = validation_fraction
        self.patience = patience
        self.class_weight = class_weight
        self.backend = backend
        self.random_state = random_state
        self.verbose = verbose

    def fit(self, X, y):
        """Train on ``X (n, d)`` and labels ``y (n,)`` (any hashable values); returns self."""
        X, y = validate_data(self, X, y, dtype=np.float64)
        check_classification_targets(y)
        self.classes_, y_idx = np.unique(y, return_inverse=True)
        k = len(self.classes_)
        if k < 2:
            raise DataError(
                f"y holds one class only ({self.classes_[0]!r} in all {len(y)} rows); a "
                "classifier needs at least two"
            )
        weights = None
        if self.class_weight is not None:
            w = compute_class_weight(self.class_weight, classes=self.classes_, y=y)
            weights = {i: float(v) for i, v in enumerate(w)}
        head, loss = (
            ("sigmoid", "binary_crossentropy")
            if k == 2
            else ("softmax", "sparse_categorical_crossentropy")
        )
        return self._fit_network(
            X, y_idx, 1 if k == 2 else k, head, loss, strata=y_idx, class_weight=weights
        )

    def predict_proba(self, X):
        """Class probabilities ``(n, n_classes)`` float64, columns as ``classes_``."""
        P = self._forward(X)
        if P.shape[1] == 1:
            return np.hstack([1.0 - P, P])
        return P / P.sum(axis=1, keepdims=True)

    def predict(self, X):
        """The most probable class of each row, in the labels' own values."""
        P = self.predict_proba(X)
        return self.classes_[P.argmax(axis=1)]

    def _fitted_state(self) -> dict:
        out = super()._fitted_state()
        out["classes"] = self.classes_.tolist()
        out["classes_dtype"] = self.classes_.dtype.str
        return out

    def _restore_fitted(self, state: dict) -> None:
        super()._restore_fitted(state)
        dtype = np.dtype(state["classes_dtype"])
        if dtype.kind not in "biufUO":
            raise ModelFileError(f"pickled classes have an unsupported dtype {dtype}")
        self.classes_ = np.asarray(state["classes"], dtype=dtype)


class FastnnRegressor(RegressorMixin, _FastnnEstimator):
    """A fastnn network as a scikit-learn regressor (one or several targets).

    Linear outputs and mean squared error on the standardized target; ``predict``
    returns the target's own units, ``(n,)`` for a 1-D ``y`` and ``(n, k)`` for a 2-D
    one. The arguments are :class:`FastnnClassifier`'s, without ``class_weight``.
    """

    def __init__(
        self,
        hidden=_D["hidden"],
        activation=_D["activation"],
        epochs=_D["epochs"],
        batch_size=_D["batch_size"],
        learning_rate=_D["lr"],
        optimizer=_D["optimizer"],
        dropout=_D["dropout"],
        weight_decay=_D["weight_decay"],
        validation_fraction=_D["validation_split"],
        patience=_D["patience"],
        backend=None,
        random_state=None,
        verbose=0,
    ):
        self.hidden = hidden
        self.activation = activation
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.optimizer = optimizer
        self.dropout = dropout
        self.weight_decay = weight_decay
        self.validation_fraction = validation_fraction
        self.patience = patience
        self.backend = backend
        self.random_state = random_state
        self.verbose = verbose

    def fit(self, X, y):
        """Train on ``X (n, d)`` and real targets ``y (n,)`` or ``(n, k)``; returns self."""
        X, y = validate_data(self, X, y, dtype=np.float64, y_numeric=True, multi_output=True)
        y = np.asarray(y, dtype=np.float64)
        self._y_1d = y.ndim == 1
        Y = y.reshape(len(y), -1)
        self._y_mean = Y.mean(axis=0)
        scale = Y.std(axis=0)
        scale[~(scale > 0) | ~np.isfinite(scale)] = 1.0
        self._y_scale = scale
        Ys = (Y - self._y_mean) / self._y_scale
        return self._fit_network(X, Ys, Y.shape[1], "linear", "mse")

    def predict(self, X):
        """Predictions in the target's units: ``(n,)``, or ``(n, k)`` for a 2-D ``y``."""
        P = self._forward(X) * self._y_scale + self._y_mean
        return P[:, 0] if self._y_1d else P

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags

    def _fitted_state(self) -> dict:
        out = super()._fitted_state()
        out.update(y_mean=self._y_mean.tolist(), y_scale=self._y_scale.tolist())
        out["y_1d"] = bool(self._y_1d)
        return out

    def _restore_fitted(self, state: dict) -> None:
        super()._restore_fitted(state)
        self._y_mean = np.asarray(state["y_mean"], dtype=np.float64)
        self._y_scale = np.asarray(state["y_scale"], dtype=np.float64)
        self._y_1d = bool(state["y_1d"])
