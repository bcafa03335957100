"""Distance posterior with the Bailer-Jones et al. (2021) generalised gamma (GGD) prior.

Prior on distance r (pc): ``P(r) ∝ r^beta exp(-(r/L)^alpha)`` (L > 0, alpha > 0, beta > -1);
likelihood: ``N(parallax | 1000 / r, sigma)`` with parallax and sigma in mas. The posterior
is evaluated on a per-star grid in u = ln r, where its density is ``P(r) r L(parallax | r)``
(the factor r is the Jacobian), and its quantiles are read off the cumulative integral.

Grid (vectorised over stars, ``_N_GRID`` points per star)
--------------------------------------------------------
* Prior range: in ``y = alpha (u - ln L) - ln k`` with ``k = (beta + 1) / alpha`` the log
  prior density in u is exactly ``k (y - e^y)`` (a log-gamma law), peaking at y = 0. The
  range where it is within ``_PRIOR_NATS`` of its peak is found by a few Newton steps per
  star (both roots of ``e^y - y - 1 = _PRIOR_NATS / k``).
* Likelihood window: parallaxes within ``_LIK_SIGMAS`` sigma of the measurement,
  ``u in [ln(1000 / (parallax + K sigma)), ln(1000 / (parallax - K sigma))]`` (open-ended
  where a bound is not positive).
* The grid covers the hull of both ranges in three uniform pieces: coarse below, a dense
  window in the middle, coarse above. The dense window is their intersection (where the
  posterior mass is), or the likelihood window alone when they do not overlap (a very
  informative parallax far from the prior's bulk). So a parallax with S/N 1000 is resolved
  (window ~ 1.6 % wide in r) and a prior-dominated star gets the prior's range.
* The density is treated as piecewise linear in u (trapezoid rule); each quantile is found
  by locating its interval in the cumulative integral and solving the quadratic for the
  exact position inside it, which is far more accurate than linear interpolation of the
  inverse CDF.

Inputs that are non-finite, sigma <= 0, or invalid prior parameters give NaN distances.
Stars are processed in chunks of ``chunk_size`` so memory stays bounded
(chunk_size x ``_N_GRID`` x 8 bytes per work array).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

logger = logging.getLogger(__name__)

#: Grid points per star (uniform in ln r).
_N_GRID = 128
#: Grid range: where the posterior may be within this many nats of its best candidate.
_PRIOR_NATS = 16.0
#: Candidate points for the posterior peak, in the prior's log-gamma variable y.
_Y_CANDIDATES = (-4.0, -2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0, 3.0)
#: Default number of stars per chunk.
DEFAULT_CHUNK_SIZE = 8192

_J_GRID = np.arange(_N_GRID, dtype=np.float64)
#: Coarse grid used to tighten the range, and Newton steps towards the posterior peak.
_N_COARSE = 32
_T_COARSE = np.linspace(0.0, 1.0, _N_COARSE)
_NEWTON_STEPS = 12
_NEWTON_STEPS_RANGE = 24
#: A range wider than this many posterior-peak widths is tightened, at most this often.
_MAX_WIDTH_SD = 40.0
_TIGHTEN_ROUNDS = 3


def _log_gamma_range(k: np.ndarray, nats: float) -> tuple[np.ndarray, np.ndarray]:
    """Roots y_lo < 0 < y_hi of ``k (e^y - y - 1) = nats`` by monotone Newton steps."""
    c = nats / k
    # g(y) = e^y - y - 1 - c is convex; starting outside each root, Newton converges
    # monotonically: g(-(1 + c)) > 0, and both sqrt(2 c) and ln(2 (1 + c)) bound y_hi above
    y_lo = -(1.0 + c)
    y_hi = np.minimum(np.sqrt(2.0 * c), np.log(2.0 * (1.0 + c)))
    for _ in range(_NEWTON_STEPS_RANGE):
        e = np.exp(y_lo)
        y_lo = y_lo - (e - y_lo - 1.0 - c) / (e - 1.0)
        e = np.exp(y_hi)
        y_hi = y_hi - (e - y_hi - 1.0 - c) / (e - 1.0)
    return y_lo, y_hi


def _log_post_rel(
    u: np.ndarray,
    plx: np.ndarray,
    sig: np.ndarray,
    ln_l: np.ndarray,
    alpha: np.ndarray,
    k: np.ndarray,
) -> np.ndarray:
    """Log posterior density in u = ln r relative to the product of the suprema of the
    prior and of the likelihood (so <= 0); inputs (n,), ``u`` (n, m)."""
    y = alpha[:, None] * (u - ln_l[:, None]) - np.log(k)[:, None]
    with np.errstate(over="ignore"):  # exp(y) -> inf far beyond the prior's scale: density 0
        prior = k[:, None] * (y - np.exp(y) + 1.0)
    x = plx / sig
    w = 1000.0 * np.exp(-u) / sig[:, None]  # model parallax in sigmas
    # -(x - w)^2 / 2 + min(x, 0)^2 / 2, written without cancellation for x << 0
    lik = -0.5 * ((w - np.maximum(x, 0.0)[:, None]) ** 2 - 2.0 * np.minimum(x, 0.0)[:, None] * w)
    return prior + lik


def _newton_mode(
    u0: np.ndarray,
    plx: np.ndarray,
    sig: np.ndarray,
    ln_l: np.ndarray,
    alpha: np.ndarray,
    k: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Safeguarded Newton ascent of the log posterior in u from ``u0``.

    Returns the best point found and the curvature there (<= -1e-12)."""
    u = u0.copy()
    curv = np.full_like(u, -1.0)
    with np.errstate(over="ignore", invalid="ignore"):
        for _ in range(_NEWTON_STEPS):
            e = np.exp(alpha * (u - ln_l) - np.log(k))
            w = 1000.0 * np.exp(-u) / sig
            z = plx / sig - w
            grad = k * alpha * (1.0 - e) - z * w
            curv = -k * alpha * alpha * e - w * w + z * w
            step = np.where(curv < 0, -grad / np.where(curv < 0, curv, -1.0), np.sign(grad))
            step = np.clip(np.nan_to_num(step), -1.0, 1.0)
            u = u + step
    return u, np.minimum(np.nan_to_num(curv, nan=-1.0), -1e-12)


def _grid_bounds(
    plx: np.ndarray, sig: np.ndarray, ln_l: np.ndarray, alpha: np.ndarray, k: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per-star ln r range holding the posterior mass (see the module docstring)."""
    ln_k = np.log(k)
    cand = [ln_l + (y + ln_k) / alpha for y in _Y_CANDIDATES]
    peak = plx > 1e-9 * sig  # a likelihood peak at r = 1000 / parallax worth trying
    safe = np.where(peak, plx, 1.0)
    for m in (safe, safe + sig, np.maximum(safe - sig, 0.5 * safe)):
        cand.append(np.where(peak, np.log(1000.0 / m), cand[0]))
    cand_u = np.stack(cand, axis=1)
    cand_u = np.where(np.isfinite(cand_u), cand_u, cand[4][:, None])
    f_cand = _log_post_rel(cand_u, plx, sig, ln_l, alpha, k)
    best = np.argmax(f_cand, axis=1)
    u_mode, curv = _newton_mode(cand_u[np.arange(plx.size), best], plx, sig, ln_l, alpha, k)
    f_mode = _log_post_rel(u_mode[:, None], plx, sig, ln_l, alpha, k)[:, 0]
    f_best = np.fmax(f_cand.max(axis=1), f_mode)
    # 1. rigorous outer range: prior and likelihood are each <= 1 (relative), so wherever
    #    either is below f_best - T the posterior is negligible; intersect the two ranges
    nats = _PRIOR_NATS - np.minimum(f_best, 0.0)
    y_lo, y_hi = _log_gamma_range(k, nats)
    p_lo = ln_l + (y_lo + ln_k) / alpha
    p_hi = ln_l + (y_hi + ln_k) / alpha
    x = plx / sig
    q = np.sqrt(2.0 * nats + np.minimum(x, 0.0) ** 2)  # |parallax - 1000/r| <= q sigma
    # near = parallax + q sigma, stable for negative parallaxes (q ~ |x|)
    near = np.where(x >= 0, plx + q * sig, sig * 2.0 * nats / (q - np.minimum(x, 0.0)))
    far = plx - q * sig
    with np.errstate(divide="ignore"):
        l_lo = np.log(1000.0 / near)
        l_hi = np.where(far > 0, np.log(1000.0 / np.where(far > 0, far, 1.0)), np.inf)
    lo = np.maximum(p_lo, l_lo)
    hi = np.minimum(p_hi, l_hi)
    # 2. where the range is wide compared with the peak (prior-likelihood conflict, or a
    #    narrow peak), tighten it on coarse grids: keep where f >= f_best - T, one step wider
    sd = 1.0 / np.sqrt(-curv)
    for _ in range(_TIGHTEN_ROUNDS):
        wide = np.flatnonzero((hi - lo) > _MAX_WIDTH_SD * sd)
        if wide.size == 0:
            break
        lo_w, hi_w = lo[wide], hi[wide]
        args = (plx[wide], sig[wide], ln_l[wide], alpha[wide], k[wide])
        coarse = lo_w[:, None] + (hi_w - lo_w)[:, None] * _T_COARSE
        f_coarse = _log_post_rel(coarse, *args)
        f_top = np.fmax(f_best[wide], f_coarse.max(axis=1))
        keep = f_coarse >= (f_top - _PRIOR_NATS)[:, None]
        first = np.argmax(keep, axis=1)
        last = _N_COARSE - 1 - np.argmax(keep[:, ::-1], axis=1)
        step = (hi_w - lo_w) / (_N_COARSE - 1)
        new_lo = np.maximum(lo_w + (first - 1) * step, lo_w)
        new_hi = np.minimum(lo_w + (last + 1) * step, hi_w)
        # always keep the Newton peak +- 1.5 times its Gaussian T-nat half-width
        u_m, half = u_mode[wide], 1.5 * np.sqrt(2.0 * _PRIOR_NATS) * sd[wide]
        peak_ok = np.isfinite(u_m) & (u_m > lo_w) & (u_m < hi_w)
        new_lo = np.where(peak_ok, np.minimum(new_lo, np.maximum(u_m - half, lo_w)), new_lo)
        new_hi = np.where(peak_ok, np.maximum(new_hi, np.minimum(u_m + half, hi_w)), new_hi)
        lo[wide], hi[wide] = new_lo, new_hi
    return lo, hi


def _chunk_quantiles(
    plx: np.ndarray,
    sig: np.ndarray,
    length: np.ndarray,
    alpha: np.ndarray,
    beta: np.ndarray,
    qs: np.ndarray,
) -> np.ndarray:
    """Posterior distance quantiles (pc), shape (n, len(qs)), for valid stars only.

    Work arrays are grid-major, shape (``_N_GRID``, n), and updated in place (speed)."""
    ln_l = np.log(length)
    k = (beta + 1.0) / alpha
    lo, hi = _grid_bounds(plx, sig, ln_l, alpha, k)
    h = (hi - lo) / (_N_GRID - 1)
    u = _J_GRID[:, None] * h
    u += lo
    with np.errstate(over="ignore", invalid="ignore"):
        # log posterior density in u = ln r, up to a constant
        tmp = u - ln_l
        tmp *= alpha
        np.exp(tmp, out=tmp)
        logp = u * (beta + 1.0)
        logp -= tmp
        # likelihood, in the cancellation-free form of _log_post_rel
        x = plx / sig
        np.negative(u, out=tmp)
        np.exp(tmp, out=tmp)
        tmp *= 1000.0 / sig  # model parallax in sigmas, w
        lik = tmp - np.maximum(x, 0.0)
        lik *= lik
        tmp *= np.minimum(x, 0.0)
        tmp *= 2.0
        lik -= tmp
        lik *= 0.5
        logp -= lik
        logp -= logp.max(axis=0)
        dens = np.exp(logp, out=logp)
    return _grid_quantiles(dens, lo, h, qs)


def _grid_quantiles(dens: np.ndarray, lo: np.ndarray, h: np.ndarray, qs: np.ndarray) -> np.ndarray:
    """Quantiles (pc) of densities ``dens`` (grid-major, shape (M, n)) on per-star uniform
    grids ``u = lo + j h`` in ln r, the density piecewise linear between nodes (trapezoid
    rule; each quantile by the exact root inside its interval). NaN where the total is not
    positive and finite."""
    n_grid = dens.shape[0]
    # trapezoid areas in units of the (per-star constant) grid step
    inc = dens[1:] + dens[:-1]
    inc *= 0.5
    cum = np.cumsum(inc, axis=0, out=inc)
    total = cum[-1]
    cols = np.arange(dens.shape[1])
    out = np.empty((dens.shape[1], qs.size))
    for i, q in enumerate(qs):
        target = q * total
        j = np.minimum(np.count_nonzero(cum < target, axis=0), n_grid - 2)
        before = np.where(j > 0, cum[np.maximum(j - 1, 0), cols], 0.0)
        rem = np.maximum(target - before, 0.0)
        p0 = dens[j, cols]
        slope = dens[j + 1, cols] - p0
        # area from node j to j + t (t in steps) is p0 t + slope t^2 / 2: stable root
        disc = np.sqrt(np.maximum(p0 * p0 + 2.0 * slope * rem, 0.0))
        denom = p0 + disc
        t = np.where(denom > 0, 2.0 * rem / np.where(denom > 0, denom, 1.0), 0.0)
        out[:, i] = np.exp(lo + (j + np.clip(t, 0.0, 1.0)) * h)
    out[~(np.isfinite(total) & (total > 0))] = np.nan
    return out


def ggd_distance_posterior(
    parallax_mas: np.ndarray,
    parallax_error_mas: np.ndarray,
    length_pc: np.ndarray | float,
    alpha: np.ndarray | float,
    beta: np.ndarray | float,
    quantiles: Sequence[float] = (0.5, 0.16, 0.84),
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> np.ndarray:
    """Quantiles of the distance posterior with a generalised gamma (GGD) prior.

    Parameters
    ----------
    parallax_mas : array_like
        Parallax (mas), zero-point corrected; zero and negative values are valid.
    parallax_error_mas : array_like
        Parallax uncertainty (mas); must be > 0 (otherwise the row is NaN).
    length_pc : array_like or float
        GGD length scale L (pc), > 0; per star or shared.
    alpha, beta : array_like or float
        GGD shape parameters, alpha > 0 and beta > -1; per star or shared.
    quantiles : sequence of float
        Posterior probabilities in (0, 1) to report; default median, 16th, 84th percentile.
    chunk_size : int
        Stars per internal chunk (bounds memory; results do not depend on it).

    Returns
    -------
    numpy.ndarray
        Shape (n, len(quantiles)): distance quantiles (pc) per star, in the order of
        ``quantiles``. NaN where any input is non-finite, sigma <= 0 or the prior invalid.

    Raises
    ------
    ValueError
        If a quantile is outside (0, 1) or ``chunk_size`` < 1.
    """
    qs = np.asarray(quantiles, dtype=np.float64).ravel()
    if qs.size == 0 or not np.all((qs > 0) & (qs < 1)):
        raise ValueError(f"quantiles must lie strictly between 0 and 1, got {list(qs)}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    arrays = np.broadcast_arrays(
        *(
            np.atleast_1d(np.asarray(x, dtype=np.float64))
            for x in (parallax_mas, parallax_error_mas, length_pc, alpha, beta)
        )
    )
    plx, sig, length, alp, bet = (x.ravel() for x in arrays)
    n = plx.size
    out = np.full((n, qs.size), np.nan)
    valid = (
        np.isfinite(plx)
        & np.isfinite(sig)
        & (sig > 0)
        & np.isfinite(length)
        & (length > 0)
        & np.isfinite(alp)
        & (alp > 0)
        & np.isfinite(bet)
        & (bet > -1)
    )
    idx = np.flatnonzero(valid)
    if idx.size < n:
        logger.debug("ggd_distance_posterior: %d of %d rows invalid -> NaN", n - idx.size, n)
    for start in range(0, idx.size, chunk_size):
        sel = idx[start : start + chunk_size]
        out[sel] = _chunk_quantiles(plx[sel], sig[sel], length[sel], alp[sel], bet[sel], qs)
    return out


#: Coarse and fine points per star of the grid-prior posterior.
_N_GRID_COARSE = 64


def grid_distance_posterior(
    parallax_mas: np.ndarray,
    parallax_error_mas: np.ndarray,
    log_prior: np.ndarray,
    grid_ln_pc: np.ndarray,
    quantiles: Sequence[float] = (0.5, 0.16, 0.84),
) -> np.ndarray:
    """Quantiles of the distance posterior with a tabulated prior in u = ln r.

    Parameters
    ----------
    parallax_mas, parallax_error_mas : array_like, shape (n,)
        Parallax (mas; zero and negative are valid) and its uncertainty (> 0).
    log_prior : numpy.ndarray, shape (n, J)
        Each star's log prior density in u = ln r (pc) at ``grid_ln_pc`` (linear in between;
        beyond the grid the end values continue).
    grid_ln_pc : numpy.ndarray, shape (J,)
        Uniform grid of ln r (pc).
    quantiles : sequence of float
        Posterior probabilities to report.

    Returns
    -------
    numpy.ndarray, shape (n, len(quantiles))
        Distance quantiles (pc); NaN for non-finite inputs or sigma <= 0.

    Notes
    -----
    Per star, the posterior ``prior(u) N(parallax | 1000 e^-u, sigma)`` is evaluated on 64
    points over the part of the prior grid where the likelihood is within ``_PRIOR_NATS`` of its
    peak (the likelihood window alone where it lies outside the grid), then on ``_N_GRID``
    points over the range where that coarse posterior is within ``_PRIOR_NATS`` of its
    maximum (one coarse step wider); the quantiles come from the fine grid as in
    :func:`ggd_distance_posterior`.
    """
    qs = np.asarray(quantiles, dtype=np.float64).ravel()
    if qs.size == 0 or not np.all((qs > 0) & (qs < 1)):
        raise ValueError(f"quantiles must lie strictly between 0 and 1, got {list(qs)}")
    plx = np.atleast_1d(np.asarray(parallax_mas, dtype=np.float64))
    sig = np.atleast_1d(np.asarray(parallax_error_mas, dtype=np.float64))
    lp = np.asarray(log_prior, dtype=np.float64)
    grid = np.asarray(grid_ln_pc, dtype=np.float64)
    n = plx.size
    out = np.full((n, qs.size), np.nan)
    valid = np.isfinite(plx) & np.isfinite(sig) & (sig > 0) & np.isfinite(lp).all(axis=1)
    idx = np.flatnonzero(valid)
    for start in range(0, idx.size, DEFAULT_CHUNK_SIZE):
        sel = idx[start : start + DEFAULT_CHUNK_SIZE]
        out[sel] = _grid_chunk(plx[sel], sig[sel], lp[sel], grid, qs)
    return out


def _interp_rows(lp: np.ndarray, grid: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Row-wise linear interpolation of ``lp`` (n, J) on ``grid`` at ``u`` (M, n), clamped."""
    step = grid[1] - grid[0]
    f = np.clip((u - grid[0]) / step, 0.0, grid.size - 1.0)
    j = np.minimum(f.astype(np.int64), grid.size - 2)
    t = f - j
    cols = np.arange(lp.shape[0])[None, :]
    return (1.0 - t) * lp[cols, j] + t * lp[cols, j + 1]


def _grid_log_post(
    u: np.ndarray, plx: np.ndarray, sig: np.ndarray, lp: np.ndarray, grid: np.ndarray
) -> np.ndarray:
    x = plx / sig
    w = 1000.0 * np.exp(-u) / sig  # model parallax in sigmas
    lik = -0.5 * ((w - np.maximum(x, 0.0)) ** 2 - 2.0 * np.minimum(x, 0.0) * w)
    return _interp_rows(lp, grid, u) + lik


def _grid_chunk(
    plx: np.ndarray, sig: np.ndarray, lp: np.ndarray, grid: np.ndarray, qs: np.ndarray
) -> np.ndarray:
    x = plx / sig
    nats = _PRIOR_NATS + 0.5 * np.minimum(x, 0.0) ** 2
    q = np.sqrt(2.0 * nats)
    near = np.where(x >= 0, plx + q * sig, sig * 2.0 * nats / (q - np.minimum(x, 0.0)))
    far = plx - q * sig
    with np.errstate(divide="ignore"):
        l_lo = np.log(1000.0 / near)
        l_hi = np.where(far > 0, np.log(1000.0 / np.where(far > 0, far, 1.0)), np.inf)
    lo = np.maximum(l_lo, grid[0])
    hi = np.minimum(l_hi, grid[-1])
    outside = hi <= lo  # the likelihood lies beyond the grid: use its window alone
    lo = np.where(outside, l_lo, lo)
    hi = np.where(outside, np.where(np.isfinite(l_hi), l_hi, l_lo + 1.0), hi)
    t = np.linspace(0.0, 1.0, _N_GRID_COARSE)[:, None]
    coarse = lo + (hi - lo) * t
    f = _grid_log_post(coarse, plx, sig, lp, grid)
    keep = f >= f.max(axis=0) - _PRIOR_NATS
    first = np.argmax(keep, axis=0)
    last = _N_GRID_COARSE - 1 - np.argmax(keep[::-1], axis=0)
    step = (hi - lo) / (_N_GRID_COARSE - 1)
    new_lo = np.maximum(lo + (first - 1) * step, lo)
    new_hi = np.minimum(lo + (last + 1) * step, hi)
    h = (new_hi - new_lo) / (_N_GRID - 1)
    u = new_lo + _J_GRID[:, None] * h
    logp = _grid_log_post(u, plx, sig, lp, grid)
    logp -= logp.max(axis=0)
    dens = np.exp(logp)
    return _grid_quantiles(dens, new_lo, h, qs)


def parallax_posterior_distances(
    parallax_mas: np.ndarray,
    parallax_error_mas: np.ndarray,
    quantiles: Sequence[float] = (0.5, 0.16, 0.84),
) -> np.ndarray:
    """Distance quantiles (pc) when the parallax estimate is itself a posterior.

    The combined parallax of bigcat's stage 1 is the product of the network's predictive
    distribution for the star's parallax (given its colours, apparent magnitude and position,
    learnt from other stars' Gaia parallaxes) and the star's own Gaia likelihood: a posterior
    N(parallax, sigma) over the parallax, with the population information already in it.
    Restricted to positive parallaxes, its quantiles map to distance quantiles directly
    (r = 1000 / parallax is monotone): the q-quantile of r is 1000 over the (1 - q)-quantile of
    the parallax posterior truncated at 0.

    Parameters
    ----------
    parallax_mas, parallax_error_mas : array_like
        Posterior mean and standard deviation of the parallax (mas).
    quantiles : sequence of float
        Posterior probabilities of the distance to report.

    Returns
    -------
    numpy.ndarray, shape (n, len(quantiles))
        Distances (pc); NaN where an input is not finite, sigma <= 0, or the posterior mass
        at positive parallax is negligible (a parallax more than 8 sigma below 0).
    """
    from scipy.special import ndtr, ndtri

    qs = np.asarray(quantiles, dtype=np.float64).ravel()
    if qs.size == 0 or not np.all((qs > 0) & (qs < 1)):
        raise ValueError(f"quantiles must lie strictly between 0 and 1, got {list(qs)}")
    plx = np.atleast_1d(np.asarray(parallax_mas, dtype=np.float64))
    sig = np.atleast_1d(np.asarray(parallax_error_mas, dtype=np.float64))
    out = np.full((plx.size, qs.size), np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        ok = np.isfinite(plx) & np.isfinite(sig) & (sig > 0) & (plx / sig > -8.0)
        p0 = ndtr(-plx[ok] / sig[ok])  # posterior mass below parallax 0
        for i, q in enumerate(qs):
            level = p0 + (1.0 - q) * (1.0 - p0)  # of the parallax, within the positive part
            out[ok, i] = 1000.0 / (plx[ok] + sig[ok] * ndtri(level))
    return out
