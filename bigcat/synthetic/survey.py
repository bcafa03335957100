"""One chunk of the synthetic survey: candidates, selection, observables, truth, labels.

Each (population, giant/dwarf) cell gets a target number of *selected* rows
(``frac_<pop> * n_rows`` and ``giant_frac_<pop>``); candidates are drawn from the cell's
density and stellar model, cut on noise-free dust-free magnitudes (dust only dims), then
reddened, observed and selected, until the cell is full. The result depends only on
``(params, chunk, n_rows)``.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from bigcat.astrometry import frames
from bigcat.schema import BANDS, INPUT_COLUMNS, REQUIRED_COLUMNS, ZEROPOINT_COLUMNS
from bigcat.synthetic import galaxy, observe, stars
from bigcat.synthetic.params import POPULATIONS, MockParams

logger = logging.getLogger(__name__)

MAX_CHUNK = 2**13
MAX_ROWS = 2**22
_MAX_BATCH = 1_000_000
_MAX_ITER = 200
#: true G beyond the limit by more than this: never detected (mag)
_UNDETECTED_MARGIN = 1.0
_PREFILTER_MARGIN = 0.5
_BAND_LIMIT = {"j": "j_max", "h": "h_max", "ks": "ks_max", "w1": "w1_max", "w2": "w2_max"}
INT_COLUMNS = ("source_id", "astrometric_params_solved", "w1_flags", "w2_flags")


def cell_targets(params: MockParams, n_rows: int) -> dict[tuple[str, bool], int]:
    """Selected rows per (population, is_giant), summing exactly to ``n_rows``."""
    fr = np.array([params.population_fractions[p] for p in POPULATIONS])
    raw = fr * n_rows
    n_pop = np.floor(raw).astype(int)
    n_pop[np.argsort(raw - n_pop)[::-1][: n_rows - n_pop.sum()]] += 1
    out = {}
    for p, k in zip(POPULATIONS, n_pop, strict=True):
        n_g = int(round(params.giant_fractions[p] * k))
        out[(p, True)], out[(p, False)] = n_g, int(k) - n_g
    return out


def _candidates(
    pop: str, giant: bool, m: int, rng: np.random.Generator, params: MockParams
) -> dict[str, np.ndarray]:
    """Draw ``m`` candidates of one cell and return the selected ones."""
    local = None
    if not giant:  # dwarfs (M_Ks >= ~1) cannot pass Ks < ks_max beyond this distance
        mks_min = stars.DWARF_MKS_MIN[pop]
        local = 10 ** ((params.ks_max + _PREFILTER_MARGIN - mks_min + 5.0) / 5.0) / 1e3
    pos = galaxy.sample_positions(pop, m, rng, params, local_kpc=local)
    feh = galaxy.sample_feh(pop, pos, rng, params)
    if giant:
        st = stars.sample_giants(pop, feh, rng, params)
    else:
        st = stars.sample_dwarfs(pop, feh, rng)
    absm = stars.absolute_magnitudes(st["teff"], st["logg"], feh, st["mass"], rng)
    rel = pos - frames.sun_position_kpc()[:, None]
    d = np.sqrt((rel * rel).sum(axis=0))
    dm = 5.0 * np.log10(d) + 10.0
    keep = absm["g"] + dm < params.g_max + _PREFILTER_MARGIN
    for band, lim in _BAND_LIMIT.items():
        keep &= absm[band] + dm < getattr(params, lim) + _PREFILTER_MARGIN
    idx = np.flatnonzero(keep)
    pos, feh, d, dm = pos[:, idx], feh[idx], d[idx], dm[idx]
    st = {k: v[idx] for k, v in st.items()}
    absm = {k: v[idx] for k, v in absm.items()}
    av = observe.extinction_av(pos, params)
    k = idx.size
    ratios = observe.extinction_ratios(params)
    app = {b: absm[b] + dm + ratios[b] * av for b in BANDS}
    err = {}
    for b in ("bp", "g", "rp"):
        err[b] = observe.gaia_mag_error(app["g"], b)
    for b in ("j", "h", "ks"):
        err[b] = observe.mag_error_2mass(app[b], getattr(params, _BAND_LIMIT[b]) - 0.2)
    for b in ("w1", "w2"):
        err[b] = observe.mag_error_unwise(app[b], observe.UNWISE_REF[b])
    obs = {b: app[b] + rng.normal(0.0, 1.0, k) * err[b] for b in BANDS}
    # catalogues quote errors at the measured magnitude
    for b in ("j", "h", "ks"):
        err[b] = observe.mag_error_2mass(obs[b], getattr(params, _BAND_LIMIT[b]) - 0.2)
    for b in ("w1", "w2"):
        err[b] = observe.mag_error_unwise(obs[b], observe.UNWISE_REF[b])
    sel = (obs["g"] > params.g_min) & (obs["g"] < params.g_max)
    # a source far below the detection limit is not detected, whatever its error draw: without
    # this, stars behind ~20 mag of bulge dust (true G ~ 30, sigma_G ~ 20 mag) scattered into
    # the sample with absurd BP/RP magnitudes
    sel &= app["g"] < params.g_max + _UNDETECTED_MARGIN
    for band, lim in _BAND_LIMIT.items():
        sel &= obs[band] < getattr(params, lim)
    s = np.flatnonzero(sel)
    out = {"pos": pos[:, s], "feh": feh[s], "distance_kpc": d[s], "a_v": av[s]}
    out.update({k_: v[s] for k_, v in st.items()})
    out.update({f"abs_{b}": absm[b][s] for b in BANDS})
    out.update({f"obs_{b}": obs[b][s] for b in BANDS})
    out.update({f"err_{b}": err[b][s] for b in BANDS})
    return out


def _fill_cell(
    pop: str, giant: bool, n_needed: int, rng: np.random.Generator, params: MockParams
) -> dict[str, np.ndarray]:
    """Draw candidates until ``n_needed`` are selected; add kinematics and labels of truth."""
    if n_needed <= 0:
        return {}
    parts: list[dict[str, np.ndarray]] = []
    have, acc = 0, 1.0
    for _ in range(_MAX_ITER):
        if have >= n_needed:
            break
        m = int(min(max(1.2 * (n_needed - have) / acc, 1000), _MAX_BATCH))
        part = _candidates(pop, giant, m, rng, params)
        got = part["feh"].size
        acc = max(got / m, 1e-4)
        parts.append(part)
        have += got
    else:
        raise RuntimeError(
            f"mock cell ({pop}, giant={giant}) reached only {have} of {n_needed} selected "
            f"rows after {_MAX_ITER} batches; loosen the selection limits or lower "
            f"frac_{pop}/giant_frac_{pop}"
        )
    cell = {k: np.concatenate([p[k] for p in parts], axis=-1)[..., :n_needed] for k in parts[0]}
    n = n_needed
    cell["population"] = np.full(n, pop)
    cell["is_giant"] = np.full(n, giant)
    if pop == "bulge":
        rich = galaxy.bulge_component(cell["feh"], rng)
        cell["bulge_component"] = np.where(rich, "metal_rich", "metal_poor")
    else:
        rich = None
        cell["bulge_component"] = np.full(n, "")
    cell["vel"] = galaxy.sample_velocities(pop, cell["pos"], rich, rng, params)
    return cell


def simulate_rows(
    params: MockParams, chunk: int, n_rows: int
) -> tuple[pd.DataFrame, pd.DataFrame, np.random.Generator]:
    """Photometric and truth frames of one chunk (see ``bigcat.synthetic.simulate_chunk``)."""
    if not 0 <= chunk < MAX_CHUNK:
        raise ValueError(f"chunk must lie in [0, {MAX_CHUNK}), got {chunk}")
    if not 0 < n_rows < MAX_ROWS:
        raise ValueError(f"n_rows must lie in [1, {MAX_ROWS}), got {n_rows}")
    rng = np.random.default_rng(np.random.SeedSequence([params.seed, chunk]))
    cells = [
        _fill_cell(p, gi, k, rng, params)
        for (p, gi), k in cell_targets(params, n_rows).items()
        if k > 0
    ]
    c = {k: np.concatenate([cl[k] for cl in cells], axis=-1) for k in cells[0]}
    order = rng.permutation(n_rows)
    c = {k: v[..., order] for k, v in c.items()}
    pos, vel = c["pos"], c["vel"]
    sky = frames.galactocentric_to_icrs(*pos, *vel)
    ra, dec = sky["ra"], sky["dec"]
    l_deg, b_deg = frames.galactic_lb(ra, dec)
    crowd = observe.crowding(l_deg, b_deg)
    g, bp, rp = c["obs_g"], c["obs_bp"], c["obs_rp"]

    # missing BP/RP for a few faint stars (Gaia then has a 6-p solution)
    no_bprp = (g > 18.5) & (rng.uniform(size=n_rows) < 0.01)
    bp, rp = np.where(no_bprp, np.nan, bp), np.where(no_bprp, np.nan, rp)
    six = (rng.uniform(size=n_rows) < observe.six_param_probability(g, crowd)) | no_bprp
    solved = np.where(six, 95, 31).astype(np.int64)
    nu = observe.nu_eff_from_colour(np.nan_to_num(c["obs_bp"] - c["obs_rp"], nan=1.0))
    noise = rng.normal(0.0, 0.02, n_rows) * (1.0 + np.maximum(g - 17.0, 0))
    pseudo = np.clip(nu + noise, 1.2401, 1.7199)  # the zero-point needs 1.24 < pc < 1.72
    nu_used = np.where(six, np.nan, nu)
    pseudo = np.where(six, pseudo, np.nan)
    ecl = frames.ecliptic_latitude(ra, dec)
    zp = observe.inject_zero_point(g, nu_used, pseudo, ecl, solved)

    plx_err = observe.parallax_error(g, six, rng)
    plx = sky["parallax"] + zp + rng.normal(0.0, 1.0, n_rows) * plx_err
    pm_scale = np.exp(rng.normal(0.0, 0.05, n_rows))
    pmra_err, pmdec_err = 1.0 * plx_err * pm_scale, 0.9 * plx_err * pm_scale
    corr = np.clip(rng.normal(0.0, 0.15, n_rows), -0.6, 0.6)
    z1, z2 = rng.standard_normal((2, n_rows))
    pmra = sky["pmra"] + pmra_err * z1
    pmdec = sky["pmdec"] + pmdec_err * (corr * z1 + np.sqrt(1.0 - corr**2) * z2)
    has_rv = (g < params.rv_g_max) & (rng.uniform(size=n_rows) < 0.95)
    x = np.clip((g - params.g_min) / (params.rv_g_max - params.g_min), 0.0, 1.0)
    rv_err = np.where(has_rv, 1.0 + 5.0 * x**2.5, np.nan)
    rv = np.where(has_rv, sky["radial_velocity"] + rng.normal(0.0, 1.0, n_rows) * rv_err, np.nan)
    qual = observe.quality_columns(g, np.nan_to_num(bp - rp, nan=1.0), crowd, rng)
    qual["phot_bp_rp_excess_factor"] = np.where(no_bprp, np.nan, qual["phot_bp_rp_excess_factor"])

    import healpy as hp

    pix12 = hp.ang2pix(4096, ra, dec, nest=True, lonlat=True).astype(np.int64)
    source_id = pix12 * np.int64(2**35) + np.int64(chunk) * np.int64(2**22) + np.arange(n_rows)

    cols = {
        "source_id": source_id,
        "ra": ra,
        "dec": dec,
        "parallax": plx,
        "parallax_error": plx_err,
        "pmra": pmra,
        "pmra_error": pmra_err,
        "pmdec": pmdec,
        "pmdec_error": pmdec_err,
        "phot_g_mean_mag": g,
        "phot_bp_mean_mag": bp,
        "phot_rp_mean_mag": rp,
        **{k: qual[k] for k in ("phot_bp_rp_excess_factor", "ruwe")},
        "j_m": c["obs_j"],
        "j_msigcom": c["err_j"],
        "h_m": c["obs_h"],
        "h_msigcom": c["err_h"],
        "ks_m": c["obs_ks"],
        "ks_msigcom": c["err_ks"],
        "w1_mag": c["obs_w1"],
        "w1_mag_error": c["err_w1"],
        "w2_mag": c["obs_w2"],
        "w2_mag_error": c["err_w2"],
        "w1_flags": qual["w1_flags"],
        "w2_flags": qual["w2_flags"],
        "pmra_pmdec_corr": corr,
        "radial_velocity": rv,
        "radial_velocity_error": rv_err,
        "nu_eff_used_in_astrometry": nu_used,
        "pseudocolour": pseudo,
        "ecl_lat": ecl,
        "astrometric_params_solved": solved,
    }
    assert list(cols) == INPUT_COLUMNS
    assert set(INT_COLUMNS) == {
        k for k, v in {**REQUIRED_COLUMNS, **ZEROPOINT_COLUMNS}.items() if v == "int"
    }
    phot = pd.DataFrame(
        {
            k: np.asarray(v, dtype=np.int64 if k in INT_COLUMNS else np.float64)
            for k, v in cols.items()
        }
    )

    a_v = c["a_v"]
    truth = {
        "source_id": source_id,
        "true_population": c["population"].astype(object),
        "true_bulge_component": c["bulge_component"].astype(object),
        "true_stage": c["stage"].astype(object),
        "true_is_giant": c["is_giant"].astype(bool),
        "true_teff": c["teff"],
        "true_logg": c["logg"],
        "true_feh": c["feh"],
        "true_mass": c["mass"],
        "true_distance_pc": 1000.0 * sky["distance_kpc"],
        "true_parallax": sky["parallax"],
        "true_a_v": a_v,
        "true_a_ks": observe.extinction_ratios(params)["ks"] * a_v,
        "true_x_gc": pos[0],
        "true_y_gc": pos[1],
        "true_z_gc": pos[2],
        "true_vx": vel[0],
        "true_vy": vel[1],
        "true_vz": vel[2],
        "true_radial_velocity": sky["radial_velocity"],
        "true_pmra": sky["pmra"],
        "true_pmdec": sky["pmdec"],
        **{f"true_abs_{b}": c[f"abs_{b}"] for b in BANDS},
        "true_h_w2_0": c["abs_h"] - c["abs_w2"],
        "true_zero_point": zp,
        "true_l": l_deg,
        "true_b": b_deg,
    }
    return phot, pd.DataFrame(truth), rng
