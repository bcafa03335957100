"""Generalised gamma (GGD) distance-prior parameters per HEALPix level-5 pixel.

Two sources:

* :func:`load_prior_table` reads the official Bailer-Jones et al. (2021) table
  (``prior_summary.csv``: columns healpix, GGDrlen [pc], GGDalpha, GGDbeta; 12,288 nested
  level-5 pixels of the ICRS sphere, the pixelisation of Gaia's ``source_id``).
* :func:`default_prior_table` derives a whole-sky default from bigcat's own Galaxy model, as
  Bailer-Jones et al. derived theirs from a mock catalogue. Recipe, vectorised over pixels:

  1. Line of sight through each pixel centre (``healpy.pix2ang``, nested, ICRS), distances
     r on ``_N_R`` log-spaced points from 20 pc to 80 kpc, Galactocentric positions with
     the mock's frame (``bigcat.mock.frames``).
  2. Stellar density: the mock's four population shapes (``bigcat.mock.galaxy``: thin and
     thick exponential discs, the cored flattened halo and the truncated exponential bar
     at the mock's bar angle), each normalised to a total stellar mass ``_MASS_MSUN``
     (literature values, Bland-Hawthorn & Gerhard 2016; Deason et al. 2019 for the halo);
     the number of giants is taken proportional to stellar mass.
  3. Extinction: A_V(r) is the cumulative integral of the mock's smooth dust disc
     (``bigcat.mock.observe.dust_density``, no patchiness) along the line of sight;
     A_G and A_Ks follow Wang & Chen (2019).
  4. Selection: the giant luminosity function is a fixed seeded sample of the mock's own
     giants (RGB + red clump, ``bigcat.mock.stars``). A giant at r is seen if
     Ks < ``ks_max`` and ``g_min`` < G < ``g_max`` (the mock survey's limits), with G - Ks
     taken as the sample's median intrinsic colour; the seen fraction is an empirical CDF.
  5. The distance distribution of seen giants is ``r^2 rho(r) f_seen(r)``; a GGD is fitted
     to it per pixel by matching the mean, variance and skewness of ln r (for a GGD,
     alpha (ln r - ln L) is the log of a Gamma((beta + 1) / alpha) variable, whose skewness
     fixes k = (beta + 1)/alpha, then the variance alpha and the mean L). k is limited to
     ``_K_MAX`` (nearly symmetric ln r, where L would otherwise underflow) and beta to
     >= ``_BETA_MIN``.

The default describes giants of a G < 19.5, Ks < 14.3 survey, so its distances are larger
than those of the official table (all Gaia stars, mostly dwarfs); pass the official table
for Bailer-Jones' prior.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from bigcat.errors import InputError

logger = logging.getLogger(__name__)

NSIDE = 32
ORDER = 5
N_PIXELS = 12 * NSIDE * NSIDE
#: Columns of the official table used here, and their meaning.
PRIOR_COLUMNS = {"healpix": "pixel", "GGDrlen": "length_pc", "GGDalpha": "alpha", "GGDbeta": "beta"}

#: Total stellar masses (Msun) of the mock's populations, for relative normalisation.
_MASS_MSUN = {"thin_disc": 3.5e10, "thick_disc": 6.0e9, "halo": 1.4e9, "bulge": 1.5e10}
_N_R = 160
_R_RANGE_KPC = (0.02, 80.0)
_N_LF = 20_000
_BETA_MIN = 0.05
#: Largest k = (beta + 1)/alpha fitted (near-symmetric ln r): keeps L and alpha moderate.
_K_MAX = 50.0


@dataclass(frozen=True)
class PriorTable:
    """GGD prior parameters for every nested level-5 (nside 32) HEALPix pixel.

    Attributes
    ----------
    healpix5 : numpy.ndarray
        Pixel numbers 0 .. 12,287 (int64), in order.
    length_pc : numpy.ndarray
        GGD length scale L (pc) per pixel.
    alpha, beta : numpy.ndarray
        GGD shape parameters per pixel.
    source : str
        Where the values come from (file path or a description of the default).
    """

    healpix5: np.ndarray
    length_pc: np.ndarray
    alpha: np.ndarray
    beta: np.ndarray
    source: str

    def lookup(self, healpix5: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """GGD parameters ``(L [pc], alpha, beta)`` of level-5 pixels; NaN outside 0..12,287."""
        pix = np.asarray(healpix5, dtype=np.int64)
        ok = (pix >= 0) & (pix < N_PIXELS)
        safe = np.where(ok, pix, 0)
        return tuple(  # type: ignore[return-value]
            np.where(ok, arr[safe], np.nan) for arr in (self.length_pc, self.alpha, self.beta)
        )

    @staticmethod
    def pixel_of(h29: np.ndarray) -> np.ndarray:
        """Nested level-5 pixel of HATS ``_healpix_29`` indices (``h29 >> 48``)."""
        return np.asarray(h29, dtype=np.int64) >> (2 * (29 - ORDER))

    def median_pc(self) -> np.ndarray:
        """Median distance (pc) of each pixel's prior."""
        from scipy.special import gammaincinv

        k = (self.beta + 1.0) / self.alpha
        return np.exp(np.log(self.length_pc) + np.log(gammaincinv(k, 0.5)) / self.alpha)


def _fail(path: str | Path, problem: str) -> InputError:
    return InputError(
        f"{path}: {problem}. The distance-prior table must be Bailer-Jones et al. (2021) "
        f"prior_summary.csv (or the same columns: {', '.join(PRIOR_COLUMNS)}) with one row "
        f"per nested level-5 HEALPix pixel 0..{N_PIXELS - 1}."
    )


def load_prior_table(path: str | Path) -> PriorTable:
    """Read a Bailer-Jones et al. (2021) prior table (CSV) and check it.

    Parameters
    ----------
    path : str or pathlib.Path
        CSV with columns healpix, GGDrlen (pc), GGDalpha, GGDbeta (others are ignored).

    Returns
    -------
    PriorTable
        Parameters sorted by pixel.

    Raises
    ------
    InputError
        If the file cannot be read, lacks a column, does not hold each of the 12,288
        pixels exactly once, or has a non-finite or non-positive parameter.
    """
    import pandas as pd

    try:
        df = pd.read_csv(path)
    except (OSError, ValueError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise _fail(path, f"cannot read the file ({type(exc).__name__}: {exc})") from exc
    missing = [c for c in PRIOR_COLUMNS if c not in df.columns]
    if missing:
        raise _fail(
            path,
            f"missing column(s) {', '.join(missing)} (the file has: "
            f"{', '.join(map(str, df.columns[:30]))})",
        )
    pix = pd.to_numeric(df["healpix"], errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(pix) | (pix != np.round(pix)) | (pix < 0) | (pix >= N_PIXELS)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise _fail(
            path,
            f"{int(bad.sum())} healpix value(s) are not pixels 0..{N_PIXELS - 1} "
            f"(e.g. {df['healpix'].iloc[row]} in data row {row + 1})",
        )
    pix_i = pix.astype(np.int64)
    counts = np.bincount(pix_i, minlength=N_PIXELS)
    if (counts != 1).any() or len(df) != N_PIXELS:
        dup = np.flatnonzero(counts > 1)
        absent = np.flatnonzero(counts == 0)
        parts = [f"{len(df)} rows, expected {N_PIXELS}"]
        if dup.size:
            parts.append(f"duplicated pixel(s) {', '.join(map(str, dup[:10]))}")
        if absent.size:
            parts.append(f"missing pixel(s) {', '.join(map(str, absent[:10]))}")
        more = " (first 10 listed)" if max(dup.size, absent.size) > 10 else ""
        raise _fail(path, "; ".join(parts) + more)
    order = np.argsort(pix_i)
    values = {}
    for col in ("GGDrlen", "GGDalpha", "GGDbeta"):
        arr = pd.to_numeric(df[col], errors="coerce").to_numpy(dtype=np.float64)[order]
        wrong = ~(np.isfinite(arr) & (arr > 0))
        if wrong.any():
            i = int(np.flatnonzero(wrong)[0])
            raise _fail(
                path,
                f"column {col} has {int(wrong.sum())} non-finite or non-positive value(s), "
                f"e.g. {df[col].iloc[order[i]]} for pixel {i}",
            )
        values[col] = arr
    logger.info("loaded GGD prior table %s (%d pixels)", path, N_PIXELS)
    return PriorTable(
        healpix5=np.arange(N_PIXELS, dtype=np.int64),
        length_pc=values["GGDrlen"],
        alpha=values["GGDalpha"],
        beta=values["GGDbeta"],
        source=str(path),
    )


def _population_density(pos: np.ndarray, params: object) -> np.ndarray:
    """Stellar mass density (Msun/kpc^3) of the mock's populations at positions (3, ...)."""
    from scipy.integrate import quad

    from bigcat.mock import galaxy

    x, y, z = pos
    r_cyl = np.hypot(x, y)
    rho = np.zeros(r_cyl.shape)
    for name, (h, hz) in galaxy.DISC.items():
        norm = _MASS_MSUN[name] / (4.0 * np.pi * h * h * hz)
        rho += norm * np.exp(-r_cyl / h - np.abs(z) / hz) * (r_cyl < galaxy.DISC_R_MAX)
    a, q, slope = galaxy.HALO_CORE_KPC, galaxy.HALO_Q, galaxy.HALO_SLOPE
    shell = quad(lambda s: 4 * np.pi * q * s * s * (s * s + a * a) ** (-slope / 2), 0, 60.0)[0]
    rho += _MASS_MSUN["halo"] / shell * galaxy.halo_density(pos)
    major, minor = galaxy.bar_rotation(params)  # type: ignore[arg-type]
    xp = x * major[0] + y * major[1]
    yp = x * minor[0] + y * minor[1]
    x0, y0, z0 = galaxy.BAR_SCALES_KPC
    half = params.bar_half_length_kpc  # type: ignore[attr-defined]
    norm = _MASS_MSUN["bulge"] / (8.0 * x0 * y0 * z0 * (1.0 - np.exp(-half / x0)))
    bar = np.exp(-np.abs(xp) / x0 - np.abs(yp) / y0 - np.abs(z) / z0) * (np.abs(xp) < half)
    return rho + norm * bar


def _giant_lf() -> tuple[np.ndarray, float]:
    """Sorted M_Ks (mag) of a seeded sample of the mock's giants and their median G - Ks."""
    from bigcat.mock.stars import absolute_magnitudes, sample_giants

    rng = np.random.default_rng(20210)
    feh = np.clip(rng.normal(-0.3, 0.4, _N_LF), -2.5, 0.5)
    stars = sample_giants("thin_disc", feh, rng, red_clump_fraction=0.35)
    mags = absolute_magnitudes(stars["teff"], stars["logg"], feh, stars["mass"])
    return np.sort(mags["ks"]), float(np.median(mags["g"] - mags["ks"]))


def _fit_ggd_log_moments(u: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """GGD (L, alpha, beta) matching mean, variance and skewness of u = ln r under weights
    ``w`` (rows = pixels)."""
    from scipy.special import polygamma, psi

    w = w / w.sum(axis=1, keepdims=True)
    mean = (w * u).sum(axis=1)
    d = u - mean[:, None]
    var = (w * d * d).sum(axis=1)
    skew = (w * d**3).sum(axis=1) / var**1.5
    # skewness of ln Gamma(k) is psi2(k) / psi1(k)^1.5, increasing from -2 (k -> 0) to 0
    lo, hi = np.full_like(mean, np.log(1e-3)), np.full_like(mean, np.log(_K_MAX))
    skew_hi = polygamma(2, _K_MAX) / polygamma(1, _K_MAX) ** 1.5
    target = np.clip(skew, -1.95, skew_hi)
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        k = np.exp(mid)
        s = polygamma(2, k) / polygamma(1, k) ** 1.5
        lo, hi = np.where(s < target, mid, lo), np.where(s < target, hi, mid)
    k = np.exp(0.5 * (lo + hi))
    alpha = np.sqrt(polygamma(1, k) / var)
    # keep beta = alpha k - 1 >= _BETA_MIN (a proper, positive-shape GGD)
    k = np.maximum(k, (1.0 + _BETA_MIN) / alpha)
    alpha = np.sqrt(polygamma(1, k) / var)
    k = np.maximum(k, (1.0 + _BETA_MIN) / alpha)
    length = np.exp(mean - psi(k) / alpha)
    return length, alpha, alpha * k - 1.0


@lru_cache(maxsize=1)
def default_prior_table() -> PriorTable:
    """GGD prior per level-5 pixel fitted to giants seen in bigcat's Galaxy model.

    See the module docstring for the recipe. Cached in-process.

    Returns
    -------
    PriorTable
        All 12,288 pixels, finite positive parameters, ``source`` describing the recipe.
    """
    import healpy as hp

    from bigcat.mock.frames import frame_constants
    from bigcat.mock.observe import EXTINCTION_RATIOS, dust_density
    from bigcat.mock.params import MockParams

    params = MockParams()
    ra, dec = hp.pix2ang(NSIDE, np.arange(N_PIXELS), nest=True, lonlat=True)
    ra, dec = np.radians(ra), np.radians(dec)
    n_icrs = np.stack([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)])
    matrix, origin, _, _ = frame_constants()
    n_gc = matrix @ n_icrs  # (3, pixels)
    r = np.geomspace(*_R_RANGE_KPC, _N_R)  # kpc
    pos = origin[:, None, None] + n_gc[:, :, None] * r[None, None, :]  # (3, pix, r)
    rho = _population_density(pos, params)
    dust = dust_density(pos[0], pos[1], pos[2], params)
    seg = 0.5 * (dust[:, 1:] + dust[:, :-1]) * np.diff(r)
    av = np.concatenate([dust[:, :1] * r[0], dust[:, :1] * r[0] + np.cumsum(seg, axis=1)], 1)
    mu = 5.0 * np.log10(r * 100.0)  # distance modulus, r in kpc
    m_ks, g_ks = _giant_lf()
    a_g, a_ks = EXTINCTION_RATIOS["g"] * av, EXTINCTION_RATIOS["ks"] * av
    faint = np.minimum(params.ks_max - a_ks, params.g_max - g_ks - a_g) - mu
    bright = params.g_min - g_ks - a_g - mu
    cdf = np.linspace(0.0, 1.0, m_ks.size)
    seen = np.interp(faint, m_ks, cdf) - np.interp(bright, m_ks, cdf)
    weight = r**3 * rho * np.clip(seen, 0.0, None)  # per unit ln r
    u = np.log(r * 1000.0)[None, :]  # ln(pc)
    length, alpha, beta = _fit_ggd_log_moments(np.broadcast_to(u, weight.shape), weight)
    logger.info("default GGD prior fitted for %d pixels", N_PIXELS)
    return PriorTable(
        healpix5=np.arange(N_PIXELS, dtype=np.int64),
        length_pc=length,
        alpha=alpha,
        beta=beta,
        source="bigcat default: GGD fitted to giants of the mock Galaxy (G<19.5, Ks<14.3)",
    )
