"""``fastnn bench``: the options (the benchmark package itself is imported only when the
command runs, so ``fastnn --help`` stays light)."""

from __future__ import annotations

import click

#: The peers ``fastnn bench`` knows (``fastnn.bench.PEERS``; named here so that
#: ``fastnn --help`` need not import the benchmark package).
BENCH_PEERS = ("torch-idiomatic", "torch-tuned", "sklearn", "keras", "keras-torch", "jax")


@click.command("bench")
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
