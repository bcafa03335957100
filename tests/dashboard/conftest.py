"""Fixtures of the live sky map tests: an in-process scheduler with a dashboard, a `dask
scheduler` in another process (that cannot import bigcat, or can), and headless Chromium
driven over the DevTools protocol.

Every process these fixtures start is stopped by them, by its PID (its own session for
Chromium and its helpers); nothing else on the machine is signalled.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest
from distributed import Client, LocalCluster

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
#: The scheduler of the external-scheduler tests; with ``block`` it cannot import bigcat
#: (``sys.modules["bigcat"] = None``), like a stock ``dask scheduler``.
SCHEDULER_SCRIPT = """
import sys
if sys.argv.pop(1) == "block":
    sys.modules["bigcat"] = None
from distributed.cli.dask_scheduler import main
sys.argv = ["dask-scheduler"] + sys.argv[1:]
main()
"""


@pytest.fixture(scope="module")
def scheduler_client():
    """A client of an in-process scheduler on 127.0.0.1 with its dashboard and one
    thread worker (the board is driven directly; the worker runs the on_done test)."""
    with (
        LocalCluster(
            n_workers=1,
            threads_per_worker=1,
            processes=False,
            protocol="tcp://",
            host="127.0.0.1",
            dashboard_address="127.0.0.1:0",
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client


def start_scheduler(tmp: Path, block_bigcat: bool) -> tuple[subprocess.Popen, dict]:
    """``dask scheduler`` in a subprocess on loopback (any free ports); its scheduler file."""
    sched_file = tmp / "scheduler.json"
    env = {k: v for k, v in os.environ.items() if k != "DASK_SCHEDULER_ADDRESS"}
    with open(tmp / "scheduler.log", "w") as log:  # the child keeps its own copy
        proc = subprocess.Popen(
            [sys.executable, "-c", SCHEDULER_SCRIPT, "block" if block_bigcat else "allow"]
            + ["--host", "127.0.0.1", "--port", "0", "--dashboard-address", "127.0.0.1:0"]
            + ["--scheduler-file", str(sched_file), "--no-show"],
            stdout=subprocess.DEVNULL,
            stderr=log,
            cwd=tmp,
            env=env,
            start_new_session=True,
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if sched_file.exists():
            try:
                info = json.loads(sched_file.read_text())
                if info.get("services", {}).get("dashboard"):
                    return proc, info
            except ValueError:
                pass
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    stop_process(proc)
    pytest.fail(f"dask scheduler did not start: {(tmp / 'scheduler.log').read_text()[-2000:]}")


def stop_process(proc: subprocess.Popen) -> None:
    """Stop a process these fixtures started (SIGTERM, then SIGKILL), by its PID."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def external_scheduler(tmp_path, request):
    """(address, dashboard port, log path) of a scheduler in another process;
    ``request.param``: True for one that cannot import bigcat."""
    proc, info = start_scheduler(tmp_path, bool(getattr(request, "param", True)))
    try:
        yield info["address"], info["services"]["dashboard"], tmp_path / "scheduler.log"
    finally:
        stop_process(proc)


# --- headless Chromium over the DevTools protocol ----------------------------------------


class Browser:
    """One headless Chromium page: navigate, evaluate JS, screenshot; network requests are
    recorded (``requests``), and every host but 127.0.0.1 is unresolvable (no network)."""

    def __init__(self) -> None:
        self.profile = tempfile.mkdtemp(prefix="bigcat-chromium-")
        self.proc = subprocess.Popen(
            [
                CHROMIUM,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--window-size=1300,900",
                "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
                f"--user-data-dir={self.profile}",
                "--remote-debugging-port=0",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.loop = asyncio.new_event_loop()
        self.requests: list[str] = []
        self.failed: list[str] = []
        self.counter = 0
        self.conn = None
        self.run(self._connect())

    def run(self, coro):
        return self.loop.run_until_complete(coro)

    async def _connect(self) -> None:
        from tornado.websocket import websocket_connect

        port_file = Path(self.profile) / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (port_file.exists() and port_file.read_text().count("\n") >= 1):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError("chromium did not open its DevTools port")
            await asyncio.sleep(0.05)
        port = int(port_file.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as r:
            page = next(t for t in json.load(r) if t["type"] == "page")
        self.conn = await websocket_connect(page["webSocketDebuggerUrl"], max_message_size=2**28)
        await self._call("Page.enable")
        await self._call("Network.enable")

    async def _call(self, method: str, **params):
        self.counter += 1
        await self.conn.write_message(
            json.dumps({"id": self.counter, "method": method, "params": params})
        )
        while True:
            msg = json.loads(await self.conn.read_message())
            if msg.get("method") == "Network.requestWillBeSent":
                self.requests.append(msg["params"]["request"]["url"])
            if msg.get("method") == "Network.loadingFailed":
                self.failed.append(msg["params"].get("errorText", "?"))
            if msg.get("id") == self.counter:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg["result"]

    def navigate(self, url: str) -> None:
        self.run(self._call("Page.navigate", url=url))

    def evaluate(self, expression: str):
        res = self.run(self._call("Runtime.evaluate", expression=expression, returnByValue=True))
        return res["result"].get("value")

    def state(self) -> dict:
        """The page's own account of what it drew (``window.bigcatSkymap``)."""
        js = """(() => { const S = window.bigcatSkymap; if (!S) return null;
            return JSON.stringify({drawn: S.drawn, draws: S.draws, polls: S.polls,
              errors: S.errors, mode: S.mode, counts: S.counts, geometryId: S.geometryId,
              stage: S.status && S.status.stage, lastError: S.lastError,
              canvas: document.getElementById("map").toDataURL().length,
              fehEnabled: !document.querySelector('input[value="feh"]').disabled}); })()"""
        value = self.evaluate(js)
        return json.loads(value) if value else {}

    def wait_state(self, predicate, timeout: float, what: str) -> dict:
        deadline = time.monotonic() + timeout
        state: dict = {}
        while time.monotonic() < deadline:
            state = self.state()
            if state and predicate(state):
                return state
            self.run(asyncio.sleep(0.2))
        pytest.fail(f"timed out after {timeout} s waiting for the page: {what}; state {state}")

    def screenshot(self, path: Path) -> bytes:
        shot = self.run(self._call("Page.captureScreenshot", format="png"))
        data = base64.b64decode(shot["data"])
        path.write_bytes(data)
        return data

    def close(self) -> None:
        try:
            if self.conn is not None:
                self.conn.close()
        finally:
            os.killpg(self.proc.pid, signal.SIGKILL)  # its own session: chromium and helpers
            self.proc.wait()
            self.loop.close()
            shutil.rmtree(self.profile, ignore_errors=True)


@pytest.fixture
def browser():
    if not CHROMIUM:
        pytest.skip(
            "chromium is not installed (Debian package `chromium`; .ci/run installs it with "
            "apt-get): the sky map page cannot be loaded"
        )
    b = Browser()
    try:
        yield b
    finally:
        b.close()
