"""Per-partition photometric kernels (METHOD.md section 2).

Pure functions of one partition: quality cuts, parallax zero-point, RJCE extinction,
pseudo-absolute magnitude, giant cut and the 16 dereddened colours. They never import dask,
never touch files and never read ``true_*`` columns. :func:`run_photometry` chains them; the
Dask stage (``bigcat.stages.photometry``) maps it with :func:`photometry_output_meta` as meta.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from bigcat.photometry._columns import check_columns, float_column
from bigcat.photometry.extinction import band_extinctions, rjce_extinction
from bigcat.photometry.features import colour_features
from bigcat.photometry.giants import giant_mask, pseudo_absolute_magnitude
from bigcat.photometry.params import WANG_CHEN_2019_A_OVER_AV, PhotometryParams
from bigcat.photometry.quality import QUALITY_INPUT_COLUMNS, quality_flags, quality_ok
from bigcat.photometry.zeropoint import corrected_parallax, parallax_zero_point
from bigcat.schema import (
    BAND_MAG_COLUMN,
    BANDS,
    COLOUR_FEATURE_COLUMNS,
    EXTINCTION_COLUMNS,
    QUALITY_BITS,
    REQUIRED_COLUMNS,
    ZEROPOINT_COLUMNS,
)

logger = logging.getLogger(__name__)

__all__ = [
    "PHOTOMETRY_OUTPUT_COLUMNS",
    "PHOTOMETRY_OUTPUT_DTYPES",
    "WANG_CHEN_2019_A_OVER_AV",
    "PhotometryParams",
    "band_extinctions",
    "colour_features",
    "corrected_parallax",
    "giant_mask",
    "parallax_zero_point",
    "photometry_output_meta",
    "pseudo_absolute_magnitude",
    "quality_flags",
    "quality_ok",
    "required_input_columns",
    "rjce_extinction",
    "run_photometry",
]

#: Order of the per-band extinction outputs (SCHEMA.md's order: Ks first, it is the measured one).
_EXTINCTION_ORDER: tuple[str, ...] = ("ks", "g", "bp", "rp", "j", "h", "w1", "w2")

#: Columns :func:`run_photometry` adds, in order, with their numpy dtypes.
PHOTOMETRY_OUTPUT_DTYPES: dict[str, np.dtype] = {
    "quality_flags": np.dtype(np.int64),
    "quality_ok": np.dtype(bool),
    "parallax_zp": np.dtype(np.float64),
    **{EXTINCTION_COLUMNS[band]: np.dtype(np.float64) for band in _EXTINCTION_ORDER},
    "m_pseudo": np.dtype(np.float64),
    "m_pseudo_error": np.dtype(np.float64),
    "is_giant": np.dtype(bool),
    **{name: np.dtype(np.float64) for name in COLOUR_FEATURE_COLUMNS},
}

#: Columns :func:`run_photometry` adds, in order.
PHOTOMETRY_OUTPUT_COLUMNS: list[str] = list(PHOTOMETRY_OUTPUT_DTYPES)


def required_input_columns(params: PhotometryParams | None = None) -> list[str]:
    """Input columns :func:`run_photometry` cannot run without.

    The four ``schema.ZEROPOINT_COLUMNS`` are not in the list: without them the zero-point
    step is skipped with a ``RuntimeWarning`` and a flag (and they are not read at all when
    ``params.apply_zeropoint`` is False).

    Parameters
    ----------
    params : PhotometryParams, optional
        Settings (the list does not depend on them at present).

    Returns
    -------
    list of str
        In ``schema.REQUIRED_COLUMNS`` order.
    """
    del params  # same columns for every setting today; kept for a stable signature
    needed = set(QUALITY_INPUT_COLUMNS)
    return [c for c in REQUIRED_COLUMNS if c in needed]


def optional_input_columns(params: PhotometryParams | None = None) -> list[str]:
    """Input columns read when present: the zero-point columns if ``apply_zeropoint``."""
    params = PhotometryParams() if params is None else params
    return list(ZEROPOINT_COLUMNS) if params.apply_zeropoint else []


def _empty_outputs(index: pd.Index) -> pd.DataFrame:
    return pd.DataFrame(
        {name: np.empty(len(index), dtype=dt) for name, dt in PHOTOMETRY_OUTPUT_DTYPES.items()},
        index=index,
    )


def _check_no_clash(df: pd.DataFrame) -> None:
    clash = [c for c in PHOTOMETRY_OUTPUT_COLUMNS if c in df.columns]
    if clash:
        raise ValueError(
            f"The partition already has photometry output column(s) {clash}; run_photometry "
            "adds them and keeps every input column unchanged. Drop them (or process the raw "
            "catalogue, not an already processed one)."
        )


def photometry_output_meta(input_meta: pd.DataFrame) -> pd.DataFrame:
    """Empty frame with the columns and dtypes :func:`run_photometry` returns, for Dask meta.

    Parameters
    ----------
    input_meta : pandas.DataFrame
        Meta (or any frame) of the input partitions; only its columns, dtypes and index
        type are used.

    Returns
    -------
    pandas.DataFrame
        Zero rows: the input columns with their dtypes, then ``PHOTOMETRY_OUTPUT_COLUMNS``
        with ``PHOTOMETRY_OUTPUT_DTYPES``.
    """
    _check_no_clash(input_meta)
    head = input_meta.iloc[:0]
    return pd.concat([head, _empty_outputs(head.index)], axis=1)


def run_photometry(df: pd.DataFrame, params: PhotometryParams | None = None) -> pd.DataFrame:
    """Run every per-star transform of METHOD.md section 2 on one partition.

    Steps: quality bits; parallax zero-point (``parallax_zp``); RJCE A_Ks and the other seven
    bands; dereddened magnitudes m0 = m - A; M_pseudo from ``parallax_zp``, its error from
    ``parallax_error`` and J0 (eq. 6); the giant cut (eq. 7) on J0 - H0; the 16 colours.

    Parameters
    ----------
    df : pandas.DataFrame
        One partition with the columns of :func:`required_input_columns` (and, for the
        zero-point, ``schema.ZEROPOINT_COLUMNS``). Numpy or pandas nullable dtypes; missing
        values are NaN. Magnitudes in mag (unWISE in Vega mag), parallaxes in mas.
    params : PhotometryParams, optional
        Settings; the paper's values when omitted.

    Returns
    -------
    pandas.DataFrame
        A new frame with the same index and rows, in the same order (no row is ever
        dropped): every input column unchanged and in order, followed by
        ``PHOTOMETRY_OUTPUT_COLUMNS``:

        - ``quality_flags`` (int64 bit mask, ``schema.QUALITY_BITS``), ``quality_ok`` (bool);
        - ``parallax_zp`` (mas): parallax minus the zero-point, or the uncorrected parallax
          where the zero-point is unavailable (bit ``zeropoint_unavailable``);
        - ``a_ks`` ... ``a_w2`` (mag): NaN where H or W2 is missing; A_Ks < 0 clipped to 0
          (bit ``negative_extinction``);
        - ``m_pseudo``, ``m_pseudo_error``: eq. 6; NaN where J0 is missing or the row has
          bad astrometry (non-finite parallax or error, or error <= 0);
        - ``is_giant`` (bool): eq. 7, and only where ``quality_ok``;
        - the 16 colours ``schema.COLOUR_FEATURE_COLUMNS`` (mag), NaN where a magnitude or
          the extinction is missing.

    Raises
    ------
    KeyError
        If a required column is absent (naming every missing column).
    ValueError
        If the partition already has a photometry output column.

    Warns
    -----
    RuntimeWarning
        If ``params.apply_zeropoint`` and a zero-point column is absent.
    """
    params = PhotometryParams() if params is None else params
    check_columns(df, required_input_columns(params), "run_photometry")
    _check_no_clash(df)

    flags = quality_flags(df, params)

    parallax = float_column(df, "parallax")
    parallax_error = float_column(df, "parallax_error")
    if params.apply_zeropoint:
        zpt_mas, zp_available = parallax_zero_point(df)
    else:
        zpt_mas = np.full(len(df), np.nan)
        zp_available = np.zeros(len(df), dtype=bool)
    flags[~zp_available] |= QUALITY_BITS["zeropoint_unavailable"]
    parallax_zp = corrected_parallax(parallax, zpt_mas, zp_available)

    mags = {band: float_column(df, BAND_MAG_COLUMN[band]) for band in BANDS}
    a_ks, negative = rjce_extinction(mags["h"], mags["w2"], params)
    flags[negative] |= QUALITY_BITS["negative_extinction"]
    extinction = band_extinctions(a_ks, params)
    with np.errstate(invalid="ignore", over="ignore"):
        dereddened = {band: mags[band] - extinction[band] for band in BANDS}

    m_pseudo, m_pseudo_error = pseudo_absolute_magnitude(
        parallax_zp, parallax_error, dereddened["j"]
    )
    bad_astrometry = (flags & QUALITY_BITS["bad_astrometry"]) != 0
    m_pseudo[bad_astrometry] = np.nan
    m_pseudo_error[bad_astrometry] = np.nan

    ok = quality_ok(flags)
    is_giant = giant_mask(m_pseudo, dereddened["j"], dereddened["h"], params) & ok

    added: dict[str, np.ndarray] = {
        "quality_flags": flags,
        "quality_ok": ok,
        "parallax_zp": parallax_zp,
        **{EXTINCTION_COLUMNS[band]: extinction[band] for band in _EXTINCTION_ORDER},
        "m_pseudo": m_pseudo,
        "m_pseudo_error": m_pseudo_error,
        "is_giant": is_giant,
    }
    new = pd.DataFrame(added, index=df.index)
    colours = colour_features(dereddened, index=df.index)
    out = pd.concat([df, new, colours], axis=1)
    logger.debug(
        "photometry: %d rows, %d pass quality, %d giants, zero-point for %d",
        len(df),
        int(ok.sum()),
        int(is_giant.sum()),
        int(zp_available.sum()),
    )
    return out
