"""Property tests of `bigcat ingest` over small malformed input files (issue 24, item 6).

Every case ends in a bigcat error whose message names the file, or in a catalogue of every
row; never another exception type, and never a partial output, a lock or a temporary file
left behind. Covered: CSV, Parquet and FITS tables with column subsets, wrong dtypes,
NaN/inf and duplicate ids; FITS faults (TNULL nulls, text where a number belongs, files cut
short, no table HDU, zero rows, vector columns, cut gzip streams); header-less and malformed
CSV (first line is data, ragged rows, a header alone, empty and blank files, binary data
named .csv, units in a numeric column, other delimiters, a column named twice).
Derandomised (the same examples on every run and in CI) and small.
"""

from __future__ import annotations

import gzip
import io
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from astropy.io import fits
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from bigcat.atomic import is_temporary
from bigcat.config import Config, IngestConfig
from bigcat.errors import BigcatError, InputError
from bigcat.schema import REQUIRED_COLUMNS
from bigcat.stages.ingest import ingest

CONFIG = Config(ingest=IngestConfig(nside=4, chunk_rows=700, partition_rows=0))
REQUIRED = sorted(REQUIRED_COLUMNS)

FUZZ = settings(
    derandomize=True,
    max_examples=12,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
#: Per fault kind of the file tests (each kind is its own parametrised test).
FAULT_FUZZ = settings(FUZZ, max_examples=6)

cases = st.fixed_dictionaries(
    {
        "rows": st.sampled_from([0, 1, 7, 40]),
        "drop": st.lists(st.sampled_from(REQUIRED), max_size=2, unique=True),
        "retype": st.lists(
            st.tuples(st.sampled_from(REQUIRED), st.sampled_from(["int", "float", "str"])),
            max_size=2,
        ),
        "poison": st.lists(
            st.tuples(st.sampled_from(REQUIRED), st.sampled_from([np.nan, np.inf, -np.inf])),
            max_size=3,
        ),
        "duplicate_ids": st.booleans(),
        "fmt": st.sampled_from(["csv", "parquet"]),
    }
)


def _make(table: pd.DataFrame, case: dict) -> pd.DataFrame:
    table = table.copy()
    n = len(table)
    for col, value in case["poison"]:
        if n and col in table:
            table[col] = table[col].astype(float)
            table.loc[table.index[n // 2], col] = value
    for col, kind in case["retype"]:
        if col in table:
            if kind == "str":
                table[col] = table[col].astype(str)
            elif kind == "int":
                table[col] = np.nan_to_num(table[col].astype(float), posinf=0, neginf=0).astype(
                    np.int64
                )
            else:
                table[col] = table[col].astype(float)
    if case["duplicate_ids"] and n > 1:
        table.loc[table.index[-1], "source_id"] = table["source_id"].iloc[0]
    return table.drop(columns=[c for c in case["drop"] if c in table])


def _write(table: pd.DataFrame, path: Path) -> None:
    if path.suffix == ".csv":
        table.to_csv(path, index=False)
    elif path.suffix == ".parquet":
        table.to_parquet(path, index=False)
    else:
        _fits_hdu(table).writeto(path)


def _fits_hdu(table: pd.DataFrame, nulls: dict[str, int] | None = None) -> fits.BinTableHDU:
    """A FITS binary table of ``table``: int64 'K' (with TNULL from ``nulls``), float64 'D',
    anything else fixed-width ASCII text."""
    cols = []
    for name in table.columns:
        values = table[name]
        if pd.api.types.is_integer_dtype(values):
            null = (nulls or {}).get(name)
            cols.append(fits.Column(name, "K", array=values.to_numpy(np.int64), null=null))
        elif pd.api.types.is_float_dtype(values):
            cols.append(fits.Column(name, "D", array=values.to_numpy(np.float64)))
        else:
            text = np.array([str(v) for v in values], dtype="S")
            width = max(1, text.dtype.itemsize if len(text) else 1)
            cols.append(fits.Column(name, f"{width}A", array=text))
    return fits.BinTableHDU.from_columns(cols)


def _printable(text: str) -> bool:
    return all(ch.isprintable() or ch == "\n" for ch in text)


def _ingest_outcome(path: Path, client, rows: int | None = None) -> BigcatError | None:
    """Ingest ``path`` (inside its own scratch directory) and check the outcome: a bigcat
    error whose message names the file, or a catalogue (of ``rows`` rows, if given); either
    way nothing but the input (and the catalogue) is left in the directory. Returns the
    error, or None for a catalogue. Any other exception fails the test with its traceback."""
    work = path.parent
    before = set(work.iterdir())
    out = work / "cat"
    try:
        catalog = ingest([path], out, CONFIG, client)
    except BigcatError as exc:
        event(f"error {type(exc).__name__}")
        message = str(exc)
        assert message.strip(), "a bigcat error without a message"
        assert path.name in message, f"the message does not name the file: {message}"
        assert _printable(message), f"unprintable characters in the message: {message!r}"
        left = set(work.iterdir()) - before
        assert not left, f"a failed ingest left {sorted(p.name for p in left)}"
        return exc
    event("catalogue")
    if rows is not None:
        assert catalog.n_rows() == rows
    left = set(work.iterdir()) - before - {out}
    assert not left, f"an ingest left {sorted(p.name for p in left)}"
    leftovers = [p for p in work.rglob(".*") if is_temporary(p)]
    assert not leftovers, leftovers
    return None


def _scratch():
    return Path(tempfile.mkdtemp(prefix="bigcat-fuzz-"))


@FUZZ
@given(case=cases)
def test_ingest_ends_in_a_bigcat_error_or_a_catalogue(client, input_table, case):
    work = _scratch()
    try:
        table = _make(input_table(case["rows"], seed=5), case)
        path = work / f"input.{case['fmt']}"
        _write(table, path)
        _ingest_outcome(path, client, rows=len(table))
    finally:
        shutil.rmtree(work, ignore_errors=True)


@FUZZ
@given(case=cases.map(lambda case: {**case, "fmt": "fits"}))
def test_fits_ingest_ends_in_a_bigcat_error_or_a_catalogue(client, input_table, case):
    """The same cases as FITS binary tables (text columns as fixed-width ASCII)."""
    work = _scratch()
    try:
        table = _make(input_table(case["rows"], seed=5), case)
        path = work / "input.fits"
        _write(table, path)
        exc = _ingest_outcome(path, client, rows=len(table))
        if any(kind == "str" and col not in case["drop"] for col, kind in case["retype"]):
            assert isinstance(exc, InputError), "a text column was read as numbers"
    finally:
        shutil.rmtree(work, ignore_errors=True)


INT_COLUMNS = sorted(c for c, kind in REQUIRED_COLUMNS.items() if kind == "int")
FLOAT_COLUMNS = sorted(c for c, kind in REQUIRED_COLUMNS.items() if kind == "float")
ROWS = st.sampled_from([1, 7, 40])

FITS_FAULTS = {
    # integer columns with TNULL nulls (required: an error naming the row; the zero-point
    # flag column and extra columns: kept missing/filled, a catalogue)
    "tnull": st.fixed_dictionaries(
        {
            "rows": ROWS,
            "column": st.sampled_from([*INT_COLUMNS, "astrometric_params_solved", "extra_int"]),
            "null": st.sampled_from([-1, -999, -(2**63)]),
            "null_rows": st.lists(st.integers(0, 39), min_size=1, max_size=3, unique=True),
        }
    ),
    # a text column where a number is expected
    "text_number": st.fixed_dictionaries(
        {
            "rows": ROWS,
            "column": st.sampled_from(REQUIRED),
            "unit": st.sampled_from(["", "mas", " deg"]),
        }
    ),
    # the file cut short by 1 byte up to nearly all of it
    "truncated": st.fixed_dictionaries({"rows": ROWS, "cut": st.floats(0.0001, 0.999)}),
    # no table HDU: only a primary HDU (empty or an image), or a primary and an image
    "no_table": st.sampled_from(["empty", "image", "image_extension"]),
    # a zero-row table (with or without an extra text column)
    "zero_rows": st.booleans(),
    # a vector column: extra (kept as a list column) or a required one (an error)
    "vector": st.fixed_dictionaries(
        {"rows": ROWS, "column": st.sampled_from(["extra_vec", "parallax", "source_id"])}
    ),
    # .fits.gz whose gzip stream is cut short
    "gzip_cut": st.fixed_dictionaries({"rows": ROWS, "cut": st.floats(0.001, 0.999)}),
}


@pytest.mark.parametrize("fault", sorted(FITS_FAULTS))
@pytest.mark.filterwarnings("ignore::astropy.utils.exceptions.AstropyUserWarning")  # cut files
@FAULT_FUZZ
@given(data=st.data())
def test_fits_faults_end_in_a_bigcat_error_or_a_catalogue(client, input_table, fault, data):
    params = data.draw(FITS_FAULTS[fault], label=fault)
    work = _scratch()
    try:
        path = work / ("input.fits.gz" if fault == "gzip_cut" else "input.fits")
        rows = params["rows"] if isinstance(params, dict) else 0
        table = input_table(rows, seed=5)
        if fault == "tnull":
            column, null = params["column"], params["null"]
            if column == "extra_int":
                table[column] = np.arange(rows, dtype=np.int64)
            hits = sorted(i for i in params["null_rows"] if i < rows)
            table.loc[hits, column] = null
            _fits_hdu(table, nulls={column: null}).writeto(path)
            exc = _ingest_outcome(path, client)
            if hits and column in REQUIRED_COLUMNS:
                assert isinstance(exc, InputError)
                assert f"'{column}'" in str(exc) and f"data row {hits[0] + 1}" in str(exc)
            else:
                assert exc is None, exc
        elif fault == "text_number":
            column = params["column"]
            table[column] = [f"{v}{params['unit']}" for v in table[column]]
            _fits_hdu(table).writeto(path)
            exc = _ingest_outcome(path, client)
            assert isinstance(exc, InputError) and f"'{column}'" in str(exc)
        elif fault == "truncated":
            whole = io.BytesIO()
            _fits_hdu(table).writeto(whole)
            data_bytes = whole.getvalue()
            cut = max(1, int(params["cut"] * len(data_bytes)))
            path.write_bytes(data_bytes[:-cut])
            exc = _ingest_outcome(path, client, rows=rows)  # a catalogue only of every row
            padding = (-rows * table.shape[1] * 8) % 2880
            if cut > padding:  # rows are missing: never a catalogue
                assert isinstance(exc, InputError)
                assert "truncated" in str(exc) or "cannot be read" in str(exc), exc
        elif fault == "no_table":
            image = np.zeros((4, 4), np.float32)
            hdus = {
                "empty": [fits.PrimaryHDU()],
                "image": [fits.PrimaryHDU(image)],
                "image_extension": [fits.PrimaryHDU(), fits.ImageHDU(image)],
            }[params]
            fits.HDUList(hdus).writeto(path)
            exc = _ingest_outcome(path, client)
            assert isinstance(exc, InputError) and "no table extension" in str(exc)
        elif fault == "zero_rows":
            if params:
                table["name"] = pd.Series([], dtype=object)
            _fits_hdu(table).writeto(path)
            assert _ingest_outcome(path, client, rows=0) is None
        elif fault == "vector":
            column = params["column"]
            hdu = _fits_hdu(table.drop(columns=[column], errors="ignore"))
            vec = fits.Column(column, "3D", array=np.ones((rows, 3)))
            fits.BinTableHDU.from_columns([*hdu.columns, vec]).writeto(path)
            exc = _ingest_outcome(path, client, rows=rows)
            if column in REQUIRED_COLUMNS:
                assert isinstance(exc, InputError) and "array" in str(exc)
            else:
                assert exc is None, exc
        else:  # gzip_cut
            whole = io.BytesIO()
            _fits_hdu(table).writeto(whole)
            packed = gzip.compress(whole.getvalue())
            path.write_bytes(packed[: max(1, int(params["cut"] * len(packed)))])
            assert isinstance(_ingest_outcome(path, client), InputError)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _csv_lines(table: pd.DataFrame) -> list[str]:
    return table.to_csv(index=False).splitlines()


CSV_FAULTS = {
    # the first line is data (no header), with or without some columns
    "no_header": st.fixed_dictionaries(
        {"rows": ROWS, "drop": st.lists(st.sampled_from(REQUIRED), max_size=2, unique=True)}
    ),
    # one data row with too many or too few fields
    "ragged": st.fixed_dictionaries(
        {"rows": ROWS, "row": st.integers(0, 39), "fields": st.sampled_from([-3, -1, 1, 2])}
    ),
    # a header alone: with a line break (LF or CRLF), without one, with blank lines after
    "header_only": st.sampled_from(["\n", "\r\n", "", "\n\n\n"]),
    # empty and blank files
    "empty": st.sampled_from([b"", b"\n", b"\r\n\r\n", b"   \n  \n", b"\t"]),
    # binary data named .csv: random bytes, or a real Parquet/FITS/gzip file
    "binary": st.one_of(
        st.binary(min_size=1, max_size=3000), st.sampled_from(["parquet", "fits", "gzip"])
    ),
    # text like "0.5mas" in a numeric column: one row or every row
    "units": st.fixed_dictionaries(
        {
            "rows": ROWS,
            "column": st.sampled_from(REQUIRED),
            "row": st.one_of(st.none(), st.integers(0, 39)),
            "text": st.sampled_from(["0.5mas", "12 deg", "1,5", "--"]),
        }
    ),
    # fields separated by ';', tabs or '|', and a column named twice in the header
    "delimiter": st.sampled_from([";", "\t", "|"]),
    "duplicate_name": st.fixed_dictionaries(
        {"column": st.sampled_from(REQUIRED), "extra": st.booleans()}
    ),
}


@pytest.mark.parametrize("fault", sorted(CSV_FAULTS))
@FAULT_FUZZ
@given(data=st.data())
def test_malformed_csv_ends_in_a_bigcat_error_or_a_catalogue(client, input_table, fault, data):
    params = data.draw(CSV_FAULTS[fault], label=fault)
    work = _scratch()
    try:
        path = work / "input.csv"
        rows = params.get("rows", 7) if isinstance(params, dict) else 7
        table = input_table(rows, seed=5)
        lines = _csv_lines(table)
        if fault == "no_header":
            path.write_text("\n".join(_csv_lines(table.drop(columns=params["drop"]))[1:]) + "\n")
            exc = _ingest_outcome(path, client)
            assert isinstance(exc, InputError) and "no header line" in str(exc)
        elif fault == "ragged":
            i = params["row"] % rows
            fields = lines[1 + i].split(",")
            k = params["fields"]
            fields = fields[:k] if k < 0 else fields + ["1.5"] * k
            lines[1 + i] = ",".join(fields)
            path.write_text("\n".join(lines) + "\n")
            exc = _ingest_outcome(path, client)
            assert isinstance(exc, InputError) and f"data row {i + 1} " in str(exc), exc
        elif fault == "header_only":
            path.write_bytes((lines[0] + params).encode())
            assert _ingest_outcome(path, client, rows=0) is None
        elif fault == "empty":
            path.write_bytes(params)
            assert isinstance(_ingest_outcome(path, client), InputError)
        elif fault == "binary":
            if isinstance(params, bytes):
                path.write_bytes(params)
            else:
                real = work / f"real.{params}"
                if params == "gzip":
                    real.write_bytes(gzip.compress("\n".join(lines).encode()))
                else:
                    _write(table, real)
                path.write_bytes(real.read_bytes())
                real.unlink()
            assert isinstance(_ingest_outcome(path, client), InputError)
        elif fault == "units":
            column = params["column"]
            text = table[column].astype(str).astype(object)
            at = None if params["row"] is None else params["row"] % rows
            if at is None:
                text[:] = params["text"]
            else:
                text.iloc[at] = params["text"]
            table[column] = text
            table.to_csv(path, index=False)
            exc = _ingest_outcome(path, client)
            assert isinstance(exc, InputError) and f"'{column}'" in str(exc), exc
            assert f"row {1 if at is None else at + 1}" in str(exc), exc
        elif fault == "delimiter":
            table.to_csv(path, index=False, sep=params)
            exc = _ingest_outcome(path, client)
            assert isinstance(exc, InputError) and repr(params) in str(exc), exc
        else:  # duplicate_name
            column = params["column"]
            if params["extra"]:
                table["extra"] = 1.0
            names = list(table.columns)
            names[-1] = column  # the last column (astrometric_params_solved or extra) renamed
            table.columns = names
            table.to_csv(path, index=False)
            exc = _ingest_outcome(path, client)
            assert isinstance(exc, InputError), exc
    finally:
        shutil.rmtree(work, ignore_errors=True)
