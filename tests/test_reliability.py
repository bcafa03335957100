"""Reliability (issue 24): one command per run directory, atomic writes, damaged files found.

The lock (bigcat/runlock.py): a second command on a locked directory is refused naming the
directory and the holder; a stale lock of a dead process is taken over with a warning; the
lock is re-entrant and released on exceptions. Atomic writes (bigcat/atomic.py): a failed
write leaves the old file whole and no temporary behind. ``bigcat verify`` and resume: a
truncated or corrupted partition is listed (exit 1) and recomputed with a warning by the next
run, to the identical output.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from bigcat.atomic import (
    new_directory_beside,
    recover_directory,
    replace_directory,
    write_json_atomic,
    write_parquet_atomic,
    write_text_atomic,
    write_with,
)
from bigcat.catalog.store import Catalog, partition_path, remove_stale_temporaries
from bigcat.cli import cli
from bigcat.config import Config, IngestConfig
from bigcat.errors import RunDirInUseError
from bigcat.runlock import LOCK_NAME, lock_held, read_lock, run_dir_lock
from bigcat.stages.ingest import ingest
from bigcat.stages.photometry import run_photometry_stage
from bigcat.stages.verify import verify_run

CONFIG = Config(ingest=IngestConfig(nside=4, chunk_rows=700, partition_rows=0))

HOLDER = textwrap.dedent(
    """
    import sys, time
    from bigcat.runlock import run_dir_lock
    with run_dir_lock(sys.argv[1], "bigcat process (test holder)"):
        print("locked", flush=True)
        time.sleep(60)
    """
)


@pytest.fixture
def held_elsewhere(tmp_path):
    """A run directory locked by another live process."""
    run = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(run)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    yield run, proc
    proc.kill()
    proc.wait()


# ------------------------------------------------------------------------------------------
# the lock


def test_second_command_on_a_locked_directory_is_refused(held_elsewhere):
    run, proc = held_elsewhere
    with pytest.raises(RunDirInUseError) as err, run_dir_lock(run, "bigcat report"):
        pass
    msg = str(err.value)
    assert str(run) in msg and f"pid {proc.pid}" in msg and socket.gethostname() in msg
    assert "bigcat process (test holder)" in msg
    assert read_lock(run / LOCK_NAME)["pid"] == proc.pid  # the holder's lock is untouched


@pytest.mark.parametrize(
    "argv",
    [
        ["report", "{run}"],
        ["analyze", "gradient", "{run}"],
        ["train", "stage1", "{run}"],
        ["process", "--out", "{run}", "--rows", "100"],
    ],
    ids=lambda a: a[0] if a[0] != "analyze" else "analyze",
)
def test_cli_commands_are_refused_on_a_locked_directory(held_elsewhere, argv):
    run, proc = held_elsewhere
    (run / "catalog").mkdir(exist_ok=True)  # so that analyze gets as far as the lock
    (run / "catalog" / "partition_info.csv").write_text("Norder,Npix\n")
    result = subprocess.run(
        [sys.executable, "-m", "bigcat", *[a.format(run=run) for a in argv]],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1, result.stderr
    assert "in use by another bigcat command" in result.stderr, result.stderr
    assert f"pid {proc.pid}" in result.stderr
    assert "Traceback" not in result.stderr


OUTPUT_HOLDER = textwrap.dedent(
    """
    import sys, time
    from bigcat.runlock import output_lock
    with output_lock(sys.argv[1], "bigcat ingest (test holder)"):
        print("locked", flush=True)
        time.sleep(60)
    """
)


@pytest.mark.parametrize(
    "argv",
    [
        ["ingest", "{inp}", "--out", "{out}"],
        ["mock", "--rows", "100", "--out", "{out}"],
        [
            "crossmatch",
            "--gaia",
            "{inp}",
            "--tmass",
            "{inp}",
            "--unwise",
            "{inp}",
            "--out",
            "{out}",
        ],
    ],
    ids=lambda a: a[0],
)
def test_output_commands_are_refused_before_a_cluster_starts(tmp_path, argv):
    out, inp = tmp_path / "out", tmp_path / "in.parquet"
    pd.DataFrame({"ra": [1.0]}).to_parquet(inp)
    holder = subprocess.Popen(
        [sys.executable, "-c", OUTPUT_HOLDER, str(out)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        result = subprocess.run(
            [sys.executable, "-m", "bigcat", *[a.format(out=out, inp=inp) for a in argv]],
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        holder.kill()
        holder.wait()
    assert result.returncode == 1, result.stderr
    assert "in use by another bigcat command" in result.stderr, result.stderr
    assert f"pid {holder.pid}" in result.stderr
    # refused before the cluster started (no dashboard announced) and before any output
    assert "dashboard" not in result.stderr.lower() + result.stdout.lower()
    assert not out.exists() and "Traceback" not in result.stderr


def test_stale_lock_of_a_dead_process_is_taken_over(tmp_path, caplog):
    run = tmp_path / "run"
    run.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    info = {"pid": dead.pid, "host": socket.gethostname(), "started": time.time() - 60}
    (run / LOCK_NAME).write_text(json.dumps({**info, "command": "bigcat process"}))
    with caplog.at_level(logging.WARNING, "bigcat"), run_dir_lock(run, "bigcat report"):
        assert read_lock(run / LOCK_NAME)["pid"] == os.getpid()
    assert f"stale lock of pid {dead.pid}" in caplog.text and str(run) in caplog.text
    assert not (run / LOCK_NAME).exists()


def test_lock_of_another_host_is_not_taken_over(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    info = {"pid": 1, "host": "elsewhere.example", "started": time.time(), "command": "x"}
    (run / LOCK_NAME).write_text(json.dumps(info))
    with pytest.raises(RunDirInUseError, match="on another host"), run_dir_lock(run):
        pass
    assert read_lock(run / LOCK_NAME) == info


def test_lock_is_reentrant_and_released_on_an_exception(tmp_path):
    run = tmp_path / "run"
    with pytest.raises(ValueError), run_dir_lock(run, "outer"):
        with run_dir_lock(run, "inner"):  # bigcat process -> analyses -> report
            assert lock_held(run / "catalog" / "x")
        assert (run / LOCK_NAME).exists() and lock_held(run)
        raise ValueError("boom")
    assert not (run / LOCK_NAME).exists() and not lock_held(run)


def test_stale_temporaries_are_removed_only_under_the_lock(tmp_path):
    root = tmp_path / "cat"
    leftover = root / "dataset" / "Norder=1" / "Dir=0" / ".Npix=3.parquet.0123abcd.tmp"
    leftover.parent.mkdir(parents=True)
    leftover.write_bytes(b"half")
    assert remove_stale_temporaries(root) == [] and leftover.exists()
    with run_dir_lock(tmp_path):
        assert remove_stale_temporaries(root) == [leftover]
    assert not leftover.exists()


# ------------------------------------------------------------------------------------------
# atomic writes


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "bigcat.json"
    write_json_atomic({"a": 1}, path)
    with pytest.raises(TypeError):
        write_json_atomic({"a": object()}, path)
    frame = pd.DataFrame({"x": [1, 2]})
    write_parquet_atomic(frame, tmp_path / "t.parquet")

    def half_then_fail(tmp: Path) -> None:
        tmp.write_bytes(b"PAR1 half a file")
        raise KeyboardInterrupt  # Ctrl-C in the middle of the write

    with pytest.raises(KeyboardInterrupt):
        write_with(tmp_path / "t.parquet", half_then_fail)
    assert json.loads(path.read_text()) == {"a": 1}
    assert pq.read_table(tmp_path / "t.parquet").num_rows == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bigcat.json", "t.parquet"]


def test_replace_directory_keeps_the_old_one_until_the_new_is_complete(tmp_path):
    dest = tmp_path / "report"
    dest.mkdir()
    write_text_atomic("old", dest / "fig.png")
    new = new_directory_beside(dest)
    write_text_atomic("new", new / "fig.png")
    assert (dest / "fig.png").read_text() == "old"  # untouched while the new one is drawn
    replace_directory(new, dest)
    assert (dest / "fig.png").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report"]
    # killed between the two renames: the old copy is put back
    os.replace(dest, tmp_path / ".report.old.tmp")
    assert recover_directory(dest) and (dest / "fig.png").read_text() == "new"


# ------------------------------------------------------------------------------------------
# bigcat verify, and damaged partitions recomputed on resume


def _photometry(run: Path, catalog: Catalog, client) -> Catalog:
    with run_dir_lock(run, "test"):
        out, _ = run_photometry_stage(client, catalog, run / "stages" / "photometry", CONFIG)
    return out


def _frames(catalog: Catalog) -> dict:
    return {op: catalog.read_partition(*op) for op in catalog.pixels}


def test_verify_finds_damaged_partitions_and_resume_recomputes_them(
    tmp_path, client, input_table, caplog
):
    run = tmp_path / "run"
    input_table(1200, 5, 1).to_parquet(tmp_path / "in.parquet")
    with run_dir_lock(run, "test"):
        catalog = ingest([tmp_path / "in.parquet"], run / "input", CONFIG, client)
    phot = _photometry(run, catalog, client)
    before = _frames(phot)
    runner = CliRunner()
    clean = runner.invoke(cli, ["verify", str(run)])
    assert clean.exit_code == 0, clean.output
    assert "no problems found" in clean.output and "2 catalogues" in clean.output

    # fault 1: a truncated stage partition; fault 2: a flipped byte, same size
    (o1, p1), (o2, p2) = phot.pixels[0], phot.pixels[1]
    truncated = partition_path(phot.root, o1, p1)
    truncated.write_bytes(truncated.read_bytes()[:-100])
    flipped = partition_path(phot.root, o2, p2)
    data = bytearray(flipped.read_bytes())
    data[len(data) // 2] ^= 0xFF
    flipped.write_bytes(bytes(data))
    # fault 3: a truncated partition of the ingested input catalogue
    o3, p3 = catalog.pixels[2]
    damaged_input = partition_path(catalog.root, o3, p3)
    damaged_input.write_bytes(damaged_input.read_bytes()[:50])

    bad = runner.invoke(cli, ["verify", str(run)])
    assert bad.exit_code == 1
    for path in (truncated, flipped, damaged_input):
        assert str(path) in bad.output
    assert "footer cannot be read" in bad.output and "checksum" in bad.output

    with caplog.at_level(logging.WARNING, "bigcat"), run_dir_lock(run, "test"):
        catalog = ingest([tmp_path / "in.parquet"], run / "input", CONFIG, client)
        assert "damaged partition" in caplog.text and str(damaged_input) in caplog.text
        out, totals = run_photometry_stage(client, catalog, run / "stages" / "photometry", CONFIG)
    # the input was made again, to the same fingerprint: only the two damaged stage
    # partitions are recomputed
    assert totals["partitions_computed"] == 2
    again = runner.invoke(cli, ["verify", str(run)])
    assert again.exit_code == 0, again.output
    after = _frames(out)
    assert after.keys() == before.keys()
    for key in before:  # identical output after the resume
        pd.testing.assert_frame_equal(after[key], before[key])

    # a damaged stage partition alone: only it is recomputed, with a warning naming it
    caplog.clear()
    truncated.write_bytes(truncated.read_bytes()[:-10])
    with caplog.at_level(logging.WARNING, "bigcat"):
        out, totals = _photometry_totals(run, catalog, client)
    assert totals["partitions_computed"] == 1
    assert str(truncated) in caplog.text and "recomputed" in caplog.text
    pd.testing.assert_frame_equal(out.read_partition(o1, p1), before[(o1, p1)])
    assert verify_run(run).ok


def _photometry_totals(run: Path, catalog: Catalog, client):
    with run_dir_lock(run, "test"):
        return run_photometry_stage(client, catalog, run / "stages" / "photometry", CONFIG)


def test_a_rerun_with_other_settings_keeps_the_old_output_until_the_new_one_is_whole(
    tmp_path, client, input_table
):
    run = tmp_path / "run"
    input_table(1200, 5, 1).to_parquet(tmp_path / "in.parquet")
    stage = run / "stages" / "photometry"
    small_tasks = dataclasses.replace(CONFIG.process, target_task_rows=150)
    config_a = dataclasses.replace(CONFIG, process=small_tasks)
    config_b = dataclasses.replace(
        config_a, photometry=dataclasses.replace(CONFIG.photometry, max_ruwe=1.2)
    )
    with run_dir_lock(run, "test"):
        catalog = ingest([tmp_path / "in.parquet"], run / "input", CONFIG, client)
        out_a, _ = run_photometry_stage(client, catalog, stage, config_a)
    before = _frames(out_a)
    sidecar = (stage / "bigcat.json").read_text()

    def stop_after_first_task(summaries: list[dict]) -> None:
        if not any(s.get("planned") for s in summaries):
            raise KeyboardInterrupt

    # settings changed, stopped mid-stage: the finished output is untouched and whole
    with pytest.raises(KeyboardInterrupt), run_dir_lock(run, "test"):
        run_photometry_stage(client, catalog, stage, config_b, on_done=stop_after_first_task)
    nxt = run / "stages" / ".photometry.next"
    assert nxt.is_dir() and list((nxt / "dataset").rglob("Npix=*.parquet"))
    assert (stage / "bigcat.json").read_text() == sidecar
    kept = Catalog.open(stage)
    for key, frame in before.items():
        pd.testing.assert_frame_equal(kept.read_partition(*key), frame)
    assert verify_run(run).ok

    # the re-run resumes into the new output, then swaps it in whole
    with run_dir_lock(run, "test"):
        out_b, totals = run_photometry_stage(client, catalog, stage, config_b)
    assert 0 < totals["partitions_computed"] < len(catalog.pixels)  # the first task's reused
    assert not nxt.exists() and out_b.root == stage
    fresh, _ = run_photometry_stage(client, catalog, tmp_path / "fresh", config_b)
    want = _frames(fresh)
    assert _frames(out_b).keys() == want.keys()
    for key, frame in want.items():
        pd.testing.assert_frame_equal(out_b.read_partition(*key), frame)
    assert not before[catalog.pixels[0]].equals(want[catalog.pixels[0]])  # B differs from A
    assert verify_run(run).ok

    # back to the first settings, stopped at once: B's output is kept; then A again
    with pytest.raises(KeyboardInterrupt), run_dir_lock(run, "test"):
        run_photometry_stage(client, catalog, stage, config_a, on_done=stop_after_first_task)
    for key, frame in want.items():
        pd.testing.assert_frame_equal(Catalog.open(stage).read_partition(*key), frame)
    with run_dir_lock(run, "test"):
        again, _ = run_photometry_stage(client, catalog, stage, config_a)
    for key, frame in before.items():
        pd.testing.assert_frame_equal(again.read_partition(*key), frame)
    # a next directory of settings since given up is removed by a run with the finished ones
    with pytest.raises(KeyboardInterrupt), run_dir_lock(run, "test"):
        run_photometry_stage(client, catalog, stage, config_b, on_done=stop_after_first_task)
    assert nxt.exists()
    with run_dir_lock(run, "test"):
        _, totals = run_photometry_stage(client, catalog, stage, config_a)
    assert totals["partitions_computed"] == 0 and not nxt.exists()


def test_verify_finds_a_damaged_checkpoint_and_an_incomplete_stage(tmp_path):
    run = tmp_path / "run"
    models = run / "models" / "stage1"
    models.mkdir(parents=True)
    (models / "fold0.pt").write_bytes(b"weights")
    sidecar = {"weights_file": "fold0.pt", "weights_sha256": "0" * 64}
    (models / "fold0.json").write_text(json.dumps(sidecar))
    (run / "stages" / "stage1" / "dataset").mkdir(parents=True)
    (run / "run.json").write_text("{not json")
    result = verify_run(run)
    assert not result.ok
    text = "\n".join(result.problems)
    assert str(models / "fold0.pt") in text and "sha256" in text
    assert "incomplete catalogue" in text and str(run / "stages" / "stage1") in text
    assert str(run / "run.json") in text
