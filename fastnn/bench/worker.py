"""Contenders in their own long-lived process, with their own environment.

Keras fixes its backend at import, and OpenBLAS reads ``OPENBLAS_CORETYPE`` when NumPy
loads it: a second Keras backend, or fastnn with those variables unset, has to train in
another process. :func:`in_worker` turns any ``prepare(task)`` function (named as
``"module:function"``, so this module imports no contender) into one that runs in a
worker; the parent drives it one ``run`` at a time, so it takes its turn in the
round-robin like any other contender. Only the worker's own measurements count, not the
process start or its imports.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from .cases import NetSpec, dataset_from_recipe
from .contenders import Prepared, Task, Trained
from .environment import blas_kernels, blas_tuning_env

__all__ = ["in_worker", "json_default", "main", "worker_env"]

_WORKER_CODE = "from fastnn.bench.worker import main; main()"


def json_default(o):
    """``json.dumps(default=...)`` for NumPy scalars and arrays and paths."""
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    return repr(o)


def _task_message(target: str, args: tuple, task: Task) -> dict:
    if task.data.recipe is None:
        raise RuntimeError("this data set has no recipe to rebuild it in a subprocess")
    return {
        "target": target,
        "args": list(args),
        "name": task.name,
        "spec": dataclasses.asdict(task.spec),
        "recipe": task.data.recipe,
        "epochs": task.epochs,
        "seed": task.seed,
        "budget_s": task.budget_s,
    }


class _Worker:
    """One worker process: ``ask(line)`` sends a request and returns the JSON reply."""

    def __init__(self, env: dict[str, str], label: str):
        self.label = label
        self.errlog = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _WORKER_CODE],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.errlog,
            text=True,
            env=env,
        )

    def ask(self, line: str) -> dict:
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        reply = self.proc.stdout.readline()
        if not reply:
            self.errlog.seek(0)
            tail = self.errlog.read().strip().splitlines()[-1:] or ["worker exited"]
            raise RuntimeError(f"{self.label} worker died: {tail[0]}")
        out = json.loads(reply)
        if "error" in out:
            raise RuntimeError(out["error"])
        return out

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.proc.stdin.write("quit\n")
            self.proc.stdin.flush()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.errlog.close()


def worker_env(env: dict[str, str] | None = None, unset: Iterable[str] = ()) -> dict[str, str]:
    """This process's environment plus ``env``, less the variables in ``unset``."""
    out = {**os.environ, **(env or {})}
    for key in unset:
        out.pop(key, None)
    return out


def in_worker(
    target: str,
    args: tuple = (),
    env: dict[str, str] | None = None,
    unset: Iterable[str] = (),
) -> Callable[[Task], Prepared]:
    """A ``prepare(task)`` that calls ``target(*args, task)`` (``"module:function"``) in
    a fresh worker process whose environment is this one plus ``env``, less ``unset``.
    The worker rebuilds the data from its recipe, prepares once, then trains once per
    ``run()``; it is closed by ``Prepared.close``."""
    unset = tuple(unset)

    def prepare(task: Task) -> Prepared:
        msg = _task_message(target, args, task)
        worker = _Worker(worker_env(env, unset), target.rsplit(":", 1)[-1])
        try:
            ready = worker.ask(json.dumps(msg))
        except Exception:
            worker.close()
            raise

        def run() -> Trained:
            r = worker.ask("run")
            return Trained(r["seconds"], r["accuracy"], r["epochs_run"], r.get("info", {}))

        info = {**ready.get("info", {}), "process": "separate worker process"}
        return Prepared(run, ready.get("warmup_s"), info, worker.close)

    return prepare


def _resolve(target: str) -> Callable:
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def _task_from(msg: dict) -> Task:
    spec = msg["spec"]
    return Task(
        msg["name"],
        NetSpec(spec["name"], tuple(spec["widths"]), spec["batch"]),
        dataset_from_recipe(msg["recipe"]),
        msg["epochs"],
        seed=msg["seed"],
        budget_s=msg["budget_s"],
    )


def main() -> None:
    """Entry point of a worker: one JSON task line on stdin, then ``run`` lines; one JSON
    reply line per request on the original stdout (library output goes to stderr so it
    cannot corrupt the protocol)."""
    reply_fd = os.dup(1)
    os.dup2(2, 1)
    replies = os.fdopen(reply_fd, "w", buffering=1)

    def send(obj):
        replies.write(json.dumps(obj, default=json_default) + "\n")
        replies.flush()

    msg = json.loads(sys.stdin.readline())
    try:
        prepared = _resolve(msg["target"])(*msg["args"], _task_from(msg))
        # after the warm-up every BLAS library the contender uses is loaded
        info = {**prepared.info, "blas": blas_kernels(), "blas_env": blas_tuning_env()}
    except Exception as exc:
        send({"error": f"{type(exc).__name__}: {exc}"})
        return
    send({"ready": True, "warmup_s": prepared.warmup_s, "info": info})
    for line in sys.stdin:
        if line.strip() != "run":
            break
        try:
            send(dataclasses.asdict(prepared.run()))
        except Exception as exc:
            send({"error": f"{type(exc).__name__}: {exc}"})
