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


@lru_cache(maxsize=1)
def compiled_kernel() -> Callable[..., np.ndarray]:
    """The mixture log-likelihood as a compiled loop (numba, cached on disk).

    Per walker, the stars go in blocks of ``_KERNEL_BLOCK`` through a branch-free loop that
    LLVM vectorises (AVX2/AVX-512: structure-of-arrays inputs, no Python division checks,
    and exp and log written out as polynomials because numba has no vector libm without
    Intel's SVML). For each star the loop forms the two components' ``x_k = -q_k / 2`` (q
    the squared Mahalanobis distance under Sigma_k + C_i) and ``t_k = w_k (2 pi)^-3/2
    det^-1/2``, and stores ``ln p = x_m + ln(t_m + t_o exp(x_o - x_m))`` with m the
    component of larger x
    (the log-sum-exp form: one exp and one log per star, and nothing underflows unless
    ``t_m`` itself is tiny). Stars where a determinant is not positive or the sum is not in
    (1e-250, inf) are marked NaN; a second pass, run only for blocks with a mark, recomputes
    them with libm's exp and log (-inf for the walker if a determinant is not positive).
    The block's values are then added into eight partial sums in a fixed order, so the
    result does not depend on the machine's thread count or on the run.

    Measured on one core of the AMD EPYC development machine (AVX-512; 4,200 stars, 48
    walkers, the other core in use): about 230 M star x walker evaluations/s for the kernel
    alone and 150-210 M/s through ``MixturePosterior`` (``benchmarks/vertex_fit.py``, which
    adds the prior and the unpacking), against 25-35 M/s for the previous scalar loop with a
    data-dependent branch; a ``fit_vertex`` run at the default chain settings went from 42 s
    to 12-14 s. The blocked numpy version stays as the reference
    (``log_likelihood(..., backend="numpy")``): relative differences of the summed
    log-likelihood up to 7e-15 on random walkers (1e-14 for the previous loop); the
    polynomial exp and log are within 1.01 ulp of the correctly rounded values.
    """
    from numba import njit

    log_2pi3 = 3.0 * LOG_2PI
    # No reassoc (it would fold the rounding trick and reorder the sums), no nnan/ninf.
    _FAST = {"contract", "arcp", "afn", "nsz"}
    c0, c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11, c12, c13 = _EXP_TAYLOR
    lg1, lg2, lg3, lg4, lg5, lg6, lg7 = _LOG_LG
    block = _KERNEL_BLOCK

    @njit(cache=True, nogil=True, error_model="numpy", fastmath=_FAST, inline="always")
    def exp_neg(x):  # exp(x) for x <= 0 (NaN -> anything): 0 below -708 (libm: < 3.4e-308)
        xc = x if x > -708.0 else -708.0
        kf = (xc * _LOG2E + _ROUND) - _ROUND  # round(x / ln 2)
        r = (xc - kf * _LN2_HI) - kf * _LN2_LO
        p = c13 * r + c12
        p = p * r + c11
        p = p * r + c10
        p = p * r + c9
        p = p * r + c8
        p = p * r + c7
        p = p * r + c6
        p = p * r + c5
        p = p * r + c4
        p = p * r + c3
        p = p * r + c2
        p = p * r + c1
        p = p * r + c0
        scale = np.int64((np.int64(kf) + 1023) << 52).view(np.float64)  # 2^k
        y = p * scale
        return y if x >= -708.0 else 0.0

    @njit(cache=True, nogil=True, error_model="numpy", fastmath=_FAST, inline="always")
    def log_pos(x):  # ln x for positive normal finite x (fdlibm e_log.c, 64-bit form)
        ix = np.float64(x).view(np.int64) + np.int64((0x3FF00000 - 0x3FE6A09E) << 32)
        k = (ix >> 52) - 1023
        m = np.int64((ix & 0x000F_FFFF_FFFF_FFFF) + 0x3FE6A09E00000000).view(np.float64)
        f = m - 1.0  # x = 2^k (1 + f), sqrt(1/2) <= 1 + f < sqrt(2)
        hfsq = 0.5 * f * f
        s = f / (2.0 + f)
        z = s * s
        w = z * z
        r = z * (lg1 + w * (lg3 + w * (lg5 + w * lg7))) + w * (lg2 + w * (lg4 + w * lg6))
        dk = np.float64(k)
        return s * (hfsq + r) + dk * _LN2_LO - hfsq + f + dk * _LN2_HI

    @njit(cache=True, nogil=True, error_model="numpy", fastmath=_FAST, inline="always")
    def component(mu, sig, v0, v1, v2, e0, e1, e2, e3, e4, e5):  # (Mahalanobis^2, det)
        a = sig[0] + e0
        b = sig[1] + e1
        g = sig[2] + e2
        d = sig[3] + e3
        e = sig[4] + e4
        f = sig[5] + e5
        ca = d * f - e * e
        cb = g * e - b * f
        cc = b * e - g * d
        det = a * ca + b * cb + g * cc
        r0 = v0 - mu[0]
        r1 = v1 - mu[1]
        r2 = v2 - mu[2]
        quad = (
            ca * r0 * r0
            + (a * f - g * g) * r1 * r1
            + (a * d - b * b) * r2 * r2
            + 2.0 * (cb * r0 * r1 + cc * r0 * r2 + (b * g - a * e) * r1 * r2)
        )
        return quad, det

    @njit(cache=True, nogil=True, error_model="numpy", fastmath=_FAST)
    def kernel(ln_w, mu, sig, v, c):  # (W, 2), (W, 2, 3), (W, 2, 6), (3, N), (6, N)
        n_walk, n_star = mu.shape[0], v.shape[1]
        out = np.empty(n_walk)
        lp = np.empty(block)
        acc = np.empty(8)
        for w in range(n_walk):
            # Parameters as tuples: registers, not loads the stores to lp might alias.
            mu0 = (mu[w, 0, 0], mu[w, 0, 1], mu[w, 0, 2])
            mu1 = (mu[w, 1, 0], mu[w, 1, 1], mu[w, 1, 2])
            sig0 = (
                sig[w, 0, 0],
                sig[w, 0, 1],
                sig[w, 0, 2],
                sig[w, 0, 3],
                sig[w, 0, 4],
                sig[w, 0, 5],
            )
            sig1 = (
                sig[w, 1, 0],
                sig[w, 1, 1],
                sig[w, 1, 2],
                sig[w, 1, 3],
                sig[w, 1, 4],
                sig[w, 1, 5],
            )
            s0 = np.exp(ln_w[w, 0] - 0.5 * log_2pi3)
            s1 = np.exp(ln_w[w, 1] - 0.5 * log_2pi3)
            acc[:] = 0.0
            dead = False
            for start in range(0, n_star, block):
                nb = min(block, n_star - start)
                v0, v1, v2 = v[0, start:], v[1, start:], v[2, start:]
                e0, e1, e2, e3, e4, e5 = (
                    c[0, start:],
                    c[1, start:],
                    c[2, start:],
                    c[3, start:],
                    c[4, start:],
                    c[5, start:],
                )
                n_bad = 0
                for j in range(nb):  # branch-free: vectorised
                    q0, d0 = component(
                        mu0, sig0, v0[j], v1[j], v2[j], e0[j], e1[j], e2[j], e3[j], e4[j], e5[j]
                    )
                    q1, d1 = component(
                        mu1, sig1, v0[j], v1[j], v2[j], e0[j], e1[j], e2[j], e3[j], e4[j], e5[j]
                    )
                    i0 = 1.0 / d0
                    i1 = 1.0 / d1
                    x0 = -0.5 * q0 * i0
                    x1 = -0.5 * q1 * i1
                    t0 = s0 * np.sqrt(i0)
                    t1 = s1 * np.sqrt(i1)
                    first = x0 >= x1
                    xm = x0 if first else x1
                    p = (t0 if first else t1) + (t1 if first else t0) * exp_neg(-abs(x0 - x1))
                    ok = (d0 > 0.0) & (d1 > 0.0) & (p > 1e-250) & (p < np.inf)
                    lq = log_pos(p if ok else 1.0) + xm
                    lp[j] = lq if ok else np.nan
                    n_bad += 0 if ok else 1
                for j in range(nb if n_bad else 0):  # rare fix-up: exact log-sum-exp
                    if not np.isnan(lp[j]):
                        continue
                    q0, d0 = component(
                        mu0, sig0, v0[j], v1[j], v2[j], e0[j], e1[j], e2[j], e3[j], e4[j], e5[j]
                    )
                    q1, d1 = component(
                        mu1, sig1, v0[j], v1[j], v2[j], e0[j], e1[j], e2[j], e3[j], e4[j], e5[j]
                    )
                    if not (d0 > 0.0 and d1 > 0.0):
                        dead = True
                        break
                    l0 = ln_w[w, 0] - 0.5 * (q0 / d0 + np.log(d0) + log_2pi3)
                    l1 = ln_w[w, 1] - 0.5 * (q1 / d1 + np.log(d1) + log_2pi3)
                    hi, lo = max(l0, l1), min(l0, l1)
                    if hi == -np.inf:
                        dead = True
                        break
                    lp[j] = hi + np.log1p(np.exp(lo - hi))
                if dead:
                    break
                j = 0
                while j + 8 <= nb:  # fixed-order partial sums
                    for k in range(8):
                        acc[k] += lp[j + k]
                    j += 8
                for k in range(nb - j):
                    acc[k] += lp[j + k]
            total = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + (
                (acc[4] + acc[5]) + (acc[6] + acc[7])
            )
            out[w] = -np.inf if dead else total
        return out

    return kernel  # type: ignore[no-any-return]
