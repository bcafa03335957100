"""A live sky map of a `bigcat process` run, served by the Dask dashboard (docs/dashboard.md).

While a run goes on, the dashboard address that ``bigcat process`` prints also serves

* ``/bigcat/skymap``: one self-contained HTML page (inline CSS and JS, nothing from the
  network) drawing the run's partitions on a ``<canvas>``, Galactic Mollweide, coloured by the
  last stage done, or by giants per deg^2, or (once stage 2 has values) by the median [Fe/H]
  per partition; it polls the two documents below every 1.5 s;
* ``/bigcat/status.json``: stage, partitions done per stage, rows, giants, labelled giants,
  an estimate of the time left in the current per-partition stage, run directory, time;
* ``/bigcat/pixels.json``: the partitions' outlines, computed here in Python
  (``bigcat.catalog.skymap.partition_outlines``: ``healpy.boundaries``, nested, any order,
  projected to Mollweide in Galactic coordinates) so the page only draws, with per-partition
  values; ``?geometry=0`` gives the values alone (what the page polls).

Design: a scheduler plugin, fed by the client
---------------------------------------------
The page has to come from the dashboard's own address, and on ``--scheduler tcp://...`` that
server lives in another process, often on another host. So :class:`SkyMapPlugin` (a
``SchedulerPlugin`` registered with ``client.register_plugin``) adds the three routes to the
scheduler's tornado application (``scheduler.http_application``, the ``RoutingApplication``
that also holds the Bokeh dashboard) and a scheduler handler, ``bigcat_dashboard_update``.
The data are made where they are: the per-partition summaries come back to the client (the
stages' ``as_completed`` loop), where :class:`Board` keeps the state
(``bigcat.catalog.skymap.SkyState``) and a background thread pushes it, serialised, at most
every second, through that handler (``client.scheduler.bigcat_dashboard_update(...)``, the
client's existing connection: no new port, no new pickled function per update). The
scheduler only stores three JSON documents and serves them; the outlines are sent once per
layout. Rejected: following task completions in the plugin's ``transition`` hook (the
summaries are task results held on the workers; the scheduler would have to fetch them) and
the client serving the page on its own port (not the printed address, and not reachable
where only the dashboard port is forwarded) -- kept only as the fallback below.

Robustness: the plugin is pickled by reference first (the scheduler imports
``bigcat.dashboard``, as it does where the deploy recipes run it); a scheduler that cannot
import bigcat gets the plugin's code by value (cloudpickle), so a stock ``dask scheduler``
works too: on the scheduler the plugin needs only tornado and distributed. If the plugin
cannot be installed at all (``register_scheduler_plugin`` among the scheduler's blocked
handlers, or no dashboard), the client serves the page itself on 127.0.0.1 (a warning gives
the address). Every failure is logged and none fails a run (the pipeline creates the board in
a ``try``; the board's callbacks never raise). A later run on the same scheduler takes the map
over (the plugin takes updates from its own board only, so an earlier run's board stops);
after :meth:`Board.close` the scheduler keeps showing the final state until then.
"""

from __future__ import annotations

import functools
import http.server
import json
import logging
import re
import sys
import threading
import time
import uuid
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import tornado.web
from distributed import Client
from distributed.diagnostics.plugin import SchedulerPlugin

logger = logging.getLogger(__name__)

#: The scheduler plugin's name and the scheduler handler the board pushes through.
NAME = "bigcat-dashboard"
OP = "bigcat_dashboard_update"
#: Pages served under ``<dashboard>/bigcat/``.
PAGES = ("skymap", "status.json", "pixels.json")
#: Seconds between the board's pushes (at most), and between pushes with no news.
PUSH_INTERVAL = 1.0
REFRESH_INTERVAL = 2.0

_BOARDS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


# --- what the server side holds and serves (scheduler plugin or the local fallback) --------


class _Store:
    """The three JSON documents of a run, as bytes, and the page."""

    def __init__(self, owner: str | None = None) -> None:
        self.owner = owner  # the board whose updates are taken (None: any)
        self.status = b'{"stage": "waiting", "pixels_total": 0}'
        self.values = b"null"
        self.geometry = b"null"
        self.geometry_id: str | None = None

    def update(
        self,
        status: bytes | None = None,
        values: bytes | None = None,
        geometry: bytes | None = None,
        geometry_id: str | None = None,
        token: str | None = None,
    ) -> dict:
        if self.owner is not None and token != self.owner:
            return {"superseded": True}  # a later run's board owns the map now
        if geometry is not None:
            self.geometry, self.geometry_id = geometry, geometry_id
        if values is not None:
            self.values = values
        if status is not None:
            self.status = status
        return {"geometry_id": self.geometry_id}

    def respond(self, page: str, geometry: str = "1") -> tuple[int, str, bytes]:
        if page == "status.json":
            return 200, "application/json", self.status
        if page == "pixels.json":
            if geometry == "0":
                return 200, "application/json", self.values
            body = b'{"geometry": ' + self.geometry + b', "values": ' + self.values + b"}"
            return 200, "application/json", body
        if page == "skymap":
            return 200, "text/html; charset=utf-8", PAGE.encode()
        return 404, "text/plain", b"not found"


class _SkyMapHandler(tornado.web.RequestHandler):
    """``/bigcat/<page>`` on the scheduler: answered by the plugin registered now (a later
    run's plugin replaces an earlier one; routes are added once per scheduler)."""

    def initialize(self, scheduler: Any, page: str) -> None:
        self.scheduler = scheduler
        self.page = page

    def get(self) -> None:
        store = getattr(self.scheduler.plugins.get(NAME), "store", None)
        if store is None:
            self.set_status(404)
            self.write("no bigcat run has attached a sky map to this scheduler")
            return
        code, ctype, body = store.respond(self.page, self.get_query_argument("geometry", "1"))
        self.set_status(code)
        self.set_header("Content-Type", ctype)
        self.set_header("Cache-Control", "no-store")
        self.write(body)


def _add_routes(scheduler: Any, prefix: str) -> None:
    """The ``bigcat/`` routes on the scheduler's HTTP application, at ``/`` and at the
    dashboard's prefix (once per scheduler and prefix)."""
    app = getattr(scheduler, "http_application", None)
    if app is None:
        raise RuntimeError("this scheduler has no HTTP server")
    have = set(getattr(app, "_bigcat_skymap_prefixes", ()))
    new = sorted({"/", prefix} - have)
    routes = [
        (re.escape(f"{p}bigcat/{page}"), _SkyMapHandler, {"scheduler": scheduler, "page": page})
        for p in new
        for page in PAGES
    ]
    if routes:
        app.add_handlers(r".*$", routes)
    app._bigcat_skymap_prefixes = have | set(new)


class SkyMapPlugin(SchedulerPlugin):
    """Scheduler plugin: serves the sky map from the dashboard's HTTP server and takes the
    board's updates through the scheduler handler :data:`OP`."""

    name = NAME

    def __init__(self, prefix: str = "/", owner: str | None = None) -> None:
        self.prefix = prefix if prefix.endswith("/") else prefix + "/"
        self.store = _Store(owner)

    async def start(self, scheduler: Any) -> None:
        _add_routes(scheduler, self.prefix)
        scheduler.plugins.pop(NAME, None)  # an earlier run's map: replaced without a warning
        scheduler.handlers[OP] = self.update

    def update(
        self,
        status: bytes | None = None,
        values: bytes | None = None,
        geometry: bytes | None = None,
        geometry_id: str | None = None,
        token: str | None = None,
    ) -> dict:
        return self.store.update(status, values, geometry, geometry_id, token)


# --- sinks: where the board's updates go ---------------------------------------------------


class _SchedulerSink:
    """Updates to the plugin on the scheduler, over the client's connection."""

    def __init__(self, client: Client, url: str) -> None:
        self.client = client
        self.url = url
        self.where = "the scheduler's dashboard"

    def send(self, **payload: Any) -> dict:
        call = getattr(self.client.scheduler, OP)
        return self.client.sync(call, callback_timeout=30, **payload) or {}

    def close(self) -> None:
        pass


class _LocalSink:
    """Fallback: the page served by this process on 127.0.0.1 (a port of its own)."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        store = self.store = _Store()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the http.server API
                url = urlparse(self.path)
                page = url.path.rsplit("/", 1)[-1] if url.path.startswith("/bigcat/") else ""
                geometry = parse_qs(url.query).get("geometry", ["1"])[0]
                code, ctype, body = store.respond(page, geometry)
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Cache-Control", "no-store")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self.server = http.server.ThreadingHTTPServer((host, 0), Handler)
        self.server.daemon_threads = True
        port = self.server.server_address[1]
        self.url = f"http://{host}:{port}/bigcat/skymap"
        self.where = "this process"
        self.thread = threading.Thread(
            target=self.server.serve_forever, name="bigcat-skymap-http", daemon=True
        )
        self.thread.start()

    def send(self, **payload: Any) -> dict:
        return self.store.update(**payload)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# --- the board: the run's side ---------------------------------------------------------------


class Board:
    """The run's side of the sky map: events in, pushes out (in a background thread).

    ``stage_started(name)`` for every stage, ``partitions_done(stage, summaries)`` (or the
    callable ``on_done(stage)``, what the per-partition stages take) as partitions finish,
    ``close()`` at the end. None of them raises: a failure is logged once and the run goes on.
    """

    def __init__(
        self, client: Client, run_dir: str | Path, sink: Any, token: str | None = None
    ) -> None:
        from bigcat.catalog.skymap import SkyState

        self.client = client
        self.run_dir = Path(run_dir)
        self.state = SkyState(str(self.run_dir))
        self.sink = sink
        self.url: str | None = sink.url
        self._token = token or uuid.uuid4().hex[:8]
        self._lock = threading.Lock()
        self._dirty = threading.Event()
        self._stop = threading.Event()
        self._geometry: tuple[int, str, bytes] | None = None  # (layout version, id, JSON)
        self._sent_geometry: str | None = None
        self._last_push = 0.0
        self._failures = 0
        self._closed = False
        self._push()  # the first push in the caller: attach_dashboard sees a failure
        self._thread = threading.Thread(target=self._run, name="bigcat-skymap", daemon=True)
        self._thread.start()

    # -- events (called by the pipeline; never raise) --

    def stage_started(self, name: str) -> None:
        """A stage of the run started."""
        self._event(self.state.stage_started, name, labelled=True)

    def partitions_done(self, stage: str, summaries: list[dict]) -> None:
        """Per-partition summaries of ``stage`` (``planned: True``: about to be processed)."""
        self._event(self.state.partitions_done, stage, summaries)

    def on_done(self, stage: str) -> Callable[[list[dict]], None]:
        """The callback a per-partition stage takes (``on_done=``) for ``stage``."""
        return functools.partial(self.partitions_done, stage)

    def close(self) -> None:
        """Push the final state (stage "finished") and stop pushing."""
        if self._closed:
            return
        self._closed = True
        self._event(self.state.finish, labelled=True)
        self._stop.set()
        self._thread.join(timeout=60)
        try:
            self.sink.close()
        except Exception as exc:  # noqa: BLE001
            logger.debug("sky map: closing %s: %s", self.sink, exc)
        if _BOARDS.get(self.client) is self:
            del _BOARDS[self.client]

    # -- internals --

    def _event(self, method: Callable[..., None], *args: Any, labelled: bool = False) -> None:
        try:
            with self._lock:
                method(*args)
                if labelled:
                    self._read_labelled()
            self._dirty.set()
        except Exception as exc:  # noqa: BLE001 - the sky map never fails a run
            logger.warning("sky map: %s%r failed: %s", method.__name__, args[:1], exc)

    def _read_labelled(self) -> None:
        """The stage-2 training sample's size, from this run's stage2-train record in
        run.json (saved when that stage ends)."""
        if "stage2-train" not in self.state.stages_seen or self.state.stage == "stage2-train":
            return
        try:
            stages = json.loads((self.run_dir / "run.json").read_text()).get("stages", [])
        except (OSError, ValueError, AttributeError):
            return
        for rec in stages:
            if (
                rec.get("stage") == "stage2-train"
                and float(rec.get("started_at", 0)) >= self.state.started - 1
            ):
                self.state.set_labelled(rec.get("labelled_giants"))

    def _run(self) -> None:
        while True:
            stopping = self._stop.wait(PUSH_INTERVAL)
            stale = time.monotonic() - self._last_push > REFRESH_INTERVAL
            if stopping or self._dirty.is_set() or stale:
                self._dirty.clear()
                try:
                    self._push()
                except Exception as exc:  # noqa: BLE001
                    self._failures += 1
                    # (the last push of a run being stopped races the client's close)
                    closing = stopping or getattr(self.client, "status", "running") != "running"
                    log = logger.warning if self._failures == 1 and not closing else logger.debug
                    log("sky map: cannot update %s: %s", self.sink.where, exc)
            if stopping or getattr(self.client, "status", "running") in ("closed", "closing"):
                return

    def _push(self) -> None:
        from bigcat.catalog.skymap import PARTITION_STAGES, X_MAX, Y_MAX, graticule

        with self._lock:
            version = self.state.layout_version
            status = self.state.status()
            columns = self.state.columns()
            keys = (
                self.state.keys()
                if self._geometry is None or self._geometry[0] != version
                else None
            )
        if keys is not None:
            from bigcat.catalog.skymap import FRAME, PROJECTION, partition_outlines

            gid = f"{self._token}-{version}"
            doc = {
                "geometry_id": gid,
                "frame": FRAME,
                "projection": PROJECTION,
                "x_max": X_MAX,
                "y_max": Y_MAX,
                "stage_names": list(PARTITION_STAGES),
                "order": [k[0] for k in keys],
                "pixel": [k[1] for k in keys],
                "rings": partition_outlines(keys) if keys else [],
                "graticule": graticule(),
            }
            self._geometry = (version, gid, _dumps(doc))
        assert self._geometry is not None
        gid = self._geometry[1]
        status["geometry_id"] = gid
        payload: dict[str, Any] = {
            "status": _dumps(status),
            "values": _dumps({"geometry_id": gid, **columns}),
            "geometry_id": gid,
            "token": self._token,
        }
        if self._sent_geometry != gid:
            payload["geometry"] = self._geometry[2]
        reply = self.sink.send(**payload)
        if reply.get("superseded"):
            logger.info("sky map: a later run took over %s; this run's board stops", self.url)
            self._stop.set()
            return
        self._sent_geometry = reply.get("geometry_id")
        self._last_push = time.monotonic()


class NullBoard:
    """The board of a run without a sky map: every call does nothing."""

    url = None

    def stage_started(self, name: str) -> None:
        pass

    def partitions_done(self, stage: str, summaries: list[dict]) -> None:
        pass

    def on_done(self, stage: str) -> Callable[[list[dict]], None] | None:
        return None

    def close(self) -> None:
        pass


def _dumps(doc: Any) -> bytes:
    return json.dumps(doc, separators=(",", ":"), allow_nan=False).encode()


def _page_url(dashboard: str) -> str:
    """``<dashboard base>/bigcat/skymap`` from the dashboard's link (``.../status``)."""
    base = dashboard[: -len("status")] if dashboard.endswith("/status") else dashboard
    return base.rstrip("/") + "/bigcat/skymap"


def _register(client: Client, plugin: SkyMapPlugin) -> None:
    """Register ``plugin`` by reference; where the scheduler cannot import bigcat, by value."""
    try:
        client.register_plugin(plugin, name=NAME)
        return
    except Exception as exc:  # noqa: BLE001 - most often: no module named 'bigcat' there
        logger.debug("sky map plugin by reference failed (%s); sending its code", exc)
    import cloudpickle

    module = sys.modules[__name__]
    cloudpickle.register_pickle_by_value(module)
    try:
        client.register_plugin(plugin, name=NAME)
    finally:
        cloudpickle.unregister_pickle_by_value(module)


def attach_dashboard(client: Client, run_dir: str | Path) -> Board:
    """Start the live sky map of a run on ``client``'s scheduler and return its board.

    Installs :class:`SkyMapPlugin` on the scheduler (served at :func:`skymap_link`); if that
    is impossible, serves the page from this process on 127.0.0.1 instead (with a warning
    naming the address). Raises only if neither works.
    """
    from bigcat.cluster import dashboard_link

    previous = _BOARDS.get(client)
    if previous is not None:  # an earlier run on this client that did not close its board
        previous.close()
    token = uuid.uuid4().hex[:8]
    link = dashboard_link(client)
    board: Board | None = None
    if link:
        try:
            prefix = urlparse(_page_url(link)).path[: -len("bigcat/skymap")]
            _register(client, SkyMapPlugin(prefix or "/", owner=token))
            board = Board(client, run_dir, _SchedulerSink(client, _page_url(link)), token)
        except Exception as exc:  # noqa: BLE001
            logger.warning(
                "the scheduler cannot serve the sky map (%s); serving it from this process", exc
            )
    if board is None:
        board = Board(client, run_dir, _LocalSink())
        logger.warning("sky map: %s (served by this process, not the dashboard)", board.url)
    _BOARDS[client] = board
    logger.info("sky map: %s", board.url)
    return board


def skymap_link(client: Client) -> str | None:
    """The sky map's address for a run on ``client``: ``<dashboard>/bigcat/skymap`` (where
    :func:`attach_dashboard` puts it), the fallback's own address when that is in use, None
    when the scheduler serves no dashboard and no board is attached."""
    board = _BOARDS.get(client)
    if board is not None and board.url:
        return board.url
    from bigcat.cluster import dashboard_link

    link = dashboard_link(client)
    return _page_url(link) if link else None


# --- the page --------------------------------------------------------------------------------

PAGE = r"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>bigcat sky map</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body { margin: 0; font: 13px -apple-system, "Segoe UI", Helvetica, Arial, sans-serif;
       color: #1d232a; background: #fafafa; }
header { background: #1f3b57; color: #fff; padding: 8px 16px; display: flex; gap: 22px;
         align-items: baseline; flex-wrap: wrap; }
header h1 { font-size: 17px; margin: 0; }
header a { color: #cfe3f7; }
#stage { font-weight: 600; }
#conn.err { color: #ffb4a8; }
main { display: flex; gap: 18px; padding: 10px 16px; flex-wrap: wrap; align-items: flex-start; }
#mapbox { flex: 1 1 760px; min-width: 420px; position: relative; }
#map { width: 100%; display: block; background: #fff; border: 1px solid #d8dee4; }
#modes { margin: 8px 0 4px; }
#modes label { margin-right: 14px; }
#legend { display: block; margin-top: 2px; }
aside { flex: 0 0 300px; }
aside h2 { font-size: 14px; margin: 4px 0 6px; }
.stage-row { display: flex; justify-content: space-between; font-size: 12px; }
.bar { height: 9px; background: #e9eef3; border-radius: 3px; overflow: hidden; margin: 2px 0 8px; }
.bar > div { height: 100%; width: 0; }
table.kv { border-collapse: collapse; font-size: 12px; }
table.kv th { text-align: left; font-weight: 600; padding: 2px 8px 2px 0; vertical-align: top; }
table.kv td { padding: 2px 0; word-break: break-all; }
.note { font-size: 12px; color: #555; max-width: 900px; }
#tip { position: absolute; pointer-events: none; display: none; background: rgba(255,255,255,.96);
       border: 1px solid #8a96a3; padding: 4px 7px; font-size: 12px; white-space: pre; }
</style></head>
<body>
<header><h1>bigcat sky map</h1>
<span>stage: <span id="stage">waiting</span></span><span id="eta"></span>
<span id="conn">connecting</span><a href="../status">Dask dashboard</a></header>
<main>
<div id="mapbox">
<canvas id="map" width="960" height="480" data-drawn="0" data-mode="stage"></canvas>
<div id="tip"></div>
<div id="modes">Colour by:
<label><input type="radio" name="mode" value="stage" checked> last stage done</label>
<label><input type="radio" name="mode" value="giants"> giants per deg&sup2;</label>
<label><input type="radio" name="mode" value="feh" disabled> median [Fe/H]</label></div>
<canvas id="legend" width="640" height="40"></canvas>
<p class="note">Galactic coordinates, Mollweide projection: l = 0&deg; at the centre,
l increasing to the left, b = 0&deg; across the middle; graticule every 30&deg; in b and
60&deg; in l. Each outline is one partition of the run (nested HEALPix, orders as the
catalogue has them). Grey: nothing done (yet) or no value.</p>
</div>
<aside><h2>Progress</h2><div id="progress"></div><h2>Run</h2>
<table class="kv" id="facts"></table></aside>
</main>
<script>
"use strict";
(function () {
  const POLL_MS = 1500;
  const STAGE_COLOURS = ["#e6e6e6", "#fde725", "#35b779", "#31688e", "#440154"];
  const NONE = "#e6e6e6";
  const VIRIDIS = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
  const COOLWARM = [[59, 76, 192], [141, 176, 254], [221, 221, 221], [244, 154, 123], [180, 4, 38]];
  const S = {geometry: null, geometryId: null, values: null, status: null, paths: null,
             mode: "stage", draws: 0, drawn: 0, polls: 0, errors: 0, counts: {}, lastError: ""};
  window.bigcatSkymap = S;
  const canvas = document.getElementById("map"), ctx = canvas.getContext("2d");
  const legend = document.getElementById("legend"), lctx = legend.getContext("2d");
  const tip = document.getElementById("tip");
  const $ = (id) => document.getElementById(id);
  const fmt = (v) => v === null || v === undefined ? "-" : Number(v).toLocaleString("en");

  function ramp(stops, t) {
    t = Math.max(0, Math.min(1, t)) * (stops.length - 1);
    const i = Math.min(stops.length - 2, Math.floor(t)), f = t - i;
    const c = stops[i].map((a, k) => Math.round(a + f * (stops[i + 1][k] - a)));
    return "rgb(" + c.join(",") + ")";
  }
  function quantile(sorted, q) {
    if (!sorted.length) return NaN;
    return sorted[Math.min(sorted.length - 1, Math.max(0, Math.floor(q * (sorted.length - 1))))];
  }
  function layout() {
    const dpr = window.devicePixelRatio || 1;
    const w = Math.max(320, canvas.clientWidth || 960);
    canvas.width = Math.round(w * dpr);
    canvas.height = Math.round(w * dpr / 2);
    S.paths = null;
  }
  function buildPaths() {
    const g = S.geometry, W = canvas.width, H = canvas.height, pad = 6;
    const s = Math.min((W - 2 * pad) / (2 * g.x_max), (H - 2 * pad) / (2 * g.y_max));
    const X = (x) => W / 2 + s * x, Y = (y) => H / 2 - s * y;
    const paths = [];
    for (const rings of g.rings) {
      const p = new Path2D();
      for (const r of rings) {
        p.moveTo(X(r[0]), Y(r[1]));
        for (let k = 2; k < r.length; k += 2) p.lineTo(X(r[k]), Y(r[k + 1]));
        p.closePath();
      }
      paths.push(p);
    }
    const grid = new Path2D();
    for (const r of g.graticule) {
      grid.moveTo(X(r[0]), Y(r[1]));
      for (let k = 2; k < r.length; k += 2) grid.lineTo(X(r[k]), Y(r[k + 1]));
    }
    const edge = new Path2D();
    edge.ellipse(W / 2, H / 2, s * g.x_max, s * g.y_max, 0, 0, 2 * Math.PI);
    S.paths = {pixels: paths, grid: grid, edge: edge};
  }
  function colours() {
    const v = S.values, n = S.geometry.rings.length, out = new Array(n).fill(NONE);
    const leg = {mode: S.mode};
    if (!v || v.geometry_id !== S.geometryId) return [out, leg];
    if (S.mode === "stage") {
      for (let i = 0; i < n; i++) out[i] = STAGE_COLOURS[v.done[i] || 0];
    } else {
      const key = S.mode === "giants" ? "giants_per_deg2" : "feh_median";
      const raw = v[key], ok = [];
      for (let i = 0; i < n; i++) {
        const x = raw[i];
        if (x !== null && x !== undefined && (S.mode !== "giants" || x > 0)) ok.push(x);
      }
      ok.sort((a, b) => a - b);
      let lo, hi, f;
      if (S.mode === "giants") {
        lo = Math.log10(ok.length ? ok[0] : 1); hi = Math.log10(ok.length ? ok[ok.length - 1] : 10);
        if (hi - lo < 1e-6) hi = lo + 1;
        f = (x) => ramp(VIRIDIS, (Math.log10(x) - lo) / (hi - lo));
        leg.lo = Math.pow(10, lo); leg.hi = Math.pow(10, hi); leg.stops = VIRIDIS;
        leg.label = "giants per deg\u00b2 (log scale)";
      } else {
        lo = quantile(ok, 0.02); hi = quantile(ok, 0.98);
        if (!(hi - lo > 1e-6)) { lo = (lo || 0) - 0.1; hi = lo + 0.2; }
        f = (x) => ramp(COOLWARM, (x - lo) / (hi - lo));
        leg.lo = lo; leg.hi = hi; leg.stops = COOLWARM; leg.label = "median [Fe/H] (dex)";
      }
      for (let i = 0; i < n; i++) {
        const x = raw[i];
        if (x !== null && x !== undefined && (S.mode !== "giants" || x > 0)) out[i] = f(x);
      }
      leg.n = ok.length;
    }
    return [out, leg];
  }
  function drawLegend(leg) {
    const W = legend.width, H = legend.height;
    lctx.clearRect(0, 0, W, H);
    lctx.font = "12px sans-serif"; lctx.fillStyle = "#1d232a"; lctx.textBaseline = "middle";
    if (leg.mode === "stage") {
      const names = ["none"].concat(S.geometry.stage_names);
      let x = 4;
      const done = S.values && S.values.done ? S.values.done : [];
      names.forEach((name, k) => {
        const count = done.filter((d) => (d || 0) === k).length;
        lctx.fillStyle = STAGE_COLOURS[k]; lctx.fillRect(x, 12, 16, 16);
        lctx.strokeStyle = "#999"; lctx.strokeRect(x + .5, 12.5, 15, 15);
        lctx.fillStyle = "#1d232a"; const t = name + " (" + count + ")";
        lctx.fillText(t, x + 21, 20); x += 30 + lctx.measureText(t).width;
      });
      return;
    }
    if (leg.lo === undefined) { lctx.fillText("no values yet", 4, 20); return; }
    const x0 = 60, w = 300;
    for (let i = 0; i < w; i++) { lctx.fillStyle = ramp(leg.stops, i / (w - 1)); lctx.fillRect(x0 + i, 10, 1, 14); }
    lctx.fillStyle = "#1d232a";
    const f = (x) => leg.mode === "giants" ? Number(x.toPrecision(3)).toLocaleString("en") : x.toFixed(2);
    lctx.textAlign = "right"; lctx.fillText(f(leg.lo), x0 - 6, 17);
    lctx.textAlign = "left"; lctx.fillText(f(leg.hi) + "   " + leg.label + ", " + leg.n + " partitions", x0 + w + 6, 17);
  }
  function draw() {
    if (!S.geometry) return;
    if (!S.paths) buildPaths();
    const [cols, leg] = colours();
    const W = canvas.width, H = canvas.height, P = S.paths;
    ctx.clearRect(0, 0, W, H);
    ctx.save();
    ctx.fillStyle = "#f7f7f7"; ctx.fill(P.edge); ctx.clip(P.edge);
    const counts = {};
    ctx.lineWidth = 0.6;
    for (let i = 0; i < P.pixels.length; i++) {
      ctx.fillStyle = cols[i]; ctx.strokeStyle = cols[i];
      ctx.fill(P.pixels[i]); ctx.stroke(P.pixels[i]);
      counts[cols[i]] = (counts[cols[i]] || 0) + 1;
    }
    ctx.strokeStyle = "rgba(60,60,60,0.35)"; ctx.lineWidth = 1; ctx.stroke(P.grid);
    ctx.restore();
    ctx.strokeStyle = "#555"; ctx.lineWidth = 1.2; ctx.stroke(P.edge);
    drawLegend(leg);
    S.draws++; S.drawn = P.pixels.length; S.counts = counts;
    canvas.dataset.drawn = String(S.drawn); canvas.dataset.mode = S.mode;
    canvas.dataset.draws = String(S.draws);
  }
  function renderStatus() {
    const st = S.status || {};
    $("stage").textContent = st.stage || "?";
    $("eta").textContent = st.eta_s === null || st.eta_s === undefined ? "" :
      "about " + (st.eta_s < 90 ? Math.round(st.eta_s) + " s" : Math.round(st.eta_s / 60) + " min") + " left in " + st.stage;
    const total = st.pixels_total || 0, done = st.pixels_done || {}, names = ["photometry", "stage1", "distance", "stage2"];
    $("progress").innerHTML = names.map((n, k) => {
      const d = done[n] || 0, pct = total ? (100 * d / total) : 0;
      return '<div class="stage-row"><span>' + n + '</span><span data-stage="' + n + '">' + fmt(d) + " / " + fmt(total) +
        '</span></div><div class="bar"><div style="width:' + pct.toFixed(1) + "%;background:" + STAGE_COLOURS[k + 1] + '"></div></div>';
    }).join("");
    const rows = [["rows done", fmt(st.rows_done) + (st.rows_stage ? " (" + st.rows_stage + ")" : "")],
      ["rows in all", fmt(st.rows_total)], ["giants", fmt(st.giants)], ["labelled giants", fmt(st.labelled)],
      ["with [Fe/H]", fmt(st.with_feh)],
      ["median [Fe/H]", st.feh_median === null || st.feh_median === undefined ? "-" : st.feh_median.toFixed(2) + " dex"],
      ["partitions", fmt(total)], ["run directory", st.run_dir || "-"],
      ["updated", st.updated ? new Date(st.updated * 1000).toLocaleTimeString() : "-"]];
    $("facts").innerHTML = rows.map((r) => "<tr><th>" + r[0] + "</th><td>" + String(r[1]).replace(/</g, "&lt;") + "</td></tr>").join("");
    const v = S.values, feh = document.querySelector('input[value="feh"]');
    feh.disabled = !(v && v.feh_median && v.feh_median.some((x) => x !== null));
  }
  async function getJSON(url) {
    const r = await fetch(url, {cache: "no-store"});
    if (!r.ok) throw new Error(url + ": HTTP " + r.status);
    return r.json();
  }
  async function poll() {
    try {
      const st = await getJSON("status.json");
      S.status = st;
      if (st.geometry_id && st.geometry_id !== S.geometryId) {
        const full = await getJSON("pixels.json");
        if (full.geometry) {
          S.geometry = full.geometry; S.geometryId = full.geometry.geometry_id; S.paths = null;
          S.values = full.values;
        }
      } else if (S.geometryId) {
        const v = await getJSON("pixels.json?geometry=0");
        if (v && v.geometry_id === S.geometryId) S.values = v;
      }
      S.polls++;
      $("conn").textContent = st.finished ? "run finished" : "live";
      $("conn").className = "";
      renderStatus(); draw();
    } catch (e) {
      S.errors++; S.lastError = String(e);
      $("conn").textContent = "no answer from the server, retrying (" + e.message + ")";
      $("conn").className = "err";
    } finally {
      setTimeout(poll, POLL_MS);
    }
  }
  for (const input of document.querySelectorAll('input[name="mode"]')) {
    input.addEventListener("change", () => { S.mode = input.value; location.hash = S.mode; draw(); });
  }
  const want = location.hash.slice(1);
  if (["stage", "giants", "feh"].includes(want)) {
    S.mode = want; document.querySelector('input[value="' + want + '"]').checked = true;
  }
  canvas.addEventListener("mousemove", (ev) => {
    if (!S.paths || !S.values) return;
    const rect = canvas.getBoundingClientRect(), k = canvas.width / rect.width;
    const x = (ev.clientX - rect.left) * k, y = (ev.clientY - rect.top) * k;
    let hit = -1;
    if (ctx.isPointInPath(S.paths.edge, x, y)) {
      for (let i = 0; i < S.paths.pixels.length; i++) if (ctx.isPointInPath(S.paths.pixels[i], x, y)) { hit = i; break; }
    }
    if (hit < 0) { tip.style.display = "none"; return; }
    const v = S.values, names = ["none"].concat(S.geometry.stage_names);
    tip.textContent = "order " + S.geometry.order[hit] + ", pixel " + S.geometry.pixel[hit] +
      "\nlast stage done: " + names[v.done[hit] || 0] + "\nrows: " + fmt(v.rows[hit]) +
      "\ngiants: " + fmt(v.giants[hit]) + "\nmedian [Fe/H]: " + (v.feh_median[hit] === null ? "-" : v.feh_median[hit].toFixed(2));
    tip.style.left = (ev.clientX - rect.left + 14) + "px"; tip.style.top = (ev.clientY - rect.top + 10) + "px";
    tip.style.display = "block";
  });
  canvas.addEventListener("mouseleave", () => { tip.style.display = "none"; });
  window.addEventListener("resize", () => { layout(); draw(); });
  layout();
  poll();
})();
</script>
</body></html>
"""
