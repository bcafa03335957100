"""Spectroscopic label tables of the mock: APOGEE-like and LAMOST-like.

APOGEE: giants with H < ``apogee_h_max`` and |b| <= ``apogee_max_abs_b_deg`` (90: all sky),
small errors, ``GAIAEDR3_SOURCE_ID`` for 95% (else 0, so matching must be positional; RA/DEC
jittered by < 0.3 arcsec).
LAMOST: dec > ``lamost_dec_min_deg`` (-10 deg), |b| >= ``lamost_min_abs_b_deg`` (0: no plane
avoidance), G < ``lamost_g_max``, giants and dwarfs, larger errors,
``gaia_source_id`` for 90% (else -1). A fraction ``bad_label_fraction`` of each table is
corrupted so that sigma_Teff/Teff > 1 or sigma_logg/logg > 1, with a wild [Fe/H].
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bigcat.schema import APOGEE_COLUMNS, LAMOST_COLUMNS
from bigcat.synthetic.params import MockParams

_JITTER_ARCSEC = 0.1
_MAX_JITTER_ARCSEC = 0.3


def apogee_ids(ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    """2MASS-style designations, e.g. ``2M17453071-2901234`` (hhmmssss +/-ddmmsss)."""
    cs = np.round(np.asarray(ra) / 15.0 * 360000.0).astype(np.int64) % (24 * 360000)
    ds = np.round(np.abs(np.asarray(dec)) * 36000.0).astype(np.int64)
    parts = [
        pd.Series(cs // 360000),
        pd.Series((cs // 6000) % 60),
        pd.Series(cs % 6000),
        pd.Series(ds // 36000),
        pd.Series((ds // 600) % 60),
        pd.Series(ds % 600),
    ]
    widths = (2, 2, 4, 2, 2, 3)
    s = [p.astype(str).str.zfill(w) for p, w in zip(parts, widths, strict=True)]
    sign = pd.Series(np.where(np.asarray(dec) < 0, "-", "+"))
    return ("2M" + s[0] + s[1] + s[2] + sign + s[3] + s[4] + s[5]).to_numpy(dtype=object)


def _jitter(ra: np.ndarray, dec: np.ndarray, rng: np.random.Generator):
    n = ra.size
    off = np.clip(rng.normal(0.0, _JITTER_ARCSEC, (2, n)), -0.2, 0.2) / 3600.0
    cosd = np.maximum(np.cos(np.radians(dec)), 1e-6)
    return (ra + off[0] / cosd) % 360.0, np.clip(dec + off[1], -90.0, 90.0)


def _corrupt(
    teff: np.ndarray,
    teff_err: np.ndarray,
    logg: np.ndarray,
    logg_err: np.ndarray,
    feh: np.ndarray,
    rng: np.random.Generator,
    fraction: float,
) -> np.ndarray:
    """Make a ``fraction`` of labels bad in place; return the bad mask."""
    n = teff.size
    bad = rng.uniform(size=n) < fraction
    kind = rng.uniform(size=n) < 0.5
    a, b = bad & kind, bad & ~kind
    teff_err[a] = teff[a] * rng.uniform(1.2, 3.0, a.sum())
    logg[b] = rng.uniform(0.05, 0.5, b.sum())
    logg_err[b] = logg[b] * rng.uniform(1.2, 4.0, b.sum())
    feh[bad] = rng.uniform(-4.0, 1.5, bad.sum())
    return bad


def make_labels(
    phot: pd.DataFrame,
    truth: pd.DataFrame,
    chunk: int,
    rng: np.random.Generator,
    params: MockParams,
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, np.ndarray]]:
    """Draw the APOGEE and LAMOST tables for one chunk's photometric rows.

    Returns
    -------
    apogee, lamost : DataFrame
        Exactly ``schema.APOGEE_COLUMNS`` / ``schema.LAMOST_COLUMNS``.
    flags : dict
        Per photometric row: ``in_apogee``, ``in_lamost``, ``bad_apogee``, ``bad_lamost``.
    """
    n = len(phot)
    giant = truth["true_is_giant"].to_numpy()
    h = phot["h_m"].to_numpy()
    g = phot["phot_g_mean_mag"].to_numpy()
    dec = phot["dec"].to_numpy()
    abs_b = np.abs(truth["true_b"].to_numpy())
    ap_ok = giant & (h < params.apogee_h_max) & (abs_b <= params.apogee_max_abs_b_deg)
    la_ok = (dec > params.lamost_dec_min_deg) & (g < params.lamost_g_max)
    la_ok &= abs_b >= params.lamost_min_abs_b_deg
    in_ap = ap_ok & (rng.uniform(size=n) < params.label_fraction_apogee)
    in_la = la_ok & (rng.uniform(size=n) < params.label_fraction_lamost)
    in_la |= in_ap & la_ok & (rng.uniform(size=n) < params.label_overlap_fraction)

    tables = []
    bad_rows = []
    for sel, kind in ((in_ap, "apogee"), (in_la, "lamost")):
        idx = np.flatnonzero(sel)
        k = idx.size
        t_teff = truth["true_teff"].to_numpy()[idx]
        t_logg = truth["true_logg"].to_numpy()[idx]
        t_feh = truth["true_feh"].to_numpy()[idx]
        if kind == "apogee":
            e_feh = rng.uniform(0.01, 0.03, k) + 0.02 * (t_feh < -1.0)
            e_teff, e_logg = rng.uniform(50.0, 100.0, k), rng.uniform(0.03, 0.08, k)
        else:
            e_feh = rng.uniform(0.05, 0.15, k) + 0.05 * (t_feh < -1.0)
            e_teff, e_logg = rng.uniform(50.0, 200.0, k), rng.uniform(0.1, 0.3, k)
        feh = t_feh + rng.normal(0.0, 1.0, k) * e_feh
        teff = t_teff + rng.normal(0.0, 1.0, k) * e_teff
        logg = t_logg + rng.normal(0.0, 1.0, k) * e_logg
        bad = _corrupt(teff, e_teff, logg, e_logg, feh, rng, params.bad_label_fraction)
        full_bad = np.zeros(n, dtype=bool)
        full_bad[idx] = bad
        bad_rows.append(full_bad)
        ra, de = _jitter(phot["ra"].to_numpy()[idx], dec[idx], rng)
        sid = phot["source_id"].to_numpy()[idx]
        if kind == "apogee":
            gid = np.where(rng.uniform(size=k) < 0.95, sid, 0).astype(np.int64)
            cols = [apogee_ids(ra, de), ra, de, gid, feh, e_feh, teff, e_teff, logg, e_logg]
            tables.append(pd.DataFrame(dict(zip(APOGEE_COLUMNS, cols, strict=True))))
        else:
            gid = np.where(rng.uniform(size=k) < 0.90, sid, -1).astype(np.int64)
            obsid = (np.int64(1) << 40) + np.int64(chunk) * (1 << 22) + idx.astype(np.int64)
            cols = [obsid, ra, de, gid, feh, e_feh, teff, e_teff, logg, e_logg]
            tables.append(pd.DataFrame(dict(zip(LAMOST_COLUMNS, cols, strict=True))))
    flags = {
        "in_apogee": in_ap,
        "in_lamost": in_la,
        "bad_apogee": bad_rows[0],
        "bad_lamost": bad_rows[1],
    }
    return tables[0], tables[1], flags
