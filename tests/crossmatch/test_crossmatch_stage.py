"""`bigcat.stages.crossmatch.crossmatch` on small seeded tables, on the session cluster."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pyarrow.dataset as ds
import pytest

from bigcat.catalog.crossmatch import propagate, year_to_jd
from bigcat.catalog.healpix import healpix29, pixel_at_order
from bigcat.catalog.store import Catalog, partition_path
from bigcat.config import Config, IngestConfig
from bigcat.errors import CatalogError, InputError
from bigcat.schema import CROSSMATCH_COLUMNS, INPUT_COLUMNS, NO_UNWISE_FLAGS
from bigcat.stages.crossmatch import crossmatch, summary_line
from bigcat.stages.verify import verify_run

from .conftest import (
    TMASS_JD,
    border_point,
    gaia_table,
    moved,
    tmass_table,
    unwise_table,
    write,
)


def _rows(catalog: Catalog) -> pd.DataFrame:
    df = ds.dataset(catalog.root / "dataset", format="parquet", exclude_invalid_files=True)
    return df.to_table().to_pandas().sort_values("source_id", ignore_index=True)


def _run(tmp_path, client, gaia, tmass, unwise, config=None, name="cat", **kw) -> Catalog:
    paths = [
        write(tmp_path / "in" / f"{n}.parquet", df)
        for n, df in (("gaia", gaia), ("tmass", tmass), ("unwise", unwise))
    ]
    return crossmatch(*paths, tmp_path / name, config or Config(), client, **kw)


def _region(n: int, seed: int, ra0: float = 150.0, dec0: float = 2.0, size: float = 0.3):
    rng = np.random.default_rng(seed)
    return ra0 + rng.uniform(0, size, n), dec0 + rng.uniform(0, size, n)


def test_proper_motions_recover_fast_movers_an_unpropagated_match_misses(tmp_path, client):
    rng = np.random.default_rng(1)
    n = 80
    ra, dec = _region(n, 2)
    fast = np.arange(n) < 30
    speed = np.where(fast, rng.uniform(150, 400, n), rng.uniform(0, 5, n))  # mas/yr
    angle = rng.uniform(0, 2 * np.pi, n)
    gaia = gaia_table(ra, dec, speed * np.cos(angle), speed * np.sin(angle))
    years = rng.uniform(1997.5, 2001.0, n)  # each 2MASS source seen at its own date
    tra, tdec = propagate(gaia.ra, gaia.dec, gaia.pmra, gaia.pmdec, years - 2016.0)
    tmass = tmass_table(tra, tdec, jdate=year_to_jd(years))
    unwise = unwise_table(*moved(gaia, 2013.0))
    rows = _rows(_run(tmp_path, client, gaia, tmass, unwise))
    assert len(rows) == n and rows.source_id.is_unique
    truth = dict(zip(gaia.source_id, tmass.designation, strict=True))
    assert (rows.tmass_designation == rows.source_id.map(truth)).all()
    assert rows.tmass_sep_arcsec.max() < 1e-3 and rows.unwise_matched.all()
    # the same tables without the proper motions: the fast movers (2.2-7 arcsec away) are missed
    still = gaia.assign(pmra=0.0, pmdec=0.0)
    rows0 = _rows(_run(tmp_path / "b", client, still, tmass, unwise))
    got = rows0.tmass_matched.to_numpy()
    is_fast = rows0.source_id.isin(gaia.source_id[fast]).to_numpy()
    assert not got[is_fast].any() and got[~is_fast].all()


def _border_tables() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, int, int]:
    """Gaia, 2MASS and unWISE tables across the border of two order-3 pixels (west, east),
    one 2MASS source claimed from both sides (see the test below)."""
    ra_b, dec_b, west, east = border_point(3)
    ra_n, dec_n, west_n, east_n = border_point(3, dec0=dec_b + 20 / 3600)  # 20" north
    assert (west_n, east_n) == (west, east)
    step = 1 / 3600 / np.cos(np.radians(dec_b))  # 1 arcsec of ra

    def at(x_arcsec, north=False):
        return (
            (ra_n, dec_n)
            if north and x_arcsec == 0
            else (
                (ra_n if north else ra_b) + x_arcsec * step,
                dec_n if north else dec_b,
            )
        )

    # g1 0.25" west, g2 0.6" east; R 0.05" east: both claim R (0.30" and 0.55"), g1 keeps it
    # g3 0.3" west (20" north), R3 0.3" east: a pair across the border
    # g4, g5 1" apart deep inside the west pixel with one source between, 0.3" from g4
    west_inside = at(-600)
    stars = [
        at(-0.25),
        at(0.6),
        at(-0.3, True),
        west_inside,
        (west_inside[0] + step, west_inside[1]),
    ]
    gaia = gaia_table([s[0] for s in stars], [s[1] for s in stars])
    sources = [at(0.05), at(0.3, True), (west_inside[0] + 0.3 * step, west_inside[1])]
    tmass = tmass_table([s[0] for s in sources], [s[1] for s in sources], names=["R", "R3", "R4"])
    unwise = unwise_table(gaia.ra, gaia.dec)
    return gaia, tmass, unwise, west, east


#: Fixed order-3 partitions, one per pixel.
BORDER_CONFIG = Config(ingest=IngestConfig(nside=8, partition_rows=0))


def test_one_to_one_and_pairs_across_a_partition_border(tmp_path, client):
    """Partitions of order 3 (nside 8, fixed): stars just west of a border, counterparts just
    east of it, in the neighbouring partition."""
    gaia, tmass, unwise, west, east = _border_tables()
    cat = _run(tmp_path, client, gaia, tmass, unwise, BORDER_CONFIG)
    pix = pixel_at_order(healpix29(gaia.ra.to_numpy(), gaia.dec.to_numpy()), 3)
    assert list(pix) == [west, east, west, west, west]
    assert sorted(cat.pixels) == sorted([(3, west), (3, east)])
    rows = _rows(cat).set_index("source_id").loc[gaia.source_id]
    assert rows.tmass_designation.tolist()[:3] == ["R", None, "R3"] or (
        rows.tmass_designation.iloc[0] == "R"
        and pd.isna(rows.tmass_designation.iloc[1])
        and rows.tmass_designation.iloc[2] == "R3"
    )
    assert rows.tmass_sep_arcsec.iloc[0] == pytest.approx(0.30, abs=1e-3)
    assert rows.tmass_sep_arcsec.iloc[2] == pytest.approx(0.60, abs=1e-3)
    assert rows.tmass_designation.iloc[3] == "R4" and pd.isna(rows.tmass_designation.iloc[4])
    assert rows.tmass_matched.tolist() == [True, False, True, True, False]
    assert np.isnan(rows.ks_m.iloc[1]) and np.isnan(rows.ks_m.iloc[4])
    counts = cat.properties["crossmatch"]
    assert counts["tmass_matched"] == 3 and counts["tmass_claims_resolved"] == 1


def test_a_damaged_partition_is_found_and_recomputed_to_the_same_bytes(
    tmp_path, client, caplog, damage_parquet
):
    """The partitions' records (rows, bytes, sha256; the patched part's as rewritten) are in
    bigcat.json: a truncated or bit-flipped partition is listed by verify, and the re-run warns
    naming it and makes the catalogue again, identical to the undamaged one."""
    gaia, tmass, unwise, west, east = _border_tables()
    paths = [
        write(tmp_path / "in" / f"{n}.parquet", df)
        for n, df in (("gaia", gaia), ("tmass", tmass), ("unwise", unwise))
    ]
    out = tmp_path / "cat"
    cat = crossmatch(*paths, out, BORDER_CONFIG, client)
    assert cat.properties["crossmatch"]["tmass_claims_resolved"] == 1  # a part was patched
    assert sorted(cat.properties["partition_files"]) == [f"3/{west}", f"3/{east}"]
    assert verify_run(out).ok
    truncated, flipped = partition_path(out, 3, west), partition_path(out, 3, east)
    before = {p: p.read_bytes() for p in (truncated, flipped)}
    files = cat.properties["partition_files"]

    damage_parquet(truncated, flipped, verify=out)

    with caplog.at_level(logging.WARNING, "bigcat"):
        again = crossmatch(*paths, out, BORDER_CONFIG, client)
    assert "2 damaged partition file(s)" in caplog.text
    assert str(truncated) in caplog.text and str(flipped) in caplog.text
    assert {p: p.read_bytes() for p in before} == before  # the undamaged run's files
    assert again.properties["partition_files"] == files
    assert verify_run(out).ok and not (tmp_path / "cat.partial").exists()
    caplog.clear()
    with caplog.at_level(logging.INFO, "bigcat"):  # whole again: reused as it is
        crossmatch(*paths, out, BORDER_CONFIG, client)
    assert "up to date" in caplog.text and "damaged partition" not in caplog.text


def test_missing_counterparts_keep_nan_and_are_counted(tmp_path, client):
    n = 40
    ra, dec = _region(n, 3)
    gaia = gaia_table(ra, dec)
    keep_t = np.arange(n) % 5 != 0  # 8 without 2MASS
    keep_u = np.arange(n) % 4 != 1  # 10 without unWISE
    tmass = tmass_table(ra[keep_t], dec[keep_t], k_m=np.linspace(10, 12, keep_t.sum()))
    # W1 flux 1000 nanomaggies: 22.5 - 2.5 log10(1000) = 15.0 mag, error 2.5/ln10 * 0.01
    unwise = unwise_table(ra[keep_u], dec[keep_u], w1=15.0, w2=14.0)
    unwise["flux_w1"] = 1000.0
    unwise["dflux_w1"] = 10.0
    unwise["flags_unwise_w2"] = 4
    cat = _run(tmp_path, client, gaia, tmass, unwise)
    assert list(_rows(cat).columns) == [*INPUT_COLUMNS, *CROSSMATCH_COLUMNS, "_healpix_29"]
    assert cat.columns() == [*INPUT_COLUMNS, *CROSSMATCH_COLUMNS, "_healpix_29"]
    rows = _rows(cat).set_index("source_id").loc[gaia.source_id]
    assert rows.tmass_matched.to_numpy().tolist() == keep_t.tolist()
    assert rows.unwise_matched.to_numpy().tolist() == keep_u.tolist()
    for col in ("j_m", "j_msigcom", "h_m", "h_msigcom", "ks_m", "ks_msigcom", "tmass_sep_arcsec"):
        assert rows[col][~keep_t].isna().all() and rows[col][keep_t].notna().all()
    assert rows.ks_m[keep_t].to_numpy() == pytest.approx(np.linspace(10, 12, keep_t.sum()))
    assert rows.tmass_designation[~keep_t].isna().all()
    for col in ("w1_mag", "w1_mag_error", "w2_mag", "w2_mag_error", "unwise_sep_arcsec"):
        assert rows[col][~keep_u].isna().all()
    assert (rows.w1_flags[~keep_u] == NO_UNWISE_FLAGS).all()
    assert (rows.w2_flags[~keep_u] == NO_UNWISE_FLAGS).all()
    assert (rows.w1_flags[keep_u] == 0).all() and (rows.w2_flags[keep_u] == 4).all()
    assert rows.w1_mag[keep_u].to_numpy() == pytest.approx(15.0)
    assert rows.w1_mag_error[keep_u].to_numpy() == pytest.approx(2.5 / np.log(10) * 0.01)
    assert rows.w2_mag[keep_u].to_numpy() == pytest.approx(14.0)
    c = cat.properties["crossmatch"]
    assert (c["rows"], c["tmass_matched"], c["tmass_unmatched"]) == (40, 32, 8)
    assert (c["unwise_matched"], c["unwise_unmatched"]) == (30, 10)
    line = summary_line(cat)
    assert "40 Gaia rows" in line and "32" in line and "8 without" in line and "10 without" in line
    # bigcat's own view of it: every input column, bigcat.json
    assert Catalog.open(cat.root).properties["kind"] == "crossmatch"
    # the same call again: up to date, returned as it is; other settings: refused
    again = crossmatch(
        *(tmp_path / "in" / f"{s}.parquet" for s in ("gaia", "tmass", "unwise")),
        tmp_path / "cat",
        Config(),
        client,
    )
    assert again.fingerprint == cat.fingerprint
    with pytest.raises(CatalogError, match="already exists"):
        crossmatch(
            *(tmp_path / "in" / f"{s}.parquet" for s in ("gaia", "tmass", "unwise")),
            tmp_path / "cat",
            Config(),
            client,
            radius_arcsec=2.0,
        )


def test_small_mock_pairs_against_truth(small_mock, tmp_path, client):
    cat = crossmatch(
        small_mock / "gaia_source.parquet",
        small_mock / "tmass_psc.parquet",
        small_mock / "unwise.parquet",
        tmp_path / "cat",
        Config(ingest=IngestConfig(nside=8, partition_rows=300)),
        client,
    )
    rows = _rows(cat)
    truth = pd.read_parquet(small_mock / "crossmatch_truth.parquet")
    phot = pd.read_parquet(small_mock / "photometry.parquet")
    assert len(rows) == len(truth) == 3_000 and rows.source_id.is_unique
    assert len(cat.pixels) > 4  # several partitions, so pairs cross borders
    j = truth.merge(rows, on="source_id", suffixes=("_true", ""))
    for col, right_min in (("tmass_designation", 0.995), ("unwise_objid", 0.99)):
        has = j[f"{col}_true"].notna()
        right = (j[col] == j[f"{col}_true"]) & has
        assert right.sum() >= right_min * has.sum()
        assert ((j[col] != j[f"{col}_true"]) & j[col].notna()).sum() <= 0.005 * len(j)
    # the photometry is the stars' own, in the survey formats and back
    k = j.merge(phot, on="source_id", suffixes=("", "_phot"))
    ok = (k.tmass_designation == k.tmass_designation_true).to_numpy()
    assert np.allclose(k.ks_m[ok], k.ks_m_phot[ok], rtol=0, atol=1e-12)
    ok = (k.unwise_objid == k.unwise_objid_true).to_numpy()
    assert np.allclose(k.w1_mag[ok], k.w1_mag_phot[ok], rtol=0, atol=1e-9)
    assert np.allclose(k.w2_mag_error[ok], k.w2_mag_error_phot[ok], rtol=1e-9)
    assert (k.w1_flags[ok] == k.w1_flags_phot[ok]).all()


@pytest.mark.slow  # end to end (crossmatch of the whole small mock): run by .ci/run
def test_hats_inputs_give_the_same_catalogue(small_mock, tmp_path, client):
    import lsdb

    files = [small_mock / f"{t}.parquet" for t in ("gaia_source", "tmass_psc", "unwise")]
    hats = []
    for path, name in zip(files, ("gaia", "tmass", "unwise"), strict=True):
        df = pd.read_parquet(path)
        cat = lsdb.from_dataframe(df, catalog_name=name, margin_threshold=10.0)
        cat.write_catalog(tmp_path / name, progress_bar=False)
        hats.append(tmp_path / name)
    config = Config(ingest=IngestConfig(nside=8, partition_rows=300))
    a = crossmatch(*files, tmp_path / "from-files", config, client)
    b = crossmatch(*hats, tmp_path / "from-hats", config, client)
    assert a.properties["crossmatch"]["written_by"] == "crossmatch"
    assert b.properties["crossmatch"]["written_by"] == "ingest"
    assert sorted(a.pixels) == sorted(b.pixels)
    ra, rb = _rows(a), _rows(b)
    pd.testing.assert_frame_equal(ra, rb, check_dtype=False)
    assert a.columns() == b.columns()


# ---- bad input -------------------------------------------------------------------------------


@pytest.fixture
def tables():
    ra, dec = _region(30, 5)
    gaia = gaia_table(ra, dec)
    return gaia, tmass_table(ra, dec), unwise_table(ra, dec)


def _nothing_left(tmp_path, name="cat"):
    return not (tmp_path / name).exists() and not (tmp_path / f"{name}.partial").exists()


def test_missing_column_names_survey_file_column_and_mapping(tables, tmp_path, client):
    gaia, tmass, unwise = tables
    bad = tmass.rename(columns={"jdate": "jdate_obs"})
    with pytest.raises(
        InputError,
        match=r"(?s)2MASS PSC table .*tmass\.parquet \(--tmass\): missing required column\(s\) "
        r"jdate.*\[columns\.tmass\]\n    jdate = \"jdate_obs\"",
    ):
        _run(tmp_path, client, gaia, bad, unwise)
    assert _nothing_left(tmp_path)
    with pytest.raises(
        InputError, match=r"(?s)Gaia DR3 gaia_source table .*missing.*ruwe.*columns\.gaia"
    ):
        _run(tmp_path, client, gaia.drop(columns=["ruwe"]), tmass, unwise)
    with pytest.raises(InputError, match=r"(?s)unWISE .*flux_w1.*\[columns\.unwise\]"):
        _run(tmp_path, client, gaia, tmass, unwise.drop(columns=["flux_w1"]))
    assert _nothing_left(tmp_path)
    # the mapping the message suggests fixes it
    config = Config(survey_columns={"tmass": {"jdate": "jdate_obs"}})
    cat = _run(tmp_path, client, gaia, bad, unwise, config)
    assert cat.properties["crossmatch"]["tmass_matched"] == 30


def test_duplicate_identifiers_are_errors_naming_one(tables, tmp_path, client):
    gaia, tmass, unwise = tables
    dup_t = tmass.copy()
    dup_t.loc[5, "designation"] = dup_t.loc[2, "designation"]
    with pytest.raises(
        InputError,
        match=r"2MASS PSC table: designation 'T0000002' occurs more than once.*data row 3 and .*data row 6",
    ):
        _run(tmp_path, client, gaia, dup_t, unwise)
    dup_u = unwise.copy()
    dup_u.loc[7, "unwise_objid"] = dup_u.loc[1, "unwise_objid"]
    with pytest.raises(InputError, match=r"unWISE.*unwise_objid 'U0000001' occurs more than once"):
        _run(tmp_path, client, gaia, tmass, dup_u)
    dup_g = gaia.copy()
    dup_g.loc[4, "source_id"] = dup_g.loc[0, "source_id"]
    sid = int(dup_g.loc[0, "source_id"])
    with pytest.raises(InputError, match=rf"Gaia DR3 gaia_source table: source_id {sid}"):
        _run(tmp_path, client, dup_g, tmass, unwise)
    assert _nothing_left(tmp_path)


def test_inputs_that_do_not_overlap_are_an_error_not_an_empty_catalogue(tables, tmp_path, client):
    gaia, tmass, unwise = tables
    far = unwise.assign(ra=unwise.ra + 90.0)
    with pytest.raises(InputError, match=r"has a counterpart in unWISE.*do not overlap on the sky"):
        _run(tmp_path, client, gaia, tmass, far)
    assert _nothing_left(tmp_path)
    with pytest.raises(InputError, match=r"2MASS PSC.*do not overlap on the sky"):
        _run(tmp_path, client, gaia, tmass.assign(dec=-tmass.dec), unwise)
    assert _nothing_left(tmp_path)


def test_other_bad_inputs(tables, tmp_path, client):
    gaia, tmass, unwise = tables
    bad = tmass.copy()
    bad["ra"] = bad["ra"].astype(object)
    bad.loc[3, "ra"] = "n/a"
    bad["ra"] = bad["ra"].astype(str)
    with pytest.raises(InputError, match=r"2MASS PSC table .*column 'ra' has type other"):
        _run(tmp_path, client, gaia, bad, unwise)
    nopos = gaia.copy()
    nopos.loc[2, "dec"] = np.nan
    with pytest.raises(InputError, match=r"Gaia DR3 .*data row 3 .*has no valid position"):
        _run(tmp_path, client, nopos, tmass, unwise)
    with pytest.raises(InputError, match=r"--unwise .*no such file"):
        crossmatch(
            write(tmp_path / "g.parquet", gaia),
            write(tmp_path / "t.parquet", tmass),
            tmp_path / "missing.parquet",
            tmp_path / "cat",
            Config(),
            client,
        )
    with pytest.raises(InputError, match=r"pattern matches no file"):
        crossmatch(
            tmp_path / "g.parquet",
            tmp_path / "nothing-*.parquet",
            tmp_path / "t.parquet",
            tmp_path / "cat",
            Config(),
            client,
        )
    with pytest.raises(InputError, match="radius must be positive"):
        _run(tmp_path, client, gaia, tmass, unwise, radius_arcsec=0.0)
    assert _nothing_left(tmp_path)


def test_tmass_epoch_is_used(tmp_path, client):
    """jdate is a Julian date: a 2MASS source seen in 1998 at a star's 1998 position matches;
    the same source stamped 2016 (no motion) would not."""
    ra, dec = _region(10, 8)
    gaia = gaia_table(ra, dec, pmra=0.0, pmdec=300.0)  # 5.4 arcsec between 1998 and 2016
    tra, tdec = moved(gaia, 1998.0)
    rows = _rows(
        _run(
            tmp_path,
            client,
            gaia,
            tmass_table(tra, tdec, jdate=year_to_jd(1998.0)),
            unwise_table(*moved(gaia, 2013.0)),
        )
    )
    assert rows.tmass_matched.all()
    assert TMASS_JD < year_to_jd(2000)


def test_csv_files_and_globs(tables, tmp_path, client):
    gaia, tmass, unwise = tables
    (tmp_path / "csv").mkdir()
    tmass.iloc[:15].to_csv(tmp_path / "csv" / "tmass-1.csv", index=False)
    tmass.iloc[15:].to_csv(tmp_path / "csv" / "tmass-2.csv", index=False)
    gaia.to_csv(tmp_path / "csv" / "gaia.csv", index=False)
    cat = crossmatch(
        tmp_path / "csv" / "gaia.csv",
        str(tmp_path / "csv" / "tmass-*.csv"),
        [
            write(tmp_path / "u1.parquet", unwise.iloc[:10]),
            write(tmp_path / "u2.parquet", unwise.iloc[10:]),
        ],
        tmp_path / "cat",
        Config(),
        client,
    )
    rows = _rows(cat)
    assert rows.tmass_matched.all() and rows.unwise_matched.all()
    assert sorted(rows.tmass_designation) == sorted(tmass.designation)
    assert len(cat.properties["inputs"]["tmass"]) == 2
