"""Vertical metallicity gradient of the bulge (METHOD.md section 7, paper Section 5.1).

Kernels only: pandas/numpy in, dicts and frames out; no Dask, no files, no ``true_*`` columns.
A stage maps :func:`gradient_partition` over the partitions of the processed catalogue (each
returns the few columns of its passing rows and its cut counts), concatenates the rows and
calls :func:`analyze_gradient`, whose result is the body of ``gradient.json``.

Selection (per star)
--------------------
* bulge cylinder: R = sqrt(x_gc^2 + y_gc^2) < ``radius_kpc`` and |z_gc| < ``max_abs_z_kpc``;
* ``feh`` finite and ``feh_error`` <= ``max_feh_error`` (0.5 dex);
* position sigma: each of x/y/z_gc_error <= ``max_position_sigma_kpc`` (1 kpc);
* velocity sigma: each of vx/vy/vz_gc_error <= ``max_velocity_sigma_kms`` (250 km/s), applied
  only where the star has a velocity (a radial velocity); stars without one are kept, since
  the gradient needs no velocity (Section 5.1, Fig. 11 middle and right panels).

Errors in |Z| and [Fe/H] together (``estimator = "resampled"``, the default)
-----------------------------------------------------------------------------
A star's distance error moves its |Z| and its [Fe/H] together (stage 2 reads absolute
magnitudes made with the distance): a star placed too far is too high above the plane and,
being then too luminous for its colours, too metal-poor, which steepens a gradient measured on
point estimates. The resampled estimator replaces each star by ``distance_samples`` points
spread over its distance posterior (stratified quantiles of a split normal in ln d through
the catalogue's 16th, 50th and 84th percentiles), each with its own Galactocentric position
and its [Fe/H] moved along with the distance (``feh + feh_dlnd (ln d - ln d_median)``,
``feh_dlnd`` from stage 2), weight 1 / ``distance_samples``; membership of the cylinder is
decided per point. The binned medians of all points estimate the binned medians of [Fe/H]
against the *true* |Z| (their expectation over calibrated posteriors), so the correlated
error no longer fakes a gradient. The bootstrap resamples stars, each with its points.
``estimator = "point"`` is the paper's recipe on point estimates (also reported).

Gradient
--------
Median [Fe/H] (with 16th/84th percentiles) in bins of Z and of |Z|; the slope is the
least-squares line through the |Z| bin medians whose bins lie inside ``fit_range_kpc``
(0.7 to 1.6 kpc), and its error the standard deviation of the slopes refitted to bootstrap
resamples of the stars in that range (seeded; stars are resampled within each bin, so the
bin counts are fixed). The peak of the |Z| median curve is reported (paper: ~0.56 kpc,
0.173 dex).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from bigcat.errors import ConfigError, InputError

#: SCHEMA.md output columns the selection reads.
POSITION_COLUMNS = ["x_gc", "y_gc", "z_gc"]
POSITION_ERROR_COLUMNS = ["x_gc_error", "y_gc_error", "z_gc_error"]
VELOCITY_ERROR_COLUMNS = ["vx_gc_error", "vy_gc_error", "vz_gc_error"]
SELECTION_COLUMNS = [
    *POSITION_COLUMNS,
    *POSITION_ERROR_COLUMNS,
    "feh",
    "feh_error",
    *VELOCITY_ERROR_COLUMNS,
]
#: Columns of the distance posterior the resampled estimator reads.
DISTANCE_COLUMNS = ["ra", "dec", "distance_pc", "distance_pc_p16", "distance_pc_p84"]
#: Optional columns (zero slope / the total sigma when absent).
OPTIONAL_COLUMNS = ["feh_dlnd", "feh_error_network"]
#: Columns of the selected rows (what each partition task returns).
SAMPLE_COLUMNS = [
    "z_gc",
    "feh",
    "feh_error",
    "feh_error_network",
    "has_velocity",
    "in_cylinder",
    "ra",
    "dec",
    "ln_d",
    "sig_lo",
    "sig_hi",
    "feh_dlnd",
]
#: Names of the cumulative cuts, in the order they are applied (``gradient_partition``).
CUTS = ("rows", "cylinder", "feh_error", "position_sigma", "velocity_sigma")


@dataclass(frozen=True)
class GradientParams:
    """Settings of the vertical-gradient analysis; defaults follow the paper (Section 5.1).

    Attributes
    ----------
    radius_kpc : float
        Bulge cylinder radius about the GC in the X-Y plane (kpc).
    max_abs_z_kpc : float
        Half-height of the cylinder (kpc); also the extent of the binned curves.
    max_feh_error : float
        Upper limit (inclusive) on ``feh_error`` (dex).
    max_position_sigma_kpc : float
        Upper limit (inclusive) on each of x/y/z_gc_error (kpc).
    max_velocity_sigma_kms : float
        Upper limit (inclusive) on each of vx/vy/vz_gc_error (km/s), where a velocity exists.
    bin_width_kpc : float
        Width of the Z and |Z| bins (kpc); bins start at 0 (|Z|) and at -max_abs_z (Z).
    min_bin_stars : int
        Bins with fewer stars get no median (null) and are not fitted.
    fit_min_abs_z_kpc, fit_max_abs_z_kpc : float
        |Z| range of the linear fit (kpc): bins lying inside it are fitted.
    n_bootstrap : int
        Bootstrap resamples of the slope error.
    estimator : str
        "resampled" (default): each star spread over its distance posterior, its [Fe/H]
        moving with the distance (module docstring); "point": the paper's recipe on the
        point estimates.
    distance_samples : int
        Points per star of the resampled estimator.
    systematic : bool
        Add the [Fe/H] error model's systematic to ``slope_error`` (see
        :func:`analyze_gradient`).
    """

    radius_kpc: float = 2.5
    max_abs_z_kpc: float = 3.0
    max_feh_error: float = 0.5
    max_position_sigma_kpc: float = 1.0
    max_velocity_sigma_kms: float = 250.0
    bin_width_kpc: float = 0.05
    min_bin_stars: int = 10
    fit_min_abs_z_kpc: float = 0.7
    fit_max_abs_z_kpc: float = 1.6
    n_bootstrap: int = 300
    estimator: str = "resampled"
    distance_samples: int = 8
    systematic: bool = True

    def __post_init__(self) -> None:
        if self.estimator not in ("resampled", "point"):
            raise ConfigError(
                f'gradient.estimator = {self.estimator!r}: must be "resampled" or "point".'
            )
        if self.distance_samples < 1:
            raise ConfigError(
                f"gradient.distance_samples = {self.distance_samples}: must be at least 1."
            )
        for name in (
            "radius_kpc",
            "max_abs_z_kpc",
            "max_feh_error",
            "max_position_sigma_kpc",
            "max_velocity_sigma_kms",
            "bin_width_kpc",
        ):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ConfigError(f"gradient.{name} = {value!r}: must be a positive number.")
        if not 0 <= self.fit_min_abs_z_kpc < self.fit_max_abs_z_kpc <= self.max_abs_z_kpc:
            raise ConfigError(
                f"gradient fit range {self.fit_min_abs_z_kpc}..{self.fit_max_abs_z_kpc} kpc: "
                f"need 0 <= min < max <= max_abs_z_kpc ({self.max_abs_z_kpc})."
            )
        if self.min_bin_stars < 1 or self.n_bootstrap < 2:
            raise ConfigError(
                f"gradient.min_bin_stars = {self.min_bin_stars}, n_bootstrap = "
                f"{self.n_bootstrap}: need min_bin_stars >= 1 and n_bootstrap >= 2."
            )

    @property
    def fit_range_kpc(self) -> tuple[float, float]:
        """The |Z| range of the linear fit (kpc)."""
        return (self.fit_min_abs_z_kpc, self.fit_max_abs_z_kpc)


def _require(df: pd.DataFrame, columns: Iterable[str], what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise InputError(
            f"{what}: missing column(s) {', '.join(missing)}. They come from bigcat process "
            "(distances, [Fe/H] and the kinematics stage); run it first."
        )


def selection_masks(
    df: pd.DataFrame, params: GradientParams | None = None
) -> dict[str, np.ndarray]:
    """Cumulative boolean masks of the section-7 cuts, keyed by :data:`CUTS`.

    ``masks["velocity_sigma"]`` is the final selection. NaN positions or [Fe/H] fail; NaN
    velocity errors mean "no velocity" and pass the velocity cut.
    """
    p = params or GradientParams()
    _require(df, SELECTION_COLUMNS, "gradient selection")
    col = {c: df[c].to_numpy(np.float64) for c in SELECTION_COLUMNS}
    # the paper's sigma[Fe/H] cut is on the network's sigma (eq. 5), without the distance's
    sig_feh = (
        df["feh_error_network"].to_numpy(np.float64)
        if "feh_error_network" in df.columns
        else col["feh_error"]
    )
    masks: dict[str, np.ndarray] = {"rows": np.ones(len(df), dtype=bool)}
    with np.errstate(invalid="ignore"):
        r = np.hypot(col["x_gc"], col["y_gc"])
        keep = (r < p.radius_kpc) & (np.abs(col["z_gc"]) < p.max_abs_z_kpc)
        if p.estimator == "resampled" and all(c in df.columns for c in DISTANCE_COLUMNS):
            keep = keep | _any_sample_in_cylinder(df, p)
        masks["cylinder"] = keep.copy()
        keep &= np.isfinite(col["feh"]) & (sig_feh <= p.max_feh_error)
        masks["feh_error"] = keep.copy()
        for c in POSITION_ERROR_COLUMNS:
            keep &= col[c] <= p.max_position_sigma_kpc
        masks["position_sigma"] = keep.copy()
        verr = np.column_stack([col[c] for c in VELOCITY_ERROR_COLUMNS])
        has_v = np.isfinite(verr).all(axis=1)
        v_ok = ~has_v | (verr <= p.max_velocity_sigma_kms).all(axis=1)
        keep &= v_ok
        masks["velocity_sigma"] = keep
    return masks


def _split_normal_sigmas(df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ln d50 and the lower/upper ln-distance sigmas of each star's posterior."""
    with np.errstate(invalid="ignore", divide="ignore"):
        ln_d = np.log(df["distance_pc"].to_numpy(np.float64) / 1e3)
        lo = ln_d - np.log(df["distance_pc_p16"].to_numpy(np.float64) / 1e3)
        hi = np.log(df["distance_pc_p84"].to_numpy(np.float64) / 1e3) - ln_d
    return ln_d, lo, hi


def sample_offsets(n_samples: int) -> np.ndarray:
    """Standard-normal quantiles at the centres of ``n_samples`` equal-probability strata."""
    from scipy.special import ndtri

    return ndtri((np.arange(n_samples) + 0.5) / n_samples)


def _sample_positions(
    ra: np.ndarray, dec: np.ndarray, ln_d: np.ndarray, lo: np.ndarray, hi: np.ndarray, n: int
) -> tuple[np.ndarray, np.ndarray]:
    """Galactocentric positions (3, stars, n) and ln d offsets (stars, n) of the points."""
    from bigcat.astrometry.frames import icrs_to_galactocentric_position

    z = sample_offsets(n)[None, :]
    dln = np.where(z < 0, z * lo[:, None], z * hi[:, None])
    d = np.exp(ln_d[:, None] + dln)
    pos = icrs_to_galactocentric_position(np.repeat(ra, n), np.repeat(dec, n), d.ravel()).reshape(
        3, len(ra), n
    )
    return pos, dln


def _any_sample_in_cylinder(df: pd.DataFrame, p: GradientParams) -> np.ndarray:
    ln_d, lo, hi = _split_normal_sigmas(df)
    ok = np.isfinite(ln_d) & np.isfinite(lo) & np.isfinite(hi)
    out = np.zeros(len(df), dtype=bool)
    if ok.any():
        pos, _ = _sample_positions(
            df["ra"].to_numpy(np.float64)[ok],
            df["dec"].to_numpy(np.float64)[ok],
            ln_d[ok],
            lo[ok],
            hi[ok],
            p.distance_samples,
        )
        inside = (np.hypot(pos[0], pos[1]) < p.radius_kpc) & (np.abs(pos[2]) < p.max_abs_z_kpc)
        out[ok] = inside.any(axis=1)
    return out


def has_velocity(df: pd.DataFrame) -> np.ndarray:
    """True where a star has a Galactocentric velocity (all three velocity errors finite)."""
    _require(df, VELOCITY_ERROR_COLUMNS, "gradient selection")
    return np.isfinite(df[VELOCITY_ERROR_COLUMNS].to_numpy(np.float64)).all(axis=1)


def gradient_partition(
    df: pd.DataFrame, params: GradientParams | None = None
) -> tuple[pd.DataFrame, dict[str, int]]:
    """The selected rows of one partition and the number of rows passing each cut.

    Parameters
    ----------
    df : pandas.DataFrame
        Processed catalogue rows with the columns of :data:`SELECTION_COLUMNS`.
    params : GradientParams, optional

    Returns
    -------
    rows : pandas.DataFrame
        :data:`SAMPLE_COLUMNS` of the passing rows (``has_velocity``: a velocity exists).
    counts : dict
        Rows passing each cumulative cut of :data:`CUTS` (``"rows"`` = all rows).
    """
    p = params or GradientParams()
    masks = selection_masks(df, p)
    keep = masks["velocity_sigma"]
    with np.errstate(invalid="ignore"):
        r = np.hypot(df["x_gc"].to_numpy(np.float64), df["y_gc"].to_numpy(np.float64))
        point_inside = (r < p.radius_kpc) & (
            np.abs(df["z_gc"].to_numpy(np.float64)) < p.max_abs_z_kpc
        )
    has_dist = all(c in df.columns for c in DISTANCE_COLUMNS)
    if has_dist:
        ln_d, lo, hi = _split_normal_sigmas(df)
    else:
        ln_d = lo = hi = np.full(len(df), np.nan)
    slope = (
        np.nan_to_num(df["feh_dlnd"].to_numpy(np.float64))
        if "feh_dlnd" in df.columns
        else np.zeros(len(df))
    )
    rows = pd.DataFrame(
        {
            "z_gc": df["z_gc"].to_numpy(np.float64)[keep],
            "feh": df["feh"].to_numpy(np.float64)[keep],
            "feh_error": df["feh_error"].to_numpy(np.float64)[keep],
            "feh_error_network": (
                df["feh_error_network"].to_numpy(np.float64)
                if "feh_error_network" in df.columns
                else df["feh_error"].to_numpy(np.float64)
            )[keep],
            "has_velocity": has_velocity(df)[keep],
            "in_cylinder": point_inside[keep],
            "ra": (df["ra"].to_numpy(np.float64) if has_dist else np.full(len(df), np.nan))[keep],
            "dec": (df["dec"].to_numpy(np.float64) if has_dist else np.full(len(df), np.nan))[keep],
            "ln_d": ln_d[keep],
            "sig_lo": lo[keep],
            "sig_hi": hi[keep],
            "feh_dlnd": slope[keep],
        }
    )
    return rows, {k: int(m.sum()) for k, m in masks.items()}


def gradient_sample(df: pd.DataFrame, params: GradientParams | None = None) -> pd.DataFrame:
    """The selected rows of one partition (:data:`SAMPLE_COLUMNS`); see ``gradient_partition``."""
    return gradient_partition(df, params)[0]


def bin_edges(lo: float, hi: float, width: float) -> np.ndarray:
    """Edges lo, lo + width, ..., hi (hi must be a whole number of widths from lo)."""
    n = round((hi - lo) / width)
    if n < 1 or not math.isclose(lo + n * width, hi, rel_tol=1e-9, abs_tol=1e-9):
        raise ConfigError(
            f"gradient bins: {hi} - {lo} kpc is not a whole number of {width} kpc bins."
        )
    return np.round(lo + width * np.arange(n + 1), 10)


def binned_medians(
    x: np.ndarray, y: np.ndarray, edges: np.ndarray, min_stars: int = 1
) -> dict[str, list]:
    """Median and 16th/84th percentiles of ``y`` in bins of ``x`` ([lo, hi), last closed).

    Returns
    -------
    dict
        Lists over bins: ``lo``, ``hi``, ``centre``, ``n`` and ``median``, ``p16``, ``p84``
        (NaN where a bin has fewer than ``min_stars`` stars).
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    nb = len(edges) - 1
    idx = np.searchsorted(edges, x, side="right") - 1
    idx[x == edges[-1]] = nb - 1
    ok = (idx >= 0) & (idx < nb) & np.isfinite(y)
    idx, yv = idx[ok], y[ok]
    order = np.argsort(idx, kind="stable")
    idx, yv = idx[order], yv[order]
    starts = np.searchsorted(idx, np.arange(nb + 1))
    n = np.zeros(nb, dtype=np.int64)
    med, p16, p84 = np.full(nb, np.nan), np.full(nb, np.nan), np.full(nb, np.nan)
    for b in range(nb):
        vals = yv[starts[b] : starts[b + 1]]
        n[b] = vals.size
        if vals.size >= max(min_stars, 1):
            p16[b], med[b], p84[b] = np.percentile(vals, [16, 50, 84])
    return {
        "lo": edges[:-1].tolist(),
        "hi": edges[1:].tolist(),
        "centre": (0.5 * (edges[:-1] + edges[1:])).tolist(),
        "n": n.tolist(),
        "median": med.tolist(),
        "p16": p16.tolist(),
        "p84": p84.tolist(),
    }


def _line(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Least-squares slope and intercept of y against x."""
    slope, intercept = np.polyfit(x, y, 1)
    return float(slope), float(intercept)


def fit_gradient(
    abs_z: np.ndarray,
    feh: np.ndarray,
    params: GradientParams | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Slope of the binned median [Fe/H] against |Z| over the fit range, with bootstrap error.

    Parameters
    ----------
    abs_z : numpy.ndarray
        |Z| of the selected stars (kpc).
    feh : numpy.ndarray
        Their [Fe/H] (dex).
    params : GradientParams, optional
        Fit range, bin width, ``min_bin_stars`` and ``n_bootstrap``.
    seed : int
        Seed of the bootstrap (same seed, same error).

    Returns
    -------
    dict
        ``slope_dex_per_kpc``, ``intercept_dex`` (the line at |Z| = 0), ``slope_error``
        (bootstrap standard deviation), ``slope_bootstrap_p16_p84``, ``n_stars_fit``,
        ``n_bins_fit``, ``bin_centres_kpc`` and ``bin_medians_dex`` of the fitted bins, and
        ``n_bootstrap``/``seed``. Slope and errors are NaN with fewer than two bins.
    """
    p = params or GradientParams()
    lo, hi = p.fit_range_kpc
    abs_z = np.asarray(abs_z, dtype=np.float64)
    feh = np.asarray(feh, dtype=np.float64)
    # bins of the |Z| grid (from 0) lying inside the fit range
    edges = bin_edges(0.0, p.max_abs_z_kpc, p.bin_width_kpc)
    eps = 1e-9
    inside = (edges[:-1] >= lo - eps) & (edges[1:] <= hi + eps)
    b_lo, b_hi = edges[:-1][inside], edges[1:][inside]
    groups = []
    for a, b in zip(b_lo, b_hi, strict=True):
        last = math.isclose(b, hi)
        sel = (abs_z >= a) & ((abs_z <= b) if last else (abs_z < b)) & np.isfinite(feh)
        vals = feh[sel]
        if vals.size >= p.min_bin_stars:
            groups.append((0.5 * (a + b), vals))
    out: dict[str, Any] = {
        "slope_dex_per_kpc": float("nan"),
        "intercept_dex": float("nan"),
        "slope_error": float("nan"),
        "slope_bootstrap_p16_p84": [float("nan"), float("nan")],
        "n_stars_fit": int(sum(v.size for _, v in groups)),
        "n_bins_fit": len(groups),
        "bin_centres_kpc": [float(c) for c, _ in groups],
        "bin_medians_dex": [float(np.median(v)) for _, v in groups],
        "n_bootstrap": int(p.n_bootstrap),
        "seed": int(seed),
        "method": (
            "least squares through the median [Fe/H] of |Z| bins inside the fit range; error "
            "= std of slopes refitted to bootstrap resamples of the stars within each bin"
        ),
    }
    if len(groups) < 2:
        return out
    x = np.array([c for c, _ in groups])
    slope, intercept = _line(x, np.array(out["bin_medians_dex"]))
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 7]))
    boot_med = np.empty((p.n_bootstrap, len(groups)))
    for j, (_, vals) in enumerate(groups):
        n = vals.size
        for i in range(p.n_bootstrap):
            draw = rng.integers(0, n, n)
            boot_med[i, j] = np.median(vals[draw])
    xc = x - x.mean()
    slopes = (boot_med - boot_med.mean(axis=1, keepdims=True)) @ xc / (xc @ xc)
    out.update(
        slope_dex_per_kpc=slope,
        intercept_dex=intercept,
        slope_error=float(np.std(slopes, ddof=1)),
        slope_bootstrap_p16_p84=[float(v) for v in np.percentile(slopes, [16, 84])],
    )
    return out


def median_peak(binned: dict[str, list]) -> dict[str, float | None]:
    """Position and value of the highest bin median of a :func:`binned_medians` curve."""
    med = np.asarray(binned["median"], dtype=np.float64)
    if not np.isfinite(med).any():
        return {"abs_z_kpc": None, "feh": None}
    i = int(np.nanargmax(med))
    return {"abs_z_kpc": float(binned["centre"][i]), "feh": float(med[i])}


def expand_to_points(
    rows: pd.DataFrame, params: GradientParams
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The resampled estimator's points inside the cylinder: star index, Z (kpc), [Fe/H]
    moved with the distance, and whether the star has a velocity. Stars without a usable
    distance posterior keep their point estimate as one point of full weight (repeated)."""
    n = params.distance_samples
    ln_d = rows["ln_d"].to_numpy(np.float64)
    lo = rows["sig_lo"].to_numpy(np.float64)
    hi = rows["sig_hi"].to_numpy(np.float64)
    ok = np.isfinite(ln_d) & np.isfinite(lo) & np.isfinite(hi)
    m = len(rows)
    z = np.repeat(rows["z_gc"].to_numpy(np.float64)[:, None], n, axis=1)
    r_cyl = np.zeros((m, n))
    inside_pt = rows["in_cylinder"].to_numpy(bool)
    r_cyl[~inside_pt] = np.inf
    dln = np.zeros((m, n))
    if ok.any():
        pos, dln_ok = _sample_positions(
            rows["ra"].to_numpy(np.float64)[ok],
            rows["dec"].to_numpy(np.float64)[ok],
            ln_d[ok],
            lo[ok],
            hi[ok],
            n,
        )
        z[ok] = pos[2]
        r_cyl[ok] = np.hypot(pos[0], pos[1])
        dln[ok] = dln_ok
    feh = (
        rows["feh"].to_numpy(np.float64)[:, None]
        + rows["feh_dlnd"].to_numpy(np.float64)[:, None] * dln
    )
    inside = (r_cyl < params.radius_kpc) & (np.abs(z) < params.max_abs_z_kpc) & np.isfinite(feh)
    star = np.repeat(np.arange(m)[:, None], n, axis=1)
    with_v = np.repeat(rows["has_velocity"].to_numpy(bool)[:, None], n, axis=1)
    return star[inside], z[inside], feh[inside], with_v[inside]


def point_errors(rows: pd.DataFrame, star: np.ndarray) -> np.ndarray:
    """The network's [Fe/H] sigma of each point (its star's; the distance's share is in the
    spread of the points)."""
    col = "feh_error_network" if "feh_error_network" in rows.columns else "feh_error"
    return rows[col].to_numpy(np.float64)[star]


def grid_deconvolved_median(
    values: np.ndarray,
    errors: np.ndarray,
    curve: tuple[np.ndarray, np.ndarray, float] | None = None,
    grid_step: float = 0.02,
    smoothing: float = 0.01,
    tol: float = 1e-5,
    max_iter: int = 1000,
) -> float:
    """Median of the [Fe/H] distribution behind noisy ``values`` (Gaussian ``errors``),
    deconvolved on a grid of true [Fe/H] (``grid_step`` dex) by EM with a Gaussian smoothing
    of ``smoothing`` dex after each step (it biases the median towards the noisy one by about
    the smoothing width where the noise hides a narrow peak).

    A star of true [Fe/H] f has a value ~ N(g(f), error). Without ``curve``, g(f) = f (the
    additive error model: noise on the true value). With ``curve`` (label centres, median
    predictions, slope beyond; :class:`bigcat.stages.metallicity.FehDebias`), g is the
    network's pull towards its training mean measured on the validation stars (the
    regression error model). EM stops once the median has moved by less than ``tol`` dex in
    each of 10 consecutive iterations (typically 40-80 iterations), at most ``max_iter``.
    """
    x = np.asarray(values, dtype=np.float64)
    e = np.asarray(errors, dtype=np.float64)
    grid = np.arange(-3.0, 1.2, grid_step)
    if curve is None:
        g = grid
    else:
        centres, medians, slope = (np.asarray(curve[0]), np.asarray(curve[1]), float(curve[2]))
        g = np.interp(grid, centres, medians)
        g = np.where(grid < centres[0], medians[0] + (grid - centres[0]) * slope, g)
        g = np.where(grid > centres[-1], medians[-1] + (grid - centres[-1]) * slope, g)
    like = np.exp(-0.5 * ((x[:, None] - g[None, :]) / e[:, None]) ** 2) / e[:, None]
    w = np.full(grid.size, 1.0 / grid.size)
    kernel = np.exp(-0.5 * (np.arange(-3, 4) * grid_step / smoothing) ** 2)
    kernel /= kernel.sum()
    upper = grid + 0.5 * grid_step  # the cumulative weight of a grid cell is reached at its top
    median, still = math.nan, 0
    for _ in range(max_iter):
        # responsibilities like * w / (like @ w), averaged over the stars: two products
        w = w * (like.T @ (1.0 / np.maximum(like @ w, 1e-300))) / x.size
        w = np.convolve(w, kernel, mode="same")
        w /= w.sum()
        new = float(np.interp(0.5, np.cumsum(w), upper))
        still = still + 1 if abs(new - median) < tol else 0
        median = new
        if still >= 10:
            break
    return median


def _deconvolved_median_job(job: tuple[np.ndarray, np.ndarray, Any]) -> float:
    values, errors, curve = job
    return grid_deconvolved_median(values, errors, curve)


def alternative_slopes(
    abs_z: np.ndarray,
    feh: np.ndarray,
    errors: np.ndarray,
    params: GradientParams,
    curve: tuple[np.ndarray, np.ndarray, float] | None,
    width: float = 0.1,
    max_points: int = 10_000,
    map_fn: Callable[..., Iterator[Any]] | None = None,
) -> dict[str, float]:
    """The slope through the binned medians of the [Fe/H] distribution deconvolved under each
    limiting error model ("additive": noise on the true value; "regression": the network's
    pull towards its training mean, when ``curve`` is given), in bins of ``width`` over the
    fit range (at most ``max_points`` per bin, evenly thinned). ``map_fn``: a ``map``-like
    function running the independent deconvolutions (e.g. on the cluster; builtin ``map``
    by default; the result does not depend on it)."""
    lo, hi = params.fit_range_kpc
    edges = np.arange(lo, hi + 1e-9, width)
    out: dict[str, list] = {"additive": [], "regression": [], "centres": []}
    jobs: list[tuple[np.ndarray, np.ndarray, Any]] = []
    for a, b in zip(edges[:-1], edges[1:], strict=True):
        m = np.flatnonzero((abs_z >= a) & (abs_z < b) & np.isfinite(feh) & (errors > 0))
        if m.size < 50:
            continue
        m = m[:: max(1, m.size // max_points)]
        out["centres"].append(0.5 * (a + b))
        jobs.append((feh[m], errors[m], None))
        if curve is not None:
            jobs.append((feh[m], errors[m], curve))
    medians = list((map_fn or map)(_deconvolved_median_job, jobs))
    out["additive"] = [x for x, job in zip(medians, jobs, strict=True) if job[2] is None]
    out["regression"] = [x for x, job in zip(medians, jobs, strict=True) if job[2] is not None]
    res: dict[str, float] = {}
    if len(out["centres"]) >= 2:
        res["additive"] = _line(np.array(out["centres"]), np.array(out["additive"]))[0]
        if curve is not None:
            res["regression"] = _line(np.array(out["centres"]), np.array(out["regression"]))[0]
    return res


def fit_gradient_points(
    abs_z: np.ndarray,
    feh: np.ndarray,
    star: np.ndarray,
    n_stars: int,
    params: GradientParams,
    seed: int = 0,
) -> dict[str, Any]:
    """:func:`fit_gradient` for the resampled estimator's points (each star's points carry
    weight 1 / distance_samples); the bootstrap draws stars (Poisson weights), so a star's
    points stay together. ``min_bin_stars`` counts stars' worth of weight."""
    p = params
    lo, hi = p.fit_range_kpc
    edges = bin_edges(0.0, p.max_abs_z_kpc, p.bin_width_kpc)
    eps = 1e-9
    inside = (edges[:-1] >= lo - eps) & (edges[1:] <= hi + eps)
    b_lo, b_hi = edges[:-1][inside], edges[1:][inside]
    n = p.distance_samples
    b = np.full(abs_z.size, -1)
    for j, (a, c) in enumerate(zip(b_lo, b_hi, strict=True)):
        last = math.isclose(c, hi)
        sel = (abs_z >= a) & ((abs_z <= c) if last else (abs_z < c))
        b[sel] = j
    keep = b >= 0
    b, v, st = b[keep], feh[keep], star[keep]
    order = np.lexsort((v, b))
    b, v, st = b[order], v[order], st[order]
    nb = b_lo.size
    starts = np.searchsorted(b, np.arange(nb + 1))
    counts = np.diff(starts) / n
    good = counts >= p.min_bin_stars
    centres = 0.5 * (b_lo + b_hi)

    def medians(weights: np.ndarray) -> np.ndarray:
        cw = np.cumsum(weights)
        before = np.where(starts[:-1] > 0, cw[np.maximum(starts[:-1] - 1, 0)], 0.0)
        total = cw[np.maximum(starts[1:] - 1, 0)] - before
        idx = np.searchsorted(cw, before + 0.5 * total, side="left")
        idx = np.clip(idx, starts[:-1], np.maximum(starts[1:] - 1, starts[:-1]))
        return np.where(total > 0, v[np.minimum(idx, v.size - 1)], np.nan)

    out: dict[str, Any] = {
        "slope_dex_per_kpc": float("nan"),
        "intercept_dex": float("nan"),
        "slope_error": float("nan"),
        "slope_bootstrap_p16_p84": [float("nan"), float("nan")],
        "n_stars_fit": int(np.unique(st).size),
        "n_bins_fit": int(good.sum()),
        "bin_centres_kpc": [float(c) for c in centres[good]],
        "bin_medians_dex": [],
        "n_bootstrap": int(p.n_bootstrap),
        "seed": int(seed),
        "method": (
            "least squares through the median [Fe/H] of |Z| bins inside the fit range, each "
            f"star spread over its distance posterior in {n} points with its [Fe/H] moving "
            "with the distance; error = std of slopes refitted to bootstrap resamples of stars"
        ),
    }
    if good.sum() < 2 or v.size == 0:
        return out
    med = medians(np.ones(v.size))
    x = centres[good]
    slope, intercept = _line(x, med[good])
    out.update(
        slope_dex_per_kpc=slope,
        intercept_dex=intercept,
        bin_medians_dex=[float(m) for m in med[good]],
    )
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 7]))
    xc = x - x.mean()
    slopes = np.empty(p.n_bootstrap)
    for i in range(p.n_bootstrap):
        w = rng.poisson(1.0, n_stars).astype(np.float64)[st]
        mb = medians(w)[good]
        slopes[i] = (mb - np.nanmean(mb)) @ xc / (xc @ xc)
    out.update(
        slope_error=float(np.nanstd(slopes, ddof=1)),
        slope_bootstrap_p16_p84=[float(q) for q in np.nanpercentile(slopes, [16, 84])],
    )
    return out


def _point_fit(rows: pd.DataFrame, p: GradientParams, seed: int) -> tuple[dict, np.ndarray]:
    inside = (
        rows["in_cylinder"].to_numpy(bool)
        if "in_cylinder" in rows.columns
        else np.ones(len(rows), dtype=bool)
    )
    z = rows["z_gc"].to_numpy(np.float64)[inside]
    feh = rows["feh"].to_numpy(np.float64)[inside]
    return fit_gradient(np.abs(z), feh, p, seed), inside


def analyze_gradient(
    rows: pd.DataFrame,
    params: GradientParams | None = None,
    seed: int = 0,
    feh_curve: tuple[np.ndarray, np.ndarray, float] | None = None,
    map_fn: Callable[..., Iterator[Any]] | None = None,
) -> dict[str, Any]:
    """The gradient.json body from the selected rows of all partitions.

    Parameters
    ----------
    rows : pandas.DataFrame
        Concatenated :func:`gradient_partition` rows (``z_gc``, ``feh``, ``has_velocity``, and
        for the resampled estimator the distance posterior and ``feh_dlnd``).
    params : GradientParams, optional
    seed : int
        Seed of the bootstrap.
    feh_curve : (label centres, median predictions, slope), optional
        The stage-2 network's pull towards its training mean on the validation stars
        (``FehDebias``), for the regression error model of the systematic term.
    map_fn : callable, optional
        ``map``-like function running the systematic term's deconvolutions
        (:func:`alternative_slopes`).

    Returns
    -------
    dict
        ``slope_dex_per_kpc``, ``intercept_dex`` (of ``estimator``), ``slope_error`` (the
        bootstrap's statistical error and the [Fe/H] error model's systematic in quadrature),
        ``slope_error_statistical``, ``slope_error_systematic`` and ``slope_alternatives``
        (the slope with the [Fe/H] distribution of each bin deconvolved under the additive
        and the regression error models: the binned median of a noisy bimodal distribution
        depends on which holds, and half the spread of the three slopes is the systematic),
        ``point`` (the paper's recipe on point estimates: slope, error, stars),
        ``n_stars`` (selected), ``n_stars_with_velocity``, ``z_range_kpc`` (the fit range),
        ``fit``, ``peak`` (``abs_z_kpc``, ``feh`` of the |Z| median curve), ``binned_abs_z``,
        ``binned_z`` and ``binned_z_with_velocity`` (see :func:`binned_medians`; of the
        points for the resampled estimator), and ``settings``.
    """
    p = params or GradientParams()
    _require(rows, ["z_gc", "feh"], "gradient fit")
    point, inside = _point_fit(rows, p, seed)
    resample = (
        p.estimator == "resampled"
        and "ln_d" in rows.columns
        and np.isfinite(rows["ln_d"].to_numpy(np.float64)).any()
    )
    errors = None
    if resample:
        star, z, feh, with_v = expand_to_points(rows, p)
        errors = point_errors(rows, star)
        fit = fit_gradient_points(np.abs(z), feh, star, len(rows), p, seed)
        n_sel = int(np.unique(star).size)
        n_with_v = int(np.unique(star[with_v]).size)
        min_pts = p.min_bin_stars * p.distance_samples
    else:
        z = rows["z_gc"].to_numpy(np.float64)[inside]
        feh = rows["feh"].to_numpy(np.float64)[inside]
        with_v = (
            rows["has_velocity"].to_numpy(bool)[inside]
            if "has_velocity" in rows.columns
            else np.zeros(inside.sum(), dtype=bool)
        )
        fit, n_sel, n_with_v, min_pts = point, int(inside.sum()), int(with_v.sum()), p.min_bin_stars
    if errors is None:
        col = "feh_error_network" if "feh_error_network" in rows.columns else "feh_error"
        errors = rows[col].to_numpy(np.float64)[inside] if col in rows.columns else None
    alternatives = (
        alternative_slopes(np.abs(z), feh, errors, p, feh_curve, map_fn=map_fn)
        if p.systematic and errors is not None
        else {}
    )
    slopes = [fit["slope_dex_per_kpc"], *alternatives.values()]
    finite = [x for x in slopes if math.isfinite(x)]
    systematic = 0.5 * (max(finite) - min(finite)) if len(finite) > 1 else 0.0
    stat = fit["slope_error"]
    abs_edges = bin_edges(0.0, p.max_abs_z_kpc, p.bin_width_kpc)
    z_edges = bin_edges(-p.max_abs_z_kpc, p.max_abs_z_kpc, p.bin_width_kpc)
    binned_abs = binned_medians(np.abs(z), feh, abs_edges, min_pts)
    return {
        "slope_dex_per_kpc": fit["slope_dex_per_kpc"],
        "slope_error": float(math.hypot(stat, systematic)) if math.isfinite(stat) else stat,
        "slope_error_statistical": stat,
        "slope_error_systematic": float(systematic),
        "slope_alternatives": {k: float(v) for k, v in alternatives.items()},
        "intercept_dex": fit["intercept_dex"],
        "estimator": "resampled" if resample else "point",
        "point": {
            "slope_dex_per_kpc": point["slope_dex_per_kpc"],
            "slope_error": point["slope_error"],
            "n_stars": int(inside.sum()),
        },
        "n_stars": n_sel,
        "n_stars_with_velocity": n_with_v,
        "z_range_kpc": list(p.fit_range_kpc),
        "fit": fit,
        "peak": median_peak(binned_abs),
        "binned_abs_z": binned_abs,
        "binned_z": binned_medians(z, feh, z_edges, min_pts),
        "binned_z_with_velocity": binned_medians(z[with_v], feh[with_v], z_edges, min_pts),
        "settings": asdict(p),
    }
