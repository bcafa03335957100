"""Mock intrinsic colours of giants against real low-reddening giants (Green et al. 2020).

Real: ``shared/data/real/green2020_test_data_small.h5``, giants (log g < 3.5) with reddening
r < 0.1, dereddened with A_V = 2.8 r and Wang & Chen (2019); unWISE AB -> Vega
(W1 - 2.699, W2 - 3.339). Both samples restricted to -0.8 < [Fe/H] < 0.2 so the
metallicity mix does not masquerade as a colour offset. Median colour per 200 K Teff bin.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bigcat.synthetic import MockChunk
from bigcat.synthetic.observe import EXTINCTION_RATIOS

REAL = Path("/work/shared/data/real/green2020_test_data_small.h5")
BAND_INDEX = {"g": 0, "bp": 1, "rp": 2, "j": 8, "h": 9, "ks": 10, "w1": 11, "w2": 12}
AB_TO_VEGA = {"w1": 2.699, "w2": 3.339}
TOLERANCE = 0.1  # mag, per Teff bin with >= 40 real stars
MIN_REAL = 40
BINS = np.arange(4000.0, 5400.0, 200.0)


def real_giants() -> tuple[dict[str, np.ndarray], np.ndarray]:
    h5py = pytest.importorskip("h5py")
    if not REAL.exists():
        pytest.skip(f"{REAL} not available")
    with h5py.File(REAL, "r") as f:
        d = f["data"][:]
    teff, logg, feh = d["atm_param"].astype(float).T
    mag = d["mag"].astype(float)
    mag[mag == 0] = np.nan
    r = d["r"].astype(float)
    keep = (logg < 3.5) & (r < 0.1) & (feh > -0.8) & (feh < 0.2)
    a_v = 2.8 * r
    mags = {
        b: (mag[:, i] - AB_TO_VEGA.get(b, 0.0) - EXTINCTION_RATIOS[b] * a_v)[keep]
        for b, i in BAND_INDEX.items()
    }
    return mags, teff[keep]


def colour_offsets(chunk: MockChunk, blue: str, red: str) -> dict[float, tuple[float, int]]:
    """Median(mock) - median(real) of blue-red per Teff bin, with the real count."""
    mags, teff = real_giants()
    tr = chunk.truth
    sel = tr["true_is_giant"] & tr["true_feh"].between(-0.8, 0.2)
    m_col = (tr[f"true_abs_{blue}"] - tr[f"true_abs_{red}"])[sel].to_numpy()
    m_teff = tr.loc[sel, "true_teff"].to_numpy()
    r_col = mags[blue] - mags[red]
    out = {}
    for lo in BINS:
        rs = (teff >= lo) & (teff < lo + 200) & np.isfinite(r_col)
        ms = (m_teff >= lo) & (m_teff < lo + 200)
        if rs.sum() and ms.sum():
            out[float(lo)] = (float(np.median(m_col[ms]) - np.median(r_col[rs])), int(rs.sum()))
    return out


@pytest.mark.parametrize(
    ("blue", "red"), [("bp", "rp"), ("j", "ks"), ("g", "ks"), ("j", "h"), ("h", "ks")]
)
def test_colour_matches_real_giants(chunk0: MockChunk, blue: str, red: str) -> None:
    offsets = colour_offsets(chunk0, blue, red)
    tested = {lo: off for lo, (off, n) in offsets.items() if n >= MIN_REAL}
    assert len(tested) >= 5
    bad = {lo: round(off, 3) for lo, off in tested.items() if abs(off) > TOLERANCE}
    assert not bad, f"{blue}-{red} offsets beyond {TOLERANCE} mag: {bad}"


def test_h_w2_matches_real_giants(chunk0: MockChunk) -> None:
    """Few real giants have W2 (~300 here): compare where there are >= 40 per bin."""
    offsets = colour_offsets(chunk0, "h", "w2")
    tested = {lo: off for lo, (off, n) in offsets.items() if n >= MIN_REAL}
    assert len(tested) >= 2
    assert all(abs(off) < 0.05 for off in tested.values()), tested
