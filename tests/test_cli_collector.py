"""The garbage-collector hold of ``fastnn train``/``tune`` (``cli_shared.collector_held``):
off while the command sets up, on again for its long work, and as it was afterwards."""

from __future__ import annotations

import gc

import pytest

from fastnn.cli_shared import collector_held, collector_settled


@pytest.fixture(autouse=True)
def _collector_restored():
    was = gc.isenabled()
    yield
    gc.unfreeze()
    (gc.enable if was else gc.disable)()


def test_off_for_set_up_on_after_settled_and_as_before_on_return():
    gc.enable()
    seen = {}

    @collector_held
    def command():
        seen["setup"] = gc.isenabled()
        collector_settled()
        seen["work"] = gc.isenabled()
        seen["frozen"] = gc.get_freeze_count()
        return 7

    assert command() == 7
    assert seen["setup"] is False and seen["work"] is True and seen["frozen"] > 0
    assert gc.isenabled() and gc.get_freeze_count() == 0


def test_restored_when_the_command_fails():
    gc.enable()

    @collector_held
    def command():
        collector_settled()
        raise ValueError("boom")

    with pytest.raises(ValueError):
        command()
    assert gc.isenabled() and gc.get_freeze_count() == 0


def test_a_collector_the_caller_turned_off_is_left_alone():
    gc.disable()

    @collector_held
    def command():
        collector_settled()  # not held: nothing frozen, nothing turned on
        return gc.isenabled(), gc.get_freeze_count()

    assert command() == (False, 0)
    assert not gc.isenabled()


def test_settled_outside_a_held_command_does_nothing():
    gc.enable()
    collector_settled()
    assert gc.get_freeze_count() == 0 and gc.isenabled()


def test_train_command_in_process_leaves_the_collector_on(tmp_path):
    from click.testing import CliRunner

    from fastnn.cli import main

    gc.enable()
    res = CliRunner().invoke(main, ["train", "--epochs", "2", "--backend", "numpy", "-q"])
    assert res.exit_code == 0, res.output
    assert gc.isenabled() and gc.get_freeze_count() == 0
