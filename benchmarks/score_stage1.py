"""Score stage 1 (photometric parallaxes, combined parallaxes, distances) against the truth.

Prints, for quality giants: the fraction whose NN parallax sigma is below Gaia's (overall and
where Gaia parallax/sigma < 2); calibration of the NN and combined parallaxes (std of the
pulls and 68% coverage, overall and per bin of Gaia parallax/sigma); and the paper's Table 1
layout (distance uncertainty and error against true distance). Only this script reads truth.

``--apply-calibration FILE`` rescales a run's NN parallax sigma post hoc with a stage-1 sigma
calibration (``models/stage1/calibration.json``; :class:`bigcat.stages.parallax.SigmaCalibration`)
and recombines (eqs. 9-10) before scoring: the before/after comparison on a run made without
the calibration (the distance columns are left as they are). ``--by-mj`` adds pulls per bin of
predicted absolute magnitude.

Usage: python benchmarks/score_stage1.py RUN_DIR [--truth MOCK_DIR/truth.parquet]
           [--apply-calibration FILE] [--by-mj]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.dataset as ds

from bigcat.astrometry import combine_parallaxes_with_outliers
from bigcat.stages.parallax import SigmaCalibration, predicted_abs_mag

COLS = [
    "source_id",
    "is_giant",
    "quality_ok",
    "parallax_zp",
    "parallax_error",
    "parallax_nn",
    "parallax_nn_error",
    "parallax_combined",
    "parallax_combined_error",
    "distance_pc",
    "distance_pc_p16",
    "distance_pc_p84",
    "m_pseudo",
    "j_m",
    "a_j",
]


def load(run_dir: Path, truth: Path) -> pd.DataFrame:
    out = (
        ds.dataset(run_dir / "catalog" / "dataset", format="parquet", exclude_invalid_files=True)
        .to_table(columns=COLS)
        .to_pandas()
    )
    tr = (
        ds.dataset(truth, format="parquet")
        .to_table(columns=["source_id", "true_distance_pc", "true_is_giant", "true_stage"])
        .to_pandas()
    )
    df = out.merge(tr, on="source_id", validate="one_to_one")
    df = df[df.is_giant & df.quality_ok & np.isfinite(df.parallax_nn)]
    df["true_parallax"] = 1000.0 / df["true_distance_pc"]
    df["mj_nn"] = predicted_abs_mag(df.parallax_nn * 10 ** (0.2 * (df.j_m - df.a_j)))
    return df


def apply_calibration(df: pd.DataFrame, path: Path) -> pd.DataFrame:
    """The NN sigma rescaled by a saved calibration, and the combined parallax redone."""
    cal = SigmaCalibration.from_dict(json.loads(path.read_text()))
    j0 = (df.j_m - df.a_j).to_numpy()
    m_nn = df.parallax_nn.to_numpy() * 10 ** (0.2 * j0)
    m_obs_error = df.parallax_error.to_numpy() * 10 ** (0.2 * j0)
    err = df.parallax_nn_error.to_numpy() * cal.factor(m_nn, j0, m_obs_error)
    p, pe = combine_parallaxes_with_outliers(
        df.parallax_zp.to_numpy(),
        df.parallax_error.to_numpy(),
        df.parallax_nn.to_numpy(),
        err,
        cal.outlier_fraction,
        cal.outlier_scale,
    )
    print(
        f"applied {path}: J0 edges {np.round(cal.j0_edges, 2).tolist()}, "
        f"predicted M_J edges {np.round(cal.mj_edges, 2).tolist()}, "
        f"log10 predicted parallax/sigma edges {np.round(cal.snr_edges, 2).tolist()}, "
        f"outlier fraction {cal.outlier_fraction:.4f}, width {cal.outlier_scale:.2f}"
    )
    shape = (len(cal.j0_edges) + 1, len(cal.mj_edges) + 1, len(cal.snr_edges) + 1)
    print(
        "  factors (J0 blocks x M_J rows x S/N columns):\n"
        f"{np.round(np.reshape(cal.scales, shape), 3)}"
    )
    return df.assign(parallax_nn_error=err, parallax_combined=p, parallax_combined_error=pe)


def pulls(value, err, truth) -> tuple[float, float, int]:
    z = (value - truth) / err
    z = z[np.isfinite(z)]
    if len(z) < 5:
        return np.nan, np.nan, len(z)
    return float(np.std(z)), float(np.mean(np.abs(z) < 1)), len(z)


def report(df: pd.DataFrame, by_mj: bool = False) -> None:
    snr = df.parallax_zp / df.parallax_error
    better = df.parallax_nn_error < df.parallax_error
    print(
        f"quality giants with NN parallaxes: {len(df):,} "
        f"(true giants among them {df.true_is_giant.mean():.3f})"
    )
    print(
        f"NN sigma < Gaia sigma: {better.mean():.3f} overall, {better[snr < 2].mean():.3f} where "
        f"Gaia parallax/sigma < 2 (paper: 0.58 and 0.89)"
    )
    print(
        f"{'sample':<28} {'NN pull sd':>10} {'NN cov68':>9} {'comb sd':>8} {'comb cov68':>10} {'n':>8}"
    )
    bins = (
        [("all", np.ones(len(df), bool))]
        + [
            (f"Gaia plx/sig {lo}..{hi}", ((snr >= lo) & (snr < hi)).to_numpy())
            for lo, hi in [(-np.inf, 2), (2, 5), (5, 10), (10, np.inf)]
        ]
        + [(f"true {s}", (df.true_stage == s).to_numpy()) for s in ("rgb", "red_clump", "dwarf")]
    )
    if by_mj:
        edges = [-np.inf, -2.5, -1.5, -1.1, -0.8, -0.4, 0.0, 0.5, np.inf]
        mj = df.mj_nn.to_numpy()
        bins += [
            (f"pred M_J {lo:+.1f}..{hi:+.1f}", (mj >= lo) & (mj < hi))
            for lo, hi in zip(edges[:-1], edges[1:], strict=True)
        ]
    for name, m in bins:
        d = df[m]
        a = pulls(
            d.parallax_nn.to_numpy(), d.parallax_nn_error.to_numpy(), d.true_parallax.to_numpy()
        )
        b = pulls(
            d.parallax_combined.to_numpy(),
            d.parallax_combined_error.to_numpy(),
            d.true_parallax.to_numpy(),
        )
        print(f"{name:<28} {a[0]:>10.3f} {a[1]:>9.3f} {b[0]:>8.3f} {b[1]:>10.3f} {a[2]:>8,}")
    bias = (df.parallax_nn - df.true_parallax) / df.parallax_nn_error
    print(
        f"NN parallax median pull {np.nanmedian(bias):+.3f} (positive: predicted too close/bright)"
    )
    gaia = (df.parallax_zp - df.true_parallax) / df.parallax_error
    print(
        f"Gaia parallax median pull {np.nanmedian(gaia):+.3f} overall, "
        f"{np.nanmedian(gaia[snr < 2]):+.3f} where Gaia parallax/sigma < 2 (the giant cut on the "
        "noisy parallax)"
    )
    print("\nTable 1 layout: distance uncertainty by true distance")
    print(
        f"{'d (kpc)':<10} {'n':>8} {'med sig_d/d':>12} {'med |d-true|/true':>18} {'med (d-true)/true':>18}"
    )
    d_true = df.true_distance_pc / 1000
    half = (df.distance_pc_p84 - df.distance_pc_p16) / 2 / df.distance_pc
    err = (df.distance_pc - df.true_distance_pc) / df.true_distance_pc
    for lo, hi in [(0, 2), (2, 4), (4, 6), (6, 8), (8, 10), (10, 15), (15, 100)]:
        m = (d_true >= lo) & (d_true < hi)
        if m.sum() == 0:
            continue
        print(
            f"{lo:>3}-{hi:<6} {m.sum():>8,} {half[m].median():>12.3f} {err[m].abs().median():>18.3f} "
            f"{err[m].median():>+18.3f}"
        )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("run_dir", type=Path)
    p.add_argument("--truth", type=Path, default=None)
    p.add_argument("--apply-calibration", type=Path, default=None)
    p.add_argument("--by-mj", action="store_true")
    a = p.parse_args()
    df = load(a.run_dir, a.truth or a.run_dir / "mock" / "truth.parquet")
    if a.apply_calibration is not None:
        df = apply_calibration(df, a.apply_calibration)
    report(df, by_mj=a.by_mj)


if __name__ == "__main__":
    main()
