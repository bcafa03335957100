"""`bigcat crossmatch`: Gaia DR3 x 2MASS PSC x unWISE -> bigcat's photometric catalogue (HATS).

1. **Check** each survey's input (a file, directory, glob or HATS catalogue): every required
   column present after its ``[columns.<survey>]`` mapping and of the right kind. Nothing is
   written when a check fails.
2. **Load**: files are read (bigcat's chunked readers), validated (finite positions, unique
   ids) and made LSDB catalogues with LSDB's dataframe loader (``lsdb.from_dataframe``'s, given
   the pixels of step 4; 2MASS and unWISE with margin caches of ``[crossmatch] margin_arcsec``);
   a HATS catalogue is opened with ``lsdb.read_hats`` (with its margin cache, when it has one).
3. **Match** with ``lsdb.crossmatch`` (a left join: every Gaia star once), Gaia x 2MASS then
   x unWISE, with :class:`TmassMatch` / :class:`UnwiseMatch`, LSDB's k-d tree nearest-neighbour
   algorithm made epoch-aware (:func:`bigcat.catalog.crossmatch.match_epochs`): Gaia positions
   moved by their proper motions to each counterpart's epoch, the nearest within the radius,
   one-to-one within each region. Counterparts near a region's border are also returned as
   claims, so that one claimed from two regions goes to the nearer star (step 5).
4. **Write** (one task per matched region, ``crossmatch-pix1234``): the merged rows in bigcat's
   names (``ks_m`` from ``k_m``, W1/W2 Vega magnitudes from the fluxes, ...). From files, the
   three LSDB catalogues are partitioned in the output's layout (``--nside``,
   ``--partition-rows``: Gaia's rows as `bigcat ingest` would partition them, 2MASS and unWISE
   on the same pixels), so each region is one partition of the output, written as ingest writes
   one. From HATS catalogues the regions are LSDB's: each is written as a temporary Parquet
   part, and bigcat's own ingest makes the catalogue from them (step 6).
5. **Resolve** the claims across regions and blank the losers' counterparts in their files.
6. **Finish**: the HATS metadata (or the ingest of the parts), so the catalogue is exactly what
   `bigcat process --input CATALOG` expects (a test checks both routes give the same one), with
   the cross-match columns carried along; ``bigcat.json`` records the inputs, settings and counts.

Everything happens in ``CATALOG.partial/``, renamed to ``CATALOG`` at the end; an error removes
it, leaving nothing at ``CATALOG``. A finished catalogue made from the same inputs and settings
is returned as it is, if each of its partition files matches the record (rows, bytes, sha256)
written with it in its ``bigcat.json``; a damaged one is named in a warning and the cross-match
is made again (the claims of step 5 span regions, so not one file alone), to the same files,
which then replace the damaged catalogue. An interrupted run starts afresh.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import logging
import os
import shutil
import time
import uuid
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dask
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from distributed import Client
from lsdb.core.crossmatch.kdtree_match import KdTreeCrossmatch

from bigcat import __version__
from bigcat.atomic import replace_directory, write_json_atomic
from bigcat.catalog.crossmatch import (
    complement_partitions,
    flux_error_to_mag_error,
    flux_to_mag,
    jd_to_year,
    match_epochs,
    near_pixel_border,
)
from bigcat.catalog.healpix import (
    HEALPIX29,
    adaptive_partitions,
    first_index,
    healpix29,
    pixel_at_order,
    pixel_index_range,
)
from bigcat.catalog.readers import expand_inputs, plan_chunks, read_chunk, read_column_kinds
from bigcat.catalog.store import (
    Catalog,
    catalog_problems,
    finalize_catalog,
    partition_path,
    write_frame_atomic,
    write_table_atomic,
)
from bigcat.config import Config
from bigcat.errors import CatalogError, InputError, missing_columns_message
from bigcat.runlock import output_lock, staging_dir
from bigcat.schema import (
    CROSSMATCH_COLUMNS,
    GAIA_OPTIONAL_COLUMNS,
    GAIA_REQUIRED_COLUMNS,
    INPUT_COLUMNS,
    NO_UNWISE_FLAGS,
    OPTIONAL_COLUMNS,
    SURVEYS,
    TMASS_OPTIONAL_COLUMNS,
    TMASS_REQUIRED_COLUMNS,
    UNWISE_OPTIONAL_COLUMNS,
    UNWISE_REQUIRED_COLUMNS,
    ZEROPOINT_COLUMNS,
)
from bigcat.stages.ingest import ingest
from bigcat.stages.tasks import _run_in_worker, follow_futures, run_tasks

logger = logging.getLogger(__name__)

#: Command-line flag of each survey's input (for messages).
FLAGS = {"gaia": "--gaia", "tmass": "--tmass", "unwise": "--unwise"}
#: Each survey's columns (bigcat's names in SCHEMA.md) -> the names used while matching; names
#: that are already final (``ks_m`` from ``k_m``, the photometry) or unique are kept.
INTERNAL = {
    "gaia": {c: c for c in [*GAIA_REQUIRED_COLUMNS, *GAIA_OPTIONAL_COLUMNS]},
    "tmass": {
        "designation": "tmass_designation",
        "ra": "tmass_ra",
        "dec": "tmass_dec",
        "j_m": "j_m",
        "j_msigcom": "j_msigcom",
        "h_m": "h_m",
        "h_msigcom": "h_msigcom",
        "k_m": "ks_m",
        "k_msigcom": "ks_msigcom",
        "jdate": "tmass_jdate",
        "ph_qual": "ph_qual",
    },
    "unwise": {
        "unwise_objid": "unwise_objid",
        "ra": "unwise_ra",
        "dec": "unwise_dec",
        "flux_w1": "flux_w1",
        "dflux_w1": "dflux_w1",
        "flux_w2": "flux_w2",
        "dflux_w2": "dflux_w2",
        "flags_unwise_w1": "flags_unwise_w1",
        "flags_unwise_w2": "flags_unwise_w2",
    },
}
REQUIRED = {
    "gaia": GAIA_REQUIRED_COLUMNS,
    "tmass": TMASS_REQUIRED_COLUMNS,
    "unwise": UNWISE_REQUIRED_COLUMNS,
}
OPTIONAL = {
    "gaia": {k: v[0] for k, v in GAIA_OPTIONAL_COLUMNS.items()},
    "tmass": {k: v[0] for k, v in TMASS_OPTIONAL_COLUMNS.items()},
    "unwise": {k: v[0] for k, v in UNWISE_OPTIONAL_COLUMNS.items()},
}
#: The identifier of each survey's rows (unique).
ID_COLUMN = {"gaia": "source_id", "tmass": "designation", "unwise": "unwise_objid"}
TMASS_PHOTOMETRY = ("j_m", "j_msigcom", "h_m", "h_msigcom", "ks_m", "ks_msigcom")
BORDER = {"tmass": "_tmass_border", "unwise": "_unwise_border"}
_VERSION_KEY = "bigcat_version"
#: The match radius when none is given (arcsec).
DEFAULT_RADIUS_ARCSEC = 1.0


@dataclass
class SurveyInput:
    """One survey's input as given and as found: files or a HATS catalogue."""

    survey: str
    given: str
    kind: str  # "files" or "hats"
    paths: list[Path]
    rename: dict[str, str] = field(default_factory=dict)  # file's name -> internal name
    present_optional: list[str] = field(default_factory=list)  # bigcat names

    def describe(self) -> str:
        what = "catalogue" if self.kind == "hats" else "table"
        where = self.paths[0] if len(self.paths) == 1 else f"{self.given} ({len(self.paths)} files)"
        return f"{SURVEYS[self.survey]} {what} {where}"


# ---- inputs ----------------------------------------------------------------------------------


def is_hats(path: Path) -> bool:
    """A HATS catalogue or collection directory."""
    return path.is_dir() and any(
        (path / name).exists()
        for name in ("partition_info.csv", "collection.properties", "hats.properties")
    )


def resolve_input(survey: str, given: str | Path) -> SurveyInput:
    """What one survey's ``--gaia`` / ``--tmass`` / ``--unwise`` value names.

    Raises
    ------
    InputError
        For a path, directory or glob that holds no readable table.
    """
    text = str(given)
    path = Path(text)
    if is_hats(path):
        return SurveyInput(survey, text, "hats", [path])
    if not path.exists() and any(ch in text for ch in "*?["):
        found = sorted(Path(p) for p in glob.glob(text, recursive=True))
        if not found:
            raise InputError(
                f"{FLAGS[survey]} {text}: the pattern matches no file ({SURVEYS[survey]} table)."
            )
        if len(found) == 1 and is_hats(found[0]):
            return SurveyInput(survey, text, "hats", found)
        paths = expand_inputs(found)
    else:
        try:
            paths = expand_inputs([path])
        except InputError as exc:
            raise InputError(f"{FLAGS[survey]} ({SURVEYS[survey]} table): {exc}") from exc
    return SurveyInput(survey, text, "files", paths)


def _kind_ok(want: str, have: str) -> bool:
    if want == "int":
        return have in ("int", "null", "bool")
    if want == "float":
        return have in ("int", "float", "null")
    return True  # identifiers and text: anything (numbers are read as text)


def check_columns(inp: SurveyInput, mapping: dict[str, str]) -> None:
    """Fill ``inp.rename`` and ``inp.present_optional`` from the input's header(s).

    Raises
    ------
    InputError
        Naming the survey, the file, each missing or mistyped column and the
        ``[columns.<survey>]`` mapping that fixes it.
    """
    survey = inp.survey
    if inp.kind == "hats":
        import lsdb

        try:
            cat = lsdb.open_catalog(inp.paths[0], columns="all")
        except Exception as exc:  # noqa: BLE001 - lsdb/hats raise several types
            raise InputError(
                f"{inp.describe()}: cannot be opened as a HATS catalogue ({exc})."
            ) from exc
        headers = [(inp.paths[0], {c: _dtype_kind(cat.dtypes[c]) for c in cat.columns})]
    else:
        headers = [(p, read_column_kinds(p)[0]) for p in inp.paths]
    wanted = {**REQUIRED[survey], **OPTIONAL[survey]}
    present = None
    for path, kinds in headers:
        user = {c: mapping.get(c, c) for c in wanted}
        missing = [c for c in REQUIRED[survey] if user[c] not in kinds]
        if missing:
            label = f"{SURVEYS[survey]} {'catalogue' if inp.kind == 'hats' else 'table'} {path}"
            raise InputError(
                missing_columns_message(
                    f"{label} ({FLAGS[survey]})",
                    missing,
                    kinds,
                    taken=[user[c] for c in wanted if user[c] in kinds],
                    table=f"columns.{survey}",
                )
            )
        for col, kind in wanted.items():
            have = kinds.get(user[col])
            if have is not None and not _kind_ok(kind, have):
                raise InputError(
                    f"{SURVEYS[survey]} table {path}: column '{user[col]}' has type {have}, but "
                    f"bigcat needs {'an integer' if kind == 'int' else 'a number'} for {col}. "
                    f"Convert the column, or map another one in [columns.{survey}] of the "
                    "--config file."
                )
        here = [c for c in OPTIONAL[survey] if user[c] in kinds]
        if present is not None and here != present:
            raise InputError(
                f"{SURVEYS[survey]} table {path}: has optional column(s) "
                f"{', '.join(here) or 'none'} where {headers[0][0]} has "
                f"{', '.join(present) or 'none'}; give files with the same columns."
            )
        present = here
    inp.present_optional = list(present or [])
    inp.rename = {
        mapping.get(c, c): INTERNAL[survey][c] for c in [*REQUIRED[survey], *inp.present_optional]
    }


def _dtype_kind(dtype) -> str:
    kind = getattr(dtype, "kind", None)
    text = str(dtype).lower()
    if kind in ("i", "u") or text.startswith(("int", "uint")):
        return "int"
    if kind == "f" or text.startswith(("float", "double", "decimal")):
        return "float"
    if kind == "b" or text.startswith("bool"):
        return "bool"
    return "other"


def _fingerprint(inputs: dict[str, SurveyInput], settings: dict) -> str:
    h = hashlib.sha256()
    for survey in ("gaia", "tmass", "unwise"):
        inp = inputs[survey]
        files = inp.paths
        if inp.kind == "hats":  # its metadata files (a collection's and its catalogues')
            root = inp.paths[0]
            dirs = [
                root,
                *(d for d in sorted(root.iterdir()) if d.is_dir() and d.name != "dataset"),
            ]
            files = sorted(p for d in dirs for p in d.iterdir() if p.is_file())
        for f in files:
            st = f.stat()
            h.update(f"{survey}|{f.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode())
            with open(f, "rb") as fh:
                h.update(fh.read(1 << 16))
    h.update(json.dumps(settings, sort_keys=True, default=str).encode())
    return h.hexdigest()[:24]


# ---- loading ---------------------------------------------------------------------------------


def read_survey_table(inp: SurveyInput, chunk_rows: int) -> pd.DataFrame:
    """Every row of a survey's files, with the internal column names, validated.

    Numbers are cast (text that is not a number is an error naming the row), identifiers
    kept as text (2MASS, unWISE) or int64 (Gaia); positions must be finite with
    -90 <= dec <= 90; identifiers unique.

    Raises
    ------
    InputError
        Naming the survey, file, column and row, and the fix.
    """
    survey = inp.survey
    kinds = {
        INTERNAL[survey][c]: k
        for c, k in {**REQUIRED[survey], **OPTIONAL[survey]}.items()
        if c in REQUIRED[survey] or c in inp.present_optional
    }
    frames = []
    for i, path in enumerate(inp.paths):
        _, n_rows = read_column_kinds(path)
        for spec in plan_chunks(path, i, n_rows, chunk_rows):
            for first, piece in read_chunk(spec, list(inp.rename), chunk_rows):
                piece = piece.rename(columns=inp.rename)
                frames.append(_cast(piece, kinds, survey, path, first, i))
    df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(kinds))
    ra_col, dec_col = (
        ("ra", "dec") if survey == "gaia" else (INTERNAL[survey]["ra"], INTERNAL[survey]["dec"])
    )
    ra, dec = df[ra_col].to_numpy(), df[dec_col].to_numpy()
    bad = ~(np.isfinite(ra) & np.isfinite(dec) & (dec >= -90) & (dec <= 90))
    if bad.any():
        k = int(np.argmax(bad))
        raise InputError(
            f"{SURVEYS[survey]} table {_row_file(df, k, inp)}: data row {_row_number(df, k)} "
            f"({ID_COLUMN[survey]} {df[INTERNAL[survey][ID_COLUMN[survey]]].iloc[k]}) has no valid "
            f"position (ra={ra[k]}, dec={dec[k]}). Every row needs finite ICRS ra/dec in degrees "
            "with -90 <= dec <= 90; fix or drop that row."
        )
    df[ra_col] = np.mod(ra, 360.0)
    id_col = INTERNAL[survey][ID_COLUMN[survey]]
    dup = df[id_col].duplicated(keep=False).to_numpy()
    if dup.any():
        first = df[id_col].to_numpy()[dup][0]
        first = first.item() if isinstance(first, np.generic) else first
        rows = np.flatnonzero(df[id_col].to_numpy() == first)[:2]
        where = " and ".join(f"{_row_file(df, r, inp)} data row {_row_number(df, r)}" for r in rows)
        raise InputError(
            f"{SURVEYS[survey]} table: {ID_COLUMN[survey]} {first!r} occurs more than once "
            f"({where}). Each {ID_COLUMN[survey]} must be unique; remove the duplicate rows "
            f"(e.g. from overlapping input files) and run again."
        )
    return df.drop(columns=["_file", "_row"])


def _row_file(df: pd.DataFrame, k: int, inp: SurveyInput) -> Path:
    return inp.paths[int(df["_file"].iloc[k])]


def _row_number(df: pd.DataFrame, k: int) -> int:
    return int(df["_row"].iloc[k]) + 1


def _cast(
    piece: pd.DataFrame, kinds: dict[str, str], survey: str, path: Path, first: int, index: int
) -> pd.DataFrame:
    out: dict[str, object] = {}
    id_col = INTERNAL[survey][ID_COLUMN[survey]]
    for col, kind in kinds.items():
        raw = piece[col]
        if kind == "str":
            values = raw.astype(object).where(raw.notna(), None)
            if col == id_col and values.isna().any():
                k = int(np.argmax(values.isna().to_numpy()))
                raise InputError(
                    f"{SURVEYS[survey]} table {path}: column '{col}' is empty at data row "
                    f"{first + k + 1}. Every row needs its {ID_COLUMN[survey]}."
                )
            out[col] = values.astype(str).where(values.notna(), None)
            continue
        values = pd.to_numeric(raw, errors="coerce")
        bad = values.isna().to_numpy() & raw.notna().to_numpy()
        if kind == "int" and col != "astrometric_params_solved":
            bad = values.isna().to_numpy()
        if bad.any():
            k = int(np.argmax(bad))
            raise InputError(
                f"{SURVEYS[survey]} table {path}: column '{col}' has "
                f"{'no integer' if kind == 'int' else 'a non-numeric value'} {raw.iloc[k]!r} at "
                f"data row {first + k + 1}. Fix the value"
                f"{'' if kind == 'int' else ' or leave it empty (NaN)'}."
            )
        if kind == "int":
            out[col] = values.fillna(0).to_numpy(dtype=np.int64)
        else:
            out[col] = values.to_numpy(dtype=np.float64, na_value=np.nan)
    frame = pd.DataFrame(out, index=pd.RangeIndex(len(piece)))
    frame["_file"] = np.int32(index)
    frame["_row"] = first + np.arange(len(piece), dtype=np.int64)
    return frame


def _lsdb_catalog(inp: SurveyInput, config: Config, df: pd.DataFrame | None):
    """An LSDB catalogue of one survey (from the frame, or the HATS input), internal names."""
    import lsdb

    survey = inp.survey
    margin = None if survey == "gaia" else config.crossmatch.margin_arcsec
    ra_col = "ra" if survey == "gaia" else INTERNAL[survey]["ra"]
    dec_col = "dec" if survey == "gaia" else INTERNAL[survey]["dec"]
    if df is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # lsdb: "this may cause some slowdown" (small data)
            return lsdb.from_dataframe(
                df,
                ra_column=ra_col,
                dec_column=dec_col,
                catalog_name=survey,
                lowest_order=0,
                highest_order=max(config.ingest.order, 7),
                partition_rows=config.process.target_task_rows,
                margin_threshold=margin,
                use_pyarrow_types=False,
            )
    cat: Any = lsdb.read_hats(inp.paths[0], columns=list(inp.rename))
    if survey != "gaia":
        threshold = None
        if cat.margin is not None:
            threshold = cat.margin.hc_structure.catalog_info.margin_threshold
        if threshold is None or threshold < config.crossmatch.margin_arcsec:
            logger.warning(
                "%s has %s; pairs across its partition borders whose separation plus the star's "
                "motion exceeds %s arcsec may be missed. Give a HATS collection with a margin "
                "cache of at least [crossmatch] margin_arcsec = %s arcsec.",
                inp.describe(),
                "no margin cache" if threshold is None else f"a margin cache of {threshold} arcsec",
                threshold or 0,
                config.crossmatch.margin_arcsec,
            )
    cat = cat.rename(inp.rename)
    if cat.margin is not None:
        cat.margin = cat.margin.rename(inp.rename)
    return cat


def _layout_catalogs(frames: dict[str, pd.DataFrame], config: Config) -> dict | None:
    """LSDB catalogues of the three frames in the final layout: Gaia's partitions are the
    catalogue's (``--nside``, ``--partition-rows``), and 2MASS and unWISE are partitioned the
    same way (plus partitions for their rows outside Gaia's), so every region LSDB matches is one
    partition of the output. Margin caches are made from the frames in this process.

    Uses LSDB's dataframe loaders with a given pixel list; None if they are not as expected (a
    newer LSDB), and the caller falls back to ``lsdb.from_dataframe`` and bigcat's ingest.
    """
    try:
        from hats.pixel_math import HealpixPixel
        from lsdb.loaders.dataframe.dataframe_catalog_loader import DataframeCatalogLoader
        from lsdb.loaders.dataframe.from_dataframe_utils import _generate_op
        from lsdb.loaders.dataframe.margin_catalog_generator import MarginCatalogGenerator
    except ImportError:
        return None

    class _Loader(DataframeCatalogLoader):
        def __init__(self, dataframe, pixels, **kwargs):
            super().__init__(dataframe, **kwargs)
            self._pixels = pixels

        def _compute_pixel_list(self):
            return [HealpixPixel(o, p) for o, p in self._pixels]

        def _generate_op(self, pixel_list):
            self.dataframe = self.dataframe.sort_index(kind="stable")
            index = self.dataframe.index.to_numpy()
            bounds = np.array([pixel_index_range(p.order, p.pixel) for p in pixel_list])
            lo = np.searchsorted(index, bounds[:, 0], side="left")
            hi = np.searchsorted(index, bounds[:, 1], side="left")
            dfs = [self.dataframe.iloc[a:b] for a, b in zip(lo, hi, strict=True)]
            return _generate_op(dfs, pixel_list, self.use_pyarrow_types)

    class _Margin(MarginCatalogGenerator):
        def __init__(self, catalog, frame, margin_threshold, **kwargs):  # noqa: D107
            self.dataframe = frame.copy(deep=False)  # no round trip through the cluster
            self.hc_structure = catalog.hc_structure
            self.margin_threshold = margin_threshold
            self.margin_order = -1
            self.use_pyarrow_types = False
            self.catalog_info_kwargs = kwargs

    order, threshold = config.ingest.order, config.ingest.partition_rows
    h29 = {
        s: healpix29(*(df[c].to_numpy() for c in (("ra", "dec") if s == "gaia" else _radec(s))))
        for s, df in frames.items()
    }
    pix, n = np.unique(pixel_at_order(h29["gaia"], order), return_counts=True)
    layout = adaptive_partitions(dict(zip(pix.tolist(), n.tolist(), strict=True)), order, threshold)
    oversize = [(p, n) for o, p, n in layout if threshold and n > threshold]
    if oversize:
        logger.warning(
            "%d order-%d pixels hold more than partition_rows = %d Gaia rows (the densest, pixel "
            "%d, %d rows); each stays one partition, processed in pieces. A finer --nside splits "
            "them.",
            len(oversize),
            order,
            threshold,
            *max(oversize, key=lambda pn: pn[1]),
        )
    gaia_pixels = [(o, p) for o, p, _ in layout]
    starts = np.array([first_index(o, p) for o, p in gaia_pixels], dtype=np.int64)
    ends = np.array([pixel_index_range(o, p)[1] for o, p in gaia_pixels], dtype=np.int64)
    cats = {}
    try:
        for survey, df in frames.items():
            pixels = gaia_pixels
            if survey != "gaia":
                k = np.searchsorted(starts, h29[survey], side="right") - 1
                inside = (k >= 0) & (h29[survey] < ends[np.maximum(k, 0)])
                pix, n = np.unique(pixel_at_order(h29[survey][~inside], order), return_counts=True)
                extra = complement_partitions(
                    dict(zip(pix.tolist(), n.tolist(), strict=True)), order, threshold, gaia_pixels
                )
                pixels = sorted(
                    gaia_pixels + [(o, p) for o, p, _ in extra], key=lambda op: first_index(*op)
                )
            ra, dec = ("ra", "dec") if survey == "gaia" else _radec(survey)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                loader = _Loader(
                    df,
                    pixels,
                    ra_column=ra,
                    dec_column=dec,
                    catalog_name=survey,
                    use_pyarrow_types=False,
                )
                cat = loader.load_catalog()
                if survey != "gaia":
                    cat.margin = _Margin(
                        cat, loader.dataframe, config.crossmatch.margin_arcsec, catalog_name=survey
                    ).create_catalog()
            cats[survey] = cat
    except (AttributeError, TypeError) as exc:  # LSDB's loaders changed
        logger.info("LSDB's dataframe loaders are not as expected (%s); using from_dataframe.", exc)
        return None
    return {"catalogs": cats, "pixels": gaia_pixels, "rows": {(o, p): n for o, p, n in layout}}


# ---- matching (LSDB algorithms) --------------------------------------------------------------


def _floats(df: pd.DataFrame, col: str, n: int, default: float = np.nan) -> np.ndarray:
    if col not in df.columns:
        return np.full(n, default)
    return pd.to_numeric(df[col], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


class _EpochMatch(KdTreeCrossmatch):
    """LSDB's k-d tree nearest-neighbour cross-match, epoch-aware and one-to-one per region.

    ``perform_crossmatch`` calls :func:`bigcat.catalog.crossmatch.match_epochs` on the region's
    Gaia rows and the survey's rows (partition + margin), and adds the separation at the
    counterpart's epoch and whether the counterpart lies near the region's border (its claim is
    then resolved against the neighbouring regions' after the match).
    """

    survey = ""
    sep_column = ""
    border_column = ""
    extra_columns = None

    def __init__(
        self,
        radius_arcsec: float,
        n_neighbors: int,
        max_search_arcsec: float,
        border_arcsec: float,
        gaia_epoch: float,
        right_epoch: float | None = None,
        check_ids: bool = False,
    ):
        super().__init__(n_neighbors=n_neighbors, radius_arcsec=radius_arcsec)
        self.max_search_arcsec = max_search_arcsec
        self.border_arcsec = border_arcsec
        self.gaia_epoch = gaia_epoch
        self.right_epoch = right_epoch
        self.check_ids = check_ids

    def _right_epochs(self, right: pd.DataFrame) -> np.ndarray:
        raise NotImplementedError

    def perform_crossmatch(self, crossmatch_args):
        left, right = crossmatch_args.left_df, crossmatch_args.right_df
        ra_col = crossmatch_args.right_catalog_info.ra_column
        dec_col = crossmatch_args.right_catalog_info.dec_column
        n = len(left)
        if self.check_ids:
            _check_region_ids(right, self.survey)
        r_ra, r_dec = _floats(right, ra_col, len(right)), _floats(right, dec_col, len(right))
        li, rj, sep = match_epochs(
            _floats(left, "ra", n),
            _floats(left, "dec", n),
            _floats(left, "pmra", n),
            _floats(left, "pmdec", n),
            _floats(left, "ref_epoch", n, self.gaia_epoch),
            left["source_id"].to_numpy(dtype=np.int64),
            r_ra,
            r_dec,
            self._right_epochs(right),
            self.radius_arcsec,
            self.n_neighbors,
            self.max_search_arcsec,
            self.gaia_epoch,
        )
        order, pixel = crossmatch_args.left_order, crossmatch_args.left_pixel
        if crossmatch_args.right_order is not None and crossmatch_args.right_order > order:
            order, pixel = crossmatch_args.right_order, crossmatch_args.right_pixel
        border = near_pixel_border(r_ra[rj], r_dec[rj], order, pixel, self.border_arcsec)
        extra = pd.DataFrame(
            {
                self.sep_column: pd.Series(sep, dtype=np.float64),
                self.border_column: pd.Series(border, dtype=bool),
            }
        )
        return li, rj, extra


class TmassMatch(_EpochMatch):
    """Gaia x 2MASS: each candidate re-measured at its own ``jdate``."""

    survey = "tmass"
    sep_column = "tmass_sep_arcsec"
    border_column = BORDER["tmass"]
    extra_columns = pd.DataFrame(
        {
            "tmass_sep_arcsec": pd.Series(dtype=np.float64),
            BORDER["tmass"]: pd.Series(dtype=bool),
        }
    )

    def _right_epochs(self, right: pd.DataFrame) -> np.ndarray:
        return jd_to_year(_floats(right, "tmass_jdate", len(right)))


class UnwiseMatch(_EpochMatch):
    """Gaia x unWISE: the unWISE positions at ``[crossmatch] unwise_epoch``."""

    survey = "unwise"
    sep_column = "unwise_sep_arcsec"
    border_column = BORDER["unwise"]
    extra_columns = pd.DataFrame(
        {
            "unwise_sep_arcsec": pd.Series(dtype=np.float64),
            BORDER["unwise"]: pd.Series(dtype=bool),
        }
    )

    def _right_epochs(self, right: pd.DataFrame) -> np.ndarray:
        if self.right_epoch is None:
            raise ValueError("UnwiseMatch needs right_epoch (the unWISE epoch, a Julian year).")
        return np.full(len(right), float(self.right_epoch))


def _check_region_ids(right: pd.DataFrame, survey: str) -> None:
    """Identifiers unique among one region's survey rows (HATS inputs; files are checked whole)."""
    col = INTERNAL[survey][ID_COLUMN[survey]]
    ids = right[col]
    dup = ids.duplicated(keep=False).to_numpy()
    if dup.any():
        raise InputError(
            f"{SURVEYS[survey]} catalogue: {ID_COLUMN[survey]} {ids[dup].iloc[0]!r} occurs more "
            "than once. Each must be unique; rebuild the catalogue without the duplicate rows."
        )


# ---- merged rows -----------------------------------------------------------------------------


def merged_rows(df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Kernel: one matched region's rows in the photometric catalogue's names.

    Returns the rows (``schema.INPUT_COLUMNS`` then ``schema.CROSSMATCH_COLUMNS``; absent
    optional Gaia columns filled as ingest fills them) and the border claims
    (``survey, key, sep, source_id``) still to be resolved across regions.
    """
    n = len(df)
    out: dict[str, object] = {}
    for col in INPUT_COLUMNS:
        if col in TMASS_PHOTOMETRY or col.startswith(("w1_", "w2_")):
            continue
        kind = {**GAIA_REQUIRED_COLUMNS, **{k: v[0] for k, v in GAIA_OPTIONAL_COLUMNS.items()}}[col]
        if col in df.columns:
            values = pd.to_numeric(df[col], errors="coerce")
            if kind == "int":
                out[col] = values.fillna(0).to_numpy(dtype=np.int64)
            else:
                out[col] = values.to_numpy(dtype=np.float64, na_value=np.nan)
        elif kind == "int":
            out[col] = np.zeros(n, dtype=np.int64)
        else:
            default = OPTIONAL_COLUMNS[col][1] if col in OPTIONAL_COLUMNS else np.nan
            out[col] = np.full(n, default, dtype=np.float64)
    t_id = _text(df["tmass_designation"])
    t_ok = t_id.notna().to_numpy()
    for col in TMASS_PHOTOMETRY:
        out[col] = np.where(t_ok, _floats(df, col, n), np.nan)
    u_id = _text(df["unwise_objid"])
    u_ok = u_id.notna().to_numpy()
    for band in ("w1", "w2"):
        flux = np.where(u_ok, _floats(df, f"flux_{band}", n), np.nan)
        out[f"{band}_mag"] = flux_to_mag(flux)
        out[f"{band}_mag_error"] = flux_error_to_mag_error(flux, _floats(df, f"dflux_{band}", n))
    for band in ("w1", "w2"):
        flags = pd.to_numeric(df[f"flags_unwise_{band}"], errors="coerce")
        flags = flags.to_numpy(dtype=np.float64, na_value=np.nan)
        out[f"{band}_flags"] = np.where(u_ok & np.isfinite(flags), flags, NO_UNWISE_FLAGS).astype(
            np.int64
        )
    rows = pd.DataFrame({c: out[c] for c in INPUT_COLUMNS})
    rows["tmass_designation"] = t_id.to_numpy()
    rows["ph_qual"] = (
        _text(df["ph_qual"]).where(t_ok, None).to_numpy()
        if "ph_qual" in df.columns
        else np.where(t_ok, "", None)  # type: ignore[call-overload]
    )
    rows["tmass_sep_arcsec"] = np.where(t_ok, _floats(df, "tmass_sep_arcsec", n), np.nan)
    rows["tmass_matched"] = t_ok
    rows["unwise_objid"] = u_id.to_numpy()
    rows["unwise_sep_arcsec"] = np.where(u_ok, _floats(df, "unwise_sep_arcsec", n), np.nan)
    rows["unwise_matched"] = u_ok
    claims = []
    for survey, ids, ok in (("tmass", t_id, t_ok), ("unwise", u_id, u_ok)):
        border = ok & df[BORDER[survey]].fillna(False).to_numpy(dtype=bool)
        if border.any():
            claims.append(
                pd.DataFrame(
                    {
                        "survey": survey,
                        "key": ids.to_numpy()[border],
                        "sep": rows[f"{survey}_sep_arcsec"].to_numpy()[border],
                        "source_id": rows["source_id"].to_numpy()[border],
                    }
                )
            )
    claims_df = (
        pd.concat(claims, ignore_index=True)
        if claims
        else pd.DataFrame({"survey": [], "key": [], "sep": [], "source_id": []})
    )
    assert list(rows.columns) == [*INPUT_COLUMNS, *CROSSMATCH_COLUMNS]
    return rows, claims_df


def _text(series: pd.Series) -> pd.Series:
    """Identifiers as text (object) with None where missing."""
    s = series.astype(object)
    s = s.where(series.notna(), None)
    return s.map(lambda v: v if v is None or isinstance(v, str) else str(v)).reset_index(drop=True)


def blank_counterparts(rows: pd.DataFrame, survey: str, source_ids: np.ndarray) -> pd.DataFrame:
    """Kernel: the given stars lose their ``survey`` counterpart (NaN photometry, no id)."""
    lose = np.isin(rows["source_id"].to_numpy(), source_ids)
    rows = rows.copy()
    if survey == "tmass":
        for col in TMASS_PHOTOMETRY:
            rows.loc[lose, col] = np.nan
        rows.loc[lose, ["tmass_designation", "ph_qual"]] = None
        rows.loc[lose, "tmass_sep_arcsec"] = np.nan
        rows.loc[lose, "tmass_matched"] = False
    else:
        for col in ("w1_mag", "w1_mag_error", "w2_mag", "w2_mag_error"):
            rows.loc[lose, col] = np.nan
        rows.loc[lose, ["w1_flags", "w2_flags"]] = NO_UNWISE_FLAGS
        rows.loc[lose, "unwise_objid"] = None
        rows.loc[lose, "unwise_sep_arcsec"] = np.nan
        rows.loc[lose, "unwise_matched"] = False
    return rows


def resolve_claims(claims: pd.DataFrame) -> pd.DataFrame:
    """Kernel: of the border claims on one counterpart, the nearest star keeps it (ties: the
    smaller source_id); returns the losing claims (``survey, key, source_id, part``)."""
    if len(claims) == 0:
        return claims.iloc[:0]
    c = claims.sort_values(["survey", "key", "sep", "source_id"], kind="stable")
    lose = c.duplicated(["survey", "key"], keep="first")
    return c[lose.to_numpy()]


def write_part(
    part: pd.DataFrame,
    path: str,
    partition: tuple[int, int] | None = None,
    fingerprint: str | None = None,
) -> dict:
    """Task body: one matched region -> a Parquet file of merged rows; returns its counts, its
    border claims and its file record (``file``: rows, bytes, sha256; None without rows).

    ``partition`` given: the region is that partition of the output, and the file is written as
    bigcat's ingest writes one (``_healpix_29`` added, rows sorted by it and source_id,
    ``fingerprint`` in its metadata); else a part for bigcat's ingest.
    """
    rows, claims = merged_rows(part)
    record = None
    if partition is not None:
        rows[HEALPIX29] = healpix29(rows["ra"].to_numpy(), rows["dec"].to_numpy())
        if not (pixel_at_order(rows[HEALPIX29].to_numpy(), partition[0]) == partition[1]).all():
            raise RuntimeError(f"crossmatch: rows outside partition {partition} in its region")
        rows = rows.sort_values([HEALPIX29, "source_id"], kind="stable", ignore_index=True)
        if len(rows):
            import pyarrow as pa

            table = pa.Table.from_pandas(rows, preserve_index=False)
            record = write_table_atomic(table, Path(path), fingerprint)
    elif len(rows):
        record = write_frame_atomic(rows, Path(path))
    return {
        "path": path if len(rows) else None,
        "file": record,
        "rows": len(rows),
        "tmass": int(rows["tmass_matched"].sum()),
        "unwise": int(rows["unwise_matched"].sum()),
        "claims": claims,
        "source_ids": rows["source_id"].to_numpy(),
    }


def patch_part(path: str, losers: dict[str, np.ndarray], fingerprint: str | None = None) -> dict:
    """Task body: blank the counterparts a part's stars lost to nearer stars elsewhere;
    returns the rewritten file's record (rows, bytes, sha256)."""
    import pyarrow as pa

    table = pq.read_table(path)
    rows = table.to_pandas()
    for survey, ids in losers.items():
        rows = blank_counterparts(rows, survey, ids)
    out = pa.Table.from_pandas(rows, schema=table.schema.remove_metadata(), preserve_index=False)
    return write_table_atomic(out, Path(path), fingerprint)


# ---- the stage -------------------------------------------------------------------------------


def _radec(survey: str) -> tuple[str, str]:
    return INTERNAL[survey]["ra"], INTERNAL[survey]["dec"]


def _sky_summary(df: pd.DataFrame | None, ra: str, dec: str) -> str:
    if df is None or len(df) == 0:
        return "a HATS catalogue"
    return (
        f"ra {df[ra].min():.2f}..{df[ra].max():.2f}, dec {df[dec].min():.2f}..{df[dec].max():.2f} "
        "deg"
    )


def crossmatch_lock(out: str | Path) -> contextlib.AbstractContextManager:
    """The lock of a cross-match into ``out`` (covering its staging directory); re-entrant,
    so the CLI takes it before the cluster starts and :func:`crossmatch` again."""
    return output_lock(out, "bigcat crossmatch", covers=(staging_dir(out),))


def crossmatch(
    gaia: str | Path | Sequence[str | Path],
    tmass: str | Path | Sequence[str | Path],
    unwise: str | Path | Sequence[str | Path],
    out: str | Path,
    config: Config,
    client: Client,
    radius_arcsec: float | None = 1.0,
) -> Catalog:
    """Cross-match Gaia DR3, 2MASS PSC and unWISE into bigcat's photometric catalogue at ``out``
    (a HATS catalogue in bigcat's input layout; see the module docstring and docs/crossmatch.md).

    Each input is a file, a directory of files, a glob, or a HATS catalogue (several files: a
    list). Column names are the archives' unless mapped in ``config.survey_columns``
    (``[columns.gaia]`` etc.); the layout is ``config.ingest`` (``--nside``,
    ``--partition-rows``). Returns the opened catalogue; its ``properties["crossmatch"]`` holds
    the counts (rows, matched per survey, claims resolved, seconds).

    Raises
    ------
    InputError
        A missing column (naming the survey, file, column and the ``[columns.<survey>]``
        mapping), a duplicate identifier (naming it), a row without a position, or inputs that
        do not overlap on the sky. Nothing is left at ``out``.
    CatalogError
        If ``out`` exists and was not made from these inputs and settings.
    """
    t0 = time.perf_counter()
    out = Path(out)
    radius_arcsec = DEFAULT_RADIUS_ARCSEC if radius_arcsec is None else float(radius_arcsec)
    if not radius_arcsec > 0:
        raise InputError(f"--radius-arcsec {radius_arcsec}: the match radius must be positive.")
    params = config.crossmatch
    if radius_arcsec >= params.margin_arcsec:
        raise InputError(
            f"--radius-arcsec {radius_arcsec} is not below [crossmatch] margin_arcsec = "
            f"{params.margin_arcsec}: raise margin_arcsec (the margin caches must be wider "
            "than the radius)."
        )
    inputs: dict[str, SurveyInput] = {}
    for survey, given in (("gaia", gaia), ("tmass", tmass), ("unwise", unwise)):
        items = [given] if isinstance(given, str | Path) else list(given)
        if not items:
            raise InputError(f"{FLAGS[survey]}: no {SURVEYS[survey]} input given.")
        found = [resolve_input(survey, g) for g in items]
        if len(found) > 1 and any(f.kind == "hats" for f in found):
            raise InputError(
                f"{FLAGS[survey]}: give one HATS catalogue, or files, not a mixture of both."
            )
        inp = found[0]
        if len(found) > 1:
            inp = SurveyInput(survey, ", ".join(map(str, items)), "files", [])
            for f in found:
                inp.paths.extend(f.paths)
        check_columns(inp, dict(config.survey_columns.get(survey, {})))
        inputs[survey] = inp
    settings = {
        "radius_arcsec": float(radius_arcsec),
        "crossmatch": config.to_dict()["crossmatch"],
        "survey_columns": {k: dict(v) for k, v in config.survey_columns.items()},
        "nside": config.ingest.nside,
        "partition_rows": config.ingest.partition_rows,
        _VERSION_KEY: __version__,
    }
    fingerprint = _fingerprint(inputs, settings)
    damaged: list[str] = []
    if out.exists():
        existing = _existing(out, fingerprint)
        damaged = catalog_problems(existing, checksums=True)
        if not damaged:
            logger.info("%s is up to date with its inputs; nothing to do.", out)
            return existing
        _warn_damaged(out, damaged)
    missing_zp = [c for c in ZEROPOINT_COLUMNS if c not in inputs["gaia"].present_optional]
    if missing_zp:
        logger.warning(
            "%s: no %s; the parallax zero-point cannot be applied (rows flagged).",
            inputs["gaia"].describe(),
            ", ".join(missing_zp),
        )
    staging = staging_dir(out)
    with crossmatch_lock(out):
        return _crossmatch_locked(
            inputs, out, staging, config, client, radius_arcsec, settings, fingerprint, t0, damaged
        )


def _existing(out: Path, fingerprint: str) -> Catalog:
    """The catalogue at ``out`` if it was made with ``fingerprint``; else a CatalogError (bigcat
    does not overwrite it)."""
    try:
        existing = Catalog.open(out)
    except CatalogError:
        existing = None
    if existing is None or existing.fingerprint != fingerprint:
        raise CatalogError(
            f"{out} already exists and was not made from these inputs and settings. bigcat does "
            "not overwrite it: choose another --out, or delete it first."
        )
    return existing


def _warn_damaged(out: Path, damaged: list[str]) -> None:
    logger.warning(
        "%s: %d damaged partition file(s) (%s); recomputing them (cross-matching the inputs "
        "again).",
        out,
        len(damaged),
        "; ".join(damaged[:3]) + (" ..." if len(damaged) > 3 else ""),
    )


def _crossmatch_locked(
    inputs: dict[str, SurveyInput],
    out: Path,
    staging: Path,
    config: Config,
    client: Client,
    radius_arcsec: float,
    settings: dict,
    fingerprint: str,
    t0: float,
    damaged: list[str] | None = None,
) -> Catalog:
    """:func:`crossmatch` under the lock of ``out``: staging, matching, publishing.

    ``damaged``: what is wrong with the files of the catalogue of this fingerprint already at
    ``out``, which is then replaced (its files are checked again under the lock)."""
    if out.exists():  # finished (or repaired) meanwhile by the run that held the lock
        existing = _existing(out, fingerprint)
        if not damaged or not catalog_problems(existing, checksums=True):
            return existing
    if staging.exists():
        logger.warning("Removing %s, left by an interrupted crossmatch; starting afresh.", staging)
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    try:
        catalog, counts = _run(inputs, staging, config, client, float(radius_arcsec), fingerprint)
        counts["seconds"] = round(time.perf_counter() - t0, 2)
        props = json.loads((catalog.root / "bigcat.json").read_text())
        props.update(
            {
                "fingerprint": fingerprint,
                "kind": "crossmatch",
                "inputs": {s: [str(p) for p in inp.paths] for s, inp in inputs.items()},
                "input_kinds": {s: inp.kind for s, inp in inputs.items()},
                "crossmatch": counts,
                "settings": settings,
            }
        )
        write_json_atomic(
            props, catalog.root / "bigcat.json", indent=2, sort_keys=True, default=str
        )
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if out.exists():  # a damaged catalogue of these inputs and settings (checked above)
        replace_directory(staging / "catalog", out)
    else:
        os.replace(staging / "catalog", out)
    shutil.rmtree(staging, ignore_errors=True)
    logger.info(
        "Cross-matched %d Gaia rows (2MASS %d, unWISE %d) in %.1f s.",
        counts["rows"],
        counts["tmass_matched"],
        counts["unwise_matched"],
        counts["seconds"],
    )
    return Catalog.open(out)


def _run(
    inputs: dict[str, SurveyInput],
    staging: Path,
    config: Config,
    client: Client,
    radius: float,
    fingerprint: str,
) -> tuple[Catalog, dict]:
    params = config.crossmatch
    phases = {"read": 0.0, "catalogues": 0.0}
    frames: dict[str, pd.DataFrame | None] = {}
    for survey, inp in inputs.items():
        t0 = time.perf_counter()
        frame = read_survey_table(inp, config.ingest.chunk_rows) if inp.kind == "files" else None
        frames[survey] = frame
        if frame is not None and len(frame) == 0:
            raise InputError(f"{inp.describe()}: holds no rows.")
        phases["read"] += time.perf_counter() - t0
    t0 = time.perf_counter()
    layout = None
    if all(f is not None for f in frames.values()):
        layout = _layout_catalogs(frames, config)  # type: ignore[arg-type]
    if layout is not None:
        cats = layout["catalogs"]
    else:
        cats = {s: _lsdb_catalog(inputs[s], config, frames[s]) for s in inputs}
    phases["catalogues"] = time.perf_counter() - t0
    logger.info(
        "LSDB catalogues (%s partitions) in %.1f s.",
        ", ".join(f"{s} {len(c.get_healpix_pixels())}" for s, c in cats.items()),
        phases["catalogues"],
    )
    sky = {
        s: _sky_summary(frames[s], *(("ra", "dec") if s == "gaia" else _radec(s))) for s in inputs
    }
    common: dict[str, Any] = {
        "radius_arcsec": radius,
        "n_neighbors": params.n_neighbors,
        "max_search_arcsec": params.max_search_arcsec,
        "border_arcsec": params.margin_arcsec,
        "gaia_epoch": params.gaia_epoch,
    }
    xm_args = {"how": "left", "suffixes": ("", ""), "suffix_method": "overlapping_columns"}
    with warnings.catch_warnings(), _lsdb_errors(inputs):
        warnings.simplefilter("ignore", RuntimeWarning)  # no margin: warned about above
        matched = cats["gaia"].crossmatch(
            cats["tmass"],
            algorithm=TmassMatch(**common, check_ids=inputs["tmass"].kind == "hats"),
            log_changes=False,
            **xm_args,
        )
        matched = matched.crossmatch(
            cats["unwise"],
            algorithm=UnwiseMatch(
                **common, right_epoch=params.unwise_epoch, check_ids=inputs["unwise"].kind == "hats"
            ),
            log_changes=False,
            **xm_args,
        )
    pixels = [(p.order, p.pixel) for p in matched.get_healpix_pixels()]
    direct = layout is not None and sorted(pixels) == sorted(layout["pixels"])
    root = staging / "catalog"
    parts_dir = staging / "merged"
    parts_dir.mkdir()
    token = uuid.uuid4().hex[:8]
    tasks = []
    for i, (d, (o, p)) in enumerate(zip(matched.to_delayed(), pixels, strict=True)):
        if direct:
            path, where = str(partition_path(root, o, p)), (o, p)
        else:
            path, where = str(parts_dir / f"part-{i:05d}.parquet"), None
        tasks.append(
            dask.delayed(_run_in_worker)(
                write_part,
                d,
                path,
                where,
                fingerprint if direct else None,
                dask_key_name=f"crossmatch-pix{p}"
                + ("" if o == config.ingest.order else f"-o{o}")
                + f"-{token}",
            )
        )
    t0 = time.perf_counter()
    results = _compute_with_progress(client, tasks, "crossmatch")
    phases["match"] = time.perf_counter() - t0
    logger.info("Matched and wrote %d regions in %.1f s.", len(tasks), phases["match"])
    t0 = time.perf_counter()
    ids = np.concatenate([r["source_ids"] for r in results]) if results else np.zeros(0, np.int64)
    n_gaia = len(frames["gaia"]) if frames["gaia"] is not None else None
    if n_gaia is not None and len(ids) != n_gaia:  # every Gaia row exactly once
        raise RuntimeError(f"crossmatch returned {len(ids)} of {n_gaia} Gaia rows")
    if frames["gaia"] is None:
        uniq, n = np.unique(ids, return_counts=True)
        if len(uniq) != len(ids):
            raise InputError(
                f"{inputs['gaia'].describe()}: source_id {int(uniq[np.argmax(n > 1)])} occurs more "
                "than once. source_id must be unique; rebuild the catalogue without duplicates."
            )
    claims = [r["claims"].assign(part=k) for k, r in enumerate(results) if len(r["claims"])]
    losers = resolve_claims(pd.concat(claims, ignore_index=True)) if claims else None
    lost = {"tmass": 0, "unwise": 0}
    if losers is not None and len(losers):
        patches, patched_parts = [], []
        for k, group in losers.groupby("part"):
            by_survey = {s: g["source_id"].to_numpy(np.int64) for s, g in group.groupby("survey")}
            patches.append(
                (
                    f"crossmatch-resolve-{k}",
                    (results[int(k)]["path"], by_survey, fingerprint if direct else None),
                )
            )
            patched_parts.append(int(k))
            for s, g in group.groupby("survey"):
                lost[s] += len(g)
        records = run_tasks(client, patch_part, patches, "resolve", writes_files=True)
        for k, record in zip(patched_parts, records, strict=True):
            results[k]["file"] = record  # the part as rewritten
    phases["resolve"] = time.perf_counter() - t0
    counts: dict[str, Any] = {
        "rows": int(len(ids)),
        "tmass_matched": int(sum(r["tmass"] for r in results)) - lost["tmass"],
        "unwise_matched": int(sum(r["unwise"] for r in results)) - lost["unwise"],
        "tmass_claims_resolved": lost["tmass"],
        "unwise_claims_resolved": lost["unwise"],
        "radius_arcsec": radius,
        "tmass_rows": None if frames["tmass"] is None else len(frames["tmass"]),
        "unwise_rows": None if frames["unwise"] is None else len(frames["unwise"]),
        "written_by": "crossmatch" if direct else "ingest",
    }
    counts["tmass_unmatched"] = counts["rows"] - counts["tmass_matched"]
    counts["unwise_unmatched"] = counts["rows"] - counts["unwise_matched"]
    for survey in ("tmass", "unwise"):
        if counts[f"{survey}_matched"] == 0:
            raise InputError(
                f"No star of {inputs['gaia'].describe()} ({sky['gaia']}) has a counterpart in "
                f"{inputs[survey].describe()} ({sky[survey]}) within {radius} arcsec: the inputs "
                "do not overlap on the sky, or are not tables of the same stars. Give tables of "
                "the same region, with ICRS positions in degrees (an empty catalogue is not made)."
            )
    del frames, cats, matched
    t0 = time.perf_counter()
    provenance = {
        "nside": config.ingest.nside,
        "partition_threshold": config.ingest.partition_rows,
        "bigcat_version": __version__,
    }
    if direct:
        written = [(op, r) for op, r in zip(pixels, results, strict=True) if r["rows"]]
        rows = {op: r["rows"] for op, r in written}
        catalog = finalize_catalog(
            root,
            list(rows),
            staging.name.removesuffix(".partial"),
            int(sum(rows.values())),
            {"fingerprint": fingerprint, "columns": {}, **provenance},
            partition_rows=rows,
            partition_files={op: r["file"] or {} for op, r in written},
        )
    else:
        catalog = ingest([parts_dir], root, config, client, keep=list(CROSSMATCH_COLUMNS))
    shutil.rmtree(parts_dir, ignore_errors=True)
    phases["write"] = time.perf_counter() - t0
    counts["phases"] = {k: round(v, 2) for k, v in phases.items()}
    return catalog, counts


@contextlib.contextmanager
def _lsdb_errors(inputs: dict[str, SurveyInput]):
    """LSDB's checks of the catalogues (a margin cache narrower than the radius, ...) as a
    bigcat error naming the inputs."""
    try:
        yield
    except ValueError as exc:
        raise InputError(
            f"LSDB cannot cross-match {inputs['gaia'].describe()} with "
            f"{inputs['tmass'].describe()} and {inputs['unwise'].describe()}: {exc}. For a HATS "
            "catalogue, give one with a margin cache wider than --radius-arcsec."
        ) from exc


def _compute_with_progress(client: Client, tasks: list, label: str) -> list:
    """Compute Dask delayed tasks on the cluster with bigcat's progress bar; results in order.
    The first failure cancels the rest and is re-raised unchanged."""
    if not tasks:
        return []
    with warnings.catch_warnings():
        # the frames lsdb.from_dataframe holds travel with the graph (files: a few million rows)
        warnings.filterwarnings("ignore", message="Sending large graph")
        futures = client.compute(tasks)
    return follow_futures(client, futures, label, writes_files=True)  # they write parts


def summary_line(catalog: Catalog, seconds: float | None = None) -> str:
    """The one-line summary `bigcat crossmatch` prints (``seconds``: the time to report, by
    default the cross-match's own)."""
    c = catalog.properties.get("crossmatch", {})
    seconds = c.get("seconds", 0.0) if seconds is None else seconds
    rows = max(int(c.get("rows", 0)), 1)
    return (
        f"Catalogue {catalog.root}: {c.get('rows', 0):,} Gaia rows; 2MASS counterpart for "
        f"{c.get('tmass_matched', 0):,} ({100 * c.get('tmass_matched', 0) / rows:.2f}%, "
        f"{c.get('tmass_unmatched', 0):,} without), unWISE for {c.get('unwise_matched', 0):,} "
        f"({100 * c.get('unwise_matched', 0) / rows:.2f}%, {c.get('unwise_unmatched', 0):,} "
        f"without); {len(catalog.pixels):,} partitions; {seconds:.1f} s."
    )
