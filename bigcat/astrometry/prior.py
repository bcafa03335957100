"""Generalised gamma (GGD) distance-prior parameters per HEALPix level-5 pixel.

Tables come from two places:

* :func:`load_prior_table` reads the official Bailer-Jones et al. (2021) table
  (``prior_summary.csv``: columns healpix, GGDrlen [pc], GGDalpha, GGDbeta; 12,288 nested
  level-5 pixels of the ICRS sphere, the pixelisation of Gaia's ``source_id``).
* :func:`bigcat.astrometry.model_prior.model_prior_table` fits one to an assumed literature
  Galaxy (``[stage1] prior = "model"``).

The default distance prior is neither: it is learnt from the catalogue (see
``bigcat.stages.distance``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bigcat.errors import InputError

logger = logging.getLogger(__name__)

NSIDE = 32
ORDER = 5
N_PIXELS = 12 * NSIDE * NSIDE
#: Columns of the official table used here, and their meaning.
PRIOR_COLUMNS = {"healpix": "pixel", "GGDrlen": "length_pc", "GGDalpha": "alpha", "GGDbeta": "beta"}


@dataclass(frozen=True)
class PriorTable:
    """GGD prior parameters for every nested level-5 (nside 32) HEALPix pixel.

    Attributes
    ----------
    healpix5 : numpy.ndarray
        Pixel numbers 0 .. 12,287 (int64), in order.
    length_pc : numpy.ndarray
        GGD length scale L (pc) per pixel.
    alpha, beta : numpy.ndarray
        GGD shape parameters per pixel.
    source : str
        Where the values come from (file path or a description of the default).
    """

    healpix5: np.ndarray
    length_pc: np.ndarray
    alpha: np.ndarray
    beta: np.ndarray
    source: str

    def lookup(self, healpix5: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """GGD parameters ``(L [pc], alpha, beta)`` of level-5 pixels; NaN outside 0..12,287."""
        pix = np.asarray(healpix5, dtype=np.int64)
        ok = (pix >= 0) & (pix < N_PIXELS)
        safe = np.where(ok, pix, 0)
        return tuple(  # type: ignore[return-value]
            np.where(ok, arr[safe], np.nan) for arr in (self.length_pc, self.alpha, self.beta)
        )

    @staticmethod
    def pixel_of(h29: np.ndarray) -> np.ndarray:
        """Nested level-5 pixel of HATS ``_healpix_29`` indices (``h29 >> 48``)."""
        return np.asarray(h29, dtype=np.int64) >> (2 * (29 - ORDER))

    def median_pc(self) -> np.ndarray:
        """Median distance (pc) of each pixel's prior."""
        from scipy.special import gammaincinv

        k = (self.beta + 1.0) / self.alpha
        return np.exp(np.log(self.length_pc) + np.log(gammaincinv(k, 0.5)) / self.alpha)


def _fail(path: str | Path, problem: str) -> InputError:
    return InputError(
        f"{path}: {problem}. The distance-prior table must be Bailer-Jones et al. (2021) "
        f"prior_summary.csv (or the same columns: {', '.join(PRIOR_COLUMNS)}) with one row "
        f"per nested level-5 HEALPix pixel 0..{N_PIXELS - 1}."
    )


def load_prior_table(path: str | Path) -> PriorTable:
    """Read a Bailer-Jones et al. (2021) prior table (CSV) and check it.

    Parameters
    ----------
    path : str or pathlib.Path
        CSV with columns healpix, GGDrlen (pc), GGDalpha, GGDbeta (others are ignored).

    Returns
    -------
    PriorTable
        Parameters sorted by pixel.

    Raises
    ------
    InputError
        If the file cannot be read, lacks a column, does not hold each of the 12,288
        pixels exactly once, or has a non-finite or non-positive parameter.
    """
    import pandas as pd

    try:
        df = pd.read_csv(path)
    except (OSError, ValueError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise _fail(path, f"cannot read the file ({type(exc).__name__}: {exc})") from exc
    missing = [c for c in PRIOR_COLUMNS if c not in df.columns]
    if missing:
        raise _fail(
            path,
            f"missing column(s) {', '.join(missing)} (the file has: "
            f"{', '.join(map(str, df.columns[:30]))})",
        )
    pix = pd.to_numeric(df["healpix"], errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(pix) | (pix != np.round(pix)) | (pix < 0) | (pix >= N_PIXELS)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise _fail(
            path,
            f"{int(bad.sum())} healpix value(s) are not pixels 0..{N_PIXELS - 1} "
            f"(e.g. {df['healpix'].iloc[row]} in data row {row + 1})",
        )
    pix_i = pix.astype(np.int64)
    counts = np.bincount(pix_i, minlength=N_PIXELS)
    if (counts != 1).any() or len(df) != N_PIXELS:
        dup = np.flatnonzero(counts > 1)
        absent = np.flatnonzero(counts == 0)
        parts = [f"{len(df)} rows, expected {N_PIXELS}"]
        if dup.size:
            parts.append(f"duplicated pixel(s) {', '.join(map(str, dup[:10]))}")
        if absent.size:
            parts.append(f"missing pixel(s) {', '.join(map(str, absent[:10]))}")
        more = " (first 10 listed)" if max(dup.size, absent.size) > 10 else ""
        raise _fail(path, "; ".join(parts) + more)
    order = np.argsort(pix_i)
    values = {}
    for col in ("GGDrlen", "GGDalpha", "GGDbeta"):
        arr = pd.to_numeric(df[col], errors="coerce").to_numpy(dtype=np.float64)[order]
        wrong = ~(np.isfinite(arr) & (arr > 0))
        if wrong.any():
            i = int(np.flatnonzero(wrong)[0])
            raise _fail(
                path,
                f"column {col} has {int(wrong.sum())} non-finite or non-positive value(s), "
                f"e.g. {df[col].iloc[order[i]]} for pixel {i}",
            )
        values[col] = arr
    logger.info("loaded GGD prior table %s (%d pixels)", path, N_PIXELS)
    return PriorTable(
        healpix5=np.arange(N_PIXELS, dtype=np.int64),
        length_pc=values["GGDrlen"],
        alpha=values["GGDalpha"],
        beta=values["GGDbeta"],
        source=str(path),
    )
