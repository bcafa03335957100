"""Single-process speed of the per-partition kernels on 100,000 mock rows (best of 5).

Prints rows/s of ``simulate_chunk`` (the mock generator) and ``run_photometry``, and the
share of the latter spent on the parallax zero-point.

Usage: python benchmarks/kernel_speed.py [--rows 100000]
"""

from __future__ import annotations

import argparse
import time

from bigcat.photometry import parallax_zero_point, run_photometry
from bigcat.synthetic import MockParams, simulate_chunk


def best_time(func, *args, repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        func(*args)
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=100_000)
    n = parser.parse_args().rows
    params = MockParams()
    t_mock = best_time(simulate_chunk, params, 0, n, repeat=3)
    df = simulate_chunk(params, 0, n).photometry
    run_photometry(df.iloc[:10])  # load the zero-point tables once
    t_all = best_time(run_photometry, df)
    t_zp = best_time(parallax_zero_point, df)
    print(f"simulate_chunk: {n / t_mock:,.0f} rows/s")
    print(f"run_photometry: {n / t_all:,.0f} rows/s; zero-point {t_zp / t_all:.0%} of it")


if __name__ == "__main__":
    main()
