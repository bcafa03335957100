"""`bigcat process` end to end on the session cluster: output, resume, determinism, CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import lsdb
import numpy as np
import pandas as pd
import pyarrow.dataset as ds
import pytest
from distributed import Client, LocalCluster

from bigcat.analysis.vertex import VertexParams
from bigcat.catalog.store import Catalog
from bigcat.config import Config, IngestConfig, ProcessConfig, Stage1Config, Stage2Config
from bigcat.photometry import PHOTOMETRY_OUTPUT_COLUMNS
from bigcat.photometry.params import PhotometryParams
from bigcat.pipeline import process_with_client
from bigcat.schema import INPUT_COLUMNS
from bigcat.stages.analyze import run_gradient
from bigcat.synthetic import MockParams

#: end-to-end runs of the whole pipeline: behind the slow marker (CI runs them)
pytestmark = pytest.mark.slow

ROWS = 12_000
CONFIG = Config(
    ingest=IngestConfig(nside=8, partition_rows=0),
    process=ProcessConfig(default_mock_rows=ROWS, target_task_rows=3_000),
    mock=MockParams(seed=7),
    stage1=Stage1Config(max_epochs=4, patience=2, mc_passes=10, training_cap=6_000),
    stage2=Stage2Config(max_epochs=30, patience=5, mc_passes=10),
    vertex=VertexParams(n_burn=20, n_steps=40),
)

#: the other runs of these tests skip the analyses and the report (tested on the main run)
LIGHT = CONFIG.replace("process", analyses=False, report=False)


def _read_dataset(path) -> pd.DataFrame:
    df = ds.dataset(path, format="parquet", exclude_invalid_files=True).to_table().to_pandas()
    return df.sort_values("source_id", ignore_index=True)


@pytest.fixture(scope="module")
def run(tmp_path_factory, client):
    run_dir = tmp_path_factory.mktemp("run")
    return process_with_client(CONFIG, client, None, run_dir)


def test_process_makes_processed_hats_catalogue(run):
    assert run.photometry["rows"] == ROWS
    cat = lsdb.read_hats(run.run_dir / "catalog").compute()
    assert len(cat) == ROWS
    for col in [*INPUT_COLUMNS, *PHOTOMETRY_OUTPUT_COLUMNS]:
        assert col in cat.columns, col
    assert not any(c.startswith("true_") for c in cat.columns)
    assert cat["source_id"].is_unique
    # the summary counts are the catalogue's own counts
    assert run.photometry["giants"] == int(cat["is_giant"].sum())
    assert run.photometry["quality_ok"] == int(cat["quality_ok"].sum())
    assert not (cat["is_giant"] & ~cat["quality_ok"]).any()
    log = json.loads((run.run_dir / "run.json").read_text())
    assert [s["stage"] for s in log["stages"]] == [
        "mock",
        "ingest",
        "photometry",
        "stage1-train",
        "stage1",
        "prior",
        "distance",
        "stage2-train",
        "stage2",
        "analyze-gradient",
        "analyze-vertex",
        "report",
    ]
    for name in ("gradient.json", "vertex.json"):
        assert (run.run_dir / "analysis" / name).exists(), name
    assert (run.run_dir / "report.html").exists()
    assert len(list((run.run_dir / "models" / "stage1").glob("fold*.pt"))) == 8
    for name in ("model.pt", "model.json", "validation.json", "labels_report.json"):
        assert (run.run_dir / "models" / "stage2" / name).exists(), name
    for col in ("feh", "feh_error", "feh_extrapolated", "x_gc", "vx_gc", "v_cov_xy"):
        assert col in cat.columns, col
    giants = cat[cat["is_giant"]]
    assert giants["feh"].notna().all() and cat.loc[~cat["is_giant"], "feh"].isna().all()
    assert run.final["with_feh"] == len(giants)
    assert run.stage2["labels"]["read"] > run.stage2["labelled_giants"] >= 200
    assert log["table2"][-1]["n_stars"] == len(giants)
    assert log["cluster"]["n_workers"] == 2
    assert "stage photometry" in (run.run_dir / "run.log").read_text()


def test_giant_cut_recovers_true_giants(run):
    out = _read_dataset(run.run_dir / "catalog" / "dataset")
    truth = _read_dataset(run.run_dir / "mock" / "truth.parquet")
    df = out.merge(truth[["source_id", "true_is_giant"]], on="source_id", validate="one_to_one")
    ok = df["quality_ok"].to_numpy()
    sel, true = df["is_giant"].to_numpy()[ok], df["true_is_giant"].to_numpy()[ok]
    purity = (sel & true).sum() / sel.sum()
    completeness = (sel & true).sum() / true.sum()
    assert purity > 0.9 and completeness > 0.9, (purity, completeness)


def test_rerun_reuses_partitions_and_changed_config_recomputes(run, client):
    files = sorted((run.run_dir / "catalog" / "dataset").rglob("Npix=*.parquet"))
    before = {p: p.stat().st_mtime_ns for p in files}
    again = process_with_client(CONFIG, client, None, run.run_dir)
    assert again.photometry["partitions_computed"] == 0
    assert again.photometry == {**run.photometry, "partitions_computed": 0}
    assert again.stage1["partitions_computed"] == 0
    train_log = [s for s in again.log.stages if s["stage"] == "stage1-train"][0]
    assert train_log["models_reused"] is True
    assert again.stage2["models_reused"] is True
    assert again.final["partitions_computed"] == 0
    assert before == {p: p.stat().st_mtime_ns for p in files}
    stricter = LIGHT.replace("photometry", max_ruwe=1.2)
    changed = process_with_client(stricter, client, None, run.run_dir)
    assert changed.photometry["partitions_computed"] == changed.photometry["partitions"]
    assert changed.photometry["flags"]["ruwe"] > run.photometry["flags"]["ruwe"]
    # and back: the original settings are recomputed, not mixed with the stricter ones
    back = process_with_client(LIGHT, client, None, run.run_dir)
    assert back.photometry["flags"] == run.photometry["flags"]


def test_output_independent_of_workers_and_task_grouping(run, tmp_path):
    """Same seed and config on 1 worker with other task sizes: identical survey and output."""
    config = LIGHT.replace("process", target_task_rows=500).replace("cluster", n_workers=1)
    with (
        LocalCluster(
            n_workers=1, threads_per_worker=1, host="127.0.0.1", dashboard_address=":0"
        ) as cluster,
        Client(cluster) as c1,
    ):
        other = process_with_client(config, c1, None, tmp_path / "one")
    assert other.photometry == {
        **run.photometry,
        "partitions_computed": other.photometry["partitions_computed"],
    }
    for sub in ("mock/photometry.parquet", "mock/truth.parquet", "catalog/dataset"):
        a = _read_dataset(run.run_dir / sub)
        b = _read_dataset(tmp_path / "one" / sub)
        # the networks run in float32: a batch of another size can round a prediction
        # differently in its last bit (~1e-8 dex), which the default rtol misses near zero
        pd.testing.assert_frame_equal(a, b, atol=1e-6)
    assert Catalog.open(tmp_path / "one" / "catalog").pixels == run.catalog.pixels


def test_output_independent_of_adaptive_partitioning(run, client, tmp_path):
    """HATS adaptive partitions (sparse pixels merged into lower orders up to a row threshold):
    a catalogue of mixed orders, each partition within the threshold, that lsdb reads, and
    the same stars with the same results as the fixed-order run."""
    threshold = 2_000
    config = LIGHT.replace("ingest", partition_rows=threshold)
    other = process_with_client(config, client, None, tmp_path / "adaptive")
    cat = Catalog.open(tmp_path / "adaptive" / "catalog")
    orders = {o for o, _ in cat.pixels}
    assert len(orders) > 1 and max(orders) <= CONFIG.ingest.order, orders
    assert len(cat.pixels) < len(run.catalog.pixels) / 4
    assert max(cat.partition_rows(o, p) for o, p in cat.pixels) <= threshold
    assert len(lsdb.read_hats(tmp_path / "adaptive" / "catalog").compute()) == ROWS
    assert other.photometry["giants"] == run.photometry["giants"]
    a = _read_dataset(run.run_dir / "catalog" / "dataset")
    b = _read_dataset(tmp_path / "adaptive" / "catalog" / "dataset")
    pd.testing.assert_frame_equal(a, b, atol=1e-6)
    # the analyses prune and reduce over the mixed-order partitions to the same result
    grad = run_gradient(client, tmp_path / "adaptive", CONFIG, out_dir=tmp_path / "g")
    ref = json.loads((run.run_dir / "analysis" / "gradient.json").read_text())
    assert grad["n_stars"] == ref["n_stars"] > 0
    # float32 network outputs may round differently in other kernel calls (~1e-7 relative)
    assert grad["slope_dex_per_kpc"] == pytest.approx(ref["slope_dex_per_kpc"], rel=1e-5)


def test_process_on_user_files_and_catalogue(run, client, tmp_path):
    """--input raw files is ingested first; --input CATALOG is used as it is."""
    raw = run.run_dir / "mock" / "photometry.parquet"
    via_files = process_with_client(LIGHT, client, [str(raw)], tmp_path / "files")
    assert (tmp_path / "files" / "input" / "partition_info.csv").exists()
    via_cat = process_with_client(LIGHT, client, [str(run.run_dir / "input")], tmp_path / "cat")
    assert not (tmp_path / "cat" / "input").exists()
    assert (
        via_files.photometry["giants"] == via_cat.photometry["giants"] == run.photometry["giants"]
    )


def test_cli_process_prints_dashboard_and_summary(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bigcat",
            "process",
            "--nside",
            "4",
            "--rows",
            "3000",
            "--workers",
            "1",
            "--out",
            str(tmp_path / "cli"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Dask dashboard: http://127.0.0.1:" in proc.stderr
    assert "3,000 rows" in proc.stdout and "giants" in proc.stdout and "ruwe" in proc.stdout
    assert np.isclose(
        {s["stage"]: s for s in json.loads((tmp_path / "cli" / "run.json").read_text())["stages"]}[
            "stage2"
        ]["rows"],
        3000,
    )


def test_cli_error_is_one_paragraph_and_exit_1(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bigcat",
            "ingest",
            str(tmp_path / "missing.parquet"),
            "--out",
            str(tmp_path / "cat"),
            "--workers",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1
    assert "bigcat: error:" in proc.stderr and "missing.parquet: no such file" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_cli_bad_config_key_suggests(tmp_path):
    cfg = tmp_path / "bigcat.toml"
    cfg.write_text("[photometry]\nmax_ruw = 1.2\n")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bigcat",
            "process",
            "--config",
            str(cfg),
            "--out",
            str(tmp_path / "r"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1
    assert "Did you mean 'max_ruwe'?" in proc.stderr
    assert not (tmp_path / "r").exists()


def test_photometry_params_roundtrip_in_config():
    cfg = CONFIG.replace("photometry", max_ruwe=1.3)
    assert isinstance(cfg.photometry, PhotometryParams) and cfg.photometry.max_ruwe == 1.3
    assert cfg.section_hash("photometry") != CONFIG.section_hash("photometry")


def test_cli_train_stage2_retrains_from_the_run(run, tmp_path):
    sidecar = run.run_dir / "models" / "stage2" / "model.json"
    before = json.loads(sidecar.read_text())
    cfg = tmp_path / "bigcat.toml"
    cfg.write_text("[stage2]\nmax_epochs = 5\nmc_passes = 5\n")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bigcat",
            "train",
            "stage2",
            str(run.run_dir),
            "--config",
            str(cfg),
            "--workers",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Trained the [Fe/H] network on" in proc.stdout
    after = json.loads(sidecar.read_text())
    assert after["config"]["max_epochs"] == 5 and before["config"]["max_epochs"] == 30
    assert after["extra"]["n_train"] == before["extra"]["n_train"]
