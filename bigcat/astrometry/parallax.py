"""Photometric parallaxes (eq. 8) and their combination with Gaia parallaxes (eqs. 9-10).

The network predicts the J-band pseudo-absolute magnitude M_pseudo = parallax 10^(0.2 J0)
(eq. 6), which is linear in the parallax, so the photometric parallax is
M_pseudo 10^(-0.2 J0) and its Gaussian uncertainty scales by the same factor (eq. 8).

The two parallaxes are treated as independent Gaussian measurements and combined by the
inverse-variance weighted mean (eq. 9). The paper's eq. 10 carries a spurious square root
(ERRATUM, METHOD.md section 4); the correct combined uncertainty is
``1 / sigma^2 = 1 / sigma_gaia^2 + 1 / sigma_nn^2``.
"""

from __future__ import annotations

import logging

import numpy as np

logger = logging.getLogger(__name__)


def parallax_from_pseudo_magnitude(
    m_pseudo: np.ndarray, m_pseudo_error: np.ndarray, j0: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Photometric parallax from a J-band pseudo-absolute magnitude (eq. 8).

    Parameters
    ----------
    m_pseudo : array_like
        Pseudo-absolute magnitude M_pseudo = parallax[mas] 10^(0.2 J0) (mas, as in eq. 6).
    m_pseudo_error : array_like
        Its uncertainty (same units).
    j0 : array_like
        Extinction-corrected apparent 2MASS J magnitude (mag).

    Returns
    -------
    parallax_mas, error_mas : numpy.ndarray
        ``m_pseudo 10^(-0.2 J0)`` and ``m_pseudo_error 10^(-0.2 J0)`` (mas). NaN in, NaN out.
    """
    scale = 10.0 ** (-0.2 * np.asarray(j0, dtype=np.float64))
    parallax = np.asarray(m_pseudo, dtype=np.float64) * scale
    error = np.asarray(m_pseudo_error, dtype=np.float64) * scale
    return parallax, error


def combine_parallaxes(
    p_gaia: np.ndarray, s_gaia: np.ndarray, p_nn: np.ndarray, s_nn: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Inverse-variance weighted mean of Gaia and photometric parallaxes (eqs. 9-10).

    Uses the corrected eq. 10, ``1/s^2 = 1/s_gaia^2 + 1/s_nn^2``. A measurement counts only
    where both its value and its uncertainty are finite and the uncertainty is > 0; where
    one measurement does not count the other is returned unchanged, and where neither does
    the result is NaN.

    Parameters
    ----------
    p_gaia, s_gaia : array_like
        Gaia parallax and its uncertainty (mas); zero-point corrected.
    p_nn, s_nn : array_like
        Photometric (network) parallax and its uncertainty (mas), from eq. 8.

    Returns
    -------
    parallax_mas, error_mas : numpy.ndarray
        Combined parallax and uncertainty (mas), broadcast to a common shape.
    """
    pg, sg, pn, sn = np.broadcast_arrays(
        *(np.asarray(a, dtype=np.float64) for a in (p_gaia, s_gaia, p_nn, s_nn))
    )
    ok_g = np.isfinite(pg) & np.isfinite(sg) & (sg > 0)
    ok_n = np.isfinite(pn) & np.isfinite(sn) & (sn > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        wg = np.where(ok_g, 1.0 / np.where(ok_g, sg, 1.0) ** 2, 0.0)
        wn = np.where(ok_n, 1.0 / np.where(ok_n, sn, 1.0) ** 2, 0.0)
        wsum = wg + wn
        num = np.where(ok_g, wg * pg, 0.0) + np.where(ok_n, wn * pn, 0.0)
        parallax = np.where(wsum > 0, num / wsum, np.nan)
        error = np.where(wsum > 0, 1.0 / np.sqrt(wsum), np.nan)
    # a single measurement is passed through exactly (no rounding from w p / w)
    only_g, only_n = ok_g & ~ok_n, ok_n & ~ok_g
    parallax = np.where(only_g, pg, np.where(only_n, pn, parallax))
    error = np.where(only_g, sg, np.where(only_n, sn, error))
    return parallax, error


def combine_parallaxes_with_outliers(
    p_gaia: np.ndarray,
    s_gaia: np.ndarray,
    p_nn: np.ndarray,
    s_nn: np.ndarray,
    outlier_fraction: float,
    outlier_scale: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Gaia and photometric parallaxes combined when a fraction of NN predictions are outliers.

    The NN parallax's error is N(0, s_nn^2) with probability 1 - f and N(0, (b s_nn)^2) with
    probability f (``outlier_fraction``, ``outlier_scale``): a red-clump star that the colours
    place on the branch, or the reverse. With a flat prior the parallax's posterior is then a
    mixture of two Gaussians, component c being eq. 9's combination with that component's
    sigma, weighted by its prior weight times N(p_gaia - p_nn; 0, s_gaia^2 + s_c^2). The
    returned value and uncertainty are the mixture's mean and standard deviation: eqs. 9-10
    where the two parallaxes agree, leaning on Gaia's where they conflict. ``f = 0`` is
    eqs. 9-10 exactly (:func:`combine_parallaxes`), as is any row where one of the two
    measurements is missing.

    Parameters
    ----------
    p_gaia, s_gaia, p_nn, s_nn : array_like
        As for :func:`combine_parallaxes` (mas).
    outlier_fraction : float
        f, in [0, 1).
    outlier_scale : float
        b >= 1.

    Returns
    -------
    parallax_mas, error_mas : numpy.ndarray
    """
    if not 0.0 <= outlier_fraction < 1.0 or not outlier_scale >= 1.0:
        raise ValueError(
            f"outlier_fraction = {outlier_fraction}, outlier_scale = {outlier_scale}: need "
            "0 <= f < 1 and b >= 1."
        )
    core_p, core_s = combine_parallaxes(p_gaia, s_gaia, p_nn, s_nn)
    if outlier_fraction == 0.0:
        return core_p, core_s
    pg, sg, pn, sn = np.broadcast_arrays(
        *(np.asarray(a, dtype=np.float64) for a in (p_gaia, s_gaia, p_nn, s_nn))
    )
    wide_p, wide_s = combine_parallaxes(pg, sg, pn, outlier_scale * sn)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        d2 = (pg - pn) ** 2
        v_core, v_wide = sg**2 + sn**2, sg**2 + (outlier_scale * sn) ** 2
        log_core = np.log1p(-outlier_fraction) - 0.5 * (d2 / v_core + np.log(v_core))
        log_wide = np.log(outlier_fraction) - 0.5 * (d2 / v_wide + np.log(v_wide))
        w_wide = 1.0 / (1.0 + np.exp(log_core - log_wide))
        mean = (1.0 - w_wide) * core_p + w_wide * wide_p
        var = (1.0 - w_wide) * (core_s**2 + (core_p - mean) ** 2) + w_wide * (
            wide_s**2 + (wide_p - mean) ** 2
        )
        error = np.sqrt(var)
    both = np.isfinite(w_wide) & np.isfinite(mean) & np.isfinite(error)
    return np.where(both, mean, core_p), np.where(both, error, core_s)
