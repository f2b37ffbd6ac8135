"""CUDA kernels for the CuPy backend, as CuPy ``ElementwiseKernel`` sources.

Nothing here imports CuPy at module import: :func:`get` builds (and caches) a kernel on
first use, and CuPy compiles it on first launch. Every kernel is one launch that would
otherwise be several CuPy elementwise calls (each ~15-35 us from Python on an H100):

- ``bias_act_<act>``: ``Z += b; Y = act(Z)`` (one pass, broadcasting ``b`` over rows).
- ``act_backward_<act>``: ``dZ = dY * act'(Z)`` from ``Z`` and ``Y``.
- ``bce_logits``: per-row stable binary cross-entropy on logits and ``dZ = (s - y) w c``.
- ``adam``: the whole Adam/AdamW update over the flat parameter buffer.
- ``sgd``: SGD with (Nesterov) momentum and L2 decay over the flat buffer.

No ``--use_fast_math``: NaN and Inf propagate exactly as in NumPy.
"""

from __future__ import annotations

import functools

#: CUDA expression of act(z) for each activation; ``alpha`` is leaky_relu's slope
_ACT_FWD = {
    "linear": "z",
    "relu": "z > 0 ? z : (T)0",
    "leaky_relu": "z > 0 ? z : (T)(alpha * z)",
    "sigmoid": "(T)(0.5 * tanh(0.5 * (double)z) + 0.5)",
    "tanh": "tanh(z)",
}
#: CUDA expression of dY * act'(z) given z, y = act(z) and dy
_ACT_BWD = {
    "linear": "dy",
    "relu": "z > 0 ? dy : (T)0",
    "leaky_relu": "z > 0 ? dy : (T)(alpha * dy)",
    "sigmoid": "dy * y * ((T)1 - y)",
    "tanh": "dy * ((T)1 - y * y)",
}

FUSABLE_ACTIVATIONS = tuple(_ACT_FWD)


@functools.cache
def get(name: str):
    """Return the compiled-on-first-launch CuPy kernel called ``name``."""
    import cupy

    if name.startswith("bias_act_"):
        act = name[len("bias_act_") :]
        return cupy.ElementwiseKernel(
            "T b, float64 alpha",
            "T z, T y",
            f"z = z + b; y = {_ACT_FWD[act]};",
            f"fastnn_bias_act_{act}",
        )
    if name.startswith("act_backward_"):
        act = name[len("act_backward_") :]
        return cupy.ElementwiseKernel(
            "T z, T y, T dy, float64 alpha",
            "T dz",
            f"dz = {_ACT_BWD[act]};",
            f"fastnn_act_backward_{act}",
        )
    if name == "bce_logits":
        return cupy.ElementwiseKernel(
            "T z, T t, T w, float64 scale",
            "T loss, T dz",
            """
            double zd = (double)z;
            double l = (zd > 0 ? zd : 0.0) - zd * (double)t + log1p(exp(-fabs(zd)));
            double s = 0.5 * tanh(0.5 * zd) + 0.5;
            loss = (T)(l * (double)w);
            dz = (T)((s - (double)t) * (double)w * scale);
            """,
            "fastnn_bce_logits",
        )
    if name == "adam":
        return cupy.ElementwiseKernel(
            "T g, float64 lr_t, float64 b1, float64 b2, float64 eps_t, float64 l2, float64 decay",
            "T theta, T m, T v",
            """
            double gd = (double)g + l2 * (double)theta;
            double md = b1 * (double)m + (1.0 - b1) * gd;
            double vd = b2 * (double)v + (1.0 - b2) * gd * gd;
            m = (T)md; v = (T)vd;
            theta = (T)((double)theta * decay - lr_t * (double)m / (sqrt((double)v) + eps_t));
            """,
            "fastnn_adam",
        )
    if name == "sgd":
        return cupy.ElementwiseKernel(
            "T g, float64 lr, float64 mom, int32 nesterov, float64 l2",
            "T theta, T vel",
            """
            double gd = (double)g + l2 * (double)theta;
            if (mom != 0.0) {
                double vd = mom * (double)vel - lr * gd;
                vel = (T)vd;
                theta = (T)((double)theta + (nesterov ? mom * vd - lr * gd : vd));
            } else {
                theta = (T)((double)theta - lr * gd);
            }
            """,
            "fastnn_sgd",
        )
    raise KeyError(f"no CUDA kernel called {name!r}")
