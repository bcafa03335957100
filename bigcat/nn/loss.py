"""The heteroscedastic loss of Fallows & Sanders eq. 3 (after Leung & Bovy 2019), with the
optional per-row weight of eq. 11 and an optional per-row upper bound (selection truncation).

    s = ln(sigma_data^2 + sigma_pred^2)
    J = mean(0.5 W (y - yhat)^2 exp(-s) + 0.5 s [+ ln Phi((b - yhat) exp(-s/2))])

The bracketed term is the truncated-Gaussian extension: when the training rows were selected by
``y_obs < b`` on the *noisy* target (stage 1: the giant cut M_pseudo < 492.101 (J0 - H0) - 53.827
applied to parallax-based M_pseudo), the likelihood of an observed y is the Gaussian density
renormalised by the probability Phi((b - yhat) / sqrt(exp(s))) of passing the cut. Without the
term, the truncated-from-above noise of faint rows pulls yhat low. Phi is evaluated as
``torch.special.log_ndtr`` (stable far into both tails). The truncation term is NOT multiplied by
W: the weight of eq. 11 keeps its meaning (it rescales only the squared-error term), so with
W != 1 the loss is no longer a weighted likelihood in the strict sense - a deliberate choice to
keep weighted stage-2 semantics unchanged. Rows whose bound is not finite (+inf, NaN) contribute
exactly eq. 3.

Everything is in standardised target units: ``y_err`` must already be divided by the target
scale. ``s`` is evaluated as ``logaddexp(ln sigma_data^2, log_var)``, which neither overflows for
large ``log_var`` nor loses the predictive term when ``sigma_data`` is zero.
"""

from __future__ import annotations

import logging

import torch

logger = logging.getLogger(__name__)


def heteroscedastic_terms(
    y: torch.Tensor,
    y_err: torch.Tensor,
    value: torch.Tensor,
    log_var: torch.Tensor,
    weight: torch.Tensor | None = None,
    upper_bound: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-row terms of :func:`heteroscedastic_loss` (same arguments, any common shape): the
    loss is their mean. Batched trainers (a fold dimension) average them per fold."""
    tiny = torch.finfo(y_err.dtype).tiny
    log_data_var = torch.log(y_err.square().clamp_min(tiny))
    s = torch.logaddexp(log_data_var, log_var)
    sq = (y - value).square() * torch.exp(-s)
    if weight is not None:
        sq = weight * sq
    if upper_bound is None:
        return 0.5 * sq + 0.5 * s
    bounded = torch.isfinite(upper_bound)
    # replace unbounded entries before log_ndtr so no NaN/inf reaches the backward pass
    b = torch.where(bounded, upper_bound, value.detach())
    log_phi = torch.special.log_ndtr((b - value) * torch.exp(-0.5 * s))
    trunc = torch.where(bounded, log_phi, torch.zeros_like(log_phi))
    return 0.5 * sq + 0.5 * s + trunc


def heteroscedastic_loss(
    y: torch.Tensor,
    y_err: torch.Tensor,
    value: torch.Tensor,
    log_var: torch.Tensor,
    weight: torch.Tensor | None = None,
    upper_bound: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean heteroscedastic loss (eq. 3), weighted as in eq. 11, optionally truncated above.

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
    upper_bound : torch.Tensor, shape (n,), optional
        Per-row selection bound b (standardised target units, the same transform as ``y``): the
        row was kept only because its observed target satisfied ``y < b``. Adds the unweighted
        term ln Phi((b - yhat) / sqrt(sigma_data^2 + sigma_pred^2)). Non-finite entries (+inf,
        NaN; also -inf) mean "no bound" and give exactly eq. 3 for that row. ``None`` (default)
        is eq. 3 for every row, bit for bit as before.

    Returns
    -------
    torch.Tensor, shape ()
        J, the mean over rows.
    """
    return heteroscedastic_terms(y, y_err, value, log_var, weight, upper_bound).mean()
