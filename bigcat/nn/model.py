"""The heteroscedastic multilayer perceptron of Fallows & Sanders (Section 2, Appendix A2).

inputs -> 80 -> 80 -> 2, ReLU activations, dropout (p = 0.2) after each hidden layer. The two
outputs are the predicted value and ``log_var`` = ln sigma_pred^2, the log of the predictive
variance of the uncertainty node (eq. 3), both in standardised target units.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
from torch import nn

logger = logging.getLogger(__name__)


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
            layers += [nn.Linear(width, h), nn.ReLU(), nn.Dropout(self.dropout)]
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
