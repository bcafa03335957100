"""Two-component 3-D Gaussian mixture of stellar velocities with per-star errors (eqs 13-14).

Each star i has a Galactocentric velocity ``v_i`` (km/s) and an error covariance ``C_i``
((km/s)^2). Its likelihood under the mixture is (paper eqs 13-14, with the mixture taken
per star, the standard reading of eq. 14)::

    p(v_i) = f N(v_i | mu_1, Sigma_1 + C_i) + (1 - f) N(v_i | mu_2, Sigma_2 + C_i)

Component 1 is the *major* component (weight ``f >= 0.5``; the paper's "minor anomalous"
component is component 2). The ordering constraint ``0.5 <= f <= 1`` in the prior removes
label switching. The "zeroed" variant fixes both means at 0 (the paper's ellipsoids centred on
the Galactic centre's velocity).

Parameter vector (unconstrained, what emcee samples), in order:

- ``logit_weight``: ``f = 0.5 + 0.5 sigmoid(u)``.
- ``fitted`` only: ``mu_major_{x,y,z}``, ``mu_minor_{x,y,z}`` (km/s).
- per component (major, then minor): ``ln_sigma_{x,y,z}`` (ln km/s) and three canonical
  partial correlations (CPCs, LKJ-style) ``atanh z_xy, atanh z_xz, atanh z_yz|x``. The
  correlation matrix is ``Omega = L L^T`` with the Cholesky factor built from the CPCs, and
  ``Sigma = D Omega D`` with ``D = diag(sigma)``: positive definite for every finite vector.

Priors (weakly informative; ``MixturePrior``; all independent):

- ``f ~ Uniform(0.5, max_weight)`` (order constraint: component 1 is the major one; the
  minor component holds at least ``1 - max_weight`` of the stars, default 5%). Without the
  upper bound the posterior of a sample that one Gaussian describes almost as well piles up
  in a funnel at f -> 1, where the minor component's nine parameters are free to roam their
  priors: the walkers stall there (acceptance near 0) and the major component absorbs the
  outliers the minor one exists for. Measured on the 1.7M-star mock's metal-poor sample
  (benchmarks/README.md).
- ``mu_k,j ~ Normal(0, mean_scale_kms)`` per axis (default 300 km/s; ``fitted`` only).
- ``sigma_k,j ~ LogUniform(sigma_min_kms, sigma_max_kms)`` (default 1-1000 km/s).
- ``Omega_k ~ LKJ(lkj_eta)`` (default eta = 2: mild shrinkage towards no correlation). In CPC
  form (Lewandowski, Kurowicka & Joe 2009) the two first-level CPCs are Beta(eta + 1/2,
  eta + 1/2) and the partial one Beta(eta, eta) on (-1, 1); CPCs are truncated at
  ``|atanh z| <= 10`` (|z| < 1 - 4e-9), which only guards against round-off.

The log-densities below include the Jacobians of the unconstrained map, so the priors above
hold on the physical quantities. Everything is vectorised over walkers (leading axis of
``theta``) and stars; star blocks bound the memory.

This module holds the model: parameters and their packing, priors, the likelihood (the
blocked numpy reference here; the compiled loop in ``bigcat.analysis.mixture_kernel``), the
posterior emcee samples and the vertex angle. Fitting (starting point, EM, Laplace
approximation) is in ``bigcat.analysis.mixture_fit``, simulated samples for tests and
benchmarks in ``bigcat.analysis.mixture_sim``, the emcee driver in
``bigcat.analysis.vertex``.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike

from bigcat.analysis.mixture_kernel import LOG_2PI, PRECISIONS, compiled_kernel, compiled_prior
from bigcat.errors import ConfigError, InputError

#: Variants of the model: means fitted, or both means fixed at 0.
VARIANTS = ("fitted", "zeroed")
#: Bound on |atanh(CPC)| (see module docstring).
CPC_ATANH_MAX = 10.0
#: Walkers x stars per block in the likelihood: temporaries of 64 kB stay in cache (measured
#: 1.6x faster than one block of 24 walkers x 4,200 stars) and memory stays bounded.
_BLOCK_ELEMENTS = 1 << 13
_AXES = ("x", "y", "z")


@dataclass(frozen=True)
class MixturePrior:
    """Hyper-parameters of the mixture's weakly informative priors.

    Attributes
    ----------
    mean_scale_kms : float
        Standard deviation (km/s) of the zero-centred normal prior on each mean component.
    sigma_min_kms, sigma_max_kms : float
        Bounds (km/s) of the log-uniform prior on each intrinsic dispersion.
    lkj_eta : float
        Shape of the LKJ prior on each component's correlation matrix (1 = uniform over
        correlation matrices; larger values favour weaker correlations).
    max_weight : float
        Upper bound of the major component's weight (uniform prior on (0.5, max_weight)).
    """

    mean_scale_kms: float = 300.0
    sigma_min_kms: float = 1.0
    sigma_max_kms: float = 1000.0
    lkj_eta: float = 2.0
    max_weight: float = 0.95

    def __post_init__(self) -> None:
        if not self.mean_scale_kms > 0:
            raise ConfigError(f"mean_scale_kms = {self.mean_scale_kms}: must be positive.")
        if not 0 < self.sigma_min_kms < self.sigma_max_kms < math.inf:
            raise ConfigError(
                f"sigma bounds ({self.sigma_min_kms}, {self.sigma_max_kms}) km/s: need "
                "0 < sigma_min_kms < sigma_max_kms < inf."
            )
        if not self.lkj_eta > 0:
            raise ConfigError(f"lkj_eta = {self.lkj_eta}: must be positive.")
        if not 0.5 < self.max_weight <= 1.0:
            raise ConfigError(f"max_weight = {self.max_weight}: must lie in (0.5, 1].")


class MixtureState(NamedTuple):
    """Physical parameters for W parameter vectors.

    Attributes
    ----------
    weight : numpy.ndarray
        Major-component weight f, shape (W,).
    means : numpy.ndarray
        Component means (km/s), shape (W, 2, 3); row 0 is the major component.
    covs : numpy.ndarray
        Intrinsic covariances ((km/s)^2), shape (W, 2, 3, 3).
    """

    weight: np.ndarray
    means: np.ndarray
    covs: np.ndarray


def _check_variant(variant: str) -> None:
    if variant not in VARIANTS:
        raise ConfigError(f"variant = {variant!r}: must be one of {', '.join(VARIANTS)}.")


def n_params(variant: str) -> int:
    """Length of the unconstrained parameter vector: 19 (``fitted``) or 13 (``zeroed``)."""
    _check_variant(variant)
    return 13 + (6 if variant == "fitted" else 0)


def parameter_names(variant: str) -> list[str]:
    """Names of the unconstrained parameters, in vector order."""
    _check_variant(variant)
    names = ["logit_weight"]
    if variant == "fitted":
        names += [f"mu_{k}_{a}" for k in ("major", "minor") for a in _AXES]
    for k in ("major", "minor"):
        names += [f"ln_sigma_{k}_{a}" for a in _AXES]
        names += [f"atanh_cpc_{k}_{p}" for p in ("xy", "xz", "yz_x")]
    return names


def _log_sech2(y: np.ndarray) -> np.ndarray:
    """ln(1 - tanh(y)^2) = -2 ln cosh(y), without overflow."""
    a = np.abs(y)
    return -2.0 * (a + np.log1p(np.exp(-2.0 * a)) - math.log(2.0))


def _upper_from_unconstrained(ln_sigma: np.ndarray, cpc_atanh: np.ndarray) -> np.ndarray:
    """The 6 upper elements (xx, xy, xz, yy, yz, zz) of ``covariance_from_unconstrained``,
    shape (..., 6), in closed form: with L's rows (1, 0, 0), (z_xy, c_xy, 0) and
    (z_xz, z_yz|x c_xz, c_xz c_yz|x) (c = sqrt(1 - z^2) = sech atanh z), Omega = L L^T has
    unit diagonal, Omega_xy = z_xy, Omega_xz = z_xz and Omega_yz = z_xy z_xz + c_xy c_xz
    z_yz|x; Sigma_ij = sigma_i sigma_j Omega_ij."""
    sig = np.exp(ln_sigma)
    z = np.tanh(cpc_atanh)
    c = 1.0 / np.cosh(cpc_atanh[..., :2])  # sqrt(1 - z^2), positive where z rounds to +-1
    sx, sy, sz = sig[..., 0], sig[..., 1], sig[..., 2]
    omega_yz = z[..., 0] * z[..., 1] + c[..., 0] * c[..., 1] * z[..., 2]
    return np.stack(
        [sx * sx, sx * sy * z[..., 0], sx * sz * z[..., 1], sy * sy, sy * sz * omega_yz, sz * sz],
        axis=-1,
    )


def _full_from_upper(up: np.ndarray) -> np.ndarray:
    """(..., 3, 3) symmetric matrices from their 6 upper elements (..., 6)."""
    idx = np.array([[0, 1, 2], [1, 3, 4], [2, 4, 5]])
    return up[..., idx]


def covariance_from_unconstrained(ln_sigma: ArrayLike, cpc_atanh: ArrayLike) -> np.ndarray:
    """Covariance matrices from log dispersions and atanh of canonical partial correlations.

    Parameters
    ----------
    ln_sigma : array_like, shape (..., 3)
        Natural log of the dispersions along x, y, z (ln km/s).
    cpc_atanh : array_like, shape (..., 3)
        atanh of the CPCs (z_xy, z_xz, z_yz|x).

    Returns
    -------
    numpy.ndarray, shape (..., 3, 3)
        ``D L L^T D`` ((km/s)^2), symmetric positive definite for finite inputs.
    """
    ln_sig = np.asarray(ln_sigma, dtype=float)
    y = np.asarray(cpc_atanh, dtype=float)
    shape = np.broadcast_shapes(ln_sig.shape, y.shape)
    up = _upper_from_unconstrained(np.broadcast_to(ln_sig, shape), np.broadcast_to(y, shape))
    return _full_from_upper(up)


def unconstrained_from_covariance(cov: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of ``covariance_from_unconstrained``: ``(ln_sigma, cpc_atanh)``, each (..., 3)."""
    cov = np.asarray(cov, dtype=float)
    sig = np.sqrt(np.diagonal(cov, axis1=-2, axis2=-1))
    corr = cov / (sig[..., :, None] * sig[..., None, :])
    chol = np.linalg.cholesky(corr)
    z_xz = chol[..., 2, 0]
    z = np.stack([chol[..., 1, 0], z_xz, chol[..., 2, 1] / np.sqrt(1.0 - z_xz**2)], axis=-1)
    lim = math.tanh(CPC_ATANH_MAX)
    return np.log(sig), np.arctanh(np.clip(z, -lim, lim))


def _split(theta: np.ndarray, variant: str) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """Split (W, P) into logit weight (W,), means (W, 2, 3) or None, shape blocks (W, 2, 6)."""
    _check_variant(variant)
    if theta.ndim != 2 or theta.shape[1] != n_params(variant):
        raise ConfigError(
            f"parameter array of shape {theta.shape}: the {variant!r} model needs "
            f"(walkers, {n_params(variant)})."
        )
    if variant == "fitted":
        return theta[:, 0], theta[:, 1:7].reshape(-1, 2, 3), theta[:, 7:].reshape(-1, 2, 6)
    return theta[:, 0], None, theta[:, 1:].reshape(-1, 2, 6)


def unpack(theta: ArrayLike, variant: str) -> MixtureState:
    """Physical parameters from unconstrained vectors ``theta`` of shape (W, P) or (P,)."""
    t = np.atleast_2d(np.asarray(theta, dtype=float))
    u, means, shape = _split(t, variant)
    weight = 0.5 + 0.5 / (1.0 + np.exp(-u))
    if means is None:
        means = np.zeros((t.shape[0], 2, 3))
    covs = covariance_from_unconstrained(shape[..., :3], shape[..., 3:])
    return MixtureState(weight, means, covs)


def pack(weight: ArrayLike, means: ArrayLike, covs: ArrayLike, variant: str) -> np.ndarray:
    """Unconstrained vectors from physical parameters (inverse of ``unpack``).

    Parameters
    ----------
    weight : array_like, shape (W,) or ()
        Major-component weight, in (0.5, 1).
    means : array_like, shape (W, 2, 3) or (2, 3)
        Component means (km/s); ignored for ``zeroed``.
    covs : array_like, shape (W, 2, 3, 3) or (2, 3, 3)
        Intrinsic covariances ((km/s)^2), positive definite.
    variant : {"fitted", "zeroed"}

    Returns
    -------
    numpy.ndarray, shape (W, P) or (P,)
    """
    _check_variant(variant)
    w = np.asarray(weight, dtype=float)
    single = w.ndim == 0
    w = np.atleast_1d(w)
    if np.any((w <= 0.5) | (w >= 1.0)):
        raise ConfigError(f"major-component weight {w.min()}..{w.max()}: must lie in (0.5, 1).")
    s = 2.0 * w - 1.0
    parts = [np.log(s / (1.0 - s))[:, None]]
    if variant == "fitted":
        parts.append(np.asarray(means, dtype=float).reshape(w.size, 6))
    ln_sig, y = unconstrained_from_covariance(
        np.asarray(covs, dtype=float).reshape(w.size, 2, 3, 3)
    )
    parts.append(np.concatenate([ln_sig, y], axis=-1).reshape(w.size, 12))
    out = np.concatenate(parts, axis=1)
    return out[0] if single else out


def _max_logit_weight(prior: MixturePrior) -> float:
    """The bound on ``logit_weight``: f <= max_weight <=> u <= logit(2 max_weight - 1)
    (inf for max_weight = 1)."""
    if prior.max_weight >= 1.0:
        return math.inf
    s_max = 2.0 * prior.max_weight - 1.0
    return math.log(s_max / (1.0 - s_max))


def log_prior(theta: ArrayLike, variant: str, prior: MixturePrior | None = None) -> np.ndarray:
    """Log prior density of unconstrained vectors (Jacobians included), up to a constant.

    Returns ``-inf`` outside the support (f above ``max_weight``, dispersions outside the
    bounds, |atanh CPC| > 10).
    Shape (W,) for (W, P) input.
    """
    prior = prior or MixturePrior()
    t = np.atleast_2d(np.asarray(theta, dtype=float))
    u, means, shape = _split(t, variant)
    # f = 0.5 + 0.5 s(u) uniform on (0.5, 1): density of u is s(u) (1 - s(u)).
    lp = -np.logaddexp(0.0, u) - np.logaddexp(0.0, -u)
    if means is not None:
        lp = lp - 0.5 * np.sum((means / prior.mean_scale_kms) ** 2, axis=(1, 2))
    ln_sig, y = shape[..., :3], shape[..., 3:]
    lo, hi = math.log(prior.sigma_min_kms), math.log(prior.sigma_max_kms)
    inside = np.all((ln_sig >= lo) & (ln_sig <= hi), axis=(1, 2))
    inside &= u <= _max_logit_weight(prior)
    inside &= np.all(np.abs(y) <= CPC_ATANH_MAX, axis=(1, 2))
    # CPC z = tanh(y) ~ Beta(b, b) on (-1, 1): density of y is (1 - z^2)^b.
    beta = prior.lkj_eta + np.array([0.5, 0.5, 0.0])
    lp = lp + np.sum(beta * _log_sech2(y), axis=(1, 2))
    return np.where(inside, lp, -np.inf)


def error_covariance(
    vx_error: ArrayLike,
    vy_error: ArrayLike,
    vz_error: ArrayLike,
    cov_xy: ArrayLike,
    cov_xz: ArrayLike,
    cov_yz: ArrayLike,
) -> np.ndarray:
    """Per-star 3x3 velocity error covariances ((km/s)^2), shape (N, 3, 3).

    Parameters
    ----------
    vx_error, vy_error, vz_error : array_like, shape (N,)
        Velocity uncertainties (km/s).
    cov_xy, cov_xz, cov_yz : array_like, shape (N,)
        Off-diagonal covariance terms ((km/s)^2), e.g. SCHEMA.md ``v_cov_xy``.
    """
    ex, ey, ez = (np.asarray(a, dtype=float) for a in (vx_error, vy_error, vz_error))
    cxy, cxz, cyz = (np.asarray(a, dtype=float) for a in (cov_xy, cov_xz, cov_yz))
    rows = [[ex**2, cxy, cxz], [cxy, ey**2, cyz], [cxz, cyz, ez**2]]
    return np.stack([np.stack(r, axis=-1) for r in rows], axis=-2)


def check_velocities(v: ArrayLike, cov: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Validate velocities (N, 3) and error covariances (N, 3, 3); return them as float arrays.

    Raises
    ------
    InputError
        Wrong shapes, no stars, non-finite values, or a covariance that is not symmetric
        positive semi-definite (the message names the first offending star's index).
    """
    v = np.asarray(v, dtype=float)
    c = np.asarray(cov, dtype=float)
    if v.ndim != 2 or v.shape[1] != 3 or v.shape[0] == 0:
        raise InputError(f"velocities have shape {v.shape}: expected (N, 3) with N >= 1 stars.")
    if c.shape != (v.shape[0], 3, 3):
        raise InputError(
            f"error covariances have shape {c.shape}: expected ({v.shape[0]}, 3, 3), one "
            "3x3 matrix per star."
        )
    for name, arr in (("velocity", v), ("error covariance", c)):
        bad = ~np.isfinite(arr.reshape(arr.shape[0], -1)).all(axis=1)
        if bad.any():
            raise InputError(
                f"{bad.sum()} star(s) have a non-finite {name} (first: index "
                f"{int(np.flatnonzero(bad)[0])}); drop stars without radial velocity first."
            )
    scale = np.maximum(np.trace(c, axis1=1, axis2=2), 1e-300)
    asym = np.abs(c - np.swapaxes(c, 1, 2)).max(axis=(1, 2)) > 1e-8 * scale
    eig_min = np.linalg.eigvalsh(0.5 * (c + np.swapaxes(c, 1, 2)))[:, 0]
    bad = asym | (eig_min < -1e-8 * scale)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InputError(
            f"{bad.sum()} star(s) have an error covariance that is not symmetric positive "
            f"semi-definite (first: index {i}, smallest eigenvalue {eig_min[i]:.3g} (km/s)^2); "
            "check the v_cov_* terms against the velocity errors."
        )
    return v, c


def _gaussian_logpdf(r: list[np.ndarray], s: list[np.ndarray]) -> np.ndarray:
    """ln N(r | 0, S) from residual components r (3 arrays) and the 6 upper elements of S
    (xx, xy, xz, yy, yz, zz), all broadcastable; closed-form 3x3 inverse and determinant."""
    a, b, c, d, e, f = s
    ca, cb, cc = d * f - e * e, c * e - b * f, b * e - c * d
    det = a * ca + b * cb + c * cc
    cd, ce, cf = a * f - c * c, b * c - a * e, a * d - b * b
    r0, r1, r2 = r
    quad = (
        ca * r0 * r0
        + cd * r1 * r1
        + cf * r2 * r2
        + 2.0 * (cb * r0 * r1 + cc * r0 * r2 + ce * r1 * r2)
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        out = -0.5 * (quad / det + np.log(det) + 3.0 * LOG_2PI)
    return np.where(det > 0, out, -np.inf)


_UPPER = ((0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2))


def _upper(m: np.ndarray) -> np.ndarray:
    """The 6 upper elements (xx, xy, xz, yy, yz, zz) of (..., 3, 3) matrices, shape (..., 6)."""
    return np.stack([m[..., i, j] for i, j in _UPPER], axis=-1)


def _log_weights(weight: np.ndarray) -> np.ndarray:
    """ln f and ln(1 - f), shape (W, 2), without cancellation near f = 1 (then -inf)."""
    u = 2.0 * weight - 1.0  # = sigmoid(logit_weight)
    with np.errstate(divide="ignore"):
        return np.stack([np.log1p(u), np.log1p(-u)], axis=-1) - math.log(2.0)


def _star_arrays(
    v: np.ndarray, cov: np.ndarray, precision: str = "float64"
) -> tuple[np.ndarray, ...]:
    """The stars as the compiled kernel reads them: structure of arrays, v (3, N) and the 6
    upper covariance elements (6, N), in ``precision`` and (for the fix-up pass) in float64."""
    if precision not in PRECISIONS:
        raise ConfigError(f"precision = {precision!r}: must be one of {', '.join(PRECISIONS)}.")
    v64 = np.ascontiguousarray(np.asarray(v, dtype=float).T)
    c64 = np.stack([np.asarray(cov[:, i, j], dtype=float) for i, j in _UPPER])
    if precision == "float64":
        return v64, c64, v64, c64
    return v64.astype(np.float32), c64.astype(np.float32), v64, c64


def _compiled_log_likelihood(
    state: MixtureState, stars: tuple[np.ndarray, ...], precision: str = "float64"
) -> np.ndarray:
    """:func:`log_likelihood` with the compiled kernel, on stars from :func:`_star_arrays`
    laid out in the same ``precision``."""
    return compiled_kernel(precision)(
        np.ascontiguousarray(_log_weights(np.asarray(state.weight, dtype=float))),
        np.ascontiguousarray(state.means, dtype=float),
        np.ascontiguousarray(_upper(state.covs)),
        *stars,
    )


def log_likelihood(
    state: MixtureState,
    v: np.ndarray,
    cov: np.ndarray,
    backend: str = "numba",
    precision: str = "float64",
) -> np.ndarray:
    """Mixture log-likelihood summed over stars, for each of W parameter sets.

    Parameters
    ----------
    state : MixtureState
        W parameter sets (``unpack``).
    v : numpy.ndarray, shape (N, 3)
        Velocities (km/s).
    cov : numpy.ndarray, shape (N, 3, 3)
        Error covariances ((km/s)^2).
    backend : {"numba", "numpy"}
        The compiled loop (default) or the blocked numpy reference; they agree to round-off.
    precision : {"float64", "float32"}
        Arithmetic of the compiled loop's fast path (``compiled_kernel``); the numpy
        reference is float64.

    Returns
    -------
    numpy.ndarray, shape (W,)
        ``sum_i ln[f N(v_i | mu_1, Sigma_1 + C_i) + (1 - f) N(v_i | mu_2, Sigma_2 + C_i)]``.
    """
    if backend == "numba":
        return _compiled_log_likelihood(state, _star_arrays(v, cov, precision), precision)
    ln_w = _log_weights(np.asarray(state.weight, dtype=float))
    if backend != "numpy":
        raise ConfigError(f"backend = {backend!r}: must be 'numba' or 'numpy'.")
    n_walk, n_star = ln_w.shape[0], v.shape[0]
    block = max(1, _BLOCK_ELEMENTS // max(n_walk, 1))
    total = np.zeros(n_walk)
    sig = [[state.covs[:, k, i, j][:, None] for i, j in _UPPER] for k in range(2)]
    mu = [[state.means[:, k, j][:, None] for j in range(3)] for k in range(2)]
    for start in range(0, n_star, block):
        vb = v[start : start + block]
        cb = [cov[start : start + block, i, j][None, :] for i, j in _UPPER]
        comp = []
        for k in range(2):
            resid = [vb[None, :, j] - mu[k][j] for j in range(3)]
            s = [sig[k][e] + cb[e] for e in range(6)]
            comp.append(ln_w[:, k][:, None] + _gaussian_logpdf(resid, s))
        total += np.logaddexp(comp[0], comp[1]).sum(axis=1)
    return total


class MixturePosterior:
    """Log posterior of the mixture for emcee's ``vectorize=True`` (picklable).

    Parameters
    ----------
    v : array_like, shape (N, 3)
        Galactocentric velocities (km/s).
    cov : array_like, shape (N, 3, 3)
        Per-star error covariances ((km/s)^2).
    variant : {"fitted", "zeroed"}
        Means free, or both fixed at 0.
    prior : MixturePrior, optional
        Prior hyper-parameters.
    precision : {"float64", "float32"}
        Arithmetic of the compiled likelihood (``compiled_kernel``): float32 is ~2x faster
        and good to ~1e-3 in the summed log-likelihood (what emcee needs); finite
        differences (``laplace_covariance``) need float64.
    """

    def __init__(
        self,
        v: ArrayLike,
        cov: ArrayLike,
        variant: str = "fitted",
        prior: MixturePrior | None = None,
        precision: str = "float64",
    ) -> None:
        _check_variant(variant)
        self.v, self.cov = check_velocities(v, cov)
        self.precision = precision
        # laid out once, not at every call
        self._stars = _star_arrays(self.v, self.cov, precision)
        self.variant = variant
        self.prior = prior or MixturePrior()
        self.ndim = n_params(variant)

    def with_precision(self, precision: str) -> MixturePosterior:
        """The same posterior with the likelihood in another ``precision`` (the stars,
        already checked, are only laid out again)."""
        other = copy.copy(self)
        other.precision = precision
        other._stars = _star_arrays(self.v, self.cov, precision)
        return other

    def __call__(self, theta: ArrayLike) -> np.ndarray:
        """Log posterior (up to a constant), shape (W,) for (W, P) input; ``-inf`` off support.

        The prior and the kernel's inputs come from one compiled pass
        (``compiled_prior``, the same arithmetic as :func:`log_prior` and :func:`unpack`):
        the numpy forms cost ~0.15 ms a call, as much as the likelihood of ~1,000 stars."""
        t = np.atleast_2d(np.asarray(theta, dtype=float))
        _split(t, self.variant)  # shape check
        pr = self.prior
        lp, ln_w, means, upper = compiled_prior()(
            np.ascontiguousarray(t),
            self.variant == "fitted",
            pr.mean_scale_kms,
            math.log(pr.sigma_min_kms),
            math.log(pr.sigma_max_kms),
            _max_logit_weight(pr),
            pr.lkj_eta,
        )
        ok = np.isfinite(lp)
        kernel = compiled_kernel(self.precision)
        if ok.all():
            lp += kernel(ln_w, means, upper, *self._stars)
        elif ok.any():
            lp[ok] += kernel(ln_w[ok], means[ok], upper[ok], *self._stars)
        return np.where(np.isnan(lp), -np.inf, lp)


def vertex_angle_deg(cov: ArrayLike) -> np.ndarray:
    """Vertex angle (deg) of velocity ellipsoids, paper eq. 12.

    ``l_v = 0.5 arctan(2 s_XY / (s_X - s_Y))`` in [-45, 45] deg (arctan, not arctan2, as the
    paper defines it); positive towards positive Galactic longitude. Where ``s_X == s_Y`` the
    limit ``sign(s_XY) 45`` deg is returned (0 for an isotropic ellipsoid, where the angle is
    undefined).

    Parameters
    ----------
    cov : array_like, shape (..., 3, 3) or (..., 2, 2)
        Velocity covariance matrices ((km/s)^2) in Galactocentric X, Y(, Z).

    Returns
    -------
    numpy.ndarray, shape (...)
    """
    c = np.asarray(cov, dtype=float)
    s_x, s_y, s_xy = c[..., 0, 0], c[..., 1, 1], c[..., 0, 1]
    den = s_x - s_y
    with np.errstate(divide="ignore", invalid="ignore"):
        ang = 0.5 * np.arctan(2.0 * s_xy / den)
    ang = np.where(den == 0, np.sign(s_xy) * math.pi / 4, ang)
    return np.degrees(ang)


def major_vertex_deg(chain: np.ndarray, variant: str) -> np.ndarray:
    """Vertex angle (deg) of the major component for every draw of a (steps, walkers, P)
    chain, shape (steps, walkers): only the three covariance elements the angle needs."""
    flat = chain.reshape(-1, chain.shape[-1])
    shape = _split(flat, variant)[2][:, 0]  # the major component's ln sigma and CPCs
    up = _upper_from_unconstrained(shape[:, :3], shape[:, 3:])
    cov2 = np.stack([up[:, [0, 1]], up[:, [1, 3]]], axis=-2)  # (xx, xy; xy, yy)
    return vertex_angle_deg(cov2).reshape(chain.shape[:2])
