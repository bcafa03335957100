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
