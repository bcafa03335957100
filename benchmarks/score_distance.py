"""Score distances against the truth of a synthetic run, per observable and per truth bin.

For the quality giants of a run (its distance catalogue, RUN_DIR/stages/distance, or the final
RUN_DIR/catalog), against the mock's truth (RUN_DIR/mock/truth.parquet, or --truth):

* coverage of the 16-84% interval (target 0.64-0.72 among giants),
* pull standard deviation: (true - median) over the half-interval on the truth's side, robust
  (1.4826 MAD) and plain (clipped at |pull| < 10),
* median fractional bias (median - true) / true,

overall, per apparent-magnitude bin (G < 15, 15-16, 16-17, > 17), per Galactic region (bulge
box |l| < 10, |b| < 10 deg; disc |b| < 10 deg elsewhere; high latitude |b| > 30 deg) and per
true-distance bin. Also the combined parallax's calibration against the true parallax (pull sd).

``--priors network deconvolved model table`` recomputes the distances of the same stage-1 catalogue with
each prior in this process (the learnt prior refitted here; ``table`` needs --prior-table), so
priors are compared on identical parallaxes. Only this script reads truth.

Usage::

    python benchmarks/score_distance.py RUN_DIR [--priors network deconvolved model table]
        [--prior-table prior_summary.csv] [--truth MOCK/truth.parquet] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.dataset as ds

from bigcat.astrometry.frames import galactic_lb
from bigcat.astrometry.prior import load_prior_table
from bigcat.catalog.healpix import HEALPIX29
from bigcat.catalog.store import Catalog
from bigcat.config import Config
from bigcat.stages.distance import (
    distance_quantiles,
    fit_prior_task,
    prior_sample_partitions,
    prior_settings,
)

COLUMNS = [
    "source_id",
    HEALPIX29,
    "ra",
    "dec",
    "phot_g_mean_mag",
    "quality_ok",
    "is_giant",
    "parallax_combined",
    "parallax_combined_error",
    "parallax_error",
    "j_m",
    "h_m",
    "a_j",
    "a_h",
]
DIST = ["distance_pc", "distance_pc_p16", "distance_pc_p84"]
MAG_BINS = [(-np.inf, 15.0), (15.0, 16.0), (16.0, 17.0), (17.0, np.inf)]
TRUE_BINS_KPC = [0, 2, 4, 6, 8, 10, 12, 15, 100]


def load(run_dir: Path, truth_path: Path) -> tuple[pd.DataFrame, Path]:
    """Quality giants with their distances and truth."""
    root = run_dir / "stages" / "distance"
    if not root.exists():
        root = run_dir / "catalog"
    cat = Catalog.open(root)
    cols = [c for c in COLUMNS + DIST if c in cat.columns()]
    df = (
        ds.dataset(root / "dataset", format="parquet", exclude_invalid_files=True)
        .to_table(columns=cols)
        .to_pandas()
    )
    df = df[df["quality_ok"] & df["is_giant"] & np.isfinite(df["parallax_combined"])]
    truth = (
        ds.dataset(truth_path, format="parquet")
        .to_table(columns=["source_id", "true_distance_pc", "true_parallax", "true_stage"])
        .to_pandas()
    )
    return df.merge(truth, on="source_id", how="left", validate="one_to_one"), root


def pulls(true: np.ndarray, q: np.ndarray) -> np.ndarray:
    """(true - median) / half-interval on the truth's side."""
    med, p16, p84 = q.T
    side = np.where(true < med, med - p16, p84 - med)
    return (true - med) / np.where(side > 0, side, np.nan)


def score_rows(true: np.ndarray, q: np.ndarray) -> dict:
    med, p16, p84 = q.T
    ok = np.isfinite(med) & np.isfinite(true)
    true, q, med, p16, p84 = true[ok], q[ok], med[ok], p16[ok], p84[ok]
    if true.size == 0:
        return {"n": 0}
    z = pulls(true, q)
    zc = z[np.abs(z) < 10]
    return {
        "n": int(true.size),
        "coverage68": float(np.mean((true > p16) & (true < p84))),
        "pull_sd": float(np.std(zc)) if zc.size > 2 else float("nan"),
        "pull_sd_robust": float(1.4826 * np.median(np.abs(z - np.median(z)))),
        "median_frac_bias": float(np.median((med - true) / true)),
        "median_rel_sigma": float(np.median((p84 - p16) / 2 / med)),
    }


def breakdown(df: pd.DataFrame, q: np.ndarray) -> dict:
    """Scores overall, per magnitude bin, per region and per true-distance bin."""
    true = df["true_distance_pc"].to_numpy(np.float64)
    g = df["phot_g_mean_mag"].to_numpy(np.float64)
    l_deg, b_deg = galactic_lb(df["ra"].to_numpy(), df["dec"].to_numpy())
    out = {"all": score_rows(true, q)}
    for lo, hi in MAG_BINS:
        m = (g >= lo) & (g < hi)
        out[f"G {lo:g}-{hi:g}"] = score_rows(true[m], q[m])
    regions = {
        "bulge box": (np.abs(l_deg) < 10) & (np.abs(b_deg) < 10),
        "disc": (np.abs(b_deg) < 10) & ~(np.abs(l_deg) < 10),
        "high latitude": np.abs(b_deg) > 30,
    }
    for name, m in regions.items():
        out[name] = score_rows(true[m], q[m])
    t_kpc = true / 1e3
    for lo, hi in zip(TRUE_BINS_KPC[:-1], TRUE_BINS_KPC[1:], strict=True):
        m = (t_kpc >= lo) & (t_kpc < hi)
        out[f"true {lo}-{hi} kpc"] = score_rows(true[m], q[m])
    stage = df["true_stage"].to_numpy()
    for s in ("rgb", "red_clump"):
        m = stage == s
        out[f"true {s}"] = score_rows(true[m], q[m])
    return out


def parallax_calibration(df: pd.DataFrame) -> dict:
    z = (df["parallax_combined"] - df["true_parallax"]) / df["parallax_combined_error"]
    z = z.to_numpy(np.float64)
    z = z[np.isfinite(z)]
    return {
        "pull_sd": float(np.std(z[np.abs(z) < 10])),
        "coverage68": float(np.mean(np.abs(z) < 1)),
    }


def recompute(
    df: pd.DataFrame, root: Path, kind: str, prior_table: str | None, overrides: dict
) -> np.ndarray:
    """Distances of ``df`` with prior ``kind``, in this process (``overrides``: [stage1]
    settings of the learnt prior, e.g. prior_mag_edges)."""
    config = Config().replace("stage1", **overrides)
    if kind == "network":
        from bigcat.stages.distance import NetworkPrior

        return distance_quantiles(df, NetworkPrior(), config.photometry)
    if kind == "table":
        if not prior_table:
            raise SystemExit("--priors table needs --prior-table prior_summary.csv")
        prior = load_prior_table(prior_table)
    elif kind == "model":
        from bigcat.astrometry.model_prior import model_prior_table

        prior = model_prior_table()
    else:
        stage1 = root.parent / "stage1" if root.name == "distance" else root
        cat = Catalog.open(stage1)
        settings = prior_settings(config)
        sample = prior_sample_partitions(
            [str(cat.partition_path(o, p)) for o, p in cat.pixels], settings, config.photometry
        )
        prior = fit_prior_task(sample, settings)
    return distance_quantiles(df, prior, config.photometry)


def print_table(name: str, result: dict) -> None:
    print(f"\n{name}")
    print(f"  {'sample':<22}{'n':>9}{'cov68':>8}{'pull sd':>9}{'robust':>8}{'bias':>9}{'sig/d':>8}")
    for key, r in result.items():
        if r.get("n", 0) == 0:
            print(f"  {key:<22}{0:>9}")
            continue
        print(
            f"  {key:<22}{r['n']:>9,}{r['coverage68']:>8.3f}{r['pull_sd']:>9.3f}"
            f"{r['pull_sd_robust']:>8.3f}{r['median_frac_bias']:>+9.3f}{r['median_rel_sigma']:>8.3f}"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--truth", type=Path, default=None)
    ap.add_argument("--priors", nargs="*", default=[])
    ap.add_argument("--prior-table", default=None)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="[stage1] setting for the recomputed learnt prior (repeatable), e.g. "
        "prior_mag_edges=99 or prior_pool_strength=50",
    )
    args = ap.parse_args()
    overrides: dict = {}
    for item in args.set:
        key, value = item.split("=", 1)
        parsed = [float(x) for x in value.split(",")]
        overrides[key] = tuple(parsed) if key == "prior_mag_edges" else parsed[0]
        if key.endswith(("iterations", "iterations_finest", "cap_per_cell")):
            overrides[key] = int(parsed[0])
    truth = args.truth or args.run_dir / "mock" / "truth.parquet"
    df, root = load(args.run_dir, truth)
    results: dict = {"run_dir": str(args.run_dir), "parallax": parallax_calibration(df)}
    print(
        f"{args.run_dir}: {len(df):,} quality giants; combined parallax pull sd "
        f"{results['parallax']['pull_sd']:.3f}, 68% coverage {results['parallax']['coverage68']:.3f}"
    )
    if "distance_pc" in df.columns:
        q = df[DIST].to_numpy(np.float64)
        results["run"] = breakdown(df, q)
        print_table(f"as run ({Catalog.open(root).properties.get('prior', '?')})", results["run"])
    for kind in args.priors:
        t0 = time.perf_counter()
        q = recompute(df, root, kind, args.prior_table, overrides)
        results[kind] = breakdown(df, q)
        print_table(f"prior {kind} (recomputed, {time.perf_counter() - t0:.1f} s)", results[kind])
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
