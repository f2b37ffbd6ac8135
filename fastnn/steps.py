"""One training step, shown: the five steps of backpropagation on one real batch.

:func:`explain_step` (``fastnn steps`` on the command line) builds the churn network of the
tutorial, takes one batch of the bundled churn data and runs ONE step of
:func:`fastnn.training.train_epoch` through its five functions, printing for each the
function that does it (module and name, down to the backend op), the shapes, and the
numbers: the batch's loss, each layer's gradient norm, the largest weight change. Read
it beside the README's "How training works".
"""

from __future__ import annotations

import numpy as np

from . import training
from ._random import make_rng
from .data import churn_arrays
from .layers import Dense, Sequential

STEP_NAMES = (
    "take a batch",
    "forward-propagate",
    "measure the error",
    "backpropagate",
    "update the weights",
)


def _name(fn) -> str:
    return f"{fn.__module__}.{fn.__qualname__}"


def _op(be, name: str) -> str:
    """The backend method that does the arithmetic, by its defining class."""
    return _name(getattr(type(be), name))


def _loss_op(model) -> str:
    fused, loss = model._head_fused(), model.loss
    by_kind = {
        "bce": ("bce_logits_grad", "bce_prob_grad"),
        "ce": ("softmax_ce_grad", "cce_prob_grad"),
        "mse": ("mse_grad", "mse_grad"),
    }
    ops = by_kind.get(loss.kind)
    return _op(model.backend, ops[0] if fused else ops[1]) if ops else _name(type(loss).grad)


def churn_model(backend=None, seed=0) -> Sequential:
    """The tutorial's network: 11 -> Dense 6 relu -> Dense 6 relu -> Dense 1 sigmoid,
    Adam, binary cross-entropy (unbuilt)."""
    model = Sequential(
        [Dense(6, activation="relu"), Dense(6, activation="relu"), Dense(1, activation="sigmoid")],
        backend=backend,
    )
    model.compile(optimizer="adam", loss="binary_crossentropy")
    return model


def run_one_step(model, X, y, batch_size: int = 32, seed=0) -> dict:
    """Run ONE step of :func:`fastnn.training.train_epoch` on the first batch of ``X, y``
    in the order ``fit(seed=seed)`` would shuffle them; returns what each step did.

    Builds ``model`` from ``seed`` if needed, as ``fit`` would. The result holds per step
    its ``name``, the ``functions`` that do it, the ``shapes`` and the ``numbers``.
    """
    rng = make_rng(seed)
    Xh = model._prepare_X(X, "X", build_seed=rng)
    model._ensure_optimizer_state()
    yh = model._prepare_y(y, Xh.shape[0])
    be = model.backend
    model._seed_dropout(rng)
    perm = rng.permutation(Xh.shape[0])
    runner = training.choose_path(model)
    Xb, yb, _ = training.take_batch(Xh[perm], yh[perm], None, 0, min(batch_size, Xh.shape[0]))
    Xb, yb = be.asarray(Xb), be.asarray(yb)
    out, backprops = training.forward(model, Xb)
    lsum, dout = training.measure_error(model, out, yb, None)
    training.backpropagate(backprops, dout)
    before = be.to_numpy(model.theta).copy()
    training.update(model)
    change = np.abs(be.to_numpy(model.theta) - before)
    return {
        "backend": be.name,
        "default_path": runner.description,
        "compiled_copy": _compiled_copy(runner),
        "steps": [
            _step(1, [training.take_batch], {"X": Xb.shape, "y": yb.shape}, {"rows": Xb.shape[0]}),
            _step(2, _forward_fns(model), _layer_shapes(model, Xb.shape[0]), {}),
            _step(
                3,
                [training.measure_error, type(model.loss).grad, _loss_op(model)],
                {"outputs": out.shape, "dOut": dout.shape},
                {"loss": float(lsum) / Xb.shape[0]},
            ),
            _step(
                4,
                [training.backpropagate, *_backprop_fns(model)],
                {f"grad {k}": s for k, s in _grad_shapes(model).items()},
                {f"|grad| {k}": v for k, v in _grad_norms(model).items()},
            ),
            _step(
                5,
                [training.update, type(model.optimizer).step, _update_op(model)],
                {"theta": tuple(model.theta.shape)},
                _largest_change(model, change),
            ),
        ],
    }


def _step(i, fns, shapes, numbers) -> dict:
    names = [f if isinstance(f, str) else _name(f) for f in fns]
    shapes = {k: tuple(int(d) for d in v) for k, v in shapes.items()}
    return {
        "step": i,
        "name": STEP_NAMES[i - 1],
        "functions": names,
        "shapes": shapes,
        "numbers": numbers,
    }


def _compiled_copy(runner) -> str | None:
    plan = getattr(runner, "plan", None)
    if plan is None:
        return None
    from .backends.numba_compile import kernels_used

    kernels = ", ".join(kernels_used(runner._k, plan))
    return f"fastnn.backends.numba_compile train_epoch (generated), calling {kernels}"


def _forward_fns(model) -> list:
    be = model.backend
    fns = [training.forward, model._forward_batch]
    for layer in model.layers:
        fns.append(type(layer).forward)
    if any(isinstance(layer, Dense) for layer in model.layers):
        fns += [_op(be, "matmul"), _op(be, "bias_act")]
    return list(dict.fromkeys(fns))


def _backprop_fns(model) -> list:
    be = model.backend
    return [_op(be, "bias_act_backward"), _op(be, "matmul")]


def _update_op(model) -> str:
    kind = model.optimizer.kind
    return _op(model.backend, f"{kind}_update") if kind else _name(type(model.optimizer).step)


def _layer_shapes(model, nb: int) -> dict:
    return {f"layer {i} {type(l).__name__}": (nb, l.output_dim) for i, l in enumerate(model.layers)}


def _param_slices(model):
    for layer, pname, off, shape in model._slices:
        yield f"layer {model.layers.index(layer)} {pname}", off, tuple(shape)


def _grad_shapes(model) -> dict:
    return {key: shape for key, _, shape in _param_slices(model)}


def _grad_norms(model) -> dict:
    g = model.backend.to_numpy(model.grad)
    return {
        key: float(np.linalg.norm(g[off : off + int(np.prod(shape))]))
        for key, off, shape in _param_slices(model)
    }


def _largest_change(model, change) -> dict:
    i = int(np.argmax(change))
    for key, off, shape in _param_slices(model):
        size = int(np.prod(shape))
        if off <= i < off + size:
            where = np.unravel_index(i - off, shape)
            return {
                "largest weight change": float(change[i]),
                "where": f"{key}[{', '.join(str(int(w)) for w in where)}]",
            }
    return {"largest weight change": float(change[i]), "where": f"theta[{i}]"}


def format_steps(result: dict) -> str:
    """The report of :func:`run_one_step` as text, one block per step."""
    lines = [f"backend: {result['backend']}; the default training path for this model: "]
    lines[0] += result["default_path"]
    if result["compiled_copy"]:
        lines.append(f"  (a compiled copy of the steps below: {result['compiled_copy']})")
    lines.append("one step of fastnn.training.train_epoch, the readable specification:")
    for s in result["steps"]:
        lines.append(f"{s['step']}. {s['name']}")
        lines.extend(f"     {fn}" for fn in s["functions"])
        shapes = ", ".join(f"{k} {v}" for k, v in s["shapes"].items())
        lines.append(f"   shapes: {shapes}")
        if s["numbers"]:
            nums = ", ".join(
                f"{k} {v:.6g}" if isinstance(v, float) else f"{k} {v}"
                for k, v in s["numbers"].items()
            )
            lines.append(f"   numbers: {nums}")
    return "\n".join(lines)


def explain_step(backend=None, batch_size: int = 32, seed=0, print_fn=print) -> dict:
    """Run ONE training step of the churn network on one real batch of the bundled churn
    data and print the five steps: the function doing each (module and name), the
    shapes, the batch's loss, each layer's gradient norm and the largest weight change.

    Returns the report as a dict (see :func:`run_one_step`); ``print_fn=None`` prints
    nothing.
    """
    X_tr, y_tr, _, _ = churn_arrays()
    model = churn_model(backend)
    result = run_one_step(model, X_tr, y_tr, training.positive_int("batch_size", batch_size), seed)
    if print_fn is not None:
        print_fn(
            f"fastnn steps: the churn network ({X_tr.shape[1]} -> 6 relu -> 6 relu -> 1 "
            f"sigmoid, adam, binary cross-entropy), one batch of {result['steps'][0]['numbers']['rows']}"
            f" of {X_tr.shape[0]:,} training rows"
        )
        print_fn(format_steps(result))
    return result
