"""Errors, quality columns, radial velocities, dust: realistic levels in a seeded chunk."""

from __future__ import annotations

import numpy as np
import pytest

from bigcat.astrometry import frames
from bigcat.synthetic import MockChunk, MockParams, galaxy, observe, stars


def test_parallax_error_vs_g(chunk0: MockChunk) -> None:
    ph = chunk0.photometry
    g, err = ph["phot_g_mean_mag"], ph["parallax_error"]
    five = ph["astrometric_params_solved"] == 31
    at13 = err[five & g.between(12.7, 13.3)].median()
    assert 0.012 < at13 < 0.03
    # extrapolate the kernel to G = 20 (survey stops at 19.5)
    sig20 = observe.parallax_error(
        np.full(2000, 20.0), np.zeros(2000, bool), np.random.default_rng(0)
    )
    assert 0.3 < np.median(sig20) < 0.7
    faint = err[five & g.between(19.2, 19.5)].median()
    assert 0.3 < faint < 0.7


def test_observed_parallax_is_truth_plus_zero_point_plus_noise(chunk0: MockChunk) -> None:
    ph, tr = chunk0.photometry, chunk0.truth
    pull = (ph["parallax"] - tr["true_parallax"] - tr["true_zero_point"]) / ph["parallax_error"]
    assert abs(pull.mean()) < 0.05
    assert pull.std() == pytest.approx(1.0, abs=0.05)
    assert tr["true_zero_point"].between(-0.15, 0.1).all()
    assert tr["true_zero_point"].median() == pytest.approx(-0.025, abs=0.02)


def test_quality_cut_failure_fractions(chunk0: MockChunk) -> None:
    ph = chunk0.photometry
    fails = {
        "excess": (ph["phot_bp_rp_excess_factor"] > 3.0).mean(),
        "ruwe": (ph["ruwe"] > 1.4).mean(),
        "w1": (ph["w1_flags"] != 0).mean(),
        "w2": (ph["w2_flags"] != 0).mean(),
    }
    for name, frac in fails.items():
        assert 0.01 <= frac <= 0.10, (name, frac)
    ok = ph["phot_bp_rp_excess_factor"].dropna()
    assert ok[ok < 3].between(1.1, 1.5).mean() > 0.95
    assert ph["ruwe"].median() == pytest.approx(1.0, abs=0.03)


def test_crowded_bulge_fails_more(chunk0: MockChunk) -> None:
    ph, tr = chunk0.photometry, chunk0.truth
    crowded = (tr["true_b"].abs() < 3) & (tr["true_l"].abs() < 10)
    bad = (ph["w2_flags"] != 0) | (ph["phot_bp_rp_excess_factor"] > 3)
    assert bad[crowded].mean() > 1.5 * bad[~crowded].mean()


def test_six_parameter_share(chunk0: MockChunk) -> None:
    ph = chunk0.photometry
    six = ph["astrometric_params_solved"] == 95
    assert 0.07 <= six.mean() <= 0.25
    assert six[ph["phot_g_mean_mag"] > 18.5].mean() > six[ph["phot_g_mean_mag"] < 16].mean()


def test_radial_velocities_only_for_bright_stars(chunk0: MockChunk, params: MockParams) -> None:
    ph, tr = chunk0.photometry, chunk0.truth
    has = ph["radial_velocity"].notna()
    assert (ph.loc[has, "phot_g_mean_mag"] < params.rv_g_max).all()
    assert 0.15 < has.mean() < 0.6
    err = ph.loc[has, "radial_velocity_error"]
    assert err.between(1.0, 6.0).all()
    pull = (ph.loc[has, "radial_velocity"] - tr.loc[has, "true_radial_velocity"]) / err
    assert pull.std() == pytest.approx(1.0, abs=0.1)
    assert ph.loc[~has, "radial_velocity_error"].isna().all()


def test_selection_limits(chunk0: MockChunk, params: MockParams) -> None:
    ph = chunk0.photometry
    assert ph["phot_g_mean_mag"].between(params.g_min, params.g_max).all()
    assert (ph["ks_m"] < params.ks_max).all()
    assert ph["ks_msigcom"].max() < 0.15
    assert ph.loc[ph["ks_m"] > 14.0, "ks_msigcom"].median() > 0.05


def test_inner_bulge_is_heavily_extincted(chunk0: MockChunk, params: MockParams) -> None:
    # the dust model itself, for bulge stars at |b| < 2 deg (before selection)
    rng = np.random.default_rng(6)
    pos = galaxy.sample_positions("bulge", 200_000, rng, params)
    rel = pos - frames.sun_position_kpc()[:, None]
    b = np.degrees(np.arcsin(rel[2] / np.linalg.norm(rel, axis=0)))
    ell = np.degrees(np.arctan2(rel[1], rel[0]))
    inner = (np.abs(b) < 2) & (np.abs(ell) < 5)
    av = observe.extinction_av(pos[:, inner], params)
    assert np.median(av) > 5.0
    assert np.quantile(av, 0.9) > 10.0
    # the survey only sees the less extincted of them, but still through several magnitudes
    tr = chunk0.truth
    sel = (tr["true_population"] == "bulge") & (tr["true_b"].abs() < 2) & (tr["true_l"].abs() < 5)
    assert sel.sum() > 20
    assert tr.loc[sel, "true_a_v"].median() > 3.0
    np.testing.assert_allclose(tr["true_a_ks"], 0.078 * tr["true_a_v"])


def test_baades_window_extinction(params: MockParams) -> None:
    sun = frames.sun_position_kpc()
    ell, b = np.radians(1.0), np.radians(-4.0)
    direction = np.array([np.cos(b) * np.cos(ell), np.cos(b) * np.sin(ell), np.sin(b)])
    av = observe.extinction_av(sun[:, None] + 8.0 * direction[:, None], params, patchy=False)
    assert 1.5 <= av[0] <= 2.5


def test_extinction_integral_converges(params: MockParams) -> None:
    rng = np.random.default_rng(4)
    direction = rng.normal(size=(3, 500))
    direction /= np.linalg.norm(direction, axis=0)
    pos = frames.sun_position_kpc()[:, None] + direction * rng.uniform(0.1, 20.0, 500)
    coarse = observe.extinction_av(pos, params, patchy=False)
    old = observe._N_LOS
    try:
        observe._N_LOS = 400
        fine = observe.extinction_av(pos, params, patchy=False)
    finally:
        observe._N_LOS = old
    assert np.abs(coarse - fine).max() < 0.1 * np.maximum(fine, 0.5).max()
    assert np.all(np.abs(coarse - fine) <= 0.08 * fine + 1e-3)


@pytest.mark.parametrize("pop", ["thin_disc", "thick_disc", "halo", "bulge"])
def test_dwarf_mks_bound(pop: str) -> None:
    """The local-volume truncation for dwarfs relies on M_Ks >= DWARF_MKS_MIN."""
    rng = np.random.default_rng(5)
    feh = rng.uniform(-2.7, 0.7, 200_000)
    st = stars.sample_dwarfs(pop, feh, rng)
    mks = stars.absolute_magnitudes(st["teff"], st["logg"], feh, st["mass"], rng)["ks"]
    assert mks.min() > stars.DWARF_MKS_MIN[pop]
