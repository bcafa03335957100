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

Between 2 and 3, with ``[stage1] recalibrate_sigma`` (default), the NN uncertainty is
recalibrated (tasks ``stage1-calibration-pix<N>`` and ``stage1-calibrate-fold<k>``;
:func:`fit_sigma_calibration`): a uniform random subset of all quality giants (by hashed
source_id, so with the catalogue's own mix of sky regions, distances and magnitudes; the
training sample, capped per pixel, under-represents the bulge and disc) is predicted, each
star by the fold model that did not see it, exactly as in step 3. Its residuals against the
stars' own Gaia M_pseudo give, per cell of apparent magnitude J0, predicted absolute magnitude
and predicted parallax over the Gaia parallax error, the factor by which sigma_total is too
small or large, together with a shared outlier component (a fraction f of stars whose error
is b times wider still: red-clump stars the colours put on the branch and the reverse),
fitted by maximum likelihood. Only giants far below the giant cut's boundary count, since for
the others the cut, applied to the noisy Gaia parallax, truncates the Gaia error
distribution (their Gaia parallaxes are biased low). The calibration is saved in
``models/stage1/calibration.json`` and applied in :func:`stage1_kernel` before eq. 8, so
``parallax_nn_error``, ``parallax_combined`` and its error, and the distances all use the
recalibrated sigma; the combination with Gaia is then the mean and standard deviation of
the two-component posterior
(:func:`bigcat.astrometry.parallax.combine_parallaxes_with_outliers`), which is eqs. 9-10
where the two parallaxes agree.

Each fold model's dropout masks are drawn from a stream keyed by (seed, fold): the model is a
fixed ensemble of T thinned networks, so a star's prediction depends only on its own inputs,
never on the partitioning or the number of workers.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from distributed import Client

from bigcat import __version__
from bigcat.astrometry import (
    combine_parallaxes_with_outliers,
    parallax_from_pseudo_magnitude,
)
from bigcat.atomic import write_json_atomic
from bigcat.catalog.healpix import HEALPIX29, first_index, pixel_at_order
from bigcat.catalog.sampling import capped_sample, fair_pixel_cap, fold_of, unit_hash
from bigcat.catalog.store import Catalog, read_table_checked
from bigcat.config import Config
from bigcat.errors import CatalogError, InputError
from bigcat.nn.calibration import binned_scales, fit_outlier_mixture, quantile_edges
from bigcat.nn.checkpoint import load_checkpoint, save_checkpoint
from bigcat.nn.fit import TrainConfig, TrainedModel, train_network
from bigcat.nn.predict import mc_dropout_predict
from bigcat.photometry.params import PhotometryParams
from bigcat.schema import COLOUR_FEATURE_COLUMNS, STAGE1_OUTPUT_COLUMNS
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

STAGE = "stage1"
#: HEALPix order of the pixels the training cap is shared out by (the prior's order).
SAMPLE_ORDER = 5
FEATURES = COLOUR_FEATURE_COLUMNS
#: Observables besides the 16 colours the network may take (``[stage1] features``): the
#: dereddened apparent magnitude J0 and the direction on the sky (Galactic sin l, cos l, sin b).
EXTRA_FEATURES = ("j0", "sin_l", "cos_l", "sin_b")
#: The network inputs of each ``[stage1] features`` setting.
FEATURE_SETS: dict[str, tuple[str, ...]] = {
    "colours": tuple(FEATURES),
    "colours+j0": (*FEATURES, "j0"),
    "colours+j0+sky": (*FEATURES, *EXTRA_FEATURES),
}
TARGET, TARGET_ERR = "m_pseudo", "m_pseudo_error"
#: The gathered sample: every possible input, the target, its error and the cut's bound.
SAMPLE_COLUMNS = ["source_id", *FEATURES, *EXTRA_FEATURES, TARGET, TARGET_ERR, "m_pseudo_bound"]


def table_columns(features: Sequence[str]) -> list[str]:
    """The columns of a gathered sample that identify a training (its fingerprint)."""
    return ["source_id", *features, TARGET, TARGET_ERR, "m_pseudo_bound"]


def extra_features(df: pd.DataFrame) -> dict[str, np.ndarray]:
    """:data:`EXTRA_FEATURES` of each row, from j_m, a_j, ra and dec."""
    from bigcat.astrometry.frames import galactic_lb

    l_deg, b_deg = galactic_lb(df["ra"].to_numpy(np.float64), df["dec"].to_numpy(np.float64))
    l_rad, b_rad = np.radians(l_deg), np.radians(b_deg)
    return {
        "j0": df["j_m"].to_numpy(np.float64) - df["a_j"].to_numpy(np.float64),
        "sin_l": np.sin(l_rad),
        "cos_l": np.cos(l_rad),
        "sin_b": np.sin(b_rad),
    }


def network_inputs(df: pd.DataFrame, features: Sequence[str]) -> np.ndarray:
    """The (n, len(features)) input matrix: catalogue columns, and the extra features computed
    where the frame does not hold them."""
    extra = None
    cols = []
    for name in features:
        if name in df.columns:
            cols.append(df[name].to_numpy(np.float64))
        else:
            if extra is None:
                extra = extra_features(df)
            cols.append(extra[name])
    return np.column_stack(cols) if cols else np.empty((len(df), 0))


OUTPUT_COLUMNS = STAGE1_OUTPUT_COLUMNS
CALIBRATION_FILE = "calibration.json"
#: Version of the recalibration method; part of the calibration's identity.
CALIBRATION_METHOD = "heldout-matching-j0-mj-snr-v3"
#: Range the per-bin factors are clipped to.
CALIBRATION_LIMITS = (0.5, 3.0)


def _bin_index(edges: tuple[float, ...], x: np.ndarray) -> np.ndarray:
    return np.searchsorted(np.asarray(edges, dtype=np.float64), x, side="right")


@dataclass(frozen=True)
class SigmaCalibration:
    """Factors for the stage-1 NN uncertainty per bin of apparent and predicted absolute
    magnitude.

    A star with dereddened apparent magnitude J0 whose network M_pseudo is ``m_nn`` (predicted
    absolute magnitude M_J = 5 log10(m_nn / 100), :func:`predicted_abs_mag`) has its
    sigma_total multiplied by the factor of its (J0 bin, M_J bin) cell. J0 stands for the noise
    of the star's photometry, which the network's sigma (a function of the colours alone)
    cannot know; M_J for where on the giant branch the colours put it.

    Attributes
    ----------
    j0_edges, mj_edges : tuple of float
        Interior bin edges (mag), increasing; bin i is ``edges[i-1] <= x < edges[i]``, the
        first and last bins open.
    scales : tuple of float
        The factor of each cell, row-major: cell (i, j) is ``scales[i * (len(mj_edges) + 1)
        + j]`` for J0 bin i and M_J bin j.
    info : dict
        Provenance and diagnostics (rows used per cell, settings, key); not used to compute.
    """

    j0_edges: tuple[float, ...]
    mj_edges: tuple[float, ...]
    scales: tuple[float, ...]
    info: dict = field(default_factory=dict, compare=False)
    snr_edges: tuple[float, ...] = ()
    outlier_fraction: float = 0.0
    outlier_scale: float = 1.0

    def __post_init__(self) -> None:
        n = (len(self.j0_edges) + 1) * (len(self.mj_edges) + 1) * (len(self.snr_edges) + 1)
        if len(self.scales) != n:
            raise ValueError(
                f"{len(self.scales)} scales for {len(self.j0_edges)} J0, "
                f"{len(self.mj_edges)} M_J and {len(self.snr_edges)} S/N edges: need {n}."
            )

    @staticmethod
    def predicted_snr(m_nn: np.ndarray, m_obs_error: np.ndarray) -> np.ndarray:
        """log10 of the predicted parallax over the Gaia parallax error (both in M_pseudo
        units: m_nn / m_obs_error); -inf for a non-positive prediction, NaN stays NaN."""
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.asarray(m_nn, dtype=np.float64) / np.asarray(m_obs_error, np.float64)
        out = np.full(ratio.shape, -np.inf)
        pos = ratio > 0
        out[pos] = np.log10(ratio[pos])
        out[np.isnan(ratio)] = np.nan
        return out

    def cell(
        self, m_nn: np.ndarray, j0: np.ndarray, m_obs_error: np.ndarray | None = None
    ) -> np.ndarray:
        """Cell index of each star (see ``scales``). ``m_obs_error`` (the Gaia M_pseudo
        error, parallax_error 10^(0.2 J0)) is needed when there are S/N edges."""
        mj = predicted_abs_mag(m_nn)
        j = _bin_index(self.j0_edges, np.asarray(j0, dtype=np.float64))
        idx = j * (len(self.mj_edges) + 1) + _bin_index(self.mj_edges, mj)
        if not self.snr_edges:
            return idx
        if m_obs_error is None:
            raise ValueError("this calibration has S/N bins: give m_obs_error.")
        snr = self.predicted_snr(m_nn, m_obs_error)
        return idx * (len(self.snr_edges) + 1) + _bin_index(self.snr_edges, snr)

    def factor(
        self, m_nn: np.ndarray, j0: np.ndarray, m_obs_error: np.ndarray | None = None
    ) -> np.ndarray:
        """The factor for each star (NaN where ``m_nn``, ``j0`` or a needed ``m_obs_error``
        is NaN)."""
        mj = predicted_abs_mag(m_nn)
        j0 = np.asarray(j0, dtype=np.float64)
        k = np.asarray(self.scales)[self.cell(m_nn, j0, m_obs_error)]
        bad = np.isnan(mj) | np.isnan(j0)
        if self.snr_edges:
            bad |= np.isnan(np.asarray(m_obs_error, dtype=np.float64))
        return np.where(bad, np.nan, k)

    def to_dict(self) -> dict:
        """JSON-ready form (round-trips through :meth:`from_dict`)."""
        return {
            "j0_edges": list(self.j0_edges),
            "mj_edges": list(self.mj_edges),
            "snr_edges": list(self.snr_edges),
            "scales": list(self.scales),
            "outlier_fraction": self.outlier_fraction,
            "outlier_scale": self.outlier_scale,
            "info": self.info,
        }

    @classmethod
    def from_dict(cls, data: dict) -> SigmaCalibration:
        """Inverse of :meth:`to_dict`."""
        return cls(
            tuple(float(x) for x in data["j0_edges"]),
            tuple(float(x) for x in data["mj_edges"]),
            tuple(float(x) for x in data["scales"]),
            dict(data.get("info", {})),
            tuple(float(x) for x in data.get("snr_edges", ())),
            float(data.get("outlier_fraction", 0.0)),
            float(data.get("outlier_scale", 1.0)),
        )


@dataclass(frozen=True)
class Stage1Params:
    """What the inference kernel needs (sent to each worker once).

    ``calibration`` (None = none) rescales the NN sigma, see :class:`SigmaCalibration`.
    """

    models: tuple[TrainedModel, ...]
    n_passes: int
    seed: int
    n_folds: int
    calibration: SigmaCalibration | None = None
    features: tuple[str, ...] = tuple(FEATURES)


def predicted_abs_mag(m_nn: np.ndarray) -> np.ndarray:
    """Absolute J magnitude from a pseudo-absolute magnitude: M_J = 5 log10(M_pseudo / 100).

    (M_pseudo = parallax[mas] 10^(0.2 J0) = 100 x 10^(0.2 M_J).) Non-positive M_pseudo, which
    the network may predict for the most luminous stars, gives -inf (the brightest bin); NaN
    stays NaN.
    """
    m = np.asarray(m_nn, dtype=np.float64)
    out = np.full(m.shape, -np.inf)
    pos = m > 0
    out[pos] = 5.0 * np.log10(m[pos] / 100.0)
    out[np.isnan(m)] = np.nan
    return out


def untruncated_rows(
    m_obs_error: np.ndarray,
    m_bound: np.ndarray,
    m_nn: np.ndarray,
    m_nn_error: np.ndarray,
    margin: float,
) -> np.ndarray:
    """Rows whose Gaia M_pseudo the giant cut does not truncate, judged from the prediction.

    The cut keeps a star when its *observed* M_pseudo < ``m_bound``; where the true value lies
    several sigma below the bound, (almost) no noise realisation is cut and the Gaia error is
    an untruncated Gaussian. The true value is unknown, so the network's held-out prediction
    stands in for it: a row counts when ``(m_bound - m_nn) / sqrt(m_nn_error^2 +
    m_obs_error^2) > margin``. The prediction does not depend on the star's own Gaia noise,
    so choosing rows by it does not bias that noise.
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        t = (np.asarray(m_bound) - np.asarray(m_nn)) / np.hypot(m_nn_error, m_obs_error)
    return np.isfinite(t) & (t > margin)


def fit_sigma_calibration(
    m_obs: np.ndarray,
    m_obs_error: np.ndarray,
    m_bound: np.ndarray,
    m_nn: np.ndarray,
    m_nn_error: np.ndarray,
    j0: np.ndarray,
    n_j0_bins: int = 6,
    n_mj_bins: int = 3,
    margin: float = 3.0,
    max_error_ratio: float = 5.0,
    limits: tuple[float, float] = CALIBRATION_LIMITS,
    statistic: str = "variance",
    n_snr_bins: int = 1,
) -> SigmaCalibration:
    """Factors that calibrate the NN's M_pseudo sigma against held-out Gaia M_pseudo.

    For held-out stars, r = m_nn - m_obs has variance k^2 m_nn_error^2 + m_obs_error^2 when
    the NN sigma is k times too small. k is estimated in each cell of equally populated bins
    of apparent magnitude J0 and predicted absolute magnitude M_J (edges from the rows used)
    by variance matching (``statistic="variance"``,
    :func:`bigcat.nn.calibration.variance_matching_scale`: k^2 is the mean of
    (r^2 - m_obs_error^2) / m_nn_error^2, residuals beyond 5 combined sigma left out) or
    coverage matching (``"coverage"``, :func:`bigcat.nn.calibration.coverage_matching_scale`:
    the 68.27th percentile of the same quantity, so +-sqrt(k^2 m_nn_error^2 + m_obs_error^2)
    holds 68.27% of the residuals), or with an outlier component (``"mixture"``,
    :func:`bigcat.nn.calibration.fit_outlier_mixture`: k per cell and a shared outlier
    fraction and width by maximum likelihood, kept in the calibration for the combination
    with Gaia), on the
    rows that (a) the giant cut does not truncate (:func:`untruncated_rows`) and (b) have
    ``m_obs_error < max_error_ratio * m_nn_error`` (rows whose Gaia error swamps the NN sigma
    only add noise). Both choices depend on the prediction and the quoted errors, never on
    the star's own Gaia noise, so they do not bias the residuals.

    Parameters
    ----------
    m_obs, m_obs_error : array_like
        Gaia M_pseudo (eq. 6) and its uncertainty.
    m_bound : array_like
        The giant cut's boundary in M_pseudo at each star's J0 - H0 (eq. 7).
    m_nn, m_nn_error : array_like
        The held-out network prediction and its sigma_total (M_pseudo units).
    j0 : array_like
        Dereddened apparent J magnitude.
    n_j0_bins, n_mj_bins : int
        Number of bins of J0 and of predicted M_J.
    margin : float
        See :func:`untruncated_rows`.
    max_error_ratio : float
        Rows with a larger Gaia-to-NN error ratio are not used.
    limits : (float, float)
        Each factor is clipped to this range; a cell with fewer than 20 rows gets 1.
    statistic : str
        "mixture", "coverage" or "variance" (see above).
    n_snr_bins : int
        Bins of the predicted parallax over the Gaia parallax error (m_nn / m_obs_error, no
        Gaia noise in it) as a third cell dimension; 1 = none.

    Returns
    -------
    SigmaCalibration
        Edges, factors and, in ``info``, the rows used per cell and the settings.
    """
    m_obs, m_obs_error, m_bound, m_nn, m_nn_error, j0 = (
        np.asarray(a, dtype=np.float64) for a in (m_obs, m_obs_error, m_bound, m_nn, m_nn_error, j0)
    )
    use = untruncated_rows(m_obs_error, m_bound, m_nn, m_nn_error, margin)
    with np.errstate(invalid="ignore"):
        use &= np.isfinite(m_obs) & np.isfinite(j0) & (m_nn_error > 0)
        use &= m_obs_error < max_error_ratio * m_nn_error
    mj = predicted_abs_mag(m_nn)
    j0_edges = tuple(quantile_edges(j0[use], n_j0_bins).tolist())
    mj_edges = tuple(quantile_edges(mj[use], n_mj_bins).tolist())
    snr = SigmaCalibration.predicted_snr(m_nn, m_obs_error)
    snr_edges = tuple(quantile_edges(snr[use], n_snr_bins).tolist()) if n_snr_bins > 1 else ()
    n_cells = (len(j0_edges) + 1) * (len(mj_edges) + 1) * (len(snr_edges) + 1)
    shape = SigmaCalibration(j0_edges, mj_edges, (1.0,) * n_cells, snr_edges=snr_edges)
    idx = np.where(use, shape.cell(m_nn, j0, m_obs_error), -1)
    fraction, width = 0.0, 1.0
    if statistic == "mixture":
        scales, fraction, width = fit_outlier_mixture(
            m_nn - m_obs, m_nn_error, m_obs_error, idx, n_cells, limits=limits
        )
        counts = np.bincount(idx[idx >= 0], minlength=n_cells)
    else:
        scales, counts = binned_scales(
            m_nn - m_obs, m_nn_error, m_obs_error, idx, n_cells, statistic, limits=limits
        )
    info = {
        "method": CALIBRATION_METHOD,
        "statistic": statistic,
        "cells": "J0 bin x predicted M_J = 5 log10(m_nn / 100) bin x log10(m_nn / m_obs_error) "
        "bin, row-major",
        "rows": int(len(m_nn)),
        "rows_used": counts.tolist(),
        "margin": margin,
        "max_error_ratio": max_error_ratio,
        "n_j0_bins": n_j0_bins,
        "n_mj_bins": n_mj_bins,
        "n_snr_bins": n_snr_bins,
        "limits": list(limits),
    }
    return SigmaCalibration(
        j0_edges, mj_edges, tuple(scales.tolist()), info, snr_edges, fraction, width
    )


def training_mask(df: pd.DataFrame) -> np.ndarray:
    """Rows eligible for stage-1 training: quality giants with finite features and target."""
    ok = df["quality_ok"].to_numpy(bool) & df["is_giant"].to_numpy(bool)
    cols = [*FEATURES, TARGET, TARGET_ERR]
    finite = np.isfinite(df[cols].to_numpy(np.float64)).all(axis=1)
    return ok & finite & (df[TARGET_ERR].to_numpy() > 0)


#: Salt of the hash that picks the uniform calibration sample (not the folds' or the cap's).
CALIBRATION_SALT = 3


def sample_partitions(
    paths: list[str],
    pixel_cap: int,
    photometry: PhotometryParams,
    fraction: float | None = None,
) -> pd.DataFrame:
    """Task body: the capped training rows of some partitions (one frame); with ``fraction``
    instead a uniform random subset of that fraction of the eligible rows (by a hash of
    source_id, so the same whatever the partitioning), as the calibration sample.

    Besides features and target, each row carries ``m_pseudo_bound``: the giant cut's boundary
    in M_pseudo (eq. 7) at the star's dereddened J - H. The training sample was selected by
    ``m_pseudo < m_pseudo_bound`` on the noisy target, which the truncation-aware likelihood
    takes into account. ``j0`` (dereddened J) is there for the sigma calibration.
    """
    cols = [
        "source_id",
        HEALPIX29,
        "ra",
        "dec",
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
    if not paths:
        return pd.DataFrame(columns=SAMPLE_COLUMNS)
    # one read per file, then one frame: per-file pandas work was most of the cost
    tables = [read_table_checked(Path(path), columns=cols) for path in paths]
    df = pa.concat_tables(tables).to_pandas()
    # capped per order-5 pixel, whatever the partitioning (the caller never splits a pixel
    # between tasks)
    if fraction is None:
        group = pixel_at_order(df[HEALPIX29].to_numpy(), SAMPLE_ORDER)
        keep = capped_sample(df["source_id"].to_numpy(), training_mask(df), pixel_cap, group=group)
    else:
        u = unit_hash(df["source_id"].to_numpy(), salt=CALIBRATION_SALT)
        keep = training_mask(df) & (u < fraction)
    df = df.loc[keep]
    j0_h0 = (df["j_m"] - df["a_j"]) - (df["h_m"] - df["a_h"])
    df = df.assign(
        m_pseudo_bound=photometry.giant_cut_slope * j0_h0 + photometry.giant_cut_intercept,
        **extra_features(df),
    )
    return df[SAMPLE_COLUMNS].reset_index(drop=True)


def fold_training_rows(source_id: np.ndarray, fold: int, n_folds: int) -> np.ndarray:
    """Rows fold ``fold``'s model may train on: every row not in that fold."""
    return fold_of(source_id, n_folds) != fold


def train_fold(
    table: pd.DataFrame,
    fold: int,
    n_folds: int,
    config: TrainConfig,
    truncation: bool = True,
    features: Sequence[str] = FEATURES,
) -> TrainedModel:
    """Task body: fold ``fold``'s model, trained on every other fold's rows.

    With ``truncation`` the loss models the giant-cut selection on the noisy target as an
    upper bound (truncated Gaussian likelihood); without it, the paper's eq. 3.
    """
    train = table[fold_training_rows(table["source_id"].to_numpy(), fold, n_folds)]
    bound = train["m_pseudo_bound"].to_numpy(np.float64) if truncation else None
    return train_network(
        train[list(features)].to_numpy(np.float64),
        train[TARGET].to_numpy(np.float64),
        train[TARGET_ERR].to_numpy(np.float64),
        list(features),
        config,
        upper_bound=bound,
    )


def stage1_kernel(df: pd.DataFrame, params: Stage1Params) -> pd.DataFrame:
    """Kernel: fold, NN and combined parallaxes (distances follow in ``bigcat.stages.distance``,
    once the prior is known).

    With ``params.calibration`` the NN's M_pseudo sigma is multiplied by its factor before
    eq. 8, so every downstream column uses the recalibrated sigma. Rows that are not quality
    giants with finite features get NaN (never dropped).
    """
    n = len(df)
    out = df.copy()
    fold = fold_of(df["source_id"].to_numpy(), params.n_folds)
    out["fold"] = fold
    m_nn = np.full(n, np.nan)
    m_nn_err = np.full(n, np.nan)
    X = network_inputs(df, params.features)
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
    plx_err = df["parallax_error"].to_numpy(np.float64)
    cal = params.calibration
    if cal is not None:
        m_nn_err = m_nn_err * cal.factor(m_nn, j0, plx_err * 10.0 ** (0.2 * j0))
    p_nn, p_nn_err = parallax_from_pseudo_magnitude(m_nn, m_nn_err, j0)
    p, p_err = combine_parallaxes_with_outliers(
        df["parallax_zp"].to_numpy(np.float64),
        plx_err,
        p_nn,
        p_nn_err,
        0.0 if cal is None else cal.outlier_fraction,
        1.0 if cal is None else cal.outlier_scale,
    )
    p = np.where(usable, p, np.nan)
    p_err = np.where(usable, p_err, np.nan)
    out["parallax_nn"], out["parallax_nn_error"] = p_nn, p_nn_err
    out["parallax_combined"], out["parallax_combined_error"] = p, p_err
    return out


def heldout_prediction(
    table: pd.DataFrame,
    model: TrainedModel,
    fold: int,
    n_folds: int,
    n_passes: int,
    seed: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Task body: fold ``fold``'s training-table rows predicted by the model that did not see them.

    The same call as in :func:`stage1_kernel` (masks keyed by ``(seed, 1, fold)``), so these
    are the predictions the catalogue gets for these stars.

    Returns
    -------
    rows, value, sigma_total : numpy.ndarray
        Positions in ``table`` and the prediction (M_pseudo units).
    """
    rows = np.flatnonzero(fold_of(table["source_id"].to_numpy(), n_folds) == fold)
    X = table[list(model.feature_names)].to_numpy(np.float64)[rows]
    if len(rows) == 0:
        return rows, np.empty(0), np.empty(0)
    pred = mc_dropout_predict(model, X, n_passes=n_passes, seed=(seed, 1, fold))
    return rows, pred.value, pred.sigma_total


def calibration_key(
    models: list[TrainedModel], sample_fp: str, n_passes: int, seed: int, settings: dict
) -> str:
    """Identity of a calibration: the models, their training sample and the settings."""
    blob = json.dumps(
        {
            "method": CALIBRATION_METHOD,
            "models": [m.training_fingerprint for m in models],
            "sample": sample_fp,
            "n_passes": n_passes,
            "seed": seed,
            "settings": settings,
            "limits": list(CALIBRATION_LIMITS),
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def calibrate_stage1(
    client: Client,
    table: pd.DataFrame,
    models: list[TrainedModel],
    config: Config,
    models_dir: Path,
    sample_fp: str,
    force: bool = False,
) -> SigmaCalibration:
    """The NN-sigma calibration for these models: reused from ``calibration.json`` if current,
    else measured on ``table``'s giants, each predicted by the fold model that did not see it
    (one task per fold), and saved. ``table`` is the calibration sample (uniform or the
    training table, ``[stage1] calibration_sample``) and ``sample_fp`` its fingerprint."""
    s = config.stage1
    seed = config.process.seed
    settings: dict[str, Any] = {
        "n_j0_bins": s.calibration_j0_bins,
        "n_mj_bins": s.calibration_mj_bins,
        "n_snr_bins": s.calibration_snr_bins,
        "margin": s.calibration_margin,
        "max_error_ratio": s.calibration_max_error_ratio,
        "statistic": s.calibration_statistic,
    }
    key = calibration_key(models, sample_fp, s.mc_passes, seed, settings)
    path = models_dir / CALIBRATION_FILE
    if not force and path.exists():
        data = json.loads(path.read_text())
        if data.get("info", {}).get("key") == key:
            return SigmaCalibration.from_dict(data)
    # a fresh key: the same table scattered just before for training (same content hash) may
    # still be being released, and a reused key would lose its data under our tasks
    [shared] = client.scatter([table], broadcast=False, hash=False)
    tasks = [
        (f"{STAGE}-calibrate-fold{k}", (shared, m, k, len(models), s.mc_passes, seed))
        for k, m in enumerate(models)
    ]
    value = np.full(len(table), np.nan)
    sigma = np.full(len(table), np.nan)
    for rows, v, e in run_tasks(client, heldout_prediction, tasks, "stage1 calibrate"):
        value[rows], sigma[rows] = v, e
    cal = fit_sigma_calibration(
        table[TARGET].to_numpy(np.float64),
        table[TARGET_ERR].to_numpy(np.float64),
        table["m_pseudo_bound"].to_numpy(np.float64),
        value,
        sigma,
        table["j0"].to_numpy(np.float64),
        **settings,
    )
    cal.info["key"] = key
    write_json_atomic(cal.to_dict(), path, indent=1)
    logger.debug(
        "stage 1 sigma calibration: J0 edges %s, M_J edges %s, factors %s",
        cal.j0_edges,
        cal.mj_edges,
        cal.scales,
    )
    return cal


def summarise_stage1(df: pd.DataFrame) -> dict:
    """Row counts of one partition after stage 1."""
    gaia_err = df["parallax_error"].to_numpy()
    nn_err = df["parallax_nn_error"].to_numpy()
    has = np.isfinite(nn_err)
    return {
        "rows": int(len(df)),
        "giants_predicted": int(has.sum()),
        "nn_better_than_gaia": int((nn_err[has] < gaia_err[has]).sum()),
        "with_combined_parallax": int(np.isfinite(df["parallax_combined"].to_numpy()).sum()),
    }


def sample_chunks(
    pixels: Sequence[tuple[int, int]],
    rows: Sequence[int],
    max_files: int = 200,
    max_rows: int = 60_000,
) -> list[list[tuple[int, int]]]:
    """Partitions in sky order, in runs of at most ``max_files`` files and about ``max_rows``
    rows (``rows``: each partition's), never splitting an order-5 pixel (the unit the training
    cap is applied to) between runs: a run only goes beyond its limits to finish a pixel."""
    runs: list[list[tuple[int, int]]] = []
    run_rows = 0
    last = None
    for (order, pixel), n in sorted(
        zip(pixels, rows, strict=True), key=lambda item: first_index(*item[0])
    ):
        parent = pixel >> 2 * (order - SAMPLE_ORDER) if order > SAMPLE_ORDER else None
        same_pixel = parent is not None and parent == last
        if runs and (same_pixel or (len(runs[-1]) < max_files and run_rows + n <= max_rows)):
            runs[-1].append((order, pixel))
            run_rows += n
        else:
            runs.append([(order, pixel)])
            run_rows = n
        last = parent
    return runs


def gather_training_sample(
    client: Client,
    catalog: Catalog,
    total_cap: int,
    photometry: PhotometryParams,
    max_rows: int = 60_000,
    uniform: bool = False,
) -> pd.DataFrame:
    """The capped, spatially fair stage-1 training table, sorted by source_id.

    The cap is shared out per order-5 pixel (``SAMPLE_ORDER``) from the photometry stage's
    quality-giant counts, so the sample is the same however the catalogue is partitioned.
    With ``uniform``, instead a uniform random subset of about ``total_cap`` of all the
    eligible giants (the calibration sample: the catalogue's own mix of stars).
    """
    per_pixel = catalog.properties.get("giants_per_pixel5")
    if per_pixel is None:
        raise CatalogError(
            f"{catalog.root}: no giants_per_pixel5 in its bigcat.json (made by an older "
            "bigcat). Run `bigcat process` again: the photometry stage is redone."
        )
    counts = np.array(list(per_pixel.values()), dtype=np.int64)
    cap = fair_pixel_cap(counts, total_cap)
    fraction = min(1.0, total_cap / max(int(counts.sum()), 1)) if uniform else None
    kind = "calibration" if uniform else "sample"
    tasks = [
        (
            f"{STAGE}-{kind}-pix{c[0][1]}-{i}",
            ([str(catalog.partition_path(o, p)) for o, p in c], cap, photometry, fraction),
        )
        for i, c in enumerate(
            sample_chunks(
                catalog.pixels,
                [catalog.partition_rows(o, p) for o, p in catalog.pixels],
                max_rows=max_rows,
            )
        )
    ]
    parts = run_tasks(client, sample_partitions, tasks, f"stage1 {kind}")
    table = pd.concat(parts, ignore_index=True).sort_values("source_id", ignore_index=True)
    if uniform:
        logger.info("stage 1 calibration sample: %d giants (fraction %.4f)", len(table), fraction)
    else:
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
    features: Sequence[str] = FEATURES,
) -> list[TrainedModel]:
    """Train the fold models in parallel on the cluster and save their checkpoints."""
    [shared] = client.scatter([table], broadcast=False)
    tasks = [
        (f"{STAGE}-train-fold{k}", (shared, k, n_folds, config, truncation, tuple(features)))
        for k in range(n_folds)
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
                "features": list(features),
            },
        )
    return models


def run_stage1(
    client: Client,
    catalog: Catalog,
    out_root: Path,
    models: list[TrainedModel],
    n_passes: int,
    seed: int,
    target_task_rows: int,
    extra_fingerprint: str,
    calibration: SigmaCalibration | None = None,
    on_done: PartitionsDone | None = None,
) -> tuple[Catalog, dict]:
    """Inference over every partition (models broadcast once) into ``out_root``."""
    features = tuple(models[0].feature_names)
    params = Stage1Params(tuple(models), n_passes, seed, len(models), calibration, features)
    [shared] = client.scatter([params], broadcast=True)
    cal = None if calibration is None else calibration.to_dict() | {"info": None}
    fp = stage_fingerprint(catalog, extra=extra_fingerprint, sigma_calibration=cal)
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
        on_done=on_done,
    )
    totals = {
        k: sum(s[k] for s in summaries)
        for k in ("rows", "giants_predicted", "nn_better_than_gaia", "with_combined_parallax")
    }
    totals.update(partition_counts(summaries))
    out = finalize_stage_output(
        out_root,
        summaries,
        {
            "fingerprint": fp,
            "input_fingerprint": catalog.fingerprint,
            "bigcat_version": __version__,
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
        lr_schedule=s.lr_schedule,
        seed=config.process.seed,
        num_threads=1,
    )


sample_fingerprint = table_fingerprint


def load_models_if_current(
    models_dir: Path,
    n_folds: int,
    fingerprint: str,
    config: TrainConfig,
    features: Sequence[str] = FEATURES,
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
        models.append(load_checkpoint(models_dir / f"fold{k}", expected_features=list(features)))
    return models


def train_or_load_stage1(
    client: Client, catalog: Catalog, config: Config, models_dir: Path, force: bool = False
) -> tuple[list[TrainedModel], SigmaCalibration | None, dict]:
    """Gather the training sample; reuse matching checkpoints or train the fold models; then
    the NN-sigma calibration (None with ``[stage1] recalibrate_sigma = false``)."""
    table = gather_training_sample(
        client,
        catalog,
        config.stage1.training_cap,
        config.photometry,
        config.process.target_task_rows,
    )
    if len(table) < 50 * config.stage1.n_folds:
        raise InputError(
            f"Only {len(table)} giants pass the quality cuts with finite colours in {catalog.root}: "
            f"too few to train {config.stage1.n_folds} fold models. Give a larger catalogue."
        )
    tconf = train_config(config)
    features = FEATURE_SETS[config.stage1.features]
    fp = sample_fingerprint(table[table_columns(features)]) + (
        "-trunc" if config.stage1.truncation_likelihood else ""
    )
    models = (
        None
        if force
        else load_models_if_current(models_dir, config.stage1.n_folds, fp, tconf, features)
    )
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
            features=features,
        )
    calibration = None
    if config.stage1.recalibrate_sigma:
        cal_table, cal_fp = table, fp
        if config.stage1.calibration_sample == "uniform":
            cal_table = gather_training_sample(
                client,
                catalog,
                config.stage1.calibration_cap,
                config.photometry,
                config.process.target_task_rows,
                uniform=True,
            )
            cal_fp = "uniform-" + sample_fingerprint(cal_table[table_columns(features)])
        calibration = calibrate_stage1(
            client, cal_table, models, config, models_dir, f"{fp}/{cal_fp}", force=force
        )
    info = {
        "training_rows": len(table),
        "sample_fingerprint": fp,
        "models_reused": reused,
        "val_loss": [round(float(m.metrics.get("best_val_loss", np.nan)), 4) for m in models],
        "epochs": [int(m.metrics.get("epochs_run", 0)) for m in models],
        "sigma_calibration": None
        if calibration is None
        else [round(x, 3) for x in calibration.scales],
    }
    return models, calibration, info


def load_stage1(models_dir: Path) -> tuple[list[TrainedModel], SigmaCalibration | None, dict]:
    """A finished run's stage-1 fold models and NN-sigma calibration, for `bigcat predict`
    (nothing is written to ``models_dir``).

    Raises
    ------
    CatalogError
        When a fold checkpoint is missing, or the folds disagree on their inputs.
    """
    sidecars = sorted(models_dir.glob("fold*.json"), key=lambda p: int(p.stem[4:]))
    if not sidecars:
        raise CatalogError(
            f"{models_dir}: no stage-1 fold models (fold0.json ...). Give --models a run "
            "directory that `bigcat process` finished."
        )
    metas = [json.loads(p.read_text()) for p in sidecars]
    n_folds = int(metas[0].get("extra", {}).get("n_folds", len(sidecars)))
    if len(sidecars) != n_folds:
        raise CatalogError(
            f"{models_dir}: {len(sidecars)} fold models, but they were trained as {n_folds}."
        )
    features = [m.get("feature_names") or m["extra"].get("features") for m in metas]
    if any(f != features[0] for f in features):
        raise CatalogError(f"{models_dir}: the fold models take different inputs.")
    models = [
        load_checkpoint(models_dir / f"fold{k}", expected_features=list(features[0]))
        for k in range(n_folds)
    ]
    cal_path = models_dir / CALIBRATION_FILE
    calibration = (
        SigmaCalibration.from_dict(json.loads(cal_path.read_text())) if cal_path.exists() else None
    )
    info = {
        "models_from": str(models_dir),
        "training_rows": int(metas[0].get("metrics", {}).get("n_train", 0)),
        "features": list(features[0]),
        "val_loss": [
            round(float(m.get("metrics", {}).get("best_val_loss", np.nan)), 4) for m in metas
        ],
        "models_reused": True,
    }
    return models, calibration, info
