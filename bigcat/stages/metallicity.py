"""Stage 2: [Fe/H] from spectroscopic labels, then Galactocentric kinematics (final pass).

1. **Training (TG) sample** (:func:`bigcat.stages.labels.match_labels`): APOGEE and LAMOST
   labels matched to the stage-1 catalogue (Gaia source id, else position), giants only,
   APOGEE first; the report of labels read, matched and dropped is saved with the model.
2. **Split**: a star is in the validation set when ``unit_hash(source_id, salt=seed)`` <
   ``validation_fraction`` (0.15): a seeded 85/15 split that does not depend on how the
   sample was gathered or partitioned. (dask-ml's ``train_test_split`` would give a split that
   depends on the partitioning of the frame; the TG sample is small, ~1e5 rows, so it is
   gathered to one worker anyway.)
3. **Train** (task ``stage2-train``) one network, 16 colours + 8 absolute magnitudes ->
   [Fe/H], with the weighted heteroscedastic loss, W = |[Fe/H]| + C (eq. 11, C = 0.5).
4. **Validate**: the validation stars are predicted with MC dropout; residual median and robust
   scatter per [Fe/H] bin and NN sigma against residual scatter (Figs 8-10 as data) are saved
   as ``models/stage2/validation.json`` and ``validation.parquet``.
5. **Infer** (tasks ``stage2-pix<N>``) on every partition, the model broadcast once: ``feh``,
   ``feh_error`` (sigma_total, eq. 5), ``feh_extrapolated`` (prediction outside the training
   label range); then the Galactocentric positions and velocities with their uncertainties
   (:func:`bigcat.astrometry.galactocentric.galactocentric_columns`). The dropout masks are
   drawn from a stream keyed by the seed alone, so a star's prediction depends only on its
   inputs, whatever the partitioning or the number of workers.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from distributed import Client

from bigcat import __version__
from bigcat.analysis.stats import robust_scatter
from bigcat.astrometry.galactocentric import (
    GALACTOCENTRIC_COLUMNS,
    frame_parameters,
    galactocentric_columns,
)
from bigcat.atomic import write_json_atomic, write_parquet_atomic
from bigcat.catalog.sampling import unit_hash
from bigcat.catalog.skymap import feh_histogram
from bigcat.catalog.store import Catalog
from bigcat.config import Config, Stage2Config
from bigcat.errors import InputError
from bigcat.nn.calibration import variance_matching_scale
from bigcat.nn.checkpoint import load_checkpoint, save_checkpoint
from bigcat.nn.fit import TrainConfig, TrainedModel, train_network
from bigcat.nn.predict import mc_dropout_predict
from bigcat.schema import BANDS, COLOUR_FEATURE_COLUMNS
from bigcat.stages.partitions import (
    PartitionsDone,
    finalize_stage_output,
    map_partitions_to_files,
    partition_counts,
    stage_fingerprint,
    table_fingerprint,
)
from bigcat.stages.tasks import run_tasks

logger = logging.getLogger(__name__)

STAGE = "stage2"
FEATURES: tuple[str, ...] = (*COLOUR_FEATURE_COLUMNS, *[f"abs_{b}" for b in BANDS])
OUTPUT_COLUMNS = [
    "feh",
    "feh_error",
    "feh_error_network",
    "feh_dlnd",
    "feh_debiased",
    "feh_debiased_error",
    "feh_extrapolated",
]
#: Step in ln(distance) of the derivative d[Fe/H]/d ln d (the abs mags move by 5/ln10 x it).
DLND_STEP = 0.05
#: Columns of the distance posterior stage 2 reads besides its features.
DISTANCE_COLUMNS = ["distance_pc_p16", "distance_pc_p84"]
#: [Fe/H] bin edges of the validation products (the paper's Figs 8-10 span -2.5..1).
VALIDATION_EDGES = np.round(np.arange(-2.5, 1.01, 0.25), 2)
#: [Fe/H] bins of the paper's Table 2 (and of the issue's scoring).
TABLE2_EDGES = np.array([-2.5, -1.5, -0.5, 0.5, 1.0])
#: Salt of the train/validation hash (added to the seed).
SPLIT_SALT = 7
MODEL_NAME = "model"
#: The regression-to-the-mean curve of the model (FehDebias), measured on its validation stars.
DEBIAS_FILE = "debias.json"


class TooFewLabelsError(InputError):
    """Too few labelled giants matched to train the [Fe/H] network."""


@dataclass(frozen=True)
class FehDebias:
    """The network's regression towards the mean, measured on the validation stars, and its
    inverse.

    A regression network predicts E[[Fe/H] | inputs] over its training stars, so its value
    is pulled towards their mean: metal-poor stars come out too rich and metal-rich ones too
    poor (the paper's Fig. 8 end bins). On the validation stars (labels never trained on),
    the median prediction at each label, g(label) (0.2 dex bins of at least 15 stars, made
    non-decreasing, continued linearly beyond with the least-squares slope of prediction on
    label), describes that pull; ``feh_debiased = g^-1(feh)`` undoes it, so that its median
    at a given true [Fe/H] is that [Fe/H] for stars like the validation stars. It is noisier
    (``feh_debiased_error = feh_error / slope``); the raw value stays the best estimate of
    each star's [Fe/H] given its photometry.
    """

    label_centres: tuple[float, ...] = ()
    pred_medians: tuple[float, ...] = ()
    slope: float = 1.0

    @classmethod
    def fit(cls, label: np.ndarray, pred: np.ndarray, width: float = 0.2) -> FehDebias:
        """From validation labels and predictions (identity when there are too few)."""
        label = np.asarray(label, dtype=np.float64)
        pred = np.asarray(pred, dtype=np.float64)
        ok = np.isfinite(label) & np.isfinite(pred)
        label, pred = label[ok], pred[ok]
        if label.size < 50:
            return cls()
        edges = np.arange(np.floor(label.min() / width) * width, label.max() + width, width)
        centres, medians = [], []
        for lo, hi in zip(edges[:-1], edges[1:], strict=True):
            m = (label >= lo) & (label < hi)
            if m.sum() >= 15:
                centres.append(0.5 * (lo + hi))
                medians.append(float(np.median(pred[m])))
        if len(centres) < 2:
            return cls()
        slope = float(np.polyfit(label, pred, 1)[0])
        mono = np.maximum.accumulate(np.asarray(medians))
        return cls(tuple(centres), tuple(float(x) for x in mono), max(slope, 0.2))

    def apply(self, feh: np.ndarray, error: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(debiased [Fe/H], its sigma)."""
        feh = np.asarray(feh, dtype=np.float64)
        if not self.label_centres:
            return feh.copy(), np.asarray(error, dtype=np.float64).copy()
        c, g = np.asarray(self.label_centres), np.asarray(self.pred_medians)
        out = np.interp(feh, g, c)
        below, above = feh < g[0], feh > g[-1]
        out[below] = c[0] + (feh[below] - g[0]) / self.slope
        out[above] = c[-1] + (feh[above] - g[-1]) / self.slope
        return out, np.asarray(error, dtype=np.float64) / self.slope

    def to_dict(self) -> dict:
        return {
            "label_centres": list(self.label_centres),
            "pred_medians": list(self.pred_medians),
            "slope": self.slope,
        }

    @classmethod
    def from_dict(cls, d: dict | None) -> FehDebias:
        if not d:
            return cls()
        return cls(tuple(d["label_centres"]), tuple(d["pred_medians"]), float(d["slope"]))


@dataclass(frozen=True)
class Stage2Params:
    """What the final-pass kernel needs (sent to each worker once)."""

    model: TrainedModel | None
    label_range: tuple[float, float]
    n_passes: int
    seed: int
    c_weight: float | None = None
    sigma_scale: float = 1.0
    debias: FehDebias = FehDebias()


def training_weight(feh: np.ndarray, c_weight: float) -> np.ndarray:
    """Eq. 11's per-star weight W = |[Fe/H]| + C."""
    return np.abs(np.asarray(feh, dtype=np.float64)) + float(c_weight)


def validation_mask(source_id: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """True for the stars held out for validation (hashed source_id, seeded)."""
    return unit_hash(np.asarray(source_id), salt=SPLIT_SALT + int(seed)) < fraction


def usable_rows(df: pd.DataFrame) -> np.ndarray:
    """Quality giants with every stage-2 feature finite (the rows stage 2 predicts)."""
    X = df[list(FEATURES)].to_numpy(np.float64)
    return (
        df["quality_ok"].to_numpy(bool) & df["is_giant"].to_numpy(bool) & np.isfinite(X).all(axis=1)
    )


def prepare_training_table(tg: pd.DataFrame, fraction: float, seed: int) -> pd.DataFrame:
    """The TG sample's usable rows with a ``split`` column ("train" / "validation").

    Rows without finite features or labels are dropped (counted by the caller).
    """
    cols = [*FEATURES, "feh", "feh_err"]
    finite = np.isfinite(tg[cols].to_numpy(np.float64)).all(axis=1) & (
        tg["feh_err"].to_numpy(np.float64) > 0
    )
    table = tg.loc[finite].reset_index(drop=True)
    val = validation_mask(table["source_id"].to_numpy(), fraction, seed)
    table["split"] = np.where(val, "validation", "train")
    return table


def train_config(s: Stage2Config, seed: int) -> TrainConfig:
    """The stage-2 network's training settings."""
    return TrainConfig(
        learning_rate=s.learning_rate,
        batch_size=s.batch_size,
        max_epochs=s.max_epochs,
        patience=s.patience,
        validation_fraction=s.validation_fraction,
        seed=seed,
        num_threads=1,
    )


def train_feh_model(table: pd.DataFrame, config: TrainConfig, c_weight: float) -> TrainedModel:
    """Task body: the [Fe/H] network on the ``split == "train"`` rows, validated on the rest."""
    tr = table[table["split"] == "train"]
    va = table[table["split"] == "validation"]

    def arrays(t: pd.DataFrame) -> tuple[np.ndarray, ...]:
        feh = t["feh"].to_numpy(np.float64)
        return (
            t[list(FEATURES)].to_numpy(np.float64),
            feh,
            t["feh_err"].to_numpy(np.float64),
            training_weight(feh, c_weight),
        )

    X, y, e, w = arrays(tr)
    Xv, yv, ev, wv = arrays(va)
    return train_network(
        X, y, e, list(FEATURES), config, weight=w, X_val=Xv, y_val=yv, y_err_val=ev, weight_val=wv
    )


def validation_products(val: pd.DataFrame, edges: np.ndarray = VALIDATION_EDGES) -> dict:
    """Figs 8-10 as data: per label-[Fe/H] bin, and NN sigma against residual scatter.

    ``val`` has ``feh_label``, ``feh_pred`` and ``feh_error`` (sigma_total).
    """
    label = val["feh_label"].to_numpy(np.float64)
    res = val["feh_pred"].to_numpy(np.float64) - label
    sig = val["feh_error"].to_numpy(np.float64)
    bins = []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        m = (label >= lo) & (label < hi)
        n = int(m.sum())
        bins.append(
            {
                "lo": float(lo),
                "hi": float(hi),
                "n": n,
                "median_residual": float(np.median(res[m])) if n else float("nan"),
                "robust_scatter": robust_scatter(res[m]),
                "mean_nn_sigma": float(np.mean(sig[m])) if n else float("nan"),
            }
        )
    # NN sigma against residual scatter: bins of predicted sigma (equal counts)
    sigma_bins = []
    if len(sig) >= 20:
        q = np.unique(np.quantile(sig, np.linspace(0, 1, 11)))
        for lo, hi in zip(q[:-1], q[1:], strict=True):
            m = (sig >= lo) & (sig <= hi)
            sigma_bins.append(
                {
                    "sigma_lo": float(lo),
                    "sigma_hi": float(hi),
                    "n": int(m.sum()),
                    "mean_nn_sigma": float(np.mean(sig[m])),
                    "rms_residual": float(np.sqrt(np.mean(res[m] ** 2))),
                    "robust_scatter": robust_scatter(res[m]),
                }
            )
    pull = res / sig
    core = (label > -1.5) & (label < 0.5)
    return {
        "n": len(val),
        "median_residual": float(np.median(res)) if len(res) else float("nan"),
        "robust_scatter": robust_scatter(res),
        "mean_nn_sigma": float(np.mean(sig)) if len(sig) else float("nan"),
        "pull_std": float(np.std(pull)) if len(pull) else float("nan"),
        "pull_std_core": float(np.std(pull[core])) if core.any() else float("nan"),
        "coverage68_core": float(np.mean(np.abs(pull[core]) < 1)) if core.any() else float("nan"),
        "bins": bins,
        "sigma_bins": sigma_bins,
        "note": "validation stars: labels never seen in training; residual = NN - label; "
        "the label's own error is included in neither column",
    }


def predict_feh(
    model: TrainedModel,
    X: np.ndarray,
    n_passes: int,
    seed: int,
    c_weight: float | None = None,
    sigma_scale: float = 1.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """MC-dropout [Fe/H]: value, sigma_total, sigma_drop, sigma_pred (masks keyed by seed).

    With eq. 11's weight W = |[Fe/H]| + C on the squared-error term only, the loss
    W (y - yhat)^2 / 2s^2 + ln s is minimised by s^2 = W E[(y - yhat)^2 | x]: the network's
    variance output is W times the predictive variance. Given ``c_weight`` (the C the model was
    trained with) it is divided by W evaluated at the prediction, sigma_pred = s / sqrt(|yhat| +
    C); without this, metal-poor stars' sigmas are inflated by up to sqrt(3) and a large C
    inflates every sigma by sqrt(C). ``None``: the network's s as it is (a model trained
    without weights). ``sigma_scale`` (:func:`sigma_scale_from_validation`) multiplies both
    sigma terms.
    """
    pred = mc_dropout_predict(model, X, n_passes=n_passes, seed=(seed, 2))
    sigma_pred = pred.sigma_pred
    if c_weight is not None:
        sigma_pred = sigma_pred / np.sqrt(training_weight(pred.value, c_weight))
    sigma_drop = pred.sigma_drop * sigma_scale
    sigma_pred = sigma_pred * sigma_scale
    return pred.value, np.hypot(sigma_drop, sigma_pred), sigma_drop, sigma_pred


def log_distance_sigma(df: pd.DataFrame) -> np.ndarray:
    """Half the 16-84% width of each star's ln(distance) posterior."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return 0.5 * np.log(
            df["distance_pc_p84"].to_numpy(np.float64) / df["distance_pc_p16"].to_numpy(np.float64)
        )


def feh_distance_slope(model: TrainedModel, X: np.ndarray) -> np.ndarray:
    """d[Fe/H]/d ln(distance) of each row (dex), by central differences of the mean network:
    a star placed farther away is brighter by 5/ln10 mag per unit of ln d in every absolute
    magnitude input (the colours do not move)."""
    from bigcat.nn.predict import mean_network_predict

    cols = [i for i, f in enumerate(model.feature_names) if f.startswith("abs_")]
    if not cols:
        return np.zeros(len(X))
    shift = 5.0 / np.log(10.0) * DLND_STEP
    far, near = X.copy(), X.copy()
    far[:, cols] -= shift
    near[:, cols] += shift
    return (mean_network_predict(model, far) - mean_network_predict(model, near)) / (2 * DLND_STEP)


def predict_feh_with_distance(
    model: TrainedModel,
    X: np.ndarray,
    sigma_lnd: np.ndarray,
    n_passes: int,
    seed: int,
    c_weight: float | None = None,
    sigma_scale: float = 1.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """[Fe/H] (MC dropout, at the median distance), its total sigma, the network's sigma
    alone and d[Fe/H]/d ln d.

    The absolute-magnitude inputs come from the median distance, so the distance's
    uncertainty is part of the [Fe/H] uncertainty: total^2 = network^2 + (slope sigma_lnd)^2
    (linearised; ``sigma_lnd`` is half the 16-84% width of ln d). The slope also lets the
    analyses move a star's [Fe/H] together with its distance (``bigcat.analysis.gradient``).
    """
    value, err_nn, _, _ = predict_feh(model, X, n_passes, seed, c_weight, sigma_scale)
    slope = feh_distance_slope(model, X)
    term = np.nan_to_num(slope * np.asarray(sigma_lnd, dtype=np.float64))
    return value, np.hypot(err_nn, term), err_nn, slope


def sigma_scale_from_validation(
    residual: np.ndarray, sigma: np.ndarray, label_error: np.ndarray, clip: float = 5.0
) -> float:
    """The factor k that makes sigma_total calibrated on held-out labelled stars.

    Variance matching: residual = NN - label has variance k^2 sigma^2 + sigma_label^2, so
    k^2 = mean((residual^2 - sigma_label^2) / sigma^2) over the validation stars (those with
    |residual| < ``clip`` x the combined sigma, so that a few wrong labels do not decide it).
    MC dropout's spread and the network's variance output are both approximations; this one
    number, measured on stars the network never trained on, puts their sum on the scale of the
    actual errors. Clipped to [0.5, 2]; 1 when it cannot be measured. (This is
    :func:`bigcat.nn.calibration.variance_matching_scale`, which stage 1 uses per cell.)
    """
    return variance_matching_scale(residual, sigma, label_error, clip=clip, limits=(0.5, 2.0))


def final_kernel(df: pd.DataFrame, params: Stage2Params) -> pd.DataFrame:
    """Kernel: feh, feh_error (with the distance's share), feh_error_network, feh_dlnd,
    feh_extrapolated, then the Galactocentric columns.

    Rows that are not quality giants with finite features get NaN [Fe/H] (never dropped);
    ``feh_extrapolated`` is False there. Without a model every [Fe/H] is NaN.
    """
    n = len(df)
    out = df.copy()
    feh, err, err_nn, slope = (np.full(n, np.nan) for _ in range(4))
    if params.model is not None and n:
        rows = np.flatnonzero(usable_rows(df))
        if len(rows):
            X = df[list(FEATURES)].to_numpy(np.float64)[rows]
            feh[rows], err[rows], err_nn[rows], slope[rows] = predict_feh_with_distance(
                params.model,
                X,
                log_distance_sigma(df.iloc[rows]),
                params.n_passes,
                params.seed,
                params.c_weight,
                params.sigma_scale,
            )
    lo, hi = params.label_range
    out["feh"], out["feh_error"] = feh, err
    out["feh_error_network"], out["feh_dlnd"] = err_nn, slope
    out["feh_debiased"], out["feh_debiased_error"] = params.debias.apply(feh, err)
    out["feh_extrapolated"] = np.isfinite(feh) & ((feh < lo) | (feh > hi))
    return galactocentric_columns(out)


def table2_counts(feh: np.ndarray, err: np.ndarray) -> dict[str, list]:
    """Per Table-2 bin (plus the whole sample, last): star count and sum of sigma[Fe/H]."""
    ok = np.isfinite(feh) & np.isfinite(err)
    feh, err = feh[ok], err[ok]
    n, s = [], []
    for lo, hi in zip(TABLE2_EDGES[:-1], TABLE2_EDGES[1:], strict=True):
        m = (feh >= lo) & (feh < hi)
        n.append(int(m.sum()))
        s.append(float(err[m].sum()))
    n.append(len(feh))
    s.append(float(err.sum()))
    return {"n": n, "sum_sigma": s}


def summarise_final(df: pd.DataFrame) -> dict:
    """Row counts of one partition after the final pass."""
    feh = df["feh"].to_numpy(np.float64)
    return {
        "rows": int(len(df)),
        "with_feh": int(np.isfinite(feh).sum()),
        "feh_extrapolated": int(df["feh_extrapolated"].to_numpy(bool).sum()),
        "with_position": int(np.isfinite(df["x_gc"].to_numpy(np.float64)).sum()),
        "with_velocity": int(np.isfinite(df["vx_gc"].to_numpy(np.float64)).sum()),
        "table2": table2_counts(feh, df["feh_error"].to_numpy(np.float64)),
        "feh_hist": feh_histogram(feh),  # bins of bigcat.catalog.skymap.FEH_HIST (sky map)
    }


def table2(summaries: Sequence[dict]) -> list[dict]:
    """The paper's Table 2 layout from the per-partition counts: N and mean sigma per bin."""
    n = np.sum([s["table2"]["n"] for s in summaries], axis=0) if summaries else np.zeros(5)
    tot = np.sum([s["table2"]["sum_sigma"] for s in summaries], axis=0) if summaries else n * 0.0
    labels = [
        f"{lo:+.1f} <= [Fe/H] < {hi:+.1f}"
        for lo, hi in zip(TABLE2_EDGES[:-1], TABLE2_EDGES[1:], strict=True)
    ]
    return [
        {
            "bin": name,
            "n_stars": int(k),
            "mean_sigma_feh": float(t / k) if k else float("nan"),
        }
        for name, k, t in zip([*labels, "all"], n, tot, strict=True)
    ]


def _atomic_json(path: Path, data: Any) -> None:
    write_json_atomic(data, path, indent=1, default=float)


def _atomic_parquet(path: Path, df: pd.DataFrame) -> None:
    write_parquet_atomic(df, path)


def load_model_if_current(
    models_dir: Path, fingerprint: str, config: TrainConfig, c_weight: float
) -> TrainedModel | None:
    """The saved model, if it was trained on this table with these settings."""
    sidecar = models_dir / f"{MODEL_NAME}.json"
    if not sidecar.exists():
        return None
    meta = json.loads(sidecar.read_text())
    extra = meta.get("extra", {})
    if (
        extra.get("sample_fingerprint") != fingerprint
        or extra.get("c_weight") != c_weight
        or meta.get("config") != config.to_dict()
    ):
        return None
    return load_checkpoint(models_dir / MODEL_NAME, expected_features=list(FEATURES))


def load_stage2_model(
    models_dir: Path,
) -> tuple[TrainedModel, tuple[float, float], float, float, FehDebias]:
    """The saved stage-2 model, its training label range, C, sigma scale and debiasing curve
    (for `process` without labels)."""
    model = load_checkpoint(models_dir / MODEL_NAME, expected_features=list(FEATURES))
    extra = json.loads((models_dir / f"{MODEL_NAME}.json").read_text())["extra"]
    lo, hi = extra["label_range"]
    return (
        model,
        (float(lo), float(hi)),
        float(extra["c_weight"]),
        float(extra.get("sigma_scale", 1.0)),
        load_debias(models_dir) or FehDebias.from_dict(extra.get("debias")),
    )


def load_debias(models_dir: Path) -> FehDebias | None:
    """The saved :class:`FehDebias` of a model directory, or None."""
    path = Path(models_dir) / DEBIAS_FILE
    try:
        return FehDebias.from_dict(json.loads(path.read_text()))
    except (OSError, ValueError, KeyError):
        return None


def train_or_load_stage2(
    client: Client,
    catalog: Catalog,
    label_paths: Sequence[str | Path] | Mapping[str, Any],
    config: Config,
    models_dir: Path,
    force: bool = False,
) -> tuple[TrainedModel, tuple[float, float], dict]:
    """Match labels, split, train (or reuse the matching checkpoint), validate, save.

    Returns the model, the training label range, and a summary (label counts, split sizes,
    validation figures, whether the model was reused).
    """
    from bigcat.stages.labels import match_labels

    s = config.stage2
    seed = config.process.seed
    tg, report = match_labels(
        catalog,
        label_paths,
        client,
        radius_arcsec=s.match_radius_arcsec,
        columns=[*FEATURES, *DISTANCE_COLUMNS],
        column_map=None,
        target_task_rows=config.process.target_task_rows,
    )
    table = prepare_training_table(tg, s.validation_fraction, seed)
    report["dropped_nonfinite_features"] = int(len(tg) - len(table))
    n_train = int((table["split"] == "train").sum())
    n_val = len(table) - n_train
    if n_train < s.min_labels or n_val < 10:
        raise TooFewLabelsError(
            f"Only {len(table)} labelled giants ({n_train} train, {n_val} validation) were "
            f"matched in {catalog.root} from {list(label_paths)}: stage 2 needs at least "
            f"{s.min_labels} to train (stage2.min_labels). Check that the label tables cover "
            "the catalogue's sky and that their source ids / positions are Gaia DR3's; the "
            f"match report: {json.dumps(report['total'])}."
        )
    tconf = train_config(s, seed)
    fp = table_fingerprint(table[["source_id", "feh", "feh_err", "split", *FEATURES]])
    models_dir.mkdir(parents=True, exist_ok=True)
    model = None if force else load_model_if_current(models_dir, fp, tconf, s.c_weight)
    reused = model is not None
    if model is None:
        [shared] = client.scatter([table], broadcast=False)
        [model] = run_tasks(
            client,
            train_feh_model,
            [(f"{STAGE}-train", (shared, tconf, s.c_weight))],
            "stage2 train",
        )
    feh_train = table.loc[table["split"] == "train", "feh"].to_numpy(np.float64)
    label_range = (float(feh_train.min()), float(feh_train.max()))
    val = table[table["split"] == "validation"]
    Xv = val[list(FEATURES)].to_numpy(np.float64)
    pred, err, sdrop, spred = predict_feh(model, Xv, s.mc_passes, seed, s.c_weight)
    dist_term = np.nan_to_num(feh_distance_slope(model, Xv) * log_distance_sigma(val))
    scale = 1.0
    if s.recalibrate_sigma:
        # the distance's share is known (from the calibrated distance posterior): it joins the
        # label's error on the measurement side, and k scales the network's sigma alone
        scale = sigma_scale_from_validation(
            pred - val["feh"].to_numpy(np.float64),
            err,
            np.hypot(val["feh_err"].to_numpy(np.float64), dist_term),
        )
        err, sdrop, spred = err * scale, sdrop * scale, spred * scale
    err = np.hypot(err, dist_term)
    debias = FehDebias.fit(val["feh"].to_numpy(np.float64), pred)
    feh_debiased, _ = debias.apply(pred, err)
    vtab = pd.DataFrame(
        {
            "source_id": val["source_id"].to_numpy(),
            "survey": val["survey"].to_numpy(),
            "feh_label": val["feh"].to_numpy(np.float64),
            "feh_label_err": val["feh_err"].to_numpy(np.float64),
            "feh_pred": pred,
            "feh_debiased": feh_debiased,
            "feh_error": err,
            "sigma_drop": sdrop,
            "sigma_pred": spred,
        }
    )
    products = validation_products(vtab)
    if not reused:
        save_checkpoint(
            model,
            models_dir / MODEL_NAME,
            extra={
                "stage": STAGE,
                "sample_fingerprint": fp,
                "c_weight": s.c_weight,
                "sigma_scale": scale,
                "debias": debias.to_dict(),
                "label_range": list(label_range),
                "n_train": n_train,
                "n_validation": n_val,
                "validation": {
                    k: v for k, v in products.items() if k not in ("bins", "sigma_bins")
                },
            },
        )
    _atomic_parquet(models_dir / "validation.parquet", vtab)
    _atomic_json(models_dir / "validation.json", products)
    _atomic_json(models_dir / DEBIAS_FILE, debias.to_dict())
    _atomic_json(models_dir / "labels_report.json", report)
    sample = table[
        [
            "source_id",
            "survey",
            "feh",
            "feh_err",
            "match_kind",
            "split",
            *FEATURES,
            *DISTANCE_COLUMNS,
        ]
    ]
    _atomic_parquet(models_dir / "tg_sample.parquet", sample)
    info = {
        "sigma_scale": scale,
        "debias": debias.to_dict(),
        "labelled_giants": len(table),
        "train": n_train,
        "validation": n_val,
        "labels": report["total"],
        "label_range": list(label_range),
        "models_reused": reused,
        "epochs": int(model.metrics.get("epochs_run", 0)),
        "best_val_loss": round(float(model.metrics.get("best_val_loss", np.nan)), 4),
        "validation_robust_scatter": round(products["robust_scatter"], 4),
        "validation_pull_std_core": round(products["pull_std_core"], 3),
        "validation_coverage68_core": round(products["coverage68_core"], 3),
    }
    logger.debug("stage 2: %s", info)
    return model, label_range, info


def run_final(
    client: Client,
    catalog: Catalog,
    out_root: Path,
    model: TrainedModel | None,
    label_range: tuple[float, float],
    n_passes: int,
    seed: int,
    target_task_rows: int,
    extra_fingerprint: str,
    c_weight: float | None = None,
    sigma_scale: float = 1.0,
    debias: FehDebias | None = None,
    on_done: PartitionsDone | None = None,
) -> tuple[Catalog, dict]:
    """[Fe/H] inference and kinematics over every partition (model broadcast once)."""
    debias = debias or FehDebias()
    params = Stage2Params(model, label_range, n_passes, seed, c_weight, sigma_scale, debias)
    [shared] = client.scatter([params], broadcast=True)
    fp = stage_fingerprint(
        catalog,
        model=model.training_fingerprint if model is not None else None,
        label_range=list(label_range),
        c_weight=c_weight,
        sigma_scale=sigma_scale,
        debias=debias.to_dict(),
        sigma="eq11-weight-corrected+distance-term-v1",
        extra=extra_fingerprint,
        frame=frame_parameters(),
    )
    summaries = map_partitions_to_files(
        client,
        catalog,
        out_root,
        STAGE,
        final_kernel,
        shared,
        summarise_final,
        fp,
        target_task_rows,
        on_done=on_done,
    )
    totals: dict[str, Any] = {
        k: sum(s[k] for s in summaries)
        for k in ("rows", "with_feh", "feh_extrapolated", "with_position", "with_velocity")
    }
    totals.update(partition_counts(summaries))
    t2 = table2(summaries)
    out = finalize_stage_output(
        out_root,
        summaries,
        {
            "fingerprint": fp,
            "input_fingerprint": catalog.fingerprint,
            "bigcat_version": __version__,
            "galactocentric_frame": frame_parameters(),
            "stage2_label_range": list(label_range),
            "table2": t2,
            "added_columns": [*OUTPUT_COLUMNS, *GALACTOCENTRIC_COLUMNS],
        },
        parquet_metadata=True,  # the final catalogue: users open it with lsdb/pyarrow
    )
    totals["table2"] = t2
    return out, totals
