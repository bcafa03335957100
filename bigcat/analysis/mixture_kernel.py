"""The mixture log-likelihood as a compiled loop (numba): the hot kernel of the vertex fit.

:func:`compiled_kernel` returns the compiled function; ``bigcat.analysis.mixture`` lays the
stars out for it (structure of arrays) and calls it from ``log_likelihood`` and
``MixturePosterior``. The blocked numpy reference (``log_likelihood(..., backend="numpy")``)
lives beside the model in ``bigcat.analysis.mixture``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache

import numpy as np

LOG_2PI = math.log(2.0 * math.pi)

#: Precisions of the compiled likelihood's fast path (the fix-up pass is always float64).
PRECISIONS = ("float64", "float32")
#: Stars per block of the compiled likelihood: the block's log-densities wait in a scratch
#: buffer (4 kB) for the rare fix-up pass before they are summed.
_KERNEL_BLOCK = 512
# Constants of the vectorisable exp and log in ``_compiled_kernel``. ln 2 split so that
# k * _LN2_HI is exact for |k| < 2^21 (fdlibm); the log's coefficients are fdlibm's e_log.c
# (|error| < 1 ulp); the exp's polynomial is Taylor's to degree 13 on |r| <= ln(2)/2
# (truncation < 0.05 ulp).
_LN2_HI = 6.93147180369123816490e-01
_LN2_LO = 1.90821492927058770002e-10
_LOG2E = 1.4426950408889634
_ROUND = 6755399441055744.0  # 1.5 * 2^52: x + _ROUND - _ROUND rounds x to an integer
_EXP_TAYLOR = tuple(1.0 / math.factorial(n) for n in range(14))
_LOG_LG = (
    6.666666666666735130e-01,
    3.999999999940941908e-01,
    2.857142874366239149e-01,
    2.222219843214978396e-01,
    1.818357216161805012e-01,
    1.531383769920937332e-01,
    1.479819860511658591e-01,
)
# float32 forms: ln 2 split for |k| < 2^8 (fdlibm e_logf / e_expf), e_logf's four
# coefficients (|error| < 1 ulp), and the exp's Taylor polynomial to degree 7 on
# |r| <= ln(2)/2 (truncation < 0.1 ulp of float32).
_LN2_HI_F = 6.9313812256e-01
_LN2_LO_F = 9.0580006145e-06
_EXP_LN2_HI_F = 0.693145751953125
_EXP_LN2_LO_F = 1.428606765330187045e-06
_ROUND_F = 12582912.0  # 1.5 * 2^23
_LOG_LG_F = (0.66666662693, 0.40000972152, 0.28498786688, 0.24279078841)


@lru_cache(maxsize=2)
def compiled_kernel(precision: str = "float64") -> Callable[..., np.ndarray]:
    """The mixture log-likelihood as a compiled loop (numba, cached on disk).

    Called as ``kernel(ln_w, mu, sig, v, c, v64, c64)``: ln weights (W, 2), means (W, 2, 3)
    and the 6 upper covariance elements (W, 2, 6) of W walkers (float64); the stars' velocities
    (3, N) and error covariances (6, N) in ``precision`` (structure of arrays), and the same
    two arrays in float64 for the fix-up pass. Returns the summed log-likelihood per walker
    (float64).

    Per walker, the stars go in blocks of ``_KERNEL_BLOCK`` through a branch-free loop that
    LLVM vectorises (structure-of-arrays inputs, no Python division checks, no integer
    counter in the loop, and exp and log written out as polynomials because numba has no
    vector libm without Intel's SVML). For each star the loop forms the two components'
    ``x_k = -q_k / 2`` (q the squared Mahalanobis distance under Sigma_k + C_i) and ``t_k =
    w_k (2 pi)^-3/2 det^-1/2``, and stores ``ln p = x_m + ln(t_m + t_o exp(x_o - x_m))`` with
    m the component of larger x (the log-sum-exp form: one exp and one log per star, and
    nothing underflows unless ``t_m`` itself is tiny). Stars where a determinant is not
    positive or the sum is not in the normal range are marked NaN; the block's partial sums
    then come out NaN and a second pass recomputes the marked stars in float64 with libm's
    exp and log from the float64 stars (-inf for the walker if a determinant is not
    positive). The block's values are added into eight partial sums in a fixed order, so the
    result does not depend on the machine's thread count or on the run.

    ``precision``: "float64" (the reference, within 1e-11 of the numpy version) or
    "float32", the emcee default of the vertex fit: on AVX2 machines twice the lanes per
    vector, 2.2x the evaluations per second (276 against 125 M star x walker/s on one core
    of the 2-core Xeon development machine, 9,137 stars, 48 walkers), with each star's term
    good to ~1e-6 (float32 rounding of the inputs and of the arithmetic) and the sums in
    float64: on the paper-size samples the summed log-likelihood moves by < 4e-4 and its
    differences between walkers by < 6e-4, which changes a Metropolis acceptance probability
    by < 0.06% (benchmarks/README.md). The Laplace approximation's finite-difference Hessian
    needs the float64 kernel.

    Measured for float64 on one core of the AMD EPYC development machine (AVX-512; 4,200
    stars, 48 walkers, the other core in use): about 230 M star x walker evaluations/s for the
    kernel alone and 150-210 M/s through ``MixturePosterior`` (``benchmarks/vertex_fit.py``,
    which adds the prior and the unpacking), against 25-35 M/s for the previous scalar loop
    with a data-dependent branch. The blocked numpy version stays as the reference
    (``log_likelihood(..., backend="numpy")``): relative differences of the summed
    log-likelihood up to 7e-15 on random walkers; the float64 polynomial exp and log are
    within 1.01 ulp of the correctly rounded values.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision = {precision!r}: must be one of {', '.join(PRECISIONS)}.")
    from bigcat.analysis import _mixture_jit  # numba only when a fit runs

    return _mixture_jit.make_kernel(precision == "float32")


def compiled_prior() -> Callable[..., tuple[np.ndarray, ...]]:
    """The compiled log prior and kernel inputs of W parameter vectors
    (``_mixture_jit.prior_and_params``; ``MixturePosterior`` calls it)."""
    from bigcat.analysis import _mixture_jit

    return _mixture_jit.prior_and_params  # type: ignore[no-any-return]
