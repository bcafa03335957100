"""Bad values at ingest are named, integer nulls stay integers, absurd photometry is flagged,
empty inputs work, and extra input columns are kept through every stage (issue 24)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from astropy.io import fits
from astropy.table import Table

from bigcat.catalog.store import Catalog
from bigcat.config import Config, IngestConfig
from bigcat.errors import InputError
from bigcat.photometry.quality import quality_flags
from bigcat.schema import INPUT_COLUMNS, QUALITY_BITS
from bigcat.stages.ingest import ingest, plan_ingest
from bigcat.stages.photometry import run_photometry_stage

CONFIG = Config(ingest=IngestConfig(nside=4, chunk_rows=700, partition_rows=0))


def _all_rows(catalog: Catalog) -> pd.DataFrame:
    frames = [catalog.read_partition(o, p) for o, p in catalog.pixels]
    return pd.concat(frames, ignore_index=True).sort_values("source_id", ignore_index=True)


@pytest.mark.parametrize("rows, bad_row", [(50, 4), (12_000, 11_500)])
def test_text_in_a_numeric_csv_column_names_file_column_row_and_value(
    tmp_path, client, input_table, rows, bad_row
):
    """In the first rows (the type is inferred as text) or far down the file."""
    table = input_table(rows).astype({"parallax": object})
    table.loc[bad_row - 1, "parallax"] = "0.5mas"
    path = tmp_path / "gaia.csv"
    table.to_csv(path, index=False)
    with pytest.raises(InputError) as err:
        ingest([path], tmp_path / "cat", CONFIG, client)
    msg = str(err.value)
    for part in (str(path), "'parallax'", f"data row {bad_row}", "'0.5mas'"):
        assert part in msg, msg
    assert not (tmp_path / "cat").exists() and not (tmp_path / "cat.partial").exists()


def test_fits_integer_nulls_stay_integers(tmp_path, client, input_table):
    table = input_table(300, 3)
    table["my_flag"] = np.arange(300, dtype=np.int32)
    path = tmp_path / "gaia.fits"
    hdu = fits.BinTableHDU(Table.from_pandas(table))
    col = hdu.columns.names.index("my_flag") + 1
    hdu.header[f"TNULL{col}"] = -1
    hdu.data["my_flag"][::7] = -1
    hdu.writeto(path)
    catalog = ingest([path], tmp_path / "cat", CONFIG, client)
    schema = pq.read_schema(catalog.partition_path(*catalog.pixels[0]))
    assert str(schema.field("my_flag").type).startswith("int")
    got = _all_rows(catalog)
    assert str(got["my_flag"].dtype) in ("Int32", "int32", "Int64", "int64")
    want = table.sort_values("source_id", ignore_index=True)["my_flag"]
    nulls = (want.to_numpy() % 7) == 0
    assert got["my_flag"].isna().to_numpy().tolist() == nulls.tolist()
    assert (got["my_flag"][~nulls].astype(int).to_numpy() == want[~nulls].to_numpy()).all()


def test_absurd_magnitudes_and_errors_are_flagged(input_table):
    df = input_table(8)
    df["phot_g_mean_mag"] = 15.0
    df.loc[1, "j_m"] = 99.0
    df.loc[2, "ks_m"] = -5.0
    df.loc[3, "w1_mag"] = np.inf
    df.loc[4, "h_msigcom"] = 0.0
    df.loc[5, "w2_mag_error"] = -0.1
    df.loc[6, "ks_msigcom"] = np.inf
    flags = quality_flags(df)
    bit = QUALITY_BITS["implausible_photometry"]
    assert [(f & bit) != 0 for f in flags] == [False, True, True, False, True, True, True, False]
    assert flags[3] & QUALITY_BITS["missing_photometry"]  # inf: not a magnitude at all


def test_empty_files_and_zero_row_inputs(tmp_path, client, input_table):
    full = input_table(400, 4)
    full.to_parquet(tmp_path / "full.parquet")
    full.iloc[:0].to_csv(tmp_path / "header_only.csv", index=False)
    full.iloc[:0].to_parquet(tmp_path / "empty.parquet")
    catalog = ingest(
        [tmp_path / "full.parquet", tmp_path / "header_only.csv", tmp_path / "empty.parquet"],
        tmp_path / "cat",
        CONFIG,
        client,
    )
    assert catalog.n_rows() == 400
    (tmp_path / "zero.csv").write_text("")
    with pytest.raises(InputError, match="zero.csv"):
        ingest([tmp_path / "zero.csv"], tmp_path / "cat0", CONFIG, client)
    only_empty = ingest([tmp_path / "empty.parquet"], tmp_path / "cat1", CONFIG, client)
    assert only_empty.n_rows() == 0 and only_empty.pixels == ()
    out, totals = run_photometry_stage(client, only_empty, tmp_path / "phot", CONFIG)
    assert totals["rows"] == 0 and out.pixels == ()


def test_extra_columns_are_kept_by_ingest_and_the_stages(tmp_path, client, input_table):
    a, b = input_table(500, 1, 1), input_table(400, 2, 10_000)
    for t, prefix in ((a, "A"), (b, "B")):
        t["my_id"] = [f"{prefix}{i:05d}" for i in range(len(t))]
        t["my_flag"] = np.arange(len(t), dtype=np.int16)
        t["survey_mag"] = np.linspace(10, 12, len(t))
    a["only_in_a"] = 1.0
    a.to_parquet(tmp_path / "a.parquet")
    b.to_csv(tmp_path / "b.csv", index=False)
    plan = plan_ingest([tmp_path / "a.parquet", tmp_path / "b.csv"], CONFIG)
    assert plan.keep == ("my_id", "my_flag", "survey_mag")  # only_in_a: not in every file
    catalog = ingest([tmp_path / "a.parquet", tmp_path / "b.csv"], tmp_path / "cat", CONFIG, client)
    phot, _ = run_photometry_stage(client, catalog, tmp_path / "phot", CONFIG)
    want = pd.concat([a, b], ignore_index=True).sort_values("source_id", ignore_index=True)
    for cat in (catalog, phot):
        got = _all_rows(cat)
        assert list(got.columns[: len(INPUT_COLUMNS)]) == INPUT_COLUMNS
        for col in ("my_id", "my_flag", "survey_mag"):
            np.testing.assert_array_equal(got[col].to_numpy(), want[col].to_numpy(), err_msg=col)
        assert "only_in_a" not in got.columns


def test_an_extra_column_named_like_an_output_column_is_refused(tmp_path, input_table):
    t = input_table(20)
    t["feh"] = 0.1
    t.to_parquet(tmp_path / "a.parquet")
    with pytest.raises(InputError, match="'_'|feh.*bigcat adds"):
        plan_ingest([tmp_path / "a.parquet"], CONFIG)


def test_keep_columns_selects_the_extra_columns(tmp_path, input_table):
    t = input_table(30)
    t["my_id"], t["my_flag"], t["note"] = "x", 1, "n"
    t.to_parquet(tmp_path / "a.parquet")
    files = [tmp_path / "a.parquet"]

    def plan(keep):
        return plan_ingest(files, CONFIG.replace("ingest", keep_columns=keep))

    assert plan("all").keep == ("my_id", "my_flag", "note")
    assert plan("none").keep == ()
    assert plan(["note", "my_id"]).keep == ("note", "my_id")
    assert plan("my_flag, note").keep == ("my_flag", "note")  # as --keep-columns gives it
    with pytest.raises(InputError, match=r"a\.parquet: no column\(s\) survey_name.*my_id"):
        plan(["my_id", "survey_name"])
    with pytest.raises(InputError, match="parallax is not an extra column"):
        plan(["parallax"])
    # the selection is part of the catalogue's fingerprint: another one is a new catalogue
    assert plan("none").fingerprint != plan("all").fingerprint
