"""``fastnn tune`` (a cross-validated search, then the best refit and written as
``fastnn train`` writes a run) and ``fastnn explain`` (permutation importance)."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import sys
import time

import click

from . import plotter
from .cli_prepare import prepared_table
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
from .defaults import CSV, TASK_NAMES, TUTORIAL
from .errors import ConfigError, FastnnError
from .runguard import OutputFolder, StopOnInterrupt, active_interrupt, guard_command


# --------------------------------------------------------------------------- tune
def _on_one_blas_thread(command):
    """``command`` run with NumPy's and SciPy's BLAS on one thread (restored after it).
    Every product of a tune run is small: the workers fork with one thread and set
    nothing (see ``backends.numba_mid._limit``), and the refit, metrics and plots then
    need no BLAS thread, where each one set up again spun ~0.13 s beside them."""

    @functools.wraps(command)
    def run(*args, **kwargs):
        from .backends.numba_mid import one_blas_thread

        with one_blas_thread():
            return command(*args, **kwargs)

    return run


@click.command("tune", context_settings=_CONTEXT)
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
@_on_one_blas_thread
@collector_held
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
    from . import tune as tuning

    if storage and not study_name:
        raise click.UsageError("--storage needs --study NAME, so other processes can join it")
    say = (lambda *a, **k: None) if quiet else click.echo
    if backend is not None:
        from .backends import resolve_backend

        resolve_backend(backend)
    with contextlib.ExitStack() as stack:
        plots, table = _start_up(stack, (csv, target, drop, missing, task, test_size, seed),
                                 backend, out_dir is not None)  # fmt: skip
        shape, target, drop_cols, source, prep, (X_tr, y_tr), (X_te, y_te) = table
        preset = "tutorial" if csv is None else "csv"
        config, budget = tuning.default_config(preset)
        budget["max_epochs"] = epochs or budget["max_epochs"]
        budget["patience"] = patience or budget["patience"]
        jobs = jobs or tuning.cpu_count()
        no_validation = (TUTORIAL if csv is None else CSV).replace(validation_split=0.0)
        _print_summary(
            say, shape, source, prep, drop_cols, (y_tr, y_te), no_validation, task, test_size, seed
        )
        say(
            f"tune: {trials} trials x {folds} folds on {jobs} worker processes, score "
            f"{tuning.METRIC[prep.task]}; trial 0 is the {'tutorial' if csv is None else 'default'} network"
        )
        collector_settled()
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
        collector_settled()  # the warm-up's and the search's objects too
        model, history, seconds, results, early = _refit(
            say, result, out_dir, prep, ((X_tr, y_tr), (X_te, y_te)), backend, seed, plots
        )
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
            files = _write_run(out_dir, model, prep, early, results, info, plots)
            say(f"wrote {out_dir}/: {', '.join(files)}, tune.json, tune.png")
    if active_interrupt().requested:
        return 130


def _start_up(stack, table_args, backend, plotting):
    """``(plots, table)``: the command's :class:`~fastnn.plotter.Plotter` (entered on
    ``stack``) and :func:`~fastnn.cli_prepare.prepared_table` of ``table_args``. While a
    child process reads and prepares the table (pandas' import is most of it), this one
    imports Optuna (a missing extra is reported before any kernel compiles), loads the
    fold trainer (:func:`fastnn.tune.warm_kernels`, the shorter of the two now that it
    skips Numba's compiler set-up), then forks the plot child, which imports matplotlib
    while this process waits for the table rather than beside the search's workers."""
    from . import tune as tuning

    plots = []  # meanwhile runs with or without the child, before the table comes back

    def meanwhile():
        tuning._require("optuna")
        tuning.warm_kernels(backend)
        plots.append(stack.enter_context(plotter.start(plotting)))

    table = prepared_table(*table_args, meanwhile=meanwhile)
    return plots[0], table


def _refit(say, result, out_dir, prep, rows, backend, seed, plots):
    """The best trial refit on all training rows and evaluated, ``tune.json`` written and
    ``tune.png`` sent to ``plots`` (a :class:`fastnn.plotter.Plotter`) first, history.*
    right after the refit; ``(model, history, seconds, results, names written)``."""
    (X_tr, y_tr), _ = rows
    if out_dir is not None:
        _write_search(out_dir, result, plots)
    t0 = time.perf_counter()
    with contextlib.nullcontext() if plots.forked else _gil_handoff():  # a plot thread
        model, history = result.refit(
            X_tr, y_tr, prep.n_outputs, backend=backend, callbacks=[StopOnInterrupt()]
        )
    seconds = time.perf_counter() - t0
    say(
        f"refit trial {result.best['number']} on all {len(y_tr):,} training rows: "
        f"{len(history.epoch)} epochs in {seconds:.2f} s"
    )
    early = _write_history(out_dir, history, plots)  # drawn beside the evaluation
    results = _evaluate_run(model, prep, rows, seed)
    return model, history, seconds, results, early


def _write_search(out_dir, result, plots) -> None:
    """tune.json of the search, and its tune.png through ``plots``."""
    from . import report
    from .tune import plot_trials

    report.write_json(os.path.join(out_dir, "tune.json"), result.to_dict())
    path = os.path.join(out_dir, "tune.png")
    plots.submit(plot_trials, result.trials, result.metric, result.folds, path)


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


@click.command("explain", context_settings=_CONTEXT)
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


@contextlib.contextmanager
def _gil_handoff(seconds: float = 2e-4):
    """Python's thread switch interval cut from 5 ms to ``seconds`` while the refit runs
    beside the plotting import in a thread (where no plot process could be forked):
    each epoch releases the GIL in compiled code and waits for it on return, up to one
    interval behind the importing thread (the refit in the tune command measured
    0.67-0.83 s with the default, 0.57-0.59 s with this)."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(seconds)
    try:
        yield
    finally:
        sys.setswitchinterval(before)
