"""The one way a per-partition stage runs: read a partition, apply a kernel, write it atomically.

A stage gives a kernel ``f(df, params) -> df`` and a summariser ``g(df) -> dict`` (both pure,
top-level, picklable). Partitions are grouped into tasks of about ``target_task_rows`` rows
(task key ``<stage>-pix<first pixel>``); each output partition file carries the stage's
fingerprint and its summary in the Parquet metadata, so a re-run skips finished partitions
and still reports their row counts, and never reuses a partition made from other inputs or
settings.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from distributed import Client

from bigcat.catalog.healpix import MAX_ORDER
from bigcat.catalog.ingest import group_pixels
from bigcat.catalog.store import (
    FINGERPRINT_KEY,
    Catalog,
    finalize_catalog,
    partition_path,
    read_table_checked,
    write_table_atomic,
)
from bigcat.stages.tasks import run_tasks

logger = logging.getLogger(__name__)

SUMMARY_KEY = b"bigcat.summary"
Kernel = Callable[[pd.DataFrame, Any], pd.DataFrame]
Summariser = Callable[[pd.DataFrame], dict]


def _finished_summary(path: Path, fingerprint: str) -> dict | None:
    """The stored summary of an output partition made with ``fingerprint``, else None."""
    try:
        meta = pq.read_schema(path).metadata or {}
    except (OSError, pa.ArrowInvalid):
        return None
    if meta.get(FINGERPRINT_KEY, b"").decode() != fingerprint or SUMMARY_KEY not in meta:
        return None
    return json.loads(meta[SUMMARY_KEY])


def process_partition_group(
    pixels: list[tuple[int, int]],
    in_root: str,
    out_root: str,
    kernel: Kernel,
    params: Any,
    summarise: Summariser,
    fingerprint: str,
) -> list[dict]:
    """Task body: the kernel over a group of partitions, each written to its own file.

    Partitions already written with ``fingerprint`` are skipped (their stored summaries are
    returned with ``computed: False``). The others are read, concatenated, passed through the
    kernel in one call (kernels are row-wise, so this equals one call per partition and
    amortises the per-call overhead over small partitions), split back by pixel and written.
    """
    hint = f"It is a partition of the input catalogue {in_root}; rebuild it with `bigcat ingest`."
    results: dict[tuple[int, int], dict] = {}
    todo = []
    for order, pixel in pixels:
        done = _finished_summary(partition_path(out_root, order, pixel), fingerprint)
        if done is not None:
            results[(order, pixel)] = {**done, "computed": False}
        else:
            todo.append((order, pixel))
    if todo:
        tables = [read_table_checked(partition_path(in_root, o, p), rebuild=hint) for o, p in todo]
        frame = pa.concat_tables(tables).to_pandas()
        out = kernel(frame, params)
        if len(out) != len(frame):
            raise RuntimeError(
                f"kernel {kernel.__name__} returned {len(out)} rows for {len(frame)}"
            )
        table = pa.Table.from_pandas(out, preserve_index=False)
        start = 0
        for (order, pixel), t in zip(todo, tables, strict=True):
            n = t.num_rows
            summary = summarise(out.iloc[start : start + n])
            part = table.slice(start, n)
            meta = dict(part.schema.metadata or {})
            meta[SUMMARY_KEY] = json.dumps(summary).encode()
            write_table_atomic(
                part.replace_schema_metadata(meta),
                partition_path(out_root, order, pixel),
                fingerprint,
            )
            results[(order, pixel)] = {**summary, "computed": True}
            start += n
    return [{"order": o, "pixel": p, **results[(o, p)]} for o, p in pixels]


def group_partitions(
    catalog: Catalog, target_rows: int, parts: Sequence[tuple[int, int]] | None = None
) -> list[list[tuple[int, int]]]:
    """Neighbouring partitions (all, or ``parts``) in sky order, grouped into runs of about
    ``target_rows`` rows (footer row counts)."""
    if parts is None:
        parts = catalog.pixels
    # the first order-29 pixel of each partition orders partitions of any order along the sky
    first = {pixel << 2 * (MAX_ORDER - order): (order, pixel) for order, pixel in parts}
    rows = {k: catalog.partition_rows(*op) for k, op in first.items()}
    return [[first[k] for k in group] for group in group_pixels(rows, target_rows)]


def map_partitions_to_files(
    client: Client,
    catalog: Catalog,
    out_root: Path,
    stage: str,
    kernel: Kernel,
    params: Any,
    summarise: Summariser,
    fingerprint: str,
    target_task_rows: int,
) -> list[dict]:
    """Run a per-partition stage over every partition of ``catalog`` into ``out_root``.

    Returns one summary per partition (in pixel order). Completeness markers of an earlier
    catalogue at ``out_root`` are removed first, so a half-finished output is never mistaken
    for a finished one.
    """
    out_root.mkdir(parents=True, exist_ok=True)
    for marker in ("partition_info.csv", "properties", "hats.properties", "bigcat.json"):
        (out_root / marker).unlink(missing_ok=True)
    groups = group_partitions(catalog, target_task_rows)
    tasks = [(f"{stage}-pix{g[0][1]}", (g, str(catalog.root), str(out_root))) for g in groups]
    results = run_tasks(
        client,
        process_partition_group,
        tasks,
        stage,
        kernel=kernel,
        params=params,
        summarise=summarise,
        fingerprint=fingerprint,
    )
    # Plain path comparison (both sides are built from out_root): resolving 12,288 paths
    # took 4 s, serially, in every stage.
    keep = {str(partition_path(out_root, o, p)) for o, p in catalog.pixels}
    for stale in (out_root / "dataset").rglob("Npix=*.parquet"):
        if str(stale) not in keep:
            logger.info("Removing %s: no such partition in the input.", stale)
            stale.unlink()
    return [s for group in results for s in group]


def stage_fingerprint(catalog: Catalog, **parts: Any) -> str:
    """What decides whether a stage's output partition can be reused: its input catalogue,
    bigcat's version and ``parts`` (models, settings, seeds), hashed."""
    from bigcat import __version__

    blob = json.dumps(
        {"input": catalog.fingerprint, "version": __version__, **parts},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def table_fingerprint(table: pd.DataFrame) -> str:
    """Identity of a gathered training table (content hash)."""
    rows = pd.util.hash_pandas_object(table, index=False).to_numpy()
    return hashlib.sha256(rows.tobytes()).hexdigest()[:16]


def partition_counts(summaries: list[dict]) -> dict:
    """How many partitions a stage produced, and how many it computed (not reused)."""
    return {
        "partitions": len(summaries),
        "partitions_computed": sum(int(s.get("computed", True)) for s in summaries),
    }


def finalize_stage_output(
    out_root: Path, summaries: list[dict], properties: dict, parquet_metadata: bool = False
) -> Catalog:
    """Write the HATS metadata of a stage's output catalogue from its partition summaries.

    Intermediate outputs (RUN_DIR/stages/*) skip the optional dataset/_metadata file
    (``parquet_metadata``; see ``finalize_catalog``); the final catalogue writes it.
    """
    return finalize_catalog(
        out_root,
        [(s["order"], s["pixel"]) for s in summaries],
        "bigcat_processed",
        sum(s["rows"] for s in summaries),
        {"kind": "processed", **properties},
        partition_rows={(s["order"], s["pixel"]): s["rows"] for s in summaries},
        parquet_metadata=parquet_metadata,
    )
