"""`bigcat crossmatch` end to end on a small `bigcat mock`'s own tables, then `bigcat process`."""

from __future__ import annotations

import pandas as pd
import pytest
from click.testing import CliRunner

from bigcat.catalog.store import Catalog
from bigcat.cli import cli
from bigcat.pipeline import check_catalog_layout
from bigcat.schema import CROSSMATCH_COLUMNS, INPUT_COLUMNS
from bigcat.stages.mock import make_mock
from bigcat.synthetic import MockParams

ROWS = 3_000


@pytest.fixture(scope="module")
def mock_dir(tmp_path_factory, client):
    out = tmp_path_factory.mktemp("xm-cli") / "mock"
    make_mock(client, MockParams(seed=5), ROWS, out, chunk_rows=1_500)
    return out


@pytest.fixture(scope="module")
def catalog(mock_dir, client):
    out = mock_dir.parent / "catalog"
    result = CliRunner().invoke(
        cli,
        [
            "crossmatch",
            "--gaia",
            str(mock_dir / "gaia_source.parquet"),
            "--tmass",
            str(mock_dir / "tmass_psc.parquet"),
            "--unwise",
            str(mock_dir / "unwise.parquet"),
            "--out",
            str(out),
            "--nside",
            "8",
            "--partition-rows",
            "500",
            "--scheduler",
            client.scheduler.address,
        ],
    )
    assert result.exit_code == 0, (result.output, result.exception)
    return out, result.output


def test_mock_writes_the_surveys_own_tables(mock_dir):
    for table in ("gaia_source", "tmass_psc", "unwise", "crossmatch_truth"):
        assert len(list((mock_dir / f"{table}.parquet").glob("part-*.parquet"))) == 2
    truth = pd.read_parquet(mock_dir / "crossmatch_truth.parquet")
    assert len(truth) == ROWS and truth.source_id.is_unique
    assert 0.0 < truth.tmass_designation.isna().mean() < 0.1
    assert 0.0 < truth.unwise_objid.isna().mean() < 0.1
    tmass = pd.read_parquet(mock_dir / "tmass_psc.parquet")
    assert tmass.designation.is_unique and len(tmass) > ROWS  # neighbours and orphans
    jd = tmass.jdate.to_numpy()
    assert jd.min() > 2450600.0 and jd.max() < 2451960.0  # 1997-06 to 2001-02


@pytest.mark.slow  # end to end (crossmatch of the whole small mock): run by .ci/run
def test_cli_crossmatch_makes_a_catalogue_process_accepts(catalog, mock_dir):
    out, output = catalog
    line = output.strip().splitlines()[-1]
    assert line.startswith(f"Catalogue {out}: {ROWS:,} Gaia rows; 2MASS counterpart for ")
    assert "unWISE for" in line and " s." in line
    cat = Catalog.open(out)
    assert cat.n_rows() == ROWS
    assert set(INPUT_COLUMNS) | set(CROSSMATCH_COLUMNS) <= set(cat.columns())
    assert cat.properties["nside"] == 8 and cat.properties["partition_threshold"] == 500
    assert all(o <= 3 for o, _ in cat.pixels) and len(cat.pixels) > 3
    check_catalog_layout(cat, nside=8, partition_rows=500)
    import lsdb

    assert len(lsdb.read_hats(out).compute()) == ROWS


def test_cli_crossmatch_column_mapping_and_settings_from_config(mock_dir, tmp_path, client):
    tmass = pd.read_parquet(mock_dir / "tmass_psc.parquet").rename(
        columns={"designation": "DESIGNATION", "k_m": "ks_m"}
    )
    tmass.to_parquet(tmp_path / "tmass.parquet", index=False)
    toml = tmp_path / "bigcat.toml"
    toml.write_text(
        '[columns.tmass]\ndesignation = "DESIGNATION"\nk_m = "ks_m"\n'
        "[crossmatch]\nunwise_epoch = 2013.5\n"
    )
    result = CliRunner().invoke(
        cli,
        [
            "crossmatch",
            "--gaia",
            str(mock_dir / "gaia_source.parquet"),
            "--tmass",
            str(tmp_path / "tmass.parquet"),
            "--unwise",
            str(mock_dir / "unwise.parquet"),
            "--out",
            str(tmp_path / "cat"),
            "--radius-arcsec",
            "1.5",
            "--config",
            str(toml),
            "--scheduler",
            client.scheduler.address,
        ],
    )
    assert result.exit_code == 0, (result.output, result.exception)
    props = Catalog.open(tmp_path / "cat").properties
    assert props["settings"]["crossmatch"]["unwise_epoch"] == 2013.5
    assert props["settings"]["radius_arcsec"] == 1.5
    assert props["crossmatch"]["tmass_matched"] > 0.95 * ROWS


@pytest.mark.slow
def test_process_runs_on_the_crossmatched_catalogue(catalog, mock_dir, tmp_path, client):
    out, _ = catalog
    toml = tmp_path / "tiny.toml"
    toml.write_text(
        "[process]\ntarget_task_rows = 1500\nanalyses = false\nreport = false\n"
        "[stage1]\nmax_epochs = 2\npatience = 1\nmc_passes = 4\ntraining_cap = 3000\n"
        "[stage2]\nmax_epochs = 5\npatience = 2\nmc_passes = 4\nmin_labels = 10\n"
    )
    result = CliRunner().invoke(
        cli,
        [
            "process",
            "--input",
            str(out),
            "--labels",
            str(mock_dir / "apogee.parquet"),
            str(mock_dir / "lamost.parquet"),
            "--out",
            str(tmp_path / "run"),
            "--config",
            str(toml),
            "--scheduler",
            client.scheduler.address,
        ],
    )
    assert result.exit_code == 0, (result.output, result.exception)
    assert f"bigcat process: {ROWS:,} rows" in result.output
    final = Catalog.open(tmp_path / "run" / "catalog")
    assert final.n_rows() == ROWS and "feh" in final.columns()
    assert set(CROSSMATCH_COLUMNS) <= set(final.columns())  # carried through the stages
