"""Stellar parameters, luminosities and intrinsic magnitudes in the eight survey bands.

Teff and log g follow simple isochrone-like relations that depend on [Fe/H] (metal-poor
giants hotter). Luminosity is L = M (Teff/Teff_sun)^4 / (g/g_sun); M_Ks = M_bol - BC_Ks,
with BC_Ks linear in theta = 5040/Teff (1.47 at the Sun, ~2.0 for the red clump).
Colours relative to Ks are smooth cubic functions of x = theta - 1 plus log g and [Fe/H]
terms, fitted separately to low-reddening real giants and dwarfs of Green et al. (2020)
(``shared/data/real/green2020_test_data_small.h5``, dereddened with A_V = 2.8 r and the
Wang & Chen 2019 law, unWISE converted from AB to Vega) and blended smoothly in log g.
The fitted optical [Fe/H] terms make metal-rich giants redder in BP-RP (~0.065 mag/dex).
The W2 terms are *designed*: Ks-W2 and W1-W2 bluer for metal-rich giants (CO in W2:
0.02 + 0.08 s(Teff) mag/dex with s = clip((4800 - Teff)/800, 0, 1.5)).
"""

from __future__ import annotations

import numpy as np

from bigcat.schema import BANDS
from bigcat.synthetic.params import MockParams

TEFF_SUN, LOGG_SUN, MBOL_SUN = 5772.0, 4.438, 4.74
STAGES: tuple[str, ...] = ("dwarf", "rgb", "red_clump")

#: Colour coefficients (c0, c1, c2, c3, c_logg, c_feh) of
#: c = c0 + c1 x + c2 x^2 + c3 x^3 + c_logg (log g - logg_ref) + c_feh [Fe/H], x = 5040/Teff - 1,
#: least-squares fits (4-sigma clipped) to low-reddening Green et al. (2020) stars; "bp" means
#: BP-Ks, ..., "w1" means Ks-W1, "w2" means Ks-W2. Giants: log g < 3.6, 3800-5600 K,
#: logg_ref 2.5; dwarfs: log g > 3.8, 4000-7000 K, logg_ref 4.3. The Ks-W1/Ks-W2 [Fe/H]
#: terms are designed (CO band, see module docstring), not fitted; the giant Ks-W1/Ks-W2
#: fits were made with those terms held fixed and 2.5-sigma clipping (few, noisy W1/W2).
#: Hand adjustments after comparing binned medians of mock and real giants (see
#: tests/mock/test_real_colours.py): giant G-Ks c3 +16.4 (cool end), H-Ks c0 -0.02,
#: Ks-W2 c0 -0.025 (intrinsic giant H-W2 median ~0.08 as in RJCE).
GIANT_COEFFS: dict[str, tuple[float, ...]] = {
    "bp": (2.6228, 3.0556, -16.1054, 123.4746, -0.1809, 0.1627),
    "g": (2.1306, 2.1761, -9.7781, 92.6000, -0.1610, 0.1306),
    "rp": (1.4677, 1.5903, -7.7428, 62.7242, -0.1234, 0.0974),
    "j": (0.6454, 0.6295, -0.3986, 12.8109, -0.0864, 0.0445),
    "h": (0.1271, -0.1498, 1.9677, -1.3583, -0.0453, 0.0435),
    "w1": (0.0613, 0.2678, 8.2812, -40.8051, -0.0177, 0.0100),
    "w2": (-0.0422, -0.0272, 1.1059, -11.0447, -0.0168, 0.0),
}
DWARF_COEFFS: dict[str, tuple[float, ...]] = {
    "bp": (2.3609, 6.0093, 8.0750, 14.8242, 0.1090, -0.0070),
    "g": (1.8969, 4.5854, 4.0004, 4.3295, 0.0756, -0.0381),
    "rp": (1.2791, 3.3858, 2.0104, -1.7903, 0.0502, -0.0488),
    "j": (0.5502, 1.6054, -0.2852, -6.3561, 0.0255, -0.0329),
    "h": (0.0881, 0.3344, 0.7287, -0.0141, -0.0016, 0.0025),
    "w1": (0.0369, 0.1288, 0.5909, 0.8171, -0.0063, 0.0),
    "w2": (-0.0507, 0.0352, 1.8633, 5.3532, -0.0014, 0.0),
}
LOGG_REF = {"giant": 2.5, "dwarf": 4.3}
#: Teff ranges (K) over which the fits hold; Teff is clipped to them when evaluating.
TEFF_RANGE = {"giant": (3750.0, 5700.0), "dwarf": (4000.0, 7000.0)}
#: log g of the smooth giant/dwarf blend (dex) and its width.
LOGG_SPLIT, LOGG_SPLIT_WIDTH = 3.7, 0.1
CO_BASE, CO_COOL = 0.02, 0.08
COLOUR_SCATTER = 0.012

#: Sigma of giant masses (Msun) per population; the means are ``MockParams.giant_mass_<pop>``.
MASS_SIGMA = {"thin_disc": 0.3, "thick_disc": 0.1, "halo": 0.05, "bulge": 0.15}
#: log g range (dex) of the RGB luminosity function and the red clump's log g scatter.
RGB_LOGG_RANGE = (0.5, 3.5)
CLUMP_LOGG_SIGMA = 0.07
DWARF_MASS_MAX = {"thin_disc": 1.5, "thick_disc": 1.0, "halo": 0.9, "bulge": 1.0}
#: Lower bound on dwarf M_Ks (mag) per population (from the mass and Teff caps, with
#: margin; checked by a test): no dwarf beyond the matching distance can pass the Ks limit.
DWARF_MKS_MIN = {"thin_disc": 0.9, "thick_disc": 1.6, "halo": 1.8, "bulge": 1.6}


def bc_ks(teff: np.ndarray) -> np.ndarray:
    """Ks-band bolometric correction (mag), linear in theta = 5040/Teff."""
    return 1.47 + 2.66 * (5040.0 / teff - 0.873)


def co_strength(teff: np.ndarray) -> np.ndarray:
    """Relative strength (0-1.5) of the W2 CO band: 0 above 4800 K, 1 at 4000 K."""
    return np.clip((4800.0 - teff) / 800.0, 0.0, 1.5)


def sample_giants(
    population: str, feh: np.ndarray, rng: np.random.Generator, params: MockParams
) -> dict[str, np.ndarray]:
    """RGB and red-clump stars: ``stage`` (str), ``teff`` (K), ``logg`` (dex), ``mass`` (Msun).

    RGB log g is drawn from p(log g) ~ 10^(a log g) on [0.5, 3.5] with
    a = ``params.rgb_logg_exponent`` (0.5 by default; a = 0 is uniform); Teff(log g, [Fe/H])
    is a quadratic in log g, 200 K hotter per dex poorer. A share ``red_clump_fraction`` are
    clump stars with log g ~ ``clump_logg`` (2.36: M_Ks ~ -1.6), Teff ~ 4700 - 250 [Fe/H] (a
    red horizontal branch at low [Fe/H]); the share does not depend on [Fe/H], so the
    selection of bulge giants barely depends on [Fe/H] and the injected vertical gradient
    survives the selection. Masses: ``giant_mass_<population>`` with sigma ``MASS_SIGMA``,
    clipped to [0.7, 2.5] Msun.
    """
    n = feh.size
    a = params.rgb_logg_exponent
    g_lo, g_hi = RGB_LOGG_RANGE
    u = rng.uniform(size=n)
    if a > 0:
        lo, hi = 10 ** (a * g_lo), 10 ** (a * g_hi)
        logg = np.log10(lo + u * (hi - lo)) / a
    else:
        logg = g_lo + u * (g_hi - g_lo)
    dl = logg - 2.5
    teff = 4620.0 + 370.0 * dl - 30.0 * dl**2 - 200.0 * feh + rng.normal(0.0, 50.0, n)
    clump = rng.uniform(size=n) < params.red_clump_fraction
    logg = np.where(clump, rng.normal(params.clump_logg, CLUMP_LOGG_SIGMA, n), logg)
    teff = np.where(clump, 4700.0 - 250.0 * feh + rng.normal(0.0, 50.0, n), teff)
    mu, sig = params.giant_masses[population], MASS_SIGMA[population]
    mass = np.clip(rng.normal(mu, sig, n), 0.7, 2.5)
    return {
        "stage": np.where(clump, "red_clump", "rgb"),
        "teff": np.clip(teff, 3600.0, 5700.0),
        "logg": logg,
        "mass": mass,
    }


def sample_dwarfs(
    population: str, feh: np.ndarray, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """Main-sequence stars, Teff 4000-7000 K: mass from a Salpeter slope on
    [0.55, ``DWARF_MASS_MAX``], Teff ~ 5772 M^0.6 10^(-0.04 [Fe/H]), log g = 4.44 - 0.6 log M
    lowered by up to 0.4 dex near the turn-off."""
    n = feh.size
    m_lo, m_hi = 0.55, DWARF_MASS_MAX[population]
    a = -1.35
    u = rng.uniform(size=n)
    mass = (m_lo**a + u * (m_hi**a - m_lo**a)) ** (1.0 / a)
    teff = TEFF_SUN * mass**0.6 * 10 ** (-0.04 * feh) + rng.normal(0.0, 60.0, n)
    logg = 4.44 - 0.6 * np.log10(mass) - rng.uniform(0.0, 0.4, n) * (mass / m_hi) ** 4
    return {
        "stage": np.full(n, "dwarf"),
        "teff": np.clip(teff, 4000.0, 7000.0),
        "logg": logg,
        "mass": mass,
    }


def _colour_fit(
    coeffs: dict[str, tuple[float, ...]], kind: str, teff, logg, feh
) -> dict[str, np.ndarray]:
    x = 5040.0 / np.clip(teff, *TEFF_RANGE[kind]) - 1.0
    out = {}
    for key, (c0, c1, c2, c3, cg, cf) in coeffs.items():
        poly = c0 + x * (c1 + x * (c2 + x * c3))
        out[key] = poly + cg * (logg - LOGG_REF[kind]) + cf * feh
    return out


def intrinsic_colours(teff: np.ndarray, logg: np.ndarray, feh: np.ndarray) -> dict[str, np.ndarray]:
    """Noise-free colours relative to Ks (mag): keys as ``GIANT_COEFFS`` ("w1"/"w2" are
    Ks-W1 and Ks-W2; the others are band-Ks). Giant and dwarf fits are blended smoothly
    in log g around ``LOGG_SPLIT``; the W2 CO term applies to the giant part."""
    w = 1.0 / (1.0 + np.exp((logg - LOGG_SPLIT) / LOGG_SPLIT_WIDTH))
    gi = _colour_fit(GIANT_COEFFS, "giant", teff, logg, feh)
    dw = _colour_fit(DWARF_COEFFS, "dwarf", teff, logg, feh)
    gi["w2"] = gi["w2"] - (CO_BASE + CO_COOL * co_strength(teff)) * feh
    return {k: w * gi[k] + (1.0 - w) * dw[k] for k in gi}


def absolute_magnitudes(
    teff: np.ndarray,
    logg: np.ndarray,
    feh: np.ndarray,
    mass: np.ndarray,
    rng: np.random.Generator | None = None,
) -> dict[str, np.ndarray]:
    """Absolute magnitudes (mag) in ``schema.BANDS`` from Teff (K), log g (dex), [Fe/H]
    (dex) and mass (Msun); with ``rng``, each colour gets ``COLOUR_SCATTER`` Gaussian
    scatter."""
    lum = mass * (teff / TEFF_SUN) ** 4 * 10 ** (LOGG_SUN - logg)
    m_ks = MBOL_SUN - 2.5 * np.log10(lum) - bc_ks(teff)
    col = intrinsic_colours(teff, logg, feh)
    if rng is not None:
        for key in col:
            col[key] = col[key] + rng.normal(0.0, COLOUR_SCATTER, teff.size)
    mags = {
        "bp": m_ks + col["bp"],
        "g": m_ks + col["g"],
        "rp": m_ks + col["rp"],
        "j": m_ks + col["j"],
        "h": m_ks + col["h"],
        "ks": m_ks,
        "w1": m_ks - col["w1"],
        "w2": m_ks - col["w2"],
    }
    return {b: mags[b] for b in BANDS}
