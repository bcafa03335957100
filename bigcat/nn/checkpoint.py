"""Saving and loading trained networks: ``<name>.pt`` (weights) plus ``<name>.json`` (sidecar).

The ``.pt`` file holds only the state dict (loaded with ``torch.load(weights_only=True)``, so a
checkpoint cannot run code). The JSON sidecar holds everything needed to apply and audit it:
feature names in order, standardiser, training config, training fingerprint, metrics, library
versions, the sha256 of the ``.pt`` file and any ``extra`` provenance. Both files are written
atomically (temporary file in the same directory, then ``os.replace``).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bigcat.atomic import file_sha256, write_json_atomic, write_with
from bigcat.errors import BigcatError
from bigcat.nn.fit import TrainConfig, TrainedModel
from bigcat.nn.scaler import Standardiser

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
RETRAIN = "retrain it with `bigcat train`"


class CheckpointError(BigcatError):
    """A model checkpoint is missing, corrupted or does not fit the data it is applied to."""


def _sha256(path: Path) -> str:
    return file_sha256(path)


def _versions() -> dict[str, str]:
    from bigcat import __version__ as bigcat_version

    return {"torch": torch.__version__, "numpy": np.__version__, "bigcat": bigcat_version}


def save_checkpoint(model: TrainedModel, path: Path, extra: dict[str, Any] | None = None) -> Path:
    """Write ``path.with_suffix('.pt')`` and ``path.with_suffix('.json')`` atomically.

    Parameters
    ----------
    model : TrainedModel
        The network to store.
    path : pathlib.Path
        Base name; its suffix (if any) is replaced by ``.pt`` / ``.json``.
    extra : dict, optional
        JSON-serialisable provenance (stage, fold, input fingerprints, ...), stored as is.

    Returns
    -------
    pathlib.Path
        The ``.json`` sidecar path.
    """
    path = Path(path)
    pt, sidecar = path.with_suffix(".pt"), path.with_suffix(".json")
    pt.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict.items()}
    write_with(pt, lambda tmp: torch.save(state, tmp))
    meta = {
        "format_version": FORMAT_VERSION,
        "weights_file": pt.name,
        "weights_sha256": _sha256(pt),
        "feature_names": list(model.feature_names),
        "standardiser": model.standardiser.to_dict(),
        "config": model.config.to_dict(),
        "training_fingerprint": model.training_fingerprint,
        "metrics": model.metrics,
        "versions": _versions(),
        "extra": extra or {},
    }
    write_json_atomic(meta, sidecar, indent=1)
    logger.info("saved model %s (+ %s)", pt, sidecar.name)
    return sidecar


def feature_mismatch_message(stored: list[str], expected: list[str], where: str) -> str:
    """Explain how ``expected`` differs from the ``stored`` feature order, and the fix."""
    missing = [f for f in stored if f not in expected]
    extra = [f for f in expected if f not in stored]
    parts = []
    if missing:
        parts.append(f"missing from the data: {', '.join(missing)}")
    if extra:
        parts.append(f"not known to the model: {', '.join(extra)}")
    if not missing and not extra:
        moved = [f"{f} (model position {stored.index(f)}, data {i})"
                 for i, f in enumerate(expected) if stored[i] != f]  # fmt: skip
        parts.append(f"same features in another order: {', '.join(moved)}")
    return (
        f"{where}: the model was trained on features [{', '.join(stored)}] but the data has "
        f"[{', '.join(expected)}]; {'; '.join(parts)}. Pass the columns in the model's order "
        f"(X = df[model.feature_names]) if they are all present, otherwise {RETRAIN} on the "
        f"current feature set."
    )


def load_checkpoint(path: Path, expected_features: list[str] | None = None) -> TrainedModel:
    """Load a model written by :func:`save_checkpoint`, verifying its integrity.

    Parameters
    ----------
    path : pathlib.Path
        Base name, ``.pt`` or ``.json`` path of the checkpoint.
    expected_features : list of str, optional
        Feature columns in the order the caller will supply them; must equal the stored order.

    Returns
    -------
    TrainedModel

    Raises
    ------
    CheckpointError
        When a file is missing or unreadable, the weights' sha256 differs from the sidecar's,
        the weights do not fit the stored architecture, or ``expected_features`` differs from
        the stored feature order (naming the missing, extra or reordered features).
    """
    path = Path(path)
    pt, sidecar = path.with_suffix(".pt"), path.with_suffix(".json")
    for f in (sidecar, pt):
        if not f.is_file():
            raise CheckpointError(
                f"{f}: model file not found; check the models directory or {RETRAIN}."
            )
    try:
        meta = json.loads(sidecar.read_text())
        stored = [str(f) for f in meta["feature_names"]]
        standardiser = Standardiser.from_dict(meta["standardiser"])
        config = TrainConfig.from_dict(meta["config"])
        digest = meta["weights_sha256"]
    except (OSError, ValueError, KeyError, TypeError, BigcatError) as exc:
        raise CheckpointError(f"{sidecar}: unreadable model sidecar ({exc}); {RETRAIN}.") from exc
    actual = _sha256(pt)
    if actual != digest:
        raise CheckpointError(
            f"{pt}: sha256 {actual[:16]}... does not match {digest[:16]}... recorded in "
            f"{sidecar.name}; the weights were modified or belong to another model. Do not use "
            f"it: {RETRAIN}."
        )
    if expected_features is not None and list(expected_features) != stored:
        raise CheckpointError(feature_mismatch_message(stored, list(expected_features), str(pt)))
    try:
        state = torch.load(pt, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt or unsafe files
        raise CheckpointError(f"{pt}: cannot load the weights ({exc}); {RETRAIN}.") from exc
    model = TrainedModel(
        state_dict=state,
        feature_names=stored,
        standardiser=standardiser,
        config=config,
        metrics=meta.get("metrics", {}),
        training_fingerprint=meta.get("training_fingerprint", ""),
    )
    try:
        model.build_module("cpu")
    except (RuntimeError, ValueError) as exc:
        raise CheckpointError(
            f"{pt}: weights do not fit the stored architecture ({exc}); {RETRAIN}."
        ) from exc
    if standardiser.n_features != len(stored):
        raise CheckpointError(
            f"{sidecar}: standardiser has {standardiser.n_features} features but "
            f"{len(stored)} feature names are stored; {RETRAIN}."
        )
    return model
