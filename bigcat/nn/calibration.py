"""Recalibration of a network's uncertainty on held-out stars (variance or coverage matching).

MC dropout's spread and the network's variance output are both approximations of the
predictive error; on stars the network never trained on, the residual against an independent
noisy measurement tells how far off they are. If the quoted sigma is k times too small, the
residual r = prediction - measurement of a held-out star has variance

    Var(r) = k^2 sigma^2 + sigma_meas^2

(the measurement's own error sigma_meas is independent of the prediction). Stage 2 measures
one k against spectroscopic labels (:func:`variance_matching_scale`); stage 1 measures k per
bin of apparent and predicted absolute magnitude against Gaia parallaxes
(:func:`binned_variance_matching_scales`), on a subset where the selection does not truncate
the measurement (see :mod:`bigcat.stages.parallax`).

The estimate is the plain mean of (r^2 - sigma_meas^2) / sigma^2: an unbiased estimate of the
mean squared pull (r - measurement noise) / sigma, which is what a calibrated sigma must bring
to 1. (Inverse-variance weights would be more precise for a homogeneous sample, but they favour
the stars with the smallest measurement errors; on stage 1's held-out giants those are bright,
nearby stars whose sigma is overestimated, so a weighted k came out 20% low for the rest.) Each
star's term has variance 2 (k^2 + sigma_meas^2 / sigma^2)^2, so rows whose measurement error
swamps sigma add noise and little else: callers may leave them out (``max_error_ratio``).

Coverage matching (:func:`coverage_matching_scale`) asks instead that the interval
+-sqrt(k^2 sigma^2 + sigma_meas^2) hold the residual of a fraction ``coverage`` (68.27%) of the
stars. A star is covered once k^2 >= (r^2 - sigma_meas^2) / sigma^2, the same per-star
quantity as above, so k^2 is that quantity's 68.27th percentile where variance matching takes
its mean. For Gaussian residuals the two agree; for heavy-tailed ones (a mixture of stars whose
sigma is too large with stars whose sigma is too small, as red-clump and branch giants of the
same colours are for stage 1) the mean is pulled up by the tail and the quoted 68% intervals
hold more than 68% of the stars, while the percentile matches the intervals users read off.

Pure numpy and deterministic (no random numbers).
"""

from __future__ import annotations

import numpy as np


def _usable_rows(
    residual: np.ndarray,
    sigma: np.ndarray,
    measurement_error: np.ndarray,
    max_error_ratio: float,
    clip: float = np.inf,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(residual, sigma, measurement_error) as float64, only the rows that count: finite,
    sigma > 0, measurement_error < max_error_ratio * sigma and |residual| < clip times the
    combined (unscaled) sigma."""
    r, s, e = (np.asarray(a, dtype=np.float64) for a in (residual, sigma, measurement_error))
    ok = np.isfinite(r) & np.isfinite(s) & np.isfinite(e) & (s > 0)
    with np.errstate(invalid="ignore"):
        ok &= e < max_error_ratio * s
        if np.isfinite(clip):
            ok &= np.abs(r) < clip * np.hypot(s, e)
    return r[ok], s[ok], e[ok]


def _scale(k2: float, limits: tuple[float, float]) -> float:
    """k = sqrt(k2) clipped to ``limits``; the lower limit when k2 <= 0."""
    return float(np.clip(np.sqrt(k2), *limits)) if k2 > 0 else float(limits[0])


def variance_matching_scale(
    residual: np.ndarray,
    sigma: np.ndarray,
    measurement_error: np.ndarray,
    clip: float = 5.0,
    limits: tuple[float, float] = (0.5, 2.0),
    min_rows: int = 20,
    max_error_ratio: float = np.inf,
) -> float:
    """The factor k that makes ``sigma`` calibrated: Var(residual) = k^2 sigma^2 + sigma_meas^2.

    Parameters
    ----------
    residual : array_like
        Prediction minus an independent measurement, for held-out stars.
    sigma : array_like
        The prediction's quoted uncertainty (> 0 to count).
    measurement_error : array_like
        The measurement's own uncertainty.
    clip : float
        Only rows with ``|residual| < clip * sqrt(sigma^2 + measurement_error^2)`` count (with
        the quoted, unscaled sigma), so that a few wrong measurements or outliers do not decide
        k.
    limits : (float, float)
        k is clipped to this range; the lower limit is returned when the estimated k^2 <= 0.
    min_rows : int
        With fewer usable rows than this, k cannot be measured and 1.0 is returned.
    max_error_ratio : float
        Only rows with ``measurement_error < max_error_ratio * sigma`` count (default: all).

    Returns
    -------
    float
        k, in ``limits``; 1.0 when it cannot be measured.
    """
    r, s, e = _usable_rows(residual, sigma, measurement_error, max_error_ratio, clip)
    if len(r) < min_rows:
        return 1.0
    return _scale(float(np.mean((r**2 - e**2) / s**2)), limits)


def coverage_matching_scale(
    residual: np.ndarray,
    sigma: np.ndarray,
    measurement_error: np.ndarray,
    coverage: float = 0.6827,
    limits: tuple[float, float] = (0.5, 2.0),
    min_rows: int = 20,
    max_error_ratio: float = np.inf,
) -> float:
    """The factor k for which +-sqrt(k^2 sigma^2 + sigma_meas^2) covers a fraction ``coverage``
    of the residuals (see the module docstring).

    Parameters
    ----------
    residual, sigma, measurement_error : array_like
        As for :func:`variance_matching_scale`.
    coverage : float
        Target fraction, in (0, 1) (default: the Gaussian 1-sigma fraction).
    limits, min_rows, max_error_ratio
        As for :func:`variance_matching_scale`. No clip is needed: a percentile is not moved by
        outliers.

    Returns
    -------
    float
        k, in ``limits``; 1.0 when it cannot be measured.
    """
    if not 0.0 < coverage < 1.0:
        raise ValueError(f"coverage = {coverage}: must lie in (0, 1).")
    r, s, e = _usable_rows(residual, sigma, measurement_error, max_error_ratio)
    if len(r) < min_rows:
        return 1.0
    return _scale(float(np.quantile(np.maximum(r**2 - e**2, 0.0) / s**2, coverage)), limits)


#: The per-cell statistics of :func:`binned_scales`.
SCALE_STATISTICS = {"variance": variance_matching_scale, "coverage": coverage_matching_scale}


def binned_scales(
    residual: np.ndarray,
    sigma: np.ndarray,
    measurement_error: np.ndarray,
    bin_index: np.ndarray,
    n_bins: int,
    statistic: str = "variance",
    **kwargs,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`variance_matching_scale` or :func:`coverage_matching_scale` (``statistic``
    "variance" or "coverage") in each bin of a precomputed bin index.

    Parameters
    ----------
    residual, sigma, measurement_error : array_like
        As for :func:`variance_matching_scale`.
    bin_index : array_like of int
        Bin of each row, 0..n_bins-1; rows outside that range are ignored.
    n_bins : int
        Number of bins.
    statistic : str
        "variance" or "coverage".
    **kwargs
        Passed to the statistic's function (``limits``, ``min_rows``, ``max_error_ratio``, and
        ``clip`` for variance or ``coverage`` for coverage).

    Returns
    -------
    scales : numpy.ndarray, shape (n_bins,)
        k per bin (1.0 where a bin has too few rows).
    counts : numpy.ndarray of int, shape (n_bins,)
        Rows per bin (before any clip).
    """
    try:
        fn = SCALE_STATISTICS[statistic]
    except KeyError:
        raise ValueError(
            f"statistic = {statistic!r}: must be one of {sorted(SCALE_STATISTICS)}."
        ) from None
    idx = np.asarray(bin_index)
    r, s, e = (np.asarray(a, dtype=np.float64) for a in (residual, sigma, measurement_error))
    scales = np.ones(n_bins)
    counts = np.zeros(n_bins, dtype=np.int64)
    for b in range(n_bins):
        m = idx == b
        counts[b] = int(m.sum())
        scales[b] = fn(r[m], s[m], e[m], **kwargs)
    return scales, counts


def quantile_edges(values: np.ndarray, n_bins: int) -> np.ndarray:
    """Interior edges that split the finite ``values`` into ``n_bins`` equally populated bins.

    Returns
    -------
    numpy.ndarray, shape (n_bins - 1,)
        Increasing edges (duplicates removed, so possibly fewer); use with
        :func:`numpy.searchsorted` (``side="right"``) to get bin indices 0..len(edges).
    """
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if len(v) == 0 or n_bins < 2:
        return np.empty(0)
    q = np.quantile(v, np.arange(1, n_bins) / n_bins)
    return np.unique(q)


def _mixture_loglike(
    r: np.ndarray, s: np.ndarray, e: np.ndarray, fraction: float, scale: float
) -> np.ndarray:
    """Per-row log likelihood of residuals r under the core/outlier mixture (see
    :func:`fit_outlier_mixture`), sigma ``s`` already scaled."""
    v_core, v_wide = s**2 + e**2, (scale * s) ** 2 + e**2
    core = np.log1p(-fraction) - 0.5 * (r**2 / v_core + np.log(v_core))
    wide = np.log(fraction) - 0.5 * (r**2 / v_wide + np.log(v_wide))
    return np.logaddexp(core, wide)


def fit_outlier_mixture(
    residual: np.ndarray,
    sigma: np.ndarray,
    measurement_error: np.ndarray,
    bin_index: np.ndarray,
    n_bins: int,
    n_iter: int = 1,
    limits: tuple[float, float] = (0.5, 2.0),
    min_rows: int = 20,
) -> tuple[np.ndarray, float, float]:
    """Scale per bin and a shared outlier component, by maximum likelihood.

    The model of a held-out residual r (prediction minus an independent measurement with
    error sigma_meas): with probability 1 - f, r ~ N(0, k^2 sigma^2 + sigma_meas^2); with
    probability f, r ~ N(0, b^2 k^2 sigma^2 + sigma_meas^2); k per bin, f and b shared. Red-clump
    and branch giants of the same colours make stage 1's errors such a mixture: most stars
    near the prediction, a few far off. Variance matching folds those few into k (the sigma
    of every star grows); here they get their own component, which the combination with Gaia
    (:func:`bigcat.astrometry.parallax.combine_parallaxes_with_outliers`) uses star by star.

    Fitted by alternating maximisation, starting from variance matching: (f, b) given the
    k's, then ``n_iter`` rounds of each k given (f, b) followed by (f, b) given the k's;
    deterministic.

    Parameters
    ----------
    residual, sigma, measurement_error : array_like
        As for :func:`variance_matching_scale`.
    bin_index : array_like of int
        Bin of each row, 0..n_bins-1; other rows are ignored.
    n_bins : int
        Number of bins.
    n_iter : int
        Rounds of the alternating fit (each round raises the likelihood). The default is one
        round: on the paper-size mock, iterating to the optimum moves f from 0.027 to 0.054
        and b from 2.6 to 2.4 and shrinks the core k's, and the combined parallaxes' pulls
        then come out wider overall (sd 1.09 -> 1.11; benchmarks/README.md): two components
        describe the tails only roughly, and one round keeps the quoted errors on the safe
        side.
    limits : (float, float)
        Range of each k; a bin with fewer than ``min_rows`` rows gets 1.

    Returns
    -------
    scales : numpy.ndarray, shape (n_bins,)
    outlier_fraction, outlier_scale : float
    """
    from scipy.optimize import minimize, minimize_scalar

    idx = np.asarray(bin_index)
    r, s, e = (np.asarray(a, dtype=np.float64) for a in (residual, sigma, measurement_error))
    ok = (idx >= 0) & (idx < n_bins) & np.isfinite(r) & np.isfinite(s) & np.isfinite(e) & (s > 0)
    idx, r, s, e = idx[ok], r[ok], s[ok], e[ok]
    scales, _ = binned_scales(r, s, e, idx, n_bins, "variance", limits=limits, min_rows=min_rows)
    counts = np.bincount(idx, minlength=n_bins)
    fraction, scale = 0.02, 3.0
    if len(r) < min_rows:
        return scales, fraction, scale

    def fit_shared(k: np.ndarray) -> tuple[float, float]:
        sk = s * k[idx]

        def nll(theta: np.ndarray) -> float:
            f = 1.0 / (1.0 + np.exp(-theta[0]))
            b = 1.0 + np.exp(theta[1])
            return -float(_mixture_loglike(r, sk, e, f, b).sum())

        start = np.array([np.log(fraction / (1 - fraction)), np.log(scale - 1.0)])
        res = minimize(nll, start, method="Nelder-Mead", options={"xatol": 1e-4, "fatol": 1e-3})
        return float(1.0 / (1.0 + np.exp(-res.x[0]))), float(1.0 + np.exp(res.x[1]))

    lo, hi = np.log(limits[0]), np.log(limits[1])
    fraction, scale = fit_shared(scales)
    for _ in range(max(int(n_iter), 1)):
        for b in range(n_bins):
            if counts[b] < min_rows:
                scales[b] = 1.0
                continue
            m = idx == b
            rb, sb, eb = r[m], s[m], e[m]
            res = minimize_scalar(
                lambda lk, rb=rb, sb=sb, eb=eb, f=fraction, w=scale: (
                    -float(_mixture_loglike(rb, sb * np.exp(lk), eb, f, w).sum())
                ),
                bounds=(lo, hi),
                method="bounded",
                options={"xatol": 1e-5},
            )
            scales[b] = float(np.exp(res.x))
        fraction, scale = fit_shared(scales)
    return scales, fraction, scale
