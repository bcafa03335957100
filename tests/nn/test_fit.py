from __future__ import annotations

import numpy as np
import pytest
import torch

from bigcat.errors import ConfigError
from bigcat.nn.fit import TrainConfig, TrainingDataError, fingerprint_arrays, train_network

from .conftest import TOY_FEATURES, toy_problem

FAST = TrainConfig(hidden=(16, 16), batch_size=128, max_epochs=4, patience=2, seed=3)


@pytest.fixture(scope="module")
def small():
    return toy_problem(600, seed=5)


def test_config_defaults_are_the_paper():
    c = TrainConfig()
    assert c.hidden == (80, 80) and c.dropout == 0.2 and c.validation_fraction == 0.15
    assert TrainConfig.from_dict(c.to_dict()) == c


@pytest.mark.parametrize(
    ("field", "value"),
    [("dropout", 1.0), ("lr_factor", 1.5), ("validation_fraction", 0.0), ("batch_size", 0)],
)
def test_config_validation(field, value):
    with pytest.raises(ConfigError, match=f"train.{field}"):
        TrainConfig(**{field: value})


def test_config_unknown_key_suggests():
    with pytest.raises(ConfigError, match="Did you mean 'learning_rate'"):
        TrainConfig.from_dict({"learning_rat": 0.1})


def test_same_seed_identical_weights_different_seed_differs(small):
    args = (small["X"], small["y"], small["y_err"], TOY_FEATURES)
    a = train_network(*args, FAST)
    b = train_network(*args, FAST)
    c = train_network(*args, TrainConfig(**{**FAST.to_dict(), "seed": 4, "hidden": (16, 16)}))
    assert a.state_dict.keys() == b.state_dict.keys()
    assert all(torch.equal(a.state_dict[k], b.state_dict[k]) for k in a.state_dict)
    assert not all(torch.equal(a.state_dict[k], c.state_dict[k]) for k in a.state_dict)
    assert a.metrics["val_loss"] == b.metrics["val_loss"]
    assert all(v.device.type == "cpu" for v in a.state_dict.values())


def test_global_rng_untouched(small):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    train_network(small["X"], small["y"], small["y_err"], TOY_FEATURES, FAST)
    assert torch.equal(torch.rand(3), expected)


def test_metrics_split_and_fingerprint(small):
    m = train_network(small["X"], small["y"], small["y_err"], TOY_FEATURES, FAST)
    met = m.metrics
    assert met["n_val"] == 90 and met["n_train"] == 510
    assert met["epochs_run"] == len(met["train_loss"]) == len(met["val_loss"]) <= 4
    assert met["best_val_loss"] == min(met["val_loss"])
    assert met["val_loss"][met["best_epoch"] - 1] == met["best_val_loss"]
    assert m.training_fingerprint == fingerprint_arrays(
        small["X"], small["y"], small["y_err"], None, None, None, None, None
    )
    assert len(m.training_fingerprint) == 16
    # the standardiser is fitted on training rows only: not the full-sample mean
    assert not np.allclose(m.standardiser.feature_mean, small["X"].mean(axis=0), atol=1e-12)


def test_explicit_validation_set_and_standardiser(small):
    X, y, e = small["X"], small["y"], small["y_err"]
    m = train_network(
        X[:500], y[:500], e[:500], TOY_FEATURES, FAST, X_val=X[500:], y_val=y[500:],
        y_err_val=e[500:],
    )  # fmt: skip
    assert m.metrics["n_train"] == 500 and m.metrics["n_val"] == 100
    np.testing.assert_allclose(m.standardiser.feature_mean, X[:500].mean(axis=0))
    assert m.standardiser.target_std == pytest.approx(y[:500].std())


def test_best_weights_restored():
    # re-evaluating the returned weights on the same validation rows gives the best loss
    d = toy_problem(400, seed=9)
    cfg = TrainConfig(hidden=(16, 16), batch_size=32, max_epochs=12, patience=3, seed=0)
    m = train_network(d["X"], d["y"], d["y_err"], TOY_FEATURES, cfg)
    net = m.build_module()
    from bigcat.nn.fit import _evaluate, _tensors  # noqa: PLC0415

    rng = np.random.default_rng([cfg.seed, 0x5A11D]).permutation(400)
    iv = np.sort(rng[:60])
    val = _tensors(
        m.standardiser, d["X"][iv], d["y"][iv], d["y_err"][iv], None, torch.device("cpu")
    )
    assert _evaluate(net, val, 1000) == pytest.approx(m.metrics["best_val_loss"], rel=1e-5)


def test_weighted_training_runs_and_checks_weight(small):
    w = np.abs(small["y"]) + 0.5
    m = train_network(small["X"], small["y"], small["y_err"], TOY_FEATURES, FAST, weight=w)
    assert m.metrics["epochs_run"] >= 1
    with pytest.raises(TrainingDataError, match="weight"):
        train_network(small["X"], small["y"], small["y_err"], TOY_FEATURES, FAST, weight=-w)


def test_non_finite_rows_rejected_with_count(small):
    X = small["X"].copy()
    y = small["y"].copy()
    X[3, 1] = np.nan
    y[10] = np.inf
    with pytest.raises(ValueError, match="2 of 600 rows have non-finite"):
        train_network(X, y, small["y_err"], TOY_FEATURES, FAST)


def test_shape_errors(small):
    with pytest.raises(TrainingDataError, match=r"expected \(n, 3\)"):
        train_network(small["X"], small["y"], small["y_err"], ["a", "b", "c"], FAST)
    with pytest.raises(TrainingDataError, match="y_err has shape"):
        train_network(small["X"], small["y"], small["y_err"][:5], TOY_FEATURES, FAST)
    with pytest.raises(TrainingDataError, match="too few"):
        train_network(small["X"][:3], small["y"][:3], small["y_err"][:3], TOY_FEATURES, FAST)
    with pytest.raises(TrainingDataError, match="X_val, y_val and y_err_val"):
        train_network(small["X"], small["y"], small["y_err"], TOY_FEATURES, FAST, X_val=small["X"])


# --- optional per-row upper bound (selection on the noisy target) -----------------------------


def test_all_unbounded_rows_train_exactly_like_no_bound(small):
    # non-finite bounds mean "no bound": same weights and losses, but a different fingerprint
    args = (small["X"], small["y"], small["y_err"], TOY_FEATURES, FAST)
    plain = train_network(*args)
    bound = np.full(len(small["y"]), np.nan)
    bound[::3] = np.inf
    free = train_network(*args, upper_bound=bound)
    assert all(torch.equal(plain.state_dict[k], free.state_dict[k]) for k in plain.state_dict)
    assert free.metrics["val_loss"] == plain.metrics["val_loss"]
    assert free.metrics["n_bounded"] == 0 and "n_bounded" not in plain.metrics
    assert free.training_fingerprint != plain.training_fingerprint
    # NaN and +inf are the same "no bound", so they fingerprint the same
    again = train_network(*args, upper_bound=np.full(len(small["y"]), np.inf))
    assert again.training_fingerprint == free.training_fingerprint


def test_bound_changes_training_and_fingerprint(small):
    args = (small["X"], small["y"], small["y_err"], TOY_FEATURES, FAST)
    b1 = small["y"] + 0.05
    m1 = train_network(*args, upper_bound=b1)
    m2 = train_network(*args, upper_bound=b1 + 0.01)
    plain = train_network(*args)
    assert m1.metrics["n_bounded"] == len(b1)
    assert len({m1.training_fingerprint, m2.training_fingerprint, plain.training_fingerprint}) == 3
    assert m1.metrics["val_loss"] != plain.metrics["val_loss"]
    assert train_network(*args, upper_bound=b1).training_fingerprint == m1.training_fingerprint


def test_bound_follows_the_seeded_split_and_target_standardisation():
    # the best validation loss is reproduced by re-evaluating the returned weights on the
    # validation rows with their own bounds, standardised like the target
    d = toy_problem(400, seed=9)
    bound = d["y"] + np.random.default_rng(0).uniform(0.01, 0.3, 400)
    bound[::7] = np.nan
    cfg = TrainConfig(hidden=(16, 16), batch_size=32, max_epochs=12, patience=3, seed=0)
    m = train_network(d["X"], d["y"], d["y_err"], TOY_FEATURES, cfg, upper_bound=bound)
    from bigcat.nn.fit import _evaluate, _tensors  # noqa: PLC0415

    perm = np.random.default_rng([cfg.seed, 0x5A11D]).permutation(400)
    iv = np.sort(perm[:60])
    cpu = torch.device("cpu")
    sd, X, y, e = m.standardiser, d["X"][iv], d["y"][iv], d["y_err"][iv]
    bv = np.where(np.isfinite(bound[iv]), bound[iv], np.inf)  # NaN = "no bound" = +inf
    val = _tensors(sd, X, y, e, None, cpu, bv)
    assert val[4] is not None
    np.testing.assert_allclose(val[4].numpy(), (bv - sd.target_mean) / sd.target_std, rtol=1e-6)
    assert np.isposinf(val[4].numpy()[~np.isfinite(bound[iv])]).all()
    net = m.build_module()
    assert _evaluate(net, val, 1000) == pytest.approx(m.metrics["best_val_loss"], rel=1e-5)
    unbounded = _tensors(sd, X, y, e, None, cpu)
    assert _evaluate(net, unbounded, 1000) != pytest.approx(m.metrics["best_val_loss"], rel=1e-5)


def test_bound_with_explicit_validation_set(small):
    X, y, e = small["X"], small["y"], small["y_err"]
    b = y + 0.1
    common = dict(X_val=X[500:], y_val=y[500:], y_err_val=e[500:])
    m = train_network(X[:500], y[:500], e[:500], TOY_FEATURES, FAST, upper_bound=b[:500],
                      upper_bound_val=b[500:], **common)  # fmt: skip
    assert m.metrics["n_train"] == 500 and m.metrics["n_bounded"] == 500
    with pytest.raises(TrainingDataError, match="upper_bound and upper_bound_val together"):
        train_network(X[:500], y[:500], e[:500], TOY_FEATURES, FAST, upper_bound=b[:500], **common)
    with pytest.raises(TrainingDataError, match="upper_bound and upper_bound_val together"):
        train_network(X[:500], y[:500], e[:500], TOY_FEATURES, FAST, upper_bound_val=b[500:],
                      **common)  # fmt: skip
    with pytest.raises(TrainingDataError, match="upper_bound_val was given without"):
        train_network(X, y, e, TOY_FEATURES, FAST, upper_bound=b, upper_bound_val=b)
    with pytest.raises(TrainingDataError, match="upper bound has shape"):
        train_network(X, y, e, TOY_FEATURES, FAST, upper_bound=b[:10])


def test_rows_above_their_bound_are_logged(small, caplog):
    b = small["y"] + 0.1
    b[:5] = small["y"][:5] - 0.1
    with caplog.at_level("WARNING", logger="bigcat.nn.fit"):
        train_network(small["X"], small["y"], small["y_err"], TOY_FEATURES, FAST, upper_bound=b)
    assert "at or above their upper bound" in caplog.text


def truncated_toy(n: int, seed: int, offset: float = 0.25) -> dict[str, np.ndarray]:
    """Truth y = 0.5 x; y_obs = y + N(0, sigma), sigma ~ U(0.1, 1) (also a feature, as the
    parallax error follows the magnitudes); selection y_obs < b = 0.5 x + offset, which removes
    1 - Phi(offset / sigma) of the rows: ~1% at sigma = 0.1, ~40% at sigma = 1, ~28% overall."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-2.0, 2.0, n)
    sigma = rng.uniform(0.1, 1.0, n)
    truth = 0.5 * x
    return {
        "X": np.column_stack([x, sigma]),
        "truth": truth,
        "y_obs": truth + sigma * rng.normal(size=n),
        "sigma": sigma,
        "bound": truth + offset,
    }


def test_upper_bound_removes_selection_bias():
    """Training on y_obs < b biases a plain Gaussian fit low where sigma is large; the
    truncated likelihood removes the bias (checked on held-out TRUE values)."""
    d = truncated_toy(8000, seed=1)
    keep = d["y_obs"] < d["bound"]
    assert 0.2 < 1 - keep.mean() < 0.4
    X, y, e, b = d["X"][keep], d["y_obs"][keep], d["sigma"][keep], d["bound"][keep]
    held = truncated_toy(2000, seed=101)
    noisy = held["sigma"] > 0.6
    cfg = TrainConfig(
        hidden=(32, 32), dropout=0.0, batch_size=256, max_epochs=60, patience=8,
        learning_rate=3e-3, seed=1, num_threads=1,
    )  # fmt: skip

    def median_residual(upper_bound):
        m = train_network(X, y, e, ["x", "sigma"], cfg, upper_bound=upper_bound)
        xs = torch.as_tensor(m.standardiser.transform_features(held["X"]), dtype=torch.float32)
        with torch.no_grad():
            value, _ = m.build_module()(xs)
        r = m.standardiser.inverse_target(value.double().numpy()) - held["truth"]
        return float(np.median(r[noisy])), float(np.median(r))

    plain_noisy, plain_all = median_residual(None)
    fixed_noisy, fixed_all = median_residual(b)
    # (seed 1 on this machine: plain -0.48 / -0.29, bounded +0.01 / +0.01)
    assert plain_noisy < -0.3 and plain_all < -0.15
    assert abs(fixed_noisy) < abs(plain_noisy) / 3
    assert abs(fixed_all) < 0.1


@pytest.mark.parametrize("bounded, weighted", [(False, False), (True, False), (False, True)])
def test_manual_gradients_equal_autograd(bounded, weighted):
    """The written-out backward pass gives autograd's gradients of the loss (same masks)."""
    import torch

    from bigcat.nn.fit import _ManualMLP
    from bigcat.nn.loss import heteroscedastic_loss
    from bigcat.nn.model import HeteroscedasticMLP

    torch.manual_seed(3)
    net = HeteroscedasticMLP(5, (7, 6), dropout=0.2)
    X = torch.randn(64, 5)
    y = torch.randn(64)
    e = torch.rand(64) * 0.5
    w = torch.rand(64) + 0.5 if weighted else None
    b = None
    if bounded:
        b = y + torch.rand(64)
        b[::3] = float("inf")
    state = torch.random.get_rng_state()
    loss = _ManualMLP(net).step(X, y, e, w, b)
    manual = [p.grad.clone() for p in net.parameters()]
    torch.random.set_rng_state(state)  # the same dropout masks for autograd
    net.zero_grad(set_to_none=True)
    net.train()
    value, log_var = net(X)
    ref = heteroscedastic_loss(y, e, value, log_var, w, b)
    ref.backward()
    assert float(loss) == pytest.approx(float(ref.detach()), rel=1e-5)
    for got, p in zip(manual, net.parameters(), strict=True):
        torch.testing.assert_close(got, p.grad, rtol=1e-4, atol=1e-6)
