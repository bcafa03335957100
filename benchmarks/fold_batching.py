"""Stage-1 training step: the 8 folds one by one against the 8 folds as one batched model.

Measures in one run, on this machine's CPU:
* bigcat's training step (``bigcat.nn.fit._ManualMLP.step``: forward, loss and backward of
  one mini-batch, dropout active) for one fold model, per step and per 1,000 rows, and its
  achieved FLOP/s (the six matrix products of the forward and backward passes) against a
  plain fp32 matmul of the same shapes;
* the same step for all folds at once as one batched model (a fold dimension: ``baddbmm``
  / ``bmm`` over stacked weights, the masks and element-wise work on (folds, batch, width)
  tensors), at 1 and 2 torch threads;
* what the pipeline does today: the folds as independent tasks, one per worker thread, so
  the effective per-fold cost on this machine is the single-fold step divided by the
  number of cores.

A batched model pays off when one fold's step cannot fill the device (a GPU); on a CPU the
step is already bound by the element-wise passes over the activations, which a fold
dimension does not reduce.

Usage: python benchmarks/fold_batching.py [--batch 1024] [--folds 8] [--steps 300]
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from bigcat.nn.fit import _ManualMLP
from bigcat.nn.model import HeteroscedasticMLP, bit_keep_mask, dropout_threshold


def _time(fn, steps: int) -> float:
    for _ in range(max(3, steps // 10)):
        fn()
    t0 = time.perf_counter()
    for _ in range(steps):
        fn()
    return (time.perf_counter() - t0) / steps


def step_flops(batch: int, widths: list[int]) -> float:
    """FLOPs of the matrix products of one forward + backward step (2 per multiply-add;
    forward, weight gradient and input gradient: 3 products per layer, 2 for the first)."""
    total = 0.0
    for k, (a, b) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
        total += 2.0 * batch * a * b * (2 if k == 0 else 3)
    return total


def batched_step(F: int, B: int, d: int, h: int, threshold: int):
    """A manual forward/backward of F stacked (d -> h -> h -> 2) MLPs on one batch."""
    x = torch.randn(B, d).expand(F, B, d)
    w1, b1 = torch.randn(F, h, d) * 0.1, torch.zeros(F, 1, h)
    w2, b2 = torch.randn(F, h, h) * 0.1, torch.zeros(F, 1, h)
    w3, b3 = torch.randn(F, 2, h) * 0.1, torch.zeros(F, 1, 2)
    y, e = torch.randn(F, B), torch.rand(F, B) * 0.1 + 0.05

    def step() -> None:
        z1 = torch.baddbmm(b1, x, w1.transpose(1, 2))
        a1 = torch.relu(z1).mul_(bit_keep_mask(z1.shape, threshold))
        g1 = torch.sign(a1)
        z2 = torch.baddbmm(b2, a1, w2.transpose(1, 2))
        a2 = torch.relu(z2).mul_(bit_keep_mask(z2.shape, threshold))
        g2 = torch.sign(a2)
        z3 = torch.baddbmm(b3, a2, w3.transpose(1, 2))
        value, log_var = z3[..., 0], z3[..., 1]
        s = torch.logaddexp(torch.log(e.square()), log_var)
        inv = torch.exp(-s)
        r = y - value
        dz = torch.stack([-r * inv, (0.5 - 0.5 * r * r * inv) * torch.sigmoid(log_var)], -1)
        dz = dz.div_(B)
        torch.bmm(dz.transpose(1, 2), a2), dz.sum(1)
        dz = torch.bmm(dz, w3).mul_(g2)
        torch.bmm(dz.transpose(1, 2), a1), dz.sum(1)
        dz = torch.bmm(dz, w2).mul_(g1)
        torch.bmm(dz.transpose(1, 2), x), dz.sum(1)

    return step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--folds", type=int, default=8)
    ap.add_argument("--features", type=int, default=20)
    ap.add_argument("--steps", type=int, default=300)
    args = ap.parse_args()
    B, F, d, h = args.batch, args.folds, args.features, 80
    cores = len(os.sched_getaffinity(0))
    flops = step_flops(B, [d, h, h, 2])
    torch.set_num_threads(1)
    net = HeteroscedasticMLP(d, (h, h), 0.2)
    manual = _ManualMLP(net)
    X, y, e = torch.randn(B, d), torch.randn(B), torch.rand(B) * 0.1 + 0.05
    single = _time(lambda: manual.step(X, y, e, None, None), args.steps)
    a, w = torch.randn(B, h), torch.randn(h, h)
    mm = _time(lambda: a @ w, args.steps * 5)
    mm_rate = 2.0 * B * h * h / mm
    print(f"batch {B}, {d} inputs, 2 x {h} hidden, {F} folds; {cores} cores")
    print(
        f"one fold, 1 thread: {single * 1e3:.3f} ms/step, {single / B * 1e6:.3f} ms per 1k rows, "
        f"{flops / single / 1e9:.1f} GFLOP/s in its products = {flops / single / mm_rate:.0%} "
        f"of a ({B} x {h}) @ ({h} x {h}) fp32 matmul ({mm_rate / 1e9:.0f} GFLOP/s)"
    )
    print(
        f"folds as independent tasks on {cores} cores (the pipeline): "
        f"{single / cores * 1e3:.3f} ms per fold-step"
    )
    threshold = dropout_threshold(0.2)
    for threads in (1, 2):
        torch.set_num_threads(threads)
        t = _time(batched_step(F, B, d, h, threshold), max(20, args.steps // F))
        print(
            f"{F} folds batched, {threads} thread(s): {t * 1e3:.2f} ms/step = "
            f"{t / F * 1e3:.3f} ms per fold-step ({single / cores / (t / F):.2f}x the pipeline)"
        )


if __name__ == "__main__":
    main()
