"""Neural-network kernels: the heteroscedastic MLP, its loss, training, batched Monte-Carlo
dropout prediction and checkpoints (Fallows & Sanders Section 2, Appendix A2).

Pure numpy/torch functions; the Dask stages in ``bigcat.stages`` map them over partitions.
"""

from __future__ import annotations

from bigcat.nn.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from bigcat.nn.device import default_device, torch_threads
from bigcat.nn.fit import TrainConfig, TrainedModel, TrainingDataError, train_network
from bigcat.nn.loss import heteroscedastic_loss
from bigcat.nn.model import HeteroscedasticMLP
from bigcat.nn.predict import (
    McPrediction,
    mc_dropout_predict,
    mc_dropout_predict_per_row_masks,
    predict_flops,
)
from bigcat.nn.scaler import Standardiser

__all__ = [
    "CheckpointError",
    "HeteroscedasticMLP",
    "McPrediction",
    "Standardiser",
    "TrainConfig",
    "TrainedModel",
    "TrainingDataError",
    "default_device",
    "heteroscedastic_loss",
    "load_checkpoint",
    "mc_dropout_predict",
    "mc_dropout_predict_per_row_masks",
    "predict_flops",
    "save_checkpoint",
    "torch_threads",
    "train_network",
]
