"""bigcat: photometric metallicities and distances of red giants, and the Galactic bar/bulge.

The Python face mirrors the command line (:mod:`bigcat.api`)::

    import bigcat

    run = bigcat.process(out="runs/quick")       # or open a finished one:
    run = bigcat.open_run("runs/quick")
    run.catalog                                   # an lsdb.Catalog of the processed stars
    run.gradient, run.vertex                      # analysis/gradient.json, vertex.json
    bigcat.predict(models=run, input="other.parquet", out="runs/other")
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = [
    "Run",
    "__version__",
    "crossmatch",
    "ingest",
    "mock",
    "open_run",
    "predict",
    "process",
]


def __getattr__(name: str) -> Any:
    # the API loads on first use, so `bigcat --version` and the kernels stay light
    if name in __all__ and name != "__version__":
        from bigcat import api

        return getattr(api, name)
    raise AttributeError(f"module 'bigcat' has no attribute {name!r}")
