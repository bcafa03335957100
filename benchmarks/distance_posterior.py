"""Distance posterior (generalised-gamma prior) throughput at 1M stars, one core.

Usage: python benchmarks/distance_posterior.py [--stars 1000000]
"""

from __future__ import annotations

import argparse
import logging
import time

import numpy as np

from bigcat.astrometry.distance import DEFAULT_CHUNK_SIZE, ggd_distance_posterior
from bigcat.astrometry.model_prior import model_prior_table as default_prior_table
from bigcat.astrometry.prior import N_PIXELS

logger = logging.getLogger(__name__)


def benchmark_distance_posterior(
    n: int = 1_000_000, seed: int = 0, chunk_size: int = DEFAULT_CHUNK_SIZE
) -> dict:
    """Time the distance posterior on ``n`` synthetic stars on one core.

    Stars get priors of random level-5 pixels of the default table, true distances
    log-uniform in 0.1-20 kpc and parallax errors log-uniform in 0.01-1 mas (S/N from
    ~0.05 to ~1000, many negative parallaxes).

    Returns
    -------
    dict
        ``n``, ``seconds`` (wall), ``cpu_seconds``, ``stars_per_second`` (wall),
        ``stars_per_cpu_second``, ``chunk_size``, ``nan_fraction``.
    """
    rng = np.random.default_rng(seed)
    length, alpha, beta = default_prior_table().lookup(rng.integers(0, N_PIXELS, n))
    r_pc = np.exp(rng.uniform(np.log(100.0), np.log(20_000.0), n))
    sigma = np.exp(rng.uniform(np.log(0.01), np.log(1.0), n))
    parallax = rng.normal(1000.0 / r_pc, sigma)
    wall, cpu = time.perf_counter(), time.process_time()
    out = ggd_distance_posterior(parallax, sigma, length, alpha, beta, chunk_size=chunk_size)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    result = {
        "n": n,
        "seconds": wall,
        "cpu_seconds": cpu,
        "stars_per_second": n / wall,
        "stars_per_cpu_second": n / cpu,
        "chunk_size": chunk_size,
        "nan_fraction": float(np.isnan(out).any(axis=1).mean()),
    }
    logger.info("distance posterior benchmark: %s", result)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--stars", type=int, default=1_000_000)
    r = benchmark_distance_posterior(n=parser.parse_args().stars)
    for key, value in r.items():
        print(f"{key:>24}: {value:,.3f}" if isinstance(value, float) else f"{key:>24}: {value}")


if __name__ == "__main__":
    main()
