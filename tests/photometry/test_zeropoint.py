"""Zero-point on real Gaia DR3 rows (adrn/pyia test data, 1,000 random gaia_source rows)."""

from __future__ import annotations

import threading
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bigcat.photometry import corrected_parallax, parallax_zero_point
from bigcat.photometry.zeropoint import _zpt_module

GAIA_FITS = Path("/work/shared/data/real/gaia_dr3_random_1000.fits")
COLUMNS = [
    "source_id",
    "phot_g_mean_mag",
    "nu_eff_used_in_astrometry",
    "pseudocolour",
    "ecl_lat",
    "astrometric_params_solved",
    "parallax",
]


@pytest.fixture(scope="module")
def gaia() -> pd.DataFrame:
    if not GAIA_FITS.exists():
        pytest.skip(f"{GAIA_FITS} not present")
    from astropy.table import Table

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # astropy UnitsWarning on archive units
        table = Table.read(GAIA_FITS)
    return table[COLUMNS].to_pandas()


def direct_zpt(df: pd.DataFrame) -> np.ndarray:
    zpt = _zpt_module()
    return zpt.get_zpt(
        df["phot_g_mean_mag"].to_numpy(float),
        df["nu_eff_used_in_astrometry"].to_numpy(float),
        df["pseudocolour"].to_numpy(float),
        df["ecl_lat"].to_numpy(float),
        df["astrometric_params_solved"].to_numpy(float),
        _warnings=False,
    )


def test_equals_package_on_real_rows(gaia):
    zpt_mas, available = parallax_zero_point(gaia)
    # all 1000 rows are 5p or 6p, so the package can be called on the whole table directly
    assert set(gaia["astrometric_params_solved"].unique()) == {31, 95}
    reference = direct_zpt(gaia)
    np.testing.assert_array_equal(available, np.isfinite(reference))
    np.testing.assert_allclose(zpt_mas[available], reference[available], rtol=0, atol=0)
    assert np.isnan(zpt_mas[~available]).all()
    # measured: 825 of 1000 available; every 5p row, and the 6p rows whose pseudocolour is
    # within 1.24-1.72 (the package returns NaN outside with _warnings=False)
    five = gaia["astrometric_params_solved"].to_numpy() == 31
    assert available[five].all()
    pc = gaia["pseudocolour"].to_numpy(float)
    assert not available[~five & ((pc <= 1.24) | (pc >= 1.72))].any()
    assert available.sum() >= 800


def test_values_plausible(gaia):
    zpt_mas, available = parallax_zero_point(gaia)
    z = zpt_mas[available]
    # Lindegren et al. (2021): typically -0.1 .. +0.05 mas; median about -0.02 mas
    assert np.all((z > -0.15) & (z < 0.12))
    assert np.mean((z > -0.1) & (z < 0.05)) > 0.95
    assert -0.04 < np.median(z) < 0.0


def test_flags_two_parameter_and_g_out_of_range(gaia):
    df = gaia.copy()
    df.loc[:9, "astrometric_params_solved"] = 3  # 2-parameter solutions
    df.loc[10:14, "phot_g_mean_mag"] = 5.5  # brighter than G = 6
    df.loc[15:19, "phot_g_mean_mag"] = 21.0  # the limit itself is excluded
    df.loc[20:24, "ecl_lat"] = np.nan
    df.loc[25:29, "astrometric_params_solved"] = 7
    zpt_mas, available = parallax_zero_point(df)  # must not raise
    assert not available[:30].any()
    assert np.isnan(zpt_mas[:30]).all()
    # the other rows are unchanged
    ref_z, ref_a = parallax_zero_point(gaia)
    np.testing.assert_array_equal(available[30:], ref_a[30:])
    np.testing.assert_array_equal(zpt_mas[30:][ref_a[30:]], ref_z[30:][ref_a[30:]])


def test_nullable_dtypes(gaia):
    df = gaia.copy()
    for col in ["phot_g_mean_mag", "nu_eff_used_in_astrometry", "pseudocolour", "ecl_lat"]:
        df[col] = df[col].astype("Float64")
    df["astrometric_params_solved"] = df["astrometric_params_solved"].astype("Int64")
    df.loc[0, "astrometric_params_solved"] = pd.NA
    z, a = parallax_zero_point(df)
    ref_z, ref_a = parallax_zero_point(gaia)
    assert not a[0]
    np.testing.assert_array_equal(a[1:], ref_a[1:])


def test_corrected_parallax_by_hand():
    # 1.0 - (-0.02) = 1.02; unavailable -> uncorrected
    out = corrected_parallax(
        np.array([1.0, 1.0]), np.array([-0.02, np.nan]), np.array([True, False])
    )
    assert out.tolist() == [pytest.approx(1.02), 1.0]


def test_missing_columns_warn_and_skip(gaia):
    df = gaia.drop(columns=["pseudocolour", "ecl_lat"])
    with pytest.warns(RuntimeWarning, match=r"\['pseudocolour', 'ecl_lat'\]"):
        z, a = parallax_zero_point(df)
    assert not a.any() and np.isnan(z).all() and len(z) == len(df)


def test_empty_and_thread_safe(gaia):
    z, a = parallax_zero_point(gaia.iloc[:0])
    assert z.shape == a.shape == (0,)
    results = []

    def work():
        results.append(parallax_zero_point(gaia)[0])

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for r in results[1:]:
        np.testing.assert_array_equal(r, results[0])
