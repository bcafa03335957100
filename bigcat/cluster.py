"""The Dask client: an embedded LocalCluster, an existing scheduler, or a dask-jobqueue cluster.

This is the only module that creates a cluster. Stages take a ``client``; nothing deep inside
starts one. Which cluster is decided by ``[cluster]`` (``ClusterConfig``), in this order:

1. ``scheduler`` set (``--scheduler`` or ``DASK_SCHEDULER_ADDRESS``): connect to it.
   ``tls://`` addresses use distributed's ``Security`` built from the Dask config, i.e. the
   keys ``distributed.comm.tls.ca-file``, ``distributed.comm.tls.client.cert`` and
   ``distributed.comm.tls.client.key`` (environment: ``DASK_DISTRIBUTED__COMM__TLS__CA_FILE``,
   ``DASK_DISTRIBUTED__COMM__TLS__CLIENT__CERT``, ``DASK_DISTRIBUTED__COMM__TLS__CLIENT__KEY``;
   each a PEM file path or the PEM text itself).
2. ``jobqueue`` set ("slurm", "pbs", ...): start a dask-jobqueue cluster of ``jobqueue_jobs``
   batch jobs. Its job settings are dask-jobqueue's own (``jobqueue.<system>`` in the Dask
   config; deploy/slurm/jobqueue.yaml is an example, found via ``DASK_CONFIG``).
3. Otherwise: an embedded LocalCluster sized to the machine, listening on 127.0.0.1 only.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
from collections.abc import Iterator
from typing import Any

import psutil
from distributed import Client, LocalCluster, WorkerPlugin
from distributed.security import Security

from bigcat.config import ClusterConfig
from bigcat.errors import ClusterError

logger = logging.getLogger(__name__)

#: What every stage task imports (pandas, pyarrow, torch, astropy, hats among them), imported
#: once when a worker starts (:class:`WarmImports`).
STAGE_MODULES = (
    "bigcat.stages.partitions",
    "bigcat.stages.photometry",
    "bigcat.stages.parallax",
    "bigcat.stages.distance",
    "bigcat.stages.metallicity",
    "bigcat.astrometry.galactocentric",
)


class WarmImports(WorkerPlugin):
    """Worker plugin: import bigcat's stage modules when a worker starts.

    A fresh worker process spends ~2-3 s importing torch, astropy, hats and the rest in its
    first task. Every worker pays that once, in parallel, so it does not shrink with more
    workers: in a 1M-row run it was most of the difference between 1 and 2 workers in the
    photometry stage. Done here it is part of starting the cluster, as Dask's ``--preload``
    would make it; workers that join later (scaled, jobqueue) run it when they join.
    """

    name = "bigcat-warm-imports"

    def setup(self, worker: Any = None) -> None:
        for module in STAGE_MODULES:
            importlib.import_module(module)


def warm_workers(client: Client) -> None:
    """Register :class:`WarmImports` (returns when every current worker has run it). A worker
    that cannot import bigcat fails here, before any stage, with its own error."""
    client.register_plugin(WarmImports())


#: dask-jobqueue's cluster class for each ``[cluster] jobqueue`` value.
JOBQUEUE_CLASSES = {
    "slurm": "SLURMCluster",
    "pbs": "PBSCluster",
    "sge": "SGECluster",
    "lsf": "LSFCluster",
    "oar": "OARCluster",
    "moab": "MoabCluster",
    "htcondor": "HTCondorCluster",
}

#: Environment variables (Dask config keys) that supply TLS credentials for ``tls://``.
TLS_ENV = (
    "DASK_DISTRIBUTED__COMM__TLS__CA_FILE",
    "DASK_DISTRIBUTED__COMM__TLS__CLIENT__CERT",
    "DASK_DISTRIBUTED__COMM__TLS__CLIENT__KEY",
)


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


def client_security(address: str) -> Security | None:
    """Security for connecting to ``address``: from the Dask config for ``tls://``, else None.

    Raises
    ------
    ClusterError
        For a ``tls://`` address when no CA certificate is configured.
    """
    if not address.startswith("tls://"):
        return None
    security = Security()  # reads distributed.comm.tls.* from the Dask config
    if not getattr(security, "tls_ca_file", None):
        raise ClusterError(
            f"The scheduler address {address} asks for TLS, but no CA certificate is configured. "
            f"Set {TLS_ENV[0]} (the CA that signed the scheduler's certificate) and, if the "
            f"scheduler requires client certificates, {TLS_ENV[1]} and {TLS_ENV[2]} (or the "
            "keys distributed.comm.tls.ca-file, .client.cert, .client.key in a Dask config file)."
        )
    return security


def _connect(address: str, timeout: str = "20s") -> Client:
    security = client_security(address)
    try:
        return Client(address, timeout=timeout, security=security)
    except (OSError, TimeoutError) as exc:
        raise ClusterError(
            f"Cannot reach the Dask scheduler at {address} ({exc}). Check the address "
            "and that `dask scheduler` is running there (deploy/ has recipes), or omit "
            "--scheduler to use an embedded local cluster."
        ) from exc


def jobqueue_cluster(config: ClusterConfig) -> Any:
    """Start (but not scale) the dask-jobqueue cluster named by ``config.jobqueue``.

    dask-jobqueue reads cores, memory, processes, queue, account, walltime, interface and
    scheduler options from its own ``jobqueue.<system>`` settings in the Dask config.

    Raises
    ------
    ClusterError
        If dask-jobqueue is not installed or the cluster cannot start.
    """
    try:
        module = importlib.import_module("dask_jobqueue")
    except ImportError as exc:
        raise ClusterError(
            f"[cluster] jobqueue = {config.jobqueue!r} needs the dask-jobqueue package, which is "
            "not installed: `pip install dask-jobqueue` (on the machine that runs "
            "`bigcat process`), or remove the jobqueue setting."
        ) from exc
    cls = getattr(module, JOBQUEUE_CLASSES[config.jobqueue])
    try:
        return cls()
    except (ValueError, TypeError, OSError) as exc:
        raise ClusterError(
            f"Cannot start a dask-jobqueue {cls.__name__} ({exc}). Its settings come from the "
            f"Dask config section jobqueue.{config.jobqueue} (see deploy/slurm/jobqueue.yaml; "
            "point DASK_CONFIG at the directory holding it)."
        ) from exc


@contextlib.contextmanager
def dask_client(config: ClusterConfig) -> Iterator[Client]:
    """Yield a connected client; close what this function started on exit.

    ``config.scheduler`` set: connect to that address (``tls://`` uses the Dask TLS settings).
    ``config.jobqueue`` set: submit ``config.jobqueue_jobs`` batch jobs of dask-jobqueue.
    Otherwise: an embedded LocalCluster listening on loopback only.

    Raises
    ------
    ClusterError
        If the scheduler cannot be reached or the cluster cannot start.
    """
    if config.scheduler:
        client = _connect(config.scheduler)
        try:
            warm_workers(client)
            yield client
        finally:
            client.close()
        return

    if config.jobqueue:
        cluster = jobqueue_cluster(config)
        try:
            cluster.scale(jobs=config.jobqueue_jobs)
            logger.info("%s: %d job(s) requested", type(cluster).__name__, config.jobqueue_jobs)
            with Client(cluster) as client:
                warm_workers(client)
                yield client
        finally:
            cluster.close()
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
        warm_workers(client)
        yield client
    finally:
        _close_quietly(client, cluster)


#: Loggers whose shutdown records (a heartbeat racing the scheduler's close) are noise.
_SHUTDOWN_LOGGERS = ("distributed", "tornado")


def _quiet_distributed_logs() -> None:
    """In a worker or nanny process about to be shut down: only critical records of
    distributed and tornado (a worker's heartbeat racing the scheduler's close logs a
    traceback, which is noise once bigcat has stopped)."""
    for name in _SHUTDOWN_LOGGERS:
        logging.getLogger(name).setLevel(logging.CRITICAL)


def _close_quietly(client: Client, cluster: LocalCluster) -> None:
    """Close an embedded cluster without its shutdown chatter on the terminal: the workers'
    and nannies' distributed loggers are quieted first (best effort), this process's for
    the duration of the close (restored after, for the next cluster of a notebook)."""
    # (saved first: an embedded cluster's nannies live in this process)
    saved = {name: logging.getLogger(name).level for name in _SHUTDOWN_LOGGERS}
    for nanny in (False, True):
        with contextlib.suppress(Exception):
            client.run(_quiet_distributed_logs, nanny=nanny, on_error="return")
    _quiet_distributed_logs()
    try:
        client.close()
        cluster.close()
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)


def dashboard_link(client: Client) -> str:
    """The dashboard's real URL (the port actually bound), or "" when the scheduler has none.

    When the configured port is taken, distributed binds another one; the link is built from
    the port the scheduler reports, so it is always the one that answers.
    """
    try:
        services = client.scheduler_info(n_workers=0).get("services", {})
    except (OSError, TimeoutError):
        services = {}
    if "dashboard" not in services:
        return ""
    return client.dashboard_link


def describe_cluster(client: Client) -> dict:
    """Scheduler address, dashboard link, workers and threads: for the run log."""
    info = client.scheduler_info(n_workers=-1)
    workers = info.get("workers", {})
    return {
        "scheduler": client.scheduler.address if client.scheduler else "",
        "dashboard": dashboard_link(client),
        "n_workers": len(workers),
        "threads": sum(w.get("nthreads", 0) for w in workers.values()),
        "memory_limit_bytes": sum(w.get("memory_limit", 0) or 0 for w in workers.values()),
    }
