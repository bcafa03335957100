"""run_tasks: results in task order, repeated names kept apart."""

from __future__ import annotations

from bigcat.stages.tasks import run_tasks


def test_repeated_task_names_do_not_share_a_result(client):
    # partitions of two orders can have the same pixel number, hence the same task name
    tasks = [("stage-pix5", (-1,)), ("stage-pix5", (-2,)), ("stage-pix7", (-3,))]
    assert run_tasks(client, abs, tasks, "test") == [1, 2, 3]


def _malloc_tuned() -> bool:
    from bigcat.stages import tasks

    return tasks.tune_malloc()


def test_tasks_run_with_glibc_thresholds_and_errors_pass_through(client):
    """Each task runs with glibc's usual malloc thresholds (mallopt accepted on Linux; the
    nanny's MALLOC_TRIM_THRESHOLD_ would otherwise make every allocation above 128 KiB an
    mmap), and a task's error reaches the caller unchanged."""
    import sys

    import pytest

    from bigcat.errors import InputError

    [tuned] = run_tasks(client, _malloc_tuned, [("t", ())], "test")
    assert tuned == sys.platform.startswith("linux")

    def bad(x):
        raise InputError(f"row {x}: bad")

    with pytest.raises(InputError, match="row 3: bad"):
        run_tasks(client, bad, [("t", (3,))], "test")


def _slow_write(path: str, seconds: float) -> str:
    import time
    from pathlib import Path

    time.sleep(seconds)
    Path(path).write_text("done")
    return path


def test_a_stopped_stage_waits_for_its_running_writers(client, tmp_path):
    """Stopped (here by an exception from ``on_done``, as Ctrl-C would), run_tasks returns
    only once the cancelled tasks still running on the workers have ended, so nothing writes
    into the output after the caller releases its lock. Without ``writes_files`` it does not
    wait."""
    import time

    import pytest

    def stop(_result):
        raise KeyboardInterrupt

    # one worker runs the slow task while the other finishes the quick one
    tasks = [("slow", (str(tmp_path / "slow"), 2.0)), ("quick", (str(tmp_path / "quick"), 0.0))]
    with pytest.raises(KeyboardInterrupt):
        run_tasks(client, _slow_write, tasks, "test", on_done=stop, writes_files=True)
    assert (tmp_path / "slow").exists()  # it was waited for

    other = tmp_path / "other"
    other.mkdir()
    tasks = [("slow", (str(other / "slow"), 2.0)), ("quick", (str(other / "quick"), 0.0))]
    t0 = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        run_tasks(client, _slow_write, tasks, "test", on_done=stop)
    assert time.monotonic() - t0 < 1.9 and not (other / "slow").exists()
    time.sleep(2.5)  # leave the cluster idle for the next test


def _summary(n: int) -> dict:
    import numpy as np
    import pandas as pd

    return {"counts": {p: p % 7 for p in range(n)}, "frame": pd.DataFrame({"x": np.arange(n)})}


def test_results_come_back_whole_as_one_pickle(client):
    """Results travel as one pickled buffer (Dask would send a dict entry by entry), and
    come back equal: nested dicts, frames, in task order."""
    import pandas as pd

    from bigcat.stages.tasks import _run_pickled

    assert isinstance(client.submit(_run_pickled, _summary, 3).result(), bytes)
    got = run_tasks(client, _summary, [("a", (12_000,)), ("b", (5,))], "test")
    for res, n in zip(got, (12_000, 5), strict=True):
        want = _summary(n)
        assert res["counts"] == want["counts"]
        pd.testing.assert_frame_equal(res["frame"], want["frame"])
