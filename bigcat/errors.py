"""bigcat's exceptions. Every message names the file, column, value or row, and the fix."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class BigcatError(Exception):
    """Base class: a user-facing error with a one-paragraph message."""


class ConfigError(BigcatError):
    """A configuration value or key is wrong."""


class InputError(BigcatError):
    """An input file is unreadable, incomplete or inconsistent."""


class CatalogError(BigcatError):
    """A HEALPix catalogue on disk is missing, corrupted or inconsistent."""


class ClusterError(BigcatError):
    """The Dask cluster cannot be reached or started."""


class RunDirInUseError(BigcatError):
    """A run or output directory is locked by another running bigcat command."""


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """Return ``" Did you mean 'x'?"`` for the closest candidate, or an empty string."""
    close = difflib.get_close_matches(name, list(candidates), n=1)
    return f" Did you mean '{close[0]}'?" if close else ""


def missing_columns_message(
    path: str,
    missing: list[str],
    available: Iterable[str],
    taken: Iterable[str] = (),
    table: str = "columns",
) -> str:
    """Message for required columns absent from an input file, with the mapping that fixes it.

    ``taken`` are the file's columns already used under their own name (not suggested);
    ``table`` is the TOML table of the mapping (``columns.tmass`` for a survey's own table).
    """
    available = list(available)
    free = [c for c in available if c not in set(taken)]
    hints = []
    for col in missing:
        close = difflib.get_close_matches(col, free, n=1, cutoff=0.5)
        user = close[0] if close else "your_column_name"
        hints.append(f'{col} = "{user}"')
    mapping = "\n    ".join(hints)
    return (
        f"{path}: missing required column(s) {', '.join(missing)}. "
        f"If the file names them differently, map them in bigcat.toml (pass it with --config):\n"
        f"  [{table}]\n    {mapping}\n"
        f"The file has: {', '.join(available[:40])}{' ...' if len(available) > 40 else ''}."
    )
