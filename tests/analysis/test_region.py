from __future__ import annotations

import math

import healpy as hp
import numpy as np
import pytest

from bigcat.analysis.region import (
    BulgeCylinder,
    GalacticBox,
    pixels_for_region,
    sky_fraction,
)
from bigcat.astrometry import frames
from bigcat.catalog.healpix import healpix29, pixel_at_order
from bigcat.errors import ConfigError


def _cylinder_points(cyl: BulgeCylinder, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """ICRS (ra, dec) of points inside the cylinder: uniform in volume, plus points on its
    curved side, its top and bottom faces and its rims (where pruning errors would show)."""
    rng = np.random.default_rng(seed)
    r_in, z_in = cyl.radius_kpc * (1 - 1e-9), cyl.z_max_kpc * (1 - 1e-9)
    r = np.concatenate(
        [r_in * np.sqrt(rng.uniform(size=n)), np.full(n, r_in), r_in * np.sqrt(rng.uniform(size=n))]
    )
    r = np.concatenate([r, np.full(n, r_in)])
    z = np.concatenate(
        [
            rng.uniform(-z_in, z_in, 2 * n),
            rng.choice([-z_in, z_in], n),
            rng.choice([-z_in, z_in], n),
        ]
    )
    phi = rng.uniform(0, 2 * np.pi, r.size)
    zero = np.zeros(r.size)
    sky = frames.galactocentric_to_icrs(r * np.cos(phi), r * np.sin(phi), z, zero, zero, zero)
    keep = sky["distance_kpc"] < cyl.d_max_kpc
    return sky["ra"][keep], sky["dec"][keep]


def _box_points(box: GalacticBox, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """ICRS (ra, dec) of points in the box, uniform on the sphere, plus its edges and corners."""
    rng = np.random.default_rng(seed)
    lm, bm = math.radians(box.l_max_deg) * (1 - 1e-9), math.radians(box.b_max_deg) * (1 - 1e-9)
    l_rad = np.concatenate([rng.uniform(-lm, lm, 2 * n), rng.choice([-lm, lm], 2 * n)])
    sb = rng.uniform(-math.sin(bm), math.sin(bm), 4 * n)
    b_rad = np.arcsin(sb)
    b_rad[n : 2 * n] = rng.choice([-bm, bm], n)  # top/bottom edges
    b_rad[3 * n :] = rng.choice([-bm, bm], n)  # corners
    g = np.vstack([np.cos(b_rad) * np.cos(l_rad), np.cos(b_rad) * np.sin(l_rad), np.sin(b_rad)])
    v = frames.frame_constants()[3].T @ g
    return np.degrees(np.arctan2(v[1], v[0])) % 360, np.degrees(np.arcsin(v[2]))


def _hit_pixels(ra: np.ndarray, dec: np.ndarray, order: int) -> np.ndarray:
    return np.unique(pixel_at_order(healpix29(ra, dec), order))


@pytest.mark.parametrize("order", [3, 5, 7])
def test_no_bulge_star_falls_in_a_pruned_pixel(order: int) -> None:
    cyl = BulgeCylinder()
    ra, dec = _cylinder_points(cyl, 50_000, seed=order)
    kept = pixels_for_region("bulge", order)
    hit = _hit_pixels(ra, dec, order)
    missed = np.setdiff1d(hit, kept)
    assert missed.size == 0, f"pixels {missed[:5]} hold bulge points but were pruned"
    # tight: few selected pixels hold no sampled point (border pixels with slivers)
    assert kept.size <= 1.25 * hit.size + 8, (kept.size, hit.size)


@pytest.mark.parametrize("order", [3, 5, 7])
def test_no_box_star_falls_in_a_pruned_pixel(order: int) -> None:
    box = GalacticBox()
    ra, dec = _box_points(box, 50_000, seed=10 + order)
    kept = pixels_for_region("vertex", order)
    hit = _hit_pixels(ra, dec, order)
    assert np.setdiff1d(hit, kept).size == 0
    assert kept.size <= 1.25 * hit.size + 8, (kept.size, hit.size)


def test_sky_fractions_are_small() -> None:
    # exact box area: 2 l_max (2 sin b_max) / 4 pi = 0.482 %
    exact_box = 2 * math.radians(5) * 2 * math.sin(math.radians(10)) / (4 * math.pi)
    box7 = sky_fraction(pixels_for_region("vertex", 7), 7)
    assert exact_box <= box7 < 1.2 * exact_box
    assert sky_fraction(pixels_for_region("vertex", 5), 5) < 0.008
    bulge5 = sky_fraction(pixels_for_region("bulge", 5), 5)
    bulge7 = sky_fraction(pixels_for_region("bulge", 7), 7)
    assert bulge7 <= bulge5 < 0.06


def test_bulge_pixels_follow_the_documented_geometry() -> None:
    order = 6
    pix = pixels_for_region("bulge", order)
    ra, dec = hp.pix2ang(1 << order, pix, nest=True, lonlat=True)
    l_deg, b_deg = frames.galactic_lb(ra, dec)
    slack = 2 * math.degrees(hp.max_pixrad(1 << order))
    l_edge = math.degrees(math.asin(2.5 / frames.GALCEN_DISTANCE_KPC))  # 17.9 deg
    b_edge = math.degrees(math.atan((3.0 + 0.0208) / (frames.GALCEN_DISTANCE_KPC - 2.5)))  # 28.3
    assert np.abs(l_deg).max() <= l_edge + slack
    assert np.abs(b_deg).max() <= b_edge + slack
    assert np.abs(l_deg).max() >= l_edge - slack and np.abs(b_deg).max() >= b_edge - slack
    # |b| is bounded by z_max at the near edge, which recedes with |l|:
    # rho_near(l) = R0 cos l - sqrt(R^2 - R0^2 sin^2 l)
    r0 = frames.GALCEN_DISTANCE_KPC
    lr = np.radians(np.clip(np.abs(l_deg) - slack, 0, l_edge))
    rho_near = r0 * np.cos(lr) - np.sqrt(np.maximum(2.5**2 - (r0 * np.sin(lr)) ** 2, 0))
    b_limit = np.degrees(np.arctan(3.0208 / rho_near)) + slack
    assert (np.abs(b_deg) <= b_limit).all()
    assert np.abs(b_deg[np.abs(l_deg) > 15]).max() < np.abs(b_deg).max() - 1  # it tapers


def test_distance_limit_prunes() -> None:
    assert pixels_for_region(BulgeCylinder(d_max_kpc=5.0), 7).size == 0  # near edge at 5.6
    near = BulgeCylinder(d_max_kpc=7.0)
    kept = pixels_for_region(near, 6)
    assert kept.size < pixels_for_region("bulge", 6).size
    ra, dec = _cylinder_points(near, 20_000, seed=3)
    assert ra.size > 1000
    assert np.isin(_hit_pixels(ra, dec, 6), kept).all()


def test_low_orders_and_errors() -> None:
    assert pixels_for_region("bulge", 0).size >= 1
    assert pixels_for_region("vertex", 1, refine=0).dtype == np.int64
    with pytest.raises(ConfigError, match="Did you mean 'bulge'"):
        pixels_for_region("bulg", 5)
    with pytest.raises(ConfigError, match="order"):
        pixels_for_region("bulge", 30)
    with pytest.raises(ConfigError, match="radius_kpc"):
        BulgeCylinder(radius_kpc=-1.0)
    with pytest.raises(ConfigError, match="contain the Sun"):
        BulgeCylinder(radius_kpc=9.0)
