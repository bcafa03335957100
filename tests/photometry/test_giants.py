from __future__ import annotations

import numpy as np
import pytest

from bigcat.photometry import PhotometryParams, giant_mask, pseudo_absolute_magnitude


def test_pseudo_absolute_magnitude_by_hand():
    # parallax 0.5 mas, J0 = 10: M = 0.5 * 10^(0.2*10) = 0.5 * 100 = 50; sigma = 0.1 * 100 = 10
    m, s = pseudo_absolute_magnitude(np.array([0.5]), np.array([0.1]), np.array([10.0]))
    assert m[0] == pytest.approx(50.0)
    assert s[0] == pytest.approx(10.0)


def test_pseudo_absolute_magnitude_negative_zero_nan():
    m, s = pseudo_absolute_magnitude(
        np.array([-0.2, 0.0, np.nan, 1.0]),
        np.array([0.1, 0.1, 0.1, 0.1]),
        np.array([5.0, 5.0, 5.0, np.nan]),
    )
    # J0 = 5 -> 10^(0.2*5) = 10
    assert m[0] == pytest.approx(-2.0) and m[1] == 0.0
    assert np.isnan(m[2]) and np.isnan(m[3]) and np.isnan(s[3])
    assert s[0] == pytest.approx(1.0)


def test_giant_cut_boundary_both_sides():
    # J0 - H0 = 0.6: boundary = 492.101 * 0.6 - 53.827 = 295.2606 - 53.827 = 241.4336
    boundary = 492.101 * 0.6 - 53.827
    assert boundary == pytest.approx(241.4336)
    j0 = np.full(3, 10.6)
    h0 = np.full(3, 10.0)
    m = np.array([241.43, 241.44, boundary])
    assert giant_mask(m, j0, h0).tolist() == [True, False, False]  # strict inequality


def test_giant_cut_red_clump_and_dwarf():
    # red clump: M_J ~ -0.9, J-H ~ 0.55 -> M_pseudo = 10^(0.2*-0.9 + 2) = 66.1 < 216.8 -> giant
    # K dwarf: M_J ~ 4.5, J-H ~ 0.55 -> M_pseudo = 10^(0.2*4.5 + 2) = 794 > 216.8 -> not giant
    m = 10 ** (0.2 * np.array([-0.9, 4.5]) + 2)
    assert m == pytest.approx([66.07, 794.33], abs=0.01)
    assert giant_mask(m, np.array([10.55, 10.55]), np.array([10.0, 10.0])).tolist() == [True, False]


def test_giant_cut_nan_false():
    out = giant_mask(np.array([np.nan, 10.0, 10.0, np.inf]), np.array([1.0, np.nan, 1.0, 1.0]),
                     np.array([0.0, 0.0, -np.inf, 0.0]))  # fmt: skip
    assert out.tolist() == [False, False, False, False]


def test_giant_cut_is_a_setting():
    params = PhotometryParams(giant_cut_slope=100.0, giant_cut_intercept=0.0)
    # boundary = 100 * 0.5 = 50
    assert giant_mask(
        np.array([49.0, 51.0]), np.array([1.5, 1.5]), np.array([1.0, 1.0]), params
    ).tolist() == [True, False]
