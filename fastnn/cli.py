"""The ``fastnn`` command: ``train``, ``predict``, ``info``, ``bench``, ``tune``, ``explain``.

Errors a user can cause (a bad path, an unknown column, a bad flag value, anything fastnn
raises on purpose) print one line on stderr, ``fastnn: error: ...``, and exit with code
2; no traceback, no usage block. Warnings print as ``fastnn: warning: ...``.
"""

from __future__ import annotations

import json
import os
import sys
import time
import warnings

import click

from .defaults import CSV, OPTIMIZER_NAMES, REGRESSION_LOSSES, TASK_NAMES, TUTORIAL
from .errors import ConfigError, DataError, FastnnError
from .io import atomic_write_bytes
from .runguard import OutputFolder, StopOnInterrupt, active_interrupt, guard_command

#: the tutorial network: two hidden layers of 6 units
DEFAULT_HIDDEN = ",".join(map(str, TUTORIAL.hidden))
_CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


# click >= 8.2 raises this for a bare group call; older clicks print the help themselves
_NoArgsIsHelp = getattr(click.exceptions, "NoArgsIsHelpError", type("_Never", (Exception,), {}))


def _one_line(text) -> str:
    return " ".join(str(text).split())


def _show_warning(message, category, filename, lineno, file=None, line=None):
    click.echo(f"fastnn: warning: {_one_line(message)}", err=True)


class FastnnGroup(click.Group):
    """A click group whose errors are one line on stderr with exit code 2."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        """Run the command; return (or, standalone, exit with) the exit code."""
        code = self._run(args, prog_name or "fastnn", complete_var, extra)
        if standalone_mode:
            sys.exit(code)
        return code

    def _run(self, args, prog_name, complete_var, extra) -> int:
        def fail(msg, hint=None):
            line = f"fastnn: error: {_one_line(msg)}"
            if hint:
                line += f" ({hint})"
            click.echo(line, err=True)
            return 2

        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            try:
                rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
            except _NoArgsIsHelp as exc:  # bare `fastnn` (click >= 8.2)
                click.echo(exc.ctx.get_help())
                return 0
            except click.UsageError as exc:  # BadParameter, NoSuchOption, MissingParameter...
                hint = None
                if exc.ctx is not None:
                    hint = f"see '{exc.ctx.command_path} --help'"
                return fail(exc.format_message(), hint)
            except click.Abort:
                click.echo("fastnn: aborted", err=True)
                return 130
            except click.ClickException as exc:
                return fail(exc.format_message())
            except FastnnError as exc:
                return fail(exc)
            except OSError as exc:  # a path we could not read or write
                where = f" {exc.filename!r}" if getattr(exc, "filename", None) else ""
                return fail(f"{exc.strerror or exc}{':' if where else ''}{where}")
        return rv if isinstance(rv, int) else 0


@click.group(cls=FastnnGroup, context_settings=_CONTEXT)
@click.version_option(package_name="fastnn", prog_name="fastnn")
def main():
    """fastnn: train and use small neural networks on tabular data.

    \b
    fastnn train                       the bank-churn network on the bundled data
    fastnn train data.csv --target Churned --drop CustomerID --out run1
    fastnn predict run1/model.safetensors new.csv --out preds.csv
    fastnn info                        which backends work on this machine
    fastnn steps                       one training step, shown step by step
    """


# --------------------------------------------------------------------------- helpers
def _parse_hidden(ctx, param, value):
    if value is None:
        return None
    text = value.strip().lower()
    if text in ("", "none", "0"):
        return ()
    sizes = []
    for part in text.split(","):
        part = part.strip()
        if not part.isdigit() or int(part) < 1:
            raise click.BadParameter(
                f"{value!r} is not a comma-separated list of positive layer sizes (e.g. 6,6)"
            )
        sizes.append(int(part))
    return tuple(sizes)


def _compile_seconds(be) -> float:
    """Seconds the Numba backend has spent compiling in this process (0 elsewhere)."""
    if be.name != "numba":
        return 0.0
    from .backends.numba_backend import compile_stats

    return compile_stats()["seconds"]


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


def _hidden_text(hidden) -> str:
    return ",".join(map(str, hidden)) or "none"


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


# --------------------------------------------------------------------------- train
_TRAIN_HELP = f"""Train a model on a CSV or Parquet file (default: the bundled bank-churn data).

\b
The target decides the task (printed, stored in the model; --task overrides):
  exactly two values                          binary (sigmoid, binary cross-entropy)
  text with 3+ values, or integers with few   multiclass (softmax, sparse categorical
  distinct values that repeat                   cross-entropy; classes in sorted order)
  other numbers                               regression (linear output, --loss; the
                                                target is standardized, mapped back)

\b
Without a file it runs the churn tutorial: target Exited, dropping RowNumber,
CustomerId and Surname; Dense {_hidden_text(TUTORIAL.hidden)} {TUTORIAL.activation}, Adam {TUTORIAL.lr}, batch {TUTORIAL.batch_size}, {TUTORIAL.epochs} epochs,
no validation split (--drop replaces the default drops, --target the default target).
With a file the defaults are: Dense {_hidden_text(CSV.hidden)} {CSV.activation}, Adam {CSV.lr}, batch {CSV.batch_size}, at most
{CSV.epochs} epochs, {CSV.validation_split:g} of the training rows for validation, early stopping after
{CSV.patience} epochs without a better validation loss (the best epoch's weights are kept).
Every option below overrides its default. Text columns are one-hot encoded, ISO date
columns expanded to numbers, numeric ones standardized with training statistics; all of
it is stored with the model for `fastnn predict`.
"""


def _resolve_settings(csv, given: dict):
    """The preset for this run (tutorial or a user's file) with the given options; the
    learning rate is the preset's only for the preset's optimizer."""
    preset = TUTORIAL if csv is None else CSV
    changes = {k: v for k, v in given.items() if v is not None}
    settings = preset.replace(**changes)
    if given.get("lr") is None and settings.optimizer != preset.optimizer:
        settings = settings.replace(lr=None)
    if given.get("patience") and settings.validation_split == 0:
        raise ConfigError(
            f"--patience {given['patience']} needs validation rows to watch: add "
            "--validation-split F (e.g. 0.15)"
        )
    return settings


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


def _print_summary(say, df, source, prep, drop_cols, ys, settings, task_given, test_size, seed):
    import numpy as np

    from . import report

    n_rows = sum(len(y) for y in ys)
    say(f"data: {source}: {len(df):,} rows, {len(df.columns)} columns; target {prep.target!r}")
    for line in report.target_lines(prep, np.concatenate(ys), task_given):
        say(line)
    say(report.feature_line(prep, drop_cols))
    if prep.missing == "drop" and n_rows < len(df):
        blank = f" ({prep.n_blank_target_:,} with a blank target)" if prep.n_blank_target_ else ""
        say(f"missing: dropped {len(df) - n_rows:,} rows with missing or bad cells{blank}")
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


def _class_weight(class_weight, prep, y_tr):
    from .tasks import balanced_class_weight

    if class_weight in (None, "none"):
        return None
    if prep.task == "regression":
        raise ConfigError("--class-weight balanced applies to classifiers; this is a regression")
    return balanced_class_weight(y_tr, len(prep.classes_))


def _fit(say, model, X_tr, y_tr, settings, class_weight, seed, quiet):
    """Train; print the time and how training ended. Returns ``(history, seconds)``."""
    from . import tasks

    be = model.backend
    compiled = _compile_seconds(be)
    t0 = time.perf_counter()
    history = tasks.fit_model(
        model,
        X_tr,
        y_tr,
        settings,
        class_weight,
        seed=seed,
        verbose=0 if quiet else 1,
        callbacks=[StopOnInterrupt()],  # Ctrl-C: stop at the epoch's end, save
    )
    seconds = time.perf_counter() - t0
    compiled = _compile_seconds(be) - compiled
    timing = f"{seconds:.2f} s"
    if compiled > 0.01:  # first run on this machine: say what was compilation, not training
        timing = f"{seconds - compiled:.2f} s (+ {compiled:.2f} s compiling Numba kernels, once)"
    ran = len(history.epoch)
    say(f"trained {ran} epochs in {timing} on {be.name}; training path: {model.training_path}")
    if history.stop_reason:
        say(f"stopped early: {history.stop_reason}")
    elif history.best_epoch is not None:
        best = history.history["val_loss"][history.best_epoch - 1]
        end = "stopped early" if ran < settings.epochs else "ran every epoch"
        say(f"{end}; kept the weights of epoch {history.best_epoch} (val_loss {best:.4f})")
    return history, seconds


def _write_run(out_dir, model, prep, history, results, info) -> list[str]:
    import fastnn

    from . import report

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
    files = report.run_files(out_dir, prep, history, results.get("test_pred"))
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


def _explain(model, prep, test_rows, repeats, seed, out_dir) -> list[str]:
    """``--explain``: permutation importance on the test rows, printed (top 10) and,
    with ``out_dir``, written; returns the file names written."""
    from .explain import explain_to, format_importance

    X, y = test_rows
    result = explain_to(out_dir, model, prep, X, y, n_repeats=repeats, seed=seed)
    click.echo(
        f"permutation importance on the {len(y):,} test rows ({repeats} repeats): drop in "
        f"{result['metric']} (without shuffling {result['baseline']:.4f}) when a column is shuffled"
    )
    click.echo(format_importance(result, top=10))
    return [] if out_dir is None else ["importance.json", "importance.png"]


@main.command(context_settings=_CONTEXT, help=_TRAIN_HELP)
@click.argument("csv", required=False, metavar="[FILE]")
@_TARGET
@_DROP
@_choice("--task", TASK_NAMES, "Override the task guessed from the target.")
@click.option(
    "--hidden",
    callback=_parse_hidden,
    help=f"Hidden layer sizes, comma-separated ('' or none: no hidden layer). "
    f"[default: {_hidden_text(CSV.hidden)}; tutorial {_hidden_text(TUTORIAL.hidden)}]",
)
@click.option("--activation", help=f"Hidden-layer activation. [default: {CSV.activation}]")
@click.option(
    "--epochs",
    type=click.IntRange(min=1),
    help=f"Most epochs. [default: {CSV.epochs}; tutorial {TUTORIAL.epochs}]",
)
@click.option(
    "--batch-size", type=click.IntRange(min=1), help=f"Rows per step. [default: {CSV.batch_size}]"
)
@_choice("--optimizer", OPTIMIZER_NAMES, f"Optimizer. [default: {CSV.optimizer}]")
@click.option(
    "--lr",
    type=click.FloatRange(min=0, min_open=True),
    help=f"Learning rate. [default: {CSV.lr} for {CSV.optimizer}; another optimizer's own]",
)
@click.option(
    "--weight-decay",
    type=click.FloatRange(min=0),
    help="L2 weight decay. [default: the optimizer's own: 0, AdamW 0.004]",
)
@click.option(
    "--dropout",
    type=click.FloatRange(0, 1, max_open=True),
    help="Dropout rate after each hidden layer. [default: 0]",
)
@_choice(
    "--loss", REGRESSION_LOSSES, "Regression loss (on the standardized target). [default: mse]"
)
@click.option(
    "--class-weight",
    type=click.Choice(["none", "balanced"]),
    help="balanced: weight each class by n / (classes * its rows). [default: none]",
)
@click.option(
    "--validation-split",
    type=click.FloatRange(0, 1, max_open=True),
    help=f"Fraction of the training rows held out for validation curves and early "
    f"stopping; 0: none. [default: {CSV.validation_split}; tutorial 0]",
)
@click.option(
    "--patience",
    type=click.IntRange(min=0),
    help=f"Stop after N epochs without a better val_loss and keep the best epoch's "
    f"weights; 0: never stop early. [default: {CSV.patience}; tutorial 0]",
)
@_test_size("Fraction of rows held out for testing.")
@_seed("Seeds the split, the initial weights and the batch order.")
@_backend("numpy, numba, cupy or auto (default: $FASTNN_BACKEND, else auto).")
@_MISSING
@click.option(
    "--out",
    "out_dir",
    metavar="DIR",
    help="Write model.safetensors, metrics.json, history.json, history.png "
    "(and predicted.png for regression) here.",
)
@click.option(
    "--explain",
    is_flag=True,
    help="Permutation importance of each input column on the test rows (printed; with "
    "--out also importance.json and importance.png).",
)
@_count("--explain-repeats", 5, 1, "Shuffles per column for --explain (seeded by --seed).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar; print only the results.")
@guard_command("out_dir")
def train(
    csv,
    target,
    drop,
    task,
    loss,
    class_weight,
    test_size,
    seed,
    backend,
    missing,
    out_dir,
    explain,
    explain_repeats,
    quiet,
    **given,
):
    import fastnn
    from fastnn.backends import get_backend, resolve_backend

    from . import report, tasks

    say = (lambda *a, **k: None) if quiet else click.echo
    backend_name = resolve_backend(backend)  # fail fast on a bad --backend
    settings = _resolve_settings(csv, given)
    fastnn.backends.check_activation(settings.activation)
    df, target, drop_cols, source = _load_training_table(csv, target, drop)
    prep, (X_tr, y_tr), (X_te, y_te) = _prepare_rows(
        df, target, drop_cols, missing, task, test_size, seed
    )
    _print_summary(say, df, source, prep, drop_cols, (y_tr, y_te), settings, task, test_size, seed)
    weights = _class_weight(class_weight, prep, y_tr)
    model = tasks.build_model(
        prep.task, prep.n_outputs, settings, loss=loss, backend=get_backend(backend_name)
    )
    say(report.network_line(model, prep, settings))
    history, seconds = _fit(say, model, X_tr, y_tr, settings, weights, seed, quiet)
    results = _evaluate_run(model, prep, ((X_tr, y_tr), (X_te, y_te)), seed)
    written = []
    if explain:
        written = _explain(model, prep, (X_te, y_te), explain_repeats, seed, out_dir)
    if out_dir is not None:
        info = _run_info(
            model,
            history,
            seconds,
            {
                "csv": csv,
                **settings.to_dict(),
                "task": task,
                "loss": model.loss.name,
                "class_weight": class_weight,
                "test_size": test_size,
                "seed": seed,
                "missing": missing,
                "drop": drop_cols,
            },
        )
        files = _write_run(out_dir, model, prep, history, results, info)
        say(f"wrote {out_dir}/: {', '.join(files + written)}")
    if active_interrupt().requested:
        return 130


# --------------------------------------------------------------------------- predict
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


class _Echo:
    """A text stream that writes to stdout through click (captured by CliRunner)."""

    def write(self, text: str) -> None:
        click.echo(text, nl=False)


def _merge_unknown(total: dict, new: dict) -> None:
    for col, values in new.items():
        bucket = total.setdefault(col, {})
        for v, k in values.items():
            bucket[v] = bucket.get(v, 0) + k


def _score_file(model, prep, path, out_path, unknown, chunk_rows):
    """Stream ``path`` through the model into ``out_path`` (stdout when None); returns
    ``(rows, scored, unknown counts, prediction column names)``."""
    from .data import tables
    from .tasks import score_chunk

    rows = scored = 0
    unseen: dict = {}
    names: list[str] = []
    writer = None
    chunks = tables.iter_table(path, chunk_rows)
    try:
        for chunk in chunks:
            if writer is None:
                writer = tables.TableWriter(out_path, _Echo(), tables.csv_delimiter(chunk))
            as_text = not writer.parquet
            frame, kept, new = score_chunk(model, prep, chunk, unknown, as_text=as_text)
            names = names or [c for c in frame.columns if c not in chunk.typed.columns]
            writer.write(frame)
            rows += len(frame)
            scored += kept
            _merge_unknown(unseen, new)
    except BaseException as exc:
        chunks.close()  # closes the file readers now, not when collected
        if writer is not None:
            writer.close(exc)
        raise
    if writer is not None:
        writer.close()
    return rows, scored, unseen, names


@main.command(context_settings=_CONTEXT)
@click.argument("model_path", metavar="MODEL")
@click.argument("csv", metavar="FILE")
@click.option(
    "--out",
    "out_path",
    metavar="FILE",
    help="Write here (.parquet/.pq: Parquet, else CSV) instead of CSV on stdout.",
)
@click.option(
    "--unknown",
    default="error",
    show_default=True,
    type=click.Choice(["error", "ignore"]),
    help="A category not seen in training: fail, or score it with all-zero one-hot "
    "columns (counted in a warning).",
)
@click.option(
    "--chunk-rows",
    default=100_000,
    show_default=True,
    type=click.IntRange(min=1),
    help="Rows read, scored and written at a time (memory stays flat).",
)
def predict(model_path, csv, out_path, unknown, chunk_rows):
    """Score the rows of FILE (CSV or Parquet) with a model saved by `fastnn train --out`.

    \b
    The output is the input with prediction columns added:
      binary       <target>_prob (positive class), <target>_pred (label)
      multiclass   <target>_prob_<class> for every class, <target>_pred (label)
      regression   <target>_pred, in the target's units
    Labels are in the target's own values; a suffix is added if a name is taken. The
    target column may be present or absent. The file is read and written in chunks.
    Rows that a `--missing drop` model cannot score get blank cells.
    """
    model, prep = _load_scoring_model(model_path)
    rows, scored, unseen, names = _score_file(model, prep, csv, out_path, unknown, chunk_rows)
    cols = "/".join(names)
    if rows > scored:
        click.echo(
            f"fastnn: warning: {rows - scored:,} rows have missing or bad cells; their "
            f"{cols} cells are blank",
            err=True,
        )
    if unseen:
        from .data import Preprocessor

        click.echo(f"fastnn: warning: {Preprocessor.unknown_message(unseen)}", err=True)
    if out_path is not None:
        pos = f"; positive class {prep.positive_class!r}" if prep.task == "binary" else ""
        click.echo(f"wrote {rows:,} rows to {out_path} (columns {', '.join(names)}{pos})", err=True)


# --------------------------------------------------------------------------- export
@main.command(context_settings=_CONTEXT)
@click.argument("model_path", metavar="MODEL")
@click.argument("out_path", metavar="OUT.onnx")
@click.option(
    "--unknown",
    default="error",
    show_default=True,
    type=click.Choice(["error", "ignore"]),
    help="A category not seen in training: NaN probabilities (error), or all-zero one-hot.",
)
def export(model_path, out_path, unknown):
    """Write MODEL (a .safetensors file) as ONNX to OUT.onnx (needs the onnx extra).

    A model from `fastnn train --out` keeps its preprocessing inside the graph: one
    input per raw column ([N, 1]: text as string, numbers as float with NaN for a
    missing cell) and the outputs label + probabilities (classifiers) or prediction
    (regression, in the target's units). Other models take one float input X [N, d].
    """
    import fastnn
    from fastnn.onnx import OPSET, to_onnx

    model = fastnn.load(model_path, backend="numpy")
    proto = to_onnx(model, unknown)
    folder = os.path.dirname(os.path.abspath(out_path))
    if not os.path.isdir(folder):
        raise ConfigError(f"cannot write {out_path!r}: folder {folder!r} does not exist")
    atomic_write_bytes(out_path, proto.SerializeToString())
    inputs = ", ".join(i.name for i in proto.graph.input)
    outputs = ", ".join(o.name for o in proto.graph.output)
    click.echo(f"wrote {out_path} (ONNX opset {OPSET}; inputs: {inputs}; outputs: {outputs})")


# --------------------------------------------------------------------------- steps
@main.command(context_settings=_CONTEXT)
@click.option(
    "--backend",
    default=None,
    metavar="NAME",
    help="numpy, numba, cupy or auto (default: $FASTNN_BACKEND, else auto).",
)
@click.option("--batch-size", default=32, show_default=True, type=click.IntRange(1))
@click.option("--seed", default=0, show_default=True, type=click.IntRange(0, 2**32 - 1))
def steps(backend, batch_size, seed):
    """Run ONE training step of the churn network on one real batch and show it.

    For each of the five steps (take a batch, forward-propagate, measure the error,
    backpropagate, update the weights) it prints the functions that do it (module and
    name, down to the backend's op), the shapes, and the numbers: the batch's loss, each
    layer's gradient norm, the largest weight change. Read it beside the README's "How
    training works"; fastnn.explain_step() does the same from Python.
    """
    from .steps import explain_step

    explain_step(backend, batch_size=batch_size, seed=seed, print_fn=click.echo)


# --------------------------------------------------------------------------- info
def _dist_version(module: str) -> str:
    from importlib import metadata

    names = metadata.packages_distributions().get(module, []) or [module]
    for name in names:
        try:
            return f"{metadata.version(name)}" + (f" ({name})" if name != module else "")
        except metadata.PackageNotFoundError:
            continue
    return "not installed"


@main.command(context_settings=_CONTEXT)
def info():
    """Which backends work on this machine (and why not), the GPU (card, compute
    capability, CUDA versions, which pip extra fits), and library versions."""
    import platform

    import numpy as np

    import fastnn
    from fastnn.backends import resolve_backend

    click.echo(
        f"fastnn {fastnn.__version__} (Python {platform.python_version()}, "
        f"{platform.system()} {platform.machine()})"
    )
    click.echo("backends:")
    status = fastnn.backend_status()
    width = max(len(n) for n in status)
    for name, (ok, reason) in status.items():
        click.echo(f"  {name:<{width}}  {'works' if ok else 'no':<5}  {reason}")
    try:
        auto = resolve_backend("auto")
    except FastnnError as exc:  # pragma: no cover - numpy always works
        auto = f"none ({exc})"
    env = os.environ.get("FASTNN_BACKEND")
    click.echo(f"auto picks: {auto}" + (f"; FASTNN_BACKEND={env}" if env else ""))
    click.echo("gpu:")
    from fastnn.backends.gpu_info import describe, gpu_report

    for line in describe(gpu_report()):
        click.echo(f"  {line}")
    click.echo("versions:")
    click.echo(f"  numpy  {np.__version__}")
    for module in ("numba", "cupy"):
        click.echo(f"  {module:<6} {_dist_version(module)}")


#: The peers ``fastnn bench`` knows (``fastnn.bench.PEERS``; named here so that
#: ``fastnn --help`` need not import the benchmark package).
BENCH_PEERS = ("torch-idiomatic", "torch-tuned", "sklearn", "keras", "keras-torch", "jax")


@main.command("bench")
@click.option("--quick", is_flag=True, help="About a minute: fewer epochs, repeats and sizes.")
@click.option(
    "--backends",
    default="all",
    show_default=True,
    help="Comma-separated fastnn backends, or 'all' for every one that works here.",
)
@click.option(
    "--peers/--no-peers",
    default=True,
    show_default=True,
    help="Also run the installed peers (PyTorch, scikit-learn, Keras 3, JAX).",
)
@click.option(
    "--only-peers",
    default=None,
    metavar="NAMES",
    help=f"Comma-separated subset of peers to run ({', '.join(BENCH_PEERS)}).",
)
@click.option(
    "--epochs",
    type=click.IntRange(min=1),
    default=None,
    help="Epochs of the churn recipe (100; quick 10).",
)
@click.option(
    "--repeats",
    type=click.IntRange(min=1),
    default=None,
    help="Timed runs per contender (5, and 7 for mid/big; quick 1).",
)
@click.option(
    "--sizes",
    default=None,
    help="Comma-separated subset of tiny,mid,big for the training comparison.",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False),
    default="bench-results",
    show_default=True,
    help="Folder for results.json, results.md and scaling.png.",
)
@click.option("--smoke", is_flag=True, hidden=True, help="Seconds-long toy run (CI).")
@click.option(
    "--tune",
    "tune_mode",
    is_flag=True,
    help="Instead: time `fastnn tune` against scikit-learn's RandomizedSearchCV over the "
    "same configurations and folds (needs fastnn[tune]); writes tune.json and tune.md.",
)
@click.option(
    "--trials", type=click.IntRange(min=1), default=20, show_default=True, help="With --tune."
)
@click.option(
    "--folds", type=click.IntRange(min=2), default=5, show_default=True, help="With --tune."
)
@click.option(
    "--jobs",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="With --tune: worker processes of both searches (0: every core).",
)
def bench_command(tune_mode, trials, folds, jobs, **options):
    """Compare fastnn's backends with each other and with PyTorch, scikit-learn, Keras 3
    and JAX (each when installed): training time and test accuracy of the churn network
    and two larger ones, op timings, scaling with width and batch size, and which backend
    is fastest where. Writes results.json, results.md and scaling.png to --out.

    With --tune: a search of --trials configurations x --folds folds on the churn data,
    `fastnn tune` against scikit-learn's RandomizedSearchCV (MLPClassifier) over the
    same configurations and folds; writes tune.json and tune.md to --out.
    """
    if tune_mode:
        from .bench import tune as tune_bench
        from .tune import _require

        for module in ("optuna", "sklearn"):
            _require(module)  # one-line error without the tune extra
        report = tune_bench.run(trials, folds, jobs, out=options["out_dir"])
        click.echo(tune_bench.render(report))
        return
    from .bench.command import main as run_bench

    run_bench(**options)


# --------------------------------------------------------------------------- tune
@main.command("tune", context_settings=_CONTEXT)
@click.argument("csv", required=False, metavar="[FILE]")
@_TARGET
@_DROP
@_choice("--task", TASK_NAMES, "Override the task guessed from the target.")
@_count("--trials", 20, 1, "Trials this process runs (with --storage: adds to the study).")
@_count("--folds", 5, 2, "Cross-validation folds.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    metavar="S",
    help="Start no trial after S seconds.",
)
@_count("--jobs", 0, 0, "Worker processes (0: every core).")
@click.option(
    "--storage", metavar="URL", help="Optuna storage shared by processes, e.g. sqlite:///study.db."
)
@click.option("--study", "study_name", metavar="NAME", help="Study name in --storage.")
@_test_size("Rows held out for the final test (never seen by the search).")
@click.option(
    "--epochs",
    type=click.IntRange(min=1),
    help=f"Most epochs per fold; early stopping picks fewer. [default: {TUTORIAL.epochs}; "
    f"with a file {CSV.epochs}]",
)
@click.option(
    "--patience",
    type=click.IntRange(min=1),
    help=f"Early-stopping patience. [default: 10; with a file {CSV.patience}]",
)
@_seed("Seeds the test split, the folds, the sampler and every training.")
@_backend("numpy or numba (default: the CPU one auto picks).")
@_MISSING
@click.option(
    "--out", "out_dir", metavar="DIR", help="Write tune.json, tune.png and the refit model here."
)
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@guard_command("out_dir")
def tune_command(
    csv,
    target,
    drop,
    task,
    trials,
    folds,
    timeout,
    jobs,
    storage,
    study_name,
    test_size,
    epochs,
    patience,
    seed,
    backend,
    missing,
    out_dir,
    quiet,
):
    """Search for a better network on FILE, a CSV or Parquet file (default: the bundled
    churn data).

    Cross-validates each trial (stratified K-fold on the training rows; early stopping
    on part of each fold's training rows) and scores it by ROC AUC, accuracy or R2.
    Trial 0 is the configuration `fastnn train` uses by default. The best one is refit
    on all training rows, tested on the held-out test rows (with 95% bootstrap
    intervals) and written exactly as `fastnn train --out` writes a run, with tune.json
    and tune.png beside it.

    \b
    fastnn tune --trials 20 --folds 5 --out tuned
    fastnn tune data.csv --target y --storage sqlite:///s.db --study s1   (several processes)
    """
    from . import report
    from . import tune as tuning

    if storage and not study_name:
        raise click.UsageError("--storage needs --study NAME, so other processes can join it")
    say = (lambda *a, **k: None) if quiet else click.echo
    if backend is not None:
        from .backends import resolve_backend

        resolve_backend(backend)
    df, target, drop_cols, source = _load_training_table(csv, target, drop)
    prep, (X_tr, y_tr), (X_te, y_te) = _prepare_rows(
        df, target, drop_cols, missing, task, test_size, seed
    )
    preset = "tutorial" if csv is None else "csv"
    config, budget = tuning.default_config(preset)
    budget["max_epochs"] = epochs or budget["max_epochs"]
    budget["patience"] = patience or budget["patience"]
    jobs = jobs or tuning.cpu_count()
    no_validation = (TUTORIAL if csv is None else CSV).replace(validation_split=0.0)
    _print_summary(
        say, df, source, prep, drop_cols, (y_tr, y_te), no_validation, task, test_size, seed
    )
    say(
        f"tune: {trials} trials x {folds} folds on {jobs} worker processes, score "
        f"{tuning.METRIC[prep.task]}; trial 0 is the {'tutorial' if csv is None else 'default'} network"
    )
    result = tuning.tune(
        X_tr,
        y_tr,
        prep.task,
        trials,
        folds,
        timeout=timeout,
        jobs=jobs,
        storage=storage,
        study=study_name,
        seed=seed,
        default=config,
        backend=backend,
        n_outputs=prep.n_outputs,
        progress=not quiet,
        **budget,
    )
    _report_search(say, result)
    best = result.best
    if out_dir is not None:
        report.preload_plotting()  # on the core the refit leaves idle
    t0 = time.perf_counter()
    model, history = result.refit(
        X_tr, y_tr, prep.n_outputs, backend=backend, callbacks=[StopOnInterrupt()]
    )
    seconds = time.perf_counter() - t0
    say(
        f"refit trial {best['number']} on all {len(y_tr):,} training rows: "
        f"{len(history.epoch)} epochs in {seconds:.2f} s"
    )
    results = _evaluate_run(model, prep, ((X_tr, y_tr), (X_te, y_te)), seed)
    if out_dir is not None:
        settings = {
            "csv": csv,
            **result.best_settings().to_dict(),
            "task": task,
            "loss": model.loss.name,
            "class_weight": None,
            "test_size": test_size,
            "seed": seed,
            "missing": missing,
            "drop": drop_cols,
        }
        info = _run_info(model, history, seconds, settings)
        info["tune"] = {"trial": best["number"], "cv_mean": best["mean"], "cv_std": best["std"]}
        files = _write_run(out_dir, model, prep, history, results, info)
        report.write_json(os.path.join(out_dir, "tune.json"), result.to_dict())
        result.plot(os.path.join(out_dir, "tune.png"))
        say(f"wrote {out_dir}/: {', '.join(files)}, tune.json, tune.png")
    if active_interrupt().requested:
        return 130


def _report_search(say, result) -> None:
    """How the search went, and the ranked table of its best trials; an error when no
    trial completed."""
    if result.interrupted:
        click.echo("fastnn: warning: interrupted; keeping the trials that finished", err=True)
    if result.best is None:
        errors = [t.get("error") for t in result.trials if t.get("error")]
        raise FastnnError("no trial completed" + (f"; first error: {errors[0]}" if errors else ""))
    n_state = {
        s: sum(t["state"] == s for t in result.trials) for s in ("COMPLETE", "PRUNED", "FAIL")
    }
    say(
        f"{len(result.trials)} trials in the study ({n_state['COMPLETE']} complete, "
        f"{n_state['PRUNED']} pruned, {n_state['FAIL']} failed) in {result.seconds:.1f} s"
    )
    click.echo(result.table())


# --------------------------------------------------------------------------- explain
def _run_test_rows(model_path, prep):
    """The test rows of the `fastnn train`/`tune` run that wrote MODEL (its metrics.json
    settings: CSV, test size, seed), transformed by its Preprocessor."""
    from . import data

    metrics_path = os.path.join(os.path.dirname(os.path.abspath(model_path)), "metrics.json")
    if not os.path.isfile(metrics_path):
        raise ConfigError(
            f"give DATA: there is no metrics.json beside {model_path!r} to find its test rows"
        )
    with open(metrics_path, encoding="utf-8") as f:
        settings = json.load(f).get("settings") or {}
    csv = settings.get("csv")
    df = data.load_churn() if csv is None else data.read_table(csv)
    _, test_idx = data.split_indices(
        len(df), settings.get("test_size", 0.2), settings.get("seed", 0)
    )
    return f"the test rows of {csv or 'the bundled churn data'}", prep.transform(df.iloc[test_idx])


@main.command("explain", context_settings=_CONTEXT)
@click.argument("model_path", metavar="MODEL")
@click.argument("data_path", metavar="[DATA]", required=False)
@_count("--repeats", 5, 1, "Shuffles per column.")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(0, 2**32 - 1))
@click.option(
    "--out", "out_dir", metavar="DIR", help="Folder for importance.json/png (default: MODEL's)."
)
def explain_command(model_path, data_path, repeats, seed, out_dir):
    """Permutation importance of each raw input column of MODEL on DATA.

    DATA is a CSV with the target column (default: the test rows of the run that wrote
    MODEL, from its metrics.json). A one-hot encoded column is shuffled as one column.
    Writes importance.json ({"features": [{"name", "mean", "std"}, ...]}, largest first)
    and importance.png.
    """
    from . import data
    from .explain import explain_to, format_importance

    model, prep = _load_scoring_model(model_path)
    if data_path is None:
        where, (X, y) = _run_test_rows(model_path, prep)
    else:
        where, (X, y) = data_path, prep.transform(data.read_table(data_path), with_target=True)
    out_dir = out_dir or os.path.dirname(os.path.abspath(model_path))
    with OutputFolder(out_dir):
        result = explain_to(out_dir, model, prep, X, y, n_repeats=repeats, seed=seed)
    click.echo(
        f"permutation importance on {where} ({len(y):,} rows, {repeats} repeats); "
        f"{result['metric']} without shuffling: {result['baseline']:.4f}"
    )
    click.echo(format_importance(result))
    click.echo(f"wrote {out_dir}/: importance.json, importance.png")


if __name__ == "__main__":  # pragma: no cover
    main()
