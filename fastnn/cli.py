"""The ``fastnn`` command: the group and ``train``, ``predict``, ``export``, ``steps``,
``info``; ``tune`` and ``explain`` come from :mod:`fastnn.cli_search`, ``bench`` from
:mod:`fastnn.cli_bench`, and what they share from :mod:`fastnn.cli_shared`.

Errors a user can cause (a bad path, an unknown column, a bad flag value, anything fastnn
raises on purpose) print one line on stderr, ``fastnn: error: ...``, and exit with code
2; no traceback, no usage block. Warnings print as ``fastnn: warning: ...``.
"""

from __future__ import annotations

import os
import sys
import time
import warnings

import click

from . import plotter
from .cli_bench import BENCH_PEERS, bench_command  # noqa: F401  (BENCH_PEERS: re-exported)
from .cli_prepare import compiler_ready, prepared_table
from .cli_search import explain_command, tune_command
from .cli_shared import (
    _CONTEXT,
    _DROP,
    _MISSING,
    _TARGET,
    _backend,
    _choice,
    _count,
    _evaluate_run,
    _load_scoring_model,
    _print_summary,
    _run_info,
    _seed,
    _test_size,
    _write_history,
    _write_run,
    collector_held,
    collector_settled,
)
from .defaults import CSV, OPTIMIZER_NAMES, REGRESSION_LOSSES, TASK_NAMES, TUTORIAL
from .errors import ConfigError, FastnnError
from .io import atomic_write_bytes
from .runguard import StopOnInterrupt, active_interrupt, guard_command

# click >= 8.2 raises this for a bare group call; older clicks print the help themselves
_NoArgsIsHelp = getattr(click.exceptions, "NoArgsIsHelpError", type("_Never", (Exception,), {}))


def _one_line(text) -> str:
    return " ".join(str(text).split())


def _show_warning(message, category, filename, lineno, file=None, line=None):
    click.echo(f"fastnn: warning: {_one_line(message)}", err=True)


#: the console script's file name (the Windows launchers' too)
_SCRIPTS = ("fastnn", "fastnn.exe", "fastnn-script.py")


def _is_the_command() -> bool:
    """True in the ``fastnn`` process itself (the console script or ``python -m
    fastnn.cli``), run without a profiler or tracer, with no other thread to wait for;
    never where ``main`` is called from someone else's program (a notebook, a test), nor
    with ``FASTNN_FULL_EXIT=1`` (for tools that need the full teardown)."""
    import threading

    if os.environ.get("FASTNN_FULL_EXIT", "") not in ("", "0"):
        return False
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    script = os.path.basename(sys.argv[0]) if sys.argv else ""
    if script not in _SCRIPTS and getattr(spec, "name", None) != "fastnn.cli":
        return False
    if sys.gettrace() is not None or sys.getprofile() is not None:
        return False
    return not any(
        t.is_alive() and not t.daemon and t is not threading.main_thread()
        for t in threading.enumerate()
    )


def _exit_now(code: int):
    """End the process as ``sys.exit(code)`` would, less the interpreter's teardown of
    every loaded module (0.4 s after ``fastnn train``, 0.7 s after ``fastnn tune`` on
    the 2-core box, with Numba, pandas, Optuna and matplotlib loaded): the exit
    handlers run and the output is flushed first. Every file fastnn writes is complete
    and closed before this point (written whole and renamed into place)."""
    import atexit

    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (fastnn ... | head)
            pass
    os._exit(code)


class FastnnGroup(click.Group):
    """A click group whose errors are one line on stderr with exit code 2."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        """Run the command; return (or, standalone, exit with) the exit code."""
        code = self._run(args, prog_name or "fastnn", complete_var, extra)
        if standalone_mode:
            if args is None and _is_the_command():
                _exit_now(code)
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


# --------------------------------------------------------------------------- train helpers
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


def _hidden_text(hidden) -> str:
    return ",".join(map(str, hidden)) or "none"


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
    collector_settled()
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


def _explain(model, prep, test_rows, repeats, seed, out_dir, plots) -> list[str]:
    """``--explain``: permutation importance on the test rows, printed (top 10) and,
    with ``out_dir``, written (the figure through ``plots``, which ``_write_run`` waits
    for); returns the file names written."""
    from .explain import explain_to, format_importance

    X, y = test_rows
    result = explain_to(out_dir, model, prep, X, y, n_repeats=repeats, seed=seed, plots=plots)
    click.echo(
        f"permutation importance on the {len(y):,} test rows ({repeats} repeats): drop in "
        f"{result['metric']} (without shuffling {result['baseline']:.4f}) when a column is shuffled"
    )
    click.echo(format_importance(result, top=10))
    return [] if out_dir is None else ["importance.json", "importance.png"]


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
@collector_held
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
    # Numba sets up here while a child process reads and prepares the table
    shape, target, drop_cols, source, prep, (X_tr, y_tr), (X_te, y_te) = prepared_table(
        csv, target, drop, missing, task, test_size, seed,
        meanwhile=lambda: compiler_ready(backend_name),
    )  # fmt: skip
    _print_summary(
        say, shape, source, prep, drop_cols, (y_tr, y_te), settings, task, test_size, seed
    )
    weights = _class_weight(class_weight, prep, y_tr)
    model = tasks.build_model(
        prep.task, prep.n_outputs, settings, loss=loss, backend=get_backend(backend_name)
    )
    say(report.network_line(model, prep, settings))
    # matplotlib loads in a child process beside the training (fastnn.plotter)
    with plotter.start(out_dir is not None) as plots:
        history, seconds = _fit(say, model, X_tr, y_tr, settings, weights, seed, quiet)
        early = _write_history(out_dir, history, plots)  # drawn beside the evaluation
        results = _evaluate_run(model, prep, ((X_tr, y_tr), (X_te, y_te)), seed)
        written = []
        if explain:
            written = _explain(model, prep, (X_te, y_te), explain_repeats, seed, out_dir, plots)
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
            files = _write_run(out_dir, model, prep, early, results, info, plots)
            say(f"wrote {out_dir}/: {', '.join(files + written)}")
    if active_interrupt().requested:
        return 130


# --------------------------------------------------------------------------- predict
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


for _command in (bench_command, tune_command, explain_command):
    main.add_command(_command)


if __name__ == "__main__":  # pragma: no cover
    main()
