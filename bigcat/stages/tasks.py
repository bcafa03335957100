"""Submit named per-partition tasks to Dask and follow them with one progress bar per stage."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import pickle
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from distributed import Client, as_completed
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

logger = logging.getLogger(__name__)

_console = Console(stderr=True)


def progress_bar() -> Progress:
    """The terminal progress bar bigcat shows for each stage (to stderr)."""
    return Progress(
        TextColumn("[bold]{task.description:<12}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=_console,
        transient=True,
        disable=not sys.stderr.isatty() and not _console.is_terminal,
    )


#: glibc mallopt parameters and the values bigcat's tasks run with (see :func:`tune_malloc`).
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD_BYTES = 32 << 20
TRIM_THRESHOLD_BYTES = 64 << 20


@functools.cache
def _libc() -> ctypes.CDLL | None:
    """glibc, if this process runs on it (mallopt and malloc_trim exist), else None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None


@functools.cache
def tune_malloc() -> bool:
    """Give this worker process glibc's usual malloc thresholds (once per process).

    Dask's nanny starts workers with ``MALLOC_TRIM_THRESHOLD_=65536`` so that freed memory goes
    back to the OS. Setting any threshold that way also switches off glibc's adaptive mmap
    threshold, so every allocation above 128 KiB (a mini-batch activation, a partition's
    column) becomes an ``mmap`` and its pages are zero-filled again on every use: stage-1
    training ran 1.6x slower in a worker than in a plain Python process. Here the thresholds
    are set to the values glibc's adaptive rule settles at (mmap above 32 MiB, trim above 64
    MiB), and :func:`_run_in_worker` still returns freed memory to the OS after each task
    (``malloc_trim``), which is what the nanny's setting is for. Returns False where this is
    not glibc (nothing to do).
    """
    libc = _libc()
    if libc is None:
        return False
    ok = libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) == 1
    ok &= libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES) == 1
    return bool(ok)


def _run_in_worker(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Task wrapper: tuned malloc for the task's work, freed memory returned afterwards."""
    tune_malloc()
    try:
        return func(*args, **kwargs)
    finally:
        libc = _libc()
        if libc is not None:
            libc.malloc_trim(0)


def _run_pickled(func: Callable[..., Any], *args: Any, **kwargs: Any) -> bytes:
    """:func:`_run_in_worker`, its result returned pickled (one bytes object).

    Dask serialises a task's result element by element when it is a dict, list or tuple:
    the per-pixel row counts of one ingest chunk (a dict of 12,000 entries) took 0.2-0.3 s
    to reach the client, more than the chunk's work (0.1 s), so a stage of many small tasks
    was bound by the transfer of its summaries. One pickle (protocol 5) is one buffer."""
    return pickle.dumps(_run_in_worker(func, *args, **kwargs), protocol=5)


def run_tasks(
    client: Client,
    func: Callable[..., Any],
    tasks: Sequence[tuple[str, tuple]],
    label: str,
    *,
    on_done: Callable[[Any], None] | None = None,
    writes_files: bool = False,
    **common: Any,
) -> list[Any]:
    """Run ``func(*args, **common)`` for each ``(name, args)`` on the cluster.

    Task keys are ``<name>-<run token>`` (e.g. ``photometry-pix1234-1a2b3c4d``), so the
    dashboard's task stream reads like the pipeline and a key is never reused across runs.
    Results come back in the order of ``tasks``. The first failure cancels the rest and is
    re-raised unchanged (bigcat's own errors carry their message to the user).
    ``on_done``, if given, is called with each task's result as it arrives (in completion
    order; the live sky map of ``bigcat.dashboard`` follows the stages this way).

    ``writes_files``: the tasks write files (partitions, chunks). When the loop is stopped
    (Ctrl-C, SIGTERM, a failed task), cancelled tasks already running on a worker still run
    to their end (Dask cannot interrupt them); such stragglers are then waited for (at most
    :data:`STRAGGLER_WAIT_S`) before the exception goes on, so that nothing writes into the
    output after the caller has released its lock (a cluster that outlives the command, or
    the same client in a notebook). Their writes are atomic, so what they leave is whole.
    """
    if not tasks:
        return []
    token = uuid.uuid4().hex[:8]
    # names must give distinct keys (a repeated key would silently share one result):
    # partitions of different orders can have the same pixel number
    seen: dict[str, int] = {}
    keys = []
    for name, _ in tasks:
        k = seen.get(name, 0)
        seen[name] = k + 1
        keys.append(f"{name}-{token}" if k == 0 else f"{name}-{k}-{token}")
    futures = [
        client.submit(_run_pickled, func, *args, key=key, pure=False, **common)
        for key, (_, args) in zip(keys, tasks, strict=True)
    ]
    return follow_futures(
        client, futures, label, decode=pickle.loads, on_done=on_done, writes_files=writes_files
    )


def follow_futures(
    client: Client,
    futures: Sequence[Any],
    label: str,
    *,
    decode: Callable[[Any], Any] | None = None,
    on_done: Callable[[Any], None] | None = None,
    writes_files: bool = False,
) -> list[Any]:
    """Results of ``futures`` in their order, followed with bigcat's progress bar as they
    complete (``decode`` applied to each, then ``on_done``). The first failure, or a stop,
    cancels the rest and is re-raised unchanged; with ``writes_files`` the cancelled tasks
    still running are waited for first (:func:`run_tasks`)."""
    index = {f.key: i for i, f in enumerate(futures)}
    results: list[Any] = [None] * len(futures)
    with progress_bar() as progress:
        bar = progress.add_task(label, total=len(futures))
        try:
            for future in as_completed(futures):
                if future.status == "error":
                    exc = future.exception()
                    raise exc  # type: ignore[misc]
                result = future.result()
                results[index[future.key]] = result if decode is None else decode(result)
                if on_done is not None:
                    on_done(results[index[future.key]])
                progress.advance(bar)
        except BaseException:
            client.cancel(futures)
            if writes_files:
                wait_for_stragglers(client, {str(f.key) for f in futures})
            raise
    return results


#: The longest bigcat waits for cancelled, still-running file-writing tasks to end (s).
STRAGGLER_WAIT_S = 120.0


def _running_keys(keys: set[str], dask_worker: Any = None) -> list[str]:
    """Of ``keys``, those this worker is still executing (run on each worker)."""
    tasks = dask_worker.state.tasks
    return [k for k in keys if k in tasks and tasks[k].state in ("executing", "cancelled")]


def wait_for_stragglers(client: Client, keys: set[str], timeout: float = STRAGGLER_WAIT_S) -> int:
    """Wait until no worker runs any of ``keys`` (or ``timeout``); returns how many were
    still running when the wait began. Never raises: with the cluster gone there is nothing
    left to wait for."""
    deadline = time.monotonic() + timeout
    first: int | None = None
    try:
        while True:
            running = sum(len(v) for v in client.run(_running_keys, keys).values())
            if first is None:
                first = running
                if running:
                    logger.info("stopping: waiting for %d running task(s) to finish", running)
            if not running or time.monotonic() > deadline:
                return first
            time.sleep(0.1)
    except Exception:  # noqa: BLE001 (a closed client or a dead scheduler)
        return first or 0
