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
