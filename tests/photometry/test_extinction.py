from __future__ import annotations

import numpy as np
import pytest

from bigcat.photometry import PhotometryParams, band_extinctions, rjce_extinction
from bigcat.schema import BANDS


def test_rjce_by_hand():
    # H = 12.3, W2 = 11.9: A_Ks = 0.918 * (12.3 - 11.9 - 0.05) = 0.918 * 0.35 = 0.3213
    a_ks, negative = rjce_extinction(np.array([12.3]), np.array([11.9]))
    assert a_ks[0] == pytest.approx(0.3213, abs=1e-12)
    assert not negative[0]


def test_rjce_negative_clipped_and_flagged():
    # H - W2 = 0.0: 0.918 * (0 - 0.05) = -0.0459 -> 0, flagged; H - W2 = 0.05: exactly 0, not flagged
    a_ks, negative = rjce_extinction(np.array([11.0, 11.05]), np.array([11.0, 11.0]))
    assert a_ks.tolist() == [0.0, pytest.approx(0.0, abs=1e-12)]
    assert negative.tolist() == [True, False]


def test_rjce_nan_inputs_give_nan():
    a_ks, negative = rjce_extinction(
        np.array([np.nan, 12.0, np.inf, 12.0]), np.array([11.0, np.nan, 11.0, -np.inf])
    )
    assert np.isnan(a_ks).all()
    assert not negative.any()


def test_rjce_constants_are_settings():
    # Majewski et al. (2011) IRAC form, c = 0.08; Wang & Chen law, k = 0.743
    params = PhotometryParams(rjce_constant=0.743, rjce_intrinsic_h_w2=0.08)
    a_ks, _ = rjce_extinction(np.array([12.3]), np.array([11.9]), params)
    assert a_ks[0] == pytest.approx(0.743 * 0.32)


def test_band_extinctions_by_hand():
    a = band_extinctions(np.array([0.3213]))
    assert list(a) == list(BANDS)
    assert a["ks"][0] == 0.3213
    # A_J = 0.3213 * 0.243 / 0.078 = 1.000973...
    assert a["j"][0] == pytest.approx(0.3213 * 0.243 / 0.078)
    assert a["j"][0] == pytest.approx(1.0009731, rel=1e-6)
    assert a["bp"][0] == pytest.approx(0.3213 * 1.002 / 0.078)
    assert a["w2"][0] == pytest.approx(0.3213 / 3.0)  # 0.026 / 0.078 = 1/3


def test_wang_chen_implies_0743():
    # documented inconsistency: under Wang & Chen, A_Ks / E(H - W2) = 0.078 / (0.131 - 0.026)
    a = band_extinctions(np.array([1.0]))
    assert a["ks"][0] / (a["h"][0] - a["w2"][0]) == pytest.approx(0.743, abs=5e-4)


def test_band_extinctions_nan_and_empty():
    a = band_extinctions(np.array([np.nan]))
    assert all(np.isnan(v[0]) for v in a.values())
    assert all(v.shape == (0,) for v in band_extinctions(np.array([])).values())
