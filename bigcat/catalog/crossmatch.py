"""Cross-match kernels for `bigcat crossmatch` (no Dask, no I/O): epochs, proper-motion
propagation, separations, unWISE fluxes to Vega magnitudes, and the epoch-aware nearest-neighbour
match of one sky region with its one-to-one resolution.

Matching rule (docs/crossmatch.md): a Gaia star's position is moved with its proper motion from
its reference epoch to the epoch of each candidate counterpart; the nearest candidate within the
radius at that epoch is the star's claim; a counterpart claimed by several Gaia stars goes to the
nearest of them (ties: the smaller source_id), the others get none.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bigcat.catalog.healpix import healpix29, pixel_at_order
from bigcat.errors import ConfigError

J2000_JD = 2451545.0
JULIAN_YEAR_DAYS = 365.25
MAS_PER_DEG = 3.6e6
#: unWISE fluxes are Vega nanomaggies: mag = 22.5 - 2.5 log10(flux).
NANOMAGGY_ZERO_POINT = 22.5
_MAG_ERROR_FACTOR = 2.5 / np.log(10.0)


@dataclass(frozen=True)
class CrossmatchParams:
    """``[crossmatch]``: how `bigcat crossmatch` pairs Gaia with 2MASS and unWISE.

    Attributes
    ----------
    unwise_epoch
        Julian year of the unWISE positions (the mean epoch of the coadds, Schlafly et al. 2019).
    gaia_epoch
        Julian year of the Gaia positions when the table has no ``ref_epoch`` column (DR3: 2016.0).
    n_neighbors
        Candidates examined per Gaia star (the nearest at the reference epoch of the region);
        each is re-measured at its own epoch before the nearest within the radius is taken.
    margin_arcsec
        Width of the margin caches of the 2MASS and unWISE catalogues bigcat builds from files
        (and the reach of a pair across a partition border): a pair is found across a border
        when the radius plus the star's motion between the epochs is below it (10 arcsec:
        proper motions up to ~0.5 arcsec/yr over the 19 years from 2MASS to Gaia).
    max_search_arcsec
        Upper limit of the search radius at a region's reference epoch (the radius plus the
        fastest star's motion over the spread of the counterparts' epochs there).
    """

    unwise_epoch: float = 2013.0
    gaia_epoch: float = 2016.0
    n_neighbors: int = 4
    margin_arcsec: float = 10.0
    max_search_arcsec: float = 5.0

    def __post_init__(self) -> None:
        if self.n_neighbors < 1:
            raise ConfigError(f"crossmatch.n_neighbors = {self.n_neighbors}: must be at least 1.")
        for name in ("margin_arcsec", "max_search_arcsec"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"crossmatch.{name} = {getattr(self, name)}: must be positive.")
        for name in ("unwise_epoch", "gaia_epoch"):
            if not 1900.0 < getattr(self, name) < 2100.0:
                raise ConfigError(
                    f"crossmatch.{name} = {getattr(self, name)}: give a Julian year, e.g. 2013.0."
                )


def jd_to_year(jd: np.ndarray | float) -> np.ndarray:
    """Julian year (e.g. 1999.3) of a Julian date."""
    return 2000.0 + (np.asarray(jd, dtype=np.float64) - J2000_JD) / JULIAN_YEAR_DAYS


def year_to_jd(year: np.ndarray | float) -> np.ndarray:
    """Julian date of a Julian year."""
    return J2000_JD + (np.asarray(year, dtype=np.float64) - 2000.0) * JULIAN_YEAR_DAYS


def unit_vectors(ra_deg: np.ndarray, dec_deg: np.ndarray) -> np.ndarray:
    """Unit vectors (n, 3) of ICRS positions in degrees."""
    ra = np.radians(np.asarray(ra_deg, dtype=np.float64))
    dec = np.radians(np.asarray(dec_deg, dtype=np.float64))
    cd = np.cos(dec)
    return np.stack([cd * np.cos(ra), cd * np.sin(ra), np.sin(dec)], axis=-1)


def _to_radec(xyz: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ra = np.degrees(np.arctan2(xyz[..., 1], xyz[..., 0])) % 360.0
    dec = np.degrees(np.arctan2(xyz[..., 2], np.hypot(xyz[..., 0], xyz[..., 1])))
    return ra, dec


def propagate_xyz(
    ra_deg: np.ndarray,
    dec_deg: np.ndarray,
    pmra: np.ndarray,
    pmdec: np.ndarray,
    dt_yr: np.ndarray | float,
) -> np.ndarray:
    """Unit vectors of positions moved by their proper motions for ``dt_yr`` years.

    ``pmra`` is mu_alpha* (mas/yr, already times cos dec), ``pmdec`` mu_delta (mas/yr); a
    missing proper motion counts as zero. The motion is a straight line in the tangent plane
    (valid at the poles too); parallax and perspective acceleration are neglected (below a
    milliarcsecond over decades for all but the nearest stars).
    """
    ra = np.radians(np.asarray(ra_deg, dtype=np.float64))
    dec = np.radians(np.asarray(dec_deg, dtype=np.float64))
    sa, ca, sd, cd = np.sin(ra), np.cos(ra), np.sin(dec), np.cos(dec)
    mua = np.nan_to_num(np.asarray(pmra, dtype=np.float64)) * np.asarray(dt_yr)
    mud = np.nan_to_num(np.asarray(pmdec, dtype=np.float64)) * np.asarray(dt_yr)
    scale = np.radians(1.0 / MAS_PER_DEG)
    a, d = mua * scale, mud * scale
    xyz = np.stack(
        [cd * ca - a * sa - d * sd * ca, cd * sa + a * ca - d * sd * sa, sd + d * cd], axis=-1
    )
    return xyz / np.linalg.norm(xyz, axis=-1, keepdims=True)


def propagate(
    ra_deg: np.ndarray,
    dec_deg: np.ndarray,
    pmra: np.ndarray,
    pmdec: np.ndarray,
    dt_yr: np.ndarray | float,
) -> tuple[np.ndarray, np.ndarray]:
    """ra, dec (deg) moved by their proper motions for ``dt_yr`` years (see propagate_xyz)."""
    return _to_radec(propagate_xyz(ra_deg, dec_deg, pmra, pmdec, dt_yr))


def chord_to_arcsec(chord: np.ndarray) -> np.ndarray:
    """Angle (arcsec) of a chord between unit vectors."""
    return np.degrees(2.0 * np.arcsin(np.clip(0.5 * np.asarray(chord), 0.0, 1.0))) * 3600.0


def arcsec_to_chord(arcsec: float) -> float:
    """Chord between unit vectors ``arcsec`` apart."""
    return float(2.0 * np.sin(np.radians(arcsec / 3600.0) / 2.0))


def separation_arcsec(
    ra1: np.ndarray, dec1: np.ndarray, ra2: np.ndarray, dec2: np.ndarray
) -> np.ndarray:
    """Angular separation (arcsec) of two sets of positions (deg)."""
    d = unit_vectors(ra1, dec1) - unit_vectors(ra2, dec2)
    return chord_to_arcsec(np.linalg.norm(d, axis=-1))


def flux_to_mag(flux: np.ndarray) -> np.ndarray:
    """Vega magnitude of an unWISE flux in Vega nanomaggies; NaN where the flux is not > 0."""
    f = np.asarray(flux, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        mag = NANOMAGGY_ZERO_POINT - 2.5 * np.log10(f)
    return np.where(np.isfinite(f) & (f > 0), mag, np.nan)


def flux_error_to_mag_error(flux: np.ndarray, dflux: np.ndarray) -> np.ndarray:
    """Magnitude error 2.5 / ln 10 * dflux / flux; NaN where the flux is not > 0."""
    f = np.asarray(flux, dtype=np.float64)
    df = np.asarray(dflux, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        err = _MAG_ERROR_FACTOR * df / f
    return np.where(np.isfinite(f) & (f > 0) & np.isfinite(df), err, np.nan)


def mag_to_flux(mag: np.ndarray) -> np.ndarray:
    """Vega nanomaggies of a Vega magnitude (the inverse of flux_to_mag)."""
    return 10.0 ** ((NANOMAGGY_ZERO_POINT - np.asarray(mag, dtype=np.float64)) / 2.5)


def match_epochs(
    left_ra: np.ndarray,
    left_dec: np.ndarray,
    left_pmra: np.ndarray,
    left_pmdec: np.ndarray,
    left_epoch: np.ndarray,
    left_key: np.ndarray,
    right_ra: np.ndarray,
    right_dec: np.ndarray,
    right_epoch: np.ndarray,
    radius_arcsec: float,
    n_neighbors: int = 4,
    max_search_arcsec: float = 5.0,
    default_epoch: float = 2016.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Epoch-aware nearest-neighbour pairs of one region, resolved one-to-one.

    The left (Gaia) stars are moved to the median epoch of the right sources, where the
    ``n_neighbors`` nearest right sources within the radius plus the largest possible motion
    over the spread of the right epochs (at most ``max_search_arcsec``) are candidates. Each
    candidate pair is re-measured with the star moved to that right source's own epoch; the
    nearest within ``radius_arcsec`` is the star's claim. A right source claimed by several
    stars goes to the nearest (ties: smaller ``left_key``); the others get none. A missing
    right epoch counts as the region's median one, a missing left epoch as ``default_epoch``.

    Returns
    -------
    left_idx, right_idx, sep_arcsec
        One entry per accepted pair, sorted by ``left_idx``.
    """
    from scipy.spatial import cKDTree  # here: config.py imports this module for its settings

    empty = (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float64))
    n_left, n_right = len(left_ra), len(right_ra)
    if n_left == 0 or n_right == 0:
        return empty
    left_epoch = np.broadcast_to(np.asarray(left_epoch, dtype=np.float64), (n_left,))
    left_epoch = np.where(np.isfinite(left_epoch), left_epoch, default_epoch)
    right_epoch = np.broadcast_to(np.asarray(right_epoch, dtype=np.float64), (n_right,))
    known = np.isfinite(right_epoch)
    if not known.all():  # a source without an epoch: the region's median epoch
        fill = np.median(right_epoch[known]) if known.any() else default_epoch
        right_epoch = np.where(known, right_epoch, fill)
    t_ref = float(np.median(right_epoch))
    pmra = np.nan_to_num(np.asarray(left_pmra, dtype=np.float64))
    pmdec = np.nan_to_num(np.asarray(left_pmdec, dtype=np.float64))
    left_xyz = propagate_xyz(left_ra, left_dec, pmra, pmdec, t_ref - left_epoch)
    right_xyz = unit_vectors(right_ra, right_dec)
    spread = float(np.max(np.abs(right_epoch - t_ref)))
    motion = float(np.max(np.hypot(pmra, pmdec))) * spread / 1000.0  # arcsec
    search = min(radius_arcsec * 1.001 + motion, max(max_search_arcsec, radius_arcsec * 1.001))
    k = min(int(n_neighbors), n_right)
    tree = cKDTree(right_xyz, compact_nodes=True, balanced_tree=True)
    dist, idx = tree.query(left_xyz, k=k, distance_upper_bound=arcsec_to_chord(search))
    dist, idx = dist.reshape(n_left, k), idx.reshape(n_left, k)
    ok = np.isfinite(dist)
    if not ok.any():
        return empty
    li = np.broadcast_to(np.arange(n_left)[:, None], (n_left, k))[ok]
    rj = idx[ok]
    if spread > 0.0 or np.any(left_epoch[li] != t_ref):
        # each candidate re-measured at its own epoch
        xyz = propagate_xyz(
            np.asarray(left_ra, dtype=np.float64)[li],
            np.asarray(left_dec, dtype=np.float64)[li],
            pmra[li],
            pmdec[li],
            right_epoch[rj] - left_epoch[li],
        )
        sep = chord_to_arcsec(np.linalg.norm(xyz - right_xyz[rj], axis=-1))
    else:
        sep = chord_to_arcsec(dist[ok])
    keep = sep <= radius_arcsec
    li, rj, sep = li[keep], rj[keep], sep[keep]
    if li.size == 0:
        return empty
    # the nearest candidate of each star
    order = np.lexsort((rj, sep, li))
    li, rj, sep = li[order], rj[order], sep[order]
    first = np.ones(li.size, bool)
    first[1:] = li[1:] != li[:-1]
    li, rj, sep = li[first], rj[first], sep[first]
    # one-to-one: a right source claimed twice goes to the nearer star
    key = np.asarray(left_key)[li]
    order = np.lexsort((key, sep, rj))
    li, rj, sep = li[order], rj[order], sep[order]
    first = np.ones(li.size, bool)
    first[1:] = rj[1:] != rj[:-1]
    li, rj, sep = li[first], rj[first], sep[first]
    order = np.argsort(li, kind="stable")
    return li[order].astype(np.int64), rj[order].astype(np.int64), sep[order]


def near_pixel_border(
    ra_deg: np.ndarray, dec_deg: np.ndarray, order: int, pixel: int, distance_arcsec: float
) -> np.ndarray:
    """True where a position lies outside HEALPix ``pixel`` at ``order`` or within about
    ``distance_arcsec`` of its boundary (conservatively: probes in eight directions at
    distance / cos 22.5 deg, so a boundary nearer than the distance is always detected)."""
    ra = np.asarray(ra_deg, dtype=np.float64)
    dec = np.asarray(dec_deg, dtype=np.float64)
    out = pixel_at_order(healpix29(ra, dec), order) != pixel
    if ra.size == 0:
        return out
    reach = distance_arcsec * 1000.0 / np.cos(np.pi / 8.0)  # mas
    for theta in np.arange(8) * (np.pi / 4.0):
        pra, pdec = propagate(ra, dec, reach * np.cos(theta), reach * np.sin(theta), 1.0)
        out |= pixel_at_order(healpix29(pra, pdec), order) != pixel
    return out


def complement_partitions(
    counts: dict[int, int], order: int, threshold: int, taken: list[tuple[int, int]]
) -> list[tuple[int, int, int]]:
    """Partitions ``(order, pixel, rows)`` for rows outside the ``taken`` partitions.

    ``counts``: rows per pixel at ``order`` (pixels inside no taken partition; ``taken`` are
    at orders <= ``order``). As :func:`bigcat.catalog.healpix.adaptive_partitions`, but a parent
    is merged only while it overlaps no taken partition, so the result and ``taken`` never
    overlap. ``threshold`` 0 keeps every non-empty pixel at ``order``.
    """
    found = [(order, p, n) for p, n in sorted(counts.items()) if n > 0]
    if threshold <= 0 or not found:
        return found
    sums = np.zeros(12 * 4**order, dtype=np.int64)
    sums[[p for _, p, _ in found]] = [n for _, _, n in found]
    blocked = np.zeros(12 * 4**order, dtype=bool)
    for o, p in taken:
        shift = 2 * (order - o)
        blocked[p << shift : (p + 1) << shift] = True
    levels, blocks = [sums], [blocked]
    for _ in range(order):
        levels.append(levels[-1].reshape(-1, 4).sum(axis=1))
        blocks.append(np.asarray(blocks[-1].reshape(-1, 4).any(axis=1)))
    levels.reverse()
    blocks.reverse()
    parts: list[tuple[int, int, int]] = []
    for k, (rows, block) in enumerate(zip(levels, blocks, strict=True)):
        fits = (rows > 0) & ~block & ((rows <= threshold) | (k == order))
        if k > 0:
            parent_fits = (levels[k - 1] > 0) & ~blocks[k - 1] & (levels[k - 1] <= threshold)
            fits &= ~np.repeat(parent_fits, 4)
        parts.extend((k, int(p), int(rows[p])) for p in np.flatnonzero(fits))
    return parts
