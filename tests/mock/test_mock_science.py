"""The injected science survives the selection: vertex angle, gradient, colour signals."""

from __future__ import annotations

import numpy as np
import pytest

from bigcat.synthetic import MockChunk, MockParams, simulate_chunk, stars
from bigcat.synthetic.galaxy import vertex_angle_deg


@pytest.fixture(scope="module")
def big(params: MockParams) -> MockChunk:
    # bulge-heavy so the metal-rich bar sample is large; still ~1 s
    p = MockParams(
        seed=params.seed,
        frac_thin_disc=0.1,
        frac_thick_disc=0.05,
        frac_halo=0.05,
        frac_bulge=0.8,
        vertex_deg=-25.0,
        feh_gradient=-0.6,
    )
    return simulate_chunk(p, 3, 60_000)


def test_vertex_recovered_from_true_velocities(big: MockChunk) -> None:
    tr = big.truth
    rich = (tr["true_population"] == "bulge") & (tr["true_feh"] >= -0.4)
    assert rich.sum() > 10_000
    assert vertex_angle_deg(tr.loc[rich, "true_vx"], tr.loc[rich, "true_vy"]) == pytest.approx(
        -25.0, abs=3.0
    )
    poor = (tr["true_population"] == "bulge") & (tr["true_feh"] <= -0.7)
    assert abs(vertex_angle_deg(tr.loc[poor, "true_vx"], tr.loc[poor, "true_vy"])) < 8.0
    comp = tr["true_bulge_component"]
    assert (comp[rich] == "metal_rich").all()
    assert (comp[poor] == "metal_poor").all()


def test_vertex_in_the_paper_window(big: MockChunk) -> None:
    """|l| < 5, |b| < 10, 6 < d < 10 kpc: the analysis sample sees the injected tilt too."""
    tr = big.truth
    win = (
        (tr["true_l"].abs() < 5)
        & (tr["true_b"].abs() < 10)
        & tr["true_distance_pc"].between(6000, 10000)
        & (tr["true_feh"] >= -0.4)
    )
    assert vertex_angle_deg(tr.loc[win, "true_vx"], tr.loc[win, "true_vy"]) == pytest.approx(
        -25.0, abs=5.0
    )


def test_gradient_recovered(big: MockChunk) -> None:
    tr = big.truth
    r = np.hypot(tr["true_x_gc"], tr["true_y_gc"])
    z = tr["true_z_gc"].abs()
    cyl = (tr["true_population"] == "bulge") & (r < 2.5)
    edges = np.arange(0.7, 1.61, 0.1)
    mids = 0.5 * (edges[1:] + edges[:-1])
    med = [
        tr.loc[cyl & (z >= a) & (z < b), "true_feh"].median()
        for a, b in zip(edges[:-1], edges[1:], strict=True)
    ]
    slope = np.polyfit(mids, med, 1)[0]
    assert slope == pytest.approx(-0.6, abs=0.05)


def test_intrinsic_h_w2_of_giants(chunk0: MockChunk) -> None:
    tr = chunk0.truth
    hw2 = tr.loc[tr["true_is_giant"], "true_h_w2_0"]
    assert hw2.median() == pytest.approx(0.08, abs=0.02)
    assert 0.02 < hw2.std() < 0.06
    np.testing.assert_allclose(hw2, (tr["true_abs_h"] - tr["true_abs_w2"])[tr["true_is_giant"]])


def test_w1_w2_metallicity_signal(chunk0: MockChunk) -> None:
    tr = chunk0.truth
    cool = tr["true_is_giant"] & (tr["true_teff"] < 4500)
    w12 = tr.loc[cool, "true_abs_w1"] - tr.loc[cool, "true_abs_w2"]
    slope = np.polyfit(tr.loc[cool, "true_feh"], w12, 1)[0]
    assert slope < -0.03
    # the kernel itself: ~0.1 mag/dex at 4000 K, none above 4800 K beyond the base term
    t = np.array([4000.0, 5200.0])
    lo = stars.intrinsic_colours(t, np.full(2, 1.5), np.full(2, -0.5))
    hi = stars.intrinsic_colours(t, np.full(2, 1.5), np.full(2, 0.5))
    d_w12 = (hi["w2"] - hi["w1"]) - (lo["w2"] - lo["w1"])  # (Ks-W2)-(Ks-W1) = W1-W2
    assert -0.12 < d_w12[0] < -0.07
    assert -0.05 < d_w12[1] < 0.0


def test_bp_rp_redder_when_metal_rich() -> None:
    t, g = np.full(3, 4600.0), np.full(3, 2.5)
    c = stars.intrinsic_colours(t, g, np.array([-1.0, 0.0, 0.5]))
    bp_rp = c["bp"] - c["rp"]
    assert 0.02 < bp_rp[1] - bp_rp[0] < 0.1
    assert bp_rp[2] > bp_rp[1]


def test_metal_poor_giants_hotter() -> None:
    rng = np.random.default_rng(0)
    no_clump = MockParams(red_clump_fraction=0.0)
    rich = stars.sample_giants("bulge", np.full(5000, 0.2), rng, no_clump)
    poor = stars.sample_giants("bulge", np.full(5000, -1.8), rng, no_clump)
    assert np.median(poor["teff"]) - np.median(rich["teff"]) > 250.0
