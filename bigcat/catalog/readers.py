"""Readers for raw input tables: Parquet, CSV and FITS, in bounded chunks.

Each input file is described by its column names and logical types (read from the header or
footer only), and read as chunks of at most ``chunk_rows`` rows, so files larger than memory
are fine. Parquet and FITS chunks are independent row ranges (parallel across workers); a CSV
file is streamed block by block in one task.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from bigcat.errors import InputError

logger = logging.getLogger(__name__)

PARQUET_SUFFIXES = (".parquet", ".pq", ".parq")
CSV_SUFFIXES = (".csv", ".csv.gz", ".csv.bz2", ".txt")
FITS_SUFFIXES = (".fits", ".fit", ".fits.gz", ".fts")


@dataclass(frozen=True)
class ChunkSpec:
    """A row range of one input file (``stop`` None: to the end, streamed)."""

    path: str
    file_index: int
    chunk_index: int
    start: int
    stop: int | None

    @property
    def chunk_id(self) -> str:
        """Stable identifier used for done-markers and shard files."""
        return f"f{self.file_index:04d}-c{self.chunk_index:05d}"


def file_format(path: Path) -> str:
    """'parquet', 'csv' or 'fits' from the file name.

    Raises
    ------
    InputError
        For an unknown extension.
    """
    name = path.name.lower()
    if name.endswith(PARQUET_SUFFIXES):
        return "parquet"
    if name.endswith(CSV_SUFFIXES):
        return "csv"
    if name.endswith(FITS_SUFFIXES):
        return "fits"
    raise InputError(
        f"{path}: unknown file type. bigcat reads Parquet ({', '.join(PARQUET_SUFFIXES)}), "
        f"CSV ({', '.join(CSV_SUFFIXES)}) and FITS ({', '.join(FITS_SUFFIXES)}); rename the file "
        "or convert it."
    )


def expand_inputs(inputs: Sequence[str | Path]) -> list[Path]:
    """Files named on the command line; a directory stands for the data files inside it.

    Raises
    ------
    InputError
        For a missing path or a directory without data files.
    """
    files: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = sorted(
                p
                for p in path.rglob("*")
                if p.is_file()
                and not p.name.startswith((".", "_"))
                and p.name.lower().endswith(PARQUET_SUFFIXES + CSV_SUFFIXES + FITS_SUFFIXES)
            )
            if not found:
                raise InputError(f"{path}: directory holds no Parquet, CSV or FITS files.")
            files.extend(found)
        elif path.is_file():
            file_format(path)
            files.append(path)
        else:
            raise InputError(f"{path}: no such file or directory.")
    if not files:
        raise InputError("No input files given.")
    return files


def _arrow_kind(t: pa.DataType) -> str:
    if pa.types.is_integer(t):
        return "int"
    if pa.types.is_floating(t) or pa.types.is_decimal(t):
        return "float"
    if pa.types.is_boolean(t):
        return "bool"
    if pa.types.is_null(t):
        return "null"
    return "other"


def _numpy_kind(dt: np.dtype) -> str:
    if dt.kind in "iu":
        return "int"
    if dt.kind == "f":
        return "float"
    if dt.kind == "b":
        return "bool"
    return "other"


def read_column_kinds(path: Path) -> tuple[dict[str, str], int | None]:
    """Column name -> logical kind ('int', 'float', ...) and row count (None if unknown).

    Only headers/footers are read (CSV: the first block, for type inference).

    Raises
    ------
    InputError
        If the file cannot be read.
    """
    fmt = file_format(path)
    try:
        if fmt == "parquet":
            pf = pq.ParquetFile(path)
            schema = pf.schema_arrow
            return {f.name: _arrow_kind(f.type) for f in schema}, pf.metadata.num_rows
        if fmt == "csv":
            reader = pacsv.open_csv(path, read_options=pacsv.ReadOptions(block_size=1 << 22))
            kinds = {f.name: _arrow_kind(f.type) for f in reader.schema}
            return kinds, None
        from astropy.io import fits

        with fits.open(path, memmap=True) as hdul:
            hdu = _table_hdu(hdul, path)
            cols = hdu.columns
            kinds = {}
            for c in cols:
                dt = np.dtype(c.dtype) if c.dtype is not None else np.dtype("O")
                kinds[c.name] = _numpy_kind(dt)
            return kinds, int(hdu.header["NAXIS2"])
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - any reader failure means the same to the user
        raise unreadable(path, fmt, exc) from exc


def unreadable(path: Path, fmt: str, exc: Exception) -> InputError:
    """The error for an input file its reader could not read (any reader failure)."""
    return InputError(
        f"{path}: cannot be read as {fmt.upper()} ({type(exc).__name__}: {exc}). "
        "Check that the file is complete and of the type its name says."
    )


def _table_hdu(hdul, path: Path):
    from astropy.io import fits

    for hdu in hdul:
        if isinstance(hdu, fits.BinTableHDU | fits.TableHDU):
            return hdu
    raise InputError(f"{path}: FITS file has no table extension.")


def plan_chunks(
    path: Path, file_index: int, n_rows: int | None, chunk_rows: int
) -> list[ChunkSpec]:
    """Split one file into chunks of at most ``chunk_rows`` rows (CSV: one streamed chunk)."""
    fmt = file_format(path)
    if fmt == "csv" or n_rows is None:
        return [ChunkSpec(str(path), file_index, 0, 0, None)]
    starts = range(0, max(n_rows, 1), chunk_rows)
    return [
        ChunkSpec(str(path), file_index, i, s, min(s + chunk_rows, n_rows))
        for i, s in enumerate(starts)
    ]


def read_chunk(
    spec: ChunkSpec, columns: list[str], chunk_rows: int
) -> Iterator[tuple[int, pd.DataFrame]]:
    """Yield ``(first_row_number, frame)`` pieces of a chunk, with only ``columns``.

    Raises
    ------
    InputError
        If the file cannot be read.
    """
    path = Path(spec.path)
    fmt = file_format(path)
    try:
        if fmt == "parquet":
            pf = pq.ParquetFile(path)
            yield spec.start, _parquet_rows(pf, columns, spec.start, spec.stop or 0)
        elif fmt == "fits":
            from astropy.io import fits

            with fits.open(path, memmap=True) as hdul:
                hdu = _table_hdu(hdul, path)
                data = hdu.data[spec.start : spec.stop]
                nulls = {c.name: c.null for c in hdu.columns}
                frame = pd.DataFrame({c: _native(data[c], nulls.get(c)) for c in columns})
            yield spec.start, frame
        else:
            reader = pacsv.open_csv(
                path,
                read_options=pacsv.ReadOptions(block_size=1 << 24),
                convert_options=pacsv.ConvertOptions(include_columns=columns),
            )
            row = 0
            pending: list[pa.RecordBatch] = []
            pending_rows = 0
            first = 0
            for batch in reader:
                pending.append(batch)
                pending_rows += batch.num_rows
                if pending_rows >= chunk_rows:
                    yield first, pa.Table.from_batches(pending).to_pandas()
                    row += pending_rows
                    first, pending, pending_rows = row, [], 0
            if pending:
                yield first, pa.Table.from_batches(pending).to_pandas()
    except InputError:
        raise
    except pa.ArrowInvalid as exc:
        # a CSV value that does not fit the type inferred from the first rows: name it
        if fmt == "csv" and "conversion error" in str(exc):
            kinds, _ = read_column_kinds(path)
            for column in [c for c in columns if kinds.get(c) in ("int", "float")]:
                found = first_non_numeric(path, column)
                if found is not None:
                    raise InputError(
                        non_numeric_message(path, column, *found, want="a number")
                    ) from exc
        raise InputError(
            f"{path}: reading rows from {spec.start} failed ({type(exc).__name__}: {exc}). "
            "The file may be truncated or have a malformed row; fix or re-export it."
        ) from exc
    except Exception as exc:  # noqa: BLE001
        raise InputError(
            f"{path}: reading rows from {spec.start} failed ({type(exc).__name__}: {exc}). "
            "The file may be truncated or have a malformed row; fix or re-export it."
        ) from exc


def _native(values: np.ndarray, null: object = None) -> np.ndarray | pd.Series:
    """A FITS column in native byte order; integer TNULL entries become missing values of a
    nullable integer type (``Int64`` etc.: the column stays an integer column)."""
    values = np.asarray(values)
    values = values.astype(values.dtype.newbyteorder("="))
    if values.dtype.kind in "iu" and isinstance(null, int | np.integer):
        mask = values == null
        if mask.any():
            nullable = ("UInt" if values.dtype.kind == "u" else "Int") + str(8 * values.itemsize)
            return pd.Series(pd.array(values, dtype=nullable)).mask(mask)
    return values


def first_non_numeric(path: Path, column: str) -> tuple[int, str] | None:
    """The first value of a CSV column that is not a number (nor empty): ``(data row,
    value)`` with 1-based data rows, or None. Streams the column as text."""
    reader = pacsv.open_csv(
        path,
        read_options=pacsv.ReadOptions(block_size=1 << 24),
        convert_options=pacsv.ConvertOptions(
            include_columns=[column], column_types={column: pa.string()}
        ),
    )
    row = 0
    for batch in reader:
        text = batch.column(0).to_pandas()
        numbers = pd.to_numeric(text, errors="coerce")
        bad = (numbers.isna() & text.notna() & (text.str.strip() != "")).to_numpy()
        if bad.any():
            i = int(np.argmax(bad))
            return row + i + 1, str(text.iloc[i])
        row += batch.num_rows
    return None


def non_numeric_message(path: Path, column: str, row: int, value: str, want: str) -> str:
    """The error for text in a numeric column, naming file, column, row and value."""
    return (
        f"{path}: column '{column}' has the non-numeric value {value!r} at data row {row}; "
        f"bigcat needs {want} there. Fix the value (e.g. strip units such as 'mas' or quotes) "
        "or leave it empty (missing), or map a different column in [columns]."
    )


def _parquet_rows(pf: pq.ParquetFile, columns: list[str], start: int, stop: int) -> pd.DataFrame:
    """Rows [start, stop) of a Parquet file, reading only the row groups that hold them."""
    pieces = []
    offset = 0
    for rg in range(pf.metadata.num_row_groups):
        n = pf.metadata.row_group(rg).num_rows
        lo, hi = offset, offset + n
        offset = hi
        if hi <= start or lo >= stop:
            continue
        table = pf.read_row_group(rg, columns=columns)
        pieces.append(table.slice(max(start - lo, 0), min(stop, hi) - max(start, lo)))
    if not pieces:
        return pf.schema_arrow.empty_table().select(columns).to_pandas()
    return pa.concat_tables(pieces).to_pandas()
