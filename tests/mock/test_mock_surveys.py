"""The mock's survey tables (bigcat/synthetic/surveys.py): columns, epochs, noise, pairing, seeding."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bigcat.catalog.crossmatch import flux_to_mag, jd_to_year, propagate, separation_arcsec
from bigcat.synthetic import MockChunk, MockParams, simulate_chunk
from bigcat.synthetic.surveys import (
    GAIA_TABLE_COLUMNS,
    TMASS_TABLE_COLUMNS,
    TRUTH_COLUMNS,
    UNWISE_TABLE_COLUMNS,
    simulate_surveys,
)

from .conftest import N_ROWS


@pytest.fixture(scope="module")
def surveys(chunk0: MockChunk, params: MockParams):
    return simulate_surveys(chunk0.photometry, chunk0.truth, params, 0)


def test_columns_ids_and_sizes(surveys, chunk0):
    assert list(surveys.gaia_source.columns) == GAIA_TABLE_COLUMNS
    assert list(surveys.tmass_psc.columns) == TMASS_TABLE_COLUMNS
    assert list(surveys.unwise.columns) == UNWISE_TABLE_COLUMNS
    assert list(surveys.crossmatch_truth.columns) == TRUTH_COLUMNS
    assert (
        surveys.gaia_source.source_id.to_numpy() == chunk0.photometry.source_id.to_numpy()
    ).all()
    assert (surveys.gaia_source.ref_epoch == 2016.0).all()
    assert surveys.tmass_psc.designation.is_unique and surveys.unwise.unwise_objid.is_unique
    assert surveys.tmass_psc.designation.str.match(r"^\d{8}[+-]\d{7}_\d{11}$").all()
    assert surveys.unwise.unwise_objid.str.match(r"^\d{4}[pm]\d{3}o\d{11}$").all()
    truth = surveys.crossmatch_truth
    for col, lo, hi in (("tmass_designation", 0.015, 0.06), ("unwise_objid", 0.02, 0.07)):
        assert lo < truth[col].isna().mean() < hi  # missing counterparts, a few per cent
    # extra sources: unrelated neighbours and orphans, ~5% on top of the stars' own
    n_t = len(surveys.tmass_psc) - truth.tmass_designation.notna().sum()
    assert 0.03 * N_ROWS < n_t < 0.08 * N_ROWS
    assert set(truth.tmass_designation.dropna()) <= set(surveys.tmass_psc.designation)


def test_epochs_photometry_and_positions(surveys, chunk0):
    phot, truth = chunk0.photometry, chunk0.truth
    t = surveys.crossmatch_truth.merge(
        surveys.tmass_psc, left_on="tmass_designation", right_on="designation"
    ).merge(phot, on="source_id", suffixes=("", "_g"))
    years = jd_to_year(surveys.tmass_psc.jdate)
    assert years.min() >= 1997.4 and years.max() <= 2001.2
    assert np.array_equal(t.k_m, t.ks_m) and np.array_equal(t.j_msigcom, t.j_msigcom_g)
    assert set(surveys.tmass_psc.ph_qual.str[0]) <= set("ABCD")
    # positions: the true position at the source's epoch, ~80 mas per coordinate
    tr = truth.set_index("source_id").loc[t.source_id]
    ra, dec = propagate(t.ra_g, t.dec_g, tr.true_pmra, tr.true_pmdec, jd_to_year(t.jdate) - 2016)
    sep = separation_arcsec(ra, dec, t.ra, t.dec)
    assert 0.09 < np.median(sep) < 0.2 and np.percentile(sep, 99) < 0.6
    # without the motion the 2MASS source of a fast star is far from its Gaia position
    far = separation_arcsec(t.ra_g, t.dec_g, t.ra, t.dec)
    fast = np.hypot(tr.true_pmra, tr.true_pmdec).to_numpy() > 100
    assert fast.sum() > 10 and np.median(far[fast]) > 1.5
    u = surveys.crossmatch_truth.merge(
        surveys.unwise, left_on="unwise_objid", right_on="unwise_objid"
    ).merge(phot, on="source_id", suffixes=("", "_g"))
    assert np.allclose(flux_to_mag(u.flux_w1), u.w1_mag, atol=1e-9)
    assert np.allclose(2.5 / np.log(10) * u.dflux_w2 / u.flux_w2, u.w2_mag_error, rtol=1e-9)
    assert np.array_equal(u.flags_unwise_w1, u.w1_flags)
    sep = separation_arcsec(u.ra_g, u.dec_g, u.ra, u.dec)
    assert 0.15 < np.median(sep) < 0.4  # 150 mas per coordinate and more in crowded fields


def test_seeded_per_chunk_and_independent_of_the_other_tables(params, chunk1):
    a = simulate_surveys(chunk1.photometry, chunk1.truth, params, 1)
    b = simulate_surveys(chunk1.photometry, chunk1.truth, params, 1)
    for name in ("gaia_source", "tmass_psc", "unwise", "crossmatch_truth"):
        pd.testing.assert_frame_equal(getattr(a, name), getattr(b, name))
    c = simulate_surveys(chunk1.photometry, chunk1.truth, MockParams(seed=8), 1)
    assert not np.array_equal(a.tmass_psc.ra, c.tmass_psc.ra)
    # the chunk's own tables do not depend on this kernel (its stream is separate)
    again = simulate_chunk(params, 1, 5_000)
    pd.testing.assert_frame_equal(again.photometry, chunk1.photometry)
    pd.testing.assert_frame_equal(again.apogee, chunk1.apogee)
