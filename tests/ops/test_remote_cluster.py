"""`bigcat process --scheduler` on a real scheduler + two workers (deploy/local/start.sh).

One run against the cluster, watched while it runs: the dashboard's /status page and the
scheduler's Prometheus /metrics are fetched, Chromium loads the dashboard, and one worker
process is SIGKILLed once the photometry stage is writing partitions. The run must still
finish (Dask reschedules the lost tasks) with the catalogue of an uninterrupted LocalCluster run.
"""

from __future__ import annotations

import json
import re
import subprocess
import threading
import time
import urllib.request

import pandas as pd
import psutil
import pytest

#: end-to-end runs of the whole pipeline: behind the slow marker (CI runs them)
pytestmark = pytest.mark.slow


def _get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=20) as r:
        return r.status, r.read().decode(errors="replace")


@pytest.fixture(scope="module")
def watched_run(local_dask, ops, ops_config, tmp_path_factory):
    """Run against the local cluster; fetch pages, take screenshots, kill a worker, mid-run."""
    out = tmp_path_factory.mktemp("remote") / "run"
    base = local_dask["dashboard"].removesuffix("/status")
    assert base.startswith("http://127.0.0.1:"), local_dask["dashboard"]
    worker_nanny = psutil.Process(
        int(next(r[1] for r in local_dask["records"] if r[0] == "worker-1"))
    )
    record: dict = {"base": base, "out": out}
    shots: dict = {}

    def status_shot():
        try:
            shots["status"] = ops.screenshot(
                f"{base}/status", ops.screenshot_dir / "dashboard-status.png", r"photometry", 20
            )
        except Exception as exc:  # reported by the screenshot test
            shots["status_error"] = repr(exc)

    t0 = time.monotonic()
    proc = subprocess.Popen(
        ops.cmd(ops_config, out, "--scheduler", local_dask["address"]),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ops.env(),
    )
    try:
        ops.wait_for(lambda: ops.photometry_started(out), 180, "the photometry stage", proc)
        record["status"] = _get(f"{base}/status")
        record["metrics"] = _get(f"{base}/metrics")
        shooter = None
        if ops.chromium:
            shooter = threading.Thread(target=status_shot)
            shooter.start()
        # kill the worker process (the nanny's child) once partitions are being written
        ops.wait_for(lambda: len(ops.partition_files(out)) > 0, 120, "a partition file", proc)
        victim = next(c for c in worker_nanny.children() if "spawn_main" in " ".join(c.cmdline()))
        victim.kill()
        record["killed"] = victim.pid
        record["files_at_kill"] = len(ops.partition_files(out))
        stdout, stderr = proc.communicate(timeout=600)
        record["seconds"] = time.monotonic() - t0
        if shooter is not None:
            shooter.join(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, stderr[-3000:]
    record.update(stdout=stdout, stderr=stderr, shots=shots)
    record["scheduler_log"] = (local_dask["state"] / "scheduler.log").read_text()
    record["run"] = json.loads((out / "run.json").read_text())
    if ops.chromium:
        # after the run the task stream still holds the tasks; hover one to show its name
        shots["tasks"] = ops.screenshot(
            f"{base}/individual-task-stream",
            ops.screenshot_dir / "dashboard-task-stream.png",
            r"photometry-pix\d+-",
            20,
            hover=((300, 200), (700, 500)),
        )
    return record


def test_worker_killed_mid_run_output_identical_to_local_cluster(watched_run, reference_run, ops):
    photometry = ops.stage(watched_run["run"], "photometry")
    assert watched_run["files_at_kill"] < photometry["partitions"], "the kill came too late"
    # the scheduler saw the worker die and the run went on without failing
    log = watched_run["scheduler_log"]
    assert re.search(r"Remove worker .*|Worker .* (died|failed)", log), log[-2000:]
    assert photometry["rows"] == 20_000
    # partitions the killed worker had finished before it died are reused by the retried
    # task (written atomically with the same fingerprint), the rest are computed
    assert photometry["partitions_computed"] > photometry["partitions"] // 2
    assert watched_run["run"]["cluster"]["scheduler"].startswith("tcp://127.0.0.1:")
    pd.testing.assert_frame_equal(
        ops.read_output(watched_run["out"]), ops.read_output(reference_run)
    )


def test_dashboard_status_and_prometheus_metrics_during_run(watched_run):
    status, body = watched_run["status"]
    assert status == 200 and "<html" in body.lower()
    status, metrics = watched_run["metrics"]
    assert status == 200
    assert "dask_scheduler_workers" in metrics and "dask_scheduler_tasks" in metrics
    # the dashboard printed by the CLI and saved in run.json is the one that answers
    assert f"Dask dashboard: {watched_run['base']}/status" in watched_run["stderr"]
    assert watched_run["run"]["cluster"]["dashboard"] == f"{watched_run['base']}/status"


def test_dashboard_task_stream_screenshot_shows_bigcat_tasks(watched_run, ops):
    if not ops.chromium:
        pytest.skip(
            "chromium is not installed (Debian package `chromium`; .ci/run installs it with "
            "apt-get): the dashboard screenshot cannot be taken"
        )
    shots = watched_run["shots"]
    assert "status_error" not in shots, shots.get("status_error")
    for name in ("status", "tasks"):
        png = shots[name]["png"]
        data = png.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000, (png, len(data))
        assert _distinct_colours(png) > 5, f"{png} looks blank"
    # the task stream the browser drew holds bigcat's task names (the latest stages' tasks)
    keys = shots["tasks"]["keys"]
    named = r"(photometry|stage1|stage2|labels|gradient|vertex|report)-pix\d+(-\d+)?-[0-9a-f]{8}"
    assert any(re.fullmatch(named, k) for k in keys), keys[:20]
    assert any(k == "photometry" for k in shots["status"]["keys"]), shots["status"]["keys"][:20]


def _distinct_colours(png) -> int:
    """Number of distinct pixel colours in a PNG (matplotlib reads PNG without extra packages)."""
    import matplotlib.image as mpimg
    import numpy as np

    img = mpimg.imread(png)
    flat = (img.reshape(-1, img.shape[-1]) * 255).astype(np.uint8)
    return len(np.unique(flat, axis=0))
