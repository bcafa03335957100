"""Photometry stage: quality cuts, zero-point, RJCE, pseudo-absolute magnitude, giant cut, colours."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
from distributed import Client

from bigcat import __version__
from bigcat.catalog.store import Catalog
from bigcat.config import Config
from bigcat.photometry import run_photometry
from bigcat.photometry.params import PhotometryParams
from bigcat.schema import QUALITY_BITS
from bigcat.stages.partitions import (
    finalize_stage_output,
    map_partitions_to_files,
    partition_counts,
)

STAGE = "photometry"


def photometry_kernel(df: pd.DataFrame, params: PhotometryParams) -> pd.DataFrame:
    """Kernel: the photometry columns added to one partition (rows never dropped)."""
    return run_photometry(df, params)


def summarise_photometry(df: pd.DataFrame) -> dict:
    """Row counts of one processed partition: rows, rows with each flag bit, passing, giants."""
    flags = df["quality_flags"].to_numpy(dtype=np.int64)
    return {
        "rows": int(len(df)),
        "quality_ok": int(df["quality_ok"].sum()),
        "giants": int(df["is_giant"].sum()),
        "flags": {name: int(((flags & bit) != 0).sum()) for name, bit in QUALITY_BITS.items()},
    }


def stage_fingerprint(catalog: Catalog, config: Config) -> str:
    """What decides whether an existing output partition may be reused."""
    blob = json.dumps(
        {
            "input": catalog.fingerprint,
            "photometry": config.section_hash("photometry"),
            "version": __version__,
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def run_photometry_stage(
    client: Client, catalog: Catalog, out_root: Path, config: Config
) -> tuple[Catalog, dict]:
    """Run the photometry stage over every partition; returns the output catalogue and totals."""
    fingerprint = stage_fingerprint(catalog, config)
    summaries = map_partitions_to_files(
        client,
        catalog,
        out_root,
        STAGE,
        photometry_kernel,
        config.photometry,
        summarise_photometry,
        fingerprint,
        config.process.target_task_rows,
    )
    totals = combine_summaries(summaries)
    out = finalize_stage_output(
        out_root,
        summaries,
        {
            "fingerprint": fingerprint,
            "input_catalog": str(catalog.root),
            "input_fingerprint": catalog.fingerprint,
            "config": config.to_dict()["photometry"],
            "bigcat_version": __version__,
            "stages": [STAGE],
            "giants_per_partition": {f"{s['order']}/{s['pixel']}": s["giants"] for s in summaries},
        },
    )
    return out, totals


def combine_summaries(summaries: list[dict]) -> dict:
    """Sum per-partition summaries into stage totals."""
    totals: dict = {
        "rows": 0,
        "quality_ok": 0,
        "giants": 0,
        "flags": {},
        **partition_counts(summaries),
    }
    for s in summaries:
        totals["rows"] += s["rows"]
        totals["quality_ok"] += s["quality_ok"]
        totals["giants"] += s["giants"]
        for k, v in s["flags"].items():
            totals["flags"][k] = totals["flags"].get(k, 0) + v
    return totals
