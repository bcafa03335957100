"""Spectroscopic training labels (APOGEE, LAMOST): reading, cleaning and cross-matching kernels.

Pure functions (no dask; only :func:`read_label_table` touches files). The stage
``bigcat.stages.labels`` maps :func:`label_candidates` over the catalogue partitions that
:func:`candidate_partitions` says a label can reach, and resolves
the candidates with :func:`resolve_matches`.

Common label columns (after :func:`read_label_table`)::

    survey     "apogee" | "lamost"
    label_id   the survey's own identifier (APOGEE_ID, obsid), as text
    ra, dec    position (deg)
    source_id  Gaia source id (nullable Int64; the archives' 0, -1 and blanks are missing)
    feh, feh_err      [Fe/H] and its error (dex)
    teff, teff_err    effective temperature and its error (K)
    logg, logg_err    surface gravity and its error (dex, cgs)

Matching (METHOD.md section 5, SCHEMA.md): a label with a source id is matched by id only; a
label without one is matched to the nearest catalogue star within the radius. A catalogue star
keeps one label, APOGEE's where it has both; a label keeps one star.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import healpy as hp
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from scipy.spatial import cKDTree

from bigcat.catalog.healpix import MAX_ORDER, healpix29, pixel_at_order
from bigcat.catalog.readers import expand_inputs, file_format, read_column_kinds, unreadable
from bigcat.errors import ConfigError, InputError, did_you_mean, missing_columns_message
from bigcat.schema import APOGEE_COLUMNS, LAMOST_COLUMNS

logger = logging.getLogger(__name__)

#: Surveys in order of precedence: a star labelled by both keeps the first one's label.
SURVEYS: tuple[str, ...] = ("apogee", "lamost")
#: Common label fields, in the order of schema.APOGEE_COLUMNS / LAMOST_COLUMNS.
LABEL_FIELDS: tuple[str, ...] = (
    "label_id",
    "ra",
    "dec",
    "source_id",
    "feh",
    "feh_err",
    "teff",
    "teff_err",
    "logg",
    "logg_err",
)
LABEL_COLUMNS: list[str] = ["survey", *LABEL_FIELDS]
#: Survey column name -> common field.
SURVEY_FIELDS: dict[str, dict[str, str]] = {
    "apogee": dict(zip(APOGEE_COLUMNS, LABEL_FIELDS, strict=True)),
    "lamost": dict(zip(LAMOST_COLUMNS, LABEL_FIELDS, strict=True)),
}
_VALUE_FIELDS = ("feh", "feh_err", "teff", "teff_err", "logg", "logg_err")
_MISSING_IDS = (0, -1)
_SENTINEL = -9999.0  # the archives' "no value" for the stellar parameters
_KIND_RANK = {"source_id": 0, "position": 1}
_ARCSEC = np.pi / (180.0 * 3600.0)
MATCH_COLUMNS = ["label_row", "match_kind", "match_sep_arcsec"]


# --------------------------------------------------------------------------------------------
# reading


def _resolve(name: str, available: list[str], column_map: Mapping[str, str]) -> str | None:
    """The file's column for survey column ``name``.

    The mapped name if the file has it, else the survey's own name; each exactly, else as
    the file's only caseless match. (One mapping serves both surveys and may carry the
    photometric catalogue's names, e.g. ``ra``, so a mapped name the file lacks falls back.)
    """
    for user in dict.fromkeys([column_map.get(name, name), name]):
        if user in available:
            return user
        caseless = [c for c in available if c.lower() == user.lower()]
        if len(caseless) == 1:
            return caseless[0]
    return None


def detect_survey(
    available: list[str], path: str | Path = "", column_map: Mapping[str, str] | None = None
) -> str:
    """Which survey a label table comes from, judged by its column names (then its file name).

    Raises
    ------
    InputError
        If the columns look like neither APOGEE allStar nor LAMOST DR6.
    """
    cmap = column_map or {}
    hint = Path(str(path)).name.lower()
    scores = {}
    for survey, fields in SURVEY_FIELDS.items():
        exact = sum(cmap.get(c, c) in available for c in fields)
        loose = sum(_resolve(c, available, cmap) is not None for c in fields)
        named = survey in hint or (survey == "apogee" and "allstar" in hint)
        scores[survey] = (exact, loose, named)
    best = max(SURVEYS, key=lambda s: scores[s])
    if scores[best][1] == 0:
        raise InputError(
            f"{path}: not an APOGEE or LAMOST label table (none of their columns found). "
            f"APOGEE allStar needs {', '.join(APOGEE_COLUMNS)}; LAMOST DR6 needs "
            f"{', '.join(LAMOST_COLUMNS)}. Map differing names in the [columns] table of "
            f"bigcat.toml, or name the survey explicitly. The file has: {', '.join(available[:40])}."
        )
    return best


def _nullable_ints(t: pa.DataType) -> pd.api.extensions.ExtensionDtype | None:
    """Arrow integers -> pandas nullable integers (nulls must not turn 19-digit ids to floats)."""
    if pa.types.is_integer(t):
        return pd.Int64Dtype()
    return None


def _read_fits(path: Path, names: list[str]) -> pd.DataFrame:
    """Columns ``names`` of a FITS table; integers with a TNULL value become nullable Int64."""
    from astropy.io import fits

    with fits.open(path, memmap=True) as hdul:  # only the columns read are paged in
        hdu = next((h for h in hdul if isinstance(h, fits.BinTableHDU | fits.TableHDU)), None)
        if hdu is None:
            raise InputError(f"{path}: FITS file has no table extension.")
        nulls = {c.name: c.null for c in hdu.columns}
        data: dict[str, object] = {}
        for name in names:
            values = np.asarray(hdu.data[name])
            if values.ndim != 1:
                raise InputError(
                    f"{path}: column {name} holds arrays ({values.shape[1:]} per row), not one "
                    "value per row. Give bigcat a column of scalars."
                )
            values = values.astype(values.dtype.newbyteorder("="))
            null = nulls.get(name)
            if values.dtype.kind in "iu":
                mask = values == null if isinstance(null, int | np.integer) else None
                data[name] = pd.arrays.IntegerArray(
                    values.astype(np.int64), np.zeros(len(values), bool) if mask is None else mask
                )
            elif values.dtype.kind == "S":
                data[name] = np.char.decode(values, "ascii", errors="replace")
            else:
                data[name] = values
    return pd.DataFrame(data)


def _read_file(path: Path, names: list[str]) -> pd.DataFrame:
    """Columns ``names`` of one file; integer columns keep full precision even with nulls.

    Raises
    ------
    InputError
        If the file cannot be read (naming it and the format tried).
    """
    fmt = file_format(path)
    try:
        if fmt == "parquet":
            return pq.read_table(path, columns=names).to_pandas(types_mapper=_nullable_ints)
        if fmt == "csv":
            opts = pacsv.ConvertOptions(include_columns=names)
            table = pacsv.read_csv(path, convert_options=opts)
            return table.to_pandas(types_mapper=_nullable_ints)
        return _read_fits(path, names)
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - any reader failure means the same to the user
        raise unreadable(path, fmt, exc) from exc


def _source_ids(values: pd.Series, path: Path, column: str) -> pd.Series:
    """Gaia source ids as nullable Int64; NaN, blank, 0 and -1 become missing.

    Raises
    ------
    InputError
        For text that is not an integer, or ids stored as floats beyond 2**53 (precision lost).
    """
    if values.dtype.kind == "f":
        big = np.abs(values.to_numpy(np.float64)) > 2.0**53
        if big.any():
            row = int(np.flatnonzero(big)[0])
            raise InputError(
                f"{path}: column {column} holds Gaia source ids as floating-point numbers "
                f"(row {row} from 0: {values.iloc[row]!r}), which cannot hold 19-digit ids exactly. "
                "Write the column as 64-bit integers (missing ids as 0 or -1)."
            )
        ids = values.round().astype("Int64")
    elif values.dtype.kind in "iu" or isinstance(values.dtype, pd.Int64Dtype):
        ids = values.astype("Int64")
    else:
        parsed: list[int | None] = []
        for row, value in enumerate(values.astype("string").str.strip()):
            try:
                parsed.append(None if pd.isna(value) or value == "" else int(value))
            except ValueError:
                raise InputError(
                    f"{path}: column {column}, row {row} (from 0): {value!r} is not a Gaia "
                    "source id. Fix the value, or leave it empty (or 0, or -1) when there is none."
                ) from None
        ids = pd.Series(pd.array(parsed, dtype="Int64"), index=values.index)
    return ids.mask(ids.isin(_MISSING_IDS))


def _floats(values: pd.Series, path: Path, column: str) -> np.ndarray:
    """A numeric column as float64 (the archives' -9999 becomes NaN)."""
    try:
        out = (
            pd.to_numeric(values, errors="raise")
            .astype("Float64")
            .to_numpy(np.float64, na_value=np.nan)
        )
    except (ValueError, TypeError) as exc:
        bad = pd.to_numeric(values, errors="coerce").isna() & values.notna()
        row = int(np.flatnonzero(bad.to_numpy())[0]) if bad.any() else 0
        raise InputError(
            f"{path}: column {column}, row {row} (from 0): {values.iloc[row]!r} is not a number. "
            "Fix the value or leave it empty."
        ) from exc
    return out


def read_label_table(
    path: str | Path, survey: str | None = None, column_map: Mapping[str, str] | None = None
) -> pd.DataFrame:
    """Read an APOGEE allStar or LAMOST DR6 table into the common label columns.

    Parameters
    ----------
    path
        A Parquet, CSV or FITS file, or a directory of them (e.g. the mock's
        ``apogee.parquet/`` of parts), all of one survey.
    survey
        ``"apogee"`` or ``"lamost"``; None: detected from the column names.
    column_map
        The survey's column name (SCHEMA.md, e.g. ``"GAIAEDR3_SOURCE_ID"``) -> the file's name,
        for files that name a column differently. Unmapped names are also found caselessly.

    Returns
    -------
    DataFrame
        :data:`LABEL_COLUMNS`, one row per file row, in file order. Positions in deg, [Fe/H]
        and logg in dex, Teff in K; missing values NaN (the archives' -9999 too); source_id
        nullable Int64 with 0, -1 and blanks missing.

    Raises
    ------
    InputError
        For an unreadable file, missing columns (naming them and the [columns] mapping that
        fixes it) or non-numeric values (naming the row).
    ConfigError
        For an unknown ``survey``.
    """
    cmap = dict(column_map or {})
    if survey is not None:
        survey = str(survey).strip().lower()
        if survey not in SURVEY_FIELDS:
            raise ConfigError(
                f"{path}: unknown label survey {survey!r}.{did_you_mean(survey, SURVEYS)} "
                f"bigcat reads {' and '.join(SURVEYS)} label tables."
            )
    files = expand_inputs([path])
    parts = []
    for file in files:
        kinds, _ = read_column_kinds(file)
        available = list(kinds)
        name = survey or detect_survey(available, file, cmap)
        survey = name  # every file of ``path`` is read as the first one's survey
        fields = SURVEY_FIELDS[name]
        found = {c: _resolve(c, available, cmap) for c in fields}
        missing = [c for c, user in found.items() if user is None]
        if missing:
            taken = [u for u in found.values() if u]
            raise InputError(
                f"{missing_columns_message(str(file), missing, available, taken=taken)} "
                f"(Read as a {name.upper()} label table; its columns are "
                f"{', '.join(fields)}.)"
            )
        raw = _read_file(file, list(dict.fromkeys(str(found[c]) for c in fields)))
        raw = raw.reset_index(drop=True)  # a stored pandas index must not misalign the rows
        frame = pd.DataFrame(index=pd.RangeIndex(len(raw)))
        frame["survey"] = name
        for col, field in fields.items():
            user = str(found[col])
            if field == "label_id":
                ids = raw[user].astype("string").str.strip()
                frame[field] = ids.mask(ids == "").astype(object)
            elif field == "source_id":
                frame[field] = _source_ids(raw[user], file, user).array  # exact, not floats
            else:
                frame[field] = _floats(raw[user], file, user)
        for field in _VALUE_FIELDS:
            frame.loc[frame[field] <= _SENTINEL, field] = np.nan
        parts.append(frame)
    out = pd.concat(parts, ignore_index=True)
    out["source_id"] = out["source_id"].astype("Int64")
    out = out[LABEL_COLUMNS]
    out.attrs["survey"] = survey
    logger.info("%s: %d %s labels", path, len(out), survey)
    return out


# --------------------------------------------------------------------------------------------
# cleaning


def clean_labels(df: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, int]]:
    """The paper's label cuts, then one row per star within each survey.

    Each dropped row is counted under the first reason that applies, in this order:

    - ``dropped_nan``: [Fe/H] missing, or a value the cuts need (Teff, sigma_Teff, logg,
      sigma_logg) missing;
    - ``dropped_teff_ratio``: sigma_Teff / Teff > 1 (i.e. sigma_Teff > |Teff|);
    - ``dropped_logg_ratio``: sigma_logg / logg > 1 (i.e. sigma_logg > |logg|);
    - ``dropped_duplicate``: another row of the same survey has the same source id (or, without
      one, the same label_id) and a smaller [Fe/H] error (a missing error counts as infinite;
      ties: the earlier row is kept). Rows with neither a source id nor a label_id are never duplicates.

    There is no cut on the [Fe/H] error (METHOD.md section 5).

    Parameters
    ----------
    df
        Labels in :data:`LABEL_COLUMNS` (from :func:`read_label_table`).

    Returns
    -------
    clean : DataFrame
        The kept rows, in their original order, with a fresh index.
    counts : dict
        ``read``, the four ``dropped_*`` counts and ``kept``.
    """
    n = len(df)
    teff, teff_err = df["teff"].to_numpy(np.float64), df["teff_err"].to_numpy(np.float64)
    logg, logg_err = df["logg"].to_numpy(np.float64), df["logg_err"].to_numpy(np.float64)
    needed = df[["feh", "teff", "teff_err", "logg", "logg_err"]].to_numpy(np.float64)
    nan = ~np.isfinite(needed).all(axis=1)
    teff_bad = ~nan & (teff_err > np.abs(teff))
    logg_bad = ~nan & ~teff_bad & (logg_err > np.abs(logg))
    keep = ~(nan | teff_bad | logg_bad)
    kept = df[keep]
    # one row per star: its source id, else its survey identifier, else (neither) the row itself
    row_key = pd.Series([f"row:{i}" for i in range(len(kept))], index=kept.index, dtype="string")
    label_key = ("id:" + kept["label_id"].astype("string")).fillna(row_key)
    key = kept["source_id"].astype("string").fillna(label_key)
    err = kept["feh_err"].fillna(np.inf)
    order = pd.DataFrame({"s": kept["survey"], "k": key, "e": err, "i": np.arange(len(kept))})
    order = order.sort_values(["s", "k", "e", "i"], kind="stable")
    first = ~order.duplicated(["s", "k"])
    chosen = np.sort(order["i"].to_numpy()[first.to_numpy()])
    clean = kept.iloc[chosen].reset_index(drop=True)
    counts = {
        "read": n,
        "dropped_nan": int(nan.sum()),
        "dropped_teff_ratio": int(teff_bad.sum()),
        "dropped_logg_ratio": int(logg_bad.sum()),
        "dropped_duplicate": int(len(kept) - len(clean)),
        "kept": int(len(clean)),
    }
    return clean, counts


# --------------------------------------------------------------------------------------------
# which partitions a label can reach


def unit_vectors(ra_deg: np.ndarray, dec_deg: np.ndarray) -> np.ndarray:
    """(N, 3) Cartesian unit vectors of positions in degrees."""
    ra = np.radians(np.asarray(ra_deg, dtype=np.float64))
    dec = np.radians(np.asarray(dec_deg, dtype=np.float64))
    cosd = np.cos(dec)
    return np.column_stack([cosd * np.cos(ra), cosd * np.sin(ra), np.sin(dec)])


def chord_to_arcsec(chord: np.ndarray) -> np.ndarray:
    """Angular separation (arcsec) of unit vectors ``chord`` apart."""
    return np.degrees(2.0 * np.arcsin(np.clip(np.asarray(chord) / 2.0, 0.0, 1.0))) * 3600.0


def separation_arcsec(
    ra1: np.ndarray, dec1: np.ndarray, ra2: np.ndarray, dec2: np.ndarray
) -> np.ndarray:
    """Angular separation (arcsec) between positions in degrees (NaN where one is missing)."""
    d = unit_vectors(ra1, dec1) - unit_vectors(ra2, dec2)
    return chord_to_arcsec(np.sqrt((d * d).sum(axis=1)))


def search_order(radius_arcsec: float) -> int:
    """Deepest HEALPix order whose pixels are at least twice ``radius_arcsec`` across.

    A disc of that radius around a point then lies inside the point's pixel at this order and
    its 8 neighbours (hats' estimate of the smallest pixel width, with a factor 2 to spare).

    Raises
    ------
    ValueError
        If the radius is not positive, or too wide even for order 0 (several degrees).
    """
    from hats.pixel_math.healpix_shim import order2mindist

    if not np.isfinite(radius_arcsec) or radius_arcsec <= 0:
        raise ValueError(f"match radius {radius_arcsec} arcsec: must be positive.")
    orders = np.arange(MAX_ORDER + 1)
    wide = np.asarray(order2mindist(orders)) * 60.0 >= 2.0 * radius_arcsec
    if not wide.any():
        raise ValueError(
            f"match radius {radius_arcsec} arcsec is too wide for a neighbour search (at most "
            f"{float(order2mindist(0)) * 30.0:.0f} arcsec); a match radius is a few arcsec."
        )
    return int(orders[wide].max())


def _pairs_in_partitions(
    rows: np.ndarray, deep: np.ndarray, deep_order: int, pixels: list[tuple[int, int]]
) -> tuple[np.ndarray, np.ndarray]:
    """(row, partition index) pairs where the pixel ``deep`` (at ``deep_order``) meets a partition.

    A partition at an order up to ``deep_order`` meets the pixel if it contains it; a finer
    partition if it lies inside it. ``deep`` -1 (no neighbour) meets nothing.
    """
    out_rows, out_parts = [], []
    index = np.arange(len(pixels))
    orders = np.array([o for o, _ in pixels], dtype=np.int64)
    pix = np.array([p for _, p in pixels], dtype=np.int64)
    valid = deep >= 0
    for order in np.unique(orders):
        sel = orders == order
        if order <= deep_order:
            keys, probe = pix[sel], deep >> (2 * (deep_order - int(order)))
        else:
            keys, probe = pix[sel] >> (2 * (int(order) - deep_order)), deep
        srt = np.argsort(keys, kind="stable")
        keys, idx = keys[srt], index[sel][srt]
        lo = np.searchsorted(keys, probe, side="left")
        hi = np.searchsorted(keys, probe, side="right")
        count = np.where(valid, hi - lo, 0)
        offset = np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count)
        out_rows.append(np.repeat(rows, count))
        out_parts.append(idx[np.repeat(lo, count) + offset])
    r = np.concatenate(out_rows) if out_rows else np.zeros(0, np.int64)
    p = np.concatenate(out_parts) if out_parts else np.zeros(0, np.int64)
    uniq = np.unique(np.column_stack([r, p]), axis=0) if len(r) else np.zeros((0, 2), np.int64)
    return uniq[:, 0].astype(np.int64), uniq[:, 1].astype(np.int64)


def candidate_partitions(
    ra_deg: np.ndarray,
    dec_deg: np.ndarray,
    radius_arcsec: float,
    pixels: list[tuple[int, int]],
) -> tuple[np.ndarray, np.ndarray]:
    """Partitions that may hold catalogue positions within ``radius_arcsec`` of each label.

    Each position's pixel at :func:`search_order` and its 8 neighbours (which cover the disc)
    are mapped to the catalogue partitions that contain them (or, for partitions finer than
    that order, lie inside them): a label near a partition edge goes to the partitions on
    both sides (a superset: some may hold no star within the radius).

    Parameters
    ----------
    ra_deg, dec_deg
        Label positions (deg); NaN positions, and declinations beyond +/-90, reach no partition.
    radius_arcsec
        Match radius (arcsec).
    pixels
        The catalogue's ``(order, pixel)`` partitions (any mix of orders).

    Returns
    -------
    rows, parts : ndarray
        Pairs (label row number, index into ``pixels``), sorted, unique.

    Raises
    ------
    ValueError
        If the radius is not positive or is wider than a neighbour search can cover.
    """
    deep_order = search_order(radius_arcsec)
    ra, dec = np.asarray(ra_deg, np.float64), np.asarray(dec_deg, np.float64)
    rows = np.flatnonzero(np.isfinite(ra) & np.isfinite(dec) & (np.abs(dec) <= 90.0))
    if not len(rows) or not pixels:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    deep = pixel_at_order(healpix29(ra[rows] % 360.0, dec[rows]), deep_order)
    ring = hp.get_all_neighbours(2**deep_order, deep, nest=True)
    cand = np.vstack([deep[None, :], ring]).astype(np.int64)  # (9, n); -1 = no neighbour
    return _pairs_in_partitions(np.tile(rows, 9), cand.ravel(), deep_order, list(pixels))


# --------------------------------------------------------------------------------------------
# matching one partition


def match_positions(
    cat_df: pd.DataFrame, label_df: pd.DataFrame, radius_arcsec: float
) -> pd.DataFrame:
    """Nearest catalogue star within ``radius_arcsec`` of each label (unit-vector KD-tree).

    Parameters
    ----------
    cat_df, label_df
        Frames with ``ra`` and ``dec`` (deg); rows with missing positions never match.
    radius_arcsec
        Match radius (arcsec); a separation equal to it matches.

    Returns
    -------
    DataFrame
        One row per matched label: ``label_pos`` and ``cat_pos`` (row numbers in the inputs)
        and ``sep_arcsec``, ordered by ``label_pos``.
    """
    empty = pd.DataFrame(
        {
            "label_pos": np.zeros(0, np.int64),
            "cat_pos": np.zeros(0, np.int64),
            "sep_arcsec": np.zeros(0),
        }
    )
    cat_xyz = unit_vectors(cat_df["ra"].to_numpy(), cat_df["dec"].to_numpy())
    lab_xyz = unit_vectors(label_df["ra"].to_numpy(), label_df["dec"].to_numpy())
    cat_ok = np.flatnonzero(np.isfinite(cat_xyz).all(axis=1))
    lab_ok = np.flatnonzero(np.isfinite(lab_xyz).all(axis=1))
    if not len(cat_ok) or not len(lab_ok):
        return empty
    chord = 2.0 * np.sin(radius_arcsec * _ARCSEC / 2.0)
    tree = cKDTree(cat_xyz[cat_ok])
    dist, nearest = tree.query(lab_xyz[lab_ok], k=1, distance_upper_bound=chord * (1 + 1e-12))
    hit = np.isfinite(dist)
    return pd.DataFrame(
        {
            "label_pos": lab_ok[hit].astype(np.int64),
            "cat_pos": cat_ok[nearest[hit]].astype(np.int64),
            "sep_arcsec": chord_to_arcsec(dist[hit]),
        }
    )


def match_source_ids(cat_df: pd.DataFrame, label_df: pd.DataFrame) -> pd.DataFrame:
    """Labels whose Gaia ``source_id`` is in the catalogue (missing ids never match).

    Returns
    -------
    DataFrame
        ``label_pos``, ``cat_pos`` (row numbers in the inputs) and ``sep_arcsec`` between the
        two positions (NaN if the label has none), ordered by ``label_pos``.
    """
    lab = pd.DataFrame(
        {
            "sid": pd.array(label_df["source_id"], dtype="Int64"),
            "label_pos": np.arange(len(label_df)),
        }
    ).dropna(subset=["sid"])
    cat = pd.DataFrame(
        {"sid": pd.array(cat_df["source_id"], dtype="Int64"), "cat_pos": np.arange(len(cat_df))}
    )
    pairs = lab.merge(cat, on="sid", how="inner").sort_values(["label_pos", "cat_pos"])
    lp = pairs["label_pos"].to_numpy(np.int64)
    cp = pairs["cat_pos"].to_numpy(np.int64)
    sep = separation_arcsec(
        label_df["ra"].to_numpy(np.float64)[lp],
        label_df["dec"].to_numpy(np.float64)[lp],
        cat_df["ra"].to_numpy(np.float64)[cp],
        cat_df["dec"].to_numpy(np.float64)[cp],
    )
    return pd.DataFrame({"label_pos": lp, "cat_pos": cp, "sep_arcsec": sep})


def label_candidates(
    cat_df: pd.DataFrame,
    position_labels: pd.DataFrame,
    id_labels: pd.DataFrame,
    radius_arcsec: float,
) -> pd.DataFrame:
    """Kernel: every (label, catalogue star) candidate pair in one partition (or group of them).

    Parameters
    ----------
    cat_df
        Catalogue rows with at least ``source_id``, ``ra``, ``dec`` (deg).
    position_labels
        Labels without a source id that may reach these rows: ``label_row``, ``ra``, ``dec``.
    id_labels
        Labels with a source id: ``label_row``, ``source_id``, ``ra``, ``dec``.
    radius_arcsec
        Positional match radius (arcsec).

    Returns
    -------
    DataFrame
        The matched catalogue rows (every column of ``cat_df``) with ``label_row``,
        ``match_kind`` (``"source_id"`` or ``"position"``) and ``match_sep_arcsec``; at most one
        row per label here (its nearest star, for positional labels).
    """
    parts = []
    for kind, labels, pairs in (
        ("source_id", id_labels, match_source_ids(cat_df, id_labels)),
        ("position", position_labels, match_positions(cat_df, position_labels, radius_arcsec)),
    ):
        rows = cat_df.iloc[pairs["cat_pos"].to_numpy()].reset_index(drop=True)
        rows["label_row"] = labels["label_row"].to_numpy(np.int64)[pairs["label_pos"].to_numpy()]
        rows["match_kind"] = kind
        rows["match_sep_arcsec"] = pairs["sep_arcsec"].to_numpy(np.float64)
        parts.append(rows)
    return pd.concat(parts, ignore_index=True)


# --------------------------------------------------------------------------------------------
# one label per star, one star per label


def _rank(df: pd.DataFrame) -> pd.DataFrame:
    """Sort keys: survey precedence, id before position, nearer, then stable ids."""
    return df.assign(
        _survey=df["survey"].map({s: i for i, s in enumerate(SURVEYS)}).fillna(len(SURVEYS)),
        _kind=df["match_kind"].map(_KIND_RANK),
        _sep=df["match_sep_arcsec"].fillna(np.inf),
    )


def resolve_matches(
    candidates: pd.DataFrame, labels: pd.DataFrame
) -> tuple[pd.DataFrame, dict[str, dict[str, int]]]:
    """The training sample: one label per giant, APOGEE first; and what became of each label.

    Steps, each counted per survey:

    1. each label keeps its best candidate (an id match before a positional one, then the
       nearest, then the smaller source_id): ``matched_by_id``, ``matched_by_position``;
       labels without a candidate are ``unmatched``;
    2. a label whose star is not a quality giant (``is_giant & quality_ok``) is ``not_giant``;
    3. a star keeps one label: APOGEE's over LAMOST's (the loser is ``overridden_by_apogee``),
       then an id match over a positional one, then the nearer, then the first label row (the
       losers within one survey are ``duplicate_match``); the rest are ``final``.

    Parameters
    ----------
    candidates
        Concatenated :func:`label_candidates` output (catalogue columns, including
        ``is_giant`` and ``quality_ok``, plus ``label_row``, ``match_kind``,
        ``match_sep_arcsec``).
    labels
        Clean labels in :data:`LABEL_COLUMNS` plus ``label_row`` (unique).

    Returns
    -------
    tg : DataFrame
        Catalogue columns, then ``survey``, ``label_id``, ``label_ra``, ``label_dec``, ``feh``,
        ``feh_err``, ``teff``, ``teff_err``, ``logg``, ``logg_err``, ``match_kind``,
        ``match_sep_arcsec``; sorted by source_id, one row per star.
    counts : dict
        Per survey: ``matched_by_id``, ``matched_by_position``, ``unmatched``, ``not_giant``,
        ``duplicate_match``, ``overridden_by_apogee``, ``final``.
    """
    cat_cols = [c for c in candidates.columns if c not in MATCH_COLUMNS]
    info = labels.set_index("label_row")
    cand = candidates.assign(survey=info["survey"].reindex(candidates["label_row"]).to_numpy())
    cand = _rank(cand).sort_values(
        ["label_row", "_kind", "_sep", "source_id"], kind="stable", ignore_index=True
    )
    best = cand.drop_duplicates("label_row", keep="first")
    giant = _flag(best["is_giant"]) & _flag(best["quality_ok"])
    giants = best[giant].sort_values(
        ["source_id", "_survey", "_kind", "_sep", "label_row"], kind="stable", ignore_index=True
    )
    win = ~giants.duplicated("source_id", keep="first").to_numpy()
    winner_survey = giants["survey"].where(win).ffill().to_numpy()
    losers = giants[~win]
    to_apogee = (winner_survey[~win] == SURVEYS[0]) & (losers["survey"] != SURVEYS[0]).to_numpy()
    final = giants[win]

    counts: dict[str, dict[str, int]] = {}
    for survey in SURVEYS:

        def n(frame: pd.DataFrame, s: str = survey) -> int:
            return int((frame["survey"] == s).sum())

        counts[survey] = {
            "matched_by_id": n(best[best["match_kind"] == "source_id"]),
            "matched_by_position": n(best[best["match_kind"] == "position"]),
            "unmatched": n(labels) - n(best),
            "not_giant": n(best[~giant]),
            "duplicate_match": n(losers[~to_apogee]),
            "overridden_by_apogee": n(losers[to_apogee]),
            "final": n(final),
        }
    tg = final[cat_cols].reset_index(drop=True)
    chosen = info.loc[final["label_row"].to_numpy()]
    tg["survey"] = chosen["survey"].to_numpy()
    tg["label_id"] = chosen["label_id"].to_numpy()
    tg["label_ra"] = chosen["ra"].to_numpy(np.float64)
    tg["label_dec"] = chosen["dec"].to_numpy(np.float64)
    for col in _VALUE_FIELDS:
        tg[col] = chosen[col].to_numpy(np.float64)
    tg["match_kind"] = final["match_kind"].to_numpy()
    tg["match_sep_arcsec"] = final["match_sep_arcsec"].to_numpy(np.float64)
    return tg, counts


def _flag(values: pd.Series) -> np.ndarray:
    """A boolean column as a numpy mask (missing = False)."""
    return values.astype("boolean").fillna(False).to_numpy(bool)
