"""Closed-form Galactocentric <-> ICRS transforms, matching astropy's ``Galactocentric``.

astropy's frame is an affine map: ``r_gc = M r_icrs + o`` and ``v_gc = M v_icrs + v_sun``
(heliocentric ICRS Cartesian, kpc and km/s). ``M`` and ``o`` are taken from astropy once
(for the explicit v4.0 parameters below), after which the transforms are plain numpy and
agree with astropy to rounding error (see ``tests/astrometry/test_frames.py``).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

#: astropy ``Galactocentric`` v4.0 parameters, used explicitly (not the global default).
GALCEN_DISTANCE_KPC = 8.122
Z_SUN_PC = 20.8
V_SUN_KMS = (12.9, 245.6, 7.78)
GALCEN_RA_DEG = 266.4051
GALCEN_DEC_DEG = -28.936175
ROLL_DEG = 0.0

#: km/s per (kpc mas/yr).
K_PM = 4.740470463533348
#: J2000 mean obliquity of the ecliptic (deg), for ``ecl_lat``.
OBLIQUITY_DEG = 23.4392911


def astropy_galactocentric():
    """The astropy ``Galactocentric`` frame with the parameters used by the mock."""
    import astropy.units as u
    from astropy.coordinates import CartesianDifferential, Galactocentric, SkyCoord

    return Galactocentric(
        galcen_coord=SkyCoord(ra=GALCEN_RA_DEG * u.deg, dec=GALCEN_DEC_DEG * u.deg),
        galcen_distance=GALCEN_DISTANCE_KPC * u.kpc,
        galcen_v_sun=CartesianDifferential(list(V_SUN_KMS) * (u.km / u.s)),
        z_sun=Z_SUN_PC * u.pc,
        roll=ROLL_DEG * u.deg,
    )


@lru_cache(maxsize=1)
def frame_constants() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Return ``(M, o, v_sun, R_gal)``: ICRS->Galactocentric matrix, Sun position (kpc),
    Sun velocity (km/s) and the ICRS->Galactic rotation matrix."""
    import astropy.units as u
    from astropy.coordinates import ICRS, Galactic

    frame = astropy_galactocentric()
    pts = np.array([[0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]])
    icrs = ICRS(
        x=pts[0] * u.kpc, y=pts[1] * u.kpc, z=pts[2] * u.kpc, representation_type="cartesian"
    )
    gc = icrs.transform_to(frame).cartesian.xyz.to_value(u.kpc)
    origin = gc[:, 0].copy()
    matrix = gc[:, 1:] - origin[:, None]
    gal = icrs.transform_to(Galactic()).cartesian.xyz.to_value(u.kpc)
    r_gal = gal[:, 1:] - gal[:, :1]
    return matrix, origin, np.array(V_SUN_KMS, dtype=float), r_gal


def sun_position_kpc() -> np.ndarray:
    """Galactocentric position of the Sun (kpc)."""
    return frame_constants()[1].copy()


def galactocentric_to_icrs(
    x: np.ndarray,
    y: np.ndarray,
    z: np.ndarray,
    vx: np.ndarray,
    vy: np.ndarray,
    vz: np.ndarray,
) -> dict[str, np.ndarray]:
    """Galactocentric position (kpc) and velocity (km/s) to ICRS observables.

    Returns
    -------
    dict
        ``ra``, ``dec`` (deg), ``distance_kpc``, ``parallax`` (mas), ``pmra`` (mu_alpha*),
        ``pmdec`` (mas/yr) and ``radial_velocity`` (km/s).
    """
    m, o, vsun, _ = frame_constants()
    r = m.T @ (np.vstack([x, y, z]) - o[:, None])
    v = m.T @ (np.vstack([vx, vy, vz]) - vsun[:, None])
    d = np.sqrt((r * r).sum(axis=0))
    ra = np.arctan2(r[1], r[0])
    dec = np.arcsin(np.clip(r[2] / d, -1.0, 1.0))
    sa, ca, sd, cd = np.sin(ra), np.cos(ra), np.sin(dec), np.cos(dec)
    v_ra = -sa * v[0] + ca * v[1]
    v_dec = -sd * ca * v[0] - sd * sa * v[1] + cd * v[2]
    v_r = cd * ca * v[0] + cd * sa * v[1] + sd * v[2]
    return {
        "ra": np.degrees(ra) % 360.0,
        "dec": np.degrees(dec),
        "distance_kpc": d,
        "parallax": 1.0 / d,
        "pmra": v_ra / (K_PM * d),
        "pmdec": v_dec / (K_PM * d),
        "radial_velocity": v_r,
    }


def icrs_to_galactocentric_position(
    ra: np.ndarray, dec: np.ndarray, distance_kpc: np.ndarray
) -> np.ndarray:
    """ICRS (deg, deg, kpc) to Galactocentric position, shape (3, n) in kpc."""
    m, o, _, _ = frame_constants()
    ra_r, dec_r = np.radians(ra), np.radians(dec)
    r = distance_kpc * np.vstack(
        [np.cos(dec_r) * np.cos(ra_r), np.cos(dec_r) * np.sin(ra_r), np.sin(dec_r)]
    )
    return m @ r + o[:, None]


def galactic_lb(ra: np.ndarray, dec: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ICRS (deg) to Galactic longitude in (-180, 180] and latitude (deg)."""
    r_gal = frame_constants()[3]
    ra_r, dec_r = np.radians(ra), np.radians(dec)
    u = np.vstack([np.cos(dec_r) * np.cos(ra_r), np.cos(dec_r) * np.sin(ra_r), np.sin(dec_r)])
    g = r_gal @ u
    return np.degrees(np.arctan2(g[1], g[0])), np.degrees(np.arcsin(np.clip(g[2], -1, 1)))


def ecliptic_latitude(ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    """Ecliptic latitude (deg) from ICRS (deg), J2000 mean obliquity (closed form)."""
    eps = np.radians(OBLIQUITY_DEG)
    ra_r, dec_r = np.radians(ra), np.radians(dec)
    s = np.sin(dec_r) * np.cos(eps) - np.cos(dec_r) * np.sin(eps) * np.sin(ra_r)
    return np.degrees(np.arcsin(np.clip(s, -1.0, 1.0)))
