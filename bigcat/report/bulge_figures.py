"""Figures and Table 3 of the bulge analyses (paper Section 5: Fig. 11, 12, 13 and Table 3).

The one implementation of these figures: ``bigcat analyze`` (``stages/analyze.py``) draws
them into ``RUN_DIR/analysis/`` and the report (``report/figures.py``) into ``RUN_DIR/report/``.
Each function takes the dict of ``gradient.json`` / ``vertex.json`` (and, where the figure
shows the stars, the selected rows or, for Fig. 11, histograms of them), draws with matplotlib's Agg canvas (no display, no
pyplot state) and writes the file atomically (temporary name, then rename). When the dict
carries ``truth`` (a synthetic run), the injected values are drawn as dashed black lines.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.patches import Ellipse

from bigcat.atomic import write_text_atomic, write_with

FITTED_COLOUR = "tab:red"
ZEROED_COLOUR = "tab:green"
TRUTH_STYLE: dict[str, Any] = {"color": "black", "linestyle": "--", "linewidth": 1.2}


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Figure, path: str | Path, dpi: int = 120) -> Path:
    """Write ``fig`` as PNG to ``path`` atomically (temporary file renamed into place)."""
    return write_with(path, lambda tmp: fig.savefig(tmp, format="png", dpi=dpi))


def _write_text_atomic(text: str, path: Path) -> Path:
    return write_text_atomic(text, path)


def _arr(values: Any) -> np.ndarray:
    """A float array with None as NaN."""
    return np.array([np.nan if v is None else v for v in values], dtype=float)


def _num(value: Any) -> float:
    return float("nan") if value is None else float(value)


# --------------------------------------------------------------------------------------------
# Fig. 11


def _median_panel(ax: Any, binned: Mapping[str, Any], colour: str = "tab:blue") -> None:
    x = _arr(binned["centre"])
    med, lo, hi = _arr(binned["median"]), _arr(binned["p16"]), _arr(binned["p84"])
    ax.fill_between(x, lo, hi, color=colour, alpha=0.25, linewidth=0, label="16-84%")
    ax.plot(x, med, color=colour, linewidth=1.8, label="median")
    ax.plot(x, lo, color=colour, linewidth=0.8)
    ax.plot(x, hi, color=colour, linewidth=0.8)


#: A 2-D histogram of stars: counts (n_x, n_y), x edges (n_x + 1,), y edges (n_y + 1,).
Histogram2D = tuple[np.ndarray, np.ndarray, np.ndarray]


def _density(ax: Any, x: np.ndarray, y: np.ndarray, xr: tuple[float, float]) -> None:
    """Log-scaled 2-D histogram of the stars behind the median curves."""
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 2:
        return
    y_lo, y_hi = np.percentile(y[ok], [0.5, 99.5])
    if not y_hi > y_lo:
        y_lo, y_hi = y_lo - 0.5, y_hi + 0.5
    _density_mesh(ax, np.histogram2d(x[ok], y[ok], bins=(60, 50), range=(xr, (y_lo, y_hi))))


def _density_mesh(ax: Any, hist: Histogram2D) -> None:
    """Draw a 2-D histogram in log-scaled greys (empty bins blank)."""
    counts, xe, ye = hist
    counts = np.asarray(counts, dtype=float)
    if not counts.size or counts.max() < 1:
        return
    counts = np.where(counts == 0, np.nan, counts)
    # vmin below 1: a bin holding one star is light grey, not white
    vmax = max(float(np.nanmax(counts)), 1.0)
    ax.pcolormesh(xe, ye, counts.T, cmap="Greys", norm=LogNorm(vmin=0.5, vmax=vmax))


def plot_gradient(
    result: Mapping[str, Any],
    rows: pd.DataFrame | None,
    path: str | Path,
    backdrop: Mapping[str, Histogram2D] | None = None,
) -> Path:
    """Fig. 11: median [Fe/H] against Z (stars with velocities; all stars) and against |Z|.

    Panels: (a) Z for stars with a Galactocentric velocity, (b) Z for all selected stars,
    (c) |Z| with the fitted line over the fit range and the median curve's peak. Each shows
    the 16-84 percentile band over a log-density of the stars (from ``rows``, else from
    ``backdrop``).

    Parameters
    ----------
    result : mapping
        gradient.json content (``binned_z_with_velocity``, ``binned_z``, ``binned_abs_z``,
        ``slope_dex_per_kpc``, ``intercept_dex``, ``z_range_kpc``, ``peak``, optional
        ``truth``).
    rows : pandas.DataFrame or None
        The selected stars (``z_gc``, ``feh``, ``has_velocity``) for the density backdrop.
    path : str or Path
        PNG file to write.
    backdrop : mapping of str to (counts, x edges, y edges), optional
        Used where ``rows`` is None: each panel's density as a 2-D histogram of [Fe/H]
        against Z (or |Z|), keyed like the panels' curves (``binned_z_with_velocity``,
        ``binned_z``, ``binned_abs_z``); the report passes its whole-catalogue histograms.

    Returns
    -------
    Path
        ``path``.
    """
    fig = _figure(15, 4.6)
    axes = fig.subplots(1, 3, sharey=True)
    z_max = float(result.get("settings", {}).get("max_abs_z_kpc", 3.0))
    z = f = with_v = None
    if rows is not None and len(rows):
        z = rows["z_gc"].to_numpy(float)
        f = rows["feh"].to_numpy(float)
        with_v = (
            rows["has_velocity"].to_numpy(bool)
            if "has_velocity" in rows
            else np.zeros(len(rows), bool)
        )
    panels = [
        (axes[0], "binned_z_with_velocity", "Z (kpc)", "with a velocity (radial velocity)"),
        (axes[1], "binned_z", "Z (kpc)", "all selected stars"),
        (axes[2], "binned_abs_z", "|Z| (kpc)", "all selected stars, |Z|"),
    ]
    for i, (ax, key, xlabel, title) in enumerate(panels):
        if z is not None and f is not None and with_v is not None:
            if i == 0:
                _density(ax, z[with_v], f[with_v], (-z_max, z_max))
            elif i == 1:
                _density(ax, z, f, (-z_max, z_max))
            else:
                _density(ax, np.abs(z), f, (0.0, z_max))
        elif backdrop and key in backdrop:
            _density_mesh(ax, backdrop[key])
        binned = result.get(key)
        if binned:
            _median_panel(ax, binned)
            n = int(np.sum(binned["n"]))
        else:
            n = 0
        ax.set_xlabel(xlabel)
        ax.set_title(f"{title} (n = {n:,})", fontsize=10)
        ax.axhline(0, color="0.6", linewidth=0.5)
    ax = axes[2]
    slope, icpt = _num(result.get("slope_dex_per_kpc")), _num(result.get("intercept_dex"))
    lo, hi = result.get("z_range_kpc", [0.7, 1.6])
    if math.isfinite(slope) and math.isfinite(icpt):
        xs = np.array([lo, hi])
        err = _num(result.get("slope_error"))
        ax.plot(
            xs,
            icpt + slope * xs,
            color=FITTED_COLOUR,
            linewidth=2.5,
            label=f"fit {slope:.3f} ± {err:.3f} dex/kpc",
        )
    ax.axvspan(lo, hi, color="tab:orange", alpha=0.08)
    peak = result.get("peak") or {}
    if peak.get("abs_z_kpc") is not None:
        ax.plot(
            [peak["abs_z_kpc"]],
            [peak["feh"]],
            marker="*",
            color="tab:orange",
            markersize=12,
            linestyle="none",
            label=f"peak {1000 * peak['abs_z_kpc']:.0f} pc, {peak['feh']:.3f} dex",
        )
    truth = result.get("truth") or {}
    if truth.get("slope_dex_per_kpc") is not None:
        t_slope = float(truth["slope_dex_per_kpc"])
        xs = np.array([lo, hi])
        t_icpt = truth.get("median_line_intercept_dex")
        if t_icpt is None and math.isfinite(icpt) and math.isfinite(slope):
            mid = 0.5 * (lo + hi)  # draw the true slope through the fit's midpoint
            t_icpt = icpt + slope * mid - t_slope * mid
        if t_icpt is not None:
            ax.plot(
                xs, t_icpt + t_slope * xs, label=f"injected {t_slope:.3f} dex/kpc", **TRUTH_STYLE
            )
    axes[0].set_ylabel("[Fe/H] (dex)")
    ax.legend(fontsize=8, loc="lower left")
    fig.suptitle("Vertical metallicity gradient of the bulge (R < 2.5 kpc)", fontsize=11)
    return save_figure(fig, path)


# --------------------------------------------------------------------------------------------
# Fig. 12


def _bin_samples(result: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    samples = result.get("samples", {})
    out = [(k, s) for k, s in samples.items() if s.get("kind") == "bin"]
    return sorted(out, key=lambda kv: kv[1]["feh_range"][0])


def _angle_with_errors(fit: Mapping[str, Any]) -> tuple[float, float, float]:
    """Median and its lower/upper error bars (16th and 84th percentiles) of a fit."""
    med = _num(fit.get("vertex_deg"))
    pct = fit.get("vertex_percentiles_deg")
    if pct:
        return med, med - _num(pct.get("p16")), _num(pct.get("p84")) - med
    err = _num(fit.get("vertex_err_deg"))
    return med, err, err


def plot_vertex_bins(result: Mapping[str, Any], path: str | Path) -> Path:
    """Fig. 12: vertex angle per [Fe/H] bin, fitted (red) and zeroed (green) means.

    Error bars are the 16th-84th percentiles; bins with too few stars are marked by their
    count only. The summary samples (metal-poor, metal-rich) are drawn as shaded bands, the
    injected angles of a synthetic run as dashed lines.
    """
    fig = _figure(8, 5)
    ax = fig.subplots()
    bins = _bin_samples(result)
    samples = result.get("samples", {})
    width = 0.35
    if bins:
        width = float(bins[0][1]["feh_range"][1]) - float(bins[0][1]["feh_range"][0])
    for variant, colour, shift in (
        ("fitted", FITTED_COLOUR, -0.04),
        ("zeroed", ZEROED_COLOUR, 0.04),
    ):
        xs, ys, lo, hi = [], [], [], []
        for _, s in bins:
            fit = s.get(variant) or {}
            med, e_lo, e_hi = _angle_with_errors(fit)
            if not math.isfinite(med):
                continue
            a, b = s["feh_range"]
            xs.append(0.5 * (a + b) + shift * width)
            ys.append(med)
            lo.append(e_lo)
            hi.append(e_hi)
        if xs:
            ax.errorbar(
                xs,
                ys,
                yerr=[lo, hi],
                fmt="o",
                color=colour,
                capsize=3,
                label=f"{variant} means",
            )
        for name, shade in (("metal_poor", 0.10), ("metal_rich", 0.10)):
            s = samples.get(name) or {}
            fit = s.get(variant) or {}
            med, e_lo, e_hi = _angle_with_errors(fit)
            if not math.isfinite(med):
                continue
            a, b = s.get("feh_range", [None, None])
            x0 = float(a) if a is not None else (float(bins[0][1]["feh_range"][0]) if bins else -2)
            x1 = float(b) if b is not None else (float(bins[-1][1]["feh_range"][1]) if bins else 1)
            ax.fill_between(
                [x0, x1], med - e_lo, med + e_hi, color=colour, alpha=shade, linewidth=0
            )
            ax.plot([x0, x1], [med, med], color=colour, linewidth=0.8, alpha=0.7)
    ymin, _ = ax.get_ylim() if ax.has_data() else (-60.0, 60.0)
    for _, s in bins:
        a, b = s["feh_range"]
        ax.annotate(
            f"{s['n_stars']}",
            (0.5 * (a + b), 0.02),
            xycoords=("data", "axes fraction"),
            ha="center",
            fontsize=8,
            color="0.3",
        )
    truth = result.get("truth") or {}
    for name in ("metal_poor", "metal_rich"):
        t = (truth.get(name) or {}).get("vertex_deg")
        s = samples.get(name) or {}
        if t is None:
            continue
        a, b = s.get("feh_range", [None, None])
        x0 = float(a) if a is not None else (float(bins[0][1]["feh_range"][0]) if bins else -2)
        x1 = float(b) if b is not None else (float(bins[-1][1]["feh_range"][1]) if bins else 1)
        ax.plot(
            [x0, x1], [t, t], label=f"injected {name.replace('_', '-')}: {t:g} deg", **TRUTH_STYLE
        )
    for _, s in bins:
        ax.axvline(s["feh_range"][0], color="0.85", linewidth=0.5)
    ax.axhline(0, color="0.6", linewidth=0.5)
    ax.set_ylim(-90, 90)
    ax.set_xlabel("[Fe/H] (dex)")
    ax.set_ylabel("vertex angle $l_v$ (deg)")
    n_sel = result.get("n_stars_selected")
    ax.set_title(
        f"Vertex deviation per metallicity bin ({n_sel:,} stars; counts at the bottom)"
        if isinstance(n_sel, int)
        else "Vertex deviation per metallicity bin",
        fontsize=10,
    )
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="upper left")
    return save_figure(fig, path)


# --------------------------------------------------------------------------------------------
# Fig. 13


def _ellipse(
    ax: Any, mean: Any, cov: Any, colour: str, style: str, label: str, k: float = 2.0
) -> None:
    """The k-sigma ellipse of the Vx-Vy block of a 3x3 covariance."""
    c = np.asarray(cov, dtype=float)[:2, :2]
    if not np.isfinite(c).all():
        return
    vals, vecs = np.linalg.eigh(c)
    vals = np.clip(vals, 0, None)
    angle = math.degrees(math.atan2(vecs[1, 1], vecs[0, 1]))
    m = np.asarray(mean if mean is not None else [0.0, 0.0, 0.0], dtype=float)[:2]
    ax.add_patch(
        Ellipse(
            (float(m[0]), float(m[1])),
            width=2 * k * math.sqrt(vals[1]),
            height=2 * k * math.sqrt(vals[0]),
            angle=angle,
            fill=False,
            edgecolor=colour,
            linestyle=style,
            linewidth=1.8,
            label=label,
        )
    )


def _major_reach(sample: Mapping[str, Any], k: float = 2.0) -> float:
    """The largest |Vx| or |Vy| (km/s) the k-sigma ellipses of a sample's major components
    reach (0 without fits)."""
    reach = 0.0
    for variant in ("fitted", "zeroed"):
        fit = sample.get(variant) or {}
        cov = fit.get("cov_major_kms2")
        if cov is None:
            continue
        c = np.asarray(cov, dtype=float)[:2, :2]
        mean = fit.get("mean_major_kms") if variant == "fitted" else None
        m = np.asarray(mean if mean is not None else [0.0, 0.0], dtype=float)[:2]
        if np.isfinite(c).all() and np.isfinite(m).all():
            half = k * np.sqrt(np.clip(np.diag(c), 0, None))  # the ellipse's x and y extents
            reach = max(reach, float(np.max(np.abs(m) + half)))
    return reach


def plot_velocity_ellipsoids(
    result: Mapping[str, Any], rows: Mapping[str, pd.DataFrame], path: str | Path
) -> Path:
    """Fig. 13: Vx-Vy distribution of the metal-poor and metal-rich samples with the 2-sigma
    velocity ellipses of the major (solid) and minor (dashed) mixture components, fitted
    means (red) and zeroed means (green).

    Parameters
    ----------
    result : mapping
        vertex.json content (``samples`` -> ``metal_poor``/``metal_rich`` -> variant ->
        ``mean_major_kms``, ``cov_major_kms2``, ``mean_minor_kms``, ``cov_minor_kms2``).
    rows : mapping of str to pandas.DataFrame
        The stars of each summary sample (``vx_gc``, ``vy_gc``).
    path : str or Path
        PNG file to write.
    """
    fig = _figure(12, 5.6)
    axes = fig.subplots(1, 2)
    samples = result.get("samples", {})
    truth = result.get("truth") or {}
    for ax, name, title in (
        (axes[0], "metal_poor", "metal-poor"),
        (axes[1], "metal_rich", "metal-rich"),
    ):
        df = rows.get(name)
        s = samples.get(name) or {}
        lim = 300.0
        if df is not None and len(df):
            vx, vy = df["vx_gc"].to_numpy(float), df["vy_gc"].to_numpy(float)
            ok = np.isfinite(vx) & np.isfinite(vy)
            if ok.any():
                lim = float(max(100.0, np.percentile(np.abs(np.r_[vx[ok], vy[ok]]), 99)))
            lim = max(lim, 1.05 * _major_reach(s))  # the major components' ellipses fit
            if ok.sum() > 200:
                ax.hexbin(
                    vx[ok],
                    vy[ok],
                    gridsize=40,
                    bins="log",
                    cmap="Greys",
                    mincnt=1,
                    extent=(-lim, lim, -lim, lim),
                )
            else:
                ax.scatter(vx[ok], vy[ok], s=4, color="0.4", alpha=0.6, linewidths=0)
        for variant, colour in (("fitted", FITTED_COLOUR), ("zeroed", ZEROED_COLOUR)):
            fit = s.get(variant) or {}
            if fit.get("cov_major_kms2") is None:
                continue
            angle = _num(fit.get("vertex_deg"))
            err = _num(fit.get("vertex_err_deg"))
            mean_major = fit.get("mean_major_kms") if variant == "fitted" else None
            mean_minor = fit.get("mean_minor_kms") if variant == "fitted" else None
            _ellipse(
                ax,
                mean_major,
                fit["cov_major_kms2"],
                colour,
                "-",
                f"{variant} major: $l_v$ = {angle:.1f} ± {err:.1f} deg",
            )
            if fit.get("cov_minor_kms2") is not None:
                _ellipse(ax, mean_minor, fit["cov_minor_kms2"], colour, "--", f"{variant} minor")
        t = (truth.get(name) or {}).get("vertex_deg")
        if t is not None:
            r = 0.9 * lim
            a = math.radians(float(t))
            ax.plot(
                [-r * math.cos(a), r * math.cos(a)],
                [-r * math.sin(a), r * math.sin(a)],
                label=f"injected $l_v$ = {float(t):g} deg",
                **TRUTH_STYLE,
            )
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
        ax.set_aspect("equal")
        ax.axhline(0, color="0.7", linewidth=0.5)
        ax.axvline(0, color="0.7", linewidth=0.5)
        ax.set_xlabel("$V_X$ (km/s)")
        ax.set_ylabel("$V_Y$ (km/s)")
        ax.set_title(f"{title} (n = {s.get('n_stars', 0):,})", fontsize=10)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc="upper left")
    fig.suptitle("Velocity ellipses (2 sigma) of the mixture components", fontsize=11)
    return save_figure(fig, path)


# --------------------------------------------------------------------------------------------
# Table 3


TABLE3_COLUMNS = [
    "sample",
    "feh_range",
    "variant",
    "n_stars",
    "vertex_deg",
    "vertex_err_deg",
    "range_p1_deg",
    "range_p99_deg",
    "range_half_width_deg",
    "acceptance_fraction",
    "autocorr_time",
    "mcse_vertex_deg",
    "converged",
    "truth_vertex_deg",
]


def _feh_range_text(feh_range: Any) -> str:
    lo, hi = (list(feh_range) + [None, None])[:2] if feh_range else (None, None)
    if lo is None and hi is not None:
        return f"[Fe/H] <= {hi:g}"
    if hi is None and lo is not None:
        return f"[Fe/H] >= {lo:g}"
    if lo is None:
        return "all"
    return f"{lo:g} <= [Fe/H] < {hi:g}"


def table3_rows(result: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Table 3: the summary samples' vertex angles, one row per sample and variant.

    The vertex angle is the posterior median, its uncertainty the 16-84 half-width, and the
    range the 1st-99th percentiles (with their half-width, the paper's "Angle Range").
    """
    out = []
    truth = result.get("truth") or {}
    for name in ("metal_poor", "metal_rich"):
        s = (result.get("samples") or {}).get(name)
        if not s:
            continue
        for variant in ("fitted", "zeroed"):
            fit = s.get(variant) or {}
            rng = fit.get("range_deg") or [None, None]
            p1, p99 = _num(rng[0]), _num(rng[1])
            out.append(
                {
                    "sample": name,
                    "feh_range": _feh_range_text(s.get("feh_range")),
                    "variant": variant,
                    "n_stars": int(s.get("n_stars", 0)),
                    "vertex_deg": _num(fit.get("vertex_deg")),
                    "vertex_err_deg": _num(fit.get("vertex_err_deg")),
                    "range_p1_deg": p1,
                    "range_p99_deg": p99,
                    "range_half_width_deg": 0.5 * (p99 - p1),
                    "acceptance_fraction": _num(fit.get("acceptance_fraction")),
                    "autocorr_time": _num(fit.get("autocorr_time")),
                    "mcse_vertex_deg": _num(fit.get("mcse_vertex_deg")),
                    "converged": fit.get("converged"),
                    "truth_vertex_deg": _num((truth.get(name) or {}).get("vertex_deg")),
                }
            )
    return out


def write_table3(
    result: Mapping[str, Any], csv_path: str | Path, md_path: str | Path
) -> tuple[Path, Path]:
    """Write Table 3 (see :func:`table3_rows`) as CSV and as a Markdown table."""
    frame = pd.DataFrame(table3_rows(result), columns=TABLE3_COLUMNS)
    csv = _write_text_atomic(frame.to_csv(index=False, float_format="%.4f"), Path(csv_path))
    head = [
        "sample",
        "[Fe/H] range",
        "variant",
        "N",
        "vertex angle (deg)",
        "uncertainty (deg)",
        "range 1-99% (deg)",
        "acceptance",
        "tau",
        "MC error (deg)",
        "converged",
        "injected (deg)",
    ]
    lines = [
        "Table 3. Vertex deviation of the bulge: posterior median, 16-84 half-width, and the "
        "1st-99th percentile range (half-width in brackets).",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]

    def fmt(x: float, spec: str = ".2f") -> str:
        return format(x, spec) if math.isfinite(x) else "-"

    for r in frame.to_dict("records"):
        lines.append(
            "| "
            + " | ".join(
                [
                    r["sample"].replace("_", "-"),
                    r["feh_range"],
                    r["variant"],
                    str(r["n_stars"]),
                    fmt(r["vertex_deg"]),
                    "± " + fmt(r["vertex_err_deg"]),
                    f"{fmt(r['range_p1_deg'])} to {fmt(r['range_p99_deg'])} "
                    f"(± {fmt(r['range_half_width_deg'])})",
                    fmt(r["acceptance_fraction"], ".3f"),
                    fmt(r["autocorr_time"], ".1f"),
                    fmt(r["mcse_vertex_deg"], ".2f"),
                    {True: "yes", False: "no"}.get(r["converged"], "-"),
                    fmt(r["truth_vertex_deg"], "g"),
                ]
            )
            + " |"
        )
    md = _write_text_atomic("\n".join(lines) + "\n", Path(md_path))
    return csv, md
