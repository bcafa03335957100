"""The one way a per-partition stage runs: read a partition, apply a kernel, write it atomically.

A stage gives a kernel ``f(df, params) -> df`` and a summariser ``g(df) -> dict`` (both pure,
top-level, picklable; the kernel row-wise, the summary additive: counts and sums). Partitions
are grouped into tasks of about ``target_task_rows`` rows (task key ``<stage>-pix<first
pixel>``); within a task the kernel sees at most that many rows per call, small partitions
together and a large partition in pieces, so a worker's memory does not grow with the size of
a partition. Each output partition file carries the stage's fingerprint and its summary in the
Parquet metadata, so a re-run skips finished partitions and still reports their row counts, and
never reuses a partition made from other inputs or settings.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from distributed import Client

from bigcat.atomic import (
    FSYNC,
    disk_full_as_error,
    read_json_key,
    replace_directory,
    replace_file,
    temporary_path,
)
from bigcat.catalog.store import (
    BIGCAT_PROPERTIES,
    FINGERPRINT_KEY,
    ROW_GROUP_ROWS,
    Catalog,
    check_file_record,
    file_record,
    finalize_catalog,
    iter_table_pieces,
    parquet_write_options,
    partition_path,
    with_fingerprint,
    write_table_atomic,
)
from bigcat.stages.ingest import group_in_sky_order
from bigcat.stages.tasks import run_tasks

logger = logging.getLogger(__name__)

SUMMARY_KEY = b"bigcat.summary"
Kernel = Callable[[pd.DataFrame, Any], pd.DataFrame]
Summariser = Callable[[pd.DataFrame], dict]
#: Callback of a stage's finished partitions (``map_partitions_to_files(on_done=...)``).
PartitionsDone = Callable[[list[dict]], None]


def _finished_summary(path: Path, fingerprint: str) -> dict | None:
    """The stored summary of an output partition made with ``fingerprint``, else None.

    Read from the file's key-value metadata (the summary is added when the file is closed,
    after its last row group, so it is not part of the Arrow schema's metadata).
    """
    try:
        meta = pq.read_metadata(path).metadata or {}
    except (OSError, pa.ArrowException):
        return None
    if meta.get(FINGERPRINT_KEY, b"").decode() != fingerprint or SUMMARY_KEY not in meta:
        return None
    return json.loads(meta[SUMMARY_KEY])


def reusable_partition(
    path: Path, fingerprint: str, record: dict | None
) -> tuple[dict | None, dict | None, str | None]:
    """Whether an existing output partition may be reused: ``(summary, file record, why not)``.

    Reused when its footer is readable, its fingerprint is the current one and it matches the
    record written with it (rows, bytes, sha256; from the catalogue's ``bigcat.json``); a file
    without a record (its run was interrupted before the catalogue was finalised) is trusted
    on its footer and recorded now. ``why not`` says what is wrong with a damaged file (None
    for a file that is absent or simply made with other inputs or settings).
    """
    if not path.exists():
        return None, None, None
    summary = _finished_summary(path, fingerprint)
    if summary is None:
        problem = check_file_record(path, None)  # footer unreadable: truncated or corrupted
        return None, None, problem
    problem = check_file_record(path, record)
    if problem is not None:
        return None, None, problem
    return summary, dict(record) if record else file_record(path, summary.get("rows", 0)), None


def merge_summaries(parts: Sequence[dict]) -> dict:
    """Add up the summaries of pieces of one partition: numbers are summed, lists element by
    element, dicts key by key (summarisers return counts and sums only)."""

    def add(a: Any, b: Any) -> Any:
        if isinstance(a, dict):  # keys of either (counts per sky pixel differ between pieces)
            return {k: add(a[k], b[k]) if k in a and k in b else a.get(k, b.get(k)) for k in a | b}
        if isinstance(a, list):
            return [add(x, y) for x, y in zip(a, b, strict=True)]
        return a + b

    out = parts[0]
    for part in parts[1:]:
        out = add(out, part)
    return out


class _PartitionWriter:
    """One output partition written piece by piece to a temporary file, renamed into place
    (with its fingerprint and summary in the file metadata) after the last piece."""

    def __init__(self, path: Path, fingerprint: str) -> None:
        self.path = path
        self.fingerprint = fingerprint
        self.tmp = temporary_path(path)
        self.writer: pq.ParquetWriter | None = None
        self.summaries: list[dict] = []

    def write(self, part: pa.Table, summary: dict) -> None:
        if self.writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            schema = with_fingerprint(part.schema, self.fingerprint)
            with disk_full_as_error(self.path):
                self.writer = pq.ParquetWriter(self.tmp, schema, **parquet_write_options(schema))
        if not part.schema.equals(self.writer.schema, check_metadata=False):
            # a piece whose column is all null has Arrow type null; the file keeps the first's
            part = part.cast(self.writer.schema)
        with disk_full_as_error(self.path):
            self.writer.write_table(part, row_group_size=ROW_GROUP_ROWS)
        self.summaries.append(summary)

    def close(self) -> tuple[dict, dict]:
        """Finish the file and rename it into place: ``(summary, file record)``."""
        assert self.writer is not None
        summary = merge_summaries(self.summaries)
        try:
            self.writer.add_key_value_metadata({SUMMARY_KEY: json.dumps(summary).encode()})
            with disk_full_as_error(self.path):
                self.writer.close()
            record = file_record(self.tmp, summary.get("rows", 0))
            replace_file(self.tmp, self.path, fsync=FSYNC)
        finally:
            self.tmp.unlink(missing_ok=True)
        return summary, record

    def abort(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.tmp.unlink(missing_ok=True)


def process_partition_group(
    pixels: list[tuple[int, int]],
    in_root: str,
    out_root: str,
    records: dict[str, dict] | None = None,
    *,
    kernel: Kernel,
    params: Any,
    summarise: Summariser,
    fingerprint: str,
    chunk_rows: int = 60_000,
) -> list[dict]:
    """Task body: the kernel over a group of partitions, each written to its own file.

    Partitions already written with ``fingerprint`` and whole (:func:`reusable_partition`,
    against ``records``: ``"order/pixel"`` -> the file record from the last finalised
    output) are skipped (their stored summaries are returned with ``computed: False``); a
    damaged one is recomputed and its summary says why (``repaired``). Each summary carries
    its file's record (``file``). The others are read one at a time, row group by row
    group, in pieces of at most ``chunk_rows`` rows
    (:func:`bigcat.catalog.store.iter_table_pieces`), and consecutive pieces (of one or
    several partitions) go through the kernel together, at most ``chunk_rows`` rows per call.
    Kernels are row-wise, so this equals one call per partition; it amortises the per-call
    overhead over small partitions and bounds a worker's memory whatever a partition's size (a
    dense bulge partition is read and processed in pieces, each appended to its output file as
    row groups).
    """
    hint = f"It is a partition of the input catalogue {in_root}; rebuild it with `bigcat ingest`."
    results: dict[tuple[int, int], dict] = {}
    todo = []
    records = records or {}
    repaired: dict[tuple[int, int], str] = {}
    for order, pixel in pixels:
        path = partition_path(out_root, order, pixel)
        done, record, problem = reusable_partition(
            path, fingerprint, records.get(f"{order}/{pixel}")
        )
        if done is not None:
            results[(order, pixel)] = {**done, "computed": False, "file": record}
        else:
            if problem is not None:
                repaired[(order, pixel)] = f"{path}: {problem}"
            todo.append((order, pixel))
    chunk_rows = max(int(chunk_rows), 1)
    writers: dict[tuple[int, int], _PartitionWriter] = {}
    # (partition, piece, first piece, last piece)
    batch: list[tuple[tuple[int, int], pa.Table, bool, bool]] = []

    def flush() -> None:
        frame = pa.concat_tables([piece for _, piece, _, _ in batch]).to_pandas()
        out = kernel(frame, params)
        if len(out) != len(frame):
            raise RuntimeError(
                f"kernel {kernel.__name__} returned {len(out)} rows for {len(frame)}"
            )
        table = pa.Table.from_pandas(out, preserve_index=False)
        start = 0
        for key, piece, first, last in batch:
            n = piece.num_rows
            part, summary = table.slice(start, n), summarise(out.iloc[start : start + n])
            start += n
            if first and last:  # a whole partition (the usual case): one write
                meta = dict(part.schema.metadata or {})
                meta[SUMMARY_KEY] = json.dumps(summary).encode()
                path = partition_path(out_root, *key)
                record = write_table_atomic(part.replace_schema_metadata(meta), path, fingerprint)
                results[key] = {**summary, "computed": True, "file": record}
                continue
            if key not in writers:
                writers[key] = _PartitionWriter(partition_path(out_root, *key), fingerprint)
            writers[key].write(part, summary)
            if last:
                summary, record = writers.pop(key).close()
                results[key] = {**summary, "computed": True, "file": record}
        batch.clear()

    try:
        rows = 0
        for order, pixel in todo:
            path = partition_path(in_root, order, pixel)
            for piece, first, last in iter_table_pieces(path, chunk_rows, rebuild=hint):
                if batch and rows + piece.num_rows > chunk_rows:
                    flush()
                    rows = 0
                batch.append(((order, pixel), piece, first, last))
                rows += piece.num_rows
        if batch:
            flush()
    finally:
        for writer in writers.values():  # only after an error: partitions left unfinished
            writer.abort()
    for key, why in repaired.items():
        results[key]["repaired"] = why
    return [{"order": o, "pixel": p, **results[(o, p)]} for o, p in pixels]


def group_partitions(
    catalog: Catalog, target_rows: int, parts: Sequence[tuple[int, int]] | None = None
) -> list[list[tuple[int, int]]]:
    """Neighbouring partitions (all, or ``parts``) in sky order, grouped into runs of about
    ``target_rows`` rows (footer row counts)."""
    if parts is None:
        parts = catalog.pixels
    return group_in_sky_order({op: catalog.partition_rows(*op) for op in parts}, target_rows)


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
    on_done: PartitionsDone | None = None,
) -> list[dict]:
    """Run a per-partition stage over every partition of ``catalog`` into ``out_root``.

    Returns one summary per partition (in pixel order). Where to write
    (:func:`stage_write_root`): a finished output made with other inputs or settings stays
    whole at ``out_root`` until the new one is complete; the new one is written beside it and
    :func:`finalize_stage_output` swaps it in. Otherwise (no finished output, or the same
    fingerprint: a resumed or repeated run) partitions are written or reused in place, after
    the completeness markers are removed, so a half-finished output is never mistaken for a
    finished one. ``on_done``, if given, is called once before any task runs with the
    stage's partitions (``{"order", "pixel", "planned": True}`` each), then with the
    summaries of each task's partitions as the task finishes (reused ones included).
    """
    root = stage_write_root(out_root, fingerprint)
    records = recorded_files(root)
    for marker in ("partition_info.csv", "properties", "hats.properties", BIGCAT_PROPERTIES):
        (root / marker).unlink(missing_ok=True)
    groups = group_partitions(catalog, target_task_rows)

    def _group_records(group: list[tuple[int, int]]) -> dict[str, dict]:
        return {k: records[k] for o, p in group if (k := f"{o}/{p}") in records}

    tasks = [
        (f"{stage}-pix{g[0][1]}", (g, str(catalog.root), str(root), _group_records(g)))
        for g in groups
    ]
    if on_done is not None:
        on_done([{"order": o, "pixel": p, "planned": True} for g in groups for o, p in g])
    results = run_tasks(
        client,
        process_partition_group,
        tasks,
        stage,
        kernel=kernel,
        params=params,
        summarise=summarise,
        fingerprint=fingerprint,
        chunk_rows=target_task_rows,
        on_done=on_done,
        writes_files=True,
    )
    summaries = [s for group in results for s in group]
    for s in summaries:
        why = s.pop("repaired", None)
        if why:
            logger.warning("%s; recomputed it (stage %s).", why, stage)
    # Plain path comparison (both sides are built from out_root): resolving 12,288 paths
    # took 4 s, serially, in every stage.
    keep = {str(partition_path(root, o, p)) for o, p in catalog.pixels}
    for stale in (root / "dataset").rglob("Npix=*.parquet"):
        if str(stale) not in keep:
            logger.info("Removing %s: no such partition in the input.", stale)
            stale.unlink()
    return summaries


def next_root(out_root: Path) -> Path:
    """Where a stage writes its new output while a finished one made with other inputs or
    settings stays whole at ``out_root`` (hidden; kept across interruptions, so a re-run
    resumes into it; not a temporary)."""
    return out_root.with_name(f".{out_root.name}.next")


def finished_fingerprint(root: Path) -> str | None:
    """The fingerprint of the stage output finalised at ``root`` (None if none is)."""
    return read_json_key(Path(root) / BIGCAT_PROPERTIES, "fingerprint", str)


def stage_write_root(out_root: Path, fingerprint: str) -> Path:
    """The directory a stage with ``fingerprint`` writes its partitions to (created).

    ``out_root`` itself unless it holds a finished output with another fingerprint; then
    :func:`next_root`, and that finished output is only replaced when the new one is complete
    (:func:`finalize_stage_output`). A ``next`` directory left by an interrupted run whose
    settings were then changed back is removed.
    """
    old = finished_fingerprint(out_root)
    nxt = next_root(out_root)
    if old is not None and old != fingerprint:
        nxt.mkdir(parents=True, exist_ok=True)
        return nxt
    if nxt.exists():
        logger.info("Removing %s: the output of an unfinished run with other settings.", nxt)
        shutil.rmtree(nxt)
    out_root.mkdir(parents=True, exist_ok=True)
    return out_root


def recorded_files(root: Path) -> dict[str, dict]:
    """The file records (``"order/pixel"`` -> rows, bytes, sha256) of the catalogue last
    finalised at ``root`` (empty if none, or unreadable)."""
    return read_json_key(Path(root) / BIGCAT_PROPERTIES, "partition_files", dict) or {}


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
    (``parquet_metadata``; see ``finalize_catalog``); the final catalogue writes it. A new
    output written beside a finished one (:func:`stage_write_root`) is finalised there and
    then replaces it in one directory swap (:func:`bigcat.atomic.replace_directory`).
    """
    nxt = next_root(out_root)
    root = nxt if nxt.exists() else out_root
    catalog = finalize_catalog(
        root,
        [(s["order"], s["pixel"]) for s in summaries],
        "bigcat_processed",
        sum(s["rows"] for s in summaries),
        {"kind": "processed", **properties},
        partition_rows={(s["order"], s["pixel"]): s["rows"] for s in summaries},
        parquet_metadata=parquet_metadata,
        partition_files={(s["order"], s["pixel"]): s.get("file") or {} for s in summaries},
    )
    if root == out_root:
        return catalog
    replace_directory(nxt, out_root)
    logger.info("%s: replaced by the new output (other inputs or settings).", out_root)
    return Catalog.open(out_root)
