"""What several ``fastnn`` commands share: option factories, reading and preparing a
table, evaluating and writing a run, and loading a model to score with.

The commands live in :mod:`fastnn.cli` (the group, ``train``, ``predict``, ``export``,
``steps``, ``info``), :mod:`fastnn.cli_search` (``tune``, ``explain``) and
:mod:`fastnn.cli_bench` (``bench``); they all import from here, never from each other
(:mod:`fastnn.cli_prepare` runs this module's table reading in a forked child for ``tune``).
"""

from __future__ import annotations

import functools
import gc
import os

import click

from .errors import DataError

_CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


_collector = {"held": False, "froze": False}


def collector_held(command):
    """Decorator for ``fastnn train`` and ``fastnn tune``: Python's cyclic garbage
    collector is off while the command sets up (imports, reading the table), which
    creates hundreds of thousands of long-lived objects and almost no cycles; its full
    passes walked all of them (0.31 s of GC in ``fastnn tune --trials 20 --folds 5`` on
    the 2-core box, 0.19 s of it three full passes; 0.10 s with this). The command turns
    it back on with :func:`collector_settled`; on the way out it is on again and nothing
    stays frozen."""

    @functools.wraps(command)
    def run(*args, **kwargs):
        if not gc.isenabled() or _collector["held"]:
            return command(*args, **kwargs)
        gc.disable()
        _collector.update(held=True, froze=False)
        try:
            return command(*args, **kwargs)
        finally:
            if _collector["froze"]:
                gc.unfreeze()
            _collector.update(held=False, froze=False)
            gc.enable()

    return run


def collector_settled() -> None:
    """Before a stretch of long work (a search, a training): the objects made so far are
    frozen (:func:`gc.freeze`: never walked again) and the collector is on. Inside
    :func:`collector_held` only; a no-op elsewhere."""
    if _collector["held"]:
        gc.freeze()
        _collector["froze"] = True
        gc.enable()


# --------------------------------------------------------------------------- helpers
def _split_drop(values, columns) -> list[str]:
    """--drop may repeat, and a value may list several columns separated by commas."""
    out = []
    for v in values:
        if v in columns or "," not in v:
            out.append(v.strip())
        else:
            out.extend(p.strip() for p in v.split(",") if p.strip())
    return list(dict.fromkeys(out))


def _choice(name, choices, help):
    """An option whose value is one of ``choices`` (default None: decided later)."""
    return click.option(name, type=click.Choice(choices), help=help)


# options `fastnn train` and `fastnn tune` share (each call makes a new option)
_TARGET = click.option("--target", "-t", help="Target column. Required with a file.")
_DROP = click.option(
    "--drop", multiple=True, metavar="COL", help="Column to ignore; repeat it or list COL1,COL2."
)
_MISSING = click.option(
    "--missing",
    default="error",
    show_default=True,
    type=click.Choice(["error", "drop", "mean"]),
    help="Missing or non-numeric cells: fail, drop those rows, or use the training mean. "
    "Rows with a blank target are dropped only with 'drop'.",
)


def _test_size(help):
    return click.option(
        "--test-size",
        default=0.2,
        show_default=True,
        type=click.FloatRange(0, 1, min_open=True, max_open=True),
        help=help,
    )


def _seed(help):
    return click.option(
        "--seed", default=0, show_default=True, type=click.IntRange(0, 2**32 - 1), help=help
    )


def _count(name, default, least, help):
    """An integer option with a default and a lower bound."""
    return click.option(
        name, default=default, show_default=True, type=click.IntRange(min=least), help=help
    )


def _backend(help):
    return click.option("--backend", default=None, metavar="NAME", help=help)


def _load_training_table(csv, target, drop):
    """``(df, target, drop_cols, source)`` for the file, or the bundled churn data."""
    from . import data

    if csv is None:
        df = data.load_churn()
        target = target or data.CHURN_TARGET
        drop_cols = _split_drop(drop, df.columns) if drop else list(data.CHURN_DROP)
    else:
        df = data.read_table(csv)
        if not target:
            raise click.UsageError(
                f"--target is required with a file; columns are: {', '.join(map(str, df.columns))}"
            )
        drop_cols = _split_drop(drop, df.columns)
    return df, target, drop_cols, df.attrs.get(data.loading.ATTR_SOURCE, csv)


def _prepare_rows(df, target, drop_cols, missing, task, test_size, seed):
    """Fit the Preprocessor (kinds, categories and checks from every row, statistics
    from the training rows) and return ``(prep, (X_tr, y_tr), (X_te, y_te))``."""
    from . import data

    prep = data.Preprocessor(target=target, drop=drop_cols, missing=missing, task=task)
    train_idx, test_idx = data.split_indices(len(df), test_size, seed)
    prep.fit(df, train_rows=train_idx)
    X_tr, y_tr = prep.transform(df.iloc[train_idx])
    X_te, y_te = prep.transform(df.iloc[test_idx])
    if len(y_te) == 0:
        raise DataError("no test rows are left after dropping rows with missing cells")
    return prep, (X_tr, y_tr), (X_te, y_te)


def _print_summary(say, shape, source, prep, drop_cols, ys, settings, task_given, test_size, seed):
    """The data summary; ``shape``: the table's ``(rows, columns)``."""
    import numpy as np

    from . import report

    n_rows = sum(len(y) for y in ys)
    n_table, n_columns = shape
    say(f"data: {source}: {n_table:,} rows, {n_columns} columns; target {prep.target!r}")
    for line in report.target_lines(prep, np.concatenate(ys), task_given):
        say(line)
    say(report.feature_line(prep, drop_cols))
    if prep.missing == "drop" and n_rows < n_table:
        blank = f" ({prep.n_blank_target_:,} with a blank target)" if prep.n_blank_target_ else ""
        say(f"missing: dropped {n_table - n_rows:,} rows with missing or bad cells{blank}")
    say(
        f"split: {len(ys[0]):,} train / {len(ys[1]):,} test rows (test size {test_size}, seed {seed})"
    )
    if settings.validation_split:
        stop = (
            f"; early stopping after {settings.patience} epochs without a better val_loss"
            if settings.patience
            else ""
        )
        say(f"validation: the last {settings.validation_split:g} of the training rows{stop}")


def _write_history(out_dir, history, plots=None) -> list[str]:
    """history.json and history.png (through ``plots``) into ``out_dir``, right after the
    training; the names written (none without ``out_dir``)."""
    from . import report

    return [] if out_dir is None else report.history_files(out_dir, history, plots)


def _write_run(out_dir, model, prep, written, results, info, plots=None) -> list[str]:
    """Write the run's other files (the plots through ``plots``, a
    :class:`fastnn.plotter.Plotter`, when given: all of its plots are done on return);
    ``written``: the names :func:`_write_history` wrote. Returns all the names."""
    import fastnn

    from . import report

    # the plots first: a child process draws them while the rest is written
    files = written + report.prediction_files(out_dir, prep, results.get("test_pred"), plots)
    model.preprocessing = prep.to_dict()
    fastnn.save(model, os.path.join(out_dir, "model.safetensors"))
    labels = prep.classes_
    test = dict(results["test"])
    if labels is not None:
        test["confusion_matrix_labels"] = labels
    metrics = {
        "task": prep.task,
        "train": results["train"],
        "test": test,
        "target": prep.target,
        "target_mapping": prep.target_mapping,
        "positive_class": prep.positive_class,
        "classes": labels,
        "features": prep.feature_names_,
        **info,
    }
    report.write_json(os.path.join(out_dir, "metrics.json"), metrics)
    if plots is not None:
        plots.wait()
    return ["model.safetensors", "metrics.json", *files]


def _evaluate_run(model, prep, rows, seed) -> dict:
    """metrics.json's train and test parts (the test metrics with 95% bootstrap
    intervals), printed; for regression also the test rows' actual and predicted values
    in the target's units (``test_pred``, for predicted.png)."""
    from . import report, tasks

    (X_tr, y_tr), (X_te, y_te) = rows
    results = {
        "train": tasks.evaluate(model, prep, X_tr, y_tr),
        "test": tasks.evaluate(model, prep, X_te, y_te, intervals=True, seed=seed),
    }
    for line in report.result_lines(prep, results["test"]):
        click.echo(line)
    if prep.task == "regression":
        results["test_pred"] = (
            prep.inverse_target(y_te),
            prep.inverse_target(model.predict(X_te)[:, 0]),
        )
    return results


def _run_info(model, history, seconds, settings: dict) -> dict:
    """The run facts metrics.json holds beside the metrics."""
    return {
        "backend": model.backend.name,
        "training_path": model.training_path,
        "train_seconds": seconds,
        "epochs": len(history.epoch),
        "best_epoch": getattr(history, "best_epoch", None),
        "stopped": getattr(history, "stop_reason", None),
        "settings": settings,
    }


def _load_scoring_model(model_path):
    import fastnn

    from . import data

    model = fastnn.load(model_path)
    if model.preprocessing is None:
        raise fastnn.errors.ModelFileError(
            f"{model_path!r} holds no preprocessing state (it was not written by "
            "`fastnn train --out`); use the Python API to predict with it"
        )
    prep = data.Preprocessor.from_dict(model.preprocessing)
    if prep.n_features != model.input_dim:
        raise fastnn.errors.ModelFileError(
            f"{model_path!r}: the model takes {model.input_dim} features, its preprocessing "
            f"gives {prep.n_features}"
        )
    return model, prep
