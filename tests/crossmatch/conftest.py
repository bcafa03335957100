"""Fixtures of the cross-match tests: hand-made survey tables and a small mock's own tables."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bigcat.catalog.crossmatch import mag_to_flux, propagate, year_to_jd
from bigcat.catalog.healpix import healpix29, pixel_at_order
from bigcat.synthetic import MockParams, simulate_chunk
from bigcat.synthetic.surveys import (
    GAIA_TABLE_COLUMNS,
    TMASS_TABLE_COLUMNS,
    UNWISE_TABLE_COLUMNS,
    simulate_surveys,
)

#: a 2MASS epoch (Julian date of 1999.0) and the unWISE mean epoch
TMASS_JD = float(year_to_jd(1999.0))
UNWISE_EPOCH = 2013.0


def gaia_table(ra, dec, pmra=0.0, pmdec=0.0, first_id: int = 1000) -> pd.DataFrame:
    """Gaia rows at these 2016.0 positions, every column present, plausible values."""
    ra, dec = np.atleast_1d(np.asarray(ra, float)), np.atleast_1d(np.asarray(dec, float))
    n = ra.size
    df = pd.DataFrame({c: np.full(n, 1.0) for c in GAIA_TABLE_COLUMNS})
    df["source_id"] = np.arange(first_id, first_id + n, dtype=np.int64) * 7
    df["ra"], df["dec"] = ra, dec
    df["pmra"] = np.broadcast_to(np.asarray(pmra, float), (n,)).copy()
    df["pmdec"] = np.broadcast_to(np.asarray(pmdec, float), (n,)).copy()
    df["parallax"], df["parallax_error"] = 0.5, 0.05
    df["phot_g_mean_mag"], df["phot_bp_mean_mag"], df["phot_rp_mean_mag"] = 15.0, 15.8, 14.2
    df["radial_velocity"] = np.nan
    df["pseudocolour"] = np.nan
    df["astrometric_params_solved"] = np.int64(31)
    df["ref_epoch"] = 2016.0
    return df


def moved(df: pd.DataFrame, epoch: float) -> tuple[np.ndarray, np.ndarray]:
    """The Gaia stars' positions at another epoch (their own proper motions)."""
    return propagate(df["ra"], df["dec"], df["pmra"], df["pmdec"], epoch - 2016.0)


def tmass_table(ra, dec, jdate=TMASS_JD, names=None, k_m=12.0) -> pd.DataFrame:
    ra, dec = np.atleast_1d(np.asarray(ra, float)), np.atleast_1d(np.asarray(dec, float))
    n = ra.size
    df = pd.DataFrame(
        {
            "designation": names if names is not None else [f"T{i:07d}" for i in range(n)],
            "ra": ra,
            "dec": dec,
            "j_m": 13.0,
            "j_msigcom": 0.02,
            "h_m": 12.4,
            "h_msigcom": 0.02,
            "k_m": np.broadcast_to(np.asarray(k_m, float), (n,)).copy(),
            "k_msigcom": 0.03,
            "ph_qual": "AAA",
            "jdate": np.broadcast_to(np.asarray(jdate, float), (n,)).copy(),
        }
    )
    return df[TMASS_TABLE_COLUMNS]


def unwise_table(ra, dec, names=None, w1=11.5, w2=11.6) -> pd.DataFrame:
    ra, dec = np.atleast_1d(np.asarray(ra, float)), np.atleast_1d(np.asarray(dec, float))
    n = ra.size
    f1, f2 = mag_to_flux(np.broadcast_to(w1, (n,))), mag_to_flux(np.broadcast_to(w2, (n,)))
    df = pd.DataFrame(
        {
            "unwise_objid": names if names is not None else [f"U{i:07d}" for i in range(n)],
            "ra": ra,
            "dec": dec,
            "flux_w1": f1,
            "dflux_w1": 0.01 * f1,
            "flux_w2": f2,
            "dflux_w2": 0.01 * f2,
            "flags_unwise_w1": np.zeros(n, np.int64),
            "flags_unwise_w2": np.zeros(n, np.int64),
        }
    )
    return df[UNWISE_TABLE_COLUMNS]


def write(path: Path, df: pd.DataFrame) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    df.to_parquet(path, index=False)
    return path


def border_point(
    order: int, ra0: float = 40.0, dec0: float = 10.0
) -> tuple[float, float, int, int]:
    """A point on the boundary between two order-``order`` pixels along a line of constant dec:
    (ra, dec, pixel west of it, pixel east of it), found by bisection in ra."""
    lo, hi = ra0, ra0
    p0 = int(pixel_at_order(healpix29(np.array([lo]), np.array([dec0])), order)[0])
    while int(pixel_at_order(healpix29(np.array([hi]), np.array([dec0])), order)[0]) == p0:
        hi += 0.5
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if int(pixel_at_order(healpix29(np.array([mid]), np.array([dec0])), order)[0]) == p0:
            lo = mid
        else:
            hi = mid
    p1 = int(pixel_at_order(healpix29(np.array([hi]), np.array([dec0])), order)[0])
    return 0.5 * (lo + hi), dec0, p0, p1


@pytest.fixture(scope="session")
def small_mock(tmp_path_factory) -> Path:
    """A 3,000-star synthetic survey's own tables and true pairing (one chunk, seed 3)."""
    params = MockParams(seed=3)
    chunk = simulate_chunk(params, 0, 3_000)
    tables = simulate_surveys(chunk.photometry, chunk.truth, params, 0)
    out = tmp_path_factory.mktemp("small-mock")
    for name in ("gaia_source", "tmass_psc", "unwise", "crossmatch_truth"):
        write(out / f"{name}.parquet" / "part-00000.parquet", getattr(tables, name))
    write(out / "photometry.parquet" / "part-00000.parquet", chunk.photometry)
    return out
