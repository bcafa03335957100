from __future__ import annotations

import json

import numpy as np
import pytest

from bigcat.nn.scaler import Standardiser


def test_fit_transform_by_hand():
    X = np.array([[1.0, 5.0], [3.0, 5.0]])
    s = Standardiser.fit(X, np.array([10.0, 14.0]))
    np.testing.assert_allclose(s.feature_mean, [2.0, 5.0])
    np.testing.assert_allclose(s.feature_std, [1.0, 1.0])  # constant column: std set to 1
    np.testing.assert_allclose(s.transform_features(X), [[-1.0, 0.0], [1.0, 0.0]])
    assert s.target_mean == 12.0 and s.target_std == 2.0
    np.testing.assert_allclose(s.transform_target([14.0]), [1.0])
    np.testing.assert_allclose(s.transform_error([0.5]), [0.25])
    np.testing.assert_allclose(s.inverse_target(s.transform_target([3.0, 7.0])), [3.0, 7.0])


def test_json_round_trip():
    s = Standardiser.fit(np.random.default_rng(0).normal(size=(20, 3)), np.arange(20.0))
    back = Standardiser.from_dict(json.loads(json.dumps(s.to_dict())))
    assert back == s


def test_bad_dict_and_empty_fit():
    with pytest.raises(ValueError, match="equal length"):
        Standardiser.from_dict(
            {"feature_mean": [0, 1], "feature_std": [1], "target_mean": 0, "target_std": 1}
        )
    with pytest.raises(ValueError, match="non-empty"):
        Standardiser.fit(np.empty((0, 2)), np.empty(0))
