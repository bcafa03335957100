"""HEALPix pixel maths (nested scheme), free of I/O.

The catalogue index is HATS' ``_healpix_29``: the nested pixel number at order 29. A pixel at
order ``k`` is ``_healpix_29 >> 2 (29 - k)``.
"""

from __future__ import annotations

import numpy as np
from hats.pixel_math.spatial_index import SPATIAL_INDEX_COLUMN, compute_spatial_index

from bigcat.errors import ConfigError

HEALPIX29 = SPATIAL_INDEX_COLUMN
MAX_ORDER = 29


def order_from_nside(nside: int) -> int:
    """HEALPix order of ``nside`` (a power of two from 1 to 2**29).

    Raises
    ------
    ConfigError
        If ``nside`` is not a power of two in range.
    """
    if not isinstance(nside, (int, np.integer)) or nside < 1 or (nside & (nside - 1)) != 0:
        raise ConfigError(
            f"--nside {nside} is not a power of two; HEALPix needs nside = 2**order, "
            "e.g. 32 (order 5, the default and the order of the Bailer-Jones priors)."
        )
    order = int(nside).bit_length() - 1
    if order > MAX_ORDER:
        raise ConfigError(f"--nside {nside} is finer than order 29; use at most 2**29.")
    return order


def healpix29(ra_deg: np.ndarray, dec_deg: np.ndarray) -> np.ndarray:
    """Nested order-29 pixel index (int64) of ICRS positions in degrees."""
    ra = np.asarray(ra_deg, dtype=np.float64)
    dec = np.asarray(dec_deg, dtype=np.float64)
    if ra.size == 0:
        return np.zeros(0, dtype=np.int64)
    return np.asarray(compute_spatial_index(ra, dec), dtype=np.int64)


def pixel_at_order(h29: np.ndarray, order: int) -> np.ndarray:
    """Nested pixel at ``order`` containing each order-29 index."""
    return np.asarray(h29, dtype=np.int64) >> (2 * (MAX_ORDER - order))


def pixel_index_range(order: int, pixel: int) -> tuple[int, int]:
    """Half-open range of ``_healpix_29`` values inside ``pixel`` at ``order``."""
    shift = 2 * (MAX_ORDER - order)
    return pixel << shift, (pixel + 1) << shift


def first_index(order: int, pixel: int) -> int:
    """The first ``_healpix_29`` of a pixel: orders partitions of any order along the sky."""
    return int(pixel) << 2 * (MAX_ORDER - int(order))


def adaptive_partitions(
    counts: dict[int, int], order: int, threshold: int
) -> list[tuple[int, int, int]]:
    """HATS adaptive partitions: ``(order, pixel, rows)`` from rows per pixel at ``order``.

    ``threshold`` 0 keeps every non-empty pixel at ``order``. Otherwise a pixel at a lower
    order becomes one partition when it holds at most ``threshold`` rows and its parent holds
    more (the alignment hats-import makes, ``hats.pixel_math.generate_alignment``; a test
    checks they agree). A pixel at ``order`` that alone holds more than ``threshold`` rows stays
    one partition (stages process large partitions in pieces; a finer ``order`` would split
    it). Returned in sky order (by first ``_healpix_29``), empty partitions left out.
    """
    found = [(order, p, n) for p, n in sorted(counts.items()) if n > 0]
    if threshold <= 0 or not found:
        return found
    sums = np.zeros(12 * 4**order, dtype=np.int64)
    pix = np.array([p for _, p, _ in found], dtype=np.int64)
    sums[pix] = [n for _, _, n in found]
    # rows per pixel at each order, finest first
    levels = [sums]
    for _ in range(order):
        levels.append(levels[-1].reshape(-1, 4).sum(axis=1))
    levels.reverse()  # levels[k]: rows per pixel at order k
    parts: list[tuple[int, int, int]] = []
    for k, rows in enumerate(levels):
        fits = (rows > 0) & (rows <= threshold)
        if k > 0:
            fits &= np.repeat(levels[k - 1] > threshold, 4)
        parts.extend((k, int(p), int(rows[p])) for p in np.flatnonzero(fits))
    oversize = np.flatnonzero(levels[order] > threshold)
    parts.extend((order, int(p), int(levels[order][p])) for p in oversize)
    return sorted(parts, key=lambda t: first_index(t[0], t[1]))
