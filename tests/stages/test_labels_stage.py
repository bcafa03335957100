"""`match_labels` end to end on the session cluster: mock labels on a small HATS catalogue."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from astropy.table import Table

from bigcat.catalog.healpix import healpix29, pixel_at_order
from bigcat.catalog.store import Catalog, finalize_catalog, partition_path, write_frame_atomic
from bigcat.errors import CatalogError, ConfigError, InputError
from bigcat.photometry import run_photometry
from bigcat.schema import APOGEE_COLUMNS, LAMOST_COLUMNS
from bigcat.stages.labels import BASE_COLUMNS, TG_LABEL_COLUMNS, match_labels
from bigcat.synthetic import MockParams, simulate_chunk

ROWS = 4000
PARAMS = MockParams(
    seed=5, bad_label_fraction=0.05, label_fraction_apogee=0.5, label_fraction_lamost=0.5
)
AS = 1.0 / 3600.0


def write_catalog(root, df: pd.DataFrame, pixels: list[tuple[int, int]]) -> Catalog:
    """``df`` as a HATS catalogue with these (order, pixel) partitions (which must hold it)."""
    df = df.copy()
    h = healpix29(df["ra"].to_numpy(), df["dec"].to_numpy())
    df["_healpix_29"] = h
    rows = {}
    for order, pixel in pixels:
        part = df[pixel_at_order(h, order) == pixel].sort_values("_healpix_29")
        write_frame_atomic(part.reset_index(drop=True), partition_path(root, order, pixel))
        rows[(order, pixel)] = len(part)
    assert sum(rows.values()) == len(df)
    return finalize_catalog(root, pixels, "labels_test", len(df), {"kind": "processed"}, rows)


def mixed_order_pixels(ra: np.ndarray, dec: np.ndarray, order: int, split_above: int) -> list:
    """Partitions at ``order``, split into their children where they hold many rows."""
    h = healpix29(ra, dec)
    top = pixel_at_order(h, order)
    pixels = []
    for parent, n in zip(*np.unique(top, return_counts=True), strict=True):
        if n <= split_above:
            pixels.append((order, int(parent)))
        else:
            children = np.unique(pixel_at_order(h[top == parent], order + 1))
            pixels.extend((order + 1, int(c)) for c in children)
    return pixels


@pytest.fixture(scope="module")
def survey(tmp_path_factory):
    """A processed mock catalogue (mixed-order partitions), its label tables and its truth."""
    out = tmp_path_factory.mktemp("labels")
    chunk = simulate_chunk(PARAMS, 0, ROWS)
    cat = run_photometry(chunk.photometry)
    cat["true_is_giant"] = chunk.truth["true_is_giant"].to_numpy()  # must never be read
    pixels = mixed_order_pixels(cat["ra"].to_numpy(), cat["dec"].to_numpy(), 0, 400)
    assert {o for o, _ in pixels} == {0, 1}
    catalog = write_catalog(out / "catalog", cat, pixels)
    # as `bigcat mock` writes them: Parquet datasets of parts
    for name, table in (("apogee", chunk.apogee), ("lamost", chunk.lamost)):
        (out / f"{name}.parquet").mkdir()
        half = len(table) // 2
        table.iloc[:half].to_parquet(out / f"{name}.parquet" / "part-00000.parquet")
        table.iloc[half:].to_parquet(out / f"{name}.parquet" / "part-00001.parquet")
    paths = [out / "apogee.parquet", out / "lamost.parquet"]
    return catalog, paths, cat, chunk


@pytest.fixture(scope="module")
def matched(survey, client):
    catalog, paths, _, _ = survey
    return match_labels(catalog, paths, client, target_task_rows=10**9)


def test_report_counts_add_up(survey, matched):
    _, _, _, chunk = survey
    tg, report = matched
    assert report["tasks"] == 1 and report["partitions_searched"] == len(survey[0].pixels)
    n_read = {"apogee": len(chunk.apogee), "lamost": len(chunk.lamost)}
    for name, c in report["surveys"].items():
        assert c["read"] == n_read[name]
        dropped = c["dropped_nan"] + c["dropped_teff_ratio"] + c["dropped_logg_ratio"]
        assert c["read"] == dropped + c["dropped_duplicate"] + c["kept"]
        assert c["kept"] == c["matched_by_id"] + c["matched_by_position"] + c["unmatched"]
        matched_n = c["matched_by_id"] + c["matched_by_position"]
        assert matched_n == (
            c["not_giant"] + c["duplicate_match"] + c["overridden_by_apogee"] + c["final"]
        )
        assert c["final"] == int((tg["survey"] == name).sum()) > 20
        assert c["dropped_teff_ratio"] > 0 and c["dropped_logg_ratio"] > 0
        assert c["matched_by_position"] > 0
    total = report["total"]
    for key, value in total.items():
        assert value == sum(c[key] for c in report["surveys"].values())
    assert total["final"] == len(tg)
    assert report["surveys"]["apogee"]["overridden_by_apogee"] == 0
    assert report["surveys"]["lamost"]["overridden_by_apogee"] > 0


def test_sample_is_one_quality_giant_per_label(matched):
    tg, _ = matched
    assert list(tg.columns) == [*BASE_COLUMNS, *TG_LABEL_COLUMNS]
    assert not any(c.startswith("true_") for c in tg.columns)
    assert tg["source_id"].is_unique and tg["source_id"].is_monotonic_increasing
    assert not tg.duplicated(["survey", "label_id"]).any()
    assert (tg["is_giant"] & tg["quality_ok"]).all()
    assert (tg["teff_err"] <= tg["teff"]).all() and (tg["logg_err"] <= tg["logg"].abs()).all()
    assert set(tg["match_kind"]) == {"source_id", "position"}
    assert (tg["match_sep_arcsec"] < 0.3).all()  # the mock jitters label positions < 0.3"


def test_sample_matches_the_mock_truth(survey, matched):
    """Every label goes to its own star; the expected stars are all there (test-only truth)."""
    _, _, cat, chunk = survey
    tg, report = matched
    truth = chunk.truth
    sid = cat["source_id"].to_numpy()
    giant_ok = (cat["is_giant"] & cat["quality_ok"]).to_numpy()
    expected = {}
    for name, flag, table, cols in (
        ("apogee", "true_in_apogee", chunk.apogee, APOGEE_COLUMNS),
        ("lamost", "true_in_lamost", chunk.lamost, LAMOST_COLUMNS),
    ):
        star = np.flatnonzero(truth[flag].to_numpy())  # the mock's label rows, in order
        assert len(star) == len(table)
        label_id, teff, teff_err, logg, logg_err = (
            table[cols[i]].to_numpy() for i in (0, 6, 7, 8, 9)
        )
        good = ~((teff_err > teff) | (logg_err > np.abs(logg)))
        only_here = ~truth["true_in_apogee" if name == "lamost" else "true_in_lamost"].to_numpy()
        # where a star has only this survey's label, the cuts drop exactly the mock's bad labels
        np.testing.assert_array_equal(
            good[only_here[star]], ~truth["true_bad_label"].to_numpy()[star][only_here[star]]
        )
        keep = good & giant_ok[star]
        expected[name] = dict(zip(sid[star][keep], label_id[keep].astype(str), strict=True))
    both = set(expected["apogee"]) & set(expected["lamost"])
    assert len(both) == report["surveys"]["lamost"]["overridden_by_apogee"] > 0
    for s in both:
        del expected["lamost"][s]  # APOGEE wins
    for name in ("apogee", "lamost"):
        rows = tg[tg["survey"] == name]
        assert dict(zip(rows["source_id"], rows["label_id"], strict=True)) == expected[name]
    # the label values are the survey's, not anything from the catalogue
    ap = chunk.apogee.set_index("APOGEE_ID")
    rows = tg[tg["survey"] == "apogee"]
    np.testing.assert_array_equal(rows["feh"], ap.loc[rows["label_id"], "FE_H"].to_numpy())
    # labels without a Gaia id (APOGEE 0, LAMOST -1) were matched by position
    no_id = set(chunk.apogee.loc[chunk.apogee["GAIAEDR3_SOURCE_ID"] == 0, "APOGEE_ID"])
    by_pos = tg[tg["match_kind"] == "position"]
    assert set(by_pos.loc[by_pos["survey"] == "apogee", "label_id"]) <= no_id
    assert no_id & set(by_pos["label_id"])


def test_sample_does_not_depend_on_task_grouping(survey, matched, client):
    catalog, paths, _, _ = survey
    tg, report = matched
    for target in (1, 1200):
        other, other_report = match_labels(catalog, paths, client, target_task_rows=target)
        pd.testing.assert_frame_equal(other, tg)
        assert other_report["surveys"] == report["surveys"]
        assert other_report["tasks"] > 1
    assert other_report["tasks"] < len(catalog.pixels)


def test_edge_label_and_far_id_label_in_other_formats(tmp_path, client):
    """A LAMOST CSV label 0.3" across a partition edge; an APOGEE FITS label matched by id
    whose own position lies in no partition of the catalogue."""
    # walk east along dec = 20 deg from the centre of an order-3 pixel to its edge
    order, dec = 3, 20.0
    ra0 = 100.0
    p = int(pixel_at_order(healpix29(np.array([ra0]), np.array([dec])), order)[0])
    lo, hi = ra0, ra0 + 20.0
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        inside = pixel_at_order(healpix29(np.array([mid]), np.array([dec])), order)[0] == p
        lo, hi = (mid, hi) if inside else (lo, mid)
    step = 0.3 * AS / np.cos(np.radians(dec))
    label_ra, star_ra = lo - step, lo + step
    q = int(pixel_at_order(healpix29(np.array([star_ra]), np.array([dec])), order)[0])
    assert q != p
    cat = pd.DataFrame(
        {
            "source_id": np.array([11, 22, 33, 44], dtype=np.int64),
            "ra": [star_ra, ra0, 300.0, star_ra + 3 * step],
            "dec": [dec, dec, -40.0, dec],
            "is_giant": [True, True, True, True],
            "quality_ok": [True, True, True, True],
        }
    )
    far = int(pixel_at_order(healpix29(np.array([300.0]), np.array([-40.0])), order)[0])
    catalog = write_catalog(tmp_path / "cat", cat, [(order, p), (order, q), (order, far)])
    lamost = pd.DataFrame(
        {
            "obsid": [1, 2],
            "ra": [label_ra, ra0 + 2 * AS],
            "dec": [dec, dec],
            "gaia_source_id": [-1, -1],
            "feh": [-0.4, 0.1],
            "feh_err": [0.1, 0.1],
            "teff": [4600.0, 4700.0],
            "teff_err": [100.0, 100.0],
            "logg": [2.4, 2.6],
            "logg_err": [0.2, 0.2],
        }
    )
    lamost.to_csv(tmp_path / "lamost_dr6.csv", index=False)
    apogee = pd.DataFrame(
        {
            "APOGEE_ID": ["2M_far"],
            "RA": [np.nan],  # no position: found by id all the same
            "DEC": [np.nan],
            "GAIAEDR3_SOURCE_ID": np.array([33], dtype=np.int64),
            "FE_H": [-1.2],
            "FE_H_ERR": [0.02],
            "TEFF": [4400.0],
            "TEFF_ERR": [60.0],
            "LOGG": [1.5],
            "LOGG_ERR": [0.05],
        }
    )
    Table.from_pandas(apogee).write(tmp_path / "allStar.fits")
    labels = {"lamost": tmp_path / "lamost_dr6.csv", "apogee": [tmp_path / "allStar.fits"]}
    for target in (1, 10**9):
        tg, report = match_labels(catalog, labels, client, columns=["ra"], target_task_rows=target)
        assert tg["source_id"].tolist() == [11, 33]
        assert tg["label_id"].tolist() == ["1", "2M_far"]
        assert tg["match_kind"].tolist() == ["position", "source_id"]
        assert tg["match_sep_arcsec"].iloc[0] == pytest.approx(0.6, abs=1e-3)
        assert report["surveys"]["lamost"]["unmatched"] == 1  # 2" from star 22
        assert report["tasks"] == (3 if target == 1 else 1)


def test_stage_errors(survey, client, tmp_path):
    catalog, paths, _, _ = survey
    with pytest.raises(ValueError, match="truth"):
        match_labels(catalog, paths, client, columns=["true_is_giant"])
    with pytest.raises(CatalogError, match="no column 'parralax'.*'parallax'"):
        match_labels(catalog, paths, client, columns=["parralax"])
    with pytest.raises(ValueError, match="label column"):
        match_labels(catalog, paths, client, columns=["feh_err"])
    with pytest.raises(ConfigError, match="must be positive"):
        match_labels(catalog, paths, client, radius_arcsec=0.0)
    with pytest.raises(InputError, match="No label tables"):
        match_labels(catalog, [], client)
    with pytest.raises(InputError, match="no such file"):
        match_labels(catalog, [tmp_path / "apogee.fits"], client)
