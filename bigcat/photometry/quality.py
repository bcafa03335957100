"""Quality cuts of METHOD.md section 2, as a bit mask (``schema.QUALITY_BITS``).

A row is never dropped: it carries the bits of every cut it fails, and ``quality_ok`` is
True when none of ``schema.QUALITY_CUT_BITS`` is set.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from bigcat.photometry._columns import check_columns, float_column
from bigcat.photometry.params import PhotometryParams
from bigcat.schema import (
    BAND_MAG_COLUMN,
    BANDS,
    MAG_ERROR_COLUMNS,
    MAGNITUDE_RANGE,
    QUALITY_BITS,
    QUALITY_CUT_BITS,
)

logger = logging.getLogger(__name__)

#: Columns ``quality_flags`` reads.
QUALITY_INPUT_COLUMNS: list[str] = [
    "phot_bp_rp_excess_factor",
    "ruwe",
    "w1_flags",
    "w2_flags",
    "parallax",
    "parallax_error",
    *(BAND_MAG_COLUMN[band] for band in BANDS),
]


def quality_flags(df: pd.DataFrame, params: PhotometryParams | None = None) -> np.ndarray:
    """Bit mask of the quality cuts each row fails.

    Parameters
    ----------
    df : pandas.DataFrame
        One partition with the columns of ``QUALITY_INPUT_COLUMNS``: Gaia
        ``phot_bp_rp_excess_factor`` and ``ruwe`` (dimensionless), unWISE ``w1_flags``,
        ``w2_flags`` (integer bit fields, 0 = good; any integer, float or nullable dtype),
        ``parallax`` and ``parallax_error`` (mas), and the eight magnitudes of
        ``schema.BAND_MAG_COLUMN`` (mag).
    params : PhotometryParams, optional
        Cut limits; the paper's defaults when omitted.

    Returns
    -------
    numpy.ndarray of int64, shape (len(df),)
        OR of ``schema.QUALITY_BITS`` values:

        - ``excess_factor``: excess factor > ``max_excess_factor`` or not finite (equal passes);
        - ``ruwe``: RUWE > ``max_ruwe`` or not finite (equal passes);
        - ``w1_flags`` / ``w2_flags``: flag value != 0 (a missing flag counts as bad);
        - ``missing_photometry``: any of the eight magnitudes NaN or infinite;
        - ``bad_astrometry``: parallax or its error not finite, or error <= 0 (mas).
          A negative or zero parallax is valid data and is not flagged.
        - ``implausible_photometry``: a finite magnitude outside ``schema.MAGNITUDE_RANGE``
          (e.g. a 99 sentinel), or a magnitude error of ``schema.MAG_ERROR_COLUMNS`` (those
          present in ``df``) <= 0 or infinite (mag).

    Raises
    ------
    KeyError
        If a needed column is absent, naming every missing column.
    """
    params = PhotometryParams() if params is None else params
    check_columns(df, QUALITY_INPUT_COLUMNS, "The quality cuts")
    n = len(df)
    flags = np.zeros(n, dtype=np.int64)

    with np.errstate(invalid="ignore"):
        excess = float_column(df, "phot_bp_rp_excess_factor")
        # ``~(x <= max)`` is True for NaN as well as for x > max.
        flags[~(excess <= params.max_excess_factor) | ~np.isfinite(excess)] |= QUALITY_BITS[
            "excess_factor"
        ]
        ruwe = float_column(df, "ruwe")
        flags[~(ruwe <= params.max_ruwe) | ~np.isfinite(ruwe)] |= QUALITY_BITS["ruwe"]

        for band in ("w1", "w2"):
            wflags = float_column(df, f"{band}_flags")
            flags[~(wflags == 0)] |= QUALITY_BITS[f"{band}_flags"]

        missing = np.zeros(n, dtype=bool)
        for band in BANDS:
            missing |= ~np.isfinite(float_column(df, BAND_MAG_COLUMN[band]))
        flags[missing] |= QUALITY_BITS["missing_photometry"]
        lo, hi = MAGNITUDE_RANGE
        absurd = np.zeros(n, dtype=bool)
        for band in BANDS:
            mag = float_column(df, BAND_MAG_COLUMN[band])
            absurd |= np.isfinite(mag) & ((mag < lo) | (mag > hi))
        for col in MAG_ERROR_COLUMNS:
            if col in df.columns:
                err = float_column(df, col)
                absurd |= (err <= 0) | np.isinf(err)
        flags[absurd] |= QUALITY_BITS["implausible_photometry"]

        parallax = float_column(df, "parallax")
        parallax_error = float_column(df, "parallax_error")
        bad = ~np.isfinite(parallax) | ~np.isfinite(parallax_error) | ~(parallax_error > 0)
        flags[bad] |= QUALITY_BITS["bad_astrometry"]
    return flags


def quality_ok(flags: np.ndarray) -> np.ndarray:
    """True where none of the cut bits ``schema.QUALITY_CUT_BITS`` is set.

    Parameters
    ----------
    flags : numpy.ndarray of int
        Bit masks from :func:`quality_flags` (possibly with informational bits set).

    Returns
    -------
    numpy.ndarray of bool
    """
    return (np.asarray(flags, dtype=np.int64) & QUALITY_CUT_BITS) == 0
