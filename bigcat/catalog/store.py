"""A HEALPix-partitioned Parquet catalogue in the HATS layout, read and written safely.

Layout (what ``lsdb.read_hats`` opens)::

    CATALOG/
      properties, hats.properties    (hats TableProperties)
      partition_info.csv             (hats PartitionInfo)
      dataset/_common_metadata, dataset/_metadata
      dataset/Norder=5/Dir=0/Npix=1234.parquet

Every partition file is written to a temporary name in its own directory and renamed into
place, so a reader never sees a half-written file. Each file carries, in its Parquet key-value
metadata, the fingerprint of the inputs and configuration that made it (``bigcat.fingerprint``),
which is how a re-run knows whether it may reuse it.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from hats.catalog import PartitionInfo, TableProperties
from hats.catalog.catalog_type import CatalogType
from hats.io import file_io, write_parquet_metadata
from hats.io import paths as hats_paths
from hats.pixel_math.healpix_pixel import HealpixPixel

from bigcat.atomic import (
    FSYNC,
    atomic_path,
    disk_full_as_error,
    file_sha256,
    is_temporary,
    temporary_path,
    write_json_atomic,
    write_text_atomic,
)
from bigcat.catalog.healpix import HEALPIX29
from bigcat.errors import CatalogError
from bigcat.runlock import lock_held

logger = logging.getLogger(__name__)

FINGERPRINT_KEY = b"bigcat.fingerprint"
BIGCAT_PROPERTIES = "bigcat.json"
#: Re-exported for the stages (the helpers live in :mod:`bigcat.atomic`).
__all__ = ["FSYNC", "disk_full_as_error", "temporary_path"]
#: Rows per Parquet row group in partition files: the unit a stage reads at a time
#: (:func:`iter_table_pieces`), so a dense partition never has to sit in memory whole.
ROW_GROUP_ROWS = 20_000


def parquet_write_options(schema: pa.Schema) -> dict:
    """Writer options of every partition file bigcat writes: snappy compression, and
    dictionary encoding only for text columns.

    Arrow's default tries a dictionary for every column and falls back to plain encoding
    once the dictionary grows too large. For the float columns that make up a catalogue
    (magnitudes, parallaxes, predictions: nearly all values distinct) that attempt is wasted:
    a stage-1 partition took 3.6 us per row to write with it and 0.8 us without, and came
    out 22% larger (88.9 against 72.9 MB for 136,233 rows x 80 columns), writing had been a
    quarter of the stage's time.
    """
    text = [
        f.name
        for f in schema
        if pa.types.is_string(f.type)
        or pa.types.is_large_string(f.type)
        or pa.types.is_binary(f.type)
        or pa.types.is_dictionary(f.type)
    ]
    return {"compression": "snappy", "use_dictionary": text}


def partition_path(root: str | Path, order: int, pixel: int) -> Path:
    """Path of the Parquet file of one partition: hats' layout
    ``dataset/Norder=<order>/Dir=<10000 * (pixel // 10000)>/Npix=<pixel>.parquet``.

    Built directly rather than with ``hats.io.paths.pixel_catalog_file``, which takes 0.14 ms
    per call (UPath) and is called a few times per partition per stage: 5 core-seconds per
    stage at 12,288 partitions. A test checks it against hats for every order.
    """
    o, p = int(order), int(pixel)
    return Path(root, "dataset", f"Norder={o}", f"Dir={p // 10_000 * 10_000}", f"Npix={p}.parquet")


def with_fingerprint(schema: pa.Schema, fingerprint: str) -> pa.Schema:
    """``schema`` with ``fingerprint`` added to its key-value metadata."""
    meta = dict(schema.metadata or {})
    meta[FINGERPRINT_KEY] = fingerprint.encode()
    return schema.with_metadata(meta)


def write_table_atomic(
    table: pa.Table,
    path: Path,
    fingerprint: str | None = None,
    row_group_rows: int = ROW_GROUP_ROWS,
) -> dict:
    """Write ``table`` to ``path`` so that the file appears whole or not at all.

    The table is written to a unique temporary name in the same directory and renamed over
    ``path`` (:func:`bigcat.atomic.atomic_path`), so a killed process or worker never leaves
    a half-written file under the real name. ``BIGCAT_FSYNC=1`` also flushes each file to
    disk before the rename, for protection against power loss.

    Returns
    -------
    dict
        The file's record, ``{"rows", "bytes", "sha256"}`` (:func:`file_record`), kept in the
        catalogue's ``bigcat.json`` so that ``bigcat verify`` and a re-run can tell a damaged
        file from a whole one.
    """
    if fingerprint is not None:
        table = table.replace_schema_metadata(with_fingerprint(table.schema, fingerprint).metadata)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            pq.write_table(
                table, fh, row_group_size=row_group_rows, **parquet_write_options(table.schema)
            )
        record = file_record(tmp, table.num_rows)
    return record


def file_record(path: Path, rows: int) -> dict:
    """What is recorded of a written partition file: rows, size in bytes and sha256."""
    return {"rows": int(rows), "bytes": Path(path).stat().st_size, "sha256": file_sha256(path)}


def check_file_record(path: Path, record: dict | None) -> str | None:
    """Why the partition file ``path`` does not match its ``record`` (None if it does, or if
    there is no record): missing, unreadable footer, other row count, size or checksum."""
    path = Path(path)
    if not path.exists():
        return "the file is missing"
    try:
        rows = pq.ParquetFile(path).metadata.num_rows
    except (OSError, pa.ArrowException) as exc:
        return f"its Parquet footer cannot be read ({exc}): truncated or corrupted"
    if not record:
        return None
    if "rows" in record and rows != int(record["rows"]):
        return f"it holds {rows} rows, {record['rows']} were written"
    size = path.stat().st_size
    if "bytes" in record and size != int(record["bytes"]):
        return f"it is {size} bytes long, {record['bytes']} were written"
    if "sha256" in record and file_sha256(path) != record["sha256"]:
        return "its checksum (sha256) differs from the one recorded when it was written"
    return None


def write_frame_atomic(
    df: pd.DataFrame,
    path: Path,
    fingerprint: str | None = None,
    row_group_rows: int = ROW_GROUP_ROWS,
) -> dict:
    """Write a pandas frame (its index dropped) atomically; see :func:`write_table_atomic`."""
    return write_table_atomic(
        pa.Table.from_pandas(df, preserve_index=False), path, fingerprint, row_group_rows
    )


def file_fingerprint(path: Path) -> str | None:
    """The ``bigcat.fingerprint`` stored in a Parquet file, or None if absent or unreadable."""
    try:
        meta = pq.read_schema(path).metadata or {}
    except (OSError, pa.ArrowInvalid):
        return None
    value = meta.get(FINGERPRINT_KEY)
    return value.decode() if value is not None else None


def read_parquet_checked(
    path: Path, columns: list[str] | None = None, rebuild: str = ""
) -> pd.DataFrame:
    """Read one Parquet file as pandas; see :func:`read_table_checked`."""
    return read_table_checked(path, columns, rebuild).to_pandas()


def read_table_checked(path: Path, columns: list[str] | None = None, rebuild: str = "") -> pa.Table:
    """Read one Parquet file; a corrupted or truncated file is a :class:`CatalogError`.

    Parameters
    ----------
    path
        The file.
    columns
        Column projection (None for all).
    rebuild
        How to rebuild the file, quoted in the error message.
    """
    try:
        pf = pq.ParquetFile(path)
        if columns is not None:
            names = set(pf.schema_arrow.names)
            missing = [c for c in columns if c not in names]
            if missing:  # ParquetFile.read would silently leave them out
                raise CatalogError(
                    f"{path}: no column(s) {', '.join(missing)} in this partition file (it has "
                    f"{len(names)} columns). {rebuild}".strip()
                )
        # ParquetFile rather than pq.read_table: the same table, without the dataset layer's
        # per-call set-up (0.75 against 1.9 ms for a small partition, a few columns)
        return pf.read(columns=columns, use_threads=False)
    except (OSError, pa.ArrowException) as exc:
        raise _unreadable(path, exc, rebuild) from exc


def _unreadable(path: Path, exc: Exception, rebuild: str) -> CatalogError:
    """The error for a partition file that is missing, corrupted or truncated."""
    if isinstance(exc, FileNotFoundError):
        return CatalogError(f"{path}: partition file is missing. {rebuild}".strip())
    return CatalogError(
        f"{path}: cannot read this partition file ({exc}); it is corrupted or truncated. "
        f"Delete it and run the same command again to rebuild it. {rebuild}".strip()
    )


def iter_table_pieces(
    path: Path, max_rows: int, rebuild: str = ""
) -> Iterator[tuple[pa.Table, bool, bool]]:
    """One Parquet file as consecutive pieces of at most ``max_rows`` rows, read a few row
    groups at a time (``ParquetFile.read_row_groups``), so memory holds one piece, not the whole
    file. A row group larger than ``max_rows`` is read whole and sliced.

    (``ParquetFile.iter_batches`` would give the same pieces but keeps ~3x a piece's size in
    reader buffers.) Yields ``(piece, first, last)``; an empty file gives one empty piece (with
    the file's schema) that is both first and last. Errors as for :func:`read_table_checked`.
    """
    max_rows = max(int(max_rows), 1)
    try:
        pf = pq.ParquetFile(path)
        meta = pf.metadata
        if meta.num_rows == 0:
            yield pf.schema_arrow.empty_table(), True, True
            return
        groups: list[list[int]] = [[]]  # consecutive row groups, at most max_rows rows each
        rows = 0
        for i in range(meta.num_row_groups):
            n = meta.row_group(i).num_rows
            if groups[-1] and rows + n > max_rows:
                groups.append([])
                rows = 0
            groups[-1].append(i)
            rows += n
        done = 0
        for ids in groups:
            table = pf.read_row_groups(ids, use_threads=False)
            for start in range(0, table.num_rows, max_rows):
                piece = table.slice(start, max_rows)
                first = done == 0
                done += piece.num_rows
                yield piece, first, done == meta.num_rows
            del table
    except (OSError, pa.ArrowException) as exc:
        raise _unreadable(path, exc, rebuild) from exc


@dataclass(frozen=True)
class Catalog:
    """A HATS catalogue on disk: its root, HEALPix order-pixel pairs and bigcat properties."""

    root: Path
    pixels: tuple[tuple[int, int], ...]
    properties: dict

    @classmethod
    def open(cls, root: str | Path) -> Catalog:
        """Open a catalogue written by bigcat (or any HATS catalogue).

        Raises
        ------
        CatalogError
            If ``root`` is not a HATS catalogue.
        """
        root = Path(root)
        info_file = root / hats_paths.PARTITION_INFO_FILENAME
        if not info_file.exists():
            raise CatalogError(
                f"{root}: not a HEALPix catalogue (no {hats_paths.PARTITION_INFO_FILENAME}). "
                "Make one with `bigcat ingest FILES... --out CATALOG`, or pass the raw files "
                "to `bigcat process --input`."
            )
        try:
            info = PartitionInfo.read_from_csv(info_file)
        except Exception as exc:  # noqa: BLE001 - hats raises several types
            raise CatalogError(
                f"{info_file}: cannot be read ({exc}). Rebuild the catalogue with `bigcat ingest`."
            ) from exc
        pixels = tuple((p.order, p.pixel) for p in info.get_healpix_pixels())
        props: dict = {}
        props_file = root / BIGCAT_PROPERTIES
        if props_file.exists():
            props = json.loads(props_file.read_text())
        return cls(root=root, pixels=pixels, properties=props)

    @property
    def fingerprint(self) -> str:
        """Fingerprint of this catalogue's content (inputs and settings that made it)."""
        return str(self.properties.get("fingerprint", ""))

    def partition_path(self, order: int, pixel: int) -> Path:
        """Path of one partition file."""
        return partition_path(self.root, order, pixel)

    def read_partition(
        self, order: int, pixel: int, columns: list[str] | None = None
    ) -> pd.DataFrame:
        """Read one partition as a pandas frame (clear error if corrupted)."""
        return read_parquet_checked(
            self.partition_path(order, pixel),
            columns,
            rebuild=f"It belongs to the catalogue {self.root}.",
        )

    def partition_rows(self, order: int, pixel: int) -> int:
        """Rows of one partition (from the bigcat properties, else the file footer)."""
        known = self.properties.get("partition_rows", {}).get(f"{order}/{pixel}")
        if known is not None:
            return int(known)
        return pq.ParquetFile(self.partition_path(order, pixel)).metadata.num_rows

    def columns(self) -> list[str]:
        """Column names, from the dataset's common metadata."""
        path = Path(str(hats_paths.get_common_metadata_pointer(self.root)))
        try:
            schema = pq.read_schema(path)
        except (OSError, pa.ArrowException) as exc:
            raise CatalogError(
                f"{path}: cannot read the catalogue's schema ({exc}); the catalogue is "
                "incomplete or damaged. Run the command that made it again (`bigcat verify` "
                "lists what is wrong)."
            ) from exc
        return [n for n in schema.names if n != "__index_level_0__"]

    def n_rows(self) -> int:
        """Total rows (from the bigcat properties or the partition footers)."""
        if "n_rows" in self.properties:
            return int(self.properties["n_rows"])
        return sum(
            pq.ParquetFile(self.partition_path(o, p)).metadata.num_rows for o, p in self.pixels
        )


def catalog_problems(catalog: Catalog, checksums: bool = True) -> list[str]:
    """What is wrong with a catalogue's partition files, one line each (empty: nothing).

    Each partition listed in ``partition_info.csv`` must exist with a readable Parquet footer
    and the row count recorded in ``bigcat.json``; with ``checksums``, a file recorded with
    its size and sha256 (``partition_files``, written since bigcat records them) must match
    them too (a flipped byte inside the file, which the footer does not show). Without
    ``checksums`` only the size is compared (no file is read beyond its footer).
    """
    rows = catalog.properties.get("partition_rows", {})
    files = catalog.properties.get("partition_files", {})
    problems = []
    for order, pixel in catalog.pixels:
        key = f"{order}/{pixel}"
        record = dict(files.get(key) or {})
        if key in rows:
            record.setdefault("rows", rows[key])
        if not checksums:
            record.pop("sha256", None)
        path = catalog.partition_path(order, pixel)
        problem = check_file_record(path, record)
        if problem is not None:
            problems.append(f"{path}: {problem}")
    return problems


def finalize_catalog(
    root: Path,
    pixels: list[tuple[int, int]],
    name: str,
    n_rows: int,
    properties: dict,
    partition_rows: dict[tuple[int, int], int] | None = None,
    parquet_metadata: bool = True,
    partition_files: dict[tuple[int, int], dict] | None = None,
) -> Catalog:
    """Write the HATS metadata of a catalogue whose partition files are in place.

    Uses the hats library: ``PartitionInfo`` (partition_info.csv), ``TableProperties``
    (properties) and ``write_parquet_metadata`` (dataset/_common_metadata, and
    dataset/_metadata unless ``parquet_metadata`` is false).
    bigcat's own provenance goes to ``bigcat.json`` beside them (written atomically, last:
    with ``partition_info.csv`` it marks the catalogue complete), with each partition's row
    count and, given ``partition_files``, its file record (rows, bytes, sha256) for
    ``bigcat verify``.
    """
    healpix = [HealpixPixel(o, p) for o, p in sorted(pixels)]
    root.mkdir(parents=True, exist_ok=True)
    if healpix:
        PartitionInfo.from_healpix(healpix).write_to_file(catalog_path=root)
    else:  # a catalogue of no rows (empty inputs): no partitions, but a valid listing
        write_text_atomic("Norder,Npix\n", root / hats_paths.PARTITION_INFO_FILENAME)
    max_order = max((o for o, _ in pixels), default=0)
    fields: dict[str, Any] = {
        "catalog_name": name,
        "catalog_type": CatalogType.OBJECT,
        "total_rows": n_rows,
        "ra_column": "ra",
        "dec_column": "dec",
        "healpix_column": HEALPIX29,
        "healpix_order": 29,
        "hats_order": max_order,
        "hats_builder": f"bigcat {properties.get('bigcat_version', '')}".strip(),
    }
    TableProperties(**fields).to_properties_file(root)
    remove_stale_temporaries(root)
    if healpix:
        if parquet_metadata:
            write_parquet_metadata(root)
        else:
            # _metadata (every partition's row-group footers in one file) is optional in
            # HATS: lsdb and bigcat find partitions in partition_info.csv and the schema in
            # _common_metadata. hats reads all footers one by one to write either file
            # (3.5 s for 12,288 partitions at 1M rows, plus 1.4 s to write a 114 MB
            # _metadata), so without _metadata the schema comes from the first partition.
            first = partition_path(root, healpix[0].order, healpix[0].pixel)
            Path(str(hats_paths.get_parquet_metadata_pointer(root))).unlink(missing_ok=True)
            file_io.write_parquet_metadata(
                pq.read_schema(first), hats_paths.get_common_metadata_pointer(root)
            )
    props = dict(properties)
    props["n_rows"] = n_rows
    props["n_partitions"] = len(pixels)
    if partition_rows is not None:
        props["partition_rows"] = {
            f"{o}/{p}": int(n) for (o, p), n in sorted(partition_rows.items())
        }
    if partition_files is not None:
        props["partition_files"] = {
            f"{o}/{p}": dict(rec) for (o, p), rec in sorted(partition_files.items()) if rec
        }
    write_json_atomic(props, root / BIGCAT_PROPERTIES, indent=2, sort_keys=True, default=str)
    return Catalog.open(root)


def remove_stale_temporaries(root: Path) -> list[Path]:
    """Delete temporary partition files (``.Npix=N.parquet.<hex>.tmp``) left by a killed writer.

    A process killed between opening its temporary file and the rename leaves it behind; the
    real file is rewritten by the next run, but hats' metadata writer would try to read the
    leftover as a partition. Only done while this process holds the lock of the directory
    (:mod:`bigcat.runlock`): without it another run's files being written could be removed,
    so nothing is deleted (and the skip is logged).
    """
    root = Path(root)
    stale = sorted(p for p in (root / "dataset").rglob(".*") if is_temporary(p))
    if not stale:
        return []
    if not lock_held(root):
        logger.info(
            "%s: %d temporary files left in place (no lock held on the directory).",
            root,
            len(stale),
        )
        return []
    for path in stale:
        logger.info("Removing %s: temporary file of an interrupted write.", path)
        path.unlink(missing_ok=True)
    return stale


def remove_tree(path: Path) -> None:
    """Remove a directory tree bigcat created (missing is fine)."""
    shutil.rmtree(path, ignore_errors=True)
