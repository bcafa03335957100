"""Stage 2 kernels: weights, split, validation products, Table 2, the final-pass kernel."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bigcat.analysis.stats import robust_scatter
from bigcat.astrometry.galactocentric import GALACTOCENTRIC_COLUMNS
from bigcat.nn.fit import TrainConfig
from bigcat.stages.metallicity import (
    FEATURES,
    Stage2Params,
    final_kernel,
    predict_feh,
    prepare_training_table,
    sigma_scale_from_validation,
    table2,
    table2_counts,
    train_feh_model,
    training_weight,
    validation_mask,
    validation_products,
)


def test_features_are_16_colours_and_8_absolute_magnitudes():
    assert len(FEATURES) == 24
    assert FEATURES[:16] == tuple(c for c in FEATURES if c.startswith("c_"))
    assert [f for f in FEATURES if f.startswith("abs_")] == [
        f"abs_{b}" for b in ("bp", "g", "rp", "j", "h", "ks", "w1", "w2")
    ]


def test_training_weight_is_eq11():
    np.testing.assert_allclose(training_weight([-2.0, 0.0, 0.3], 0.5), [2.5, 0.5, 0.8])


def test_validation_split_is_seeded_hash_of_source_id():
    ids = np.arange(1, 200_001, dtype=np.int64) * 7919
    m = validation_mask(ids, 0.15, seed=42)
    assert abs(m.mean() - 0.15) < 0.005
    # order / partitioning independent: a star's membership depends on its id alone
    perm = np.random.default_rng(0).permutation(len(ids))
    np.testing.assert_array_equal(validation_mask(ids[perm], 0.15, 42), m[perm])
    # another seed gives another split
    assert (validation_mask(ids, 0.15, seed=43) != m).mean() > 0.2


def test_validation_products_by_hand():
    val = pd.DataFrame(
        {
            "feh_label": [-1.9, -1.8, 0.1, 0.2, 0.3],
            "feh_pred": [-1.7, -1.6, 0.1, 0.4, -0.1],
            "feh_error": [0.1, 0.1, 0.1, 0.1, 0.2],
        }
    )
    p = validation_products(val, edges=np.array([-2.0, -1.5, 0.0, 0.5]))
    b0, b1, b2 = p["bins"]
    assert b0["n"] == 2 and b0["median_residual"] == pytest.approx(0.2)
    assert b0["robust_scatter"] == pytest.approx(0.0, abs=1e-12)
    assert b1["n"] == 0 and np.isnan(b1["median_residual"])
    assert b2["n"] == 3 and b2["median_residual"] == pytest.approx(0.0, abs=1e-12)
    assert b2["mean_nn_sigma"] == pytest.approx(0.4 / 3)
    # core sample -1.5 < label < 0.5: pulls 0, 2, -2 -> |z| < 1 for one of three
    assert p["coverage68_core"] == pytest.approx(1 / 3)
    assert p["pull_std_core"] == pytest.approx(np.std([0.0, 2.0, -2.0]))


def test_table2_sums_partitions():
    feh = np.array([-2.0, -1.0, -1.0, 0.0, 0.7, np.nan])
    err = np.array([0.4, 0.2, 0.3, 0.1, 0.2, 0.1])
    a = table2_counts(feh[:3], err[:3])
    b = table2_counts(feh[3:], err[3:])
    rows = table2([{"table2": a}, {"table2": b}])
    assert [r["n_stars"] for r in rows] == [1, 2, 1, 1, 5]
    assert rows[1]["mean_sigma_feh"] == pytest.approx(0.25)
    assert rows[-1]["mean_sigma_feh"] == pytest.approx(1.2 / 5)


def _frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    X = rng.normal(0.0, 1.0, (n, len(FEATURES)))
    feh = 0.4 * X[:, 0] - 0.3 * X[:, 17] - 0.3 + rng.normal(0, 0.05, n)
    df = pd.DataFrame(X, columns=list(FEATURES))
    df["source_id"] = np.arange(1, n + 1, dtype=np.int64) * 104729
    df["feh"] = feh
    df["feh_err"] = 0.05
    df["quality_ok"] = True
    df["is_giant"] = True
    df["ra"] = rng.uniform(250, 280, n)
    df["dec"] = rng.uniform(-35, -20, n)
    df["distance_pc"] = rng.uniform(5000, 9000, n)
    df["distance_pc_p16"] = df["distance_pc"] * 0.9
    df["distance_pc_p84"] = df["distance_pc"] * 1.1
    for c in ("pmra", "pmdec"):
        df[c] = rng.normal(-3, 2, n)
        df[f"{c}_error"] = 0.05
    df["radial_velocity"] = np.where(rng.random(n) < 0.5, rng.normal(0, 100, n), np.nan)
    df["radial_velocity_error"] = 2.0
    return df


@pytest.fixture(scope="module")
def trained():
    df = _frame(3000, 0)
    table = prepare_training_table(df, 0.15, seed=3)
    config = TrainConfig(max_epochs=40, patience=10, batch_size=256, seed=3)
    return table, train_feh_model(table, config, c_weight=0.5)


def test_prepare_training_table_drops_nonfinite_and_splits():
    df = _frame(400, 1)
    df.loc[3, "abs_ks"] = np.nan
    df.loc[5, "feh"] = np.nan
    df.loc[7, "feh_err"] = 0.0
    t = prepare_training_table(df, 0.15, seed=0)
    assert len(t) == 397
    assert set(t["split"]) == {"train", "validation"}
    assert t.loc[t["split"] == "validation", "source_id"].isin(df["source_id"]).all()


def test_feh_network_learns_with_sigma_of_the_right_size(trained):
    table, model = trained
    assert model.feature_names == list(FEATURES)
    test = _frame(2000, 9)
    params = Stage2Params(model, (-2, 1), 20, 5, c_weight=0.5)
    out = final_kernel(test.drop(columns=["feh", "feh_err"]), params)
    res = out["feh"].to_numpy() - test["feh"].to_numpy()
    assert robust_scatter(res) < 0.12
    # sigma_total (dropout spread + predicted noise) has the residuals' order of magnitude
    rms, sigma = np.sqrt(np.mean(res**2)), np.mean(out["feh_error"].to_numpy())
    assert 0.5 < sigma / rms < 3.0, (sigma, rms)


def test_final_kernel_nan_for_non_giants_flags_extrapolation_adds_kinematics(trained):
    _, model = trained
    df = _frame(300, 4).drop(columns=["feh", "feh_err"])
    df.loc[:9, "is_giant"] = False
    df.loc[10:14, "abs_w2"] = np.nan
    narrow = (-0.4, -0.2)
    out = final_kernel(df, Stage2Params(model, narrow, 10, 5))
    assert len(out) == len(df)
    assert out["feh"].iloc[:15].isna().all() and out["feh"].iloc[15:].notna().all()
    assert not out["feh_extrapolated"].iloc[:15].any()
    feh = out["feh"].to_numpy()[15:]
    np.testing.assert_array_equal(
        out["feh_extrapolated"].to_numpy()[15:], (feh < narrow[0]) | (feh > narrow[1])
    )
    for c in GALACTOCENTRIC_COLUMNS:
        assert c in out.columns
    has_rv = df["radial_velocity"].notna().to_numpy()
    assert np.isfinite(out["vx_gc"].to_numpy()[has_rv]).all()
    assert np.isnan(out["vx_gc"].to_numpy()[~has_rv]).all()


def test_final_kernel_same_result_whatever_the_partitioning(trained):
    _, model = trained
    df = _frame(500, 6).drop(columns=["feh", "feh_err"])
    params = Stage2Params(model, (-2, 1), 20, 11)
    whole = final_kernel(df, params)
    parts = pd.concat([final_kernel(df.iloc[i : i + 77], params) for i in range(0, 500, 77)])
    np.testing.assert_allclose(whole["feh"], parts["feh"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(whole["feh_error"], parts["feh_error"], rtol=0, atol=1e-6)


def test_final_kernel_without_model_gives_nan_feh(trained):
    df = _frame(50, 2).drop(columns=["feh", "feh_err"])
    out = final_kernel(df, Stage2Params(None, (np.nan, np.nan), 10, 0))
    assert out["feh"].isna().all() and not out["feh_extrapolated"].any()
    assert np.isfinite(out["x_gc"]).all()


def test_eq11_weight_is_divided_out_of_the_predicted_sigma(trained):
    """With W on the squared term only, the network's variance is W x the predictive one."""
    _, model = trained
    X = _frame(200, 8)[list(FEATURES)].to_numpy()
    v, tot, drop, pred = predict_feh(model, X, 10, 3, c_weight=0.5)
    v0, tot0, drop0, pred0 = predict_feh(model, X, 10, 3, c_weight=None)
    np.testing.assert_allclose(v, v0)
    np.testing.assert_allclose(drop, drop0)
    np.testing.assert_allclose(pred, pred0 / np.sqrt(np.abs(v) + 0.5))
    np.testing.assert_allclose(tot, np.hypot(drop, pred))


def test_sigma_scale_by_variance_matching():
    rng = np.random.default_rng(5)
    n = 20_000
    sigma = rng.uniform(0.1, 0.3, n)
    label_err = rng.uniform(0.02, 0.1, n)
    # true errors 1.3x the quoted sigma, plus the label's own noise
    res = rng.normal(0, 1, n) * 1.3 * sigma + rng.normal(0, 1, n) * label_err
    assert sigma_scale_from_validation(res, sigma, label_err) == pytest.approx(1.3, rel=0.03)
    res[:50] = 5.0  # a few wrong labels do not decide it
    assert sigma_scale_from_validation(res, sigma, label_err) == pytest.approx(1.3, rel=0.04)
    assert sigma_scale_from_validation(res[:5], sigma[:5], label_err[:5]) == 1.0
