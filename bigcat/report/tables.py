"""Tables 1, 2 and 3 of the paper from one run: as data (pandas) and as HTML.

Each ``tableN(data)`` returns a :class:`ReportTable` whose ``frame`` holds the numbers (NaN
where a bin is empty) and whose ``html()`` renders the paper's layout; when the run has not
made what a table needs, ``frame`` is None and ``missing`` says which command makes it.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from bigcat.analysis.stats import robust_scatter
from bigcat.analysis.vertex import describe_cut_counts
from bigcat.report.collect import TABLE1_EDGES, TABLE2_ALL, TABLE2_EDGES, RunData

#: Placeholder texts: what is missing and the command that makes it.
NOT_RUN = {
    "catalog": "no processed catalogue: run `bigcat process --out RUN_DIR`",
    "stage1": "stage 1 (distances) not run yet: run `bigcat process --out RUN_DIR`",
    "stage2": "stage 2 (metallicities) not run yet: run `bigcat process --labels LABELS... "
    "--out RUN_DIR` (or `bigcat train stage2 RUN_DIR`)",
    "validation": "stage 2 validation set not written yet: run `bigcat train stage2 RUN_DIR`",
    "kinematics": "Galactocentric positions and velocities not computed yet: run "
    "`bigcat process --out RUN_DIR` with the kinematics stage",
    "gradient": "not run yet: run `bigcat analyze gradient RUN_DIR`",
    "vertex": "not run yet: run `bigcat analyze vertex RUN_DIR`",
}


def missing_text(data: RunData, key: str) -> str:
    """The placeholder text for ``key``, with the reason run.json records for a skipped stage."""
    text = NOT_RUN[key]
    stage = {"stage2": "stage2-train", "validation": "stage2-train"}.get(key)
    for rec in (data.run_info or {}).get("stages") or []:
        if stage and rec.get("stage") == stage and rec.get("skipped"):
            text += f" (last run: {stage} skipped: {rec['skipped']})"
    return text


@dataclass
class ReportTable:
    """One table of the report."""

    key: str
    title: str
    caption: str
    frame: pd.DataFrame | None
    formats: dict[str, str] = field(default_factory=dict)
    missing: str | None = None
    note: str = ""
    index_header: str = ""

    def html(self) -> str:
        """The table as an HTML fragment (a placeholder when ``frame`` is None)."""
        head = f'<h3 id="{self.key}">{html.escape(self.title)}</h3>'
        cap = f'<p class="caption">{html.escape(self.caption)}</p>'
        if self.frame is None:
            return head + cap + placeholder_html(self.missing or "not available")
        cols = list(self.frame.columns)
        out = [head, cap, f'<table class="data" data-table="{self.key}"><thead><tr>']
        out.append(f"<th>{html.escape(self.index_header)}</th>")
        out += [f"<th>{html.escape(str(c))}</th>" for c in cols]
        out.append("</tr></thead><tbody>")
        for idx, row in self.frame.iterrows():
            out.append(f"<tr><th>{html.escape(str(idx))}</th>")
            for c in cols:
                out.append(f"<td>{html.escape(_fmt(row[c], self.formats.get(c, '{}')))}</td>")
            out.append("</tr>")
        out.append("</tbody></table>")
        if self.note:
            out.append(f'<p class="note">{html.escape(self.note)}</p>')
        return "".join(out)


def placeholder_html(text: str) -> str:
    """The box shown in place of a table or figure the run has not made."""
    return f'<div class="placeholder">{html.escape(text)}</div>'


def _fmt(value: object, fmt: str) -> str:
    if value is None:
        return "–"
    if isinstance(value, float | np.floating) and not np.isfinite(value):
        return "–"
    if isinstance(value, str):
        return value
    try:
        return fmt.format(value)
    except (ValueError, TypeError):
        return str(value)


def _bin_label(lo: float, hi: float, name: str, fmt: str = "{:g}") -> str:
    return f"{fmt.format(lo)} < {name} < {fmt.format(hi)}"


def _truth_scatter(
    sub: pd.DataFrame, x: str, est: str, true: str, edges: np.ndarray, mask: np.ndarray
) -> list[float]:
    if true not in sub.columns or est not in sub.columns or x not in sub.columns:
        return [math.nan] * (len(edges) - 1)
    xs = sub[x].to_numpy(float)
    diff = sub[est].to_numpy(float) - sub[true].to_numpy(float)
    out = []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        m = mask & (xs >= lo) & (xs < hi)
        out.append(robust_scatter(diff[m]))
    return out


def table1(data: RunData) -> ReportTable:
    """Table 1: mean distance uncertainty by distance bin (giants with a distance)."""
    title = "Table 1. Mean distance uncertainty by distance"
    caption = (
        "Mean of (p84 - p16)/2 of the distance posterior for giants, per distance bin (pc). "
        "Percentages are with respect to the bin mid-point. Paper: 35 pc (3.5%) for "
        "0-2 kpc to 1142 pc (12.7%) for 8-10 kpc."
    )
    sums = data.summary.sums.get("table1")
    if data.catalog is None:
        return ReportTable("table1", title, caption, None, missing=NOT_RUN["catalog"])
    if sums is None:
        return ReportTable("table1", title, caption, None, missing=NOT_RUN["stage1"])
    n, s = sums
    mids = 0.5 * (TABLE1_EDGES[:-1] + TABLE1_EDGES[1:])
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(n > 0, s / n, np.nan)
    frame = pd.DataFrame(
        {
            "Distance Unc. (pc)": mean,
            "Unc. Percentage": 100 * mean / mids,
            "Stars": n.astype(int),
        },
        index=[
            _bin_label(lo, hi, "d")
            for lo, hi in zip(TABLE1_EDGES[:-1], TABLE1_EDGES[1:], strict=True)
        ],
    )
    formats = {"Distance Unc. (pc)": "±{:.3f}", "Unc. Percentage": "{:.2f}%", "Stars": "{:,.0f}"}
    sub = data.subsample
    if data.is_mock and "true_distance_pc" in sub.columns:
        giant = sub["is_giant"].to_numpy(bool)
        frame["Truth: robust scatter of d − d_true (pc)"] = _truth_scatter(
            sub, "distance_pc", "distance_pc", "true_distance_pc", TABLE1_EDGES, giant
        )
        formats["Truth: robust scatter of d − d_true (pc)"] = "{:.1f}"
    all_n, all_s = data.summary.sums.get("table1_all", np.zeros((2, 1)))
    c = data.summary.counts
    note = (
        f"Mean distance uncertainty over all {int(all_n[0]):,} giants with a distance: "
        f"±{(all_s[0] / all_n[0]) if all_n[0] else float('nan'):.1f} pc (paper: ±159.7 pc). "
        f"NN parallax sigma below Gaia's for {_pct(c.get('nn_better', 0), c.get('nn_compared', 0))} "
        f"of giants (paper: 58%) and {_pct(c.get('nn_better_low_snr', 0), c.get('nn_compared_low_snr', 0))} "
        "where Gaia parallax/sigma < 2 (paper: 89%)."
    )
    return ReportTable(
        "table1", title, caption, frame, formats, note=note, index_header="Distance Bounds"
    )


def _pct(a: int, b: int) -> str:
    return f"{100 * a / b:.1f}%" if b else "–"


def table2(data: RunData) -> ReportTable:
    """Table 2: mean [Fe/H] uncertainty by [Fe/H] bin; first row the whole output sample."""
    title = "Table 2. Mean metallicity uncertainty by [Fe/H]"
    caption = (
        "Mean sigma[Fe/H] (eq. 5) of the output sample per predicted [Fe/H] bin (dex); the top "
        "row is the whole sample. Paper: ±0.185 overall, ±0.150 for -0.5 < [Fe/H] < 0.5."
    )
    if data.catalog is None:
        return ReportTable("table2", title, caption, None, missing=NOT_RUN["catalog"])
    sums = data.summary.sums.get("table2")
    if sums is None:
        return ReportTable("table2", title, caption, None, missing=missing_text(data, "stage2"))
    all_n, all_s = data.summary.sums["table2_all"]
    edges = TABLE2_EDGES
    n = np.concatenate([all_n, sums[0]])
    s = np.concatenate([all_s, sums[1]])
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(n > 0, s / n, np.nan)
    labels = [_bin_label(*TABLE2_ALL, "[Fe/H]")] + [
        _bin_label(lo, hi, "[Fe/H]") for lo, hi in zip(edges[:-1], edges[1:], strict=True)
    ]
    frame = pd.DataFrame({"[Fe/H] Unc. (dex)": mean, "Obj. Counts": n.astype(int)}, index=labels)
    formats = {"[Fe/H] Unc. (dex)": "±{:.3f}", "Obj. Counts": "{:,.0f}"}
    sub = data.subsample
    if data.is_mock and "true_feh" in sub.columns:
        all_edges = np.array(TABLE2_ALL)
        m = np.ones(len(sub), dtype=bool)
        col = "Truth: robust scatter of [Fe/H] − true (dex)"
        frame[col] = _truth_scatter(sub, "feh", "feh", "true_feh", all_edges, m) + _truth_scatter(
            sub, "feh", "feh", "true_feh", edges, m
        )
        formats[col] = "{:.3f}"
    val = data.validation
    if val is not None and {"feh_label", "feh_pred"} <= set(val.columns):
        # the end-bin bias users quote: held-out labels, binned by the label (not the prediction)
        for name, col in (("raw", "feh_pred"), ("debiased", "feh_debiased")):
            if col not in val.columns:
                continue
            head = f"Validation: median {name} − label, by label bin (dex)"
            frame[head] = _median_residual(val, col, np.array(TABLE2_ALL)) + _median_residual(
                val, col, edges
            )
            formats[head] = "{:+.3f}"
    note = ""
    if data.summary.counts.get("feh_extrapolated"):
        note = (
            f"{data.summary.counts['feh_extrapolated']:,} predictions lie outside the training "
            "label range (flagged feh_extrapolated)."
        )
    return ReportTable(
        "table2", title, caption, frame, formats, note=note, index_header="[Fe/H] Bounds"
    )


def _median_residual(val: pd.DataFrame, col: str, edges: np.ndarray) -> list[float]:
    """Median of ``val[col] - feh_label`` per label bin (NaN for bins with < 5 stars)."""
    label = val["feh_label"].to_numpy(np.float64)
    resid = val[col].to_numpy(np.float64) - label
    out = []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        m = (label >= lo) & (label < hi) & np.isfinite(resid)
        out.append(float(np.median(resid[m])) if m.sum() >= 5 else float("nan"))
    return out


def _variant(sample: dict | None, variant: str) -> dict:
    if not isinstance(sample, dict):
        return {}
    v = sample.get(variant)
    return v if isinstance(v, dict) else {}


def table3(data: RunData) -> ReportTable:
    """Table 3: vertex angle of the metal-poor and metal-rich samples (fitted and zeroed)."""
    title = "Table 3. Vertex deviation of the bulge"
    caption = (
        "Posterior median vertex angle of the major mixture component, its 16-84 half-width, "
        "and the 1st-99th percentile range, per metallicity sample and variant (fitted means / "
        "means fixed at zero). Paper (fitted): 6.85 ± 16.43 deg metal-poor, -21.29 ± 2.74 deg "
        "metal-rich; zeroed metal-rich -47.32 ± 3.93 deg."
    )
    vertex = data.vertex
    if vertex is None:
        return ReportTable("table3", title, caption, None, missing=NOT_RUN["vertex"])
    samples = vertex.get("samples") or {}
    settings = vertex.get("settings") or {}
    poor_max = settings.get("metal_poor_max", -0.6)
    rich_min = settings.get("metal_rich_min", -0.4)
    truth = _vertex_truth(data)
    columns: dict[str, list] = {}
    for name, label in (
        ("metal_poor", f"[Fe/H] ≤ {poor_max:g}"),
        ("metal_rich", f"[Fe/H] ≥ {rich_min:g}"),
    ):
        for variant in ("fitted", "zeroed"):
            v = _variant(samples.get(name), variant)
            rng: Any = v.get("range_deg")
            half = (
                0.5 * (rng[1] - rng[0])
                if isinstance(rng, list | tuple) and None not in rng
                else None
            )
            vals = [
                v.get("vertex_deg"),
                v.get("vertex_err_deg"),
                half,
                f"[{rng[0]:.2f}, {rng[1]:.2f}]" if half is not None else None,
                v.get("n_stars", (samples.get(name) or {}).get("n_stars")),
                v.get("acceptance_fraction"),
                v.get("autocorr_time"),
                v.get("mcse_vertex_deg"),
                None if v.get("converged") is None else ("yes" if v["converged"] else "no"),
            ]
            if truth:
                vals.append(truth.get(name))
            columns[f"{label} ({variant})"] = vals
    index = [
        "Vertex Angle (deg)",
        "Angle Uncertainty (deg)",
        "Angle Range (deg, ± half 1-99)",
        "1st-99th percentile (deg)",
        "Stars",
        "Acceptance fraction",
        "Autocorrelation time (steps)",
        "Monte-Carlo error of the angle (deg)",
        f"Converged (steps > {settings.get('converged_tau_factor', 20):g} tau)",
    ]
    if truth:
        index.append("Truth: injected angle (deg)")
    frame = pd.DataFrame(columns, index=index, dtype=object)
    formats = dict.fromkeys(frame.columns, "{:.4g}")
    cascade = describe_cut_counts(vertex.get("cut_counts"))
    return ReportTable(
        "table3",
        title,
        caption,
        _format_rows(frame),
        formats,
        note=f"{vertex.get('n_stars_selected', '–')} stars in the vertex selection"
        + (f" ({cascade})." if cascade else "."),
        index_header="[Fe/H] Range (dex)",
    )


def _format_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """Per-row number formats for the transposed Table 3."""
    fmt = {
        "Vertex Angle (deg)": "{:.4f}",
        "Angle Uncertainty (deg)": "± {:.4f}",
        "Angle Range (deg, ± half 1-99)": "± {:.4f}",
        "Stars": "{:,}",
        "Acceptance fraction": "{:.3f}",
        "Autocorrelation time (steps)": "{:.1f}",
        "Truth: injected angle (deg)": "{:.2f}",
    }
    out = frame.copy()
    for idx in out.index:
        for c in out.columns:
            v = out.at[idx, c]
            if v is None or (isinstance(v, float) and not np.isfinite(v)):
                out.at[idx, c] = "–"
            elif not isinstance(v, str):
                out.at[idx, c] = fmt.get(idx, "{}").format(v)
    return out


def _number(v: object) -> float | None:
    if isinstance(v, dict):
        v = v.get("vertex_deg")
    if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v):
        return float(v)
    return None


def _vertex_truth(data: RunData) -> dict[str, float]:
    """Injected vertex angles per summary sample: vertex.json's "truth" (``{"metal_rich":
    {"vertex_deg": ...}, ...}`` or plain numbers), else the mock's truth.json."""
    t = (data.vertex or {}).get("truth")
    out: dict[str, float] = {}
    if isinstance(t, dict):
        for k in ("metal_rich", "metal_poor"):
            v = _number(t.get(k))
            if v is not None:
                out[k] = v
    mock = (data.truth_json or {}).get("vertex") or {}
    for src, k in (
        ("vertex_deg_metal_rich", "metal_rich"),
        ("vertex_deg_metal_poor", "metal_poor"),
    ):
        v = _number(mock.get(src))
        if k not in out and v is not None:
            out[k] = v
    return out


def all_tables(data: RunData) -> list[ReportTable]:
    """Tables 1, 2 and 3 in order."""
    return [table1(data), table2(data), table3(data)]
