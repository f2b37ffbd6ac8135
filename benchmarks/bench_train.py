"""Training benchmarks: one minibatch step (and its GEMM floor) and a whole epoch of
``model.fit``, per backend and size (``pytest benchmarks --benchmark-only -k train``)."""

from __future__ import annotations

from fastnn.bench import op_case


def test_train_step(run_case, backend, size, spec):
    """One step (forward, loss, backward, SGD-momentum update) through fit's path."""
    run_case(op_case("train_step", backend, spec), f"train_step-{size}")


def test_gemm_floor(run_case, backend, size, spec):
    """The same step's matrix products alone: the floor a BLAS-bound step approaches."""
    run_case(op_case("gemm_floor", backend, spec), f"train_step-{size}")


def test_fit(run_case, backend, size, spec):
    """``model.fit(epochs=1, verbose=0)``: the churn data for tiny (250 steps), eight
    batches of synthetic data for mid and big."""
    run_case(op_case("fit", backend, spec), f"fit-{size}", rounds=5)
