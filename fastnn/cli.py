"""The ``fastnn`` command: ``train``, ``predict``, ``info`` and ``bench``.

Errors a user can cause (a bad path, an unknown column, a bad flag value, anything fastnn
raises on purpose) print one line on stderr, ``fastnn: error: ...``, and exit with code
2; no traceback, no usage block. Warnings print as ``fastnn: warning: ...``.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
import warnings

import click

from .bench import bench_command
from .errors import ConfigError, FastnnError

#: the tutorial network: two hidden layers of 6 units
DEFAULT_HIDDEN = "6,6"
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


main.add_command(bench_command)


# --------------------------------------------------------------------------- helpers
def _parse_hidden(ctx, param, value: str) -> list[int]:
    text = (value or "").strip().lower()
    if text in ("", "none", "0"):
        return []
    sizes = []
    for part in text.split(","):
        part = part.strip()
        if not part.isdigit() or int(part) < 1:
            raise click.BadParameter(
                f"{value!r} is not a comma-separated list of positive layer sizes (e.g. 6,6)"
            )
        sizes.append(int(part))
    return sizes


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


def _json_safe(x):
    if isinstance(x, dict):
        return {str(k): _json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_safe(v) for v in x]
    if hasattr(x, "tolist"):
        return _json_safe(x.tolist())
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def _write_json(path, data) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(_json_safe(data), f, indent=2)
        f.write("\n")


def _plot_history(history: dict, path) -> None:
    """Loss and accuracy curves per epoch (matplotlib, Agg canvas, no pyplot state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4), dpi=100)
    FigureCanvasAgg(fig)
    panels = [("loss", "loss per epoch"), ("accuracy", "accuracy and AUC per epoch")]
    for i, (key, title) in enumerate(panels):
        ax = fig.add_subplot(1, 2, i + 1)
        for name in (key, f"val_{key}"):
            vals = history.get(name)
            if vals:
                ax.plot(range(1, len(vals) + 1), vals, label=name)
        if key == "accuracy" and history.get("auc"):
            ax.plot(range(1, len(history["auc"]) + 1), history["auc"], label="auc")
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(True, alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path)


def _fmt_matrix(C, labels) -> str:
    names = [str(x) for x in labels]
    w = max(max(len(n) for n in names) + 5, max(len(f"{int(v):,}") for v in C.ravel()) + 1, 8)
    head = " " * (w + 2) + "".join(f"{'pred ' + n:>{w}}" for n in names)
    rows = [head]
    for i, n in enumerate(names):
        rows.append(f"  {'true ' + n:<{w}}" + "".join(f"{int(v):>{w},}" for v in C[i]))
    return "\n".join(rows)


def _fmt(x, digits=4) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


# --------------------------------------------------------------------------- train
@main.command(context_settings=_CONTEXT)
@click.argument("csv", required=False)
@click.option(
    "--target", "-t", help="Target column (0/1 or two string values). Required with a CSV."
)
@click.option(
    "--drop", multiple=True, metavar="COL", help="Column to ignore; repeat it or list COL1,COL2."
)
@click.option(
    "--hidden",
    default=DEFAULT_HIDDEN,
    show_default=True,
    callback=_parse_hidden,
    help="Hidden layer sizes, comma-separated ('' or none: no hidden layer).",
)
@click.option("--activation", default="relu", show_default=True, help="Hidden-layer activation.")
@click.option("--epochs", default=100, show_default=True, type=click.IntRange(min=1))
@click.option("--batch-size", default=32, show_default=True, type=click.IntRange(min=1))
@click.option(
    "--lr",
    default=0.001,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="Adam learning rate.",
)
@click.option(
    "--test-size",
    default=0.2,
    show_default=True,
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    help="Fraction of rows held out for testing.",
)
@click.option(
    "--seed",
    default=0,
    show_default=True,
    type=click.IntRange(0, 2**32 - 1),
    help="Seeds the split, the initial weights and the batch order.",
)
@click.option(
    "--backend",
    default=None,
    metavar="NAME",
    help="numpy, numba, cupy or auto (default: $FASTNN_BACKEND, else auto).",
)
@click.option(
    "--missing",
    default="error",
    show_default=True,
    type=click.Choice(["error", "drop", "mean"]),
    help="Missing or non-numeric cells: fail, drop those rows, or use the training mean.",
)
@click.option(
    "--out",
    "out_dir",
    metavar="DIR",
    help="Write model.safetensors, metrics.json, history.json, history.png here.",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress bar; print only the results.")
def train(
    csv,
    target,
    drop,
    hidden,
    activation,
    epochs,
    batch_size,
    lr,
    test_size,
    seed,
    backend,
    missing,
    out_dir,
    quiet,
):
    """Train a binary classifier on CSV (default: the bundled bank-churn data).

    Without CSV it runs the churn tutorial: target Exited, dropping RowNumber, CustomerId
    and Surname; 11 features -> Dense 6 relu -> Dense 6 relu -> Dense 1 sigmoid, Adam,
    binary cross-entropy, batch 32, 100 epochs, 80/20 split (--drop replaces the default
    drops, --target the default target). String columns are one-hot
    encoded, numeric ones standardized with training statistics; all of it is stored
    with the model for `fastnn predict`.
    """
    import numpy as np

    import fastnn
    from fastnn.backends import get_backend, resolve_backend
    from fastnn.layers import Dense
    from fastnn.metrics import confusion_matrix, roc_auc

    from . import data

    say = (lambda *a, **k: None) if quiet else click.echo
    backend_name = resolve_backend(backend)  # fail fast on a bad --backend
    fastnn.backends.check_activation(activation)
    if out_dir is not None:  # before training, so a bad --out fails at once
        if os.path.exists(out_dir) and not os.path.isdir(out_dir):
            raise ConfigError(f"--out {out_dir!r} exists and is not a folder")
        try:
            os.makedirs(out_dir, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                f"cannot create the --out folder {out_dir!r}: {exc.strerror or exc}"
            ) from None

    if csv is None:
        df = data.load_churn()
        target = target or data.CHURN_TARGET
        drop_cols = _split_drop(drop, df.columns) if drop else list(data.CHURN_DROP)
    else:
        df = data.read_csv(csv)
        if not target:
            raise click.UsageError(
                f"--target is required with a CSV; columns are: {', '.join(map(str, df.columns))}"
            )
        drop_cols = _split_drop(drop, df.columns)
    source = df.attrs.get(data.loading.ATTR_SOURCE, csv)

    prep = data.Preprocessor(target=target, drop=drop_cols, missing=missing)
    # kinds, categories and cell checks from every row; statistics from the training rows
    train_idx, test_idx = data.split_indices(len(df), test_size, seed)
    prep.fit(df, train_rows=train_idx)
    X_tr, y_tr = prep.transform(df.iloc[train_idx])
    X_te, y_te = prep.transform(df.iloc[test_idx])
    if len(y_te) == 0:
        raise fastnn.errors.DataError(
            "no test rows are left after dropping rows with missing cells"
        )

    desc = prep.describe()
    n_pos = int(y_tr.sum() + y_te.sum())
    n_rows = len(y_tr) + len(y_te)
    say(f"data: {source}: {len(df):,} rows, {len(df.columns)} columns; target {target!r}")
    cat = ", ".join(f"{k} -> {v}" for k, v in desc["categorical"].items())
    say(
        f"features: {prep.n_features} ({len(desc['numeric'])} numeric"
        + (f"; one-hot: {cat}" if cat else "")
        + ")"
        + (f"; dropped: {', '.join(map(str, drop_cols))}" if drop_cols else "")
    )
    if missing == "drop" and n_rows < len(df):
        say(f"missing: dropped {len(df) - n_rows:,} rows with missing or bad cells")
    say(
        f"positives: {n_pos:,} of {n_rows:,} ({n_pos / n_rows:.1%}); positive class {prep.positive_class!r}"
    )
    if prep.target_mapping:
        say("target mapping: " + ", ".join(f"{k!r} -> {v}" for k, v in prep.target_mapping.items()))
    say(
        f"split: {len(y_tr):,} train / {len(y_te):,} test rows (test size {test_size}, seed {seed})"
    )

    layers = [Dense(h, activation=activation) for h in hidden] + [Dense(1, activation="sigmoid")]
    model = fastnn.Sequential(layers, backend=get_backend(backend_name))
    model.compile(
        optimizer=fastnn.optimizers.Adam(learning_rate=lr),
        loss="binary_crossentropy",
        metrics=["accuracy", "auc"],
    )
    be = model.backend
    say(
        f"backend: {be.name} ({be.device}); network: {prep.n_features} -> "
        + " -> ".join(f"{h} {activation}" for h in hidden)
        + (" -> " if hidden else "")
        + "1 sigmoid"
    )
    compiled = _compile_seconds(be)
    t0 = time.perf_counter()
    history = model.fit(
        X_tr, y_tr, batch_size=batch_size, epochs=epochs, seed=seed, verbose=0 if quiet else 1
    )
    seconds = time.perf_counter() - t0
    compiled = _compile_seconds(be) - compiled
    ran = len(history.epoch)
    timing = f"{seconds:.2f} s"
    if compiled > 0.01:  # first run on this machine: say what was compilation, not training
        timing = f"{seconds - compiled:.2f} s (+ {compiled:.2f} s compiling Numba kernels, once)"
    say(f"trained {ran} epochs in {timing} on {be.name}; training path: {model.training_path}")
    if history.stop_reason:
        say(f"stopped early: {history.stop_reason}")

    train_logs = model.evaluate(X_tr, y_tr)
    test_logs = model.evaluate(X_te, y_te)
    p_te = model.predict(X_te)[:, 0]
    pred = (p_te >= 0.5).astype(np.int64)
    C = confusion_matrix(y_te, pred, n_classes=2)
    auc = roc_auc(y_te, p_te)
    labels = prep.classes_
    click.echo(
        f"test accuracy {_fmt(test_logs['accuracy'])}   ROC AUC {_fmt(auc)}   "
        f"loss {_fmt(test_logs['loss'])}   ({len(y_te):,} rows)"
    )
    click.echo("confusion matrix (rows: true class, columns: predicted class):")
    click.echo(_fmt_matrix(C, labels))

    if out_dir is not None:
        model.preprocessing = prep.to_dict()
        fastnn.save(model, os.path.join(out_dir, "model.safetensors"))
        metrics = {
            "train": {**train_logs, "rows": len(y_tr)},
            "test": {
                **test_logs,
                "auc": auc,
                "rows": len(y_te),
                "confusion_matrix": C,
                "confusion_matrix_labels": labels,
            },
            "target": target,
            "target_mapping": prep.target_mapping,
            "positive_class": prep.positive_class,
            "features": prep.feature_names_,
            "backend": be.name,
            "training_path": model.training_path,
            "train_seconds": seconds,
            "epochs": ran,
            "settings": {
                "csv": csv,
                "hidden": hidden,
                "activation": activation,
                "epochs": epochs,
                "batch_size": batch_size,
                "lr": lr,
                "test_size": test_size,
                "seed": seed,
                "missing": missing,
                "drop": drop_cols,
            },
        }
        _write_json(os.path.join(out_dir, "metrics.json"), metrics)
        _write_json(os.path.join(out_dir, "history.json"), history.history)
        _plot_history(history.history, os.path.join(out_dir, "history.png"))
        say(f"wrote {out_dir}/: model.safetensors, metrics.json, history.json, history.png")


# --------------------------------------------------------------------------- predict
def _free_name(name: str, taken) -> str:
    if name not in taken:
        return name
    i = 1
    while f"{name}_{i}" in taken:
        i += 1
    return f"{name}_{i}"


@main.command(context_settings=_CONTEXT)
@click.argument("model_path", metavar="MODEL")
@click.argument("csv")
@click.option("--out", "out_path", metavar="FILE", help="Write the CSV here instead of stdout.")
def predict(model_path, csv, out_path):
    """Score the rows of CSV with a model saved by `fastnn train --out`.

    The output is the input CSV with two columns added: <target>_prob, the probability
    of the positive class, and <target>_pred, the predicted label in the target's own
    values (a suffix is added if those names are taken). The target column may be
    present or absent. Rows that a `--missing drop` model cannot score get blank cells.
    """
    import numpy as np

    import fastnn

    from . import data

    model = fastnn.load(model_path)
    if model.preprocessing is None:
        raise fastnn.errors.ModelFileError(
            f"{model_path!r} holds no preprocessing state (it was not written by "
            "`fastnn train --out`); use the Python API to predict with it"
        )
    prep = data.Preprocessor.from_dict(model.preprocessing)
    df = data.read_csv(csv)
    raw = data.read_csv(csv, raw=True, delimiter=df.attrs.get(data.loading.ATTR_DELIMITER))
    X, _, keep = prep.transform(df, with_target=False, return_mask=True)
    if X.shape[1] != model.input_dim:
        raise fastnn.errors.ModelFileError(
            f"{model_path!r}: the model takes {model.input_dim} features, its preprocessing "
            f"gives {X.shape[1]}"
        )
    prob = np.full(len(df), np.nan)
    if X.shape[0]:
        prob[keep] = model.predict(X)[:, 0]
    pred01 = (prob >= 0.5).astype(np.int64)
    pred_labels = prep.labels(pred01) if prep.classes_ else pred01

    base = str(prep.target) if prep.target is not None else "target"
    taken = set(map(str, raw.columns))
    prob_col = _free_name(f"{base}_prob", taken)
    taken.add(prob_col)
    pred_col = _free_name(f"{base}_pred", taken)
    out = raw.copy()
    out[prob_col] = ["" if math.isnan(p) else f"{p:.6f}" for p in prob]
    out[pred_col] = ["" if not k else str(lab) for k, lab in zip(keep, pred_labels, strict=True)]
    text = out.to_csv(
        index=False, sep=df.attrs.get(data.loading.ATTR_DELIMITER, ","), lineterminator="\n"
    )
    n_skipped = int((~keep).sum())
    if n_skipped:
        click.echo(
            f"fastnn: warning: {n_skipped:,} rows have missing or bad cells; their "
            f"{prob_col}/{pred_col} cells are blank",
            err=True,
        )
    if out_path is None:
        click.echo(text, nl=False)
    else:
        folder = os.path.dirname(os.path.abspath(out_path))
        if not os.path.isdir(folder):
            raise ConfigError(f"cannot write {out_path!r}: folder {folder!r} does not exist")
        with open(out_path, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        click.echo(
            f"wrote {len(out):,} rows to {out_path} (columns {prob_col}, {pred_col}; "
            f"positive class {prep.positive_class!r})",
            err=True,
        )


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
    """Which backends work on this machine (and why not), and library versions."""
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
    click.echo("versions:")
    click.echo(f"  numpy  {np.__version__}")
    for module in ("numba", "cupy"):
        click.echo(f"  {module:<6} {_dist_version(module)}")


if __name__ == "__main__":  # pragma: no cover
    main()
