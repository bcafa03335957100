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
from collections.abc import Iterable
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
#: Columns of the selected rows (what each partition task returns).
SAMPLE_COLUMNS = ["z_gc", "feh", "feh_error", "has_velocity"]
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

    def __post_init__(self) -> None:
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
    masks: dict[str, np.ndarray] = {"rows": np.ones(len(df), dtype=bool)}
    with np.errstate(invalid="ignore"):
        r = np.hypot(col["x_gc"], col["y_gc"])
        keep = (r < p.radius_kpc) & (np.abs(col["z_gc"]) < p.max_abs_z_kpc)
        masks["cylinder"] = keep.copy()
        keep &= np.isfinite(col["feh"]) & (col["feh_error"] <= p.max_feh_error)
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
    masks = selection_masks(df, params)
    keep = masks["velocity_sigma"]
    rows = pd.DataFrame(
        {
            "z_gc": df["z_gc"].to_numpy(np.float64)[keep],
            "feh": df["feh"].to_numpy(np.float64)[keep],
            "feh_error": df["feh_error"].to_numpy(np.float64)[keep],
            "has_velocity": has_velocity(df)[keep],
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


def analyze_gradient(
    rows: pd.DataFrame, params: GradientParams | None = None, seed: int = 0
) -> dict[str, Any]:
    """The gradient.json body from the selected rows of all partitions.

    Parameters
    ----------
    rows : pandas.DataFrame
        Concatenated :func:`gradient_partition` rows (``z_gc``, ``feh``, ``has_velocity``).
    params : GradientParams, optional
    seed : int
        Seed of the bootstrap.

    Returns
    -------
    dict
        ``slope_dex_per_kpc``, ``slope_error``, ``intercept_dex``, ``n_stars`` (selected),
        ``n_stars_with_velocity``, ``z_range_kpc`` (the fit range), ``fit`` (see
        :func:`fit_gradient`), ``peak`` (``abs_z_kpc``, ``feh`` of the |Z| median curve),
        ``binned_abs_z``, ``binned_z`` and ``binned_z_with_velocity`` (see
        :func:`binned_medians`), and ``settings``.
    """
    p = params or GradientParams()
    _require(rows, ["z_gc", "feh"], "gradient fit")
    z = rows["z_gc"].to_numpy(np.float64)
    feh = rows["feh"].to_numpy(np.float64)
    with_v = (
        rows["has_velocity"].to_numpy(bool)
        if "has_velocity" in rows.columns
        else np.zeros(len(rows), dtype=bool)
    )
    abs_edges = bin_edges(0.0, p.max_abs_z_kpc, p.bin_width_kpc)
    z_edges = bin_edges(-p.max_abs_z_kpc, p.max_abs_z_kpc, p.bin_width_kpc)
    binned_abs = binned_medians(np.abs(z), feh, abs_edges, p.min_bin_stars)
    fit = fit_gradient(np.abs(z), feh, p, seed)
    return {
        "slope_dex_per_kpc": fit["slope_dex_per_kpc"],
        "slope_error": fit["slope_error"],
        "intercept_dex": fit["intercept_dex"],
        "n_stars": int(len(rows)),
        "n_stars_with_velocity": int(with_v.sum()),
        "z_range_kpc": list(p.fit_range_kpc),
        "fit": fit,
        "peak": median_peak(binned_abs),
        "binned_abs_z": binned_abs,
        "binned_z": binned_medians(z, feh, z_edges, p.min_bin_stars),
        "binned_z_with_velocity": binned_medians(z[with_v], feh[with_v], z_edges, p.min_bin_stars),
        "settings": asdict(p),
    }
