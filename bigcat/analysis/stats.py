"""Small robust statistics shared by the stages, the report and the benchmarks.

Kernels only: numpy in, floats out.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

#: 1 / Phi^-1(3/4): scales the median absolute deviation to a Gaussian's standard deviation.
MAD_TO_SIGMA = 1.4826


def robust_scatter(x: ArrayLike) -> float:
    """Robust standard deviation: 1.4826 x the median absolute deviation from the median.

    Parameters
    ----------
    x : array_like
        Values (e.g. residuals); flattened.

    Returns
    -------
    float
        ``1.4826 * median(|x - median(x)|)`` over the finite values of ``x``. Non-finite
        values (NaN, +-inf) are ignored; the result is NaN when fewer than 2 finite values
        remain (a single value has no scatter).

    Examples
    --------
    >>> robust_scatter([1.0, 2.0, 3.0, np.nan])
    1.4826
    >>> robust_scatter([1.0, np.inf])
    nan
    """
    a = np.asarray(x, dtype=np.float64).ravel()
    a = a[np.isfinite(a)]
    if a.size < 2:
        return float("nan")
    return float(MAD_TO_SIGMA * np.median(np.abs(a - np.median(a))))
