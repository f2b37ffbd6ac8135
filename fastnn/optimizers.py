"""Optimizers: move every weight against its gradient, in one call per step.

The model keeps all parameters in one flat buffer ``theta`` and all gradients in
``grad``; an optimizer keeps its state (velocity, moments) as flat buffers of the same
size and calls one fused backend update per step.
"""

from __future__ import annotations

import math

import numpy as np

from .errors import ConfigError, UnknownNameError
from .spec import OptimizerSpec, adam_step_scalars


def _positive(name: str, value, allow_zero: bool = False) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        raise ConfigError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {value!r}")
    return v


def _fraction(name: str, value) -> float:
    v = _positive(name, value, allow_zero=True)
    if v >= 1:
        raise ConfigError(f"{name} must be in [0, 1), got {value!r}")
    return v


class Optimizer:
    """Base class: ``step(be, theta, grad)`` updates ``theta`` in place."""

    name = "optimizer"
    state_names: tuple[str, ...] = ()

    def __init__(self, learning_rate: float, weight_decay: float = 0.0):
        self.learning_rate = _positive("learning_rate", learning_rate)
        self.weight_decay = _positive("weight_decay", weight_decay, allow_zero=True)
        self.iterations = 0
        self.state: dict = {}

    def build(self, be, size: int, dtype) -> None:
        """Allocate zeroed state buffers on backend ``be`` (once per model)."""
        self.state = {k: be.zeros((size,), dtype) for k in self.state_names}

    def ensure_state(self, be, size: int, dtype) -> None:
        """:meth:`build` the state unless it already holds buffers of ``size``."""
        if not self.state or next(iter(self.state.values())).size != size:
            self.build(be, size, dtype)

    def move(self, src, dst) -> None:
        """Move the state buffers from backend ``src`` to ``dst`` (used by ``model.to``)."""
        self.state = {k: dst.asarray(src.to_numpy(v)) for k, v in self.state.items()}

    def step(self, be, theta, grad) -> None:
        """One update of every parameter."""
        raise NotImplementedError

    # ------------------------------------------------------------ for compiled paths
    #: the kind a compiled path knows this optimizer by (None: it has no compiled form)
    kind: str | None = None

    def hyper(self) -> dict:
        """The hyper-parameters a compiled update needs (see :class:`OptimizerSpec`)."""
        return {"learning_rate": self.learning_rate, "weight_decay": self.weight_decay}

    def step_scalars(self, count: int):
        """``(lr_t, eps_t)`` float64 arrays for the next ``count`` steps (the step size
        and epsilon each step uses; constant unless the optimizer corrects them)."""
        eps = getattr(self, "epsilon", 0.0)
        return np.full(count, self.learning_rate), np.full(count, eps)

    def advance(self, count: int) -> None:
        """Record that a compiled path ran ``count`` steps of this optimizer."""
        self.iterations += int(count)

    def spec(self) -> OptimizerSpec | None:
        """This optimizer's self-description, or None when it has no compiled form (a
        user subclass may change :meth:`step`, so only the built-in classes have one)."""
        if self.kind is None or type(self) not in OPTIMIZERS.values():
            return None
        state = tuple(self.state[k] for k in self.state_names)
        return OptimizerSpec(
            self.kind, self.name, self.hyper(), state, self.step_scalars, self.advance
        )

    def get_config(self) -> dict:
        """Constructor arguments, plus the name."""
        return {
            "name": self.name,
            "learning_rate": self.learning_rate,
            "weight_decay": self.weight_decay,
        }

    def __repr__(self):
        cfg = self.get_config()
        cfg.pop("name")
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in cfg.items())})"


class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum and Nesterov momentum."""

    name = "sgd"
    kind = "sgd"
    state_names = ("velocity",)

    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False, weight_decay=0.0):
        super().__init__(learning_rate, weight_decay)
        self.momentum = _fraction("momentum", momentum)
        self.nesterov = bool(nesterov)

    def step(self, be, theta, grad):
        """``v = m v - lr g; theta += v`` (Nesterov: ``theta += m v - lr g``)."""
        self.iterations += 1
        be.sgd_update(
            theta,
            grad,
            self.state["velocity"],
            self.learning_rate,
            self.momentum,
            self.nesterov,
            self.weight_decay,
        )

    def get_config(self):
        """Constructor arguments."""
        return {**super().get_config(), "momentum": self.momentum, "nesterov": self.nesterov}

    def hyper(self):
        """Learning rate, weight decay, momentum, nesterov."""
        return {**super().hyper(), "momentum": self.momentum, "nesterov": self.nesterov}


class Adam(Optimizer):
    """Adam (Kingma & Ba) with bias correction; ``weight_decay`` adds L2 to the gradient."""

    name = "adam"
    kind = "adam"
    state_names = ("m", "v")
    decoupled = False

    def __init__(
        self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, weight_decay=0.0
    ):
        super().__init__(learning_rate, weight_decay)
        self.beta_1 = _fraction("beta_1", beta_1)
        self.beta_2 = _fraction("beta_2", beta_2)
        self.epsilon = _positive("epsilon", epsilon)

    def step(self, be, theta, grad):
        """``theta -= lr * m_hat / (sqrt(v_hat) + eps)``."""
        self.iterations += 1
        be.adam_update(
            theta,
            grad,
            self.state["m"],
            self.state["v"],
            self.learning_rate,
            self.beta_1,
            self.beta_2,
            self.epsilon,
            self.iterations,
            self.weight_decay,
            self.decoupled,
        )

    def get_config(self):
        """Constructor arguments."""
        return {
            **super().get_config(),
            "beta_1": self.beta_1,
            "beta_2": self.beta_2,
            "epsilon": self.epsilon,
        }

    def hyper(self):
        """Learning rate, weight decay, the betas, and whether the decay is decoupled."""
        return {
            **super().hyper(),
            "beta_1": self.beta_1,
            "beta_2": self.beta_2,
            "epsilon": self.epsilon,
            "decoupled": self.decoupled,
        }

    def step_scalars(self, count):
        """Bias-corrected ``(lr_t, eps_t)`` of steps ``iterations+1 .. iterations+count``."""
        t = np.arange(self.iterations + 1, self.iterations + 1 + count, dtype=np.float64)
        return adam_step_scalars(self.learning_rate, self.beta_1, self.beta_2, self.epsilon, t)


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter): ``theta *= 1 - lr*wd``."""

    name = "adamw"
    decoupled = True

    def __init__(
        self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, weight_decay=0.004
    ):
        super().__init__(learning_rate, beta_1, beta_2, epsilon, weight_decay)


class RMSprop(Optimizer):
    """RMSprop: divide the step by a running root-mean-square of the gradients."""

    name = "rmsprop"
    kind = "rmsprop"
    state_names = ("sq", "velocity")

    def __init__(self, learning_rate=0.001, rho=0.9, epsilon=1e-7, momentum=0.0, weight_decay=0.0):
        super().__init__(learning_rate, weight_decay)
        self.rho = _fraction("rho", rho)
        self.epsilon = _positive("epsilon", epsilon)
        self.momentum = _fraction("momentum", momentum)

    def step(self, be, theta, grad):
        """``s = rho s + (1-rho) g^2; theta -= lr g / (sqrt(s) + eps)``."""
        self.iterations += 1
        be.rmsprop_update(
            theta,
            grad,
            self.state["sq"],
            self.state["velocity"],
            self.learning_rate,
            self.rho,
            self.epsilon,
            self.momentum,
            self.weight_decay,
        )

    def get_config(self):
        """Constructor arguments."""
        return {
            **super().get_config(),
            "rho": self.rho,
            "epsilon": self.epsilon,
            "momentum": self.momentum,
        }

    def hyper(self):
        """Learning rate, weight decay, rho, epsilon, momentum."""
        return {
            **super().hyper(),
            "rho": self.rho,
            "epsilon": self.epsilon,
            "momentum": self.momentum,
        }


OPTIMIZERS = {"sgd": SGD, "adam": Adam, "adamw": AdamW, "rmsprop": RMSprop}


def get(optimizer) -> Optimizer:
    """Return an :class:`Optimizer` from a name, a config dict, or an instance."""
    if isinstance(optimizer, Optimizer):
        return optimizer
    if isinstance(optimizer, dict):
        cfg = dict(optimizer)
        name = cfg.pop("name", None)
        if name not in OPTIMIZERS:
            raise UnknownNameError("optimizer", name, OPTIMIZERS)
        return OPTIMIZERS[name](**cfg)
    if isinstance(optimizer, str) and optimizer.lower() in OPTIMIZERS:
        return OPTIMIZERS[optimizer.lower()]()
    raise UnknownNameError("optimizer", optimizer, OPTIMIZERS)
