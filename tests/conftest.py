"""Shared fixtures: one LocalCluster for the session, small seeded input tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from distributed import Client, LocalCluster

from bigcat.schema import INPUT_COLUMNS, REQUIRED_COLUMNS, ZEROPOINT_COLUMNS

SHARED_DATA = __import__("pathlib").Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def client():
    """A real two-worker LocalCluster (separate processes, loopback only)."""
    with (
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=":0",
            memory_limit="3GiB",
        ) as cluster,
        Client(cluster) as c,
    ):
        yield c


def make_input_table(n: int, seed: int = 0, first_id: int = 1) -> pd.DataFrame:
    """A table with every SCHEMA.md input column and plausible values (not a galaxy model)."""
    rng = np.random.default_rng(seed)
    data: dict[str, np.ndarray] = {}
    for col, kind in REQUIRED_COLUMNS.items():
        data[col] = rng.integers(0, 2, n) * 0 if kind == "int" else rng.normal(10, 2, n)
    data["source_id"] = np.arange(first_id, first_id + n, dtype=np.int64) * 7919
    data["ra"] = rng.uniform(0, 360, n)
    data["dec"] = np.degrees(np.arcsin(rng.uniform(-1, 1, n)))
    data["parallax"] = rng.normal(0.3, 0.2, n)
    data["parallax_error"] = rng.uniform(0.02, 0.3, n)
    data["ruwe"] = rng.lognormal(0, 0.1, n)
    data["phot_bp_rp_excess_factor"] = rng.uniform(1.1, 1.4, n)
    data["pmra_pmdec_corr"] = rng.uniform(-0.3, 0.3, n)
    data["radial_velocity"] = np.where(rng.random(n) < 0.3, rng.normal(0, 50, n), np.nan)
    data["radial_velocity_error"] = np.where(np.isnan(data["radial_velocity"]), np.nan, 2.0)
    data["nu_eff_used_in_astrometry"] = rng.uniform(1.3, 1.6, n)
    data["pseudocolour"] = np.full(n, np.nan)
    data["ecl_lat"] = rng.uniform(-60, 60, n)
    data["astrometric_params_solved"] = np.full(n, 31, dtype=np.int64)
    frame = pd.DataFrame(data)
    for col, kind in {**REQUIRED_COLUMNS, **ZEROPOINT_COLUMNS}.items():
        frame[col] = frame[col].astype(np.int64 if kind == "int" else np.float64)
    return frame[INPUT_COLUMNS]


@pytest.fixture
def input_table():
    """Factory for seeded input tables."""
    return make_input_table


#: Keys of every gradient result (``analyze_gradient`` and gradient.json).
GRADIENT_KEYS = (
    "slope_dex_per_kpc",
    "slope_error",
    "n_stars",
    "z_range_kpc",
    "binned_abs_z",
    "binned_z",
    "peak",
)


@pytest.fixture
def assert_gradient_keys():
    """Check that a gradient result holds ``GRADIENT_KEYS`` and the ``extra`` keys given."""

    def check(result: dict, *extra: str) -> None:
        for key in (*GRADIENT_KEYS, *extra):
            assert key in result, key

    return check


def _damage_parquet(truncated, flipped, verify=None) -> None:
    """Cut the end off one Parquet file; flip a byte in the middle of the other's data pages
    (before its footer, which stays readable), keeping its size. With ``verify`` (a
    directory): check that `bigcat verify` lists both, the first by its footer, the second
    by its checksum."""
    import pyarrow.parquet as pq

    from bigcat.stages.verify import verify_run

    truncated.write_bytes(truncated.read_bytes()[:-100])
    data = bytearray(flipped.read_bytes())
    footer = int.from_bytes(data[-8:-4], "little")  # then b"PAR1"
    data[(4 + len(data) - 8 - footer) // 2] ^= 0xFF
    flipped.write_bytes(bytes(data))
    pq.ParquetFile(flipped).metadata  # noqa: B018 - the flip is not in the footer: only sha256
    if verify is not None:
        found = verify_run(verify)
        text = "\n".join(found.problems)
        assert not found.ok and str(truncated) in text and str(flipped) in text
        assert "footer cannot be read" in text and "checksum" in text


@pytest.fixture
def damage_parquet():
    """``damage(truncated, flipped)``: two kinds of damage to finished Parquet files."""
    return _damage_parquet
