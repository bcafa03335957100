from __future__ import annotations

import pytest
import torch

from bigcat.errors import ConfigError
from bigcat.nn.device import default_device, torch_threads
from bigcat.nn.model import BitDropout, HeteroscedasticMLP


def test_shapes_and_architecture():
    net = HeteroscedasticMLP(16)
    value, log_var = net(torch.randn(7, 16))
    assert value.shape == (7,) and log_var.shape == (7,)
    kinds = [type(m).__name__ for m in net.net]
    assert kinds == ["Linear", "ReLU", "BitDropout", "Linear", "ReLU", "BitDropout", "Linear"]
    assert all(isinstance(net.net[i], torch.nn.Dropout) for i in (2, 5))
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


@pytest.mark.parametrize("p", [0.2, 0.5, 0.05])
def test_bit_dropout_drops_with_probability_p_and_keeps_the_mean(p):
    torch.manual_seed(1)
    layer = BitDropout(p)
    x = torch.ones(400, 1000)
    y = layer(x)
    dropped = (y == 0).float().mean().item()
    assert dropped == pytest.approx(p, abs=4 * (p * (1 - p) / x.numel()) ** 0.5)
    assert y.mean().item() == pytest.approx(1.0, abs=0.01)
    kept = y[y != 0]
    assert torch.allclose(kept, torch.full_like(kept, kept[0].item()))
    assert kept[0].item() == pytest.approx(1 / (1 - p), rel=1e-4)
    # independent masks across units and calls, reproducible from the seed
    torch.manual_seed(1)
    assert torch.equal(layer(x), y)
    assert not torch.equal(layer(x), y)
    z = layer(torch.ones(3, 5, 7))  # any shape, numel not a multiple of 4
    assert z.shape == (3, 5, 7)
    layer.eval()
    assert torch.equal(layer(x), x)
    assert torch.equal(BitDropout(0.0)(x), x)


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
