"""Fixtures for the photometry kernel tests: small, seeded, realistic partitions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bigcat.schema import INPUT_COLUMNS

DATA_DIR = "/work/shared/data"


def make_partition(n: int, seed: int = 0) -> pd.DataFrame:
    """A seeded partition with every input column of the schema and plausible values."""
    rng = np.random.default_rng(seed)
    g = rng.uniform(10.0, 18.0, n)
    bp_rp = rng.uniform(0.8, 2.5, n)
    a_ks = rng.uniform(0.0, 0.5, n)
    j = g - 1.2 * bp_rp
    h = j - rng.uniform(0.3, 0.9, n)
    ks = h - rng.uniform(0.05, 0.2, n)
    w1 = ks - rng.uniform(0.0, 0.15, n)
    w2 = h - 0.05 - a_ks / 0.918 + rng.normal(0.0, 0.03, n)
    frame = {
        "source_id": rng.choice(2**62, size=n, replace=False).astype(np.int64),
        "ra": rng.uniform(0, 360, n),
        "dec": rng.uniform(-90, 90, n),
        "parallax": rng.normal(0.3, 0.3, n),
        "parallax_error": rng.uniform(0.01, 0.3, n),
        "pmra": rng.normal(0, 5, n),
        "pmra_error": rng.uniform(0.01, 0.3, n),
        "pmdec": rng.normal(0, 5, n),
        "pmdec_error": rng.uniform(0.01, 0.3, n),
        "phot_g_mean_mag": g,
        "phot_bp_mean_mag": g + 0.45 * bp_rp,
        "phot_rp_mean_mag": g - 0.55 * bp_rp,
        "phot_bp_rp_excess_factor": rng.uniform(1.1, 3.5, n),
        "ruwe": rng.uniform(0.8, 1.6, n),
        "j_m": j,
        "j_msigcom": rng.uniform(0.02, 0.05, n),
        "h_m": h,
        "h_msigcom": rng.uniform(0.02, 0.05, n),
        "ks_m": ks,
        "ks_msigcom": rng.uniform(0.02, 0.05, n),
        "w1_mag": w1,
        "w1_mag_error": rng.uniform(0.01, 0.05, n),
        "w2_mag": w2,
        "w2_mag_error": rng.uniform(0.01, 0.05, n),
        "w1_flags": rng.choice([0, 0, 0, 1], n).astype(np.int32),
        "w2_flags": rng.choice([0, 0, 0, 4], n).astype(np.int64),
        "pmra_pmdec_corr": rng.uniform(-0.5, 0.5, n),
        "radial_velocity": np.where(rng.random(n) < 0.3, rng.normal(0, 100, n), np.nan),
        "radial_velocity_error": rng.uniform(0.5, 5, n),
        "nu_eff_used_in_astrometry": rng.uniform(1.3, 1.7, n),
        "pseudocolour": rng.uniform(1.3, 1.7, n),
        "ecl_lat": rng.uniform(-90, 90, n),
        "astrometric_params_solved": rng.choice([31, 31, 95, 3], n).astype(np.int16),
    }
    df = pd.DataFrame(frame)
    assert list(df.columns) == INPUT_COLUMNS
    return df


@pytest.fixture
def partition_factory():
    """``make_partition(n, seed)``: a seeded partition with every schema input column."""
    return make_partition


@pytest.fixture
def partition() -> pd.DataFrame:
    return make_partition(500, seed=1)
