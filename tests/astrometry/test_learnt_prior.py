"""The distance prior learnt by deconvolution (bigcat.astrometry.learnt_prior), and the
posteriors built on tabulated priors (grid) and on a parallax posterior."""

from __future__ import annotations

import numpy as np
import pytest

from bigcat.astrometry.distance import grid_distance_posterior, parallax_posterior_distances
from bigcat.astrometry.learnt_prior import (
    GRID,
    GRID_STEP,
    LearntPrior,
    LearntPriorSettings,
    fit_learnt_prior,
    learnt_distance_quantiles,
    mag_bin,
    mag_centres,
    prior_half,
    selection_log_factor,
)
from bigcat.errors import CatalogError


def _survey(n: int, seed: int, frac=(0.05, 0.2)):
    """Stars in 40 level-5 pixels of two sky patches whose distance distributions differ,
    brighter stars nearer; Gaussian parallax errors of ``frac`` of the true parallax."""
    rng = np.random.default_rng(seed)
    pix = np.where(rng.uniform(size=n) < 0.5, rng.integers(0, 20, n), rng.integers(6000, 6020, n))
    mag = rng.uniform(12.0, 19.0, n)
    mu = np.where(pix < 100, 8.3, 9.0) + 0.2 * (mag - 15.5)  # ln r (pc)
    r = np.exp(rng.normal(mu, 0.25))
    sig = rng.uniform(*frac, n) * 1000.0 / r
    plx = 1000.0 / r + rng.normal(size=n) * sig
    sid = rng.permutation(n).astype(np.int64) * 7 + 11
    return sid, pix, mag, plx, sig, r, mu


@pytest.fixture(scope="module")
def fitted():
    sid, pix, mag, plx, sig, r, mu = _survey(60_000, 1)
    prior = fit_learnt_prior(sid, pix, mag, plx, sig, LearntPriorSettings())
    return prior, (sid, pix, mag, plx, sig, r, mu)


def test_deconvolved_prior_recovers_the_distance_distribution(fitted):
    prior, (sid, pix, mag, _, _, r, mu) = fitted
    rows = prior.log_prior_rows(pix, mag, sid).astype(float)
    p = np.exp(rows - rows.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    mean = p @ GRID
    sd = np.sqrt(p @ GRID**2 - mean**2)
    for patch in (pix < 100, pix >= 100):
        for lo, hi in ((13.0, 14.0), (16.0, 17.0)):
            m = patch & (mag >= lo) & (mag < hi)
            # the truth: ln r ~ N(mu, 0.25) (plus the bin's spread of mu, 0.06)
            assert np.mean(mean[m]) == pytest.approx(np.mean(mu[m]), abs=0.05)
            assert np.median(sd[m]) == pytest.approx(0.26, abs=0.07)


def test_priors_are_normalised_with_a_floor(fitted):
    prior, _ = fitted
    dens = np.exp(prior.log_density.astype(float))
    np.testing.assert_allclose(dens.sum(axis=-1) * GRID_STEP, 1.0, rtol=2e-3)
    assert np.isfinite(prior.log_density).all()
    # a cell with no stars at all still gets a prior (its parents')
    assert np.isfinite(prior.log_density[0, 12_000]).all()


def test_posterior_with_the_learnt_prior_is_calibrated(fitted):
    prior, (sid, pix, mag, plx, sig, r, _) = fitted
    q = learnt_distance_quantiles(prior, plx, sig, pix, mag, sid)
    med, p16, p84 = q.T
    assert np.mean((r > p16) & (r < p84)) == pytest.approx(0.68, abs=0.03)
    for lo, hi in ((12, 15), (15, 17), (17, 19)):
        m = (mag >= lo) & (mag < hi)
        assert abs(np.median((med[m] - r[m]) / r[m])) < 0.02


def test_cross_fitting_uses_the_other_half():
    sid, pix, mag, plx, sig, _, _ = _survey(4_000, 2)
    half = prior_half(sid)
    assert 0.4 < half.mean() < 0.6
    prior = fit_learnt_prior(sid, pix, mag, plx, sig)
    # moving half 0's stars far away changes only the prior used by half 1
    far = np.where(half == 0, plx / 5.0, plx)
    other = fit_learnt_prior(sid, pix, mag, far, sig)
    np.testing.assert_array_equal(prior.log_density[0], other.log_density[0])
    assert not np.array_equal(prior.log_density[1], other.log_density[1])


def test_truncation_model_removes_the_selection_bias():
    """Stars kept only when their noisy parallax is below a bound: the truncated likelihood
    recovers the distances the plain one puts too far out."""
    rng = np.random.default_rng(4)
    n = 40_000
    r = np.exp(rng.normal(8.0, 0.3, n))
    sig = 0.4 * 1000.0 / r
    plx = 1000.0 / r + rng.normal(size=n) * sig
    bound = 1.1 * 1000.0 / r * np.exp(rng.normal(0.0, 0.05, n))
    kept = plx < bound
    sid = np.arange(n, dtype=np.int64)[kept]
    args = (sid, np.zeros(kept.sum(), int), np.full(kept.sum(), 15.0), plx[kept], sig[kept])
    plain = fit_learnt_prior(*args)
    trunc = fit_learnt_prior(*args, upper_bound=bound[kept])

    cell = int(mag_bin(np.array([15.0]), LearntPriorSettings().mag_edges)[0])

    def mean_u(prior):
        d = np.exp(prior.log_density[0, 0, cell].astype(float))
        return float((d * GRID).sum() / d.sum())

    truth = float(np.mean(np.log(r[kept])))
    assert abs(mean_u(trunc) - truth) < abs(mean_u(plain) - truth)
    assert mean_u(trunc) == pytest.approx(truth, abs=0.06)


def test_selection_factor():
    f = selection_log_factor(np.array([0.0, 5.0]), 1.0, np.array([0.0, np.inf]))
    np.testing.assert_allclose(f, [np.log(2.0), 0.0])


def test_save_load_round_trip_and_damage(tmp_path, fitted):
    prior, (sid, pix, mag, _, _, _, _) = fitted
    path = tmp_path / "prior.npz"
    prior.save(path)
    back = LearntPrior.load(path)
    np.testing.assert_array_equal(back.log_density, prior.log_density)
    assert back.settings == prior.settings and back.fingerprint() == prior.fingerprint()
    side = path.with_suffix(".json")
    side.write_text(side.read_text().replace(prior.fingerprint(), "0" * 16))
    with pytest.raises(CatalogError, match="does not match its sidecar"):
        LearntPrior.load(path)


def test_mag_centres():
    np.testing.assert_allclose(mag_centres((13.0, 14.0, 15.0)), [12.5, 13.5, 14.5, 15.5])


def test_grid_posterior_matches_brute_force():
    rng = np.random.default_rng(5)
    n = 300
    mu = rng.uniform(7.0, 10.0, n)
    lp = -0.5 * ((GRID[None, :] - mu[:, None]) / 0.4) ** 2
    r = np.exp(rng.normal(mu, 0.4))
    sig = rng.uniform(0.02, 1.0, n) * 1000.0 / r
    plx = 1000.0 / r + rng.normal(size=n) * sig
    plx[:5] = -0.3 * sig[:5]  # negative parallaxes are data
    q = grid_distance_posterior(plx, sig, lp, GRID)
    u = np.linspace(GRID[0], GRID[-1], 200_001)
    for i in range(n):
        prior = np.interp(u, GRID, lp[i])
        logp = prior - 0.5 * ((plx[i] - 1000.0 * np.exp(-u)) / sig[i]) ** 2
        c = np.cumsum(np.exp(logp - logp.max()))
        ref = np.exp(np.interp([0.5, 0.16, 0.84], c / c[-1], u))
        np.testing.assert_allclose(q[i], ref, rtol=2e-3)


def test_parallax_posterior_distances():
    out = parallax_posterior_distances([2.0, 0.1], [0.1, 0.2])
    # far from 0: the parallax quantiles inverted
    np.testing.assert_allclose(out[0], [500.0, 1000.0 / 2.0994458, 1000.0 / 1.9005542], rtol=1e-6)
    # near 0: the posterior truncated at parallax 0, still ordered and finite
    assert np.all(np.isfinite(out[1])) and out[1, 1] < out[1, 0] < out[1, 2]
    from scipy.stats import truncnorm

    a = (0 - 0.1) / 0.2
    ref = 1000.0 / truncnorm.ppf([0.5, 0.84, 0.16], a, np.inf, loc=0.1, scale=0.2)
    np.testing.assert_allclose(out[1], ref, rtol=1e-6)
    assert np.isnan(parallax_posterior_distances([1.0, -10.0], [0.0, 1.0])).all()


def test_halves_fitted_apart_equal_the_whole_fit():
    """The stage fits the two cross-fitted halves as two tasks; joined, they are the serial
    fit exactly."""
    from bigcat.astrometry.learnt_prior import combine_halves, fit_learnt_prior_half

    rng = np.random.default_rng(11)
    n = 3000
    sid = rng.integers(0, 2**40, n)
    pix = rng.integers(0, 12 * 4**5, n)
    mag = rng.uniform(12.0, 18.0, n)
    dist_kpc = rng.uniform(1.0, 10.0, n)
    sig = rng.uniform(0.02, 0.2, n)
    plx = 1.0 / dist_kpc + sig * rng.standard_normal(n)
    s = LearntPriorSettings()
    whole = fit_learnt_prior(sid, pix, mag, plx, sig, s)
    halves = [fit_learnt_prior_half(h, sid, pix, mag, plx, sig, s) for h in (1, 0)][::-1]
    joined = combine_halves(halves, s, n)
    np.testing.assert_array_equal(joined.log_density, whole.log_density)
    assert joined.info == whole.info
