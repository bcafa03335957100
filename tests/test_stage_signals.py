"""SIGINT and SIGTERM in every stage of `bigcat process`: a clean stop, and a resume to the
identical output (issue 24, item 5).

One uninterrupted run records the cluster steps of the pipeline (every stage's work goes
through :func:`bigcat.stages.tasks.run_tasks`: ingest, photometry, stage-1 sampling, training
and calibration, inference, the distance prior, distances, stage-2 training and inference,
the gradient and vertex analyses, the report). Then the same run is started again and again
in a fresh directory, each time sending itself a real signal (SIGINT and SIGTERM in turn,
delivered by the OS to the handlers the CLI installs) half way through the next step, until
a run completes. After every stop: no lock, no temporary file, and ``bigcat verify`` finds
nothing damaged (an unfinished stage is reported as incomplete, never as damaged). The final
catalogue, Table 2 and the analyses equal the uninterrupted run's, and the input's extra
columns (the user's own ids and flags) reach the final catalogue unchanged.

The same client is kept through every stop, as in a notebook where a user presses Ctrl-C and
runs the cell again; the CLI's own handling of a signal from outside is tested in
tests/test_signals.py and tests/ops/test_sigterm.py.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import signal
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.dataset as ds
import pytest

from bigcat.atomic import is_temporary
from bigcat.cli import Stopped, stop_signals_raise
from bigcat.config import config_from_dict
from bigcat.pipeline import process_with_client
from bigcat.runlock import LOCK_NAME
from bigcat.stages import tasks as tasks_module
from bigcat.stages.mock import make_mock
from bigcat.stages.verify import verify_run

#: end-to-end runs of the whole pipeline: behind the slow marker (CI runs them)
pytestmark = pytest.mark.slow

ROWS = 20_000
CONFIG = config_from_dict(
    {
        "ingest": {"nside": 16, "partition_rows": 2_000},
        "process": {"target_task_rows": 1_500, "report": True},
        "stage1": {"max_epochs": 4, "patience": 2, "mc_passes": 10, "training_cap": 5_000},
        "stage2": {"max_epochs": 20, "patience": 5, "mc_passes": 10},
        "vertex": {"n_burn": 20, "n_steps": 40, "min_steps": 40, "min_stars": 5},
    },
    "test_stage_signals",
)
#: keys of the analysis results that describe the run rather than the result
VOLATILE = ("seconds", "started", "finished", "elapsed", "wall")


@pytest.fixture(scope="module")
def survey(tmp_path_factory, client) -> dict:
    """A small synthetic survey, its photometry with two extra columns of the user's own."""
    root = tmp_path_factory.mktemp("signals-survey")
    make_mock(client, CONFIG.mock, ROWS, root / "mock")
    table = pd.read_parquet(root / "mock" / "photometry.parquet")
    table["my_id"] = [f"S{i:06d}" for i in range(len(table))]
    table["my_flag"] = (np.arange(len(table)) % 7).astype(np.int16)
    table.drop(columns=[c for c in table.columns if c.startswith("true_")]).to_parquet(
        root / "input.parquet"
    )
    return {
        "input": [str(root / "input.parquet")],
        "labels": [str(root / "mock" / "apogee.parquet"), str(root / "mock" / "lamost.parquet")],
        "extra": table[["source_id", "my_id", "my_flag"]],
    }


ORIGINAL_RUN_TASKS = tasks_module.run_tasks
#: The modules that call run_tasks (checked: every bigcat module that imports it is listed).
CALLERS = (
    "bigcat.stages.analyze",
    "bigcat.stages.crossmatch",
    "bigcat.stages.distance",
    "bigcat.stages.ingest",
    "bigcat.stages.labels",
    "bigcat.stages.metallicity",
    "bigcat.stages.mock",
    "bigcat.stages.parallax",
    "bigcat.stages.partitions",
    "bigcat.report",
    "bigcat.report.collect",
)


def test_every_caller_of_run_tasks_is_listed():
    root = Path(__file__).resolve().parents[1] / "bigcat"
    callers = {
        ".".join(p.relative_to(root.parent).with_suffix("").parts).removesuffix(".__init__")
        for p in root.rglob("*.py")
        if "import" in (text := p.read_text()) and "run_tasks" in text and p.name != "tasks.py"
    }
    assert callers == set(CALLERS)


class StepInjector:
    """Wraps ``run_tasks`` wherever bigcat imported it: records each step (its label and
    number of tasks) and, when armed, sends ``signum`` to this process once ``after`` results
    of the step ``label`` have arrived."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.steps: list[tuple[str, int]] = []
        self.armed: tuple[str, int, int] | None = None
        self.fired: str | None = None
        original = ORIGINAL_RUN_TASKS

        def run_tasks(client, func, tasks, label, *, on_done=None, **kwargs):
            self.steps.append((label, len(tasks)))
            seen = 0

            def done(result):
                nonlocal seen
                seen += 1
                if on_done is not None:
                    on_done(result)
                if self.armed and self.armed[0] == label and seen >= self.armed[1]:
                    self.fired, signum, self.armed = label, self.armed[2], None
                    os.kill(os.getpid(), signum)  # handled at once, in this (the main) thread

            return original(client, func, tasks, label, on_done=done, **kwargs)

        # every caller imported first (one imported later would bind the wrapper of the day);
        # bigcat.report.collect imports run_tasks when it runs: the tasks module is patched too
        modules = [importlib.import_module(name) for name in CALLERS]
        for module in [*modules, tasks_module]:
            found = getattr(module, "run_tasks", None)
            if found is not None:
                assert found is original, module.__name__
                monkeypatch.setattr(module, "run_tasks", run_tasks)


def _run(survey: dict, client, out: Path):
    return process_with_client(
        CONFIG, client, list(survey["input"]), out, labels=list(survey["labels"])
    )


def _catalogue(run: Path) -> pd.DataFrame:
    table = ds.dataset(run / "catalog" / "dataset", format="parquet").to_table()
    return table.to_pandas().sort_values("source_id", ignore_index=True)


def _result(run: Path, name: str) -> object:
    """An analysis result without what describes the run (timings; the run's own paths)."""

    def strip(obj: object) -> object:
        if isinstance(obj, dict):
            return {k: strip(v) for k, v in obj.items() if not any(w in k for w in VOLATILE)}
        if isinstance(obj, list):
            return [strip(v) for v in obj]
        if isinstance(obj, str):
            return obj.replace(str(run), "RUN")
        return obj

    return strip(json.loads((run / "analysis" / name).read_text()))


def _check_stopped_cleanly(run: Path) -> None:
    assert not (run / LOCK_NAME).exists()
    leftovers = [p for p in run.rglob(".*") if is_temporary(p) or p.name.endswith(".partial")]
    assert not leftovers, leftovers
    found = verify_run(run)
    assert all("incomplete" in p for p in found.problems), found.problems


@pytest.fixture(scope="module")
def reference(survey, client, tmp_path_factory) -> tuple[Path, dict[str, int]]:
    """The uninterrupted run, and its cluster steps (label -> tasks, in pipeline order)."""
    out = tmp_path_factory.mktemp("signals-reference") / "run"
    with pytest.MonkeyPatch.context() as mp:
        inject = StepInjector(mp)
        _run(survey, client, out)
    steps: dict[str, int] = {}
    for label, n in inject.steps:
        if n:
            steps.setdefault(label, n)
    return out, steps


@pytest.mark.parametrize("first", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_every_stage_stops_cleanly_on_a_signal_and_resumes_to_the_same_output(
    survey, reference, client, tmp_path, monkeypatch, first
):
    """Both parametrisations together stop every step once with each signal."""
    reference_run, steps = reference
    # every stage's cluster work is among the steps the chain below stops
    for label in (
        "ingest split",
        "photometry",
        "stage1 train",
        "stage1",
        "prior fit",
        "distance",
        "stage2 train",
        "stage2",
        "gradient",
        "vertex",
        "vertex fits",
        "report",
    ):
        assert label in steps, sorted(steps)
    inject = StepInjector(monkeypatch)
    other = signal.SIGTERM if first == signal.SIGINT else signal.SIGINT

    run = tmp_path / "run"
    stops: list[tuple[str, str]] = []
    for i, (label, n) in enumerate(steps.items()):
        signum = (first, other)[i % 2]
        inject.armed, inject.fired = (label, max(1, n // 2), signum), None
        mark = len(inject.steps)
        try:
            with stop_signals_raise():
                _run(survey, client, run)
        except KeyboardInterrupt as exc:
            stopped = exc
        else:
            pytest.fail(f"step {label!r} did not run again; steps: {inject.steps[mark:]}")
        assert inject.fired == label, f"the run stopped elsewhere than in step {label!r}"
        assert isinstance(stopped, Stopped) == (signum == signal.SIGTERM)
        _check_stopped_cleanly(run)
        stops.append((label, signal.Signals(signum).name))
    inject.armed = None
    result = _run(survey, client, run)

    print("stops:", stops)  # shown with -s: the faults injected
    assert len(stops) == len(steps) >= 12, stops
    got, want = _catalogue(run), _catalogue(reference_run)
    pd.testing.assert_frame_equal(got, want)
    assert result.final["table2"] == json.loads((reference_run / "run.json").read_text())["table2"]
    for name in ("gradient.json", "vertex.json"):
        assert _result(run, name) == _result(reference_run, name), name
    assert verify_run(run).ok
    # the user's own columns, carried from the input file to the final catalogue
    extra = survey["extra"].set_index("source_id").loc[got["source_id"]]
    np.testing.assert_array_equal(got["my_id"].to_numpy(), extra["my_id"].to_numpy())
    assert got["my_flag"].dtype == np.int16
    np.testing.assert_array_equal(got["my_flag"].to_numpy(), extra["my_flag"].to_numpy())


def test_mock_stops_cleanly_on_a_signal_and_resumes_to_the_same_survey(
    client, tmp_path, monkeypatch
):
    params = dataclasses.replace(CONFIG.mock)
    make_mock(client, params, 9_000, tmp_path / "reference", chunk_rows=1_000)
    inject = StepInjector(monkeypatch)
    for signum in (signal.SIGINT, signal.SIGTERM):
        inject.armed = ("mock", 3, signum)
        with pytest.raises(KeyboardInterrupt), stop_signals_raise():
            make_mock(client, params, 9_000, tmp_path / "mock", chunk_rows=1_000)
        assert inject.fired == "mock"
        assert not any(is_temporary(p) for p in (tmp_path / "mock").rglob(".*"))
    inject.armed = None
    make_mock(client, params, 9_000, tmp_path / "mock", chunk_rows=1_000)
    for name in ("photometry.parquet", "apogee.parquet", "lamost.parquet"):
        pd.testing.assert_frame_equal(
            pd.read_parquet(tmp_path / "mock" / name),
            pd.read_parquet(tmp_path / "reference" / name),
            obj=name,
        )
