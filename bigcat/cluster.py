"""The Dask client: an embedded LocalCluster by default, or any scheduler by address.

This is the only module that creates a cluster. Stages take a ``client``; nothing deep inside
starts one.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator

import psutil
from distributed import Client, LocalCluster

from bigcat.config import ClusterConfig
from bigcat.errors import ClusterError

logger = logging.getLogger(__name__)


def local_cluster_size(config: ClusterConfig) -> tuple[int, str]:
    """Workers and per-worker memory limit of the embedded cluster, sized to the machine."""
    cores = os.cpu_count() or 1
    n_workers = config.n_workers or max(1, cores // config.threads_per_worker)
    if config.memory_limit == "auto":
        total = psutil.virtual_memory().total
        limit = f"{int(0.8 * total / n_workers / 2**20)}MiB"
    else:
        limit = config.memory_limit
    return n_workers, limit


@contextlib.contextmanager
def dask_client(config: ClusterConfig) -> Iterator[Client]:
    """Yield a connected client; close what this function started on exit.

    ``config.scheduler`` empty starts an embedded LocalCluster listening on loopback only;
    otherwise connects to that address (TLS settings come from Dask's ``distributed.comm.tls``
    configuration, e.g. ``DASK_DISTRIBUTED__COMM__TLS__CA_FILE``).

    Raises
    ------
    ClusterError
        If the scheduler cannot be reached.
    """
    if config.scheduler:
        try:
            client = Client(config.scheduler, timeout="20s")
        except (OSError, TimeoutError) as exc:
            raise ClusterError(
                f"Cannot reach the Dask scheduler at {config.scheduler} ({exc}). Check the address "
                "and that `dask scheduler` is running there (deploy/ has recipes), or omit "
                "--scheduler to use an embedded local cluster."
            ) from exc
        try:
            yield client
        finally:
            client.close()
        return

    n_workers, limit = local_cluster_size(config)
    cluster = LocalCluster(
        n_workers=n_workers,
        threads_per_worker=config.threads_per_worker,
        memory_limit=limit,
        processes=True,
        host=config.host,
        dashboard_address=config.dashboard_address,
    )
    client = Client(cluster)
    try:
        yield client
    finally:
        client.close()
        cluster.close()


def describe_cluster(client: Client) -> dict:
    """Scheduler address, dashboard link, workers and threads: for the run log."""
    info = client.scheduler_info(n_workers=-1)
    workers = info.get("workers", {})
    return {
        "scheduler": client.scheduler.address if client.scheduler else "",
        "dashboard": client.dashboard_link,
        "n_workers": len(workers),
        "threads": sum(w.get("nthreads", 0) for w in workers.values()),
        "memory_limit_bytes": sum(w.get("memory_limit", 0) or 0 for w in workers.values()),
    }
