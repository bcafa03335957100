"""The column contract of SCHEMA.md, as data.

Every module that names an input or output column takes the name from here, so the
contract lives in one place. Names are the public archives' names (Gaia DR3, 2MASS PSC,
unWISE; APOGEE allStar; LAMOST DR6).
"""

from __future__ import annotations

#: Required photometric-catalogue columns and their logical type ("int" or "float").
REQUIRED_COLUMNS: dict[str, str] = {
    "source_id": "int",
    "ra": "float",
    "dec": "float",
    "parallax": "float",
    "parallax_error": "float",
    "pmra": "float",
    "pmra_error": "float",
    "pmdec": "float",
    "pmdec_error": "float",
    "phot_g_mean_mag": "float",
    "phot_bp_mean_mag": "float",
    "phot_rp_mean_mag": "float",
    "phot_bp_rp_excess_factor": "float",
    "ruwe": "float",
    "j_m": "float",
    "j_msigcom": "float",
    "h_m": "float",
    "h_msigcom": "float",
    "ks_m": "float",
    "ks_msigcom": "float",
    "w1_mag": "float",
    "w1_mag_error": "float",
    "w2_mag": "float",
    "w2_mag_error": "float",
    "w1_flags": "int",
    "w2_flags": "int",
}

#: Optional columns: filled with the given default when absent.
OPTIONAL_COLUMNS: dict[str, tuple[str, float]] = {
    "pmra_pmdec_corr": ("float", 0.0),
    "radial_velocity": ("float", float("nan")),
    "radial_velocity_error": ("float", float("nan")),
}

#: Columns the parallax zero-point needs; without all of them the step is skipped and flagged.
ZEROPOINT_COLUMNS: dict[str, str] = {
    "nu_eff_used_in_astrometry": "float",
    "pseudocolour": "float",
    "ecl_lat": "float",
    "astrometric_params_solved": "int",
}

#: Every input column the mock writes, in order.
INPUT_COLUMNS: list[str] = [
    *REQUIRED_COLUMNS,
    *OPTIONAL_COLUMNS,
    *ZEROPOINT_COLUMNS,
]

#: The eight photometric bands, in the order used for per-band outputs.
BANDS: tuple[str, ...] = ("bp", "g", "rp", "j", "h", "ks", "w1", "w2")

#: Apparent-magnitude column of each band.
BAND_MAG_COLUMN: dict[str, str] = {
    "bp": "phot_bp_mean_mag",
    "g": "phot_g_mean_mag",
    "rp": "phot_rp_mean_mag",
    "j": "j_m",
    "h": "h_m",
    "ks": "ks_m",
    "w1": "w1_mag",
    "w2": "w2_mag",
}

#: The 16 dereddened colours of Appendix A1, as (blue band, red band) pairs, in the paper's order.
COLOUR_FEATURES: tuple[tuple[str, str], ...] = (
    ("j", "ks"),
    ("j", "h"),
    ("h", "ks"),
    ("w1", "w2"),
    ("bp", "j"),
    ("bp", "h"),
    ("bp", "ks"),
    ("bp", "w1"),
    ("bp", "w2"),
    ("rp", "ks"),
    ("bp", "rp"),
    ("bp", "g"),
    ("g", "rp"),
    ("j", "w1"),
    ("j", "w2"),
    ("h", "w2"),
)


def colour_feature_name(blue: str, red: str) -> str:
    """Output column of a dereddened colour, e.g. ``("j", "ks") -> "c_j_ks"``."""
    return f"c_{blue}_{red}"


#: Output column names of the 16 colour features, in order.
COLOUR_FEATURE_COLUMNS: list[str] = [colour_feature_name(b, r) for b, r in COLOUR_FEATURES]

#: Per-band extinction output columns (mag).
EXTINCTION_COLUMNS: dict[str, str] = {band: f"a_{band}" for band in BANDS}

#: Bits of ``quality_flags``; a row passes when none of QUALITY_CUT_BITS is set.
QUALITY_BITS: dict[str, int] = {
    "excess_factor": 1 << 0,  # phot_bp_rp_excess_factor > max (or not finite)
    "ruwe": 1 << 1,  # ruwe > max (or not finite)
    "w1_flags": 1 << 2,  # unWISE W1 flags != 0
    "w2_flags": 1 << 3,  # unWISE W2 flags != 0
    "missing_photometry": 1 << 4,  # a magnitude needed downstream is NaN/inf
    "bad_astrometry": 1 << 5,  # parallax or its error not finite, or error <= 0
    # a finite magnitude outside MAGNITUDE_RANGE (a sentinel such as 99, or -5), or a
    # magnitude error <= 0 or infinite
    "implausible_photometry": 1 << 6,
    # informational bits (do not fail quality_ok):
    "zeropoint_unavailable": 1
    << 8,  # zero-point not computed (columns absent, 2-p solution, G outside 6-21)
    "negative_extinction": 1 << 9,  # RJCE A_Ks < 0, clipped at 0
}
QUALITY_CUT_BITS: int = (
    QUALITY_BITS["excess_factor"]
    | QUALITY_BITS["ruwe"]
    | QUALITY_BITS["w1_flags"]
    | QUALITY_BITS["w2_flags"]
    | QUALITY_BITS["missing_photometry"]
    | QUALITY_BITS["bad_astrometry"]
    | QUALITY_BITS["implausible_photometry"]
)

#: Plausible apparent magnitudes (mag): a finite value outside is flagged
#: ``implausible_photometry`` (archives' sentinels such as 99 or -9999, or a wrong unit).
MAGNITUDE_RANGE: tuple[float, float] = (-3.0, 30.0)

#: Magnitude-error columns of the contract (mag); <= 0 or infinite is flagged
#: ``implausible_photometry`` (NaN is not: an error may be unknown).
MAG_ERROR_COLUMNS: tuple[str, ...] = (
    "j_msigcom",
    "h_msigcom",
    "ks_msigcom",
    "w1_mag_error",
    "w2_mag_error",
)

#: APOGEE allStar and LAMOST DR6 label-table columns.
APOGEE_COLUMNS: list[str] = [
    "APOGEE_ID",
    "RA",
    "DEC",
    "GAIAEDR3_SOURCE_ID",
    "FE_H",
    "FE_H_ERR",
    "TEFF",
    "TEFF_ERR",
    "LOGG",
    "LOGG_ERR",
]
LAMOST_COLUMNS: list[str] = [
    "obsid",
    "ra",
    "dec",
    "gaia_source_id",
    "feh",
    "feh_err",
    "teff",
    "teff_err",
    "logg",
    "logg_err",
]

#: Prefix of truth columns in synthetic catalogues. No stage may read them.
TRUTH_PREFIX = "true_"

#: Columns stage 1 adds to the catalogue (SCHEMA.md), then the absolute magnitudes stage 2 uses.
STAGE1_OUTPUT_COLUMNS: list[str] = [
    "fold",
    "parallax_nn",
    "parallax_nn_error",
    "parallax_combined",
    "parallax_combined_error",
    "distance_pc",
    "distance_pc_p16",
    "distance_pc_p84",
    *[f"abs_{b}" for b in BANDS],
]

#: Every column a stage adds to the catalogue (SCHEMA.md, "Processed catalogue"): an extra
#: input column of one of these names would be overwritten, so `bigcat ingest` refuses it.
OUTPUT_COLUMNS: frozenset[str] = frozenset(
    {
        "_healpix_29",
        "quality_flags",
        "quality_ok",
        "parallax_zp",
        "m_pseudo",
        "m_pseudo_error",
        "is_giant",
        *EXTINCTION_COLUMNS.values(),
        *COLOUR_FEATURE_COLUMNS,
        *STAGE1_OUTPUT_COLUMNS,
        "feh",
        "feh_error",
        "feh_extrapolated",
        *[f"{a}_gc{e}" for a in ("x", "y", "z", "vx", "vy", "vz") for e in ("", "_error")],
        "v_cov_xy",
        "v_cov_xz",
        "v_cov_yz",
        "Norder",
        "Dir",
        "Npix",
    }
)

# ---- `bigcat crossmatch`: the three surveys' own tables (SCHEMA.md, docs/crossmatch.md) ------

#: The survey tables `bigcat crossmatch` reads, by the key of their ``[columns.<key>]`` table.
SURVEYS: dict[str, str] = {
    "gaia": "Gaia DR3 gaia_source",
    "tmass": "2MASS PSC",
    "unwise": "unWISE (Schlafly et al. 2019)",
}

#: Photometric-catalogue columns that come from 2MASS and unWISE, not from Gaia.
TMASS_OUTPUT_COLUMNS: tuple[str, ...] = (
    "j_m",
    "j_msigcom",
    "h_m",
    "h_msigcom",
    "ks_m",
    "ks_msigcom",
)
UNWISE_OUTPUT_COLUMNS: tuple[str, ...] = (
    "w1_mag",
    "w1_mag_error",
    "w2_mag",
    "w2_mag_error",
    "w1_flags",
    "w2_flags",
)

#: Gaia DR3 gaia_source columns: required (name -> kind) and optional (name -> (kind, default)).
GAIA_REQUIRED_COLUMNS: dict[str, str] = {
    k: v
    for k, v in REQUIRED_COLUMNS.items()
    if k not in TMASS_OUTPUT_COLUMNS + UNWISE_OUTPUT_COLUMNS
}
GAIA_OPTIONAL_COLUMNS: dict[str, tuple[str, float]] = {
    **OPTIONAL_COLUMNS,
    **{k: (v, float("nan")) for k, v in ZEROPOINT_COLUMNS.items()},
    "ref_epoch": ("float", 2016.0),  # Julian year of the positions; Gaia DR3: 2016.0
}

#: 2MASS PSC columns (``jdate``: Julian date of the observation; ``ph_qual`` optional).
TMASS_REQUIRED_COLUMNS: dict[str, str] = {
    "designation": "str",
    "ra": "float",
    "dec": "float",
    "j_m": "float",
    "j_msigcom": "float",
    "h_m": "float",
    "h_msigcom": "float",
    "k_m": "float",
    "k_msigcom": "float",
    "jdate": "float",
}
TMASS_OPTIONAL_COLUMNS: dict[str, tuple[str, str]] = {"ph_qual": ("str", "")}

#: unWISE catalogue columns (fluxes and their errors in Vega nanomaggies).
UNWISE_REQUIRED_COLUMNS: dict[str, str] = {
    "unwise_objid": "str",
    "ra": "float",
    "dec": "float",
    "flux_w1": "float",
    "dflux_w1": "float",
    "flux_w2": "float",
    "dflux_w2": "float",
    "flags_unwise_w1": "int",
    "flags_unwise_w2": "int",
}
UNWISE_OPTIONAL_COLUMNS: dict[str, tuple[str, str]] = {}

#: Every column of each survey that ``[columns.<survey>]`` may map.
SURVEY_COLUMNS: dict[str, list[str]] = {
    "gaia": [*GAIA_REQUIRED_COLUMNS, *GAIA_OPTIONAL_COLUMNS],
    "tmass": [*TMASS_REQUIRED_COLUMNS, *TMASS_OPTIONAL_COLUMNS],
    "unwise": [*UNWISE_REQUIRED_COLUMNS, *UNWISE_OPTIONAL_COLUMNS],
}

#: Columns `bigcat crossmatch` adds to the photometric-catalogue columns (name -> kind).
CROSSMATCH_COLUMNS: dict[str, str] = {
    "tmass_designation": "str",  # 2MASS designation; null without a counterpart
    "ph_qual": "str",  # 2MASS photometric quality flags; null without a counterpart
    "tmass_sep_arcsec": "float",  # separation at the 2MASS epoch; NaN without a counterpart
    "tmass_matched": "bool",
    "unwise_objid": "str",
    "unwise_sep_arcsec": "float",
    "unwise_matched": "bool",
}

#: ``w1_flags`` / ``w2_flags`` of a star without an unWISE counterpart (fails the flag cuts).
NO_UNWISE_FLAGS = -1
