"""Stage 1 kernels: no leakage between folds, NaN for non-giants, distances in order."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch

from bigcat.astrometry import default_prior_table
from bigcat.catalog.sampling import fold_of
from bigcat.mock import MockParams, simulate_chunk
from bigcat.nn.fit import TrainConfig, train_network
from bigcat.photometry import run_photometry
from bigcat.schema import COLOUR_FEATURE_COLUMNS
from bigcat.stages.parallax import Stage1Params, fold_training_rows, stage1_kernel


@pytest.fixture(scope="module")
def partition() -> pd.DataFrame:
    from bigcat.catalog.healpix import healpix29

    df = run_photometry(simulate_chunk(MockParams(seed=11), 0, 3000).photometry)
    df["_healpix_29"] = healpix29(df.ra.to_numpy(), df.dec.to_numpy())
    return df


def _marker_models(df: pd.DataFrame, n_folds: int = 8):
    """Models whose prediction is their own index k (weights zeroed, bias = k)."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, len(COLOUR_FEATURE_COLUMNS)))
    base = train_network(
        X,
        rng.normal(size=200),
        np.full(200, 0.1),
        list(COLOUR_FEATURE_COLUMNS),
        TrainConfig(max_epochs=1, seed=0),
    )
    models = []
    for k in range(n_folds):
        sd = {name: t.clone() for name, t in base.state_dict.items()}
        last = sorted(n for n in sd if n.endswith(".weight"))[-1]
        sd[last].zero_()
        bias = last.replace("weight", "bias")
        sd[bias] = torch.tensor([float(k), -20.0])
        std = dataclasses.replace(base.standardiser, target_mean=0.0, target_std=1.0)
        models.append(dataclasses.replace(base, state_dict=sd, standardiser=std))
    return models


def test_fold_training_rows_exclude_their_fold():
    ids = np.arange(10_000, dtype=np.int64) * 977
    for k in range(8):
        rows = fold_training_rows(ids, k, 8)
        assert not (fold_of(ids[rows]) == k).any()
        assert rows.sum() + (fold_of(ids) == k).sum() == len(ids)


def test_each_star_predicted_by_its_own_fold_model(partition):
    """No leakage: with models that answer their own index, every giant gets its fold's value."""
    params = Stage1Params(tuple(_marker_models(partition)), default_prior_table(), 5, 0, 8)
    out = stage1_kernel(partition, params)
    giants = out["quality_ok"] & out["is_giant"]
    assert giants.sum() > 500
    j0 = out["j_m"] - out["a_j"]
    m_nn = out["parallax_nn"] * 10 ** (0.2 * j0)  # invert eq. 8: the model's raw output
    np.testing.assert_allclose(m_nn[giants], out["fold"][giants].astype(float), atol=1e-4)
    np.testing.assert_array_equal(out["fold"], fold_of(out["source_id"].to_numpy()))


def test_non_giants_get_nan_and_rows_are_kept(partition):
    params = Stage1Params(tuple(_marker_models(partition)), default_prior_table(), 5, 0, 8)
    out = stage1_kernel(partition, params)
    assert len(out) == len(partition)
    pd.testing.assert_series_equal(out["source_id"], partition["source_id"])
    not_giant = ~(out["quality_ok"] & out["is_giant"])
    for col in ("parallax_nn", "parallax_combined", "distance_pc", "abs_j"):
        assert out.loc[not_giant, col].isna().all(), col
    g = ~not_giant & out["distance_pc"].notna()
    assert (out.loc[g, "distance_pc_p16"] < out.loc[g, "distance_pc"]).all()
    assert (out.loc[g, "distance_pc"] < out.loc[g, "distance_pc_p84"]).all()
    # combined error is below both inputs (corrected eq. 10)
    assert (out.loc[g, "parallax_combined_error"] <= out.loc[g, "parallax_error"] + 1e-12).all()
