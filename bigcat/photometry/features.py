"""The 16 dereddened colours of Appendix A1, the stage-1 network inputs."""

from __future__ import annotations

import logging
from collections.abc import Mapping

import numpy as np
import pandas as pd

from bigcat.schema import COLOUR_FEATURE_COLUMNS, COLOUR_FEATURES

logger = logging.getLogger(__name__)


def colour_features(
    dereddened: Mapping[str, np.ndarray], index: pd.Index | None = None
) -> pd.DataFrame:
    """Dereddened colours m0_blue - m0_red for the pairs of ``schema.COLOUR_FEATURES``.

    Parameters
    ----------
    dereddened : mapping of str to array_like
        Dereddened magnitude m0 = m - A (mag) of each band of ``schema.BANDS``, all of one
        length.
    index : pandas.Index, optional
        Index of the result (the partition's index); a RangeIndex when omitted.

    Returns
    -------
    pandas.DataFrame
        The 16 columns of ``schema.COLOUR_FEATURE_COLUMNS`` in order (mag, float64);
        NaN wherever either magnitude is NaN.

    Raises
    ------
    KeyError
        If a band needed by a colour is missing from ``dereddened``.
    """
    needed = sorted({b for pair in COLOUR_FEATURES for b in pair} - set(dereddened))
    if needed:
        raise KeyError(f"colour_features needs dereddened magnitudes for band(s) {needed}.")
    mags = {band: np.asarray(v, dtype=np.float64) for band, v in dereddened.items()}
    data: dict[str, np.ndarray] = {}
    with np.errstate(invalid="ignore", over="ignore"):
        for name, (blue, red) in zip(COLOUR_FEATURE_COLUMNS, COLOUR_FEATURES, strict=True):
            data[name] = mags[blue] - mags[red]
    return pd.DataFrame(data, index=index, columns=COLOUR_FEATURE_COLUMNS)
