"""Stage 1 kernels: no leakage between folds, NaN for non-giants, distances in order."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
import torch

from bigcat.catalog.sampling import fold_of
from bigcat.nn.fit import TrainConfig, train_network
from bigcat.photometry import run_photometry
from bigcat.schema import COLOUR_FEATURE_COLUMNS
from bigcat.stages.parallax import (
    SigmaCalibration,
    Stage1Params,
    fit_sigma_calibration,
    fold_training_rows,
    heldout_prediction,
    predicted_abs_mag,
    sample_chunks,
    stage1_kernel,
    untruncated_rows,
)
from bigcat.synthetic import MockParams, simulate_chunk


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
    params = Stage1Params(tuple(_marker_models(partition)), 5, 0, 8)
    out = stage1_kernel(partition, params)
    giants = out["quality_ok"] & out["is_giant"]
    assert giants.sum() > 500
    j0 = out["j_m"] - out["a_j"]
    m_nn = out["parallax_nn"] * 10 ** (0.2 * j0)  # invert eq. 8: the model's raw output
    np.testing.assert_allclose(m_nn[giants], out["fold"][giants].astype(float), atol=1e-4)
    np.testing.assert_array_equal(out["fold"], fold_of(out["source_id"].to_numpy()))


def test_non_giants_get_nan_and_rows_are_kept(partition):
    params = Stage1Params(tuple(_marker_models(partition)), 5, 0, 8)
    out = stage1_kernel(partition, params)
    assert len(out) == len(partition)
    pd.testing.assert_series_equal(out["source_id"], partition["source_id"])
    not_giant = ~(out["quality_ok"] & out["is_giant"])
    for col in ("parallax_nn", "parallax_combined"):
        assert out.loc[not_giant, col].isna().all(), col
    g = ~not_giant & out["parallax_combined"].notna()
    # combined error is below both inputs (corrected eq. 10)
    assert (out.loc[g, "parallax_combined_error"] <= out.loc[g, "parallax_error"] + 1e-12).all()


def test_predicted_abs_mag():
    m = np.array([100.0, 1000.0, 10.0, 0.0, -3.0, np.nan])
    np.testing.assert_allclose(predicted_abs_mag(m), [0.0, 5.0, -5.0, -np.inf, -np.inf, np.nan])


def test_sigma_calibration_factor_and_round_trip():
    # J0 bins (< 12, >= 12) x M_J bins (< -1, -1..0.5, >= 0.5)
    cal = SigmaCalibration((12.0,), (-1.0, 0.5), (1.2, 0.9, 1.5, 0.7, 1.1, 2.0), {"rows": 3})
    mj = np.array([-3.0, -1.0, 0.0, 0.5, 2.0, -3.0, 0.0, 2.0])
    j0 = np.array([10.0, 10.0, 10.0, 10.0, 10.0, 12.0, 13.0, 14.0])
    m = 100 * 10 ** (0.2 * mj)
    np.testing.assert_allclose(cal.factor(m, j0), [1.2, 0.9, 0.9, 1.5, 1.5, 0.7, 1.1, 2.0])
    np.testing.assert_allclose(
        cal.factor(np.array([0.0, np.nan, 100.0]), np.array([13.0, 10.0, np.nan])),
        [0.7, np.nan, np.nan],
    )
    back = SigmaCalibration.from_dict(json.loads(json.dumps(cal.to_dict())))
    assert back == cal and back.info == {"rows": 3}
    with pytest.raises(ValueError, match="need 6"):
        SigmaCalibration((0.0,), (1.0, 2.0), (1.0,))


def _truncated_sample(seed: int, n: int = 400_000):
    """Held-out predictions whose sigma is k times too small, k larger for faint J0 (noisier
    photometry) and for luminous giants, Gaia M_pseudo with its own noise, and the giant cut
    applied to the noisy value (many faint rows truncated)."""
    rng = np.random.default_rng(seed)
    m_nn = rng.uniform(20.0, 120.0, n)  # M_J -3.5 .. +0.4
    j0 = rng.uniform(9.0, 15.0, n)
    s_nn = 0.12 * m_nn
    k = np.where(j0 < 12, 0.8, 1.3) * np.where(predicted_abs_mag(m_nn) < -1.5, 1.2, 1.0)
    m_true = m_nn + k * s_nn * rng.normal(size=n)
    e = s_nn * rng.choice([0.3, 1.0, 2.0, 10.0], n)
    m_obs = m_true + e * rng.normal(size=n)
    bound = m_nn + rng.uniform(-0.5, 4.0, n) * np.hypot(k * s_nn, e)
    keep = m_obs < bound
    return (m_obs[keep], e[keep], bound[keep], m_nn[keep], s_nn[keep], j0[keep]), k[keep]


def test_fit_sigma_calibration_recovers_factors_despite_the_cut():
    args, k = _truncated_sample(0)
    cal = fit_sigma_calibration(*args, n_j0_bins=4, n_mj_bins=4, margin=3.0)
    assert len(cal.scales) == 16 and len(cal.j0_edges) == 3 and len(cal.mj_edges) == 3
    assert sum(cal.info["rows_used"]) < len(k)
    # cells that do not straddle a step of k: k is constant there and must be recovered
    cell = cal.cell(args[3], args[5])
    got, want = [], []
    for c in range(16):
        kc = k[cell == c]
        if kc.min() == kc.max():
            got.append(cal.scales[c])
            want.append(kc[0])
    assert len(got) >= 8
    np.testing.assert_allclose(got, want, rtol=0.07)
    # using every row, the truncated Gaia noise makes the factors come out too small
    naive = fit_sigma_calibration(*args, n_j0_bins=4, n_mj_bins=4, margin=-np.inf)
    ratio = np.mean(
        [naive.scales[c] / k[cell == c][0] for c in range(16) if np.ptp(k[cell == c]) == 0]
    )
    assert ratio < 0.92


def test_untruncated_rows_uses_the_prediction_margin():
    e = np.array([1.0, 1.0, 1.0, np.nan])
    rows = untruncated_rows(
        e, np.array([10.0, 10.0, 10.0, 10.0]), np.array([0.0, 7.0, 5.0, 0.0]), np.full(4, 1.0), 3.0
    )
    np.testing.assert_array_equal(rows, [True, False, True, False])


def test_kernel_applies_the_calibration(partition):
    models = tuple(_marker_models(partition))
    base = stage1_kernel(partition, Stage1Params(models, 5, 0, 8))
    # M_J of fold k's value, 5 log10(k / 100), is < 2.5; giants' J0 in the mock are < 30
    cal = SigmaCalibration((30.0,), (2.5,), (2.0, 3.0, 4.0, 5.0))
    out = stage1_kernel(partition, Stage1Params(models, 5, 0, 8, cal))
    g = base["parallax_nn"].notna() & (base["parallax_nn"] > 0)
    assert g.sum() > 200
    np.testing.assert_allclose(out.loc[g, "parallax_nn"], base.loc[g, "parallax_nn"])
    np.testing.assert_allclose(
        out.loc[g, "parallax_nn_error"], 2.0 * base.loc[g, "parallax_nn_error"], rtol=1e-12
    )
    assert (out.loc[g, "parallax_combined_error"] > base.loc[g, "parallax_combined_error"]).all()


def test_heldout_prediction_uses_only_its_fold(partition):
    models = _marker_models(partition)
    table = partition.dropna(subset=list(COLOUR_FEATURE_COLUMNS)).reset_index(drop=True)
    seen = np.zeros(len(table), int)
    for k in range(8):
        rows, value, sigma = heldout_prediction(table, models[k], k, 8, 5, 0)
        np.testing.assert_allclose(value, float(k), atol=1e-4)
        assert (fold_of(table["source_id"].to_numpy()[rows]) == k).all()
        seen[rows] += 1
    assert (seen == 1).all()


def test_sample_chunks_never_split_an_order5_pixel():
    """The training cap is per order-5 pixel, so one task must see all of a pixel's rows."""
    coarse = [(3, p) for p in range(10)]  # each holds 4 order-5 pixels
    fine = [(6, p) for p in range(4 * 10_000, 4 * 10_000 + 12)]  # 3 order-5 parents
    finer = [(7, p) for p in range(16 * 10_003, 16 * 10_003 + 16)]  # one more parent
    parts = [*fine, *coarse, *finer]
    runs = sample_chunks(parts, [1] * len(parts), max_files=5)
    flat = [op for run in runs for op in run]
    assert sorted(flat) == sorted(parts) and len(flat) == len(parts)
    assert max(len(r) for r in runs) <= 5 + 15  # a run only overshoots to finish a pixel
    where = {}
    for i, run in enumerate(runs):
        for o, p in run:
            if o > 5:
                where.setdefault(p >> 2 * (o - 5), set()).add(i)
    assert len(where) == 4 and all(len(v) == 1 for v in where.values()), where
    assert sample_chunks(coarse, [1] * 10, max_files=5) == [coarse[:5], coarse[5:]]
    # runs also end at about max_rows (a partition larger than that is a run of its own)
    rows = [30, 30, 30, 100, 10, 10, 10, 10, 10, 10]
    assert sample_chunks(coarse, rows, max_rows=60) == [
        coarse[:2],
        coarse[2:3],
        coarse[3:4],
        coarse[4:10],
    ]


def test_sigma_calibration_with_snr_bins_and_outliers_round_trips():
    # J0 (1 bin) x M_J (< 0, >= 0) x log10(m_nn / m_obs_error) (< 0.5, >= 0.5)
    cal = SigmaCalibration((), (0.0,), (1.0, 2.0, 3.0, 4.0), {}, (0.5,), 0.03, 2.5)
    m = np.array([50.0, 50.0, 200.0, 200.0])  # M_J < 0, < 0, > 0, > 0
    err = np.array([100.0, 10.0, 1000.0, 10.0])  # log10 S/N -0.3, 0.7, -0.7, 1.3
    np.testing.assert_allclose(cal.factor(m, np.full(4, 12.0), err), [1.0, 2.0, 3.0, 4.0])
    # a non-positive prediction has the lowest S/N bin; a missing error gives NaN
    np.testing.assert_allclose(
        cal.factor(np.array([-5.0, 50.0]), np.full(2, 12.0), np.array([1.0, np.nan])),
        [1.0, np.nan],
    )
    with pytest.raises(ValueError, match="m_obs_error"):
        cal.factor(m, np.full(4, 12.0))
    back = SigmaCalibration.from_dict(json.loads(json.dumps(cal.to_dict())))
    assert back == cal and (back.outlier_fraction, back.outlier_scale) == (0.03, 2.5)


def test_fit_sigma_calibration_mixture_with_snr_bins():
    args, k = _truncated_sample(1, 200_000)
    cal = fit_sigma_calibration(
        *args, n_j0_bins=2, n_mj_bins=2, n_snr_bins=3, margin=3.0, statistic="mixture"
    )
    assert len(cal.snr_edges) == 2 and len(cal.scales) == 12
    assert 0.0 < cal.outlier_fraction < 0.5 and cal.outlier_scale > 1.0
    assert cal.info["n_snr_bins"] == 3 and cal.info["statistic"] == "mixture"
    # the sample has no outliers: the core factors are the variance-matching ones
    plain = fit_sigma_calibration(
        *args, n_j0_bins=2, n_mj_bins=2, n_snr_bins=3, margin=3.0, statistic="variance"
    )
    np.testing.assert_allclose(cal.scales, plain.scales, rtol=0.08)


def test_uniform_calibration_sample_is_a_hashed_fraction_whatever_the_files(partition, tmp_path):
    """The calibration sample keeps the eligible rows whose source_id hash is below the
    fraction: about that fraction of them, in every region alike, and the same rows however
    the rows are split between files."""
    from bigcat.config import PhotometryParams
    from bigcat.stages.parallax import sample_partitions, training_mask

    df = partition.reset_index(drop=True)
    half = len(df) // 2
    paths = []
    for i, part in enumerate([df, df.iloc[:half], df.iloc[half:]]):
        paths.append(str(tmp_path / f"p{i}.parquet"))
        part.to_parquet(paths[-1], index=False)
    whole = sample_partitions(paths[:1], 0, PhotometryParams(), fraction=0.3)
    split = sample_partitions(paths[1:], 0, PhotometryParams(), fraction=0.3)
    eligible = int(training_mask(df).sum())
    assert eligible > 1000 and abs(len(whole) / eligible - 0.3) < 0.04
    assert sorted(whole["source_id"]) == sorted(split["source_id"])
    # dense and sparse sky alike: the fraction holds on either side of the median latitude
    kept = df["source_id"].isin(whole["source_id"])
    ok = training_mask(df)
    lat = df["dec"].abs() > df["dec"].abs().median()
    for side in (lat, ~lat):
        assert abs(kept[ok & side].mean() - 0.3) < 0.06
