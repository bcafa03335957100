"""MC-dropout inference: rows/s and achieved FLOP/s against this machine's fp32 matmul rate.

Measured in one run: the batched formulation (one dropout mask per pass, folded into the
weights), the per-row-mask reference, and a large torch matmul for the machine's own rate.

Usage: python benchmarks/mc_dropout.py [--rows 1000000] [--passes 50] [--threads 1]
"""

from __future__ import annotations

import argparse

from bigcat.nn.bench import benchmark_mc_dropout


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
