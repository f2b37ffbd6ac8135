"""Op-level benchmark cases: one matrix product, the fused bias+activation pair, one
training step, that step's own matrix products (the "GEMM floor") and a one-epoch fit,
per backend and size. :func:`op_case` builds and warms one up; the pytest-benchmark
suites and ``fastnn bench`` time them."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from .cases import SIZES, NetSpec, build_model, churn_dataset, synthetic_dataset
from .contenders import prepared_targets, train_step_fn, training_path
from .timing import first_call, synchronized

__all__ = ["OPS", "Case", "op_case"]


@dataclasses.dataclass
class Case:
    """A benchmark case: ``fn()`` runs it once and synchronizes the device.

    ``warmup_s`` is the time of the first call (JIT compilation or cache loading
    included), made when the case was built; ``info`` says what ran.
    """

    name: str
    fn: Callable[[], object]
    warmup_s: float
    info: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class _Ctx:
    """What every op builder gets: the backend, the size, a seeded device-array maker."""

    be: object
    spec: NetSpec
    dtype: str
    activation: str
    seed: int
    fit_rows: int | None
    rng: np.random.Generator
    #: called with the case's ``info`` after the warm-up call (e.g. to name the path run)
    after_warmup: Callable[[dict], None] | None = None

    def dev(self, shape, scale=1.0):
        """A seeded standard-normal device array of ``shape`` times ``scale``."""
        return self.be.asarray((scale * self.rng.standard_normal(shape)).astype(self.dtype))


def _matmul(c: _Ctx, info: dict):
    n, d_in, h1 = c.spec.batch, c.spec.widths[0], c.spec.widths[1]
    X, W, out = c.dev((n, d_in)), c.dev((d_in, h1)), c.be.empty((n, h1), np.dtype(c.dtype))
    info["shape"] = f"({n}x{d_in}) @ ({d_in}x{h1})"
    return lambda: c.be.matmul(X, W, out=out)


def _bias_act_forward(c: _Ctx, info: dict):
    n, h1 = c.spec.batch, c.spec.widths[1]
    # Z += b accumulates across calls; the tiny bias keeps values in range.
    Z, b = c.dev((n, h1)), c.dev((h1,), 1e-6)
    info["shape"] = f"({n}x{h1}) {c.activation}"
    return lambda: c.be.bias_act(Z, b, c.activation)


def _bias_act_backward(c: _Ctx, info: dict):
    n, h1 = c.spec.batch, c.spec.widths[1]
    Z, Y = c.be.bias_act(c.dev((n, h1)), c.dev((h1,)), c.activation)
    dY = c.dev((n, h1))
    info["shape"] = f"({n}x{h1}) {c.activation}"
    return lambda: c.be.bias_act_backward(Z, Y, dY, c.activation)


def _train_step(c: _Ctx, info: dict):
    spec, n = c.spec, c.spec.batch
    model = build_model(spec, c.be.name, optimizer="sgd_momentum", dtype=c.dtype, seed=c.seed)
    data = synthetic_dataset(n, 1, spec.widths[0], spec.widths[-1], seed=c.seed)
    Xd = c.be.asarray(data.Xtr.astype(c.dtype))
    yd = c.be.asarray(prepared_targets(model, data.ytr, spec.widths[-1]))
    fn, path = train_step_fn(model, Xd, yd, n, np.random.default_rng(c.seed))
    info["training_path"] = path
    info["optimizer"] = "SGD lr 0.01 momentum 0.9"
    return fn


def _gemm_floor(c: _Ctx, info: dict):
    n, widths, be = c.spec.batch, c.spec.widths, c.be
    acts = [c.dev((n, w)) for w in widths]
    Ws = [c.dev((a, b)) for a, b in zip(widths[:-1], widths[1:], strict=True)]
    outs_f = [be.empty((n, w), np.dtype(c.dtype)) for w in widths[1:]]
    outs_w = [be.empty(W.shape, np.dtype(c.dtype)) for W in Ws]
    outs_x = [be.empty((n, w), np.dtype(c.dtype)) for w in widths[1:-1]]
    L = len(Ws)
    info["products"] = 3 * L - 1

    def fn():
        for i in range(L):  # forward
            be.matmul(acts[i], Ws[i], out=outs_f[i])
        for i in range(L - 1, -1, -1):  # backward: dW = A^T dZ, dX = dZ W^T
            be.matmul(acts[i], acts[i + 1], transA=True, out=outs_w[i])
            if i > 0:
                be.matmul(acts[i + 1], Ws[i], transB=True, out=outs_x[i - 1])

    return fn


def _fit(c: _Ctx, info: dict):
    spec, n = c.spec, c.spec.batch
    rows = c.fit_rows or 8 * n
    if spec.widths == SIZES["tiny"].widths and c.fit_rows is None:
        data = churn_dataset(np.dtype(c.dtype))
    else:
        data = synthetic_dataset(rows, 1, spec.widths[0], spec.widths[-1], seed=c.seed)
    model = build_model(spec, c.be.name, dtype=c.dtype, seed=c.seed)
    Xtr, ytr = data.Xtr, data.ytr
    info["rows"] = int(Xtr.shape[0])
    info["optimizer"] = "Adam lr 1e-3"
    c.after_warmup = lambda info: info.update(training_path=training_path(model))
    return lambda: model.fit(Xtr, ytr, batch_size=n, epochs=1, verbose=0, seed=c.seed)


_BUILDERS = {
    "matmul": _matmul,
    "bias_act_forward": _bias_act_forward,
    "bias_act_backward": _bias_act_backward,
    "train_step": _train_step,
    "gemm_floor": _gemm_floor,
    "fit": _fit,
}

#: The op-level cases :func:`op_case` builds (the pytest-benchmark suites run them all).
OPS = tuple(_BUILDERS)


def op_case(
    op: str,
    backend: str,
    spec: NetSpec,
    dtype: str = "float32",
    activation: str = "relu",
    seed: int = 0,
    fit_rows: int | None = None,
) -> Case:
    """Build (and warm up) one op-level case on ``backend`` at size ``spec``.

    Ops:
        ``matmul``: ``X (batch, d_in) @ W (d_in, h1)``, written into a preallocated output.
        ``bias_act_forward``: fused ``Z += b; Y = act(Z)`` on ``(batch, h1)``.
        ``bias_act_backward``: its backward, ``dZ = dY * act'(Z)`` and ``db``.
        ``train_step``: one minibatch step of the whole network (forward, loss, backward,
            SGD-with-momentum update) through the path ``fit`` uses on this backend.
        ``gemm_floor``: that step's own matrix products (3 per layer, less one), on this
            backend: the floor a BLAS-bound step can approach.
        ``fit``: ``model.fit`` for one epoch over ``fit_rows`` rows (default 8 batches).
    """
    import fastnn

    if op not in OPS:
        raise ValueError(f"unknown op {op!r}; choose from {OPS}")
    be = fastnn.get_backend(backend)
    ctx = _Ctx(be, spec, dtype, activation, seed, fit_rows, np.random.default_rng(seed))
    info: dict = {"backend": be.name, "size": spec.name, "shape": spec.describe()}
    fn = synchronized(_BUILDERS[op](ctx, info), be)
    warmup = first_call(fn)
    if ctx.after_warmup is not None:
        ctx.after_warmup(info)
    return Case(f"{op}[{be.name}-{spec.name}]", fn, warmup, info)
