"""deploy/: recipes that cannot run here (no Docker engine, SLURM or Kubernetes) are parsed and
checked for the structure they need; the shell scripts are syntax-checked."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
IMAGE = "bigcat:0.1.0"


def _yaml_docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


@pytest.mark.parametrize("script", sorted(DEPLOY.rglob("*.sh")) + sorted(DEPLOY.rglob("*.sbatch")))
def test_shell_scripts_parse(script):
    proc = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert script.read_text().startswith("#!/usr/bin/env bash\n")


@pytest.mark.parametrize("recipe", ["local", "slurm", "kubernetes", "docker"])
def test_each_recipe_has_a_readme_saying_how_to_run_and_watch(recipe):
    text = (DEPLOY / recipe / "README.md").read_text()
    assert "bigcat process" in text
    assert "--scheduler" in text or "jobqueue" in text
    assert "ashboard" in text and "/status" in text


def test_local_start_rejects_bad_worker_count_and_stop_without_state(tmp_path):
    env = {"BIGCAT_DASK_STATE": str(tmp_path / "state"), "PATH": "/usr/bin:/bin"}
    bad = subprocess.run(
        ["bash", str(DEPLOY / "local" / "start.sh"), "two"], capture_output=True, text=True, env=env
    )
    assert bad.returncode == 2 and "positive number of workers" in bad.stderr
    stop = subprocess.run(
        ["bash", str(DEPLOY / "local" / "stop.sh")], capture_output=True, text=True, env=env
    )
    assert stop.returncode == 0 and "nothing was started" in stop.stderr


def test_slurm_jobqueue_yaml_has_what_dask_jobqueue_needs():
    slurm = yaml.safe_load((DEPLOY / "slurm" / "jobqueue.yaml").read_text())["jobqueue"]["slurm"]
    for key in ("cores", "memory", "processes", "walltime", "scheduler-options"):
        assert key in slurm, key
    assert slurm["cores"] % slurm["processes"] == 0
    assert re.fullmatch(r"\d+(\.\d+)?\s*[KMGT]i?B", slurm["memory"])
    assert re.fullmatch(r"\d+:\d\d:\d\d", slurm["walltime"])
    assert slurm["scheduler-options"]["dashboard_address"].startswith("127.0.0.1:")


def test_sbatch_script_runs_bigcat_process_with_the_jobqueue_config():
    text = (DEPLOY / "slurm" / "bigcat-process.sbatch").read_text()
    assert re.search(r"^#SBATCH --time=", text, re.M)
    assert 'export DASK_CONFIG="$deploy/slurm"' in text
    line = next(ln for ln in text.splitlines() if "bigcat" in ln and " process " in ln)
    assert "--config" in line and "slurm/bigcat.toml" in line and "--out" in line


def test_kubernetes_daskcluster_manifest():
    (cluster,) = [
        d
        for d in _yaml_docs(DEPLOY / "kubernetes" / "daskcluster.yaml")
        if d["kind"] == "DaskCluster"
    ]
    assert cluster["apiVersion"] == "kubernetes.dask.org/v1"
    name = cluster["metadata"]["name"]
    spec = cluster["spec"]
    assert spec["worker"]["replicas"] >= 1
    (worker,) = spec["worker"]["spec"]["containers"]
    (scheduler,) = spec["scheduler"]["spec"]["containers"]
    assert worker["image"] == scheduler["image"] == IMAGE
    assert worker["args"][:2] == ["dask", "worker"] and scheduler["args"][:2] == [
        "dask",
        "scheduler",
    ]
    ports = {p["name"]: p["containerPort"] for p in scheduler["ports"]}
    assert ports == {"tcp-comm": 8786, "http-dashboard": 8787}
    service = spec["scheduler"]["service"]
    assert service["selector"]["dask.org/cluster-name"] == name
    assert {p["port"] for p in service["ports"]} == {8786, 8787}
    assert {p["targetPort"] for p in service["ports"]} == set(ports)
    assert service.get("type", "ClusterIP") == "ClusterIP"  # nothing exposed by default
    claims = {v["persistentVolumeClaim"]["claimName"] for v in spec["worker"]["spec"]["volumes"]}
    (pvc,) = _yaml_docs(DEPLOY / "kubernetes" / "storage.yaml")
    assert pvc["kind"] == "PersistentVolumeClaim" and pvc["metadata"]["name"] in claims
    assert "ReadWriteMany" in pvc["spec"]["accessModes"]


def test_kubernetes_job_runs_bigcat_process_against_the_cluster_service():
    (job,) = _yaml_docs(DEPLOY / "kubernetes" / "bigcat-process-job.yaml")
    assert job["apiVersion"] == "batch/v1" and job["kind"] == "Job"
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["image"] == IMAGE
    args = container["args"]
    assert args[:2] == ["bigcat", "process"]
    (cluster,) = _yaml_docs(DEPLOY / "kubernetes" / "daskcluster.yaml")
    assert (
        args[args.index("--scheduler") + 1] == f"tcp://{cluster['metadata']['name']}-scheduler:8786"
    )
    out = args[args.index("--out") + 1]
    mounts = [m["mountPath"] for m in container["volumeMounts"]]
    assert any(out.startswith(m + "/") for m in mounts)


def _dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", path.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_dockerfile_lint():
    path = DEPLOY / "docker" / "Dockerfile"
    ins = _dockerfile_instructions(path)
    known = {"FROM", "ENV", "WORKDIR", "RUN", "COPY", "USER", "EXPOSE", "CMD", "ARG", "LABEL"}
    assert {w for w, _ in ins} <= known, {w for w, _ in ins} - known
    assert ins[0] == ("FROM", "python:3.11-slim")
    runs = " && ".join(r for w, r in ins if w == "RUN")
    assert re.search(
        r"pip install --index-url https://download\.pytorch\.org/whl/cpu torch==2\.13\.0", runs
    )
    # torch pinned as in pyproject.toml, so `pip install .` keeps the CPU build
    assert '"torch==2.13.0"' in (REPO / "pyproject.toml").read_text()
    assert re.search(r"pip install \.(\s|$)", runs)
    assert runs.index("torch==2.13.0") < runs.index("pip install .")
    for w, rest in ins:
        if w == "COPY":  # every source exists in the build context (the repository root)
            *sources, _dest = shlex.split(rest)
            for src in sources:
                assert (REPO / src).exists(), src
        assert not (w == "ADD"), "use COPY, not ADD"
    users = [r for w, r in ins if w == "USER"]
    assert users and users[-1] not in ("root", "0"), "the image must not run as root"
    assert ("EXPOSE", "8786 8787") in ins
    ignore = (DEPLOY / "docker" / "Dockerfile.dockerignore").read_text().split()
    for needed in ("!pyproject.toml", "!README.md", "!bigcat/"):
        assert needed in ignore


def test_compose_file_scheduler_two_workers_and_a_process_run():
    compose = yaml.safe_load((DEPLOY / "docker" / "compose.yaml").read_text())
    services = compose["services"]
    assert {"scheduler", "worker-1", "worker-2", "process"} <= set(services)
    build = services["scheduler"]["build"]
    context = (DEPLOY / "docker" / build["context"]).resolve()
    assert context == REPO and (context / build["dockerfile"]).exists()
    for name in ("scheduler", "worker-1", "worker-2", "process"):
        assert services[name]["image"] == IMAGE
    assert services["scheduler"]["command"][:2] == ["dask", "scheduler"]
    for port in services["scheduler"]["ports"]:
        assert port.startswith("127.0.0.1:"), f"{port}: publish on loopback only"
    for name in ("worker-1", "worker-2"):
        cmd = services[name]["command"]
        assert cmd[:3] == ["dask", "worker", "tcp://scheduler:8786"]
        assert "scheduler" in services[name]["depends_on"]
    proc = services["process"]["command"]
    assert proc[:2] == ["bigcat", "process"]
    assert proc[proc.index("--scheduler") + 1] == "tcp://scheduler:8786"
    out = proc[proc.index("--out") + 1]
    volume_of = {v.split(":")[1]: v.split(":")[0] for v in services["process"]["volumes"]}
    worker_volumes = {v.split(":")[1]: v.split(":")[0] for v in services["worker-1"]["volumes"]}
    mount = next(m for m in volume_of if out.startswith(m + "/"))
    assert worker_volumes.get(mount) == volume_of[mount], "workers must see the run directory"
    assert volume_of[mount] in compose["volumes"]
