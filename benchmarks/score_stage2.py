"""Score stage 2 ([Fe/H]) against the truth, and the two experiments issue 4 asks for.

Scoring (always): on quality giants NOT in the training (TG) sample, feh - true_feh bias
(median) and robust scatter (1.4826 MAD) overall and per true-[Fe/H] bin
(-2.5..-1.5..-0.5..0.5..1.0), and the calibration: std of (feh - true_feh) / feh_error and
the 68% coverage, for -1.5 < [Fe/H] < 0.5 and per bin.

``--experiments`` retrains the [Fe/H] network on the run's saved TG sample
(models/stage2/tg_sample.parquet, same split, same settings) and scores the held-out giants:

* label-count dependence: the training labels subsampled to N (500, 2000, 5000, ..., all);
* the weighting term: C = 0.5 (eq. 11) against C = 1e6 (in effect unweighted), the bias of
  feh - true_feh for true [Fe/H] < -1 (regression to the mean pulls it positive).

Each retrained model gets the pipeline's sigma treatment (eq. 11's weight divided out, one
scale factor measured on its validation stars).

Only this script reads truth. Usage:

    python benchmarks/score_stage2.py RUN_DIR [--truth MOCK/truth.parquet] [--experiments]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.dataset as ds

from bigcat.analysis.stats import robust_scatter
from bigcat.config import Config, load_config
from bigcat.stages.metallicity import (
    FEATURES,
    predict_feh,
    sigma_scale_from_validation,
    train_config,
    train_feh_model,
)

BINS = [-2.5, -1.5, -0.5, 0.5, 1.0]
COLS = ["source_id", "is_giant", "quality_ok", "feh", "feh_error", "feh_extrapolated"]


def load(run_dir: Path, truth: Path, features: bool = False) -> pd.DataFrame:
    cols = COLS + (list(FEATURES) if features else [])
    out = (
        ds.dataset(run_dir / "catalog" / "dataset", format="parquet", exclude_invalid_files=True)
        .to_table(columns=cols)
        .to_pandas()
    )
    out = out[out.is_giant & out.quality_ok & np.isfinite(out.feh)]
    tr = ds.dataset(truth, format="parquet").to_table(columns=["source_id", "true_feh"]).to_pandas()
    df = out.merge(tr, on="source_id", validate="one_to_one")
    tg = pd.read_parquet(run_dir / "models" / "stage2" / "tg_sample.parquet", columns=["source_id"])
    return df[~df["source_id"].isin(tg["source_id"])].reset_index(drop=True)


def score(feh: np.ndarray, err: np.ndarray, true: np.ndarray) -> list[dict]:
    """Rows of the score table: overall, per bin, and the calibration core."""
    res = feh - true
    rows = []
    sel = [("all", np.ones(len(true), bool))]
    sel += [
        (f"{lo:+.1f}..{hi:+.1f}", (true >= lo) & (true < hi))
        for lo, hi in zip(BINS[:-1], BINS[1:], strict=True)
    ]
    sel += [("-1.5<[Fe/H]<0.5", (true > -1.5) & (true < 0.5)), ("[Fe/H]<-1", true < -1.0)]
    for name, m in sel:
        z = res[m] / err[m]
        rows.append(
            {
                "sample": name,
                "n": int(m.sum()),
                "bias": float(np.median(res[m])) if m.any() else np.nan,
                "robust_scatter": robust_scatter(res[m]),
                "mean_sigma": float(np.mean(err[m])) if m.any() else np.nan,
                "pull_std": float(np.std(z)) if m.sum() > 4 else np.nan,
                "coverage68": float(np.mean(np.abs(z) < 1)) if m.any() else np.nan,
            }
        )
    return rows


def print_table(title: str, rows: list[dict]) -> None:
    print(f"\n{title}")
    print(
        f"{'sample':<18}{'N':>9}{'bias':>9}{'scatter':>9}{'<sigma>':>9}{'pull sd':>9}{'cov68':>8}"
    )
    for r in rows:
        print(
            f"{r['sample']:<18}{r['n']:>9,}{r['bias']:>9.3f}{r['robust_scatter']:>9.3f}"
            f"{r['mean_sigma']:>9.3f}{r['pull_std']:>9.2f}{r['coverage68']:>8.2f}"
        )


def retrain_and_score(
    table: pd.DataFrame, held: pd.DataFrame, config: Config, c_weight: float, n_passes: int
) -> tuple[list[dict], float]:
    t0 = time.perf_counter()
    seed = config.process.seed
    model = train_feh_model(table, train_config(config.stage2, seed), c_weight)
    val = table[table["split"] == "validation"]
    vp, ve, _, _ = predict_feh(
        model, val[list(FEATURES)].to_numpy(np.float64), n_passes, seed, c_weight
    )
    scale = sigma_scale_from_validation(vp - val["feh"].to_numpy(), ve, val["feh_err"].to_numpy())
    X = held[list(FEATURES)].to_numpy(np.float64)
    feh, err, _, _ = predict_feh(model, X, n_passes, seed, c_weight, scale)
    return score(feh, err, held["true_feh"].to_numpy()), time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--truth", type=Path, default=None)
    ap.add_argument("--config", default=None, help="bigcat.toml the run used (default settings)")
    ap.add_argument("--experiments", action="store_true")
    ap.add_argument("--sizes", default="500,2000,5000,20000")
    args = ap.parse_args()
    truth = args.truth or args.run_dir / "mock" / "truth.parquet"
    config = load_config(args.config)
    df = load(args.run_dir, truth, features=args.experiments)
    print(f"{args.run_dir}: {len(df):,} quality giants with [Fe/H] outside the TG sample")
    print(f"flagged feh_extrapolated: {int(df['feh_extrapolated'].sum()):,}")
    print_table(
        "pipeline [Fe/H] vs truth (held-out giants)",
        score(df["feh"].to_numpy(), df["feh_error"].to_numpy(), df["true_feh"].to_numpy()),
    )
    if not args.experiments:
        return
    table = pd.read_parquet(args.run_dir / "models" / "stage2" / "tg_sample.parquet")
    train = table[table["split"] == "train"]
    val = table[table["split"] == "validation"]
    held = df.sample(n=min(len(df), 50_000), random_state=0)
    n_passes = config.stage2.mc_passes
    print(f"\nTG sample: {len(train):,} train + {len(val):,} validation labels")
    for n in [int(s) for s in args.sizes.split(",")] + [len(train)]:
        if n > len(train):
            continue
        sub = train.sample(n=n, random_state=1) if n < len(train) else train
        frac_val = max(int(round(n * 0.15 / 0.85)), 20)
        v = val.sample(n=min(frac_val, len(val)), random_state=1)
        rows, dt = retrain_and_score(
            pd.concat([sub, v]), held, config, config.stage2.c_weight, n_passes
        )
        print_table(f"labels: {n:,} train (+{len(v):,} validation), C = 0.5: {dt:.0f} s", rows)
    for c in (config.stage2.c_weight, 1e6):
        rows, dt = retrain_and_score(table, held, config, c, n_passes)
        print_table(f"weighting: C = {c:g} ({dt:.0f} s)", rows)


if __name__ == "__main__":
    main()
