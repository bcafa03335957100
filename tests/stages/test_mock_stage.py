"""`bigcat mock` as a user runs it: files, columns, injected values, worker independence."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import pandas as pd
import pyarrow.dataset as ds
import pytest

from bigcat.errors import InputError
from bigcat.schema import APOGEE_COLUMNS, INPUT_COLUMNS, LAMOST_COLUMNS
from bigcat.stages.mock import MOCK_STAMP, TABLES, make_mock
from bigcat.stages.verify import verify_run
from bigcat.synthetic import MockParams


def _read(path) -> pd.DataFrame:
    return ds.dataset(path, format="parquet").to_table().to_pandas()


def test_cli_mock_writes_contract_tables_and_truth(tmp_path):
    out = tmp_path / "survey"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bigcat",
            "mock",
            "--rows",
            "6000",
            "--seed",
            "3",
            "--out",
            str(out),
            "--gradient",
            "-0.3",
            "--vertex-deg",
            "-25",
            "--apogee-fraction",
            "0.5",
            "--chunk-rows",
            "2500",
            "--workers",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "rows/s" in proc.stdout
    phot = _read(out / "photometry.parquet")
    assert list(phot.columns) == INPUT_COLUMNS and len(phot) == 6000 and phot.source_id.is_unique
    truth = _read(out / "truth.parquet")
    assert len(truth) == 6000 and set(truth.source_id) == set(phot.source_id)
    assert all(c == "source_id" or c.startswith("true_") for c in truth.columns)
    assert list(_read(out / "apogee.parquet").columns) == APOGEE_COLUMNS
    assert list(_read(out / "lamost.parquet").columns) == LAMOST_COLUMNS
    summary = json.loads((out / "truth.json").read_text())
    assert summary["params"]["feh_gradient"] == -0.3
    assert summary["params"]["vertex_deg"] == -25.0
    assert summary["params"]["label_fraction_apogee"] == 0.5
    assert summary["rows"] == 6000 and summary["chunks"] == 3
    assert len(list((out / "photometry.parquet").glob("part-*.parquet"))) == 3


def test_mock_refuses_to_overwrite_other_survey(tmp_path, client):
    make_mock(client, MockParams(seed=1), 2_000, tmp_path / "m", chunk_rows=1_000)
    with pytest.raises(InputError, match="already holds other data"):
        make_mock(client, MockParams(seed=2), 2_000, tmp_path / "m", chunk_rows=1_000)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "precious.txt").write_text("keep me")
    with pytest.raises(InputError, match="already holds other data"):
        make_mock(client, MockParams(seed=1), 2_000, tmp_path / "other")
    assert (tmp_path / "other" / "precious.txt").read_text() == "keep me"


def test_mock_resume_keeps_finished_chunks(tmp_path, client):
    out = tmp_path / "m"
    make_mock(client, MockParams(seed=5), 3_000, out, chunk_rows=1_000)
    first = out / "photometry.parquet" / "part-00000.parquet"
    stamp = first.stat().st_mtime_ns
    (out / "truth.parquet" / "part-00002.parquet").unlink()  # as if killed before chunk 2
    before = _read(out / "photometry.parquet")
    make_mock(client, MockParams(seed=5), 3_000, out, chunk_rows=1_000)
    assert first.stat().st_mtime_ns == stamp
    assert (out / "truth.parquet" / "part-00002.parquet").exists()
    pd.testing.assert_frame_equal(before, _read(out / "photometry.parquet"))


def test_mock_rerun_recomputes_damaged_chunks_naming_them(tmp_path, client, caplog, damage_parquet):
    """The finished survey's stamp records each part (rows, bytes, sha256): a truncated or
    bit-flipped part is listed by verify, and the re-run warns naming it and makes its chunk
    again, byte for byte; the undamaged chunk is kept."""
    out = tmp_path / "m"
    make_mock(client, MockParams(seed=5), 3_000, out, chunk_rows=1_000)
    parts = sorted(out.rglob("part-*.parquet"))
    before = {p: p.read_bytes() for p in parts}
    recorded = json.loads((out / MOCK_STAMP).read_text())["files"]
    assert sorted(recorded) == sorted(p.relative_to(out).as_posix() for p in parts)
    assert len(parts) == 3 * len(TABLES) and verify_run(out).ok
    truncated = out / "photometry.parquet" / "part-00000.parquet"
    flipped = out / "truth.parquet" / "part-00001.parquet"
    kept = out / "photometry.parquet" / "part-00002.parquet"
    kept_mtime = kept.stat().st_mtime_ns

    damage_parquet(truncated, flipped, verify=out)

    with caplog.at_level(logging.WARNING, "bigcat"):
        make_mock(client, MockParams(seed=5), 3_000, out, chunk_rows=1_000)
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 2 and "recomputed" in warned[0]
    assert any(str(truncated) in w for w in warned) and any(str(flipped) in w for w in warned)
    assert {p: p.read_bytes() for p in parts} == before  # as the undamaged run wrote them
    assert kept.stat().st_mtime_ns == kept_mtime  # chunk 2 was not made again
    assert json.loads((out / MOCK_STAMP).read_text())["files"] == recorded
    assert verify_run(out).ok

    # a survey without records (an older bigcat): trusted on its footers and recorded now
    stamp = json.loads((out / MOCK_STAMP).read_text())
    del stamp["files"]
    (out / MOCK_STAMP).write_text(json.dumps(stamp))
    assert any("no file checksums" in n for n in verify_run(out).notes)
    make_mock(client, MockParams(seed=5), 3_000, out, chunk_rows=1_000)
    assert kept.stat().st_mtime_ns == kept_mtime
    assert json.loads((out / MOCK_STAMP).read_text())["files"] == recorded


def test_cli_mock_galaxy_writes_its_name_and_values(tmp_path):
    """``--galaxy`` picks a named Galaxy; the config's own [mock] keys and the other options win
    over the Galaxy's values."""
    config = tmp_path / "bigcat.toml"
    config.write_text('[mock]\ngalaxy = "boxybulge"\nfeh_gradient = -0.45\n')
    out = tmp_path / "longbar"
    cmd = [sys.executable, "-m", "bigcat", "mock", "--rows", "2000", "--seed", "3"]
    cmd += ["--out", str(out), "--galaxy", "longbar", "--vertex-deg", "-25"]
    cmd += ["--chunk-rows", "1000", "--workers", "1", "--config", str(config)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((out / "truth.json").read_text())
    assert summary["params"]["galaxy"] == "longbar"
    assert summary["galaxy"]["name"] == "longbar"
    assert summary["galaxy"]["explicit_overrides"] == {
        "seed": 3,
        "feh_gradient": -0.45,
        "vertex_deg": -25.0,
    }
    assert summary["params"]["bar_angle_deg"] == 20.0
    assert summary["params"]["feh_gradient"] == -0.45
    assert summary["gradient"]["feh_gradient_dex_per_kpc"] == -0.45
    assert summary["vertex"]["vertex_deg_metal_rich"] == -25.0
    assert summary["dust"]["extinction_law"] == "nishiyama-2009"
    assert summary["dust"]["extinction_ratios_a_over_av"]["ks"] == 0.062
    truth = _read(out / "truth.parquet")
    assert (
        (truth["true_a_ks"] / truth["true_a_v"])[truth["true_a_v"] > 0.05].round(6).eq(0.062).all()
    )
    assert len(_read(out / "photometry.parquet")) == 2000


def test_cli_mock_unknown_galaxy_lists_them(tmp_path):
    cmd = [sys.executable, "-m", "bigcat", "mock", "--rows", "10", "--out", str(tmp_path / "m")]
    proc = subprocess.run(cmd + ["--galaxy", "longbr"], capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    for name in ("default", "longbar", "boxybulge"):
        assert name in proc.stderr
    assert not (tmp_path / "m").exists()
