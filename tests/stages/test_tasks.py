"""run_tasks: results in task order, repeated names kept apart."""

from __future__ import annotations

from bigcat.stages.tasks import run_tasks


def test_repeated_task_names_do_not_share_a_result(client):
    # partitions of two orders can have the same pixel number, hence the same task name
    tasks = [("stage-pix5", (-1,)), ("stage-pix5", (-2,)), ("stage-pix7", (-3,))]
    assert run_tasks(client, abs, tasks, "test") == [1, 2, 3]
