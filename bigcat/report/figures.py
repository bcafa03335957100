"""The report's figures (matplotlib, Agg): the paper's Figs 3, 4, 5, 8-13 and HEALPix sky maps.

Each ``figN(data, out_dir)`` writes one PNG and returns a :class:`ReportFigure`; when the run
has not made what a figure needs, no file is written and ``missing`` names the command that
makes it. On a synthetic run every figure also draws the truth (recovered vs injected).
Density panels are drawn from the fixed-grid histograms of ``bigcat.report.collect`` (never
from the whole catalogue); scatter panels use its deterministic subsample. Figs 11-13 are
drawn by :mod:`bigcat.report.bulge_figures`, the code ``bigcat analyze`` draws them with, from
gradient.json and vertex.json (Fig. 11 over the collected histograms, Fig. 13 over the
vertex selection's rows).
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

from bigcat.analysis.stats import robust_scatter
from bigcat.report.bulge_figures import plot_gradient, plot_velocity_ellipsoids, plot_vertex_bins
from bigcat.report.collect import GRIDS, SKY_AKS, SKY_FEH, RunData, grid_edges
from bigcat.report.tables import NOT_RUN, missing_text

logger = logging.getLogger(__name__)

DPI = 110
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


# --- Figs 11-13: drawn by bigcat.report.bulge_figures from the analyses' JSON ------------------


def fig11(data: RunData, out_dir: Path) -> ReportFigure:
    """Median [Fe/H] against Z and |Z| in the bulge cylinder (gradient.json) over the
    catalogue's log density, with the fitted gradient."""
    head = _Head(
        "fig11",
        "Fig. 11. Vertical metallicity gradient of the bulge",
        "Stars within R < 2.5 kpc of the Galactic centre (sigma[Fe/H] <= 0.5 dex, position "
        "sigma <= 1 kpc): log density of [Fe/H] against Z for stars with a radial velocity "
        "(left), all (middle) and against |Z| (right), with the analysis' median and 16-84% "
        "band per bin, and the fitted gradient (red) over its fit range (shaded).",
    )
    h = data.summary.hists
    if data.gradient is None:
        if data.catalog is None:
            return head.missing(NOT_RUN["catalog"])
        missing = f"the gradient fit is {NOT_RUN['gradient']}"
        if "fig11_all" not in h:
            before = missing_text(data, "stage2") if "fig9" not in h else NOT_RUN["kinematics"]
            missing = f"{before}; {missing}"
        return head.missing(missing)
    backdrop = {}
    for panel, name in (
        ("binned_z_with_velocity", "fig11_rv"),
        ("binned_z", "fig11_all"),
        ("binned_abs_z", "fig11_absz"),
    ):
        if name in h:
            gx, gy = GRIDS[name]
            backdrop[panel] = (h[name], grid_edges(gx), grid_edges(gy))
    notes = []
    if not math.isfinite(float(data.gradient.get("slope_dex_per_kpc") or math.nan)):
        notes.append(
            "gradient.json holds no fitted slope (too few stars in the fit range; "
            f"n_stars = {data.gradient.get('n_stars', '?')})."
        )
    path = plot_gradient(data.gradient, None, out_dir / "fig11_gradient.png", backdrop=backdrop)
    return ReportFigure(head.key, head.title, head.caption, path, notes=notes)


def fig12(data: RunData, out_dir: Path) -> ReportFigure:
    """Vertex angle per [Fe/H] bin (vertex.json): fitted (red) and zeroed (green) means."""
    head = _Head(
        "fig12",
        "Fig. 12. Vertex angle per metallicity bin",
        "Posterior median vertex angle with 16th-84th percentile error bars per 0.35 dex [Fe/H] "
        "bin: velocity ellipsoid centred on the fitted mean (red) or at zero (green); the "
        "metal-poor and metal-rich samples as bands; star counts at the bottom.",
    )
    vertex = data.vertex
    if vertex is None:
        return head.missing(NOT_RUN["vertex"])
    samples = vertex.get("samples") or {}
    if not any(
        isinstance(s, dict) and s.get("kind") == "bin" and len(s.get("feh_range") or []) == 2
        for s in samples.values()
    ):
        return head.missing("vertex.json holds no [Fe/H] bins; " + NOT_RUN["vertex"])
    path = plot_vertex_bins(vertex, out_dir / "fig12_vertex_bins.png")
    return ReportFigure(head.key, head.title, head.caption, path)


def fig13(data: RunData, out_dir: Path) -> ReportFigure:
    """Velocity ellipses of the metal-poor and metal-rich samples (vertex.json) over the
    Vx-Vy distribution of the vertex selection."""
    head = _Head(
        "fig13",
        "Fig. 13. Velocity ellipsoids",
        "Vx-Vy of the stars in the vertex selection (|l| <= 5 deg, |b| <= 10 deg, 6-10 kpc) "
        "by metallicity sample; 2-sigma ellipses of the major (solid) and minor (dashed) "
        "mixture components with fitted means (red) and zeroed means (green, at the origin).",
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
    by_sample = {}
    if len(rows) and "feh" in rows.columns:
        feh = rows["feh"].to_numpy(float)
        by_sample = {"metal_poor": rows[feh <= poor_max], "metal_rich": rows[feh >= rich_min]}
    notes = [] if vertex is not None else [f"Ellipsoids: {NOT_RUN['vertex']}"]
    path = plot_velocity_ellipsoids(vertex or {}, by_sample, out_dir / "fig13_ellipsoids.png")
    return ReportFigure(head.key, head.title, head.caption, path, notes=notes)


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


#: The report's figures in order: a paper figure's function name, "sky_maps" (the HEALPix
#: maps) or "sky_partitions" (the live sky map's final frame); one drawing job each.
FIGURE_JOBS = (
    "fig3", "fig4", "fig5", "fig8", "fig9", "fig10", "fig11", "fig12", "fig13",
    "sky_maps", "sky_partitions",
)  # fmt: skip


def draw_figure(name: str, data: RunData, out_dir: Path) -> list[ReportFigure]:
    """Draw one of :data:`FIGURE_JOBS` into ``out_dir``; a figure that fails to draw becomes
    a note (one bad figure must not lose the report). Pure but for the files it writes, so
    the jobs can run in parallel (``bigcat.report`` runs them as cluster tasks)."""
    try:
        if name == "sky_maps":
            return sky_maps(data, out_dir)
        if name == "sky_partitions":
            from bigcat.report.skymap import skymap_figure  # the live sky map's, final

            return [skymap_figure(data, out_dir)]
        return [globals()[name](data, out_dir)]
    except Exception as exc:  # noqa: BLE001 - one bad figure must not lose the report
        logger.exception("report: %s failed", name)
        title = "Sky maps" if name == "sky_maps" else name
        return [ReportFigure(name, title, "", missing=f"could not be drawn: {exc!r}")]


def all_figures(
    data: RunData,
    out_dir: Path,
    run: Callable[[list[str]], list[list[ReportFigure]]] | None = None,
) -> list[ReportFigure]:
    """Every figure, in the report's order. ``run``: draws the named jobs (e.g. on the
    cluster) and returns their :func:`draw_figure` results in order; in this process by
    default."""
    names = list(FIGURE_JOBS)
    drawn = run(names) if run is not None else [draw_figure(n, data, out_dir) for n in names]
    return [fig for figs in drawn for fig in figs]
