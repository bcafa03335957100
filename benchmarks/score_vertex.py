"""Score the vertex of a synthetic run against the truth, swapping measured quantities for true
ones one at a time, to say where a bias of the metal-rich vertex comes from.

Ladder (the metal-rich sample, [Fe/H] >= -0.4, both variants unless --variant):

T. truth recipe: quality giants with a radial velocity in the true box (|l| <= 5, |b| <= 10 deg,
   6 < true d < 10 kpc), true [Fe/H] >= -0.4, true velocities, negligible errors;
A. bigcat's selection (vertex_samples), true [Fe/H] membership, bigcat's velocities and errors;
B. bigcat's selection, bigcat's [Fe/H] membership, true velocities, negligible errors;
C. bigcat: bigcat's selection, [Fe/H] and velocities (what `bigcat analyze vertex` fits).

Each line prints the vertex (median, 16-84 half-width), N, and the difference from T in units
of the quadrature sum of the two errors. The same fit code as `bigcat analyze vertex`
(bigcat.analysis.vertex.fit_vertex). Only this script reads truth.

Usage: python benchmarks/score_vertex.py RUN_DIR [--variant fitted|zeroed|both]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.dataset as ds

from bigcat.analysis.vertex import (
    SELECTION_COLUMNS,
    VertexParams,
    fit_vertex,
    velocity_arrays,
    vertex_samples,
)
from bigcat.astrometry.frames import galactic_lb
from bigcat.catalog.store import Catalog
from bigcat.stages.analyze import select_partitions

TRUTH = ["source_id", "true_feh", "true_vx", "true_vy", "true_vz", "true_distance_pc"]
EXTRA = ["quality_ok", "is_giant"]


def load(run_dir: Path) -> pd.DataFrame:
    cat = Catalog.open(run_dir / "catalog")
    cols = list(dict.fromkeys(["source_id", *SELECTION_COLUMNS, *EXTRA]))
    parts = [cat.read_partition(o, p, columns=cols) for o, p in select_partitions(cat, "vertex")]
    df = pd.concat(parts, ignore_index=True)
    truth = (
        ds.dataset(run_dir / "mock" / "truth.parquet", format="parquet")
        .to_table(columns=TRUTH)
        .to_pandas()
    )
    return df.merge(truth, on="source_id", how="left")


def negligible_errors(n: int) -> np.ndarray:
    """(n, 3, 3) error covariances of 1 km/s per axis: the truth has no errors."""
    return np.broadcast_to(np.eye(3), (n, 3, 3)).copy()


def true_velocities(rows: pd.DataFrame) -> np.ndarray:
    return rows[["true_vx", "true_vy", "true_vz"]].to_numpy(float)


def run(name: str, v: np.ndarray, cov: np.ndarray, variant: str, params: VertexParams) -> dict:
    t0 = time.perf_counter()
    r = fit_vertex(v, cov, variant, params, seed=7)
    r["seconds"] = time.perf_counter() - t0
    r["name"] = name
    return r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--variant", choices=["fitted", "zeroed", "both"], default="both")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    params = VertexParams()
    df = load(args.run_dir)
    truth = json.loads((args.run_dir / "mock" / "truth.json").read_text())
    injected = truth.get("vertex", truth.get("bulge", {}))
    print(f"{args.run_dir}: injected {json.dumps(injected)[:200]}")

    # T: the truth recipe
    l_deg, b_deg = galactic_lb(df["ra"].to_numpy(float), df["dec"].to_numpy(float))
    d_true = df["true_distance_pc"].to_numpy(float) / 1e3
    base = (df["quality_ok"] & df["is_giant"]).to_numpy(bool).copy()
    base &= np.isfinite(df["radial_velocity"].to_numpy(float))
    base &= (np.abs(l_deg) <= params.max_abs_l_deg) & (np.abs(b_deg) <= params.max_abs_b_deg)
    base &= (d_true > params.min_distance_kpc) & (d_true < params.max_distance_kpc)
    t_rows = df[base & (df["true_feh"] >= params.metal_rich_min).to_numpy()]

    sel = vertex_samples(df, params)
    sel = sel.merge(df[["source_id", *TRUTH[1:]]], on="source_id", how="left")
    rich_true = sel[sel["true_feh"] >= params.metal_rich_min]
    rich = sel[sel["feh"] >= params.metal_rich_min]
    print(
        f"box with a radial velocity and quality giant: {int(base.sum()):,} (true distance); "
        f"bigcat selection {len(sel):,}; metal-rich: truth recipe {len(t_rows):,}, "
        f"bigcat selection by true [Fe/H] {len(rich_true):,}, by bigcat [Fe/H] {len(rich):,} "
        f"({(rich['true_feh'] < params.metal_rich_min).mean():.1%} of them truly below "
        f"{params.metal_rich_min})"
    )
    variants = ["fitted", "zeroed"] if args.variant == "both" else [args.variant]
    out = []
    for variant in variants:
        ladder = [
            ("T truth recipe", true_velocities(t_rows), negligible_errors(len(t_rows))),
            ("A bigcat selection, true [Fe/H]", *velocity_arrays(rich_true)),
            (
                "B bigcat selection and [Fe/H], true v",
                true_velocities(rich),
                negligible_errors(len(rich)),
            ),
            ("C bigcat", *velocity_arrays(rich)),
        ]
        ref = None
        print(f"\nmetal-rich, {variant}:")
        print(f"  {'sample':<40}{'N':>7}{'vertex':>9}{'+/-':>7}{'vs T':>8}{'conv':>6}{'s':>6}")
        for name, v, cov in ladder:
            r = run(name, v, cov, variant, params)
            r["variant"] = variant
            out.append(r)
            if ref is None:
                ref = r
                dev = float("nan")
            else:
                dev = (r["vertex_deg"] - ref["vertex_deg"]) / np.hypot(
                    r["vertex_err_deg"], ref["vertex_err_deg"]
                )
            print(
                f"  {name:<40}{r['n_stars']:>7,}{r['vertex_deg']:>9.2f}{r['vertex_err_deg']:>7.2f}"
                f"{dev:>+8.2f}{'yes' if r.get('converged') else 'no':>6}{r['seconds']:>6.0f}"
            )
    if args.json:
        keep = ("name", "variant", "n_stars", "vertex_deg", "vertex_err_deg", "converged")
        args.json.write_text(json.dumps([{k: r.get(k) for k in keep} for r in out], indent=1))


if __name__ == "__main__":
    main()
