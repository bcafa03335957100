"""Standardisation of features and target, fitted on the training rows only and stored with
the model (METHOD.md section 3).

Features: x' = (x - mean) / std per column. Target: y' = (y - mean) / std, and uncertainties
scale as sigma' = sigma / std. A column with zero spread gets std = 1 (it is only centred).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Standardiser:
    """Per-feature and target location and scale.

    Attributes
    ----------
    feature_mean : numpy.ndarray, shape (d,)
        Mean of each feature over the training rows (feature units).
    feature_std : numpy.ndarray, shape (d,)
        Standard deviation of each feature (feature units); 1 where a feature is constant.
    target_mean : float
        Mean target over the training rows (target units).
    target_std : float
        Standard deviation of the target (target units); 1 when the target is constant.
    """

    feature_mean: np.ndarray
    feature_std: np.ndarray
    target_mean: float
    target_std: float

    @classmethod
    def fit(cls, X: np.ndarray, y: np.ndarray) -> Standardiser:
        """Fit on training rows.

        Parameters
        ----------
        X : numpy.ndarray, shape (n, d)
            Finite training features.
        y : numpy.ndarray, shape (n,)
            Finite training targets.
        """
        X = np.asarray(X, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        if X.ndim != 2 or len(X) == 0:
            raise ValueError(f"Standardiser.fit needs a non-empty (n, d) array, got {X.shape}.")
        mean = X.mean(axis=0)
        std = X.std(axis=0)
        std = np.where(std > 0, std, 1.0)
        t_std = float(y.std())
        return cls(mean, std, float(y.mean()), t_std if t_std > 0 else 1.0)

    @property
    def n_features(self) -> int:
        """Number of features d."""
        return len(self.feature_mean)

    def transform_features(self, X: np.ndarray) -> np.ndarray:
        """Standardised features, shape (n, d), float64."""
        return (np.asarray(X, dtype=np.float64) - self.feature_mean) / self.feature_std

    def transform_target(self, y: np.ndarray) -> np.ndarray:
        """Standardised target values, shape (n,), float64."""
        return (np.asarray(y, dtype=np.float64) - self.target_mean) / self.target_std

    def transform_error(self, y_err: np.ndarray) -> np.ndarray:
        """Target uncertainties in standardised units, shape (n,), float64."""
        return np.asarray(y_err, dtype=np.float64) / self.target_std

    def inverse_target(self, y_std: np.ndarray) -> np.ndarray:
        """Standardised target values back in target units."""
        return np.asarray(y_std, dtype=np.float64) * self.target_std + self.target_mean

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-serialisable form (lists of floats)."""
        return {
            "feature_mean": [float(v) for v in self.feature_mean],
            "feature_std": [float(v) for v in self.feature_std],
            "target_mean": float(self.target_mean),
            "target_std": float(self.target_std),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Standardiser:
        """Inverse of :meth:`to_dict`."""
        mean = np.asarray(d["feature_mean"], dtype=np.float64)
        std = np.asarray(d["feature_std"], dtype=np.float64)
        if mean.shape != std.shape or mean.ndim != 1:
            raise ValueError(
                f"standardiser: feature_mean {mean.shape} and feature_std {std.shape} must be "
                f"1-d and of equal length."
            )
        return cls(mean, std, float(d["target_mean"]), float(d["target_std"]))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Standardiser):
            return NotImplemented
        return (
            np.array_equal(self.feature_mean, other.feature_mean)
            and np.array_equal(self.feature_std, other.feature_std)
            and self.target_mean == other.target_mean
            and self.target_std == other.target_std
        )

    __hash__ = None  # type: ignore[assignment]
