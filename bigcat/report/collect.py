"""What the report needs from a run directory, gathered in one pass over the catalogue.

The processed catalogue may hold millions of rows, so nothing here loads it whole. Each task
reads only the columns it needs from a group of partitions and returns a :class:`Summary`:
fixed-grid histograms (mergeable by addition; percentiles and medians are read off them), sums
for the tables, per-sky-pixel histograms for the median maps, the rows of the vertex sample
(a few thousand), and a deterministic subsample (by a hash of ``source_id``) for scatter plots
and for the comparison with the mock's truth. The summaries are merged on the client.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from bigcat.catalog.store import Catalog, partition_path, read_parquet_checked
from bigcat.schema import STAGE1_OUTPUT_COLUMNS as STAGE1_COLUMNS

logger = logging.getLogger(__name__)

#: Rows kept in the deterministic subsample (scatter plots, truth comparisons).
SUBSAMPLE_ROWS = 40_000
#: Rows per report task (partitions are grouped up to about this many).
TASK_ROWS = 250_000

#: Catalogue columns the report reads, when present.
WANTED_COLUMNS = [
    "source_id",
    "ra",
    "dec",
    "quality_ok",
    "is_giant",
    "j_m",
    "h_m",
    "a_j",
    "a_h",
    "a_ks",
    "m_pseudo",
    "parallax",
    "parallax_error",
    # stage 1's parallaxes and distances (parallax_nn ... distance_pc_p84)
    *[c for c in STAGE1_COLUMNS if c.startswith(("parallax_", "distance_"))],
    "feh",
    "feh_error",
    "feh_extrapolated",
    "x_gc",
    "y_gc",
    "z_gc",
    "x_gc_error",
    "y_gc_error",
    "z_gc_error",
    "vx_gc",
    "vy_gc",
    "vz_gc",
    "vx_gc_error",
    "vy_gc_error",
    "vz_gc_error",
    "v_cov_xy",
    "v_cov_xz",
    "v_cov_yz",
    "radial_velocity",
]
#: Columns of the subsample (a subset of WANTED_COLUMNS plus derived ones).
SUBSAMPLE_COLUMNS = [
    "source_id",
    "ra",
    "dec",
    "quality_ok",
    "is_giant",
    "jh0",
    "m_pseudo",
    "a_ks",
    "parallax_error",
    "parallax_nn_error",
    "parallax_combined",
    "parallax_combined_error",
    "distance_pc",
    "sigma_d",
    "feh",
    "feh_error",
    "x_gc",
    "y_gc",
    "z_gc",
]
#: Truth columns joined to the subsample on a synthetic run (when the mock wrote them).
TRUTH_COLUMNS = [
    "true_is_giant",
    "true_parallax",
    "true_distance_pc",
    "true_feh",
    "true_a_ks",
    "true_x_gc",
    "true_y_gc",
    "true_z_gc",
    "true_vx",
    "true_vy",
    "true_vz",
]

# Histogram grids: name -> ((x lo, x hi, x bins), (y lo, y hi, y bins)).
GRIDS: dict[str, tuple[tuple[float, float, int], tuple[float, float, int]]] = {
    # Fig 3: (J-H)_0 against M_pseudo
    "fig3_giants": ((-0.3, 1.4, 170), (-300.0, 1500.0, 180)),
    "fig3_others": ((-0.3, 1.4, 170), (-300.0, 1500.0, 180)),
    # Fig 4: distance (kpc) against log10 parallax sigma (mas)
    "fig4_gaia": ((0.0, 20.0, 80), (-3.0, 1.0, 80)),
    "fig4_nn": ((0.0, 20.0, 80), (-3.0, 1.0, 80)),
    "fig4_combined": ((0.0, 20.0, 80), (-3.0, 1.0, 80)),
    # Fig 5: distance (kpc) against log10 distance sigma (pc)
    "fig5": ((0.0, 20.0, 80), (0.0, 4.5, 90)),
    # Fig 9: [Fe/H] against log10 sigma[Fe/H]
    "fig9": ((-3.5, 2.5, 120), (-2.0, 1.0, 90)),
    # Fig 11: Z or |Z| (kpc) against [Fe/H], bulge cylinder
    "fig11_rv": ((-3.0, 3.0, 60), (-3.0, 1.5, 225)),
    "fig11_all": ((-3.0, 3.0, 60), (-3.0, 1.5, 225)),
    "fig11_absz": ((0.0, 3.0, 30), (-3.0, 1.5, 225)),
}
#: Sky-map histograms per pixel: [Fe/H] (dex) and A_Ks (mag) on fixed grids.
SKY_FEH = (-4.0, 2.0, 300)
SKY_AKS = (0.0, 5.0, 500)
#: Table 1 distance bins (pc) and Table 2 [Fe/H] bins (dex), as in the paper.
TABLE1_EDGES = np.array([0.0, 2000.0, 4000.0, 6000.0, 8000.0, 10000.0])
TABLE2_EDGES = np.array([-3.5, -2.5, -1.5, -0.5, 0.5, 1.5, 2.5])
TABLE2_ALL = (-3.5, 1.5)
#: Bulge cylinder of the gradient analysis (METHOD.md section 7).
BULGE_RADIUS_KPC = 2.5
BULGE_MAX_FEH_ERROR = 0.5
BULGE_MAX_POSITION_SIGMA_KPC = 1.0
BULGE_MAX_VELOCITY_SIGMA_KMS = 250.0


def grid_edges(spec: tuple[float, float, int]) -> np.ndarray:
    """Bin edges of one histogram axis ``(lo, hi, n)``."""
    lo, hi, n = spec
    return np.linspace(lo, hi, n + 1)


def hash_unit(source_id: np.ndarray) -> np.ndarray:
    """A uniform number in [0, 1) per source id (splitmix64), independent of partitioning."""
    z = np.asarray(source_id).astype(np.uint64)
    with np.errstate(over="ignore"):
        z = z + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) / float(2**53)


@dataclass
class Summary:
    """Mergeable aggregates of a set of partitions (see the module docstring)."""

    counts: dict[str, int] = field(default_factory=dict)
    hists: dict[str, np.ndarray] = field(default_factory=dict)
    sums: dict[str, np.ndarray] = field(default_factory=dict)
    sky: dict[int, np.ndarray] = field(default_factory=dict)
    subsample: list[pd.DataFrame] = field(default_factory=list)
    vertex_rows: list[pd.DataFrame] = field(default_factory=list)
    columns: set[str] = field(default_factory=set)

    def add_count(self, name: str, n: int) -> None:
        self.counts[name] = self.counts.get(name, 0) + int(n)

    def add_array(self, store: dict, name: Any, value: np.ndarray) -> None:
        if name in store:
            store[name] = store[name] + value
        else:
            store[name] = value

    def merge(self, other: Summary) -> Summary:
        """Add ``other`` into this summary (in place) and return it."""
        for k, n in other.counts.items():
            self.add_count(k, n)
        for k, h in other.hists.items():
            self.add_array(self.hists, k, h)
        for k, s in other.sums.items():
            self.add_array(self.sums, k, s)
        for pix, h in other.sky.items():
            self.add_array(self.sky, pix, h)
        self.subsample.extend(other.subsample)
        self.vertex_rows.extend(other.vertex_rows)
        self.columns |= other.columns
        return self

    def subsample_frame(self) -> pd.DataFrame:
        frames = [f for f in self.subsample if len(f)]
        if not frames:
            return pd.DataFrame(columns=SUBSAMPLE_COLUMNS)
        return pd.concat(frames, ignore_index=True).sort_values("source_id", ignore_index=True)

    def vertex_frame(self) -> pd.DataFrame:
        frames = [f for f in self.vertex_rows if len(f)]
        if not frames:
            return pd.DataFrame()
        return pd.concat(frames, ignore_index=True).sort_values("source_id", ignore_index=True)


def _col(df: pd.DataFrame, name: str) -> np.ndarray:
    if name not in df.columns:
        return np.full(len(df), np.nan)
    return df[name].to_numpy(dtype=float, na_value=np.nan)


def _flag(df: pd.DataFrame, name: str) -> np.ndarray:
    if name not in df.columns:
        return np.zeros(len(df), dtype=bool)
    return df[name].fillna(False).to_numpy(dtype=bool)


def _hist(summary: Summary, name: str, x: np.ndarray, y: np.ndarray) -> None:
    gx, gy = GRIDS[name]
    ok = np.isfinite(x) & np.isfinite(y)
    h, _, _ = np.histogram2d(x[ok], y[ok], bins=[grid_edges(gx), grid_edges(gy)])
    summary.add_array(summary.hists, name, h.astype(np.int64))


def _binned_sums(
    summary: Summary, name: str, x: np.ndarray, value: np.ndarray, edges: np.ndarray
) -> None:
    """Per-bin [count, sum] of ``value`` for ``x`` in ``edges`` bins (last bin closed)."""
    ok = np.isfinite(x) & np.isfinite(value) & (x >= edges[0]) & (x <= edges[-1])
    idx = np.clip(np.searchsorted(edges, x[ok], side="right") - 1, 0, len(edges) - 2)
    n = np.bincount(idx, minlength=len(edges) - 1).astype(float)
    s = np.bincount(idx, weights=value[ok], minlength=len(edges) - 1)
    summary.add_array(summary.sums, name, np.vstack([n, s]))


def _sky_pixels(ra: np.ndarray, dec: np.ndarray, nside: int) -> np.ndarray:
    import healpy as hp

    return np.asarray(hp.ang2pix(nside, ra, dec, nest=True, lonlat=True), dtype=np.int64)


def summarise_frame(
    df: pd.DataFrame, sky_nside: int, keep_fraction: float, vertex_params: Any = None
) -> Summary:
    """Aggregate one partition's rows (catalogue columns, any subset of ``WANTED_COLUMNS``)."""
    s = Summary(columns=set(df.columns))
    n = len(df)
    s.add_count("rows", n)
    if n == 0:
        return s
    quality = _flag(df, "quality_ok") if "quality_ok" in df.columns else np.ones(n, dtype=bool)
    giant = _flag(df, "is_giant")
    s.add_count("quality_ok", int(quality.sum()))
    s.add_count("giants", int(giant.sum()))
    jh0 = (_col(df, "j_m") - _col(df, "a_j")) - (_col(df, "h_m") - _col(df, "a_h"))
    m_pseudo = _col(df, "m_pseudo")
    if "m_pseudo" in df.columns:
        _hist(s, "fig3_giants", jh0[quality & giant], m_pseudo[quality & giant])
        _hist(s, "fig3_others", jh0[quality & ~giant], m_pseudo[quality & ~giant])

    d_pc = _col(df, "distance_pc")
    sigma_d = 0.5 * (_col(df, "distance_pc_p84") - _col(df, "distance_pc_p16"))
    has_d = giant & np.isfinite(d_pc)
    s.add_count("with_distance", int(has_d.sum()))
    if has_d.any():
        d_kpc = d_pc[has_d] / 1e3
        with np.errstate(divide="ignore", invalid="ignore"):
            for name, col in (
                ("fig4_gaia", "parallax_error"),
                ("fig4_nn", "parallax_nn_error"),
                ("fig4_combined", "parallax_combined_error"),
            ):
                _hist(s, name, d_kpc, np.log10(_col(df, col)[has_d]))
            _hist(s, "fig5", d_kpc, np.log10(sigma_d[has_d]))
        _binned_sums(s, "table1", d_pc[has_d], sigma_d[has_d], TABLE1_EDGES)
        _binned_sums(s, "table1_all", d_pc[has_d], sigma_d[has_d], np.array([0.0, np.inf]))
        gaia, nn = _col(df, "parallax_error")[has_d], _col(df, "parallax_nn_error")[has_d]
        snr = _col(df, "parallax")[has_d] / gaia
        with np.errstate(invalid="ignore"):
            both = np.isfinite(gaia) & np.isfinite(nn)
            better = both & (nn < gaia)
        s.add_count("nn_compared", int(both.sum()))
        s.add_count("nn_better", int(better.sum()))
        s.add_count("nn_compared_low_snr", int((both & (snr < 2)).sum()))
        s.add_count("nn_better_low_snr", int((better & (snr < 2)).sum()))

    feh, feh_err = _col(df, "feh"), _col(df, "feh_error")
    has_feh = np.isfinite(feh)
    s.add_count("with_feh", int(has_feh.sum()))
    if has_feh.any():
        with np.errstate(divide="ignore", invalid="ignore"):
            _hist(s, "fig9", feh, np.log10(feh_err))
        _binned_sums(s, "table2", feh, feh_err, TABLE2_EDGES)
        _binned_sums(s, "table2_all", feh, feh_err, np.array(TABLE2_ALL))
        s.add_count("feh_extrapolated", int(_flag(df, "feh_extrapolated").sum()))

    x, y, z = _col(df, "x_gc"), _col(df, "y_gc"), _col(df, "z_gc")
    if np.isfinite(z).any():
        s.add_count("with_position", int(np.isfinite(z).sum()))
    if np.isfinite(z).any() and has_feh.any():
        bulge = _bulge_mask(df, x, y, feh, feh_err)
        s.add_count("bulge_sample", int(bulge.sum()))
        rv = np.isfinite(_col(df, "radial_velocity"))
        _hist(s, "fig11_all", z[bulge], feh[bulge])
        _hist(s, "fig11_rv", z[bulge & rv], feh[bulge & rv])
        _hist(s, "fig11_absz", np.abs(z[bulge]), feh[bulge])
    if np.isfinite(_col(df, "vx_gc")).any():
        s.add_count("with_velocity", int(np.isfinite(_col(df, "vx_gc")).sum()))
        s.vertex_rows.append(_vertex_rows(df, vertex_params))

    _sky(s, df, sky_nside, feh)

    if "source_id" in df.columns:
        source_id = df["source_id"].to_numpy()
        keep = hash_unit(source_id) < keep_fraction
        # derived columns as computed above; the others straight from the catalogue
        derived = {
            "source_id": source_id,
            "quality_ok": quality,
            "is_giant": giant,
            "jh0": jh0,
            "m_pseudo": m_pseudo,
            "distance_pc": d_pc,
            "sigma_d": sigma_d,
            "feh": feh,
            "feh_error": feh_err,
            "x_gc": x,
            "y_gc": y,
            "z_gc": z,
        }
        s.subsample.append(
            pd.DataFrame(
                {c: (derived[c] if c in derived else _col(df, c))[keep] for c in SUBSAMPLE_COLUMNS}
            )
        )
    return s


def _bulge_mask(
    df: pd.DataFrame, x: np.ndarray, y: np.ndarray, feh: np.ndarray, feh_err: np.ndarray
) -> np.ndarray:
    """METHOD.md section 7: R < 2.5 kpc, sigma[Fe/H] <= 0.5, position sigma <= 1 kpc, velocity
    sigma <= 250 km/s where a velocity exists (no radial velocity needed)."""
    with np.errstate(invalid="ignore"):
        keep = (np.hypot(x, y) < BULGE_RADIUS_KPC) & np.isfinite(feh)
        keep &= feh_err <= BULGE_MAX_FEH_ERROR
        for axis in ("x", "y", "z"):
            err = _col(df, f"{axis}_gc_error")
            keep &= ~(err > BULGE_MAX_POSITION_SIGMA_KPC)
            verr = _col(df, f"v{axis}_gc_error")
            keep &= ~(verr > BULGE_MAX_VELOCITY_SIGMA_KMS)
    return keep


def _vertex_rows(df: pd.DataFrame, vertex_params: Any) -> pd.DataFrame:
    """The rows of the vertex analysis' selection (METHOD.md section 8) in this partition."""
    try:
        from bigcat.analysis.vertex import vertex_samples

        return vertex_samples(df, vertex_params)
    except Exception as exc:  # noqa: BLE001 - a report must not fail on an analysis module
        logger.warning("report: vertex selection unavailable (%s); Fig 13 shows no stars", exc)
        return pd.DataFrame()


def _sky(s: Summary, df: pd.DataFrame, nside: int, feh: np.ndarray) -> None:
    """Per sky pixel: [count, [Fe/H] histogram, A_Ks histogram] in one row."""
    if "ra" not in df.columns or "dec" not in df.columns:
        return
    pix = _sky_pixels(_col(df, "ra"), _col(df, "dec"), nside)
    uniq, inv = np.unique(pix, return_inverse=True)
    rows = np.zeros((len(uniq), 1 + SKY_FEH[2] + SKY_AKS[2]), dtype=np.int64)
    rows[:, 0] = np.bincount(inv, minlength=len(uniq))
    offset = 1
    for values, (lo, hi, nb) in ((feh, SKY_FEH), (_col(df, "a_ks"), SKY_AKS)):
        ok = np.isfinite(values)
        b = np.clip(((values[ok] - lo) / (hi - lo) * nb).astype(np.int64), 0, nb - 1)
        flat = np.bincount(inv[ok] * nb + b, minlength=len(uniq) * nb)
        rows[:, offset : offset + nb] = flat.reshape(len(uniq), nb)
        offset += nb
    for p, row in zip(uniq, rows, strict=True):
        s.add_array(s.sky, int(p), row)


def summarise_partitions(
    root: str,
    pixels: list[tuple[int, int]],
    sky_nside: int,
    keep_fraction: float,
    vertex_params: Any = None,
) -> Summary:
    """Task body: read the wanted columns of the partitions in ``pixels`` (one group of
    neighbouring partitions, read together) and aggregate them."""
    import pyarrow.dataset as ds

    paths = [str(partition_path(root, order, pixel)) for order, pixel in pixels]
    if not paths:
        return Summary()
    present = set(pq.read_schema(paths[0]).names)
    columns = [c for c in WANTED_COLUMNS if c in present]
    try:
        table = ds.dataset(paths, format="parquet").to_table(columns=columns)
    except Exception as exc:  # noqa: BLE001 - name the file at fault
        for path in paths:
            read_parquet_checked(
                Path(path), columns, rebuild=f"It belongs to the catalogue {root}."
            )
        raise exc
    return summarise_frame(table.to_pandas(), sky_nside, keep_fraction, vertex_params)


def sky_nside_for(catalog: Catalog) -> int:
    """The sky-map resolution: the catalogue's deepest partition order (its ``--nside``, or
    the finest order of adaptive partitions), capped at 6."""
    orders = [o for o, _ in catalog.pixels] or [3]
    return 2 ** max(1, min(max(orders), 6))


def read_truth(run_dir: Path, source_ids: np.ndarray) -> pd.DataFrame | None:
    """The mock's truth columns (``TRUTH_COLUMNS`` present) for ``source_ids``, or None."""
    path = run_dir / "mock" / "truth.parquet"
    if not path.exists() or len(source_ids) == 0:
        return None
    import pyarrow as pa
    import pyarrow.dataset as ds

    dataset = ds.dataset(path, format="parquet", exclude_invalid_files=True)
    names = set(dataset.schema.names)
    if "source_id" not in names:
        return None
    cols = ["source_id"] + [c for c in TRUTH_COLUMNS if c in names]
    wanted = pa.array(np.unique(np.asarray(source_ids, dtype=np.int64)))
    table = dataset.to_table(columns=cols, filter=ds.field("source_id").isin(wanted))
    return table.to_pandas()


def read_json(path: Path) -> dict | None:
    """A JSON file as a dict, or None when missing or unreadable (logged)."""
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        logger.warning("report: cannot read %s (%s)", path, exc)
        return None
    return data if isinstance(data, dict) else {"value": data}


@dataclass
class RunData:
    """Everything the tables and figures draw from."""

    run_dir: Path
    run_info: dict | None
    catalog: Catalog | None
    catalog_error: str | None
    summary: Summary
    subsample: pd.DataFrame
    vertex_rows: pd.DataFrame
    sky_nside: int
    truth_json: dict | None
    stage1_models: list[dict]
    stage2_model: dict | None
    validation: pd.DataFrame | None
    validation_json: dict | None
    labels_report: dict | None
    gradient: dict | None
    vertex: dict | None
    keep_fraction: float

    @property
    def is_mock(self) -> bool:
        return self.truth_json is not None or (self.run_dir / "mock" / "truth.parquet").exists()

    def has(self, *columns: str) -> bool:
        """True when the catalogue holds every one of ``columns``."""
        return all(c in self.summary.columns for c in columns)


def collect(run_dir: Path, client: Any = None) -> RunData:
    """Read and aggregate everything under ``run_dir`` (missing parts become None/empty)."""
    run_dir = Path(run_dir)
    run_info = read_json(run_dir / "run.json")
    catalog: Catalog | None = None
    catalog_error = None
    if (run_dir / "catalog").exists():
        try:
            catalog = Catalog.open(run_dir / "catalog")
        except Exception as exc:  # noqa: BLE001 - shown in the report instead
            catalog_error = str(exc)
    summary = Summary()
    keep_fraction = 1.0
    sky_nside = 8
    vertex_params = _vertex_params(run_info)
    if catalog is not None and catalog.pixels:
        from bigcat.stages.partitions import group_partitions

        n_rows = max(catalog.n_rows(), 1)
        keep_fraction = min(1.0, SUBSAMPLE_ROWS / n_rows)
        sky_nside = sky_nside_for(catalog)
        groups = group_partitions(catalog, TASK_ROWS)
        args = [(str(catalog.root), g, sky_nside, keep_fraction, vertex_params) for g in groups]
        if client is not None:
            from bigcat.stages.tasks import run_tasks

            tasks = [(f"report-pix{g[0][1]}", a) for g, a in zip(groups, args, strict=True)]
            for part in run_tasks(client, summarise_partitions, tasks, "report"):
                summary.merge(part)
        else:
            for a in args:
                summary.merge(summarise_partitions(*a))
    subsample = summary.subsample_frame()
    vertex_rows = summary.vertex_frame()
    summary.subsample, summary.vertex_rows = [], []
    truth_json = read_json(run_dir / "mock" / "truth.json")
    truth_ids = np.concatenate(
        [
            subsample["source_id"].to_numpy(np.int64) if len(subsample) else np.array([], int),
            vertex_rows["source_id"].to_numpy(np.int64)
            if "source_id" in vertex_rows
            else np.array([], int),
        ]
    )
    validation = _read_parquet(run_dir / "models" / "stage2" / "validation.parquet")
    if validation is not None and "source_id" in validation.columns:
        truth_ids = np.concatenate([truth_ids, validation["source_id"].to_numpy(np.int64)])
    truth = read_truth(run_dir, truth_ids)
    if truth is not None:
        subsample = subsample.merge(truth, on="source_id", how="left")
        if len(vertex_rows) and "source_id" in vertex_rows:
            vertex_rows = vertex_rows.merge(truth, on="source_id", how="left")
        if validation is not None and "source_id" in validation.columns:
            validation = validation.merge(truth, on="source_id", how="left")
    return RunData(
        run_dir=run_dir,
        run_info=run_info,
        catalog=catalog,
        catalog_error=catalog_error,
        summary=summary,
        subsample=subsample,
        vertex_rows=vertex_rows,
        sky_nside=sky_nside,
        truth_json=truth_json,
        stage1_models=_sidecars(run_dir / "models" / "stage1"),
        stage2_model=read_json(run_dir / "models" / "stage2" / "model.json"),
        validation=validation,
        validation_json=read_json(run_dir / "models" / "stage2" / "validation.json"),
        labels_report=read_json(run_dir / "models" / "stage2" / "labels_report.json"),
        gradient=read_json(run_dir / "analysis" / "gradient.json"),
        vertex=read_json(run_dir / "analysis" / "vertex.json"),
        keep_fraction=keep_fraction,
    )


def _vertex_params(run_info: dict | None) -> Any:
    """The run's vertex selection settings when recorded, else the defaults (None)."""
    section = ((run_info or {}).get("config") or {}).get("vertex")
    if not isinstance(section, dict):
        return None
    try:
        from bigcat.analysis.vertex import VertexParams

        known = {k: v for k, v in section.items() if k in VertexParams.__dataclass_fields__}
        known.pop("prior", None)
        return VertexParams(**known)
    except Exception:  # noqa: BLE001 - fall back to the paper's selection
        return None


def _sidecars(directory: Path) -> list[dict]:
    out = []
    for path in sorted(directory.glob("*.json")):
        data = read_json(path)
        if data is not None and "metrics" in data:
            out.append({"file": path.name, **data})
    return out


def _read_parquet(path: Path) -> pd.DataFrame | None:
    if not path.exists():
        return None
    try:
        return pd.read_parquet(path)
    except Exception as exc:  # noqa: BLE001 - reported as missing
        logger.warning("report: cannot read %s (%s)", path, exc)
        return None
