"""The `bigcat process` client SIGKILLed mid-run, then run again: same output, no recomputing."""

from __future__ import annotations

import json
import signal
import subprocess
import time

import pandas as pd
import psutil
import pytest

#: end-to-end runs of the whole pipeline: behind the slow marker (CI runs them)
pytestmark = pytest.mark.slow

MIN_FILES_BEFORE_KILL = 300


def test_client_killed_mid_photometry_rerun_resumes_and_matches(
    ops, ops_config, reference_run, tmp_path
):
    out = tmp_path / "run"
    cmd = ops.cmd(ops_config, out)
    proc = ops.start(cmd)
    me = psutil.Process(proc.pid)
    family: list[psutil.Process] = []
    try:
        ops.wait_for(
            lambda: len(ops.partition_files(out)) >= MIN_FILES_BEFORE_KILL,
            180,
            f"{MIN_FILES_BEFORE_KILL} photometry partition files",
            proc,
        )
        family = me.children(recursive=True)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        # the embedded cluster's worker processes notice their parent is gone and exit
        gone, alive = psutil.wait_procs(family, timeout=30)
        orphans = [p.pid for p in alive]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        ops.kill_tree_we_started(family)
    assert not orphans, f"worker processes outlived the killed client: {orphans}"

    finished = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in ops.partition_files(out)}
    log = json.loads((out / "run.json").read_text())
    done = [s["stage"] for s in log["stages"]]
    assert done[:2] == ["mock", "ingest"] and "photometry" not in done, f"killed too late: {done}"
    assert len(finished) >= MIN_FILES_BEFORE_KILL

    t0 = time.monotonic()
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=ops.env())
    assert again.returncode == 0, again.stderr[-3000:]
    rerun_seconds = time.monotonic() - t0

    photometry = ops.stage(json.loads((out / "run.json").read_text()), "photometry")
    # exactly the partitions that were not finished were computed; the others were reused
    assert photometry["partitions_computed"] == photometry["partitions"] - len(finished)
    assert photometry["partitions_computed"] < photometry["partitions"]
    # and the finished files were not rewritten
    assert {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in finished} == finished
    pd.testing.assert_frame_equal(ops.read_output(out), ops.read_output(reference_run))
    assert rerun_seconds < 600
