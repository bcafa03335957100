"""Pseudo-absolute magnitude (eq. 6) and the giant cut (eq. 7) of Fallows & Sanders.

M_pseudo = parallax[mas] * 10^(0.2 J0) equals 10^(0.2 M_J + 2) for a noiseless parallax,
so it is linear in the parallax and inherits its Gaussian errors, and it stays defined for
zero and negative parallaxes (then M_pseudo <= 0, which the cut of eq. 7 classifies as giant
wherever its right-hand side is positive, i.e. J0 - H0 > 0.109 mag, as the paper's rule does).
"""

from __future__ import annotations

import logging

import numpy as np

from bigcat.photometry.params import PhotometryParams

logger = logging.getLogger(__name__)


def pseudo_absolute_magnitude(
    parallax_mas: np.ndarray, parallax_error_mas: np.ndarray, j0_mag: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """J-band pseudo-absolute magnitude and its uncertainty (eq. 6).

    Parameters
    ----------
    parallax_mas : array_like
        Parallax (mas); zero-point corrected in the pipeline. Negative values are valid.
    parallax_error_mas : array_like
        Parallax uncertainty (mas).
    j0_mag : array_like
        Dereddened 2MASS J magnitude J0 = J - A_J (mag).

    Returns
    -------
    m_pseudo : numpy.ndarray of float64
        parallax * 10^(0.2 J0) (mas, times the dimensionless 10^(0.2 J0)); NaN where an
        input is NaN.
    m_pseudo_error : numpy.ndarray of float64
        parallax_error * 10^(0.2 J0), same units.
    """
    with np.errstate(invalid="ignore", over="ignore"):
        scale = 10.0 ** (0.2 * np.asarray(j0_mag, dtype=np.float64))
        m = np.asarray(parallax_mas, dtype=np.float64) * scale
        sigma = np.asarray(parallax_error_mas, dtype=np.float64) * scale
    return m, sigma


def giant_mask(
    m_pseudo: np.ndarray,
    j0_mag: np.ndarray,
    h0_mag: np.ndarray,
    params: PhotometryParams | None = None,
) -> np.ndarray:
    """Giant cut of eq. 7: M_pseudo < slope (J0 - H0) + intercept.

    Parameters
    ----------
    m_pseudo : array_like
        Pseudo-absolute magnitude from :func:`pseudo_absolute_magnitude`.
    j0_mag, h0_mag : array_like
        Dereddened 2MASS J and H magnitudes (mag).
    params : PhotometryParams, optional
        Supplies ``giant_cut_slope`` (492.101) and ``giant_cut_intercept`` (-53.827).

    Returns
    -------
    numpy.ndarray of bool
        True for giants; False where any input is NaN or infinite, and on the boundary
        itself (the inequality is strict).
    """
    params = PhotometryParams() if params is None else params
    m_pseudo = np.asarray(m_pseudo, dtype=np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        colour = np.asarray(j0_mag, dtype=np.float64) - np.asarray(h0_mag, dtype=np.float64)
        boundary = params.giant_cut_slope * colour + params.giant_cut_intercept
        return (m_pseudo < boundary) & np.isfinite(m_pseudo) & np.isfinite(colour)


def giant_cut_parallax_bound(
    j0_mag: np.ndarray, h0_mag: np.ndarray, params: PhotometryParams | None = None
) -> np.ndarray:
    """The giant cut (eq. 7) as a bound on the parallax (mas): a star is a giant when its
    parallax is below ``(slope (J0 - H0) + intercept) 10^(-0.2 J0)`` (eq. 6 inverted). Stages
    that model the cut's selection (the learnt distance prior) use it. NaN where J0 or H0 is."""
    params = PhotometryParams() if params is None else params
    j0 = np.asarray(j0_mag, dtype=np.float64)
    colour = j0 - np.asarray(h0_mag, dtype=np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        bound = params.giant_cut_slope * colour + params.giant_cut_intercept
        return bound * 10.0 ** (-0.2 * j0)
