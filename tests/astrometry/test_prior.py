"""GGD prior tables: the official Bailer-Jones table, bad tables, and bigcat's default."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bigcat.astrometry import PriorTable, load_prior_table
from bigcat.astrometry.model_prior import model_prior_table as default_prior_table
from bigcat.errors import InputError

OFFICIAL = (
    Path(__file__).resolve().parents[3] / "shared" / "data" / "bailer-jones-2021-prior_summary.csv"
)
needs_official = pytest.mark.skipif(not OFFICIAL.exists(), reason="shared prior table absent")


@pytest.fixture(scope="module")
def official_df() -> pd.DataFrame:
    return pd.read_csv(OFFICIAL)


@needs_official
def test_official_table_loads_and_looks_up(official_df: pd.DataFrame) -> None:
    table = load_prior_table(OFFICIAL)
    assert table.healpix5.size == 12_288
    row = official_df.loc[official_df["healpix"] == 6000].iloc[0]
    length, alpha, beta = table.lookup(np.array([6000, 0, -1, 12_288]))
    assert (length[0], alpha[0], beta[0]) == (row["GGDrlen"], row["GGDalpha"], row["GGDbeta"])
    assert length[1] == official_df["GGDrlen"].iloc[0]
    assert np.isnan(length[2:]).all() and np.isnan(beta[2:]).all()
    # the table's own GGD medians are reproduced
    np.testing.assert_allclose(table.median_pc(), official_df["GGDmedian"], rtol=1e-9)


def test_pixel_of_h29() -> None:
    h29 = np.array([0, (1 << 48) - 1, 6000 << 48, (6000 << 48) + 12345, (12_288 << 48) - 1])
    np.testing.assert_array_equal(PriorTable.pixel_of(h29), [0, 0, 6000, 6000, 12_287])


def _write(tmp_path: Path, df: pd.DataFrame) -> Path:
    path = tmp_path / "prior.csv"
    df.to_csv(path, index=False)
    return path


def _good() -> pd.DataFrame:
    n = 12_288
    return pd.DataFrame(
        {
            "healpix": np.arange(n),
            "GGDrlen": np.full(n, 1000.0),
            "GGDalpha": np.full(n, 1.0),
            "GGDbeta": np.full(n, 2.0),
        }
    )


def test_synthetic_table_roundtrip(tmp_path: Path) -> None:
    df = _good().sample(frac=1.0, random_state=1)  # row order does not matter
    df.loc[df["healpix"] == 17, "GGDrlen"] = 123.0
    table = load_prior_table(_write(tmp_path, df))
    assert table.lookup(np.array([17]))[0][0] == 123.0
    assert table.source.endswith("prior.csv")


def test_missing_column(tmp_path: Path) -> None:
    path = _write(tmp_path, _good().drop(columns=["GGDalpha", "GGDbeta"]))
    with pytest.raises(InputError, match=r"prior\.csv: missing column\(s\) GGDalpha, GGDbeta"):
        load_prior_table(path)


def test_duplicated_and_missing_pixel(tmp_path: Path) -> None:
    df = _good()
    df.loc[5, "healpix"] = 4
    with pytest.raises(InputError, match=r"duplicated pixel\(s\) 4; missing pixel\(s\) 5"):
        load_prior_table(_write(tmp_path, df))
    with pytest.raises(InputError, match=r"12287 rows, expected 12288; missing pixel\(s\) 9"):
        load_prior_table(_write(tmp_path, _good().drop(index=9)))


def test_out_of_range_pixel(tmp_path: Path) -> None:
    df = _good()
    df.loc[3, "healpix"] = 99_999
    with pytest.raises(InputError, match="not pixels 0..12287"):
        load_prior_table(_write(tmp_path, df))


def test_negative_and_nan_values(tmp_path: Path) -> None:
    df = _good()
    df.loc[df["healpix"] == 42, "GGDrlen"] = -3.0
    with pytest.raises(InputError, match=r"column GGDrlen .* non-positive.*-3\.0 for pixel 42"):
        load_prior_table(_write(tmp_path, df))
    df = _good()
    df.loc[7, "GGDbeta"] = np.nan
    with pytest.raises(InputError, match="column GGDbeta .* for pixel 7"):
        load_prior_table(_write(tmp_path, df))


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="nope.csv: cannot read the file"):
        load_prior_table(tmp_path / "nope.csv")
    bad = tmp_path / "bin.csv"
    bad.write_bytes(b"\xff\xfe\x00garbage\x00\x00")
    with pytest.raises(InputError, match="bin.csv"):
        load_prior_table(bad)


@pytest.fixture(scope="module")
def default() -> PriorTable:
    return default_prior_table()


def _regions(df: pd.DataFrame) -> dict[str, np.ndarray]:
    lon = np.where(df["glon"] > 180, df["glon"] - 360, df["glon"])
    lat = df["glat"].to_numpy()
    return {
        "centre": (np.abs(lon) < 10) & (np.abs(lat) < 5),
        "anticentre": (np.abs(np.abs(lon) - 180) < 10) & (np.abs(lat) < 5),
        "north_pole": lat > 80,
        "south_pole": lat < -80,
        "l90_b30": (np.abs(lon - 90) < 10) & (np.abs(lat - 30) < 5),
    }


def test_default_is_finite_positive_and_cached(default: PriorTable) -> None:
    for arr in (default.length_pc, default.alpha, default.beta):
        assert arr.shape == (12_288,)
        assert np.all(np.isfinite(arr)) and np.all(arr > 0)
    assert default_prior_table() is default
    assert np.all(np.isfinite(default.median_pc()))


@needs_official
def test_default_geometry_and_official_comparison(
    default: PriorTable, official_df: pd.DataFrame
) -> None:
    med = default.median_pc()
    official = load_prior_table(OFFICIAL).median_pc()
    reg = {k: float(np.median(med[m])) for k, m in _regions(official_df).items()}
    assert reg["centre"] > reg["anticentre"]
    assert reg["centre"] > reg["north_pole"] and reg["centre"] > reg["south_pole"]
    # giants of a G < 19.5 survey sit further than Bailer-Jones' all-star priors, but within
    # a sane factor (measured: centre 1.36, anticentre 1.41, poles 4.2-4.4, l90 b30 2.2)
    for name, mask in _regions(official_df).items():
        ratio = reg[name] / float(np.median(official[mask]))
        assert 0.7 < ratio < 6.0, (name, ratio)
