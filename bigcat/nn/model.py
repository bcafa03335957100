"""The heteroscedastic multilayer perceptron of Fallows & Sanders (Section 2, Appendix A2).

inputs -> 80 -> 80 -> 2, ReLU activations, dropout (p = 0.2) after each hidden layer. The two
outputs are the predicted value and ``log_var`` = ln sigma_pred^2, the log of the predictive
variance of the uncertainty node (eq. 3), both in standardised target units.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

logger = logging.getLogger(__name__)

#: Resolution of :class:`BitDropout`'s drop probability: p is rounded to a multiple of 2^-15.
DROPOUT_RESOLUTION = 1 << 15


class BitDropout(nn.Dropout):
    """``torch.nn.Dropout`` with masks cut from raw random bits: the same layer, 3x cheaper.

    torch's own dropout draws one Bernoulli variate per unit (``bernoulli_``, ~140M/s on one
    CPU core), which made it a third of stage-1 training time. Here one 64-bit random integer
    gives four 15-bit uniforms, each compared with ``round(p * 2^15)``: a unit is dropped with
    probability ``round(p * 2^15) / 2^15`` (p = 0.2 becomes 0.20001), kept units are scaled by
    1 / (1 - p) as usual. Draws come from torch's global generator (seeded like any dropout).
    In eval mode, or with p = 0, it is the identity.
    """

    def __init__(self, p: float = 0.5) -> None:
        super().__init__(p)
        self._threshold = dropout_threshold(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self._threshold == 0:
            return x
        return x * bit_dropout_mask(x.shape, self._threshold, x.device)


def dropout_threshold(p: float) -> int:
    """:class:`BitDropout`'s integer threshold for drop probability ``p``."""
    return min(int(round(p * DROPOUT_RESOLUTION)), DROPOUT_RESOLUTION - 1)


def bit_keep_mask(
    shape: torch.Size | tuple[int, ...],
    threshold: int,
    device: torch.device | str = "cpu",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Float "unit kept" mask (1.0 kept, 0.0 dropped) cut from raw random bits as
    :class:`BitDropout` does (the same draws as :func:`bit_dropout_mask`), without a boolean
    intermediate (comparisons and boolean casts are several times slower than float
    arithmetic in torch's CPU kernels)."""
    n = int(np.prod(shape))
    raw = torch.empty((n + 3) // 4, dtype=torch.int64, device=device).random_(generator=generator)
    u = (raw.view(torch.int16)[:n].view(shape) & (DROPOUT_RESOLUTION - 1)).to(torch.float32)
    # u >= threshold  <=>  u - (threshold - 1) >= 1; below, it is <= 0
    return u.sub_(threshold - 1).clamp_(0.0, 1.0)


def bit_dropout_mask(
    shape: torch.Size | tuple[int, ...],
    threshold: int,
    device: torch.device | str = "cpu",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """A dropout mask (kept units 1 / (1 - p), dropped 0) cut from raw random bits as
    :class:`BitDropout` does; from ``generator`` (default: torch's global one)."""
    n = int(np.prod(shape))
    raw = torch.empty((n + 3) // 4, dtype=torch.int64, device=device).random_(generator=generator)
    u = raw.view(torch.int16)[:n].view(shape) & (DROPOUT_RESOLUTION - 1)
    keep = (u >= threshold).to(torch.float32)
    return keep * (DROPOUT_RESOLUTION / (DROPOUT_RESOLUTION - threshold))


class HeteroscedasticMLP(nn.Module):
    """Linear -> ReLU -> Dropout for each hidden layer, then Linear(..., 2).

    Parameters
    ----------
    n_inputs : int
        Number of input features (16 colours in stage 1, 24 in stage 2).
    hidden : sequence of int
        Widths of the hidden layers; the paper's (80, 80) by default.
    dropout : float
        Drop probability p of each hidden unit, in [0, 1); active in training and in
        Monte-Carlo prediction.

    Notes
    -----
    The layers live in ``self.net`` (an :class:`torch.nn.Sequential`), so a state dict has keys
    ``net.0.weight``, ``net.0.bias``, ``net.3.weight``, ... ; :attr:`linears` lists the linear
    layers in order for code (such as the batched MC-dropout) that works with the weights directly.
    """

    def __init__(
        self, n_inputs: int, hidden: Sequence[int] = (80, 80), dropout: float = 0.2
    ) -> None:
        super().__init__()
        hidden = tuple(int(h) for h in hidden)
        if n_inputs < 1:
            raise ValueError(f"n_inputs = {n_inputs}: a network needs at least one input.")
        if not hidden or min(hidden) < 1:
            raise ValueError(f"hidden = {hidden}: give at least one hidden layer, widths >= 1.")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout = {dropout}: must be in [0, 1).")
        self.n_inputs = int(n_inputs)
        self.hidden = hidden
        self.dropout = float(dropout)
        layers: list[nn.Module] = []
        width = self.n_inputs
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU(), BitDropout(self.dropout)]
            width = h
        layers.append(nn.Linear(width, 2))
        self.net = nn.Sequential(*layers)

    @property
    def linears(self) -> list[nn.Linear]:
        """The linear layers, input to output."""
        return [m for m in self.net if isinstance(m, nn.Linear)]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Predicted value and log predictive variance.

        Parameters
        ----------
        x : torch.Tensor, shape (n, n_inputs)
            Standardised features.

        Returns
        -------
        value : torch.Tensor, shape (n,)
            Prediction in standardised target units.
        log_var : torch.Tensor, shape (n,)
            ln sigma_pred^2 in standardised target units.
        """
        out = self.net(x)
        return out[:, 0], out[:, 1]
