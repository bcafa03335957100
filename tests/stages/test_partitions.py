"""process_partition_group: pieces of at most chunk_rows rows, the same output and summaries
as one kernel call per partition; nothing left behind after a failure."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from bigcat.catalog.store import (
    FINGERPRINT_KEY,
    ROW_GROUP_ROWS,
    partition_path,
    write_frame_atomic,
)
from bigcat.stages.partitions import SUMMARY_KEY, merge_summaries, process_partition_group

SIZES = {(5, 10): 7, (5, 11): 0, (5, 12): 23, (6, 52): 3}


def _kernel(df: pd.DataFrame, params: dict) -> pd.DataFrame:
    calls = params["calls"]
    calls.append(len(df))
    if len(calls) > params.get("fail_after", 10**9):
        raise ValueError("kernel failed")
    return df.assign(y=df["x"] * 2.0, flag=df["x"] > 5, note=None)


def _summarise(df: pd.DataFrame) -> dict:
    return {"rows": len(df), "flagged": int(df["flag"].sum()), "sums": [float(df["y"].sum()), 0]}


@pytest.fixture(params=[ROW_GROUP_ROWS, 5], ids=["one-row-group", "row-groups-of-5"])
def catalogue(tmp_path, request):
    """Input partitions in one row group each, or in row groups of 5 rows (read one by one)."""
    rng = np.random.default_rng(0)
    for (order, pixel), n in SIZES.items():
        df = pd.DataFrame({"x": rng.integers(0, 10, n).astype(float), "i": np.arange(n)})
        write_frame_atomic(
            df, partition_path(tmp_path / "in", order, pixel), row_group_rows=request.param
        )
    return tmp_path


def _run(root, chunk_rows, out="out", **params):
    params = {"calls": [], **params}
    res = process_partition_group(
        list(SIZES), str(root / "in"), str(root / out), kernel=_kernel, params=params,
        summarise=_summarise, fingerprint="fp1", chunk_rows=chunk_rows,
    )  # fmt: skip
    return res, params["calls"]


@pytest.mark.parametrize("chunk_rows", [1, 4, 10, 1000])
def test_pieces_give_the_same_files_and_summaries(catalogue, chunk_rows):
    whole, calls_whole = _run(catalogue, 10**6, out="whole")
    assert calls_whole == [sum(SIZES.values())]
    res, calls = _run(catalogue, chunk_rows)
    assert max(calls) <= chunk_rows and sum(calls) == sum(SIZES.values())
    files = []
    for a, b in zip(res, whole, strict=True):
        fa, fb = a.pop("file"), b.pop("file")  # the bytes differ (row groups), not the rows
        files.append(fa)
        assert fa["rows"] == fb["rows"] == a["rows"]
        assert a == b and a["computed"]
        assert a["rows"] == SIZES[(a["order"], a["pixel"])]
    for key in SIZES:
        path = partition_path(catalogue / "out", *key)
        got = pq.read_table(path)
        want = pq.read_table(partition_path(catalogue / "whole", *key))
        assert got.to_pandas().equals(want.to_pandas())
        meta = pq.read_metadata(path).metadata
        assert meta[FINGERPRINT_KEY] == b"fp1"
        summary = json.loads(meta[SUMMARY_KEY])
        assert summary == {k: v for k, v in res[list(SIZES).index(key)].items() if k in summary}
    # a re-run reuses every partition (stored summaries, no kernel call)
    again, calls = _run(catalogue, chunk_rows)
    assert calls == [] and all(not r["computed"] for r in again)
    assert [r.pop("file") for r in again] == files  # recorded now: no records were given
    assert [{**r, "computed": True} for r in again] == res


def test_a_failing_piece_leaves_no_partial_file(catalogue):
    with pytest.raises(ValueError, match="kernel failed"):
        _run(catalogue, 4, fail_after=3)
    out = catalogue / "out" / "dataset"
    files = sorted(p.name for p in out.rglob("*")) if out.exists() else []
    # only partitions whose every piece was written exist, and no temporary files
    assert not [f for f in files if f.endswith(".tmp")]
    done = [f for f in files if f.endswith(".parquet")]
    assert "Npix=12.parquet" not in done  # 23 rows need 6 pieces; the kernel failed on the 4th


def test_merge_summaries_adds_counts_lists_and_dicts():
    a = {"rows": 2, "flags": {"x": 1, "y": 0}, "t": {"n": [1, 2], "s": [0.5, 1.0]}}
    b = {"rows": 3, "flags": {"x": 0, "y": 4}, "t": {"n": [0, 1], "s": [0.25, 0.0]}}
    assert merge_summaries([a, b]) == {
        "rows": 5,
        "flags": {"x": 1, "y": 4},
        "t": {"n": [1, 3], "s": [0.75, 1.0]},
    }
    assert merge_summaries([a]) == a
    # counts per sky pixel: pieces of one partition may see different pixels
    c = {"by_pixel": {"7": 2, "8": 1}}
    d = {"by_pixel": {"8": 3, "9": 4}}
    assert merge_summaries([c, d]) == {"by_pixel": {"7": 2, "8": 4, "9": 4}}
