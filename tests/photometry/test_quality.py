from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bigcat.photometry import PhotometryParams, quality_flags, quality_ok
from bigcat.schema import BAND_MAG_COLUMN, QUALITY_BITS, QUALITY_CUT_BITS


def good_row(**overrides) -> dict:
    row = {
        "phot_bp_rp_excess_factor": 1.2,
        "ruwe": 1.0,
        "w1_flags": 0,
        "w2_flags": 0,
        "parallax": 0.5,
        "parallax_error": 0.05,
        **{col: 12.0 for col in BAND_MAG_COLUMN.values()},
    }
    row.update(overrides)
    return row


def flags_of(**overrides) -> int:
    return int(quality_flags(pd.DataFrame([good_row(**overrides)]))[0])


def test_good_row_has_no_bits():
    assert flags_of() == 0


@pytest.mark.parametrize(
    ("overrides", "bit"),
    [
        # excess factor: <= 3.0 passes, > 3.0 or non-finite fails
        ({"phot_bp_rp_excess_factor": 3.0}, None),
        ({"phot_bp_rp_excess_factor": 3.0000001}, "excess_factor"),
        ({"phot_bp_rp_excess_factor": np.nan}, "excess_factor"),
        ({"phot_bp_rp_excess_factor": np.inf}, "excess_factor"),
        ({"phot_bp_rp_excess_factor": -np.inf}, "excess_factor"),
        # RUWE: <= 1.4 passes
        ({"ruwe": 1.4}, None),
        ({"ruwe": 1.4000001}, "ruwe"),
        ({"ruwe": np.nan}, "ruwe"),
        ({"ruwe": -np.inf}, "ruwe"),
        # unWISE flags: 0 is good, anything else fails
        ({"w1_flags": 1}, "w1_flags"),
        ({"w1_flags": 128}, "w1_flags"),
        ({"w2_flags": 2}, "w2_flags"),
        # each of the 8 magnitudes
        *[({col: np.nan}, "missing_photometry") for col in BAND_MAG_COLUMN.values()],
        ({"w2_mag": np.inf}, "missing_photometry"),
        # astrometry: negative and zero parallaxes are valid data
        ({"parallax": -1.0}, None),
        ({"parallax": 0.0}, None),
        ({"parallax": np.nan}, "bad_astrometry"),
        ({"parallax": np.inf}, "bad_astrometry"),
        ({"parallax_error": 0.0}, "bad_astrometry"),
        ({"parallax_error": -0.1}, "bad_astrometry"),
        ({"parallax_error": np.nan}, "bad_astrometry"),
    ],
)
def test_each_cut_alone(overrides, bit):
    flags = flags_of(**overrides)
    assert flags == (0 if bit is None else QUALITY_BITS[bit])
    assert bool(quality_ok(np.array([flags]))[0]) is (bit is None)


def test_bits_combine():
    flags = flags_of(ruwe=2.0, w2_flags=1, j_m=np.nan)
    assert (
        flags
        == QUALITY_BITS["ruwe"] | QUALITY_BITS["w2_flags"] | QUALITY_BITS["missing_photometry"]
    )


def test_limits_are_settings():
    params = PhotometryParams(max_excess_factor=1.1, max_ruwe=2.0)
    flags = quality_flags(pd.DataFrame([good_row(ruwe=1.9)]), params)
    assert int(flags[0]) == QUALITY_BITS["excess_factor"]


def test_informational_bits_do_not_fail_quality():
    info = QUALITY_BITS["zeropoint_unavailable"] | QUALITY_BITS["negative_extinction"]
    assert info & QUALITY_CUT_BITS == 0
    assert quality_ok(np.array([info, info | QUALITY_BITS["ruwe"]])).tolist() == [True, False]


@pytest.mark.parametrize(
    "dtype", ["int32", "int64", "float64", "Int64", "Float64", "int64[pyarrow]"]
)
def test_flag_column_dtypes(dtype):
    df = pd.DataFrame([good_row(), good_row(), good_row()])
    df["w1_flags"] = pd.array([0, 1, None] if dtype[0].isupper() else [0, 1, 3], dtype=dtype)
    df["ruwe"] = pd.array([1.0, 1.0, None], dtype="Float64")
    flags = quality_flags(df)
    assert flags.dtype == np.int64
    assert flags[0] == 0
    assert flags[1] == QUALITY_BITS["w1_flags"]
    # a missing flag (pd.NA) counts as not good
    assert flags[2] == QUALITY_BITS["w1_flags"] | QUALITY_BITS["ruwe"]


def test_empty_frame():
    df = pd.DataFrame([good_row()]).iloc[:0]
    flags = quality_flags(df)
    assert flags.shape == (0,) and flags.dtype == np.int64


def test_missing_column_named():
    df = pd.DataFrame([good_row()]).drop(columns=["ruwe", "w2_mag"])
    with pytest.raises(KeyError, match=r"\['ruwe', 'w2_mag'\].*\[columns\]"):
        quality_flags(df)
