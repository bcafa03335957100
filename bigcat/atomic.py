"""Atomic file writes: every file bigcat writes appears whole or not at all.

One helper for all of them (docs/design.md, "Resume and fingerprints"): the content is written
to a unique hidden temporary name in the destination's own directory
(``.NAME.<hex>.tmp``) and renamed over the destination with :func:`os.replace`, which is
atomic on POSIX file systems. A killed process leaves at most a temporary file (removed by the
next run under the run-directory lock, :func:`bigcat.catalog.store.remove_stale_temporaries`),
never a half-written file under the real name, and the old content stays readable until the
new one is complete. ``BIGCAT_FSYNC=1`` also flushes each file to disk before the rename
(protection against power loss, not only killed processes).

A whole directory (the report's figures, a finished catalogue) is replaced with
:func:`replace_directory`: the new one is built beside it, then swapped in.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bigcat.errors import CatalogError

logger = logging.getLogger(__name__)

#: fsync each file before the rename (survives power loss, not only killed processes; slower).
FSYNC = os.environ.get("BIGCAT_FSYNC", "0") == "1"
#: Suffix of every temporary file bigcat writes (``.NAME.<32 hex>.tmp``).
TMP_SUFFIX = ".tmp"


def temporary_path(path: Path) -> Path:
    """A unique hidden name next to ``path`` to write to before renaming over it."""
    path = Path(path)
    return path.with_name(f".{path.name}.{uuid.uuid4().hex}{TMP_SUFFIX}")


def is_temporary(path: Path) -> bool:
    """True for a name made by :func:`temporary_path` (a leftover of an interrupted write)."""
    name = Path(path).name
    return name.startswith(".") and name.endswith(TMP_SUFFIX)


@contextlib.contextmanager
def disk_full_as_error(path: Path) -> Iterator[None]:
    """Turn "no space left on device" (or a full quota) while writing ``path`` into a
    :class:`CatalogError` that names the directory and the fix; other errors pass through."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        raise CatalogError(
            f"{Path(path).parent}: no space left on the device (or the disk quota is full) "
            f"while writing {Path(path).name}. Free space there or write the run to another "
            "directory; files already written are kept, and running the same command again "
            "resumes from them."
        ) from exc


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as fh:
        os.fsync(fh.fileno())


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):  # not every file system lets a directory be opened
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path to write to; on success it is renamed over ``path``.

    On any exception (including KeyboardInterrupt) the temporary file is removed and ``path``
    is left as it was. The parent directory is created. Disk-full errors become a
    :class:`CatalogError` naming the directory.

    Examples
    --------
    >>> with atomic_path(out / "table.csv") as tmp:  # doctest: +SKIP
    ...     frame.to_csv(tmp)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_path(path)
    try:
        with disk_full_as_error(path):
            yield tmp
            if FSYNC:
                _fsync_file(tmp)
            os.replace(tmp, path)
        if FSYNC:
            _fsync_dir(path.parent)
    finally:
        if tmp.exists():
            tmp.unlink()


def replace_file(tmp: str | Path, path: str | Path, fsync: bool = FSYNC) -> Path:
    """Rename the finished temporary file ``tmp`` over ``path`` (flushed first with
    ``fsync``); for writers that manage their own temporary file (:func:`temporary_path`)."""
    tmp, path = Path(tmp), Path(path)
    if fsync:
        _fsync_file(tmp)
    os.replace(tmp, path)
    if fsync:
        _fsync_dir(path.parent)
    return path


def write_with(path: str | Path, write: Callable[[Path], Any]) -> Path:
    """Call ``write(tmp)`` and rename ``tmp`` over ``path`` (see :func:`atomic_path`)."""
    with atomic_path(path) as tmp:
        write(tmp)
    return Path(path)


def write_bytes_atomic(data: bytes, path: str | Path) -> Path:
    """Write ``data`` to ``path`` atomically."""
    return write_with(path, lambda tmp: tmp.write_bytes(data))


def write_text_atomic(text: str, path: str | Path, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically."""
    return write_with(path, lambda tmp: tmp.write_text(text, encoding=encoding))


def write_json_atomic(data: Any, path: str | Path, **dumps: Any) -> Path:
    """Write ``data`` as JSON to ``path`` atomically (``dumps``: :func:`json.dumps` options;
    the text is made before anything is written, so an unserialisable value writes nothing)."""
    text = json.dumps(data, **dumps)
    return write_text_atomic(text if text.endswith("\n") else text + "\n", path)


def read_json_key(path: str | Path, key: str, kind: type) -> Any:
    """The value under ``key`` of the JSON object in ``path`` if it is a ``kind``; None for a
    missing or unreadable file, another JSON value, or a value of another type."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    value = data.get(key) if isinstance(data, dict) else None
    return value if isinstance(value, kind) else None


def write_parquet_atomic(data: Any, path: str | Path, **options: Any) -> Path:
    """Write a pandas frame (its index dropped) or a pyarrow table as Parquet, atomically.

    ``options`` go to :func:`pyarrow.parquet.write_table`.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = data if isinstance(data, pa.Table) else pa.Table.from_pandas(data, preserve_index=False)
    return write_with(path, lambda tmp: pq.write_table(table, tmp, **options))


def file_sha256(path: str | Path) -> str:
    """sha256 (hex) of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def new_directory_beside(path: str | Path) -> Path:
    """An empty hidden directory next to ``path`` to build its replacement in
    (``.NAME.<hex>.tmp``; :func:`replace_directory` swaps it in)."""
    tmp = temporary_path(Path(path))
    tmp.mkdir(parents=True)
    return tmp


def replace_directory(new: str | Path, dest: str | Path) -> Path:
    """Put the finished directory ``new`` at ``dest``, replacing what is there.

    ``new`` must be on the same file system (build it with :func:`new_directory_beside`).
    The old directory is renamed aside first and removed only once ``new`` is in place, so
    until then the old content is whole; if the process dies between the two renames,
    :func:`recover_directory` (called here on the next replacement) puts the old one back.
    """
    new, dest = Path(new), Path(dest)
    recover_directory(dest)
    old = dest.with_name(f".{dest.name}.old{TMP_SUFFIX}")
    if old.exists():  # a leftover of a finished replacement whose clean-up was interrupted
        shutil.rmtree(old, ignore_errors=True)
    if dest.exists():
        os.replace(dest, old)
    os.replace(new, dest)
    shutil.rmtree(old, ignore_errors=True)
    return dest


def recover_directory(dest: str | Path) -> bool:
    """Undo a :func:`replace_directory` interrupted between its two renames: if ``dest`` is
    missing and its renamed-aside old copy exists, move it back. Returns True if it did."""
    dest = Path(dest)
    old = dest.with_name(f".{dest.name}.old{TMP_SUFFIX}")
    if not dest.exists() and old.is_dir():
        logger.warning("%s: restoring the previous copy (a replacement was interrupted).", dest)
        os.replace(old, dest)
        return True
    return False


def remove_temporaries(root: str | Path, keep: str = "") -> list[Path]:
    """Remove every leftover of an interrupted write under ``root``: temporary files and
    directories (:func:`is_temporary` names), after putting back a directory whose
    :func:`replace_directory` was cut between its two renames. Only for a caller that holds
    the lock of ``root`` (bigcat.runlock does it when a command is interrupted); names
    containing ``keep`` (when given) are left alone. Returns the paths removed."""
    root = Path(root)
    if not root.is_dir():
        return []
    removed: list[Path] = []
    for path in sorted(root.rglob(".*"), key=lambda p: len(p.parts)):
        if not is_temporary(path) or (keep and keep in path.name) or not os.path.lexists(path):
            continue
        old_suffix = f".old{TMP_SUFFIX}"
        if path.name.endswith(old_suffix) and path.is_dir():
            recover_directory(path.with_name(path.name[1 : -len(old_suffix)]))
            if not path.exists():
                continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(path)
    return removed
