"""Galactocentric positions and velocities of stars, with linearised uncertainties.

Frame: astropy's ``Galactocentric`` with the v4.0 parameters given explicitly in
:mod:`bigcat.astrometry.frames` (GC distance 8.122 kpc, z_sun 20.8 pc, v_sun (12.9, 245.6, 7.78)
km/s). X points from the Sun towards the GC, Y towards positive l, Z to the north Galactic
pole. The transform is affine, ``r_gc = M r_icrs + o`` and ``v_gc = M v_icrs + v_sun``
(``frames.frame_constants``), so no astropy call is made per star.

Per star, with ``u`` the ICRS unit vector towards (ra, dec) and ``e_a``, ``e_d`` the unit
vectors of increasing ra and dec::

    r_icrs = d u
    v_icrs = K d (mu_a* e_a + mu_d e_d) + v_r u          (K = 4.74047 km/s per kpc mas/yr)

Uncertainties (ra and dec are taken as exact)
----------------------------------------------
Inputs: distance d with sigma_d, proper motions (mu_a*, mu_d) with covariance P (sigma_a,
sigma_d and their correlation rho), radial velocity v_r with sigma_vr, all mutually
independent apart from rho. The position is linear in d, so its error is exact:
``sigma_x_i = sigma_d |(M u)_i|`` (the three are fully correlated along the line of sight, and
sqrt(sum sigma_x_i^2) = sigma_d). The velocity covariance is the Jacobian propagation::

    Sigma_v = M [ sigma_d^2 g g^T + K^2 (d^2 + sigma_d^2) E P E^T + sigma_vr^2 u u^T ] M^T

with ``g = dv/dd = K (mu_a* e_a + mu_d e_d)`` (tangential velocity scales with distance: the
distance-velocity correlation) and ``E = [e_a, e_d]``. The ``sigma_d^2`` in the middle term
is the one second-order term of the bilinear product d * mu; with it the covariance is exact
for Gaussian d and proper motions, and the first-order part alone is the usual linearisation.
The distance sigma is ``(distance_pc_p84 - distance_pc_p16) / 2``; for an asymmetric distance
posterior this is the linearised approximation (tested against Monte Carlo in
``tests/astrometry/test_galactocentric.py``).
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from bigcat.astrometry import frames
from bigcat.errors import InputError

logger = logging.getLogger(__name__)

#: Output columns, in order (SCHEMA.md): positions (kpc), velocities (km/s), covariances.
POSITION_COLUMNS: tuple[str, ...] = ("x_gc", "y_gc", "z_gc")
POSITION_ERROR_COLUMNS: tuple[str, ...] = ("x_gc_error", "y_gc_error", "z_gc_error")
VELOCITY_COLUMNS: tuple[str, ...] = ("vx_gc", "vy_gc", "vz_gc")
VELOCITY_ERROR_COLUMNS: tuple[str, ...] = ("vx_gc_error", "vy_gc_error", "vz_gc_error")
VELOCITY_COVARIANCE_COLUMNS: tuple[str, ...] = ("v_cov_xy", "v_cov_xz", "v_cov_yz")
GALACTOCENTRIC_COLUMNS: tuple[str, ...] = (
    *POSITION_COLUMNS,
    *POSITION_ERROR_COLUMNS,
    *VELOCITY_COLUMNS,
    *VELOCITY_ERROR_COLUMNS,
    *VELOCITY_COVARIANCE_COLUMNS,
)

#: Catalogue columns the kernel needs, and the optional ones with their fill value.
REQUIRED_KINEMATIC_COLUMNS: tuple[str, ...] = (
    "ra",
    "dec",
    "distance_pc",
    "distance_pc_p16",
    "distance_pc_p84",
    "pmra",
    "pmra_error",
    "pmdec",
    "pmdec_error",
)
OPTIONAL_KINEMATIC_COLUMNS: dict[str, float] = {
    "pmra_pmdec_corr": 0.0,
    "radial_velocity": float("nan"),
    "radial_velocity_error": float("nan"),
}

_PAIRS = ((0, 0), (1, 1), (2, 2), (0, 1), (0, 2), (1, 2))


def frame_parameters() -> dict[str, object]:
    """The Galactocentric frame's parameters, JSON-serialisable, for output metadata.

    Returns
    -------
    dict
        ``frame`` (astropy class), ``parameter_set`` ("v4.0", given explicitly),
        ``galcen_distance_kpc``, ``z_sun_pc``, ``galcen_v_sun_kms`` ([vx, vy, vz] km/s),
        ``galcen_ra_deg``, ``galcen_dec_deg``, ``roll_deg``, ``k_pm_kms_per_kpc_mas_yr`` and
        the axis convention.
    """
    return {
        "frame": "astropy.coordinates.Galactocentric",
        "parameter_set": "v4.0",
        "galcen_distance_kpc": frames.GALCEN_DISTANCE_KPC,
        "z_sun_pc": frames.Z_SUN_PC,
        "galcen_v_sun_kms": list(frames.V_SUN_KMS),
        "galcen_ra_deg": frames.GALCEN_RA_DEG,
        "galcen_dec_deg": frames.GALCEN_DEC_DEG,
        "roll_deg": frames.ROLL_DEG,
        "k_pm_kms_per_kpc_mas_yr": frames.K_PM,
        "axes": "X Sun->GC, Y towards l=90 deg, Z towards the north Galactic pole; kpc, km/s",
    }


def _sky_basis(ra_deg: np.ndarray, dec_deg: np.ndarray) -> tuple[np.ndarray, ...]:
    """ICRS unit vectors u, e_ra, e_dec, each of shape (3, n)."""
    ra, dec = np.radians(ra_deg), np.radians(dec_deg)
    sa, ca, sd, cd = np.sin(ra), np.cos(ra), np.sin(dec), np.cos(dec)
    u = np.vstack([cd * ca, cd * sa, sd])
    e_a = np.vstack([-sa, ca, np.zeros_like(ra)])
    e_d = np.vstack([-sd * ca, -sd * sa, cd])
    return u, e_a, e_d


def galactocentric_kinematics(
    ra: np.ndarray,
    dec: np.ndarray,
    distance_kpc: np.ndarray,
    distance_error_kpc: np.ndarray,
    pmra: np.ndarray,
    pmdec: np.ndarray,
    pmra_error: np.ndarray,
    pmdec_error: np.ndarray,
    pmra_pmdec_corr: np.ndarray,
    radial_velocity: np.ndarray,
    radial_velocity_error: np.ndarray,
) -> dict[str, np.ndarray]:
    """Galactocentric positions, velocities and their uncertainties (see the module notes).

    Parameters
    ----------
    ra, dec : numpy.ndarray
        ICRS position (deg).
    distance_kpc, distance_error_kpc : numpy.ndarray
        Heliocentric distance and its 1-sigma error (kpc).
    pmra, pmdec : numpy.ndarray
        Proper motions mu_alpha* (including cos dec) and mu_delta (mas/yr).
    pmra_error, pmdec_error : numpy.ndarray
        Their 1-sigma errors (mas/yr).
    pmra_pmdec_corr : numpy.ndarray
        Correlation of the two proper motions (dimensionless); NaN is read as 0.
    radial_velocity, radial_velocity_error : numpy.ndarray
        Heliocentric radial velocity and error (km/s); NaN where there is none.

    Returns
    -------
    dict of numpy.ndarray
        One float64 array per name of ``GALACTOCENTRIC_COLUMNS``: positions and their
        errors (kpc), NaN where the distance or sky position is not finite; velocities,
        their errors (km/s) and the covariances ``v_cov_xy/xz/yz`` ((km/s)^2), NaN unless the
        distance, proper motions, radial velocity and all their errors are finite.
    """
    arrays = [
        np.asarray(a, dtype=np.float64)
        for a in (
            ra,
            dec,
            distance_kpc,
            distance_error_kpc,
            pmra,
            pmdec,
            pmra_error,
            pmdec_error,
            pmra_pmdec_corr,
            radial_velocity,
            radial_velocity_error,
        )
    ]
    ra, dec, d, sd, mua, mud, sa, sdec, rho, vr, svr = np.broadcast_arrays(*arrays)
    rho = np.where(np.isfinite(rho), rho, 0.0)
    m, o, v_sun, _ = frames.frame_constants()
    k = frames.K_PM

    u, e_a, e_d = _sky_basis(ra, dec)
    # rotate the basis once into the Galactocentric axes
    u_g, a_g, d_g = m @ u, m @ e_a, m @ e_d
    pos = d * u_g + o[:, None]
    pos_err = np.where(np.isfinite(pos).all(axis=0), np.abs(sd * u_g), np.nan)

    g = k * (mua * a_g + mud * d_g)  # dv/dd, km/s per kpc
    vel = d * g + vr * u_g + v_sun[:, None]
    s_dd = sd * sd
    s_pm = k * k * (d * d + s_dd)  # (km/s per mas/yr)^2, with the exact second-order term
    c_aa, c_dd_pm, c_ad = s_pm * sa * sa, s_pm * sdec * sdec, s_pm * rho * sa * sdec
    s_rr = svr * svr
    cov = {}
    for i, j in _PAIRS:
        cov[i, j] = (
            s_dd * g[i] * g[j]
            + c_aa * a_g[i] * a_g[j]
            + c_dd_pm * d_g[i] * d_g[j]
            + c_ad * (a_g[i] * d_g[j] + d_g[i] * a_g[j])
            + s_rr * u_g[i] * u_g[j]
        )
    # a velocity is given only with its covariance: every velocity input and error finite
    no_vel = ~(np.isfinite(vel).all(axis=0) & np.isfinite([cov[i, i] for i in range(3)]).all(0))
    out: dict[str, np.ndarray] = {}
    for i, name in enumerate(POSITION_COLUMNS):
        out[name] = pos[i]
    for i, name in enumerate(POSITION_ERROR_COLUMNS):
        out[name] = pos_err[i]
    for i, name in enumerate(VELOCITY_COLUMNS):
        out[name] = np.where(no_vel, np.nan, vel[i])
    for i, name in enumerate(VELOCITY_ERROR_COLUMNS):
        with np.errstate(invalid="ignore"):
            out[name] = np.where(no_vel, np.nan, np.sqrt(cov[i, i]))
    for (i, j), name in zip(((0, 1), (0, 2), (1, 2)), VELOCITY_COVARIANCE_COLUMNS, strict=True):
        out[name] = np.where(no_vel, np.nan, cov[i, j])
    return out


def velocity_covariance(out: dict[str, np.ndarray] | pd.DataFrame) -> np.ndarray:
    """Assemble the per-star 3x3 velocity covariance ((km/s)^2), shape (n, 3, 3), from the
    error and covariance columns of :func:`galactocentric_kinematics` or a catalogue."""
    ex, ey, ez = (np.asarray(out[c], dtype=np.float64) for c in VELOCITY_ERROR_COLUMNS)
    cxy, cxz, cyz = (np.asarray(out[c], dtype=np.float64) for c in VELOCITY_COVARIANCE_COLUMNS)
    cov = np.empty((ex.size, 3, 3))
    cov[:, 0, 0], cov[:, 1, 1], cov[:, 2, 2] = ex * ex, ey * ey, ez * ez
    cov[:, 0, 1] = cov[:, 1, 0] = cxy
    cov[:, 0, 2] = cov[:, 2, 0] = cxz
    cov[:, 1, 2] = cov[:, 2, 1] = cyz
    return cov


def _column(df: pd.DataFrame, name: str) -> np.ndarray:
    if name not in df.columns:
        return np.full(len(df), OPTIONAL_KINEMATIC_COLUMNS[name])
    return df[name].to_numpy(dtype=np.float64, na_value=np.nan)


def galactocentric_columns(df: pd.DataFrame) -> pd.DataFrame:
    """Add the Galactocentric columns of SCHEMA.md to one catalogue partition.

    Parameters
    ----------
    df : pandas.DataFrame
        A partition with ``REQUIRED_KINEMATIC_COLUMNS``: ``ra``, ``dec`` (deg),
        ``distance_pc``, ``distance_pc_p16``, ``distance_pc_p84`` (pc), ``pmra``, ``pmdec``
        and their errors (mas/yr); optionally ``pmra_pmdec_corr`` (0 when absent),
        ``radial_velocity`` and ``radial_velocity_error`` (km/s, NaN when absent).

    Returns
    -------
    pandas.DataFrame
        A new frame with the same index and rows in the same order: every input column,
        then ``GALACTOCENTRIC_COLUMNS``. The distance is the posterior median and its sigma
        ``(p84 - p16) / 2``. Rows without a distance (non-giants) get NaN everywhere; rows
        without a radial velocity get positions but NaN velocities and covariances.

    Raises
    ------
    InputError
        If a required column is absent (naming every missing one and the fix).
    ValueError
        If the partition already has a Galactocentric output column.
    """
    missing = [c for c in REQUIRED_KINEMATIC_COLUMNS if c not in df.columns]
    if missing:
        raise InputError(
            f"Galactocentric kinematics needs column(s) {', '.join(missing)}, absent from the "
            f"partition (it has {len(df.columns)} columns). distance_pc and its percentiles "
            "come from the distance stage: run `bigcat process` through distances first; "
            "input columns named differently are mapped in the [columns] table of bigcat.toml."
        )
    clash = [c for c in GALACTOCENTRIC_COLUMNS if c in df.columns]
    if clash:
        raise ValueError(
            f"the partition already has Galactocentric column(s) {clash}; the kinematics "
            "kernel adds them and will not overwrite them."
        )
    distance = _column(df, "distance_pc") / 1000.0
    distance_error = (_column(df, "distance_pc_p84") - _column(df, "distance_pc_p16")) / 2000.0
    out = galactocentric_kinematics(
        _column(df, "ra"),
        _column(df, "dec"),
        distance,
        distance_error,
        _column(df, "pmra"),
        _column(df, "pmdec"),
        _column(df, "pmra_error"),
        _column(df, "pmdec_error"),
        _column(df, "pmra_pmdec_corr"),
        _column(df, "radial_velocity"),
        _column(df, "radial_velocity_error"),
    )
    logger.debug(
        "kinematics: %d rows, %d with positions, %d with velocities",
        len(df),
        int(np.isfinite(out["x_gc"]).sum()),
        int(np.isfinite(out["vx_gc"]).sum()),
    )
    added = pd.DataFrame({c: out[c] for c in GALACTOCENTRIC_COLUMNS}, index=df.index)
    return pd.concat([df, added], axis=1)
