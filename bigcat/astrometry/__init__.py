"""Astrometry kernels: photometric parallaxes, their combination with Gaia, GGD distances."""

from __future__ import annotations

from bigcat.astrometry.distance import (
    ggd_distance_posterior,
    grid_distance_posterior,
    parallax_posterior_distances,
)
from bigcat.astrometry.parallax import (
    combine_parallaxes,
    combine_parallaxes_with_outliers,
    parallax_from_pseudo_magnitude,
)
from bigcat.astrometry.prior import PriorTable, load_prior_table

__all__ = [
    "PriorTable",
    "combine_parallaxes",
    "combine_parallaxes_with_outliers",
    "ggd_distance_posterior",
    "grid_distance_posterior",
    "load_prior_table",
    "parallax_from_pseudo_magnitude",
    "parallax_posterior_distances",
]
