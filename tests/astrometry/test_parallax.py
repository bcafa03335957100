"""Eq. 8 scaling and the eq. 9-10 (corrected) parallax combination, worked by hand."""

from __future__ import annotations

import numpy as np
import pytest

from bigcat.astrometry import combine_parallaxes, parallax_from_pseudo_magnitude


def test_eq8_scaling_by_hand() -> None:
    # J0 = 10: 10^(-0.2 * 10) = 0.01
    p, s = parallax_from_pseudo_magnitude(np.array([250.0, -50.0]), np.array([20.0, 5.0]), 10.0)
    np.testing.assert_allclose(p, [2.5, -0.5])
    np.testing.assert_allclose(s, [0.2, 0.05])
    # J0 = 15: factor 10^-3; round trip with eq. 6
    p, s = parallax_from_pseudo_magnitude(1.7 * 10**3, 0.4 * 10**3, 15.0)
    assert p == pytest.approx(1.7) and s == pytest.approx(0.4)
    p, _ = parallax_from_pseudo_magnitude(np.nan, 1.0, 10.0)
    assert np.isnan(p)


def test_combination_by_hand() -> None:
    # Gaia 1.0 +- 0.3, NN 1.4 +- 0.4: weights 1/0.09 = 11.111, 1/0.16 = 6.25
    # mean = (11.111 * 1.0 + 6.25 * 1.4) / 17.361 = 19.861 / 17.361 = 1.144
    # sigma = 1 / sqrt(17.361) = 0.24 (= 0.3 * 0.4 / 0.5), NOT the printed eq. 10's sqrt
    p, s = combine_parallaxes(1.0, 0.3, 1.4, 0.4)
    assert p == pytest.approx(1.144, abs=1e-12)
    assert s == pytest.approx(0.24, abs=1e-12)
    # equal errors: plain mean, sigma / sqrt(2)
    p, s = combine_parallaxes(np.array([2.0]), np.array([0.5]), np.array([4.0]), np.array([0.5]))
    np.testing.assert_allclose(p, [3.0])
    np.testing.assert_allclose(s, [0.5 / np.sqrt(2.0)])
    # negative parallaxes combine linearly too
    p, s = combine_parallaxes(-0.2, 0.1, 0.4, 0.2)  # weights 100, 25
    assert p == pytest.approx((100 * -0.2 + 25 * 0.4) / 125)
    assert s == pytest.approx(1 / np.sqrt(125))


def test_missing_measurements_fall_back() -> None:
    pg = np.array([1.0, np.nan, 1.0, np.nan, 1.0, 0.5])
    sg = np.array([0.1, 0.1, 0.1, np.nan, 0.0, 0.1])
    pn = np.array([np.nan, 2.0, 2.0, np.nan, 2.0, 0.7])
    sn = np.array([0.2, 0.2, np.nan, 0.2, 0.2, -1.0])
    p, s = combine_parallaxes(pg, sg, pn, sn)
    np.testing.assert_array_equal(p[:3], [1.0, 2.0, 1.0])  # Gaia only, NN only, Gaia only
    np.testing.assert_array_equal(s[:3], [0.1, 0.2, 0.1])
    assert np.isnan(p[3]) and np.isnan(s[3])  # neither
    assert (p[4], s[4]) == (2.0, 0.2)  # zero sigma does not count
    assert (p[5], s[5]) == (0.5, 0.1)  # negative sigma does not count


def test_combination_never_worse_than_either() -> None:
    rng = np.random.default_rng(3)
    sg, sn = rng.uniform(0.01, 2, 1000), rng.uniform(0.01, 2, 1000)
    p, s = combine_parallaxes(rng.normal(size=1000), sg, rng.normal(size=1000), sn)
    assert np.all(s <= np.minimum(sg, sn) + 1e-15)
    assert np.all(np.isfinite(p))


def _mixture_posterior_on_grid(pg, sg, pn, sn, f, b):
    """Mean and sd of p(x) ~ N(pg | x, sg) [(1-f) N(pn | x, sn) + f N(pn | x, b sn)] on a grid."""
    x = np.linspace(min(pg, pn) - 20 * max(sg, b * sn), max(pg, pn) + 20 * max(sg, b * sn), 400_001)

    def normal(v, s):
        return np.exp(-0.5 * ((v - x) / s) ** 2) / s

    post = normal(pg, sg) * ((1 - f) * normal(pn, sn) + f * normal(pn, b * sn))
    post /= post.sum()
    mean = (x * post).sum()
    return mean, np.sqrt(((x - mean) ** 2 * post).sum())


def test_outlier_combination_is_the_mixture_posterior() -> None:
    from bigcat.astrometry import combine_parallaxes_with_outliers

    pg = np.array([1.0, 1.0, 1.0, 0.2, np.nan, 1.0])
    sg = np.array([0.3, 0.3, 0.3, 0.05, 0.3, 0.3])
    pn = np.array([1.1, 2.0, 4.0, 1.0, 1.5, np.nan])
    sn = np.array([0.2, 0.2, 0.2, 0.3, 0.2, 0.2])
    p, s = combine_parallaxes_with_outliers(pg, sg, pn, sn, 0.05, 3.0)
    for i in range(4):
        want = _mixture_posterior_on_grid(pg[i], sg[i], pn[i], sn[i], 0.05, 3.0)
        np.testing.assert_allclose([p[i], s[i]], want, rtol=1e-6, atol=1e-9)
    # one measurement missing: the other is passed through, as by eqs. 9-10
    np.testing.assert_array_equal(p[4:], [1.5, 1.0])
    np.testing.assert_array_equal(s[4:], [0.2, 0.3])
    # agreeing measurements: close to eqs. 9-10; conflicting ones: Gaia's weight grows
    p0, s0 = combine_parallaxes(pg, sg, pn, sn)
    assert abs(p[0] - p0[0]) < 0.01 and abs(s[0] / s0[0] - 1) < 0.05
    w_gaia = (p - pn) / (pg - pn)
    w_gaia0 = (p0 - pn) / (pg - pn)
    # (the outlier component's Gaia weight is 0.3^2 / (0.3^2 + 0.6^2) = 0.8; eq. 9's is 0.31)
    assert w_gaia[2] > 0.79 and w_gaia0[2] < 0.32


def test_outlier_combination_without_outliers_is_eq9() -> None:
    from bigcat.astrometry import combine_parallaxes_with_outliers

    rng = np.random.default_rng(5)
    pg, pn = rng.normal(1, 1, 100), rng.normal(1, 1, 100)
    sg, sn = rng.uniform(0.1, 1, 100), rng.uniform(0.1, 1, 100)
    for got, want in zip(
        combine_parallaxes_with_outliers(pg, sg, pn, sn, 0.0, 5.0),
        combine_parallaxes(pg, sg, pn, sn),
        strict=True,
    ):
        np.testing.assert_array_equal(got, want)
    with pytest.raises(ValueError, match="outlier_fraction"):
        combine_parallaxes_with_outliers(pg, sg, pn, sn, 1.0, 3.0)
    with pytest.raises(ValueError, match="outlier_scale"):
        combine_parallaxes_with_outliers(pg, sg, pn, sn, 0.1, 0.5)
