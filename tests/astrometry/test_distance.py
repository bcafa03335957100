"""GGD distance posterior: against brute-force integration, limits, edge cases."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.integrate import cumulative_trapezoid
from scipy.special import gammaincinv

from bigcat.astrometry import ggd_distance_posterior

QS = (0.5, 0.16, 0.84)


def brute_quantiles(plx: float, sig: float, length: float, alpha: float, beta: float) -> np.ndarray:
    """Quantiles of r (pc) by trapezoid integration on a 2M-point ln r grid over
    0.01 pc - 1e8 pc, refined to 400k points where the density is within e^-50 of its peak."""

    def logp(u: np.ndarray) -> np.ndarray:
        return (
            (beta + 1) * u
            - np.exp(alpha * (u - np.log(length)))
            - 0.5 * ((plx - 1000 * np.exp(-u)) / sig) ** 2
        )

    u = np.linspace(np.log(1e-2), np.log(1e8), 2_000_001)
    with np.errstate(over="ignore"):
        f = logp(u)
    keep = np.flatnonzero(f > f.max() - 50)
    u = np.linspace(u[max(keep[0] - 1, 0)], u[min(keep[-1] + 1, u.size - 1)], 400_001)
    f = logp(u)
    cdf = cumulative_trapezoid(np.exp(f - f.max()), u, initial=0.0)
    return np.exp(np.interp(QS, cdf / cdf[-1], u))


def _draw(seed: int) -> tuple[float, float, float, float, float]:
    """Seeded regime draw: prior L 100-3000 pc, alpha 0.5-2.5, beta 0.5-3; three kinds of
    star: true r from the prior with S/N 0.1-1000, parallax/sigma -2..5 at sigma 0.01-1 mas,
    and r log-uniform 50 pc - 10 kpc (independent of the prior) with S/N 0.5-1000."""
    rng = np.random.default_rng(seed)
    length = float(np.exp(rng.uniform(np.log(100), np.log(3000))))
    alpha, beta = float(rng.uniform(0.5, 2.5)), float(rng.uniform(0.5, 3.0))
    kind = seed % 3
    if kind == 0:
        r = length * gammaincinv((beta + 1) / alpha, rng.uniform()) ** (1 / alpha)
        sig = 1000 / r / np.exp(rng.uniform(np.log(0.1), np.log(1000)))
        plx = rng.normal(1000 / r, sig)
    elif kind == 1:
        sig = float(np.exp(rng.uniform(np.log(0.01), np.log(1.0))))
        plx = rng.uniform(-2, 5) * sig
    else:
        r = np.exp(rng.uniform(np.log(50), np.log(10_000)))
        plx = 1000 / r
        sig = plx / np.exp(rng.uniform(np.log(0.5), np.log(1000)))
    return float(plx), float(sig), length, alpha, beta


@pytest.mark.parametrize("seed", range(36))
def test_matches_brute_force(seed: int) -> None:
    plx, sig, length, alpha, beta = _draw(seed)
    ref = brute_quantiles(plx, sig, length, alpha, beta)
    got = ggd_distance_posterior(plx, sig, length, alpha, beta)[0]
    err = np.abs(got / ref - 1)
    assert err[0] < 0.005, (plx, sig, length, alpha, beta, got, ref)
    assert err[1:].max() < 0.01, (plx, sig, length, alpha, beta, got, ref)


@pytest.mark.parametrize(
    ("plx", "sig", "length", "alpha", "beta"),
    [
        (0.05, 0.0032, 114.0, 2.04, 1.1),  # prior and parallax in strong conflict (narrow)
        (0.0, 1.0, 1500.0, 1.0, 2.0),  # zero parallax
        (-3.0, 0.5, 800.0, 0.8, 2.5),  # significantly negative
        (2.0, 1e-4, 1000.0, 1.0, 2.0),  # S/N 20,000
        (0.3, 50.0, 300.0, 1.5, 1.0),  # huge sigma
        (1.2, 0.3, 2.46577536898538e-06, 0.190598387285447, 7.10289808688375),  # official pix 0
    ],
)
def test_hard_cases_match_brute_force(plx, sig, length, alpha, beta) -> None:
    ref = brute_quantiles(plx, sig, length, alpha, beta)
    got = ggd_distance_posterior(plx, sig, length, alpha, beta)[0]
    np.testing.assert_allclose(got, ref, rtol=0.005)


def test_high_snr_limit() -> None:
    plx = np.array([0.5, 2.0, 10.0])
    out = ggd_distance_posterior(plx, plx / 2000, 1500.0, 1.0, 2.0)
    np.testing.assert_allclose(out[:, 0], 1000 / plx, rtol=2e-4)
    np.testing.assert_allclose(out[:, 2] / out[:, 1], 1 + 2 / 2000, rtol=2e-4)


def test_negative_parallax_is_prior_dominated_and_finite() -> None:
    out = ggd_distance_posterior(np.array([-0.5, -0.05, 0.0]), 0.5, 1000.0, 1.0, 2.0)
    assert np.all(np.isfinite(out))
    # prior alone (sigma huge) has median L * gammaincinv(3, 0.5) = 2674 pc
    prior_only = ggd_distance_posterior(0.0, 1e6, 1000.0, 1.0, 2.0)[0, 0]
    assert prior_only == pytest.approx(1000 * gammaincinv(3.0, 0.5), rel=1e-3)
    # a negative parallax pushes the star beyond the prior median, within the prior range
    assert np.all(out[:, 0] > 0.8 * prior_only) and np.all(out[:, 0] < 5 * prior_only)
    assert out[0, 0] > out[2, 0]


def test_nan_and_invalid_inputs_give_nan_rows() -> None:
    plx = np.array([1.0, np.nan, 1.0, 1.0, 1.0, 1.0, 1.0])
    sig = np.array([0.1, 0.1, np.nan, 0.0, -0.1, 0.1, 0.1])
    length = np.array([1000.0, 1000.0, 1000.0, 1000.0, 1000.0, np.nan, -5.0])
    out = ggd_distance_posterior(plx, sig, length, 1.0, 2.0)
    assert np.all(np.isfinite(out[0]))
    assert np.all(np.isnan(out[1:]))


def test_quantiles_ordered_and_shape() -> None:
    rng = np.random.default_rng(7)
    n = 5000
    sig = np.exp(rng.uniform(np.log(0.01), np.log(2), n))
    out = ggd_distance_posterior(
        rng.normal(0.3, 0.5, n),
        sig,
        rng.uniform(100, 3000, n),
        rng.uniform(0.5, 2.5, n),
        rng.uniform(0.5, 3, n),
    )
    assert out.shape == (n, 3)
    assert np.all(out[:, 1] < out[:, 0]) and np.all(out[:, 0] < out[:, 2])
    custom = ggd_distance_posterior(1.0, 0.2, 1000.0, 1.0, 2.0, quantiles=(0.05, 0.5))
    assert custom.shape == (1, 2) and custom[0, 0] < custom[0, 1]
    with pytest.raises(ValueError, match="quantiles"):
        ggd_distance_posterior(1.0, 0.2, 1000.0, 1.0, 2.0, quantiles=(0.5, 1.0))


def test_independent_of_chunk_size() -> None:
    rng = np.random.default_rng(11)
    n = 3001
    args = (rng.normal(0.5, 1, n), rng.uniform(0.01, 1, n), 1200.0, 1.3, 1.7)
    ref = ggd_distance_posterior(*args, chunk_size=100_000)
    for chunk in (1, 7, 1000):
        np.testing.assert_array_equal(ggd_distance_posterior(*args, chunk_size=chunk), ref)


non_finite = st.sampled_from([np.nan, np.inf, -np.inf])


@settings(max_examples=400, deadline=None)
@given(
    plx=st.one_of(st.floats(-1e4, 1e4), non_finite),
    sig=st.one_of(st.floats(1e-8, 1e4), st.floats(-1.0, 0.0), non_finite),
    length=st.floats(1e-6, 1e5),
    alpha=st.floats(0.05, 10.0),
    beta=st.floats(-0.9, 20.0),
)
def test_hypothesis_never_raises(plx, sig, length, alpha, beta) -> None:
    out = ggd_distance_posterior(plx, sig, length, alpha, beta)
    assert out.shape == (1, 3)
    if np.isfinite(plx) and np.isfinite(sig) and sig > 0:
        assert np.all(np.isfinite(out)) and np.all(out > 0)
        assert out[0, 1] <= out[0, 0] <= out[0, 2]
    else:
        assert np.all(np.isnan(out))
