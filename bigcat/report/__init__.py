"""`bigcat report RUN_DIR`: Tables 1-3, the paper's figures, sky maps and provenance of one run.

``build_report(run_dir, client=None)`` writes ``RUN_DIR/report.html`` with its figures in
``RUN_DIR/report/`` (PNG) and the tables as CSV beside them. It renders whatever the run has
made; a part not made yet is shown as a placeholder naming the command that makes it.

Modules: ``collect`` (one aggregation pass over the catalogue, on Dask when a client is given),
``tables`` (Tables 1-3 as data and HTML), ``figures`` (matplotlib/healpy PNGs), ``skymap`` (the
partition map of the dashboard's live sky map, final), ``html`` (the self-contained page).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from bigcat.errors import InputError

logger = logging.getLogger(__name__)

#: Directory (inside the run directory) of the report's figures and table files.
FIGURES_DIR = "report"
REPORT_FILE = "report.html"


def build_report(run_dir: str | Path, client: Any = None) -> Path:
    """Write ``RUN_DIR/report.html`` (and ``RUN_DIR/report/*.png``, ``table*.csv``).

    Parameters
    ----------
    run_dir : str or pathlib.Path
        A run directory of `bigcat process` (any stage reached; missing parts are shown as
        placeholders).
    client : distributed.Client, optional
        Aggregate the catalogue's partitions on this cluster; serially in this process if None.

    Returns
    -------
    pathlib.Path
        The path of ``report.html``.

    Raises
    ------
    InputError
        If ``run_dir`` is not a directory.
    """
    from bigcat.report.collect import collect
    from bigcat.report.figures import all_figures
    from bigcat.report.html import render
    from bigcat.report.tables import all_tables

    run_dir = Path(run_dir).resolve()
    if not run_dir.is_dir():
        raise InputError(
            f"{run_dir}: not a directory. Pass the run directory of `bigcat process` "
            "(its --out), e.g. `bigcat report bigcat-run`."
        )
    t0 = time.perf_counter()
    data = collect(run_dir, client)
    out_dir = run_dir / FIGURES_DIR
    out_dir.mkdir(exist_ok=True)
    for stale in out_dir.glob("*.png"):
        stale.unlink()
    tables = all_tables(data)
    for table in tables:
        if table.frame is not None:
            table.frame.to_csv(out_dir / f"{table.key}.csv", index_label=table.index_header)
    figures = all_figures(data, out_dir)
    path = render(data, tables, figures, run_dir / REPORT_FILE)
    logger.info(
        "report %s: %d tables, %d of %d figures drawn, %.1f s",
        path,
        sum(t.frame is not None for t in tables),
        sum(f.path is not None for f in figures),
        len(figures),
        time.perf_counter() - t0,
    )
    return path


__all__ = ["build_report"]
