"""Submit named per-partition tasks to Dask and follow them with one progress bar per stage."""

from __future__ import annotations

import logging
import sys
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
        transient=False,
        disable=not sys.stderr.isatty() and not _console.is_terminal,
    )


def run_tasks(
    client: Client,
    func: Callable[..., Any],
    tasks: Sequence[tuple[str, tuple]],
    label: str,
    **common: Any,
) -> list[Any]:
    """Run ``func(*args, **common)`` for each ``(name, args)`` on the cluster.

    Task keys are ``<name>-<run token>`` (e.g. ``photometry-pix1234-1a2b3c4d``), so the
    dashboard's task stream reads like the pipeline and a key is never reused across runs.
    Results come back in the order of ``tasks``. The first failure cancels the rest and is
    re-raised unchanged (bigcat's own errors carry their message to the user).
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
        client.submit(func, *args, key=key, pure=False, **common)
        for key, (_, args) in zip(keys, tasks, strict=True)
    ]
    index = {f.key: i for i, f in enumerate(futures)}
    results: list[Any] = [None] * len(futures)
    with progress_bar() as progress:
        bar = progress.add_task(label, total=len(futures))
        try:
            for future in as_completed(futures):
                if future.status == "error":
                    exc = future.exception()
                    raise exc  # type: ignore[misc]
                results[index[future.key]] = future.result()
                progress.advance(bar)
        except BaseException:
            client.cancel(futures)
            raise
    return results
