"""Extinction by the Rayleigh-Jeans colour excess method (RJCE, Majewski et al. 2011).

A_Ks = k (H - W2 - c) with k = ``rjce_constant`` (paper 0.918) and intrinsic colour
c = ``rjce_intrinsic_h_w2`` (0.05 mag, the WISE W2 form of Zasowski et al. 2013). The other
bands follow from an extinction law given as A_band/A_V, by default Wang & Chen (2019):
A_band = A_Ks * (A_band/A_V) / (A_Ks/A_V).

The two constants are not consistent with each other: under Wang & Chen (2019)
A_Ks / E(H - W2) = 0.078 / (0.131 - 0.026) = 0.743, not RJCE's 0.918. The paper uses both;
so do we by default, and both are settings (``PhotometryParams``) recorded with the run.
"""

from __future__ import annotations

import logging

import numpy as np

from bigcat.photometry.params import PhotometryParams
from bigcat.schema import BANDS

logger = logging.getLogger(__name__)


def rjce_extinction(
    h_mag: np.ndarray, w2_mag: np.ndarray, params: PhotometryParams | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """RJCE extinction in Ks from 2MASS H and unWISE W2.

    Parameters
    ----------
    h_mag : array_like
        2MASS H apparent magnitude (mag).
    w2_mag : array_like
        unWISE W2 apparent magnitude (Vega mag).
    params : PhotometryParams, optional
        Supplies ``rjce_constant`` and ``rjce_intrinsic_h_w2``; paper defaults when omitted.

    Returns
    -------
    a_ks : numpy.ndarray of float64
        A_Ks = k (H - W2 - c) (mag), negative values clipped to 0; NaN where H or W2 is
        NaN or infinite.
    negative : numpy.ndarray of bool
        True where the unclipped A_Ks was negative (the ``negative_extinction`` bit).
    """
    params = PhotometryParams() if params is None else params
    h_mag = np.asarray(h_mag, dtype=np.float64)
    w2_mag = np.asarray(w2_mag, dtype=np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        a_ks = params.rjce_constant * (h_mag - w2_mag - params.rjce_intrinsic_h_w2)
        a_ks[~(np.isfinite(h_mag) & np.isfinite(w2_mag))] = np.nan
        negative = a_ks < 0
    a_ks[negative] = 0.0
    return a_ks, negative


def band_extinctions(
    a_ks: np.ndarray, params: PhotometryParams | None = None
) -> dict[str, np.ndarray]:
    """Extinction in each of the eight bands, scaled from A_Ks by the extinction law.

    Parameters
    ----------
    a_ks : array_like
        Extinction in 2MASS Ks (mag).
    params : PhotometryParams, optional
        Supplies ``extinction_ratios`` (A_band/A_V); Wang & Chen (2019) when omitted.

    Returns
    -------
    dict of str to numpy.ndarray of float64
        ``{band: A_band}`` (mag) for every band of ``schema.BANDS``, in that order;
        A_band = A_Ks * ratio[band] / ratio["ks"], so ``result["ks"]`` equals ``a_ks``.
    """
    params = PhotometryParams() if params is None else params
    a_ks = np.asarray(a_ks, dtype=np.float64)
    ratios = params.extinction_ratios
    out: dict[str, np.ndarray] = {}
    with np.errstate(over="ignore"):
        for band in BANDS:
            out[band] = a_ks.copy() if band == "ks" else a_ks * (ratios[band] / ratios["ks"])
    return out
