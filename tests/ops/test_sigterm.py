"""`bigcat process` sent SIGTERM mid-stage: it stops cleanly, and a re-run resumes to the same output."""

from __future__ import annotations

import signal
import subprocess

import pandas as pd
import psutil
import pytest

from bigcat.atomic import is_temporary
from bigcat.runlock import LOCK_NAME

#: end-to-end runs of the whole pipeline: behind the slow marker (CI runs them)
pytestmark = pytest.mark.slow


def test_sigterm_mid_photometry_stops_cleanly_and_rerun_matches(
    ops, ops_config, reference_run, tmp_path
):
    out = tmp_path / "run"
    cmd = ops.cmd(ops_config, out)
    proc = ops.start(cmd)
    me = psutil.Process(proc.pid)
    family: list[psutil.Process] = []
    try:
        ops.wait_for(lambda: len(ops.partition_files(out)) >= 50, 300, "photometry files", proc)
        family = me.children(recursive=True)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
        gone, alive = psutil.wait_procs(family, timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        ops.kill_tree_we_started(family)
    assert proc.returncode == 143, err[-3000:]
    assert "stopped by SIGTERM" in err and "run the same command again to resume" in err
    assert "Traceback" not in err, err[-3000:]
    assert not alive, f"worker processes outlived the stopped command: {[p.pid for p in alive]}"
    assert not (out / LOCK_NAME).exists()
    leftovers = [p for p in out.rglob(".*") if is_temporary(p) or p.name.endswith(".partial")]
    assert not leftovers, leftovers

    verify = subprocess.run(
        ["python", "-m", "bigcat", "verify", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        env=ops.env(),
    )
    # a stage stopped half way is reported as unfinished, never as damaged
    assert verify.returncode in (0, 1), verify.stderr
    problems = [line for line in verify.stdout.splitlines() if line.startswith("    ")]
    assert all("incomplete catalogue" in line for line in problems), verify.stdout

    again = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=ops.env())
    assert again.returncode == 0, again.stderr[-3000:]
    pd.testing.assert_frame_equal(ops.read_output(out), ops.read_output(reference_run))
