"""Contract of ``simulate_chunk``: columns, dtypes, determinism, source ids, fractions."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from bigcat.schema import APOGEE_COLUMNS, BANDS, INPUT_COLUMNS, LAMOST_COLUMNS, TRUTH_PREFIX
from bigcat.synthetic import MockChunk, MockParams, simulate_chunk, truth_summary
from bigcat.synthetic.survey import INT_COLUMNS

from .conftest import N_ROWS


def test_photometry_columns_and_dtypes(chunk0: MockChunk) -> None:
    ph = chunk0.photometry
    assert list(ph.columns) == INPUT_COLUMNS
    assert len(ph) == N_ROWS
    for col in INPUT_COLUMNS:
        expected = np.int64 if col in INT_COLUMNS else np.float64
        assert ph[col].dtype == expected, col


def test_truth_columns(chunk0: MockChunk) -> None:
    tr = chunk0.truth
    assert len(tr) == N_ROWS
    assert (tr["source_id"].to_numpy() == chunk0.photometry["source_id"].to_numpy()).all()
    assert all(c == "source_id" or c.startswith(TRUTH_PREFIX) for c in tr.columns)
    needed = [
        "true_population", "true_bulge_component", "true_stage", "true_is_giant",
        "true_teff", "true_logg", "true_feh", "true_mass", "true_distance_pc",
        "true_parallax", "true_a_v", "true_a_ks", "true_x_gc", "true_y_gc", "true_z_gc",
        "true_vx", "true_vy", "true_vz", "true_radial_velocity", "true_pmra", "true_pmdec",
        "true_h_w2_0", "true_zero_point", *[f"true_abs_{b}" for b in BANDS],
    ]  # fmt: skip
    assert not set(needed) - set(tr.columns)
    assert tr["true_is_giant"].dtype == bool
    assert set(tr["true_population"]) == {"thin_disc", "thick_disc", "halo", "bulge"}
    assert set(tr["true_stage"]) == {"dwarf", "rgb", "red_clump"}
    assert set(tr["true_bulge_component"]) == {"", "metal_rich", "metal_poor"}
    assert (tr["true_bulge_component"] != "").eq(tr["true_population"] == "bulge").all()
    assert tr["true_feh"].between(-2.7, 0.7).all()


def test_no_nans_where_not_expected(chunk0: MockChunk) -> None:
    ph = chunk0.photometry
    may_be_nan = {
        "radial_velocity", "radial_velocity_error", "nu_eff_used_in_astrometry",
        "pseudocolour", "phot_bp_mean_mag", "phot_rp_mean_mag", "phot_bp_rp_excess_factor",
    }  # fmt: skip
    for col in set(INPUT_COLUMNS) - may_be_nan:
        assert np.isfinite(ph[col].to_numpy(dtype=float)).all(), col
    five = ph["astrometric_params_solved"] == 31
    assert ph.loc[five, "nu_eff_used_in_astrometry"].between(1.24, 1.72).all()
    assert ph.loc[five, "pseudocolour"].isna().all()
    assert ph.loc[~five, "pseudocolour"].between(1.24, 1.72).all()
    assert ph.loc[~five, "nu_eff_used_in_astrometry"].isna().all()


def test_deterministic(params: MockParams, chunk1: MockChunk) -> None:
    again = simulate_chunk(params, 1, 5_000)
    for name in ("photometry", "truth", "apogee", "lamost"):
        pd.testing.assert_frame_equal(getattr(again, name), getattr(chunk1, name))
    other = simulate_chunk(params, 2, 5_000)
    assert not np.array_equal(other.photometry["ra"], chunk1.photometry["ra"])
    reseeded = simulate_chunk(MockParams(seed=8), 1, 5_000)
    assert not np.array_equal(reseeded.photometry["ra"], chunk1.photometry["ra"])


def test_source_ids_unique_across_chunks(chunk0: MockChunk, chunk1: MockChunk) -> None:
    ids = np.concatenate([chunk0.photometry["source_id"], chunk1.photometry["source_id"]])
    assert np.unique(ids).size == ids.size
    assert (ids > 0).all()
    # Gaia-like: the level-12 HEALPix index is source_id // 2**35
    import healpy as hp

    ph = chunk0.photometry
    pix = hp.ang2pix(4096, ph["ra"].to_numpy(), ph["dec"].to_numpy(), nest=True, lonlat=True)
    assert (ph["source_id"].to_numpy() // 2**35 == pix).all()


def test_chunk_and_row_limits(params: MockParams) -> None:
    with pytest.raises(ValueError, match="chunk must lie"):
        simulate_chunk(params, 2**13, 10)
    with pytest.raises(ValueError, match="n_rows must lie"):
        simulate_chunk(params, 0, 0)


def test_population_and_giant_fractions(chunk0: MockChunk, params: MockParams) -> None:
    tr = chunk0.truth
    share = tr["true_population"].value_counts(normalize=True)
    for pop, frac in params.population_fractions.items():
        assert share[pop] == pytest.approx(frac, abs=1e-3)
    assert 0.30 <= share["bulge"] <= 0.40
    assert 0.50 <= tr["true_is_giant"].mean() <= 0.65
    giant = tr["true_is_giant"].to_numpy()
    assert (tr["true_stage"].to_numpy()[giant] != "dwarf").all()
    assert tr.loc[giant, "true_logg"].between(0.2, 3.8).all()
    assert tr.loc[~giant, "true_teff"].between(4000, 7000).all()
    clump = tr["true_stage"] == "red_clump"
    assert tr.loc[clump, "true_abs_ks"].median() == pytest.approx(-1.6, abs=0.15)


def test_truth_summary_is_json(params: MockParams) -> None:
    s = truth_summary(params)
    text = json.dumps(s)
    assert "feh_gradient" in text
    assert s["gradient"]["feh_gradient_dex_per_kpc"] == params.feh_gradient
    assert s["vertex"]["vertex_deg_metal_rich"] == params.vertex_deg
    assert s["frame"]["v_sun_kms"] == [12.9, 245.6, 7.78]
    assert s["frame"]["galcen_distance_kpc"] == 8.122
    assert 0.06 <= s["rjce"]["intrinsic_h_w2_median_giants"] <= 0.10
    assert s["structure"]["bar_angle_deg"] == 27.0


def test_label_table_columns(chunk0: MockChunk) -> None:
    assert list(chunk0.apogee.columns) == APOGEE_COLUMNS
    assert list(chunk0.lamost.columns) == LAMOST_COLUMNS
    assert chunk0.lamost["obsid"].dtype == np.int64
    assert chunk0.lamost["gaia_source_id"].dtype == np.int64
    assert chunk0.apogee["GAIAEDR3_SOURCE_ID"].dtype == np.int64
