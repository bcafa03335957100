"""Training of the heteroscedastic MLP (Fallows & Sanders Section 2; METHOD.md section 3).

Adam on the loss of eq. 3 (weighted as eq. 11 when a weight is given; truncated above by a
per-row selection bound when ``upper_bound`` is given, see :mod:`bigcat.nn.loss`),
ReduceLROnPlateau on the validation loss, early stopping that restores the weights of the best
validation epoch. Features and target are standardised with statistics of the training rows
only; a bound is standardised with the target's mean and scale.

Determinism: weight initialisation and dropout draw from torch's global CPU generator, which is
forked and seeded with ``config.seed`` for the duration of the call (the caller's stream is left
untouched); mini-batch shuffling uses its own seeded ``torch.Generator``; the validation split a
seeded numpy generator. Same inputs and seed on the same machine give identical weights.
The validation loss is evaluated with dropout off (``model.eval()``).
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from bigcat.errors import ConfigError, InputError, did_you_mean
from bigcat.nn.device import resolve_device, torch_threads
from bigcat.nn.loss import heteroscedastic_loss
from bigcat.nn.model import (
    DROPOUT_RESOLUTION,
    HeteroscedasticMLP,
    bit_keep_mask,
    dropout_threshold,
)
from bigcat.nn.scaler import Standardiser

logger = logging.getLogger(__name__)


class TrainingDataError(InputError, ValueError):
    """Training arrays are inconsistent or contain non-finite rows."""


@dataclass(frozen=True)
class TrainConfig:
    """Network and optimiser settings; defaults are the paper's architecture.

    Attributes
    ----------
    hidden
        Widths of the hidden layers (paper: two of 80).
    dropout
        Drop probability of each hidden unit, in [0, 1) (paper: 0.2).
    learning_rate
        Initial Adam learning rate.
    batch_size
        Rows per mini-batch.
    max_epochs
        Upper limit on passes over the training rows.
    patience
        Stop after this many epochs without a better validation loss.
    lr_factor
        ReduceLROnPlateau multiplies the learning rate by this factor, in (0, 1).
    lr_patience
        ... after this many epochs without a better validation loss.
    lr_schedule
        "plateau": the learning rate starts at ``learning_rate`` and is multiplied by
        ``lr_factor`` on plateaus of the validation loss (torch's ReduceLROnPlateau);
        "cosine": it falls from ``learning_rate`` to 0 along a half cosine over
        ``max_epochs`` epochs (step by step), which reaches a given loss in fewer epochs.
        Early stopping (``patience``) applies to both.
    validation_fraction
        Fraction of rows held out for validation when no explicit validation set is given,
        in (0, 1) (paper: 0.15).
    weight_decay
        Adam L2 penalty (0 = none).
    seed
        Seeds initialisation, dropout, shuffling and the validation split.
    num_threads
        torch intra-op CPU threads during training (restored afterwards); None = leave as is.
    """

    hidden: tuple[int, ...] = (80, 80)
    dropout: float = 0.2
    learning_rate: float = 1e-3
    batch_size: int = 1024
    max_epochs: int = 200
    patience: int = 10
    lr_factor: float = 0.5
    lr_patience: int = 4
    lr_schedule: str = "plateau"
    validation_fraction: float = 0.15
    weight_decay: float = 0.0
    seed: int = 0
    num_threads: int | None = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
        checks = [
            ("hidden", len(self.hidden) > 0 and min(self.hidden) >= 1, "one or more widths >= 1"),
            ("dropout", 0.0 <= self.dropout < 1.0, "in [0, 1)"),
            ("learning_rate", self.learning_rate > 0, "positive"),
            ("batch_size", self.batch_size >= 1, "at least 1"),
            ("max_epochs", self.max_epochs >= 1, "at least 1"),
            ("patience", self.patience >= 1, "at least 1"),
            ("lr_factor", 0.0 < self.lr_factor < 1.0, "in (0, 1)"),
            ("lr_patience", self.lr_patience >= 0, "0 or more"),
            ("lr_schedule", self.lr_schedule in ("plateau", "cosine"), '"plateau" or "cosine"'),
            ("validation_fraction", 0.0 < self.validation_fraction < 1.0, "in (0, 1)"),
            ("weight_decay", self.weight_decay >= 0, "0 or more"),
            ("seed", self.seed >= 0, "0 or more"),
            ("num_threads", self.num_threads is None or self.num_threads >= 1, "None or >= 1"),
        ]
        for name, ok, rule in checks:
            if not ok:
                raise ConfigError(f"train.{name} = {getattr(self, name)!r}: must be {rule}.")

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-serialisable form."""
        d = dataclasses.asdict(self)
        d["hidden"] = list(self.hidden)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """Build from a mapping; an unknown key is a ConfigError with "Did you mean ...?"."""
        names = [f.name for f in dataclasses.fields(cls)]
        for key in d:
            if key not in names:
                raise ConfigError(
                    f"train: unknown setting {key!r}.{did_you_mean(key, names)} "
                    f"Known settings: {', '.join(names)}."
                )
        kwargs: dict[str, Any] = {k: (tuple(v) if k == "hidden" else v) for k, v in d.items()}
        return cls(**kwargs)


@dataclass
class TrainedModel:
    """A trained network with everything needed to apply it.

    Attributes
    ----------
    state_dict
        Weights of a :class:`HeteroscedasticMLP`, tensors on CPU.
    feature_names
        Input columns in the order the network expects them.
    standardiser
        Feature and target standardisation fitted on the training rows.
    config
        The settings it was trained with.
    metrics
        ``train_loss`` and ``val_loss`` (lists, one per epoch; standardised units),
        ``learning_rate`` (per epoch), ``best_epoch`` (1-based), ``best_val_loss``,
        ``epochs_run``, ``seconds``, ``n_train``, ``n_val``; with an upper bound also
        ``n_bounded`` (training-set rows, before the split, with a finite bound).
    training_fingerprint
        First 16 hex digits of the sha256 of the training arrays (see :func:`fingerprint_arrays`).
    """

    state_dict: dict[str, torch.Tensor]
    feature_names: list[str]
    standardiser: Standardiser
    config: TrainConfig
    metrics: dict[str, Any] = field(default_factory=dict)
    training_fingerprint: str = ""

    def build_module(self, device: torch.device | str | None = "cpu") -> HeteroscedasticMLP:
        """A :class:`HeteroscedasticMLP` with these weights, in eval mode, on ``device``."""
        net = HeteroscedasticMLP(len(self.feature_names), self.config.hidden, self.config.dropout)
        net.load_state_dict(self.state_dict)
        return net.to(resolve_device(device)).eval()


def fingerprint_arrays(*arrays: np.ndarray | None) -> str:
    """First 16 hex digits of the sha256 over the arrays' dtype, shape and bytes (None skipped)."""
    h = hashlib.sha256()
    for a in arrays:
        if a is None:
            h.update(b"none")
            continue
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]


def _check_arrays(
    X: np.ndarray,
    y: np.ndarray,
    y_err: np.ndarray,
    weight: np.ndarray | None,
    n_features: int,
    label: str,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    y_err = np.asarray(y_err, dtype=np.float64)
    if X.ndim != 2 or X.shape[1] != n_features:
        raise TrainingDataError(
            f"{label} X has shape {X.shape}; expected (n, {n_features}) to match feature_names."
        )
    n = len(X)
    for name, a in (("y", y), ("y_err", y_err)):
        if a.shape != (n,):
            raise TrainingDataError(f"{label} {name} has shape {a.shape}; expected ({n},).")
    bad = ~(np.isfinite(X).all(axis=1) & np.isfinite(y) & np.isfinite(y_err))
    if bad.any():
        raise TrainingDataError(
            f"{label}: {int(bad.sum())} of {n} rows have non-finite features, target or "
            f"target uncertainty; drop them before training (e.g. df.dropna())."
        )
    if (y_err < 0).any():
        raise TrainingDataError(
            f"{label}: {int((y_err < 0).sum())} rows have negative y_err; uncertainties are >= 0."
        )
    if weight is not None:
        weight = np.asarray(weight, dtype=np.float64)
        if weight.shape != (n,) or not np.isfinite(weight).all() or (weight < 0).any():
            raise TrainingDataError(
                f"{label} weight must be finite, >= 0 and of shape ({n},); got shape "
                f"{weight.shape} with {int((~np.isfinite(weight) | (weight < 0)).sum())} bad values."
            )
    return X, y, y_err, weight


def _check_bound(bound: np.ndarray | None, n: int, label: str) -> np.ndarray | None:
    """A per-row upper bound as float64 with every non-finite entry (NaN, +-inf) set to +inf."""
    if bound is None:
        return None
    bound = np.asarray(bound, dtype=np.float64)
    if bound.shape != (n,):
        raise TrainingDataError(f"{label} upper bound has shape {bound.shape}; expected ({n},).")
    return np.where(np.isfinite(bound), bound, np.inf)


def _warn_above_bound(y: np.ndarray, bound: np.ndarray | None, label: str) -> None:
    if bound is None:
        return
    above = int((y >= bound).sum())
    if above:
        logger.warning(
            "%s: %d of %d rows have a target at or above their upper bound; the truncated "
            "likelihood assumes the rows were selected by target < bound",
            label, above, len(y),
        )  # fmt: skip


def _tensors(
    std: Standardiser,
    X: np.ndarray,
    y: np.ndarray,
    y_err: np.ndarray,
    weight: np.ndarray | None,
    device: torch.device,
    upper_bound: np.ndarray | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """(X, y, y_err, weight, bound) tensors in standardised units; the bound is transformed like
    the target (+inf stays +inf)."""

    def t(a: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(a, dtype=torch.float32, device=device)

    w = None if weight is None else t(weight)
    b = None if upper_bound is None else t(std.transform_target(upper_bound))
    return (
        t(std.transform_features(X)),
        t(std.transform_target(y)),
        t(std.transform_error(y_err)),
        w,
        b,
    )


def _evaluate(net: HeteroscedasticMLP, data: tuple, batch_size: int) -> float:
    X, y, e, w = data[:4]
    b = data[4] if len(data) > 4 else None
    net.eval()
    total = 0.0
    with torch.no_grad():
        for i in range(0, len(X), batch_size):
            sl = slice(i, i + batch_size)
            value, log_var = net(X[sl])
            loss = heteroscedastic_loss(
                y[sl],
                e[sl],
                value,
                log_var,
                None if w is None else w[sl],
                None if b is None else b[sl],
            )
            total += float(loss) * len(value)
    return total / len(X)


class _ManualMLP:
    """Forward and backward pass of :class:`HeteroscedasticMLP` written out (no autograd).

    Training is bound by the element-wise work on the (batch, 80) hidden activations, not by
    the matrix products: autograd's ReLU, dropout and their backward passes each read and write
    them again. Here the activation is ``relu(z) * kept`` (a float 0/1 mask), its sign is
    the layer's derivative (ReLU's and dropout's together), and dropout's 1 / (1 - p) scale
    is folded into the next layer's weights; all element-wise work is float arithmetic,
    which torch's CPU kernels do several times faster than comparisons and boolean masks. The gradients equal autograd's
    (tested); the dropout masks are drawn exactly as :class:`~bigcat.nn.model.BitDropout`
    draws them, in the same order.
    """

    def __init__(self, net: HeteroscedasticMLP) -> None:
        self.linears = net.linears
        self.threshold = dropout_threshold(net.dropout)
        self.scale = DROPOUT_RESOLUTION / (DROPOUT_RESOLUTION - self.threshold)

    def step(
        self,
        X: torch.Tensor,
        y: torch.Tensor,
        e: torch.Tensor,
        w: torch.Tensor | None,
        b: torch.Tensor | None,
    ) -> torch.Tensor:
        """Set every parameter's ``.grad`` to the gradient of the mean loss over the batch
        (dropout active) and return the loss."""
        n = X.shape[0]
        a = X
        acts, gates, weights = [], [], []
        with torch.no_grad():
            scale = 1.0
            for lin in self.linears:
                weight = lin.weight if scale == 1.0 else lin.weight * scale  # previous dropout
                weights.append(weight)
                z = torch.addmm(lin.bias, a, weight.t())
                acts.append(a)
                if lin is self.linears[-1]:
                    break
                a = torch.relu(z)
                if self.threshold > 0:
                    a.mul_(bit_keep_mask(z.shape, self.threshold, z.device))
                    scale = self.scale
                gates.append(torch.sign(a))  # 1 where kept and z > 0: the layer's derivative
            value, log_var = z[:, 0], z[:, 1]
            tiny = torch.finfo(e.dtype).tiny
            log_data_var = torch.log(e.square().clamp_min(tiny))
            s = torch.logaddexp(log_data_var, log_var)
            inv = torch.exp(-s)
            r = y - value
            wr = r if w is None else w * r
            loss_rows = 0.5 * wr * r * inv + 0.5 * s
            d_value = -wr * inv
            d_s = 0.5 - 0.5 * wr * r * inv
            if b is not None:
                bounded = torch.isfinite(b)
                half = torch.exp(-0.5 * s)
                u = (torch.where(bounded, b, value) - value) * half
                log_phi = torch.special.log_ndtr(u)
                ratio = torch.exp(-0.5 * u * u - _HALF_LOG_2PI - log_phi)  # phi(u) / Phi(u)
                ratio = torch.where(bounded, ratio, torch.zeros_like(ratio))
                loss_rows = loss_rows + torch.where(bounded, log_phi, torch.zeros_like(log_phi))
                d_value = d_value - ratio * half
                d_s = d_s - 0.5 * ratio * u
            d_log_var = d_s * torch.sigmoid(log_var - log_data_var)
            dz = torch.stack([d_value, d_log_var], dim=1).div_(n)
            for k in range(len(self.linears) - 1, -1, -1):
                lin, a_in = self.linears[k], acts[k]
                # into the optimiser's flat gradient buffer where it provides one (no copy)
                grad_w, grad_b = lin.weight.grad, lin.bias.grad
                if grad_w is None or grad_b is None:
                    grad_w = lin.weight.grad = torch.empty_like(lin.weight)
                    grad_b = lin.bias.grad = torch.empty_like(lin.bias)
                torch.mm(dz.t(), a_in, out=grad_w)
                if k > 0 and self.threshold > 0:
                    grad_w *= self.scale  # d(loss)/d(weight) of the unscaled weight
                torch.sum(dz, dim=0, out=grad_b)
                if k > 0:
                    dz = (dz @ weights[k]).mul_(gates[k - 1])
        return loss_rows.mean()


class _FlatAdam:
    """Adam (torch's update, L2 weight decay as torch's ``weight_decay``) over every
    parameter of a network held in one flat buffer: a step is a handful of vector operations
    instead of a call per parameter tensor. The learning rate is read from ``lr_source``
    (an optimizer whose ``param_groups[0]["lr"]`` a torch scheduler adjusts)."""

    def __init__(self, params: list[torch.Tensor], weight_decay: float, lr_source: Any) -> None:
        self.params = params
        flat = torch.cat([p.detach().reshape(-1) for p in params])
        self.flat = flat
        self.grad = torch.zeros_like(flat)
        offset = 0
        self.views = []
        for p in params:
            k = p.numel()
            p.data = flat[offset : offset + k].view_as(p)
            view = self.grad[offset : offset + k].view_as(p)
            self.views.append(view)
            p.grad = view  # _ManualMLP.step writes the gradients here directly
            offset += k
        self.m = torch.zeros_like(flat)
        self.v = torch.zeros_like(flat)
        self.t = 0
        self.weight_decay = weight_decay
        self.lr_source = lr_source

    def step(self) -> None:
        b1, b2 = 0.9, 0.999
        for p, view in zip(self.params, self.views, strict=True):
            assert p.grad is not None  # set by _ManualMLP.step
            if p.grad.data_ptr() != view.data_ptr():
                view.copy_(p.grad)
        g = self.grad
        if self.weight_decay:
            g = g.add(self.flat, alpha=self.weight_decay)
        self.t += 1
        self.m.mul_(b1).add_(g, alpha=1.0 - b1)
        self.v.mul_(b2).addcmul_(g, g, value=1.0 - b2)
        lr = float(self.lr_source.param_groups[0]["lr"])
        denom = (self.v / (1.0 - b2**self.t)).sqrt_().add_(1e-8)
        self.flat.addcdiv_(self.m, denom, value=-lr / (1.0 - b1**self.t))


_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


def train_network(
    X: np.ndarray,
    y: np.ndarray,
    y_err: np.ndarray,
    feature_names: list[str],
    config: TrainConfig,
    weight: np.ndarray | None = None,
    X_val: np.ndarray | None = None,
    y_val: np.ndarray | None = None,
    y_err_val: np.ndarray | None = None,
    weight_val: np.ndarray | None = None,
    device: torch.device | str | None = None,
    upper_bound: np.ndarray | None = None,
    upper_bound_val: np.ndarray | None = None,
) -> TrainedModel:
    """Train a :class:`HeteroscedasticMLP` on one training set.

    Parameters
    ----------
    X : numpy.ndarray, shape (n, d)
        Features in the order of ``feature_names`` (colours in mag, absolute magnitudes in mag).
    y : numpy.ndarray, shape (n,)
        Target (stage 1: M_pseudo; stage 2: [Fe/H] in dex).
    y_err : numpy.ndarray, shape (n,)
        Target uncertainty sigma_data, same units as ``y``.
    feature_names : list of str
        Names of the d feature columns.
    config : TrainConfig
        Architecture and optimiser settings.
    weight : numpy.ndarray, shape (n,), optional
        Per-row loss weight W of eq. 11 (multiplies the squared-error term only).
    X_val, y_val, y_err_val, weight_val : numpy.ndarray, optional
        An explicit validation set (all three of X_val, y_val, y_err_val, or none); without it a
        seeded ``config.validation_fraction`` of the rows is held out.
    device : torch.device or str, optional
        Where to train; default :func:`bigcat.nn.device.default_device`.
    upper_bound : numpy.ndarray, shape (n,), optional
        Per-row selection bound b in target units: the row is in the training set because its
        observed (noisy) target satisfied ``y < b`` (stage 1: the giant cut
        ``b = 492.101 (J0 - H0) - 53.827``). The loss becomes the truncated-Gaussian likelihood
        (eq. 3 plus the unweighted ln Phi((b - yhat) / s) term, :mod:`bigcat.nn.loss`), which
        removes the low bias the cut causes for noisy rows near it. Standardised with the
        target's mean and scale and carried through the seeded split. Non-finite entries (NaN,
        +-inf) mean "no bound" (+inf) for that row. Included in the training fingerprint.
    upper_bound_val : numpy.ndarray, optional
        Bound of the explicit validation rows; required with an explicit validation set when
        ``upper_bound`` is given (and only then).

    Returns
    -------
    TrainedModel
        Weights of the best validation epoch, on CPU, with standardiser, config and metrics.

    Raises
    ------
    TrainingDataError
        (a ValueError) on non-finite rows (naming how many), inconsistent shapes, negative
        uncertainties or too few rows for the split.
    """
    t0 = time.perf_counter()
    feature_names = [str(f) for f in feature_names]
    d = len(feature_names)
    X, y, y_err, weight = _check_arrays(X, y, y_err, weight, d, "training set")
    explicit = [a is not None for a in (X_val, y_val, y_err_val)]
    if any(explicit) and not all(explicit):
        raise TrainingDataError("give all of X_val, y_val and y_err_val, or none of them.")
    if weight_val is not None and not all(explicit):
        raise TrainingDataError("weight_val was given without X_val, y_val and y_err_val.")
    if upper_bound_val is not None and not all(explicit):
        raise TrainingDataError("upper_bound_val was given without X_val, y_val and y_err_val.")
    if all(explicit) and (upper_bound is None) != (upper_bound_val is None):
        raise TrainingDataError(
            "give upper_bound and upper_bound_val together (or neither) with an explicit "
            "validation set; training and validation losses must use the same likelihood."
        )
    bound = _check_bound(upper_bound, len(X), "training set")
    bound_val = None
    if upper_bound_val is not None:
        assert X_val is not None
        bound_val = _check_bound(upper_bound_val, len(np.asarray(X_val)), "validation set")
    fp_arrays = [X, y, y_err, weight, X_val, y_val, y_err_val, weight_val]
    if bound is not None:  # (the unbounded fingerprint is unchanged from before bounds existed)
        fp_arrays += [np.asarray(b"upper_bound"), bound, bound_val]
    fingerprint = fingerprint_arrays(*fp_arrays)

    if all(explicit):
        assert X_val is not None and y_val is not None and y_err_val is not None
        if weight is not None and weight_val is None:
            raise TrainingDataError("weight was given for training rows but not weight_val.")
        Xv, yv, ev, wv = _check_arrays(X_val, y_val, y_err_val, weight_val, d, "validation set")
        Xt, yt, et, wt = X, y, y_err, weight
        bt, bv = bound, bound_val
    else:
        n = len(X)
        n_val = int(round(config.validation_fraction * n))
        if n_val < 1 or n - n_val < 1:
            raise TrainingDataError(
                f"{n} training rows are too few for a validation fraction of "
                f"{config.validation_fraction}; need at least one row on each side."
            )
        perm = np.random.default_rng([config.seed, 0x5A11D]).permutation(n)
        iv, it = np.sort(perm[:n_val]), np.sort(perm[n_val:])
        Xt, yt, et = X[it], y[it], y_err[it]
        Xv, yv, ev = X[iv], y[iv], y_err[iv]
        wt = None if weight is None else weight[it]
        wv = None if weight is None else weight[iv]
        bt = None if bound is None else bound[it]
        bv = None if bound is None else bound[iv]
    if len(Xt) == 0 or len(Xv) == 0:
        raise TrainingDataError(f"empty training ({len(Xt)}) or validation ({len(Xv)}) set.")

    _warn_above_bound(yt, bt, "training set")
    _warn_above_bound(yv, bv, "validation set")

    std = Standardiser.fit(Xt, yt)
    dev = resolve_device(device)
    train = _tensors(std, Xt, yt, et, wt, dev, bt)
    val = _tensors(std, Xv, yv, ev, wv, dev, bv)
    n_train = len(Xt)

    with torch_threads(config.num_threads), torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        net = HeteroscedasticMLP(d, config.hidden, config.dropout).to(dev)
        manual = _ManualMLP(net)
        # torch's plateau scheduler drives the learning rate of a stand-in optimizer, which
        # the flat Adam reads
        lr_holder = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=config.learning_rate)
        opt = _FlatAdam(list(net.parameters()), config.weight_decay, lr_holder)
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
            lr_holder, mode="min", factor=config.lr_factor, patience=config.lr_patience
        )
        shuffle = torch.Generator(device="cpu").manual_seed(config.seed + 1)
        train_hist: list[float] = []
        val_hist: list[float] = []
        lr_hist: list[float] = []
        best = math.inf
        best_state = copy.deepcopy(net.state_dict())
        best_epoch, stale = 0, 0
        for epoch in range(1, config.max_epochs + 1):
            net.train()
            order = torch.randperm(n_train, generator=shuffle).to(dev)
            # shuffle once per epoch, then contiguous mini-batches (one gather per array and
            # epoch instead of one per array and batch; the same batches)
            Xtr, ytr, etr = (a[order] for a in train[:3])
            wtr, btr = (None if a is None else a[order] for a in train[3:])
            total = torch.zeros((), device=dev)
            for i in range(0, n_train, config.batch_size):
                sl = slice(i, i + config.batch_size)
                loss = manual.step(
                    Xtr[sl],
                    ytr[sl],
                    etr[sl],
                    None if wtr is None else wtr[sl],
                    None if btr is None else btr[sl],
                )
                if config.lr_schedule == "cosine":
                    frac = (epoch - 1 + i / n_train) / config.max_epochs
                    lr_holder.param_groups[0]["lr"] = (
                        config.learning_rate * 0.5 * (1.0 + math.cos(math.pi * frac))
                    )
                opt.step()
                total += loss * (min(i + config.batch_size, n_train) - i)
            train_hist.append(float(total) / n_train)
            val_loss = _evaluate(net, val, 65536)
            val_hist.append(val_loss)
            lr_hist.append(float(lr_holder.param_groups[0]["lr"]))
            if config.lr_schedule == "plateau":
                sched.step(val_loss)
            if not math.isfinite(val_loss):
                logger.warning("epoch %d: validation loss is %s; stopping", epoch, val_loss)
                break
            if val_loss < best:
                best, best_epoch, stale = val_loss, epoch, 0
                best_state = copy.deepcopy(net.state_dict())
            else:
                stale += 1
                if stale >= config.patience:
                    break
            logger.debug("epoch %d train %.5f val %.5f", epoch, train_hist[-1], val_loss)

    seconds = time.perf_counter() - t0
    metrics = {
        "train_loss": train_hist,
        "val_loss": val_hist,
        "learning_rate": lr_hist,
        "best_epoch": best_epoch,
        "best_val_loss": best,
        "epochs_run": len(train_hist),
        "seconds": seconds,
        "n_train": n_train,
        "n_val": len(Xv),
    }
    if bound is not None:
        metrics["n_bounded"] = int(np.isfinite(bound).sum())
    logger.info(
        "trained on %d rows (%d validation): best epoch %d of %d, val loss %.4f, %.1f s",
        n_train, len(Xv), best_epoch, len(train_hist), best, seconds,
    )  # fmt: skip
    return TrainedModel(
        state_dict={k: v.detach().to("cpu").clone() for k, v in best_state.items()},
        feature_names=feature_names,
        standardiser=std,
        config=config,
        metrics=metrics,
        training_fingerprint=fingerprint,
    )
