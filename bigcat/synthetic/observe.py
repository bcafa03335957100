"""Observing the mock Galaxy: 3-D dust, survey errors, quality columns, selection, labels.

Dust: A_V is the line-of-sight integral of an exponential dust disc
``dust_av_per_kpc exp(-(R - R0)/h_R) exp(-|z|/h_z)`` (mag/kpc), by the trapezoid rule on a
grid in distance that is dense near the Sun, times a lognormal angular patchiness field that
depends on ``params.seed`` only (so neighbouring stars share it). Per-band extinction is
A_V times the A_band/A_V of ``params.extinction_law`` (``EXTINCTION_LAWS``; the default,
Wang & Chen 2019, is also ``EXTINCTION_RATIOS``).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from bigcat.astrometry.frames import GALCEN_DISTANCE_KPC, sun_position_kpc
from bigcat.synthetic.extinction import DEFAULT_EXTINCTION_LAW, EXTINCTION_LAWS
from bigcat.synthetic.params import MockParams

#: The default Galaxy's law, Wang & Chen (2019) A_band / A_V (also the ratios the pipeline
#: assumes). The simulation reads ``extinction_ratios(params)``.
EXTINCTION_RATIOS: dict[str, float] = EXTINCTION_LAWS[DEFAULT_EXTINCTION_LAW]
_N_LOS = 16
_N_PATCH_WAVES = 12


@lru_cache(maxsize=8)
def _patch_waves(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(np.random.SeedSequence([seed, 7_777_777]))
    k = rng.normal(size=(_N_PATCH_WAVES, 3))
    k /= np.linalg.norm(k, axis=1, keepdims=True)
    k *= rng.uniform(5.0, 60.0, (_N_PATCH_WAVES, 1))  # angular wavenumbers (~3-35 deg scales)
    return k, rng.uniform(0.0, 2 * np.pi, _N_PATCH_WAVES), rng.normal(size=_N_PATCH_WAVES)


def extinction_ratios(params: MockParams) -> dict[str, float]:
    """A_band / A_V of every band under ``params.extinction_law``."""
    return EXTINCTION_LAWS[params.extinction_law]


def patchiness(direction: np.ndarray, params: MockParams) -> np.ndarray:
    """Lognormal dust patchiness factor (mean ~1) for unit direction vectors (3, n)."""
    k, phase, amp = _patch_waves(params.seed)
    field = (amp[:, None] * np.sin(k @ direction + phase[:, None])).sum(axis=0)
    field *= np.sqrt(2.0 / (amp**2).sum())
    s = params.dust_patchiness
    return np.exp(s * field - 0.5 * s**2)


def dust_density(x: np.ndarray, y: np.ndarray, z: np.ndarray, params: MockParams) -> np.ndarray:
    """Dust extinction density dA_V/ds (mag/kpc) at Galactocentric positions (kpc)."""
    r = np.hypot(x, y)
    return (
        params.dust_av_per_kpc
        * np.exp(-(r - GALCEN_DISTANCE_KPC) / params.dust_scale_length_kpc)
        * np.exp(-np.abs(z) / params.dust_scale_height_kpc)
    )


def extinction_av(pos: np.ndarray, params: MockParams, patchy: bool = True) -> np.ndarray:
    """A_V (mag) between the Sun and Galactocentric positions ``pos`` (kpc), shape (3, n).

    The density is evaluated at ``_N_LOS`` distances s = d t^2 (t uniform), dense near the
    Sun where the disc is thin in projection; between nodes ln(density) is taken as linear
    in s and integrated exactly (the log-mean rule), which suits exponential profiles.
    """
    sun = sun_position_kpc()
    rel = pos - sun[:, None]
    d = np.sqrt((rel * rel).sum(axis=0))
    frac = np.linspace(0.0, 1.0, _N_LOS) ** 2
    x = sun[0] + rel[0][:, None] * frac
    y = sun[1] + rel[1][:, None] * frac
    z = sun[2] + rel[2][:, None] * frac
    ln_rho = (
        -(np.hypot(x, y) - GALCEN_DISTANCE_KPC) / params.dust_scale_length_kpc
        - np.abs(z) / params.dust_scale_height_kpc
    )
    rho = np.exp(ln_rho)
    dl = np.diff(ln_rho, axis=1)
    dr = np.diff(rho, axis=1)
    small = np.abs(dl) < 1e-6
    seg = np.where(small, 0.5 * (rho[:, 1:] + rho[:, :-1]), dr / np.where(small, 1.0, dl))
    av = params.dust_av_per_kpc * d * (seg * np.diff(frac)).sum(axis=1)
    if patchy:
        av = av * patchiness(rel / np.maximum(d, 1e-9), params)
    return av


def mag_error_2mass(m: np.ndarray, m_lim: float) -> np.ndarray:
    """2MASS-like error (mag): 0.02 floor, ~0.1 mag at the limit ``m_lim``."""
    return np.sqrt(0.02**2 + (0.1 * 10 ** (0.4 * np.minimum(m - m_lim, 10.0))) ** 2)


def mag_error_unwise(m: np.ndarray, m_ref: float) -> np.ndarray:
    """unWISE-like error (mag): 0.008 floor, 0.1 mag at ``m_ref``."""
    return np.sqrt(0.008**2 + (0.1 * 10 ** (0.4 * np.minimum(m - m_ref, 10.0))) ** 2)


#: Magnitude where the unWISE error reaches 0.1 mag.
UNWISE_REF = {"w1": 16.5, "w2": 15.6}


def gaia_mag_error(g: np.ndarray, band: str) -> np.ndarray:
    """Gaia DR3-like photometric error (mag) at G (mag), for ``g``/``bp``/``rp``."""
    if band == "g":
        return np.sqrt(0.0008**2 + (0.002 * 10 ** (0.4 * np.minimum(g - 19.0, 10.0))) ** 2)
    return np.sqrt(0.002**2 + (0.02 * 10 ** (0.4 * np.minimum(g - 19.0, 10.0))) ** 2)


def parallax_error(g: np.ndarray, six_param: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Gaia DR3-like parallax error (mas): 1.05 sqrt(40 + 800 z + 30 z^2) uas with
    z = 10^(0.4 (max(G, 13) - 15)), a 0.015 mas floor, x1.3 for 6-p solutions and 10%
    lognormal scatter. ~0.02 mas at G = 13, ~0.5 at G = 19.5."""
    zz = 10 ** (0.4 * (np.maximum(g, 13.0) - 15.0))
    sig = 1.05e-3 * np.sqrt(40.0 + 800.0 * zz + 30.0 * zz**2)
    sig = np.sqrt(sig**2 + 0.015**2) * np.where(six_param, 1.3, 1.0)
    return sig * np.exp(rng.normal(0.0, 0.1, g.size))


def nu_eff_from_colour(bp_rp: np.ndarray) -> np.ndarray:
    """Gaia's effective wavenumber (1/um) from BP-RP, clipped to [1.24, 1.72]."""
    return np.clip(1.76 - (1.61 / np.pi) * np.arctan(0.531 * bp_rp), 1.24, 1.72)


def crowding(l_deg: np.ndarray, b_deg: np.ndarray) -> np.ndarray:
    """Crowding index in [0, 1], 1 at the Galactic centre (drives quality failures)."""
    return np.exp(-np.abs(b_deg) / 4.0) * np.exp(-np.abs(l_deg) / 20.0)


def quality_columns(
    g: np.ndarray, bp_rp: np.ndarray, crowd: np.ndarray, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """RUWE, BP/RP excess factor and unWISE flags with a few per cent of failures.

    RUWE is lognormal about 1.0 (sigma 0.07) with a 2.5% (+4% x crowding) tail
    1.4-5; the excess factor is 1.17 + 0.06 (BP-RP) with 2% scatter and a 1.5%
    (+6% x crowding) tail 3-8; W1/W2 flags are 0 except 2% (+8% x crowding) of stars.
    """
    n = g.size
    ruwe = np.exp(rng.normal(0.0, 0.07, n))
    bad = rng.uniform(size=n) < 0.025 + 0.04 * crowd
    ruwe = np.where(bad, 1.4 + rng.exponential(0.8, n), ruwe)
    excess = (1.17 + 0.06 * np.clip(bp_rp, 0.0, 4.0)) * np.exp(rng.normal(0.0, 0.02, n))
    bad = rng.uniform(size=n) < 0.015 + 0.06 * crowd
    excess = np.where(bad, rng.uniform(3.0, 8.0, n), excess)
    bits = np.array([1, 2, 4, 8, 16, 32, 64, 128], dtype=np.int64)
    flags = {}
    for band in ("w1", "w2"):
        bad = rng.uniform(size=n) < 0.02 + 0.08 * crowd
        flags[band] = np.where(bad, rng.choice(bits, n), 0).astype(np.int64)
    return {
        "ruwe": ruwe,
        "phot_bp_rp_excess_factor": excess,
        "w1_flags": flags["w1"],
        "w2_flags": flags["w2"],
    }


def six_param_probability(g: np.ndarray, crowd: np.ndarray) -> np.ndarray:
    """Probability of a 6-parameter (95) astrometric solution at G (mag)."""
    return np.clip(0.05 + 0.35 / (1.0 + np.exp(-(g - 18.3) / 0.5)) + 0.1 * crowd, 0.0, 1.0)


def inject_zero_point(
    g: np.ndarray,
    nu_eff: np.ndarray,
    pseudocolour: np.ndarray,
    ecl_lat: np.ndarray,
    solved: np.ndarray,
) -> np.ndarray:
    """Lindegren et al. (2021) parallax zero-point (mas) from ``gaiadr3-zeropoint``.

    Valid for 6 < G < 21 and 31/95 solutions (guaranteed by the selection); out-of-range
    colours are clipped to the package's validity range first.
    """
    from zero_point import zpt

    zpt.load_tables()
    nu = np.where(solved == 31, np.clip(nu_eff, 1.1, 1.9), np.nan)
    pc = np.where(solved == 95, np.clip(pseudocolour, 1.2401, 1.7199), np.nan)
    return np.asarray(zpt.get_zpt(g, nu, pc, ecl_lat, solved, _warnings=False), dtype=float)
