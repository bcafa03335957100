from __future__ import annotations

import pytest
import torch

from bigcat.errors import ConfigError
from bigcat.nn.device import default_device, torch_threads
from bigcat.nn.model import HeteroscedasticMLP


def test_shapes_and_architecture():
    net = HeteroscedasticMLP(16)
    value, log_var = net(torch.randn(7, 16))
    assert value.shape == (7,) and log_var.shape == (7,)
    kinds = [type(m).__name__ for m in net.net]
    assert kinds == ["Linear", "ReLU", "Dropout", "Linear", "ReLU", "Dropout", "Linear"]
    assert [(m.in_features, m.out_features) for m in net.linears] == [(16, 80), (80, 80), (80, 2)]
    assert net.net[2].p == pytest.approx(0.2)


def test_dropout_active_only_in_train_mode():
    torch.manual_seed(0)
    net = HeteroscedasticMLP(3, hidden=(40, 40), dropout=0.5)
    x = torch.randn(5, 3)
    net.eval()
    assert torch.equal(net(x)[0], net(x)[0])
    net.train()
    assert not torch.equal(net(x)[0], net(x)[0])


@pytest.mark.parametrize(
    "kwargs", [{"n_inputs": 0}, {"n_inputs": 3, "hidden": ()}, {"n_inputs": 3, "dropout": 1.0}]
)
def test_invalid_arguments(kwargs):
    with pytest.raises(ValueError):
        HeteroscedasticMLP(**kwargs)


def test_device_env_override(monkeypatch):
    monkeypatch.setenv("BIGCAT_DEVICE", "cpu")
    assert default_device() == torch.device("cpu")
    monkeypatch.setenv("BIGCAT_DEVICE", "tpu-please")
    with pytest.raises(ConfigError, match="BIGCAT_DEVICE='tpu-please'"):
        default_device()
    if not torch.cuda.is_available():
        monkeypatch.setenv("BIGCAT_DEVICE", "cuda")
        with pytest.raises(ConfigError, match="CUDA is not available"):
            default_device()
        monkeypatch.delenv("BIGCAT_DEVICE")
        assert default_device() == torch.device("cpu")


def test_torch_threads_restores_setting():
    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with pytest.raises(ConfigError):
        with torch_threads(0):
            pass
