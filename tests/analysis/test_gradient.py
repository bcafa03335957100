"""Gradient kernels: the section-7 cuts, binned medians, slope recovery and its bootstrap error."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from bigcat.analysis.gradient import (
    CUTS,
    SAMPLE_COLUMNS,
    GradientParams,
    alternative_slopes,
    analyze_gradient,
    bin_edges,
    binned_medians,
    fit_gradient,
    gradient_partition,
    grid_deconvolved_median,
    median_peak,
    selection_masks,
)
from bigcat.errors import ConfigError, InputError


def _star(**overrides: float) -> dict[str, float]:
    """One star that passes every cut (inside the cylinder, small errors, a velocity)."""
    row = {
        "x_gc": 1.0,
        "y_gc": 1.0,
        "z_gc": 0.9,
        "x_gc_error": 0.2,
        "y_gc_error": 0.2,
        "z_gc_error": 0.2,
        "feh": -0.1,
        "feh_error": 0.2,
        "vx_gc_error": 20.0,
        "vy_gc_error": 20.0,
        "vz_gc_error": 20.0,
    }
    row.update(overrides)
    return row


CASES = {
    "good": ({}, True),
    "no velocity passes": (
        {"vx_gc_error": np.nan, "vy_gc_error": np.nan, "vz_gc_error": np.nan},
        True,
    ),
    "R just outside": ({"x_gc": 2.0, "y_gc": 1.6}, False),  # R = 2.56 kpc
    "R just inside": ({"x_gc": 2.0, "y_gc": 1.4}, True),  # R = 2.44 kpc
    "|Z| beyond the cylinder": ({"z_gc": -3.05}, False),
    "feh_error at the limit": ({"feh_error": 0.5}, True),
    "feh_error above": ({"feh_error": 0.51}, False),
    "feh missing": ({"feh": np.nan}, False),
    "x error above 1 kpc": ({"x_gc_error": 1.01}, False),
    "z error at 1 kpc": ({"z_gc_error": 1.0}, True),
    "one velocity error above 250": ({"vy_gc_error": 251.0}, False),
    "velocity error at 250": ({"vz_gc_error": 250.0}, True),
    "position missing": ({"x_gc": np.nan}, False),
}


def test_selection_cuts_one_by_one():
    df = pd.DataFrame([_star(**o) for o, _ in CASES.values()])
    keep = selection_masks(df)["velocity_sigma"]
    for (name, (_, expected)), got in zip(CASES.items(), keep, strict=True):
        assert got == expected, name


def test_partition_counts_are_cumulative_and_rows_small():
    df = pd.DataFrame(
        [
            _star(),  # passes
            _star(x_gc=5.0),  # outside the cylinder
            _star(feh_error=0.9),  # fails [Fe/H] error
            _star(y_gc_error=2.0),  # fails position sigma
            _star(vx_gc_error=400.0),  # fails velocity sigma
            _star(vx_gc_error=np.nan, vy_gc_error=np.nan, vz_gc_error=np.nan, z_gc=-0.4),
        ]
    )
    df["ra"] = 1.0  # extra columns are ignored, never returned
    rows, counts = gradient_partition(df)
    assert list(counts) == list(CUTS)
    assert counts == {
        "rows": 6,
        "cylinder": 5,
        "feh_error": 4,
        "position_sigma": 3,
        "velocity_sigma": 2,
    }
    assert list(rows.columns) == SAMPLE_COLUMNS
    np.testing.assert_array_equal(rows["z_gc"], [0.9, -0.4])
    np.testing.assert_array_equal(rows["has_velocity"], [True, False])


def test_missing_columns_is_an_input_error():
    df = pd.DataFrame([_star()]).drop(columns=["feh_error", "z_gc_error"])
    with pytest.raises(InputError, match="z_gc_error, feh_error.*bigcat process"):
        gradient_partition(df)


def test_binned_medians_by_hand():
    x = np.array([0.05, 0.1, 0.15, 0.6, 0.7, 0.99, 1.0, 1.5])
    y = np.array([1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 10.0, 99.0])
    out = binned_medians(x, y, np.array([0.0, 0.5, 1.0]), min_stars=1)
    assert out["n"] == [3, 4]  # 1.0 falls in the last (closed) bin, 1.5 in none
    assert out["median"] == [2.0, 7.0]
    assert out["centre"] == [0.25, 0.75]
    np.testing.assert_allclose(out["p16"][0], np.percentile([1, 2, 3], 16))
    np.testing.assert_allclose(out["p84"][1], np.percentile([4, 6, 8, 10], 84))
    sparse = binned_medians(x, y, np.array([0.0, 0.5, 1.0]), min_stars=4)
    assert math.isnan(sparse["median"][0]) and sparse["median"][1] == 7.0


def test_bin_edges_must_tile():
    np.testing.assert_allclose(bin_edges(0, 1.6, 0.1), np.arange(17) / 10)
    with pytest.raises(ConfigError, match="whole number"):
        bin_edges(0, 1.0, 0.3)


def _synthetic(n: int, slope: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    z = rng.uniform(-3, 3, n)
    feh = 0.25 + slope * np.abs(z) + rng.normal(0, 0.25, n)
    return z, feh


def test_recovers_known_slope_with_sensible_error():
    z, feh = _synthetic(120_000, -0.53, seed=1)
    p = GradientParams(n_bootstrap=200)
    fit = fit_gradient(np.abs(z), feh, p, seed=5)
    # expected error: median sigma ~ 1.2533 s / sqrt(n_bin) through 18 evenly spaced bins
    n_bin = 120_000 * 2 * 0.05 / 6
    x = 0.725 + 0.05 * np.arange(18)
    expected = 1.2533 * 0.25 / math.sqrt(n_bin) / math.sqrt(((x - x.mean()) ** 2).sum())
    assert fit["n_bins_fit"] == 18
    assert fit["bin_centres_kpc"][0] == pytest.approx(0.725)
    assert fit["bin_centres_kpc"][-1] == pytest.approx(1.575)
    assert 0.7 * expected < fit["slope_error"] < 1.4 * expected
    assert abs(fit["slope_dex_per_kpc"] + 0.53) < 4 * fit["slope_error"]
    assert fit["intercept_dex"] == pytest.approx(0.25, abs=0.03)
    # the fit only sees 0.7 <= |Z| <= 1.6: a different slope outside does not change it
    outside = np.abs(z) > 1.6
    feh2 = feh.copy()
    feh2[outside] += 3.0 * (np.abs(z[outside]) - 1.6)
    fit2 = fit_gradient(np.abs(z), feh2, p, seed=5)
    assert fit2["slope_dex_per_kpc"] == fit["slope_dex_per_kpc"]
    assert fit2["n_stars_fit"] == fit["n_stars_fit"]


def test_bootstrap_is_seeded():
    z, feh = _synthetic(20_000, -0.4, seed=2)
    p = GradientParams(n_bootstrap=50)
    a = fit_gradient(np.abs(z), feh, p, seed=1)
    b = fit_gradient(np.abs(z), feh, p, seed=1)
    c = fit_gradient(np.abs(z), feh, p, seed=2)
    assert a == b
    assert a["slope_error"] != c["slope_error"]
    assert a["slope_dex_per_kpc"] == c["slope_dex_per_kpc"]


def test_too_few_bins_gives_null_slope():
    fit = fit_gradient(np.array([0.75, 0.76, 2.0]), np.array([0.1, 0.2, 0.3]), seed=0)
    assert fit["n_bins_fit"] == 0
    assert math.isnan(fit["slope_dex_per_kpc"]) and math.isnan(fit["slope_error"])


def test_analyze_gradient_keys_and_peak(assert_gradient_keys):
    rng = np.random.default_rng(3)
    z = rng.uniform(-3, 3, 60_000)
    az = np.abs(z)
    # inversion near the plane: median rises to a peak at |Z| = 0.55, then falls
    feh = np.where(az < 0.55, 0.17 - 0.4 * (0.55 - az), 0.17 - 0.5 * (az - 0.55))
    feh = feh + rng.normal(0, 0.05, z.size)
    rows = pd.DataFrame(
        {"z_gc": z, "feh": feh, "feh_error": 0.1, "has_velocity": rng.random(z.size) < 0.1}
    )
    out = analyze_gradient(rows, GradientParams(n_bootstrap=20), seed=0)
    assert_gradient_keys(out, "binned_z_with_velocity", "settings")
    assert out["n_stars"] == 60_000
    assert out["n_stars_with_velocity"] == int(rows["has_velocity"].sum())
    assert out["z_range_kpc"] == [0.7, 1.6]
    assert out["peak"]["abs_z_kpc"] == pytest.approx(0.55, abs=0.05)
    assert out["peak"]["feh"] == pytest.approx(0.17, abs=0.03)
    assert out["slope_dex_per_kpc"] == pytest.approx(-0.5, abs=0.02)
    assert len(out["binned_z"]["centre"]) == 120 and len(out["binned_abs_z"]["centre"]) == 60
    assert sum(out["binned_z_with_velocity"]["n"]) == out["n_stars_with_velocity"]
    assert median_peak({"centre": [0.1], "median": [float("nan")]}) == {
        "abs_z_kpc": None,
        "feh": None,
    }


@pytest.mark.parametrize(
    "kwargs",
    [
        {"radius_kpc": 0},
        {"fit_min_abs_z_kpc": 1.7},
        {"fit_max_abs_z_kpc": 3.5},
        {"n_bootstrap": 1},
        {"bin_width_kpc": -0.1},
    ],
)
def test_params_are_checked(kwargs):
    with pytest.raises(ConfigError):
        GradientParams(**kwargs)


def test_grid_deconvolution_recovers_the_median_behind_the_noise():
    # a skewed true distribution (80% at -0.2, 20% at -1.2): additive noise of 0.3 dex moves
    # the noisy sample's median; the deconvolved median is the true one's
    rng = np.random.default_rng(3)
    n = 20_000
    true = np.where(rng.random(n) < 0.8, rng.normal(-0.2, 0.1, n), rng.normal(-1.2, 0.2, n))
    err = rng.uniform(0.2, 0.4, n)
    noisy = true + err * rng.standard_normal(n)
    target = float(np.median(true))
    assert abs(float(np.median(noisy)) - target) > 0.03
    assert abs(grid_deconvolved_median(noisy, err) - target) < 0.02


def test_grid_deconvolution_regression_curve_undoes_the_pull():
    # the network pulls [Fe/H] halfway to -0.3 (g(f) = -0.3 + 0.5 (f + 0.3)); with that curve
    # the median of the true values comes back, without it the pulled one
    rng = np.random.default_rng(4)
    n = 20_000
    true = rng.normal(-0.9, 0.15, n)
    err = np.full(n, 0.1)
    pred = -0.3 + 0.5 * (true + 0.3) + err * rng.standard_normal(n)
    centres = np.linspace(-2.0, 0.5, 11)
    curve = (centres, -0.3 + 0.5 * (centres + 0.3), 0.5)
    assert abs(grid_deconvolved_median(pred, err, curve) - np.median(true)) < 0.02
    assert abs(grid_deconvolved_median(pred, err) - np.median(pred)) < 0.02


def test_alternative_slopes_map_fn_runs_every_deconvolution():
    """The deconvolutions of the systematic term go through ``map_fn`` (the cluster in the
    stage), two per |Z| bin with a regression curve, and give the builtin map's slopes."""
    rng = np.random.default_rng(5)
    n = 6_000
    abs_z = rng.uniform(0.0, 3.0, n)
    err = rng.uniform(0.1, 0.3, n)
    feh = -0.2 - 0.4 * abs_z + 0.2 * rng.standard_normal(n) + err * rng.standard_normal(n)
    centres = np.linspace(-2.0, 0.5, 11)
    curve = (centres, -0.3 + 0.8 * (centres + 0.3), 0.8)
    p = GradientParams()
    calls: list[int] = []

    def counting_map(fn, jobs):
        jobs = list(jobs)
        calls.append(len(jobs))
        return iter([fn(j) for j in jobs])

    ref = alternative_slopes(abs_z, feh, err, p, curve)
    got = alternative_slopes(abs_z, feh, err, p, curve, map_fn=counting_map)
    lo, hi = p.fit_range_kpc
    n_bins = len(np.arange(lo, hi + 1e-9, 0.1)) - 1
    assert calls == [2 * n_bins]
    assert got == ref and set(got) == {"additive", "regression"}
    assert -0.5 < got["additive"] < -0.3
