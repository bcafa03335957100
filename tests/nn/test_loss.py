from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bigcat.nn.loss import heteroscedastic_loss


def t(*v: float) -> torch.Tensor:
    return torch.tensor(v, dtype=torch.float64)


def test_loss_by_hand():
    # y=1, yhat=0.5, sigma_data=0.1, sigma_pred^2=0.04: s = ln(0.01 + 0.04) = ln 0.05 = -2.995732
    # J = 0.5 * 0.25 / 0.05 + 0.5 * s = 2.5 - 1.497866 = 1.002134
    j = heteroscedastic_loss(t(1.0), t(0.1), t(0.5), t(math.log(0.04)))
    assert float(j) == pytest.approx(1.002134, abs=1e-6)


def test_weight_multiplies_only_squared_term():
    # W = 2: J = 0.5 * 2 * 5 + 0.5 * ln 0.05 = 5 - 1.497866
    j = heteroscedastic_loss(t(1.0), t(0.1), t(0.5), t(math.log(0.04)), weight=t(2.0))
    assert float(j) == pytest.approx(3.502134, abs=1e-6)
    # W = 0 leaves only the 0.5 s term
    j0 = heteroscedastic_loss(t(1.0), t(0.1), t(0.5), t(math.log(0.04)), weight=t(0.0))
    assert float(j0) == pytest.approx(0.5 * math.log(0.05), abs=1e-9)


def test_mean_over_rows():
    j = heteroscedastic_loss(t(1.0, 0.0), t(0.1, 0.1), t(0.5, 0.0), t(math.log(0.04), 0.0))
    second = 0.5 * math.log(1.01)
    assert float(j) == pytest.approx((1.002134 + second) / 2, abs=1e-6)


def test_zero_data_error_and_extreme_log_var_are_finite():
    j = heteroscedastic_loss(t(1.0), t(0.0), t(0.0), t(0.0))
    assert float(j) == pytest.approx(0.5)  # s = ln(0 + 1) = 0
    big = torch.tensor([200.0], dtype=torch.float32)
    val = heteroscedastic_loss(torch.ones(1), torch.zeros(1), torch.zeros(1), big.requires_grad_())
    assert torch.isfinite(val)
    val.backward()
    small = torch.tensor([-200.0], requires_grad=True)
    val2 = heteroscedastic_loss(torch.ones(1), torch.zeros(1), torch.zeros(1), small)
    assert torch.isfinite(val2)  # sigma_data^2 is clamped at float32 tiny, so exp(-s) stays finite


@settings(max_examples=50, deadline=None)
@given(
    y=st.floats(-5, 5),
    yhat=st.floats(-5, 5),
    err=st.floats(1e-3, 3),
    log_var=st.floats(-8, 4),
    w=st.floats(0, 3),
)
def test_matches_naive_formula(y, yhat, err, log_var, w):
    s = np.log(err**2 + np.exp(log_var))
    expected = 0.5 * w * (y - yhat) ** 2 * np.exp(-s) + 0.5 * s
    got = heteroscedastic_loss(t(y), t(err), t(yhat), t(log_var), weight=t(w))
    assert float(got) == pytest.approx(expected, rel=1e-9, abs=1e-9)


# --- optional upper bound: truncated Gaussian likelihood of the selected target ---------------


def std_normal_cdf(z: float) -> float:
    return 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))


def test_upper_bound_by_hand():
    # y=0.5, yhat=0.8, sigma_data=0.1, sigma_pred^2=0.04, b=0.7: s^2 = 0.05, sqrt = 0.2236068
    # z = (0.7 - 0.8) / 0.2236068 = -0.4472136, Phi(z) = 0.3273604, ln Phi = -1.1166935
    # J = 0.5 * 0.09 / 0.05 + 0.5 ln 0.05 + ln Phi = 0.9 - 1.4978661 - 1.1166935 = -1.7145596
    z = (0.7 - 0.8) / math.sqrt(0.05)
    expected = 0.5 * 0.09 / 0.05 + 0.5 * math.log(0.05) + math.log(std_normal_cdf(z))
    assert expected == pytest.approx(-1.7145596, abs=1e-7)
    j = heteroscedastic_loss(t(0.5), t(0.1), t(0.8), t(math.log(0.04)), upper_bound=t(0.7))
    assert float(j) == pytest.approx(expected, abs=1e-9)


def test_upper_bound_term_is_not_weighted():
    # W = 2 doubles only the squared term: 0.5 * 2 * 1.8 - 1.4978661 - 1.1166935 = -0.8145596
    j = heteroscedastic_loss(
        t(0.5), t(0.1), t(0.8), t(math.log(0.04)), weight=t(2.0), upper_bound=t(0.7)
    )
    assert float(j) == pytest.approx(-0.8145596, abs=1e-7)


def test_upper_bound_lowers_the_loss_of_a_prediction_above_the_cut():
    # the truncation term is ln Phi <= 0 and rewards yhat far below b (Phi -> 1 adds nothing)
    args = (t(0.5), t(0.1), t(0.8), t(math.log(0.04)))
    plain = float(heteroscedastic_loss(*args))
    far = float(heteroscedastic_loss(*args, upper_bound=t(50.0)))
    assert far == pytest.approx(plain, abs=1e-12)
    assert float(heteroscedastic_loss(*args, upper_bound=t(0.7))) < plain


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_infinite_or_nan_bound_is_exactly_eq3(dtype):
    g = torch.Generator().manual_seed(0)
    y, yhat, log_var = (torch.randn(257, generator=g, dtype=dtype) for _ in range(3))
    err = torch.rand(257, generator=g, dtype=dtype)
    w = torch.rand(257, generator=g, dtype=dtype) * 2
    for weight in (None, w):
        old = heteroscedastic_loss(y, err, yhat, log_var, weight)
        for fill in (math.inf, math.nan, -math.inf):
            bound = torch.full_like(y, fill)
            new = heteroscedastic_loss(y, err, yhat, log_var, weight, upper_bound=bound)
            assert torch.equal(new, old), fill


def test_bound_gradients_equal_eq3_when_unbounded_and_finite_when_mixed():
    def grads(bound):
        value = torch.tensor([0.3, -1.0, 2.0], requires_grad=True)
        log_var = torch.tensor([-1.0, 0.5, -3.0], requires_grad=True)
        y, err = torch.tensor([0.1, -0.5, 1.0]), torch.tensor([0.2, 0.0, 0.5])
        heteroscedastic_loss(y, err, value, log_var, upper_bound=bound).backward()
        assert value.grad is not None and log_var.grad is not None
        return value.grad, log_var.grad

    g_old = grads(None)
    g_nan = grads(torch.tensor([math.nan, math.inf, math.nan]))
    assert all(torch.equal(a, b) for a, b in zip(g_old, g_nan, strict=True))
    # a bound far below the prediction (z ~ -40): ln Phi ~ -z^2/2 stays finite, as do gradients
    g_mix = grads(torch.tensor([math.nan, -10.0, 1.5]))
    assert all(torch.isfinite(g).all() for g in g_mix)
    assert not torch.equal(g_mix[0], g_old[0])


def test_bound_mixes_rows():
    y, err, yhat, lv = t(0.5, 1.0), t(0.1, 0.1), t(0.8, 0.5), t(math.log(0.04), math.log(0.04))
    j = heteroscedastic_loss(y, err, yhat, lv, upper_bound=t(0.7, math.inf))
    assert float(j) == pytest.approx((-1.7145596 + 1.002134) / 2, abs=1e-6)


@settings(max_examples=50, deadline=None)
@given(
    y=st.floats(-5, 5),
    yhat=st.floats(-5, 5),
    err=st.floats(1e-3, 3),
    log_var=st.floats(-8, 4),
    w=st.floats(0, 3),
    z=st.floats(-8, 8),
)
def test_bound_matches_naive_formula(y, yhat, err, log_var, w, z):
    var = err**2 + math.exp(log_var)
    b = yhat + z * math.sqrt(var)  # standardised distance z drawn directly: no Phi underflow
    phi = 0.5 * math.erfc(-z / math.sqrt(2.0))  # = std_normal_cdf(z), accurate in the low tail
    expected = 0.5 * w * (y - yhat) ** 2 / var + 0.5 * math.log(var) + math.log(phi)
    got = heteroscedastic_loss(t(y), t(err), t(yhat), t(log_var), weight=t(w), upper_bound=t(b))
    assert float(got) == pytest.approx(expected, rel=1e-9, abs=1e-9)
