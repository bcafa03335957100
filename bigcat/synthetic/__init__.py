"""Synthetic Milky Way survey ("mock"): Gaia x 2MASS x unWISE rows, truth and labels.

Pure kernels (no dask, no file I/O). The Dask stage calls ``simulate_chunk`` once per
chunk; the result depends only on ``(params, chunk, n_rows)``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import pandas as pd

from bigcat.astrometry import frames
from bigcat.synthetic import galaxy, observe, stars
from bigcat.synthetic.extinction import EXTINCTION_LAWS, a_ks_over_e_h_w2
from bigcat.synthetic.galaxies import GALAXIES
from bigcat.synthetic.labels import make_labels
from bigcat.synthetic.params import POPULATIONS, MockParams
from bigcat.synthetic.survey import MAX_CHUNK, MAX_ROWS, simulate_rows

__all__ = [
    "EXTINCTION_LAWS",
    "GALAXIES",
    "MockChunk",
    "MockParams",
    "simulate_chunk",
    "truth_summary",
]


@dataclass(frozen=True)
class MockChunk:
    """One chunk of the synthetic survey.

    Attributes
    ----------
    photometry : DataFrame
        Exactly ``schema.INPUT_COLUMNS`` in order; int64 for source_id,
        astrometric_params_solved, w1_flags, w2_flags; float64 otherwise.
    truth : DataFrame
        ``source_id`` and ``true_*`` columns, one row per photometric row, same order;
        includes ``true_in_apogee``/``true_in_lamost`` and ``true_bad_label`` (bool).
    apogee : DataFrame
        Exactly ``schema.APOGEE_COLUMNS``.
    lamost : DataFrame
        Exactly ``schema.LAMOST_COLUMNS``.
    """

    photometry: pd.DataFrame
    truth: pd.DataFrame
    apogee: pd.DataFrame
    lamost: pd.DataFrame


def simulate_chunk(params: MockParams, chunk: int, n_rows: int) -> MockChunk:
    """Simulate ``n_rows`` selected survey rows for chunk number ``chunk``.

    Parameters
    ----------
    params : MockParams
        Survey settings and injected values.
    chunk : int
        Chunk number in [0, 2**13); seeds the generator with ``SeedSequence([seed, chunk])``.
    n_rows : int
        Number of photometric rows, in [1, 2**22).

    Returns
    -------
    MockChunk
        Photometry, truth and the APOGEE/LAMOST label rows of these stars.
    """
    phot, truth, rng = simulate_rows(params, chunk, n_rows)
    apogee, lamost, flags = make_labels(phot, truth, chunk, rng, params)
    truth["true_in_apogee"] = flags["in_apogee"]
    truth["true_in_lamost"] = flags["in_lamost"]
    truth["true_bad_label"] = flags["bad_apogee"] | flags["bad_lamost"]
    return MockChunk(photometry=phot, truth=truth, apogee=apogee, lamost=lamost)


def _reference_h_w2(params: MockParams) -> float:
    """Median intrinsic H-W2 (mag) of selected giants in a reserved chunk (MAX_CHUNK - 1)."""
    _, truth, _ = simulate_rows(params, MAX_CHUNK - 1, 4000)
    giants = truth["true_is_giant"].to_numpy()
    return float(np.median(truth["true_h_w2_0"].to_numpy()[giants]))


def truth_summary(params: MockParams) -> dict:
    """Every injected value and model parameter of the mock, JSON-serialisable.

    ``params`` holds every value the simulation read (``"params"``); the sections below
    repeat them by topic with their definitions, plus the derived values (random velocity
    covariances, the bimodal median, the extinction ratios of the law used).
    """
    m, o, vsun, _ = frames.frame_constants()
    cov_rich = galaxy.bulge_random_cov(params, True)
    cov_poor = galaxy.bulge_random_cov(params, False)
    eps_med = galaxy.bulge_eps_median(params)
    ratios = observe.extinction_ratios(params)
    return {
        "params": dataclasses.asdict(params),
        "galaxy": {
            "name": params.galaxy,
            "galaxy_values": dict(GALAXIES[params.galaxy]),
            "explicit_overrides": params.overrides(),
            "precedence": "defaults < named Galaxy's values < explicit settings",
        },
        "populations": list(POPULATIONS),
        "population_fractions": params.population_fractions,
        "giant_fractions": params.giant_fractions,
        "frame": {
            "name": "astropy Galactocentric (explicit v4.0 parameters)",
            "galcen_distance_kpc": frames.GALCEN_DISTANCE_KPC,
            "z_sun_pc": frames.Z_SUN_PC,
            "v_sun_kms": list(frames.V_SUN_KMS),
            "galcen_ra_deg": frames.GALCEN_RA_DEG,
            "galcen_dec_deg": frames.GALCEN_DEC_DEG,
            "roll_deg": frames.ROLL_DEG,
            "sun_position_kpc": o.tolist(),
            "icrs_to_galactocentric_matrix": m.tolist(),
        },
        "gradient": {
            "feh_gradient_dex_per_kpc": params.feh_gradient,
            "definition": "bulge [Fe/H] = feh_bulge_zero + feh_gradient*|Z| + eps, eps ~ fixed bimodal",
            "feh_bulge_zero": params.feh_bulge_zero,
            "eps_components_weight_mean_sigma": [list(c) for c in params.bulge_eps_components],
            "eps_median": eps_med,
            "median_line_intercept": params.feh_bulge_zero + eps_med,
            "cylinder_radius_kpc": 2.5,
            "fit_range_abs_z_kpc": [0.7, 1.6],
            "feh_clip": [galaxy.FEH_MIN, galaxy.FEH_MAX],
        },
        "vertex": {
            "vertex_deg_metal_rich": params.vertex_deg,
            "vertex_deg_metal_poor": 0.0,
            "metal_rich_min_feh": galaxy.METAL_RICH_MIN,
            "metal_poor_max_feh": galaxy.METAL_POOR_MAX,
            "bar_sigmas_major_minor_z_kms": [
                params.bar_sigma_major_kms,
                params.bar_sigma_minor_kms,
                params.bar_sigma_z_kms,
            ],
            "metal_poor_sigmas_x_y_z_kms": [
                params.bulge_mp_sigma_x_kms,
                params.bulge_mp_sigma_y_kms,
                params.bulge_mp_sigma_z_kms,
            ],
            "bar_streaming_kms_per_kpc": params.bar_pattern_kms_per_kpc,
            "random_cov_metal_rich": cov_rich.tolist(),
            "random_cov_metal_poor": cov_poor.tolist(),
            "definition": "l_v = 0.5 arctan(2 cov_xy / (var_x - var_y)) of streaming + random",
        },
        "structure": {
            "bar_angle_deg": params.bar_angle_deg,
            "bar_half_length_kpc": params.bar_half_length_kpc,
            "bar_pattern_kms_per_kpc": params.bar_pattern_kms_per_kpc,
            "bar_scales_kpc": list(params.bar_scales_kpc),
            "disc_scale_length_height_kpc": {k: list(v) for k, v in params.disc_scales.items()},
            "disc_r_max_kpc": galaxy.DISC_R_MAX,
            "halo": {
                "core_kpc": params.halo_core_kpc,
                "slope": params.halo_slope,
                "q": params.halo_q,
                "r_max_kpc": galaxy.HALO_R_MAX,
                "sigmas_r_phi_z_kms": list(galaxy.HALO_SIGMAS),
            },
            "v_circ_kms": galaxy.V_CIRC,
            "thin_feh_at_r0_gradient_sigma": [
                params.thin_feh_r0,
                params.thin_feh_radial_gradient,
                params.thin_feh_sigma,
            ],
            "thick_feh_mean_sigma": [params.thick_feh_mean, params.thick_feh_sigma],
            "halo_feh_mean_sigma": [params.halo_feh_mean, params.halo_feh_sigma],
        },
        "dust": {
            "av_per_kpc_at_r0": params.dust_av_per_kpc,
            "scale_length_kpc": params.dust_scale_length_kpc,
            "scale_height_kpc": params.dust_scale_height_kpc,
            "patchiness_lognormal_sigma": params.dust_patchiness,
            "extinction_law": params.extinction_law,
            "extinction_ratios_a_over_av": dict(ratios),
            "a_ks_over_e_h_w2": a_ks_over_e_h_w2(params.extinction_law),
        },
        "rjce": {
            "intrinsic_h_w2_median_giants": _reference_h_w2(params),
            "true_a_ks_over_e_h_w2": a_ks_over_e_h_w2(params.extinction_law),
            "note": "median true (H-W2)_0 of selected giants; the pipeline default c is 0.05 "
            "and its coefficient 0.918",
        },
        "stars": {
            "rgb_logg_law": "p(log g) ~ 10^(rgb_logg_exponent * log g) on rgb_logg_range",
            "rgb_logg_exponent": params.rgb_logg_exponent,
            "rgb_logg_range": list(stars.RGB_LOGG_RANGE),
            "red_clump_fraction": params.red_clump_fraction,
            "clump_logg_mean_sigma": [params.clump_logg, stars.CLUMP_LOGG_SIGMA],
            "giant_mass_mean_sigma_msun": {
                p: [params.giant_masses[p], stars.MASS_SIGMA[p]] for p in POPULATIONS
            },
            "giant_colour_coeffs": {k: list(v) for k, v in stars.GIANT_COEFFS.items()},
            "dwarf_colour_coeffs": {k: list(v) for k, v in stars.DWARF_COEFFS.items()},
            "logg_ref": dict(stars.LOGG_REF),
            "teff_range_k": {k: list(v) for k, v in stars.TEFF_RANGE.items()},
            "co_w2_slope_base_cool": [stars.CO_BASE, stars.CO_COOL],
            "colour_scatter_mag": stars.COLOUR_SCATTER,
        },
        "labels": {
            "label_fraction_apogee": params.label_fraction_apogee,
            "label_fraction_lamost": params.label_fraction_lamost,
            "label_overlap_fraction": params.label_overlap_fraction,
            "bad_label_fraction": params.bad_label_fraction,
            "apogee_selection": {
                "giants_only": True,
                "h_max": params.apogee_h_max,
                "max_abs_b_deg": params.apogee_max_abs_b_deg,
            },
            "lamost_selection": {
                "g_max": params.lamost_g_max,
                "dec_min_deg": params.lamost_dec_min_deg,
                "min_abs_b_deg": params.lamost_min_abs_b_deg,
            },
            "apogee_gaia_id_fraction": 0.95,
            "lamost_gaia_id_fraction": 0.90,
        },
        "source_id": "healpix12_nested * 2**35 + chunk * 2**22 + row",
        "limits": {"max_chunk": MAX_CHUNK, "max_rows": MAX_ROWS},
    }
