"""Reading partition columns as plain numpy arrays, whatever their pandas dtype."""

from __future__ import annotations

import logging
from collections.abc import Iterable

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)


def float_column(df: pd.DataFrame, column: str) -> np.ndarray:
    """Return ``df[column]`` as a float64 numpy array, missing values (``pd.NA``, None) as NaN.

    Works for numpy dtypes, pandas nullable dtypes (``Float64``, ``Int64``, ...) and
    pyarrow-backed columns.
    """
    return df[column].to_numpy(dtype=np.float64, na_value=np.nan)


def check_columns(df: pd.DataFrame, columns: Iterable[str], what: str) -> None:
    """Raise ``KeyError`` naming every column of ``columns`` absent from ``df`` and the fix."""
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise KeyError(
            f"{what} needs column(s) {missing}, absent from the partition "
            f"(it has {len(df.columns)} columns). If your catalogue names them differently, "
            "map them in the [columns] table of the configuration (bigcat name = your name)."
        )
