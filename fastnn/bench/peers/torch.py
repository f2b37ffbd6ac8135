"""PyTorch peers: the loop in PyTorch's tutorials, and a hand-tuned loop."""

from __future__ import annotations

import math
import time

import numpy as np

from ..cases import LEARNING_RATE, accuracy
from ..contenders import Prepared, Task, Trained

__all__ = ["prepare_idiomatic", "prepare_tuned"]


def _net(spec, seed: int):
    import torch
    from torch import nn

    torch.manual_seed(seed)
    mods: list = []
    for a, b in zip(spec.widths[:-1], spec.widths[1:], strict=True):
        mods += [nn.Linear(a, b), nn.ReLU()]
    mods.pop()  # logits out: the loss applies sigmoid/softmax
    return nn.Sequential(*mods)


def _tensors(task: Task):
    import torch

    d = task.data
    Xt = torch.from_numpy(np.ascontiguousarray(d.Xtr, dtype=np.float32))
    if task.spec.binary:
        yt = torch.from_numpy(d.ytr.astype(np.float32).reshape(-1, 1))
        loss = torch.nn.BCEWithLogitsLoss()
    else:
        yt = torch.from_numpy(d.ytr.astype(np.int64))
        loss = torch.nn.CrossEntropyLoss()
    return Xt, yt, loss


def _test_accuracy(model, task: Task) -> float:
    import torch

    model.eval()
    with torch.inference_mode():
        out = model(torch.from_numpy(np.ascontiguousarray(task.data.Xte, dtype=np.float32)))
        P = torch.sigmoid(out) if task.spec.binary else out
    return accuracy(P.numpy(), task.data.yte)


def prepare_idiomatic(task: Task) -> Prepared:
    """The loop in PyTorch's tutorials: DataLoader(shuffle=True) + nn.Sequential + Adam,
    default threads, default Adam implementation."""
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    Xt, yt, loss_fn = _tensors(task)
    spec = task.spec

    def train(epochs: int, limit: int | None = None):
        model = _net(spec, task.seed)
        opt = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
        loader = DataLoader(TensorDataset(Xt, yt), batch_size=spec.batch, shuffle=True)
        t0 = time.perf_counter()
        steps = 0
        for _ in range(epochs):
            model.train()
            for xb, yb in loader:
                opt.zero_grad()
                loss = loss_fn(model(xb), yb)
                loss.backward()
                opt.step()
                steps += 1
                if limit is not None and steps >= limit:
                    return model, time.perf_counter() - t0
        return model, time.perf_counter() - t0

    t0 = time.perf_counter()
    train(1, limit=20)
    warmup = time.perf_counter() - t0

    def run() -> Trained:
        model, seconds = train(task.epochs)
        return Trained(seconds, _test_accuracy(model, task), task.epochs)

    return Prepared(run, warmup, {"threads": torch.get_num_threads()})


def _adam(model):
    """The fused CPU Adam kernel where this torch has it, else the for-loop one."""
    import torch

    try:
        return torch.optim.Adam(model.parameters(), lr=LEARNING_RATE, fused=True), "fused"
    except (RuntimeError, TypeError, ValueError):  # older torch: no fused CPU Adam
        return torch.optim.Adam(model.parameters(), lr=LEARNING_RATE, foreach=False), "for"


def _tuned_loop(task: Task, Xt, yt, loss_fn):
    """``train(epochs, threads, limit=None) -> (model, seconds, adam kind)``: randperm +
    slicing, ``zero_grad(set_to_none=True)``, on ``threads`` threads."""
    import torch

    spec, n = task.spec, Xt.shape[0]
    default_threads = torch.get_num_threads()

    def train(epochs: int, threads: int, limit: int | None = None):
        torch.set_num_threads(threads)
        try:
            model = _net(spec, task.seed)
            opt, kind = _adam(model)
            model.train()
            t0 = time.perf_counter()
            steps = 0
            for _ in range(epochs):
                perm = torch.randperm(n)
                Xs, ys = Xt[perm], yt[perm]
                for i in range(0, n, spec.batch):
                    opt.zero_grad(set_to_none=True)
                    loss = loss_fn(model(Xs[i : i + spec.batch]), ys[i : i + spec.batch])
                    loss.backward()
                    opt.step()
                    steps += 1
                    if limit is not None and steps >= limit:
                        return model, time.perf_counter() - t0, kind
            return model, time.perf_counter() - t0, kind
        finally:
            torch.set_num_threads(default_threads)

    return train


def _probe_threads(train, default_threads: int) -> dict[int, float]:
    """Best-of-three short runs on 1 thread and on the default, alternated."""
    candidates = sorted({1, default_threads})
    probe: dict[int, float] = {}
    for threads in candidates:
        train(1, threads, limit=5)  # allocator warm-up
    for _ in range(3):  # alternate, keep the best of three: the machine may be noisy
        for threads in candidates:
            t = train(1, threads, limit=10)[1]
            probe[threads] = min(probe.get(threads, math.inf), t)
    return probe


def prepare_tuned(task: Task) -> Prepared:
    """A hand-tuned loop: tensors shuffled once per epoch with ``randperm`` and sliced
    (no DataLoader), ``zero_grad(set_to_none=True)``, the fused Adam kernel, inference
    under ``torch.inference_mode``, and the thread count (1 or the default) that ran a
    short probe faster on this machine."""
    import torch

    Xt, yt, loss_fn = _tensors(task)
    default_threads = torch.get_num_threads()
    train = _tuned_loop(task, Xt, yt, loss_fn)
    t0 = time.perf_counter()
    probe = _probe_threads(train, default_threads)
    best = min(probe, key=probe.get)
    warmup = time.perf_counter() - t0

    def run() -> Trained:
        model, seconds, kind = train(task.epochs, best)
        torch.set_num_threads(best)
        try:
            acc = _test_accuracy(model, task)
        finally:
            torch.set_num_threads(default_threads)
        return Trained(seconds, acc, task.epochs, {"adam": kind})

    return Prepared(run, warmup, {"threads": best, "thread_probe_s": probe})
