"""iter_table_pieces: a partition file read row group by row group in bounded pieces."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bigcat.catalog.store import iter_table_pieces, read_table_checked, write_frame_atomic
from bigcat.errors import CatalogError


def _file(tmp_path, n, row_group_rows):
    df = pd.DataFrame({"a": np.arange(n, dtype=float), "b": np.arange(n) % 3 == 0})
    path = tmp_path / "Npix=1.parquet"
    write_frame_atomic(df, path, fingerprint="fp", row_group_rows=row_group_rows)
    return path


@pytest.mark.parametrize(
    ("n", "row_group_rows", "max_rows"),
    [(23, 5, 4), (23, 5, 7), (23, 100, 4), (23, 5, 100), (1, 5, 1)],
)
def test_pieces_are_bounded_and_rebuild_the_file(tmp_path, n, row_group_rows, max_rows):
    path = _file(tmp_path, n, row_group_rows)
    pieces = list(iter_table_pieces(path, max_rows))
    assert all(0 < p.num_rows <= max_rows for p, _, _ in pieces)
    assert [f for _, f, _ in pieces] == [True] + [False] * (len(pieces) - 1)
    assert [last for _, _, last in pieces] == [False] * (len(pieces) - 1) + [True]
    whole = pq.read_table(path)
    assert pa.concat_tables([p for p, _, _ in pieces]).equals(whole)
    assert all(p.schema.equals(whole.schema, check_metadata=True) for p, _, _ in pieces)


def test_an_empty_file_is_one_empty_piece(tmp_path):
    path = _file(tmp_path, 0, 5)
    [(piece, first, last)] = list(iter_table_pieces(path, 4))
    assert piece.num_rows == 0 and first and last
    assert piece.schema.names == ["a", "b"]


def test_missing_and_truncated_files_name_the_file(tmp_path):
    with pytest.raises(CatalogError, match=r"Npix=9.parquet: partition file is missing\. redo"):
        list(iter_table_pieces(tmp_path / "Npix=9.parquet", 4, rebuild="redo"))
    path = _file(tmp_path, 23, 5)
    path.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(CatalogError, match="corrupted or truncated"):
        list(iter_table_pieces(path, 4))


def test_read_table_checked_equals_read_table_and_names_missing_columns(tmp_path):
    path = _file(tmp_path, 23, 5)
    for columns in (None, ["b"], ["b", "a"]):
        got = read_table_checked(path, columns)
        assert got.equals(pq.read_table(path, columns=columns))
        assert got.schema.metadata == pq.read_table(path, columns=columns).schema.metadata
    with pytest.raises(CatalogError, match=r"Npix=1.parquet: no column\(s\) c, d in .* redo"):
        read_table_checked(path, ["a", "c", "d"], rebuild="redo")
    with pytest.raises(CatalogError, match="partition file is missing"):
        read_table_checked(tmp_path / "nope.parquet")


def test_a_full_disk_is_a_clear_error_and_keeps_what_was_written(tmp_path, monkeypatch):
    import errno

    import bigcat.catalog.store as store

    path = _file(tmp_path, 23, 5)
    before = path.read_bytes()

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(store.pq, "write_table", full)
    with pytest.raises(CatalogError, match=r"no space left on the device .* Npix=1.parquet"):
        write_frame_atomic(pd.DataFrame({"a": [1.0]}), path)
    assert path.read_bytes() == before  # the earlier file is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Npix=1.parquet"]  # no temporary

    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(store.pq, "write_table", denied)
    with pytest.raises(PermissionError):  # other errors pass through unchanged
        write_frame_atomic(pd.DataFrame({"a": [1.0]}), path)


def test_partition_files_dictionary_encode_only_text_columns(tmp_path):
    """Float columns are written plain (a dictionary for nearly-distinct floats is wasted work
    and space); text columns keep their dictionary; the values read back unchanged."""
    rng = np.random.default_rng(3)
    df = pd.DataFrame(
        {
            "parallax": rng.normal(size=5000),
            "flags": rng.integers(0, 4, size=5000).astype(np.int8),
            "survey": rng.choice(["apogee", "lamost"], size=5000),
        }
    )
    path = tmp_path / "part.parquet"
    write_frame_atomic(df, path)
    meta = pq.ParquetFile(path).metadata.row_group(0)
    encodings = {meta.column(i).path_in_schema: meta.column(i).encodings for i in range(3)}
    assert not any("DICTIONARY" in e for e in encodings["parallax"])
    assert not any("DICTIONARY" in e for e in encodings["flags"])
    assert any("DICTIONARY" in e for e in encodings["survey"])
    pd.testing.assert_frame_equal(pd.read_parquet(path), df)
