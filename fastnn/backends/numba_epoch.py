"""The Numba backend's compiled training epoch: a compiled copy of the per-layer loop.

:func:`fastnn.training.train_epoch` is the readable specification: per batch, take it,
forward-propagate it, measure the error, backpropagate, update. This module runs the same
five steps for a whole epoch of a model that describes itself (:mod:`fastnn.spec`) as a
stack of Dense, Activation and Dropout layers, with binary/categorical/sparse categorical
cross-entropy or mse, and SGD (momentum, Nesterov), Adam, AdamW or RMSprop. It never
imports the model's classes: :func:`plan` turns the model's :class:`~fastnn.spec.ModelSpec`
into kernel tables, and the optimizer hands over its state buffers, per-step scalars and
step count through its :class:`~fastnn.spec.OptimizerSpec`.

Three compiled copies, chosen per batch size by :func:`choose_path`:

- ``loops``: every minibatch inside ONE compiled call, with hand-written loops, for
  small networks: the model's own compiled epoch (:mod:`.numba_compile` writes it);
- ``mid``: also one compiled call per epoch, its products BLAS calls made from compiled
  code (:mod:`fastnn.kernels.cpu_mid`), for mid widths (:mod:`.numba_mid` has the rule);
- ``blas``: a Python loop over the minibatches in which each product is one NumPy/BLAS
  GEMM into a preallocated buffer and everything between products is one compiled pass.

See :mod:`fastnn.backends.numba_mid` and :mod:`fastnn.backends.numba_backend` for the
measured crossovers.
"""

from __future__ import annotations

import os
from typing import NamedTuple

import numpy as np

from ..errors import ConfigError, ShapeError
from . import numba_mid
from .numba_compile import compiled_epoch
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

# ------------------------------------------------------------------ scalar tables
_DUMMY_I = np.zeros(1, dtype=np.int64)
_DUMMIES: dict = {}


def _dummy2(dt):
    d = _DUMMIES.get(dt)
    if d is None:
        d = _DUMMIES[dt] = np.zeros((1, 1), dtype=dt)
    return d


def _loss_consts(dt, k: int, value: bool = True) -> np.ndarray:
    """The loss constant vector (``L_*`` slots); ``value=False``: only the gradient."""
    eps = 1e-7
    return np.array([eps, 1 - eps, 2.0 / k, 1.0 if value else 0.0], dtype=dt)


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
class Plan:
    """A Dense stack as kernel tables: ``ops (n_ops, N_OPCOLS)`` ints, ``opf`` floats,
    workspace offsets in units of one batch row (multiply by the batch size)."""


def _rows(k, layers):
    """``(kind, act, d_in, d_out, w_off, b_off, alpha, rate)`` per compiled op, or None."""
    rows = []
    for ls in layers:
        if ls.kind == "dense":
            act = k.ACT_CODES[ls.activation]
            rows.append(
                (k.OP_DENSE, act, ls.d_in, ls.d_out, ls.w_offset, ls.b_offset, ls.alpha, 0.0)
            )
        elif ls.kind == "activation":
            if ls.activation != "linear":  # the identity, forward and backward
                act = k.ACT_CODES[ls.activation]
                rows.append((k.OP_ACT, act, ls.d_in, ls.d_out, -1, -1, ls.alpha, 0.0))
        elif ls.kind == "dropout":
            if ls.rate != 0.0:
                rows.append((k.OP_DROPOUT, 0, ls.d_in, ls.d_out, -1, -1, 0.0, ls.rate))
        else:
            return None
    if not any(r[0] == k.OP_DENSE for r in rows):
        return None
    return rows


def _loss_code(k, loss) -> int:
    if loss.kind == "bce":
        return k.LOSS_BCE_LOGITS if loss.from_logits else k.LOSS_BCE_PROB
    if loss.kind == "ce":
        return k.LOSS_CE_LOGITS if loss.from_logits else k.LOSS_CE_PROB
    return k.LOSS_MSE


def plan(k, spec):
    """Kernel tables for a model's :class:`~fastnn.spec.ModelSpec`, or None when some part
    of it has no compiled form here (the model then trains on the per-layer path)."""
    if not spec.compilable or spec.dtype not in _FLOAT_DTYPES:
        return None
    if not isinstance(spec.theta, np.ndarray) or spec.loss.kind not in ("bce", "ce", "mse"):
        return None
    opt_code = {"sgd": k.OPT_SGD, "adam": k.OPT_ADAM, "rmsprop": k.OPT_RMSPROP}.get(
        spec.optimizer.kind
    )
    rows = _rows(k, spec.layers)
    if rows is None or opt_code is None:
        return None
    p = Plan()
    p.sparse = bool(spec.loss.sparse)
    p.opt_code = opt_code
    p.loss_code = _loss_code(k, spec.loss)
    p.d_in, p.k_out = spec.d_in, spec.k_out
    p.dtype = np.dtype(spec.dtype)
    _layout(k, p, rows, spec.dtype)
    p.macs_per_row = int(sum(r[2] * r[3] for r in rows if r[0] == k.OP_DENSE))
    p.dropout_width = int(sum(r[3] for r in rows if r[0] == k.OP_DROPOUT))
    p.n_dense = sum(1 for r in rows if r[0] == k.OP_DENSE)
    return p


def _layout(k, p, rows, dtype) -> None:
    """The op tables and the workspace layout, in units of "rows of the batch"."""
    n = len(rows)
    ops = np.zeros((n, k.N_OPCOLS), dtype=np.int64)
    opf = np.zeros((n, k.N_OPFCOLS), dtype=dtype)
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


def hyper_vector(k, dt, opt) -> np.ndarray:
    """The kernels' hyper-parameter vector for an :class:`~fastnn.spec.OptimizerSpec`."""
    h = opt.hyper
    lr, wd = h["learning_rate"], h["weight_decay"]
    if opt.kind == "sgd":
        return _hyper(dt, lr=lr, mom=h["momentum"], nesterov=h["nesterov"], wd=wd)
    if opt.kind == "adam":
        return _hyper(dt, lr=lr, wd=wd, b1=h["beta_1"], b2=h["beta_2"], decoupled=h["decoupled"])
    return _hyper(dt, lr=lr, mom=h["momentum"], wd=wd, rho=h["rho"], eps=h["epsilon"])


# ------------------------------------------------------------------ dropout uniforms
DROPOUT_RNGS = ("host", "kernel")


def dropout_rng() -> str:
    """Where the fused epoch's dropout uniforms come from (``FASTNN_DROPOUT_RNG``):

    * ``host`` (the default): drawn from the training generator, ``rng.random``, in the
      order every backend draws them, so the same seed gives the same masks on the
      per-layer path, the fused epoch and the CuPy backend;
    * ``kernel``: two keys drawn from the training generator per call, from which the
      cols and mid paths hash each mask where they apply it
      (:mod:`fastnn.kernels.cpu_dropout`) and the other paths fill uniforms
      (:func:`fastnn.kernels.cpu.fill_uniforms`): the same masks for the same seed on
      one path (any process, any ``jobs``), different from the other paths', and 4-5x
      cheaper than host uniforms (a 59-wide dropout at 5,440 rows an epoch: 1.6 ms of
      uniforms against 0.33 ms, where the rest of the epoch is 2.5 ms), the hashed masks
      about 2x cheaper again. ``fastnn tune`` trains its folds and its refit so.
    """
    value = os.environ.get("FASTNN_DROPOUT_RNG", "").strip().lower() or "host"
    if value not in DROPOUT_RNGS:
        raise ConfigError(f"FASTNN_DROPOUT_RNG must be 'host' or 'kernel', got {value!r}")
    return value


def dropout_uniforms(k, rng, n: int, dt, keyed: bool = False):
    """``n`` dropout uniforms of dtype ``dt`` for one compiled call (see
    :func:`dropout_rng`). ``keyed`` (the cols and mid paths): on ``kernel``, just the
    two keys, as a ``uint64`` array; those paths hash each mask where they apply it
    (:mod:`fastnn.kernels.cpu_dropout`)."""
    if dropout_rng() == "kernel":
        keys = rng.integers(0, 1 << 32, size=2, dtype=np.uint64)
        if keyed:
            return keys
        U = np.empty(n, dtype=dt)
        k.fill_uniforms(U, int(keys[0]), int(keys[1]))
        return U
    return rng.random(n, dtype=np.float64).astype(dt)


# ------------------------------------------------------------------ which compiled copy
def forced_path() -> str | None:
    """``FASTNN_NUMBA_PATH``: one of :data:`PATHS`, ``generic`` (the rule below without
    ``loops``: no compile per network shape), or None: the rule chooses."""
    forced = os.environ.get("FASTNN_NUMBA_PATH", "").strip().lower()
    if forced not in ("", "generic", *PATHS):
        raise ConfigError(
            f"FASTNN_NUMBA_PATH must be one of {', '.join(PATHS)} or generic; got {forced!r}"
        )
    return forced or None


def choose_path(plan, batch_size: int, forced: str | None = None) -> str:
    """The compiled copy that trains this batch size; ``forced`` wins. The measured rule
    of :func:`fastnn.backends.numba_mid.choose_path` (hand loops for small networks, the
    mid path above them) first; where it does not decide, ``"loops"`` while the Dense
    layers' multiply-adds per row fit :func:`handloop_limit`, else ``"blas"``.
    ``forced="generic"``: the same rule with ``"cols"`` for ``"loops"`` (the hand loops
    compiled once for every network: what a search over shapes wants)."""
    if forced == "generic":
        path = choose_path(plan, batch_size)
        return "cols" if path == "loops" else path
    if forced is not None:
        return forced
    path = numba_mid.choose_path(plan, batch_size)
    if path is not None:
        return path
    return "loops" if plan.macs_per_row <= handloop_limit(batch_size) else "blas"


#: the compiled copies by name: each trains batches ``b0 .. b1-1`` of :class:`EpochArgs`
PATHS = ("loops", "cols", "mid", "blas")


class EpochArgs(NamedTuple):
    """One compiled call's data, buffers and scalars (built once per call in ``run``)."""

    X: np.ndarray
    yf: np.ndarray
    yi: np.ndarray
    w: np.ndarray
    has_w: bool
    out: np.ndarray
    theta: np.ndarray
    grad: np.ndarray
    s1: np.ndarray
    s2: np.ndarray
    U: np.ndarray
    lc: np.ndarray
    hp: np.ndarray
    lr_ts: np.ndarray
    eps_ts: np.ndarray
    batch_size: int
    b0: int
    b1: int


def make_runner(k, spec):
    """An :class:`EpochRunner` for a model's spec, or None (per-layer path)."""
    p = plan(k, spec)
    return None if p is None else EpochRunner(k, spec, p, forced_path())


#: at most this many dropout uniforms are drawn at once (the epoch is cut into chunks)
_MAX_UNIFORMS = 1 << 22


class EpochRunner:
    """Trains one epoch of a planned Dense stack per :meth:`run` call."""

    def __init__(self, k, spec, plan, forced):
        self._k = k
        self.spec = spec
        self.plan = plan
        self.forced = forced
        self._ws_for = None
        self._blas_plans = {}
        self._epoch = None
        self.hp = hyper_vector(k, spec.dtype, spec.optimizer)
        self.description = self._describe(None)

    def _describe(self, batch_size=None):
        p = self.plan
        loops = "hand loops, one compiled call per epoch"
        blas = "BLAS products + compiled elementwise passes"
        mid = "BLAS products inside one compiled call per epoch"
        if batch_size is not None or self.forced is not None:
            path = choose_path(p, batch_size or 1, self.forced)
            cols = "hand loops from the op tables, one compiled call per epoch"
            how = {"loops": loops, "cols": cols, "mid": mid}.get(path, blas)
        elif numba_mid.choose_path(p, 32) == "mid":  # before the first epoch: batch 32
            how = mid
        else:  # before the first epoch: the loops/BLAS rule, for any batch size
            macs = max(p.macs_per_row, 1)
            b_max = int(HANDLOOP_BATCH_KNEE * (HANDLOOP_MAX_MACS_PER_ROW / macs) ** 2)
            if macs > HANDLOOP_MAX_MACS_PER_ROW:
                how = blas
            elif b_max >= 1 << 16:
                how = loops
            else:
                how = f"{loops}; BLAS products above batch_size {b_max}"
        s = "s" if p.n_dense != 1 else ""
        name = self.spec.optimizer.name
        return f"fused numba epoch ({p.n_dense} Dense layer{s}, {name}; {how})"

    # ---------------------------------------------------------------- buffers
    def _buffers(self, batch_size: int):
        if self._ws_for != batch_size:
            p, k = self.plan, self._k
            dt = self.spec.dtype
            self.ops = p.ops_units.copy()
            for col in (k.C_IN, k.C_Z, k.C_Y):
                self.ops[:, col] *= batch_size
            self.ws = np.zeros(p.ws_units * batch_size, dtype=dt)
            self.G0 = np.zeros(p.max_w * batch_size, dtype=dt)
            self.G1 = np.zeros(p.max_w * batch_size, dtype=dt)
            self.LS = np.zeros(2 * p.k_out * batch_size, dtype=dt)
            self._ws_for = batch_size
            self._blas_plans = {}

    def _state(self):
        """The optimizer's state buffers, as it handed them over (SGD has one)."""
        spec = self.spec
        st = spec.optimizer.state
        s1, s2 = st[0], st[-1]
        for a in (spec.theta, spec.grad, s1, s2):
            if not (a.flags.c_contiguous and a.dtype == spec.dtype and a.size == spec.theta.size):
                raise ConfigError("optimizer state does not match the model's parameters")
        return s1, s2

    def _targets(self, Xp, yp, wp):
        """Contiguous ``X``, targets ``yf``/``yi`` and weights ``w``, every shape and index
        checked once here: the compiled loops do not bounds-check."""
        p, dt = self.plan, self.spec.dtype
        X = np.ascontiguousarray(Xp, dtype=dt)
        n = X.shape[0]
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
        return X, yf, yi, w, has_w

    # ---------------------------------------------------------------- the epoch
    def run(self, Xp, yp, wp, batch_size: int, rng):
        """Train one epoch over the (already permuted) rows ``Xp (n, d)``, targets ``yp``
        and row weights ``wp (n, 1)`` or None, in minibatches of ``batch_size``.

        Updates the model's ``theta`` and the optimizer's state buffers in place, tells
        the optimizer how many steps ran (``advance``), and returns ``(loss_sum, out)``:
        the weighted loss summed over rows, and each row's output ``(n, k)`` (logits when
        the model's head is fused into the loss).
        """
        p, spec, opt = self.plan, self.spec, self.spec.optimizer
        dt = spec.dtype
        X, yf, yi, w, has_w = self._targets(Xp, yp, wp)
        n = X.shape[0]
        self._buffers(batch_size)
        s1, s2 = self._state()
        lc = _loss_consts(dt, p.k_out)
        out = np.empty((n, p.k_out), dtype=dt)
        n_batches = -(-n // batch_size)
        lr_ts, eps_ts = (a.astype(dt) for a in opt.step_scalars(n_batches))
        path = choose_path(p, batch_size, self.forced)
        train = getattr(self, "_run_" + path)
        keyed = path in ("cols", "mid")  # kernel RNG: these hash masks from two keys
        self.description = self._describe(batch_size)
        # chunks of batches, so the dropout uniforms of one call stay bounded
        per_batch_u = batch_size * p.dropout_width
        chunk = n_batches if per_batch_u == 0 else max(1, _MAX_UNIFORMS // per_batch_u)
        total = 0.0
        for b0 in range(0, n_batches, chunk):
            b1 = min(b0 + chunk, n_batches)
            if per_batch_u:
                rows = min(b1 * batch_size, n) - b0 * batch_size
                U = dropout_uniforms(self._k, rng, rows * p.dropout_width, dt, keyed)
            else:
                U = _dummy2(dt).reshape(-1)
            args = EpochArgs(
                X, yf, yi, w, has_w, out, spec.theta, spec.grad, s1, s2, U, lc, self.hp,
                lr_ts[b0:b1], eps_ts[b0:b1], batch_size, b0, b1,
            )  # fmt: skip
            total += train(args)
        opt.advance(n_batches)
        return total, out

    def _run_mid(self, a: EpochArgs):
        """The whole epoch in one compiled call whose products are BLAS calls
        (:func:`fastnn.kernels.cpu_mid.train_epoch_mid`)."""
        return numba_mid.run_mid(self, *a)

    def _run_loops(self, a: EpochArgs):
        """The whole epoch in one compiled call: the model's own compiled copy of the
        five steps (:func:`fastnn.backends.numba_compile.epoch_source`)."""
        p = self.plan
        if self._epoch is None:
            self._epoch = compiled_epoch(self._k, p)
        # the compiled epoch takes batches of one size: a short last batch is a 2nd call
        b_full = min(a.b1, a.X.shape[0] // a.batch_size)
        total = 0.0
        for lo, hi in ((a.b0, b_full), (max(a.b0, b_full), a.b1)):
            if hi > lo:
                s = slice(lo - a.b0, hi - a.b0)
                total += self._epoch(
                    a.X, a.yf, a.yi, a.w, a.has_w, a.out, a.theta, a.grad, a.s1, a.s2,
                    self.ws, self.G0, self.G1, self.LS, a.U[self._u_offset(a, lo):], p.opf,
                    a.lc, a.hp, a.lr_ts[s], a.eps_ts[s], a.batch_size, lo, hi,
                )  # fmt: skip
        return total

    def _run_cols(self, a: EpochArgs):
        """The hand loops of ``_run_loops`` driven by the op tables: one compiled function
        for every network (:func:`fastnn.kernels.cpu_cols.train_epoch_cols`)."""
        from ..kernels import cpu_cols

        p = self.plan
        return cpu_cols.train_epoch_cols(
            (a.X, a.yf, a.yi, a.w, a.has_w, a.out),
            (a.theta, a.grad, a.s1, a.s2),
            (self.ops, p.opf),
            (self.ws, self.G0, self.G1, self.LS, a.U),
            (p.loss_code, p.sparse, a.lc),
            (p.opt_code, a.hp, a.lr_ts, a.eps_ts),
            (a.batch_size, a.b0, a.b1),
        )

    def _u_offset(self, a: EpochArgs, b: int) -> int:
        """Where batch ``b``'s dropout uniforms start in this call's ``U``."""
        return (b - a.b0) * a.batch_size * self.plan.dropout_width

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

    def _run_blas(self, a: EpochArgs):
        """The same epoch with every product through NumPy's BLAS (big layers)."""
        n = a.X.shape[0]
        total = 0.0
        u_pos = 0
        for b in range(a.b0, a.b1):
            start = b * a.batch_size  # 1. take a batch
            stop = min(start + a.batch_size, n)
            fwd, bwd, gP = self._blas_plan(stop - start, a.theta, a.grad)
            Xb = a.X[start:stop]
            u_pos = self._blas_forward(fwd, Xb, a.U, u_pos)  # 2. forward
            P = fwd[-1]["Y"]
            a.out[start:stop] = P
            total += self._blas_loss(P, a, start, stop, gP)  # 3. the error
            self._blas_backward(bwd, Xb, a, b - a.b0)  # 4. backward and 5. update
        return total

    def _blas_forward(self, fwd, Xb, U, u_pos: int) -> int:
        """Forward through the planned ops; returns the next unused dropout uniform."""
        k = self._k
        nb = Xb.shape[0]
        for e in fwd:
            A = Xb if e["A"] is None else e["A"]
            Z, Y, code, kind = e["Z"], e["Y"], e["code"], e["kind"]
            if kind == k.OP_DENSE:
                np.matmul(A, e["W"], out=Z)
                if e["numpy_act"]:
                    if e["has_b"]:
                        Z += e["b"]
                    _NP.activation(e["name"], Z, e["alpha"], Y)
                else:
                    k.bias_act(Z, e["b"], e["has_b"], code, e["alpha"], Y)
            elif kind == k.OP_ACT:
                if e["numpy_act"]:
                    _NP.activation(e["name"], A, e["alpha"], Y)
                else:
                    k.act_forward(A, code, e["alpha"], Y)
            else:
                d = e["dout"]
                Ub = U[u_pos : u_pos + nb * d].reshape(nb, d)
                u_pos += nb * d
                k.dropout_mask(Ub, e["rate"], e["keep"], Z)
                np.multiply(A, Z, out=Y)
        return u_pos

    def _blas_loss(self, P, a: EpochArgs, start: int, stop: int, gP) -> float:
        """The batch's loss sum; its gradient goes to ``gP``."""
        p = self.plan
        scale = a.theta.dtype.type(1.0 / (stop - start))
        yf, yi, w = a.yf[start:stop], a.yi[start:stop], a.w[start:stop]
        return self._k.loss_grad(P, yf, yi, w, a.has_w, p.loss_code, p.sparse, a.lc, scale, gP)

    def _blas_backward(self, bwd, Xb, a: EpochArgs, step: int) -> None:
        """Backward through the planned ops, each Dense layer's optimizer update right
        after its gradient, while its weights and gradient are in cache."""
        k, opt_code = self._k, self.plan.opt_code
        lr_t, eps_t = a.lr_ts[step], a.eps_ts[step]
        for e in bwd:
            kind, gY = e["kind"], e["gY"]
            A = Xb if e["A"] is None else e["A"]
            if kind == k.OP_DENSE:
                k.bias_act_backward(
                    e["Z"], e["Y"], gY, e["code"], e["alpha"], gY, e["db"], e["has_b"]
                )
                np.matmul(A.T, gY, out=e["dW"])
                if e["gX"] is not None:
                    np.matmul(gY, e["W"].T, out=e["gX"])
                lo, hi = e["range"]
                k.opt_update(a.theta, a.grad, a.s1, a.s2, lo, hi, opt_code, a.hp, lr_t, eps_t)
            elif kind == k.OP_ACT:
                k.act_backward(A, e["Y"], gY, e["code"], e["alpha"], gY)
            else:
                np.multiply(gY, e["Z"], out=gY)
