"""Input readers: malformed CSV and FITS files end in an InputError that names the file, the
row or column where it can, and the fix (found by tests/stages/test_ingest_fuzz.py)."""

from __future__ import annotations

import gzip
import io

import numpy as np
import pandas as pd
import pytest
from astropy.io import fits

from bigcat.catalog.readers import plan_chunks, read_chunk, read_column_kinds, unreadable
from bigcat.errors import InputError

CSV = "source_id,ra,dec\n1,10.5,-3.0\n2,11.5,4.0\n3,12.5,5.0\n4,13.5,6.0\n"


def _fits_bytes(n: int = 20, vector: bool = False) -> bytes:
    cols = [
        fits.Column("source_id", "K", array=np.arange(n)),
        fits.Column("ra", "D", array=np.linspace(0, 10, n)),
    ]
    if vector:
        cols.append(fits.Column("vec", "3D", array=np.arange(3.0 * n).reshape(n, 3)))
    buf = io.BytesIO()
    fits.BinTableHDU.from_columns(cols).writeto(buf)
    return buf.getvalue()


def _rows(path, columns):
    spec = plan_chunks(path, 0, read_column_kinds(path)[1], 700)[0]
    frames = [frame for _, frame in read_chunk(spec, columns, 700)]
    return pd.concat(frames) if frames else pd.DataFrame(columns=columns)


def _error(path) -> str:
    with pytest.raises(InputError) as info:
        read_column_kinds(path)
    message = str(info.value)
    assert str(path) in message
    assert all(ch.isprintable() or ch == "\n" for ch in message), message
    return message


@pytest.mark.filterwarnings("ignore::astropy.utils.exceptions.AstropyUserWarning")
def test_fits_cut_within_the_data_is_named_truncated_before_any_row_is_read(tmp_path):
    path = tmp_path / "t.fits"
    path.write_bytes(_fits_bytes()[:-2700])  # 20 rows x 16 bytes + 2560 of padding: rows cut
    message = _error(path)
    assert "truncated" in message and "promises 20 rows" in message
    assert "download it again" in message


def test_fits_cut_within_the_padding_still_reads_every_row(tmp_path):
    path = tmp_path / "t.fits"
    path.write_bytes(_fits_bytes()[:-100])  # only the zero padding of the last block
    with pytest.warns(UserWarning, match="truncated"):
        assert len(_rows(path, ["source_id"])) == 20


@pytest.mark.filterwarnings("ignore::astropy.utils.exceptions.AstropyUserWarning")
@pytest.mark.parametrize(
    ("name", "cut", "why"),
    [
        ("t.fits", 5000, "not a whole number of 2880-byte"),  # within the table's header
        ("t.fits.gz", None, "gzip stream is incomplete"),
    ],
)
def test_fits_cut_within_a_header_is_named_truncated(tmp_path, name, cut, why):
    path = tmp_path / name
    whole = _fits_bytes()
    data = whole[:cut] if cut else gzip.compress(whole)[:-300]
    path.write_bytes(data)
    message = _error(path)
    assert "truncated" in message and why in message


@pytest.mark.parametrize(
    "hdus",
    [[fits.PrimaryHDU()], [fits.PrimaryHDU(), fits.ImageHDU(np.zeros((2, 2)))]],
)
def test_fits_without_a_table_says_what_it_holds_and_how_to_write_one(tmp_path, hdus):
    path = tmp_path / "t.fits"
    fits.HDUList(hdus).writeto(path)
    message = _error(path)
    assert "no table extension (it holds PrimaryHDU" in message
    assert "Table.write" in message


def test_fits_vector_and_text_columns_have_their_own_kinds_and_vectors_read_as_lists(tmp_path):
    path = tmp_path / "t.fits"
    path.write_bytes(_fits_bytes(5, vector=True))
    with fits.open(path, mode="update") as hdul:  # add a text column
        table = hdul[1]
        cols = [*table.columns, fits.Column("name", "2A", array=np.array([b"ab"] * 5))]
        hdul[1] = fits.BinTableHDU.from_columns(cols)
    kinds, n = read_column_kinds(path)
    assert (kinds["vec"], kinds["name"], kinds["ra"], n) == ("array", "text", "float", 5)
    frame = _rows(path, ["source_id", "vec"])
    assert [list(v) for v in frame["vec"]][1] == [3.0, 4.0, 5.0]


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"", "empty (0 bytes)"),
        (b"\n\n", "no header line (only blank lines)"),
        (b"\x00\x01\x02garbage\xff" * 50, "not a CSV text file"),
        (b"PAR1\x15\x04\x15" + bytes(range(256)), "looks like a Parquet file"),
        (b"\xff\xfes\x00o\x00", "UTF-16"),
        (CSV.split("\n", 1)[1].encode(), "no header line: its first line ('1,10.5,-3.0') is data"),
        (CSV.replace(",", ";").encode(), "separates its fields with ';'"),
        (CSV.replace("dec", "ra").encode(), "names column 'ra' twice (columns 2 and 3)"),
        (CSV.replace("2,11.5,4.0", "2,11.5,4.0,9").encode(), "data row 2 has 4 field(s)"),
        (CSV.replace("2,11.5,4.0", '"2,11.5,4.0').encode(), "data row 2 has 1 field(s)"),
    ],
)
def test_malformed_csv_is_named_with_the_fix(tmp_path, data, expected):
    path = tmp_path / "t.csv"
    path.write_bytes(data)
    assert expected in _error(path)


def test_csv_ragged_row_is_named_when_reading_rows_too(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text(CSV.replace("3,12.5,5.0", "3,12.5"))
    spec = plan_chunks(path, 0, None, 700)[0]
    with pytest.raises(InputError, match="data row 3 has 2 field"):
        list(read_chunk(spec, ["source_id", "ra"], 700))


@pytest.mark.parametrize("end", ["", "\n", "\r\n"])
def test_csv_header_alone_reads_as_zero_rows_with_or_without_a_line_break(tmp_path, end):
    path = tmp_path / "t.csv"
    path.write_text(CSV.split("\n", 1)[0] + end)
    assert list(read_column_kinds(path)[0]) == ["source_id", "ra", "dec"]
    assert len(_rows(path, ["source_id", "ra"])) == 0


def test_unreadable_file_message_shows_quoted_bytes_printably(tmp_path):
    message = str(unreadable(tmp_path / "t.csv", "csv", ValueError("row: \x00\x1b[2Jx\x7f")))
    assert "row: ??[2Jx?" in message and message.isprintable()
