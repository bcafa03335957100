"""The live sky map: the per-partition state and outlines, the stages' on_done callback, the
three documents served by the dashboard (in-process and external schedulers), the page in
headless Chromium (offline, drawing, changing as a run goes on) and the report's PNG."""

from __future__ import annotations

import json
import math
import re
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from distributed import Client

from bigcat.catalog.skymap import (
    FEH_HIST,
    PARTITION_STAGES,
    X_MAX,
    Y_MAX,
    SkyState,
    feh_histogram,
    histogram_median,
    partition_outlines,
)
from bigcat.dashboard import Board, _LocalSink, attach_dashboard, skymap_link
from bigcat.stages.partitions import SUMMARY_KEY, merge_summaries

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
STATUS_KEYS = {
    "stage",
    "pixels_total",
    "pixels_done",
    "rows_done",
    "giants",
    "labelled",
    "eta_s",
    "run_dir",
    "updated",
}


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as r:
        assert r.headers["Content-Type"].startswith("application/json")
        return json.load(r)


def wait_until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    pytest.fail(f"timed out after {timeout} s waiting for {what}")


def mixed_layout() -> list[tuple[int, int]]:
    """An adaptive-looking layout covering the sky once: orders 1, 2 and 3 mixed."""
    out = []
    for p in range(48):
        if p % 3 == 0:
            out += [(3, q) for q in range(p * 16, p * 16 + 16)]
        elif p % 3 == 1:
            out += [(2, q) for q in range(p * 4, p * 4 + 4)]
        else:
            out.append((1, p))
    return out


def summary(stage: str, key: tuple[int, int], rng: np.random.Generator, **extra) -> dict:
    s = {"order": key[0], "pixel": key[1], "rows": 1000, "computed": True, **extra}
    if stage == "photometry":
        s["giants"] = int(rng.integers(50, 500))
    if stage == "stage2":
        feh = rng.normal(-0.4 + 0.2 * (key[1] % 5), 0.3, 300)
        s.update(with_feh=300, feh_hist=feh_histogram(feh))
    return s


# --- state and outlines (no cluster) -------------------------------------------------------


def test_outlines_cover_the_sky_once_with_the_right_partition():
    """Mixed orders: every point of the ellipse lies in exactly one partition's rings, and
    it is the partition healpy puts that point's direction in (Galactic -> ICRS)."""
    import healpy as hp
    from matplotlib.path import Path as MplPath

    pixels = mixed_layout()
    rings = partition_outlines(pixels)
    rng = np.random.default_rng(3)
    x = rng.uniform(-X_MAX, X_MAX, 6000)
    y = rng.uniform(-Y_MAX, Y_MAX, 6000)
    inside = (x / X_MAX) ** 2 + (y / Y_MAX) ** 2 < 0.995
    pts = np.column_stack([x[inside], y[inside]])
    hits = np.zeros(len(pts), int)
    owner = np.full(len(pts), -1)
    for i, rs in enumerate(rings):
        for r in rs:
            m = MplPath(np.reshape(r, (-1, 2))).contains_points(pts)
            hits += m
            owner[m] = i
    assert (hits == 1).mean() > 0.998, np.bincount(hits)
    theta = np.arcsin(pts[:, 1] / Y_MAX)  # inverse Mollweide; l grows to the left
    lat = np.arcsin((2 * theta + np.sin(2 * theta)) / np.pi)
    lon = -np.pi * pts[:, 0] / (X_MAX * np.cos(theta))
    th, ph = hp.Rotator(coord=["G", "C"])(np.pi / 2 - lat, lon)
    ok = hits == 1
    want = [
        hp.ang2pix(2 ** pixels[i][0], t, p, nest=True) == pixels[i][1]
        for i, t, p in zip(owner[ok], th[ok], ph[ok], strict=True)
    ]
    assert np.mean(want) > 0.995
    # the Galactic centre is drawn at the middle: its partition's ring contains (0, 0)
    gc = hp.ang2pix(2, *hp.Rotator(coord=["G", "C"])(np.pi / 2, 0.0), nest=True)
    ring = partition_outlines([(1, int(gc))])[0]
    assert any(MplPath(np.reshape(r, (-1, 2))).contains_point((0.0, 0.0)) for r in ring)


def test_feh_histogram_adds_up_and_gives_the_median():
    rng = np.random.default_rng(0)
    a, b = rng.normal(-0.5, 0.3, 4000), rng.normal(0.1, 0.2, 3000)
    merged = merge_summaries([{"feh_hist": feh_histogram(a)}, {"feh_hist": feh_histogram(b)}])
    assert merged["feh_hist"] == feh_histogram(np.r_[a, b])
    assert len(merged["feh_hist"]) == FEH_HIST[2] and sum(merged["feh_hist"]) == 7000
    width = (FEH_HIST[1] - FEH_HIST[0]) / FEH_HIST[2]
    assert abs(histogram_median(merged["feh_hist"]) - np.median(np.r_[a, b])) < width / 2
    assert feh_histogram(np.array([np.nan, -9.0, 9.0])) == [1] + [0] * 38 + [1]
    assert histogram_median([0] * 40) is None and histogram_median(None) is None


def test_stage2_summary_carries_the_feh_histogram():
    from bigcat.stages.metallicity import summarise_final

    n = 50
    feh = np.r_[np.linspace(-1.0, 0.4, n - 5), [np.nan] * 5]
    df = pd.DataFrame(
        {
            "feh": feh,
            "feh_error": np.full(n, 0.1),
            "feh_extrapolated": np.zeros(n, bool),
            "x_gc": np.zeros(n),
            "vx_gc": np.zeros(n),
        }
    )
    s = summarise_final(df)
    assert s["feh_hist"] == feh_histogram(feh) and sum(s["feh_hist"]) == s["with_feh"] == n - 5
    json.dumps(s)  # stored in the Parquet metadata as JSON


def test_sky_state_status_and_columns():
    rng = np.random.default_rng(1)
    keys = [(5, 10), (5, 11), (4, 3), (0, 7)]
    st = SkyState("/runs/x")
    st.stage_started("mock", now=100.0)
    assert st.status(now=100.0)["eta_s"] is None
    st.stage_started("photometry", now=100.0)
    st.partitions_done("photometry", [{"order": o, "pixel": p, "planned": True} for o, p in keys])
    s0 = st.status(now=101.0)
    assert s0["pixels_total"] == 4 and s0["pixels_done"]["photometry"] == 0
    done = [summary("photometry", k, rng) for k in keys[:2]]
    st.partitions_done("photometry", done, now=110.0)
    s1 = st.status(now=110.0)
    assert STATUS_KEYS <= set(s1)
    assert s1["pixels_done"] == {"photometry": 2, "stage1": 0, "distance": 0, "stage2": 0}
    assert s1["giants"] == sum(d["giants"] for d in done) and s1["rows_done"] == 2000
    assert s1["eta_s"] == pytest.approx(10.0)  # 2 of 4 partitions in 10 s
    assert s1["rows_total"] is None  # not all counted yet
    st.partitions_done("photometry", [summary("photometry", k, rng) for k in keys[2:]])
    for stage in PARTITION_STAGES[1:]:
        st.stage_started(stage, now=200.0)
        # a reused partition counts as done but not in the rate
        st.partitions_done(stage, [summary(stage, keys[0], rng, computed=False)], now=201.0)
    st.partitions_done("stage2", [summary("stage2", keys[1], rng)], now=204.0)
    s2 = st.status(now=204.0)
    assert s2["pixels_done"] == {"photometry": 4, "stage1": 1, "distance": 1, "stage2": 2}
    assert s2["rows_total"] == 4000 and s2["rows_done"] == 2000 and s2["stage"] == "stage2"
    assert s2["eta_s"] == pytest.approx(2 * 1000 * 4.0 / 1000)  # rows left / computed rate
    assert s2["with_feh"] == 600 and -1.0 < s2["feh_median"] < 0.6
    cols = st.columns()
    assert list(zip(cols["order"], cols["pixel"], strict=True)) == sorted(keys)
    by = {k: i for i, k in enumerate(sorted(keys))}
    assert cols["done"][by[keys[0]]] == 4 and cols["done"][by[keys[2]]] == 1
    assert cols["feh_median"][by[keys[2]]] is None
    assert cols["feh_median"][by[keys[1]]] is not None
    area0 = 4 * math.pi * (180 / math.pi) ** 2 / 12
    assert cols["giants_per_deg2"][by[(0, 7)]] == pytest.approx(
        st.pixels[(0, 7)]["giants"] / area0, rel=1e-3
    )
    st.set_labelled(1234)
    st.finish()
    d = st.to_dict()
    assert d["labelled"] == 1234 and d["stage"] == "finished" and d["columns"] == cols
    json.dumps(d, allow_nan=False)


# --- the stages' callback -----------------------------------------------------------------


def _kernel(df: pd.DataFrame, params: dict) -> pd.DataFrame:
    return df.assign(y=df["x"] * 2.0)


def _summarise(df: pd.DataFrame) -> dict:
    return {"rows": len(df), "giants": int((df["y"] > 5).sum())}


def test_map_partitions_to_files_reports_planned_then_done(scheduler_client, tmp_path):
    from bigcat.catalog.store import Catalog, finalize_catalog, partition_path, write_frame_atomic
    from bigcat.stages.partitions import map_partitions_to_files

    sizes = {(2, 1): 5, (2, 2): 7, (3, 40): 3, (3, 41): 4, (1, 30): 9}
    rng = np.random.default_rng(0)
    for (o, p), n in sizes.items():
        df = pd.DataFrame({"x": rng.uniform(0, 10, n), "ra": np.zeros(n), "dec": np.zeros(n)})
        write_frame_atomic(df, partition_path(tmp_path / "in", o, p))
    finalize_catalog(
        tmp_path / "in", list(sizes), "t", sum(sizes.values()), {}, partition_rows=sizes
    )
    calls: list[list[dict]] = []
    out = map_partitions_to_files(
        scheduler_client, Catalog.open(tmp_path / "in"), tmp_path / "out", "photometry",
        _kernel, {}, _summarise, "fp", 8, on_done=calls.append,
    )  # fmt: skip
    assert [(s["order"], s["pixel"]) for s in calls[0]] == [
        (s["order"], s["pixel"]) for s in out
    ] and all(s["planned"] for s in calls[0])
    later = [s for c in calls[1:] for s in c]
    assert len(calls) > 2  # one call per task, as each finishes
    assert sorted(later, key=lambda s: (s["order"], s["pixel"])) == sorted(
        out, key=lambda s: (s["order"], s["pixel"])
    )
    assert {(s["order"], s["pixel"]): s["rows"] for s in later} == sizes


# --- served by the scheduler's dashboard -------------------------------------------------


def drive_photometry(board: Board, keys: list[tuple[int, int]], upto: int) -> None:
    rng = np.random.default_rng(7)
    board.stage_started("photometry")
    board.partitions_done(
        "photometry", [{"order": o, "pixel": p, "planned": True} for o, p in keys]
    )
    board.on_done("photometry")([summary("photometry", k, rng) for k in keys[:upto]])


def test_documents_served_by_the_dashboard(scheduler_client, tmp_path):
    link = skymap_link(scheduler_client)
    assert link == scheduler_client.dashboard_link.rsplit("/", 1)[0] + "/bigcat/skymap"
    board = attach_dashboard(scheduler_client, tmp_path / "run")
    try:
        assert board.url == link == skymap_link(scheduler_client)
        base = link.rsplit("/", 1)[0]
        keys = mixed_layout()
        drive_photometry(board, keys, 100)
        wait_until(
            lambda: get_json(f"{base}/status.json")["pixels_done"]["photometry"] == 100,
            10,
            "the status to reach the scheduler",
        )
        st = get_json(f"{base}/status.json")
        assert STATUS_KEYS <= set(st)
        assert st["stage"] == "photometry" and st["pixels_total"] == len(keys)
        assert set(st["pixels_done"]) == set(PARTITION_STAGES)
        assert st["rows_done"] == 100_000 and st["giants"] > 0 and st["eta_s"] is not None
        assert st["run_dir"] == str(tmp_path / "run") and st["updated"] <= time.time()
        assert st["frame"] == "galactic" and st["labelled"] is None
        full = get_json(f"{base}/pixels.json")
        geo, values = full["geometry"], full["values"]
        assert geo["geometry_id"] == values["geometry_id"] == st["geometry_id"]
        assert geo["frame"] == "galactic" and geo["projection"] == "mollweide"
        assert list(zip(geo["order"], geo["pixel"], strict=True)) == sorted(keys)
        assert len(geo["rings"]) == len(keys) and all(r and len(r[0]) >= 8 for r in geo["rings"])
        assert sum(d == 1 for d in values["done"]) == 100 and geo["graticule"]
        assert values == get_json(f"{base}/pixels.json?geometry=0")
        with urllib.request.urlopen(link, timeout=10) as r:
            assert r.headers["Content-Type"].startswith("text/html")
            page = r.read().decode()
        # self-contained: inline script and style only, nothing from another host
        assert "<canvas" in page and "<script>" in page
        assert not re.search(r"<script[^>]+src=|<link[^>]+href=|https?://|url\(", page)
        # a later run on the same scheduler replaces the map (no second set of routes)
        board.close()
        assert get_json(f"{base}/status.json")["stage"] == "finished"
        board = attach_dashboard(scheduler_client, tmp_path / "run2")
        wait_until(
            lambda: get_json(f"{base}/status.json")["run_dir"] == str(tmp_path / "run2"),
            10,
            "the second run's status",
        )
        assert get_json(f"{base}/pixels.json")["geometry"]["rings"] == []
    finally:
        board.close()


def test_a_later_run_takes_over_the_map(scheduler_client, tmp_path):
    """Two runs on one scheduler: the later one's board owns the map; the earlier one's
    updates are refused and it stops pushing (no flip-flopping between runs)."""
    first = attach_dashboard(scheduler_client, tmp_path / "first")
    with Client(scheduler_client.scheduler.address) as other:
        second = attach_dashboard(other, tmp_path / "second")
        try:
            base = second.url.rsplit("/", 1)[0]
            drive_photometry(first, [(0, p) for p in range(12)], 12)
            drive_photometry(second, [(0, p) for p in range(12)], 3)
            wait_until(lambda: first._stop.is_set(), 10, "the first board to stop")
            wait_until(
                lambda: get_json(f"{base}/status.json")["pixels_done"]["photometry"] == 3,
                10,
                "the second run's status",
            )
            for _ in range(3):
                assert get_json(f"{base}/status.json")["run_dir"] == str(tmp_path / "second")
                time.sleep(0.3)
        finally:
            first.close()
            second.close()


def test_the_local_fallback_serves_the_same_documents(scheduler_client, tmp_path, monkeypatch):
    """A scheduler that will not take the plugin (e.g. ``register_scheduler_plugin`` in
    ``distributed.scheduler.blocked-handlers``): this process serves the page instead."""
    import bigcat.dashboard

    def refuse(client, plugin):
        raise ValueError("The 'register_scheduler_plugin' handler has been explicitly disallowed")

    monkeypatch.setattr(bigcat.dashboard, "_register", refuse)
    board = attach_dashboard(scheduler_client, tmp_path)
    try:
        assert isinstance(board.sink, _LocalSink) and board.url.startswith("http://127.0.0.1:")
        assert skymap_link(scheduler_client) == board.url
        drive_photometry(board, [(0, p) for p in range(12)], 5)
        base = board.url.rsplit("/", 1)[0]
        wait_until(
            lambda: get_json(f"{base}/status.json")["pixels_done"]["photometry"] == 5,
            10,
            "the local status",
        )
        assert len(get_json(f"{base}/pixels.json")["geometry"]["rings"]) == 12
        with urllib.request.urlopen(board.url, timeout=10) as r:
            assert b"bigcat sky map" in r.read()
    finally:
        board.close()


def test_board_failures_never_raise(scheduler_client, tmp_path):
    board = attach_dashboard(scheduler_client, tmp_path)
    try:
        board.partitions_done("photometry", [{"no order": 1}])  # logged, not raised
        board.on_done("stage2")([{"order": 0, "pixel": 99}])  # (a bad pixel number)
        board.stage_started("photometry")
    finally:
        board.close()
    board.close()  # twice is fine


@pytest.mark.parametrize(
    "external_scheduler", [True, False], ids=["scheduler-without-bigcat", "scheduler-with-bigcat"],
    indirect=True,
)  # fmt: skip
def test_external_scheduler_in_another_process(external_scheduler, tmp_path):
    """`--scheduler tcp://...`: the plugin is installed in another process (by value when
    that process cannot import bigcat) and the client's updates reach it."""
    address, port, log = external_scheduler
    with Client(address, timeout="20s") as client:
        link = skymap_link(client)
        assert link == f"http://127.0.0.1:{port}/bigcat/skymap"
        board = attach_dashboard(client, tmp_path / "run")
        try:
            assert board.url == link and "scheduler" in board.sink.where
            keys = [(1, p) for p in range(48)]
            drive_photometry(board, keys, 20)
            base = link.rsplit("/", 1)[0]
            wait_until(
                lambda: get_json(f"{base}/status.json")["pixels_done"]["photometry"] == 20,
                15,
                "the status in the external scheduler",
            )
            board.stage_started("stage1")
            board.on_done("stage1")([summary("stage1", k, np.random.default_rng(0)) for k in keys])
            wait_until(
                lambda: get_json(f"{base}/status.json")["pixels_done"]["stage1"] == 48,
                15,
                "stage 1 in the external scheduler",
            )
            values = get_json(f"{base}/pixels.json")["values"]
            assert values["done"].count(2) == 48
        finally:
            board.close()
        assert get_json(f"{base}/status.json")["finished"] is True


# --- the page in headless Chromium -------------------------------------------------------


def test_page_draws_offline_and_changes_during_a_run(scheduler_client, browser, tmp_path):
    board = attach_dashboard(scheduler_client, tmp_path / "run")
    try:
        keys = mixed_layout()
        drive_photometry(board, keys, 60)
        host = re.match(r"https?://[^/]+", board.url).group(0)
        browser.navigate(board.url)
        first = browser.wait_state(
            lambda s: s["drawn"] == len(keys) and s["counts"].get("#fde725") == 60,
            20,
            "all partitions drawn, 60 with photometry done",
        )
        assert first["errors"] == 0 and first["stage"] == "photometry"
        assert not first["fehEnabled"]
        shot1 = browser.screenshot(tmp_path / "skymap-1.png")
        # the run goes on: photometry everywhere, stage 1 and 2 on part of the sky
        rng = np.random.default_rng(2)
        board.on_done("photometry")([summary("photometry", k, rng) for k in keys[60:]])
        for stage in PARTITION_STAGES[1:]:
            board.stage_started(stage)
            board.on_done(stage)([summary(stage, k, rng) for k in keys[:150]])
        second = browser.wait_state(
            lambda s: s["stage"] == "stage2" and s["counts"].get("#440154") == 150,
            20,
            "150 partitions with stage 2 done",
        )
        assert second["draws"] > first["draws"] and second["counts"] != first["counts"]
        assert second["fehEnabled"]
        shot2 = browser.screenshot(tmp_path / "skymap-2.png")
        assert shot1.startswith(PNG_MAGIC) and shot2.startswith(PNG_MAGIC) and shot1 != shot2
        # switch to median [Fe/H]: 150 partitions coloured, the rest grey
        browser.evaluate("document.querySelector('input[value=\"feh\"]').click()")
        feh = browser.wait_state(lambda s: s["mode"] == "feh", 10, "the [Fe/H] view")
        assert feh["counts"].get("#e6e6e6") == len(keys) - 150 and len(feh["counts"]) > 3
        browser.evaluate("document.querySelector('input[value=\"giants\"]').click()")
        giants = browser.wait_state(lambda s: s["mode"] == "giants", 10, "the giants view")
        assert "#e6e6e6" not in giants["counts"] and len(giants["counts"]) > 10
        browser.screenshot(tmp_path / "skymap-3.png")
        # nothing but the dashboard's own address was asked for
        assert browser.requests and all(u.startswith(host) for u in browser.requests)
    finally:
        board.close()


# --- the report's PNG ------------------------------------------------------------------


def test_report_png_from_the_partition_files(tmp_path):
    """The report rebuilds the map's data from the summaries stored in the partition
    files and draws it (what `bigcat report` adds as the figure sky_partitions)."""
    from bigcat.catalog.store import partition_path
    from bigcat.report.skymap import STAGE_DIRS, skymap_figure, status_from_run

    rng = np.random.default_rng(5)
    keys = mixed_layout()
    upto = {"photometry": len(keys), "stage1": 200, "distance": 150, "stage2": 100}
    for stage, n in upto.items():
        for k in keys[:n]:
            s = {
                key: v for key, v in summary(stage, k, rng).items() if key not in ("order", "pixel")
            }
            table = pa.table({"x": [1.0]}).replace_schema_metadata({SUMMARY_KEY: json.dumps(s)})
            path = partition_path(tmp_path / STAGE_DIRS[stage], *k)
            path.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(table, path)
    (tmp_path / "run.json").write_text(
        json.dumps({"stages": [{"stage": "stage2-train", "labelled_giants": 321}]})
    )
    status = status_from_run(tmp_path)
    assert status["pixels_total"] == len(keys) and status["labelled"] == 321
    assert status["pixels_done"] == upto and status["finished"]
    assert sum(v is not None for v in status["columns"]["feh_median"]) == 100

    class Data:
        run_dir = tmp_path

    fig = skymap_figure(Data(), tmp_path / "report")
    assert fig.key.startswith("sky") and fig.path is not None and fig.missing is None
    png = Path(fig.path).read_bytes()
    assert png.startswith(PNG_MAGIC) and len(png) > 30_000
    empty = skymap_figure(type("D", (), {"run_dir": tmp_path / "nothing"})(), tmp_path)
    assert empty.path is None and "bigcat process" in empty.missing
