from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from bigcat.errors import BigcatError
from bigcat.nn.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from bigcat.nn.predict import mc_dropout_predict


@pytest.fixture
def saved(toy_model, tmp_path):
    base = tmp_path / "models" / "stage1-fold3"
    save_checkpoint(toy_model, base, extra={"stage": "parallax", "fold": 3})
    return base


def test_round_trip_identical_predictions(toy_model, toy_test, saved):
    loaded = load_checkpoint(saved, expected_features=["x", "noise"])
    assert loaded.feature_names == toy_model.feature_names
    assert loaded.standardiser == toy_model.standardiser
    assert loaded.config == toy_model.config
    assert loaded.training_fingerprint == toy_model.training_fingerprint
    assert loaded.metrics["best_epoch"] == toy_model.metrics["best_epoch"]
    a = mc_dropout_predict(toy_model, toy_test["X"][:200], n_passes=20, seed=4)
    b = mc_dropout_predict(loaded, toy_test["X"][:200], n_passes=20, seed=4)
    np.testing.assert_array_equal(a.value, b.value)
    np.testing.assert_array_equal(a.sigma_total, b.sigma_total)


def test_sidecar_contents_and_no_temp_files(saved):
    meta = json.loads(saved.with_suffix(".json").read_text())
    assert meta["feature_names"] == ["x", "noise"]
    assert meta["extra"] == {"stage": "parallax", "fold": 3}
    assert set(meta["versions"]) == {"torch", "numpy", "bigcat"}
    assert len(meta["weights_sha256"]) == 64
    assert sorted(p.name for p in saved.parent.iterdir()) == [
        "stage1-fold3.json",
        "stage1-fold3.pt",
    ]
    # suffix given or not, the same pair is loaded
    assert load_checkpoint(saved.with_suffix(".pt")).feature_names == ["x", "noise"]


def test_loads_with_weights_only(saved, monkeypatch):
    calls = []
    real = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs.get("weights_only"))
        return real(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    load_checkpoint(saved)
    assert calls == [True]


def test_pickled_code_refused(saved):
    # a .pt holding an arbitrary object, with a matching hash in the sidecar: still refused
    pt, sidecar = saved.with_suffix(".pt"), saved.with_suffix(".json")
    torch.save({"net.0.weight": torch.zeros(1), "payload": np.dtype("float64")}, pt)
    import hashlib

    meta = json.loads(sidecar.read_text())
    meta["weights_sha256"] = hashlib.sha256(pt.read_bytes()).hexdigest()
    sidecar.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="cannot load the weights"):
        load_checkpoint(saved)


def test_tampered_weights_detected(saved):
    pt = saved.with_suffix(".pt")
    data = bytearray(pt.read_bytes())
    data[-100] ^= 0xFF
    pt.write_bytes(bytes(data))
    with pytest.raises(
        CheckpointError, match=r"stage1-fold3\.pt: sha256 .*retrain it with `bigcat train`"
    ):
        load_checkpoint(saved)


def test_feature_mismatch_names_features(saved):
    with pytest.raises(
        CheckpointError, match=r"missing from the data: noise.*not known to the model: colour"
    ):
        load_checkpoint(saved, expected_features=["x", "colour"])
    with pytest.raises(CheckpointError, match=r"another order: noise \(model position 1, data 0\)"):
        load_checkpoint(saved, expected_features=["noise", "x"])
    with pytest.raises(CheckpointError, match=r"df\[model.feature_names\]"):
        load_checkpoint(saved, expected_features=["x"])


def test_missing_files(saved, tmp_path):
    with pytest.raises(CheckpointError, match="nothere.json: model file not found"):
        load_checkpoint(tmp_path / "nothere")
    saved.with_suffix(".pt").unlink()
    with pytest.raises(CheckpointError, match=r"stage1-fold3\.pt: model file not found"):
        load_checkpoint(saved)
    assert issubclass(CheckpointError, BigcatError)


def test_wrong_architecture_detected(saved):
    sidecar = saved.with_suffix(".json")
    meta = json.loads(sidecar.read_text())
    meta["config"]["hidden"] = [40, 40]
    sidecar.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="do not fit the stored architecture"):
        load_checkpoint(saved)
