"""Stage 1: photometric parallaxes by 8-fold cross-training, combined parallaxes, distances.

1. **Gather** (task ``stage1-sample-pix<N>``): giants passing the quality cuts with finite
   features and target, capped per pixel (:func:`bigcat.catalog.sampling.fair_pixel_cap`) so
   the dense bulge does not swamp the sample; rows are chosen by hashed source_id, so the
   sample does not depend on partitioning.
2. **Train** (tasks ``stage1-train-fold<k>``, in parallel on the workers): fold k's model is
   trained on the other folds (fold = hash(source_id) mod 8). The training table is scattered
   to the cluster once.
3. **Infer** (task ``stage1-pix<N>``): every giant is predicted by the model of its own fold
   (never a model that saw it), with T Monte-Carlo dropout passes as batched matrix work; the
   eight models reach each worker once (scattered, broadcast). The pseudo-absolute magnitude
   becomes a parallax (eq. 8), is combined with Gaia's (eq. 9, corrected eq. 10), and turned
   into a distance with the generalised-gamma prior of the star's level-5 pixel; absolute
   magnitudes follow.

Each fold model's dropout masks are drawn from a stream keyed by (seed, fold): the model is a
fixed ensemble of T thinned networks, so a star's prediction depends only on its own inputs,
never on the partitioning or the number of workers.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from distributed import Client

from bigcat import __version__
from bigcat.astrometry import (
    PriorTable,
    combine_parallaxes,
    default_prior_table,
    ggd_distance_posterior,
    load_prior_table,
    parallax_from_pseudo_magnitude,
)
from bigcat.catalog.healpix import HEALPIX29, pixel_at_order
from bigcat.catalog.sampling import capped_sample, fair_pixel_cap, fold_of
from bigcat.catalog.store import Catalog, read_table_checked
from bigcat.config import Config
from bigcat.errors import InputError
from bigcat.nn.checkpoint import load_checkpoint, save_checkpoint
from bigcat.nn.fit import TrainConfig, TrainedModel, train_network
from bigcat.nn.predict import mc_dropout_predict
from bigcat.photometry.params import PhotometryParams
from bigcat.schema import BAND_MAG_COLUMN, BANDS, COLOUR_FEATURE_COLUMNS, STAGE1_OUTPUT_COLUMNS
from bigcat.stages.partitions import (
    finalize_stage_output,
    map_partitions_to_files,
    partition_counts,
    stage_fingerprint,
    table_fingerprint,
)
from bigcat.stages.tasks import run_tasks

logger = logging.getLogger(__name__)

STAGE = "stage1"
FEATURES = COLOUR_FEATURE_COLUMNS
TARGET, TARGET_ERR = "m_pseudo", "m_pseudo_error"
TABLE_COLUMNS = ["source_id", *FEATURES, TARGET, TARGET_ERR, "m_pseudo_bound"]
OUTPUT_COLUMNS = STAGE1_OUTPUT_COLUMNS


@dataclass(frozen=True)
class Stage1Params:
    """What the inference kernel needs (sent to each worker once)."""

    models: tuple[TrainedModel, ...]
    prior: PriorTable
    n_passes: int
    seed: int
    n_folds: int


def training_mask(df: pd.DataFrame) -> np.ndarray:
    """Rows eligible for stage-1 training: quality giants with finite features and target."""
    ok = df["quality_ok"].to_numpy(bool) & df["is_giant"].to_numpy(bool)
    cols = [*FEATURES, TARGET, TARGET_ERR]
    finite = np.isfinite(df[cols].to_numpy(np.float64)).all(axis=1)
    return ok & finite & (df[TARGET_ERR].to_numpy() > 0)


def sample_partitions(
    paths: list[str], pixel_cap: int, photometry: PhotometryParams
) -> pd.DataFrame:
    """Task body: the capped training rows of some partitions (one frame).

    Besides features and target, each row carries ``m_pseudo_bound``: the giant cut's boundary
    in M_pseudo (eq. 7) at the star's dereddened J - H. The training sample was selected by
    ``m_pseudo < m_pseudo_bound`` on the noisy target, which the truncation-aware likelihood
    takes into account.
    """
    cols = [
        "source_id",
        "quality_ok",
        "is_giant",
        *FEATURES,
        TARGET,
        TARGET_ERR,
        "j_m",
        "h_m",
        "a_j",
        "a_h",
    ]
    parts = []
    for path in paths:
        df = read_table_checked(Path(path), columns=cols).to_pandas()
        keep = capped_sample(df["source_id"].to_numpy(), training_mask(df), pixel_cap)
        df = df.loc[keep]
        j0_h0 = (df["j_m"] - df["a_j"]) - (df["h_m"] - df["a_h"])
        df = df.assign(
            m_pseudo_bound=photometry.giant_cut_slope * j0_h0 + photometry.giant_cut_intercept
        )
        parts.append(df[TABLE_COLUMNS])
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=TABLE_COLUMNS)


def fold_training_rows(source_id: np.ndarray, fold: int, n_folds: int) -> np.ndarray:
    """Rows fold ``fold``'s model may train on: every row not in that fold."""
    return fold_of(source_id, n_folds) != fold


def train_fold(
    table: pd.DataFrame, fold: int, n_folds: int, config: TrainConfig, truncation: bool = True
) -> TrainedModel:
    """Task body: fold ``fold``'s model, trained on every other fold's rows.

    With ``truncation`` the loss models the giant-cut selection on the noisy target as an
    upper bound (truncated Gaussian likelihood); without it, the paper's eq. 3.
    """
    train = table[fold_training_rows(table["source_id"].to_numpy(), fold, n_folds)]
    bound = train["m_pseudo_bound"].to_numpy(np.float64) if truncation else None
    return train_network(
        train[FEATURES].to_numpy(np.float64),
        train[TARGET].to_numpy(np.float64),
        train[TARGET_ERR].to_numpy(np.float64),
        list(FEATURES),
        config,
        upper_bound=bound,
    )


def stage1_kernel(df: pd.DataFrame, params: Stage1Params) -> pd.DataFrame:
    """Kernel: fold, NN and combined parallaxes, distances and absolute magnitudes.

    Rows that are not quality giants with finite features get NaN (never dropped).
    """
    n = len(df)
    out = df.copy()
    fold = fold_of(df["source_id"].to_numpy(), params.n_folds)
    out["fold"] = fold
    m_nn = np.full(n, np.nan)
    m_nn_err = np.full(n, np.nan)
    X = df[list(FEATURES)].to_numpy(np.float64)
    usable = (
        df["quality_ok"].to_numpy(bool) & df["is_giant"].to_numpy(bool) & np.isfinite(X).all(axis=1)
    )
    for k, model in enumerate(params.models):
        rows = np.flatnonzero(usable & (fold == k))
        if len(rows) == 0:
            continue
        pred = mc_dropout_predict(
            model, X[rows], n_passes=params.n_passes, seed=(params.seed, 1, k)
        )
        m_nn[rows] = pred.value
        m_nn_err[rows] = pred.sigma_total
    j0 = df["j_m"].to_numpy(np.float64) - df["a_j"].to_numpy(np.float64)
    p_nn, p_nn_err = parallax_from_pseudo_magnitude(m_nn, m_nn_err, j0)
    p, p_err = combine_parallaxes(
        df["parallax_zp"].to_numpy(np.float64),
        df["parallax_error"].to_numpy(np.float64),
        p_nn,
        p_nn_err,
    )
    p = np.where(usable, p, np.nan)
    p_err = np.where(usable, p_err, np.nan)
    out["parallax_nn"], out["parallax_nn_error"] = p_nn, p_nn_err
    out["parallax_combined"], out["parallax_combined_error"] = p, p_err
    hp5 = pixel_at_order(df[HEALPIX29].to_numpy(), 5)
    length, alpha, beta = params.prior.lookup(hp5)
    dist = np.full((n, 3), np.nan)
    rows = np.flatnonzero(usable & np.isfinite(p) & np.isfinite(p_err))
    if len(rows):
        dist[rows] = ggd_distance_posterior(
            p[rows], p_err[rows], length[rows], alpha[rows], beta[rows]
        )
    out["distance_pc"], out["distance_pc_p16"], out["distance_pc_p84"] = dist.T
    dm = 5 * np.log10(dist[:, 0] / 10.0)
    for band in BANDS:
        mag = df[BAND_MAG_COLUMN[band]].to_numpy(np.float64) - df[f"a_{band}"].to_numpy(np.float64)
        out[f"abs_{band}"] = mag - dm
    return out


def summarise_stage1(df: pd.DataFrame) -> dict:
    """Row counts of one partition after stage 1."""
    gaia_err = df["parallax_error"].to_numpy()
    nn_err = df["parallax_nn_error"].to_numpy()
    has = np.isfinite(nn_err)
    return {
        "rows": int(len(df)),
        "giants_predicted": int(has.sum()),
        "nn_better_than_gaia": int((nn_err[has] < gaia_err[has]).sum()),
        "with_distance": int(np.isfinite(df["distance_pc"].to_numpy()).sum()),
    }


def gather_training_sample(
    client: Client, catalog: Catalog, total_cap: int, photometry: PhotometryParams
) -> pd.DataFrame:
    """The capped, spatially fair stage-1 training table, sorted by source_id."""
    giants = np.array(
        [
            catalog.properties.get("giants_per_partition", {}).get(
                f"{o}/{p}", catalog.partition_rows(o, p)
            )
            for o, p in catalog.pixels
        ]
    )
    cap = fair_pixel_cap(giants, total_cap)
    paths = [str(catalog.partition_path(o, p)) for o, p in catalog.pixels]
    chunks = [paths[i : i + 200] for i in range(0, len(paths), 200)]
    tasks = [
        (f"{STAGE}-sample-pix{catalog.pixels[i * 200][1]}", (c, cap, photometry))
        for i, c in enumerate(chunks)
    ]
    parts = run_tasks(client, sample_partitions, tasks, "stage1 sample")
    table = pd.concat(parts, ignore_index=True).sort_values("source_id", ignore_index=True)
    logger.info("stage 1 training sample: %d giants (per-pixel cap %d)", len(table), cap)
    return table


def train_stage1(
    client: Client,
    table: pd.DataFrame,
    n_folds: int,
    config: TrainConfig,
    models_dir: Path,
    fingerprint: str,
    truncation: bool = True,
) -> list[TrainedModel]:
    """Train the fold models in parallel on the cluster and save their checkpoints."""
    [shared] = client.scatter([table], broadcast=False)
    tasks = [
        (f"{STAGE}-train-fold{k}", (shared, k, n_folds, config, truncation)) for k in range(n_folds)
    ]
    models = run_tasks(client, train_fold, tasks, "stage1 train")
    models_dir.mkdir(parents=True, exist_ok=True)
    for k, model in enumerate(models):
        save_checkpoint(
            model,
            models_dir / f"fold{k}",
            extra={
                "fold": k,
                "n_folds": n_folds,
                "stage": STAGE,
                "sample_fingerprint": fingerprint,
                "truncation_likelihood": truncation,
            },
        )
    return models


def run_stage1(
    client: Client,
    catalog: Catalog,
    out_root: Path,
    models: list[TrainedModel],
    prior: PriorTable,
    n_passes: int,
    seed: int,
    target_task_rows: int,
    extra_fingerprint: str,
) -> tuple[Catalog, dict]:
    """Inference over every partition (models broadcast once) into ``out_root``."""
    params = Stage1Params(tuple(models), prior, n_passes, seed, len(models))
    [shared] = client.scatter([params], broadcast=True)
    fp = stage_fingerprint(catalog, extra=extra_fingerprint)
    summaries = map_partitions_to_files(
        client,
        catalog,
        out_root,
        STAGE,
        stage1_kernel,
        shared,
        summarise_stage1,
        fp,
        target_task_rows,
    )
    totals = {
        k: sum(s[k] for s in summaries)
        for k in ("rows", "giants_predicted", "nn_better_than_gaia", "with_distance")
    }
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


def train_config(config: Config) -> TrainConfig:
    """The fold models' training settings from bigcat's configuration."""
    s = config.stage1
    return TrainConfig(
        learning_rate=s.learning_rate,
        batch_size=s.batch_size,
        max_epochs=s.max_epochs,
        patience=s.patience,
        seed=config.process.seed,
        num_threads=1,
    )


sample_fingerprint = table_fingerprint


def load_models_if_current(
    models_dir: Path, n_folds: int, fingerprint: str, config: TrainConfig
) -> list[TrainedModel] | None:
    """The saved fold models, if they were trained on this sample with these settings."""
    models = []
    for k in range(n_folds):
        sidecar = models_dir / f"fold{k}.json"
        if not sidecar.exists():
            return None
        meta = json.loads(sidecar.read_text())
        if (
            meta.get("extra", {}).get("sample_fingerprint") != fingerprint
            or meta.get("config") != config.to_dict()
        ):
            return None
        models.append(load_checkpoint(models_dir / f"fold{k}", expected_features=list(FEATURES)))
    return models


def train_or_load_stage1(
    client: Client, catalog: Catalog, config: Config, models_dir: Path, force: bool = False
) -> tuple[list[TrainedModel], dict]:
    """Gather the training sample; reuse matching checkpoints or train the fold models."""
    table = gather_training_sample(client, catalog, config.stage1.training_cap, config.photometry)
    if len(table) < 50 * config.stage1.n_folds:
        raise InputError(
            f"Only {len(table)} giants pass the quality cuts with finite colours in {catalog.root}: "
            f"too few to train {config.stage1.n_folds} fold models. Give a larger catalogue."
        )
    tconf = train_config(config)
    fp = sample_fingerprint(table) + ("-trunc" if config.stage1.truncation_likelihood else "")
    models = None if force else load_models_if_current(models_dir, config.stage1.n_folds, fp, tconf)
    reused = models is not None
    if models is None:
        models = train_stage1(
            client,
            table,
            config.stage1.n_folds,
            tconf,
            models_dir,
            fp,
            truncation=config.stage1.truncation_likelihood,
        )
    info = {
        "training_rows": len(table),
        "sample_fingerprint": fp,
        "models_reused": reused,
        "val_loss": [round(float(m.metrics.get("best_val_loss", np.nan)), 4) for m in models],
        "epochs": [int(m.metrics.get("epochs_run", 0)) for m in models],
    }
    return models, info


def load_prior(config: Config) -> PriorTable:
    """The official prior table when configured, else bigcat's default."""
    if config.stage1.prior_table:
        return load_prior_table(config.stage1.prior_table)
    return default_prior_table()
