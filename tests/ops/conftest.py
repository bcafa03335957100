"""Operations tests: real `dask scheduler`/`dask worker` processes on 127.0.0.1, killed on purpose.

Every process these tests start is recorded and stopped by them (by PID, checked by its start
time); nothing else on the machine is signalled. The small survey (20,000 rows, nside 16, tasks
of ~1,500 rows) makes a photometry stage of ~2,400 partition files in ~14 tasks, long enough
to kill something while it runs.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pandas as pd
import psutil
import pyarrow.dataset as ds
import pytest

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
ROWS = 20_000
NSIDE = 16
CONFIG_TOML = """\
[process]
target_task_rows = 1500
[cluster]
dashboard_address = "127.0.0.1:0"
n_workers = 2
memory_limit = "3GiB"
[stage1]
max_epochs = 4
patience = 2
mc_passes = 10
training_cap = 5000
[stage2]
max_epochs = 20
patience = 5
mc_passes = 10
[vertex]
n_burn = 20
n_steps = 40
"""
#: Where the dashboard screenshot is kept (also reported by the test).
SCREENSHOT = Path(os.environ.get("BIGCAT_SCREENSHOT_DIR", REPO / "tests" / "ops" / "artifacts"))


@pytest.fixture(scope="session")
def ops_config(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ops-config") / "bigcat.toml"
    path.write_text(CONFIG_TOML)
    return path


def bigcat_process_cmd(config: Path, out: Path, *extra: str) -> list[str]:
    """The `bigcat process` command every ops test runs (absolute paths: workers share them)."""
    return [
        sys.executable,
        "-m",
        "bigcat",
        "process",
        "--rows",
        str(ROWS),
        "--nside",
        str(NSIDE),
        "--partition-rows",
        "0",  # one partition per pixel: many small files, so a kill lands mid-stage
        "--config",
        str(config),
        "--out",
        str(out.resolve()),
        *extra,
    ]


def clean_env() -> dict[str, str]:
    """The environment for child processes, without a scheduler address from outside."""
    env = dict(os.environ)
    env.pop("DASK_SCHEDULER_ADDRESS", None)
    return env


def read_output(run_dir: Path) -> pd.DataFrame:
    """The processed catalogue of a run, sorted by source_id."""
    table = ds.dataset(run_dir / "catalog" / "dataset", format="parquet").to_table()
    return table.to_pandas().sort_values("source_id", ignore_index=True)


def partition_files(run_dir: Path) -> list[Path]:
    """Photometry-stage partition files written so far (temporary files start with a dot).

    The photometry stage writes RUN_DIR/stages/photometry/ once later stages exist, and wrote
    RUN_DIR/catalog/ before that; both layouts are followed.
    """
    staged = run_dir / "stages" / "photometry"
    root = (staged if staged.exists() else run_dir / "catalog") / "dataset"
    return sorted(root.rglob("Npix=*.parquet")) if root.exists() else []


def stage_record(run_json: dict, name: str) -> dict:
    """The run.json record of one stage."""
    return next(s for s in run_json["stages"] if s["stage"] == name)


def wait_for(predicate, timeout: float, what: str, proc: subprocess.Popen | None = None) -> None:
    """Poll ``predicate`` every 50 ms; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if proc is not None and proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"process ended (status {proc.returncode}) before {what}:\n{err[-3000:]}")
        time.sleep(0.05)
    pytest.fail(f"timed out after {timeout} s waiting for {what}")


def start_process(cmd: list[str]) -> subprocess.Popen:
    """Start ``cmd`` in its own session with the clean environment, stderr captured."""
    return subprocess.Popen(
        cmd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=clean_env(),
        start_new_session=True,
    )


def photometry_started(run_dir: Path) -> bool:
    log = run_dir / "run.log"
    return log.exists() and "stage photometry: started" in log.read_text()


def kill_tree_we_started(procs: list[psutil.Process]) -> list[int]:
    """SIGKILL those of ``procs`` still alive (same PID and start time); return their PIDs."""
    alive = []
    for p in procs:
        try:
            if p.is_running():  # psutil compares the creation time: a reused PID is not ours
                p.kill()
                alive.append(p.pid)
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs([p for p in procs if p.pid in alive], timeout=10)
    return alive


@pytest.fixture(scope="session")
def reference_run(ops_config, tmp_path_factory) -> Path:
    """An uninterrupted `bigcat process` on the embedded LocalCluster (2 workers)."""
    out = tmp_path_factory.mktemp("reference") / "run"
    proc = subprocess.run(
        bigcat_process_cmd(ops_config, out),
        capture_output=True,
        text=True,
        timeout=600,
        env=clean_env(),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def local_dask(tmp_path_factory):
    """deploy/local/start.sh 2 on loopback (any free ports); stop.sh afterwards, checked."""
    state = tmp_path_factory.mktemp("dask-state")
    env = {
        **clean_env(),
        "BIGCAT_DASK_STATE": str(state),
        "BIGCAT_DASK_PORT": "0",
        "BIGCAT_DASHBOARD_PORT": "0",
        "BIGCAT_DASK_MEMORY": "3GiB",
        "PYTHON": sys.executable,
    }
    start = subprocess.run(
        ["bash", str(DEPLOY / "local" / "start.sh"), "2"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    info = {"state": state, "env": env, "start_stdout": start.stdout}
    try:
        assert start.returncode == 0, start.stderr
        values = dict(
            line.split("=", 1) for line in (state / "env").read_text().splitlines() if "=" in line
        )
        info["address"] = values["DASK_SCHEDULER_ADDRESS"]
        info["dashboard"] = values["BIGCAT_DASHBOARD"]
        info["records"] = [line.split() for line in (state / "pids").read_text().splitlines()]
        yield info
    finally:
        stop_local_dask(info)


def started_processes(state: Path) -> list[psutil.Process]:
    """Processes alive now that start.sh started: recorded PIDs and the members of their sessions."""
    records = [line.split() for line in (state / "pids").read_text().splitlines() if line]
    leaders = {int(pid) for _, pid, _ in records}
    procs = []
    for p in psutil.process_iter():
        try:
            if p.pid in leaders or os.getsid(p.pid) in leaders:
                procs.append(p)
        except (psutil.NoSuchProcess, ProcessLookupError, PermissionError):
            continue
    return procs


def stop_local_dask(info: dict) -> None:
    """Run stop.sh; check that it stopped all it started and left a bystander alone."""
    state = info["state"]
    if not (state / "pids").exists():
        return
    ours = started_processes(state)
    bystander = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        stop = subprocess.run(
            ["bash", str(DEPLOY / "local" / "stop.sh"), "20"],
            capture_output=True,
            text=True,
            timeout=60,
            env=info["env"],
        )
        survivors = [p.pid for p in ours if p.is_running()]
        info["stop"] = {"returncode": stop.returncode, "stderr": stop.stderr, "left": survivors}
        bystander_alive = bystander.poll() is None
    finally:
        kill_tree_we_started(ours)
        bystander.kill()
        bystander.wait()
    assert stop.returncode == 0, stop.stderr
    assert not survivors, f"stop.sh left processes it started: {survivors}"
    assert bystander_alive, "stop.sh signalled a process it did not start"


# --- headless Chromium, driven over the DevTools protocol -----------------------------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,900",
]
#: Task keys and names held by the Bokeh data sources of the page (task stream, progress).
BOKEH_KEYS_JS = """(() => {
  const out = [];
  for (const d of ((window.Bokeh && Bokeh.documents) || [])) {
    for (const m of d.all_models) {
      const data = m.data;
      if (!data || typeof data !== "object") continue;
      for (const col of ["key", "name"]) {
        const v = data instanceof Map ? data.get(col) : data[col];
        if (v && v.length !== undefined) for (const k of v) out.push(String(k));
      }
    }
  }
  return JSON.stringify(out.slice(-500));
})()"""


async def _cdp_screenshot(
    url: str, png: Path, want: str, timeout: float, hover: tuple = ()
) -> dict:
    from tornado.websocket import websocket_connect

    profile = tempfile.mkdtemp(prefix="bigcat-chromium-")
    proc = subprocess.Popen(
        [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--remote-debugging-port=0"]
        + ["about:blank"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        port_file = Path(profile) / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (port_file.exists() and port_file.read_text().count("\n") >= 1):
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("chromium did not open its DevTools port")
            await asyncio.sleep(0.05)
        port = int(port_file.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as r:
            page = next(t for t in json.load(r) if t["type"] == "page")
        conn = await websocket_connect(page["webSocketDebuggerUrl"], max_message_size=2**28)
        counter = 0

        async def call(method: str, **params):
            nonlocal counter
            counter += 1
            await conn.write_message(
                json.dumps({"id": counter, "method": method, "params": params})
            )
            while True:
                msg = json.loads(await conn.read_message())
                if msg.get("id") == counter:
                    if "error" in msg:
                        raise RuntimeError(f"{method}: {msg['error']}")
                    return msg["result"]

        await call("Page.enable")
        await call("Page.navigate", url=url)
        keys: list[str] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            res = await call("Runtime.evaluate", expression=BOKEH_KEYS_JS, returnByValue=True)
            keys = json.loads(res["result"].get("value") or "[]")
            if any(re.search(want, k) for k in keys):
                break
            await asyncio.sleep(0.25)
        await asyncio.sleep(1.0)  # let the canvas draw what the data sources hold
        for x, y in hover:  # a pointer over a task shows its key in Bokeh's tooltip
            await call("Input.dispatchMouseEvent", type="mouseMoved", x=x, y=y)
            await asyncio.sleep(0.5)
        shot = await call("Page.captureScreenshot", format="png")
        png.parent.mkdir(parents=True, exist_ok=True)
        png.write_bytes(base64.b64decode(shot["data"]))
        conn.close()
        return {"keys": keys, "png": png}
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # its own session: chromium and its helpers only
        proc.wait()
        shutil.rmtree(profile, ignore_errors=True)


def dashboard_screenshot(
    url: str, png: Path, want: str, timeout: float = 30, hover: tuple = ()
) -> dict:
    """Load ``url`` in headless Chromium, wait until a Bokeh data source holds a key matching
    ``want`` (or ``timeout``), move the pointer over ``hover`` points (x, y), and save a PNG
    screenshot. Returns the keys seen and the path."""
    return asyncio.run(_cdp_screenshot(url, png, want, timeout, hover))


@pytest.fixture(scope="session")
def ops():
    """The helpers above, for the test modules (conftest is not importable by name)."""
    import types

    return types.SimpleNamespace(
        cmd=bigcat_process_cmd,
        env=clean_env,
        start=start_process,
        read_output=read_output,
        partition_files=partition_files,
        stage=stage_record,
        wait_for=wait_for,
        photometry_started=photometry_started,
        kill_tree_we_started=kill_tree_we_started,
        screenshot=dashboard_screenshot,
        chromium=CHROMIUM,
        screenshot_dir=SCREENSHOT,
    )
