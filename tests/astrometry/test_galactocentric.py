from __future__ import annotations

import astropy.units as u
import numpy as np
import pandas as pd
import pytest
from astropy.coordinates import SkyCoord

from bigcat.astrometry import frames
from bigcat.astrometry.galactocentric import (
    GALACTOCENTRIC_COLUMNS,
    frame_parameters,
    galactocentric_columns,
    galactocentric_kinematics,
    velocity_covariance,
)
from bigcat.errors import InputError

K = frames.K_PM


def _bulge_stars(n: int, seed: int) -> dict[str, np.ndarray]:
    """Giants towards the bulge: |l|, |b| < 10 deg, d 6-10 kpc, Gaia-like errors."""
    from astropy.coordinates import Galactic

    rng = np.random.default_rng(seed)
    gal = SkyCoord(
        l=rng.uniform(-10, 10, n) * u.deg, b=rng.uniform(-10, 10, n) * u.deg, frame=Galactic()
    ).icrs
    return {
        "ra": gal.ra.deg,
        "dec": gal.dec.deg,
        "distance_kpc": rng.uniform(6.0, 10.0, n),
        "pmra": rng.normal(-3.0, 3.0, n),
        "pmdec": rng.normal(-5.0, 3.0, n),
        "pmra_error": rng.uniform(0.03, 0.3, n),
        "pmdec_error": rng.uniform(0.03, 0.3, n),
        "pmra_pmdec_corr": rng.uniform(-0.5, 0.5, n),
        "radial_velocity": rng.normal(0.0, 100.0, n),
        "radial_velocity_error": rng.uniform(1.0, 5.0, n),
    }


def _run(s: dict[str, np.ndarray], distance_error: np.ndarray) -> dict[str, np.ndarray]:
    return galactocentric_kinematics(
        s["ra"],
        s["dec"],
        s["distance_kpc"],
        distance_error,
        s["pmra"],
        s["pmdec"],
        s["pmra_error"],
        s["pmdec_error"],
        s["pmra_pmdec_corr"],
        s["radial_velocity"],
        s["radial_velocity_error"],
    )


def _mc_draws(s: dict[str, np.ndarray], distance: np.ndarray, rng) -> np.ndarray:
    """Positions and velocities (6, n_draw, n_star) for distance draws (n_draw, n_star)."""
    n_draw, n = distance.shape
    z = rng.normal(size=(2, n_draw, n))
    rho = s["pmra_pmdec_corr"]
    pmra = s["pmra"] + s["pmra_error"] * z[0]
    pmdec = s["pmdec"] + s["pmdec_error"] * (rho * z[0] + np.sqrt(1 - rho**2) * z[1])
    rv = s["radial_velocity"] + s["radial_velocity_error"] * rng.normal(size=(n_draw, n))
    zero = np.zeros(distance.size)
    out = galactocentric_kinematics(
        np.broadcast_to(s["ra"], distance.shape).ravel(),
        np.broadcast_to(s["dec"], distance.shape).ravel(),
        distance.ravel(),
        zero,
        pmra.ravel(),
        pmdec.ravel(),
        zero,
        zero,
        zero,
        rv.ravel(),
        zero,
    )
    names = ("x_gc", "y_gc", "z_gc", "vx_gc", "vy_gc", "vz_gc")
    return np.stack([out[c].reshape(n_draw, n) for c in names])


def test_matches_astropy_galactocentric() -> None:
    s = _bulge_stars(300, seed=1)
    rng = np.random.default_rng(2)
    s["ra"] = rng.uniform(0, 360, 300)  # whole sky, not only the bulge
    s["dec"] = np.degrees(np.arcsin(rng.uniform(-1, 1, 300)))
    ours = _run(s, np.zeros(300))
    sky = SkyCoord(
        ra=s["ra"] * u.deg,
        dec=s["dec"] * u.deg,
        distance=s["distance_kpc"] * u.kpc,
        pm_ra_cosdec=s["pmra"] * u.mas / u.yr,
        pm_dec=s["pmdec"] * u.mas / u.yr,
        radial_velocity=s["radial_velocity"] * u.km / u.s,
        frame="icrs",
    ).transform_to(frames.astropy_galactocentric())
    xyz = sky.cartesian.xyz.to_value(u.kpc)
    vxyz = sky.velocity.d_xyz.to_value(u.km / u.s)
    for i, c in enumerate(("x_gc", "y_gc", "z_gc")):
        np.testing.assert_allclose(ours[c], xyz[i], rtol=0, atol=1e-9)
    for i, c in enumerate(("vx_gc", "vy_gc", "vz_gc")):
        np.testing.assert_allclose(ours[c], vxyz[i], rtol=0, atol=1e-7)


def test_hand_worked_star_at_the_galactic_centre() -> None:
    # at the GC with no motion relative to the Sun: position 0, velocity = v_sun; the line of
    # sight is (almost exactly) +X, so sigma_vx = sigma_vr and the transverse sigmas are
    # K sqrt(d^2 + sigma_d^2) sigma_pm
    d, sd, spm, svr = frames.GALCEN_DISTANCE_KPC, 0.8, 0.1, 3.0
    one = np.ones(1)
    out = galactocentric_kinematics(
        frames.GALCEN_RA_DEG * one,
        frames.GALCEN_DEC_DEG * one,
        d * one,
        sd * one,
        0 * one,
        0 * one,
        spm * one,
        spm * one,
        0 * one,
        0 * one,
        svr * one,
    )
    for c in ("x_gc", "y_gc", "z_gc"):
        assert abs(out[c][0]) < 1e-9
    np.testing.assert_allclose(
        [out["vx_gc"][0], out["vy_gc"][0], out["vz_gc"][0]], frames.V_SUN_KMS, atol=1e-9
    )
    assert out["x_gc_error"][0] == pytest.approx(sd, rel=1e-5)
    assert out["y_gc_error"][0] < 1e-6 and out["z_gc_error"][0] < 3e-3 * sd
    assert out["vx_gc_error"][0] == pytest.approx(svr, rel=1e-4)
    transverse = K * np.hypot(d, sd) * spm
    assert out["vy_gc_error"][0] == pytest.approx(transverse, rel=1e-4)
    assert out["vz_gc_error"][0] == pytest.approx(transverse, rel=1e-4)


def test_linearised_covariance_matches_monte_carlo_for_bulge_stars() -> None:
    n, n_draw = 60, 6000
    s = _bulge_stars(n, seed=3)
    sd = 0.1 * s["distance_kpc"]
    lin = _run(s, sd)
    rng = np.random.default_rng(4)
    draws = _mc_draws(s, s["distance_kpc"] + sd * rng.normal(size=(n_draw, n)), rng)
    mc_cov = np.einsum("ikn,jkn->nij", draws - draws.mean(1, keepdims=True), draws) / n_draw
    err_names = ("x_gc_error", "y_gc_error", "z_gc_error")
    err_names += ("vx_gc_error", "vy_gc_error", "vz_gc_error")
    lin_err = np.stack([lin[c] for c in err_names], axis=1)
    mc_err = np.sqrt(np.einsum("nii->ni", mc_cov))
    ratio = lin_err / mc_err
    # positions are exact in d; velocities: MC noise ~ 1/sqrt(2 n_draw) ~ 1 %
    assert np.abs(ratio - 1).max() < 0.06, np.abs(ratio - 1).max()
    lin_cov = velocity_covariance(lin)
    sig = np.sqrt(np.einsum("nii->ni", mc_cov[:, 3:, 3:]))
    mc_corr = mc_cov[:, 3:, 3:] / (sig[:, :, None] * sig[:, None, :])
    lsig = np.sqrt(np.einsum("nii->ni", lin_cov))
    lin_corr = lin_cov / (lsig[:, :, None] * lsig[:, None, :])
    assert np.abs(lin_corr - mc_corr).max() < 0.06
    # the test can fail: without the distance-velocity term the errors are far off
    no_d = _run({**s}, np.zeros(n))
    ratio_no_d = np.stack([no_d[c] for c in err_names[3:]], axis=1) / mc_err[:, 3:]
    assert np.median(np.abs(ratio_no_d - 1)) > 0.15


def test_linearised_errors_with_asymmetric_distance_posterior() -> None:
    # distance = 1 / parallax with a 10 % Gaussian parallax error (skewed in d); the kernel
    # takes the median and (p84 - p16) / 2, as galactocentric_columns does
    n, n_draw = 60, 6000
    s = _bulge_stars(n, seed=5)
    rng = np.random.default_rng(6)
    plx = 1.0 / s["distance_kpc"]
    dist = 1.0 / (plx * (1.0 + 0.1 * rng.normal(size=(n_draw, n))))
    p16, p50, p84 = np.percentile(dist, [16, 50, 84], axis=0)
    lin = _run({**s, "distance_kpc": p50}, (p84 - p16) / 2)
    draws = _mc_draws(s, dist, rng)
    lo, hi = np.percentile(draws, [16, 84], axis=1)
    mc_err = (hi - lo) / 2  # robust sigma per coordinate, (6, n)
    names = ("x_gc_error", "y_gc_error", "z_gc_error")
    names += ("vx_gc_error", "vy_gc_error", "vz_gc_error")
    lin_err = np.stack([lin[c] for c in names])
    big = mc_err > 0.05 * mc_err.max(axis=1, keepdims=True)  # skip near-zero components
    assert np.abs(lin_err[big] / mc_err[big] - 1).max() < 0.15


def _catalogue(n: int, seed: int) -> pd.DataFrame:
    s = _bulge_stars(n, seed)
    d_pc = 1000 * s.pop("distance_kpc")
    return pd.DataFrame(
        {**s, "distance_pc": d_pc, "distance_pc_p16": 0.9 * d_pc, "distance_pc_p84": 1.1 * d_pc}
    )


def test_columns_kernel_nan_rules_and_order() -> None:
    df = _catalogue(6, seed=7)
    df.index = [10, 11, 12, 13, 14, 15]
    df.loc[11, "distance_pc"] = np.nan  # a non-giant
    df.loc[12, "radial_velocity"] = np.nan
    out = galactocentric_columns(df)
    assert list(out.columns) == [*df.columns, *GALACTOCENTRIC_COLUMNS]
    assert out.index.equals(df.index)
    pd.testing.assert_frame_equal(out[df.columns], df)
    assert out.loc[11, list(GALACTOCENTRIC_COLUMNS)].isna().all()
    assert out.loc[12, ["x_gc", "z_gc_error"]].notna().all()
    assert out.loc[12, ["vx_gc", "vz_gc_error", "v_cov_yz"]].isna().all()
    assert out.loc[[10, 13, 14, 15], list(GALACTOCENTRIC_COLUMNS)].notna().all().all()
    # sigma_d = (p84 - p16) / 2 = 0.1 d and the 3-D position error is exactly sigma_d
    err3 = np.sqrt((out[["x_gc_error", "y_gc_error", "z_gc_error"]] ** 2).sum(axis=1))
    np.testing.assert_allclose(err3[[10, 13]], 1e-4 * df.loc[[10, 13], "distance_pc"])


def test_optional_columns_default() -> None:
    df = _catalogue(4, seed=8)
    full = galactocentric_columns(df.assign(pmra_pmdec_corr=0.0))
    bare = galactocentric_columns(
        df.drop(columns=["pmra_pmdec_corr", "radial_velocity", "radial_velocity_error"])
    )
    np.testing.assert_allclose(bare["x_gc"], full["x_gc"])
    assert bare["vx_gc"].isna().all() and bare["v_cov_xy"].isna().all()


def test_missing_column_and_clash_errors() -> None:
    df = _catalogue(3, seed=9)
    with pytest.raises(InputError, match="distance_pc_p84.*distance stage"):
        galactocentric_columns(df.drop(columns=["distance_pc_p84"]))
    with pytest.raises(ValueError, match="x_gc"):
        galactocentric_columns(galactocentric_columns(df))


def test_frame_parameters_are_the_v4_frame() -> None:
    import json

    p = frame_parameters()
    json.dumps(p)
    frame = frames.astropy_galactocentric()
    assert p["galcen_distance_kpc"] == frame.galcen_distance.to_value(u.kpc)
    assert p["z_sun_pc"] == frame.z_sun.to_value(u.pc)
    np.testing.assert_allclose(p["galcen_v_sun_kms"], frame.galcen_v_sun.xyz.to_value(u.km / u.s))
