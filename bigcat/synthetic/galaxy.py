"""Galactic populations of the mock: densities, [Fe/H] and kinematics.

Coordinates are astropy ``Galactocentric`` (kpc, km/s): X from the Sun towards the GC,
Y towards positive l, Z to the north Galactic pole; the Sun is at X = -8.122 kpc.
Rotation is clockwise seen from the NGP, i.e. along ``e_rot = (y, -x) / R``.

Every structural, [Fe/H] and kinematic parameter is read from ``MockParams`` (the
module constants below are the *default* Galaxy's values, kept for
``bigcat.astrometry.prior``, which was fitted to it; the simulation never reads them).

Bulge [Fe/H] is ``feh_bulge_zero + feh_gradient |Z| + eps`` with ``eps`` drawn from a
bimodal mixture (``bulge_eps_*``) independent of position, so the median [Fe/H] against |Z|
has slope exactly ``feh_gradient``. Bulge kinematics depend on [Fe/H]: stars with
[Fe/H] >= -0.4 are "metal_rich" (bar ellipsoid tilted by ``vertex_deg``), stars with
[Fe/H] <= -0.7 are "metal_poor" (near-isotropic, vertex 0); in between the component is
drawn with probability linear in [Fe/H]. These are the paper's analysis bins.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from bigcat.astrometry.frames import GALCEN_DISTANCE_KPC
from bigcat.synthetic.params import MockParams

FEH_MIN, FEH_MAX = -2.7, 0.7
_DISCS = ("thin_disc", "thick_disc")
#: [Fe/H] thresholds of the bulge kinematic components (dex).
METAL_RICH_MIN, METAL_POOR_MAX = -0.4, -0.7

DISC_R_MAX = 20.0
HALO_R_MAX = 60.0
V_CIRC = 230.0
HALO_SIGMAS = (140.0, 100.0, 100.0)

#: The *default* Galaxy's structure (``MockParams()``), for ``bigcat.astrometry.prior`` only.
_DEFAULT = MockParams()
DISC = _DEFAULT.disc_scales
HALO_CORE_KPC, HALO_SLOPE, HALO_Q = _DEFAULT.halo_core_kpc, _DEFAULT.halo_slope, _DEFAULT.halo_q
BAR_SCALES_KPC = _DEFAULT.bar_scales_kpc


def _inverse_cdf(grid: np.ndarray, pdf: np.ndarray, u: np.ndarray) -> np.ndarray:
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (pdf[1:] + pdf[:-1]) * np.diff(grid))])
    return np.interp(u, cdf / cdf[-1], grid)


@lru_cache(maxsize=16)
def _disc_grid(h: float) -> tuple[np.ndarray, np.ndarray]:
    r = np.linspace(0.0, DISC_R_MAX, 4001)
    return r, r * np.exp(-r / h)


@lru_cache(maxsize=16)
def _halo_grid(core: float, slope: float) -> tuple[np.ndarray, np.ndarray]:
    r = np.linspace(0.0, HALO_R_MAX, 4001)
    return r, r**2 * (r**2 + core**2) ** (-slope / 2)


def bar_rotation(params: MockParams) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors of the bar's major and minor axes in Galactocentric (x, y)."""
    a = np.radians(params.bar_angle_deg)
    return np.array([np.cos(a), -np.sin(a)]), np.array([np.sin(a), np.cos(a)])


def _bar_frame_sample(rng: np.random.Generator, n: int, params: MockParams) -> np.ndarray:
    x0, y0, z0 = params.bar_scales_kpc
    half = params.bar_half_length_kpc
    # truncated Laplace along the major axis by inverse CDF
    u = rng.uniform(0.0, 1.0 - np.exp(-half / x0), n)
    xp = -x0 * np.log1p(-u) * rng.choice([-1.0, 1.0], n)
    yp = rng.laplace(0.0, y0, n)
    zp = rng.laplace(0.0, z0, n)
    return np.vstack([xp, yp, zp])


def halo_density(pos: np.ndarray, params: MockParams) -> np.ndarray:
    """Unnormalised halo density at Galactocentric positions (kpc): cored power law
    (``halo_core_kpc``, ``halo_slope``) flattened by ``halo_q``."""
    rq2 = pos[0] ** 2 + pos[1] ** 2 + (pos[2] / params.halo_q) ** 2
    return (rq2 + params.halo_core_kpc**2) ** (-params.halo_slope / 2)


def _sample_local(
    population: str, n: int, rng: np.random.Generator, radius_kpc: float, params: MockParams
) -> np.ndarray:
    """Exact draws from a disc or halo density restricted to the neighbourhood of the Sun
    (disc: a vertical cylinder, halo: a sphere of ``radius_kpc``), by rejection."""
    from bigcat.astrometry.frames import sun_position_kpc

    sun = sun_position_kpc()
    r0 = float(np.hypot(sun[0], sun[1]))
    out: list[np.ndarray] = []
    have = 0
    while have < n:
        m = max(4 * (n - have), 1000)
        if population in _DISCS:
            h, hz = params.disc_scales[population]
            rad = radius_kpc * np.sqrt(rng.uniform(size=m))
            phi = rng.uniform(0.0, 2 * np.pi, m)
            x, y = sun[0] + rad * np.cos(phi), sun[1] + rad * np.sin(phi)
            r_min = max(r0 - radius_kpc, 0.0)
            keep = rng.uniform(size=m) < np.exp(-(np.hypot(x, y) - r_min) / h)
            pos = np.vstack([x, y, rng.laplace(0.0, hz, m)])[:, keep]
        else:
            v = rng.normal(size=(3, m))
            v *= radius_kpc * rng.uniform(size=m) ** (1 / 3) / np.linalg.norm(v, axis=0)
            pos = v + sun[:, None]
            # bound: (R^2 + (z/q)^2) >= min(1, 1/q^2) r^2 >= min(1, 1/q^2) (r0 - radius)^2
            rq2_min = max(r0 - radius_kpc, 0.0) ** 2 * min(1.0, params.halo_q**-2)
            rho_max = (rq2_min + params.halo_core_kpc**2) ** (-params.halo_slope / 2)
            pos = pos[:, rng.uniform(size=m) < halo_density(pos, params) / rho_max]
        out.append(pos)
        have += pos.shape[1]
    return np.concatenate(out, axis=1)[:, :n]


def sample_positions(
    population: str,
    n: int,
    rng: np.random.Generator,
    params: MockParams,
    local_kpc: float | None = None,
) -> np.ndarray:
    """Draw Galactocentric positions (kpc), shape (3, n), from a population's density.

    Discs: exponential in R and |z| (``<disc>_scale_length_kpc``/``_height_kpc``); halo:
    cored power law (``halo_core_kpc``, ``halo_slope``) flattened by ``halo_q``; bulge: a
    separable triaxial exponential bar (``bar_scale_{x,y,z}_kpc``) truncated at ``bar_half_length_kpc`` and rotated by
    ``bar_angle_deg`` with the near end at positive l. With ``local_kpc`` (discs and halo),
    the density is restricted to within that distance of the Sun (for dwarfs, which the
    Ks limit confines to a few kpc; an exact truncation, not an approximation).
    """
    if local_kpc is not None and population != "bulge":
        return _sample_local(population, n, rng, local_kpc, params)
    if population in _DISCS:
        h, hz = params.disc_scales[population]
        r = _inverse_cdf(*_disc_grid(h), rng.uniform(size=n))
        phi = rng.uniform(0.0, 2 * np.pi, n)
        z = rng.laplace(0.0, hz, n)
        return np.vstack([r * np.cos(phi), r * np.sin(phi), z])
    if population == "halo":
        r = _inverse_cdf(*_halo_grid(params.halo_core_kpc, params.halo_slope), rng.uniform(size=n))
        cos_t = rng.uniform(-1.0, 1.0, n)
        phi = rng.uniform(0.0, 2 * np.pi, n)
        sin_t = np.sqrt(1.0 - cos_t**2)
        return np.vstack(
            [r * sin_t * np.cos(phi), r * sin_t * np.sin(phi), params.halo_q * r * cos_t]
        )
    if population == "bulge":
        xp, yp, zp = _bar_frame_sample(rng, n, params)
        major, minor = bar_rotation(params)
        return np.vstack([xp * major[0] + yp * minor[0], xp * major[1] + yp * minor[1], zp])
    raise ValueError(f"unknown population {population!r}")


def bulge_eps(rng: np.random.Generator, n: int, params: MockParams) -> np.ndarray:
    """Position-independent bimodal [Fe/H] offsets of bulge stars (dex)."""
    (w1, m1, s1), (_, m2, s2) = params.bulge_eps_components
    rich = rng.uniform(size=n) < w1
    return np.where(rich, rng.normal(m1, s1, n), rng.normal(m2, s2, n))


def bulge_eps_median(params: MockParams) -> float:
    """Median of the bimodal offset distribution (dex), by bisection on its CDF."""
    from scipy.special import ndtr

    (w1, m1, s1), (w2, m2, s2) = params.bulge_eps_components
    lo, hi = -2.0, 1.0
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        cdf = w1 * ndtr((mid - m1) / s1) + w2 * ndtr((mid - m2) / s2)
        lo, hi = (mid, hi) if cdf < 0.5 else (lo, mid)
    return 0.5 * (lo + hi)


def sample_feh(
    population: str, pos: np.ndarray, rng: np.random.Generator, params: MockParams
) -> np.ndarray:
    """[Fe/H] (dex) of stars at Galactocentric positions ``pos`` (kpc), clipped to
    [``FEH_MIN``, ``FEH_MAX``]."""
    n = pos.shape[1]
    if population == "thin_disc":
        r = np.hypot(pos[0], pos[1])
        f0, grad, sig = params.thin_feh_r0, params.thin_feh_radial_gradient, params.thin_feh_sigma
        feh = f0 + grad * (r - GALCEN_DISTANCE_KPC) + rng.normal(0.0, sig, n)
    elif population == "thick_disc":
        feh = rng.normal(params.thick_feh_mean, params.thick_feh_sigma, n)
    elif population == "halo":
        feh = rng.normal(params.halo_feh_mean, params.halo_feh_sigma, n)
    elif population == "bulge":
        eps = bulge_eps(rng, n, params)
        feh = params.feh_bulge_zero + params.feh_gradient * np.abs(pos[2]) + eps
    else:
        raise ValueError(f"unknown population {population!r}")
    return np.clip(feh, FEH_MIN, FEH_MAX)


def bulge_component(feh: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Kinematic component of bulge stars: True = metal-rich bar, False = metal-poor."""
    w = np.clip((feh - METAL_POOR_MAX) / (METAL_RICH_MIN - METAL_POOR_MAX), 0.0, 1.0)
    return rng.uniform(size=feh.size) < w


def _streaming(pos: np.ndarray, omega: float) -> np.ndarray:
    """Solid-body bar streaming (km/s) in (vx, vy), capped at R = 2 kpc."""
    r = np.maximum(np.hypot(pos[0], pos[1]), 1e-6)
    vrot = omega * np.minimum(r, 2.0)
    return np.vstack([vrot * pos[1] / r, -vrot * pos[0] / r])


def _tilted_cov(sig_major: float, sig_minor: float, angle_deg: float) -> np.ndarray:
    a = np.radians(angle_deg)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return rot @ np.diag([sig_major**2, sig_minor**2]) @ rot.T


@lru_cache(maxsize=16)
def _stream_cov(params: MockParams, omega: float) -> np.ndarray:
    """Covariance of the streaming velocities over the bar model inside R < 3 kpc."""
    rng = np.random.default_rng(12345)
    pos = sample_positions("bulge", 400_000, rng, params)
    pos = pos[:, np.hypot(pos[0], pos[1]) < 3.0]
    return np.cov(_streaming(pos, omega))


def bulge_random_cov(params: MockParams, metal_rich: bool) -> np.ndarray:
    """Covariance of the random (vx, vy) part, so that random + streaming has the target
    tilt: ``vertex_deg`` for metal-rich stars, 0 for metal-poor stars."""
    if metal_rich:
        target = _tilted_cov(
            params.bar_sigma_major_kms, params.bar_sigma_minor_kms, params.vertex_deg
        )
        omega = params.bar_pattern_kms_per_kpc
    else:
        target = _tilted_cov(params.bulge_mp_sigma_x_kms, params.bulge_mp_sigma_y_kms, 0.0)
        omega = 0.5 * params.bar_pattern_kms_per_kpc
    cov = target - _stream_cov(params, omega)
    if np.linalg.eigvalsh(cov).min() <= 0:
        raise ValueError(
            f"bar_pattern_kms_per_kpc={params.bar_pattern_kms_per_kpc} is too large for "
            f"the bulge dispersions of this bar (metal_rich={metal_rich}, vertex_deg="
            f"{params.vertex_deg}): lower it or raise bar_sigma_*/bulge_mp_sigma_*"
        )
    return cov


def sample_velocities(
    population: str,
    pos: np.ndarray,
    metal_rich: np.ndarray | None,
    rng: np.random.Generator,
    params: MockParams,
) -> np.ndarray:
    """Galactocentric velocities (km/s), shape (3, n), for stars at ``pos`` (kpc).

    Discs rotate at ``V_CIRC`` (tapered inside 1 kpc) minus an asymmetric drift
    sigma_R^2 / 120 km/s; the halo is non-rotating and hot; bulge stars get bar
    streaming plus a random ellipsoid (``bulge_random_cov``), ``metal_rich`` selecting the
    tilted bar component.
    """
    n = pos.shape[1]
    x, y, z = pos
    r = np.maximum(np.hypot(x, y), 1e-6)
    if population == "bulge":
        assert metal_rich is not None
        v = np.empty((3, n))
        for flag, sigz in ((True, params.bar_sigma_z_kms), (False, params.bulge_mp_sigma_z_kms)):
            sel = metal_rich == flag
            k = int(sel.sum())
            omega = params.bar_pattern_kms_per_kpc * (1.0 if flag else 0.5)
            chol = np.linalg.cholesky(bulge_random_cov(params, flag))
            rand = chol @ rng.standard_normal((2, k))
            v[:2, sel] = _streaming(pos[:, sel], omega) + rand
            v[2, sel] = rng.normal(0.0, sigz, k)
        return v
    if population == "halo":
        s_r, s_p, s_z = HALO_SIGMAS
        v_r, v_p, v_z = rng.normal(0, s_r, n), rng.normal(0, s_p, n), rng.normal(0, s_z, n)
    else:
        h = params.disc_scales[population][0]
        s0, fp, fz, lo, hi = (35.0, 0.7, 0.55, 15.0, 90.0)
        if population == "thick_disc":
            s0, fp, fz, lo, hi = (70.0, 0.75, 0.65, 40.0, 140.0)
        s_r = np.clip(s0 * np.exp(-(r - GALCEN_DISTANCE_KPC) / (2 * h)), lo, hi)
        vc = V_CIRC * (1.0 - np.exp(-r / 1.0))
        v_r = rng.normal(0.0, 1.0, n) * s_r
        v_p = vc - s_r**2 / 120.0 + rng.normal(0.0, 1.0, n) * fp * s_r
        v_z = rng.normal(0.0, 1.0, n) * fz * s_r
    ex, ey = x / r, y / r
    return np.vstack([v_r * ex + v_p * ey, v_r * ey - v_p * ex, v_z])


def vertex_angle_deg(vx: np.ndarray, vy: np.ndarray) -> float:
    """Vertex deviation l_v = 0.5 arctan(2 s_xy / (s_xx - s_yy)) (deg), in [-45, 45]."""
    c = np.cov(np.vstack([vx, vy]))
    return float(np.degrees(0.5 * np.arctan(2 * c[0, 1] / (c[0, 0] - c[1, 1]))))
