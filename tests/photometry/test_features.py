from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bigcat.photometry import colour_features
from bigcat.schema import BANDS, COLOUR_FEATURE_COLUMNS


def test_colours_by_hand():
    m0 = {
        "bp": 14.0,
        "g": 13.5,
        "rp": 12.8,
        "j": 11.6,
        "h": 11.0,
        "ks": 10.8,
        "w1": 10.7,
        "w2": 10.75,
    }
    df = colour_features({b: np.array([v]) for b, v in m0.items()})
    assert list(df.columns) == COLOUR_FEATURE_COLUMNS
    assert len(df.columns) == 16
    # colour = m0_blue - m0_red
    assert df["c_j_ks"].iloc[0] == pytest.approx(11.6 - 10.8)  # 0.8
    assert df["c_bp_rp"].iloc[0] == pytest.approx(1.2)
    assert df["c_w1_w2"].iloc[0] == pytest.approx(-0.05)
    assert df["c_h_w2"].iloc[0] == pytest.approx(0.25)
    assert (df.dtypes == np.float64).all()


def test_colours_nan_index_and_missing_band():
    mags = {b: np.array([10.0, 11.0]) for b in BANDS}
    mags["w1"] = np.array([np.nan, 10.5])
    df = colour_features(mags, index=pd.Index([7, 3]))
    assert df.index.tolist() == [7, 3]
    w1_cols = [c for c in COLOUR_FEATURE_COLUMNS if "w1" in c.split("_")]
    assert df.loc[7, w1_cols].isna().all() and df.loc[7].notna().sum() == 16 - len(w1_cols)
    del mags["g"]
    with pytest.raises(KeyError, match=r"\['g'\]"):
        colour_features(mags)


def test_colours_empty():
    df = colour_features({b: np.array([]) for b in BANDS})
    assert df.shape == (0, 16)
