"""The sky map of a real `bigcat process` run: served while it runs, final in the report."""

from __future__ import annotations

import json
import threading
import time
import urllib.request

import pytest

from bigcat.analysis.vertex import VertexParams
from bigcat.config import Config, IngestConfig, ProcessConfig, Stage1Config, Stage2Config
from bigcat.dashboard import skymap_link
from bigcat.pipeline import process_with_client
from bigcat.synthetic import MockParams

pytestmark = pytest.mark.slow

CONFIG = Config(
    ingest=IngestConfig(nside=8, partition_rows=0),
    process=ProcessConfig(default_mock_rows=12_000, target_task_rows=1_500, analyses=False),
    mock=MockParams(seed=7),
    stage1=Stage1Config(max_epochs=4, patience=2, mc_passes=10, training_cap=6_000),
    stage2=Stage2Config(max_epochs=30, patience=5, mc_passes=10),
    vertex=VertexParams(n_burn=20, n_steps=40),
)


def test_process_serves_a_live_sky_map_and_reports_it(client, tmp_path):
    link = skymap_link(client)
    assert link and link.endswith("/bigcat/skymap")
    status_url = link.rsplit("/", 1)[0] + "/status.json"
    result: dict = {}

    def run() -> None:
        try:
            result["run"] = process_with_client(CONFIG, client, None, tmp_path / "run")
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            result["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    seen: list[dict] = []
    while thread.is_alive():
        try:
            with urllib.request.urlopen(status_url, timeout=5) as r:
                st = json.load(r)
            if st.get("run_dir") == str((tmp_path / "run").resolve()):
                seen.append(st)
        except OSError:
            pass
        time.sleep(0.3)
    thread.join()
    if "error" in result:
        raise result["error"]
    with urllib.request.urlopen(status_url, timeout=5) as r:
        final = json.load(r)
    n = final["pixels_total"]
    assert n == len(result["run"].catalog.pixels) and final["stage"] == "finished"
    assert final["pixels_done"] == {s: n for s in ("photometry", "stage1", "distance", "stage2")}
    assert final["giants"] == result["run"].photometry["giants"]
    assert final["with_feh"] == result["run"].final["with_feh"] > 0
    assert final["labelled"] == result["run"].stage2.get("labelled_giants")
    # followed while it ran: the stages one after the other, partitions done changing
    assert {"photometry", "stage1", "stage2"} <= {s["stage"] for s in seen}
    assert len({json.dumps(s["pixels_done"], sort_keys=True) for s in seen}) >= 3
    png = tmp_path / "run" / "report" / "sky_partitions.png"
    assert png.exists() and png.stat().st_size > 30_000
    assert "sky_partitions.png" in (tmp_path / "run" / "report.html").read_text()
