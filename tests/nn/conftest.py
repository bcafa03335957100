"""Shared fixtures for the network kernels: a seeded toy heteroscedastic problem and a model
trained on it once per session."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bigcat.nn.fit import TrainConfig, TrainedModel, train_network
from bigcat.nn.model import HeteroscedasticMLP
from bigcat.nn.scaler import Standardiser

TOY_FEATURES = ["x", "noise"]


def toy_problem(n: int, seed: int) -> dict[str, np.ndarray]:
    """y = sin(x) + intrinsic scatter sigma_int(x) (hidden) + measurement error y_err (given)."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-3.0, 3.0, n)
    sigma_int = 0.05 + 0.05 * np.abs(x)
    y_err = rng.uniform(0.02, 0.1, n)
    y = np.sin(x) + rng.normal(size=n) * sigma_int + rng.normal(size=n) * y_err
    X = np.column_stack([x, rng.normal(size=n)])
    return {"X": X, "y": y, "y_err": y_err, "truth": np.sin(x), "sigma_int": sigma_int}


TOY_CONFIG = TrainConfig(batch_size=256, max_epochs=60, patience=8, learning_rate=3e-3, seed=1)


@pytest.fixture(scope="session")
def toy_model() -> TrainedModel:
    d = toy_problem(5000, seed=1)
    return train_network(d["X"], d["y"], d["y_err"], TOY_FEATURES, TOY_CONFIG)


@pytest.fixture(scope="session")
def toy_test() -> dict[str, np.ndarray]:
    return toy_problem(3000, seed=2)


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """The machine is shared: run the network tests on one torch thread (restored after)."""
    from bigcat.nn.device import torch_threads

    with torch_threads(1):
        yield


def _random_model(n_inputs: int, hidden: tuple[int, ...], seed: int) -> TrainedModel:
    """An untrained network with seeded weights and identity standardisation."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = HeteroscedasticMLP(n_inputs, hidden)
    std = Standardiser(np.zeros(n_inputs), np.ones(n_inputs), 0.0, 1.0)
    names = [f"x{i}" for i in range(n_inputs)]
    return TrainedModel(net.state_dict(), names, std, TrainConfig(hidden=hidden))


@pytest.fixture
def random_model():
    """Factory of untrained seeded networks: ``random_model(n_inputs, hidden, seed)``."""
    return _random_model
