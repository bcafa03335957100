"""Distances: the distance prior, then the distance pass (distances and absolute magnitudes).

1. **Prior** (``[stage1] prior``):

   * ``"deconvolved"`` (default): learnt from this catalogue
     (:mod:`bigcat.astrometry.learnt_prior`), from the giants' Gaia parallaxes.
   * ``"network"``: no prior beyond the one in the combined parallax, the stage-1 network's
     predictive distribution (given colours, J0 and direction; learnt from the catalogue's
     Gaia parallaxes) times the Gaia likelihood (:class:`NetworkPrior`). Tasks ``prior-sample-pix<N>`` gather, per
     level-5 pixel and G bin, at most ``prior_cap_per_cell`` giants with a combined parallax
     (the smallest hashes of source_id, so the same whatever the partitioning: a partition
     always holds whole level-5 pixels); one task ``prior-fit`` deconvolves their distances.
     Saved as ``models/prior/learnt_prior.npz`` (+ .json) and reused while the stage-1
     catalogue and the settings are the same.
   * ``"model"``: a GGD per pixel from an assumed literature Galaxy
     (:func:`bigcat.astrometry.model_prior.model_prior_table`).
   * ``"table"``: the Bailer-Jones et al. (2021) GGD table given as ``prior_table``
     (``--prior-table CSV``).

2. **Distance pass** (tasks ``distance-pix<N>``): per partition, the posterior median and
   16th/84th percentiles of each giant's distance given its combined parallax and the prior
   (``distance_pc``, ``distance_pc_p16``, ``distance_pc_p84``), and the absolute magnitudes
   ``abs_<band>`` from the median distance and the dereddened magnitudes (stage 2's inputs).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from distributed import Client

from bigcat import __version__
from bigcat.astrometry import ggd_distance_posterior, load_prior_table
from bigcat.astrometry.distance import parallax_posterior_distances
from bigcat.astrometry.learnt_prior import (
    LearntPrior,
    LearntPriorSettings,
    combine_halves,
    fit_learnt_prior_half,
    learnt_distance_quantiles,
    mag_bin,
)
from bigcat.catalog.healpix import HEALPIX29, pixel_at_order
from bigcat.catalog.sampling import unit_hash
from bigcat.catalog.store import Catalog, read_table_checked
from bigcat.config import Config
from bigcat.errors import CatalogError
from bigcat.photometry.giants import giant_cut_parallax_bound
from bigcat.photometry.params import PhotometryParams
from bigcat.schema import BAND_MAG_COLUMN, BANDS
from bigcat.stages.partitions import (
    PartitionsDone,
    finalize_stage_output,
    group_partitions,
    map_partitions_to_files,
    partition_counts,
    stage_fingerprint,
)
from bigcat.stages.tasks import run_tasks

logger = logging.getLogger(__name__)

STAGE = "distance"
PRIOR_DIR = "prior"
PRIOR_FILE = "learnt_prior.npz"
#: Columns the prior sample reads, and the columns of the sample.
READ_COLUMNS = [
    "source_id",
    HEALPIX29,
    "phot_g_mean_mag",
    "parallax_zp",
    "parallax_error",
    "parallax_combined",
    "j_m",
    "h_m",
    "a_j",
    "a_h",
]
SAMPLE_COLUMNS = [
    "source_id",
    "healpix5",
    "phot_g_mean_mag",
    "parallax_zp",
    "parallax_error",
    "parallax_bound",
]
#: Salt of the hash that picks the prior sample within a cell.
SAMPLE_SALT = 12
OUTPUT_COLUMNS = ["distance_pc", "distance_pc_p16", "distance_pc_p84"] + [f"abs_{b}" for b in BANDS]

DistancePrior = Any  # PriorTable | LearntPrior | NetworkPrior


def prior_settings(config: Config) -> LearntPriorSettings:
    """The learnt prior's settings from ``[stage1] prior_*``."""
    s = config.stage1
    return LearntPriorSettings(
        mag_edges=tuple(s.prior_mag_edges),
        pool_strength=s.prior_pool_strength,
        smoothing=s.prior_smoothing,
        iterations=s.prior_iterations,
        iterations_finest=s.prior_iterations_finest,
        cap_per_cell=s.prior_cap_per_cell,
    )


def parallax_bound(df: pd.DataFrame, photometry: PhotometryParams) -> np.ndarray:
    """The giant cut of each row as a bound on its Gaia parallax (mas)."""
    return giant_cut_parallax_bound(
        df["j_m"].to_numpy(np.float64) - df["a_j"].to_numpy(np.float64),
        df["h_m"].to_numpy(np.float64) - df["a_h"].to_numpy(np.float64),
        photometry,
    )


def prior_sample_partitions(
    paths: list[str], settings: LearntPriorSettings, photometry: PhotometryParams
) -> pd.DataFrame:
    """Task body: the prior sample of some partitions (each holds whole level-5 pixels):
    the giants that get distances (finite combined parallax) with a finite Gaia parallax, at
    most ``cap_per_cell`` per (level-5 pixel, G bin), those with the smallest hash of
    source_id; with each one's Gaia parallax, error and the giant cut as a parallax bound."""
    if not paths:
        return pd.DataFrame(columns=SAMPLE_COLUMNS)
    tables = [read_table_checked(Path(p), columns=READ_COLUMNS) for p in paths]
    df = pa.concat_tables(tables).to_pandas()
    plx = df["parallax_zp"].to_numpy(np.float64)
    err = df["parallax_error"].to_numpy(np.float64)
    ok = np.isfinite(plx) & np.isfinite(err) & (err > 0)
    ok &= np.isfinite(df["parallax_combined"].to_numpy(np.float64))
    df = df.loc[ok]
    pix = pixel_at_order(df[HEALPIX29].to_numpy(), 5)
    cell = pix * (len(settings.mag_edges) + 1) + mag_bin(
        df["phot_g_mean_mag"].to_numpy(), settings.mag_edges
    )
    u = unit_hash(df["source_id"].to_numpy(), salt=SAMPLE_SALT)
    order = np.lexsort((u, cell))
    cell_sorted = cell[order]
    first = np.searchsorted(cell_sorted, cell_sorted, side="left")
    rank = np.arange(len(order)) - first
    keep = order[rank < settings.cap_per_cell]
    out = df.iloc[np.sort(keep)]
    out = out.assign(
        healpix5=pixel_at_order(out[HEALPIX29].to_numpy(), 5),
        parallax_bound=parallax_bound(out, photometry),
    )
    return out[SAMPLE_COLUMNS].reset_index(drop=True)


def fit_prior_task(
    sample: pd.DataFrame, settings: LearntPriorSettings, half: int
) -> tuple[np.ndarray, dict]:
    """Task body: one cross-fitted half of the learnt prior from the gathered sample
    (:func:`bigcat.astrometry.learnt_prior.fit_learnt_prior_half`)."""
    return fit_learnt_prior_half(
        half,
        sample["source_id"].to_numpy(),
        sample["healpix5"].to_numpy(),
        sample["phot_g_mean_mag"].to_numpy(np.float64),
        sample["parallax_zp"].to_numpy(np.float64),
        sample["parallax_error"].to_numpy(np.float64),
        settings,
        upper_bound=sample["parallax_bound"].to_numpy(np.float64),
    )


def learnt_prior_key(
    catalog: Catalog, settings: LearntPriorSettings, photometry: PhotometryParams
) -> str:
    """Identity of a learnt prior: the stage-1 catalogue it was fitted to and the settings."""
    blob = json.dumps(
        {
            "catalog": catalog.fingerprint,
            "settings": settings.to_dict(),
            "giant_cut": [photometry.giant_cut_slope, photometry.giant_cut_intercept],
            "v": __version__,
            "method": "gaia-parallaxes-truncated-v1",
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def learn_prior(
    client: Client,
    catalog: Catalog,
    settings: LearntPriorSettings,
    photometry: PhotometryParams,
    models_dir: Path,
    target_task_rows: int,
) -> tuple[LearntPrior, dict]:
    """The learnt prior of ``catalog`` (the stage-1 output): reused from ``models_dir`` when it
    was fitted to this catalogue with these settings, else gathered, fitted and saved."""
    key = learnt_prior_key(catalog, settings, photometry)
    path = models_dir / PRIOR_FILE
    if path.exists():
        try:
            prior = LearntPrior.load(path)
        except Exception as exc:  # noqa: BLE001 - a damaged file is refitted, and said so
            logger.warning("%s: %s; refitting the prior", path, exc)
        else:
            if prior.info.get("key") == key:
                return prior, {"reused": True, "stars_used": prior.info.get("stars_used")}
    tasks = [
        (
            f"prior-sample-pix{g[0][1]}",
            ([str(catalog.partition_path(o, p)) for o, p in g], settings, photometry),
        )
        for g in group_partitions(catalog, 4 * target_task_rows)
    ]
    parts = run_tasks(client, prior_sample_partitions, tasks, "prior sample")
    sample = pd.concat(parts, ignore_index=True).sort_values("source_id", ignore_index=True)
    if len(sample) < 100:
        logger.warning(
            "only %d giants with a combined parallax: the learnt distance prior rests on "
            "very few stars (its cells take their parents' fit)",
            len(sample),
        )
    [shared] = client.scatter([sample], broadcast=False)
    # the two cross-fitted halves are independent: one task each (11 s -> ~6 s at paper size)
    halves = run_tasks(
        client,
        fit_prior_task,
        [(f"prior-fit-half{h}", (shared, settings, h)) for h in (0, 1)],
        "prior fit",
    )
    prior = combine_halves(halves, settings, len(sample))
    prior.info["key"] = key
    prior.save(path)
    return prior, {"reused": False, "stars_used": prior.info.get("stars_used")}


def load_distance_prior(
    client: Client, catalog: Catalog, config: Config, models_dir: Path
) -> tuple[DistancePrior, dict]:
    """The distance prior ``[stage1] prior`` names (see the module docstring)."""
    s = config.stage1
    kind = s.prior_kind
    if kind == "network":
        return NetworkPrior(), {"kind": kind}
    if kind == "table":
        return load_prior_table(s.prior_table), {"kind": kind}
    if kind == "model":
        from bigcat.astrometry.model_prior import model_prior_table

        return model_prior_table(), {"kind": kind}
    prior, info = learn_prior(
        client,
        catalog,
        prior_settings(config),
        config.photometry,
        models_dir,
        config.process.target_task_rows,
    )
    return prior, {"kind": kind, **info}


@dataclass(frozen=True)
class NetworkPrior:
    """``[stage1] prior = "network"``: no prior beyond the one already in the combined
    parallax, which is the stage-1 network's predictive distribution (learnt from the other
    stars' Gaia parallaxes, given a star's colours, apparent magnitude and direction) times the
    star's own Gaia likelihood; distances are that posterior's quantiles
    (:func:`bigcat.astrometry.distance.parallax_posterior_distances`)."""

    source: str = (
        "network: the stage-1 network's predictive distribution (learnt from the catalogue's "
        "Gaia parallaxes) times the Gaia likelihood"
    )


@dataclass(frozen=True)
class DistanceParams:
    """What the distance kernel needs (sent to each worker once)."""

    prior: Any  # DistancePrior
    photometry: PhotometryParams


def distance_quantiles(df: pd.DataFrame, prior: Any, photometry: PhotometryParams) -> np.ndarray:
    """(n, 3) posterior median, 16th and 84th percentile distances (pc) of the rows with a
    finite combined parallax (NaN elsewhere), with ``prior``. A learnt prior describes the
    selected giants, so the giant cut's selection probability is divided out (see
    :func:`bigcat.astrometry.learnt_prior.learnt_distance_quantiles`)."""
    n = len(df)
    out = np.full((n, 3), np.nan)
    plx = df["parallax_combined"].to_numpy(np.float64)
    err = df["parallax_combined_error"].to_numpy(np.float64)
    rows = np.flatnonzero(np.isfinite(plx) & np.isfinite(err) & (err > 0))
    if not len(rows):
        return out
    if isinstance(prior, NetworkPrior):
        out[rows] = parallax_posterior_distances(plx[rows], err[rows])
        return out
    hp5 = pixel_at_order(df[HEALPIX29].to_numpy()[rows], 5)
    if isinstance(prior, LearntPrior):
        out[rows] = learnt_distance_quantiles(
            prior,
            plx[rows],
            err[rows],
            hp5,
            df["phot_g_mean_mag"].to_numpy(np.float64)[rows],
            df["source_id"].to_numpy()[rows],
            selection_bound=parallax_bound(df, photometry)[rows],
            selection_sigma=df["parallax_error"].to_numpy(np.float64)[rows],
        )
    else:
        length, alpha, beta = prior.lookup(hp5)
        out[rows] = ggd_distance_posterior(plx[rows], err[rows], length, alpha, beta)
    return out


def distance_kernel(df: pd.DataFrame, params: DistanceParams) -> pd.DataFrame:
    """Kernel: distances and the absolute magnitudes from the median distance."""
    out = df.copy()
    dist = distance_quantiles(df, params.prior, params.photometry)
    out["distance_pc"], out["distance_pc_p16"], out["distance_pc_p84"] = dist.T
    with np.errstate(invalid="ignore", divide="ignore"):
        dm = 5 * np.log10(dist[:, 0] / 10.0)
    for band in BANDS:
        mag = df[BAND_MAG_COLUMN[band]].to_numpy(np.float64) - df[f"a_{band}"].to_numpy(np.float64)
        out[f"abs_{band}"] = mag - dm
    return out


def summarise_distances(df: pd.DataFrame) -> dict:
    """Row counts of one partition after the distance pass."""
    d = df["distance_pc"].to_numpy(np.float64)
    return {"rows": int(len(df)), "with_distance": int(np.isfinite(d).sum())}


def prior_identity(prior: Any) -> str:
    """What identifies a prior in the distance stage's fingerprint."""
    if isinstance(prior, NetworkPrior):
        return "network-v1"
    if isinstance(prior, LearntPrior):
        return "learnt:" + prior.fingerprint()
    h = hashlib.sha256()
    for a in (prior.length_pc, prior.alpha, prior.beta):
        h.update(np.ascontiguousarray(a, dtype=np.float64).tobytes())
    return "ggd:" + h.hexdigest()[:16]


def run_distances(
    client: Client,
    catalog: Catalog,
    out_root: Path,
    prior: Any,
    photometry: PhotometryParams,
    target_task_rows: int,
    on_done: PartitionsDone | None = None,
) -> tuple[Catalog, dict]:
    """The distance pass over every partition of the stage-1 catalogue into ``out_root``."""
    [shared] = client.scatter([DistanceParams(prior, photometry)], broadcast=True)
    fp = stage_fingerprint(
        catalog,
        prior=prior_identity(prior),
        stage=STAGE,
        giant_cut=[photometry.giant_cut_slope, photometry.giant_cut_intercept],
    )
    summaries = map_partitions_to_files(
        client,
        catalog,
        out_root,
        STAGE,
        distance_kernel,
        shared,
        summarise_distances,
        fp,
        target_task_rows,
        on_done=on_done,
    )
    totals = {k: sum(s[k] for s in summaries) for k in ("rows", "with_distance")}
    totals.update(partition_counts(summaries))
    out = finalize_stage_output(
        out_root,
        summaries,
        {
            "fingerprint": fp,
            "input_fingerprint": catalog.fingerprint,
            "bigcat_version": __version__,
            "prior": prior.source,
        },
    )
    return out, totals


def load_run_prior(models_run: Path, config: Config) -> tuple[DistancePrior, dict]:
    """The distance prior a finished run used, for `bigcat predict` (read only): its learnt
    prior file for "deconvolved", else the same kind of prior from the settings."""
    kind = config.stage1.prior_kind
    if kind == "deconvolved":
        path = models_run / "models" / PRIOR_DIR / PRIOR_FILE
        if not path.exists():
            raise CatalogError(
                f"{path}: the model run has no learnt distance prior. Give --models a run "
                'that `bigcat process` finished with [stage1] prior = "deconvolved".'
            )
        prior = LearntPrior.load(path)
        return prior, {"kind": kind, "models_from": str(path)}
    if kind == "network":
        return NetworkPrior(), {"kind": kind}
    if kind == "table":
        return load_prior_table(config.stage1.prior_table), {"kind": kind}
    from bigcat.astrometry.model_prior import model_prior_table

    return model_prior_table(), {"kind": kind}
