"""Property tests of `bigcat ingest` over small malformed input files (issue 24, item 6).

Every case ends in a bigcat error with a message, or in a catalogue; never another exception
type, and never a partial output or a temporary file left behind. Derandomised (the same
examples on every run and in CI) and small.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from bigcat.atomic import is_temporary
from bigcat.config import Config, IngestConfig
from bigcat.errors import BigcatError
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


@FUZZ
@given(case=cases)
def test_ingest_ends_in_a_bigcat_error_or_a_catalogue(client, input_table, case):
    work = Path(tempfile.mkdtemp(prefix="bigcat-fuzz-"))
    try:
        table = _make(input_table(case["rows"], seed=5), case)
        path = work / f"input.{case['fmt']}"
        if case["fmt"] == "csv":
            table.to_csv(path, index=False)
        else:
            table.to_parquet(path, index=False)
        out = work / "cat"
        try:
            catalog = ingest([path], out, CONFIG, client)
        except BigcatError as exc:
            event(f"error {type(exc).__name__}")
            assert str(exc).strip(), "a bigcat error without a message"
            assert not out.exists(), "a failed ingest left a catalogue"
            assert not (work / "cat.partial").exists(), "a failed ingest left its staging"
        else:
            event("catalogue")
            assert catalog.n_rows() == len(table)
            assert not (work / "cat.partial").exists()
        leftovers = [p for p in work.rglob(".*") if is_temporary(p)]
        assert not leftovers, leftovers
    finally:
        shutil.rmtree(work, ignore_errors=True)
