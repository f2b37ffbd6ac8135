"""Reading and preparing a command's table in a forked child process while the command
itself loads its compiled kernels: the two are the serial start of ``fastnn tune``
(about 0.3 s each on the 2-core box: pandas' import and the table; Optuna's import,
Numba's and the fold trainer from the cache, and the plot child's fork)
and of ``fastnn train`` (with Numba's set-up of its CPU target, :func:`compiler_ready`),
and use one core each this way.

The child sends back what the command needs (the table's shape, the fitted
Preprocessor, the train and test arrays, and any warnings, re-issued here) and exits.
Where forking is not safe or not possible (not Linux, other threads running), or the
child fails in any way, the work is done here as before, so errors are raised exactly
as without the child.
"""

from __future__ import annotations

import os
import pickle
import signal
import sys
import threading
import warnings

from .cli_shared import _load_training_table, _prepare_rows


def prepared_table(csv, target, drop, missing, task, test_size, seed, meanwhile=None):
    """``((rows, columns), target, drop_cols, source, prep, (X_tr, y_tr), (X_te, y_te))``
    of :func:`~fastnn.cli_shared._load_training_table` and
    :func:`~fastnn.cli_shared._prepare_rows`; ``meanwhile()`` runs in this process while
    a child does that work, where one can be forked."""
    args = (csv, target, drop, missing, task, test_size, seed)
    child = _start(args) if _can_fork() and _small(csv) else None
    try:
        if meanwhile is not None:
            meanwhile()
        got = _collect(child) if child is not None else None
    except BaseException:
        _reap(child, kill=True)
        raise
    return got if got is not None else _in_this_process(*args)


def compiler_ready(backend_name: str) -> None:
    """Numba's one-time set-up of its CPU target (every lowering registry installed:
    0.25-0.3 s on the 2-core box), which the first compiled call would do, done now:
    ``fastnn train`` calls it while the child reads the table. Nothing for another
    backend; a failure here is left for that first call to report."""
    if backend_name != "numba":
        return
    try:
        from numba.core.registry import cpu_target

        cpu_target.target_context.refresh()
    except Exception:
        pass


def _in_this_process(csv, target, drop, missing, task, test_size, seed):
    df, target, drop_cols, source = _load_training_table(csv, target, drop)
    prep, train, test = _prepare_rows(df, target, drop_cols, missing, task, test_size, seed)
    return (len(df), len(df.columns)), target, drop_cols, source, prep, train, test


def _can_fork() -> bool:
    """Linux (fork is the start method there), no other thread (a fork copies none of
    them, and any lock one holds stays held in the child), not switched off by
    ``FASTNN_SERIAL_SETUP=1``."""
    return (
        sys.platform.startswith("linux")
        and hasattr(os, "fork")
        and threading.active_count() == 1
        and os.environ.get("FASTNN_SERIAL_SETUP", "") in ("", "0")
    )


#: files above this size are read in the process: the child's copy of the table and of
#: its arrays on the way back would double the peak memory, and the 0.3-0.4 s saved is
#: nothing next to reading them
CHILD_MAX_BYTES = 64 << 20


def _small(csv) -> bool:
    """The bundled data, or a regular file of at most :data:`CHILD_MAX_BYTES` (anything
    else, such as a missing path, is left to the process to report)."""
    if csv is None:
        return True
    try:
        return os.path.isfile(csv) and os.path.getsize(csv) <= CHILD_MAX_BYTES
    except (OSError, TypeError, ValueError):
        return False


def _start(args):
    """Fork the child; ``{"pid", "fd"}`` (the read end of its pipe), or None if forking
    failed."""
    r, w = os.pipe()
    try:
        pid = os.fork()
    except OSError:
        os.close(r)
        os.close(w)
        return None
    if pid == 0:  # the child: never returns
        os.close(r)
        _child(w, args)
    os.close(w)
    return {"pid": pid, "fd": r}


def _child(w, args) -> None:
    """Do the work, write ``("ok", result, warnings)`` or ``("error",)`` to ``w``, exit
    without Python's teardown (the parent's state is not the child's to clean up)."""
    code = 0
    try:
        signal.signal(signal.SIGINT, signal.SIG_DFL)  # Ctrl-C ends the child at once
        try:
            with warnings.catch_warnings(record=True) as caught:
                result = _in_this_process(*args)
            notes = [(str(c.message), c.category, c.filename, c.lineno) for c in caught]
            payload = pickle.dumps(("ok", result, notes), protocol=pickle.HIGHEST_PROTOCOL)
        except BaseException:  # the parent does the work again and raises the error
            payload = pickle.dumps(("error",))
        with os.fdopen(w, "wb") as f:
            f.write(payload)
    except BaseException:
        code = 1
    finally:
        os._exit(code)


def _collect(child):
    """The child's result (its warnings issued here), or None when it has none."""
    f = os.fdopen(child["fd"], "rb")
    child["fd"] = None  # closed by f from here on
    with f:
        data = f.read()
    _reap(child, kill=False)
    try:
        message = pickle.loads(data)
    except Exception:
        return None
    if message[0] != "ok":
        return None
    _, result, notes = message
    for text, category, filename, lineno in notes:
        warnings.warn_explicit(text, category, filename, lineno)
    return result


def _reap(child, kill: bool) -> None:
    """Wait for the child to end (killed first when ``kill``)."""
    if child is None or child["pid"] is None:
        return
    if child["fd"] is not None:
        os.close(child["fd"])
        child["fd"] = None
    if kill:
        try:
            os.kill(child["pid"], signal.SIGKILL)
        except OSError:
            pass
    try:
        os.waitpid(child["pid"], 0)
    except ChildProcessError:
        pass
    child["pid"] = None
