"""Distance posterior (generalised-gamma prior) throughput at 1M stars, one core.

Usage: python benchmarks/distance_posterior.py [--stars 1000000]
"""

from __future__ import annotations

import argparse

from bigcat.astrometry.bench import benchmark_distance_posterior


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--stars", type=int, default=1_000_000)
    r = benchmark_distance_posterior(n=parser.parse_args().stars)
    for key, value in r.items():
        print(f"{key:>24}: {value:,.3f}" if isinstance(value, float) else f"{key:>24}: {value}")


if __name__ == "__main__":
    main()
