"""The peers: the tools a user would otherwise pick, each training the same network on
the same data with the same recipe (one module per library, imported when it runs)."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable

from ..contenders import Contender, Prepared, Task
from ..worker import in_worker
from . import jax, keras, sklearn, torch

__all__ = ["PEERS", "SCALING_PEERS", "installed", "peer_contenders"]


def installed(*modules: str) -> bool:
    """True when every one of ``modules`` can be imported here."""
    return all(importlib.util.find_spec(m) is not None for m in modules)


def _keras_usable() -> bool:
    if not installed("keras"):
        return False
    backend = keras.default_backend()
    return installed("tensorflow" if backend == "tensorflow" else backend)


#: Peers: name -> (label, prepare, "installed?" check). Each runs only when installed.
PEERS: dict[str, tuple[str, Callable[[Task], Prepared], Callable[[], bool]]] = {
    "torch-idiomatic": (
        "PyTorch idiomatic (DataLoader)",
        torch.prepare_idiomatic,
        lambda: installed("torch"),
    ),
    "torch-tuned": ("PyTorch tuned loop", torch.prepare_tuned, lambda: installed("torch")),
    "sklearn": ("scikit-learn MLPClassifier", sklearn.prepare, lambda: installed("sklearn")),
    "keras": ("Keras 3", keras.prepare, _keras_usable),
    "keras-torch": (
        "Keras 3, torch backend",
        in_worker("fastnn.bench.peers.keras:prepare", env={"KERAS_BACKEND": "torch"}),
        lambda: installed("keras", "torch") and keras.default_backend() != "torch",
    ),
    "jax": ("JAX lax.scan epoch + optax", jax.prepare, lambda: installed("jax", "optax")),
}

#: Peers that are cheap enough to run at every point of the scaling sweeps.
SCALING_PEERS = ("torch-tuned", "jax")


def peer_contenders(names=None) -> tuple[list[Contender], dict[str, str]]:
    """The installed peers among ``names`` (all by default), and ``{name: why}`` for the
    ones skipped."""
    out, skipped = [], {}
    for name, (label, prepare, ok) in PEERS.items():
        if names is not None and name not in names:
            continue
        if ok():
            out.append(Contender(name, label, "peer", prepare))
        else:
            skipped[name] = "not installed"
    return out, skipped
