"""Ingest: Parquet, CSV and FITS into the HATS layout; lsdb reads back the same rows."""

from __future__ import annotations

import json
import os
from pathlib import Path

import lsdb
import numpy as np
import pandas as pd
import pytest
from astropy.table import Table

from bigcat.catalog.healpix import healpix29, pixel_at_order, pixel_index_range
from bigcat.catalog.store import Catalog
from bigcat.config import Config, IngestConfig
from bigcat.errors import CatalogError, ConfigError, InputError
from bigcat.schema import INPUT_COLUMNS
from bigcat.stages.ingest import ingest, plan_ingest, prepare_rows, split_chunk

CONFIG = Config(ingest=IngestConfig(nside=4, chunk_rows=700, partition_rows=0))


def _write_three_formats(tmp_path, input_table):
    a, b, c = input_table(1500, 1, 1), input_table(900, 2, 10_000), input_table(600, 3, 20_000)
    a.to_parquet(tmp_path / "a.parquet", row_group_size=400)
    b.to_csv(tmp_path / "b.csv", index=False)
    Table.from_pandas(c).write(tmp_path / "c.fits")
    return pd.concat([a, b, c], ignore_index=True), [
        tmp_path / "a.parquet",
        tmp_path / "b.csv",
        tmp_path / "c.fits",
    ]


def test_ingest_three_formats_lsdb_reads_same_rows(tmp_path, client, input_table):
    expected, files = _write_three_formats(tmp_path, input_table)
    out = tmp_path / "cat"
    catalog = ingest(files, out, CONFIG, client)
    assert catalog.n_rows() == len(expected)
    assert not (tmp_path / "cat.partial").exists()
    for name in (
        "properties",
        "partition_info.csv",
        "dataset/_metadata",
        "dataset/_common_metadata",
    ):
        assert (out / name).exists(), name
    got = lsdb.read_hats(out).compute().reset_index()
    assert len(got) == len(expected)
    got = got.sort_values("source_id").reset_index(drop=True)
    exp = expected.sort_values("source_id").reset_index(drop=True)
    for col in INPUT_COLUMNS:
        np.testing.assert_array_equal(got[col].to_numpy(), exp[col].to_numpy(), err_msg=col)
    # every row sits in the partition of its position, sorted by _healpix_29
    h = healpix29(exp.ra.to_numpy(), exp.dec.to_numpy())
    np.testing.assert_array_equal(np.sort(got["_healpix_29"].to_numpy()), np.sort(h))
    for order, pix in catalog.pixels:
        part = catalog.read_partition(order, pix)
        assert order == 2
        assert (pixel_at_order(part["_healpix_29"].to_numpy(), order) == pix).all()
        assert part["_healpix_29"].is_monotonic_increasing


def test_adaptive_partitions_merge_sparse_pixels_up_to_the_threshold(tmp_path, client, input_table):
    expected, files = _write_three_formats(tmp_path, input_table)
    config = Config(ingest=IngestConfig(nside=4, chunk_rows=700, partition_rows=220))
    catalog = ingest(files, tmp_path / "cat", config, client)
    assert catalog.properties["partition_threshold"] == 220
    assert catalog.n_rows() == len(expected)
    orders = sorted({o for o, _ in catalog.pixels})
    assert len(orders) > 1 and max(orders) <= 2, orders
    covered = []
    for order, pix in catalog.pixels:
        part = catalog.read_partition(order, pix)
        assert 0 < len(part) <= 220
        assert len(part) == catalog.partition_rows(order, pix)
        assert (pixel_at_order(part["_healpix_29"].to_numpy(), order) == pix).all()
        assert part["_healpix_29"].is_monotonic_increasing
        covered.append(pixel_index_range(order, pix))
    covered.sort()
    assert all(a[1] <= b[0] for a, b in zip(covered, covered[1:], strict=False))  # disjoint
    got = lsdb.read_hats(tmp_path / "cat").compute()
    assert sorted(got["source_id"]) == sorted(expected["source_id"])
    # a merged parent never holds more than the threshold: each partition's parent would
    parent_rows: dict[tuple[int, int], int] = {}
    h = healpix29(expected.ra.to_numpy(), expected.dec.to_numpy())
    for order, pix in catalog.pixels:
        if order > 0:
            lo, hi = pixel_index_range(order - 1, pix >> 2)
            parent_rows[(order - 1, pix >> 2)] = int(((h >= lo) & (h < hi)).sum())
    assert min(parent_rows.values()) > 220


def test_adaptive_pixel_above_the_threshold_stays_whole(tmp_path, client, input_table, caplog):
    table = input_table(1500, 1, 1)
    table.loc[:199, "ra"] = 10.0 + np.linspace(0, 0.5, 200)  # a dense clump in one pixel
    table.loc[:199, "dec"] = 5.0
    table.to_parquet(tmp_path / "a.parquet")
    config = Config(ingest=IngestConfig(nside=4, chunk_rows=700, partition_rows=100))
    with caplog.at_level("WARNING", logger="bigcat.stages.ingest"):
        catalog = ingest([tmp_path / "a.parquet"], tmp_path / "cat", config, client)
    assert catalog.n_rows() == len(table)
    sizes = {op: catalog.partition_rows(*op) for op in catalog.pixels}
    big = [op for op, n in sizes.items() if n > 100]
    assert len(big) == 1 and big[0][0] == 2 and sizes[big[0]] >= 200  # finest order, whole
    assert any(o < 2 for o, _ in catalog.pixels)  # sparse pixels still merged
    assert "1 order-2 pixels hold more than partition_rows = 100" in caplog.text
    with pytest.raises(ConfigError, match="partition_rows = -1"):
        IngestConfig(partition_rows=-1)


def test_ingest_is_idempotent_and_refuses_to_overwrite(tmp_path, client, input_table):
    _, files = _write_three_formats(tmp_path, input_table)
    out = tmp_path / "cat"
    ingest(files, out, CONFIG, client)
    before = {p: p.stat().st_mtime_ns for p in out.rglob("Npix=*.parquet")}
    ingest(files, out, CONFIG, client)  # same inputs: up to date, untouched
    assert before == {p: p.stat().st_mtime_ns for p in out.rglob("Npix=*.parquet")}
    with pytest.raises(CatalogError, match="already exists"):
        ingest(files[:1], out, CONFIG, client)
    assert before == {p: p.stat().st_mtime_ns for p in out.rglob("Npix=*.parquet")}


def test_interrupted_ingest_resumes_without_redoing_chunks(tmp_path, client, input_table):
    _, files = _write_three_formats(tmp_path, input_table)
    clean = ingest(files, tmp_path / "clean", CONFIG, client)
    # simulate a run that died after splitting the first two chunks
    out = tmp_path / "cat"
    staging = tmp_path / "cat.partial"
    plan = plan_ingest(files, CONFIG)
    staging.mkdir()
    (staging / "plan.json").write_text(json.dumps({"fingerprint": plan.fingerprint}))
    for spec in plan.chunks[:2]:
        split_chunk(
            spec,
            plan.read_columns[spec.file_index],
            plan.rename,
            plan.missing_optional[spec.file_index],
            str(staging),
            2,
            700,
        )
    done = {p: p.stat().st_mtime_ns for p in (staging / "shards").iterdir()}
    # leave a stray temporary file, as a killed writer would
    (staging / "shards" / ".junk.parquet.tmp").write_bytes(b"half")
    catalog = ingest(files, out, CONFIG, client)
    assert catalog.n_rows() == clean.n_rows()
    for order, pix in clean.pixels:
        pd.testing.assert_frame_equal(
            catalog.read_partition(order, pix), clean.read_partition(order, pix)
        )
    assert not staging.exists()
    # the resumed run did not rewrite the chunks that were already split
    assert len(done) >= 2


def test_missing_columns_named_with_fix(tmp_path, client, input_table):
    df = input_table(50).drop(columns=["ruwe", "w2_flags"])
    df.to_parquet(tmp_path / "bad.parquet")
    with pytest.raises(
        InputError,
        match=r"(?s)bad.parquet: missing required column\(s\) ruwe, w2_flags.*\[columns\]\n    ruwe = ",
    ):
        ingest([tmp_path / "bad.parquet"], tmp_path / "cat", CONFIG, client)
    assert not (tmp_path / "cat").exists() and not (tmp_path / "cat.partial").exists()


def test_column_mapping_from_config(tmp_path, client, input_table):
    df = input_table(200).rename(columns={"source_id": "SOURCE_ID", "ruwe": "RUWE"})
    df.to_parquet(tmp_path / "renamed.parquet")
    config = Config(
        ingest=IngestConfig(nside=4, partition_rows=0),
        columns={"source_id": "SOURCE_ID", "ruwe": "RUWE"},
    )
    catalog = ingest([tmp_path / "renamed.parquet"], tmp_path / "cat", config, client)
    assert catalog.n_rows() == 200
    assert "ruwe" in catalog.columns() and "RUWE" not in catalog.columns()


def test_duplicate_source_id_names_both_rows_and_leaves_nothing(tmp_path, client, input_table):
    a = input_table(300, 1, 1)
    b = input_table(300, 2, 1000)
    b.loc[17, "source_id"] = a.loc[5, "source_id"]
    b.loc[17, ["ra", "dec"]] = a.loc[5, ["ra", "dec"]].to_numpy()
    a.to_parquet(tmp_path / "a.parquet")
    b.to_csv(tmp_path / "b.csv", index=False)
    with pytest.raises(
        InputError,
        match=rf"(?s)source_id {a.loc[5, 'source_id']} occurs more than once: .*a.parquet data row 6 and .*b.csv data row 18",
    ):
        ingest([tmp_path / "a.parquet", tmp_path / "b.csv"], tmp_path / "cat", CONFIG, client)
    assert not (tmp_path / "cat").exists() and not (tmp_path / "cat.partial").exists()


def test_unreadable_and_mistyped_files(tmp_path, client, input_table):
    (tmp_path / "broken.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(InputError, match="broken.parquet: cannot be read as PARQUET"):
        ingest([tmp_path / "broken.parquet"], tmp_path / "cat", CONFIG, client)
    df = input_table(20)
    df["parallax"] = df["parallax"].astype(str) + " mas"
    df.to_parquet(tmp_path / "typed.parquet")
    with pytest.raises(InputError, match="typed.parquet: column 'parallax' has type other"):
        ingest([tmp_path / "typed.parquet"], tmp_path / "cat", CONFIG, client)
    with pytest.raises(InputError, match="no such file"):
        ingest([tmp_path / "nope.parquet"], tmp_path / "cat", CONFIG, client)
    assert not (tmp_path / "cat").exists()


def test_bad_row_in_csv_names_the_row(tmp_path, client, input_table):
    df = input_table(30)
    df.to_csv(tmp_path / "rows.csv", index=False)
    lines = (tmp_path / "rows.csv").read_text().splitlines()
    cells = lines[8].split(",")
    cells[INPUT_COLUMNS.index("dec")] = "95.0"
    lines[8] = ",".join(cells)
    (tmp_path / "rows.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError, match=r"rows.csv: data row 8 .*no valid position"):
        ingest([tmp_path / "rows.csv"], tmp_path / "cat", CONFIG, client)
    assert not (tmp_path / "cat.partial").exists()


def test_prepare_rows_fills_optional_and_casts(input_table):
    df = input_table(5).drop(
        columns=["radial_velocity", "radial_velocity_error", "pmra_pmdec_corr"]
    )
    df["w1_flags"] = df["w1_flags"].astype(np.int16)
    out = prepare_rows(
        df, {}, ["radial_velocity", "radial_velocity_error", "pmra_pmdec_corr"], "x", 0, 3
    )
    assert out["pmra_pmdec_corr"].eq(0).all() and out["radial_velocity"].isna().all()
    assert out["w1_flags"].dtype == np.int64
    assert (out["_bigcat_row"].to_numpy() >> 40 == 3).all()


def test_open_non_catalog_is_clear_error(tmp_path):
    with pytest.raises(CatalogError, match="not a HEALPix catalogue"):
        Catalog.open(tmp_path)


def test_corrupted_partition_names_file_and_fix(tmp_path, client, input_table):
    input_table(400).to_parquet(tmp_path / "a.parquet")
    catalog = ingest([tmp_path / "a.parquet"], tmp_path / "cat", CONFIG, client)
    order, pix = catalog.pixels[0]
    path = catalog.partition_path(order, pix)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(
        CatalogError,
        match=rf"(?s){os.path.basename(path)}: cannot read .*corrupted or truncated.*Delete it",
    ):
        catalog.read_partition(order, pix)


REAL = Path(__file__).resolve().parents[3] / "shared" / "data" / "real"


@pytest.mark.skipif(not (REAL / "gaia_dr3_random_1000.fits").exists(), reason="shared/data absent")
@pytest.mark.filterwarnings("ignore::astropy.units.UnitsWarning")
def test_ingest_real_gaia_rows_from_fits(tmp_path, client):
    """Real Gaia DR3 archive rows (big-endian FITS, float32, masked RVs, 5/6-p solutions)."""
    real = Table.read(REAL / "gaia_dr3_random_1000.fits")
    gaia_cols = [c for c in INPUT_COLUMNS if c in real.colnames]
    t = real[gaia_cols]
    rng = np.random.default_rng(3)
    for col in ("j_m", "h_m", "ks_m", "w1_mag", "w2_mag"):  # not in the Gaia table
        t[col] = rng.uniform(8, 15, len(t))
    for col in ("j_msigcom", "h_msigcom", "ks_msigcom", "w1_mag_error", "w2_mag_error"):
        t[col] = np.full(len(t), 0.03, dtype=np.float32)
    t["w1_flags"] = np.zeros(len(t), dtype=np.int16)
    t["w2_flags"] = np.zeros(len(t), dtype=np.int16)
    t.write(tmp_path / "real.fits")
    catalog = ingest([tmp_path / "real.fits"], tmp_path / "cat", CONFIG, client)
    got = lsdb.read_hats(catalog.root).compute().sort_values("source_id")
    exp = real.to_pandas().sort_values("source_id")
    assert len(got) == len(exp) == 1000
    np.testing.assert_array_equal(got["source_id"].to_numpy(), exp["source_id"].to_numpy())
    for col in ("parallax", "ruwe", "radial_velocity", "nu_eff_used_in_astrometry", "pseudocolour"):
        np.testing.assert_allclose(
            got[col].to_numpy(),
            exp[col].to_numpy(dtype=np.float64, na_value=np.nan),
            rtol=1e-6,
            equal_nan=True,
            err_msg=col,
        )
    assert got["radial_velocity"].isna().sum() == int(
        np.ma.getmaskarray(real["radial_velocity"]).sum()
    )
    assert set(got["astrometric_params_solved"]) == {31, 95}


def test_catalogue_without_parquet_metadata_opens_in_lsdb(tmp_path, client, input_table):
    """Intermediate stage outputs skip dataset/_metadata: the schema file equals hats' and
    lsdb still reads every row; finalising again with it restores the file."""
    import pyarrow.parquet as pq
    from hats.io import write_parquet_metadata

    from bigcat.catalog.store import finalize_catalog

    expected, files = _write_three_formats(tmp_path, input_table)
    root = tmp_path / "cat"
    catalog = ingest(files, root, CONFIG, client)
    assert (root / "dataset" / "_metadata").exists()
    args = (root, catalog.pixels, "again", len(expected), {})
    finalize_catalog(*args, parquet_metadata=False)
    assert not (root / "dataset" / "_metadata").exists()
    write_parquet_metadata(root, output_path=tmp_path / "ref")
    ours = pq.read_schema(root / "dataset" / "_common_metadata")
    assert ours.equals(pq.read_schema(tmp_path / "ref" / "dataset" / "_common_metadata"))
    got = lsdb.read_hats(root).compute()
    assert sorted(got["source_id"]) == sorted(expected["source_id"])
    finalize_catalog(*args)
    assert (root / "dataset" / "_metadata").exists()


def test_partition_path_is_hats_layout() -> None:
    from hats.io import paths as hats_paths
    from hats.pixel_math.healpix_pixel import HealpixPixel

    from bigcat.catalog.store import partition_path

    rng = np.random.default_rng(3)
    for order in range(0, 12):
        for pixel in {0, 12 * 4**order - 1, *rng.integers(0, 12 * 4**order, 5).tolist()}:
            ref = hats_paths.pixel_catalog_file(Path("/cat"), HealpixPixel(order, pixel))
            assert str(partition_path("/cat", order, pixel)) == str(ref)


def test_merge_tasks_read_only_the_shards_that_hold_their_sky():
    """Shards record their _healpix_29 range; a merge group gets the shards meeting its own
    range (an input sorted on the sky: a few; a shard without a range: every group)."""
    from bigcat.stages.ingest import (
        MERGE_MAX_ROWS,
        SHARD_ROW_GROUP_ROWS,
        merge_group_rows,
        shards_per_group,
    )

    groups = [[(2, 0), (2, 1)], [(1, 1)], [(2, 8)]]
    lo0, _ = pixel_index_range(2, 0)
    _, hi1 = pixel_index_range(2, 1)
    lo_p, _ = pixel_index_range(1, 1)
    lo8, hi8 = pixel_index_range(2, 8)
    ranges = {
        "a": [lo0, hi1 - 1],  # exactly the first group
        "b": [hi1 - 1, lo_p + 5],  # straddles the first two
        "c": [lo8 + 1, lo8 + 1],  # one row, in the third
        "far": [hi8, hi8 + 10],  # after every group
    }
    got = shards_per_group(groups, ["a", "b", "c", "far", "old"], ranges)
    assert got == [["a", "b", "old"], ["b", "old"], ["c", "old"]]
    # merge tasks grow with the number of shards (bounded), never below the task target
    assert merge_group_rows(60_000, 1) == 60_000
    assert merge_group_rows(60_000, 20) == SHARD_ROW_GROUP_ROWS * 20
    assert merge_group_rows(60_000, 10_000) == MERGE_MAX_ROWS


def test_an_input_sorted_on_the_sky_is_merged_from_its_own_shards(
    tmp_path, client, input_table, monkeypatch
):
    """Two files covering two halves of the sky (base pixels 0-5 and 6-11): each merge task
    reads only the two shards of its half, and the catalogue is the one made from the same
    rows in one unsorted file."""
    from bigcat.stages import ingest as ingest_module

    table = input_table(4_000, 3)
    first_half = pixel_at_order(healpix29(table["ra"].to_numpy(), table["dec"].to_numpy()), 0) < 6
    table[first_half].to_parquet(tmp_path / "a.parquet")
    table[~first_half].to_parquet(tmp_path / "b.parquet")
    table.sample(frac=1.0, random_state=1).to_parquet(tmp_path / "all.parquet")
    config = Config(ingest=IngestConfig(nside=4, chunk_rows=1_200, partition_rows=0))
    seen: list[int] = []
    original = ingest_module.shards_per_group

    def counting(groups, shard_files, ranges):
        out = original(groups, shard_files, ranges)
        seen.extend(len(s) for s in out)
        return out

    monkeypatch.setattr(ingest_module, "shards_per_group", counting)
    monkeypatch.setattr(ingest_module, "merge_group_rows", lambda *_: 500)  # several tasks
    split = ingest([tmp_path / "a.parquet", tmp_path / "b.parquet"], tmp_path / "s", config, client)
    # 4 shards in all: each task reads its half's 2 (one group may straddle the halves)
    assert len(seen) > 2 and seen.count(2) >= len(seen) - 1
    whole = ingest([tmp_path / "all.parquet"], tmp_path / "w", config, client)
    assert split.pixels == whole.pixels
    # the files hold pandas' index (__index_level_0__): row labels, not an extra column
    assert not [c for c in split.read_partition(*split.pixels[0]).columns if "index" in c]
    for op in whole.pixels:
        pd.testing.assert_frame_equal(split.read_partition(*op), whole.read_partition(*op))
