"""The Numba backend: NumPy arrays on the CPU, hot ops compiled with Numba.

Everything the NumPy backend does, this backend does too (it subclasses it): matrix
products stay on NumPy's BLAS. What changes:

* **Per-op kernels** (:mod:`fastnn.kernels.cpu`): fused bias+activation forward and
  backward, softmax, the logit-based loss gradients, one fused loop per optimizer update
  over the flat parameter buffer, dropout masks. One compiled pass instead of several
  NumPy temporaries. The per-layer training path uses them.
* **A fused training epoch** (:meth:`NumbaBackend.epoch_runner`): for a stack of Dense
  layers (any activation), Activation and Dropout layers, with binary/categorical/sparse
  categorical cross-entropy or mse, and SGD (momentum, Nesterov), Adam, AdamW or RMSprop,
  ``fit`` trains a whole epoch per call:

  - small networks run every minibatch (forward, loss, backward, update) inside ONE
    compiled call, with hand-written loops (activations kept feature-major, so the inner
    loops run over the batch and vectorise even for 6-wide layers): no Python, no BLAS
    call overhead. The churn network trains at ~2.5 us per step this way (every view
    a step uses is built once per call, not per step).
  - bigger ones run a Python loop over the minibatches in which each product is one
    NumPy/BLAS GEMM into a preallocated buffer and everything between products (bias,
    activation, loss gradient, bias gradient, the optimizer update of each layer right
    after its gradient, while it is hot in cache) is one compiled pass. A
    784-1024-1024-10 step at batch 256 runs at ~1.09x the time of its eight GEMMs.

  - mid widths (:mod:`fastnn.backends.numba_mid`, :mod:`fastnn.kernels.cpu_mid`):
    the whole epoch in ONE compiled call again, every product a BLAS call made from
    compiled code (Numba's ``np.dot``, SciPy's BLAS) on one thread. Chosen by
    :func:`fastnn.backends.numba_mid.choose_path` above a few hundred multiply-adds per
    row; where it does not apply, the rule below picks between the other two.

  The crossover was measured with ``benchmarks/numba_crossover.py`` (results in
  ``benchmarks/results/numba_crossover.md``): hand loops when the Dense layers'
  ``sum(d_in * d_out)`` is at most :func:`handloop_limit` (2400 multiply-adds per row up
  to a batch of 128, shrinking as ``sqrt(128 / batch_size)`` above). On the 2-core
  reference machine a BLAS-driven step costs ~15-60 us of fixed call overhead that the
  compiled loops do not pay, while BLAS is 3-10x faster per multiply-add once the
  matrices are wide; per row, the loops' cost is roughly flat in the batch size, so up to
  a batch of 128 the crossover is a per-row constant (between 2080 and 3888 multiply-adds
  per row: 32- and 48-wide hidden layers on 32 inputs), and bigger batches amortise
  BLAS's overhead sooner (at 512 it lies between 784 and 2080). The rule picks the faster
  path in every cell measured except ties. ``FASTNN_NUMBA_PATH=loops|mid|blas`` forces
  one path (benchmarks and tests).

Results agree with the NumPy backend to float rounding (same formulas, constants cast to
the model dtype as NumPy does; only summation order differs). Dropout in the fused path
draws its uniforms from the same generator in the same order as the per-layer path, so
even with dropout the two agree.

Compilation is lazy (nothing compiles at import) and cached on disk (``cache=True``; set
``NUMBA_CACHE_DIR`` to move the cache). The first compilation in a process prints one
line to stderr; :func:`compile_stats` gives the time spent compiling (first-ever compile
of the churn network's kernels: ~5.5 s; loading them from the cache: ~0.25 s).

Threads: no kernel uses ``parallel=True``, so ``NUMBA_NUM_THREADS`` is respected
trivially (Numba starts no thread pool). The fused small-network epoch is a sequential
chain of tiny steps that threads would only slow down; on the BLAS path the threads come
from BLAS (``OPENBLAS_NUM_THREADS``), and a parallel optimizer update measured 0.16 ms
instead of 0.32 ms per 1.9 M-parameter step: 1.4% of that step, not worth a second thread
pool competing with BLAS's on a 2-core machine.
"""

from __future__ import annotations

import os
import sys
import threading
import time

import numpy as np

from ..errors import ConfigError, ShapeError
from .base import check_activation
from .numba_mid import choose_path as _choose_path
from .numba_mid import run_mid as _run_mid
from .numpy_backend import NumpyBackend

#: The fused epoch runs in hand-written compiled loops when the Dense layers'
#: ``sum(d_in * d_out)`` (multiply-adds per row) is at most this, for batches of up to
#: :data:`HANDLOOP_BATCH_KNEE` rows; above the knee the limit shrinks as
#: ``sqrt(knee / batch_size)``. Above it every product goes to BLAS. Measured, see the
#: module docstring.
HANDLOOP_MAX_MACS_PER_ROW = 2400
HANDLOOP_BATCH_KNEE = 128


def handloop_limit(batch_size: int) -> float:
    """Most multiply-adds per row the hand loops take at this batch size."""
    return HANDLOOP_MAX_MACS_PER_ROW * min(1.0, HANDLOOP_BATCH_KNEE / max(batch_size, 1)) ** 0.5


#: sigmoid/tanh/softmax on more elements than this go to NumPy, whose SIMD exp/tanh are
#: ~10-40x faster per element than the scalar libm calls compiled code makes; below it one
#: compiled pass beats NumPy's 4-5 ufunc calls (measured: tanh 8 ns vs 0.2 ns/element).
_TRANSCENDENTAL_NUMPY_ABOVE = 1024

_ACT_NAMES = ("linear", "relu", "leaky_relu", "sigmoid", "tanh", "softmax")  # by kernel code

#: the reference ops, for fallbacks (its methods never call back into this backend)
_NP = NumpyBackend()

_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))

# ------------------------------------------------------------------ compile reporting
_compile_lock = threading.Lock()
_compile = {"seconds": 0.0, "count": 0, "announced": False, "depth": 0, "t0": 0.0}
_listener_installed = False


def compile_stats() -> dict:
    """Seconds spent compiling fastnn's Numba kernels in this process, and how many
    compilations ran (0 when everything came from the on-disk cache)."""
    return {"seconds": _compile["seconds"], "count": _compile["count"]}


def _install_compile_listener() -> None:
    """Watch Numba's ``numba:compile`` events (fired only for real compilations, not
    cache loads) so the first one in the process can say so, once."""
    global _listener_installed
    if _listener_installed:
        return
    from numba.core import event

    class _Listener(event.Listener):
        def on_start(self, ev):
            disp = ev.data.get("dispatcher") if isinstance(ev.data, dict) else None
            mod = getattr(getattr(disp, "py_func", None), "__module__", "")
            if not mod.startswith("fastnn."):
                return
            with _compile_lock:
                if _compile["depth"] == 0:
                    _compile["t0"] = time.perf_counter()
                _compile["depth"] += 1
                _compile["count"] += 1
                if not _compile["announced"]:
                    _compile["announced"] = True
                    print(
                        "fastnn: compiling Numba kernels (first run on this machine; "
                        "later runs load them from the cache)",
                        file=sys.stderr,
                        flush=True,
                    )

        def on_end(self, ev):
            disp = ev.data.get("dispatcher") if isinstance(ev.data, dict) else None
            mod = getattr(getattr(disp, "py_func", None), "__module__", "")
            if not mod.startswith("fastnn."):
                return
            with _compile_lock:
                _compile["depth"] -= 1
                if _compile["depth"] == 0:
                    _compile["seconds"] += time.perf_counter() - _compile["t0"]

    event.register("numba:compile", _Listener())
    _listener_installed = True


# ------------------------------------------------------------------ helpers
def _ok2d(*arrays) -> bool:
    """True when every array is 2-D, C-contiguous, and of one float dtype."""
    dt = arrays[0].dtype
    return dt in _FLOAT_DTYPES and all(
        isinstance(a, np.ndarray) and a.ndim == 2 and a.dtype == dt and a.flags.c_contiguous
        for a in arrays
    )


def _ok1d(*arrays) -> bool:
    dt = arrays[0].dtype
    return dt in _FLOAT_DTYPES and all(
        isinstance(a, np.ndarray) and a.ndim == 1 and a.dtype == dt and a.flags.c_contiguous
        for a in arrays
    )


class NumbaBackend(NumpyBackend):
    """NumPy arrays on the CPU; fused hot ops and whole training epochs compiled with
    Numba. See the module docstring for what is fused and when."""

    name = "numba"
    device = "cpu"
    xp = np

    def __init__(self):
        from ..kernels import cpu

        self._k = cpu
        _install_compile_listener()

    # ------------------------------------------------------------------ activations
    def _code(self, name: str) -> int:
        code = self._k.ACT_CODES.get(name)
        if code is None:
            check_activation(name)  # raises UnknownNameError
        return code

    def _numpy_wins(self, code: int, Z) -> bool:
        """NumPy's SIMD exp/tanh beat Numba's scalar libm calls on big arrays."""
        return code >= self._k.SIGMOID and Z.size > _TRANSCENDENTAL_NUMPY_ABOVE

    def sigmoid(self, Z, out=None):
        """Logistic function ``0.5*tanh(0.5*z) + 0.5`` (one compiled pass on small
        arrays)."""
        return self.activation("sigmoid", Z, out=out)

    def softmax(self, Z, out=None):
        """Row-wise softmax of ``Z (n, k)``, shifted by the row max."""
        return self.activation("softmax", Z, out=out)

    def log_softmax(self, Z):
        """Row-wise log-softmax of ``Z (n, k)`` in one compiled pass."""
        if not _ok2d(Z):
            return _NP.log_softmax(Z)
        out = np.empty_like(Z)
        self._k.log_softmax(Z, out)
        return out

    def activation(self, name: str, Z, alpha: float = 0.01, out=None):
        """``Y = act(Z)`` for one of the activation names (see :class:`Backend`)."""
        code = self._code(name)
        if code == self._k.LINEAR and out is None:
            return Z
        if not _ok2d(Z) or (out is not None and not _ok2d(Z, out)) or self._numpy_wins(code, Z):
            return _NP.activation(name, Z, alpha, out)
        if out is None:
            out = np.empty_like(Z)
        self._k.act_forward(Z, code, Z.dtype.type(alpha), out)
        return out

    def activation_backward(self, name: str, Z, Y, dY, alpha: float = 0.01):
        """``dZ = dY * act'(Z)`` in one compiled pass; returns a new array."""
        code = self._code(name)
        if code == self._k.LINEAR:
            return dY
        if not _ok2d(Z, Y, dY):
            return _NP.activation_backward(name, Z, Y, dY, alpha)
        dZ = np.empty_like(dY)
        self._k.act_backward(Z, Y, dY, code, Z.dtype.type(alpha), dZ)
        return dZ

    def bias_act(self, Z, b, name: str, alpha: float = 0.01):
        """Fused ``Z += b; Y = act(Z)`` in one pass; returns ``(Z, Y)`` (``Y is Z`` for
        linear)."""
        code = self._code(name)
        if (
            not _ok2d(Z)
            or (b is not None and not _ok1d(Z.reshape(-1), b))
            or self._numpy_wins(code, Z)
        ):
            return _NP.bias_act(Z, b, name, alpha)
        has_b = b is not None
        bb = b if has_b else Z[0]
        Y = Z if code == self._k.LINEAR else np.empty_like(Z)
        self._k.bias_act(Z, bb, has_b, code, Z.dtype.type(alpha), Y)
        return Z, Y

    def bias_act_backward(self, Z, Y, dY, name: str, alpha: float = 0.01, need_db: bool = True):
        """Fused ``dZ = dY * act'(Z)`` and ``db = sum_rows(dZ)``; returns ``(dZ, db)``."""
        code = self._code(name)
        if not _ok2d(Z, Y, dY):
            return _NP.bias_act_backward(Z, Y, dY, name, alpha, need_db)
        dZ = dY if code == self._k.LINEAR else np.empty_like(dY)
        db = np.empty(dY.shape[1], dtype=dY.dtype) if need_db else dY[0]
        self._k.bias_act_backward(Z, Y, dY, code, Z.dtype.type(alpha), dZ, db, need_db)
        return dZ, (db if need_db else None)

    # ------------------------------------------------------------------ loss gradients
    def _loss(self, code, P, y, w, scale, sparse):
        k = self._k
        dt = P.dtype
        if not _ok2d(P):
            return None
        n, k_out = P.shape
        if sparse:
            yi = np.ascontiguousarray(y, dtype=np.int64).reshape(-1)
            # the kernel does not bounds-check: let NumPy raise on bad indices
            if yi.shape[0] != n or (n and (yi.min() < 0 or yi.max() >= k_out)):
                return None
            yf = _dummy2(dt)
        else:
            if not _ok2d(P, y) or y.shape != P.shape:
                return None
            yf, yi = y, _DUMMY_I
        has_w = w is not None
        if has_w:
            w = np.ascontiguousarray(w, dtype=dt).reshape(-1, 1)
            if w.shape[0] != n:
                return None
        else:
            w = _dummy2(dt)
        dP = np.empty_like(P)
        total = k.loss_grad(
            P, yf, yi, w, has_w, code, sparse, _loss_consts(dt, P.shape[1]), dt.type(scale), dP
        )
        return dt.type(total), dP

    def bce_logits_grad(self, Z, y, w, scale: float):
        """Binary cross-entropy on logits, one compiled pass (see :class:`Backend`)."""
        r = self._loss(self._k.LOSS_BCE_LOGITS, Z, y, w, scale, False)
        return r if r is not None else _NP.bce_logits_grad(Z, y, w, scale)

    def bce_prob_grad(self, P, y, w, scale: float, eps: float = 1e-7):
        """Binary cross-entropy on probabilities, one compiled pass."""
        if eps != 1e-7:
            return _NP.bce_prob_grad(P, y, w, scale, eps)
        r = self._loss(self._k.LOSS_BCE_PROB, P, y, w, scale, False)
        return r if r is not None else _NP.bce_prob_grad(P, y, w, scale, eps)

    def softmax_ce_grad(self, Z, y, w, scale: float, sparse: bool):
        """Cross-entropy on logits (log-sum-exp), one compiled pass."""
        r = self._loss(self._k.LOSS_CE_LOGITS, Z, y, w, scale, bool(sparse))
        return r if r is not None else _NP.softmax_ce_grad(Z, y, w, scale, sparse)

    def cce_prob_grad(self, P, y, w, scale: float, sparse: bool, eps: float = 1e-7):
        """Cross-entropy on probabilities, one compiled pass."""
        if eps != 1e-7:
            return _NP.cce_prob_grad(P, y, w, scale, sparse, eps)
        r = self._loss(self._k.LOSS_CE_PROB, P, y, w, scale, bool(sparse))
        return r if r is not None else _NP.cce_prob_grad(P, y, w, scale, sparse, eps)

    def mse_grad(self, P, y, w, scale: float):
        """Mean squared error, one compiled pass."""
        r = self._loss(self._k.LOSS_MSE, P, y, w, scale, False)
        return r if r is not None else _NP.mse_grad(P, y, w, scale)

    # ------------------------------------------------------------------ optimizer updates
    def sgd_update(self, theta, grad, velocity, lr, momentum, nesterov, weight_decay):
        """SGD (momentum, Nesterov, L2 decay) in one loop over the flat buffers."""
        if not _ok1d(theta, grad, velocity):
            return _NP.sgd_update(theta, grad, velocity, lr, momentum, nesterov, weight_decay)
        hp = _hyper(theta.dtype, lr=lr, mom=momentum, nesterov=nesterov, wd=weight_decay)
        z = theta.dtype.type(0)
        self._k.opt_update(theta, grad, velocity, velocity, 0, theta.size, 0, hp, z, z)

    def adam_update(self, theta, grad, m, v, lr, beta1, beta2, eps, t, weight_decay, decoupled):
        """Adam/AdamW in one loop over the flat buffers (``t`` the 1-based step)."""
        if not _ok1d(theta, grad, m, v):
            return _NP.adam_update(
                theta, grad, m, v, lr, beta1, beta2, eps, t, weight_decay, decoupled
            )
        dt = theta.dtype.type
        hp = _hyper(theta.dtype, lr=lr, wd=weight_decay, b1=beta1, b2=beta2, decoupled=decoupled)
        lr_t = lr * (1 - beta2**t) ** 0.5 / (1 - beta1**t)
        eps_t = eps * (1 - beta2**t) ** 0.5
        self._k.opt_update(theta, grad, m, v, 0, theta.size, 1, hp, dt(lr_t), dt(eps_t))

    def rmsprop_update(self, theta, grad, sq, velocity, lr, rho, eps, momentum, weight_decay):
        """RMSprop (Keras form) in one loop over the flat buffers."""
        if not _ok1d(theta, grad, sq, velocity):
            return _NP.rmsprop_update(
                theta, grad, sq, velocity, lr, rho, eps, momentum, weight_decay
            )
        hp = _hyper(theta.dtype, lr=lr, mom=momentum, wd=weight_decay, rho=rho, eps=eps)
        z = theta.dtype.type(0)
        self._k.opt_update(theta, grad, sq, velocity, 0, theta.size, 2, hp, z, z)

    # ------------------------------------------------------------------ dropout
    def dropout_mask(self, shape, rate: float, rng: np.random.Generator, dtype):
        """Inverted-dropout mask from host uniforms (same stream as NumPy)."""
        dtype = np.dtype(dtype)
        if len(shape) != 2 or dtype not in _FLOAT_DTYPES:
            return _NP.dropout_mask(shape, rate, rng, dtype)
        U = self.random_uniform(shape, rng, dtype)
        U = np.ascontiguousarray(U)
        mask = np.empty(shape, dtype=dtype)
        self._k.dropout_mask(U, dtype.type(rate), dtype.type(1.0 / (1.0 - rate)), mask)
        return mask

    # ------------------------------------------------------------------ fused training
    def epoch_runner(self, model, loss, optimizer):
        """A runner that trains a whole epoch in one call, or None (per-layer path).

        Supported: :class:`~fastnn.layers.Dense` (any activation, with or without bias),
        :class:`~fastnn.layers.Activation` and :class:`~fastnn.layers.Dropout` layers;
        binary/categorical/sparse-categorical cross-entropy and mse; SGD, Adam, AdamW and
        RMSprop; float32 and float64. The runner's ``description`` names the path.
        """
        plan = _plan(self._k, model, loss, optimizer)
        if plan is None:
            return None
        forced = os.environ.get("FASTNN_NUMBA_PATH", "").strip().lower()
        if forced not in ("", "loops", "mid", "blas"):
            raise ConfigError(f"FASTNN_NUMBA_PATH must be 'loops', 'mid' or 'blas', got {forced!r}")
        return _EpochRunner(self._k, model, loss, optimizer, plan, forced or None)


# ------------------------------------------------------------------ scalar tables
_DUMMY_I = np.zeros(1, dtype=np.int64)
_DUMMIES: dict = {}


def _dummy2(dt):
    d = _DUMMIES.get(dt)
    if d is None:
        d = _DUMMIES[dt] = np.zeros((1, 1), dtype=dt)
    return d


def _loss_consts(dt, k: int) -> np.ndarray:
    eps = 1e-7
    return np.array([eps, 1 - eps, 2.0 / k], dtype=dt)


def _hyper(
    dt,
    lr=0.0,
    mom=0.0,
    nesterov=False,
    wd=0.0,
    b1=0.0,
    b2=0.0,
    decoupled=False,
    rho=0.0,
    eps=0.0,
) -> np.ndarray:
    """The optimizer hyper-parameter vector (``H_*`` slots of the kernels), in ``dt``:
    each constant is computed in float64 and rounded once, as NumPy rounds a Python
    float that meets a float32 array."""
    return np.array(
        [
            lr,
            mom,
            1.0 if nesterov else 0.0,
            wd,
            b1,
            1 - b1,
            b2,
            1 - b2,
            1 - lr * wd,
            1.0 if decoupled else 0.0,
            rho,
            1 - rho,
            eps,
        ],
        dtype=dt,
    )


# ------------------------------------------------------------------ the fused plan
class _Plan:
    """A Dense stack as kernel tables: ``ops (n_ops, N_OPCOLS)`` ints, ``opf`` floats,
    workspace offsets in units of one batch row (multiply by the batch size)."""


def _plan(k, model, loss, optimizer):
    """Describe ``model`` for the fused kernels, or return None if it is not a plain
    Dense stack with a supported loss and optimizer."""
    from .. import losses as L
    from .. import optimizers as O
    from ..layers.activations import Activation
    from ..layers.dense import Dense
    from ..layers.dropout import Dropout

    if not getattr(model, "built", False) or model.dtype not in _FLOAT_DTYPES:
        return None
    theta = model.theta
    if not isinstance(theta, np.ndarray):
        return None
    loss_types = {
        L.BinaryCrossentropy: "bce",
        L.CategoricalCrossentropy: "ce",
        L.SparseCategoricalCrossentropy: "ce",
        L.MeanSquaredError: "mse",
    }
    kind = loss_types.get(type(loss))
    opt_codes = {
        O.SGD: k.OPT_SGD,
        O.Adam: k.OPT_ADAM,
        O.AdamW: k.OPT_ADAM,
        O.RMSprop: k.OPT_RMSPROP,
    }
    opt_code = opt_codes.get(type(optimizer))
    if kind is None or opt_code is None:
        return None
    head_fused = model._head_fused()
    offsets = {}
    for layer, pname, off, _shape in model._slices:
        offsets[(id(layer), pname)] = off
    layers = model.layers
    last = len(layers) - 1
    rows = []  # (kind, act, din, dout, woff, boff, alpha, rate, layer)
    for i, layer in enumerate(layers):
        if isinstance(layer, Dense) and type(layer).forward is Dense.forward:
            act = "linear" if (i == last and head_fused) else layer.activation
            woff = offsets[(id(layer), "W")]
            boff = offsets.get((id(layer), "b"), -1) if layer.use_bias else -1
            rows.append(
                (
                    k.OP_DENSE,
                    k.ACT_CODES[act],
                    layer.input_dim,
                    layer.output_dim,
                    woff,
                    boff,
                    layer.alpha,
                    0.0,
                )
            )
        elif isinstance(layer, Activation) and type(layer).forward is Activation.forward:
            act = "linear" if (i == last and head_fused) else layer.activation
            if act == "linear":
                continue  # the identity, forward and backward
            d = layer.output_dim
            rows.append((k.OP_ACT, k.ACT_CODES[act], d, d, -1, -1, layer.alpha, 0.0))
        elif type(layer) is Dropout:
            if layer.rate == 0.0:
                continue
            d = layer.output_dim
            rows.append((k.OP_DROPOUT, 0, d, d, -1, -1, 0.0, layer.rate))
        else:
            return None
    if not rows or not any(r[0] == k.OP_DENSE for r in rows):
        return None
    # workspace layout, in units of "rows of the batch": offset * batch_size
    p = _Plan()
    p.head_fused = head_fused
    p.loss_kind = kind
    p.sparse = bool(loss.sparse)
    p.opt_code = opt_code
    p.d_in = int(model.input_dim)
    p.k_out = int(model.output_dim)
    n = len(rows)
    ops = np.zeros((n, k.N_OPCOLS), dtype=np.int64)
    opf = np.zeros((n, k.N_OPFCOLS), dtype=model.dtype)
    cursor = p.d_in  # region 0 holds the input batch
    prev_y = 0
    max_w = p.d_in
    for q, (kd, act, din, dout, woff, boff, alpha, rate) in enumerate(rows):
        ops[q, k.C_KIND] = kd
        ops[q, k.C_ACT] = act
        ops[q, k.C_DIN] = din
        ops[q, k.C_DOUT] = dout
        ops[q, k.C_WOFF] = woff
        ops[q, k.C_BOFF] = boff
        ops[q, k.C_IN] = prev_y
        if kd == k.OP_DENSE:
            ops[q, k.C_Z] = cursor
            cursor += dout
            if act == k.LINEAR:
                ops[q, k.C_Y] = ops[q, k.C_Z]
            else:
                ops[q, k.C_Y] = cursor
                cursor += dout
        elif kd == k.OP_ACT:
            ops[q, k.C_Z] = prev_y
            ops[q, k.C_Y] = cursor
            cursor += dout
        else:
            ops[q, k.C_Z] = cursor  # the mask
            ops[q, k.C_Y] = cursor + dout
            cursor += 2 * dout
        prev_y = ops[q, k.C_Y]
        opf[q, k.F_ALPHA] = alpha
        opf[q, k.F_RATE] = rate
        opf[q, k.F_KEEP] = 1.0 / (1.0 - rate)
        max_w = max(max_w, din, dout)
    p.ops_units = ops  # offsets still in units of rows
    p.opf = opf
    p.ws_units = cursor
    p.max_w = max_w
    p.macs_per_row = int(sum(r[2] * r[3] for r in rows if r[0] == k.OP_DENSE))
    p.dropout_width = int(sum(r[3] for r in rows if r[0] == k.OP_DROPOUT))
    p.n_dense = sum(1 for r in rows if r[0] == k.OP_DENSE)
    if kind == "bce":
        p.loss_code = k.LOSS_BCE_LOGITS if head_fused else k.LOSS_BCE_PROB
    elif kind == "ce":
        p.loss_code = k.LOSS_CE_LOGITS if head_fused else k.LOSS_CE_PROB
    else:
        p.loss_code = k.LOSS_MSE
    return p


#: at most this many dropout uniforms are drawn at once (the epoch is cut into chunks)
_MAX_UNIFORMS = 1 << 22


class _EpochRunner:
    """Trains one epoch of a planned Dense stack per :meth:`run` call."""

    def __init__(self, k, model, loss, optimizer, plan, forced):
        self._k = k
        self.model = model
        self.loss = loss
        self.optimizer = optimizer
        self.plan = plan
        self.forced = forced
        self._ws_for = None
        self._blas_plans = {}
        self.description = self._describe(None)

    def _path(self, batch_size: int) -> str:
        """``"loops"``, ``"mid"`` or ``"blas"``: the measured rule
        (:func:`fastnn.backends.numba_mid.choose_path`; without SciPy, loops or BLAS by
        :func:`handloop_limit`); ``FASTNN_NUMBA_PATH`` wins."""
        if self.forced is not None:
            return self.forced
        path = _choose_path(self.plan, batch_size)  # None: the loops/BLAS rule decides
        if path is not None:
            return path
        return "loops" if self.plan.macs_per_row <= handloop_limit(batch_size) else "blas"

    def _describe(self, batch_size=None):
        p = self.plan
        how = {
            "loops": "hand loops, one compiled call per epoch",
            "mid": "BLAS products inside one compiled call per epoch",
            "blas": "BLAS products + compiled elementwise passes",
        }[self._path(batch_size or 32)]
        s = "s" if p.n_dense != 1 else ""
        return f"fused numba epoch ({p.n_dense} Dense layer{s}, {self.optimizer.name}; {how})"

    # ---------------------------------------------------------------- buffers
    def _buffers(self, batch_size: int):
        if self._ws_for != batch_size:
            p, k = self.plan, self._k
            dt = self.model.dtype
            self.ops = p.ops_units.copy()
            for col in (k.C_IN, k.C_Z, k.C_Y):
                self.ops[:, col] *= batch_size
            self.ws = np.zeros(p.ws_units * batch_size, dtype=dt)
            self.G0 = np.zeros(p.max_w * batch_size, dtype=dt)
            self.G1 = np.zeros(p.max_w * batch_size, dtype=dt)
            self.LS = np.zeros(2 * p.k_out * batch_size, dtype=dt)
            self._ws_for = batch_size
            self._blas_plans = {}

    def _hyper(self):
        o, dt = self.optimizer, self.model.dtype
        if self.plan.opt_code == self._k.OPT_SGD:
            return _hyper(
                dt, lr=o.learning_rate, mom=o.momentum, nesterov=o.nesterov, wd=o.weight_decay
            )
        if self.plan.opt_code == self._k.OPT_ADAM:
            return _hyper(
                dt,
                lr=o.learning_rate,
                wd=o.weight_decay,
                b1=o.beta_1,
                b2=o.beta_2,
                decoupled=o.decoupled,
            )
        return _hyper(
            dt, lr=o.learning_rate, mom=o.momentum, wd=o.weight_decay, rho=o.rho, eps=o.epsilon
        )

    def _step_scalars(self, t0: int, steps: int):
        """Per-step Adam ``lr_t`` and ``eps_t`` for steps ``t0+1 .. t0+steps``."""
        dt = self.model.dtype
        o = self.optimizer
        if self.plan.opt_code != self._k.OPT_ADAM:
            z = np.zeros(steps, dtype=dt)
            return z, z
        t = np.arange(t0 + 1, t0 + 1 + steps, dtype=np.float64)
        c2 = np.sqrt(1 - o.beta_2**t)
        lr_t = o.learning_rate * c2 / (1 - o.beta_1**t)
        eps_t = o.epsilon * c2
        return lr_t.astype(dt), eps_t.astype(dt)

    def _state(self):
        o, m = self.optimizer, self.model
        st = o.state
        if self.plan.opt_code == self._k.OPT_SGD:
            s1 = st["velocity"]
            s2 = s1
        elif self.plan.opt_code == self._k.OPT_ADAM:
            s1, s2 = st["m"], st["v"]
        else:
            s1, s2 = st["sq"], st["velocity"]
        for a in (m.theta, m.grad, s1, s2):
            if not (a.flags.c_contiguous and a.dtype == m.dtype and a.size == m.theta.size):
                raise ConfigError("optimizer state does not match the model's parameters")
        return s1, s2

    # ---------------------------------------------------------------- the epoch
    def run(self, Xp, yp, wp, batch_size: int, rng):
        """Train one epoch over the (already permuted) rows ``Xp (n, d)``, targets ``yp``
        and row weights ``wp (n, 1)`` or None, in minibatches of ``batch_size``.

        Updates ``model.theta`` and the optimizer state in place, advances
        ``optimizer.iterations`` by the number of steps, and returns ``(loss_sum, out)``:
        the weighted loss summed over rows, and each row's output ``(n, k)`` (logits when
        the model's head is fused into the loss).
        """
        p, model = self.plan, self.model
        dt = model.dtype
        X = np.ascontiguousarray(Xp, dtype=dt)
        n = X.shape[0]
        # the compiled loops do not bounds-check: check every shape and index once here
        if X.ndim != 2 or X.shape[1] != p.d_in:
            raise ShapeError(f"X must have shape (n, {p.d_in}), got {X.shape}")
        if p.sparse:
            yi = np.ascontiguousarray(yp, dtype=np.int64).reshape(-1)
            if yi.shape[0] != n or (n and (yi.min() < 0 or yi.max() >= p.k_out)):
                raise ShapeError(f"targets must be {n} class indices in [0, {p.k_out})")
            yf = _dummy2(dt)
        else:
            yf = np.ascontiguousarray(yp, dtype=dt)
            if yf.shape not in ((n, p.k_out), (n,) if p.k_out == 1 else None):
                raise ShapeError(f"targets must have shape ({n}, {p.k_out}), got {yf.shape}")
            yf = yf.reshape(n, p.k_out)
            yi = _DUMMY_I
        has_w = wp is not None
        w = np.ascontiguousarray(wp, dtype=dt).reshape(-1, 1) if has_w else _dummy2(dt)
        if has_w and w.shape[0] != n:
            raise ShapeError(f"row weights must have shape ({n}, 1), got {np.shape(wp)}")
        self._buffers(batch_size)
        s1, s2 = self._state()
        hp = self._hyper()
        lc = _loss_consts(dt, p.k_out)
        out = np.empty((n, p.k_out), dtype=dt)
        n_batches = -(-n // batch_size)
        t0 = self.optimizer.iterations
        lr_ts, eps_ts = self._step_scalars(t0, n_batches)
        path = self._path(batch_size)
        self.description = self._describe(batch_size)
        # chunks of batches, so the dropout uniforms of one call stay bounded
        per_batch_u = batch_size * p.dropout_width
        chunk = n_batches if per_batch_u == 0 else max(1, _MAX_UNIFORMS // per_batch_u)
        total = 0.0
        for b0 in range(0, n_batches, chunk):
            b1 = min(b0 + chunk, n_batches)
            if per_batch_u:
                rows = min(b1 * batch_size, n) - b0 * batch_size
                U = rng.random(rows * p.dropout_width, dtype=np.float64).astype(dt)
            else:
                U = _dummy2(dt).reshape(-1)
            args = (
                X,
                yf,
                yi,
                w,
                has_w,
                out,
                model.theta,
                model.grad,
                s1,
                s2,
                U,
                lc,
                hp,
                lr_ts[b0:b1],
                eps_ts[b0:b1],
                batch_size,
                b0,
                b1,
            )
            if path == "loops":
                total += self._run_loops(*args)
            elif path == "mid":
                total += _run_mid(self, *args)
            else:
                total += self._run_blas(*args)
        self.optimizer.iterations = t0 + n_batches
        return total, out

    def _run_loops(
        self,
        X,
        yf,
        yi,
        w,
        has_w,
        out,
        theta,
        grad,
        s1,
        s2,
        U,
        lc,
        hp,
        lr_ts,
        eps_ts,
        batch_size,
        b0,
        b1,
    ):
        p, k = self.plan, self._k
        return k.train_epoch(
            X,
            yf,
            yi,
            w,
            has_w,
            out,
            theta,
            grad,
            s1,
            s2,
            self.ops,
            p.opf,
            self.ws,
            self.G0,
            self.G1,
            self.LS,
            U,
            p.loss_code,
            p.sparse,
            lc,
            p.opt_code,
            hp,
            lr_ts,
            eps_ts,
            0,
            batch_size,
            b0,
            b1,
        )

    def _blas_plan(self, nb: int, theta, grad):
        """Views for one step of ``nb`` rows on the BLAS path, built once per batch size:
        forward and backward lists of per-op tuples (no slicing in the step loop)."""
        key = (nb, id(theta), id(grad))
        cached = self._blas_plans.get(key)
        if cached is not None:
            return cached
        p, k = self.plan, self._k
        ops, opf, ws = self.ops, p.opf, self.ws

        def view(buf, off, d):
            return buf[off : off + nb * d].reshape(nb, d)

        n_ops = ops.shape[0]
        first_param = next(q for q in range(n_ops) if ops[q, k.C_KIND] == k.OP_DENSE)
        fwd, bwd = [], []
        G = (self.G0, self.G1)
        cur = 0
        acts = []
        for q in range(n_ops):
            kind, code = int(ops[q, k.C_KIND]), int(ops[q, k.C_ACT])
            din, dout = int(ops[q, k.C_DIN]), int(ops[q, k.C_DOUT])
            A = None if q == 0 else acts[-1]  # None: the batch of X
            Y = view(ws, int(ops[q, k.C_Y]), dout)
            Z = A if kind == k.OP_ACT else view(ws, int(ops[q, k.C_Z]), dout)
            entry = {
                "kind": kind,
                "code": code,
                "alpha": opf[q, k.F_ALPHA],
                "rate": opf[q, k.F_RATE],
                "keep": opf[q, k.F_KEEP],
                "A": A,
                "Z": Z,
                "Y": Y,
                "dout": dout,
                "numpy_act": code >= k.SIGMOID and nb * dout > _TRANSCENDENTAL_NUMPY_ABOVE,
                "name": _ACT_NAMES[code],
            }
            if kind == k.OP_DENSE:
                wo, bo = int(ops[q, k.C_WOFF]), int(ops[q, k.C_BOFF])
                entry["W"] = theta[wo : wo + din * dout].reshape(din, dout)
                entry["dW"] = grad[wo : wo + din * dout].reshape(din, dout)
                entry["has_b"] = bo >= 0
                entry["b"] = theta[bo : bo + dout] if bo >= 0 else theta[wo : wo + 1]
                entry["db"] = grad[bo : bo + dout] if bo >= 0 else grad[wo : wo + 1]
                entry["range"] = (wo, bo + dout if bo >= 0 else wo + din * dout)
            fwd.append(entry)
            acts.append(Y)
        k_out = p.k_out
        gP = view(G[0], 0, k_out)
        for q in range(n_ops - 1, first_param - 1, -1):
            e = fwd[q]
            din = int(ops[q, k.C_DIN])
            e["gY"] = view(G[cur], 0, e["dout"])
            if e["kind"] == k.OP_DENSE and q > first_param:
                e["gX"] = view(G[1 - cur], 0, din)
                cur = 1 - cur
            else:
                e["gX"] = None
            bwd.append(e)
        plan = (fwd, bwd, gP)
        self._blas_plans[key] = plan
        return plan

    def _run_blas(
        self,
        X,
        yf,
        yi,
        w,
        has_w,
        out,
        theta,
        grad,
        s1,
        s2,
        U,
        lc,
        hp,
        lr_ts,
        eps_ts,
        batch_size,
        b0,
        b1,
    ):
        """The same epoch with every product through NumPy's BLAS (big layers)."""
        p, k = self.plan, self._k
        n = X.shape[0]
        dt = theta.dtype
        matmul, multiply = np.matmul, np.multiply
        bias_act, act_forward, dropout_mask = k.bias_act, k.act_forward, k.dropout_mask
        bias_act_backward, act_backward = k.bias_act_backward, k.act_backward
        opt_update, loss_grad = k.opt_update, k.loss_grad
        opt_code, loss_code, sparse = p.opt_code, p.loss_code, p.sparse
        DENSE, ACT = k.OP_DENSE, k.OP_ACT
        total = 0.0
        u_pos = 0
        for b in range(b0, b1):
            start = b * batch_size
            stop = min(start + batch_size, n)
            nb = stop - start
            fwd, bwd, gP = self._blas_plan(nb, theta, grad)
            lr_t, eps_t = lr_ts[b - b0], eps_ts[b - b0]
            Xb = X[start:stop]
            for e in fwd:
                A = Xb if e["A"] is None else e["A"]
                Z, Y, code = e["Z"], e["Y"], e["code"]
                kind = e["kind"]
                if kind == DENSE:
                    matmul(A, e["W"], out=Z)
                    if e["numpy_act"]:
                        if e["has_b"]:
                            Z += e["b"]
                        _NP.activation(e["name"], Z, e["alpha"], Y)
                    else:
                        bias_act(Z, e["b"], e["has_b"], code, e["alpha"], Y)
                elif kind == ACT:
                    if e["numpy_act"]:
                        _NP.activation(e["name"], A, e["alpha"], Y)
                    else:
                        act_forward(A, code, e["alpha"], Y)
                else:
                    d = e["dout"]
                    Ub = U[u_pos : u_pos + nb * d].reshape(nb, d)
                    u_pos += nb * d
                    dropout_mask(Ub, e["rate"], e["keep"], Z)
                    multiply(A, Z, out=Y)
            P = fwd[-1]["Y"]
            out[start:stop] = P
            total += loss_grad(
                P,
                yf[start:stop],
                yi[start:stop],
                w[start:stop],
                has_w,
                loss_code,
                sparse,
                lc,
                dt.type(1.0 / nb),
                gP,
            )
            for e in bwd:
                kind, gY = e["kind"], e["gY"]
                A = Xb if e["A"] is None else e["A"]
                if kind == DENSE:
                    bias_act_backward(
                        e["Z"], e["Y"], gY, e["code"], e["alpha"], gY, e["db"], e["has_b"]
                    )
                    matmul(A.T, gY, out=e["dW"])
                    if e["gX"] is not None:
                        matmul(gY, e["W"].T, out=e["gX"])
                    lo, hi = e["range"]
                    # this layer's update now, while its weights and gradient are in cache
                    opt_update(theta, grad, s1, s2, lo, hi, opt_code, hp, lr_t, eps_t)
                elif kind == ACT:
                    act_backward(A, e["Y"], gY, e["code"], e["alpha"], gY)
                else:
                    multiply(gY, e["Z"], out=gY)
        return total
