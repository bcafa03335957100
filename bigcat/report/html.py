"""One self-contained ``report.html``: inline CSS, images by relative path, no scripts and no
external resources (it reads offline, from a copied run directory too)."""

from __future__ import annotations

import html
import json
import os
from pathlib import Path
from typing import Any

from bigcat.atomic import write_text_atomic
from bigcat.report.collect import RunData
from bigcat.report.figures import ReportFigure
from bigcat.report.tables import ReportTable, placeholder_html

CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 0;
       color: #1d232a; background: #fafafa; }
header { background: #1f3b57; color: #fff; padding: 14px 28px; }
header h1 { margin: 0 0 4px 0; font-size: 22px; }
header p { margin: 0; font-size: 13px; opacity: .85; }
nav { padding: 8px 28px; background: #e9eef3; font-size: 13px; }
nav a { margin-right: 14px; color: #1f3b57; }
main { padding: 0 28px 40px 28px; max-width: 1500px; }
h2 { border-bottom: 2px solid #1f3b57; padding-bottom: 4px; margin-top: 32px; }
h3 { margin-bottom: 4px; }
.caption, .note { font-size: 13px; color: #444; max-width: 1000px; }
.note { font-style: italic; }
table.data { border-collapse: collapse; font-size: 13px; margin: 6px 0; background: #fff; }
table.data th, table.data td { border: 1px solid #c9d1d9; padding: 4px 9px; text-align: right; }
table.data thead th { background: #e9eef3; text-align: center; }
table.data tbody th { text-align: left; font-weight: 600; }
.placeholder { border: 2px dashed #c77; background: #fff4f2; color: #8a2a1a; padding: 14px 18px;
               font-family: Menlo, Consolas, monospace; font-size: 13px; margin: 8px 0;
               max-width: 900px; }
.figs { display: flex; flex-wrap: wrap; gap: 18px; }
figure { margin: 0; background: #fff; border: 1px solid #d8dee4; padding: 10px; max-width: 100%; }
figure img { max-width: 100%; height: auto; display: block; }
figure.wide { flex-basis: 100%; }
figcaption { font-size: 13px; color: #333; max-width: 900px; margin-top: 6px; }
pre { background: #f0f3f6; padding: 10px; overflow-x: auto; font-size: 12px; max-height: 420px; }
details summary { cursor: pointer; font-weight: 600; margin: 6px 0; }
.kv th { text-align: left; }
"""


def _e(x: object) -> str:
    return html.escape(str(x))


def _rel(path: Path, base: Path) -> str:
    return Path(os.path.relpath(path, base)).as_posix()


def figure_html(fig: ReportFigure, base: Path) -> str:
    """One figure block: the image (relative path), caption, notes, or its placeholder."""
    wide = " wide" if fig.key in ("fig11", "fig13", "fig8", "fig3") else ""
    out = [f'<figure class="report-figure{wide}" id="{_e(fig.key)}" data-figure="{_e(fig.key)}">']
    out.append(f"<h3>{_e(fig.title)}</h3>")
    if fig.path is not None:
        out.append(f'<img src="{_e(_rel(fig.path, base))}" alt="{_e(fig.title)}">')
    else:
        out.append(placeholder_html(fig.missing or "not available"))
    out.append(f"<figcaption>{_e(fig.caption)}")
    for note in fig.notes:
        out.append(f'<br><span class="note">{_e(note)}</span>')
    out.append("</figcaption>")
    for extra in fig.extra:
        out.append(
            f'<p class="note">Figure written by the analysis ({_e(extra.name)}):</p>'
            f'<img src="{_e(_rel(extra, base))}" alt="{_e(extra.name)}">'
        )
    out.append("</figure>")
    return "".join(out)


def _kv_table(items: dict[str, Any]) -> str:
    rows = "".join(f"<tr><th>{_e(k)}</th><td>{_e(_short(v))}</td></tr>" for k, v in items.items())
    return f'<table class="data kv">{rows}</table>'


def _short(v: Any) -> str:
    if isinstance(v, dict | list):
        return json.dumps(v, default=str)
    return str(v)


def _stages_table(stages: list[dict]) -> str:
    if not stages:
        return placeholder_html("no stage records in run.json")
    keys: list[str] = []
    for s in stages:
        for k in s:
            if k not in ("stage", "seconds", "started_at") and k not in keys:
                keys.append(k)
    head = "".join(f"<th>{_e(k)}</th>" for k in ["stage", "seconds", "details"])
    body = []
    for s in stages:
        details = "; ".join(
            f"{k} = {_short(s[k])}" for k in keys if k in s and not isinstance(s[k], list)
        )
        lists = "; ".join(f"{k} = {_short(s[k])}" for k in keys if isinstance(s.get(k), list))
        body.append(
            f"<tr><th>{_e(s.get('stage'))}</th><td>{_e(s.get('seconds', ''))}</td>"
            f'<td style="text-align:left">{_e(details)}{"; " + _e(lists) if lists else ""}</td></tr>'
        )
    return f'<table class="data" data-table="stages"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def _models_html(data: RunData) -> str:
    out = ["<h3>Stage 1 models</h3>"]
    if data.stage1_models:
        cols = [
            "file",
            "fold",
            "best_val_loss",
            "best_epoch",
            "epochs_run",
            "n_train",
            "n_val",
            "seconds",
            "training_fingerprint",
            "weights_sha256",
        ]
        out.append('<table class="data" data-table="stage1-models"><thead><tr>')
        out += [f"<th>{_e(c)}</th>" for c in cols]
        out.append("</tr></thead><tbody>")
        for m in data.stage1_models:
            met, extra = m.get("metrics") or {}, m.get("extra") or {}
            vals = {
                "file": m.get("file"),
                "fold": extra.get("fold", ""),
                **{k: met.get(k, "") for k in cols[2:8]},
                "training_fingerprint": m.get("training_fingerprint", ""),
                "weights_sha256": str(m.get("weights_sha256", ""))[:16],
            }
            cells = []
            for c in cols:
                v = vals[c]
                cells.append(f"<td>{_e(f'{v:.4g}' if isinstance(v, float) else v)}</td>")
            out.append("<tr>" + "".join(cells) + "</tr>")
        out.append("</tbody></table>")
    else:
        out.append(placeholder_html("no stage-1 checkpoints: run `bigcat process --out RUN_DIR`"))
    out.append("<h3>Stage 2 model</h3>")
    if data.stage2_model:
        m = data.stage2_model
        met = {k: v for k, v in (m.get("metrics") or {}).items() if not isinstance(v, list)}
        out.append(
            _kv_table(
                {
                    "training_fingerprint": m.get("training_fingerprint", ""),
                    "weights_sha256": m.get("weights_sha256", ""),
                    "features": ", ".join(m.get("feature_names") or []),
                    **met,
                    "extra": m.get("extra", {}),
                }
            )
        )
    else:
        out.append(
            placeholder_html(
                "stage 2 " + "model not trained yet: run `bigcat train stage2 RUN_DIR`"
            )
        )
    out.append("<h3>Training labels</h3>")
    if data.labels_report:
        out.append(_kv_table(data.labels_report))
    else:
        out.append(placeholder_html("no labels report (models/stage2/labels_report.json)"))
    return "".join(out)


def provenance_html(data: RunData) -> str:
    """Version, config, inputs and their fingerprints, models, cluster, per-stage timings."""
    info = data.run_info
    out = ['<h2 id="provenance">Provenance</h2>']
    if info is None:
        out.append(placeholder_html("no run.json: run `bigcat process --out RUN_DIR`"))
    else:
        out.append(
            _kv_table(
                {
                    "bigcat version": info.get("bigcat_version", "?"),
                    "python": info.get("python", "?"),
                    "started": info.get("started", "?"),
                    "total seconds": info.get("seconds", "not finished"),
                    "output": info.get("output", "?"),
                    "inputs": info.get("inputs", []),
                }
            )
        )
        out.append("<h3>Stages: timings and row counts</h3>")
        out.append(_stages_table(info.get("stages") or []))
        out.append("<h3>Cluster</h3>")
        out.append(_kv_table(info.get("cluster") or {}))
    out.append("<h3>Input and output fingerprints</h3>")
    fps: dict[str, Any] = {}
    if data.catalog is not None:
        props = data.catalog.properties
        for k in (
            "fingerprint",
            "input_fingerprint",
            "kind",
            "n_rows",
            "n_partitions",
            "bigcat_version",
            "prior",
        ):
            if k in props:
                fps[f"catalog {k}"] = props[k]
    elif data.catalog_error:
        fps["catalog"] = data.catalog_error
    stamp = data.run_dir / "mock" / ".bigcat-mock.json"
    if stamp.exists():
        try:
            fps["mock fingerprint"] = json.loads(stamp.read_text()).get("fingerprint")
        except ValueError:
            pass
    for p in [
        data.run_dir / "input" / "bigcat.json",
        *sorted(data.run_dir.glob("stages/*/bigcat.json")),
    ]:
        name = _rel(p.parent, data.run_dir)
        if p.exists():
            try:
                props = json.loads(p.read_text())
                fps[f"{name} fingerprint"] = props.get("fingerprint")
            except ValueError:
                pass
    out.append(_kv_table(fps) if fps else placeholder_html("no fingerprints recorded"))
    out.append(_models_html(data))
    if info is not None:
        out.append("<details><summary>Configuration (run.json)</summary><pre>")
        out.append(_e(json.dumps(info.get("config", {}), indent=2, default=str)))
        out.append("</pre></details>")
    log = data.run_dir / "run.log"
    if log.exists():
        lines = log.read_text(errors="replace").splitlines()[-80:]
        out.append("<details><summary>run.log (last 80 lines)</summary><pre>")
        out.append(_e("\n".join(lines)))
        out.append("</pre></details>")
    return "".join(out)


def render(
    data: RunData, tables: list[ReportTable], figures: list[ReportFigure], path: Path
) -> Path:
    """Write ``path`` (report.html); image paths are relative to its directory."""
    base = path.parent
    info = data.run_info or {}
    c = data.summary.counts
    sub = (
        f"{c.get('rows', 0):,} stars, {c.get('giants', 0):,} giants, "
        f"{c.get('with_distance', 0):,} distances, {c.get('with_feh', 0):,} [Fe/H]"
        if data.catalog is not None
        else "no processed catalogue"
    )
    mock = " · synthetic survey: truth shown in every figure" if data.is_mock else ""
    paper = [f for f in figures if f.key.startswith("fig")]
    sky = [f for f in figures if f.key.startswith("sky")]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>bigcat report: {_e(data.run_dir.name)}</title>",
        f"<style>{CSS}</style></head><body>",
        f"<header><h1>bigcat report — {_e(data.run_dir)}</h1>",
        f"<p>bigcat {_e(info.get('bigcat_version', '?'))} · started {_e(info.get('started', '?'))}"
        f" · {_e(sub)}{_e(mock)}</p></header>",
        '<nav><a href="#tables">Tables</a><a href="#figures">Figures</a>'
        '<a href="#sky">Sky maps</a><a href="#provenance">Provenance</a></nav><main>',
        '<h2 id="tables">Tables</h2>',
        *[t.html() for t in tables],
        '<h2 id="figures">Figures</h2><div class="figs">',
        *[figure_html(f, base) for f in paper],
        '</div><h2 id="sky">Sky maps</h2><div class="figs">',
        *[figure_html(f, base) for f in sky],
        "</div>",
        provenance_html(data),
        "</main></body></html>",
    ]
    return write_text_atomic("\n".join(parts), path)
