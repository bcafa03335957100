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
    if dt.shape:
        return "array"  # a FITS vector column: several values per row
    if dt.kind in "SU":
        return "text"
    if dt.kind in "iu":
        return "int"
    if dt.kind == "f":
        return "float"
    if dt.kind == "b":
        return "bool"
    return "other"


def pandas_index_columns(schema: pa.Schema) -> set[str]:
    """Columns a pandas index was stored in (``DataFrame.to_parquet`` of a filtered frame
    writes ``__index_level_0__``): row labels, not data, so not input columns."""
    try:
        meta = schema.pandas_metadata or {}
    except (ValueError, TypeError):  # unreadable pandas metadata: no index columns known
        return set()
    return {c for c in meta.get("index_columns", []) if isinstance(c, str)}


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
            index = pandas_index_columns(schema)
            kinds = {f.name: _arrow_kind(f.type) for f in schema if f.name not in index}
            return kinds, pf.metadata.num_rows
        if fmt == "csv":
            return _csv_kinds(path), None
        from astropy.io import fits

        with fits.open(path, memmap=True) as hdul:
            hdu = _table_hdu(hdul, path)
            _check_fits_size(hdu, path)
            cols = hdu.columns
            kinds = {}
            for c in cols:
                dt = np.dtype(c.dtype) if c.dtype is not None else np.dtype("O")
                kinds[c.name] = _numpy_kind(dt)
            return kinds, int(hdu.header["NAXIS2"])
    except InputError:
        raise
    except pa.ArrowInvalid as exc:
        if fmt == "csv" and "CSV parse error" in str(exc):
            raise csv_parse_error(path, exc) from exc
        raise unreadable(path, fmt, exc) from exc
    except Exception as exc:  # noqa: BLE001 - any reader failure means the same to the user
        raise unreadable(path, fmt, exc) from exc


#: Bytes of a CSV file looked at for the text and header checks.
_CSV_HEAD_BYTES = 1 << 16
#: First bytes of binary formats a CSV input may be by mistake -> what to call it.
_MAGIC = {
    b"PAR1": "a Parquet file (rename it to .parquet)",
    b"SIMPLE  =": "a FITS file (rename it to .fits)",
    b"\x1f\x8b": "gzip-compressed (name it .csv.gz)",
    b"BZh": "bzip2-compressed (name it .csv.bz2)",
    b"PK\x03\x04": "a zip archive (unpack it first)",
    b"\x89HDF": "an HDF5 file (convert it to Parquet, CSV or FITS)",
    b"\xff\xfe": "UTF-16 text (save it as UTF-8)",
    b"\xfe\xff": "UTF-16 text (save it as UTF-8)",
}


def _is_compressed(path: Path) -> bool:
    return path.name.lower().endswith((".gz", ".bz2"))


def _open_csv(path: Path, **options) -> pacsv.CSVStreamingReader:
    """``pyarrow.csv.open_csv`` of ``path``; a file of a single line without a line break (a
    header alone, as some tools write it) is read with its line break added, so it reads like
    the same header followed by a newline (Arrow cannot find the end of such a header)."""
    source: str | pa.BufferReader = str(path)
    if not _is_compressed(path) and 0 < path.stat().st_size <= _CSV_HEAD_BYTES:
        data = path.read_bytes()
        if b"\n" not in data and b"\r" not in data:
            source = pa.BufferReader(data + b"\n")
    return pacsv.open_csv(source, **options)


def _csv_kinds(path: Path) -> dict[str, str]:
    """Column kinds of a CSV file, after checking that it is text with a header line.

    Raises
    ------
    InputError
        For an empty file, a binary file, a first line that is data rather than column
        names, or a column name given twice.
    """
    if path.stat().st_size == 0:
        raise InputError(
            f"{path}: the file is empty (0 bytes). A CSV input needs a header line naming the "
            "columns (source_id,ra,dec,...) followed by one line per star; re-export the file "
            "or leave it out."
        )
    if not _is_compressed(path):
        with open(path, "rb") as fh:
            head = fh.read(_CSV_HEAD_BYTES)
        what = next((w for magic, w in _MAGIC.items() if head.startswith(magic)), None)
        # control characters other than tab, line breaks, form feed and DOS end-of-file
        control = sum(head.count(bytes([b])) for b in (*range(9), 11, *range(14, 26), 127))
        control += sum(head.count(bytes([b])) for b in range(27, 32))
        if what is not None or b"\x00" in head or control > 0.01 * len(head):
            raise InputError(
                f"{path}: is not a CSV text file: it starts with binary data"
                f"{f'; it looks like {what}' if what else ''}. Give bigcat the CSV export "
                "of the table (UTF-8 text, a header line, one line per star) or the Parquet "
                "or FITS file under its own extension."
            )
    try:
        reader = _open_csv(path, read_options=pacsv.ReadOptions(block_size=1 << 22))
    except pa.ArrowInvalid as exc:
        if "Empty CSV file" in str(exc):
            raise InputError(
                f"{path}: holds no header line (only blank lines). A CSV input needs a header "
                "line naming the columns (source_id,ra,dec,...) followed by one line per star; "
                "re-export the file or leave it out."
            ) from exc
        raise
    names = list(reader.schema.names)
    _check_csv_header(path, names)
    return {f.name: _arrow_kind(f.type) for f in reader.schema}


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _check_csv_header(path: Path, names: list[str]) -> None:
    """The first line of a CSV file must name its columns, each once.

    Raises
    ------
    InputError
        If the names are mostly numbers or blank (the file has no header line: its first
        line is data), or if a name occurs twice (which of the columns is meant?).
    """
    named = [n for n in names if n.strip()]
    numbers = [n for n in named if _is_number(n)]
    sep = next((d for d in ";\t|" if len(named) == 1 and d in named[0]), None)
    if sep is not None:
        raise InputError(
            f"{path}: the header is a single column ({named[0][:60]!r}...): the file separates "
            f"its fields with {sep!r}, not commas. bigcat reads comma-separated CSV; export "
            "the table with commas (or as Parquet or FITS) and run again."
        )
    if not named or 2 * len(numbers) >= len(named):
        first = ",".join(names)
        first = first if len(first) <= 80 else first[:77] + "..."
        raise InputError(
            f"{path}: has no header line: its first line ({first!r}) is data, not column "
            "names. bigcat needs a first line naming the columns, e.g. "
            "'source_id,ra,dec,parallax,...' (the names of SCHEMA.md, or map yours in "
            "[columns]); add that line to the file and run again."
        )
    seen: dict[str, int] = {}
    for i, name in enumerate(names):
        if not name.strip():
            continue
        if name in seen:
            raise InputError(
                f"{path}: the header names column '{name}' twice (columns {seen[name] + 1} and "
                f"{i + 1}), so it is not clear which one is meant. Rename or remove one of them "
                "and run again."
            )
        seen[name] = i


def csv_parse_error(path: Path, exc: Exception) -> InputError:
    """The error for a CSV file Arrow cannot split into rows: names the first data row
    whose number of fields differs from the header's (a ragged row), found by reading the
    file again (only on this error path)."""
    bad: list[tuple[int | None, int, int]] = []

    def handler(row: pacsv.InvalidRow) -> str:
        if not bad:
            bad.append((row.number, row.expected_columns, row.actual_columns))
        return "skip"

    try:
        for _ in _open_csv(
            path,
            read_options=pacsv.ReadOptions(block_size=1 << 24, use_threads=False),
            parse_options=pacsv.ParseOptions(invalid_row_handler=handler),
        ):
            if bad:
                break
    except Exception:  # noqa: BLE001 - the first error is the one reported
        pass
    if not bad:
        return unreadable(path, "csv", exc)
    number, expected, actual = bad[0]
    where = f"data row {number - 1}" if number is not None else "a data row"
    return InputError(
        f"{path}: {where} has {actual} field(s) where the header has {expected} (a ragged "
        "row: a missing or extra delimiter, an unquoted comma or an unclosed quote in a text "
        "value, or a line cut short). Fix or remove that row and run again."
    )


def unreadable(path: Path, fmt: str, exc: Exception) -> InputError:
    """The error for an input file its reader could not read (any reader failure). The
    reader's message may quote the file's bytes: unprintable ones are shown as '?'."""
    detail = "".join(ch if ch.isprintable() else "?" for ch in str(exc))
    return InputError(
        f"{path}: cannot be read as {fmt.upper()} ({type(exc).__name__}: {detail}). "
        "Check that the file is complete and of the type its name says."
    )


def _table_hdu(hdul, path: Path):
    """The first table extension of an open FITS file.

    Raises
    ------
    InputError
        If there is none: the file is cut short (within a header), or holds only images.
    """
    from astropy.io import fits

    for hdu in hdul:
        if isinstance(hdu, fits.BinTableHDU | fits.TableHDU):
            return hdu
    cut = _fits_cut_short(path)
    if cut:
        raise InputError(
            f"{path}: the FITS file is truncated ({cut}), and no complete table extension was "
            "found. Copy or download it again (compare its size or checksum with the source)."
        )
    found = ", ".join(type(h).__name__ for h in hdul) or "no HDU"
    raise InputError(
        f"{path}: FITS file has no table extension (it holds {found}). bigcat reads the first "
        "binary or ASCII table extension; write the catalogue as a table (e.g. with "
        "astropy.table.Table.write) and run again."
    )


def _fits_cut_short(path: Path) -> str | None:
    """Why a FITS file looks truncated ('its size ...'), or None. A plain FITS file is whole
    2880-byte blocks; a gzip-compressed one must decompress to its end."""
    name = path.name.lower()
    if name.endswith(".gz"):
        import gzip

        try:
            with gzip.open(path, "rb") as fh:
                while fh.read(1 << 22):
                    pass
        except (OSError, EOFError) as exc:
            return f"its gzip stream is incomplete: {exc}"
        return None
    size = path.stat().st_size
    if size % 2880:
        return f"its size, {size} bytes, is not a whole number of 2880-byte FITS blocks"
    return None


def _check_fits_size(hdu, path: Path) -> None:
    """A plain FITS table's data must be in the file whole (its header says how many bytes).

    Raises
    ------
    InputError
        If the file ends before the last row (a cut-short download or copy).
    """
    if path.name.lower().endswith(".gz"):
        return  # the size on disk is the compressed one; a short stream fails on reading
    header = hdu.header
    need = int(header.get("NAXIS1", 0)) * int(header.get("NAXIS2", 0))
    need += int(header.get("PCOUNT", 0))
    have = path.stat().st_size - int(hdu.fileinfo()["datLoc"])
    if have < need:
        rows = int(header.get("NAXIS2", 0))
        raise InputError(
            f"{path}: the FITS file is truncated: its table header promises {rows} rows "
            f"({need} bytes of data), but the file ends {need - have} byte(s) short of them. "
            "Copy or download it again (compare its size or checksum with the source)."
        )


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
            reader = _open_csv(
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
        if fmt == "csv" and "CSV parse error" in str(exc):
            raise csv_parse_error(path, exc) from exc
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
    nullable integer type (``Int64`` etc.: the column stays an integer column); a vector
    column becomes one array per row."""
    values = np.asarray(values)
    values = values.astype(values.dtype.newbyteorder("="))
    if values.ndim > 1:  # a vector column: one list per row (a list column in Parquet)
        return pd.Series(list(values), dtype=object)
    if values.dtype.kind in "iu" and isinstance(null, int | np.integer):
        mask = values == null
        if mask.any():
            nullable = ("UInt" if values.dtype.kind == "u" else "Int") + str(8 * values.itemsize)
            return pd.Series(pd.array(values, dtype=nullable)).mask(mask)
    return values


def first_non_numeric(path: Path, column: str) -> tuple[int, str] | None:
    """The first value of a CSV column that is not a number (nor empty): ``(data row,
    value)`` with 1-based data rows, or None. Streams the column as text."""
    reader = _open_csv(
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
