"""CUDA-graph training for the CuPy backend: capture a whole epoch once, replay it.

On a GPU a small network's step is a dozen tiny kernels, and launching each from Python
costs more than running it. :class:`GraphEpochRunner` writes one epoch as a list of
kernel launches with every pointer fixed (the batch rows of a per-epoch input buffer,
the views of the flat ``theta``/``grad`` buffers, one workspace reused by every step),
captures that list into a CUDA graph the first time it sees a ``(rows, batch_size)``,
and afterwards trains an epoch with one copy of the shuffled data and one graph launch.

- Products: cuBLAS cannot run inside a CuPy stream capture, so small and medium layers
  use our tiled GEMM (``kernels/train.cu``, bias and activation fused into its epilogue).
  A layer whose forward product has more than :func:`own_gemm_max_macs` multiply-adds
  uses cuBLAS instead; an epoch with any cuBLAS product is not captured and launches the
  same list eagerly (such layers are GEMM-bound, so the launch cost no longer matters).
  ``FASTNN_CUPY_GEMM=own|cublas`` forces one kind.
- ``FASTNN_CUPY_GRAPH``: ``1`` (default) captures; ``eager`` launches the same list
  without capturing it; ``0`` turns the graph path off (``CupyBackend.epoch_runner``
  returns None and ``fit`` takes the per-layer path).
- Adam's per-step ``lr_t``/``eps_t`` come from the optimizer (``OptimizerSpec.step_scalars``,
  the bias correction written once): each epoch copies the next ``n_batches`` pairs into
  a device buffer whose slots the captured steps read, so a replayed epoch continues the
  count; afterwards the runner tells the optimizer ``advance(n_batches)``.
- Dropout masks come from a device buffer of uniforms, filled once per epoch from the
  host generator in the order the per-layer path draws them (batch by batch, layer by
  layer), so a seed gives the NumPy backend's masks.

The runner trains a model's :class:`~fastnn.spec.ModelSpec` (``model.training_spec()``;
:func:`~fastnn.backends.graph_spec.graph_layers` says whether it can) through a small
device interface (:class:`CupyDevice`; the test suite runs the same plan through a CPU
emulator of the kernels). :func:`make_runner` builds one, or returns None;
``CupyBackend.epoch_runner`` hands it to :func:`fastnn.training.choose_path`.
"""

from __future__ import annotations

import os
import weakref

import numpy as np

from ..errors import ConfigError, ShapeError
from ..kernels import cuda as K
from .graph_spec import graph_layers

#: A layer's products use our GEMM inside the graph when its forward product has at most
#: this many multiply-adds (batch * d_in * d_out), cuBLAS above. An estimate, not yet
#: measured: our GEMM at a tenth of cuBLAS's rate breaks even with an eager cuBLAS call
#: (~20 us of launch from Python) near 3e7 multiply-adds. benchmarks/gpu_bench.py times
#: both per layer shape; ``FASTNN_CUPY_OWN_GEMM_MAX_MACS`` overrides it.
OWN_GEMM_MAX_MACS = 1 << 25

#: an epoch with more graph nodes than this is launched eagerly instead of captured
MAX_GRAPH_NODES = 200_000


def own_gemm_max_macs() -> int:
    """The crossover in effect (the environment override, else the constant)."""
    env = os.environ.get("FASTNN_CUPY_OWN_GEMM_MAX_MACS", "").strip()
    if not env:
        return OWN_GEMM_MAX_MACS
    try:
        return int(float(env))
    except ValueError:
        raise ConfigError(f"FASTNN_CUPY_OWN_GEMM_MAX_MACS must be a number, got {env!r}") from None


_GEMM_MODES = ("own", "cublas", "cublas-graph")


def graph_mode() -> str:
    """``FASTNN_CUPY_GRAPH``: ``"1"`` (capture, the default), ``"eager"`` or ``"0"``."""
    mode = os.environ.get("FASTNN_CUPY_GRAPH", "1").strip().lower() or "1"
    if mode not in ("1", "eager", "0"):
        raise ConfigError(f"FASTNN_CUPY_GRAPH must be 1, eager or 0, got {mode!r}")
    return mode


def _dense(ls) -> bool:
    return ls.kind == "dense"


def _forced_gemm() -> str | None:
    forced = os.environ.get("FASTNN_CUPY_GEMM", "").strip().lower() or None
    if forced not in (None, *_GEMM_MODES):
        raise ConfigError(f"FASTNN_CUPY_GEMM must be one of {_GEMM_MODES}, got {forced!r}")
    return forced


class CupyDevice:
    """The device interface the runner uses, on the current CuPy device."""

    def __init__(self):
        import cupy

        self.xp = cupy
        dev = cupy.cuda.Device()
        self.sm_count = int(dev.attributes["MultiProcessorCount"])
        self.name = f"cuda:{dev.id}"

    def prepare(self, name, dtype, grid, block, args):
        """A zero-argument callable launching kernel ``name`` on the current stream."""
        fn = K.function(name, dtype)
        grid = tuple(grid) if isinstance(grid, tuple) else (int(grid),)
        block = (int(block),)
        args = K.convert_args(name, args)
        return lambda: fn(grid, block, args)

    def matmul(self, A, B, out):
        """``out[...] = A @ B`` through cuBLAS (never inside a capture)."""
        self.xp.matmul(A, B, out=out)

    def prepare_gemm(self, A, ta, B, tb, C):
        """A callable running ``C = op(A) @ op(B)`` (row-major) through cuBLAS's C API on
        CuPy's handle and the current stream, which a stream capture records."""
        from ._cublas_capture import prepared_gemm

        return prepared_gemm(A, ta, B, tb, C)

    def capture(self, fn):
        """Capture the launches ``fn`` makes into a CUDA graph (not run yet)."""
        stream = self.xp.cuda.Stream(non_blocking=True)
        with stream:
            stream.begin_capture()
            try:
                fn()
            finally:
                graph = stream.end_capture()
        return graph

    def synchronize(self):
        """Wait for the current stream."""
        self.xp.cuda.get_current_stream().synchronize()

    def upload(self, host, out):
        """Copy a host array into the device buffer ``out`` (same size)."""
        out.set(np.ascontiguousarray(host, dtype=out.dtype).reshape(out.shape))


class _Plan:
    """The launches of one epoch of ``rows`` rows in batches of ``batch_size``."""

    def __init__(self, ops, captured, graph, n_batches, cublas_layers):
        self.ops = ops
        self.captured = captured
        self.graph = graph
        self.n_batches = n_batches
        self.cublas_layers = cublas_layers

    def run(self):
        if self.graph is not None:
            self.graph.launch()
        else:
            for op in self.ops:
                op()


class GraphEpochRunner:
    """Trains one epoch of a model's :class:`~fastnn.spec.ModelSpec` per :meth:`run` call,
    in place on its ``theta`` and the optimizer's state buffers (``(m, v)`` for Adam,
    ``(velocity,)`` for SGD), which the spec hands over.

    ``layers`` are the spec's layers the graph launches (:func:`graph_layers`); ``device``
    a :class:`CupyDevice` (default) or a stand-in with the same methods.
    """

    def __init__(self, spec, layers, device=None):
        self.dtype = np.dtype(spec.dtype)
        self.layers = tuple(layers)
        self.dense = [ls for ls in self.layers if _dense(ls)]
        self.dev = device or CupyDevice()
        self.rebind(spec)
        self.theta, self.grad, self.state = spec.theta, spec.grad, tuple(spec.optimizer.state)
        for a in (self.theta, self.grad, *self.state):
            if a.shape != spec.theta.shape or a.dtype != self.dtype:
                raise ConfigError("theta, grad and optimizer state must match the model")
        self.n_params = int(spec.theta.size)
        self._plans: dict = {}
        self._bufs = None
        self.description = self._describe(None)

    def rebind(self, spec) -> None:
        """Take a fresh spec of the same model (the same buffers): the optimizer's
        ``step_scalars``/``advance`` of this fit."""
        self.spec, self.opt = spec, spec.optimizer
        self.loss, self.hyper = spec.loss, spec.optimizer.hyper

    # ---------------------------------------------------------------- public
    def run(self, Xp, yp, wp, batch_size: int, rng):
        """Train one epoch over the (already shuffled) rows ``Xp (n, d)``, targets ``yp``
        and row weights ``wp (n, 1)`` or None; returns ``(loss_sum, out)``: the weighted
        loss summed over rows (a device scalar) and the outputs ``(n, k)`` (logits for a
        cross-entropy head). Tells the optimizer how many steps ran (``advance``)."""
        n = self._check(Xp, yp, wp)
        plan = self._plan(n, int(batch_size), wp is not None)
        b = self._bufs
        b["X"][...] = Xp
        b["y"][...] = yp.reshape(b["y"].shape)
        if wp is not None:
            b["w"][...] = wp.reshape(n)
        width = self._dropout_width()
        if width:
            self.dev.upload(rng.random(n * width, dtype=np.float64), b["U"])
        if self.opt.kind == "adam":
            lr_ts, eps_ts = self.opt.step_scalars(plan.n_batches)
            self.dev.upload(np.stack([lr_ts, eps_ts], axis=1).reshape(-1), b["S"])
        plan.run()
        self.opt.advance(plan.n_batches)
        self.description = self._describe(plan)
        return b["loss"].sum(), b["out"].copy()

    def _dropout_width(self) -> int:
        return sum(ls.d_out for ls in self.layers if not _dense(ls))

    # ---------------------------------------------------------------- checks
    def _check(self, Xp, yp, wp) -> int:
        spec = self.spec
        if Xp.ndim != 2 or Xp.shape[1] != spec.d_in:
            raise ShapeError(f"X must have shape (n, {spec.d_in}), got {tuple(Xp.shape)}")
        n = int(Xp.shape[0])
        if self.loss.sparse:
            if yp.size != n or yp.dtype.kind not in "iu":
                raise ShapeError(f"targets must be {n} integer class indices")
            if n and (int(yp.min()) < 0 or int(yp.max()) >= spec.k_out):
                raise ShapeError(f"class indices must lie in [0, {spec.k_out})")
        elif yp.size != n * spec.k_out:
            raise ShapeError(f"targets must have shape ({n}, {spec.k_out}), got {yp.shape}")
        if wp is not None and wp.size != n:
            raise ShapeError(f"row weights must have shape ({n}, 1), got {tuple(wp.shape)}")
        return n

    # ---------------------------------------------------------------- planning
    def _gemm_mode(self, ls, batch_size: int) -> str:
        """ "own" (our GEMM, captured), "cublas" (eager) or "cublas-graph" (cuBLAS
        called through its C API so that it can be captured; experimental, opt-in)."""
        forced = _forced_gemm()
        if forced is not None:
            return forced
        return "cublas" if batch_size * ls.d_in * ls.d_out > own_gemm_max_macs() else "own"

    def _plan(self, n: int, batch_size: int, has_w: bool):
        key = (n, batch_size, has_w)
        plan = self._plans.get(key)
        if plan is not None:
            return plan
        self._plans.clear()  # one live plan: its buffers are the runner's buffers
        n_batches = -(-n // batch_size)
        self._bufs = self._alloc(n, batch_size, n_batches)
        steps = _Steps(self, batch_size, has_w)
        ops = []
        u_off = 0
        for i, start in enumerate(range(0, n, batch_size)):
            nb = min(batch_size, n - start)
            u_off = steps.step(ops, i, start, nb, u_off)
        cublas = steps.cublas_layers
        graph = None
        error = None
        if graph_mode() == "1" and not cublas and len(ops) <= MAX_GRAPH_NODES:
            self.dev.synchronize()
            try:
                graph = self.dev.capture(lambda: [op() for op in ops])
            except Exception as exc:  # e.g. a library that refuses capture: run eagerly
                error = f"{type(exc).__name__}: {exc}"
        plan = _Plan(ops, graph is not None, graph, n_batches, cublas)
        plan.graph_cublas_layers = steps.graph_cublas_layers
        plan.capture_error = error
        self._plans[key] = plan
        return plan

    def _alloc(self, n: int, batch_size: int, n_batches: int) -> dict:
        spec, xp, dt = self.spec, self.dev.xp, self.dtype
        max_w = max([spec.d_in] + [ls.d_out for ls in self.layers])
        sparse = self.loss.sparse
        b = {
            "X": xp.empty((n, spec.d_in), dtype=dt),
            "y": xp.empty((n,), dtype=np.int64) if sparse else xp.empty((n, spec.k_out), dtype=dt),
            "w": xp.empty((n,), dtype=dt),
            "out": xp.empty((n, spec.k_out), dtype=dt),
            "loss": xp.zeros((n,), dtype=dt),
            "G0": xp.empty((batch_size * max_w,), dtype=dt),
            "G1": xp.empty((batch_size * max_w,), dtype=dt),
            "U": xp.empty((max(n * self._dropout_width(), 1),), dtype=dt),
            "S": xp.zeros((2 * n_batches,), dtype=np.float64),  # (lr_t, eps_t) per step
        }
        for q, ls in enumerate(self.layers):
            b[f"Z{q}"] = xp.empty((batch_size * ls.d_out,), dtype=dt)  # Z, or the mask
            b[f"Y{q}"] = xp.empty((batch_size * ls.d_out,), dtype=dt)
        return b

    def _describe(self, plan) -> str:
        n = len(self.dense)
        name = self.opt.name
        head = f"cupy graph epoch ({n} Dense layer{'s' if n != 1 else ''}, {name}"
        if plan is None:
            return head + "; one CUDA graph per epoch when every layer is small enough)"
        if plan.captured:
            gemm = "our GEMM"
            if plan.graph_cublas_layers:
                gemm = f"cuBLAS (captured) for {plan.graph_cublas_layers} of {n} layers"
            return head + f"; {gemm}, one CUDA graph launch per epoch)"
        how = f"cuBLAS for {plan.cublas_layers} of {n} layers" if plan.cublas_layers else "our GEMM"
        if plan.capture_error:
            how += f"; capture failed: {plan.capture_error[:200]}"
        return head + f"; {how}, eager launches)"


class _Steps:
    """Builds the launches of one training step (forward, loss, backward, update)."""

    def __init__(self, runner: GraphEpochRunner, batch_size: int, has_w: bool):
        self.r = runner
        self.layers = runner.layers
        self.k_out = runner.spec.k_out
        self.dt = runner.dtype
        self.dev = runner.dev
        self.b = runner._bufs
        self.has_w = has_w
        self.cublas = [runner._gemm_mode(ls, batch_size) for ls in runner.dense]
        self.cublas_layers = sum(mode == "cublas" for mode in self.cublas)
        self.graph_cublas_layers = sum(mode == "cublas-graph" for mode in self.cublas)
        self.first_param = next(q for q, ls in enumerate(self.layers) if _dense(ls))

    # -------------------------------------------------------------- helpers
    def _view(self, key, nb, d):
        return self.b[key][: nb * d].reshape(nb, d)

    def _param(self, buf, off, shape):
        size = int(np.prod(shape))
        return buf[off : off + size].reshape(shape)

    def _launch(self, ops, name, grid, block, args):
        ops.append(self.dev.prepare(name, self.dt, grid, block, args))

    def _launch_1d(self, ops, name, n, args):
        self._launch(ops, name, K.grid_1d(n), K.BLOCK, args)

    def _gemm(self, ops, mode, A, ta, B, tb, C, bias=None, act=0, alpha=0.0, Y=None):
        """``C = op(A) @ op(B) (+ bias)``, and ``Y = act(C)`` when ``Y`` is given."""
        M, Kd = (A.shape[1], A.shape[0]) if ta else A.shape
        N = B.shape[0] if tb else B.shape[1]
        if mode != "own":
            Aop, Bop = (A.T if ta else A), (B.T if tb else B)
            if mode == "cublas":
                ops.append(lambda: self.dev.matmul(Aop, Bop, C))
            else:
                ops.append(self.dev.prepare_gemm(A, ta, B, tb, C))
            if bias is not None or Y is not None:
                args = (bias if bias is not None else C, bias is not None, act, alpha, C)
                args += (C if Y is None else Y, M * N, N)
                self._launch_1d(ops, "bias_act", M * N, args)
            return
        tiles = -(-M // 64) * -(-N // 64)
        name, bm = ("gemm64", 64) if tiles >= self.dev.sm_count else ("gemm32", 32)
        grid = (-(-N // bm), -(-M // bm))
        has_b, has_y = bias is not None, Y is not None
        args = (M, N, Kd, A, A.shape[1], ta, B, B.shape[1], tb, C, N)
        args += (bias if has_b else C, has_b, act, alpha, Y if has_y else C, N, has_y)
        self._launch(ops, name, grid, 256, args)

    # -------------------------------------------------------------- one step
    def step(self, ops, i: int, start: int, nb: int, u_off: int) -> int:
        """Append the launches of step ``i``, over rows ``start : start + nb``."""
        acts, u_off = self._forward(ops, start, nb, u_off)
        self._loss(ops, start, nb)
        self._backward(ops, nb, acts)
        self._update(ops, i)
        return u_off

    def _forward(self, ops, start, nb, u_off):
        b, theta = self.b, self.r.theta
        A = b["X"][start : start + nb]
        acts = []  # (input, Z, Y) per layer
        li = 0
        last = len(self.layers) - 1
        for q, ls in enumerate(self.layers):
            if _dense(ls):
                W = self._param(theta, ls.w_offset, (ls.d_in, ls.d_out))
                bias = None if ls.b_offset < 0 else self._param(theta, ls.b_offset, (ls.d_out,))
                code = K.ACT_CODES[ls.activation]
                rows_out = b["out"][start : start + nb]
                if ls.activation == "linear":
                    Z = rows_out if q == last else self._view(f"Z{q}", nb, ls.d_out)
                    Y = None
                else:
                    Z = self._view(f"Z{q}", nb, ls.d_out)
                    Y = rows_out if q == last else self._view(f"Y{q}", nb, ls.d_out)
                self._gemm(ops, self.cublas[li], A, 0, W, 0, Z, bias, code, ls.alpha, Y)
                li += 1
                Y = Z if Y is None else Y
            else:
                Z = self._view(f"Z{q}", nb, ls.d_out)  # the mask
                Y = self._view(f"Y{q}", nb, ls.d_out)
                U = b["U"][u_off : u_off + nb * ls.d_out]
                u_off += nb * ls.d_out
                keep = 1.0 / (1.0 - ls.rate)
                self._launch_1d(ops, "dropout_fwd", Z.size, (Z.size, U, ls.rate, keep, A, Z, Y))
            acts.append((A, Z, Y))
            A = Y
        return acts, u_off

    def _loss(self, ops, start, nb):
        b, loss = self.b, self.r.loss
        k = self.k_out
        P = b["out"][start : start + nb]
        dP = self._view("G0", nb, k)
        y = b["y"][start : start + nb]
        yi, yf = (y, P) if loss.sparse else (b["loss"], y)
        w = b["w"][start : start + nb] if self.has_w else P
        args = (K.LOSS_CODES[loss.kind], loss.sparse, nb, k, P, yf, yi, w, self.has_w)
        args += (1.0 / nb, b["loss"][start : start + nb], dP)
        self._launch_1d(ops, "loss_rows", nb, args)

    def _backward(self, ops, nb, acts):
        g_cur = "G0"
        li = len(self.cublas) - 1
        theta, grad = self.r.theta, self.r.grad
        for q in range(len(self.layers) - 1, self.first_param - 1, -1):
            ls = self.layers[q]
            A, Z, Y = acts[q]
            gY = self._view(g_cur, nb, ls.d_out)
            if not _dense(ls):
                self._launch_1d(ops, "mul", gY.size, (gY.size, gY, Z, gY))
                continue
            has_b = ls.b_offset >= 0
            if ls.activation != "linear" or has_b:
                db = self._param(grad, ls.b_offset, (ls.d_out,)) if has_b else gY
                code = K.ACT_CODES[ls.activation]
                args = (nb, ls.d_out, Z, Y, gY, code, ls.alpha, gY, db, has_b)
                self._launch(ops, "act_backward_colsum", -(-ls.d_out // 32), 256, args)
            dW = self._param(grad, ls.w_offset, (ls.d_in, ls.d_out))
            self._gemm(ops, self.cublas[li], A, 1, gY, 0, dW)
            if q > self.first_param:
                g_cur = "G1" if g_cur == "G0" else "G0"
                W = self._param(theta, ls.w_offset, (ls.d_in, ls.d_out))
                self._gemm(ops, self.cublas[li], gY, 0, W, 1, self._view(g_cur, nb, ls.d_in))
            li -= 1

    def _update(self, ops, i: int):
        r, h = self.r, self.r.hyper
        n = r.n_params
        wd = float(h.get("weight_decay", 0.0))
        if r.opt.kind == "sgd":
            (vel,) = r.state
            args = (r.grad, r.theta, vel, h["learning_rate"], h["momentum"], h["nesterov"], wd, n)
            self._launch_1d(ops, "sgd", n, args)
            return
        lr, b1, b2 = h["learning_rate"], h["beta_1"], h["beta_2"]
        l2, decay = (0.0, 1.0 - lr * wd) if h["decoupled"] else (wd, 1.0)
        m, v = r.state
        s = self.b["S"][2 * i : 2 * i + 2]  # this step's (lr_t, eps_t), uploaded per epoch
        args = (r.grad, r.theta, m, v, s, b1, b2, l2, decay, n)
        self._launch_1d(ops, "adam_dev", n, args)


_RUNNERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def make_runner(spec, device=None, owner=None):
    """A :class:`GraphEpochRunner` for a model's :class:`~fastnn.spec.ModelSpec`, or None
    when its layers, loss, optimizer or dtype are not ones the graph path trains.

    With ``owner`` (the model), the runner, and so its captured graph, is kept for it and
    handed out again by later ``fit`` calls while the spec's layers, loss, hyper-parameters
    and buffers are unchanged.
    """
    layers = graph_layers(spec)
    if layers is None:
        return None
    opt = spec.optimizer
    hyper = tuple(sorted(opt.hyper.items()))
    buffers = tuple(map(id, (spec.theta, spec.grad, *opt.state)))
    key = (layers, spec.loss, opt.kind, opt.name, hyper, np.dtype(spec.dtype), buffers)
    cached = None if owner is None else _RUNNERS.get(owner)
    if cached is not None and cached[0] == key and (device is None or cached[1].dev is device):
        cached[1].rebind(spec)
        return cached[1]
    runner = GraphEpochRunner(spec, layers, device=device)
    if owner is not None:
        _RUNNERS[owner] = (key, runner)
    return runner
