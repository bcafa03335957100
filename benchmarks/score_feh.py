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
  given with --columns (e.g. feh and feh_debiased);
* at fixed true [Fe/H] (0.25-dex bins): far minus near per bin and their star-weighted mean
  (what is left of far-near once the true metallicity's own correlation with the distance
  error is taken out), and the median residual per G bin (how the shrinkage towards the
  labels' mean grows with faintness);
* with --decompose: far minus near of the stage-2 mean network evaluated with its
  absolute-magnitude inputs at the median distance and at the TRUE distance (the part of
  far-near that goes through the distance inputs, against the part with a common cause);
* with --oracle N: the floor of the method on this photometry. The stage-2 network (the
  package's settings) is trained on N randomly chosen scored giants with their TRUE [Fe/H]
  as labels (representative of the population, noise-free: no covariate shift, no label
  noise), and scored on the giants left; it is trained as the pipeline trains it, so what it
  misses no choice of labelled sample can give (its pull sd uses the pipeline's feh_error).

Only this script reads truth. Usage::

    python benchmarks/score_feh.py RUN_DIR [--truth MOCK/truth.parquet] [--columns feh ...]
        [--json OUT.json] [--decompose] [--oracle N]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.dataset as ds

from bigcat.analysis.stats import robust_scatter
from bigcat.stages.metallicity import FEATURES

MAG_BINS = [(-np.inf, 15.0), (15.0, 16.0), (16.0, 17.0), (17.0, np.inf)]
#: true-[Fe/H] bins of the fixed-metallicity diagnostics
TRUE_FEH_EDGES = np.round(np.arange(-2.0, 0.76, 0.25), 2)


def load(run_dir: Path, truth: Path, columns: list[str], features: bool = False) -> pd.DataFrame:
    """Scored giants with truth; ``features``: also the stage-2 inputs (--decompose, --oracle)."""
    want = ["source_id", "quality_ok", "is_giant", "phot_g_mean_mag", "distance_pc", "feh_error"]
    if features:
        want += FEATURES
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
    out["fixed_true_feh"] = fixed_true_feh(res, true, g, terc)
    return out


def fixed_true_feh(res: np.ndarray, true: np.ndarray, g: np.ndarray, terc: dict) -> dict:
    """Far minus near and the median residual per G bin within bins of true [Fe/H]."""
    bins, weights, values = [], [], []
    for lo, hi in zip(TRUE_FEH_EDGES[:-1], TRUE_FEH_EDGES[1:], strict=True):
        m = (true >= lo) & (true < hi)
        far, near = m & terc["far"], m & terc["near"]
        if far.sum() < 50 or near.sum() < 50:
            continue
        fn = float(np.median(res[far]) - np.median(res[near]))
        by_g = {}
        for glo, ghi in MAG_BINS:
            mg = m & (g >= glo) & (g < ghi)
            by_g[f"{glo:g}-{ghi:g}"] = float(np.median(res[mg])) if mg.sum() >= 50 else None
        bins.append(
            {
                "lo": float(lo),
                "hi": float(hi),
                "n": int(m.sum()),
                "far_minus_near": fn,
                "median_by_g": by_g,
            }
        )
        weights.append(m.sum())
        values.append(fn)
    mean = float(np.average(values, weights=weights)) if values else None
    return {"bins": bins, "far_minus_near_mean": mean}


def decompose(df: pd.DataFrame, run_dir: Path) -> dict:
    """Far minus near of the stage-2 mean network at the median and at the true distance."""
    from bigcat.nn.predict import mean_network_predict
    from bigcat.stages.metallicity import load_stage2_model

    model = load_stage2_model(run_dir / "models" / "stage2")[0]
    X = df[list(FEATURES)].to_numpy(np.float64)
    ratio = df["distance_pc"].to_numpy(np.float64) / df["true_distance_pc"].to_numpy(np.float64)
    ok = np.isfinite(ratio) & np.isfinite(X).all(axis=1)
    X, ratio, true = X[ok], ratio[ok], df["true_feh"].to_numpy(np.float64)[ok]
    at_true = X.copy()
    cols = [i for i, f in enumerate(FEATURES) if f.startswith("abs_")]
    at_true[:, cols] += 5.0 * np.log10(ratio)[:, None]  # M = m - 5 log10(d / 10 pc)
    q1, q2 = np.quantile(ratio, [1 / 3, 2 / 3])
    near, far = ratio < q1, ratio >= q2
    out = {}
    for name, x in (("median_distance", X), ("true_distance", at_true)):
        res = mean_network_predict(model, x) - true
        out[name] = {
            "robust_scatter": robust_scatter(res),
            "far_minus_near": float(np.median(res[far]) - np.median(res[near])),
        }
    return out


def oracle(df: pd.DataFrame, n: int, seed: int = 3) -> tuple[pd.DataFrame, dict]:
    """The stage-2 network trained on ``n`` random rows of ``df`` with true [Fe/H] labels
    (and n / 6 more for validation), scored on the rest."""
    from bigcat.config import Config
    from bigcat.nn.fit import train_network
    from bigcat.nn.predict import mean_network_predict
    from bigcat.stages.metallicity import train_config, training_weight

    ok = np.isfinite(df[list(FEATURES)].to_numpy(np.float64)).all(axis=1)
    df = df[ok].reset_index(drop=True)
    if len(df) < 2 * n:
        raise SystemExit(f"--oracle {n}: only {len(df):,} scored giants; give at most half.")
    s = Config().stage2
    order = np.random.default_rng(seed).permutation(len(df))
    fit, val, rest = order[:n], order[n : n + n // 6], order[n + n // 6 :]
    X = df[list(FEATURES)].to_numpy(np.float64)
    y = df["true_feh"].to_numpy(np.float64)
    e = np.full(len(df), 0.05)  # a nominal label error (the labels are exact)
    w = training_weight(y, s.c_weight)
    model = train_network(
        X[fit],
        y[fit],
        e[fit],
        list(FEATURES),
        train_config(s, seed),
        weight=w[fit],
        X_val=X[val],
        y_val=y[val],
        y_err_val=e[val],
        weight_val=w[val],
    )
    scored = df.iloc[rest].reset_index(drop=True)
    scored["oracle"] = mean_network_predict(model, X[rest])
    return scored, score_column(scored, "oracle")


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
    f = r["fixed_true_feh"]
    if f["far_minus_near_mean"] is not None:
        print(
            f"  at fixed true [Fe/H]: far-near {f['far_minus_near_mean']:+.3f} (star-weighted mean "
            "over 0.25-dex bins); median residual per G bin (<15 / 15-16 / 16-17 / >17):"
        )
        for b in f["bins"]:
            gs = " / ".join(
                "  n/a " if v is None else f"{v:+.3f}" for v in b["median_by_g"].values()
            )
            print(
                f"    true [Fe/H] {b['lo']:+.2f}..{b['hi']:+.2f} n={b['n']:>7,}  "
                f"far-near {b['far_minus_near']:+.3f}  by G {gs}"
            )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--truth", type=Path, default=None)
    ap.add_argument("--columns", nargs="*", default=["feh"])
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument(
        "--oracle",
        type=int,
        default=0,
        metavar="N",
        help="train the stage-2 network on N random giants with true labels: the method's floor",
    )
    ap.add_argument(
        "--decompose",
        action="store_true",
        help="far-near of the mean network at the median and at the true distance",
    )
    args = ap.parse_args()
    truth = args.truth or args.run_dir / "mock" / "truth.parquet"
    df = load(args.run_dir, truth, args.columns, features=args.decompose or bool(args.oracle))
    results = {}
    for col in args.columns:
        if col not in df.columns:
            print(f"{col}: not in the catalogue")
            continue
        results[col] = score_column(df.dropna(subset=[col]), col)
        show(col, results[col])
    if args.decompose:
        results["decompose"] = d = decompose(df, args.run_dir)
        print("\nstage-2 mean network, absolute-magnitude inputs at the:")
        for name, r in d.items():
            print(
                f"  {name.replace('_', ' '):<16} robust scatter {r['robust_scatter']:.3f}  "
                f"far-near {r['far_minus_near']:+.3f}"
            )
    if args.oracle:
        scored, results["oracle"] = oracle(df, args.oracle)
        show(f"feh on the oracle's scored giants ({len(scored):,})", score_column(scored, "feh"))
        show(
            f"oracle: trained on {args.oracle:,} random giants with true [Fe/H]", results["oracle"]
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
