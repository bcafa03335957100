from __future__ import annotations

import astropy.units as u
import numpy as np
from astropy.coordinates import ICRS, Galactic, SkyCoord

from bigcat.astrometry import frames


def _random_gc(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    pos = rng.normal(0.0, 5.0, (3, n))
    vel = rng.normal(0.0, 150.0, (3, n))
    return pos, vel


def test_galactocentric_to_icrs_matches_astropy() -> None:
    pos, vel = _random_gc(500)
    ours = frames.galactocentric_to_icrs(*pos, *vel)
    frame = frames.astropy_galactocentric()
    gc = SkyCoord(
        x=pos[0] * u.kpc,
        y=pos[1] * u.kpc,
        z=pos[2] * u.kpc,
        v_x=vel[0] * u.km / u.s,
        v_y=vel[1] * u.km / u.s,
        v_z=vel[2] * u.km / u.s,
        frame=frame,
    )
    icrs = gc.transform_to(ICRS())
    dra = (ours["ra"] - icrs.ra.deg + 180.0) % 360.0 - 180.0
    assert np.abs(dra * np.cos(np.radians(icrs.dec.deg))).max() < 1e-6
    assert np.abs(ours["dec"] - icrs.dec.deg).max() < 1e-6
    np.testing.assert_allclose(ours["distance_kpc"], icrs.distance.to_value(u.kpc), rtol=1e-6)
    np.testing.assert_allclose(
        ours["pmra"], icrs.pm_ra_cosdec.to_value(u.mas / u.yr), rtol=1e-6, atol=1e-9
    )
    np.testing.assert_allclose(
        ours["pmdec"], icrs.pm_dec.to_value(u.mas / u.yr), rtol=1e-6, atol=1e-9
    )
    np.testing.assert_allclose(
        ours["radial_velocity"], icrs.radial_velocity.to_value(u.km / u.s), rtol=1e-6, atol=1e-7
    )


def test_sun_and_galactic_lb() -> None:
    sun = frames.sun_position_kpc()
    assert sun[0] < -8.0 and abs(sun[1]) < 1e-9 and 0.020 < sun[2] < 0.021
    rng = np.random.default_rng(1)
    ra, dec = rng.uniform(0, 360, 300), np.degrees(np.arcsin(rng.uniform(-1, 1, 300)))
    l_deg, b_deg = frames.galactic_lb(ra, dec)
    gal = SkyCoord(ra=ra * u.deg, dec=dec * u.deg).transform_to(Galactic())
    dl = (l_deg - gal.l.deg + 180.0) % 360.0 - 180.0
    assert np.abs(dl * np.cos(np.radians(b_deg))).max() < 1e-6
    assert np.abs(b_deg - gal.b.deg).max() < 1e-6


def test_position_round_trip() -> None:
    pos, vel = _random_gc(100, seed=2)
    sky = frames.galactocentric_to_icrs(*pos, *vel)
    back = frames.icrs_to_galactocentric_position(sky["ra"], sky["dec"], sky["distance_kpc"])
    np.testing.assert_allclose(back, pos, atol=1e-9)


def test_ecliptic_latitude_close_to_astropy() -> None:
    from astropy.coordinates import BarycentricMeanEcliptic

    rng = np.random.default_rng(3)
    ra, dec = rng.uniform(0, 360, 200), rng.uniform(-89, 89, 200)
    ecl = SkyCoord(ra=ra * u.deg, dec=dec * u.deg).transform_to(BarycentricMeanEcliptic())
    assert np.abs(frames.ecliptic_latitude(ra, dec) - ecl.lat.deg).max() < 1e-3
