"""bigcat.cluster: which cluster a config gives, TLS, dask-jobqueue, the real dashboard link."""

from __future__ import annotations

import importlib.util
import socket
import sys
import types
import urllib.request
from pathlib import Path

import dask
import pytest
import yaml
from distributed import LocalCluster
from distributed.security import Security

from bigcat.cluster import client_security, dashboard_link, dask_client, describe_cluster
from bigcat.config import ClusterConfig, load_config
from bigcat.errors import ClusterError, ConfigError

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def _inc(x: int) -> int:
    return x + 1


def test_jobqueue_setting_is_checked():
    with pytest.raises(ConfigError, match=r"Did you mean 'slurm'\?"):
        ClusterConfig(jobqueue="slrum")
    with pytest.raises(ConfigError, match="jobqueue_jobs = 0"):
        ClusterConfig(jobqueue="slurm", jobqueue_jobs=0)
    with pytest.raises(ConfigError, match="DASK_SCHEDULER_ADDRESS"):
        ClusterConfig(jobqueue="pbs", scheduler="tcp://127.0.0.1:8786")


def test_slurm_recipe_config_loads():
    config = load_config(DEPLOY / "slurm" / "bigcat.toml")
    assert config.cluster.jobqueue == "slurm" and config.cluster.jobqueue_jobs >= 1
    assert config.cluster.scheduler == ""


def test_missing_dask_jobqueue_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "dask_jobqueue", None)  # import raises ImportError
    with (
        pytest.raises(ClusterError, match=r"pip install dask-jobqueue"),
        dask_client(ClusterConfig(jobqueue="slurm")),
    ):
        pass


def test_jobqueue_cluster_is_started_scaled_and_closed(monkeypatch):
    """dask_client builds dask-jobqueue's class for the system, scales by jobs, closes it."""
    calls: dict = {}

    class FakeSLURMCluster(LocalCluster):
        def __init__(self):
            calls["init"] = True
            super().__init__(
                n_workers=0,
                processes=True,
                host="127.0.0.1",
                dashboard_address="127.0.0.1:0",
                memory_limit="2GiB",
            )

        def scale(self, n=0, jobs=0, **kwargs):
            if jobs:  # bigcat's call: one local worker stands in for the batch jobs
                calls["jobs"] = jobs
                n = 1
            return super().scale(n)

        def close(self, *args, **kwargs):
            calls["closed"] = True
            return super().close(*args, **kwargs)

    fake = types.ModuleType("dask_jobqueue")
    fake.SLURMCluster = FakeSLURMCluster  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "dask_jobqueue", fake)
    with dask_client(ClusterConfig(jobqueue="slurm", jobqueue_jobs=3)) as client:
        client.wait_for_workers(1, timeout=30)
        assert client.submit(_inc, 1).result(timeout=30) == 2
    assert calls == {"init": True, "jobs": 3, "closed": True}


@pytest.mark.skipif(
    importlib.util.find_spec("dask_jobqueue") is None,
    reason="dask-jobqueue is not installed (optional: pip install dask-jobqueue)",
)
def test_slurm_jobqueue_yaml_makes_a_valid_job_script():
    """With the real dask-jobqueue, deploy/slurm/jobqueue.yaml gives the batch script we mean."""
    from dask_jobqueue import SLURMCluster

    slurm = yaml.safe_load((DEPLOY / "slurm" / "jobqueue.yaml").read_text())["jobqueue"]["slurm"]
    slurm["scheduler-options"] = {"dashboard_address": "127.0.0.1:0"}
    slurm["interface"] = "lo"
    settings = {f"jobqueue.slurm.{k}": v for k, v in slurm.items()}
    with dask.config.set(settings), SLURMCluster() as cluster:
        script = cluster.job_script()
    assert "#SBATCH -J bigcat-worker" in script
    assert "#SBATCH -t 02:00:00" in script
    assert "--nworkers 4" in script and "--nthreads 2" in script
    assert "BIGCAT_VENV" in script and "/bin/activate" in script


def test_tls_address_without_credentials_names_the_settings():
    with pytest.raises(ClusterError, match="DASK_DISTRIBUTED__COMM__TLS__CA_FILE"):
        client_security("tls://127.0.0.1:8786")
    assert client_security("tcp://127.0.0.1:8786") is None


def test_tls_scheduler_reached_with_dask_config_credentials():
    """A real TLS scheduler on loopback; bigcat connects with credentials from the Dask config."""
    pytest.importorskip("cryptography")
    sec = Security.temporary()  # in-memory CA, certificate and key (PEM text)
    with LocalCluster(
        n_workers=1,
        threads_per_worker=1,
        processes=False,
        protocol="tls://",
        host="127.0.0.1",
        security=sec,
        dashboard_address="127.0.0.1:0",
    ) as cluster:
        address = cluster.scheduler_address
        assert address.startswith("tls://127.0.0.1:")
        tls = {
            "distributed.comm.tls.ca-file": sec.tls_ca_file,
            "distributed.comm.tls.client.cert": sec.tls_client_cert,
            "distributed.comm.tls.client.key": sec.tls_client_key,
            "distributed.comm.require-encryption": True,
        }
        with dask.config.set(tls), dask_client(ClusterConfig(scheduler=address)) as client:
            assert client.submit(_inc, 41).result(timeout=30) == 42


def test_dashboard_link_is_the_port_really_bound():
    """The configured dashboard port is taken: the link names the port that answers."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        config = ClusterConfig(
            n_workers=1, memory_limit="2GiB", dashboard_address=f"127.0.0.1:{port}"
        )
        with pytest.warns(UserWarning, match="already in use"), dask_client(config) as client:
            link = dashboard_link(client)
            assert link.startswith("http://127.0.0.1:") and f":{port}/" not in link
            with urllib.request.urlopen(link, timeout=20) as r:
                assert r.status == 200
            assert describe_cluster(client)["dashboard"] == link


def _imported(modules) -> list[bool]:
    return [m in sys.modules for m in modules]


def test_workers_import_the_stage_modules_when_the_cluster_starts():
    """A fresh embedded cluster's worker has imported every stage module before its first
    task (the import is part of starting the cluster, not of the first stage)."""
    import logging

    from bigcat.cluster import STAGE_MODULES

    before = logging.getLogger("distributed").level
    with dask_client(ClusterConfig(n_workers=1, memory_limit="2GiB")) as client:
        assert list(client.run(_imported, STAGE_MODULES).values()) == [[True] * len(STAGE_MODULES)]
    # the close quiets distributed's shutdown chatter only while it runs: a notebook's next
    # cluster logs as before
    assert logging.getLogger("distributed").level == before
