"""JAX peer: a whole epoch (on-device shuffle, ``lax.scan`` over minibatches, optax
Adam) jitted as one function, what a JAX user writes for speed."""

from __future__ import annotations

import math
import time

import numpy as np

from ..cases import LEARNING_RATE, accuracy
from ..contenders import Prepared, Task, Trained

__all__ = ["prepare"]


def _glorot(rng, a, b):
    lim = math.sqrt(6.0 / (a + b))
    return rng.uniform(-lim, lim, (a, b)).astype(np.float32)


def _functions(spec, n: int, opt):
    """``forward(params, A)`` (logits) and ``epoch(params, opt_state, key, X, y)``."""
    import jax
    import optax

    B = spec.batch
    nb = n // B

    def forward(params, A):
        for W, b in params[:-1]:
            A = jax.nn.relu(A @ W + b)
        W, b = params[-1]
        return A @ W + b

    def loss_fn(params, xb, yb):
        z = forward(params, xb)
        if spec.binary:
            return optax.sigmoid_binary_cross_entropy(z[:, 0], yb).mean()
        return optax.softmax_cross_entropy_with_integer_labels(z, yb).mean()

    def epoch(params, opt_state, key, X, y):
        perm = jax.random.permutation(key, n)[: nb * B]
        Xb = X[perm].reshape(nb, B, X.shape[1])
        yb = y[perm].reshape(nb, B)

        def step(carry, batch):
            p, s = carry
            loss, g = jax.value_and_grad(loss_fn)(p, *batch)
            upd, s = opt.update(g, s, p)
            return (optax.apply_updates(p, upd), s), loss

        (params, opt_state), losses = jax.lax.scan(step, (params, opt_state), (Xb, yb))
        return params, opt_state, losses.sum()

    return forward, epoch


def _init(spec, seed: int):
    import jax.numpy as jnp

    rng = np.random.default_rng(seed)
    return [
        (jnp.asarray(_glorot(rng, a, b)), jnp.zeros((b,), jnp.float32))
        for a, b in zip(spec.widths[:-1], spec.widths[1:], strict=True)
    ]


def prepare(task: Task) -> Prepared:
    """The jitted ``lax.scan`` epoch. Compilation is timed on its own
    (``jit(...).lower(...).compile()``) and excluded; a last partial batch is dropped."""
    import jax
    import jax.numpy as jnp
    import optax

    spec, d = task.spec, task.data
    n = d.Xtr.shape[0]
    dropped = n - (n // spec.batch) * spec.batch
    X = jnp.asarray(d.Xtr, dtype=jnp.float32)
    y = jnp.asarray(d.ytr.astype(np.float32) if spec.binary else d.ytr.astype(np.int32))
    opt = optax.adam(LEARNING_RATE)
    forward, epoch = _functions(spec, n, opt)
    params0 = _init(spec, task.seed)
    state0 = opt.init(params0)
    key0 = jax.random.PRNGKey(task.seed)
    t0 = time.perf_counter()
    compiled = jax.jit(epoch).lower(params0, state0, key0, X, y).compile()
    compile_s = time.perf_counter() - t0
    predict = jax.jit(forward)
    jax.block_until_ready(compiled(params0, state0, key0, X, y))
    jax.block_until_ready(predict(params0, jnp.asarray(d.Xte)))

    def run() -> Trained:
        params = _init(spec, task.seed)
        state = opt.init(params)
        keys = jax.random.split(key0, task.epochs)
        jax.block_until_ready((params, state, keys))
        t0 = time.perf_counter()
        for e in range(task.epochs):
            params, state, _ = compiled(params, state, keys[e], X, y)
        jax.block_until_ready(params)
        seconds = time.perf_counter() - t0
        out = np.asarray(predict(params, jnp.asarray(d.Xte)))
        P = 1.0 / (1.0 + np.exp(-out)) if spec.binary else out
        info = {"dropped_rows_per_epoch": dropped} if dropped else {}
        return Trained(seconds, accuracy(P, d.yte), task.epochs, info)

    return Prepared(run, compile_s, {"compile_s": compile_s, "device": str(jax.devices()[0])})
