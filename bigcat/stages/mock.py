"""`bigcat mock`: the synthetic survey, generated in fixed chunks on the Dask cluster.

Chunk ``i`` is made by ``simulate_chunk(params, i, n)`` with its own random stream, so the
survey is the same whatever the number of workers. Outputs (Parquet datasets, one part per
chunk, each written atomically)::

    OUT/photometry.parquet/part-00000.parquet   SCHEMA.md input columns
    OUT/truth.parquet/part-00000.parquet        source_id + true_* columns
    OUT/apogee.parquet/part-00000.parquet       APOGEE allStar names
    OUT/lamost.parquet/part-00000.parquet       LAMOST DR6 names
    OUT/gaia_source.parquet/part-00000.parquet  the same stars as the surveys' own tables
    OUT/tmass_psc.parquet/part-00000.parquet    (bigcat/synthetic/surveys.py), the input of
    OUT/unwise.parquet/part-00000.parquet       `bigcat crossmatch`
    OUT/crossmatch_truth.parquet/part-00000.parquet  source_id -> true 2MASS / unWISE ids
    OUT/truth.json                              every injected value
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

from distributed import Client

from bigcat import __version__
from bigcat.atomic import write_json_atomic
from bigcat.catalog.store import file_fingerprint, write_frame_atomic
from bigcat.errors import InputError
from bigcat.runlock import output_lock
from bigcat.stages.tasks import run_tasks
from bigcat.synthetic import simulate_chunk, truth_summary
from bigcat.synthetic.params import MockParams
from bigcat.synthetic.surveys import simulate_surveys

#: The chunk's tables: simulate_chunk's four, then the surveys' own tables of the same stars
#: (the inputs of `bigcat crossmatch`) and their true pairing (simulate_surveys).
SURVEY_TABLES = ("gaia_source", "tmass_psc", "unwise", "crossmatch_truth")
TABLES = ("photometry", "truth", "apogee", "lamost", *SURVEY_TABLES)
DEFAULT_CHUNK_ROWS = 50_000


def _part(out: Path, table: str, chunk: int) -> Path:
    return out / f"{table}.parquet" / f"part-{chunk:05d}.parquet"


def mock_chunk_task(
    params: MockParams, chunk: int, n_rows: int, out: str, fingerprint: str
) -> dict:
    """Task body: make one chunk and write its parts (skipped if already written)."""
    out_dir = Path(out)
    if all(file_fingerprint(_part(out_dir, t, chunk)) == fingerprint for t in TABLES):
        return {"chunk": chunk, "computed": False}
    result = simulate_chunk(params, chunk, n_rows)
    surveys = simulate_surveys(result.photometry, result.truth, params, chunk)
    counts = {}
    for table in TABLES:
        frame = getattr(surveys if table in SURVEY_TABLES else result, table)
        write_frame_atomic(frame, _part(out_dir, table, chunk), fingerprint)
        counts[table] = len(frame)
    return {"chunk": chunk, "computed": True, **counts}


def make_mock(
    client: Client,
    params: MockParams,
    n_rows: int,
    out: str | Path,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
) -> dict:
    """Make a synthetic survey of ``n_rows`` stars in ``out``; returns the truth summary.

    Re-running with the same settings resumes (finished chunks are kept). ``out`` holding a
    survey made with other settings is an error: nothing there is overwritten.
    """
    if n_rows < 1:
        raise InputError(f"--rows {n_rows}: a survey needs at least one row.")
    out = Path(out)
    settings = {
        "params": dataclasses.asdict(params),
        "rows": n_rows,
        "chunk_rows": chunk_rows,
        "version": __version__,
    }
    fingerprint = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:24]
    with output_lock(out, "bigcat mock"):
        return _make_mock_locked(client, params, n_rows, out, chunk_rows, settings, fingerprint)


def _make_mock_locked(
    client: Client,
    params: MockParams,
    n_rows: int,
    out: Path,
    chunk_rows: int,
    settings: dict,
    fingerprint: str,
) -> dict:
    """:func:`make_mock` under the lock of ``out``."""
    stamp = out / ".bigcat-mock.json"
    if out.exists() and any(out.iterdir()):
        old = json.loads(stamp.read_text()).get("fingerprint") if stamp.exists() else None
        if old != fingerprint:
            raise InputError(
                f"{out} already holds other data (or a survey made with other settings). bigcat "
                "does not overwrite it: choose another --out, or delete it first."
            )
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic({"fingerprint": fingerprint, **settings}, stamp, default=str)
    starts = list(range(0, n_rows, chunk_rows))
    tasks = [
        (f"mock-chunk{i:05d}", (params, i, min(chunk_rows, n_rows - s), str(out), fingerprint))
        for i, s in enumerate(starts)
    ]
    run_tasks(client, mock_chunk_task, tasks, "mock")
    summary = truth_summary(params)
    summary.update(
        {
            "rows": n_rows,
            "chunks": len(starts),
            "chunk_rows": chunk_rows,
            "bigcat_version": __version__,
        }
    )
    write_json_atomic(summary, out / "truth.json", indent=2, sort_keys=True, default=str)
    return summary
