"""The compiled copy of the per-layer epoch, written out for one model.

:func:`fastnn.training.train_epoch` runs five steps per batch through the layers' Python
objects. For a model the Numba backend can fuse, :func:`epoch_source` writes those same
five steps as the straight-line source of one Numba function for exactly this model:
per layer one call of a small kernel from :mod:`fastnn.kernels.cpu` (``dense_forward_t``,
``relu_forward``, ``bce_logits_loss``, ``adam_step``, ...), every view of the weights and
the workspace made once per call. Only the kernels the model uses get compiled (a cold
start compiles a handful of small functions, not a generic epoch with every activation,
loss and optimizer in it), and nothing dispatches on layer kinds at run time.

The source goes to a file in the cache folder (named by its hash, written once), so
Numba's on-disk cache works for it as for any module: the next process loads the
compiled epoch instead of compiling it. Print :func:`epoch_source` to read what runs.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
import tempfile

#: bump when the generated code changes meaning (the hash covers the text anyway)
_VERSION = 1
_ACT = ("linear", "relu", "leaky_relu", "sigmoid", "tanh", "softmax")  # by kernel code
_LOSS = ("bce_logits_loss", "bce_prob_loss", "ce_logits_loss", "ce_prob_loss", "mse_loss")
_OPT = ("sgd_step", "adam_step", "rmsprop_step")
_loaded: dict = {}
#: flags are passed as run-time booleans, not literals: a literal True and False would
#: compile each kernel twice
_B = {True: "yes", False: "no"}


def _fwd(code: int) -> str:
    return "softmax_forward_t" if _ACT[code] == "softmax" else f"{_ACT[code]}_forward"


def _bwd(code: int) -> str:
    return "softmax_backward_t" if _ACT[code] == "softmax" else f"{_ACT[code]}_backward"


class _Writer:
    """Names every array the epoch uses and writes the lines of each step."""

    def __init__(self, k, plan):
        self.k, self.p = k, plan
        self.views: dict[str, str] = {}  # name -> expression in ws/G0/G1/LS and nb
        self.kernels: set[str] = {"rows_to_cols", "cols_to_rows"}

    def view(self, name, buf, off, d):
        self.views[name] = f"{buf}[{off} * nb : {off + d} * nb].reshape(({d}, nb))"
        return name

    def layout(self):
        """Per op its input ``A``, ``Z`` (dropout: the mask), ``Y``; backward ``gY``/``gX``."""
        k, ops = self.k, self.p.ops_units
        A, Z, Y = [], [], []
        prev = self.view("Xb", "ws", 0, self.p.d_in)
        for q in range(ops.shape[0]):
            kind, code, dout = ops[q, k.C_KIND], ops[q, k.C_ACT], int(ops[q, k.C_DOUT])
            A.append(prev)
            if kind == k.OP_DENSE:
                Z.append(self.view(f"Z{q}", "ws", int(ops[q, k.C_Z]), dout))
                y = (
                    Z[-1]
                    if code == k.LINEAR
                    else self.view(f"Y{q}", "ws", int(ops[q, k.C_Y]), dout)
                )
            elif kind == k.OP_ACT:
                Z.append(prev)
                y = self.view(f"Y{q}", "ws", int(ops[q, k.C_Y]), dout)
            else:
                Z.append(self.view(f"M{q}", "ws", int(ops[q, k.C_Z]), dout))
                y = self.view(f"Y{q}", "ws", int(ops[q, k.C_Y]), dout)
            Y.append(y)
            prev = y
        self.A, self.Z, self.Y = A, Z, Y
        self.first = next(q for q in range(ops.shape[0]) if ops[q, k.C_KIND] == k.OP_DENSE)
        self.gY, self.gX, cur = {}, {}, 0
        for q in range(ops.shape[0] - 1, self.first - 1, -1):
            bufs = ("G0", "G1") if cur == 0 else ("G1", "G0")
            self.gY[q] = self.view(f"gY{q}", bufs[0], 0, int(ops[q, k.C_DOUT]))
            if ops[q, k.C_KIND] == k.OP_DENSE and q > self.first:
                self.gX[q] = self.view(f"gX{q}", bufs[1], 0, int(ops[q, k.C_DIN]))
                cur = 1 - cur
        kk = self.p.k_out
        last_y = int(ops[-1, k.C_Y])
        if kk == 1:  # (1, nb) and (nb, 1) share their layout: the loss reads P in place
            self.views["Pr"] = f"ws[{last_y} * nb : {last_y + 1} * nb].reshape((nb, 1))"
            self.views["gPr"] = "G0[0:nb].reshape((nb, 1))"
        else:
            self.views["Pr"] = f"LS[0 : {kk} * nb].reshape((nb, {kk}))"
            self.views["gPr"] = f"LS[{kk} * nb : {2 * kk} * nb].reshape((nb, {kk}))"

    def param_views(self):
        k, ops, out = self.k, self.p.ops_units, []
        for q in range(ops.shape[0]):
            if ops[q, k.C_KIND] != k.OP_DENSE:
                continue
            din, dout = int(ops[q, k.C_DIN]), int(ops[q, k.C_DOUT])
            wo, bo = int(ops[q, k.C_WOFF]), int(ops[q, k.C_BOFF])
            b = f"{bo}:{bo + dout}" if bo >= 0 else f"{wo}:{wo + 1}"
            out += [
                f"W{q} = theta[{wo}:{wo + din * dout}].reshape(({din}, {dout}))",
                f"dW{q} = grad[{wo}:{wo + din * dout}].reshape(({din}, {dout}))",
                f"b{q} = theta[{b}]",
                f"db{q} = grad[{b}]",
            ]
        return out

    def forward(self):
        k, ops, out = self.k, self.p.ops_units, []
        for q in range(ops.shape[0]):
            kind, code = ops[q, k.C_KIND], int(ops[q, k.C_ACT])
            A, Z, Y, alpha = self.A[q], self.Z[q], self.Y[q], f"opf[{q}, {k.F_ALPHA}]"
            if kind == k.OP_DENSE:
                has_b = bool(ops[q, k.C_BOFF] >= 0)
                out.append(f"dense_forward_t(W{q}, b{q}, {_B[has_b]}, {A}, {Z})")
                self.kernels.add("dense_forward_t")
                if code != k.LINEAR:
                    out.append(f"{_fwd(code)}({Z}, {alpha}, {Y})")
                    self.kernels.add(_fwd(code))
            elif kind == k.OP_ACT:
                out.append(f"{_fwd(code)}({A}, {alpha}, {Y})")
                self.kernels.add(_fwd(code))
            else:
                rate, keep = f"opf[{q}, {k.F_RATE}]", f"opf[{q}, {k.F_KEEP}]"
                out.append(f"dropout_forward_t({A}, U, u_pos, {rate}, {keep}, {Z}, {Y})")
                out.append(f"u_pos += nb * {int(ops[q, k.C_DOUT])}")
                self.kernels.add("dropout_forward_t")
        return out

    def loss(self):
        p, P, out = self.p, self.Y[-1], []
        out.append(f"cols_to_rows({P}, out, start)")
        if p.k_out != 1:
            out.append(f"cols_to_rows({P}, Pr, 0)")
        fn = _LOSS[p.loss_code]
        self.kernels.add(fn)
        out.append(
            f"total += {fn}(Pr, yf[start:stop], yi[start:stop], w[start:stop], has_w, "
            f"{_B[bool(p.sparse)]}, lc, t(1.0 / nb), gPr)"
        )
        if p.k_out != 1:
            out.append(f"rows_to_cols(gPr, {self.gY[len(self.Y) - 1]})")
        return out

    def backward(self):
        k, ops, out = self.k, self.p.ops_units, []
        for q in range(ops.shape[0] - 1, self.first - 1, -1):
            kind, code = ops[q, k.C_KIND], int(ops[q, k.C_ACT])
            A, Z, Y, gY, alpha = (
                self.A[q],
                self.Z[q],
                self.Y[q],
                self.gY[q],
                f"opf[{q}, {k.F_ALPHA}]",
            )
            if kind == k.OP_DENSE:
                if code != k.LINEAR:
                    out.append(f"{_bwd(code)}({Z}, {Y}, {gY}, {alpha}, {gY})")
                    self.kernels.add(_bwd(code))
                has_b = bool(ops[q, k.C_BOFF] >= 0)
                need = q > self.first
                gX = self.gX[q] if need else gY
                out.append(
                    f"dense_backward_t(W{q}, {A}, {gY}, dW{q}, db{q}, {_B[has_b]}, {gX}, {_B[need]})"
                )
                self.kernels.add("dense_backward_t")
            elif kind == k.OP_ACT:
                out.append(f"{_bwd(code)}({A}, {Y}, {gY}, {alpha}, {gY})")
                self.kernels.add(_bwd(code))
            else:
                out.append(f"scale_by({gY}, {Z})")
                self.kernels.add("scale_by")
        return out


def kernels_used(k, plan) -> list[str]:
    """The :mod:`fastnn.kernels.cpu` kernels the compiled epoch of ``plan`` calls."""
    w = _Writer(k, plan)
    w.layout()
    w.forward(), w.loss(), w.backward()
    return sorted(w.kernels | {_OPT[plan.opt_code]})


def epoch_source(k, plan, cache: bool = True) -> str:
    """The Python source of the compiled epoch for ``plan`` (a :class:`Plan`)."""
    w = _Writer(k, plan)
    w.layout()
    params, fwd, loss, bwd = w.param_views(), w.forward(), w.loss(), w.backward()
    opt = _OPT[plan.opt_code]
    w.kernels.add(opt)
    names = list(w.views)
    ind = "\n" + " " * 8

    def block(lines):
        return ind + ind.join(lines)

    views = (chr(10) + "    ").join(f"{n} = {w.views[n]}" for n in names)
    kernels = hashlib.sha256(repr(k.source_stamp()).encode()).hexdigest()[:16]
    return f'''"""Generated by fastnn.backends.numba_compile (version {_VERSION}): one epoch of
{plan.n_dense} Dense layer(s), {_LOSS[plan.loss_code]}, {opt}. Do not edit.
Built on the kernels {kernels} (fastnn.kernels.cpu.source_stamp: a new file, so a
fresh compile, when they change)."""

from numba import njit

from fastnn.kernels.cpu import {", ".join(sorted(w.kernels))}


@njit(cache={bool(cache)}, nogil=True, error_model="numpy")
def train_epoch(X, yf, yi, w, has_w, out, theta, grad, s1, s2, ws, G0, G1, LS, U, opf,
                lc, hp, lr_ts, eps_ts, batch_size, b_first, b_last):
    """Train batches ``b_first .. b_last-1``, all of the same size: the five steps of
    each, for this model. Returns the loss summed over their rows."""
    n = X.shape[0]
    t = theta.dtype.type
    yes = n >= 0  # run-time booleans (see numba_compile._B)
    no = not yes
    # the weights and their gradients: views of the flat theta and grad
    {(chr(10) + "    ").join(params)}
    # every activation and gradient of a batch of nb rows, feature-major
    nb = min(batch_size, n - b_first * batch_size)
    {views}
    total = 0.0
    u_pos = 0
    for b in range(b_first, b_last):
        # 1. take a batch (transposed: the layers work feature-major)
        start = b * batch_size
        stop = start + nb
        rows_to_cols(X[start:stop], Xb)
        # 2. forward-propagate{block(fwd)}
        # 3. measure the error (the outputs are kept, row-major, in out){block(loss)}
        # 4. backpropagate, last layer first{block(bwd)}
        # 5. update every weight
        {opt}(theta, grad, s1, s2, hp, lr_ts[b - b_first], eps_ts[b - b_first])
    return total
'''


def _folder() -> str | None:
    """A writable folder for the generated files, next to Numba's cache."""
    import numba

    root = numba.config.CACHE_DIR  # NUMBA_CACHE_DIR
    if not root:
        from numba.misc.appdirs import AppDirs

        root = AppDirs("fastnn", appauthor=False).user_cache_dir
    for base in (root, tempfile.gettempdir()):
        folder = os.path.join(base, "fastnn-epochs")
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError:
            continue
        if os.access(folder, os.W_OK):
            return folder
    return None


def _write_once(folder: str, name: str, src: str) -> str:
    """Write ``src`` to ``folder/name`` unless it is there already (Numba's cache index is
    keyed on the file's time stamp: rewriting it would throw the cache away)."""
    path = os.path.join(folder, name)
    if not os.path.exists(path):
        fd, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(src)
        os.replace(tmp, path)
    return path


def compiled_epoch(k, plan):
    """The model's compiled ``train_epoch`` (compiled on its first call, or loaded from
    Numba's cache)."""
    src = epoch_source(k, plan)
    key = hashlib.sha1(src.encode()).hexdigest()[:16]
    fn = _loaded.get(key)
    if fn is not None:
        return fn
    modname = f"fastnn.kernels._epoch_{key}"
    folder = _folder()
    if folder is None:  # nowhere to write: compile in memory, every process
        ns: dict = {"__name__": modname}
        exec(compile(epoch_source(k, plan, cache=False), modname, "exec"), ns)  # noqa: S102
        fn = ns["train_epoch"]
    else:
        path = _write_once(folder, f"epoch_{key}.py", src)
        spec = importlib.util.spec_from_file_location(modname, path)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[modname] = mod
        spec.loader.exec_module(mod)
        fn = mod.train_epoch
    _loaded[key] = fn
    return fn
