"""Gaia DR3 parallax zero-point (Lindegren et al. 2021) via the ``gaiadr3-zeropoint`` package.

The package keeps its coefficient tables in module globals filled by ``zpt.load_tables()``;
we call it once per process, lazily and under a lock, so threads of one Dask worker share it.

Which rows get a zero-point
---------------------------
``zpt.get_zpt`` raises unless every row is a 5-parameter (``astrometric_params_solved`` = 31)
or 6-parameter (95) solution, so rows are masked first. A row gets a value only when

- it is a 5p or 6p solution,
- 6 < G < 21 (``phot_g_mean_mag``, mag) and |``ecl_lat``| <= 90 deg,
- its colour lies in the calibrated range: 1.1 < ``nu_eff_used_in_astrometry`` < 1.9 for 5p,
  1.24 < ``pseudocolour`` < 1.72 (1/micron) for 6p. Outside it the package itself returns NaN
  with ``_warnings=False`` (with warnings on it would return the value at the range edge for
  6p); we mask such rows before the call so absurd values never reach its arithmetic,
- and the package returns a finite value.

Every other row is *unavailable*: its zero-point is NaN, it carries the
``zeropoint_unavailable`` bit, and its corrected parallax is the uncorrected Gaia parallax
(see :func:`corrected_parallax`). The row is kept; the bit is informational and does not fail
``quality_ok``.
"""

from __future__ import annotations

import logging
import threading
import warnings

import numpy as np
import pandas as pd

from bigcat.photometry._columns import check_columns, float_column
from bigcat.schema import ZEROPOINT_COLUMNS

logger = logging.getLogger(__name__)

#: Range of G (mag, exclusive) over which the Lindegren et al. (2021) recipe is calibrated.
G_RANGE_MAG: tuple[float, float] = (6.0, 21.0)

#: Colour ranges (1/micron, exclusive) inside which ``zpt.get_zpt(..., _warnings=False)``
#: returns a value: ``nu_eff_used_in_astrometry`` of 5p and ``pseudocolour`` of 6p solutions.
NU_EFF_RANGE: tuple[float, float] = (1.1, 1.9)
PSEUDOCOLOUR_RANGE: tuple[float, float] = (1.24, 1.72)

#: ``astrometric_params_solved`` of 5- and 6-parameter solutions.
FIVE_PARAMETER = 31
SIX_PARAMETER = 95

_tables_lock = threading.Lock()
_tables_loaded = False


def _zpt_module():  # type: ignore[no-untyped-def]
    """Return ``zero_point.zpt`` with its tables loaded (once per process, thread-safe)."""
    global _tables_loaded
    from zero_point import zpt

    if not _tables_loaded:
        with _tables_lock:
            if not _tables_loaded:
                logger.debug("loading the gaiadr3-zeropoint coefficient tables")
                zpt.load_tables()
                _tables_loaded = True
    return zpt


def missing_zeropoint_columns(df: pd.DataFrame) -> list[str]:
    """Names of ``schema.ZEROPOINT_COLUMNS`` absent from ``df``, in schema order."""
    return [c for c in ZEROPOINT_COLUMNS if c not in df.columns]


def parallax_zero_point(df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Lindegren et al. (2021) parallax zero-point of each row.

    Parameters
    ----------
    df : pandas.DataFrame
        One partition with ``phot_g_mean_mag`` (mag) and, for the zero-point,
        ``nu_eff_used_in_astrometry`` and ``pseudocolour`` (1/micron), ``ecl_lat`` (deg) and
        ``astrometric_params_solved`` (3, 31 or 95). Any numpy or pandas nullable dtype.

    Returns
    -------
    zpt_mas : numpy.ndarray of float64, shape (len(df),)
        Zero-point (mas), to be *subtracted* from the parallax; NaN where unavailable.
    available : numpy.ndarray of bool, shape (len(df),)
        True where ``zpt_mas`` was computed (see the module docstring for the rules).

    Warns
    -----
    RuntimeWarning
        When any of the four zero-point columns is absent: no row gets a zero-point, and
        the warning names the missing columns.

    Raises
    ------
    KeyError
        If ``phot_g_mean_mag`` is absent.
    """
    n = len(df)
    zpt_mas = np.full(n, np.nan)
    available = np.zeros(n, dtype=bool)

    missing = missing_zeropoint_columns(df)
    if missing:
        warnings.warn(
            f"Parallax zero-point skipped for all {n} rows: column(s) {missing} absent "
            "(Gaia DR3 gaia_source names). parallax_zp is the uncorrected parallax and the "
            "zeropoint_unavailable bit is set. Map the columns in the [columns] table of the "
            "configuration, or set apply_zeropoint = false to silence this.",
            RuntimeWarning,
            stacklevel=2,
        )
        return zpt_mas, available
    check_columns(df, ["phot_g_mean_mag"], "The parallax zero-point")
    if n == 0:
        return zpt_mas, available

    g = float_column(df, "phot_g_mean_mag")
    nu_eff = float_column(df, "nu_eff_used_in_astrometry")
    pseudocolour = float_column(df, "pseudocolour")
    ecl_lat = float_column(df, "ecl_lat")
    solved = float_column(df, "astrometric_params_solved")

    five = solved == FIVE_PARAMETER
    six = solved == SIX_PARAMETER
    # The package's own validity ranges (it returns NaN outside them with _warnings=False);
    # applied here first so that absurd inputs never reach its arithmetic (overflow).
    with np.errstate(invalid="ignore"):
        five_ok = five & (nu_eff > NU_EFF_RANGE[0]) & (nu_eff < NU_EFF_RANGE[1])
        six_ok = (
            six & (pseudocolour > PSEUDOCOLOUR_RANGE[0]) & (pseudocolour < PSEUDOCOLOUR_RANGE[1])
        )
        usable = (
            (five_ok | six_ok)
            & (g > G_RANGE_MAG[0])
            & (g < G_RANGE_MAG[1])
            & (np.abs(ecl_lat) <= 90.0)
        )
    idx = np.flatnonzero(usable)
    if idx.size:
        zpt = _zpt_module()
        with np.errstate(invalid="ignore"):
            values = zpt.get_zpt(
                g[idx],
                nu_eff[idx],
                pseudocolour[idx],
                ecl_lat[idx],
                solved[idx],
                _warnings=False,
            )
        values = np.asarray(values, dtype=np.float64)
        zpt_mas[idx] = values
        available[idx] = np.isfinite(values)
    logger.debug("zero-point available for %d of %d rows", int(available.sum()), n)
    return zpt_mas, available


def corrected_parallax(
    parallax_mas: np.ndarray, zpt_mas: np.ndarray, available: np.ndarray
) -> np.ndarray:
    """Zero-point-corrected parallax: ``parallax - zpt`` where available, else ``parallax``.

    Parameters
    ----------
    parallax_mas : numpy.ndarray
        Gaia parallax (mas).
    zpt_mas : numpy.ndarray
        Zero-point (mas) from :func:`parallax_zero_point`.
    available : numpy.ndarray of bool
        Where ``zpt_mas`` is valid; elsewhere the parallax is returned uncorrected
        (those rows carry the ``zeropoint_unavailable`` bit).

    Returns
    -------
    numpy.ndarray of float64
        Corrected parallax (mas).
    """
    parallax_mas = np.asarray(parallax_mas, dtype=np.float64)
    return np.where(available, parallax_mas - np.where(available, zpt_mas, 0.0), parallax_mas)
