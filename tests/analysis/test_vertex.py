"""Vertex deviation analysis: selection kernel, metallicity samples, emcee fit, vertex.json."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import astropy.units as u
import numpy as np
import pandas as pd
import pytest
from astropy.coordinates import SkyCoord

from bigcat.analysis import vertex as vx
from bigcat.analysis.mixture_sim import (
    random_error_covariances,
    sample_mixture,
    tilted_covariance,
)
from bigcat.errors import ConfigError, InputError

#: Short chains for tests (the minimum walker count for 19 parameters is 38).
FAST = vx.VertexParams(n_walkers=40, n_burn=200, n_steps=250)


def _radec(l_deg: float, b_deg: float) -> tuple[float, float]:
    c = SkyCoord(l=l_deg * u.deg, b=b_deg * u.deg, frame="galactic").icrs
    return float(c.ra.deg), float(c.dec.deg)


def _good_row(l_deg: float = 1.0, b_deg: float = -3.0) -> dict[str, float]:
    ra, dec = _radec(l_deg, b_deg)
    return {
        "source_id": 0,
        "ra": ra,
        "dec": dec,
        "distance_pc": 8000.0,
        "distance_pc_p16": 7500.0,
        "distance_pc_p84": 8600.0,
        "feh": 0.1,
        "feh_error": 0.2,
        "x_gc": -0.1,
        "y_gc": 0.1,
        "z_gc": -0.4,
        "x_gc_error": 0.5,
        "y_gc_error": 0.05,
        "z_gc_error": 0.05,
        "vx_gc": 10.0,
        "vy_gc": -40.0,
        "vz_gc": 5.0,
        "vx_gc_error": 20.0,
        "vy_gc_error": 25.0,
        "vz_gc_error": 15.0,
        "v_cov_xy": 30.0,
        "v_cov_xz": -10.0,
        "v_cov_yz": 5.0,
        "radial_velocity": 50.0,
    }


#: Each case breaks exactly one cut (True = the row must be kept).
CASES: list[tuple[str, dict[str, float], bool]] = [
    ("good", {}, True),
    ("l edge inside", {"lb": (4.99, 0.0)}, True),
    ("b edge inside", {"lb": (-4.9, -9.99)}, True),
    ("l outside", {"lb": (5.05, 0.0)}, False),
    ("negative l outside", {"lb": (-5.05, 2.0)}, False),
    ("b outside", {"lb": (0.0, 10.05)}, False),
    ("too near", {"distance_pc": 6000.0}, False),
    ("near inside", {"distance_pc": 6001.0}, True),
    ("too far", {"distance_pc": 10000.0}, False),
    ("distance sigma 1 kpc", {"distance_pc_p16": 7000.0, "distance_pc_p84": 9000.0}, False),
    ("distance sigma 0.99 kpc", {"distance_pc_p16": 7020.0, "distance_pc_p84": 9000.0}, True),
    ("feh error", {"feh_error": 1.0}, False),
    ("feh NaN", {"feh": math.nan}, False),
    ("vx error", {"vx_gc_error": 250.0}, False),
    ("vy error", {"vy_gc_error": 260.0}, False),
    ("vz error", {"vz_gc_error": 300.0}, False),
    ("vz error NaN", {"vz_gc_error": math.nan}, False),
    ("y error", {"y_gc_error": 1.0}, False),
    ("z error", {"z_gc_error": 1.2}, False),
    ("x error is not cut", {"x_gc_error": 3.0}, True),
    ("no radial velocity", {"radial_velocity": math.nan}, False),
    ("velocity NaN", {"vy_gc": math.nan}, False),
    ("covariance NaN", {"v_cov_xz": math.nan}, False),
    ("distance NaN", {"distance_pc": math.nan}, False),
]


def _frame() -> pd.DataFrame:
    rows = []
    for i, (_, change, _) in enumerate(CASES):
        row = _good_row(*change.get("lb", (1.0, -3.0)))
        row.update({k: v for k, v in change.items() if k != "lb"})
        row["source_id"] = i
        rows.append(row)
    return pd.DataFrame(rows)


def test_selection_each_cut() -> None:
    df = _frame()
    out = vx.vertex_samples(df)
    expected = [i for i, (_, _, keep) in enumerate(CASES) if keep]
    got = out["source_id"].tolist()
    wrong = [CASES[i][0] for i in set(got) ^ set(expected)]
    assert not wrong, f"selection wrong for: {wrong}"
    assert out.index.tolist() == expected  # original index kept
    assert {"l_deg", "b_deg", "feh", *vx.VELOCITY_COLUMNS} <= set(out.columns)
    np.testing.assert_allclose(
        out.loc[1, ["l_deg", "b_deg"]].to_numpy(float), [4.99, 0.0], atol=1e-6
    )
    # Looser bounds from params let the corresponding rows through.
    wide = vx.vertex_samples(df, replace(vx.VertexParams(), max_abs_l_deg=6.0))
    assert {3, 4} <= set(wide["source_id"])


#: The cut each failing case of CASES fails (the first in VERTEX_CUTS' order).
FAILS_AT = {
    "l outside": "box",
    "negative l outside": "box",
    "b outside": "box",
    "too near": "distance_window",
    "too far": "distance_window",
    "distance NaN": "distance_window",
    "distance sigma 1 kpc": "distance_sigma",
    "feh error": "feh_error",
    "feh NaN": "feh_error",
    "vx error": "velocity_sigma",
    "vy error": "velocity_sigma",
    "vz error": "velocity_sigma",
    "vz error NaN": "radial_velocity",  # no usable velocity
    "y error": "position_sigma",
    "z error": "position_sigma",
    "no radial velocity": "radial_velocity",
    "velocity NaN": "radial_velocity",
    "covariance NaN": "radial_velocity",
}


def test_cut_counts_cascade() -> None:
    df = _frame()
    assert set(FAILS_AT) == {name for name, _, keep in CASES if not keep}
    rows, counts = vx.vertex_partition(df)
    assert list(counts) == list(vx.VERTEX_CUTS)
    assert rows.equals(vx.vertex_samples(df))
    for k, cut in enumerate(vx.VERTEX_CUTS):
        lost = {n for n, c in FAILS_AT.items() if vx.VERTEX_CUTS.index(c) <= k}
        assert counts[cut] == len(CASES) - len(lost), cut
    assert counts["position_sigma"] == len(rows) == 6
    masks = vx.selection_masks(df)
    cuts = vx.VERTEX_CUTS
    assert all((masks[b] <= masks[a]).all() for a, b in zip(cuts[:-1], cuts[1:], strict=True))
    text = vx.describe_cut_counts(counts)
    assert text.startswith("21 in the box; 18 in the distance window; 17 with a distance sigma")
    assert text.endswith("6 with position errors below the limit (selected)")
    assert vx.describe_cut_counts(None) == ""
    _, none = vx.vertex_partition(df.iloc[:0])
    assert set(none.values()) == {0}


def test_selection_empty_and_missing_columns() -> None:
    df = _frame()
    assert len(vx.vertex_samples(df.iloc[:0])) == 0
    with pytest.raises(InputError, match="radial_velocity"):
        vx.vertex_samples(df.drop(columns="radial_velocity"))


def test_metallicity_samples_edges() -> None:
    edges = vx.feh_bin_edges()
    np.testing.assert_allclose(edges, [-1.65, -1.3, -0.95, -0.6, -0.25, 0.1, 0.45, 0.8])
    feh = [-2.0, -1.65, -1.3, -0.61, -0.6, -0.5, -0.4, 0.0, 0.79, 0.8, 0.81]
    rows = pd.DataFrame({"feh": feh, "idx": range(len(feh))})
    s = vx.metallicity_samples(rows)
    assert list(s)[:2] == ["metal_poor", "metal_rich"] and len(s) == 9

    def members(name: str) -> list[float]:
        return s[name].rows["feh"].tolist()

    assert members("metal_poor") == [-2.0, -1.65, -1.3, -0.61, -0.6]
    assert members("metal_rich") == [-0.4, 0.0, 0.79, 0.8, 0.81]
    assert members("-1.65_-1.30") == [-1.65]
    assert members("-1.30_-0.95") == [-1.3]
    assert members("-0.95_-0.60") == [-0.61]
    assert members("-0.60_-0.25") == [-0.6, -0.5, -0.4]
    assert members("+0.45_+0.80") == [0.79, 0.8]  # last bin closed
    assert s["-0.60_-0.25"].feh_range == (-0.6, -0.25)
    assert s["metal_poor"].feh_range == (None, -0.6) and s["metal_rich"].kind == "summary"


def test_params_validation() -> None:
    with pytest.raises(ConfigError, match="n_walkers"):
        vx.VertexParams(n_walkers=20)
    with pytest.raises(ConfigError, match="overlap"):
        vx.VertexParams(metal_poor_max=-0.3)
    with pytest.raises(ConfigError, match="moves"):
        vx.VertexParams(moves="hmc")
    with pytest.raises(ConfigError, match="precision"):
        vx.VertexParams(precision="float16")


def _simulated(n: int, vertex_deg: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    err = random_error_covariances(n, rng)
    covs = np.stack([tilted_covariance((120, 85, 80), vertex_deg), 140.0**2 * np.eye(3)])
    v, _ = sample_mixture(0.75, [[10, -50, 0], [0, 0, 0]], covs, err, rng)
    return v, err


def test_fit_recovers_injected_vertex() -> None:
    """~1,500 stars with a -20 deg bar: the posterior must sit on the truth with a plausible
    width (a broken likelihood, prior or sampler gives a wrong, flat or collapsed posterior)."""
    v, err = _simulated(1500, -20.0, seed=21)
    r = vx.fit_vertex(v, err, "fitted", FAST, seed=5)
    # Expected posterior width at this size: ~3-4 deg.
    assert 1.5 < r["vertex_err_deg"] < 7.0
    assert abs(r["vertex_deg"] + 20.0) < 3.0 * r["vertex_err_deg"]
    lo, hi = r["range_deg"]
    assert lo < r["vertex_percentiles_deg"]["p16"] < r["vertex_deg"] < hi
    assert 0.1 < r["acceptance_fraction"] < 0.6
    assert r["n_stars"] == 1500 and r["autocorr_time"] > 1
    # Monte-Carlo error of the median angle from the angle's own autocorrelation time
    n_eff = FAST.n_walkers * FAST.n_steps / r["autocorr_time_vertex"]
    assert r["n_effective_vertex"] == pytest.approx(n_eff)
    assert r["mcse_vertex_deg"] == pytest.approx(
        np.sqrt(np.pi / 2) * r["vertex_err_deg"] / np.sqrt(n_eff)
    )
    assert 0 < r["mcse_vertex_deg"] < 0.2 * r["vertex_err_deg"]
    assert 0.6 < r["weight_major"] < 0.9
    assert r["start"] == "laplace" and r["n_stuck_walkers"] == 0
    ml = r["max_likelihood"]
    assert ml["em_converged"] and abs(ml["vertex_deg"] + 20.0) < 3.0 * r["vertex_err_deg"]
    np.testing.assert_allclose(r["mean_major_kms"], [10, -50, 0], atol=15)
    sig = np.sqrt(np.diag(r["cov_major_kms2"]))
    np.testing.assert_allclose(
        sig, np.sqrt(np.diag(tilted_covariance((120, 85, 80), -20))), rtol=0.15
    )


def test_fit_zeroed_and_determinism() -> None:
    v, err = _simulated(300, -20.0, seed=22)
    short = replace(FAST, n_burn=20, n_steps=30)
    a = vx.fit_vertex(v, err, "zeroed", short, seed=9)
    b = vx.fit_vertex(v, err, "zeroed", short, seed=9)
    c = vx.fit_vertex(v, err, "zeroed", short, seed=10)
    assert a == b
    assert a["vertex_deg"] != c["vertex_deg"]
    assert a["mean_major_kms"] == [0.0, 0.0, 0.0] and a["variant"] == "zeroed"
    assert a["precision"] == "float32"  # the default: emcee calls the float32 likelihood
    d = vx.fit_vertex(v, err, "zeroed", replace(short, precision="float64"), seed=9)
    assert d["precision"] == "float64" and d["max_likelihood"] == a["max_likelihood"]
    # 30 steps cannot converge: the verdict says by how much, against what is needed
    assert not a["converged"] and a["verdict"].startswith("NOT converged: 30 steps are ")
    tau = a["autocorr_time_vertex"]
    assert f"{30 / tau:.1f} autocorrelation times of the angle (20 needed)" in a["verdict"]
    assert f"{a['n_effective_vertex']:.0f} effective draws (800 needed)" in a["verdict"]
    assert f"Monte-Carlo error of the median {a['mcse_vertex_deg']:.2f} deg" in a["verdict"]


def test_verdict_words() -> None:
    p = vx.VertexParams()
    assert vx._verdict(True, True, 900, 30.0, 1400.0, 0.1, 2.0, p) == "converged"
    unc = vx._verdict(True, False, 900, 30.0, 1400.0, 0.1, 20.0, p)
    assert unc == "converged; not constrained: the posterior fills much of the prior"
    assert vx._verdict(False, True, 900, float("nan"), None, None, 2.0, p) == (
        "NOT converged: no autocorrelation time could be estimated"
    )
    text = vx._verdict(False, True, 4000, 250.0, 768.0, 0.12, 2.5, p)
    assert text == (
        "NOT converged: 4000 steps are 16.0 autocorrelation times of the angle (20 needed), "
        "768 effective draws (800 needed); Monte-Carlo error of the median 0.12 deg against "
        "a 68% half-width of 2.50 deg"
    )


def test_sample_seed_depends_on_names_only() -> None:
    s = vx.sample_seed(3, "metal_rich", "fitted")
    assert s == vx.sample_seed(3, "metal_rich", "fitted")
    assert (
        len(
            {
                s,
                vx.sample_seed(3, "metal_rich", "zeroed"),
                vx.sample_seed(4, "metal_rich", "fitted"),
            }
        )
        == 3
    )


def _velocity_rows(feh: np.ndarray, v: np.ndarray, err: np.ndarray) -> pd.DataFrame:
    """Selected vertex rows: [Fe/H], velocities and their error covariances."""
    return pd.DataFrame(
        {
            "feh": feh,
            "vx_gc": v[:, 0],
            "vy_gc": v[:, 1],
            "vz_gc": v[:, 2],
            "vx_gc_error": np.sqrt(err[:, 0, 0]),
            "vy_gc_error": np.sqrt(err[:, 1, 1]),
            "vz_gc_error": np.sqrt(err[:, 2, 2]),
            "v_cov_xy": err[:, 0, 1],
            "v_cov_xz": err[:, 0, 2],
            "v_cov_yz": err[:, 1, 2],
        }
    )


def test_analyze_vertex_structure() -> None:
    rng = np.random.default_rng(23)
    n = 120
    v, err = _simulated(n, -20.0, seed=24)
    rows = _velocity_rows(np.where(rng.uniform(size=n) < 0.5, -0.9, 0.2), v, err)
    params = replace(FAST, n_burn=10, n_steps=20, min_stars=30)
    out = vx.analyze_vertex(rows, params, seed=1)
    json.dumps(out, allow_nan=False)  # vertex.json must be plain JSON
    s = out["samples"]
    assert out["n_stars_selected"] == n and out["seed"] == 1
    assert set(s) == set(vx.metallicity_samples(rows, params))
    n_poor = int((rows["feh"] <= -0.6).sum())
    assert s["metal_poor"]["n_stars"] == n_poor and s["metal_rich"]["n_stars"] == n - n_poor
    for name in ("metal_poor", "metal_rich", "-0.95_-0.60", "+0.10_+0.45"):
        for variant in ("fitted", "zeroed"):
            r = s[name][variant]
            assert r["n_stars"] == s[name]["n_stars"]
            assert -45 <= r["vertex_deg"] <= 45 and r["vertex_err_deg"] > 0
            assert len(r["range_deg"]) == 2
            assert 0 < r["acceptance_fraction"] < 1 and r["autocorr_time"] > 0
    empty = s["-1.65_-1.30"]["fitted"]
    assert empty["n_stars"] == 0 and empty["vertex_deg"] is None and "skipped" in empty
    again = vx.analyze_vertex(rows, params, seed=1)
    assert again == out


def test_analyze_vertex_runs_largest_samples_first_and_files_results_by_name() -> None:
    rng = np.random.default_rng(31)
    n = 150
    v, err = _simulated(n, -20.0, seed=32)
    feh = np.where(rng.uniform(size=n) < 0.3, -0.9, 0.2)  # 45-ish metal-poor, 105 rich
    rows = _velocity_rows(feh, v, err)
    params = replace(FAST, n_burn=10, n_steps=20, min_stars=30)
    seen: list[int] = []

    def recording_map(fn, jobs):
        jobs = list(jobs)
        seen.extend(len(job[0]) for job in jobs)
        return map(fn, jobs)

    out = vx.analyze_vertex(rows, params, seed=1, map_fn=recording_map)
    assert seen == sorted(seen, reverse=True) and len(set(seen)) > 1
    # each result is filed under its own sample, whatever order the fits ran in
    for name, sample in out["samples"].items():
        for variant in ("fitted", "zeroed"):
            assert sample[variant]["n_stars"] == sample["n_stars"], name
            if "skipped" not in sample[variant]:
                assert sample[variant]["variant"] == variant
    assert out == vx.analyze_vertex(rows, params, seed=1)
