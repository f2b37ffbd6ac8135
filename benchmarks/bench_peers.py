"""The same one-epoch fit in the peers, for side-by-side groups with ``bench_train``'s
``test_fit`` (each peer only when installed; Keras is left to ``fastnn bench``, which
separates its compile-heavy first epoch)."""

from __future__ import annotations

import pytest

from fastnn.bench import PEERS, Task, churn_dataset, synthetic_dataset

PEER_NAMES = [name for name in PEERS if not name.startswith("keras")]


@pytest.fixture(scope="module")
def datasets():
    """Per size: churn for tiny, eight batches of synthetic data otherwise."""
    cache = {}

    def get(size, spec):
        if size not in cache:
            if size == "tiny":
                cache[size] = churn_dataset()
            else:
                cache[size] = synthetic_dataset(
                    8 * spec.batch, spec.batch, spec.widths[0], spec.widths[-1]
                )
        return cache[size]

    return get


@pytest.mark.parametrize("peer", PEER_NAMES)
def test_fit_peer(benchmark, datasets, peer, size, spec):
    """One epoch of the peer's training loop on the network of ``size``."""
    label, prepare, installed = PEERS[peer]
    if not installed():
        pytest.skip(f"{peer} is not installed")
    prepared = prepare(Task(size, spec, datasets(size, spec), epochs=1))
    benchmark.group = f"fit-{size}"
    benchmark.extra_info["peer"] = label
    benchmark.extra_info["warmup_s"] = prepared.warmup_s
    benchmark.pedantic(prepared.run, rounds=5, iterations=1, warmup_rounds=0)
