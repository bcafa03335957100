"""Photometry stage: quality cuts, zero-point, RJCE, pseudo-absolute magnitude, giant cut, colours."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
from distributed import Client

from bigcat import __version__
from bigcat.catalog.healpix import HEALPIX29, pixel_at_order
from bigcat.catalog.store import Catalog
from bigcat.config import Config
from bigcat.photometry import run_photometry
from bigcat.photometry.params import PhotometryParams
from bigcat.schema import QUALITY_BITS
from bigcat.stages.partitions import (
    PartitionsDone,
    finalize_stage_output,
    map_partitions_to_files,
    partition_counts,
)

STAGE = "photometry"


def photometry_kernel(df: pd.DataFrame, params: PhotometryParams) -> pd.DataFrame:
    """Kernel: the photometry columns added to one partition (rows never dropped)."""
    return run_photometry(df, params)


def summarise_photometry(df: pd.DataFrame) -> dict:
    """Row counts of one processed partition: rows, rows with each flag bit, passing, giants,
    and quality giants per order-5 pixel (``giants_by_pixel5``, what stage 1's training cap is
    shared out by, so the sample does not depend on how the sky is partitioned)."""
    flags = df["quality_flags"].to_numpy(dtype=np.int64)
    ok = df["quality_ok"].to_numpy(bool)
    giant = df["is_giant"].to_numpy(bool)
    hp5, n = np.unique(pixel_at_order(df[HEALPIX29].to_numpy()[ok & giant], 5), return_counts=True)
    return {
        "rows": int(len(df)),
        "quality_ok": int(ok.sum()),
        "giants": int(giant.sum()),
        "giants_by_pixel5": {str(p): int(c) for p, c in zip(hp5.tolist(), n.tolist(), strict=True)},
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
    client: Client,
    catalog: Catalog,
    out_root: Path,
    config: Config,
    on_done: PartitionsDone | None = None,
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
        on_done=on_done,
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
            "giants_per_pixel5": totals.pop("giants_by_pixel5"),
        },
    )
    return out, totals


def combine_summaries(summaries: list[dict]) -> dict:
    """Sum per-partition summaries into stage totals."""
    totals: dict = {
        "rows": 0,
        "quality_ok": 0,
        "giants": 0,
        "giants_by_pixel5": {},
        "flags": {},
        **partition_counts(summaries),
    }
    for s in summaries:
        totals["rows"] += s["rows"]
        totals["quality_ok"] += s["quality_ok"]
        totals["giants"] += s["giants"]
        for k, v in s.get("giants_by_pixel5", {}).items():
            totals["giants_by_pixel5"][k] = totals["giants_by_pixel5"].get(k, 0) + v
        for k, v in s["flags"].items():
            totals["flags"][k] = totals["flags"].get(k, 0) + v
    return totals
