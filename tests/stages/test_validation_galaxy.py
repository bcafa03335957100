"""A small run on a validation Galaxy (one bigcat's defaults were not made on): the distances
stay calibrated among giants. The full-size figures are benchmarks/score_distance.py's; this
keeps CI honest about the same property at a size that fits its budget."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow.dataset as ds
import pytest

from bigcat.config import Config, IngestConfig, ProcessConfig, Stage1Config, Stage2Config
from bigcat.pipeline import process_with_client
from bigcat.synthetic import MockParams

pytestmark = pytest.mark.slow

ROWS = 40_000
CONFIG = Config(
    ingest=IngestConfig(nside=8, partition_rows=0),
    process=ProcessConfig(
        default_mock_rows=ROWS, target_task_rows=5_000, analyses=False, report=False
    ),
    mock=MockParams.for_galaxy("longbar", seed=3),
    stage1=Stage1Config(max_epochs=6, patience=2, mc_passes=10, training_cap=10_000),
    stage2=Stage2Config(max_epochs=10, patience=3, mc_passes=10),
)


def test_distances_calibrated_on_the_longbar_galaxy(tmp_path, client):
    run = process_with_client(CONFIG, client, None, tmp_path / "run")
    cols = ["source_id", "phot_g_mean_mag", "distance_pc", "distance_pc_p16", "distance_pc_p84"]
    cat = ds.dataset(run.run_dir / "catalog" / "dataset", format="parquet")
    df = cat.to_table(columns=cols).to_pandas()
    truth = (
        ds.dataset(run.run_dir / "mock" / "truth.parquet", format="parquet")
        .to_table(columns=["source_id", "true_distance_pc"])
        .to_pandas()
    )
    df = df.merge(truth, on="source_id").dropna(subset=["distance_pc"])
    assert len(df) > 5_000
    d_true = df["true_distance_pc"]
    inside = (df["distance_pc_p16"] <= d_true) & (d_true <= df["distance_pc_p84"])
    assert 0.60 <= inside.mean() <= 0.76, inside.mean()
    frac = df["distance_pc"] / d_true - 1.0
    g_bin = pd.cut(df["phot_g_mean_mag"], [-np.inf, 15, 16, 17, np.inf])
    medians = frac.groupby(g_bin, observed=True).median()
    assert (medians.abs() <= 0.08).all(), medians.to_dict()
