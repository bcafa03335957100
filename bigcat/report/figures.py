"""The report's figures (matplotlib, Agg): the paper's Figs 3, 4, 5, 8-13 and HEALPix sky maps.

Each ``figN(data, out_dir)`` writes one PNG and returns a :class:`ReportFigure`; when the run
has not made what a figure needs, no file is written and ``missing`` names the command that
makes it. On a synthetic run every figure also draws the truth (recovered vs injected).
Density panels are drawn from the fixed-grid histograms of ``bigcat.report.collect`` (never
from the whole catalogue); scatter panels use its deterministic subsample.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import numpy as np
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.patches import Ellipse

from bigcat.report.collect import GRIDS, SKY_AKS, SKY_FEH, RunData, grid_edges
from bigcat.report.tables import NOT_RUN, missing_text, robust_scatter, vertex_truth

logger = logging.getLogger(__name__)

DPI = 110
TRUTH_STYLE: dict[str, Any] = {"color": "black", "ls": "--", "lw": 1.5}
#: Smallest column count for a percentile curve point.
MIN_COLUMN_COUNT = 5


@dataclass
class ReportFigure:
    """One figure of the report: its PNG (relative to the report) or why it is missing."""

    key: str
    title: str
    caption: str
    path: Path | None = None
    missing: str | None = None
    notes: list[str] = field(default_factory=list)
    extra: list[Path] = field(default_factory=list)


def _save(fig: Figure, out_dir: Path, name: str) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.png"
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    return path


def _density(ax, hist: np.ndarray, key: str, cmap: str = "viridis", alpha: float = 1.0):
    """Log-scaled density of a fixed-grid histogram (zeros left blank)."""
    gx, gy = GRIDS[key]
    h = np.ma.masked_less_equal(hist.T.astype(float), 0)
    if h.count() == 0:
        return None
    return ax.pcolormesh(
        grid_edges(gx),
        grid_edges(gy),
        h,
        norm=LogNorm(vmin=1, vmax=max(float(h.max()), 1.0) + 1e-9),
        cmap=cmap,
        alpha=alpha,
        shading="flat",
    )


def column_quantiles(
    hist: np.ndarray, yedges: np.ndarray, qs: tuple[float, ...], min_count: int = MIN_COLUMN_COUNT
) -> np.ndarray:
    """Quantiles of y per x column of a 2-D histogram (linear within bins); NaN for columns
    with fewer than ``min_count`` entries. Shape (len(qs), n_x)."""
    out = np.full((len(qs), hist.shape[0]), np.nan)
    for i, col in enumerate(hist):
        total = col.sum()
        if total < min_count:
            continue
        cum = np.concatenate([[0.0], np.cumsum(col)]) / total
        for j, q in enumerate(qs):
            out[j, i] = float(np.interp(q, cum, yedges))
    return out


def _centres(edges: np.ndarray) -> np.ndarray:
    return 0.5 * (edges[:-1] + edges[1:])


def _binned_stat(
    x: np.ndarray, y: np.ndarray, edges: np.ndarray, stat: Callable[[np.ndarray], float]
) -> np.ndarray:
    out = np.full(len(edges) - 1, np.nan)
    for i, (lo, hi) in enumerate(zip(edges[:-1], edges[1:], strict=True)):
        m = (x >= lo) & (x < hi) & np.isfinite(y)
        if m.sum() >= MIN_COLUMN_COUNT:
            out[i] = stat(y[m])
    return out


def _quantile_of(q: float) -> Callable[[np.ndarray], float]:
    def stat(values: np.ndarray) -> float:
        return float(np.quantile(values, q))

    return stat


@dataclass(frozen=True)
class _Head:
    """The key, title and caption of one figure, and its two outcomes."""

    key: str
    title: str
    caption: str

    def missing(self, why: str) -> ReportFigure:
        return ReportFigure(self.key, self.title, self.caption, missing=why)

    def missing_hist(self, data: RunData, name: str, why: str) -> ReportFigure | None:
        """The placeholder when the run has no catalogue, or (saying ``why``) no histogram
        ``name`` to draw from; None when the figure can be drawn."""
        if data.catalog is None:
            return self.missing(NOT_RUN["catalog"])
        if name not in data.summary.hists:
            return self.missing(why)
        return None

    def saved(self, fig: Figure, out_dir: Path, name: str, **kwargs: Any) -> ReportFigure:
        """Save ``fig`` as ``out_dir/name.png`` (``kwargs``: notes, extra)."""
        return ReportFigure(self.key, self.title, self.caption, _save(fig, out_dir, name), **kwargs)


def _single_axes(figsize: tuple[float, float] = (7, 5)) -> tuple[Figure, Any]:
    fig = Figure(figsize=figsize)
    return fig, fig.subplots()


def _density_colorbar(fig: Figure, ax, hist: np.ndarray, key: str) -> None:
    """Log density of histogram ``key`` with a star-count colour bar."""
    mesh = _density(ax, hist, key)
    if mesh is not None:
        fig.colorbar(mesh, ax=ax, label="stars per bin")


def _percentile_curves(
    ax, hist: np.ndarray, key: str, median: dict[str, Any], band: dict[str, Any]
) -> tuple[np.ndarray, np.ndarray]:
    """Median (style ``median``) and 16th/84th percentile (style ``band``, labelled on the
    16th only) curves per x column of histogram ``key``; returns x and the quantiles (3, n_x)."""
    gx, gy = GRIDS[key]
    x = _centres(grid_edges(gx))
    q = column_quantiles(hist, grid_edges(gy), (0.16, 0.5, 0.84))
    ax.plot(x, q[1], **median)
    ax.plot(x, q[0], **band)
    ax.plot(x, q[2], **{k: v for k, v in band.items() if k != "label"})
    return x, q


def _truth_scatter(
    ax, x: np.ndarray, diff: np.ndarray, edges: np.ndarray, label: str, fmt: str, **style: Any
) -> None:
    """The truth curve: log10 robust scatter of ``diff`` (recovered − injected) per x bin."""
    sc = _binned_stat(x, diff, edges, robust_scatter)
    ax.plot(_centres(edges), np.log10(sc), fmt, ms=4, label=label, **style)


def _giant_distance_truth(
    ax, data: RunData, col: str, true_col: str, label: str, fmt: str, **style: Any
) -> None:
    """On a synthetic run: robust scatter of ``col`` − ``true_col`` of the subsample's giants
    per 1 kpc distance bin (Figs 4 and 5)."""
    sub = data.subsample
    if data.is_mock and true_col in sub.columns:
        g = sub[sub["is_giant"].astype(bool)]
        diff = (g[col] - g[true_col]).to_numpy(float)
        x = g["distance_pc"].to_numpy(float) / 1e3
        _truth_scatter(ax, x, diff, np.linspace(0, 20, 21), label, fmt, **style)


def _finish(
    head: _Head,
    fig: Figure,
    ax,
    out_dir: Path,
    name: str,
    xlabel: str,
    ylabel: str,
    **legend: Any,
) -> ReportFigure:
    """Label the axes, draw the legend (font size 8, ``legend``) and save the figure."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8, **legend)
    return head.saved(fig, out_dir, name)


# --- Fig 3 ------------------------------------------------------------------------------------


def fig3(data: RunData, out_dir: Path) -> ReportFigure:
    """Giant cut in (J-H)_0 against J-band pseudo-absolute magnitude (eq. 7)."""
    head = _Head(
        "fig3",
        "Fig. 3. Giant cut",
        "Pseudo-absolute J magnitude (eq. 6) against (J-H)_0 for stars passing the quality "
        "cuts; giants (blue) and the rest (red), log density. The line is the cut of eq. 7.",
    )
    if (gone := head.missing_hist(data, "fig3_giants", NOT_RUN["stage1"])) is not None:
        return gone
    h = data.summary.hists
    phot = ((data.run_info or {}).get("config") or {}).get("photometry") or {}
    slope = float(phot.get("giant_cut_slope", 492.101))
    intercept = float(phot.get("giant_cut_intercept", -53.827))
    sub = data.subsample
    truth = data.is_mock and "true_is_giant" in sub.columns
    fig = Figure(figsize=(11 if truth else 6, 5))
    axes = fig.subplots(1, 2 if truth else 1, squeeze=False)[0]
    ax = axes[0]
    _density(ax, h["fig3_others"], "fig3_others", "Reds")
    _density(ax, h["fig3_giants"], "fig3_giants", "Blues")
    xs = grid_edges(GRIDS["fig3_giants"][0])
    for a in axes:
        a.plot(xs, slope * xs + intercept, color="k", lw=1.2, label="eq. 7 cut")
        a.set_xlabel("(J - H)$_0$ (mag)")
        a.set_ylabel("M$_{J,pseudo}$ (mas)")
        a.set_ylim(*GRIDS["fig3_giants"][1][:2])
        a.set_xlim(*GRIDS["fig3_giants"][0][:2])
        a.invert_yaxis()
    ax.set_title("recovered: is_giant (blue) / other (red)")
    ax.legend(loc="lower right", fontsize=8)
    if truth:
        q = sub[sub["quality_ok"].astype(bool)]
        tg = q["true_is_giant"].fillna(False).to_numpy(bool)
        sel = q["is_giant"].to_numpy(bool)
        b = axes[1]
        b.scatter(
            q["jh0"][~tg], q["m_pseudo"][~tg], s=2, c="tab:red", alpha=0.4, label="true dwarf"
        )
        b.scatter(q["jh0"][tg], q["m_pseudo"][tg], s=2, c="tab:blue", alpha=0.4, label="true giant")
        purity = (sel & tg).sum() / max(sel.sum(), 1)
        completeness = (sel & tg).sum() / max(tg.sum(), 1)
        b.set_title(f"truth (subsample): purity {purity:.3f}, completeness {completeness:.3f}")
        b.legend(loc="lower right", fontsize=8, markerscale=4)
    return head.saved(fig, out_dir, "fig3_giant_cut")


# --- Figs 4 and 5 -----------------------------------------------------------------------------


def fig4(data: RunData, out_dir: Path) -> ReportFigure:
    """Parallax uncertainty against distance: Gaia, NN and combined (16/50/84 percentiles)."""
    head = _Head(
        "fig4",
        "Fig. 4. Parallax uncertainty against distance",
        "Median (solid) and 16th/84th percentiles (thin) of the parallax sigma of giants per "
        "distance bin: Gaia (red), stage-1 NN (blue), combined eq. 9/10 (green); log density "
        "of the combined sigma behind.",
    )
    if (gone := head.missing_hist(data, "fig4_combined", NOT_RUN["stage1"])) is not None:
        return gone
    h = data.summary.hists
    fig, ax = _single_axes()
    _density(ax, h["fig4_combined"], "fig4_combined", "Greens", alpha=0.6)
    for name, colour, label in (
        ("fig4_gaia", "tab:red", "Gaia"),
        ("fig4_nn", "tab:blue", "NN"),
        ("fig4_combined", "tab:green", "combined"),
    ):
        median = {"color": colour, "lw": 2, "label": label}
        _percentile_curves(ax, h[name], name, median, {"color": colour, "lw": 0.8})
    _giant_distance_truth(
        ax,
        data,
        "parallax_combined",
        "true_parallax",
        "truth: robust scatter of combined − true parallax",
        "ko--",
    )
    return _finish(
        head,
        fig,
        ax,
        out_dir,
        "fig4_parallax_sigma",
        "distance (kpc)",
        "log$_{10}$ parallax sigma (mas)",
    )


def fig5(data: RunData, out_dir: Path) -> ReportFigure:
    """Distance uncertainty against distance, log density with 16/84 percentile curves."""
    head = _Head(
        "fig5",
        "Fig. 5. Distance uncertainty against distance",
        "Log density of (p84 - p16)/2 of the distance posterior against the distance for "
        "giants; median and 16th/84th percentile curves.",
    )
    if (gone := head.missing_hist(data, "fig5", NOT_RUN["stage1"])) is not None:
        return gone
    hist = data.summary.hists["fig5"]
    fig, ax = _single_axes()
    _density_colorbar(fig, ax, hist, "fig5")
    _percentile_curves(
        ax,
        hist,
        "fig5",
        {"color": "w", "lw": 2, "label": "median"},
        {"color": "w", "lw": 1, "ls": ":", "label": "16th / 84th"},
    )
    _giant_distance_truth(
        ax,
        data,
        "distance_pc",
        "true_distance_pc",
        "truth: robust scatter of d − d_true",
        "o--",
        color="orange",
    )
    return _finish(
        head,
        fig,
        ax,
        out_dir,
        "fig5_distance_sigma",
        "distance (kpc)",
        "log$_{10}$ distance sigma (pc)",
        facecolor="0.8",
    )


# --- Figs 8, 9, 10 ----------------------------------------------------------------------------


def fig8(data: RunData, out_dir: Path) -> ReportFigure:
    """Validation: NN [Fe/H] against the spectroscopic label, and the residuals."""
    head = _Head(
        "fig8",
        "Fig. 8. Metallicity validation",
        "Stage-2 predictions for the held-out 15% validation set against the spectroscopic "
        "[Fe/H] (top, log density, 1:1 line) and residuals with their running median and "
        "16th/84th percentiles (bottom).",
    )
    val = data.validation
    if val is None or not {"feh_label", "feh_pred"} <= set(val.columns) or not len(val):
        return head.missing(missing_text(data, "validation"))
    truth = data.is_mock and "true_feh" in val.columns
    refs = [("feh_label", "spectroscopic label [Fe/H]")]
    if truth:
        refs.append(("true_feh", "truth: injected [Fe/H]"))
    fig = Figure(figsize=(6 * len(refs), 7))
    axes = fig.subplots(2, len(refs), squeeze=False, gridspec_kw={"height_ratios": [2, 1]})
    edges = np.linspace(-3.0, 1.5, 91)
    pred = val["feh_pred"].to_numpy(float)
    for j, (col, label) in enumerate(refs):
        ref = val[col].to_numpy(float)
        ok = np.isfinite(ref) & np.isfinite(pred)
        top, bottom = axes[0, j], axes[1, j]
        hh, _, _ = np.histogram2d(ref[ok], pred[ok], bins=[edges, edges])
        top.pcolormesh(
            edges, edges, np.ma.masked_less_equal(hh.T, 0), norm=LogNorm(), cmap="viridis"
        )
        top.plot(edges, edges, "r-", lw=1)
        top.set_ylabel("NN [Fe/H] (dex)")
        top.set_title(
            f"{label}: {ok.sum():,} stars, robust scatter "
            f"{robust_scatter(pred[ok] - ref[ok]):.3f} dex"
        )
        res = pred - ref
        bottom.scatter(ref[ok], res[ok], s=2, alpha=0.3, color="0.4")
        cs = _centres(edges[::5])
        for qv, ls in ((0.5, "-"), (0.16, ":"), (0.84, ":")):
            st = _binned_stat(ref, res, edges[::5], _quantile_of(qv))
            bottom.plot(cs, st, "r" + ls, lw=1.5)
        bottom.axhline(0, color="k", lw=0.8)
        bottom.set_ylim(-1.5, 1.5)
        bottom.set_xlim(edges[0], edges[-1])
        bottom.set_xlabel(label + " (dex)")
        bottom.set_ylabel("NN − reference (dex)")
    return head.saved(fig, out_dir, "fig8_validation")


def fig9(data: RunData, out_dir: Path) -> ReportFigure:
    """[Fe/H] uncertainty against predicted [Fe/H] over the output sample."""
    head = _Head(
        "fig9",
        "Fig. 9. Metallicity uncertainty against metallicity",
        "Log density of sigma[Fe/H] (eq. 5) against the predicted [Fe/H] over the output "
        "sample, with the median per bin. The training label range is where sigma is smallest.",
    )
    if (gone := head.missing_hist(data, "fig9", missing_text(data, "stage2"))) is not None:
        return gone
    hist = data.summary.hists["fig9"]
    fig, ax = _single_axes()
    _density_colorbar(fig, ax, hist, "fig9")
    gx, gy = GRIDS["fig9"]
    q = column_quantiles(hist, grid_edges(gy), (0.5,))
    ax.plot(_centres(grid_edges(gx)), q[0], "r-", lw=2, label="median sigma")
    sub = data.subsample
    if data.is_mock and "true_feh" in sub.columns:
        diff = (sub["feh"] - sub["true_feh"]).to_numpy(float)
        edges = np.linspace(-3.5, 2.5, 25)
        label = "truth: robust scatter of [Fe/H] − true"
        _truth_scatter(ax, sub["feh"].to_numpy(float), diff, edges, label, "ko--")
    return _finish(
        head, fig, ax, out_dir, "fig9_feh_sigma", "[Fe/H] (dex)", "log$_{10}$ sigma[Fe/H] (dex)"
    )


def fig10(data: RunData, out_dir: Path) -> ReportFigure:
    """NN sigma against the residual scatter of the validation set, per [Fe/H] bin."""
    head = _Head(
        "fig10",
        "Fig. 10. NN uncertainty against residual scatter",
        "Mean NN sigma[Fe/H] (solid red) and robust scatter of the NN − spectroscopic residuals "
        "(dashed blue) of the validation set per [Fe/H] bin.",
    )
    val = data.validation
    bins = (data.validation_json or {}).get("bins")
    rows: list[tuple[float, float, float, float, int]] = []
    if isinstance(bins, list) and bins:
        for b in bins:
            try:
                rows.append(
                    (
                        float(b["lo"]),
                        float(b["hi"]),
                        float(b["mean_nn_sigma"]),
                        float(b["robust_scatter"]),
                        int(b.get("n", 0)),
                    )
                )
            except (KeyError, TypeError, ValueError):
                continue
    elif val is not None and {"feh_label", "feh_pred", "feh_error"} <= set(val.columns):
        edges = np.arange(-2.5, 1.01, 0.25)
        for lo, hi in zip(edges[:-1], edges[1:], strict=True):
            m = (val["feh_pred"] >= lo) & (val["feh_pred"] < hi)
            if m.sum() >= MIN_COLUMN_COUNT:
                rows.append(
                    (
                        lo,
                        hi,
                        float(val.loc[m, "feh_error"].mean()),
                        robust_scatter(val.loc[m, "feh_pred"] - val.loc[m, "feh_label"]),
                        int(m.sum()),
                    )
                )
    if not rows:
        return head.missing(missing_text(data, "validation"))
    arr = np.array([r[:4] for r in rows])
    x = 0.5 * (arr[:, 0] + arr[:, 1])
    fig, ax = _single_axes()
    ax.plot(x, arr[:, 2], "r-o", ms=4, label="mean NN sigma")
    ax.plot(x, arr[:, 3], "b--s", ms=4, label="robust scatter of residuals")
    for xi, r in zip(x, rows, strict=True):
        ax.annotate(f"{r[4]}", (xi, r[3]), fontsize=6, textcoords="offset points", xytext=(0, 4))
    if data.is_mock and val is not None and "true_feh" in val.columns:
        sc = [
            robust_scatter(
                (val["feh_pred"] - val["true_feh"])[
                    (val["feh_pred"] >= lo) & (val["feh_pred"] < hi)
                ]
            )
            for lo, hi in arr[:, :2]
        ]
        ax.plot(x, sc, "g:^", ms=4, label="truth: robust scatter of NN − injected")
    return _finish(
        head, fig, ax, out_dir, "fig10_sigma_vs_scatter", "[Fe/H] bin centre (dex)", "dex"
    )


# --- Fig 11 -----------------------------------------------------------------------------------


def _gradient_line(data: RunData, medians: np.ndarray, absz: np.ndarray) -> tuple | None:
    """(slope, intercept, z range, slope error) of the fitted gradient, or None."""
    g = data.gradient
    slope = _finite((g or {}).get("slope_dex_per_kpc"))
    if g is None or slope is None:
        return None
    zr = g.get("z_range_kpc") or [0.7, 1.6]
    lo, hi = float(zr[0]), float(zr[1])
    intercept = None
    for k in ("intercept_dex", "intercept"):
        intercept = _finite(g.get(k))
        if intercept is not None:
            break
    if intercept is None:
        m = (absz >= lo) & (absz <= hi) & np.isfinite(medians)
        if not m.any():
            return None
        intercept = float(np.mean(medians[m] - slope * absz[m]))
    return slope, intercept, (lo, hi), g.get("slope_error")


def fig11(data: RunData, out_dir: Path) -> ReportFigure:
    """Median [Fe/H] against Z and |Z| in the bulge cylinder, percentiles and the gradient."""
    head = _Head(
        "fig11",
        "Fig. 11. Vertical metallicity gradient of the bulge",
        "Stars within R < 2.5 kpc of the Galactic centre (sigma[Fe/H] <= 0.5 dex, position "
        "sigma <= 1 kpc): log density of [Fe/H] against Z for stars with a radial velocity "
        "(left), all (middle) and against |Z| (right), with the median (solid) and 16th/84th "
        "percentiles (dotted) per bin, and the fitted gradient (red) over its fit range.",
    )
    h = data.summary.hists
    missing = missing_text(data, "stage2") if "fig9" not in h else NOT_RUN["kinematics"]
    if data.gradient is None:
        missing += f"; the gradient fit is {NOT_RUN['gradient']}"
    if (gone := head.missing_hist(data, "fig11_all", missing)) is not None:
        return gone
    fig = Figure(figsize=(16, 5))
    axes = fig.subplots(1, 3)
    notes = []
    absz_med = None
    for ax, name, label in (
        (axes[0], "fig11_rv", "with radial velocity"),
        (axes[1], "fig11_all", "all"),
        (axes[2], "fig11_absz", "all, |Z|"),
    ):
        _density(ax, h[name], name)
        x, q = _percentile_curves(
            ax,
            h[name],
            name,
            {"ls": "-", "color": "darkorange", "lw": 2, "label": "median"},
            {"ls": ":", "color": "darkorange", "lw": 1.5, "label": "16th / 84th"},
        )
        ax.set_title(f"{label}: {int(h[name].sum()):,} stars")
        ax.set_xlabel("|Z| (kpc)" if name == "fig11_absz" else "Z (kpc)")
        ax.set_ylabel("[Fe/H] (dex)")
        ax.set_ylim(-2.0, 1.0)
        if name == "fig11_absz":
            absz_med = (x, q[1])
    ax = axes[2]
    assert absz_med is not None
    line = _gradient_line(data, absz_med[1], absz_med[0])
    if line is not None:
        slope, intercept, (lo, hi), err = line
        zz = np.linspace(lo, hi, 10)
        err_txt = f" ± {float(err):.3f}" if isinstance(err, int | float) else ""
        ax.plot(
            zz, intercept + slope * zz, "r-", lw=2.5, label=f"fit: {slope:.3f}{err_txt} dex/kpc"
        )
    elif data.gradient is None:
        notes.append(f"Fitted gradient: {NOT_RUN['gradient']}")
    else:
        notes.append(
            "gradient.json holds no fitted slope (too few stars in the fit range; "
            f"n_stars = {data.gradient.get('n_stars', '?')})."
        )
    inj = _injected_gradient(data)
    if inj is not None:
        slope_t, icpt_t = inj
        zz = np.linspace(0, 3, 10)
        ax.plot(zz, icpt_t + slope_t * zz, **TRUTH_STYLE, label=f"truth: {slope_t:.3f} dex/kpc")
        sub = data.subsample
        if "true_feh" in sub.columns and "true_z_gc" in sub.columns:
            r = np.hypot(sub["true_x_gc"], sub["true_y_gc"]).to_numpy(float)
            m = r < 2.5
            edges = np.linspace(0, 3, 13)
            med = _binned_stat(
                np.abs(sub["true_z_gc"].to_numpy(float))[m],
                sub["true_feh"].to_numpy(float)[m],
                edges,
                np.median,
            )
            ax.plot(_centres(edges), med, "ks", ms=4, label="truth: median injected [Fe/H]")
    ax.legend(fontsize=8, facecolor="0.85")
    return head.saved(
        fig, out_dir, "fig11_gradient", notes=notes, extra=_analysis_pngs(data, "fig11")
    )


def _finite(v: object) -> float | None:
    if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v):
        return float(v)
    return None


def _injected_gradient(data: RunData) -> tuple[float, float] | None:
    """(slope, intercept) of the injected median line: gradient.json's "truth", else the
    mock's truth.json."""
    t = (data.gradient or {}).get("truth")
    t = t if isinstance(t, dict) else {}
    mock = (data.truth_json or {}).get("gradient") or {}
    slope = _finite(t.get("slope_dex_per_kpc"))
    if slope is None:
        slope = _finite(mock.get("feh_gradient_dex_per_kpc"))
    if slope is None:
        return None
    icpt = _finite(t.get("median_line_intercept_dex"))
    if icpt is None:
        icpt = _finite(mock.get("median_line_intercept"))
    return slope, icpt if icpt is not None else 0.0


def _analysis_pngs(data: RunData, prefix: str) -> list[Path]:
    return sorted((data.run_dir / "analysis").glob(f"{prefix}*.png"))


# --- Figs 12 and 13 ---------------------------------------------------------------------------


def fig12(data: RunData, out_dir: Path) -> ReportFigure:
    """Vertex angle per [Fe/H] bin: fitted (red) and zeroed (green) ellipsoids."""
    head = _Head(
        "fig12",
        "Fig. 12. Vertex angle per metallicity bin",
        "Posterior median vertex angle with 16-84 half-width per 0.35 dex [Fe/H] bin: velocity "
        "ellipsoid centred on the fitted mean (red) or at zero (green); star counts annotated.",
    )
    vertex = data.vertex
    if vertex is None:
        return head.missing(NOT_RUN["vertex"])
    samples = vertex.get("samples") or {}
    bins = sorted(
        (s["feh_range"][0], s["feh_range"][1], name, s)
        for name, s in samples.items()
        if isinstance(s, dict) and s.get("kind") == "bin" and len(s.get("feh_range") or []) == 2
    )
    if not bins:
        return head.missing("vertex.json holds no [Fe/H] bins; " + NOT_RUN["vertex"])
    fig, ax = _single_axes((8, 5))
    for variant, colour, dx in (("fitted", "tab:red", -0.02), ("zeroed", "tab:green", 0.02)):
        xs, ys, es = [], [], []
        for lo, hi, _, s in bins:
            v = s.get(variant) or {}
            if isinstance(v.get("vertex_deg"), int | float):
                xs.append(0.5 * (lo + hi) + dx)
                ys.append(v["vertex_deg"])
                es.append(v.get("vertex_err_deg") or 0.0)
        ax.errorbar(xs, ys, yerr=es, fmt="o", color=colour, capsize=3, label=variant)
    for lo, hi, _, s in bins:
        ax.annotate(str(s.get("n_stars", "")), (0.5 * (lo + hi), -44), ha="center", fontsize=8)
        ax.axvline(lo, color="0.85", lw=0.5)
    truth = vertex_truth(data)
    mock_v = (data.truth_json or {}).get("vertex") or {}
    if truth:
        rich_min = float(
            mock_v.get(
                "metal_rich_min_feh", (vertex.get("settings") or {}).get("metal_rich_min", -0.4)
            )
        )
        poor_max = float(
            mock_v.get(
                "metal_poor_max_feh", (vertex.get("settings") or {}).get("metal_poor_max", -0.6)
            )
        )
        first = True
        for lo, hi, _, _ in bins:
            val = None
            if lo >= rich_min and "metal_rich" in truth:
                val = truth["metal_rich"]
            elif hi <= poor_max and "metal_poor" in truth:
                val = truth["metal_poor"]
            if val is not None:
                label = "truth: injected" if first else "_nolegend_"
                ax.hlines(val, lo, hi, **TRUTH_STYLE, label=label)
                first = False
    ax.set_xlabel("[Fe/H] (dex)")
    ax.set_ylabel("vertex angle l$_v$ (deg)")
    ax.set_ylim(-47, 47)
    ax.axhline(0, color="k", lw=0.5)
    ax.legend(fontsize=8)
    return head.saved(fig, out_dir, "fig12_vertex_bins", extra=_analysis_pngs(data, "fig12"))


def _ellipse(ax, mean, cov, colour: str, label: str | None) -> None:
    c = np.asarray(cov, dtype=float)[:2, :2]
    vals, vecs = np.linalg.eigh(c)
    angle = math.degrees(math.atan2(vecs[1, 1], vecs[0, 1]))
    for k, ls in ((1, "-"), (2, "--")):
        ax.add_patch(
            Ellipse(
                (float(mean[0]), float(mean[1])),
                2 * k * math.sqrt(max(vals[1], 0)),
                2 * k * math.sqrt(max(vals[0], 0)),
                angle=angle,
                fill=False,
                color=colour,
                lw=2,
                ls=ls,
                label=label if k == 1 else None,
            )
        )


def fig13(data: RunData, out_dir: Path) -> ReportFigure:
    """Velocity ellipsoids (1 and 2 sigma) of the metal-poor and metal-rich samples over the
    Vx-Vy distribution of the vertex selection."""
    head = _Head(
        "fig13",
        "Fig. 13. Velocity ellipsoids",
        "Vx-Vy of the stars in the vertex selection (|l| <= 5 deg, |b| <= 10 deg, 6-10 kpc) "
        "by metallicity sample; 1- and 2-sigma ellipses of the major mixture component with "
        "fitted means (red, centred on the mean) and zeroed means (green, at the origin).",
    )
    vertex = data.vertex
    rows = data.vertex_rows
    if vertex is None and not len(rows):
        missing = (
            NOT_RUN["kinematics"]
            if "with_velocity" not in data.summary.counts
            else NOT_RUN["vertex"]
        )
        return head.missing(missing)
    settings = (vertex or {}).get("settings") or {}
    poor_max = float(settings.get("metal_poor_max", -0.6))
    rich_min = float(settings.get("metal_rich_min", -0.4))
    samples = (vertex or {}).get("samples") or {}
    truth = vertex_truth(data)
    fig = Figure(figsize=(12, 5.5))
    axes = fig.subplots(1, 2)
    notes = [] if vertex is not None else [f"Ellipsoids: {NOT_RUN['vertex']}"]
    for ax, name, label in (
        (axes[0], "metal_poor", f"[Fe/H] ≤ {poor_max:g}"),
        (axes[1], "metal_rich", f"[Fe/H] ≥ {rich_min:g}"),
    ):
        if len(rows) and "feh" in rows.columns:
            feh = rows["feh"].to_numpy(float)
            m = feh <= poor_max if name == "metal_poor" else feh >= rich_min
            if "true_vx" in rows.columns:
                ax.scatter(
                    rows["true_vx"][m],
                    rows["true_vy"][m],
                    s=3,
                    c="0.75",
                    label="truth: injected velocities",
                )
            ax.scatter(
                rows["vx_gc"][m],
                rows["vy_gc"][m],
                s=3,
                c="tab:blue",
                alpha=0.5,
                label=f"recovered ({int(m.sum())} stars)",
            )
        s = samples.get(name) or {}
        for variant, colour in (("fitted", "tab:red"), ("zeroed", "tab:green")):
            v = s.get(variant) or {}
            cov = v.get("cov_major_kms2")
            if cov is None:
                continue
            mean = v.get("mean_major_kms") if variant == "fitted" else [0.0, 0.0]
            mean = mean or [0.0, 0.0]
            ang = v.get("vertex_deg")
            lab = f"{variant}: l_v = {ang:.1f} deg" if isinstance(ang, int | float) else variant
            _ellipse(ax, mean, cov, colour, lab)
        if name in truth:
            t = math.radians(truth[name])
            r = 250.0
            ax.plot(
                [-r * math.cos(t), r * math.cos(t)],
                [-r * math.sin(t), r * math.sin(t)],
                **TRUTH_STYLE,
                label=f"truth: injected l_v = {truth[name]:.1f} deg",
            )
        ax.set_xlim(-400, 400)
        ax.set_ylim(-400, 400)
        ax.set_aspect("equal")
        ax.set_xlabel("V$_x$ (km/s)")
        ax.set_ylabel("V$_y$ (km/s)")
        ax.set_title(label)
        ax.legend(fontsize=7, loc="upper right")
    return head.saved(
        fig, out_dir, "fig13_ellipsoids", notes=notes, extra=_analysis_pngs(data, "fig13")
    )


# --- sky maps ---------------------------------------------------------------------------------


def _hist_median(rows: np.ndarray, spec: tuple[float, float, int]) -> np.ndarray:
    """Median per row of fixed-grid histograms (NaN for empty rows)."""
    lo, hi, nb = spec
    total = rows.sum(axis=1)
    cum = np.cumsum(rows, axis=1)
    idx = np.argmax(cum >= (total[:, None] / 2.0), axis=1)
    med = lo + (idx + 0.5) * (hi - lo) / nb
    return np.where(total > 0, med, np.nan)


def sky_maps(data: RunData, out_dir: Path) -> list[ReportFigure]:
    """HEALPix maps (Galactic Mollweide) of star counts, median [Fe/H] and median A_Ks."""
    specs = [
        ("sky_counts", "Sky map: star counts", "Stars per HEALPix pixel (log scale)."),
        ("sky_feh", "Sky map: median [Fe/H]", "Median stage-2 [Fe/H] per pixel (dex)."),
        ("sky_aks", "Sky map: median A_Ks", "Median RJCE extinction A_Ks per pixel (mag)."),
    ]
    if data.catalog is None or not data.summary.sky:
        why = NOT_RUN["catalog"]
        return [_Head(*spec).missing(why) for spec in specs]
    import healpy as hp

    nside = data.sky_nside
    pix = np.fromiter(data.summary.sky.keys(), dtype=np.int64)
    rows = np.vstack(list(data.summary.sky.values()))
    counts = rows[:, 0].astype(float)
    nf = SKY_FEH[2]
    feh_med = _hist_median(rows[:, 1 : 1 + nf], SKY_FEH)
    aks_med = _hist_median(rows[:, 1 + nf :], SKY_AKS)
    out = []
    for (key, title, caption), values, kw in zip(
        specs,
        (np.log10(counts), feh_med, aks_med),
        (
            {"unit": "log10 stars"},
            {"unit": "dex", "cmap": "coolwarm"},
            {"unit": "mag", "cmap": "magma"},
        ),
        strict=True,
    ):
        if not np.isfinite(values).any():
            why = missing_text(data, "stage2") if key == "sky_feh" else NOT_RUN["catalog"]
            out.append(_Head(key, title, caption).missing(why))
            continue
        out.append(
            ReportFigure(
                key, title, caption, _mollview(values, pix, nside, key, title, out_dir, **kw)
            )
        )
    sub = data.subsample
    if data.is_mock and {"true_a_ks", "ra", "dec"} <= set(sub.columns):
        # truth: recovered minus injected extinction, from the subsample on a coarser grid
        coarse = min(nside, 8)
        p = np.asarray(hp.ang2pix(coarse, sub["ra"], sub["dec"], nest=True, lonlat=True))
        diff = (sub["a_ks"] - sub["true_a_ks"]).to_numpy(float)
        ok = np.isfinite(diff)
        upix = np.unique(p[ok])
        med = np.array([np.median(diff[ok & (p == q)]) for q in upix])
        out.append(
            ReportFigure(
                "sky_aks_truth",
                "Sky map: truth, A_Ks recovered − injected",
                f"Median of A_Ks − true A_Ks per nside-{coarse} pixel over the subsample (mag).",
                _mollview(
                    med,
                    upix,
                    coarse,
                    "sky_aks_truth",
                    "A_Ks − true A_Ks",
                    out_dir,
                    unit="mag",
                    cmap="coolwarm",
                ),
            )
        )
    return out


def _mollview(
    values: np.ndarray,
    pix: np.ndarray,
    nside: int,
    key: str,
    title: str,
    out_dir: Path,
    unit: str,
    cmap: str = "viridis",
) -> Path:
    import healpy as hp
    import matplotlib.pyplot as plt

    m = np.full(hp.nside2npix(nside), hp.UNSEEN)
    ok = np.isfinite(values)
    m[pix[ok]] = values[ok]
    hp.mollview(m, nest=True, coord=["C", "G"], title=title, unit=unit, cmap=cmap, badcolor="0.9")
    fig = plt.gcf()
    try:
        hp.graticule(dpar=30, dmer=60, alpha=0.4)
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / f"{key}.png"
        fig.savefig(path, dpi=DPI, bbox_inches="tight")
    finally:
        plt.close(fig)
    return path


def all_figures(data: RunData, out_dir: Path) -> list[ReportFigure]:
    """Every figure, in the report's order; a figure that fails to draw becomes a note."""
    out: list[ReportFigure] = []
    for func in (fig3, fig4, fig5, fig8, fig9, fig10, fig11, fig12, fig13):
        try:
            out.append(func(data, out_dir))
        except Exception as exc:  # noqa: BLE001 - one bad figure must not lose the report
            logger.exception("report: %s failed", func.__name__)
            out.append(
                ReportFigure(
                    func.__name__, func.__name__, "", missing=f"could not be drawn: {exc!r}"
                )
            )
    try:
        out.extend(sky_maps(data, out_dir))
        from bigcat.report.skymap import skymap_figure  # the live sky map's, final

        out.append(skymap_figure(data, out_dir))
    except Exception as exc:  # noqa: BLE001
        logger.exception("report: sky maps failed")
        out.append(ReportFigure("sky", "Sky maps", "", missing=f"could not be drawn: {exc!r}"))
    return out
