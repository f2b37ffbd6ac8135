"""A command's plots drawn beside its work, in a forked child process that has
imported matplotlib by the time they are asked for.

``fastnn train --out`` and ``fastnn tune --out`` end with PNG files (history.png,
tune.png, predicted.png). matplotlib's import and each figure are pure Python: about
0.3 s and 0.1-0.2 s on the 2-core box, after the training, on the command's critical
path; a thread beside the refit of ``fastnn tune`` held the GIL the refit's epoch loop
needs (the refit took 0.35-0.5 s instead of 0.15-0.2). Here a child forked before the
training (a single-threaded training leaves the second core free) imports matplotlib at
once and then draws the plots the command sends it, while the command goes on.
:meth:`Plotter.wait` returns once every plot sent so far is written, or raises the
error a plot raised. The child runs at the command's own priority: at idle priority it
could wait behind any other work on the machine while the command waits for it.

Where forking is not safe or not possible (not Linux, other threads running,
``FASTNN_SERIAL_SETUP=1``), or the child fails or dies, the plots are drawn in this
process instead (in one background thread), so the same files are written and the same
errors raised as without the child. A plot job is a module-level function and its
arguments (sent by pickle).
"""

from __future__ import annotations

import os
import queue
import signal
import threading


def start(enabled: bool = True) -> Plotter:
    """A :class:`Plotter` (``enabled=False``: one that has nothing to do, for a command
    writing no files); the child is forked now where that is safe."""
    if enabled and _can_fork():
        child = _fork()
        if child is not None:
            return Plotter(child)
    return Plotter(None)


def _can_fork() -> bool:
    from .cli_prepare import _can_fork as can

    return can()


class Plotter:
    """Plot jobs run by a forked child (``child``: its pid and pipe) or, without one,
    by a thread of this process started at the first job. A context: at its end the
    jobs sent are waited for (an error in the ``with`` body waits without raising, so
    nothing is written after a failed command's output is cleaned up), then the child
    or thread ends."""

    def __init__(self, child):
        self._child = child
        self._sent: list = []  # jobs sent to the child, not yet answered
        self._errors: list = []
        self._thread = None
        self._jobs: queue.Queue = queue.Queue()

    @property
    def forked(self) -> bool:
        """True while the plots go to a child process."""
        return self._child is not None

    def submit(self, fn, *args) -> None:
        """Draw ``fn(*args)`` beside the caller."""
        if self._child is not None:
            try:
                self._child["conn"].send((fn, args))
                self._sent.append((fn, args))
                return
            except Exception:  # the child is gone (or the job will not pickle)
                self._lost_child()
        self._in_thread(fn, args)

    def wait(self) -> None:
        """Return once every job sent so far is done; raise the first error one raised
        (once)."""
        while self._sent:
            try:
                reply = self._child["conn"].recv()
            except Exception:  # the child died: its jobs are drawn here
                self._lost_child()
                break
            self._sent.pop(0)
            if reply is not None:
                self._errors.append(reply)
        if self._thread is not None:
            self._jobs.join()
        if self._errors:
            error, self._errors = self._errors[0], []
            raise error

    def close(self) -> None:
        """Wait for the jobs sent (without raising their errors) and end the child or the
        thread."""
        try:
            self.wait()
        except BaseException:
            pass
        if self._child is not None:
            _end(self._child)
            self._child = None
        if self._thread is not None:
            self._jobs.put(None)
            self._thread.join()
            self._thread = None

    def __enter__(self) -> Plotter:
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        try:
            if exc_type is None:
                self.wait()
        finally:
            self.close()
        return False

    def _lost_child(self) -> None:
        """The child no longer answers: its unanswered jobs, and the ones to come, run in
        this process."""
        pending, self._sent = self._sent, []
        _end(self._child, kill=True)
        self._child = None
        for fn, args in pending:
            self._in_thread(fn, args)

    def _in_thread(self, fn, args) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name="fastnn-plots", daemon=True)
            self._thread.start()
        self._jobs.put((fn, args))

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            try:
                if job is None:
                    return
                fn, args = job
                try:
                    fn(*args)
                except BaseException as exc:  # raised by wait(), in the caller's thread
                    self._errors.append(exc)
            finally:
                self._jobs.task_done()


def _fork():
    """Fork the child: ``{"pid", "conn"}``, or None if that failed."""
    from multiprocessing import Pipe

    ours, theirs = Pipe()
    try:
        pid = os.fork()
    except OSError:
        ours.close()
        theirs.close()
        return None
    if pid == 0:  # the child: never returns
        ours.close()
        _child(theirs)
    theirs.close()
    return {"pid": pid, "conn": ours}


def _child(conn) -> None:
    """Import matplotlib, then draw each job received and answer None or the error;
    exit at None or when the command's end of the pipe closes, without Python's
    teardown (the parent's state is not the child's to clean up)."""
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the command decides about Ctrl-C
        try:
            from matplotlib import figure  # noqa: F401
            from matplotlib.backends import backend_agg  # noqa: F401
        except Exception:  # each job then raises the error itself
            pass
        while True:
            try:
                job = conn.recv()
            except Exception:
                break
            if job is None:
                break
            fn, args = job
            try:
                fn(*args)
                reply = None
            except BaseException as exc:
                reply = exc
            try:
                conn.send(reply)
            except Exception:  # an error that does not pickle: its text
                conn.send(RuntimeError(f"{type(reply).__name__}: {reply}"))
    finally:
        os._exit(0)


def _end(child, kill: bool = False) -> None:
    """Tell the child to exit (or kill it) and reap it."""
    if child is None:
        return
    conn, pid = child["conn"], child["pid"]
    if not kill:
        try:
            conn.send(None)
        except Exception:
            kill = True
    if kill:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    try:
        conn.close()
    except OSError:
        pass
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass
