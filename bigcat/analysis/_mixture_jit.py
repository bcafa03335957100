"""The numba functions behind ``bigcat.analysis.mixture_kernel.compiled_kernel`` (imported
only when a fit runs, so that importing the model does not import numba).

Everything the kernel calls is a module-level function and every constant is a module
global or a plain number in the kernel's closure: numba's on-disk cache keys a closure by its
pickled cells, and a compiled function in a cell pickles differently in every process (the
cache then never hits, and each worker recompiled the kernel, ~2-3 s, at every run).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numba import njit

from bigcat.analysis.mixture_kernel import (
    _EXP_LN2_HI_F,
    _EXP_LN2_LO_F,
    _EXP_TAYLOR,
    _KERNEL_BLOCK,
    _LN2_HI,
    _LN2_HI_F,
    _LN2_LO,
    _LN2_LO_F,
    _LOG2E,
    _LOG_LG,
    _LOG_LG_F,
    _ROUND,
    _ROUND_F,
    LOG_2PI,
)

# No reassoc (it would fold the rounding trick and reorder the sums), no nnan/ninf.
_FAST = {"contract", "arcp", "afn", "nsz"}
_LOG_2PI3 = 3.0 * LOG_2PI
C0, C1, C2, C3, C4, C5, C6, C7, C8, C9, C10, C11, C12, C13 = _EXP_TAYLOR
LG1, LG2, LG3, LG4, LG5, LG6, LG7 = _LOG_LG
FG1, FG2, FG3, FG4 = (np.float32(x) for x in _LOG_LG_F)
F32 = np.float32
# Horner coefficients after the leading pair, highest degree first (degree 13 / degree 7).
_HORNER64 = tuple(_EXP_TAYLOR[11::-1])
_HORNER32 = tuple(np.float32(c) for c in _EXP_TAYLOR[5::-1])


@njit(cache=True, nogil=True, error_model="numpy", fastmath=_FAST, inline="always")
def exp_neg64(x):  # type: ignore[no-untyped-def]
    """exp(x) for x <= 0 (NaN -> anything): 0 below -708 (libm: < 3.4e-308)."""
    xc = x if x > -708.0 else -708.0
    kf = (xc * _LOG2E + _ROUND) - _ROUND  # round(x / ln 2)
    r = (xc - kf * _LN2_HI) - kf * _LN2_LO
    p = C13 * r + C12
    for c in _HORNER64:  # unrolled by LLVM (a constant tuple)
        p = p * r + c
    scale = np.int64((np.int64(kf) + 1023) << 52).view(np.float64)  # 2^k
    y = p * scale
    return y if x >= -708.0 else 0.0


@njit(cache=True, nogil=True, error_model="numpy", fastmath=_FAST, inline="always")
def log_pos64(x):  # type: ignore[no-untyped-def]
    """ln x for positive normal finite x (fdlibm e_log.c, 64-bit form)."""
    ix = np.float64(x).view(np.int64) + np.int64((0x3FF00000 - 0x3FE6A09E) << 32)
    k = (ix >> 52) - 1023
    m = np.int64((ix & 0x000F_FFFF_FFFF_FFFF) + 0x3FE6A09E00000000).view(np.float64)
    f = m - 1.0  # x = 2^k (1 + f), sqrt(1/2) <= 1 + f < sqrt(2)
    hfsq = 0.5 * f * f
    s = f / (2.0 + f)
    z = s * s
    w = z * z
    r = z * (LG1 + w * (LG3 + w * (LG5 + w * LG7))) + w * (LG2 + w * (LG4 + w * LG6))
    dk = np.float64(k)
    return s * (hfsq + r) + dk * _LN2_LO - hfsq + f + dk * _LN2_HI


# float32 forms. numba widens integer arithmetic to int64; each result is cast back to int32
# so that LLVM keeps 32-bit lanes (an int64 lane would halve the vector width).
@njit(cache=True, nogil=True, error_model="numpy", fastmath=_FAST, inline="always")
def exp_neg32(x):  # type: ignore[no-untyped-def]
    """exp(x) for float32 x <= 0: 0 below -87 (float32's normal range)."""
    xc = x if x > F32(-87.0) else F32(-87.0)
    kf = (xc * F32(_LOG2E) + F32(_ROUND_F)) - F32(_ROUND_F)
    r = (xc - kf * F32(_EXP_LN2_HI_F)) - kf * F32(_EXP_LN2_LO_F)
    p = F32(C7) * r + F32(C6)
    for c in _HORNER32:
        p = p * r + c
    scale = np.int32((np.int32(kf) + 127) << 23).view(np.float32)  # 2^k
    y = p * scale
    return y if x >= F32(-87.0) else F32(0.0)


@njit(cache=True, nogil=True, error_model="numpy", fastmath=_FAST, inline="always")
def log_pos32(x):  # type: ignore[no-untyped-def]
    """ln x for positive normal finite float32 x (fdlibm e_logf.c)."""
    ix = np.int32(np.float32(x).view(np.int32) + (0x3F800000 - 0x3F3504F3))
    k = np.int32((ix >> 23) - 127)
    m = np.int32((ix & 0x007FFFFF) + 0x3F3504F3).view(np.float32)
    f = m - F32(1.0)
    hfsq = F32(0.5) * f * f
    s = f / (F32(2.0) + f)
    z = s * s
    w = z * z
    r = z * (FG1 + w * FG3) + w * (FG2 + w * FG4)
    dk = np.float32(k)
    return s * (hfsq + r) + dk * F32(_LN2_LO_F) - hfsq + f + dk * F32(_LN2_HI_F)


@njit(cache=True, nogil=True, error_model="numpy", fastmath=_FAST, inline="always")
def component(mu, sig, v0, v1, v2, e0, e1, e2, e3, e4, e5):  # type: ignore[no-untyped-def]
    """(Mahalanobis^2, det) of one star under one component, in the inputs' precision."""
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
    cross = cb * r0 * r1 + cc * r0 * r2 + (b * g - a * e) * r1 * r2
    quad = ca * r0 * r0 + (a * f - g * g) * r1 * r1 + (a * d - b * b) * r2 * r2 + (cross + cross)
    return quad, det


@njit(cache=True, nogil=True, error_model="numpy", fastmath=_FAST, inline="always")
def block_sum(lp, nb, bs):  # type: ignore[no-untyped-def]
    """The block's ``nb`` values into 8 float64 partial sums ``bs``, in a fixed order; their
    total (NaN if any value is NaN)."""
    for k in range(8):
        bs[k] = 0.0
    j = 0
    while j + 8 <= nb:
        for k in range(8):
            bs[k] += np.float64(lp[j + k])
        j += 8
    for k in range(nb - j):
        bs[k] += np.float64(lp[j + k])
    return ((bs[0] + bs[1]) + (bs[2] + bs[3])) + ((bs[4] + bs[5]) + (bs[6] + bs[7]))


def make_kernel(single: bool) -> Callable[..., np.ndarray]:
    """The compiled kernel, float32 fast path if ``single`` (see ``compiled_kernel``, which
    keeps one per precision)."""
    F = np.float32 if single else np.float64
    tiny = 1e-30 if single else 1e-250
    huge = 1e30 if single else np.inf
    block = _KERNEL_BLOCK
    log_2pi3 = _LOG_2PI3

    @njit(cache=True, nogil=True, error_model="numpy", fastmath=_FAST)
    def kernel(ln_w, mu, sig, v, c, vx, cx):  # type: ignore[no-untyped-def]  # (W, 2), (W, 2, 3), (W, 2, 6), (3, N), (6, N) x2
        n_walk, n_star = mu.shape[0], v.shape[1]
        out = np.empty(n_walk)
        lp = np.empty(block, dtype=v.dtype)
        acc = np.zeros(8)
        bs = np.empty(8)
        for w in range(n_walk):
            # Parameters as tuples: registers, not loads the stores to lp might alias.
            mu0 = (F(mu[w, 0, 0]), F(mu[w, 0, 1]), F(mu[w, 0, 2]))
            mu1 = (F(mu[w, 1, 0]), F(mu[w, 1, 1]), F(mu[w, 1, 2]))
            sig0 = (F(sig[w, 0, 0]), F(sig[w, 0, 1]), F(sig[w, 0, 2]),
                    F(sig[w, 0, 3]), F(sig[w, 0, 4]), F(sig[w, 0, 5]))  # fmt: skip
            sig1 = (F(sig[w, 1, 0]), F(sig[w, 1, 1]), F(sig[w, 1, 2]),
                    F(sig[w, 1, 3]), F(sig[w, 1, 4]), F(sig[w, 1, 5]))  # fmt: skip
            s0 = F(np.exp(ln_w[w, 0] - 0.5 * log_2pi3))
            s1 = F(np.exp(ln_w[w, 1] - 0.5 * log_2pi3))
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
                for j in range(nb):  # branch-free: vectorised
                    q0, d0 = component(
                        mu0, sig0, v0[j], v1[j], v2[j], e0[j], e1[j], e2[j], e3[j], e4[j], e5[j]
                    )
                    q1, d1 = component(
                        mu1, sig1, v0[j], v1[j], v2[j], e0[j], e1[j], e2[j], e3[j], e4[j], e5[j]
                    )
                    i0 = F(1.0) / d0
                    i1 = F(1.0) / d1
                    x0 = F(-0.5) * q0 * i0
                    x1 = F(-0.5) * q1 * i1
                    t0 = s0 * np.sqrt(i0)
                    t1 = s1 * np.sqrt(i1)
                    first = x0 >= x1
                    xm = x0 if first else x1
                    if single:
                        ex = exp_neg32(-abs(x0 - x1))
                    else:
                        ex = exp_neg64(-abs(x0 - x1))
                    p = (t0 if first else t1) + (t1 if first else t0) * ex
                    ok = (d0 > F(0.0)) & (d1 > F(0.0)) & (p > F(tiny)) & (p < F(huge))
                    if single:
                        lq = log_pos32(p if ok else F(1.0)) + xm
                    else:
                        lq = log_pos64(p if ok else F(1.0)) + xm
                    lp[j] = lq if ok else F(np.nan)
                total = block_sum(lp, nb, bs)
                if np.isnan(total):  # rare fix-up: exact log-sum-exp in float64
                    for j in range(nb):
                        if not np.isnan(lp[j]):
                            continue
                        i = start + j
                        q0, d0 = component(
                            mu[w, 0], sig[w, 0], vx[0, i], vx[1, i], vx[2, i],
                            cx[0, i], cx[1, i], cx[2, i], cx[3, i], cx[4, i], cx[5, i],
                        )  # fmt: skip
                        q1, d1 = component(
                            mu[w, 1], sig[w, 1], vx[0, i], vx[1, i], vx[2, i],
                            cx[0, i], cx[1, i], cx[2, i], cx[3, i], cx[4, i], cx[5, i],
                        )  # fmt: skip
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
                    block_sum(lp, nb, bs)
                for k in range(8):
                    acc[k] += bs[k]
            total = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + (
                (acc[4] + acc[5]) + (acc[6] + acc[7])
            )
            out[w] = -np.inf if dead else total
        return out

    return kernel  # type: ignore[no-any-return]


@njit(cache=True, nogil=True, error_model="numpy")
def prior_and_params(theta, fitted, mean_scale, ln_lo, ln_hi, u_max, eta):  # type: ignore[no-untyped-def]
    """``mixture.log_prior`` and the kernel's inputs of W unconstrained vectors in one pass.

    Returns the log prior (W,) (-inf off the support), ln weights (W, 2), means (W, 2, 3) and
    the 6 upper covariance elements (W, 2, 6), the same arithmetic as the numpy functions
    (``log_prior``, ``unpack``, ``_log_weights``, ``_upper_from_unconstrained``)."""
    n_walk = theta.shape[0]
    lp = np.empty(n_walk)
    ln_w = np.empty((n_walk, 2))
    means = np.zeros((n_walk, 2, 3))
    upper = np.empty((n_walk, 2, 6))
    off = 7 if fitted else 1
    ln2 = np.log(2.0)
    for w in range(n_walk):
        u = theta[w, 0]
        val = -np.logaddexp(0.0, u) - np.logaddexp(0.0, -u)
        inside = u <= u_max
        if fitted:
            ss = 0.0
            for j in range(6):
                means[w, j // 3, j % 3] = theta[w, 1 + j]
                ss += (theta[w, 1 + j] / mean_scale) ** 2
            val -= 0.5 * ss
        for k in range(2):
            base = off + 6 * k
            for j in range(3):
                ls = theta[w, base + j]
                inside &= (ls >= ln_lo) & (ls <= ln_hi)
            for j in range(3):
                y = theta[w, base + 3 + j]
                inside &= abs(y) <= 10.0
                a = abs(y)
                val += (eta + (0.5 if j < 2 else 0.0)) * (
                    -2.0 * (a + np.log1p(np.exp(-2.0 * a)) - ln2)
                )
            sx = np.exp(theta[w, base])
            sy = np.exp(theta[w, base + 1])
            sz = np.exp(theta[w, base + 2])
            y0, y1, y2 = theta[w, base + 3], theta[w, base + 4], theta[w, base + 5]
            z0, z1, z2 = np.tanh(y0), np.tanh(y1), np.tanh(y2)
            c0, c1 = 1.0 / np.cosh(y0), 1.0 / np.cosh(y1)
            upper[w, k, 0] = sx * sx
            upper[w, k, 1] = sx * sy * z0
            upper[w, k, 2] = sx * sz * z1
            upper[w, k, 3] = sy * sy
            upper[w, k, 4] = sy * sz * (z0 * z1 + c0 * c1 * z2)
            upper[w, k, 5] = sz * sz
        lp[w] = val if inside else -np.inf
        f = 0.5 + 0.5 / (1.0 + np.exp(-u))
        s = 2.0 * f - 1.0
        ln_w[w, 0] = np.log1p(s) - ln2
        ln_w[w, 1] = np.log1p(-s) - ln2 if s < 1.0 else -np.inf
    return lp, ln_w, means, upper
