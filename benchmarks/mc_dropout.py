"""MC-dropout inference: rows/s and achieved FLOP/s against this machine's fp32 matmul rate.

Measured in one run: the batched formulation (one dropout mask per pass, folded into the
weights), the per-row-mask reference, and a large torch matmul for the machine's own rate.

Usage: python benchmarks/mc_dropout.py [--rows 1000000] [--passes 50] [--threads 1]
"""

from __future__ import annotations

import argparse
import logging
import time
from typing import Any

import numpy as np
import torch

from bigcat.nn.device import torch_threads
from bigcat.nn.fit import TrainConfig, TrainedModel
from bigcat.nn.model import HeteroscedasticMLP
from bigcat.nn.predict import mc_dropout_predict, mc_dropout_predict_per_row_masks, predict_flops
from bigcat.nn.scaler import Standardiser

logger = logging.getLogger(__name__)


def _random_model(n_inputs: int, hidden: tuple[int, ...], seed: int) -> TrainedModel:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = HeteroscedasticMLP(n_inputs, hidden)
    std = Standardiser(np.zeros(n_inputs), np.ones(n_inputs), 0.0, 1.0)
    names = [f"x{i}" for i in range(n_inputs)]
    return TrainedModel(net.state_dict(), names, std, TrainConfig(hidden=hidden))


def matmul_gflops(size: int = 2048, repeats: int = 5) -> float:
    """Best-of-``repeats`` fp32 GFLOP/s of a (size x size) @ (size x size) ``torch.matmul``."""
    a = torch.randn(size, size)
    b = torch.randn(size, size)
    torch.matmul(a, b)
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.matmul(a, b)
        best = min(best, time.perf_counter() - t0)
    return 2.0 * size**3 / best / 1e9


def benchmark_mc_dropout(
    n_rows: int = 1_000_000,
    n_passes: int = 50,
    n_inputs: int = 16,
    hidden: tuple[int, ...] = (80, 80),
    batch_size: int = 65536,
    reference_rows: int = 20_000,
    num_threads: int | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Rows per second and FLOP rate of batched MC-dropout inference.

    Parameters
    ----------
    n_rows : int
        Rows for the batched prediction.
    n_passes : int
        Monte-Carlo passes T.
    n_inputs, hidden : int, tuple of int
        Network shape (random weights; speed does not depend on their values).
    batch_size : int
        Passed to :func:`mc_dropout_predict`.
    reference_rows : int
        Rows for the per-row-mask reference (it is much slower).
    num_threads : int, optional
        torch threads for the whole benchmark; None = current setting.
    seed : int
        Seeds the weights, features and masks.

    Returns
    -------
    dict
        ``rows_per_s``, ``seconds``, ``gflops`` (achieved, from :func:`predict_flops`),
        ``matmul_gflops``, ``fraction_of_matmul``, ``reference_rows_per_s``,
        ``speedup_vs_reference``, plus the settings (``n_rows``, ``n_passes``, ``threads`` ...).
    """
    model = _random_model(n_inputs, tuple(hidden), seed)
    X = np.random.default_rng(seed).normal(size=(n_rows, n_inputs))
    with torch_threads(num_threads):
        threads = torch.get_num_threads()
        mm = matmul_gflops()
        mc_dropout_predict(model, X[: min(n_rows, 4096)], n_passes, seed, batch_size)  # warm-up
        t0 = time.perf_counter()
        mc_dropout_predict(model, X, n_passes, seed, batch_size)
        seconds = time.perf_counter() - t0
        n_ref = min(reference_rows, n_rows)
        t0 = time.perf_counter()
        mc_dropout_predict_per_row_masks(model, X[:n_ref], n_passes, seed)
        ref_seconds = time.perf_counter() - t0
    gflops = predict_flops(n_rows, n_inputs, n_passes, hidden) / seconds / 1e9
    result = {
        "n_rows": n_rows,
        "n_passes": n_passes,
        "n_inputs": n_inputs,
        "hidden": list(hidden),
        "batch_size": batch_size,
        "threads": threads,
        "seconds": seconds,
        "rows_per_s": n_rows / seconds,
        "gflops": gflops,
        "matmul_gflops": mm,
        "fraction_of_matmul": gflops / mm,
        "reference_rows": n_ref,
        "reference_rows_per_s": n_ref / ref_seconds,
        "speedup_vs_reference": (n_rows / seconds) / (n_ref / ref_seconds),
    }
    logger.info("mc-dropout benchmark: %s", result)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--passes", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    r = benchmark_mc_dropout(n_rows=args.rows, n_passes=args.passes, num_threads=args.threads)
    for key, value in r.items():
        print(f"{key:>32}: {value:,.3f}" if isinstance(value, float) else f"{key:>32}: {value}")


if __name__ == "__main__":
    main()
