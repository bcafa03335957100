"""Label kernels: reading three formats, the paper's cuts, id and positional matching, precedence."""

from __future__ import annotations

import healpy as hp
import numpy as np
import pandas as pd
import pytest
from astropy.table import MaskedColumn, Table

from bigcat.catalog.healpix import healpix29, pixel_at_order
from bigcat.catalog.labels import (
    LABEL_COLUMNS,
    candidate_partitions,
    clean_labels,
    label_candidates,
    match_positions,
    match_source_ids,
    read_label_table,
    resolve_matches,
    search_order,
    separation_arcsec,
)
from bigcat.errors import ConfigError, InputError
from bigcat.schema import APOGEE_COLUMNS, LAMOST_COLUMNS

BIG_ID = 4_295_806_720_123_456_789  # > 2**53: exact only as an integer
AS = 1.0 / 3600.0  # one arcsec in degrees


def _apogee(n_extra: int = 0) -> pd.DataFrame:
    """Three APOGEE rows: a 19-digit id, the archive's 0 and -1 ids, a -9999 value."""
    df = pd.DataFrame(
        {
            "APOGEE_ID": ["2M00000001+0000001", "2M00000002+0000002", " 2M00000003+0000003 "],
            "RA": [10.0, 20.0, 30.0],
            "DEC": [-5.0, 0.0, 5.0],
            "GAIAEDR3_SOURCE_ID": np.array([BIG_ID, 0, -1], dtype=np.int64),
            "FE_H": [-0.25, 0.1, -1.5],
            "FE_H_ERR": [0.02, 0.03, 0.04],
            "TEFF": [4500.0, -9999.0, 4800.0],
            "TEFF_ERR": [80.0, 90.0, 70.0],
            "LOGG": [2.4, 2.5, 1.9],
            "LOGG_ERR": [0.05, 0.06, 0.07],
        }
    )
    return df[APOGEE_COLUMNS]


def _lamost() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "obsid": np.array([1 << 40, (1 << 40) + 1], dtype=np.int64),
            "ra": [100.0, 200.0],
            "dec": [30.0, 40.0],
            "gaia_source_id": np.array([BIG_ID + 2, -1], dtype=np.int64),
            "feh": [-0.5, 0.2],
            "feh_err": [0.1, 0.12],
            "teff": [5000.0, 4700.0],
            "teff_err": [150.0, 120.0],
            "logg": [3.0, 2.2],
            "logg_err": [0.2, 0.25],
        }
    )[LAMOST_COLUMNS]


def _check_apogee(got: pd.DataFrame) -> None:
    assert list(got.columns) == LABEL_COLUMNS
    assert got.attrs["survey"] == "apogee" and (got["survey"] == "apogee").all()
    assert got["source_id"].dtype == "Int64"
    assert got["source_id"].iloc[0] == BIG_ID  # all 19 digits
    assert got["source_id"].iloc[1:].isna().all()  # 0 and -1 are "no id"
    assert list(got["label_id"]) == [
        "2M00000001+0000001",
        "2M00000002+0000002",
        "2M00000003+0000003",
    ]
    np.testing.assert_allclose(got["ra"], [10.0, 20.0, 30.0])
    np.testing.assert_allclose(got["feh"], [-0.25, 0.1, -1.5])
    assert np.isnan(got["teff"].iloc[1])  # the archive's -9999
    np.testing.assert_allclose(got["logg_err"], [0.05, 0.06, 0.07])


# --------------------------------------------------------------------------------------------
# reading


def test_read_parquet_csv_fits_give_the_same_labels(tmp_path):
    df = _apogee()
    df.to_parquet(tmp_path / "a.parquet")
    df.to_csv(tmp_path / "a.csv", index=False)
    Table.from_pandas(df).write(tmp_path / "allStar.fits")
    for name in ("a.parquet", "a.csv", "allStar.fits"):
        _check_apogee(read_label_table(tmp_path / name))


def test_read_lamost_and_a_directory_of_parts(tmp_path):
    out = tmp_path / "lamost.parquet"
    out.mkdir()
    lam = _lamost()
    lam.iloc[:1].to_parquet(out / "part-00000.parquet")
    lam.iloc[1:].to_parquet(out / "part-00001.parquet")
    got = read_label_table(out)
    assert list(got["survey"]) == ["lamost", "lamost"]
    assert list(got["label_id"]) == [str(1 << 40), str((1 << 40) + 1)]
    assert got["source_id"].iloc[0] == BIG_ID + 2 and pd.isna(got["source_id"].iloc[1])
    np.testing.assert_allclose(got["teff_err"], [150.0, 120.0])


def test_blank_and_null_ids_are_missing_and_big_ids_exact(tmp_path):
    # CSV: a blank id; FITS: a masked integer (TNULL); neither may turn the others into floats
    (tmp_path / "a.csv").write_text(
        "APOGEE_ID,RA,DEC,GAIAEDR3_SOURCE_ID,FE_H,FE_H_ERR,TEFF,TEFF_ERR,LOGG,LOGG_ERR\n"
        f"x1,1,2,{BIG_ID},0.1,0.01,4500,50,2.5,0.1\n"
        "x2,1,2,,0.1,0.01,4500,50,2.5,0.1\n"
    )
    got = read_label_table(tmp_path / "a.csv", survey="APOGEE")
    assert got["source_id"].iloc[0] == BIG_ID and pd.isna(got["source_id"].iloc[1])

    t = Table.from_pandas(_apogee())
    t["GAIAEDR3_SOURCE_ID"] = MaskedColumn(
        np.array([BIG_ID, 5, BIG_ID + 1], dtype=np.int64), mask=[False, True, False]
    )
    t.write(tmp_path / "b.fits")
    got = read_label_table(tmp_path / "b.fits")
    assert got["source_id"].iloc[0] == BIG_ID and got["source_id"].iloc[2] == BIG_ID + 1
    assert pd.isna(got["source_id"].iloc[1])


def test_column_map_and_caseless_names(tmp_path):
    df = _apogee().rename(columns={"GAIAEDR3_SOURCE_ID": "gaia_dr3_id", "FE_H": "fe_h"})
    df.to_parquet(tmp_path / "apogee.parquet")
    # "ra": the photometric catalogue's mapping must not hide the survey's own column
    got = read_label_table(
        tmp_path / "apogee.parquet",
        column_map={"GAIAEDR3_SOURCE_ID": "gaia_dr3_id", "RA": "RA_DEG"},
    )
    _check_apogee(got)


def test_missing_columns_error_names_file_columns_and_fix(tmp_path):
    path = tmp_path / "apogee.parquet"
    _apogee().drop(columns=["FE_H_ERR", "LOGG"]).to_parquet(path)
    with pytest.raises(InputError) as err:
        read_label_table(path)
    msg = str(err.value)
    assert str(path) in msg and "FE_H_ERR" in msg and "LOGG" in msg
    assert "[columns]" in msg and "APOGEE" in msg


def test_unreadable_and_unknown_files(tmp_path):
    bad = tmp_path / "apogee.parquet"
    bad.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(InputError, match="apogee.parquet"):
        read_label_table(bad)
    with pytest.raises(InputError, match="no such file"):
        read_label_table(tmp_path / "missing.fits")
    (tmp_path / "labels.xlsx").write_text("x")
    with pytest.raises(InputError, match="unknown file type"):
        read_label_table(tmp_path / "labels.xlsx")
    other = tmp_path / "other.parquet"
    pd.DataFrame({"a": [1], "b": [2.0]}).to_parquet(other)
    with pytest.raises(InputError, match="not an APOGEE or LAMOST"):
        read_label_table(other)
    _apogee().to_parquet(tmp_path / "a.parquet")
    with pytest.raises(ConfigError, match="unknown label survey 'gaia'"):
        read_label_table(tmp_path / "a.parquet", survey="gaia")


def test_bad_values_name_the_row(tmp_path):
    rows = "x{i},1,2,{sid},0.1,0.01,{teff},50,2.5,0.1\n"
    head = "APOGEE_ID,RA,DEC,GAIAEDR3_SOURCE_ID,FE_H,FE_H_ERR,TEFF,TEFF_ERR,LOGG,LOGG_ERR\n"
    (tmp_path / "t.csv").write_text(
        head + "".join(rows.format(i=i, sid=7, teff="hot" if i == 2 else 4500) for i in range(3))
    )
    with pytest.raises(InputError, match=r"t\.csv: column TEFF, row 2 .*'hot' is not a number"):
        read_label_table(tmp_path / "t.csv")
    (tmp_path / "s.csv").write_text(
        head + "".join(rows.format(i=i, sid="Gaia7" if i == 1 else 7, teff=4500) for i in range(3))
    )
    with pytest.raises(InputError, match=r"GAIAEDR3_SOURCE_ID, row 1 .*'Gaia7'"):
        read_label_table(tmp_path / "s.csv")
    df = _apogee()
    df["GAIAEDR3_SOURCE_ID"] = df["GAIAEDR3_SOURCE_ID"].astype(float)
    df.to_parquet(tmp_path / "f.parquet")
    with pytest.raises(InputError, match="floating-point.*row 0"):
        read_label_table(tmp_path / "f.parquet")


# --------------------------------------------------------------------------------------------
# cleaning


def _labels(rows: list[dict]) -> pd.DataFrame:
    base = {
        "survey": "apogee",
        "label_id": None,
        "ra": 0.0,
        "dec": 0.0,
        "source_id": None,
        "feh": -0.2,
        "feh_err": 0.05,
        "teff": 4500.0,
        "teff_err": 100.0,
        "logg": 2.5,
        "logg_err": 0.1,
    }
    df = pd.DataFrame([{**base, **r} for r in rows])[LABEL_COLUMNS]
    df["source_id"] = df["source_id"].astype("Int64")
    return df


def test_clean_labels_cuts_by_hand():
    df = _labels(
        [
            {"label_id": "r0"},  # kept
            {"label_id": "r1", "teff": 4000.0, "teff_err": 4000.0},  # ratio exactly 1: kept
            {"label_id": "r2", "teff": 4000.0, "teff_err": 4001.0},  # teff ratio > 1
            {"label_id": "r3", "logg": 0.2, "logg_err": 0.25},  # logg ratio 1.25
            {"label_id": "r4", "logg": 0.2, "logg_err": 0.2},  # ratio 1: kept
            {"label_id": "r5", "feh": np.nan},  # no [Fe/H]
            {"label_id": "r6", "teff_err": 5000.0, "logg_err": 9.0},  # both: counted as Teff
            {"label_id": "r7", "teff": np.nan},  # no Teff
            {"label_id": "r8", "source_id": 111, "feh_err": 0.05},  # same star as r9, worse
            {"label_id": "r9", "source_id": 111, "feh_err": 0.03},
            {"label_id": "A", "feh_err": 0.02},  # same APOGEE_ID, no source id: first kept
            {"label_id": "A", "feh_err": 0.02},
            {},  # neither id: never a duplicate
            {},
            {"label_id": "r14", "feh_err": np.nan, "feh": 3.0},  # no cut on the [Fe/H] error
            {"label_id": "r15", "survey": "lamost", "source_id": 111},  # other survey: kept
        ]
    )
    clean, counts = clean_labels(df)
    assert counts == {
        "read": 16,
        "dropped_nan": 2,
        "dropped_teff_ratio": 2,
        "dropped_logg_ratio": 1,
        "dropped_duplicate": 2,
        "kept": 9,
    }
    assert list(clean["label_id"].fillna("-")) == [
        "r0",
        "r1",
        "r4",
        "r9",
        "A",
        "-",
        "-",
        "r14",
        "r15",
    ]
    assert clean.index.equals(pd.RangeIndex(9))
    assert clean["feh_err"].iloc[4] == 0.02
    empty, counts = clean_labels(df.iloc[:0])
    assert len(empty) == 0 and counts["read"] == counts["kept"] == 0


# --------------------------------------------------------------------------------------------
# matching


def _cat(rows: list[tuple]) -> pd.DataFrame:
    """Catalogue rows (source_id, ra, dec[, is_giant, quality_ok])."""
    full = [r if len(r) == 5 else (*r, True, True) for r in rows]
    df = pd.DataFrame(full, columns=["source_id", "ra", "dec", "is_giant", "quality_ok"])
    return df.astype({"source_id": np.int64, "is_giant": bool, "quality_ok": bool})


def test_match_source_ids_ignores_missing_ids():
    cat = _cat([(10, 1.0, 0.0), (20, 2.0, 0.0), (30, 3.0, 0.0)])
    labels = pd.DataFrame(
        {
            "source_id": pd.array([20, None, 99, 10], dtype="Int64"),
            "ra": [2.0 + 0.5 * AS, 2.0, 3.0, np.nan],
            "dec": [0.0, 0.0, 0.0, 0.0],
        }
    )
    got = match_source_ids(cat, labels)
    assert got["label_pos"].tolist() == [0, 3] and got["cat_pos"].tolist() == [1, 0]
    np.testing.assert_allclose(got["sep_arcsec"].iloc[0], 0.5, atol=1e-6)
    assert np.isnan(got["sep_arcsec"].iloc[1])  # no label position: still an id match


def test_match_positions_nearest_within_radius():
    # on the equator an RA offset of x arcsec is x arcsec on the sky
    cat = _cat([(1, 10.0, 0.0), (2, 10.0 + 0.5 * AS, 0.0), (3, 10.0 + 0.9 * AS, 0.0)])
    cat.loc[3] = [4, np.nan, np.nan, True, True]  # no position: never matched
    labels = pd.DataFrame(
        {
            "ra": [10.0 + 0.6 * AS, 10.0 + 1.95 * AS, 10.0 + 1.899 * AS, 10.0 - 1.001 * AS, 50.0],
            "dec": [0.0, 0.0, 0.0, 0.0, np.nan],
        }
    )
    got = match_positions(cat, labels, 1.0)
    assert got["label_pos"].tolist() == [0, 2]
    assert got["cat_pos"].tolist() == [1, 2]  # the nearer star (0.1"), not the first one
    np.testing.assert_allclose(got["sep_arcsec"], [0.1, 0.999], atol=1e-6)
    assert len(match_positions(cat, labels, 0.05)) == 0
    np.testing.assert_allclose(separation_arcsec(0.0, 89.0, 180.0, 89.0), 2 * 3600.0, rtol=1e-9)


def _boundary_pair(order: int) -> tuple[int, int, np.ndarray, np.ndarray]:
    """Two neighbouring pixels at ``order`` and points 0.3" either side of their edge."""
    nside = 2**order
    p = 300
    q = int(hp.get_all_neighbours(nside, p, nest=True)[2])  # a side (not corner) neighbour
    a, b = np.array(hp.pix2vec(nside, p, nest=True)), np.array(hp.pix2vec(nside, q, nest=True))

    def radec(v):
        v = v / np.linalg.norm(v)
        return np.degrees(np.arctan2(v[1], v[0])) % 360.0, np.degrees(np.arcsin(v[2]))

    def pixel(v):
        ra, dec = radec(v)
        return int(pixel_at_order(healpix29(np.array([ra]), np.array([dec])), order)[0])

    lo, hi = 0.0, 1.0  # bisect the chord between the centres for the edge
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if pixel(a + mid * (b - a)) == p:
            lo = mid
        else:
            hi = mid
    edge = a + lo * (b - a)
    step = (b - a) / np.linalg.norm(b - a) * np.radians(0.3 / 3600.0) * np.linalg.norm(edge)
    inside, outside = edge - step, edge + step
    assert pixel(inside) == p and pixel(outside) == q
    return p, q, np.array(radec(inside)), np.array(radec(outside))


def test_label_across_a_partition_edge_is_found_from_the_neighbour():
    p, q, label_pos, star_pos = _boundary_pair(3)
    pixels = [(3, p), (3, q), (2, 0)]
    rows, parts = candidate_partitions(
        np.array([label_pos[0]]), np.array([label_pos[1]]), 1.0, pixels
    )
    assert rows.tolist() == [0, 0] and sorted(parts.tolist()) == [0, 1]
    star = _cat([(77, *star_pos)])
    assert separation_arcsec(*label_pos, *star_pos) == pytest.approx(0.6, abs=1e-3)
    labels = pd.DataFrame({"label_row": [0], "ra": [label_pos[0]], "dec": [label_pos[1]]})
    no_ids = pd.DataFrame(
        {"label_row": [], "source_id": pd.array([], "Int64"), "ra": [], "dec": []}
    )
    own = label_candidates(star.iloc[:0], labels, no_ids, 1.0)  # the label's own partition
    neighbour = label_candidates(star, labels, no_ids, 1.0)  # the star's partition
    assert len(own) == 0
    assert neighbour["source_id"].tolist() == [77]
    assert neighbour["match_kind"].tolist() == ["position"]
    assert neighbour["match_sep_arcsec"].iloc[0] == pytest.approx(0.6, abs=1e-3)


def _offset(u: np.ndarray, r_rad: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Unit vectors ``r_rad`` away from ``u`` (N, 3) in random directions."""
    t = np.cross(u, rng.normal(size=u.shape))
    t /= np.linalg.norm(t, axis=1, keepdims=True)
    return np.cos(r_rad)[:, None] * u + np.sin(r_rad)[:, None] * t


def _radec(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.degrees(np.arctan2(v[:, 1], v[:, 0])) % 360.0, np.degrees(np.arcsin(v[:, 2]))


@pytest.mark.parametrize(
    ("radius", "fine_order", "x"),
    [
        (1.0, 4, 17),  # partitions coarser than the search order
        (1.0, 4, 4**1 - 1),  # a pixel touching the north pole (fewer neighbours)
        (60.0, 12, 17),  # partitions finer than the search order
    ],
)
def test_candidate_partitions_cover_every_star_within_radius(radius, fine_order, x):
    rng = np.random.default_rng(3)
    deep = search_order(radius)
    # partitions: every child at ``fine_order`` of pixel x (at fine_order - 3) and x's
    # neighbours at that coarser order; labels on and near every partition edge and corner
    coarse = fine_order - 3
    ring = [int(n) for n in hp.get_all_neighbours(2**coarse, x, nest=True) if n >= 0]
    pixels = [(fine_order, (x << 6) + k) for k in range(64)] + [(coarse, n) for n in ring]
    edges = [hp.boundaries(2**o, p, step=8, nest=True).T for o, p in pixels]
    u = np.concatenate(edges)
    u = np.repeat(u, 4, axis=0)
    u = _offset(u, rng.uniform(0, 1.5, len(u)) * np.radians(radius / 3600.0), rng)
    star = _offset(u, np.sqrt(rng.uniform(0, 0.998, len(u))) * np.radians(radius / 3600.0), rng)
    ra, dec = _radec(u)
    s_ra, s_dec = _radec(star)
    assert (separation_arcsec(ra, dec, s_ra, s_dec) <= radius).all()
    rows, parts = candidate_partitions(ra, dec, radius, pixels)
    h, h_label = healpix29(s_ra, s_dec), healpix29(ra, dec)
    star_part = np.full(len(u), -1)
    label_part = np.full(len(u), -1)
    for i, (order, pix) in enumerate(pixels):
        star_part[pixel_at_order(h, order) == pix] = i
        label_part[pixel_at_order(h_label, order) == pix] = i
    held = np.flatnonzero(star_part >= 0)
    assert np.isin(held * 1000 + star_part[held], rows * 1000 + parts).all()
    crossing = (star_part[held] != label_part[held]).sum()
    assert len(held) > 0.5 * len(u) and crossing > 0.1 * len(u)  # many stars across an edge
    # each label reaches no more than its 9 search pixels hold
    assert np.bincount(rows).max() <= 9 * 4 ** max(fine_order - deep, 0)


def test_candidate_partitions_bad_radius():
    with pytest.raises(ValueError, match="must be positive"):
        candidate_partitions(np.zeros(1), np.zeros(1), 0.0, [(0, 0)])
    with pytest.raises(ValueError, match="too wide"):
        candidate_partitions(np.zeros(1), np.zeros(1), 1e6, [(0, 0)])
    rows, _ = candidate_partitions(np.array([np.nan, 0.0]), np.array([0.0, 95.0]), 1.0, [(0, 4)])
    assert len(rows) == 0


def _scene():
    """A catalogue and labels with every matching case; the counts are worked in the test."""
    off = AS  # 1 arcsec
    cat = _cat(
        [
            (100, 10.0, 1.0),
            (200, 20.0, 1.0),
            (300, 30.0, 1.0, False, True),  # not a giant
            (400, 40.0, 1.0, True, False),  # fails quality
            (500, 50.0, 1.0),
            (600, 60.0, 0.0),
            (601, 60.0 + 0.5 * off, 0.0),
            (700, 70.0, 0.0),
        ]
    )
    rows = [
        # survey, label_id, ra, dec, source_id
        ("apogee", "a1", 10.0, 1.0, 100),
        ("apogee", "a2", 20.0, 1.0 + 0.8 * off, None),
        ("apogee", "a3", 30.0, 1.0, 300),
        ("apogee", "a4", 70.0, 0.0, 999),  # id not in the catalogue: no positional fallback
        ("apogee", "a5", 80.0, 0.0, None),  # nothing within 1"
        ("lamost", "l1", 10.0, 1.0, 100),
        ("lamost", "l2", 20.0, 1.0 + 0.3 * off, None),
        ("lamost", "l3", 40.0, 1.0, 400),
        ("lamost", "l4", 50.0, 1.0 + 0.6 * off, 500),
        ("lamost", "l5", 50.0, 1.0 + 0.2 * off, None),
        ("lamost", "l6", 60.0 + 0.1 * off, 0.0, None),  # 0.1" from 600, 0.4" from 601
    ]
    labels = pd.DataFrame(rows, columns=["survey", "label_id", "ra", "dec", "source_id"])
    labels["source_id"] = labels["source_id"].astype("Int64")
    for col, value in {"feh": -0.1, "feh_err": 0.05, "teff": 4500.0, "teff_err": 90.0}.items():
        labels[col] = value
    labels["logg"], labels["logg_err"] = 2.5, 0.1
    labels["label_row"] = np.arange(len(labels))
    return cat, labels


def _candidates(cat: pd.DataFrame, labels: pd.DataFrame) -> pd.DataFrame:
    has_id = labels["source_id"].notna()
    return label_candidates(
        cat,
        labels.loc[~has_id, ["label_row", "ra", "dec"]],
        labels.loc[has_id, ["label_row", "source_id", "ra", "dec"]],
        1.0,
    )


def test_resolve_matches_counts_precedence_and_uniqueness():
    cat, labels = _scene()
    tg, counts = resolve_matches(_candidates(cat, labels), labels)
    assert counts["apogee"] == {
        "matched_by_id": 2,  # a1, a3
        "matched_by_position": 1,  # a2
        "unmatched": 2,  # a4, a5
        "not_giant": 1,  # a3
        "duplicate_match": 0,
        "overridden_by_apogee": 0,
        "final": 2,  # a1, a2
    }
    assert counts["lamost"] == {
        "matched_by_id": 3,  # l1, l3, l4
        "matched_by_position": 3,  # l2, l5, l6
        "unmatched": 0,
        "not_giant": 1,  # l3 (quality)
        "duplicate_match": 1,  # l5 loses star 500 to l4's id match
        "overridden_by_apogee": 2,  # l1 (id, APOGEE by id), l2 (nearer than APOGEE's a2)
        "final": 2,  # l4, l6
    }
    assert tg["source_id"].tolist() == [100, 200, 500, 600]
    assert tg["survey"].tolist() == ["apogee", "apogee", "lamost", "lamost"]
    assert tg["label_id"].tolist() == ["a1", "a2", "l4", "l6"]
    assert tg["match_kind"].tolist() == ["source_id", "position", "source_id", "position"]
    np.testing.assert_allclose(tg["match_sep_arcsec"], [0.0, 0.8, 0.6, 0.1], atol=1e-6)
    assert tg["source_id"].is_unique and tg["label_id"].is_unique
    for col in ("is_giant", "quality_ok", "label_ra", "label_dec", "feh", "logg_err"):
        assert col in tg.columns
    assert "label_row" not in tg.columns


def test_resolution_does_not_depend_on_how_the_catalogue_is_split():
    cat, labels = _scene()
    whole, counts = resolve_matches(_candidates(cat, labels), labels)
    rng = np.random.default_rng(0)
    for _ in range(5):
        part = rng.integers(0, 3, len(cat))
        pieces = [_candidates(cat[part == k].reset_index(drop=True), labels) for k in range(3)]
        # a label may reach several pieces (as across partition edges): give it all of them
        tg, split_counts = resolve_matches(pd.concat(pieces[::-1], ignore_index=True), labels)
        pd.testing.assert_frame_equal(tg, whole)
        assert split_counts == counts


def test_resolve_matches_with_no_candidates():
    cat, labels = _scene()
    tg, counts = resolve_matches(_candidates(cat.iloc[:0], labels), labels)
    assert len(tg) == 0 and counts["apogee"]["unmatched"] == 5
    assert counts["lamost"]["unmatched"] == 6 and counts["lamost"]["final"] == 0
