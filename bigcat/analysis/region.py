"""Which HEALPix pixels can hold an analysis' stars: spatial pruning before any data is read.

Pixels are nested HEALPix pixels of the catalogue (HATS), in ICRS: a pixel at order ``k``
covers the ICRS directions of ``healpy.pix2vec(2**k, pix, nest=True)``'s cell, as
``bigcat.catalog.healpix`` defines it. Two regions are known:

``BulgeCylinder`` (``"bulge"``, METHOD.md section 7)
    Stars with R = sqrt(X^2 + Y^2) < ``radius_kpc`` about the GC, |Z| < ``z_max_kpc`` and
    heliocentric distance < ``d_max_kpc`` (Galactocentric frame of
    ``bigcat.astrometry.galactocentric``). Seen from the Sun (R0 = 8.122 kpc) the cylinder
    spans |l| < asin(2.5 / 8.122) = 17.9 deg, and since its nearest point is R0 - 2.5 = 5.6 kpc
    away, |b| < atan((3 + 0.02) / 5.6) = 28.3 deg at l = 0, shrinking with |l| as the near edge
    recedes. The direction test is exact: a ray from the Sun, s + t n, meets the cylinder for
    some 0 < t <= d_max iff the interval where its horizontal distance is < R (a quadratic in
    t), the slab |Z| < z_max (linear in t) and (0, d_max] intersect.
``GalacticBox`` (``"vertex"``, METHOD.md section 8)
    |l| <= ``l_max_deg`` and |b| <= ``b_max_deg`` (Galactic coordinates, 5 and 10 deg).

Conservative by construction (never misses a pixel)
----------------------------------------------------
A pixel whose cell holds a point of the region has its centre within ``theta`` = the pixel's
maximum centre-to-corner angle (``healpy.max_pixrad``, which bounds the whole cell; we use
1.05 x) of a region direction. So each test is applied to the pixel centre with the region
grown by ``theta``:

* box: |b| <= b_max + theta, and either |l| <= l_max or cos(b) sin(|l| - l_max) <= sin(theta)
  (the angular distance to the nearest bounding meridian), both necessary conditions;
* cylinder: a direction within ``theta`` of a ray meeting the cylinder at distance t passes,
  at the same t, within t * theta <= t_far * theta of that point, where t_far bounds the
  distance of any cylinder point from the Sun (|s| + sqrt(R^2 + z_max^2), at most d_max); so
  the centre ray must meet the cylinder grown by delta = t_far * theta in R and in z_max.

The search is hierarchical: from order 0, the children of kept pixels are tested at each
order (a pixel holding region points has a parent holding them, so nothing is lost), down to
``order + refine`` (finer cells, smaller margin); the result is the set of their parents at
``order``. The over-selection is thus a fraction of the target pixel's size.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import healpy as hp
import numpy as np

from bigcat.astrometry import frames
from bigcat.errors import ConfigError, did_you_mean

logger = logging.getLogger(__name__)

MAX_ORDER = 29
#: Factor on ``healpy.max_pixrad``: a cell's points lie within it (checked to 1e-12).
_MARGIN_SAFETY = 1.05


def _positive(owner: str, name: str, value: float) -> None:
    if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
        raise ConfigError(f"{owner}.{name} must be a positive number, got {value!r}.")


@dataclass(frozen=True)
class BulgeCylinder:
    """The bulge selection volume of the gradient analysis.

    Attributes
    ----------
    radius_kpc : float
        Cylinder radius about the GC in the Galactocentric X-Y plane (kpc). Paper: 2.5.
    z_max_kpc : float
        Half-height: stars with |Z| < z_max (kpc).
    d_max_kpc : float
        Largest heliocentric distance considered (kpc); only matters below the cylinder's
        far side (~11 kpc).
    """

    radius_kpc: float = 2.5
    z_max_kpc: float = 3.0
    d_max_kpc: float = 20.0

    def __post_init__(self) -> None:
        for name in ("radius_kpc", "z_max_kpc", "d_max_kpc"):
            _positive("BulgeCylinder", name, getattr(self, name))
        r0 = float(np.hypot(*frames.sun_position_kpc()[:2]))
        if self.radius_kpc >= r0:
            raise ConfigError(
                f"BulgeCylinder.radius_kpc={self.radius_kpc} would contain the Sun "
                f"(R0 = {r0:.3f} kpc); use a radius below R0."
            )

    def far_distance_kpc(self) -> float:
        """Upper bound on the heliocentric distance of any point of the region (kpc)."""
        sun = frames.sun_position_kpc()
        far = float(np.linalg.norm(sun)) + math.hypot(self.radius_kpc, self.z_max_kpc)
        return min(far, self.d_max_kpc)

    def may_contain(self, vec_icrs: np.ndarray, margin_rad: float) -> np.ndarray:
        """True where an ICRS unit vector (shape (3, n)) is within ``margin_rad`` of a
        direction that meets the cylinder (conservative: may include a few more)."""
        m, sun, _, _ = frames.frame_constants()
        n = m @ vec_icrs
        delta = self.far_distance_kpc() * margin_rad
        radius, z_max = self.radius_kpc + delta, self.z_max_kpc + delta
        t_lo = np.zeros(n.shape[1])
        t_hi = np.full(n.shape[1], self.d_max_kpc)
        # horizontal: a t^2 + b t + c < 0
        a = n[0] ** 2 + n[1] ** 2
        b = 2.0 * (sun[0] * n[0] + sun[1] * n[1])
        c = sun[0] ** 2 + sun[1] ** 2 - radius**2
        disc = b * b - 4.0 * a * c
        ok = (disc > 0) | (c <= 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            root = np.sqrt(np.maximum(disc, 0.0))
            h_lo = np.where(a > 0, (-b - root) / (2.0 * a), -np.inf)
            h_hi = np.where(a > 0, (-b + root) / (2.0 * a), np.inf)
            # vertical: |sun_z + t n_z| <= z_max
            v1 = (-z_max - sun[2]) / n[2]
            v2 = (z_max - sun[2]) / n[2]
        flat = n[2] == 0
        v_lo = np.where(flat, -np.inf, np.minimum(v1, v2))
        v_hi = np.where(flat, np.inf, np.maximum(v1, v2))
        ok &= ~flat | (abs(sun[2]) <= z_max)
        lo = np.maximum.reduce([t_lo, h_lo, v_lo])
        hi = np.minimum.reduce([t_hi, h_hi, v_hi])
        return ok & (lo <= hi)


@dataclass(frozen=True)
class GalacticBox:
    """The |l| <= l_max, |b| <= b_max box of the vertex-deviation analysis.

    Attributes
    ----------
    l_max_deg : float
        Half-width in Galactic longitude about l = 0 (deg). Paper: 5.
    b_max_deg : float
        Half-height in Galactic latitude about b = 0 (deg). Paper: 10.
    """

    l_max_deg: float = 5.0
    b_max_deg: float = 10.0

    def __post_init__(self) -> None:
        _positive("GalacticBox", "l_max_deg", self.l_max_deg)
        _positive("GalacticBox", "b_max_deg", self.b_max_deg)
        if self.l_max_deg > 180 or self.b_max_deg > 90:
            raise ConfigError(
                f"GalacticBox({self.l_max_deg}, {self.b_max_deg}): l_max_deg must be <= 180 "
                "and b_max_deg <= 90."
            )

    def may_contain(self, vec_icrs: np.ndarray, margin_rad: float) -> np.ndarray:
        """True where an ICRS unit vector (shape (3, n)) is within ``margin_rad`` of the box
        (conservative: may include a few more)."""
        g = frames.frame_constants()[3] @ vec_icrs
        b = np.arcsin(np.clip(g[2], -1.0, 1.0))
        abs_l = np.abs(np.arctan2(g[1], g[0]))
        l_max, b_max = math.radians(self.l_max_deg), math.radians(self.b_max_deg)
        if margin_rad >= math.pi / 2:
            return np.ones(g.shape[1], dtype=bool)
        off = np.minimum(np.maximum(abs_l - l_max, 0.0), math.pi / 2)
        near_l = np.cos(b) * np.sin(off) <= math.sin(margin_rad)
        return (np.abs(b) <= b_max + margin_rad) & near_l


Region = BulgeCylinder | GalacticBox

#: Named regions: the gradient analysis' bulge cylinder and the vertex analysis' box.
REGIONS: dict[str, Region] = {"bulge": BulgeCylinder(), "vertex": GalacticBox()}


def _resolve(region: Region | str) -> Region:
    if isinstance(region, BulgeCylinder | GalacticBox):
        return region
    if isinstance(region, str) and region in REGIONS:
        return REGIONS[region]
    raise ConfigError(
        f"unknown sky region {region!r}; the regions are {sorted(REGIONS)} or a "
        f"BulgeCylinder / GalacticBox.{did_you_mean(str(region), REGIONS)}"
    )


def pixels_for_region(region: Region | str, order: int, refine: int = 2) -> np.ndarray:
    """Nested HEALPix pixels at ``order`` whose cells may hold stars of ``region``.

    Parameters
    ----------
    region : BulgeCylinder, GalacticBox or str
        The region, or a name of ``REGIONS`` (``"bulge"``, ``"vertex"``).
    order : int
        HEALPix order of the catalogue's partitions (0-29; nside = 2**order). The work and
        the result grow as 4**order (the bulge covers ~5 % of the sky: ~0.6 M pixels at
        order 11), which suits partition orders, not star-level indices.
    refine : int
        Extra orders the search descends below ``order`` before taking parents; larger is
        tighter (less over-selection) and slower. 2 keeps the margin a quarter of a pixel.

    Returns
    -------
    numpy.ndarray
        Sorted unique int64 pixel indices (nested, ICRS). Every pixel holding a point of
        the region is included (see the module notes); a few border pixels may hold none.

    Raises
    ------
    ConfigError
        If ``order`` or ``refine`` is out of range or the region name is unknown.
    """
    region = _resolve(region)
    if not isinstance(order, int | np.integer) or not 0 <= order <= MAX_ORDER:
        raise ConfigError(f"HEALPix order must be an integer from 0 to 29, got {order!r}.")
    if not isinstance(refine, int | np.integer) or refine < 0:
        raise ConfigError(f"refine must be a non-negative integer, got {refine!r}.")
    final = min(int(order) + int(refine), MAX_ORDER)
    pix = np.arange(12, dtype=np.int64)
    for k in range(final + 1):
        if k > 0:
            pix = (4 * pix[:, None] + np.arange(4, dtype=np.int64)).ravel()
        nside = 1 << k
        vec = np.asarray(hp.pix2vec(nside, pix, nest=True))
        margin = _MARGIN_SAFETY * float(hp.max_pixrad(nside))
        pix = pix[region.may_contain(vec, margin)]
    out = np.unique(pix >> (2 * (final - int(order))))
    logger.debug(
        "%s at order %d: %d pixels (%.3f %% of the sky)",
        region,
        order,
        out.size,
        100 * sky_fraction(out, int(order)),
    )
    return out


def sky_fraction(pixels: np.ndarray, order: int) -> float:
    """Fraction of the sky covered by ``pixels`` (unique nested indices at ``order``)."""
    return float(np.unique(pixels).size) / (12 * 4**order)
