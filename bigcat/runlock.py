"""One run per directory: an exclusive lock on a run (or output) directory.

Every command that writes into a run directory (``bigcat process``, ``predict``, ``train``,
``analyze``, ``report``) holds ``RUN_DIR/.bigcat.lock`` while it runs; ``bigcat ingest``,
``crossmatch`` and ``mock`` hold ``.NAME.bigcat.lock`` beside their output. The lock file is
created in one step (written under a temporary name, then hard-linked to the lock's name,
which fails if it exists) and holds the holder's pid, host, start time and command. A
second command on the same directory is refused with a :class:`RunDirInUseError` naming the
directory and the holder. A lock whose holder is no longer running on this host (a killed
run) is taken over with a warning in the log; a lock held from another host is never taken
over (its process cannot be checked from here): the message says how to remove it.

The lock is re-entrant within one process (``bigcat process`` runs the analyses and the
report under its own lock) and is released on exit, on an exception and on Ctrl-C.
:func:`lock_held` tells whether this process holds a lock covering a path: only then may
leftover temporary files under it be removed.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bigcat.errors import RunDirInUseError

logger = logging.getLogger(__name__)

LOCK_NAME = ".bigcat.lock"


@dataclass
class _Held:
    lock_file: Path
    covers: tuple[Path, ...]
    depth: int


_held: dict[Path, _Held] = {}
_mutex = threading.Lock()


def run_lock_file(run_dir: Path) -> Path:
    """The lock file of a run directory (inside it)."""
    return Path(run_dir) / LOCK_NAME


def output_lock_file(out: Path) -> Path:
    """The lock file of an output that must not exist yet (beside it)."""
    out = Path(out)
    return out.with_name(f".{out.name}{LOCK_NAME}")


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except OSError:
        return False
    return True


def read_lock(lock_file: Path) -> dict | None:
    """The holder recorded in a lock file (None if absent; ``{}`` if unreadable)."""
    try:
        text = Path(lock_file).read_text()
    except FileNotFoundError:
        return None
    except OSError:
        return {}
    try:
        info = json.loads(text)
    except ValueError:
        return {}
    return info if isinstance(info, dict) else {}


def describe_holder(info: dict) -> str:
    """'pid 123 on host h since 2026-01-01T10:00:00 (bigcat process ...)'."""
    if not info:
        return "an unknown process (the lock file is unreadable)"
    when = info.get("started")
    since = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(when)) if when else "?"
    command = f" ({info['command']})" if info.get("command") else ""
    return f"pid {info.get('pid', '?')} on host {info.get('host', '?')} since {since}{command}"


def _try_create(lock_file: Path, info: dict) -> bool:
    """Create ``lock_file`` holding ``info`` in one step; False if it exists already."""
    tmp = lock_file.with_name(f"{lock_file.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(json.dumps(info))
    try:
        os.link(tmp, lock_file)
        return True
    except FileExistsError:
        return False
    except OSError as exc:  # a file system without hard links
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP):
            raise
        try:
            fd = os.open(lock_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as fh:
            fh.write(json.dumps(info))
        return True
    finally:
        tmp.unlink(missing_ok=True)


def _acquire(lock_file: Path, what: Path, command: str) -> None:
    host = socket.gethostname()
    info = {"pid": os.getpid(), "host": host, "started": time.time(), "command": command}
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(3):
        if _try_create(lock_file, info):
            return
        holder = read_lock(lock_file)
        if holder is None:  # released meanwhile
            continue
        same_host = holder.get("host") == host
        pid = holder.get("pid")
        if holder and same_host and isinstance(pid, int) and not _pid_alive(pid):
            logger.warning(
                "%s: taking over a stale lock of %s, which is no longer running (a killed "
                "run); its unfinished work is resumed or redone.",
                what,
                describe_holder(holder),
            )
            with contextlib.suppress(FileNotFoundError):
                os.unlink(lock_file)
            continue
        if not holder:  # unreadable: a lock file being written, or damaged
            time.sleep(0.2)
            holder = read_lock(lock_file) or {}
            if not holder:
                raise RunDirInUseError(
                    f"{what} is locked by {lock_file}, which cannot be read. If no bigcat "
                    f"command is running on {what}, delete {lock_file} and run again."
                )
            continue
        where = "" if same_host else f" (on another host: bigcat cannot check it from {host})"
        raise RunDirInUseError(
            f"{what} is in use by another bigcat command: {describe_holder(holder)}{where}. "
            "One command at a time may write a run directory: wait for it to finish, or use "
            f"another --out. If that process is not running any more, delete {lock_file}."
        )
    raise RunDirInUseError(
        f"{what}: could not take the lock {lock_file} (it keeps changing hands); another "
        "bigcat command is starting on the same directory. Run one at a time."
    )


@contextlib.contextmanager
def exclusive(
    lock_file: Path, what: Path, command: str = "", covers: tuple[Path, ...] = ()
) -> Iterator[Path]:
    """Hold ``lock_file`` (the lock of directory ``what``) for the duration of the block.

    Parameters
    ----------
    lock_file
        The lock's path.
    what
        The directory it protects (named in messages; covered by :func:`lock_held`).
    command
        What holds it, recorded for the message a second command gets.
    covers
        More paths this lock protects (e.g. an ingest's ``CATALOG.partial``).

    Raises
    ------
    RunDirInUseError
        If another live process holds it.
    """
    lock_file = Path(lock_file).absolute()
    with _mutex:
        held = _held.get(lock_file)
        if held is not None:
            held.depth += 1
    if held is None:
        _acquire(lock_file, Path(what), command or " ".join(sys.argv[:3]))
        with _mutex:
            held = _Held(lock_file, tuple(Path(p).absolute() for p in (what, *covers)), depth=1)
            _held[lock_file] = held
    interrupted = False
    try:
        yield lock_file
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM/SIGHUP turned into one by the CLI
        interrupted = True
        raise
    finally:
        with _mutex:
            held.depth -= 1
            last = held.depth == 0
            if last:
                _held.pop(lock_file, None)
        if last and interrupted:
            _remove_temporaries(held.covers)
        if last:
            holder = read_lock(lock_file)
            if holder and holder.get("pid") == os.getpid():
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(lock_file)


def _remove_temporaries(roots: tuple[Path, ...]) -> None:
    """An interrupted command's temporary files, removed while its lock is still held (the
    outermost lock is taken before the cluster starts, so its workers have stopped by now)."""
    from bigcat.atomic import remove_temporaries

    for root in roots:
        try:
            removed = remove_temporaries(root, keep=LOCK_NAME)  # others' lock attempts
        except OSError as exc:  # best effort: the next run removes them under its lock
            logger.info("%s: temporary files not removed (%s).", root, exc)
            continue
        if removed:
            logger.info("%s: removed %d temporary files of interrupted writes.", root, len(removed))


def run_dir_lock(
    run_dir: str | Path, command: str = "", create: bool = True
) -> contextlib.AbstractContextManager:
    """:func:`exclusive` on ``RUN_DIR/.bigcat.lock``. The directory is created, or, with
    ``create`` false, a missing one is not locked (the command then says it is missing)."""
    run_dir = Path(run_dir).absolute()
    if not create and not run_dir.is_dir():
        return contextlib.nullcontext(run_lock_file(run_dir))
    run_dir.mkdir(parents=True, exist_ok=True)
    return exclusive(run_lock_file(run_dir), run_dir, command)


def output_lock(out: str | Path, command: str = "", covers: tuple[Path, ...] = ()):
    """:func:`exclusive` on ``.NAME.bigcat.lock`` beside an output directory ``out``."""
    out = Path(out).absolute()
    return exclusive(output_lock_file(out), out, command, covers)


def staging_dir(out: str | Path) -> Path:
    """Where a command building output directory ``out`` stages it (``OUT.partial``)."""
    out = Path(out)
    return out.with_name(out.name + ".partial")


def lock_held(path: str | Path) -> bool:
    """True if this process holds a lock covering ``path`` (it or a directory above it)."""
    path = Path(path).absolute()
    with _mutex:
        for held in _held.values():
            for root in held.covers:
                if path == root or root in path.parents:
                    return True
    return False
