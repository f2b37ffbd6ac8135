"""`fastnn steps` / fastnn.explain_step: one real training step, shown step by step."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

import fastnn
from fastnn import training
from fastnn._random import make_rng
from fastnn.cli import main
from fastnn.steps import STEP_NAMES, churn_model, run_one_step

BACKENDS = [b for b in ("numpy", "numba") if b in fastnn.available_backends()]


def _first_batch(seed=0, batch_size=32):
    X, y, _, _ = fastnn.data.churn_arrays()
    rng = make_rng(seed)
    model = churn_model("numpy")
    model.build(X.shape[1], seed=rng)  # fit draws the weights first, then the order
    perm = rng.permutation(X.shape[0])[:batch_size]
    return model, X[perm], y[perm]


@pytest.mark.parametrize("backend", BACKENDS)
def test_explain_step_reports_the_five_steps(backend, capsys):
    r = fastnn.explain_step(backend)
    printed = capsys.readouterr().out
    assert [s["name"] for s in r["steps"]] == list(STEP_NAMES)
    for s, fn in zip(
        r["steps"],
        ("take_batch", "forward", "measure_error", "backpropagate", "update"),
        strict=True,
    ):
        assert s["functions"][0] == f"fastnn.training.{fn}"
        assert s["functions"][0] in printed
    assert r["steps"][0]["shapes"] == {"X": (32, 11), "y": (32, 1)}
    assert r["steps"][3]["shapes"]["grad layer 0 W"] == (11, 6)
    assert f"fastnn.backends.{backend}_backend" in printed
    # the batch is the first one fit(seed=0) trains on, and its loss is the model's loss
    model, Xb, yb = _first_batch()
    assert r["steps"][2]["numbers"]["loss"] == pytest.approx(
        model.evaluate(Xb, yb)["loss"], rel=1e-5
    )
    # Adam's first step moves every weight with a gradient by (almost exactly) lr
    assert r["steps"][4]["numbers"]["largest weight change"] == pytest.approx(1e-3, rel=1e-3)
    norms = r["steps"][3]["numbers"]
    assert len(norms) == 6 and all(np.isfinite(v) and v > 0 for v in norms.values())


def test_backends_agree_on_the_step():
    if "numba" not in BACKENDS:
        pytest.skip("numba is not available")
    a, b = (fastnn.explain_step(be, print_fn=None) for be in ("numpy", "numba"))
    for sa, sb in zip(a["steps"], b["steps"], strict=True):
        assert sa["shapes"] == sb["shapes"]
        for k, v in sa["numbers"].items():
            if isinstance(v, float):
                assert sb["numbers"][k] == pytest.approx(v, rel=1e-4, abs=1e-7), k
    assert b["default_path"].startswith("fused numba epoch")
    assert "dense_forward_t" in b["compiled_copy"]


def test_the_compiled_copy_takes_the_same_step():
    """One step of the readable specification equals one step of the compiled epoch."""
    if "numba" not in BACKENDS:
        pytest.skip("numba is not available")
    X, y, _, _ = fastnn.data.churn_arrays()
    spec_model = churn_model("numba")
    run_one_step(spec_model, X, y, batch_size=32, seed=0)
    model, Xb, yb = _first_batch()
    model.to("numba")
    model._ensure_optimizer_state()
    runner = training.choose_path(model)
    assert runner.description.startswith("fused numba epoch")
    runner.run(Xb.astype(np.float32), yb.astype(np.float32).reshape(-1, 1), None, 32, make_rng(0))
    assert model.optimizer.iterations == spec_model.optimizer.iterations == 1
    np.testing.assert_allclose(model.theta, spec_model.theta, rtol=1e-5, atol=1e-6)


def test_cli_steps():
    res = CliRunner().invoke(main, ["steps", "--backend", "numpy", "--batch-size", "16"])
    assert res.exit_code == 0, res.output
    for i, name in enumerate(STEP_NAMES, 1):
        assert f"{i}. {name}" in res.output
    assert "X (16, 11)" in res.output and "numbers: loss" in res.output
    assert "largest weight change" in res.output
    bad = CliRunner().invoke(main, ["steps", "--backend", "nope"])
    assert bad.exit_code == 2 and "nope" in bad.output
