"""Parameters shared by the benchmark suites: every fastnn backend that works here
(``FASTNN_BENCH_BACKENDS=numpy,numba`` narrows it) at every size (``FASTNN_BENCH_TOY=1``
cuts the sizes down for a smoke run)."""

from __future__ import annotations

import pytest

from fastnn.bench import bench_backends, bench_sizes

BACKENDS = bench_backends()
SIZES = bench_sizes()


def pytest_generate_tests(metafunc):
    if "backend" in metafunc.fixturenames:
        metafunc.parametrize("backend", BACKENDS)
    if "size" in metafunc.fixturenames:
        metafunc.parametrize("size", list(SIZES))


@pytest.fixture
def spec(size):
    """The :class:`fastnn.bench.NetSpec` of ``size``."""
    return SIZES[size]


@pytest.fixture
def run_case(benchmark):
    """Time a warmed-up :class:`fastnn.bench.Case`; its first call (JIT compilation or
    cache loading) is kept in ``extra_info["first_call_s"]``. ``rounds`` switches from
    pytest-benchmark's calibration to a fixed number of single calls (for slow cases)."""

    def run(case, group: str, rounds: int | None = None):
        benchmark.group = group
        benchmark.extra_info["first_call_s"] = case.warmup_s
        benchmark.extra_info.update({k: str(v) for k, v in case.info.items()})
        if rounds is None:
            benchmark(case.fn)
        else:
            benchmark.pedantic(case.fn, rounds=rounds, iterations=1, warmup_rounds=0)

    return run
