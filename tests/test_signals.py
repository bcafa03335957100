"""SIGTERM/SIGHUP stop a bigcat command like Ctrl-C: unit tests of the handler (no pipeline)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from bigcat.atomic import remove_temporaries, temporary_path
from bigcat.cli import Stopped, interrupted_message, stop_signals_raise
from bigcat.runlock import LOCK_NAME, run_dir_lock


def test_sigterm_raises_stopped_and_handlers_are_restored():
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Stopped) as info, stop_signals_raise():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # interrupted by the handler
    assert info.value.signum == signal.SIGTERM
    assert isinstance(info.value, KeyboardInterrupt)
    assert signal.getsignal(signal.SIGTERM) == before


def test_messages_and_exit_status():
    msg, status = interrupted_message(Stopped(signal.SIGTERM))
    assert status == 143 and "stopped by SIGTERM" in msg and "run the same command" in msg
    msg, status = interrupted_message(KeyboardInterrupt())
    assert status == 130 and "interrupted (Ctrl-C)" in msg and "\n" not in msg


def test_interrupt_under_the_lock_removes_temporaries_and_releases_it(tmp_path):
    run = tmp_path / "run"
    with pytest.raises(Stopped), run_dir_lock(run, "bigcat test"):
        part = run / "catalog" / "dataset" / "Norder=1" / "Npix=3.parquet"
        part.parent.mkdir(parents=True)
        temporary_path(part).write_bytes(b"half")
        temporary_path(run / "report").mkdir()
        (run / "kept.json").write_text("{}")
        raise Stopped(signal.SIGTERM)
    assert not (run / LOCK_NAME).exists()
    assert [p.name for p in run.rglob("*") if p.is_file()] == ["kept.json"]


def test_remove_temporaries_restores_an_interrupted_directory_swap(tmp_path):
    (tmp_path / ".report.old.tmp").mkdir()
    (tmp_path / ".report.old.tmp" / "a.png").write_bytes(b"x")
    remove_temporaries(tmp_path)
    assert (tmp_path / "report" / "a.png").exists()


SCRIPT = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    import bigcat.cli as cli
    from bigcat.runlock import run_dir_lock

    @cli.cli.command("sleep-test")
    @cli.click.argument("run")
    def sleep_test(run):
        with run_dir_lock(Path(run), "bigcat sleep-test"):
            (Path(run) / "started").write_text("1")
            time.sleep(60)

    sys.argv = ["bigcat", "sleep-test", sys.argv[-1]]
    cli.main()
    """
)


@pytest.mark.parametrize("signum, status", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_cli_stops_cleanly_on_signal(tmp_path, signum, status):
    run = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, str(run)], stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 60
        while not (run / "started").exists():
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
            time.sleep(0.05)
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == status, err
    assert "Traceback" not in err
    assert [line for line in err.splitlines() if line.strip()] == [
        interrupted_message(Stopped(signum) if signum != signal.SIGINT else KeyboardInterrupt())[0]
    ]
    assert not (run / LOCK_NAME).exists()
