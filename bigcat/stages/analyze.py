"""`bigcat analyze gradient|vertex`: the Section 5 analyses over a run's processed catalogue.

Both analyses follow the same plan:

1. **Prune** (on the client, from HEALPix geometry alone, before any data is read): the
   catalogue's partitions whose cells can hold a star of the analysis' region
   (:func:`bigcat.analysis.region.pixels_for_region`: the bulge cylinder for the gradient, the
   |l| <= 5, |b| <= 10 deg box for the vertex). Partitions of any order are tested at their
   own order, so a catalogue whose dense pixels were split deeper is pruned exactly.
   ``full_scan=True`` reads every partition instead (for comparison; same result).
2. **Select** (tasks ``gradient-pix<N>`` / ``vertex-pix<N>``, one per partition): read only
   the columns the selection needs, apply the kernel (``bigcat.analysis.gradient`` /
   ``bigcat.analysis.vertex``) and return the few columns of the passing rows.
3. **Reduce and fit** on the client: concatenate the rows (medians need the stars), then the
   binned medians and slope, or the emcee fits (tasks ``vertex-fit<i>-<variant>``, in
   parallel on the workers).
4. **Write** ``RUN_DIR/analysis/gradient.json`` or ``vertex.json`` (atomically), the figures
   (Fig. 11, 12, 13 equivalents, PNG) and Table 3 (CSV and Markdown). When the run holds a
   synthetic survey (``RUN_DIR/mock/truth.json``), the injected values are recorded as
   ``truth`` and drawn on the figures; no ``true_*`` column is ever read.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from distributed import Client

from bigcat import __version__, atomic
from bigcat.analysis import gradient as gradient_kernels
from bigcat.analysis import vertex as vertex_kernels
from bigcat.analysis.gradient import GradientParams, analyze_gradient, gradient_partition
from bigcat.analysis.region import BulgeCylinder, GalacticBox, Region, pixels_for_region
from bigcat.analysis.vertex import VertexParams, analyze_vertex, metallicity_samples
from bigcat.astrometry.galactocentric import frame_parameters
from bigcat.catalog.store import Catalog, read_table_checked
from bigcat.errors import CatalogError, InputError
from bigcat.runlock import run_dir_lock
from bigcat.schema import TRUTH_PREFIX
from bigcat.stages.tasks import run_tasks

logger = logging.getLogger(__name__)

ANALYSIS_DIR = "analysis"
GRADIENT_JSON = "gradient.json"
VERTEX_JSON = "vertex.json"
#: Figure and table files written next to the JSON.
GRADIENT_FIGURE = "fig11_gradient.png"
VERTEX_BINS_FIGURE = "fig12_vertex_bins.png"
ELLIPSOIDS_FIGURE = "fig13_velocity_ellipsoids.png"
TABLE3_CSV = "table3_vertex.csv"
TABLE3_MD = "table3_vertex.md"


@dataclass(frozen=True)
class AnalysisParams:
    """Settings of ``bigcat analyze`` (to be wired into ``Config`` as its own sections).

    Attributes
    ----------
    gradient : GradientParams
        Selection, bins, fit range and bootstrap of the gradient (paper defaults).
    vertex : VertexParams
        Selection, metallicity samples and emcee settings of the vertex fits (paper defaults).
    seed : int or None
        Seed of the bootstrap and the emcee fits; None = ``config.process.seed``.
    region_refine : int
        Extra HEALPix orders the region search descends (tighter pruning, see
        ``pixels_for_region``).
    figures : bool
        Write the PNG figures and Table 3.
    """

    gradient: GradientParams = field(default_factory=GradientParams)
    vertex: VertexParams = field(default_factory=VertexParams)
    seed: int | None = None
    region_refine: int = 2
    figures: bool = True


def analysis_params(config: Any = None, params: AnalysisParams | None = None) -> AnalysisParams:
    """The settings to use: ``params`` if given, else ``config``'s ``analysis`` section or its
    ``gradient``/``vertex`` sections when it has them, else the defaults; the seed defaults
    to ``config.process.seed``."""
    if params is None:
        params = getattr(config, "analysis", None)
    if not isinstance(params, AnalysisParams):
        params = AnalysisParams(
            gradient=getattr(config, "gradient", None) or GradientParams(),
            vertex=getattr(config, "vertex", None) or VertexParams(),
        )
    if params.seed is None:
        process = getattr(config, "process", None)
        seed = int(getattr(process, "seed", 42))
        params = AnalysisParams(
            params.gradient, params.vertex, seed, params.region_refine, params.figures
        )
    return params


# --------------------------------------------------------------------------------------------
# inputs


def catalog_dir(run_dir: str | Path) -> Path:
    """The processed catalogue of a run directory."""
    return Path(run_dir) / "catalog"


def required_columns(kind: str) -> list[str]:
    """Catalogue columns an analysis reads (``kind``: "gradient" or "vertex")."""
    if kind == "gradient":
        return list(gradient_kernels.SELECTION_COLUMNS)
    if kind == "vertex":
        return list(vertex_kernels.SELECTION_COLUMNS)
    raise ValueError(f"unknown analysis {kind!r}; use 'gradient' or 'vertex'.")


def open_analysis_catalog(run_dir: str | Path, kind: str) -> tuple[Catalog, list[str]]:
    """Open RUN_DIR/catalog and check it has the columns ``kind`` reads.

    Returns
    -------
    catalog, columns
        The catalogue and the columns to read (``source_id`` added for the vertex when present).

    Raises
    ------
    CatalogError
        If RUN_DIR/catalog is not a catalogue.
    InputError
        If it lacks a needed column (the message names them and says to run bigcat process).
    """
    root = catalog_dir(run_dir)
    if not (root / "partition_info.csv").exists():
        raise CatalogError(
            f"{root}: no processed catalogue in this run directory. Run `bigcat process --out "
            f"{Path(run_dir)}` first; `bigcat analyze {kind}` reads its catalog/."
        )
    catalog = Catalog.open(root)
    available = catalog.columns()
    needed = required_columns(kind)
    missing = [c for c in needed if c not in available]
    if missing:
        raise InputError(
            f"{root}: the catalogue lacks column(s) {', '.join(missing)}, which `bigcat analyze "
            f"{kind}` needs ([Fe/H] from stage 2, Galactocentric positions and velocities from "
            "the kinematics stage). Run `bigcat process` first to make them (it resumes "
            "where an earlier run stopped)."
        )
    if kind == "vertex" and "source_id" in available:
        needed = ["source_id", *needed]
    if kind == "gradient":  # the resampled estimator's inputs, when the catalogue has them
        extra = [*gradient_kernels.DISTANCE_COLUMNS, *gradient_kernels.OPTIONAL_COLUMNS]
        needed = [*needed, *[c for c in extra if c in available and c not in needed]]
    for col in needed:
        if col.startswith(TRUTH_PREFIX):  # pragma: no cover - guarded by the kernels' lists
            raise ValueError(f"column {col!r}: no analysis may read truth columns.")
    return catalog, needed


def select_partitions(
    catalog: Catalog, region: Region | str, refine: int = 2, full_scan: bool = False
) -> list[tuple[int, int]]:
    """Partitions (order, pixel) of ``catalog`` that may hold stars of ``region``.

    Decided from HEALPix geometry only: each partition is tested at its own order against
    ``pixels_for_region(region, order)``, so catalogues mixing orders are pruned exactly.
    ``full_scan`` returns every partition.
    """
    if full_scan:
        return list(catalog.pixels)
    allowed: dict[int, set[int]] = {}
    keep = []
    for order, pixel in catalog.pixels:
        if order not in allowed:
            allowed[order] = set(pixels_for_region(region, order, refine).tolist())
        if pixel in allowed[order]:
            keep.append((order, pixel))
    return keep


def _task_names(stage: str, parts: Sequence[tuple[int, int]]) -> list[str]:
    """``<stage>-pix<N>``; partitions sharing a pixel number at other orders get ``-o<k>``."""
    base = min((o for o, _ in parts), default=0)
    return [f"{stage}-pix{p}" if o == base else f"{stage}-pix{p}-o{o}" for o, p in parts]


def _feh_curve(run_dir: str | Path) -> tuple[np.ndarray, np.ndarray, float] | None:
    """The stage-2 network's pull towards its training mean (models/stage2/model.json), for
    the gradient's systematic term; None without a stage-2 model."""
    from bigcat.stages.metallicity import load_debias

    d = load_debias(Path(run_dir) / "models" / "stage2")
    if d is None or len(d.label_centres) < 2:
        return None
    return (np.asarray(d.label_centres), np.asarray(d.pred_medians), float(d.slope))


def load_mock_truth(run_dir: str | Path) -> dict[str, Any] | None:
    """The injected values of a synthetic run (RUN_DIR/mock/truth.json), or None.

    Falls back to the parameters in the mock's stamp file when truth.json is absent.
    """
    mock = Path(run_dir) / "mock"
    path = mock / "truth.json"
    if path.exists():
        data = json.loads(path.read_text())
        data["_source"] = str(path)
        return data
    stamp = mock / ".bigcat-mock.json"
    if stamp.exists():
        params = json.loads(stamp.read_text()).get("params", {})
        return {
            "_source": str(stamp),
            "gradient": {"feh_gradient_dex_per_kpc": params.get("feh_gradient")},
            "vertex": {
                "vertex_deg_metal_rich": params.get("vertex_deg"),
                "vertex_deg_metal_poor": 0.0,
            },
        }
    return None


def gradient_truth(truth: dict[str, Any] | None) -> dict[str, Any] | None:
    """The injected gradient of a mock run, in gradient.json's terms."""
    if not truth or "gradient" not in truth:
        return None
    g = truth["gradient"]
    return {
        "slope_dex_per_kpc": g.get("feh_gradient_dex_per_kpc"),
        "median_line_intercept_dex": g.get("median_line_intercept"),
        "definition": g.get("definition"),
        "source": truth.get("_source"),
    }


def vertex_truth(truth: dict[str, Any] | None) -> dict[str, Any] | None:
    """The injected vertex deviations of a mock run, per summary sample."""
    if not truth or "vertex" not in truth:
        return None
    v = truth["vertex"]
    return {
        "metal_rich": {"vertex_deg": v.get("vertex_deg_metal_rich")},
        "metal_poor": {"vertex_deg": v.get("vertex_deg_metal_poor")},
        "metal_rich_min_feh": v.get("metal_rich_min_feh"),
        "metal_poor_max_feh": v.get("metal_poor_max_feh"),
        "definition": v.get("definition"),
        "source": truth.get("_source"),
    }


# --------------------------------------------------------------------------------------------
# task bodies (run on the workers)


def _read_partition(path: str, columns: list[str]) -> pd.DataFrame:
    """The ``columns`` of one catalogue partition (checked; the error says how to rebuild)."""
    return read_table_checked(
        Path(path), columns, rebuild="Rerun `bigcat process` to rebuild it."
    ).to_pandas()


def gradient_task(
    path: str, columns: list[str], params: GradientParams
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Task body: the gradient selection of one partition (rows and cut counts)."""
    return gradient_partition(_read_partition(path, columns), params)


def vertex_task(
    path: str, columns: list[str], params: VertexParams
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Task body: the vertex selection of one partition (rows and cut counts)."""
    return vertex_kernels.vertex_partition(_read_partition(path, columns), params)


def _cluster_map(
    client: Client, name: Callable[[int, Any], str], label: str
) -> Callable[..., Iterator[Any]]:
    """A ``map`` running an analysis' independent jobs (analyze_vertex's fits, the
    gradient's deconvolutions) as tasks named ``name(i, job)`` on the cluster."""

    def cluster_map(fn: Callable[..., Any], jobs: Sequence[Any]) -> Iterator[Any]:
        tasks = [(name(i, job), (job,)) for i, job in enumerate(jobs)]
        return iter(run_tasks(client, fn, tasks, label))

    return cluster_map


# --------------------------------------------------------------------------------------------
# output


def _jsonable(obj: Any) -> Any:
    """Plain JSON data: numpy scalars/arrays converted, NaN and infinities as null."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.bool_ | bool):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, float | np.floating):
        value = float(obj)
        return value if math.isfinite(value) else None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def write_json_atomic(data: dict[str, Any], path: Path) -> Path:
    """Write ``data`` as JSON (NaN as null) to a temporary file and rename it over ``path``."""
    return atomic.write_json_atomic(_jsonable(data), path, indent=2, allow_nan=False)


def _locked(command: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Run an analysis under the lock of its run directory (its second argument)."""

    def wrap(func: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(func)
        def run(client: Client, run_dir: str | Path, *args: Any, **kwargs: Any) -> Any:
            if not Path(run_dir).is_dir():  # the analysis says what is wrong
                return func(client, run_dir, *args, **kwargs)
            with run_dir_lock(Path(run_dir).resolve(), command):
                return func(client, run_dir, *args, **kwargs)

        return run

    return wrap


def _region_info(name: str, region: Region, catalog: Catalog, parts: list, full_scan: bool) -> dict:
    orders = sorted({o for o, _ in catalog.pixels})
    return {
        "name": name,
        "definition": {"type": type(region).__name__, **asdict(region)},
        "catalog_orders": orders,
        "full_scan": full_scan,
        "partitions_read": len(parts),
        "partitions_total": len(catalog.pixels),
        "read_fraction": len(parts) / max(len(catalog.pixels), 1),
    }


def _scan_info(
    stage: str,
    catalog: Catalog,
    parts: list[tuple[int, int]],
    columns: list[str],
    full_scan: bool,
) -> dict[str, Any]:
    info: dict[str, Any] = {
        "partitions_read": len(parts),
        "partitions_total": len(catalog.pixels),
        "full_scan": full_scan,
        "columns_read": columns,
        "catalog": str(catalog.root),
    }
    if not full_scan:
        info["pixels_read"] = [f"{o}/{p}" for o, p in parts]
    logger.info(
        "%s: reading %d of %d partitions%s",
        stage,
        len(parts),
        len(catalog.pixels),
        " (full scan)" if full_scan else "",
    )
    return info


@dataclass
class _Scan:
    """Steps 1 and 2 of an analysis: its settings and output directory, the pruned
    partitions and what their tasks returned (``seconds`` since ``t0``, the analysis' start)."""

    params: AnalysisParams
    run_dir: Path
    out: Path
    t0: float
    catalog: Catalog
    columns: list[str]
    region: Region
    parts: list[tuple[int, int]]
    full_scan: bool
    info: dict[str, Any]
    results: list[Any]
    seconds: float

    def frames(self) -> list[pd.DataFrame]:
        """The non-empty row frames of the tasks' ``(rows, ...)`` results."""
        return [r for r, _ in self.results if len(r)]

    def cut_counts(self, cuts: Sequence[str]) -> dict[str, int]:
        """Rows passing each cumulative cut, summed over the tasks' ``(rows, counts)``."""
        return {k: int(sum(c[k] for _, c in self.results)) for k in cuts}

    def provenance(self, name: str, truth: dict[str, Any] | None) -> dict[str, Any]:
        """The ``region``, ``frame`` and ``truth`` entries of the analysis' JSON."""
        return {
            "region": _region_info(name, self.region, self.catalog, self.parts, self.full_scan),
            "frame": frame_parameters(),
            "truth": truth,
        }


def _scan(
    client: Client,
    kind: str,
    run_dir: str | Path,
    config: Any,
    params: AnalysisParams | None,
    full_scan: bool,
    out_dir: str | Path | None,
) -> _Scan:
    """Settle the settings of analysis ``kind`` ("gradient" or "vertex"), open the
    catalogue, prune its partitions to the analysis' region and run its selection task on
    each (tasks ``<kind>-pix<N>``)."""
    t0 = time.perf_counter()
    p = analysis_params(config, params)
    run_dir = Path(run_dir)
    out = Path(out_dir) if out_dir is not None else run_dir / ANALYSIS_DIR
    catalog, columns = open_analysis_catalog(run_dir, kind)
    region: Region
    task: Callable[..., Any]
    task_params: GradientParams | VertexParams
    if kind == "gradient":
        gp = p.gradient
        region = BulgeCylinder(radius_kpc=gp.radius_kpc, z_max_kpc=gp.max_abs_z_kpc)
        task, task_params = gradient_task, gp
    else:
        vp = p.vertex
        region = GalacticBox(l_max_deg=vp.max_abs_l_deg, b_max_deg=vp.max_abs_b_deg)
        task, task_params = vertex_task, vp
    parts = select_partitions(catalog, region, p.region_refine, full_scan)
    info = _scan_info(kind, catalog, parts, columns, full_scan)
    names = _task_names(kind, parts)
    tasks = [
        (name, (str(catalog.partition_path(o, px)), columns))
        for name, (o, px) in zip(names, parts, strict=True)
    ]
    results = run_tasks(client, task, tasks, kind, params=task_params)
    seconds = time.perf_counter() - t0
    return _Scan(
        p, run_dir, out, t0, catalog, columns, region, parts, full_scan, info, results, seconds
    )


def _write_result(
    result: dict[str, Any],
    files: dict[str, str],
    path: Path,
    scan: _Scan,
    **more_seconds: float,
) -> None:
    """Record ``files`` and the timings (``seconds_scan``, ``more_seconds``, ``seconds``
    since the analysis' start) in ``result`` and write it atomically to ``path``."""
    result["files"] = files
    result["seconds_scan"] = round(scan.seconds, 3)
    for key, value in more_seconds.items():
        result[key] = round(value, 3)
    result["seconds"] = round(time.perf_counter() - scan.t0, 3)
    write_json_atomic(result, path)


# --------------------------------------------------------------------------------------------
# the two analyses


@_locked("bigcat analyze gradient")
def run_gradient(
    client: Client,
    run_dir: str | Path,
    config: Any = None,
    *,
    params: AnalysisParams | None = None,
    full_scan: bool = False,
    out_dir: str | Path | None = None,
) -> dict[str, Any]:
    """The vertical metallicity gradient of the bulge (METHOD.md section 7, Fig. 11).

    Parameters
    ----------
    client : distributed.Client
        Runs the per-partition selections.
    run_dir : str or Path
        Run directory holding ``catalog/`` (the processed catalogue).
    config : bigcat.config.Config, optional
        The run's settings (``process.seed``; ``gradient``/``analysis`` sections when present).
    params : AnalysisParams, optional
        Overrides the settings taken from ``config``.
    full_scan : bool
        Read every partition instead of the pruned ones (for comparison).
    out_dir : str or Path, optional
        Where to write (default ``RUN_DIR/analysis``).

    Returns
    -------
    dict
        The content of ``gradient.json``: :func:`bigcat.analysis.gradient.analyze_gradient`'s
        keys plus ``partitions_read``, ``partitions_total``, ``rows_read``, ``cut_counts``,
        ``region``, ``seconds``, ``seconds_scan``, ``frame``, ``truth`` (mock runs),
        ``files`` and ``bigcat_version``.
    """
    scan = _scan(client, "gradient", run_dir, config, params, full_scan, out_dir)
    p, run_dir, out = scan.params, scan.run_dir, scan.out
    gp = p.gradient
    frames = scan.frames()
    rows = (
        pd.concat(frames, ignore_index=True)
        if frames
        else pd.DataFrame({c: pd.Series(dtype=float) for c in gradient_kernels.SAMPLE_COLUMNS})
    )
    counts = scan.cut_counts(gradient_kernels.CUTS)
    result = analyze_gradient(
        rows,
        gp,
        int(p.seed or 0),
        feh_curve=_feh_curve(run_dir),
        map_fn=_cluster_map(
            client, lambda i, _: f"gradient-deconvolve{i:02d}", "gradient deconvolutions"
        ),
    )
    truth = gradient_truth(load_mock_truth(run_dir))
    result.update(scan.info)
    result.update(
        {
            "rows_read": counts["rows"],
            "cut_counts": counts,
            **scan.provenance("bulge", truth),
            "seed": int(p.seed or 0),
            "bigcat_version": __version__,
        }
    )
    err = result["slope_error"]
    if truth and truth["slope_dex_per_kpc"] is not None and math.isfinite(err) and err > 0:
        # (measured - injected) / error: how many sigma the measurement is off
        truth["pull"] = (result["slope_dex_per_kpc"] - truth["slope_dex_per_kpc"]) / err
    files = {"json": str(out / GRADIENT_JSON)}
    if p.figures:
        from bigcat.report.bulge_figures import plot_gradient

        files["fig11"] = str(plot_gradient(result, rows, out / GRADIENT_FIGURE))
    _write_result(result, files, out / GRADIENT_JSON, scan)
    logger.info(
        "gradient: %.4f +/- %.4f dex/kpc from %d stars (%d of %d partitions, %.1f s)",
        result["slope_dex_per_kpc"],
        result["slope_error"],
        result["n_stars"],
        len(scan.parts),
        len(scan.catalog.pixels),
        result["seconds"],
    )
    return _jsonable(result)


@_locked("bigcat analyze vertex")
def run_vertex(
    client: Client,
    run_dir: str | Path,
    config: Any = None,
    *,
    params: AnalysisParams | None = None,
    full_scan: bool = False,
    out_dir: str | Path | None = None,
) -> dict[str, Any]:
    """The vertex deviation of the bar per metallicity sample (METHOD.md section 8).

    Parameters are those of :func:`run_gradient`. The emcee fits (every sample, both
    variants) run as tasks ``vertex-fit<i>-<variant>`` on the cluster.

    Returns
    -------
    dict
        The content of ``vertex.json``: :func:`bigcat.analysis.vertex.analyze_vertex`'s keys
        (``samples`` -> name -> ``fitted``/``zeroed`` -> ``vertex_deg``, ``vertex_err_deg``,
        ``range_deg``, ``n_stars``, ``acceptance_fraction``, ``autocorr_time``, ...) plus
        ``partitions_read``, ``partitions_total``, ``rows_read``, ``cut_counts`` (rows
        passing each cumulative cut of :data:`bigcat.analysis.vertex.VERTEX_CUTS`: in the
        box, then the distance window, ... down to ``n_stars_selected``), ``region``,
        ``seconds``, ``seconds_scan``, ``seconds_fit``, ``frame``, ``truth`` (mock runs),
        ``table3``, ``files`` and ``bigcat_version``.
    """
    scan = _scan(client, "vertex", run_dir, config, params, full_scan, out_dir)
    p, run_dir, out = scan.params, scan.run_dir, scan.out
    vp = p.vertex
    frames = scan.frames()
    if frames:
        rows = pd.concat(frames, ignore_index=True)
    else:
        empty = pd.DataFrame({c: pd.Series(dtype=float) for c in scan.columns})
        rows = vertex_kernels.vertex_samples(empty, vp)
    if "source_id" in rows.columns:
        rows = rows.sort_values("source_id", ignore_index=True)
    counts = scan.cut_counts(vertex_kernels.VERTEX_CUTS)
    t_fit = time.perf_counter()
    fits = _cluster_map(client, lambda i, job: f"vertex-fit{i:02d}-{job[2]}", "vertex fits")
    result = analyze_vertex(rows, vp, int(p.seed or 0), map_fn=fits)
    t_fit = time.perf_counter() - t_fit
    truth = vertex_truth(load_mock_truth(run_dir))
    result.update(scan.info)
    result.update(
        {
            "rows_read": counts["rows"],
            "cut_counts": counts,
            **scan.provenance("vertex", truth),
            "bigcat_version": __version__,
        }
    )
    from bigcat.report.bulge_figures import table3_rows

    result["table3"] = table3_rows(result)
    files = {"json": str(out / VERTEX_JSON)}
    if p.figures:
        from bigcat.report.bulge_figures import (
            plot_velocity_ellipsoids,
            plot_vertex_bins,
            write_table3,
        )

        samples = metallicity_samples(rows, vp)
        files["fig12"] = str(plot_vertex_bins(result, out / VERTEX_BINS_FIGURE))
        files["fig13"] = str(
            plot_velocity_ellipsoids(
                result,
                {k: samples[k].rows for k in ("metal_poor", "metal_rich")},
                out / ELLIPSOIDS_FIGURE,
            )
        )
        csv, md = write_table3(result, out / TABLE3_CSV, out / TABLE3_MD)
        files["table3_csv"], files["table3_md"] = str(csv), str(md)
    _write_result(result, files, out / VERTEX_JSON, scan, seconds_fit=t_fit)
    logger.info(
        "vertex: %d stars selected from %d of %d partitions; %.1f s",
        result["n_stars_selected"],
        len(scan.parts),
        len(scan.catalog.pixels),
        result["seconds"],
    )
    return _jsonable(result)
