"""Named validation Galaxies: the default survey is unchanged, each Galaxy simulates and
differs from the default where it says (structure, populations, dust, label selection)."""

from __future__ import annotations

import dataclasses
import hashlib

import numpy as np
import pandas as pd
import pytest

from bigcat.config import load_config
from bigcat.errors import ConfigError
from bigcat.schema import BANDS
from bigcat.synthetic import GALAXIES, MockChunk, MockParams, galaxy, simulate_chunk, stars
from bigcat.synthetic.extinction import EXTINCTION_LAWS
from bigcat.synthetic.observe import EXTINCTION_RATIOS

VALIDATION = [name for name in GALAXIES if name != "default"]
N_ROWS = 20_000

# Recorded from simulate_chunk(MockParams(seed=3), 0, 2000) BEFORE the Galaxy structure became
# MockParams fields (the module-constant version): the default survey must stay bit-for-bit.
PHOTOMETRY_SHA256 = "354d664090ea8287fc2461d3bce067f48307f1e58457998ca2366809b2bf5148"
FRAME_SHA256 = {
    "truth": "9da43d363233c2bb88082cf7a255c030f4987d7cfc898202329e18b23d02a70f",
    "apogee": "76f363684af8693b1d310df08e608de1c8d6faddd740bbed21ca167f2264e194",
    "lamost": "473d4bea04dea4fabf3f9ed4ce091036206692fb8c41794323a3684924316804",
}
# the same chunk's column sums (a platform whose libm differs in the last bits would fail the
# hashes but pass these; any real change of the model or of the random streams fails both)
PHOTOMETRY_SUMS = {
    "ra": 480545.9005393246,
    "dec": -36316.15291362141,
    "parallax": 897.0528998287961,
    "phot_g_mean_mag": 31725.661996187762,
    "phot_bp_mean_mag": 33142.49055354764,
    "j_m": 27571.857450588068,
    "ks_m": 25971.2896479469,
    "w2_mag": 25932.82049615005,
    "pmra": -5971.603392065286,
    "radial_velocity": -6973.541496660951,
}
TRUTH_SUMS = {
    "true_feh": -648.4933931186097,
    "true_a_v": 2541.531615165948,
    "true_logg": 6298.9349345892515,
    "true_vx": 4214.815954501406,
    "true_z_gc": -39.66510439971719,
}
COUNTS = {"apogee": 50, "lamost": 137, "giants": 1176, "red_clump": 591, "rgb": 585}


def frame_sha256(df: pd.DataFrame) -> str:
    """sha256 over column names and values (text columns joined by NUL)."""
    h = hashlib.sha256()
    for c in df.columns:
        h.update(c.encode())
        v = df[c].to_numpy()
        if v.dtype == object:
            h.update("\0".join(map(str, v)).encode())
        else:
            h.update(np.ascontiguousarray(v).tobytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def default3() -> MockChunk:
    return simulate_chunk(MockParams(seed=3), 0, 2000)


def test_default_survey_bit_for_bit_unchanged(default3: MockChunk) -> None:
    assert hashlib.sha256(default3.photometry.to_numpy().tobytes()).hexdigest() == (
        PHOTOMETRY_SHA256
    )
    for table, sha in FRAME_SHA256.items():
        assert frame_sha256(getattr(default3, table)) == sha, table


def test_default_survey_recorded_values(default3: MockChunk) -> None:
    ph, tr = default3.photometry, default3.truth
    for col, total in PHOTOMETRY_SUMS.items():
        assert np.nansum(ph[col].to_numpy()) == pytest.approx(total, rel=1e-10), col
    for col, total in TRUTH_SUMS.items():
        assert tr[col].sum() == pytest.approx(total, rel=1e-9, abs=1e-9), col
    stages = tr["true_stage"].value_counts()
    assert (len(default3.apogee), len(default3.lamost)) == (COUNTS["apogee"], COUNTS["lamost"])
    assert int(tr["true_is_giant"].sum()) == COUNTS["giants"]
    assert (stages["red_clump"], stages["rgb"]) == (COUNTS["red_clump"], COUNTS["rgb"])


def test_default_galaxy_is_the_defaults() -> None:
    assert GALAXIES["default"] == {}
    assert MockParams.for_galaxy("default") == MockParams()
    assert MockParams().extinction_ratios == EXTINCTION_RATIOS
    assert EXTINCTION_LAWS["wang-chen-2019"] == EXTINCTION_RATIOS


@pytest.mark.parametrize("name", VALIDATION)
def test_galaxy_overrides_are_fields_and_differ(name: str) -> None:
    names = {f.name for f in dataclasses.fields(MockParams)}
    default = MockParams()
    over = GALAXIES[name]
    assert set(over) <= names - {"galaxy", "seed"}
    for key, value in over.items():
        assert getattr(default, key) != value, key
    p = MockParams.for_galaxy(name)
    assert p.galaxy == name and p.overrides() == {}
    assert all(getattr(p, k) == v for k, v in over.items())
    # structure AND populations AND observing
    assert {"bar_angle_deg", "thin_disc_scale_length_kpc"} <= set(over)
    assert {"red_clump_fraction", "feh_gradient", "vertex_deg"} <= set(over)
    assert {"extinction_law", "apogee_h_max"} <= set(over)
    assert hash(p) != hash(default)


def test_precedence_explicit_keys_win() -> None:
    p = MockParams.for_galaxy("longbar", seed=3, vertex_deg=-22.0)
    assert (p.seed, p.vertex_deg, p.bar_angle_deg) == (
        3,
        -22.0,
        GALAXIES["longbar"]["bar_angle_deg"],
    )
    assert p.overrides() == {"seed": 3, "vertex_deg": -22.0}
    q = MockParams.from_dict({"galaxy": "longbar", "seed": 3, "vertex_deg": -22.0})
    assert q == p
    # construction itself never rewrites fields: galaxy= only labels
    assert MockParams(galaxy="longbar").bar_angle_deg == MockParams().bar_angle_deg
    assert "bar_angle_deg" in MockParams(galaxy="longbar").overrides()


def test_unknown_galaxy_lists_the_names() -> None:
    with pytest.raises(ValueError, match="Did you mean 'longbar'") as exc:
        MockParams.for_galaxy("longbr")
    for name in GALAXIES:
        assert name in str(exc.value)
    with pytest.raises(ValueError, match="unknown galaxy"):
        MockParams.from_dict({"galaxy": "nope"})
    with pytest.raises(ValueError, match="unknown galaxy"):
        MockParams(galaxy="nope")
    with pytest.raises(ValueError, match="Did you mean 'bar_angle_deg'"):
        MockParams.for_galaxy("longbar", bar_angel_deg=10.0)
    with pytest.raises(ValueError, match="Did you mean 'nishiyama-2009'"):
        MockParams(extinction_law="nishiyama")


def test_config_mock_section_applies_the_galaxy(tmp_path) -> None:
    path = tmp_path / "bigcat.toml"
    path.write_text('[mock]\ngalaxy = "boxybulge"\nseed = 4\nfeh_gradient = -0.45\n')
    p = load_config(path).mock
    assert p.galaxy == "boxybulge" and p.seed == 4
    assert p.feh_gradient == -0.45  # explicit key wins
    assert p.bar_angle_deg == GALAXIES["boxybulge"]["bar_angle_deg"]
    path.write_text('[mock]\ngalaxy = "boxybulg"\n')
    with pytest.raises(ConfigError, match="Did you mean 'boxybulge'"):
        load_config(path)


@pytest.mark.parametrize("name", VALIDATION)
def test_bulge_random_cov_positive_definite(name: str) -> None:
    p = MockParams.for_galaxy(name)
    for rich in (True, False):
        assert np.linalg.eigvalsh(galaxy.bulge_random_cov(p, rich)).min() > 0


@pytest.fixture(scope="module")
def galaxy_chunks() -> dict[str, MockChunk]:
    return {
        name: simulate_chunk(MockParams.for_galaxy(name, seed=7), 0, N_ROWS) for name in GALAXIES
    }


def _giant_colour_medians(chunk: MockChunk) -> dict[str, float]:
    tr = chunk.truth
    gi = tr["true_is_giant"]
    pairs = [("bp", "rp"), ("g", "ks"), ("j", "ks"), ("h", "ks"), ("ks", "w1"), ("w1", "w2")]
    return {
        f"{a}-{b}": float((tr[f"true_abs_{a}"] - tr[f"true_abs_{b}"])[gi].median())
        for a, b in pairs
    }


@pytest.mark.parametrize("name", VALIDATION)
def test_galaxy_gives_a_usable_catalogue(name: str, galaxy_chunks: dict[str, MockChunk]) -> None:
    ch = galaxy_chunks[name]
    p = MockParams.for_galaxy(name, seed=7)
    tr, ph = ch.truth, ch.photometry
    assert len(ph) == N_ROWS and ph["source_id"].is_unique
    frac = tr["true_population"].value_counts(normalize=True)
    for pop, target in p.population_fractions.items():
        assert frac[pop] == pytest.approx(target, abs=1e-3)
    gi = tr["true_is_giant"].to_numpy()
    labelled = gi & (tr["true_in_apogee"] | tr["true_in_lamost"]).to_numpy()
    assert labelled.sum() * 1_000_000 / N_ROWS > 2_000
    assert len(ch.apogee) > 100 and len(ch.lamost) > 100
    r = np.hypot(tr["true_x_gc"], tr["true_y_gc"]).to_numpy()
    assert (gi & (r < 2.5)).sum() > 0.3 * gi.sum()
    assert 14.5 < ph["phot_g_mean_mag"].median() < 17.5
    # colours stay those of real stars: giant colour medians close to the default Galaxy's
    ref = _giant_colour_medians(galaxy_chunks["default"])
    for colour, value in _giant_colour_medians(ch).items():
        assert value == pytest.approx(ref[colour], abs=0.15), colour
    assert ph[[f"{b}_m" for b in ("j", "h", "ks")]].notna().all().all()
    assert set(BANDS) <= set(EXTINCTION_LAWS[p.extinction_law])


def _bar_moments(p: MockParams) -> tuple[float, float, float]:
    """Measured bar angle (deg), RMS along and across the bar (kpc) of model bulge stars."""
    pos = galaxy.sample_positions("bulge", 1_000_000, np.random.default_rng(1), p)
    c = np.cov(pos[:2])
    phi = 0.5 * np.arctan2(2 * c[0, 1], c[0, 0] - c[1, 1])  # major axis from +x towards +y
    lam = np.linalg.eigvalsh(c)
    return float(-np.degrees(phi)), float(np.sqrt(lam[1])), float(np.sqrt(lam[0]))


def test_bar_angle_and_length_differ() -> None:
    moments = {name: _bar_moments(MockParams.for_galaxy(name)) for name in GALAXIES}
    for name, (angle, _, _) in moments.items():
        assert angle == pytest.approx(MockParams.for_galaxy(name).bar_angle_deg, abs=1.0)
    assert moments["longbar"][1] > 1.2 * moments["default"][1] > 1.2 * moments["boxybulge"][1]
    axis_ratio = {k: v[2] / v[1] for k, v in moments.items()}
    assert axis_ratio["longbar"] < axis_ratio["default"] < axis_ratio["boxybulge"]


def test_selected_bulge_stars_trace_their_bar(galaxy_chunks: dict[str, MockChunk]) -> None:
    """The true positions of the *selected* bulge stars show the bar ordering too."""
    angle = {}
    for name, ch in galaxy_chunks.items():
        tr = ch.truth
        bul = (tr["true_population"] == "bulge").to_numpy()
        c = np.cov(np.vstack([tr["true_x_gc"], tr["true_y_gc"]])[:, bul])
        angle[name] = -np.degrees(0.5 * np.arctan2(2 * c[0, 1], c[0, 0] - c[1, 1]))
    assert angle["longbar"] < angle["default"] < angle["boxybulge"]


def test_disc_scale_lengths_differ() -> None:
    for name in GALAXIES:
        p = MockParams.for_galaxy(name)
        for pop in ("thin_disc", "thick_disc"):
            pos = galaxy.sample_positions(pop, 100_000, np.random.default_rng(2), p)
            h_est = np.hypot(pos[0], pos[1]).mean() / 2.0  # p(R) ~ R exp(-R/h): <R> = 2h
            h, hz = p.disc_scales[pop]
            assert h_est == pytest.approx(h, rel=0.04), (name, pop)
            assert np.abs(pos[2]).mean() == pytest.approx(hz, rel=0.03), (name, pop)
    longbar, default = MockParams.for_galaxy("longbar"), MockParams()
    assert longbar.thin_disc_scale_length_kpc > default.thin_disc_scale_length_kpc
    assert MockParams.for_galaxy("boxybulge").thin_disc_scale_length_kpc < 2.6


def test_luminosity_function_and_masses_follow_params() -> None:
    feh = np.zeros(40_000)
    drawn = {}
    for name in GALAXIES:
        p = MockParams.for_galaxy(name)
        st = stars.sample_giants("bulge", feh, np.random.default_rng(3), p)
        clump = st["stage"] == "red_clump"
        assert clump.mean() == pytest.approx(p.red_clump_fraction, abs=0.01)
        assert np.median(st["logg"][clump]) == pytest.approx(p.clump_logg, abs=0.01)
        assert st["mass"].mean() == pytest.approx(p.giant_mass_bulge, abs=0.01)
        drawn[name] = float(np.median(st["logg"][~clump]))
    # shallower RGB law: more luminous (low log g) giants
    assert drawn["boxybulge"] < drawn["default"] - 0.05


def test_red_clump_share_of_selected_giants(galaxy_chunks: dict[str, MockChunk]) -> None:
    share = {}
    for name, ch in galaxy_chunks.items():
        tr = ch.truth
        share[name] = (tr.loc[tr["true_is_giant"], "true_stage"] == "red_clump").mean()
    assert share["longbar"] < share["default"] - 0.05
    assert share["boxybulge"] > share["default"] + 0.02


def test_extinction_law_used(galaxy_chunks: dict[str, MockChunk]) -> None:
    ratio = {}
    for name, ch in galaxy_chunks.items():
        tr = ch.truth
        p = MockParams.for_galaxy(name)
        dusty = tr["true_a_v"] > 0.05
        r = (tr["true_a_ks"] / tr["true_a_v"])[dusty]
        np.testing.assert_allclose(r, EXTINCTION_LAWS[p.extinction_law]["ks"], rtol=1e-12)
        ratio[name] = float(r.median())
        # the observed magnitudes carry the law: obs - abs - DM = ratio * A_V (before noise)
        d_mod = 5 * np.log10(tr["true_distance_pc"]) - 5
        ks_ext = ch.photometry["ks_m"] - tr["true_abs_ks"] - d_mod
        slope = np.polyfit(tr["true_a_v"], ks_ext, 1)[0]
        assert slope == pytest.approx(EXTINCTION_LAWS[p.extinction_law]["ks"], abs=0.01)
    assert ratio["longbar"] < ratio["default"] < ratio["boxybulge"]


def test_label_selections_follow_the_galaxy(galaxy_chunks: dict[str, MockChunk]) -> None:
    lb = galaxy_chunks["longbar"]
    p = MockParams.for_galaxy("longbar")
    tr, ph = lb.truth, lb.photometry
    ap, la = tr["true_in_apogee"], tr["true_in_lamost"]
    assert (tr.loc[ap, "true_b"].abs() <= p.apogee_max_abs_b_deg).all()
    assert (ph.loc[ap, "h_m"] < p.apogee_h_max).all()
    assert (tr.loc[la, "true_b"].abs() >= p.lamost_min_abs_b_deg).all()
    assert (ph.loc[la, "phot_g_mean_mag"] < p.lamost_g_max).all()
    d = galaxy_chunks["default"].truth
    assert (d.loc[d["true_in_apogee"], "true_b"].abs() > 20).any()
    assert (d.loc[d["true_in_lamost"], "true_b"].abs() < 5).any()
    bb = galaxy_chunks["boxybulge"]
    q = MockParams.for_galaxy("boxybulge")
    dec = bb.photometry.loc[bb.truth["true_in_lamost"], "dec"]
    assert (dec > q.lamost_dec_min_deg).all() and (dec < -10).any()
    assert (bb.photometry.loc[bb.truth["true_in_apogee"], "h_m"] > 12.2).any()


@pytest.mark.parametrize("name", VALIDATION)
def test_injected_gradient_and_vertex_survive(name: str) -> None:
    """Bulge-heavy variant of each Galaxy: the injected truth is what the selected stars show."""
    p = MockParams.for_galaxy(
        name, seed=7, frac_thin_disc=0.1, frac_thick_disc=0.05, frac_halo=0.05, frac_bulge=0.8
    )
    tr = simulate_chunk(p, 3, 60_000).truth
    r = np.hypot(tr["true_x_gc"], tr["true_y_gc"])
    z = tr["true_z_gc"].abs()
    cyl = (tr["true_population"] == "bulge") & (r < 2.5)
    edges = np.arange(0.7, 1.61, 0.1)
    mids = 0.5 * (edges[1:] + edges[:-1])
    med = [
        tr.loc[cyl & (z >= a) & (z < b), "true_feh"].median()
        for a, b in zip(edges[:-1], edges[1:], strict=True)
    ]
    assert np.polyfit(mids, med, 1)[0] == pytest.approx(p.feh_gradient, abs=0.07)
    rich = (tr["true_population"] == "bulge") & (tr["true_feh"] >= -0.4)
    v = galaxy.vertex_angle_deg(tr.loc[rich, "true_vx"], tr.loc[rich, "true_vy"])
    assert v == pytest.approx(p.vertex_deg, abs=4.0)
