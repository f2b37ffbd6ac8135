"""Typed errors raised by fastnn.

Every error fastnn raises on bad input is a subclass of :class:`FastnnError`, and of
the built-in exception a Python user would expect (``ValueError`` or ``TypeError``), so
``except ValueError`` keeps working. The message always names the problem: the column
and first bad rows, the expected and the given shape, or the offending value. The CLI
prints these as one line on stderr and exits with code 2.
"""

from __future__ import annotations

import difflib


class FastnnError(Exception):
    """Base class of every error fastnn raises on purpose."""


class ShapeError(FastnnError, ValueError):
    """An array has the wrong shape (the message gives the expected and the given one)."""


class DataError(FastnnError, ValueError):
    """Training or prediction data is unusable: NaN/inf, bad labels, empty, strings..."""


class CSVError(DataError):
    """A CSV file cannot be turned into a feature matrix (names the column and rows)."""


class ConfigError(FastnnError, ValueError):
    """A bad argument value: epochs <= 0, a learning rate of -1, an unknown name."""


class UnknownNameError(ConfigError):
    """An unknown activation, loss, optimizer, metric, initializer or backend name."""

    def __init__(self, kind: str, name: object, choices):
        choices = sorted(choices)
        hint = difflib.get_close_matches(str(name), choices, n=1)
        msg = f"unknown {kind} {name!r}; choose one of: {', '.join(choices)}"
        if hint:
            msg += f" (did you mean {hint[0]!r}?)"
        super().__init__(msg)
        self.kind = kind
        self.name = name
        self.choices = choices


class BackendUnavailableError(FastnnError, RuntimeError):
    """The requested backend cannot run on this machine (the message says why)."""


class BackendMismatchError(FastnnError, TypeError):
    """An array from one backend was handed to a model living on another."""


class ModelFileError(FastnnError, ValueError):
    """A model file is missing, truncated, malformed, or does not match its architecture."""


class NotBuiltError(FastnnError, RuntimeError):
    """The model has no weights yet: call fit/build, or pass input_dim to the first layer."""


class NonFiniteLossError(FastnnError, FloatingPointError):
    """Training produced a NaN or infinite loss."""
