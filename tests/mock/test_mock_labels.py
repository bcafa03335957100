"""APOGEE-like and LAMOST-like label tables."""

from __future__ import annotations

import numpy as np
import pytest

from bigcat.synthetic import MockChunk, MockParams, simulate_chunk
from bigcat.synthetic.labels import apogee_ids


@pytest.fixture(scope="module")
def labelled(params: MockParams) -> MockChunk:
    return simulate_chunk(MockParams(seed=params.seed, bad_label_fraction=0.05), 4, 20_000)


def test_label_fraction_and_overlap(chunk0: MockChunk) -> None:
    tr = chunk0.truth
    giant = tr["true_is_giant"]
    per_giant = (tr["true_in_apogee"] | tr["true_in_lamost"])[giant].mean()
    assert 0.04 <= per_giant <= 0.09
    assert (tr["true_in_apogee"] & tr["true_in_lamost"]).sum() > 10
    assert len(chunk0.apogee) == tr["true_in_apogee"].sum()
    assert len(chunk0.lamost) == tr["true_in_lamost"].sum()
    # LAMOST also has dwarfs; APOGEE giants only
    assert (~giant[tr["true_in_lamost"]]).sum() > 0
    assert giant[tr["true_in_apogee"]].all()


def test_label_selection_and_errors(chunk0: MockChunk, params: MockParams) -> None:
    ap, la = chunk0.apogee, chunk0.lamost
    good_ap = ap["TEFF_ERR"] < ap["TEFF"]
    assert ap.loc[good_ap, "FE_H_ERR"].between(0.01, 0.05).all()
    assert ap.loc[good_ap, "TEFF_ERR"].between(50, 100).all()
    assert (la["dec"] > -10.01).all()
    assert la["feh_err"].between(0.05, 0.2).mean() > 0.99
    ph = chunk0.photometry.set_index("source_id")
    ids = ap.loc[ap["GAIAEDR3_SOURCE_ID"] > 0, "GAIAEDR3_SOURCE_ID"]
    assert (ph.loc[ids, "h_m"] < params.apogee_h_max).all()
    assert 0.9 < (ap["GAIAEDR3_SOURCE_ID"] > 0).mean() < 0.99
    assert ((ap["GAIAEDR3_SOURCE_ID"] == 0) | (ap["GAIAEDR3_SOURCE_ID"] > 0)).all()
    assert 0.84 < (la["gaia_source_id"] > 0).mean() < 0.96
    assert la["obsid"].is_unique


def test_positions_jittered_under_0p3_arcsec(chunk0: MockChunk) -> None:
    ph = chunk0.photometry.set_index("source_id")
    la = chunk0.lamost[chunk0.lamost["gaia_source_id"] > 0]
    ref = ph.loc[la["gaia_source_id"]]
    dra = (la["ra"].to_numpy() - ref["ra"].to_numpy()) * np.cos(np.radians(ref["dec"].to_numpy()))
    sep = 3600 * np.hypot(dra, la["dec"].to_numpy() - ref["dec"].to_numpy())
    assert sep.max() < 0.3
    assert sep.mean() > 0.01


def test_labelled_giants_span_metallicity(labelled: MockChunk) -> None:
    tr = labelled.truth
    lab = (tr["true_in_apogee"] | tr["true_in_lamost"]) & tr["true_is_giant"]
    feh = tr.loc[lab, "true_feh"]
    assert feh.min() < -2.0 and feh.max() > 0.4
    assert (feh < -1.0).mean() < 0.15


def test_bad_labels_removed_by_pipeline_rule(labelled: MockChunk) -> None:
    ap, la = labelled.apogee, labelled.lamost
    bad_ap = (ap["TEFF_ERR"] / ap["TEFF"] > 1) | (ap["LOGG_ERR"] / ap["LOGG"] > 1)
    bad_la = (la["teff_err"] / la["teff"] > 1) | (la["logg_err"] / la["logg"] > 1)
    assert bad_ap.sum() > 0 and bad_la.sum() > 0
    truth_bad = labelled.truth["true_bad_label"]
    assert truth_bad.sum() >= max(bad_ap.sum(), bad_la.sum())
    assert truth_bad.sum() <= bad_ap.sum() + bad_la.sum()
    # after the rule, labels are truth + noise: no wild [Fe/H] left
    tr = labelled.truth.set_index("source_id")
    good = ap[~bad_ap & (ap["GAIAEDR3_SOURCE_ID"] > 0)]
    resid = good["FE_H"].to_numpy() - tr.loc[good["GAIAEDR3_SOURCE_ID"], "true_feh"].to_numpy()
    assert np.abs(resid).max() < 0.25
    goodl = la[~bad_la & (la["gaia_source_id"] > 0)]
    resid = goodl["feh"].to_numpy() - tr.loc[goodl["gaia_source_id"], "true_feh"].to_numpy()
    assert np.abs(resid).max() < 1.2


def test_apogee_id_format() -> None:
    ids = apogee_ids(np.array([266.37796, 0.0]), np.array([-29.0342, 5.5]))
    assert ids[0] == "2M17453071-2902031"
    assert ids[1] == "2M00000000+0530000"
