"""Stage 2 training (TG) sample: APOGEE and LAMOST labels matched to the processed catalogue.

1. **Read and clean** (on the client: label tables are small, ~1e5 rows): each table in its
   survey's own column names (:func:`bigcat.catalog.labels.read_label_table`), the paper's
   sigma_Teff/Teff and sigma_logg/logg cuts and one row per star per survey
   (:func:`~bigcat.catalog.labels.clean_labels`).
2. **Assign** every label without a Gaia source id to the catalogue partitions its match disc
   can reach: its own pixel, plus the neighbouring partitions when it lies within the radius
   of an edge (:func:`~bigcat.catalog.labels.candidate_partitions`).
3. **Match** (tasks ``labels-o<order>-pix<N>``, groups of neighbouring partitions covering the
   whole catalogue): labels with a Gaia source id are matched by id in every partition (the
   id table is broadcast to the workers once; a label's position says nothing about where its
   id is), the others to the nearest star within the radius among the partitions assigned
   to them (:func:`~bigcat.catalog.labels.label_candidates`). Only the few columns asked for
   are read.
4. **Resolve** on the client (:func:`~bigcat.catalog.labels.resolve_matches`): one star per
   label, giants only, one label per star with APOGEE first.

Every label's candidates are found whatever the task grouping, and the resolution orders them
by fixed keys, so the sample does not depend on how partitions are grouped into tasks.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
from distributed import Client

from bigcat.catalog.labels import (
    LABEL_COLUMNS,
    MATCH_COLUMNS,
    SURVEYS,
    candidate_partitions,
    clean_labels,
    label_candidates,
    read_label_table,
    resolve_matches,
    search_order,
)
from bigcat.catalog.store import Catalog, partition_path, read_table_checked
from bigcat.errors import CatalogError, ConfigError, InputError, did_you_mean
from bigcat.schema import TRUTH_PREFIX
from bigcat.stages.partitions import group_partitions
from bigcat.stages.tasks import run_tasks

logger = logging.getLogger(__name__)

STAGE = "labels"
#: Catalogue columns every match reads.
BASE_COLUMNS = ["source_id", "ra", "dec", "is_giant", "quality_ok"]
#: Columns the training sample adds to the catalogue's.
TG_LABEL_COLUMNS = [
    "survey",
    "label_id",
    "label_ra",
    "label_dec",
    "feh",
    "feh_err",
    "teff",
    "teff_err",
    "logg",
    "logg_err",
    "match_kind",
    "match_sep_arcsec",
]
LabelPaths = str | Path | Sequence[str | Path] | Mapping[str, str | Path | Sequence[str | Path]]


def read_labels(
    label_paths: LabelPaths, column_map: Mapping[str, str] | None = None
) -> tuple[pd.DataFrame, dict[str, dict[str, int]]]:
    """Read and clean every label table; surveys in precedence order, with ``label_row``.

    Parameters
    ----------
    label_paths
        A file or directory, a list of them (survey detected from the columns), or
        survey -> path(s).
    column_map
        Survey column name -> the file's column name (see ``read_label_table``).

    Returns
    -------
    labels : DataFrame
        :data:`~bigcat.catalog.labels.LABEL_COLUMNS` plus ``label_row`` (0..n-1).
    counts : dict
        Per survey, the cleaning counts of ``clean_labels``.
    """
    items: list[tuple[str | Path, str | None]]
    if isinstance(label_paths, str | Path):
        items = [(label_paths, None)]
    elif isinstance(label_paths, Mapping):
        items = [
            (path, survey)
            for survey, paths in label_paths.items()
            for path in ([paths] if isinstance(paths, str | Path) else paths)
        ]
    else:
        items = [(path, None) for path in label_paths]
    if not items:
        raise InputError(
            "No label tables given: stage 2 needs APOGEE allStar and/or LAMOST DR6 tables "
            "(pass them with --labels)."
        )
    by_survey: dict[str, list[pd.DataFrame]] = {}
    for path, survey in items:
        table = read_label_table(path, survey, column_map)
        by_survey.setdefault(str(table.attrs["survey"]), []).append(table)
    parts, counts = [], {}
    for survey in [s for s in SURVEYS if s in by_survey]:
        clean, counts[survey] = clean_labels(pd.concat(by_survey[survey], ignore_index=True))
        parts.append(clean)
    labels = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=LABEL_COLUMNS)
    labels["source_id"] = labels["source_id"].astype("Int64")
    labels["label_row"] = np.arange(len(labels), dtype=np.int64)
    return labels, counts


def match_label_group(
    pixels: list[tuple[int, int]],
    root: str,
    position_labels: pd.DataFrame,
    id_labels: pd.DataFrame,
    radius_arcsec: float,
    columns: list[str],
) -> pd.DataFrame:
    """Task body: the label candidates among a group of partitions (``columns`` read)."""
    hint = f"It is a partition of the catalogue {root}; rerun the stage that wrote it."
    tables = [
        read_table_checked(partition_path(root, o, p), columns=columns, rebuild=hint)
        for o, p in pixels
    ]
    frame = pa.concat_tables(tables, promote_options="default").to_pandas()
    return label_candidates(frame, position_labels, id_labels, radius_arcsec)


def _check_columns(catalog: Catalog, columns: Sequence[str]) -> list[str]:
    """BASE_COLUMNS + ``columns`` (no repeats), checked against the catalogue.

    Raises
    ------
    ValueError
        For a truth column or a name the training sample uses for label columns.
    CatalogError
        For a column the catalogue does not have.
    """
    wanted = list(dict.fromkeys([*BASE_COLUMNS, *columns]))
    for col in wanted:
        if col.startswith(TRUTH_PREFIX):
            raise ValueError(f"column {col!r}: no stage may read truth columns ({TRUTH_PREFIX}*).")
        if col in TG_LABEL_COLUMNS or col in MATCH_COLUMNS:
            raise ValueError(
                f"column {col!r} is a label column of the training sample; the catalogue's "
                "column of that name cannot be carried with it. Rename it or leave it out."
            )
    available = catalog.columns()
    for col in wanted:
        if col not in available:
            raise CatalogError(
                f"{catalog.root}: no column {col!r}.{did_you_mean(col, available)} Matching "
                "labels needs the photometry stage's output (is_giant, quality_ok); run "
                "`bigcat process` first, or ask for columns the catalogue has."
            )
    return wanted


def match_labels(
    catalog: Catalog,
    label_paths: LabelPaths,
    client: Client,
    radius_arcsec: float = 1.0,
    columns: Sequence[str] | None = None,
    column_map: Mapping[str, str] | None = None,
    target_task_rows: int = 60_000,
) -> tuple[pd.DataFrame, dict]:
    """The stage-2 training sample: quality giants with an APOGEE or LAMOST label.

    Parameters
    ----------
    catalog
        The processed catalogue (needs ``source_id``, ``ra``, ``dec``, ``is_giant``,
        ``quality_ok``).
    label_paths
        Label tables (Parquet, CSV, FITS): a file or directory, a list of them (survey
        detected from the columns), or a mapping survey (``"apogee"``, ``"lamost"``) ->
        path(s). Tables of one survey are cleaned together.
    client
        The Dask client that runs the per-partition matches.
    radius_arcsec
        Positional match radius (arcsec) for labels without a Gaia source id.
    columns
        Further catalogue columns to carry into the sample (e.g. the stage-2 features).
    column_map
        Label-table column name as in SCHEMA.md -> the file's name (APOGEE's names are upper
        case and LAMOST's lower case, so one mapping serves both).
    target_task_rows
        Catalogue rows per matching task (groups of neighbouring partitions).

    Returns
    -------
    tg : DataFrame
        The catalogue columns read, then :data:`TG_LABEL_COLUMNS`; one row per star, sorted
        by source_id. ``match_kind`` is ``"source_id"`` or ``"position"``;
        ``match_sep_arcsec`` the label-to-star separation (arcsec; NaN if the label has no
        position).
    report : dict
        ``surveys``: per survey ``read``, ``dropped_nan``, ``dropped_teff_ratio``,
        ``dropped_logg_ratio``, ``dropped_duplicate``, ``kept``, ``matched_by_id``,
        ``matched_by_position``, ``unmatched``, ``not_giant``, ``duplicate_match``,
        ``overridden_by_apogee``, ``final``; ``total``: their sums; ``radius_arcsec``,
        ``partitions_searched``, ``labels_with_source_id`` (after cleaning), ``tasks``.
        Per survey, ``read`` = the four ``dropped_*`` + ``kept``; ``kept`` =
        ``matched_by_id`` + ``matched_by_position`` + ``unmatched``; the matched = ``not_giant``
        + ``duplicate_match`` + ``overridden_by_apogee`` + ``final``.

    Raises
    ------
    InputError
        For no label tables, an unreadable one, missing label columns or bad values (naming
        the file, column and row).
    ConfigError
        For a radius that is not positive or too wide, or an unknown survey name.
    CatalogError
        For a catalogue without the columns asked for.
    ValueError
        For a truth column (``true_*``) or a training-sample column name in ``columns``.
    """
    if not np.isfinite(radius_arcsec) or radius_arcsec <= 0:
        raise ConfigError(f"label match radius {radius_arcsec} arcsec: must be positive.")
    try:
        search_order(radius_arcsec)
    except ValueError as exc:
        raise ConfigError(f"label {exc}") from None
    read_cols = _check_columns(catalog, list(columns or []))
    labels, clean_counts = read_labels(label_paths, column_map)
    pixels = list(catalog.pixels)
    has_id = labels["source_id"].notna().to_numpy()
    pos_rows = np.flatnonzero(~has_id)
    rows, parts = candidate_partitions(
        labels["ra"].to_numpy(np.float64)[pos_rows],
        labels["dec"].to_numpy(np.float64)[pos_rows],
        radius_arcsec,
        pixels,
    )
    rows = pos_rows[rows]
    groups = group_partitions(catalog, target_task_rows, pixels)
    group_of = np.zeros(len(pixels), np.int64)
    index_of = {op: i for i, op in enumerate(pixels)}
    for k, group in enumerate(groups):
        group_of[[index_of[op] for op in group]] = k
    pos_pairs = pd.DataFrame({"row": rows, "group": group_of[parts]}).drop_duplicates()
    position = labels[["label_row", "ra", "dec"]]
    id_labels = labels.loc[has_id, ["label_row", "source_id", "ra", "dec"]].reset_index(drop=True)
    tasks = []
    for k, group in enumerate(groups):
        sel = np.sort(pos_pairs.loc[pos_pairs["group"] == k, "row"].to_numpy())
        order, pixel = group[0]
        tasks.append(
            (
                f"{STAGE}-o{order}-pix{pixel}",
                (group, str(catalog.root), position.iloc[sel].reset_index(drop=True)),
            )
        )
    if tasks:
        [shared] = client.scatter([id_labels], broadcast=True)
        found = run_tasks(
            client,
            match_label_group,
            tasks,
            STAGE,
            id_labels=shared,
            radius_arcsec=radius_arcsec,
            columns=read_cols,
        )
        candidates = pd.concat(found, ignore_index=True)
    else:  # a catalogue without partitions
        candidates = label_candidates(
            pd.DataFrame({c: pd.Series(dtype=float) for c in read_cols}),
            position.iloc[:0],
            id_labels.iloc[:0],
            radius_arcsec,
        )
    tg, match_counts = resolve_matches(candidates, labels)
    surveys = {s: {**clean_counts[s], **match_counts[s]} for s in clean_counts}
    total: dict[str, int] = {}
    for counts in surveys.values():
        for key, value in counts.items():
            total[key] = total.get(key, 0) + value
    for survey, c in surveys.items():
        logger.debug("labels %s: %s", survey, c)
    report = {
        "radius_arcsec": float(radius_arcsec),
        "partitions_searched": len(pixels),
        "labels_with_source_id": int(has_id.sum()),
        "tasks": len(tasks),
        "surveys": surveys,
        "total": total,
    }
    return tg, report
