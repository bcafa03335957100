"""Where the networks run, and how many CPU threads torch may use while they do.

``torch.set_num_threads`` is process-global, so nothing here changes it at import time;
:func:`torch_threads` sets it for the duration of one training or prediction call and restores
the previous value afterwards.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from bigcat.errors import ConfigError

logger = logging.getLogger(__name__)

DEVICE_ENV = "BIGCAT_DEVICE"


def default_device() -> torch.device:
    """The device networks train and predict on.

    Returns
    -------
    torch.device
        ``$BIGCAT_DEVICE`` when set (e.g. ``cpu``, ``cuda``, ``cuda:1``), else CUDA when available,
        else CPU.

    Raises
    ------
    ConfigError
        When ``$BIGCAT_DEVICE`` is not a device name torch understands, or names CUDA on a machine
        without it.
    """
    name = os.environ.get(DEVICE_ENV, "").strip()
    if name:
        try:
            device = torch.device(name)
        except (RuntimeError, ValueError) as exc:
            raise ConfigError(
                f"{DEVICE_ENV}={name!r} is not a torch device name; use 'cpu', 'cuda' or "
                f"'cuda:N', or unset it to choose automatically."
            ) from exc
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ConfigError(
                f"{DEVICE_ENV}={name!r} but CUDA is not available on this machine; "
                f"set {DEVICE_ENV}=cpu or unset it."
            )
        return device
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def resolve_device(device: torch.device | str | None) -> torch.device:
    """``device`` as a :class:`torch.device`; ``None`` means :func:`default_device`."""
    return default_device() if device is None else torch.device(device)


@contextmanager
def torch_threads(num_threads: int | None) -> Iterator[None]:
    """Run a block with ``torch.set_num_threads(num_threads)``, restoring the old value after.

    Parameters
    ----------
    num_threads : int or None
        Intra-op CPU threads for the block; ``None`` leaves the current setting alone.
    """
    if num_threads is None:
        yield
        return
    if num_threads < 1:
        raise ConfigError(f"num_threads = {num_threads}: must be at least 1.")
    previous = torch.get_num_threads()
    torch.set_num_threads(num_threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
