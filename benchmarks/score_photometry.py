"""Score the photometry stage of a run against the synthetic survey's truth.

Prints the fraction of rows failing each quality cut, and the giant cut's purity and
completeness (among rows passing the quality cuts) overall, by parallax S/N and by G.
This script, not the pipeline, reads ``true_*`` columns.

Usage: python benchmarks/score_photometry.py RUN_DIR [--truth MOCK_DIR/truth.parquet]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.dataset as ds

from bigcat.schema import QUALITY_BITS


def load(run_dir: Path, truth: Path) -> pd.DataFrame:
    cols = [
        "source_id",
        "quality_ok",
        "quality_flags",
        "is_giant",
        "parallax",
        "parallax_error",
        "phot_g_mean_mag",
        "a_ks",
    ]
    out = (
        ds.dataset(run_dir / "catalog" / "dataset", format="parquet", exclude_invalid_files=True)
        .to_table(columns=cols)
        .to_pandas()
    )
    tr = (
        ds.dataset(truth, format="parquet")
        .to_table(columns=["source_id", "true_is_giant", "true_a_ks", "true_stage"])
        .to_pandas()
    )
    return out.merge(tr, on="source_id", how="inner", validate="one_to_one")


def purity_completeness(sel: np.ndarray, true: np.ndarray) -> tuple[float, float, int]:
    tp = np.sum(sel & true)
    return tp / max(sel.sum(), 1), tp / max(true.sum(), 1), int(true.sum())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("run_dir", type=Path)
    p.add_argument("--truth", type=Path, default=None)
    a = p.parse_args()
    truth = a.truth or a.run_dir / "mock" / "truth.parquet"
    df = load(a.run_dir, truth)
    n = len(df)
    print(f"rows: {n:,}")
    flags = df["quality_flags"].to_numpy()
    for name, bit in QUALITY_BITS.items():
        print(f"  failing/flagged {name:<22} {np.mean((flags & bit) != 0) * 100:6.2f}%")
    ok = df["quality_ok"].to_numpy()
    print(f"  passing all quality cuts      {ok.mean() * 100:6.2f}%")
    sel, true = df["is_giant"].to_numpy(), df["true_is_giant"].to_numpy()
    pur, comp, nt = purity_completeness(sel[ok], true[ok])
    print(
        f"giant cut (quality_ok rows): purity {pur:.3f}, completeness {comp:.3f} ({nt:,} true giants)"
    )
    snr = df["parallax"].to_numpy() / df["parallax_error"].to_numpy()
    for lo, hi in [(-np.inf, 2), (2, 5), (5, 20), (20, np.inf)]:
        m = ok & (snr >= lo) & (snr < hi)
        pur, comp, nt = purity_completeness(sel[m], true[m])
        print(
            f"  parallax S/N {lo:>5}..{hi:<5}: purity {pur:.3f} completeness {comp:.3f}  (n={m.sum():,})"
        )
    g = df["phot_g_mean_mag"].to_numpy()
    for lo in range(8, 20, 2):
        m = ok & (g >= lo) & (g < lo + 2)
        pur, comp, nt = purity_completeness(sel[m], true[m])
        print(
            f"  G {lo:>2}..{lo + 2:<2}: purity {pur:.3f} completeness {comp:.3f}  (n={m.sum():,})"
        )
    res = df["a_ks"].to_numpy() - df["true_a_ks"].to_numpy()
    m = ok & np.isfinite(res)
    print(
        f"RJCE A_Ks - true: median {np.median(res[m]):+.3f} mag, robust sd "
        f"{1.4826 * np.median(np.abs(res[m] - np.median(res[m]))):.3f} mag"
    )


if __name__ == "__main__":
    main()
