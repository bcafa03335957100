from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bigcat.photometry import (
    PHOTOMETRY_OUTPUT_COLUMNS,
    PhotometryParams,
    photometry_output_meta,
    required_input_columns,
    run_photometry,
)
from bigcat.schema import (
    BAND_MAG_COLUMN,
    COLOUR_FEATURE_COLUMNS,
    EXTINCTION_COLUMNS,
    QUALITY_BITS,
    QUALITY_CUT_BITS,
    REQUIRED_COLUMNS,
    ZEROPOINT_COLUMNS,
)


@pytest.fixture
def one_star(partition_factory):
    """Factory of a hand-made red giant: H = 12.3, W2 = 11.9 (A_Ks = 0.3213), J = 13.3,
    parallax 0.5 mas; keyword arguments override columns."""

    def make(**overrides) -> pd.DataFrame:
        return _one_star(partition_factory(1, seed=0), overrides)

    return make


def _one_star(df: pd.DataFrame, overrides: dict) -> pd.DataFrame:
    values = {
        "parallax": 0.5, "parallax_error": 0.05, "phot_bp_rp_excess_factor": 1.2, "ruwe": 1.0,
        "w1_flags": 0, "w2_flags": 0, "phot_g_mean_mag": 15.5, "phot_bp_mean_mag": 16.3,
        "phot_rp_mean_mag": 14.6, "j_m": 13.3, "h_m": 12.3, "ks_m": 12.0, "w1_mag": 11.95,
        "w2_mag": 11.9, "astrometric_params_solved": 31, "nu_eff_used_in_astrometry": 1.5,
        "pseudocolour": np.nan, "ecl_lat": 10.0,
    }  # fmt: skip
    values.update(overrides)
    for k, v in values.items():
        df[k] = pd.Series([v], dtype=df[k].dtype)
    return df


def test_one_star_by_hand(one_star):
    out = run_photometry(one_star())
    row = out.iloc[0]
    assert row["quality_flags"] == 0 and row["quality_ok"]
    # A_Ks = 0.918 * (12.3 - 11.9 - 0.05) = 0.3213; A_J = 0.3213 * 0.243/0.078 = 1.000973;
    # A_H = 0.3213 * 0.131/0.078 = 0.539619
    assert row["a_ks"] == pytest.approx(0.3213)
    assert row["a_j"] == pytest.approx(1.0009731, rel=1e-6)
    assert row["a_h"] == pytest.approx(0.5396192, rel=1e-6)
    # J0 = 13.3 - 1.000973 = 12.299027; H0 = 12.3 - 0.539619 = 11.760381; J0 - H0 = 0.538646
    assert row["c_j_h"] == pytest.approx(0.5386462, rel=1e-6)
    # parallax_zp = 0.5 - zpt (5p, G = 15.5): a few hundredths of a mas larger
    zp = 0.5 - row["parallax_zp"]
    assert -0.1 < zp < 0.05
    # M_pseudo = parallax_zp * 10^(0.2 * 12.299027) = parallax_zp * 10^2.459805 = parallax_zp * 288.274
    assert row["m_pseudo"] == pytest.approx(row["parallax_zp"] * 10 ** (0.2 * 12.2990269))
    assert row["m_pseudo_error"] == pytest.approx(0.05 * 288.274, rel=1e-5)
    # boundary = 492.101 * 0.538646 - 53.827 = 211.2 > M_pseudo ~ 150 -> giant
    assert row["m_pseudo"] < 492.101 * 0.5386462 - 53.827
    assert row["is_giant"]


def test_output_columns_and_dtypes(partition):
    out = run_photometry(partition)
    assert list(out.columns) == list(partition.columns) + PHOTOMETRY_OUTPUT_COLUMNS
    assert PHOTOMETRY_OUTPUT_COLUMNS[:3] == ["quality_flags", "quality_ok", "parallax_zp"]
    assert set(EXTINCTION_COLUMNS.values()) <= set(PHOTOMETRY_OUTPUT_COLUMNS)
    assert PHOTOMETRY_OUTPUT_COLUMNS[-16:] == COLOUR_FEATURE_COLUMNS
    assert out["quality_flags"].dtype == np.int64
    assert out["quality_ok"].dtype == bool and out["is_giant"].dtype == bool
    for col in ["parallax_zp", "m_pseudo", "m_pseudo_error", *EXTINCTION_COLUMNS.values()]:
        assert out[col].dtype == np.float64
    pd.testing.assert_frame_equal(out[partition.columns], partition)
    meta = photometry_output_meta(partition.iloc[:0])
    pd.testing.assert_series_equal(meta.dtypes, out.dtypes)
    assert len(meta) == 0
    # input is not modified
    assert "quality_flags" not in partition.columns


def test_meta_equals_empty_run(partition):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        empty = run_photometry(partition.iloc[:0])
    pd.testing.assert_frame_equal(empty, photometry_output_meta(partition))


def test_mock_partition_sane(partition):
    out = run_photometry(partition)
    # the fixture has 2p solutions (25 %) -> zero-point unavailable, parallax uncorrected
    two_p = partition["astrometric_params_solved"].to_numpy() == 3
    unavail = (out["quality_flags"].to_numpy() & QUALITY_BITS["zeropoint_unavailable"]) != 0
    assert unavail[two_p].all()
    np.testing.assert_array_equal(out["parallax_zp"][two_p], partition["parallax"][two_p])
    assert not unavail[~two_p].all()
    assert out["a_ks"].min() >= 0
    assert out["is_giant"].any() and not out.loc[~out["quality_ok"], "is_giant"].any()


def test_missing_zeropoint_columns_warn_and_flag(partition):
    df = partition.drop(columns=list(ZEROPOINT_COLUMNS))
    with pytest.warns(RuntimeWarning, match="nu_eff_used_in_astrometry.*astrometric_params_solved"):
        out = run_photometry(df)
    flags = out["quality_flags"].to_numpy()
    assert ((flags & QUALITY_BITS["zeropoint_unavailable"]) != 0).all()
    np.testing.assert_array_equal(out["parallax_zp"], df["parallax"])
    # everything else is computed as before, from the uncorrected parallax
    ref = run_photometry(partition, PhotometryParams(apply_zeropoint=False))
    pd.testing.assert_frame_equal(out[PHOTOMETRY_OUTPUT_COLUMNS], ref[PHOTOMETRY_OUTPUT_COLUMNS])
    assert out["quality_ok"].sum() > 0 and out["is_giant"].sum() > 0


def test_apply_zeropoint_false_does_not_warn(partition):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        run_photometry(partition.drop(columns=["ecl_lat"]), PhotometryParams(apply_zeropoint=False))


def test_missing_required_column_is_named(partition):
    with pytest.raises(KeyError, match=r"\['parallax_error', 'w1_flags'\]"):
        run_photometry(partition.drop(columns=["w1_flags", "parallax_error"]))
    assert set(required_input_columns()) <= set(REQUIRED_COLUMNS)


def test_output_column_clash(partition):
    with pytest.raises(ValueError, match=r"\['is_giant'\]"):
        run_photometry(partition.assign(is_giant=True))


def test_nullable_dtypes_give_same_result(partition):
    df = partition.copy()
    df.loc[df.index[:5], "j_m"] = np.nan
    ref = run_photometry(df)
    nullable = df.convert_dtypes()
    assert str(nullable["j_m"].dtype) == "Float64" and str(nullable["w1_flags"].dtype) == "Int32"
    out = run_photometry(nullable)
    pd.testing.assert_frame_equal(out[PHOTOMETRY_OUTPUT_COLUMNS], ref[PHOTOMETRY_OUTPUT_COLUMNS])
    flt = df.assign(w1_flags=df["w1_flags"].astype(float), w2_flags=df["w2_flags"].astype(float))
    out = run_photometry(flt)
    pd.testing.assert_frame_equal(out[PHOTOMETRY_OUTPUT_COLUMNS], ref[PHOTOMETRY_OUTPUT_COLUMNS])


def test_bad_astrometry_rows_have_nan_m_pseudo(one_star):
    df = pd.concat(
        [one_star(parallax_error=0.0), one_star(parallax=np.nan), one_star(parallax=-0.3)]
    )
    out = run_photometry(df)
    assert out["m_pseudo"].isna().tolist() == [True, True, False]
    assert out["quality_ok"].tolist() == [False, False, True]
    assert out["is_giant"].tolist() == [False, False, True]  # negative parallax: M_pseudo < 0


def test_negative_extinction_flag(one_star):
    out = run_photometry(one_star(w2_mag=12.3))  # H - W2 = 0 -> A_Ks = -0.0459 -> 0
    assert out["a_ks"].iloc[0] == 0.0
    flags = int(out["quality_flags"].iloc[0])
    assert flags & QUALITY_BITS["negative_extinction"] and flags & QUALITY_CUT_BITS == 0


# ---------------------------------------------------------------- property tests

FLOATS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=64),
    st.sampled_from([0.0, -0.0, np.nan, np.inf, -np.inf, -1.0, 1e-300, 1e300]),
    st.floats(-5, 25),
)
OVERRIDE_COLUMNS = [
    "parallax", "parallax_error", "phot_bp_rp_excess_factor", "ruwe",
    *BAND_MAG_COLUMN.values(), "nu_eff_used_in_astrometry", "pseudocolour", "ecl_lat",
    "phot_g_mean_mag",
]  # fmt: skip


@st.composite
def partitions(draw, make_partition):
    n = draw(st.integers(0, 25))
    df = make_partition(n, seed=draw(st.integers(0, 2**16)))
    for col in draw(st.lists(st.sampled_from(OVERRIDE_COLUMNS), max_size=6, unique=True)):
        df[col] = np.array(draw(st.lists(FLOATS, min_size=n, max_size=n)), dtype=np.float64)
    if n and draw(st.booleans()):
        df["astrometric_params_solved"] = np.array(
            draw(st.lists(st.sampled_from([3, 31, 95, 0, -1]), min_size=n, max_size=n)),
            dtype=np.int16,
        )
    if n and draw(st.booleans()):
        df["w1_flags"] = np.array(
            draw(st.lists(st.sampled_from([0.0, 1.0, np.nan, 2.0**40]), min_size=n, max_size=n))
        )
    if draw(st.booleans()):
        df = df.convert_dtypes()
    if draw(st.booleans()):
        df.index = pd.Index(draw(st.lists(st.integers(-5, 5), min_size=n, max_size=n)))
    return df


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_run_photometry_properties(data, partition_factory):
    df = data.draw(partitions(partition_factory))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RuntimeWarning from numpy on NaN/inf
        out = run_photometry(df)
    assert len(out) == len(df)
    assert out.index.equals(df.index)
    pd.testing.assert_series_equal(out["source_id"], df["source_id"])
    pd.testing.assert_frame_equal(out[df.columns], df)
    assert list(out.columns) == list(df.columns) + PHOTOMETRY_OUTPUT_COLUMNS

    flags = out["quality_flags"].to_numpy()
    ok = out["quality_ok"].to_numpy()
    giant = out["is_giant"].to_numpy()
    np.testing.assert_array_equal(ok, (flags & QUALITY_CUT_BITS) == 0)
    assert not giant[~ok].any()

    par = df["parallax"].to_numpy(float, na_value=np.nan)
    err = df["parallax_error"].to_numpy(float, na_value=np.nan)
    bad_astrometry = ~np.isfinite(par) | ~np.isfinite(err) | ~(err > 0)
    assert not ok[bad_astrometry].any()
    mags = np.column_stack(
        [df[c].to_numpy(float, na_value=np.nan) for c in BAND_MAG_COLUMN.values()]
    )
    missing = ~np.isfinite(mags).all(axis=1) if len(df) else np.zeros(0, bool)
    assert not ok[missing].any()
    # no non-finite values leak into rows that pass quality (all inputs finite there), unless
    # an input is so absurd that the arithmetic overflows: |x| > 1e10, or a magnitude above
    # ~1540, where 10**(0.2 J0) in the pseudo-absolute magnitude exceeds float64 (hypothesis
    # found J = 1542 with parallax 0: 0 x inf = NaN)
    sane = ok & (np.abs(mags).max(axis=1, initial=0) < 1000) & (np.abs(par) < 1e10)
    sane &= err < 1e10
    cols = [*EXTINCTION_COLUMNS.values(), *COLOUR_FEATURE_COLUMNS, "parallax_zp", "m_pseudo",
            "m_pseudo_error"]  # fmt: skip
    assert np.isfinite(out.loc[sane, cols].to_numpy(float)).all()
    assert (out["a_ks"].dropna() >= 0).all()


def test_single_row_and_empty(one_star, partition_factory):
    one = run_photometry(one_star())
    assert len(one) == 1
    empty = run_photometry(partition_factory(0))
    assert len(empty) == 0 and list(empty.columns)[-16:] == COLOUR_FEATURE_COLUMNS
