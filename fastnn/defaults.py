"""The settings ``fastnn train`` uses when the user gives none, in one importable place.

Two presets:

* :data:`TUTORIAL`: the bundled churn tutorial (``fastnn train`` without a CSV), kept
  exactly as the tutorial describes it so its figures stay comparable: Dense 6-6 relu,
  Adam 0.001, batch 32, 100 epochs, no validation split, no early stopping.
* :data:`CSV`: a user's own table (``fastnn train data.csv --target COL``). Chosen by
  measuring on small public data sets fastnn was not developed on (see
  ``benchmarks/defaults_table.py`` and ``benchmarks/results/defaults.md``; one hidden
  layer of 100 beat 64-64, 32-32, 128-64, 128, 256, weight decay 1e-4 and batch 64 on
  most of them): Adam 0.001, a 15% validation split and early stopping after 20 epochs
  that restores the best epoch's weights, with a generous epoch cap (500) that early
  stopping usually cuts short.

Other parts of fastnn (the scikit-learn estimators, tuning) read these too, so a default
changes in one place. Every CLI option overrides its field.

>>> from fastnn.defaults import CSV, TUTORIAL, TASKS
>>> CSV.hidden, CSV.epochs, TASKS["multiclass"].loss                 # doctest: +SKIP
((100,), 500, 'sparse_categorical_crossentropy')
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

#: the task names, as stored in the model file (``Preprocessor.task``)
TASK_NAMES = ("binary", "multiclass", "regression")
#: the regression losses ``--loss`` accepts (mse is the default)
REGRESSION_LOSSES = ("mse", "mae", "huber")
#: the optimizers ``--optimizer`` accepts
OPTIMIZER_NAMES = ("adam", "adamw", "sgd", "rmsprop")


@dataclass(frozen=True)
class TrainDefaults:
    """One preset of training settings.

    Attributes:
        hidden: hidden layer sizes, input side first (``()``: no hidden layer).
        activation: hidden-layer activation.
        epochs: the most epochs to run (early stopping may stop sooner).
        batch_size: rows per step.
        optimizer: one of :data:`OPTIMIZER_NAMES`.
        lr: learning rate (constant; the policy is "Adam at 1e-3, stop early"); it
            applies to ``optimizer``; another optimizer chosen without ``--lr`` uses its
            own default.
        weight_decay: L2 weight decay passed to the optimizer (None: the optimizer's
            own default, 0 except AdamW's 0.004).
        dropout: dropout rate after each hidden layer (0: none).
        validation_split: fraction of the *training* rows held out for validation
            (0: none); the test rows are never used for it.
        patience: epochs without a better validation loss before stopping (0: no early
            stopping); the best epoch's weights are restored.
        regression_loss: the default of ``--loss`` for regression.
    """

    hidden: tuple[int, ...]
    activation: str
    epochs: int
    batch_size: int
    optimizer: str
    lr: float
    weight_decay: float | None
    dropout: float
    validation_split: float
    patience: int
    regression_loss: str = "mse"

    def to_dict(self) -> dict:
        """The settings as a plain dict (JSON-safe; ``hidden`` as a list)."""
        d = asdict(self)
        d["hidden"] = list(self.hidden)
        return d

    def replace(self, **changes) -> TrainDefaults:
        """A copy with some fields changed."""
        return replace(self, **changes)


#: the churn tutorial's settings (``fastnn train`` with no CSV)
TUTORIAL = TrainDefaults(
    hidden=(6, 6),
    activation="relu",
    epochs=100,
    batch_size=32,
    optimizer="adam",
    lr=0.001,
    weight_decay=None,
    dropout=0.0,
    validation_split=0.0,
    patience=0,
)

#: a user's own CSV or Parquet file (measured: benchmarks/results/defaults.md)
CSV = TUTORIAL.replace(hidden=(100,), epochs=500, validation_split=0.15, patience=20)


@dataclass(frozen=True)
class TaskHead:
    """What a task puts at the end of the network and minimises.

    Attributes:
        activation: the output layer's activation.
        loss: the loss name (for regression: the default; ``--loss`` may change it).
        metrics: metric names compiled into the model (per-epoch in the history).
        score: the one number a model of this task is judged by, higher is better
            (``fastnn tune``'s cross-validation score, permutation importance's score).
    """

    activation: str
    loss: str
    metrics: tuple[str, ...]
    score: str

    def units(self, n_classes: int | None) -> int:
        """Output units: one, or one per class for multi-class."""
        return int(n_classes) if self.activation == "softmax" else 1


#: output layer, loss and metrics of each task
TASKS = {
    "binary": TaskHead("sigmoid", "binary_crossentropy", ("accuracy", "auc"), "roc_auc"),
    "multiclass": TaskHead("softmax", "sparse_categorical_crossentropy", ("accuracy",), "accuracy"),
    "regression": TaskHead("linear", "mse", ("r2",), "r2"),
}
