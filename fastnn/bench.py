"""Placeholder: the benchmarks helper replaces this file with the real `fastnn bench`."""

import click


@click.command("bench")
def bench_command():
    """Compare backends and peers (being written)."""
    raise click.ClickException("fastnn bench is not written yet")
