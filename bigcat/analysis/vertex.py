"""Vertex deviation of the bar (METHOD.md section 8, paper Section 5.2): selection, metallicity
samples, and the emcee fit of the two-component mixture (``bigcat.analysis.mixture``).

Kernels only: pandas/numpy in, dicts out; no Dask, no files. A stage maps ``vertex_samples``
over the partitions of the processed catalogue, concatenates the (few thousand) selected rows
and calls ``analyze_vertex``, whose result is ``vertex.json``.
"""

from __future__ import annotations

import logging
import math
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from bigcat.analysis.mixture import (
    VARIANTS,
    MixturePosterior,
    MixturePrior,
    error_covariance,
    major_vertex_deg,
    n_params,
    unpack,
    vertex_angle_deg,
)
from bigcat.analysis.mixture_fit import em_deconvolve, laplace_ball, laplace_covariance
from bigcat.analysis.mixture_kernel import PRECISIONS
from bigcat.astrometry.frames import galactic_lb
from bigcat.errors import ConfigError, InputError

logger = logging.getLogger(__name__)

#: SCHEMA.md output columns the selection and the fit read.
VELOCITY_COLUMNS = ["vx_gc", "vy_gc", "vz_gc", "vx_gc_error", "vy_gc_error", "vz_gc_error"] + [
    "v_cov_xy",
    "v_cov_xz",
    "v_cov_yz",
]
SELECTION_COLUMNS = (
    ["ra", "dec", "distance_pc", "distance_pc_p16", "distance_pc_p84", "feh", "feh_error"]
    + ["y_gc_error", "z_gc_error", "radial_velocity"]
    + VELOCITY_COLUMNS
)


@dataclass(frozen=True)
class VertexParams:
    """Settings of the vertex-deviation analysis; defaults follow the paper (Section 5.2).

    Attributes
    ----------
    max_abs_l_deg : float
        Sample box half-width in Galactic longitude (deg).
    max_abs_b_deg : float
        Sample box half-height in Galactic latitude (deg).
    min_distance_kpc, max_distance_kpc : float
        Open distance interval of the sample (kpc), on ``distance_pc``.
    max_distance_sigma_kpc : float
        Upper limit on (distance_pc_p84 - distance_pc_p16) / 2 (kpc).
    max_feh_error : float
        Upper limit on ``feh_error`` (dex).
    max_velocity_sigma_kms : float
        Upper limit on each of vx/vy/vz_gc_error (km/s).
    max_position_sigma_kpc : float
        Upper limit on y_gc_error and z_gc_error (kpc).
    feh_bin_min, feh_bin_max, feh_bin_width : float
        [Fe/H] bins (dex): [min, min + width), ..., the last closed at ``feh_bin_max``.
    metal_poor_max : float
        Metal-poor summary sample: [Fe/H] <= this (dex; Table 3 uses -0.6, the text -0.7).
    metal_rich_min : float
        Metal-rich summary sample: [Fe/H] >= this (dex).
    min_stars : int
        Samples with fewer stars are reported (``n_stars``) but not fitted.
    n_walkers : int
        emcee walkers (at least twice the 19 parameters of the fitted model).
    n_burn : int
        Burn-in steps, discarded. The walkers start from the Laplace approximation at the
        maximum-likelihood mixture (``em_deconvolve``); halfway, walkers left far below the
        ensemble are moved onto good ones.
    n_steps : int
        The most production steps a fit runs; it stops earlier once converged (below).
    min_steps : int
        The fewest production steps (if ``n_steps`` allows).
    check_every : int
        Production steps between convergence checks.
    target_ess : float
        Effective draws of the vertex angle (walkers x steps / its autocorrelation time) a
        fit runs for: 800 make the 16-84% interval good to ~3% and the 1-99% range usable.
    moves : str
        emcee proposal: "laplace" (default): Gaussian random-walk Metropolis steps
        (``emcee.moves.GaussianMove``) with the Laplace covariance at the optimum scaled by
        2.38^2 / dim (the optimal scale for a Gaussian target), half of the time, and
        differential evolution the other half (it adapts to the ensemble where the posterior
        departs from the Laplace approximation); "de" (differential evolution 80% + snooker
        20%); "stretch". Without a Laplace approximation "laplace" falls back to "de". On the
        default 1M-star mock's metal-rich sample the Laplace moves halve the vertex angle's
        autocorrelation time (60 against 127 steps; benchmarks/README.md).
    init_scatter : float
        Scatter of the initial walker ball in the unconstrained parameters, used only where
        the Laplace approximation does not exist.
    converged_tau_factor : float
        ``converged`` needs the production steps to exceed this many autocorrelation times of
        the vertex angle (emcee's estimator) and its effective draws to reach
        ``target_ess``: they judge the reported quantity. The autocorrelation time of every
        parameter (``autocorr_time``, dominated by the weakly constrained minor component)
        and the angle's split-R-hat (``rhat_vertex``: each walker's halves as chains; for an
        ensemble of short correlated walkers it is ~sqrt(1 + 4 / factor), 1.1 at 20
        autocorrelation times, so it is reported, not used) are given beside them.
    precision : str
        Arithmetic of the likelihood emcee calls: "float32" (default), the compiled kernel
        in single precision with float64 sums, 2.2x faster, moving the summed log-likelihood
        by < 1e-3; or "float64". The EM start and the Laplace approximation's
        finite-difference Hessian always use float64.
    constrained_max_err_deg : float
        A 16-84% half-width of the angle above this (deg) means the data do not constrain
        the vertex: the posterior fills much of the prior's +-45 deg (``constrained`` false,
        ``verdict`` "not constrained").
    prior : MixturePrior
        Hyper-parameters of the mixture's priors.
    """

    max_abs_l_deg: float = 5.0
    max_abs_b_deg: float = 10.0
    min_distance_kpc: float = 6.0
    max_distance_kpc: float = 10.0
    max_distance_sigma_kpc: float = 1.0
    max_feh_error: float = 1.0
    max_velocity_sigma_kms: float = 250.0
    max_position_sigma_kpc: float = 1.0
    feh_bin_min: float = -1.65
    feh_bin_max: float = 0.8
    feh_bin_width: float = 0.35
    metal_poor_max: float = -0.6
    metal_rich_min: float = -0.4
    min_stars: int = 20
    n_walkers: int = 48
    n_burn: int = 500
    n_steps: int = 4000
    min_steps: int = 500
    check_every: int = 250
    target_ess: float = 800.0
    moves: str = "laplace"
    init_scatter: float = 0.01
    converged_tau_factor: float = 20.0
    precision: str = "float32"
    constrained_max_err_deg: float = 15.0
    prior: MixturePrior = field(default_factory=MixturePrior)

    def __post_init__(self) -> None:
        if self.n_walkers < 2 * n_params("fitted"):
            raise ConfigError(
                f"vertex.n_walkers = {self.n_walkers}: emcee needs at least "
                f"{2 * n_params('fitted')} (twice the fitted model's parameters)."
            )
        if self.n_burn < 2 or self.n_steps < 10:
            raise ConfigError(
                f"vertex.n_burn = {self.n_burn}, n_steps = {self.n_steps}: need n_burn >= 2 "
                "and n_steps >= 10."
            )
        if self.moves not in ("laplace", "de", "stretch"):
            raise ConfigError(
                f"vertex.moves = {self.moves!r}: must be 'laplace', 'de' or 'stretch'."
            )
        if self.precision not in PRECISIONS:
            raise ConfigError(
                f"vertex.precision = {self.precision!r}: must be one of {', '.join(PRECISIONS)}."
            )
        if self.min_steps < 1 or self.check_every < 1 or not self.target_ess > 0:
            raise ConfigError(
                f"vertex.min_steps = {self.min_steps}, check_every = {self.check_every}, "
                f"target_ess = {self.target_ess}: need min_steps >= 1, check_every >= 1 and "
                "target_ess > 0."
            )
        if not self.feh_bin_width > 0 or not self.feh_bin_max > self.feh_bin_min:
            raise ConfigError(
                f"[Fe/H] bins {self.feh_bin_min}..{self.feh_bin_max} by {self.feh_bin_width}: "
                "need a positive width and max > min."
            )
        if self.metal_poor_max > self.metal_rich_min:
            raise ConfigError(
                f"vertex.metal_poor_max = {self.metal_poor_max} exceeds metal_rich_min = "
                f"{self.metal_rich_min}: the summary samples would overlap."
            )
        if not self.min_distance_kpc < self.max_distance_kpc:
            raise ConfigError(
                f"distance range {self.min_distance_kpc}..{self.max_distance_kpc} kpc is empty."
            )


@dataclass(frozen=True)
class MetallicitySample:
    """One sample of the analysis: its name, kind ("summary" or "bin"), [Fe/H] range (dex;
    None = open) and the selected rows in it."""

    name: str
    kind: str
    feh_range: tuple[float | None, float | None]
    rows: pd.DataFrame


def _require(df: pd.DataFrame, columns: Iterable[str], what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise InputError(
            f"{what}: missing column(s) {', '.join(missing)}. They come from bigcat process "
            "(distances, [Fe/H] and the kinematics stage); run it first."
        )


#: The section-8 cuts in the order they are applied; ``selection_masks`` gives the rows
#: passing each one and all before it ("rows": every row read).
VERTEX_CUTS = (
    "rows",
    "box",
    "distance_window",
    "distance_sigma",
    "feh_error",
    "radial_velocity",
    "velocity_sigma",
    "position_sigma",
)


def selection_masks(df: pd.DataFrame, params: VertexParams | None = None) -> dict[str, np.ndarray]:
    """Cumulative boolean masks of the vertex selection, keyed by :data:`VERTEX_CUTS`.

    "box": |l| <= 5 deg, |b| <= 10 deg; "distance_window": 6 < d < 10 kpc;
    "distance_sigma": (p84 - p16) / 2 < 1 kpc; "feh_error": a finite [Fe/H] with
    feh_error < 1 dex; "radial_velocity": a radial velocity, and finite velocities, errors
    and covariances; "velocity_sigma": each velocity error < 250 km/s; "position_sigma":
    y and z position errors < 1 kpc (bounds from ``params``). The last,
    ``masks["position_sigma"]``, is the selection.
    """
    return _selection(df, params)[0]


def _selection(
    df: pd.DataFrame, params: VertexParams | None
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """:func:`selection_masks`, and the rows' Galactic l and b (deg)."""
    p = params or VertexParams()
    _require(df, SELECTION_COLUMNS, "vertex selection")
    l_deg, b_deg = galactic_lb(df["ra"].to_numpy(float), df["dec"].to_numpy(float))
    d_kpc = df["distance_pc"].to_numpy(float) / 1e3
    d_sig = 0.5 * (df["distance_pc_p84"].to_numpy(float) - df["distance_pc_p16"].to_numpy(float))
    col = {c: df[c].to_numpy(float) for c in SELECTION_COLUMNS[5:]}
    masks = {"rows": np.ones(len(df), dtype=bool)}
    with np.errstate(invalid="ignore"):
        steps = {
            "box": (np.abs(l_deg) <= p.max_abs_l_deg) & (np.abs(b_deg) <= p.max_abs_b_deg),
            "distance_window": (d_kpc > p.min_distance_kpc) & (d_kpc < p.max_distance_kpc),
            "distance_sigma": d_sig / 1e3 < p.max_distance_sigma_kpc,
            "feh_error": (col["feh_error"] < p.max_feh_error) & np.isfinite(col["feh"]),
            "radial_velocity": np.logical_and.reduce(
                [np.isfinite(col["radial_velocity"])]
                + [np.isfinite(col[c]) for c in VELOCITY_COLUMNS]
            ),
            "velocity_sigma": np.logical_and.reduce(
                [col[f"v{a}_gc_error"] < p.max_velocity_sigma_kms for a in ("x", "y", "z")]
            ),
            "position_sigma": (col["y_gc_error"] < p.max_position_sigma_kpc)
            & (col["z_gc_error"] < p.max_position_sigma_kpc),
        }
    keep = masks["rows"]
    for name in VERTEX_CUTS[1:]:
        keep = keep & steps[name]
        masks[name] = keep
    return masks, l_deg, b_deg


def vertex_partition(
    df: pd.DataFrame, params: VertexParams | None = None
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Rows of one partition that pass METHOD.md section 8's selection, and the rows passing
    each cumulative cut of :data:`VERTEX_CUTS` (``"rows"`` = all rows read).

    Parameters
    ----------
    df : pandas.DataFrame
        Processed catalogue rows with SCHEMA.md output columns (``SELECTION_COLUMNS``).
    params : VertexParams, optional

    Returns
    -------
    rows : pandas.DataFrame
        The selected rows: ``source_id`` (when present), ``l_deg``, ``b_deg`` and the columns
        the fit reads (``feh``, ``feh_error``, ``distance_pc``, ``VELOCITY_COLUMNS``).
    counts : dict
        Rows passing each cut and all before it.
    """
    masks, l_deg, b_deg = _selection(df, params)
    keep = masks[VERTEX_CUTS[-1]]
    ident = ["source_id"] if "source_id" in df.columns else []
    out = df.loc[keep, ident + ["feh", "feh_error", "distance_pc", *VELOCITY_COLUMNS]].copy()
    out["l_deg"] = l_deg[keep]
    out["b_deg"] = b_deg[keep]
    order = ident + ["l_deg", "b_deg", "distance_pc", "feh", "feh_error", *VELOCITY_COLUMNS]
    return out[order], {k: int(masks[k].sum()) for k in VERTEX_CUTS}


def describe_cut_counts(counts: dict[str, int] | None) -> str:
    """The selection as a cascade in words, e.g. "369,028 in the box; 252,393 in the
    distance window; ...": where the stars of the |l|, |b| box are lost ("" without
    counts)."""
    if not counts or "box" not in counts:
        return ""
    names = {
        "box": "in the box",
        "distance_window": "in the distance window",
        "distance_sigma": "with a distance sigma below the limit",
        "feh_error": "with [Fe/H] and its error below the limit",
        "radial_velocity": "with a radial velocity",
        "velocity_sigma": "with velocity errors below the limit",
        "position_sigma": "with position errors below the limit (selected)",
    }
    return "; ".join(f"{counts[k]:,} {names[k]}" for k in VERTEX_CUTS[1:] if k in counts)


def vertex_samples(df: pd.DataFrame, params: VertexParams | None = None) -> pd.DataFrame:
    """Rows of one partition that pass METHOD.md section 8's selection
    (:func:`vertex_partition` without the counts)."""
    return vertex_partition(df, params)[0]


def feh_bin_edges(params: VertexParams | None = None) -> np.ndarray:
    """Edges (dex) of the [Fe/H] bins: -1.65, -1.30, ..., 0.80 by default (7 bins)."""
    p = params or VertexParams()
    n = round((p.feh_bin_max - p.feh_bin_min) / p.feh_bin_width)
    if n < 1 or not math.isclose(p.feh_bin_min + n * p.feh_bin_width, p.feh_bin_max):
        raise ConfigError(
            f"[Fe/H] bins: ({p.feh_bin_max} - {p.feh_bin_min}) is not a whole number of "
            f"{p.feh_bin_width} dex bins."
        )
    return np.round(p.feh_bin_min + p.feh_bin_width * np.arange(n + 1), 10)


def metallicity_samples(
    rows: pd.DataFrame, params: VertexParams | None = None
) -> dict[str, MetallicitySample]:
    """The summary samples and the [Fe/H] bins of the selected rows.

    Keys: ``metal_poor`` ([Fe/H] <= metal_poor_max), ``metal_rich`` ([Fe/H] >=
    metal_rich_min), then one per bin keyed ``"{lo:+.2f}_{hi:+.2f}"`` (e.g. ``-1.65_-1.30``);
    bins are [lo, hi) except the last, [lo, hi].
    """
    p = params or VertexParams()
    _require(rows, ["feh"], "metallicity samples")
    feh = rows["feh"].to_numpy(float)
    out = {
        "metal_poor": MetallicitySample(
            "metal_poor", "summary", (None, p.metal_poor_max), rows[feh <= p.metal_poor_max]
        ),
        "metal_rich": MetallicitySample(
            "metal_rich", "summary", (p.metal_rich_min, None), rows[feh >= p.metal_rich_min]
        ),
    }
    edges = feh_bin_edges(p)
    for i, (lo, hi) in enumerate(zip(edges[:-1], edges[1:], strict=True)):
        upper = feh <= hi if i == len(edges) - 2 else feh < hi
        name = f"{lo:+.2f}_{hi:+.2f}"
        out[name] = MetallicitySample(
            name, "bin", (float(lo), float(hi)), rows[(feh >= lo) & upper]
        )
    return out


def velocity_arrays(rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Velocities (N, 3) in km/s and error covariances (N, 3, 3) in (km/s)^2 from SCHEMA.md
    columns (vx_gc, ..., v_cov_yz)."""
    _require(rows, VELOCITY_COLUMNS, "vertex fit")
    a = {c: rows[c].to_numpy(float) for c in VELOCITY_COLUMNS}
    v = np.column_stack([a["vx_gc"], a["vy_gc"], a["vz_gc"]])
    cov = error_covariance(
        a["vx_gc_error"],
        a["vy_gc_error"],
        a["vz_gc_error"],
        a["v_cov_xy"],
        a["v_cov_xz"],
        a["v_cov_yz"],
    )
    return v, cov


def sample_seed(seed: int, name: str, variant: str) -> int:
    """Seed of one fit, derived from the run seed and the sample and variant names only."""
    key = zlib.crc32(f"{name}|{variant}".encode())
    return int(np.random.SeedSequence([int(seed), key]).generate_state(1)[0])


def _ball(
    theta0: np.ndarray,
    n: int,
    scale: np.ndarray | float,
    post: MixturePosterior,
    rng: np.random.Generator,
) -> np.ndarray:
    """``n`` walkers around ``theta0`` with finite posterior (redrawn, shrinking, if not)."""
    p0 = theta0 + scale * rng.standard_normal((n, theta0.size))
    for _ in range(50):
        bad = ~np.isfinite(post(p0))
        if not bad.any():
            return p0
        scale = 0.5 * scale
        p0[bad] = theta0 + scale * rng.standard_normal((int(bad.sum()), theta0.size))
    p0[~np.isfinite(post(p0))] = theta0
    return p0


def _percentiles(x: np.ndarray) -> dict[str, float]:
    q = np.percentile(x, [1, 16, 50, 84, 99])
    return dict(zip(("p1", "p16", "p50", "p84", "p99"), (float(a) for a in q), strict=True))


def _autocorr_times(chain: np.ndarray) -> np.ndarray:
    """Integrated autocorrelation time (steps) per parameter of a (steps, walkers, P) chain,
    emcee's estimator with ``tol=0``, over the walkers that moved (a walker that never moved
    has no autocorrelation function; emcee's average over walkers would be NaN). NaN for a
    parameter no walker moved in."""
    import emcee

    out = np.full(chain.shape[2], np.nan)
    for j in range(chain.shape[2]):
        moved = np.ptp(chain[:, :, j], axis=0) > 0
        if moved.any():
            out[j] = emcee.autocorr.integrated_time(chain[:, moved, j : j + 1], tol=0)[0]
    return out


def _moves(name: str, cov: np.ndarray | None = None) -> Any:
    """emcee moves by name: "laplace" (Gaussian steps with the Laplace covariance ``cov``
    scaled by 2.38^2 / dim, half the time, and differential evolution), "stretch" (emcee's
    default) or "de" (differential evolution 80%, snooker 20%, emcee's advice for correlated
    and multimodal targets; also "laplace" without ``cov``)."""
    import emcee

    if name == "stretch":
        return emcee.moves.StretchMove()
    if name == "laplace" and cov is not None:
        scaled = cov * 2.38**2 / cov.shape[0]
        return [(emcee.moves.GaussianMove(scaled), 0.5), (emcee.moves.DEMove(), 0.5)]
    return [(emcee.moves.DEMove(), 0.8), (emcee.moves.DESnookerMove(), 0.2)]


def split_rhat(x: np.ndarray) -> float:
    """Split-R-hat (Gelman et al. 2013) of a (steps, walkers) chain: each walker's first and
    second halves are chains; sqrt of the pooled over the within-chain variance."""
    n = x.shape[0] // 2
    if n < 2:
        return float("nan")
    chains = np.concatenate([x[:n], x[n : 2 * n]], axis=1)  # (n, 2 walkers)
    means = chains.mean(axis=0)
    within = chains.var(axis=0, ddof=1).mean()
    between = n * means.var(ddof=1)
    if within <= 0:
        return float("nan")
    pooled = (n - 1) / n * within + between / n
    return float(np.sqrt(pooled / within))


def fit_vertex(
    v: np.ndarray,
    cov: np.ndarray,
    variant: str = "fitted",
    params: VertexParams | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Sample the two-component mixture with emcee and summarise the major component's vertex.

    Parameters
    ----------
    v : numpy.ndarray, shape (N, 3)
        Galactocentric velocities vx, vy, vz (km/s).
    cov : numpy.ndarray, shape (N, 3, 3)
        Per-star velocity error covariances ((km/s)^2).
    variant : {"fitted", "zeroed"}
        Means fitted, or both fixed at 0.
    params : VertexParams, optional
        Walkers, burn-in, steps and priors.
    seed : int
        Seed of the walker ball and of emcee's moves (same seed, same result).

    Returns
    -------
    dict
        JSON-ready: ``vertex_deg`` (posterior median), ``vertex_err_deg`` (16-84 half-width),
        ``range_deg`` ([1st, 99th] percentile), ``vertex_percentiles_deg``, ``n_stars``,
        ``acceptance_fraction`` (mean over walkers, production) and its minimum,
        ``n_stuck_walkers`` (production acceptance below 0.2x the median),
        ``n_relocated_walkers`` (moved halfway through burn-in), ``start`` ("laplace" or
        "ball"), ``max_likelihood`` (the EM optimum: vertex, weight, log-likelihood,
        iterations), ``autocorr_time`` (max over parameters, emcee ``tol=0``),
        ``autocorr_time_vertex``, ``n_effective_vertex`` (walkers x steps / tau of the angle)
        and ``mcse_vertex_deg`` (Monte-Carlo error of the median angle), ``converged``
        (n_steps > converged_tau_factor x autocorr_time), the sampler settings, and posterior
        medians of ``weight_major``, ``mean_{major,minor}_kms`` and ``cov_{major,minor}_kms2``.
    """
    import emcee

    p = params or VertexParams()
    post = MixturePosterior(v, cov, variant, p.prior)
    rng = np.random.default_rng(seed)
    # Start at the maximum-likelihood mixture (extreme deconvolution), walkers drawn from the
    # Laplace approximation there; a small ball where that approximation does not exist.
    em = em_deconvolve(post.v, post.cov, variant, p.prior)
    lap_cov = laplace_covariance(em.theta, post)
    p0 = laplace_ball(em.theta, post, p.n_walkers, rng, cov=lap_cov)
    start = "laplace"
    if p0 is None:  # (laplace_ball returns only draws with a finite posterior)
        p0, start = _ball(em.theta, p.n_walkers, p.init_scatter, post, rng), "ball"
    moves = _moves(p.moves, lap_cov if p0 is not None and start == "laplace" else None)
    sampled = post if p.precision == post.precision else post.with_precision(p.precision)
    sampler = emcee.EnsembleSampler(p.n_walkers, post.ndim, sampled, vectorize=True, moves=moves)
    sampler.random_state = np.random.RandomState(int(rng.integers(2**32))).get_state()
    # Burn-in in two halves; walkers that barely moved (acceptance below 0.2x the median) or
    # sit far below the ensemble are moved onto randomly chosen good walkers, jittered.
    first = p.n_burn // 2
    state = sampler.run_mcmc(p0, first, progress=False)
    coords, lp = state.coords.copy(), state.log_prob
    burn_acc = sampler.acceptance_fraction
    stuck = (lp < np.median(lp) - post.ndim) | (burn_acc < 0.2 * np.median(burn_acc))
    good = np.flatnonzero(~stuck)
    if stuck.any():
        donors = coords[rng.choice(good, int(stuck.sum()))]
        jitter = 1e-3 * np.std(coords[good], axis=0) * rng.standard_normal(donors.shape)
        coords[stuck] = donors + jitter
    sampler.reset()
    state = sampler.run_mcmc(coords, p.n_burn - first, progress=False)
    sampler.reset()
    # Production in chunks until the vertex angle has target_ess effective draws, at least
    # converged_tau_factor autocorrelation times and min_steps (or n_steps are reached).
    done = 0
    parts: list[np.ndarray] = []
    min_steps = min(p.min_steps, p.n_steps)
    while True:
        chunk = min(p.check_every, p.n_steps - done)
        state = sampler.run_mcmc(state, chunk, progress=False)
        done += chunk
        # the angles of the new steps only (the chain's earlier angles are kept)
        parts.append(major_vertex_deg(sampler.get_chain()[-chunk:], variant))
        angles = np.concatenate(parts)
        tau_v = _autocorr_times(angles[:, :, None])[0]
        ess = angles.size / tau_v if math.isfinite(tau_v) and tau_v > 0 else 0.0
        enough = ess >= p.target_ess and done >= p.converged_tau_factor * tau_v
        if done >= p.n_steps or (done >= min_steps and enough):
            break

    chain = sampler.get_chain()  # (steps, walkers, P)
    flat = chain.reshape(-1, post.ndim)
    phys = unpack(flat, variant)
    # the last check's angles (steps, walkers) and their autocorrelation time are the
    # whole chain's: no second pass
    rhat = split_rhat(angles)
    angles = angles.ravel()  # flat in the chain's order, as phys
    tau = _autocorr_times(chain)
    pct = _percentiles(angles)
    tau_max = float(np.max(tau))
    # independent draws of the angle, and the Monte-Carlo error of its median (Gaussian
    # approximation: sd(median) = sqrt(pi / 2) sigma / sqrt(n_eff))
    n_eff = float(angles.size / tau_v) if math.isfinite(tau_v) and tau_v > 0 else None
    half = 0.5 * (pct["p84"] - pct["p16"])
    mcse = None if n_eff is None else float(math.sqrt(math.pi / 2) * half / math.sqrt(n_eff))
    converged = bool(
        n_eff is not None and n_eff >= p.target_ess and done >= p.converged_tau_factor * tau_v
    )
    constrained = bool(half <= p.constrained_max_err_deg)
    acc = sampler.acceptance_fraction
    em_state = unpack(em.theta, variant)
    med_means = np.median(phys.means, axis=0)
    med_covs = np.median(phys.covs, axis=0)
    return {
        "variant": variant,
        "n_stars": int(post.v.shape[0]),
        "vertex_deg": pct["p50"],
        "vertex_err_deg": 0.5 * (pct["p84"] - pct["p16"]),
        "range_deg": [pct["p1"], pct["p99"]],
        "vertex_percentiles_deg": pct,
        "acceptance_fraction": float(np.mean(acc)),
        "acceptance_fraction_min": float(np.min(acc)),
        "n_stuck_walkers": int(np.sum(acc < 0.2 * np.median(acc))),
        "n_relocated_walkers": int(stuck.sum()),
        "start": start,
        "max_likelihood": {
            "vertex_deg": float(vertex_angle_deg(em_state.covs[0, 0])),
            "weight_major": float(em_state.weight[0]),
            "log_likelihood": em.log_likelihood,
            "em_iterations": em.n_iter,
            "em_converged": em.converged,
        },
        "autocorr_time": tau_max if math.isfinite(tau_max) else None,
        "autocorr_time_vertex": float(tau_v) if math.isfinite(tau_v) else None,
        "n_effective_vertex": n_eff,
        "mcse_vertex_deg": mcse,
        "converged": converged,
        "rhat_vertex": rhat,
        "constrained": constrained,
        "verdict": _verdict(converged, constrained, done, tau_v, n_eff, mcse, half, p),
        "n_walkers": p.n_walkers,
        "precision": p.precision,
        "n_burn": p.n_burn,
        "n_steps": done,
        "n_steps_max": p.n_steps,
        "moves": p.moves if start == "laplace" or p.moves != "laplace" else "de",
        "seed": int(seed),
        "weight_major": float(np.median(phys.weight)),
        "mean_major_kms": med_means[0].tolist(),
        "mean_minor_kms": med_means[1].tolist(),
        "cov_major_kms2": med_covs[0].tolist(),
        "cov_minor_kms2": med_covs[1].tolist(),
    }


def _verdict(
    converged: bool,
    constrained: bool,
    steps: int,
    tau: float,
    n_eff: float | None,
    mcse: float | None,
    half: float,
    p: VertexParams,
) -> str:
    """The fit's verdict in words. A chain that did not converge says by how much (steps in
    autocorrelation times of the angle, effective draws, each against what is needed) and how
    large its Monte-Carlo error of the median is against the posterior's half-width, which is
    what tells a user whether the shortfall matters for the quoted angle."""
    if converged:
        text = "converged"
    elif not (math.isfinite(tau) and tau > 0 and n_eff is not None and mcse is not None):
        text = "NOT converged: no autocorrelation time could be estimated"
    else:
        text = (
            f"NOT converged: {steps} steps are {steps / tau:.1f} autocorrelation times of the "
            f"angle ({p.converged_tau_factor:g} needed), {n_eff:.0f} effective draws "
            f"({p.target_ess:g} needed); Monte-Carlo error of the median {mcse:.2f} deg "
            f"against a 68% half-width of {half:.2f} deg"
        )
    if not constrained:
        text += "; not constrained: the posterior fills much of the prior"
    return text


def _fit_job(job: tuple[np.ndarray, np.ndarray, str, VertexParams, int]) -> dict[str, Any]:
    v, cov, variant, params, seed = job
    return fit_vertex(v, cov, variant, params, seed)


def analyze_vertex(
    rows: pd.DataFrame,
    params: VertexParams | None = None,
    seed: int = 0,
    map_fn: Callable[..., Iterator[Any]] | None = None,
) -> dict[str, Any]:
    """The vertex.json structure: every metallicity sample, both variants.

    Parameters
    ----------
    rows : pandas.DataFrame
        Rows already selected by ``vertex_samples`` (all partitions concatenated).
    params : VertexParams, optional
    seed : int
        Run seed; each fit's seed is ``sample_seed(seed, sample, variant)``.
    map_fn : callable, optional
        ``map``-like function running the independent fits (e.g. a
        ``concurrent.futures`` executor's ``map``); the builtin ``map`` by default.

    Returns
    -------
    dict
        ``{"samples": {name: {"kind", "feh_range", "n_stars", "fitted": {...},
        "zeroed": {...}}}, "n_stars_selected", "seed", "settings"}``; each variant's dict is
        ``fit_vertex``'s, or ``{"n_stars", "skipped"}`` with null angles when the sample has
        fewer than ``min_stars`` stars.
    """
    p = params or VertexParams()
    samples = metallicity_samples(rows, p)
    jobs, keys = [], []
    out: dict[str, Any] = {}
    for name, s in samples.items():
        n = len(s.rows)
        out[name] = {"kind": s.kind, "feh_range": list(s.feh_range), "n_stars": n}
        if n < p.min_stars:
            logger.info(
                "vertex: sample %s has %d stars (< min_stars %d); not fitted", name, n, p.min_stars
            )
            for variant in VARIANTS:
                out[name][variant] = {
                    "n_stars": n,
                    "vertex_deg": None,
                    "vertex_err_deg": None,
                    "range_deg": None,
                    "skipped": f"{n} stars, fewer than min_stars = {p.min_stars}",
                }
            continue
        v, cov = velocity_arrays(s.rows)
        for variant in VARIANTS:
            jobs.append((v, cov, variant, p, sample_seed(seed, name, variant)))
            keys.append((name, variant))
    # largest samples first: the fits run in parallel, and the longest ones started last
    # would leave the other workers idle at the end (results are put back by key)
    order = sorted(range(len(jobs)), key=lambda i: (-len(jobs[i][0]), i))
    ran = list((map_fn or map)(_fit_job, [jobs[i] for i in order]))
    results: list[Any] = [None] * len(jobs)
    for i, res in zip(order, ran, strict=True):
        results[i] = res
    for (name, variant), res in zip(keys, results, strict=True):
        out[name][variant] = res
        logger.info(
            "vertex: %s %s: %.2f +/- %.2f deg (n = %d, acceptance %.2f, tau %s, %s)",
            name,
            variant,
            res["vertex_deg"],
            res["vertex_err_deg"],
            res["n_stars"],
            res["acceptance_fraction"],
            "-" if res["autocorr_time"] is None else f"{res['autocorr_time']:.0f}",
            res["verdict"],
        )
    return {
        "samples": out,
        "n_stars_selected": int(len(rows)),
        "seed": int(seed),
        "settings": asdict(p),
    }
