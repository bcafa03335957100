"""Robust statistics shared by the stages and the report (``bigcat.analysis.stats``)."""

from __future__ import annotations

import numpy as np
import pytest

from bigcat.analysis.stats import MAD_TO_SIGMA, robust_scatter


def test_robust_scatter_of_gaussian() -> None:
    x = np.random.default_rng(1).normal(0.0, 0.2, 100_000)
    assert robust_scatter(x) == pytest.approx(0.2, rel=0.02)


def test_robust_scatter_by_hand() -> None:
    # median 2, absolute deviations (1, 0, 1, 8, 0): median 1
    assert robust_scatter([1.0, 2.0, 3.0, 10.0, 2.0]) == pytest.approx(MAD_TO_SIGMA * 1.0)
    # median 2.5, absolute deviations (1.5, 0.5, 0.5, 7.5): median 1; the outlier counts once
    assert robust_scatter([1.0, 2.0, 3.0, 10.0]) == pytest.approx(MAD_TO_SIGMA * 1.0)
    assert robust_scatter([1.0, 2.0, 3.0, 1e6]) == pytest.approx(MAD_TO_SIGMA * 1.0)
    assert robust_scatter(np.array([[0.0, 4.0]])) == pytest.approx(MAD_TO_SIGMA * 2.0)


def test_robust_scatter_nan_rule() -> None:
    """Non-finite values are ignored; fewer than 2 finite values give NaN."""
    x = np.array([1.0, 2.0, 3.0, 10.0])
    with_bad = np.concatenate([x, [np.nan, np.inf, -np.inf]])
    assert robust_scatter(with_bad) == robust_scatter(x)
    assert robust_scatter([5.0, 7.0]) == pytest.approx(MAD_TO_SIGMA * 1.0)
    for few in ([], [1.0], [1.0, np.nan], [np.nan, np.inf]):
        assert np.isnan(robust_scatter(few))
