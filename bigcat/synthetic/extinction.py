"""Extinction laws of the mock: A_band / A_V in the eight survey bands, by name.

``MockParams.extinction_law`` picks one; ``bigcat.synthetic.observe`` applies it to the
line-of-sight A_V. Every law gives all of ``schema.BANDS`` (BP, G, RP, J, H, Ks, W1, W2).
No dependencies, so ``bigcat.synthetic.params`` can validate the name.

Laws
----
``wang-chen-2019`` (the default Galaxy's, and the ratios the pipeline assumes)
    Wang & Chen (2019, ApJ 877, 116), their A_lambda/A_V for Gaia DR2, 2MASS and WISE.
``nishiyama-2009`` (a steep near-infrared law, measured towards the Galactic centre)
    Nishiyama et al. (2008, ApJ 680, 1174): A_V : A_J : A_H : A_Ks = 1 : 0.188 : 0.108 :
    0.062 (A_Ks ~ A_V / 16); Nishiyama et al. (2009, ApJ 696, 1407): A_[3.6] / A_Ks = 0.50 and
    A_[4.5] / A_Ks = 0.39, used for W1 (3.4 um) and W2 (4.6 um). They measure no optical
    band, so BP, G and RP keep Wang & Chen (2019): this law differs from the default in the
    infrared only (A_G / A_Ks 12.7 instead of 10.1; A_Ks / E(H-W2) 0.740 instead of 0.743).
``gordon-2023-rv3.1`` (a Fitzpatrick-like average diffuse-ISM law, flatter in the infrared)
    Gordon et al. (2023, ApJ 950, 86) R_V = 3.1 curve (``dust_extinction``'s ``G23``)
    evaluated at the effective wavelengths BP 0.5387, G 0.6419, RP 0.7667, J 1.2345,
    H 1.6393, Ks 2.1757, W1 3.3172, W2 4.5501 um, rounded to 0.001 (A_Ks ~ A_V / 9.5,
    A_G / A_Ks 7.9, A_Ks / E(H-W2) 0.761).
"""

from __future__ import annotations

EXTINCTION_LAWS: dict[str, dict[str, float]] = {
    # Wang & Chen (2019), A_lambda / A_V
    "wang-chen-2019": {
        "bp": 1.002,
        "g": 0.789,
        "rp": 0.589,
        "j": 0.243,
        "h": 0.131,
        "ks": 0.078,
        "w1": 0.039,
        "w2": 0.026,
    },
    # Nishiyama et al. (2008, 2009) towards the Galactic centre; Gaia bands Wang & Chen (2019)
    "nishiyama-2009": {
        "bp": 1.002,
        "g": 0.789,
        "rp": 0.589,
        "j": 0.188,
        "h": 0.108,
        "ks": 0.062,
        "w1": 0.031,  # 0.50 A_Ks ([3.6])
        "w2": 0.0242,  # 0.39 A_Ks ([4.5])
    },
    # Gordon et al. (2023) R_V = 3.1 at the bands' effective wavelengths
    "gordon-2023-rv3.1": {
        "bp": 1.025,
        "g": 0.829,
        "rp": 0.631,
        "j": 0.274,
        "h": 0.170,
        "ks": 0.105,
        "w1": 0.050,
        "w2": 0.032,
    },
}

DEFAULT_EXTINCTION_LAW = "wang-chen-2019"


def a_ks_over_e_h_w2(law: str) -> float:
    """A_Ks / E(H - W2) of a law: the true RJCE coefficient (the pipeline assumes 0.918)."""
    r = EXTINCTION_LAWS[law]
    return r["ks"] / (r["h"] - r["w2"])
