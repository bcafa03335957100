"""The heteroscedastic loss of Fallows & Sanders eq. 3 (after Leung & Bovy 2019), with the
optional per-row weight of eq. 11.

    s = ln(sigma_data^2 + sigma_pred^2)
    J = mean(0.5 W (y - yhat)^2 exp(-s) + 0.5 s)

Everything is in standardised target units: ``y_err`` must already be divided by the target
scale. ``s`` is evaluated as ``logaddexp(ln sigma_data^2, log_var)``, which neither overflows for
large ``log_var`` nor loses the predictive term when ``sigma_data`` is zero.
"""

from __future__ import annotations

import logging

import torch

logger = logging.getLogger(__name__)


def heteroscedastic_loss(
    y: torch.Tensor,
    y_err: torch.Tensor,
    value: torch.Tensor,
    log_var: torch.Tensor,
    weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean heteroscedastic loss (eq. 3), weighted as in eq. 11.

    Parameters
    ----------
    y : torch.Tensor, shape (n,)
        Targets (standardised target units).
    y_err : torch.Tensor, shape (n,)
        Target uncertainties sigma_data (standardised target units, >= 0; 0 is allowed).
    value : torch.Tensor, shape (n,)
        Network predictions yhat (standardised target units).
    log_var : torch.Tensor, shape (n,)
        ln sigma_pred^2 from the uncertainty node (standardised target units squared, logged).
    weight : torch.Tensor, shape (n,), optional
        W of eq. 11 (``|[Fe/H]| + C`` in stage 2); multiplies the squared-error term only.
        ``None`` means W = 1.

    Returns
    -------
    torch.Tensor, shape ()
        J, the mean over rows.
    """
    tiny = torch.finfo(y_err.dtype).tiny
    log_data_var = torch.log(y_err.square().clamp_min(tiny))
    s = torch.logaddexp(log_data_var, log_var)
    sq = (y - value).square() * torch.exp(-s)
    if weight is not None:
        sq = weight * sq
    return (0.5 * sq + 0.5 * s).mean()
