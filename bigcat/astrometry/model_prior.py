"""A generalised-gamma distance prior per level-5 pixel from an assumed Galaxy model (option
``[stage1] prior = "model"``; the default prior is learnt from the catalogue, see
:mod:`bigcat.astrometry.learnt_prior`).

This is "the Galaxy the method may assume", written down here with its sources, and shared
with nothing else: it does not import, and is not fitted to, the synthetic survey generator
(``bigcat.synthetic``), which draws the Galaxies the method is validated on. Bailer-Jones et al.
(2021) built their priors the same way, from a Galaxy model seen through Gaia's selection.

Model (literature values)
-------------------------
* Stellar density: thin disc (scale length 2.6 kpc, height 0.3 kpc) and thick disc (2.0 kpc,
  0.9 kpc), Bland-Hawthorn & Gerhard (2016); a cored power-law halo (core 1 kpc, slope 3.5,
  flattening 0.7; Deason et al. 2011); a truncated exponential bar (scale lengths 1.3, 0.5,
  0.45 kpc, half-length 4.5 kpc, 27 deg from the Sun-GC line; Wegg et al. 2015). Total
  stellar masses 3.5e10, 6e9, 1.4e9 and 1.5e10 Msun; the number of giants is taken
  proportional to stellar mass.
* Dust: A_V density 0.65 mag/kpc at the Sun, exponential with scale length 3 kpc and height
  0.1 kpc (Drimmel & Spergel 2001-like smooth disc); Wang & Chen (2019) A_G/A_V and A_Ks/A_V.
* Giants' luminosity function in Ks: red clump (35%) N(-1.6, 0.15) mag (Hawkins et al. 2017),
  RGB with dN/dM_Ks ~ 10^(0.3 M_Ks) from the tip at -6.5 to -0.5 mag; G - Ks = 2.9 mag.
* Selection: G between 8 and 19.5, Ks < 14.3 (a Gaia x 2MASS x unWISE giant sample).

For each pixel the distance distribution of seen giants, ``r^2 rho(r) f_seen(r)``, is fitted
by a GGD matching the mean, variance and skewness of ln r (see :func:`fit_ggd_log_moments`).
"""

from __future__ import annotations

import logging
from functools import lru_cache

import numpy as np

from bigcat.astrometry.prior import N_PIXELS, NSIDE, PriorTable

logger = logging.getLogger(__name__)

#: Stellar masses (Msun) and shapes (kpc) of the assumed Galaxy.
MASS_MSUN = {"thin_disc": 3.5e10, "thick_disc": 6.0e9, "halo": 1.4e9, "bar": 1.5e10}
DISCS_KPC = {"thin_disc": (2.6, 0.3), "thick_disc": (2.0, 0.9)}
DISC_R_MAX_KPC = 20.0
HALO = {"core_kpc": 1.0, "slope": 3.5, "q": 0.7}
BAR_SCALES_KPC = (1.3, 0.5, 0.45)
BAR = {"half_length_kpc": 4.5, "angle_deg": 27.0}
DUST = {"av_per_kpc": 0.65, "scale_length_kpc": 3.0, "scale_height_kpc": 0.1}
A_G_OVER_AV, A_KS_OVER_AV = 0.789, 0.078
LF = {"clump_fraction": 0.35, "clump_mks": -1.6, "clump_sd": 0.15, "rgb_slope": 0.3}
RGB_MKS_RANGE = (-6.5, -0.5)
G_MINUS_KS = 2.9
SELECTION = {"g_min": 8.0, "g_max": 19.5, "ks_max": 14.3}
#: The Sun's Galactocentric radius (kpc), as bigcat's frame (astropy v4.0 parameters).
_N_R = 160
_R_RANGE_KPC = (0.02, 80.0)
_BETA_MIN = 0.05
_K_MAX = 50.0


def _density(pos: np.ndarray) -> np.ndarray:
    """Stellar mass density (Msun/kpc^3) of the assumed Galaxy at positions (3, ...)."""
    from scipy.integrate import quad

    x, y, z = pos
    r_cyl = np.hypot(x, y)
    rho = np.zeros(r_cyl.shape)
    for name, (h, hz) in DISCS_KPC.items():
        norm = MASS_MSUN[name] / (4.0 * np.pi * h * h * hz)
        rho += norm * np.exp(-r_cyl / h - np.abs(z) / hz) * (r_cyl < DISC_R_MAX_KPC)
    a, q, slope = HALO["core_kpc"], HALO["q"], HALO["slope"]
    shell = quad(lambda s: 4 * np.pi * q * s * s * (s * s + a * a) ** (-slope / 2), 0, 60.0)[0]
    rq2 = x**2 + y**2 + (z / q) ** 2
    rho += MASS_MSUN["halo"] / shell * (rq2 + a * a) ** (-slope / 2)
    ang = np.radians(BAR["angle_deg"])
    xp = x * np.cos(ang) - y * np.sin(ang)
    yp = x * np.sin(ang) + y * np.cos(ang)
    x0, y0, z0 = BAR_SCALES_KPC
    half = BAR["half_length_kpc"]
    norm = MASS_MSUN["bar"] / (8.0 * x0 * y0 * z0 * (1.0 - np.exp(-half / x0)))
    bar = np.exp(-np.abs(xp) / x0 - np.abs(yp) / y0 - np.abs(z) / z0) * (np.abs(xp) < half)
    return rho + norm * bar


def _lf_cdf(m: np.ndarray) -> np.ndarray:
    """Cumulative fraction of giants brighter than M_Ks = m."""
    from scipy.special import ndtr

    lo, hi = RGB_MKS_RANGE
    s = LF["rgb_slope"] * np.log(10.0)
    mc = np.clip(m, lo, hi)
    rgb = (np.exp(s * (mc - lo)) - 1.0) / (np.exp(s * (hi - lo)) - 1.0)
    clump = ndtr((m - LF["clump_mks"]) / LF["clump_sd"])
    f = LF["clump_fraction"]
    return (1.0 - f) * rgb + f * clump


def fit_ggd_log_moments(u: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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
def model_prior_table() -> PriorTable:
    """GGD prior per level-5 pixel fitted to giants of the assumed Galaxy (module docstring).

    Cached in-process. Returns all 12,288 pixels with finite positive parameters.
    """
    import healpy as hp

    from bigcat.astrometry.frames import frame_constants

    ra, dec = hp.pix2ang(NSIDE, np.arange(N_PIXELS), nest=True, lonlat=True)
    ra, dec = np.radians(ra), np.radians(dec)
    n_icrs = np.stack([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)])
    matrix, origin, _, _ = frame_constants()
    n_gc = matrix @ n_icrs  # (3, pixels)
    r = np.geomspace(*_R_RANGE_KPC, _N_R)  # kpc
    pos = origin[:, None, None] + n_gc[:, :, None] * r[None, None, :]  # (3, pix, r)
    rho = _density(pos)
    r0 = float(np.hypot(origin[0], origin[1]))
    dust = (
        DUST["av_per_kpc"]
        * np.exp(-(np.hypot(pos[0], pos[1]) - r0) / DUST["scale_length_kpc"])
        * np.exp(-np.abs(pos[2]) / DUST["scale_height_kpc"])
    )
    seg = 0.5 * (dust[:, 1:] + dust[:, :-1]) * np.diff(r)
    av = np.concatenate([dust[:, :1] * r[0], dust[:, :1] * r[0] + np.cumsum(seg, axis=1)], 1)
    mu = 5.0 * np.log10(r * 100.0)  # distance modulus, r in kpc
    a_g, a_ks = A_G_OVER_AV * av, A_KS_OVER_AV * av
    sel = SELECTION
    faint = np.minimum(sel["ks_max"] - a_ks, sel["g_max"] - G_MINUS_KS - a_g) - mu
    bright = sel["g_min"] - G_MINUS_KS - a_g - mu
    seen = _lf_cdf(faint) - _lf_cdf(bright)
    weight = r**3 * rho * np.clip(seen, 0.0, None)  # per unit ln r
    u = np.log(r * 1000.0)[None, :]  # ln(pc)
    length, alpha, beta = fit_ggd_log_moments(np.broadcast_to(u, weight.shape), weight)
    logger.info("model GGD prior fitted for %d pixels", N_PIXELS)
    return PriorTable(
        healpix5=np.arange(N_PIXELS, dtype=np.int64),
        length_pc=length,
        alpha=alpha,
        beta=beta,
        source="bigcat model prior: GGD fitted to giants of an assumed literature Galaxy "
        "(G 8-19.5, Ks < 14.3)",
    )
