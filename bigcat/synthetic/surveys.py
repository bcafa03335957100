"""The synthetic survey's stars as the three surveys' own tables: Gaia DR3 ``gaia_source``,
2MASS PSC and unWISE, and the true pairing (what `bigcat crossmatch` must recover).

Pure kernel (pandas/numpy, no I/O): ``simulate_surveys(phot, truth, params, chunk)`` turns one
chunk's photometric rows into the three tables. Its random stream is its own
(``SeedSequence([seed, chunk, SURVEY_STREAM])``), so the photometric catalogue, the truth and the
label tables of the chunk are exactly those of ``simulate_chunk``.

* Gaia: the photometric catalogue's Gaia columns (positions at 2016.0, ``ref_epoch``).
* 2MASS: one source per star except ``TMASS_MISSING`` (+ more in crowded fields), at the star's
  true position at its own observation epoch (``jdate`` uniform over the survey,
  1997-06-07 to 2001-02-15) plus ``TMASS_SIGMA_MAS`` of noise per coordinate; J, H, K are the
  star's ``j_m``, ``h_m``, ``ks_m`` with their errors.
* unWISE: likewise at the mean epoch 2013.0 (each source's own epoch scattered by
  ``UNWISE_EPOCH_SCATTER_YR``), ``UNWISE_SIGMA_MAS`` of noise, larger in crowded fields
  (x (1 + ``UNWISE_CROWDING_FACTOR`` x crowding)); fluxes are the star's W1/W2 magnitudes in
  Vega nanomaggies (flux = 10^((22.5 - mag)/2.5)), the flags its ``w1_flags``/``w2_flags``.
* Both: unrelated neighbours (extra sources 1-3 arcsec from a star, fainter, with no Gaia
  counterpart) for ``NEIGHBOUR_FRACTION`` of the stars, and sources with no Gaia star near them
  (5-60 arcsec from a random star) for ``ORPHAN_FRACTION``.

Identifiers are unique by construction: a 2MASS designation is the position name
(``hhmmssss+ddmmsss``) followed by ``_`` and a serial, an unWISE objid a tile-like name, ``o``
and a serial (a dense synthetic sky could give two sources the same position name).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from bigcat.catalog.crossmatch import mag_to_flux, propagate, year_to_jd
from bigcat.schema import (
    GAIA_OPTIONAL_COLUMNS,
    GAIA_REQUIRED_COLUMNS,
    TMASS_OPTIONAL_COLUMNS,
    TMASS_REQUIRED_COLUMNS,
    UNWISE_REQUIRED_COLUMNS,
)
from bigcat.synthetic import observe
from bigcat.synthetic.params import MockParams

#: Third element of the chunk's SeedSequence for this kernel's stream.
SURVEY_STREAM = 1_907_213
GAIA_EPOCH = 2016.0
#: 2MASS survey dates (first and last night, Julian dates).
TMASS_JD_RANGE = (float(year_to_jd(1997.43)), float(year_to_jd(2001.12)))
TMASS_SIGMA_MAS = 80.0
TMASS_MISSING = 0.02
UNWISE_EPOCH = 2013.0
UNWISE_EPOCH_SCATTER_YR = 0.3
UNWISE_SIGMA_MAS = 150.0
UNWISE_CROWDING_FACTOR = 2.0
UNWISE_MISSING = 0.025
#: extra missing counterparts per unit crowding (blends in dense fields)
CROWDED_MISSING = 0.03
NEIGHBOUR_FRACTION = 0.03
NEIGHBOUR_RANGE_ARCSEC = (1.0, 3.0)
NEIGHBOUR_FAINTER_MAG = (0.5, 4.0)
ORPHAN_FRACTION = 0.02
ORPHAN_RANGE_ARCSEC = (5.0, 60.0)

GAIA_TABLE_COLUMNS = [*GAIA_REQUIRED_COLUMNS, *GAIA_OPTIONAL_COLUMNS]
TMASS_TABLE_COLUMNS = [
    "designation",
    "ra",
    "dec",
    "j_m",
    "j_msigcom",
    "h_m",
    "h_msigcom",
    "k_m",
    "k_msigcom",
    "ph_qual",
    "jdate",
]
UNWISE_TABLE_COLUMNS = list(UNWISE_REQUIRED_COLUMNS)
TRUTH_COLUMNS = ["source_id", "tmass_designation", "unwise_objid"]
assert set(TMASS_TABLE_COLUMNS) == {*TMASS_REQUIRED_COLUMNS, *TMASS_OPTIONAL_COLUMNS}


@dataclass(frozen=True)
class SurveyTables:
    """One chunk's survey tables (columns as in SCHEMA.md, "The three surveys' own tables")."""

    gaia_source: pd.DataFrame
    tmass_psc: pd.DataFrame
    unwise: pd.DataFrame
    crossmatch_truth: pd.DataFrame


def position_names(ra: np.ndarray, dec: np.ndarray) -> pd.Series:
    """2MASS-style position names ``hhmmssss+ddmmsss`` (RA truncated to 0.01 s, Dec to 0.1")."""
    cs = np.floor(np.mod(np.asarray(ra), 360.0) / 15.0 * 360000.0).astype(np.int64)
    cs = np.minimum(cs, 24 * 360000 - 1)
    ds = np.floor(np.abs(np.asarray(dec)) * 36000.0).astype(np.int64)
    parts = [cs // 360000, (cs // 6000) % 60, cs % 6000, ds // 36000, (ds // 600) % 60, ds % 600]
    widths = (2, 2, 4, 2, 2, 3)
    s = [pd.Series(p).astype(str).str.zfill(w) for p, w in zip(parts, widths, strict=True)]
    sign = pd.Series(np.where(np.asarray(dec) < 0, "-", "+"))
    return s[0] + s[1] + s[2] + sign + s[3] + s[4] + s[5]


def tile_names(ra: np.ndarray, dec: np.ndarray) -> pd.Series:
    """unWISE-like coadd tile names ``RRRR[p|m]DDD`` (the nearest 1.5 deg grid point)."""
    d = np.round(np.asarray(dec) / 1.5) * 1.5
    r = np.round(np.mod(np.asarray(ra), 360.0) / 1.5) * 1.5 % 360.0
    rr = pd.Series(np.round(r * 10).astype(np.int64)).astype(str).str.zfill(4)
    dd = pd.Series(np.round(np.abs(d) * 10).astype(np.int64)).astype(str).str.zfill(3)
    return rr + pd.Series(np.where(d < 0, "m", "p")) + dd


def _serials(chunk: int, n: int) -> pd.Series:
    return pd.Series(np.arange(n) + chunk * 10_000_000).astype(str).str.zfill(11)


def _ph_qual(errors: list[np.ndarray]) -> pd.Series:
    """2MASS ph_qual letters from the magnitude errors (A: S/N > 10, B > 7, C > 5, else D)."""
    out = None
    for err in errors:
        letter = np.select(
            [err < 0.1086, err < 0.1551, err < 0.2171, np.isfinite(err)], ["A", "B", "C", "D"], "X"
        )
        col = pd.Series(letter)
        out = col if out is None else out + col
    return out


def _offsets(
    ra: np.ndarray, dec: np.ndarray, sigma_mas: np.ndarray | float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Positions moved by Gaussian noise of ``sigma_mas`` per coordinate."""
    n = len(ra)
    sigma = np.broadcast_to(np.asarray(sigma_mas, dtype=np.float64), (n,))
    return propagate(ra, dec, rng.normal(0.0, 1.0, n) * sigma, rng.normal(0.0, 1.0, n) * sigma, 1.0)


def _ring(
    ra: np.ndarray, dec: np.ndarray, lo: float, hi: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Positions ``lo``-``hi`` arcsec from the given ones, in a random direction."""
    n = len(ra)
    r = np.sqrt(rng.uniform(lo**2, hi**2, n)) * 1000.0
    theta = rng.uniform(0.0, 2.0 * np.pi, n)
    return propagate(ra, dec, r * np.cos(theta), r * np.sin(theta), 1.0)


def simulate_surveys(
    phot: pd.DataFrame, truth: pd.DataFrame, params: MockParams, chunk: int
) -> SurveyTables:
    """The Gaia, 2MASS and unWISE tables of one chunk's stars, and their true pairing."""
    rng = np.random.default_rng(np.random.SeedSequence([params.seed, chunk, SURVEY_STREAM]))
    n = len(phot)
    sid = phot["source_id"].to_numpy(np.int64)
    ra0, dec0 = phot["ra"].to_numpy(), phot["dec"].to_numpy()
    pmra_true = truth["true_pmra"].to_numpy()
    pmdec_true = truth["true_pmdec"].to_numpy()
    crowd = observe.crowding(truth["true_l"].to_numpy(), truth["true_b"].to_numpy())

    gaia = phot[[c for c in GAIA_TABLE_COLUMNS if c in phot.columns]].copy()
    gaia["ref_epoch"] = np.full(n, GAIA_EPOCH)
    gaia = gaia[GAIA_TABLE_COLUMNS]

    # ---- 2MASS ------------------------------------------------------------------------------
    has_t = rng.uniform(size=n) >= TMASS_MISSING + CROWDED_MISSING * crowd
    jd = rng.uniform(*TMASS_JD_RANGE, n)
    t_epoch = 2000.0 + (jd - 2451545.0) / 365.25
    tra, tdec = propagate(ra0, dec0, pmra_true, pmdec_true, t_epoch - GAIA_EPOCH)
    tra, tdec = _offsets(tra, tdec, TMASS_SIGMA_MAS * (1.0 + 0.5 * crowd), rng)
    t_star = {
        "ra": tra,
        "dec": tdec,
        "j_m": phot["j_m"].to_numpy(),
        "j_msigcom": phot["j_msigcom"].to_numpy(),
        "h_m": phot["h_m"].to_numpy(),
        "h_msigcom": phot["h_msigcom"].to_numpy(),
        "k_m": phot["ks_m"].to_numpy(),
        "k_msigcom": phot["ks_msigcom"].to_numpy(),
        "jdate": jd,
    }
    t_parts = [{k: v[has_t] for k, v in t_star.items()}]
    t_parts += _extras(t_star, ra0, dec0, rng, ("j_m", "h_m", "k_m"), TMASS_JD_RANGE)
    tm = {k: np.concatenate([p[k] for p in t_parts]) for k in t_star}
    n_t = len(tm["ra"])
    designation = (position_names(tm["ra"], tm["dec"]) + "_" + _serials(chunk, n_t)).to_numpy(
        dtype=object
    )
    tmass = pd.DataFrame(
        {
            "designation": designation,
            **{k: tm[k] for k in TMASS_TABLE_COLUMNS[1:] if k in tm},
            "ph_qual": _ph_qual([tm["j_msigcom"], tm["h_msigcom"], tm["k_msigcom"]]).to_numpy(
                dtype=object
            ),
        }
    )[TMASS_TABLE_COLUMNS]

    # ---- unWISE -----------------------------------------------------------------------------
    has_u = rng.uniform(size=n) >= UNWISE_MISSING + CROWDED_MISSING * crowd
    u_epoch = UNWISE_EPOCH + rng.normal(0.0, UNWISE_EPOCH_SCATTER_YR, n)
    ura, udec = propagate(ra0, dec0, pmra_true, pmdec_true, u_epoch - GAIA_EPOCH)
    ura, udec = _offsets(ura, udec, UNWISE_SIGMA_MAS * (1.0 + UNWISE_CROWDING_FACTOR * crowd), rng)
    w = {b: (phot[f"{b}_mag"].to_numpy(), phot[f"{b}_mag_error"].to_numpy()) for b in ("w1", "w2")}
    u_star = {
        "ra": ura,
        "dec": udec,
        "w1": w["w1"][0],
        "w1_err": w["w1"][1],
        "w2": w["w2"][0],
        "w2_err": w["w2"][1],
        "flags_unwise_w1": phot["w1_flags"].to_numpy(np.int64),
        "flags_unwise_w2": phot["w2_flags"].to_numpy(np.int64),
    }
    u_parts = [{k: v[has_u] for k, v in u_star.items()}]
    u_parts += _extras(u_star, ra0, dec0, rng, ("w1", "w2"), None)
    um = {k: np.concatenate([p[k] for p in u_parts]) for k in u_star}
    n_u = len(um["ra"])
    objid = (tile_names(um["ra"], um["dec"]) + "o" + _serials(chunk, n_u)).to_numpy(dtype=object)
    unwise = pd.DataFrame({"unwise_objid": objid, "ra": um["ra"], "dec": um["dec"]})
    for b in ("w1", "w2"):
        flux = mag_to_flux(um[b])
        unwise[f"flux_{b}"] = flux
        unwise[f"dflux_{b}"] = flux * um[f"{b}_err"] * np.log(10.0) / 2.5
    unwise["flags_unwise_w1"] = um["flags_unwise_w1"].astype(np.int64)
    unwise["flags_unwise_w2"] = um["flags_unwise_w2"].astype(np.int64)
    unwise = unwise[UNWISE_TABLE_COLUMNS]

    t_id = np.full(n, None, dtype=object)
    t_id[has_t] = designation[: int(has_t.sum())]
    u_id = np.full(n, None, dtype=object)
    u_id[has_u] = objid[: int(has_u.sum())]
    pairs = pd.DataFrame({"source_id": sid, "tmass_designation": t_id, "unwise_objid": u_id})
    return SurveyTables(gaia, tmass, unwise, pairs)


def _extras(
    star: dict[str, np.ndarray],
    ra0: np.ndarray,
    dec0: np.ndarray,
    rng: np.random.Generator,
    mags: tuple[str, ...],
    jd_range: tuple[float, float] | None,
) -> list[dict[str, np.ndarray]]:
    """Unrelated neighbours (1-3 arcsec from a star) and orphans (5-60 arcsec from a random
    star): fainter copies of a star's photometry at a position no Gaia star explains."""
    n = len(ra0)
    out = []
    for frac, (lo, hi) in (
        (NEIGHBOUR_FRACTION, NEIGHBOUR_RANGE_ARCSEC),
        (ORPHAN_FRACTION, ORPHAN_RANGE_ARCSEC),
    ):
        pick = np.flatnonzero(rng.uniform(size=n) < frac)
        extra = {k: v[pick].copy() for k, v in star.items()}
        # around the star's position at this survey's epoch (the star's own source position)
        extra["ra"], extra["dec"] = _ring(star["ra"][pick], star["dec"][pick], lo, hi, rng)
        fainter = rng.uniform(*NEIGHBOUR_FAINTER_MAG, pick.size)
        for m in mags:
            extra[m] = extra[m] + fainter
        if jd_range is not None:
            extra["jdate"] = rng.uniform(*jd_range, pick.size)
        out.append(extra)
    return out
