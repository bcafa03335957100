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
