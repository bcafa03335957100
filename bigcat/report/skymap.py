"""The report's partition map: the dashboard's live sky map, final, as a PNG.

``status_from_run(run_dir)`` rebuilds the sky map's data from the per-partition summaries
stored in each partition file of the run (the same dicts the stages' tasks returned to the
live map while the run went on, ``bigcat.catalog.skymap.SkyState``);
``write_skymap_png(status, path)`` draws it (matplotlib, Agg): last stage done, giants per
deg^2 and, once stage 2 has values, the median [Fe/H] of each partition, with the partitions'
own outlines (any orders) in Galactic Mollweide, l = 0 at the centre, l increasing to the left.
``skymap_figure(data, out_dir)`` is the report's figure ``sky_partitions``.
"""

from __future__ import annotations

import json
import logging
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import numpy as np
from matplotlib.collections import LineCollection, PolyCollection
from matplotlib.colors import BoundaryNorm, ListedColormap, LogNorm, Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Ellipse

from bigcat.catalog.skymap import (
    PARTITION_STAGES,
    X_MAX,
    Y_MAX,
    SkyState,
    graticule,
    partition_outlines,
)

logger = logging.getLogger(__name__)

#: Where each per-partition stage writes its partitions, inside the run directory.
STAGE_DIRS = {
    "photometry": "stages/photometry",
    "stage1": "stages/stage1",
    "distance": "stages/distance",
    "stage2": "catalog",
}
#: Colours of "last stage done" (none, then PARTITION_STAGES), as on the live page.
STAGE_COLOURS = ["#e6e6e6", "#fde725", "#35b779", "#31688e", "#440154"]
_NPIX = re.compile(r"Norder=(\d+)/Dir=\d+/Npix=(\d+)\.parquet$")


def _stored_summary(path: Path) -> dict | None:
    import pyarrow.parquet as pq

    from bigcat.stages.partitions import SUMMARY_KEY

    try:
        meta = pq.read_metadata(path).metadata or {}
    except Exception:  # noqa: BLE001 - an unreadable file is a partition not done
        return None
    raw = meta.get(SUMMARY_KEY)
    return json.loads(raw) if raw else None


def status_from_run(run_dir: str | Path) -> dict[str, Any]:
    """The sky map's data (``SkyState.to_dict()``) of a run directory, from the summaries
    in its partition files' Parquet metadata (footers only; read in a few threads)."""
    run_dir = Path(run_dir)
    state = SkyState(str(run_dir))
    for stage in PARTITION_STAGES:
        root = run_dir / STAGE_DIRS[stage] / "dataset"
        files = sorted(root.rglob("Npix=*.parquet")) if root.exists() else []
        keyed = [(m, f) for f in files if (m := _NPIX.search(f.as_posix()))]
        with ThreadPoolExecutor(max_workers=8) as pool:
            summaries = list(pool.map(_stored_summary, [f for _, f in keyed]))
        done = [
            {**s, "order": int(m.group(1)), "pixel": int(m.group(2))}
            for (m, _), s in zip(keyed, summaries, strict=True)
            if s is not None
        ]
        if done:
            state.stage_started(stage)
            state.partitions_done(stage, done)
    try:
        stages = json.loads((run_dir / "run.json").read_text()).get("stages", [])
        train: dict = next((s for s in stages if s.get("stage") == "stage2-train"), {})
        state.set_labelled(train.get("labelled_giants"))
    except (OSError, ValueError, AttributeError):
        pass
    state.finish()
    return state.to_dict()


def _panel(ax: Any, polys: list, values: list, title: str, cmap: Any, norm: Any) -> Any:
    ax.set_title(title, fontsize=11)
    ax.set_xlim(-X_MAX * 1.02, X_MAX * 1.02)
    ax.set_ylim(-Y_MAX * 1.04, Y_MAX * 1.04)
    ax.set_aspect("equal")
    ax.axis("off")
    edge = Ellipse((0, 0), 2 * X_MAX, 2 * Y_MAX, fill=False, lw=0.8, color="0.3", zorder=3)
    ax.add_patch(edge)
    log = isinstance(norm, LogNorm)

    def colour(v: float | None) -> Any:
        if v is None or not np.isfinite(v) or (log and v <= 0):
            return "#f2f2f2"  # no value (yet)
        return cmap(norm(v))

    colours = [colour(v) for v in values]
    flat_polys, flat_colours = [], []
    for rings, c in zip(polys, colours, strict=True):
        for ring in rings:
            flat_polys.append(np.asarray(ring).reshape(-1, 2))
            flat_colours.append(c)
    coll = PolyCollection(flat_polys, facecolors=flat_colours, edgecolors="face", lw=0.2)
    coll.set_clip_path(edge)
    ax.add_collection(coll)
    grid = LineCollection(
        [np.asarray(g).reshape(-1, 2) for g in graticule()], colors="0.5", lw=0.4, alpha=0.6
    )
    grid.set_clip_path(edge)
    ax.add_collection(grid)
    mappable = matplotlib.cm.ScalarMappable(norm=norm, cmap=cmap)
    return mappable


def write_skymap_png(status: dict[str, Any], path: str | Path) -> Path:
    """Draw the sky map of ``status`` (``SkyState.to_dict()``: the live map's status and
    per-partition columns) into the PNG ``path``: last stage done, giants per deg^2 and, when
    any partition has one, median [Fe/H]. Returns ``path``."""
    path = Path(path)
    cols = status.get("columns") or {}
    keys = list(zip(cols.get("order", []), cols.get("pixel", []), strict=True))
    polys = partition_outlines(keys)
    feh = [v for v in cols.get("feh_median", []) if v is not None]
    n = 3 if feh else 2
    fig = Figure(figsize=(6.2 * n, 3.9), layout="constrained")
    axes = fig.subplots(1, n)
    stage_cmap = ListedColormap(STAGE_COLOURS)
    stage_norm = BoundaryNorm(np.arange(-0.5, len(STAGE_COLOURS) + 0.5), stage_cmap.N)
    m = _panel(axes[0], polys, cols.get("done", []), "Last stage done", stage_cmap, stage_norm)
    bar = fig.colorbar(m, ax=axes[0], orientation="horizontal", fraction=0.06, pad=0.02)
    bar.set_ticks(range(len(STAGE_COLOURS)))
    bar.set_ticklabels(["none", *PARTITION_STAGES], fontsize=8)
    dens = [v for v in cols.get("giants_per_deg2", []) if v]
    lo, hi = (min(dens), max(dens)) if dens else (0.1, 1.0)
    m = _panel(
        axes[1],
        polys,
        cols.get("giants_per_deg2", []),
        "Giants per deg²",
        matplotlib.colormaps["viridis"],
        LogNorm(lo, max(hi, lo * 1.01)),
    )
    fig.colorbar(m, ax=axes[1], orientation="horizontal", fraction=0.06, pad=0.02)
    if feh:
        q = np.percentile(feh, [2, 98])
        m = _panel(
            axes[2],
            polys,
            cols.get("feh_median", []),
            "Median [Fe/H] per partition",
            matplotlib.colormaps["coolwarm"],
            Normalize(float(q[0]), float(max(q[1], q[0] + 0.01))),
        )
        fig.colorbar(m, ax=axes[2], orientation="horizontal", fraction=0.06, pad=0.02, label="dex")
    done = status.get("pixels_done", {})
    fig.suptitle(
        f"{status.get('pixels_total', 0):,} partitions (Galactic, Mollweide, l = 0 at the "
        f"centre, increasing to the left); done: "
        + ", ".join(f"{s} {done.get(s, 0):,}" for s in PARTITION_STAGES),
        fontsize=10,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path


def skymap_figure(data: Any, out_dir: Path) -> Any:
    """The report's figure ``sky_partitions`` (a ``ReportFigure``) for ``data.run_dir``."""
    from bigcat.report.figures import ReportFigure

    key, title = "sky_partitions", "Sky map: partitions and stages"
    caption = (
        "The run's partitions with their own outlines (mixed HEALPix orders), as the live sky "
        "map of the Dask dashboard showed them at the end: the last stage done, giants per "
        "deg² (photometry summaries) and the median stage-2 [Fe/H] per partition (from its "
        "summary's [Fe/H] histogram). Galactic Mollweide, l = 0 at the centre, l increasing "
        "to the left."
    )
    status = status_from_run(data.run_dir)
    if not status["pixels_total"]:
        return ReportFigure(
            key, title, caption, missing="no partition done yet: run `bigcat process`"
        )
    return ReportFigure(key, title, caption, write_skymap_png(status, out_dir / f"{key}.png"))
