"""Score the bulge analyses of a synthetic run against the truth, and say where a bias comes from.

The gradient is fitted (bigcat.analysis.gradient, the same code as `bigcat analyze gradient`)
on a ladder of samples that swaps bigcat's measured quantities for the truth one at a time:

1. truth only: every true giant in the true R < 2.5 kpc cylinder, true [Fe/H] against true Z;
2. bigcat's selection (the stars in gradient.json's sample), true [Fe/H] and true Z;
3. bigcat's selection, bigcat's [Fe/H], true Z;
4. bigcat's selection, true [Fe/H], bigcat's Z;
5. bigcat's selection and values (= gradient.json).

Also the vertex samples' true vertex angle (the injected one) against vertex.json's fitted
value. Only this script reads truth.

Usage: python benchmarks/score_bulge.py RUN_DIR
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.dataset as ds

from bigcat.analysis.gradient import GradientParams, analyze_gradient, selection_masks
from bigcat.catalog.healpix import HEALPIX29
from bigcat.catalog.store import Catalog
from bigcat.stages.analyze import select_partitions


def load(run_dir: Path) -> pd.DataFrame:
    cat = Catalog.open(run_dir / "catalog")
    cols = [
        "source_id",
        HEALPIX29,
        "is_giant",
        "quality_ok",
        "feh",
        "feh_error",
        "x_gc",
        "y_gc",
        "z_gc",
        "x_gc_error",
        "y_gc_error",
        "z_gc_error",
        "vx_gc_error",
        "vy_gc_error",
        "vz_gc_error",
        "vx_gc",
    ]
    parts = [cat.read_partition(o, p, columns=cols) for o, p in select_partitions(cat, "bulge")]
    df = pd.concat(parts, ignore_index=True)
    truth = (
        ds.dataset(run_dir / "mock" / "truth.parquet", format="parquet")
        .to_table(
            columns=[
                "source_id",
                "true_feh",
                "true_x_gc",
                "true_y_gc",
                "true_z_gc",
                "true_is_giant",
                "true_population",
            ]
        )
        .to_pandas()
    )
    return df.merge(truth, on="source_id", how="left")


def fit(z: np.ndarray, feh: np.ndarray, params: GradientParams) -> dict:
    rows = pd.DataFrame(
        {
            "z_gc": z,
            "feh": feh,
            "feh_error": np.zeros(len(z)),
            "has_velocity": np.zeros(len(z), bool),
        }
    )
    g = analyze_gradient(rows, params, seed=1)
    return {k: g[k] for k in ("slope_dex_per_kpc", "slope_error", "n_stars")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run_dir", type=Path)
    args = ap.parse_args()
    params = GradientParams(n_bootstrap=100)
    df = load(args.run_dir)
    truth = json.loads((args.run_dir / "mock" / "truth.json").read_text())
    injected = truth.get("gradient", {}).get("feh_gradient_dex_per_kpc")
    print(f"{args.run_dir}: injected bulge gradient {injected} dex/kpc")
    rt = np.hypot(df["true_x_gc"], df["true_y_gc"])
    true_cyl = df["true_is_giant"].fillna(False).to_numpy(bool) & (rt < 2.5).to_numpy()
    true_cyl &= (df["true_z_gc"].abs() < params.max_abs_z_kpc).to_numpy()
    sel = selection_masks(df, params)["velocity_sigma"]
    # the truth recipe: the paper's recipe on the true positions and [Fe/H] of the quality
    # giants the method analyses (no error cuts: those act on measured quantities)
    recipe = (df["quality_ok"] & df["is_giant"]).to_numpy(bool) & (rt < 2.5).to_numpy()
    recipe &= (df["true_z_gc"].abs() < params.max_abs_z_kpc).to_numpy()
    truth_fit = fit(df["true_z_gc"].to_numpy()[recipe], df["true_feh"].to_numpy()[recipe], params)
    gpath = args.run_dir / "analysis" / "gradient.json"
    if gpath.exists():
        g = json.loads(gpath.read_text())
        diff = g["slope_dex_per_kpc"] - truth_fit["slope_dex_per_kpc"]
        err = np.hypot(g["slope_error"], truth_fit["slope_error"])
        print(
            f"gradient.json {g['slope_dex_per_kpc']:+.4f} +/- {g['slope_error']:.4f}; truth recipe "
            f"{truth_fit['slope_dex_per_kpc']:+.4f} +/- {truth_fit['slope_error']:.4f} "
            f"({truth_fit['n_stars']:,} stars): difference {diff:+.4f} = {diff / err:+.2f} sigma"
        )
    ladder = [
        ("0 truth recipe: quality giants, true cylinder", recipe, "true_z_gc", "true_feh"),
        ("1 truth: true giants in the true cylinder", true_cyl, "true_z_gc", "true_feh"),
        (
            "1b same, bulge population only",
            true_cyl & (df["true_population"] == "bulge").to_numpy(),
            "true_z_gc",
            "true_feh",
        ),
        ("2 bigcat selection, true [Fe/H], true Z", sel, "true_z_gc", "true_feh"),
        ("3 bigcat selection, bigcat [Fe/H], true Z", sel, "true_z_gc", "feh"),
        ("4 bigcat selection, true [Fe/H], bigcat Z", sel, "z_gc", "true_feh"),
        ("5 bigcat (gradient.json)", sel, "z_gc", "feh"),
    ]
    print(f"{'sample':<46}{'N':>9}{'slope':>9}{'+/-':>8}")
    for name, m, zc, fc in ladder:
        r = fit(df[zc].to_numpy()[m], df[fc].to_numpy()[m], params)
        print(f"{name:<46}{r['n_stars']:>9,}{r['slope_dex_per_kpc']:>9.3f}{r['slope_error']:>8.3f}")
    vpath = args.run_dir / "analysis" / "vertex.json"
    if vpath.exists():
        v = json.loads(vpath.read_text())
        print("\nvertex (median, 16-84 half-width), injected:", v.get("truth"))
        for name in ("metal_poor", "metal_rich"):
            for variant in ("fitted", "zeroed"):
                s = v["samples"].get(name, {}).get(variant, {})
                print(
                    f"  {name:<11}{variant:<8}{s.get('vertex_deg', float('nan')):>8.2f} +/- "
                    f"{s.get('vertex_err_deg', float('nan')):.2f} deg  N={s.get('n_stars')}"
                )


if __name__ == "__main__":
    main()
