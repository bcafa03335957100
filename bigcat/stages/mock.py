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
    OUT/.bigcat-mock.json                       the settings' fingerprint (the reuse stamp)
                                                and, once the survey is finished, each part's
                                                record (rows, bytes, sha256)

A re-run with the same settings reuses a chunk only if each of its parts carries the
fingerprint and matches its record in the stamp (:func:`bigcat.catalog.store.check_file_record`:
footer, row count, size, sha256); a damaged part is recomputed (the whole chunk, to the same
bytes) with a warning naming it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from pathlib import Path

import pyarrow.parquet as pq
from distributed import Client

from bigcat import __version__
from bigcat.atomic import read_json_key, write_json_atomic
from bigcat.catalog.store import (
    check_file_record,
    file_fingerprint,
    file_record,
    write_frame_atomic,
)
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
#: The survey's stamp: fingerprint, settings and (once finished) the parts' file records.
MOCK_STAMP = ".bigcat-mock.json"

logger = logging.getLogger(__name__)


def part_name(table: str, chunk: int) -> str:
    """A part's path relative to the survey directory (its key in the stamp's ``files``)."""
    return f"{table}.parquet/part-{chunk:05d}.parquet"


def _part(out: Path, table: str, chunk: int) -> Path:
    return out / part_name(table, chunk)


def recorded_parts(out: str | Path) -> dict[str, dict]:
    """The file records (:func:`part_name` -> rows, bytes, sha256) in the stamp of the survey
    at ``out`` (empty if none, or unreadable)."""
    return read_json_key(Path(out) / MOCK_STAMP, "files", dict) or {}


def _reusable_chunk(
    out: Path, chunk: int, fingerprint: str, records: dict[str, dict]
) -> tuple[dict[str, dict] | None, list[str]]:
    """Whether chunk ``chunk``'s parts may be reused: ``(their file records, damaged)``.

    Reused when every part carries ``fingerprint`` and matches its record (a part without
    one, written by a run interrupted before the survey was finished, is trusted on its
    footer and recorded now). ``damaged`` names the parts found truncated or corrupted
    (a missing part, or one made with other settings, is simply made again).
    """
    files: dict[str, dict] = {}
    damaged: list[str] = []
    whole = True
    for table in TABLES:
        name, path = part_name(table, chunk), _part(out, table, chunk)
        if not path.exists():
            whole = False
            continue
        problem = check_file_record(path, records.get(name))
        if problem is not None:
            damaged.append(f"{path}: {problem}")
            whole = False
        elif file_fingerprint(path) != fingerprint:
            whole = False
        elif whole:
            files[name] = records.get(name) or file_record(
                path, pq.ParquetFile(path).metadata.num_rows
            )
    return (files if whole else None), damaged


def mock_chunk_task(
    params: MockParams,
    chunk: int,
    n_rows: int,
    out: str,
    fingerprint: str,
    records: dict[str, dict] | None = None,
) -> dict:
    """Task body: make one chunk and write its parts (skipped if already written and whole).

    ``records``: the parts' file records from the stamp of the finished survey
    (:func:`recorded_parts`). Returns the parts' records (``files``) and, for a chunk made
    again because a part was damaged, what was wrong with it (``repaired``).
    """
    out_dir = Path(out)
    files, damaged = _reusable_chunk(out_dir, chunk, fingerprint, records or {})
    if files is not None:
        return {"chunk": chunk, "computed": False, "files": files}
    result = simulate_chunk(params, chunk, n_rows)
    surveys = simulate_surveys(result.photometry, result.truth, params, chunk)
    counts = {}
    files = {}
    for table in TABLES:
        frame = getattr(surveys if table in SURVEY_TABLES else result, table)
        files[part_name(table, chunk)] = write_frame_atomic(
            frame, _part(out_dir, table, chunk), fingerprint
        )
        counts[table] = len(frame)
    return {"chunk": chunk, "computed": True, **counts, "files": files, "repaired": damaged}


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
    stamp = out / MOCK_STAMP
    if out.exists() and any(out.iterdir()):
        old = json.loads(stamp.read_text()).get("fingerprint") if stamp.exists() else None
        if old != fingerprint:
            raise InputError(
                f"{out} already holds other data (or a survey made with other settings). bigcat "
                "does not overwrite it: choose another --out, or delete it first."
            )
    out.mkdir(parents=True, exist_ok=True)
    # the records of a finished survey (same fingerprint) are kept until it is finished again
    records = recorded_parts(out)
    head = {"fingerprint": fingerprint, **settings}
    write_json_atomic({**head, "files": records} if records else head, stamp, indent=2, default=str)
    starts = list(range(0, n_rows, chunk_rows))
    tasks = []
    for i, s in enumerate(starts):
        names = [part_name(t, i) for t in TABLES]
        mine = {k: records[k] for k in names if k in records}
        args = (params, i, min(chunk_rows, n_rows - s), str(out), fingerprint, mine)
        tasks.append((f"mock-chunk{i:05d}", args))
    results = run_tasks(client, mock_chunk_task, tasks, "mock", writes_files=True)
    for result in results:
        for why in result.get("repaired", ()):
            logger.warning("%s; recomputed it (bigcat mock).", why)
    files = {k: r for result in results for k, r in sorted(result["files"].items())}
    write_json_atomic({**head, "files": files}, stamp, indent=2, default=str)
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
