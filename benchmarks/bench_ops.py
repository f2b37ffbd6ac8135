"""Op-level benchmarks: one matrix product and the fused bias+activation pair, per
backend and size (``pytest benchmarks --benchmark-only -k ops``)."""

from __future__ import annotations

import pytest

from fastnn.bench import op_case


def test_matmul(run_case, backend, size, spec):
    """``X (batch, d_in) @ W (d_in, h1)`` into a preallocated output."""
    run_case(op_case("matmul", backend, spec), f"matmul-{size}")


@pytest.mark.parametrize("activation", ["relu", "sigmoid"])
def test_bias_act_forward(run_case, backend, size, spec, activation):
    """Fused ``Z += b; Y = act(Z)`` on ``(batch, h1)``."""
    run_case(
        op_case("bias_act_forward", backend, spec, activation=activation),
        f"bias_act_forward-{activation}-{size}",
    )


@pytest.mark.parametrize("activation", ["relu", "sigmoid"])
def test_bias_act_backward(run_case, backend, size, spec, activation):
    """Its backward: ``dZ = dY * act'(Z)`` and ``db = sum_rows(dZ)``."""
    run_case(
        op_case("bias_act_backward", backend, spec, activation=activation),
        f"bias_act_backward-{activation}-{size}",
    )
