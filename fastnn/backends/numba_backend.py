"""The Numba backend: NumPy arrays on the CPU, hot ops compiled with Numba.

Everything the NumPy backend does, this backend does too (it subclasses it): matrix
products stay on NumPy's BLAS. What changes:

* **Per-op kernels** (:mod:`fastnn.kernels.cpu`): fused bias+activation forward and
  backward, softmax, the logit-based loss gradients, one fused loop per optimizer update
  over the flat parameter buffer, dropout masks. One compiled pass instead of several
  NumPy temporaries. The per-layer training path uses them; inference (``predict``,
  ``evaluate``) runs the NumPy ops (:attr:`NumbaBackend.inference`).
* **A fused training epoch** (:meth:`NumbaBackend.epoch_runner`, in
  :mod:`fastnn.backends.numba_epoch`: the compiled copy of
  :func:`fastnn.training.train_epoch`, learnt from the model's spec): for a stack of Dense
  layers (any activation), Activation and Dropout layers, with binary/categorical/sparse
  categorical cross-entropy or mse, and SGD (momentum, Nesterov), Adam, AdamW or RMSprop,
  ``fit`` trains a whole epoch per call:

  - small networks run every minibatch (forward, loss, backward, update) inside ONE
    compiled call written for the model (:mod:`fastnn.backends.numba_compile`), with
    hand-written loops (activations kept feature-major, so the inner
    loops run over the batch and vectorise even for 6-wide layers): no Python, no BLAS
    call overhead. The churn network trains at ~2.5 us per step this way (every view
    a step uses is built once per call, not per step).
  - bigger ones run a Python loop over the minibatches in which each product is one
    NumPy/BLAS GEMM into a preallocated buffer and everything between products (bias,
    activation, loss gradient, bias gradient, the optimizer update of each layer right
    after its gradient, while it is hot in cache) is one compiled pass. A
    784-1024-1024-10 step at batch 256 runs at ~1.09x the time of its eight GEMMs.

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
  path in every cell measured except ties. Between them, a third copy ("mid", one compiled
  call per epoch whose products are BLAS calls) now trains mid-width networks: see
  :mod:`fastnn.backends.numba_mid`. ``FASTNN_NUMBA_PATH=loops|cols|mid|blas`` forces one
  path (benchmarks and tests; ``cols`` is the hand loops read from the op tables, one
  compiled function for every network, bit-identical to ``loops``), ``generic`` the rule
  without per-shape compiles (``fastnn tune``);
  :func:`fastnn.backends.numba_epoch.choose_path` is the rule.

Results agree with the NumPy backend to float rounding (same formulas, constants cast to
the model dtype as NumPy does; only summation order differs). Dropout in the fused path
draws its uniforms from the same generator in the same order as the per-layer path, so
even with dropout the two agree.

Compilation is lazy (nothing compiles at import) and cached on disk (``cache=True``; set
``NUMBA_CACHE_DIR`` to move the cache). The first compilation in a process prints one
line to stderr; :func:`compile_stats` gives the time spent compiling. Only the kernels a
model's compiled epoch calls are compiled (see :mod:`fastnn.backends.numba_compile`).

Threads: no kernel uses ``parallel=True``, so ``NUMBA_NUM_THREADS`` is respected
trivially (Numba starts no thread pool). The fused small-network epoch is a sequential
chain of tiny steps that threads would only slow down; on the BLAS path the threads come
from BLAS (``OPENBLAS_NUM_THREADS``), and a parallel optimizer update measured 0.16 ms
instead of 0.32 ms per 1.9 M-parameter step: 1.4% of that step, not worth a second thread
pool competing with BLAS's on a 2-core machine.
"""

from __future__ import annotations

import sys
import threading
import time

import numpy as np

from ..spec import adam_step_scalars
from .base import check_activation
from .numba_epoch import (  # noqa: F401  (handloop_limit and its constants: public here)
    _DUMMY_I,
    _FLOAT_DTYPES,
    _NP,
    _TRANSCENDENTAL_NUMPY_ABOVE,
    HANDLOOP_BATCH_KNEE,
    HANDLOOP_MAX_MACS_PER_ROW,
    _dummy2,
    _hyper,
    _loss_consts,
    handloop_limit,
    make_runner,
)
from .numpy_backend import NumpyBackend

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
    with _compile_lock:
        if not _listener_installed:
            _register_compile_listener()
            _listener_installed = True


def _register_compile_listener() -> None:
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

    #: inference runs on the NumPy ops: a forward pass has little to fuse, and the
    #: compiled per-op kernels' call overhead made ``predict`` slower than on "numpy"
    #: (one row and 2,000 rows measured), besides compiling kernels that training on
    #: the fused epoch never calls
    inference = _NP

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
        lr_t, eps_t = adam_step_scalars(lr, beta1, beta2, eps, t)
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
    def epoch_runner(self, model, loss=None, optimizer=None):
        """A runner that trains a whole epoch in one call (the compiled copy of
        :func:`fastnn.training.train_epoch` in :mod:`fastnn.backends.numba_epoch`), or
        None (per-layer path).

        Learns the model from ``model.training_spec()`` (:mod:`fastnn.spec`). Supported:
        Dense (any activation, with or without bias), Activation and Dropout layers;
        binary/categorical/sparse-categorical cross-entropy and mse; SGD, Adam, AdamW and
        RMSprop; float32 and float64. The runner's ``description`` names the path.
        """
        return make_runner(self._k, model.training_spec())
