"""Keeping work when a run is interrupted or fails.

- :class:`GracefulInterrupt`: the first Ctrl-C (SIGINT) asks the work to stop at a safe
  point instead of raising; a second one raises ``KeyboardInterrupt`` at once.
- :class:`StopOnInterrupt`: the callback that turns that request into
  ``model.stop_training`` at the end of the current epoch.
- :class:`LastEpoch`: the callback ``fit`` uses to put back the weights and optimizer
  state of the last completed epoch when a ``KeyboardInterrupt`` cuts an epoch short.
- :class:`OutputFolder` and :func:`guard_command`: a failed command leaves nothing in its
  output folder that was not there before.

SIGINT handlers can only be installed in the main thread, so a guard entered anywhere
else installs nothing; models trained in worker threads still see the main thread's
guard (it is process-wide, like the signal), which is what a tuner running trials in
threads needs: one Ctrl-C stops every trial at its next epoch end.
"""

from __future__ import annotations

import functools
import os
import signal
import threading

from .callbacks import Callback
from .errors import ConfigError

_NOTICE = (
    "fastnn: interrupted: stopping at the end of this epoch, then evaluating and saving "
    "what was trained (Ctrl-C again quits at once, without saving)"
)

_active: GracefulInterrupt | None = None


class GracefulInterrupt:
    """``with GracefulInterrupt() as interrupt:`` makes the first Ctrl-C a request.

    Once :meth:`arm` was called (``StopOnInterrupt`` does it when training begins), the
    first SIGINT sets :attr:`requested`, prints ``notice`` on stderr and puts the
    previous handler back, so a second SIGINT raises ``KeyboardInterrupt`` at once
    (inside a compiled Numba epoch, Python sees it when that call returns). Before
    :meth:`arm`, SIGINT behaves as before: there is nothing to keep yet.

    Nothing is installed outside the main thread or when SIGINT is ignored or not
    handled by Python (``SIG_IGN``/``SIG_DFL``). A guard entered while another one is
    active returns the active one, so nested commands share one request.
    """

    def __init__(self, notice: str = _NOTICE):
        self.notice = notice
        self.requested = False
        self.armed = False
        self._previous = None
        self._owner = False

    def arm(self) -> None:
        """From now on the first Ctrl-C is a stop request."""
        self.armed = True

    def __enter__(self) -> GracefulInterrupt:
        global _active
        if _active is not None:
            return _active
        if threading.current_thread() is not threading.main_thread():
            return self  # inert: only the main thread receives signals
        previous = signal.getsignal(signal.SIGINT)
        if callable(previous):
            self._previous = previous
            signal.signal(signal.SIGINT, self._handle)
        self._owner = True
        _active = self
        return self

    def __exit__(self, *exc) -> bool:
        global _active
        if self._owner:
            if self._previous is not None and signal.getsignal(signal.SIGINT) == self._handle:
                signal.signal(signal.SIGINT, self._previous)
            _active = None
            self._owner = False
        return False

    def _handle(self, signum, frame):
        if not self.armed:
            return self._previous(signum, frame)
        self.requested = True
        signal.signal(signal.SIGINT, self._previous)  # the next Ctrl-C quits at once
        # os.write, not print: a buffered stream may be mid-write (the progress bar)
        os.write(2, ("\n" + self.notice + "\n").encode())
        return None


def active_interrupt() -> GracefulInterrupt:
    """The active :class:`GracefulInterrupt`, or an inert one (never requested)."""
    return _active if _active is not None else GracefulInterrupt()


class StopOnInterrupt(Callback):
    """Stop ``fit`` at the end of the epoch in which Ctrl-C was pressed.

    Uses ``guard`` (default: the active :class:`GracefulInterrupt`, looked up when
    training begins) and arms it. The stop reason is ``"interrupted at epoch N"``
    (1-based: the last epoch completed and kept).
    """

    def __init__(self, guard: GracefulInterrupt | None = None):
        self.guard = guard

    def on_train_begin(self, logs=None):
        if self.guard is None:
            self.guard = active_interrupt()
        self.guard.arm()

    def on_epoch_end(self, epoch, logs=None):
        if self.guard is not None and self.guard.requested:
            self.model.stop_training = True
            if self.model.stop_reason is None:
                self.model.stop_reason = f"interrupted at epoch {epoch + 1}"


class LastEpoch(Callback):
    """Keeps a copy of the weights and optimizer state at the end of every completed
    epoch, so ``fit`` can :meth:`restore` them when a ``KeyboardInterrupt`` arrives in
    the middle of an epoch (possibly mid-update, where the weights would be a mix of
    two steps). ``fit`` adds one last, after the callbacks that may change the weights."""

    _saved = None

    def on_train_begin(self, logs=None):
        self._keep(0)

    def on_epoch_end(self, epoch, logs=None):
        self._keep(epoch + 1)

    def _keep(self, epochs_done: int) -> None:
        m = self.model
        be, opt = m.backend, m.optimizer
        state = {k: be.copy(v) for k, v in opt.state.items()}
        # one assignment: an interrupt never leaves half a snapshot behind
        self._saved = (epochs_done, be.copy(m.theta), state, opt.iterations)

    def restore(self, history) -> None:
        """Put back the last snapshot and cut ``history`` to the epochs it covers."""
        if self._saved is None:
            return
        done, theta, state, iterations = self._saved
        m = self.model
        m.theta[...] = theta
        for k, v in state.items():
            m.optimizer.state[k][...] = v
        m.optimizer.iterations = iterations
        del history.epoch[done:]
        for values in history.history.values():
            del values[done:]
        kept = f"the weights from the end of epoch {done}" if done else "the initial weights"
        m.stop_reason = history.stop_reason = f"KeyboardInterrupt in epoch {done + 1}; kept {kept}"


class OutputFolder:
    """``with OutputFolder(path):`` a run's output folder, left clean when the run fails.

    On entry the folder (and any missing parent) is created at once, so a bad path fails
    before any work. When the block raises (an error, ``KeyboardInterrupt``), the files
    that appeared in the folder during the run are removed, and so are the folders this
    run created, if empty. Files that were there before are never touched (a file this
    run overwrote keeps its new, complete content: every writer replaces files
    atomically). ``path=None`` does nothing.
    """

    def __init__(self, path, option: str = "--out"):
        self.path = None if path is None else os.fspath(path)
        self.option = option
        self._created: list[str] = []
        self._before: set[str] = set()

    def __enter__(self) -> OutputFolder:
        path = self.path
        if path is None:
            return self
        if os.path.exists(path) and not os.path.isdir(path):
            raise ConfigError(f"{self.option} {path!r} exists and is not a folder")
        missing, d = [], os.path.abspath(path)
        while not os.path.exists(d):
            missing.append(d)
            d = os.path.dirname(d)
        try:
            os.makedirs(path, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                f"cannot create the {self.option} folder {path!r}: {exc.strerror or exc}"
            ) from None
        self._created = missing  # deepest first
        self._before = set(os.listdir(path))
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is None or self.path is None:
            return False
        try:
            new = set(os.listdir(self.path)) - self._before
        except OSError:
            new = set()
        for name in new:
            p = os.path.join(self.path, name)
            if os.path.islink(p) or not os.path.isdir(p):
                try:
                    os.remove(p)
                except OSError:
                    pass
        for d in self._created:
            try:
                os.rmdir(d)
            except OSError:  # not empty: something else lives there now
                break
        return False


def guard_command(out_param: str):
    """Decorator for a command function: the folder in keyword ``out_param`` is an
    :class:`OutputFolder`, and Ctrl-C is a :class:`GracefulInterrupt` for the whole
    call (the command passes :class:`StopOnInterrupt` to ``fit`` and reads
    :func:`active_interrupt` to report the stop)."""

    def decorate(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with OutputFolder(kwargs.get(out_param)), GracefulInterrupt():
                return fn(*args, **kwargs)

        return wrapper

    return decorate
