"""The two-component velocity mixture (paper eqs 12-14): likelihood, priors, parameterisation,
the EM and Laplace fits (``mixture_fit``) and the simulators (``mixture_sim``)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate, stats

from bigcat.analysis import mixture as mx
from bigcat.analysis import mixture_fit as mf
from bigcat.analysis import mixture_sim as sim
from bigcat.errors import ConfigError, InputError


def _data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    err = sim.random_error_covariances(n, rng)
    covs = np.stack([sim.tilted_covariance((120, 85, 80), -20.0), 140.0**2 * np.eye(3)])
    v, _ = sim.sample_mixture(0.75, [[10, -50, 0], [0, 0, 0]], covs, err, rng)
    return v, err


def _random_theta(variant: str, w: int, seed: int, scale: float = 1.0) -> np.ndarray:
    """Walkers scattered around a plausible point (dispersions ~30-300 km/s)."""
    rng = np.random.default_rng(seed)
    p = mx.n_params(variant)
    theta = scale * rng.standard_normal((w, p))
    names = mx.parameter_names(variant)
    for j, name in enumerate(names):
        if name.startswith("ln_sigma"):
            theta[:, j] = rng.uniform(math.log(30), math.log(300), w)
        elif name.startswith("mu_"):
            theta[:, j] = rng.normal(0, 50, w)
    theta[:, 0] = np.clip(theta[:, 0], -3.0, 2.0)  # f < 0.94 (the prior's max_weight: 0.95)
    return theta


@pytest.mark.parametrize("variant", ["fitted", "zeroed"])
def test_likelihood_matches_scipy(variant: str) -> None:
    v, err = _data(37, seed=1)
    theta = _random_theta(variant, 5, seed=2)
    state = mx.unpack(theta, variant)
    got = mx.log_likelihood(state, v, err)
    for w in range(theta.shape[0]):
        f = state.weight[w]
        dens = np.zeros(len(v))
        for i in range(len(v)):
            for k, wk in enumerate((f, 1 - f)):
                dens[i] += wk * stats.multivariate_normal(
                    state.means[w, k], state.covs[w, k] + err[i]
                ).pdf(v[i])
        assert got[w] == pytest.approx(np.log(dens).sum(), rel=1e-10, abs=1e-8)
    if variant == "zeroed":
        assert np.all(state.means == 0)


def test_likelihood_blocks_do_not_change_result(monkeypatch: pytest.MonkeyPatch) -> None:
    v, err = _data(101, seed=3)
    state = mx.unpack(_random_theta("fitted", 7, seed=4), "fitted")
    ref = mx.log_likelihood(state, v, err, backend="numpy")
    monkeypatch.setattr(mx, "_BLOCK_ELEMENTS", 7 * 3)  # 3 stars per block, ragged last block
    blocked = mx.log_likelihood(state, v, err, backend="numpy")
    np.testing.assert_allclose(blocked, ref, rtol=1e-12)


@pytest.mark.parametrize("variant", ["fitted", "zeroed"])
def test_vectorised_posterior_equals_loop(variant: str) -> None:
    v, err = _data(250, seed=5)
    post = mx.MixturePosterior(v, err, variant)
    theta = _random_theta(variant, 40, seed=6)
    theta[3, mx.parameter_names(variant).index("ln_sigma_major_x")] = 50.0  # off support
    got = post(theta)
    loop = np.array([post(t)[0] for t in theta])
    np.testing.assert_allclose(got, loop, rtol=1e-12)
    assert got[3] == -np.inf and np.isfinite(np.delete(got, 3)).all()
    lp = mx.log_prior(theta, variant) + 0.0
    ok = np.isfinite(lp)
    ll = mx.log_likelihood(mx.unpack(theta[ok], variant), v, err)
    np.testing.assert_allclose(got[ok], lp[ok] + ll, rtol=1e-12)


def test_covariances_positive_definite_for_random_vectors() -> None:
    rng = np.random.default_rng(7)
    ln_sig = rng.uniform(math.log(1.0), math.log(1000.0), (5000, 2, 3))
    # atanh(CPC) up to 6: correlations up to 1 - 1e-5 (the prior puts ~1e-9 of its mass
    # beyond |atanh| = 5; up to the bound of 10 the factor L stays non-singular, below).
    cpc = np.clip(rng.normal(0.0, 2.5, (5000, 2, 3)), -6.0, 6.0)
    cov = mx.covariance_from_unconstrained(ln_sig, cpc)
    assert cov.shape == (5000, 2, 3, 3)
    np.testing.assert_array_equal(cov, np.swapaxes(cov, -1, -2))
    np.testing.assert_allclose(np.diagonal(cov, axis1=-2, axis2=-1), np.exp(2 * ln_sig))
    np.linalg.cholesky(cov)  # raises if any is not positive definite
    corr = cov / np.sqrt(
        np.diagonal(cov, axis1=-2, axis2=-1)[..., :, None]
        * np.diagonal(cov, axis1=-2, axis2=-1)[..., None, :]
    )
    assert np.all(np.linalg.eigvalsh(corr)[..., 0] > 0)
    # Anywhere in the prior's support the determinant, prod(sigma^2 (1 - z^2) terms), is > 0
    # and the covariance plus a star's error covariance is numerically positive definite.
    edge = rng.uniform(-mx.CPC_ATANH_MAX, mx.CPC_ATANH_MAX, (5000, 3))
    c = 1 / np.cosh(edge)
    assert np.all(c[:, 0] ** 2 * c[:, 1] ** 2 * c[:, 2] ** 2 > 0)
    big = mx.covariance_from_unconstrained(rng.uniform(0, math.log(1000), (5000, 3)), edge)
    np.linalg.cholesky(big + sim.random_error_covariances(5000, rng))
    theta = np.concatenate(
        [rng.normal(0, 3, (5000, 7)), np.concatenate([ln_sig, cpc], -1).reshape(5000, 12)], 1
    )
    st = mx.unpack(theta, "fitted")
    assert np.all((st.weight >= 0.5) & (st.weight <= 1.0))
    np.linalg.cholesky(st.covs)


@pytest.mark.parametrize("variant", ["fitted", "zeroed"])
def test_pack_unpack_round_trip(variant: str) -> None:
    theta = _random_theta(variant, 30, seed=8, scale=1.5)
    st = mx.unpack(theta, variant)
    back = mx.pack(st.weight, st.means, st.covs, variant)
    np.testing.assert_allclose(back, theta, rtol=1e-8, atol=1e-8)
    single = mx.pack(float(st.weight[0]), st.means[0], st.covs[0], variant)
    assert single.shape == (mx.n_params(variant),)
    np.testing.assert_allclose(single, theta[0], atol=1e-8)
    assert len(mx.parameter_names(variant)) == mx.n_params(variant) == theta.shape[1]


def test_pack_physical_round_trip_and_bad_weight() -> None:
    covs = np.stack([sim.tilted_covariance((120, 85, 80), -20.0), np.diag([150.0, 140, 130]) ** 2])
    means = np.array([[10.0, -50.0, 3.0], [0.0, 1.0, 2.0]])
    st = mx.unpack(mx.pack(0.7, means, covs, "fitted"), "fitted")
    assert st.weight[0] == pytest.approx(0.7)
    np.testing.assert_allclose(st.means[0], means, atol=1e-10)
    np.testing.assert_allclose(st.covs[0], covs, rtol=1e-10, atol=1e-8)
    with pytest.raises(ConfigError, match="weight"):
        mx.pack(0.3, means, covs, "fitted")


def test_weight_prior_is_uniform_on_half_to_one() -> None:
    # f = 0.5 + 0.5 sigmoid(u); exp(log prior) as a density of u is uniform in f: 1/2 of
    # the untruncated mass lies below u = 0 (f < 0.75).
    theta = np.zeros((1, 13))
    theta[0, 1:4] = theta[0, 7:10] = math.log(100.0)
    ref = mx.log_prior(theta, "zeroed")[0]

    def dens(u: float) -> float:
        t = theta.copy()
        t[0, 0] = u
        return 0.25 * math.exp(mx.log_prior(t, "zeroed")[0] - ref)

    # Truncated at max_weight = 0.95 (u = logit(0.9)): 0.9 of the untruncated mass remains.
    total = integrate.quad(dens, -40, 40, points=[math.log(9.0)])[0]
    half = integrate.quad(dens, -40, 0)[0]
    assert total == pytest.approx(0.9, rel=1e-6)
    assert half == pytest.approx(0.5, rel=1e-6)
    assert dens(math.log(9.0) + 1e-9) == 0.0 and dens(math.log(9.0) - 1e-9) > 0


def test_cpc_prior_is_lkj() -> None:
    """The log prior of the CPCs is Beta(eta + 1/2) for the first level and Beta(eta) for
    the partial one (with the tanh Jacobian), and those CPC laws give LKJ(eta) correlation
    matrices: each correlation's marginal is Beta(eta + 1/2, eta + 1/2) on (-1, 1)."""
    eta = 2.0
    prior = mx.MixturePrior(lkj_eta=eta)
    rng = np.random.default_rng(9)
    y = rng.normal(0, 1.2, (200, 3))
    theta = np.zeros((200, 13))
    theta[:, 1:4] = theta[:, 7:10] = math.log(100.0)
    theta[:, 4:7] = y
    got = mx.log_prior(theta, "zeroed", prior)
    z = np.tanh(y)
    expect = sum(
        stats.beta.logpdf((z[:, j] + 1) / 2, b, b) + np.log1p(-(z[:, j] ** 2))
        for j, b in enumerate((eta + 0.5, eta + 0.5, eta))
    )
    diff = got - expect
    np.testing.assert_allclose(diff, diff[0], atol=1e-9)
    # Draw CPCs from those Betas and check the implied correlations' marginals.
    n = 200_000
    cpc = np.column_stack([2 * rng.beta(b, b, n) - 1 for b in (eta + 0.5, eta + 0.5, eta)])
    cov = mx.covariance_from_unconstrained(np.zeros((n, 3)), np.arctanh(cpc))
    target = stats.beta(eta + 0.5, eta + 0.5, loc=-1, scale=2)
    for i, j in ((0, 1), (0, 2), (1, 2)):
        r = cov[:, i, j]
        assert r.var() == pytest.approx(target.var(), rel=0.02)
        assert stats.kstest(r[:5000], target.cdf).pvalue > 1e-3


def test_log_prior_support() -> None:
    prior = mx.MixturePrior(sigma_min_kms=5.0, sigma_max_kms=500.0)
    theta = np.zeros((4, 19))
    theta[:, 7:10] = theta[:, 13:16] = math.log(100.0)
    theta[1, 8] = math.log(4.0)  # below sigma_min
    theta[2, 15] = math.log(600.0)  # above sigma_max
    theta[3, 12] = 10.5  # |atanh CPC| > 10
    lp = mx.log_prior(theta, "fitted", prior)
    assert np.isfinite(lp[0]) and np.all(lp[1:] == -np.inf)
    with pytest.raises(ConfigError):
        mx.MixturePrior(sigma_min_kms=10.0, sigma_max_kms=5.0)
    with pytest.raises(ConfigError, match="variant"):
        mx.n_params("free")


@pytest.mark.parametrize(
    ("cov", "expected"),
    [
        ([[3.0, 1.0], [1.0, 1.0]], 22.5),  # 0.5 arctan(2 / 2)
        ([[3.0, -1.0], [-1.0, 1.0]], -22.5),
        ([[1.0, -1.0], [-1.0, 3.0]], 22.5),  # s_X < s_Y: eq. 12 as written, in [-45, 45]
        ([[4.0, math.sqrt(3.0)], [math.sqrt(3.0), 2.0]], 30.0),  # 0.5 arctan(sqrt 3)
        ([[2.0, 0.0], [0.0, 1.0]], 0.0),
        ([[2.0, 1.0], [1.0, 2.0]], 45.0),  # s_X = s_Y: the limit sign(s_XY) 45
        ([[2.0, -1.0], [-1.0, 2.0]], -45.0),
        ([[2.0, 0.0], [0.0, 2.0]], 0.0),  # isotropic: undefined, reported as 0
        ([[3.0, 1.0, 0.7], [1.0, 1.0, -0.3], [0.7, -0.3, 5.0]], 22.5),  # Z terms ignored
    ],
)
def test_vertex_angle_hand_worked(cov: list[list[float]], expected: float) -> None:
    assert float(mx.vertex_angle_deg(cov)) == pytest.approx(expected, abs=1e-12)


def test_vertex_angle_of_tilted_ellipsoids() -> None:
    angles = np.array([-44.0, -20.0, -5.0, 0.0, 12.5, 44.0])
    covs = np.stack([sim.tilted_covariance((120, 85, 80), a) for a in angles])
    np.testing.assert_allclose(mx.vertex_angle_deg(covs), angles, atol=1e-10)
    # The major axis lies along the direction at the vertex angle.
    evals, evecs = np.linalg.eigh(covs[1, :2, :2])
    major = evecs[:, 1] * np.sign(evecs[0, 1])
    assert math.degrees(math.atan2(major[1], major[0])) == pytest.approx(-20.0)


def test_check_velocities_rejects_bad_input() -> None:
    v, err = _data(10, seed=10)
    bad = err.copy()
    bad[4] = np.diag([100.0, 100.0, -1.0])
    with pytest.raises(InputError, match="index 4"):
        mx.check_velocities(v, bad)
    v2 = v.copy()
    v2[2, 1] = np.nan
    with pytest.raises(InputError, match="index 2"):
        mx.check_velocities(v2, err)
    with pytest.raises(InputError, match="expected"):
        mx.check_velocities(v[:, :2], err)


def test_error_covariance_and_sampler_of_mixture() -> None:
    c = mx.error_covariance([1.0, 2.0], [3.0, 4.0], [5.0, 6.0], [0.1, 0.2], [0.3, 0.4], [0.5, 0.6])
    np.testing.assert_allclose(c[1], [[4.0, 0.2, 0.4], [0.2, 16.0, 0.6], [0.4, 0.6, 36.0]])
    rng = np.random.default_rng(11)
    n = 40_000
    err = np.broadcast_to(np.diag([10.0, 20.0, 30.0]) ** 2, (n, 3, 3))
    covs = np.stack([np.diag([50.0, 40.0, 30.0]) ** 2, 200.0**2 * np.eye(3)])
    v, major = sim.sample_mixture(0.8, [[5, 6, 7], [0, 0, 0]], covs, err, rng)
    assert major.dtype == bool and major.mean() == pytest.approx(0.8, abs=0.01)
    np.testing.assert_allclose(v[major].mean(0), [5, 6, 7], atol=1.5)
    np.testing.assert_allclose(np.cov(v[major].T), covs[0] + err[0], rtol=0.05, atol=60)


def test_initial_theta_has_finite_posterior() -> None:
    v, err = _data(500, seed=12)
    for variant in ("fitted", "zeroed"):
        post = mx.MixturePosterior(v, err, variant)
        t0 = mf.initial_theta(v, err, variant)
        assert t0.shape == (post.ndim,) and np.isfinite(post(t0)[0])
        st = mx.unpack(t0, variant)
        assert st.weight[0] == pytest.approx(0.8)


@pytest.mark.parametrize("variant", ["fitted", "zeroed"])
def test_compiled_likelihood_equals_numpy_reference(variant: str) -> None:
    """The numba loop and the numpy reference agree, also where the fast path underflows
    (1 km/s dispersions put stars ~100 sigma out) and at f = 1 (ln(1 - f) = -inf)."""
    v, err = _data(257, seed=30)
    theta = _random_theta(variant, 9, seed=31)
    names = mx.parameter_names(variant)
    sig = [j for j, n in enumerate(names) if n.startswith("ln_sigma_major")]
    theta[1, sig] = 0.0  # 1 km/s major component
    theta[2, 0] = 60.0  # f rounds to 1
    state = mx.unpack(theta, variant)
    fast = mx.log_likelihood(state, v, err)
    ref = mx.log_likelihood(state, v, err, backend="numpy")
    np.testing.assert_allclose(fast, ref, rtol=1e-11)
    assert np.all(np.isfinite(fast))
    with pytest.raises(ConfigError, match="backend"):
        mx.log_likelihood(state, v, err, backend="cuda")


@pytest.mark.parametrize("precision", ["float64", "float32"])
@pytest.mark.parametrize(("n_star", "n_walk"), [(1, 1), (1, 6), (1037, 1), (1037, 5)])
def test_compiled_likelihood_edge_cases(n_star: int, n_walk: int, precision: str) -> None:
    """The vectorised kernel (blocks of 512 stars, partial sums of 8) against the numpy
    reference: one star, a star count that is a multiple of neither, one walker; stars so far
    out that both densities underflow; a walker whose only non-underflowing component has
    zero weight (f = 1: the kernel's fix-up pass); -inf for non-positive determinants. In
    float32 the stars ~1e7 sigma out are summed from float32 terms (ulp 1 at 1e7), so the
    tolerance is float32's."""
    rtol = 1e-12 if precision == "float64" else 1e-6
    v, err = _data(n_star, seed=40)
    rng = np.random.default_rng(41)
    far = rng.uniform(size=n_star) < 0.1
    far[0] = True
    v[far] *= rng.uniform(5.0, 2000.0, (far.sum(), 1))  # q/2 up to ~1e7
    if n_star > 1:
        v[1] = [30000.0, 0.0, 0.0]
    state = mx.unpack(_random_theta("fitted", n_walk, seed=42), "fitted")
    state.means[0, 1] = [30000.0, 0.0, 0.0]  # walker 0: minor component on star 1 ...
    state.weight[0] = 1.0  # ... with zero weight: exp(x_major - x_minor) underflows
    fast = mx.log_likelihood(state, v, err, precision=precision)
    ref = mx.log_likelihood(state, v, err, backend="numpy")
    np.testing.assert_allclose(fast, ref, rtol=rtol)
    assert np.all(np.isfinite(fast))
    again = mx.log_likelihood(state, v, err, precision=precision)
    np.testing.assert_array_equal(again, fast)  # deterministic

    covs = state.covs.copy()
    covs[-1] = -1e6 * np.eye(3)  # both components' determinants negative
    bad = state._replace(covs=covs)
    fast = mx.log_likelihood(bad, v, err, precision=precision)
    ref = mx.log_likelihood(bad, v, err, backend="numpy")
    assert fast[-1] == -np.inf and ref[-1] == -np.inf
    np.testing.assert_allclose(fast[:-1], ref[:-1], rtol=rtol)
    covs[-1, 0] = state.covs[-1, 0]  # one component positive definite: the numba kernel
    # still rejects the walker
    assert mx.log_likelihood(bad, v, err, precision=precision)[-1] == -np.inf

    err_bad = err.copy()
    err_bad[-1] = -1e9 * np.eye(3)  # last star (in the last, ragged block): every walker
    fast = mx.log_likelihood(state, v, err_bad, precision=precision)
    assert np.all(fast == -np.inf)
    np.testing.assert_array_equal(fast, mx.log_likelihood(state, v, err_bad, backend="numpy"))


@pytest.mark.parametrize("variant", ["fitted", "zeroed"])
def test_em_deconvolution_recovers_injected_mixture(variant: str) -> None:
    """Extreme deconvolution on 8,000 stars with 10-30 km/s correlated errors returns the
    injected weight, means and the major component's vertex (within ~2 sigma of the ML
    estimate's sampling scatter); its likelihood beats the moment start and equals
    ``log_likelihood`` at the returned vector."""
    rng = np.random.default_rng(40)
    err = sim.random_error_covariances(8000, rng)
    major = sim.tilted_covariance((120, 85, 80), -20.0)
    means = [[10, -50, 0], [0, 40, 0]] if variant == "fitted" else np.zeros((2, 3))
    v, _ = sim.sample_mixture(0.75, means, np.stack([major, 170.0**2 * np.eye(3)]), err, rng)
    res = mf.em_deconvolve(v, err, variant)
    st = mx.unpack(res.theta, variant)
    assert res.converged and res.n_iter < 200
    assert st.weight[0] == pytest.approx(0.75, abs=0.06)
    assert mx.vertex_angle_deg(st.covs[0, 0]) == pytest.approx(-20.0, abs=5.0)
    np.testing.assert_allclose(np.sqrt(np.diag(st.covs[0, 0])), [111.8, 95.0, 80.0], rtol=0.1)
    if variant == "fitted":
        np.testing.assert_allclose(st.means[0, 0], [10, -50, 0], atol=10)
    ll = mx.log_likelihood(st, v, err)[0]
    assert ll == pytest.approx(res.log_likelihood, abs=1e-3 * len(v))
    start = mx.unpack(mf.initial_theta(v, err, variant), variant)
    assert res.log_likelihood > mx.log_likelihood(start, v, err)[0] + 10


def test_laplace_ball_matches_gaussian_and_refuses_non_concave() -> None:
    rng = np.random.default_rng(50)
    a = rng.standard_normal((4, 4))
    cov = a @ a.T + 0.5 * np.eye(4)
    prec = np.linalg.inv(cov)
    centre = np.array([1.0, -2.0, 0.5, 3.0])

    def gauss(t: np.ndarray) -> np.ndarray:
        d = t - centre
        return -0.5 * np.einsum("ni,ij,nj->n", d, prec, d)

    draws = mf.laplace_ball(centre, gauss, 20000, rng, max_scale=100.0)
    assert draws is not None and draws.shape == (20000, 4)
    np.testing.assert_allclose(np.cov(draws.T), cov, atol=0.05 * np.abs(cov).max())
    capped = mf.laplace_ball(centre, gauss, 20000, rng, max_scale=0.1)
    assert capped is not None and np.std(capped, axis=0).max() < 0.11
    assert mf.laplace_ball(centre, lambda t: -gauss(t), 10, rng) is None  # a minimum
    assert mf.laplace_ball(centre, lambda t: np.full(len(t), -np.inf), 10, rng) is None


@pytest.mark.parametrize("variant", ["fitted", "zeroed"])
def test_float32_likelihood_is_good_enough_for_emcee(variant: str) -> None:
    """The float32 fast path against the float64 kernel on 3,000 stars and walkers near one
    another (an emcee ensemble): totals within 1e-3 and, what the Metropolis ratio reads,
    walker-to-walker differences within 1e-3; deterministic."""
    v, err = _data(3000, seed=50)
    rng = np.random.default_rng(51)
    theta = mf.initial_theta(v, err, variant) + 0.02 * rng.standard_normal(
        (24, mx.n_params(variant))
    )
    state = mx.unpack(theta, variant)
    ref = mx.log_likelihood(state, v, err)
    single = mx.log_likelihood(state, v, err, precision="float32")
    np.testing.assert_allclose(single, ref, rtol=0, atol=1e-3)
    np.testing.assert_allclose(single - single[0], ref - ref[0], rtol=0, atol=1e-3)
    assert np.any(single != ref)  # it is the float32 path
    np.testing.assert_array_equal(mx.log_likelihood(state, v, err, precision="float32"), single)
    post = mx.MixturePosterior(v, err, variant, precision="float32")
    np.testing.assert_allclose(
        post(theta), mx.MixturePosterior(v, err, variant)(theta), rtol=0, atol=1e-3
    )
    with pytest.raises(ConfigError, match="precision"):
        mx.log_likelihood(state, v, err, precision="float16")


@pytest.mark.parametrize("variant", ["fitted", "zeroed"])
def test_compiled_prior_equals_numpy(variant: str) -> None:
    """The posterior's compiled pass gives :func:`log_prior`'s values (also -inf off the
    support: weight above max_weight, a dispersion past its bounds, a CPC past 10) and
    :func:`unpack`'s weights, means and covariances."""
    from bigcat.analysis.mixture_kernel import compiled_prior

    theta = _random_theta(variant, 30, seed=60)
    names = mx.parameter_names(variant)
    theta[1, 0] = 5.0  # f above 0.95
    theta[2, names.index("ln_sigma_minor_z")] = 7.5  # above ln 1000
    theta[3, names.index("atanh_cpc_major_xz")] = -10.5
    pr = mx.MixturePrior()
    s_max = 2 * pr.max_weight - 1
    lp, ln_w, means, upper = compiled_prior()(
        theta, variant == "fitted", 300.0, 0.0, math.log(1000.0), math.log(s_max / (1 - s_max)), 2.0
    )
    ref = mx.log_prior(theta, variant)
    assert np.all(np.isneginf(lp[1:4])) and np.all(np.isneginf(ref[1:4]))
    np.testing.assert_allclose(lp, ref, rtol=1e-12)
    st = mx.unpack(theta, variant)
    np.testing.assert_allclose(ln_w, mx._log_weights(st.weight), rtol=1e-12)
    np.testing.assert_array_equal(means, st.means)
    np.testing.assert_allclose(upper, mx._upper(st.covs), rtol=1e-12)


def test_closed_form_3x3_inverse_and_logdet() -> None:
    rng = np.random.default_rng(70)
    a = rng.normal(size=(2, 50, 3, 3))
    t = a @ np.swapaxes(a, -1, -2) + 0.1 * np.eye(3)
    inv, logdet = mf._inverse_logdet_3x3(t)
    np.testing.assert_allclose(inv, np.linalg.inv(t), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(logdet, np.linalg.slogdet(t)[1], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("variant", ["fitted", "zeroed"])
def test_major_vertex_deg_equals_full_unpack(variant: str) -> None:
    chain = _random_theta(variant, 60, seed=80).reshape(20, 3, -1)
    got = mx.major_vertex_deg(chain, variant)
    ref = mx.vertex_angle_deg(mx.unpack(chain.reshape(60, -1), variant).covs[:, 0])
    assert got.shape == (20, 3)
    np.testing.assert_array_equal(got.ravel(), ref)


def test_kernel_closures_hold_no_compiled_functions() -> None:
    """numba's disk cache keys a closure by its pickled cells; a compiled function in a cell
    pickles differently in every process, so the cache would never hit and every worker
    would recompile the kernel (~2-3 s) at every run."""
    from numba.core.dispatcher import Dispatcher

    from bigcat.analysis.mixture_kernel import compiled_kernel

    for precision in ("float64", "float32"):
        cells = compiled_kernel(precision).py_func.__closure__ or ()
        assert not [c for c in cells if isinstance(c.cell_contents, Dispatcher)]


def test_float32_exp_and_log_within_two_ulp():
    """The float32 polynomials of the kernel's fast path against float64 libm: within 2
    float32 ulp over exp's domain (x <= 0, 0 below -87) and log's (normal floats)."""
    from numba import njit

    from bigcat.analysis import _mixture_jit as jit

    exp32 = njit(lambda a: np.array([jit.exp_neg32(x) for x in a], dtype=np.float32))
    log32 = njit(lambda a: np.array([jit.log_pos32(x) for x in a], dtype=np.float32))
    x = -np.geomspace(1e-8, 86.0, 4001).astype(np.float32)
    ref = np.exp(x.astype(np.float64))
    assert np.all(np.abs(exp32(x) - ref) <= 2 * np.spacing(ref.astype(np.float32)))
    assert exp32(np.array([-90.0], dtype=np.float32))[0] == 0.0
    y = np.geomspace(1e-30, 1e30, 4001).astype(np.float32)
    ref = np.log(y.astype(np.float64))
    err = np.abs(log32(y) - ref)
    assert np.all(err <= 2 * np.spacing(np.abs(ref).astype(np.float32)) + 1e-12)
