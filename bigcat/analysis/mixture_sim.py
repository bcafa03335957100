"""Simulated samples of the two-component velocity mixture, for tests and benchmarks: draws
from the mixture, tilted velocity ellipsoids and random per-star error covariances. Nothing in
the pipeline uses them.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike

from bigcat.analysis.mixture import covariance_from_unconstrained


def sample_mixture(
    weight: float,
    means: ArrayLike,
    covs: ArrayLike,
    err_cov: ArrayLike,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Draw observed velocities from the mixture (simulations, tests and benchmarks).

    Parameters
    ----------
    weight : float
        Major-component weight f.
    means : array_like, shape (2, 3)
        Component means (km/s).
    covs : array_like, shape (2, 3, 3)
        Intrinsic covariances ((km/s)^2).
    err_cov : array_like, shape (N, 3, 3)
        Per-star error covariances ((km/s)^2); the noise added to each star.
    rng : numpy.random.Generator

    Returns
    -------
    v : numpy.ndarray, shape (N, 3)
        Observed velocities (km/s).
    major : numpy.ndarray of bool, shape (N,)
        True for stars drawn from the major component.
    """
    c = np.asarray(err_cov, dtype=float)
    mu = np.asarray(means, dtype=float)
    sig = np.asarray(covs, dtype=float)
    n = c.shape[0]
    major = np.asarray(rng.uniform(size=n) < weight, dtype=bool)
    k = np.where(major, 0, 1)
    total = sig[k] + c
    v = mu[k] + np.einsum("nij,nj->ni", np.linalg.cholesky(total), rng.standard_normal((n, 3)))
    return v, major


def tilted_covariance(sigmas_kms: ArrayLike, vertex_deg: float) -> np.ndarray:
    """3x3 velocity ellipsoid ((km/s)^2) with dispersions ``(major, minor, vertical)`` whose
    major axis lies in the X-Y plane at ``vertex_deg`` from X (towards +Y for positive
    angles), so that ``vertex_angle_deg`` returns ``vertex_deg`` for |vertex_deg| < 45 deg.
    Used by simulations, tests and benchmarks."""
    s = np.asarray(sigmas_kms, dtype=float)
    a = math.radians(vertex_deg)
    rot = np.array([[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0], [0, 0, 1]])
    return rot @ np.diag(s**2) @ rot.T


def random_error_covariances(
    n: int,
    rng: np.random.Generator,
    sigma_range_kms: tuple[float, float] = (10.0, 30.0),
    max_abs_corr: float = 0.5,
) -> np.ndarray:
    """Random per-star velocity error covariances ((km/s)^2), shape (n, 3, 3), for simulations:
    each axis' error uniform in ``sigma_range_kms``, the three CPCs uniform in
    (-max_abs_corr, max_abs_corr) (correlated errors, as from a distance error shared by the
    three components)."""
    lo, hi = sigma_range_kms
    sig = rng.uniform(lo, hi, (n, 3))
    z = rng.uniform(-max_abs_corr, max_abs_corr, (n, 3))
    return covariance_from_unconstrained(np.log(sig), np.arctanh(z))
