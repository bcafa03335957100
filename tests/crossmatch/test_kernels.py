"""Cross-match kernels against numbers worked by hand: epochs, propagation, fluxes, the match."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bigcat.catalog.crossmatch import (
    complement_partitions,
    flux_error_to_mag_error,
    flux_to_mag,
    jd_to_year,
    mag_to_flux,
    match_epochs,
    near_pixel_border,
    propagate,
    separation_arcsec,
    year_to_jd,
)
from bigcat.catalog.healpix import adaptive_partitions, healpix29, pixel_at_order
from bigcat.stages.crossmatch import blank_counterparts, resolve_claims


def test_julian_dates_and_years():
    assert jd_to_year(2451545.0) == 2000.0  # J2000.0
    assert jd_to_year(2451545.0 + 365.25 * 16) == 2016.0
    assert year_to_jd(1999.0) == pytest.approx(2451179.75)
    assert jd_to_year(year_to_jd(1997.43)) == pytest.approx(1997.43)


def test_propagation_by_hand():
    # 100 mas/yr north for 10 yr: +1 arcsec in dec
    ra, dec = propagate(10.0, 20.0, 0.0, 100.0, 10.0)
    assert ra == pytest.approx(10.0, abs=1e-12)
    assert (dec - 20.0) * 3600 == pytest.approx(1.0, rel=1e-9)
    # mu_alpha* = 100 mas/yr at dec 60 for 10 yr: 1 arcsec on the sky = 2 arcsec of ra
    ra, dec = propagate(10.0, 60.0, 100.0, 0.0, 10.0)
    assert (ra - 10.0) * 3600 == pytest.approx(2.0, rel=1e-6)
    assert separation_arcsec(10.0, 60.0, ra, dec) == pytest.approx(1.0, rel=1e-6)
    # at the pole the motion is still a straight line of the right length
    ra, dec = propagate(0.0, 90.0, 0.0, -500.0, 2.0)
    assert separation_arcsec(0.0, 90.0, ra, dec) == pytest.approx(1.0, rel=1e-6)
    # a missing proper motion is no motion
    assert propagate(5.0, 5.0, np.nan, np.nan, 17.0) == pytest.approx((5.0, 5.0))


def test_unwise_flux_to_vega_mag_by_hand():
    # 22.5 - 2.5 log10(1000) = 15.0; error 2.5 / ln 10 * 10 / 1000 = 0.0108574
    assert flux_to_mag(np.array([1000.0]))[0] == pytest.approx(15.0)
    assert flux_to_mag(np.array([1.0]))[0] == pytest.approx(22.5)
    err = flux_error_to_mag_error(np.array([1000.0]), np.array([10.0]))[0]
    assert err == pytest.approx(2.5 / np.log(10) * 0.01)
    assert err == pytest.approx(0.0108574, abs=1e-7)
    # no flux, a negative flux or no error: no magnitude
    assert np.isnan(flux_to_mag(np.array([0.0, -5.0, np.nan]))).all()
    assert np.isnan(flux_error_to_mag_error(np.array([1000.0]), np.array([np.nan])))[0]
    assert mag_to_flux(np.array([15.0]))[0] == pytest.approx(1000.0)


def _xy(arcsec_east, arcsec_north, ra0=150.0, dec0=2.0):
    ra, dec = propagate(
        ra0, dec0, np.asarray(arcsec_east) * 1000, np.asarray(arcsec_north) * 1000, 1.0
    )
    return np.atleast_1d(ra), np.atleast_1d(dec)


def test_match_is_nearest_and_one_to_one():
    # stars A (0, 0) and B (0.6", 0); sources R1 at (0.2", 0), R2 at (0.9", 0)
    lra, ldec = _xy([0.0, 0.6], [0.0, 0.0])
    rra, rdec = _xy([0.2, 0.9], [0.0, 0.0])
    li, rj, sep = match_epochs(
        lra, ldec, [0, 0], [0, 0], [2016, 2016], np.array([5, 6]), rra, rdec, 2016.0, 1.0
    )
    assert list(zip(li, rj, strict=True)) == [(0, 0), (1, 1)]
    assert sep == pytest.approx([0.2, 0.3], abs=1e-6)
    # without R2 both stars' nearest is R1: A (0.2") keeps it, B (0.4") gets none
    li, rj, sep = match_epochs(
        lra, ldec, [0, 0], [0, 0], [2016, 2016], np.array([5, 6]), rra[:1], rdec[:1], 2016.0, 1.0
    )
    assert list(zip(li, rj, strict=True)) == [(0, 0)]
    # a tie goes to the smaller key
    lra, ldec = _xy([-0.3, 0.3], [0.0, 0.0])
    rra, rdec = _xy([0.0], [0.0])
    li, rj, _ = match_epochs(
        lra, ldec, [0, 0], [0, 0], [2016, 2016], np.array([9, 4]), rra, rdec, 2016.0, 1.0
    )
    assert list(li) == [1]


def test_match_at_each_sources_own_epoch():
    # a star moving 200 mas/yr east; two sources seen at its 1998 and 2001 positions
    ra0, dec0 = 150.0, 2.0
    r98 = propagate(ra0, dec0, 200.0, 0.0, 1998.0 - 2016.0)
    r01 = propagate(ra0, dec0, 200.0, 0.0, 2001.0 - 2016.0)
    rra, rdec = np.array([r98[0], r01[0]]), np.array([r98[1], r01[1]])
    epochs = jd_to_year(year_to_jd(np.array([1998.0, 2001.0])))
    # only the 2001 source, seen at 2001: found although 3 arcsec from the 2016 position
    li, rj, sep = match_epochs(
        [ra0], [dec0], [200.0], [0.0], [2016.0], np.array([1]), rra[1:], rdec[1:], epochs[1:], 1.0
    )
    assert list(rj) == [0] and sep[0] < 1e-6
    # the 1998 source labelled 2001: 0.6" away at 2001, still within 1"
    li, rj, sep = match_epochs(
        [ra0], [dec0], [200.0], [0.0], [2016.0], np.array([1]), rra[:1], rdec[:1], epochs[1:], 1.0
    )
    assert sep[0] == pytest.approx(0.6, abs=1e-3)
    # both: each re-measured at its own epoch, both exact; the nearest (first) wins the tie
    li, rj, sep = match_epochs(
        [ra0], [dec0], [200.0], [0.0], [2016.0], np.array([1]), rra, rdec, epochs, 1.0
    )
    assert len(rj) == 1 and sep[0] < 1e-6
    # no proper motion: nothing within 1" of the 2016 position
    li, _, _ = match_epochs(
        [ra0], [dec0], [0.0], [0.0], [2016.0], np.array([1]), rra, rdec, epochs, 1.0
    )
    assert len(li) == 0


def test_near_pixel_border():
    ra = np.array([45.0, 45.0])
    dec = np.array([30.0, 30.0])
    order = 3
    pix = int(pixel_at_order(healpix29(ra[:1], dec[:1]), order)[0])
    # at a pixel's centre nothing is within 10 arcsec of its border; another pixel is "outside"
    import healpy as hp

    cra, cdec = hp.pix2ang(2**order, pix, nest=True, lonlat=True)
    assert not near_pixel_border(np.array([cra]), np.array([cdec]), order, pix, 10.0)[0]
    assert near_pixel_border(np.array([cra]), np.array([cdec]), order, pix + 1, 10.0)[0]
    # walk east from the centre until the pixel changes: points 5" inside are near the border
    step = np.linspace(0, 10, 20001)
    p = pixel_at_order(healpix29(cra + step, np.full(step.size, cdec)), order)
    edge = cra + step[np.argmax(p != pix)]
    inside = edge - 5.0 / 3600 / np.cos(np.radians(cdec))
    assert pixel_at_order(healpix29(np.array([inside]), np.array([cdec])), order)[0] == pix
    assert near_pixel_border(np.array([inside]), np.array([cdec]), order, pix, 10.0)[0]
    assert not near_pixel_border(np.array([inside]), np.array([cdec]), order, pix, 2.0)[0]


def test_complement_partitions_never_overlap_the_taken_ones():
    rng = np.random.default_rng(1)
    order = 4
    u, c = np.unique(rng.integers(0, 12 * 4**order, 20_000), return_counts=True)
    counts = dict(zip(u.tolist(), c.tolist(), strict=True))
    taken = [
        (o, p)
        for o, p, _ in adaptive_partitions(
            {k: v for k, v in counts.items() if k < 1000}, order, 300
        )
    ]
    cover = np.zeros(12 * 4**order, int)
    for o, p in taken:
        cover[p << 2 * (order - o) : (p + 1) << 2 * (order - o)] += 1
    rest = {k: v for k, v in counts.items() if cover[k] == 0}
    parts = complement_partitions(rest, order, 300, taken)
    for o, p, _ in parts:
        cover[p << 2 * (order - o) : (p + 1) << 2 * (order - o)] += 1
    assert cover.max() == 1 and all(cover[k] == 1 for k in counts)
    assert sum(n for *_, n in parts) == sum(rest.values())
    assert min(o for o, _, _ in parts) < order  # sparse sky merged
    assert complement_partitions(rest, order, 0, taken) == [
        (order, p, n) for p, n in sorted(rest.items())
    ]


def test_claims_across_regions_go_to_the_nearer_star():
    claims = pd.DataFrame(
        {
            "survey": ["tmass", "tmass", "tmass", "unwise"],
            "key": ["A", "A", "B", "A"],
            "sep": [0.4, 0.3, 0.2, 0.9],
            "source_id": [10, 11, 12, 10],
            "part": [0, 1, 1, 0],
        }
    )
    lost = resolve_claims(claims)
    assert lost[["survey", "key", "source_id"]].values.tolist() == [["tmass", "A", 10]]
    rows = pd.DataFrame(
        {
            "source_id": [10, 11],
            **{
                c: [12.0, 13.0]
                for c in ("j_m", "j_msigcom", "h_m", "h_msigcom", "ks_m", "ks_msigcom")
            },
            "tmass_designation": ["A", "X"],
            "ph_qual": ["AAA", "AAB"],
            "tmass_sep_arcsec": [0.4, 0.1],
            "tmass_matched": [True, True],
        }
    )
    out = blank_counterparts(rows, "tmass", np.array([10]))
    assert out["tmass_matched"].tolist() == [False, True]
    assert np.isnan(out.loc[0, "ks_m"]) and out.loc[1, "ks_m"] == 13.0
    assert pd.isna(out.loc[0, "tmass_designation"]) and out.loc[1, "tmass_designation"] == "X"
