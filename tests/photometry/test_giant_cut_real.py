"""The giant cut (eq. 7) on real stars with spectroscopic log g (Green et al. 2020 test data).

10,000 stars with LAMOST/APOGEE/GALAH Teff, log g, [Fe/H], 13-band photometry (G, BP, RP,
PS1 grizy, 2MASS J H Ks, unWISE W1 W2), Gaia parallaxes and a reddening ``r``.
We keep parallax/error > 5 and finite J, H, deredden roughly with A_J = 0.709 r and
A_H = 0.449 r (Schlafly & Finkbeiner 2011 R_J, R_H per unit E(B-V); ``r`` is close to that
scale), and compare the cut with log g: giants log g < 3.2, dwarfs log g > 4.

Measured (pytest run on this file, numbers printed with ``-s``):
    r-dereddened, 7,990 stars: 1,669 giants, 4,760 dwarfs; completeness 0.982,
    dwarfs rejected 0.9996, fraction of selected stars that are dwarfs 0.0011,
    purity against log g < 3.2 is 0.911 (the rest are log g 3.2-4 subgiants/lower RGB,
    which the photometric cut cannot separate from giants and which are not dwarfs).
    Low reddening (r < 0.1) without dereddening, 4,592 stars: completeness 0.980,
    dwarfs rejected 1.000.
Thresholds sit a few per cent below those numbers: they catch a wrong sign, a wrong power
of ten or a swapped colour (each of which collapses completeness or rejection), not noise.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bigcat.photometry import giant_mask, pseudo_absolute_magnitude

GREEN = Path("/work/shared/data/real/green2020_test_data_small.h5")
J_INDEX, H_INDEX = 8, 9
R_J, R_H = 0.709, 0.449


@pytest.fixture(scope="module")
def stars() -> dict[str, np.ndarray]:
    if not GREEN.exists():
        pytest.skip(f"{GREEN} not present")
    h5py = pytest.importorskip("h5py")
    with h5py.File(GREEN, "r") as f:
        d = f["data"][:]
    teff, logg, feh = d["atm_param"].T.astype(np.float64)
    out = {
        "logg": logg,
        "j": d["mag"][:, J_INDEX].astype(np.float64),
        "h": d["mag"][:, H_INDEX].astype(np.float64),
        "parallax": d["parallax"].astype(np.float64),
        "parallax_error": d["parallax_err"].astype(np.float64),
        "r": d["r"].astype(np.float64),
    }
    assert len(logg) == 10_000
    return out


def score(stars, selected, sample):
    giants = sample & (stars["logg"] < 3.2)
    dwarfs = sample & (stars["logg"] > 4.0)
    chosen = selected & sample
    return {
        "n": int(sample.sum()),
        "n_giants": int(giants.sum()),
        "n_dwarfs": int(dwarfs.sum()),
        "completeness": selected[giants].mean(),
        "dwarf_rejection": 1.0 - selected[dwarfs].mean(),
        "dwarf_contamination": (selected & dwarfs).sum() / chosen.sum(),
        "purity": (selected & giants).sum() / chosen.sum(),
    }


def good_parallax(stars):
    with np.errstate(invalid="ignore", divide="ignore"):
        return (
            (stars["parallax"] / stars["parallax_error"] > 5)
            & np.isfinite(stars["j"])
            & np.isfinite(stars["h"])
        )


def test_giant_cut_dereddened_with_r(stars):
    j0 = stars["j"] - R_J * stars["r"]
    h0 = stars["h"] - R_H * stars["r"]
    m, _ = pseudo_absolute_magnitude(stars["parallax"], stars["parallax_error"], j0)
    s = score(stars, giant_mask(m, j0, h0), good_parallax(stars))
    print("green2020 r-dereddened:", s)
    assert s["n_giants"] > 1500 and s["n_dwarfs"] > 4000
    assert s["completeness"] > 0.96
    assert s["dwarf_rejection"] > 0.995
    assert s["dwarf_contamination"] < 0.005
    assert s["purity"] > 0.88


def test_giant_cut_low_reddening(stars):
    sample = good_parallax(stars) & (stars["r"] < 0.1)
    m, _ = pseudo_absolute_magnitude(stars["parallax"], stars["parallax_error"], stars["j"])
    s = score(stars, giant_mask(m, stars["j"], stars["h"]), sample)
    print("green2020 r < 0.1, no dereddening:", s)
    assert s["n_giants"] > 600
    assert s["completeness"] > 0.96
    assert s["dwarf_rejection"] > 0.995
