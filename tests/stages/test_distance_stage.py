"""The distance stage: the prior sample, the distance kernel with each kind of prior."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bigcat.astrometry.learnt_prior import LearntPriorSettings, fit_learnt_prior
from bigcat.astrometry.model_prior import model_prior_table
from bigcat.catalog.healpix import healpix29
from bigcat.catalog.store import write_table_atomic
from bigcat.config import Config, Stage1Config
from bigcat.errors import ConfigError
from bigcat.photometry.params import PhotometryParams
from bigcat.schema import BAND_MAG_COLUMN, BANDS
from bigcat.stages.distance import (
    DistanceParams,
    NetworkPrior,
    distance_kernel,
    parallax_bound,
    prior_sample_partitions,
)

PHOT = PhotometryParams()


def _frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ra = rng.uniform(260.0, 275.0, n)
    dec = rng.uniform(-35.0, -20.0, n)
    r = np.exp(rng.normal(8.8, 0.3, n))
    plx = 1000.0 / r
    df = pd.DataFrame(
        {
            "source_id": np.arange(n, dtype=np.int64) * 13 + 5,
            "_healpix_29": healpix29(ra, dec),
            "ra": ra,
            "dec": dec,
            "phot_g_mean_mag": rng.uniform(13.0, 19.0, n),
            "parallax_zp": plx + rng.normal(size=n) * 0.3 * plx,
            "parallax_error": 0.3 * plx,
            "parallax_combined": plx * (1.0 + rng.normal(size=n) * 0.1),
            "parallax_combined_error": 0.1 * plx,
            "quality_ok": True,
            "is_giant": True,
        }
    )
    for band in BANDS:
        df[BAND_MAG_COLUMN[band]] = rng.uniform(10.0, 15.0, n)
        df[f"a_{band}"] = 0.1
    # giants' colours: the giant cut (eq. 7) lies far above these parallaxes
    df["h_m"] = df["j_m"] - 0.7
    df.loc[::7, ["parallax_combined", "parallax_combined_error"]] = np.nan  # not giants
    return df


@pytest.mark.parametrize("kind", ["network", "model", "deconvolved"])
def test_distance_kernel_adds_distances_and_absolute_magnitudes(kind):
    df = _frame(3000, 1)
    if kind == "network":
        prior = NetworkPrior()
    elif kind == "model":
        prior = model_prior_table()
    else:
        from bigcat.catalog.healpix import pixel_at_order

        prior = fit_learnt_prior(
            df["source_id"].to_numpy(),
            pixel_at_order(df["_healpix_29"].to_numpy(), 5),
            df["phot_g_mean_mag"].to_numpy(),
            df["parallax_zp"].to_numpy(),
            df["parallax_error"].to_numpy(),
            LearntPriorSettings(),
        )
    out = distance_kernel(df, DistanceParams(prior, PHOT))
    assert len(out) == len(df)
    has = df["parallax_combined"].notna()
    d = out["distance_pc"]
    assert d[~has].isna().all() and d[has].notna().all()
    assert (out.loc[has, "distance_pc_p16"] < d[has]).all()
    assert (d[has] < out.loc[has, "distance_pc_p84"]).all()
    np.testing.assert_allclose(
        out.loc[has, "abs_j"],
        df.loc[has, "j_m"] - 0.1 - 5 * np.log10(d[has] / 10.0),
    )
    true = 1000.0 / (df.loc[has, "parallax_combined"])
    assert np.median(d[has] / true) == pytest.approx(1.0, abs=0.15)


def test_prior_sample_is_capped_per_cell_and_independent_of_the_files(tmp_path):
    df = _frame(6000, 2)
    df["j_m"], df["h_m"], df["a_j"], df["a_h"] = 13.0, 12.3, 0.2, 0.1
    a, b = df.iloc[:2500], df.iloc[2500:]
    for name, part in (("a", a), ("b", b), ("all", df)):
        import pyarrow as pa

        write_table_atomic(
            pa.Table.from_pandas(part, preserve_index=False), tmp_path / f"{name}.parquet", "x"
        )
    settings = LearntPriorSettings(cap_per_cell=40)
    whole = prior_sample_partitions([str(tmp_path / "all.parquet")], settings, PHOT)
    split = prior_sample_partitions(
        [str(tmp_path / "a.parquet"), str(tmp_path / "b.parquet")], settings, PHOT
    )
    pd.testing.assert_frame_equal(
        whole.sort_values("source_id", ignore_index=True),
        split.sort_values("source_id", ignore_index=True),
    )
    from bigcat.astrometry.learnt_prior import mag_bin

    cells = whole["healpix5"] * 10 + mag_bin(
        whole["phot_g_mean_mag"].to_numpy(), settings.mag_edges
    )
    assert cells.value_counts().max() <= 40
    np.testing.assert_allclose(whole["parallax_bound"], parallax_bound(df.iloc[:1], PHOT)[0])


def test_parallax_bound_is_the_giant_cut():
    df = pd.DataFrame({"j_m": [13.0], "a_j": [0.5], "h_m": [12.2], "a_h": [0.3]})
    j0, h0 = 12.5, 11.9
    m_bound = PHOT.giant_cut_slope * (j0 - h0) + PHOT.giant_cut_intercept
    np.testing.assert_allclose(parallax_bound(df, PHOT), m_bound * 10 ** (-0.2 * j0))


def test_prior_settings_are_checked():
    assert Config().stage1.prior_kind == "deconvolved"
    assert Config().replace("stage1", prior_table="x.csv").stage1.prior_kind == "table"
    with pytest.raises(ConfigError, match="Did you mean 'network'"):
        Stage1Config(prior="netwrk")
    with pytest.raises(ConfigError, match="needs stage1.prior_table"):
        Stage1Config(prior="table")
    with pytest.raises(ConfigError, match="increasing"):
        Stage1Config(prior_mag_edges=(15.0, 14.0))
