"""Variance- and coverage-matching recalibration of network sigmas (bigcat.nn.calibration)."""

from __future__ import annotations

import numpy as np
import pytest

from bigcat.nn.calibration import (
    binned_scales,
    coverage_matching_scale,
    quantile_edges,
    variance_matching_scale,
)


def _residuals(rng, n, k, sigma, meas_err):
    return rng.normal(0, 1, n) * k * sigma + rng.normal(0, 1, n) * meas_err


def test_recovers_the_scale_with_small_measurement_errors():
    rng = np.random.default_rng(1)
    n = 20_000
    sigma = rng.uniform(0.1, 0.3, n)
    err = rng.uniform(0.02, 0.1, n)
    res = _residuals(rng, n, 1.4, sigma, err)
    assert variance_matching_scale(res, sigma, err) == pytest.approx(1.4, rel=0.03)


def test_max_error_ratio_drops_rows_that_only_add_noise():
    """80% of rows have a measurement error 10x sigma: leaving them out (they carry almost no
    information on k) makes the estimate several times more precise."""
    n = 20_000
    errors_cut, errors_all = [], []
    for seed in range(20):
        rng = np.random.default_rng(seed)
        sigma = np.full(n, 0.1)
        err = np.where(rng.random(n) < 0.8, 1.0, 0.02)
        res = _residuals(rng, n, 1.2, sigma, err)
        kw = dict(limits=(0.1, 10.0), clip=50.0)
        errors_cut.append(variance_matching_scale(res, sigma, err, max_error_ratio=5, **kw) - 1.2)
        errors_all.append(variance_matching_scale(res, sigma, err, **kw) - 1.2)
    assert np.sqrt(np.mean(np.square(errors_cut))) < 0.02
    assert np.std(errors_all) > 3 * np.std(errors_cut)


def test_limits_too_few_rows_and_clipping():
    rng = np.random.default_rng(2)
    n = 5_000
    sigma = np.full(n, 0.2)
    err = np.full(n, 0.05)
    res = _residuals(rng, n, 1.0, sigma, err)
    assert variance_matching_scale(res[:10], sigma[:10], err[:10]) == 1.0
    assert variance_matching_scale(res[:10], sigma[:10], err[:10], min_rows=5) != 1.0
    # residuals smaller than the measurement error alone: k^2 <= 0 -> the lower limit
    assert variance_matching_scale(res * 0.01, sigma, np.full(n, 1.0)) == 0.5
    big = _residuals(rng, n, 5.0, sigma, err)
    assert variance_matching_scale(big, sigma, err, clip=50.0) == 2.0
    assert variance_matching_scale(big, sigma, err, clip=50.0, limits=(0.5, 10.0)) == (
        pytest.approx(5.0, rel=0.05)
    )
    # NaN rows and non-positive sigmas are ignored, outliers clipped
    res2 = res.copy()
    res2[:100] = np.nan
    sig2 = sigma.copy()
    sig2[100:200] = 0.0
    res2[200:260] = 30.0
    assert variance_matching_scale(res2, sig2, err) == pytest.approx(1.0, rel=0.04)


def test_binned_scales_recover_each_bin_and_ignore_other_indices():
    rng = np.random.default_rng(3)
    n = 30_000
    idx = rng.integers(-1, 4, n)  # -1: not used
    k_true = np.array([0.8, 1.0, 1.3, 1.6])
    sigma = rng.uniform(0.1, 0.2, n)
    err = np.full(n, 0.03)
    res = _residuals(rng, n, np.where(idx >= 0, k_true[idx], 5.0), sigma, err)
    scales, counts = binned_scales(res, sigma, err, idx, 4)
    np.testing.assert_allclose(scales, k_true, rtol=0.04)
    np.testing.assert_array_equal(counts, [(idx == b).sum() for b in range(4)])
    scales5, counts5 = binned_scales(res, sigma, err, idx, 5)
    assert counts5[4] == 0 and scales5[4] == 1.0


def test_coverage_matching_agrees_with_variance_matching_for_gaussian_residuals():
    rng = np.random.default_rng(5)
    n = 40_000
    sigma = rng.uniform(0.1, 0.3, n)
    err = rng.uniform(0.02, 0.2, n)
    res = _residuals(rng, n, 1.3, sigma, err)
    k = coverage_matching_scale(res, sigma, err)
    assert k == pytest.approx(1.3, rel=0.03)
    assert k == pytest.approx(variance_matching_scale(res, sigma, err), rel=0.03)
    # the scaled intervals cover 68.27% by construction
    covered = np.abs(res) <= np.hypot(k * sigma, err)
    assert covered.mean() == pytest.approx(0.6827, abs=0.002)


def test_coverage_matching_follows_the_core_of_heavy_tailed_residuals():
    """Half the stars with sigma 1.6x too large, half 0.6x too small (an overlap of two
    populations): variance matching lets the tail decide and over-covers; coverage matching
    gives 68% coverage."""
    rng = np.random.default_rng(6)
    n = 60_000
    sigma = np.full(n, 0.2)
    err = np.full(n, 0.02)
    k_true = np.where(rng.random(n) < 0.5, 0.6, 1.6)
    res = _residuals(rng, n, k_true, sigma, err)
    kv = variance_matching_scale(res, sigma, err, clip=50.0)
    kc = coverage_matching_scale(res, sigma, err)
    cov_v = (np.abs(res) <= np.hypot(kv * sigma, err)).mean()
    cov_c = (np.abs(res) <= np.hypot(kc * sigma, err)).mean()
    assert cov_v > 0.72
    assert cov_c == pytest.approx(0.6827, abs=0.005)
    assert kc < kv


def test_coverage_matching_limits_and_bad_rows():
    rng = np.random.default_rng(7)
    n = 5_000
    sigma = np.full(n, 0.2)
    err = np.full(n, 0.05)
    res = _residuals(rng, n, 1.0, sigma, err)
    assert coverage_matching_scale(res[:10], sigma[:10], err[:10]) == 1.0
    assert coverage_matching_scale(res * 0.01, sigma, np.full(n, 1.0)) == 0.5
    res2 = res.copy()
    res2[:100] = np.nan
    res2[100:150] = 1e6  # 1% wild outliers move a percentile only slightly
    assert coverage_matching_scale(res2, sigma, err) == pytest.approx(1.0, rel=0.04)
    with pytest.raises(ValueError, match="coverage"):
        coverage_matching_scale(res, sigma, err, coverage=1.0)
    with pytest.raises(ValueError, match="statistic"):
        binned_scales(res, sigma, err, np.zeros(n, int), 1, statistic="median")
    scales, _ = binned_scales(res, sigma, err, np.zeros(n, int), 1, statistic="coverage")
    assert scales[0] == pytest.approx(1.0, rel=0.05)


def test_quantile_edges_split_evenly():
    rng = np.random.default_rng(4)
    v = rng.normal(size=10_001)
    v[:50] = np.nan
    edges = quantile_edges(v, 5)
    assert len(edges) == 4 and np.all(np.diff(edges) > 0)
    counts = np.bincount(np.searchsorted(edges, v[50:], side="right"), minlength=5)
    assert counts.max() - counts.min() <= 5
    assert len(quantile_edges(np.ones(100), 4)) == 1  # duplicates collapse
    assert len(quantile_edges(v, 1)) == 0


def test_outlier_mixture_recovers_scales_fraction_and_width():
    """Residuals whose sigma is k times too small per bin, a fraction f of them b times wider
    still: the fit recovers each k (not inflated by the outliers, as variance matching is),
    f and b."""
    from bigcat.nn.calibration import fit_outlier_mixture

    rng = np.random.default_rng(11)
    n = 60_000
    idx = rng.integers(0, 3, n)
    k = np.array([0.7, 1.0, 1.4])[idx]
    sigma = rng.uniform(0.5, 2.0, n)
    meas = sigma * rng.uniform(0.2, 1.5, n)
    wide = rng.random(n) < 0.04
    r = rng.normal(size=n) * k * sigma * np.where(wide, 3.5, 1.0) + rng.normal(size=n) * meas
    scales, f, b = fit_outlier_mixture(r, sigma, meas, idx, 3, n_iter=10)
    np.testing.assert_allclose(scales, [0.7, 1.0, 1.4], rtol=0.03)
    assert abs(f - 0.04) < 0.01 and abs(b - 3.5) < 0.4
    variance, _ = binned_scales(r, sigma, meas, idx, 3)
    assert (variance > 1.05 * np.array([0.7, 1.0, 1.4])).all()
    # deterministic
    again = fit_outlier_mixture(r, sigma, meas, idx, 3, n_iter=10)
    np.testing.assert_array_equal(again[0], scales)
    assert again[1:] == (f, b)
    # the default single round already moves each k most of the way from variance matching
    one, _, _ = fit_outlier_mixture(r, sigma, meas, idx, 3)
    assert (np.abs(one - scales) < 0.5 * np.abs(variance - scales)).all()
