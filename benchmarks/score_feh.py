"""Score stage-2 [Fe/H] against the truth of a synthetic run: by observable, by distance error,
and at the ends of the metallicity range.

On quality giants with an [Fe/H] that are NOT in the training (TG) sample, residual =
feh - true_feh:

* overall median and robust scatter (1.4826 MAD; target <= 0.27 dex);
* per G bin (< 15, 15-16, 16-17, > 17): median residual (target |.| <= 0.05), robust scatter,
  pull sd (feh - true) / feh_error (target 0.9-1.1);
* per tercile of the distance error d / d_true (near, middle, far) and far minus near (target
  within +-0.05): a distance error that moves [Fe/H] fakes a vertical gradient;
* the end bins: true [Fe/H] < -1.5 and >= 0.5 (target within +-0.15), for each [Fe/H] column
  given with --columns (e.g. feh and feh_debiased).

Only this script reads truth. Usage::

    python benchmarks/score_feh.py RUN_DIR [--truth MOCK/truth.parquet] [--columns feh ...]
        [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.dataset as ds

from bigcat.analysis.stats import robust_scatter

MAG_BINS = [(-np.inf, 15.0), (15.0, 16.0), (16.0, 17.0), (17.0, np.inf)]


def load(run_dir: Path, truth: Path, columns: list[str]) -> pd.DataFrame:
    want = ["source_id", "quality_ok", "is_giant", "phot_g_mean_mag", "distance_pc", "feh_error"]
    cat = ds.dataset(run_dir / "catalog" / "dataset", format="parquet", exclude_invalid_files=True)
    have = set(cat.schema.names)
    cols = [c for c in dict.fromkeys(want + columns + [f"{c}_error" for c in columns]) if c in have]
    df = cat.to_table(columns=cols).to_pandas()
    df = df[df["quality_ok"] & df["is_giant"] & np.isfinite(df["feh"])]
    tr = (
        ds.dataset(truth, format="parquet")
        .to_table(columns=["source_id", "true_feh", "true_distance_pc", "true_population"])
        .to_pandas()
    )
    df = df.merge(tr, on="source_id", how="left", validate="one_to_one")
    tg = run_dir / "models" / "stage2" / "tg_sample.parquet"
    if tg.exists():
        seen = pd.read_parquet(tg, columns=["source_id"])["source_id"]
        df = df[~df["source_id"].isin(seen)]
    return df.reset_index(drop=True)


def score_column(df: pd.DataFrame, col: str) -> dict:
    feh = df[col].to_numpy(np.float64)
    err_col = f"{col}_error" if f"{col}_error" in df.columns else "feh_error"
    err = df[err_col].to_numpy(np.float64)
    true = df["true_feh"].to_numpy(np.float64)
    res = feh - true
    g = df["phot_g_mean_mag"].to_numpy(np.float64)
    out: dict = {
        "n": int(len(df)),
        "median_residual": float(np.median(res)),
        "robust_scatter": robust_scatter(res),
        "pull_sd": float(np.std((res / err)[np.abs(res / err) < 10])),
    }
    out["g_bins"] = {}
    for lo, hi in MAG_BINS:
        m = (g >= lo) & (g < hi)
        z = res[m] / err[m]
        out["g_bins"][f"{lo:g}-{hi:g}"] = {
            "n": int(m.sum()),
            "median_residual": float(np.median(res[m])),
            "robust_scatter": robust_scatter(res[m]),
            "pull_sd": float(np.std(z[np.abs(z) < 10])),
        }
    ratio = df["distance_pc"].to_numpy(np.float64) / df["true_distance_pc"].to_numpy(np.float64)
    ok = np.isfinite(ratio)
    q1, q2 = np.quantile(ratio[ok], [1 / 3, 2 / 3])
    terc = {
        "near": ok & (ratio < q1),
        "middle": ok & (ratio >= q1) & (ratio < q2),
        "far": ok & (ratio >= q2),
    }
    out["distance_terciles"] = {k: float(np.median(res[m])) for k, m in terc.items()}
    out["distance_tercile_edges"] = [float(q1), float(q2)]
    out["far_minus_near"] = out["distance_terciles"]["far"] - out["distance_terciles"]["near"]
    out["too_far_10pc"] = float(np.median(res[ok & (ratio > 1.1)]))
    out["too_near_10pc"] = float(np.median(res[ok & (ratio < 0.9)]))
    out["end_bins"] = {
        "feh<-1.5": float(np.median(res[true < -1.5])) if (true < -1.5).any() else None,
        "feh>=0.5": float(np.median(res[true >= 0.5])) if (true >= 0.5).any() else None,
        "n_low": int((true < -1.5).sum()),
        "n_high": int((true >= 0.5).sum()),
    }
    return out


def show(col: str, r: dict) -> None:
    print(
        f"\n{col}: n={r['n']:,}  median residual {r['median_residual']:+.3f}  robust scatter "
        f"{r['robust_scatter']:.3f}  pull sd {r['pull_sd']:.2f}"
    )
    for name, b in r["g_bins"].items():
        print(
            f"  G {name:<10} n={b['n']:>8,}  median {b['median_residual']:+.3f}  scatter "
            f"{b['robust_scatter']:.3f}  pull sd {b['pull_sd']:.2f}"
        )
    t = r["distance_terciles"]
    print(
        f"  distance terciles near/middle/far {t['near']:+.3f} {t['middle']:+.3f} {t['far']:+.3f}"
        f"  far-near {r['far_minus_near']:+.3f}  (>10% too far {r['too_far_10pc']:+.3f}, "
        f">10% too near {r['too_near_10pc']:+.3f})"
    )
    e = r["end_bins"]
    lo = "n/a" if e["feh<-1.5"] is None else f"{e['feh<-1.5']:+.3f}"
    hi = "n/a" if e["feh>=0.5"] is None else f"{e['feh>=0.5']:+.3f}"
    print(f"  end bins: [Fe/H] < -1.5 {lo} (n={e['n_low']:,}), >= 0.5 {hi} (n={e['n_high']:,})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--truth", type=Path, default=None)
    ap.add_argument("--columns", nargs="*", default=["feh"])
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    truth = args.truth or args.run_dir / "mock" / "truth.parquet"
    df = load(args.run_dir, truth, args.columns)
    results = {}
    for col in args.columns:
        if col not in df.columns:
            print(f"{col}: not in the catalogue")
            continue
        results[col] = score_column(df.dropna(subset=[col]), col)
        show(col, results[col])
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
