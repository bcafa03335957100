"""`bigcat ingest`: raw Gaia x 2MASS x unWISE tables -> HEALPix catalogue (HATS layout).

Map-reduce, resumable, atomic:

1. **Check** every input's header: required columns present (after the ``[columns]`` mapping)
   and of the right kind. Nothing is written when a check fails.
2. **Split** (one Dask task per input chunk, ``ingest-split-f0000-c00003``): read the chunk,
   rename, cast, validate rows, add ``_healpix_29``, sort by it and write one shard file per
   chunk plus a done-marker with the rows per pixel.
3. **Partition**: one partition per pixel at the ``--nside`` order, or, with
   ``ingest.partition_rows``, HATS adaptive partitions (sparse pixels merged into lower-order
   parents up to that many rows: :func:`bigcat.catalog.healpix.adaptive_partitions`).
4. **Merge** (one task per group of neighbouring partitions, ``ingest-pix1234``): read each
   shard's rows of those partitions (row-group statistics skip the rest), check source_id
   uniqueness, sort, write one file per partition.
5. **Finalise**: source_id uniqueness across pixels, HATS metadata via the hats library, then
   the finished catalogue is renamed into place.

Work happens in ``CATALOG.partial/``: an interrupted run re-run with the same inputs resumes from
its done-markers and finished pixels; a bad input removes it, leaving no partial catalogue.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from distributed import Client

from bigcat import __version__
from bigcat.atomic import write_json_atomic
from bigcat.catalog.healpix import (
    HEALPIX29,
    adaptive_partitions,
    first_index,
    healpix29,
    pixel_at_order,
    pixel_index_range,
)
from bigcat.catalog.readers import (
    ChunkSpec,
    expand_inputs,
    file_format,
    first_non_numeric,
    non_numeric_message,
    plan_chunks,
    read_chunk,
    read_column_kinds,
)
from bigcat.catalog.store import (
    Catalog,
    catalog_problems,
    file_fingerprint,
    file_record,
    finalize_catalog,
    partition_path,
    read_parquet_checked,
    remove_tree,
    write_frame_atomic,
    write_table_atomic,
)
from bigcat.config import Config
from bigcat.errors import CatalogError, InputError, missing_columns_message
from bigcat.runlock import output_lock, staging_dir
from bigcat.schema import OPTIONAL_COLUMNS, OUTPUT_COLUMNS, REQUIRED_COLUMNS, ZEROPOINT_COLUMNS
from bigcat.stages.tasks import run_tasks

logger = logging.getLogger(__name__)

#: Row-group size of the sorted shards: small, so a merge task's pixel-range filter reads
#: little beyond its own rows (row-group statistics on _healpix_29 skip the rest).
SHARD_ROW_GROUP_ROWS = 8_192
#: The most rows one merge task gathers (:func:`merge_group_rows`; a worker holds them twice).
MERGE_MAX_ROWS = 500_000
ROW_ID = "_bigcat_row"  # (file index << 40) | row number: names rows in error messages
_ROW_BITS = 40


@dataclass(frozen=True)
class IngestPlan:
    """What an ingest will read and how (the result of the header checks)."""

    files: list[Path]
    rename: dict[str, str]  # user column -> bigcat column
    read_columns: list[list[str]]  # per file: user columns to read
    missing_optional: list[list[str]]  # per file: bigcat optional/zero-point columns to fill
    chunks: list[ChunkSpec]
    fingerprint: str
    keep: tuple[str, ...] = ()  # extra columns carried unchanged (`bigcat crossmatch`'s)


def _fingerprint_files(files: list[Path], extra: dict) -> str:
    h = hashlib.sha256()
    for f in files:
        st = f.stat()
        h.update(f"{f.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode())
        with open(f, "rb") as fh:
            h.update(fh.read(1 << 16))
    h.update(json.dumps(extra, sort_keys=True).encode())
    return h.hexdigest()[:24]


def extra_columns(
    files: list[Path], kinds_per_file: list[dict[str, str]], contract: set[str]
) -> list[str]:
    """The input columns outside the contract (``contract``: the file's names of the
    contract columns) that every file has, in the first file's order: carried unchanged
    through every stage. A column only some files have is left out with a warning.

    Raises
    ------
    InputError
        For an extra column named like a column bigcat adds (it would be overwritten), or
        starting with ``_`` (bigcat's internal columns).
    """
    first = [c for c in kinds_per_file[0] if c not in contract]
    common = [c for c in first if all(c in k for k in kinds_per_file[1:])]
    partial = sorted(
        {c for k in kinds_per_file for c in k if c not in contract and c not in common}
    )
    if partial:
        logger.warning(
            "extra column(s) %s are not in every input file, so they are not kept; give every "
            "file the same columns to keep them.",
            ", ".join(partial),
        )
    clash = [c for c in common if c in OUTPUT_COLUMNS or c.startswith("_")]
    if clash:
        raise InputError(
            f"{files[0]}: extra input column(s) {', '.join(clash)} have the name of a column "
            "bigcat adds (or start with '_', reserved for bigcat's own); they would be "
            "overwritten. Rename them in the input file (every other extra column is kept "
            "unchanged in the catalogue)."
        )
    return common


def selected_columns(
    files: list[Path],
    kinds_per_file: list[dict[str, str]],
    contract: set[str],
    selection: str | Sequence[str],
) -> list[str]:
    """The extra columns ``[ingest] keep_columns`` selects: ``"all"`` (:func:`extra_columns`),
    ``"none"``, or the names given, which must be extra columns of every file.

    Raises
    ------
    InputError
        Naming the file without a selected column (and the columns it has), or a selected
        name that is a contract column or one bigcat adds.
    """
    if selection == "all":
        return extra_columns(files, kinds_per_file, contract)
    if selection == "none":
        return []
    names = list(dict.fromkeys(selection))
    taken = [c for c in names if c in contract or c in OUTPUT_COLUMNS or c.startswith("_")]
    if taken:
        raise InputError(
            f"[ingest] keep_columns / --keep-columns: {', '.join(taken)} "
            f"{'is' if len(taken) == 1 else 'are'} not an extra column (an input-contract "
            "column, which is always kept, or one bigcat adds). Name only your own columns."
        )
    for path, kinds in zip(files, kinds_per_file, strict=True):
        absent = [c for c in names if c not in kinds]
        if absent:
            own = [c for c in kinds if c not in contract]
            raise InputError(
                f"{path}: no column(s) {', '.join(absent)} selected by [ingest] keep_columns / "
                f"--keep-columns. Its extra columns: {', '.join(own) or 'none'}."
            )
    return names


def plan_ingest(
    inputs: Sequence[str | Path], config: Config, keep: Sequence[str] | None = None
) -> IngestPlan:
    """Check every input's header and plan the chunks. Reads no data.

    ``keep``: extra columns every input must have, carried into the catalogue unchanged;
    None (the default): as ``[ingest] keep_columns`` says (``"all"``: every input column
    outside the contract that every file has, :func:`extra_columns`; ``"none"``; or a list).

    Raises
    ------
    InputError
        Naming the file and every missing or mistyped column, with the fix.
    """
    files = expand_inputs(inputs)
    mapping = dict(config.columns)  # bigcat -> user
    wanted = {
        **REQUIRED_COLUMNS,
        **{k: v[0] for k, v in OPTIONAL_COLUMNS.items()},
        **ZEROPOINT_COLUMNS,
    }
    rename = {mapping.get(c, c): c for c in wanted}
    headers = [read_column_kinds(path) for path in files]
    if keep is None:
        keep = selected_columns(
            files, [k for k, _ in headers], set(rename), config.ingest.keep_columns
        )
    read_columns, missing_optional, chunks = [], [], []
    for i, path in enumerate(files):
        kinds, n_rows = headers[i]
        missing = [c for c in REQUIRED_COLUMNS if mapping.get(c, c) not in kinds]
        if missing:
            raise InputError(missing_columns_message(str(path), missing, kinds, taken=rename))
        for col, kind in wanted.items():
            user = mapping.get(col, col)
            if user not in kinds:
                continue
            have = kinds[user]
            ok = have in ("int", "null") if kind == "int" else have in ("int", "float", "null")
            if not ok and have == "other" and file_format(path) == "csv":
                found = first_non_numeric(path, user)
                if found is not None:
                    want = "an integer" if kind == "int" else "a number"
                    raise InputError(
                        non_numeric_message(path, user, *found, want=f"{want} ({col})")
                    )
            if not ok and not (kind == "int" and have == "bool"):
                raise InputError(
                    f"{path}: column '{user}' has type {have}, but bigcat needs "
                    f"{'an integer' if kind == 'int' else 'a number'} for {col}. Convert the column "
                    "(e.g. strip units or quotes) or map a different column in [columns]."
                )
        absent_keep = [c for c in keep if c not in kinds]
        if absent_keep:
            raise InputError(f"{path}: no column(s) {', '.join(absent_keep)}.")
        read_columns.append(
            [mapping.get(c, c) for c in wanted if mapping.get(c, c) in kinds]
            + [c for c in keep if c not in rename]
        )
        absent = [c for c in wanted if c not in REQUIRED_COLUMNS and mapping.get(c, c) not in kinds]
        missing_zp = [c for c in ZEROPOINT_COLUMNS if c in absent]
        if missing_zp:
            logger.warning(
                "%s: no %s; the parallax zero-point cannot be applied to its rows (flagged).",
                path,
                ", ".join(missing_zp),
            )
        missing_optional.append(absent)
        chunks.extend(plan_chunks(path, i, n_rows, config.ingest.chunk_rows))
    settings = {
        "columns": mapping,
        "nside": config.ingest.nside,
        "partition_rows": config.ingest.partition_rows,
        "version": __version__,
    }
    if keep:
        settings["keep"] = list(keep)
    fingerprint = _fingerprint_files(files, settings)
    return IngestPlan(
        files, rename, read_columns, missing_optional, chunks, fingerprint, tuple(keep)
    )


def prepare_rows(
    df: pd.DataFrame,
    rename: dict[str, str],
    fill: list[str],
    path: str,
    first_row: int,
    file_index: int,
    keep: Sequence[str] = (),
) -> pd.DataFrame:
    """Rename, cast and validate one piece of an input file; add ``_healpix_29`` and the row id.

    Pure: frame in, frame out. Output columns: every contract column (absent optional ones
    filled with their defaults), the ``keep`` columns unchanged, ``_healpix_29`` and
    ``_bigcat_row``.

    Raises
    ------
    InputError
        Naming the file, column and first bad row (1-based data row) with the fix.
    """
    df = df.rename(columns=rename)
    out: dict[str, np.ndarray] = {}
    kinds = {
        **REQUIRED_COLUMNS,
        **{k: v[0] for k, v in OPTIONAL_COLUMNS.items()},
        **ZEROPOINT_COLUMNS,
    }
    for col, kind in kinds.items():
        if col in df.columns:
            values = pd.to_numeric(df[col], errors="coerce")
            if kind == "int":
                bad = values.isna().to_numpy()
                if col == "astrometric_params_solved":
                    values = values.fillna(0)
                elif bad.any():
                    row = first_row + int(np.argmax(bad)) + 1
                    raise InputError(
                        f"{path}: column '{col}' is empty or not an integer at data row {row} "
                        f"(value {df[col].iloc[int(np.argmax(bad))]!r}). Every row needs an "
                        f"integer {col}; fix or drop that row."
                    )
                out[col] = values.to_numpy(dtype=np.int64)
            else:
                raw = df[col]
                if not pd.api.types.is_numeric_dtype(raw):  # text (object or str dtype)
                    bad = values.isna().to_numpy() & raw.notna().to_numpy()
                    if bad.any():
                        i = int(np.argmax(bad))
                        raise InputError(
                            f"{path}: column '{col}' has a non-numeric value {raw.iloc[i]!r} at data "
                            f"row {first_row + i + 1}. Fix the value or leave it empty (NaN)."
                        )
                out[col] = values.to_numpy(dtype=np.float64, na_value=np.nan)
        elif col in fill:
            default = OPTIONAL_COLUMNS[col][1] if col in OPTIONAL_COLUMNS else np.nan
            if kind == "int":
                out[col] = np.zeros(len(df), dtype=np.int64)
            else:
                out[col] = np.full(len(df), default, dtype=np.float64)
    frame = pd.DataFrame(out, index=pd.RangeIndex(len(df)))
    for col in keep:
        frame[col] = df[col].array  # unchanged, nullable and text types included
    ra, dec = frame["ra"].to_numpy(), frame["dec"].to_numpy()
    bad = ~(np.isfinite(ra) & np.isfinite(dec) & (dec >= -90) & (dec <= 90))
    if bad.any():
        i = int(np.argmax(bad))
        raise InputError(
            f"{path}: data row {first_row + i + 1} (source_id {frame['source_id'].iloc[i]}) has no "
            f"valid position (ra={ra[i]}, dec={dec[i]}). Every row needs finite ICRS ra/dec in "
            "degrees with -90 <= dec <= 90; fix or drop that row."
        )
    frame[HEALPIX29] = healpix29(np.mod(ra, 360.0), dec)
    frame[ROW_ID] = (
        (np.int64(file_index) << _ROW_BITS) + first_row + np.arange(len(df), dtype=np.int64)
    )
    return frame


def describe_row(row_id: int, files: list[str]) -> str:
    """'FILE data row N' for a ``_bigcat_row`` value."""
    file_index, row = row_id >> _ROW_BITS, row_id & ((1 << _ROW_BITS) - 1)
    return f"{files[file_index]} data row {row + 1}"


def split_chunk(
    spec: ChunkSpec,
    read_columns: list[str],
    rename: dict[str, str],
    fill: list[str],
    staging: str,
    order: int,
    chunk_rows: int,
    keep: Sequence[str] = (),
) -> dict[int, int]:
    """Map task: one input chunk -> sorted shard file(s) + done-marker. Returns rows per pixel.

    A chunk whose done-marker exists is not read again (resume).
    """
    stage = Path(staging)
    marker = stage / "done" / f"{spec.chunk_id}.json"
    if marker.exists():
        return {int(k): v for k, v in json.loads(marker.read_text())["pixels"].items()}
    counts: dict[int, int] = {}
    shards = []
    ranges: dict[str, list[int]] = {}
    for k, (first, piece) in enumerate(read_chunk(spec, read_columns, chunk_rows)):
        frame = prepare_rows(piece, rename, fill, spec.path, first, spec.file_index, keep)
        frame = frame.sort_values(HEALPIX29, kind="stable").reset_index(drop=True)
        h29 = frame[HEALPIX29].to_numpy()
        pix = pixel_at_order(h29, order)
        uniq, n = np.unique(pix, return_counts=True)
        for p, c in zip(uniq.tolist(), n.tolist(), strict=True):
            counts[p] = counts.get(p, 0) + c
        shard = stage / "shards" / f"{spec.chunk_id}-{k:04d}.parquet"
        write_frame_atomic(frame, shard, row_group_rows=SHARD_ROW_GROUP_ROWS)
        shards.append(shard.name)
        if len(h29):
            ranges[shard.name] = [int(h29[0]), int(h29[-1])]
    write_json_atomic({"pixels": counts, "shards": shards, "ranges": ranges}, marker)
    return counts


def shards_per_group(
    groups: list[list[tuple[int, int]]], shard_files: list[str], ranges: dict[str, list[int]]
) -> list[list[str]]:
    """For each merge group (partitions contiguous in sky order), the shards holding rows of
    it: those whose ``_healpix_29`` range ``[first, last]`` (shards are sorted) meets the
    group's. An input sorted on the sky (Gaia's files, in source_id order) then costs each
    merge task a few shards instead of all of them; a shard without a recorded range (an
    empty one, or made by an older bigcat) is read by every group."""
    names = np.array(shard_files, dtype=object)
    full = (0, np.iinfo(np.int64).max)
    lo = np.array([ranges.get(n, full)[0] for n in shard_files], dtype=np.int64)
    hi = np.array([ranges.get(n, full)[1] for n in shard_files], dtype=np.int64)
    out = []
    for group in groups:
        spans = [pixel_index_range(o, p) for o, p in group]
        g_lo, g_hi = min(a for a, _ in spans), max(b for _, b in spans)
        out.append(names[(lo < g_hi) & (hi >= g_lo)].tolist())
    return out


def merge_group_rows(target_task_rows: int, n_shards: int) -> int:
    """Rows per merge task: at least ``target_task_rows``, and enough that a task's slice of
    each shard spans a shard row group (:data:`SHARD_ROW_GROUP_ROWS`), at most
    :data:`MERGE_MAX_ROWS`. Each merge task reads its rows from every shard that holds some;
    with many shards over the whole sky (an input in no sky order), small tasks would each
    decode a whole row group of every shard for a few hundred rows (10M rows in 200 shards,
    133 tasks of 75,000 rows: 30x the rows decoded, 50 s of the 105 s ingest)."""
    return int(min(MERGE_MAX_ROWS, max(target_task_rows, SHARD_ROW_GROUP_ROWS * n_shards)))


def read_sorted_range(path: Path, lo: int, hi: int) -> pa.Table:
    """The rows of a shard (sorted by ``_healpix_29``) with ``lo <= _healpix_29 < hi``: only
    the row groups whose statistics meet the range are read, then cut by binary search
    (what ``pq.read_table(filters=...)`` does, without the dataset machinery it sets up per
    call: a merge task reads hundreds of shards)."""
    pf = pq.ParquetFile(path)
    md = pf.metadata
    col = pf.schema_arrow.get_field_index(HEALPIX29)
    groups = []
    for i in range(md.num_row_groups):
        stats = md.row_group(i).column(col).statistics
        if stats is None or not stats.has_min_max or (stats.max >= lo and stats.min < hi):
            groups.append(i)
    if not groups:
        return pf.schema_arrow.empty_table()
    table = pf.read_row_groups(groups)
    h29 = table.column(HEALPIX29).to_numpy()
    a, b = np.searchsorted(h29, [lo, hi], side="left")
    return table.slice(int(a), int(b - a))


def merge_pixels(
    partitions: list[tuple[int, int]],
    shard_files: list[str],
    staging: str,
    fingerprint: str,
    files: list[str],
) -> tuple[list[tuple[int, int, int]], np.ndarray, dict[str, dict]]:
    """Reduce task: the rows of some partitions ``(order, pixel)``, in sky order, from every
    shard -> one sorted file per partition.

    Returns ``[(order, pixel, n_rows)]``, the sorted source_ids of the group (for the global
    uniqueness check) and the record (rows, bytes, sha256) of each file written or reused
    (``"order/pixel"`` -> record; :func:`bigcat.catalog.store.file_record`). If every partition's file already exists with this ingest's
    fingerprint, nothing is rewritten (resume).

    Raises
    ------
    InputError
        If a source_id occurs twice, naming both rows.
    """
    root = Path(staging) / "catalog"
    paths = [partition_path(root, o, p) for o, p in partitions]
    if all(file_fingerprint(path) == fingerprint for path in paths):
        tables = [pq.read_table(path, columns=["source_id"]) for path in paths]
        ids = np.sort(np.concatenate([t["source_id"].to_numpy() for t in tables]))
        records = {
            f"{o}/{p}": file_record(path, t.num_rows)
            for (o, p), path, t in zip(partitions, paths, tables, strict=True)
        }
        return (
            [(o, p, t.num_rows) for (o, p), t in zip(partitions, tables, strict=True)],
            ids,
            records,
        )
    ranges = np.array([pixel_index_range(o, p) for o, p in partitions], dtype=np.int64)
    lo, hi = int(ranges[:, 0].min()), int(ranges[:, 1].max())
    parts = []
    for name in shard_files:
        table = read_sorted_range(Path(staging) / "shards" / name, lo, hi)
        if table.num_rows:
            parts.append(table)
    # shards may differ in an extra column's type (all null in one chunk): promote
    frame = (
        pa.concat_tables(parts, promote_options="permissive").to_pandas()
        if parts
        else pd.DataFrame()
    )
    if len(frame) == 0:
        return [(o, p, 0) for o, p in partitions], np.zeros(0, np.int64), {}
    frame = frame.sort_values([HEALPIX29, "source_id"], kind="stable", ignore_index=True)
    ids = frame["source_id"].to_numpy()
    dup = pd.Series(ids).duplicated(keep=False).to_numpy()
    if dup.any():
        first = ids[dup][0]
        rows = frame[ROW_ID].to_numpy()[ids == first][:2]
        raise InputError(
            f"source_id {first} occurs more than once: {describe_row(int(rows[0]), files)} "
            f"and {describe_row(int(rows[1]), files)}. source_id must be unique; remove the "
            "duplicate rows (e.g. from overlapping input files) and run again."
        )
    table = pa.Table.from_pandas(frame.drop(columns=[ROW_ID]), preserve_index=False)
    h29 = frame[HEALPIX29].to_numpy()
    starts = np.searchsorted(h29, ranges[:, 0], side="left")
    stops = np.searchsorted(h29, ranges[:, 1], side="left")
    counts = []
    records = {}
    for (o, p), path, a, b in zip(partitions, paths, starts, stops, strict=True):
        if b > a:
            if file_fingerprint(path) != fingerprint:
                records[f"{o}/{p}"] = write_table_atomic(table.slice(a, b - a), path, fingerprint)
            else:
                records[f"{o}/{p}"] = file_record(path, int(b - a))
        counts.append((o, p, int(b - a)))
    return counts, np.sort(ids), records


def group_pixels(counts: dict[int, int], target_rows: int) -> list[list[int]]:
    """Neighbouring pixels grouped into runs of about ``target_rows`` rows (one task each)."""
    groups: list[list[int]] = []
    current: list[int] = []
    rows = 0
    for p in sorted(counts):
        current.append(p)
        rows += counts[p]
        if rows >= target_rows:
            groups.append(current)
            current, rows = [], 0
    if current:
        groups.append(current)
    return groups


def group_in_sky_order(
    rows: dict[tuple[int, int], int], target_rows: int
) -> list[list[tuple[int, int]]]:
    """Partitions ``(order, pixel)`` of any orders, in sky order (first ``_healpix_29``),
    grouped into runs of about ``target_rows`` rows (``rows``: each partition's)."""
    first = {first_index(o, p): (o, p) for o, p in rows}
    by_first = {first_index(o, p): n for (o, p), n in rows.items()}
    return [[first[k] for k in group] for group in group_pixels(by_first, target_rows)]


def ingest_lock(out: str | Path) -> contextlib.AbstractContextManager:
    """The lock of an ingest into ``out`` (covering ``out`` and its staging directory);
    re-entrant, so the CLI takes it before the cluster starts and :func:`ingest` again."""
    return output_lock(out, "bigcat ingest", covers=(staging_dir(out), Path(out)))


def ingest(
    inputs: Sequence[str | Path],
    out: str | Path,
    config: Config,
    client: Client,
    keep: Sequence[str] | None = None,
    properties: dict | None = None,
) -> Catalog:
    """Ingest raw tables into a HEALPix catalogue at ``out`` (see the module docstring).

    Returns the opened catalogue. If ``out`` already holds a catalogue made from the same
    inputs and settings, it is returned as it is. ``keep``: extra columns carried unchanged
    (every input must have them); ``properties``: added to (and overriding) the provenance
    in ``bigcat.json``.

    ``keep`` None (the default) keeps every input column outside the contract that every
    file has (:func:`extra_columns`); ``()`` keeps none.

    Raises
    ------
    InputError
        For bad input; the partial work is removed and nothing at ``out`` is touched.
    CatalogError
        If ``out`` exists and is not this ingest's catalogue.
    """
    t0 = time.perf_counter()
    out = Path(out)
    plan = plan_ingest(inputs, config, keep)
    if out.exists():
        try:
            existing = Catalog.open(out)
        except CatalogError:
            existing = None
        if existing is not None and existing.fingerprint == plan.fingerprint:
            damaged = catalog_problems(existing, checksums=False)
            if not damaged:
                logger.info("%s is up to date with its inputs; nothing to do.", out)
                return existing
            with output_lock(out, "bigcat ingest"):
                logger.warning(
                    "%s: %d damaged partition file(s) (%s); ingesting the inputs again.",
                    out,
                    len(damaged),
                    "; ".join(damaged[:3]) + (" ..." if len(damaged) > 3 else ""),
                )
                _set_aside(out)
            return ingest(inputs, out, config, client, keep, properties)
        raise CatalogError(
            f"{out} already exists and was not made from these inputs and settings. bigcat does "
            "not overwrite it: choose another --out, or delete it first."
        )
    staging = staging_dir(out)
    with ingest_lock(out):
        if out.exists():  # made meanwhile by the command that held the lock
            return ingest(inputs, out, config, client, keep, properties)
        return _ingest_locked(plan, out, staging, config, client, properties, t0)


def _ingest_locked(
    plan: IngestPlan,
    out: Path,
    staging: Path,
    config: Config,
    client: Client,
    properties: dict | None,
    t0: float,
) -> Catalog:
    """:func:`ingest` under the lock of ``out``: staging in ``CATALOG.partial``, publishing."""
    plan_file = staging / "plan.json"
    if staging.exists():
        old = json.loads(plan_file.read_text()).get("fingerprint") if plan_file.exists() else None
        if old != plan.fingerprint:
            logger.warning("%s holds work for other inputs or settings; starting afresh.", staging)
            shutil.rmtree(staging)
        else:
            logger.info("Resuming the interrupted ingest in %s.", staging)
    staging.mkdir(parents=True, exist_ok=True)
    write_json_atomic(
        {"fingerprint": plan.fingerprint, "files": [str(f) for f in plan.files]}, plan_file
    )
    order = config.ingest.order
    files = [str(f) for f in plan.files]
    try:
        split_tasks = [
            (
                f"ingest-split-{c.chunk_id}",
                (
                    c,
                    plan.read_columns[c.file_index],
                    plan.rename,
                    plan.missing_optional[c.file_index],
                    str(staging),
                    order,
                    config.ingest.chunk_rows,
                    plan.keep,
                ),
            )
            for c in plan.chunks
        ]
        t_split = time.perf_counter()
        counts_per_chunk = run_tasks(
            client, split_chunk, split_tasks, "ingest split", writes_files=True
        )
        t_split = time.perf_counter() - t_split
        counts: dict[int, int] = {}
        for c in counts_per_chunk:
            for p, n in c.items():
                counts[p] = counts.get(p, 0) + n
        shard_files, shard_ranges = [], {}
        for marker in sorted((staging / "done").glob("*.json")):
            done = json.loads(marker.read_text())
            shard_files.extend(done["shards"])
            shard_ranges.update(done.get("ranges", {}))
        shard_files.sort()
        threshold = config.ingest.partition_rows
        layout = adaptive_partitions(counts, order, threshold)
        oversize = [(p, n) for o, p, n in layout if threshold and n > threshold]
        if oversize:
            logger.warning(
                "%d order-%d pixels hold more than partition_rows = %d rows (the densest, "
                "pixel %d, %d rows); each stays one partition, processed in pieces. A finer "
                "--nside splits them.",
                len(oversize),
                order,
                threshold,
                *max(oversize, key=lambda pn: pn[1]),
            )
        groups = group_in_sky_order(
            {(o, p): n for o, p, n in layout},
            merge_group_rows(config.process.target_task_rows, len(shard_files)),
        )
        merge_tasks = [
            (
                f"ingest-pix{g[0][1]}" + ("" if g[0][0] == order else f"-o{g[0][0]}"),
                (g, shards, str(staging), plan.fingerprint, files),
            )
            for g, shards in zip(
                groups, shards_per_group(groups, shard_files, shard_ranges), strict=True
            )
        ]
        t_merge = time.perf_counter()
        merged = run_tasks(client, merge_pixels, merge_tasks, "ingest merge", writes_files=True)
        t_merge = time.perf_counter() - t_merge
        t_final = time.perf_counter()
        counts_by_part = [opn for opns, _, _ in merged for opn in opns if opn[2] > 0]
        records = {k: r for _, _, recs in merged for k, r in recs.items()}
        pixels = [(o, p) for o, p, _ in counts_by_part]
        all_ids = [ids for _, ids, _ in merged] or [np.zeros(0, np.int64)]  # no rows: fine
        _check_unique(np.concatenate(all_ids), pixels, staging / "catalog")
        n_rows = sum(n for _, _, n in counts_by_part)
        finalize_catalog(
            staging / "catalog",
            pixels,
            out.name,
            n_rows,
            {
                "fingerprint": plan.fingerprint,
                "inputs": files,
                "columns": dict(config.columns),
                "nside": config.ingest.nside,
                "partition_threshold": config.ingest.partition_rows,
                "bigcat_version": __version__,
                "kind": "ingest",
                **(properties or {}),
            },
            partition_rows={(o, p): n for o, p, n in counts_by_part},
            partition_files={(o, p): records.get(f"{o}/{p}", {}) for o, p, _ in counts_by_part},
        )
    except InputError:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    os.replace(staging / "catalog", out)
    shutil.rmtree(staging, ignore_errors=True)
    logger.info(
        "Ingested %d rows into %d partitions in %.1f s (split %d chunks into %d shards %.1f s, "
        "merge %d tasks %.1f s, uniqueness check and metadata %.1f s).",
        n_rows,
        len(pixels),
        time.perf_counter() - t0,
        len(split_tasks),
        len(shard_files),
        t_split,
        len(merge_tasks),
        t_merge,
        time.perf_counter() - t_final,
    )
    return Catalog.open(out)


def _set_aside(out: Path) -> None:
    """Remove a damaged catalogue before it is made again (renamed first, so a reader never
    sees half of it)."""
    aside = out.with_name(f".{out.name}.damaged.tmp")
    remove_tree(aside)
    os.replace(out, aside)
    remove_tree(aside)


def _check_unique(ids: np.ndarray, pixels: list[tuple[int, int]], root: Path) -> None:
    """source_id unique across partitions (within a group it is checked by the merge)."""
    uniq, n = np.unique(ids, return_counts=True)
    if len(uniq) == len(ids):
        return
    sid = int(uniq[np.argmax(n > 1)])
    where = []
    for o, p in pixels:
        df = read_parquet_checked(partition_path(root, o, p), ["source_id", "ra", "dec"])
        for r in df[df.source_id == sid].itertuples():
            where.append(f"ra={r.ra:.6f}, dec={r.dec:.6f}")
    raise InputError(
        f"source_id {sid} occurs more than once, at different positions ({'; '.join(where)}). "
        "source_id must be unique; remove the duplicate rows (e.g. from overlapping input "
        "files) and run again."
    )
