"""Worker memory sampling for the benchmarks: each Dask worker samples its own RSS.

``client.run(start_rss_sampler)`` starts a thread in every worker recording (time, RSS MiB)
every 50 ms (ru_maxrss is useless here: it keeps the parent's peak across fork/exec);
``client.run(rss_samples)`` stops it and returns the samples; ``peak_in`` reduces them to the
peak of each worker within a time window.
"""

from __future__ import annotations

import sys
import time

import cloudpickle

# the workers cannot import this script-side module: send its functions by value
cloudpickle.register_pickle_by_value(sys.modules[__name__])


def start_rss_sampler(dask_worker) -> None:
    """In a worker: record (time, RSS MiB) every 50 ms until ``rss_samples`` is called."""
    import threading

    import psutil

    state: dict = {"samples": [], "run": True}
    proc = psutil.Process()

    def loop() -> None:
        while state["run"]:
            state["samples"].append((time.time(), proc.memory_info().rss / 2**20))
            time.sleep(0.05)

    threading.Thread(target=loop, daemon=True).start()
    dask_worker._bigcat_rss = state


def rss_samples(dask_worker) -> list:
    """In a worker: stop sampling; the (time, RSS MiB) samples."""
    state = dask_worker._bigcat_rss
    state["run"] = False
    return state["samples"]


def peak_in(samples: dict, start: float = 0.0, end: float = float("inf")) -> list[float]:
    """Peak RSS (MiB) of each worker between ``start`` and ``end`` (unix seconds)."""
    return [
        max((r for t, r in s if start <= t <= end), default=float("nan")) for s in samples.values()
    ]


def machine_speed() -> float:
    """Seconds for a fixed workload (float64 matrix products, a pure-Python loop).

    The machines these benchmarks ran on changed speed by up to 50% from hour to hour for the
    same code. This measures one process with the other core idle, so it shows a slower core
    but not a slowdown that appears only with both cores busy (seen on 2026-12-02: the same
    vertex fits took 186 s and 286 s while this read 0.6-0.9 s); compare a stage whose work is
    fixed, such as the vertex fits, across runs as well.
    """
    import numpy as np

    rng = np.random.default_rng(0)
    a = rng.normal(size=(256, 256))
    t0 = time.perf_counter()
    for _ in range(600):
        a = np.tanh(a @ a.T / 256.0)
    total = 0
    for i in range(10_000_000):
        total += i % 7
    return time.perf_counter() - t0
