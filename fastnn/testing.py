"""Test helpers that ship with fastnn: a gradient checker and cross-backend comparisons.

Use them to test a new layer, loss or backend the same way fastnn tests its own:

>>> import numpy as np, fastnn
>>> from fastnn.layers import Dense
>>> from fastnn.testing import check_gradients
>>> model = fastnn.Sequential([Dense(3, "tanh", input_dim=4), Dense(1, "sigmoid")],
...                           dtype="float64")
>>> model.compile("sgd", "binary_crossentropy")
>>> X = np.random.default_rng(0).standard_normal((8, 4))
>>> y = np.array([0, 1, 1, 0, 1, 0, 0, 1])
>>> check_gradients(model.build(4, seed=0), X, y) < 1e-6
True

Gradient checks compare the analytic gradient with central finite differences,
``(f(x + eps) - f(x - eps)) / (2 eps)``, in float64. Keep the inputs away from kinks
(``relu`` at 0, the clipping edges of probability losses): a difference quotient across a
kink measures the average of two slopes, not either of them.

Cross-backend checks compare a backend's result with NumPy's on the same inputs, with a
tolerance scaled by the *magnitude of the inputs* rather than of each output element:
an element of ``A @ B`` that cancels to nearly zero still carries the rounding error of
its ``k`` products ``|A| @ |B|``, so a per-element relative tolerance would fail a
correct matmul. :func:`matmul_scale` gives that magnitude.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import numpy as np

__all__ = [
    "assert_allclose_scaled",
    "assert_backends_agree",
    "backend_params",
    "check_gradients",
    "check_layer_gradients",
    "check_loss_gradients",
    "default_rtol",
    "loss_and_grad",
    "matmul_scale",
    "numeric_grad",
    "relative_error",
]

#: default finite-difference step for float64 central differences: the truncation error
#: (``eps^2 f'''``) and the rounding error (``1e-16 |f| / eps``) are both ~1e-10 here
EPS = 1e-6
#: gradients smaller than this are compared in absolute terms (see relative_error)
FLOOR = 1e-4


# ---------------------------------------------------------------------- gradients
def numeric_grad(f: Callable[[], float], x: np.ndarray, eps: float = EPS) -> np.ndarray:
    """Central-difference gradient of the scalar ``f()`` with respect to ``x``.

    ``x`` is perturbed *in place* (one element at a time, then restored), so ``f`` must
    read it: pass the array ``f`` closes over (a NumPy float64 array). Returns a float64
    array of ``x``'s shape.
    """
    if not isinstance(x, np.ndarray) or x.dtype != np.float64:
        raise TypeError("numeric_grad needs a float64 NumPy array to perturb in place")
    g = np.zeros(x.shape, dtype=np.float64)
    flat, gflat = x.reshape(-1), g.reshape(-1)
    if not np.shares_memory(flat, x):
        raise ValueError("numeric_grad needs a contiguous array (it perturbs it in place)")
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        fp = float(f())
        flat[i] = old - eps
        fm = float(f())
        flat[i] = old
        gflat[i] = (fp - fm) / (2 * eps)
    return g


def relative_error(analytic, numeric, floor: float = FLOOR) -> float:
    """``max_i |a_i - n_i| / max(|a_i|, |n_i|, floor)`` (0.0 for empty arrays).

    ``floor`` keeps elements that are (nearly) zero from dividing by zero: below it the
    error is absolute, which is what finite differences can resolve.
    """
    a = np.asarray(analytic, dtype=np.float64)
    n = np.asarray(numeric, dtype=np.float64)
    if a.shape != n.shape:
        raise ValueError(f"shapes differ: analytic {a.shape}, numeric {n.shape}")
    if a.size == 0:
        return 0.0
    denom = np.maximum(np.maximum(np.abs(a), np.abs(n)), floor)
    return float((np.abs(a - n) / denom).max())


def _host64(be, a) -> np.ndarray:
    """A float64 host *copy* (to_numpy of a NumPy array is the array itself)."""
    return np.array(be.to_numpy(a), dtype=np.float64, copy=True)


def loss_and_grad(model, X, y, sample_weight=None, *, dropout_seed: int = 0):
    """One training step's forward and backward pass, without the optimizer update.

    Runs steps 2-4 of :func:`fastnn.training.train_epoch` on the whole of ``X`` as one batch
    (in training mode, the head fused with the loss as in training) and returns
    ``(loss, grad)``: the weighted mean loss ``sum(w_i l_i) / n`` and a host copy of
    ``dloss/dtheta`` (flat, in ``model.theta`` order). Dropout layers draw their mask from
    a fresh ``np.random.default_rng(dropout_seed)`` on every call, so repeated calls see
    the same mask.
    """
    from . import training
    from .layers.dropout import Dropout

    be = model.backend
    Xh = model._prepare_X(X)
    yh = model._prepare_y(y, Xh.shape[0])
    n = Xh.shape[0]
    w = None
    if sample_weight is not None:
        w = be.asarray(np.asarray(sample_weight, dtype=model.dtype).reshape(-1, 1))
    for layer in model.layers:
        if isinstance(layer, Dropout):
            layer.rng = np.random.default_rng(dropout_seed)
    out, backprops = training.forward(model, be.asarray(Xh))
    lsum, dout = training.measure_error(model, out, be.asarray(yh), w)
    model.grad[...] = 0
    training.backpropagate(backprops, dout)
    return float(lsum) / n, _host64(be, model.grad)


def check_gradients(
    model_or_layer,
    X,
    y=None,
    *,
    sample_weight=None,
    eps: float = EPS,
    floor: float = FLOOR,
    seed: int = 0,
    return_grads: bool = False,
):
    """Max relative error between analytic and central-difference gradients.

    - A compiled, built float64 :class:`~fastnn.Sequential`: ``dloss/dtheta`` of the
      compiled loss on ``(X, y)`` (one batch, see :func:`loss_and_grad`).
    - A :class:`~fastnn.layers.Layer`: delegates to :func:`check_layer_gradients` (``y``
      is unused) and returns the largest of its errors.

    With ``return_grads=True`` a model check returns ``(error, analytic, numeric)``.
    """
    from .layers.base import Layer
    from .layers.sequential import Sequential

    if isinstance(model_or_layer, Layer):
        errs = check_layer_gradients(model_or_layer, X, eps=eps, floor=floor, seed=seed)
        return max(errs.values())
    if not isinstance(model_or_layer, Sequential):
        raise TypeError(f"expected a Sequential model or a Layer, got {type(model_or_layer)}")
    model = model_or_layer
    if model.dtype != np.float64:
        raise ValueError("gradient checks need a float64 model (dtype='float64')")
    if model.loss is None:
        raise ValueError("compile the model before checking its gradients")
    if not model.built:
        model.build(np.shape(X)[1], seed=seed)
    be = model.backend
    _, analytic = loss_and_grad(model, X, y, sample_weight, dropout_seed=seed)
    theta = _host64(be, model.theta)

    def f():
        model.theta[...] = be.asarray(theta)
        return loss_and_grad(model, X, y, sample_weight, dropout_seed=seed)[0]

    try:
        numeric = numeric_grad(f, theta, eps)
    finally:
        model.theta[...] = be.asarray(theta)
    err = relative_error(analytic, numeric, floor)
    return (err, analytic, numeric) if return_grads else err


def check_layer_gradients(
    layer,
    X,
    *,
    backend=None,
    eps: float = EPS,
    floor: float = FLOOR,
    seed: int = 0,
    training: bool = True,
) -> dict[str, float]:
    """Gradient check of one layer on its own, in float64.

    The scalar is ``sum(Y * G)`` for a fixed random ``G`` (so ``dY = G``). The layer is
    built for ``X``'s width and given parameters from its initializers (drawn from
    ``seed``) unless it already has float64 parameters. Dropout layers get a fresh
    ``np.random.default_rng(seed)`` before each forward (a fixed mask).

    Returns ``{"X": err, <param>: err, ...}``, each the max relative error.
    """
    from .backends import get_backend
    from .layers.dropout import Dropout

    be = get_backend(backend) if backend is not None else (layer.backend or get_backend("numpy"))
    X = np.array(X, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D, got shape {X.shape}")
    rng = np.random.default_rng(seed)
    layer.backend = be
    if layer.input_dim != X.shape[1] or any(
        getattr(p, "dtype", None) != np.float64 for p in layer.params.values()
    ):
        layer.build(X.shape[1])
        init = layer.init_params(rng)
        layer.params = {k: be.asarray(np.asarray(v, dtype=np.float64)) for k, v in init.items()}
    layer.grads = {k: be.zeros(v.shape, np.float64) for k, v in layer.params.items()}
    host_params = {k: _host64(be, v) for k, v in layer.params.items()}

    def run(Xh):
        if isinstance(layer, Dropout):
            layer.rng = np.random.default_rng(seed)
        for k, v in host_params.items():
            layer.params[k][...] = be.asarray(v)
        return layer.forward(be.asarray(Xh), training)

    Y, backprop = run(X)
    G = np.random.default_rng(seed + 1).standard_normal(np.shape(Y))
    for g in layer.grads.values():
        g[...] = 0
    dX = _host64(be, backprop(be.asarray(G)))
    errors = {}

    def f_of_X():
        return float((_host64(be, run(X)[0]) * G).sum())

    errors["X"] = relative_error(dX, numeric_grad(f_of_X, X, eps), floor)
    for k, v in host_params.items():
        analytic = _host64(be, layer.grads[k])
        errors[k] = relative_error(analytic, numeric_grad(f_of_X, v, eps), floor)
    run(X)  # leave the original parameters in place
    return errors


def check_loss_gradients(
    loss,
    out,
    y,
    *,
    sample_weight=None,
    from_logits: bool = False,
    backend=None,
    eps: float = EPS,
    floor: float = FLOOR,
) -> float:
    """Gradient check of a loss: ``d(mean loss)/d out`` against central differences.

    ``loss`` is a :class:`~fastnn.losses.Loss` or a name; ``out`` are the model outputs
    ``(n, k)`` (logits when ``from_logits``); ``y`` raw targets; ``sample_weight`` ``(n,)``.
    Returns the max relative error.
    """
    from . import losses
    from .backends import get_backend

    be = get_backend(backend if backend is not None else "numpy")
    loss = losses.get(loss)
    out = np.array(out, dtype=np.float64)
    n = out.shape[0]
    yd = be.asarray(loss.prepare_targets(np.asarray(y), out.shape[1], np.float64))
    w = None
    if sample_weight is not None:
        w = be.asarray(np.asarray(sample_weight, dtype=np.float64).reshape(-1, 1))

    def value_and_grad(o):
        lsum, d = loss.grad(be, be.asarray(o.copy()), yd, w, 1.0 / n, from_logits)
        return float(lsum) / n, _host64(be, d)

    _, analytic = value_and_grad(out)
    numeric = numeric_grad(lambda: value_and_grad(out)[0], out, eps)
    return relative_error(analytic, numeric, floor)


# ---------------------------------------------------------------------- backends
def default_rtol(dtype) -> float:
    """Default relative tolerance (against the input magnitude) for ``dtype``:
    about 80 float32 ulps, or 4500 float64 ulps."""
    return 1e-5 if np.dtype(dtype) == np.float32 else 1e-12


def matmul_scale(A, B, transA: bool = False, transB: bool = False) -> np.ndarray:
    """``|op(A)| @ |op(B)|``: the magnitude each element of ``op(A) @ op(B)`` is rounded
    against (pass it as ``scale`` to :func:`assert_allclose_scaled`)."""
    A = np.abs(np.asarray(A, dtype=np.float64))
    B = np.abs(np.asarray(B, dtype=np.float64))
    return (A.T if transA else A) @ (B.T if transB else B)


def assert_allclose_scaled(
    actual,
    expected,
    *,
    dtype=np.float64,
    scale=None,
    n_terms: int = 1,
    rtol: float | None = None,
    err_msg: str = "",
) -> float:
    """Assert ``|actual - expected| <= rtol * sqrt(n_terms) * scale`` elementwise.

    ``scale`` is the magnitude of the *inputs* the result was computed from: a number or
    an array broadcastable to the result (e.g. :func:`matmul_scale`); by default
    ``max(|expected|, 1)`` over the whole array. ``n_terms`` is the length of the longest
    sum behind one element (``k`` for a matmul, the batch size for a bias gradient);
    rounding error grows like its square root. Returns the largest error in units of the
    tolerance (<= 1 when the assertion passes). NaN/inf must match exactly.
    """
    a = np.asarray(actual, dtype=np.float64)
    e = np.asarray(expected, dtype=np.float64)
    if a.shape != e.shape:
        raise AssertionError(f"{err_msg} shapes differ: {a.shape} vs {e.shape}".strip())
    fa, fe = np.isfinite(a), np.isfinite(e)
    if not np.array_equal(fa, fe) or not np.array_equal(a[~fa], e[~fe], equal_nan=True):
        raise AssertionError(f"{err_msg} non-finite values differ".strip())
    if a.size == 0:
        return 0.0
    if scale is None:
        scale = max(float(np.abs(e[fe]).max(initial=0.0)), 1.0)
    rtol = default_rtol(dtype) if rtol is None else rtol
    tol = rtol * np.sqrt(max(int(n_terms), 1)) * np.maximum(np.asarray(scale, np.float64), 1e-30)
    tol = np.broadcast_to(tol, e.shape)
    with np.errstate(divide="ignore", invalid="ignore"):
        diff = np.where(fe, np.abs(a - e), 0.0)
        ratio = np.where(diff == 0, 0.0, diff / tol)  # rtol=0 demands exact equality
    worst = float(ratio.max())
    if worst > 1.0:
        i = np.unravel_index(int(ratio.argmax()), ratio.shape)
        raise AssertionError(
            f"{err_msg} results differ by {worst:.3g}x the tolerance: at {tuple(int(j) for j in i)} "
            f"actual={a[i]!r} expected={e[i]!r} tol={tol[i]:.3g} (rtol={rtol}, n_terms={n_terms})".strip()
        )
    return worst


def _flatten(result, prefix="out"):
    if isinstance(result, Mapping):
        for k, v in result.items():
            yield from _flatten(v, f"{prefix}[{k!r}]")
    elif isinstance(result, (tuple, list)):
        for i, v in enumerate(result):
            yield from _flatten(v, f"{prefix}[{i}]")
    else:
        yield prefix, result


def assert_backends_agree(
    fn: Callable,
    backends: Iterable[str] | None = None,
    *,
    dtype=np.float64,
    scale=None,
    n_terms: int = 1,
    rtol: float | None = None,
    reference: str = "numpy",
) -> dict[str, float]:
    """Run ``fn(backend)`` on the reference backend and on each of ``backends`` and
    compare every output with :func:`assert_allclose_scaled`.

    ``fn`` takes a :class:`~fastnn.Backend` and returns an array, a number, or a
    tuple/list/dict of them (backend arrays are copied to the host). ``backends``
    defaults to :func:`fastnn.available_backends`. ``scale`` may be a number, an array, a
    callable ``scale(expected_output) -> scale``, or a tuple/list matching the outputs.
    Returns ``{backend: worst error in units of the tolerance}``.
    """
    from .backends import available_backends, get_backend

    ref_be = get_backend(reference)
    names = [b for b in (backends or available_backends()) if b != ref_be.name]
    expected = list(_flatten(fn(ref_be)))
    report = {}
    for name in names:
        be = get_backend(name)
        got = list(_flatten(fn(be)))
        if [k for k, _ in got] != [k for k, _ in expected]:
            raise AssertionError(f"{name}: output structure differs from {reference}")
        worst = 0.0
        for idx, ((label, g), (_, e)) in enumerate(zip(got, expected, strict=True)):
            e_h = np.asarray(ref_be.to_numpy(e) if ref_be.is_native(e) else e)
            g_h = np.asarray(be.to_numpy(g) if be.is_native(g) else g)
            s = scale
            if isinstance(s, (tuple, list)):
                s = s[idx]
            if callable(s):
                s = s(e_h)
            worst = max(
                worst,
                assert_allclose_scaled(
                    g_h,
                    e_h,
                    dtype=dtype,
                    scale=s,
                    n_terms=n_terms,
                    rtol=rtol,
                    err_msg=f"{name} vs {reference}, {label}:",
                ),
            )
        report[name] = worst
    return report


# ---------------------------------------------------------------------- pytest
#: registry names whose arrays live on a GPU (their test cases carry the ``gpu`` mark)
GPU_BACKENDS = frozenset({"cupy"})


def backend_params(include_unavailable: bool = True) -> list:
    """``pytest.param`` objects, one per registered backend, for parametrizing tests.

    Unavailable CPU backends are skipped with the registry's reason; GPU backends carry
    the ``gpu`` mark (fastnn's conftest skips those without a GPU, or fails them under
    ``--require-gpu``). Imports pytest, so call it from test code only.
    """
    import pytest

    from .backends import _REGISTRY, backend_status

    status = backend_status()
    params = []
    for name in _REGISTRY:
        ok, reason = status[name]
        marks = []
        if name in GPU_BACKENDS:
            marks.append(pytest.mark.gpu)
        elif not ok:
            if not include_unavailable:
                continue
            marks.append(pytest.mark.skip(reason=f"backend {name!r} unavailable: {reason}"))
        params.append(pytest.param(name, marks=marks, id=name))
    return params
