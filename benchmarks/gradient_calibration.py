"""Calibration of the vertical [Fe/H] gradient over mock realisations with injected gradients.

For each realisation i: a synthetic survey of ``--rows`` stars of ``--galaxy`` with seed
``base + i`` and an injected bulge gradient drawn uniformly in [-0.6, -0.2] dex/kpc; the
models of a finished run (``--models``) are applied to it (`bigcat predict`: no training, so
twenty realisations cost twenty inference passes), then `bigcat analyze gradient`. Each
measured slope is compared with the truth recipe on the same realisation (the paper's recipe
on the true Z and [Fe/H] of the quality giants in the true cylinder; `score_bulge.py`).

Prints per realisation: injected, truth recipe, measured +- error, pull; then the slope of
measured against truth recipe (target 1 +- 0.05) and the standard deviation of the pulls
(target 0.8-1.2). Only this script reads truth.

Usage::

    python benchmarks/gradient_calibration.py --models RUN_DIR --work DIR [--n 20]
        [--rows 500000] [--galaxy default] [--seed 1000]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))


def truth_recipe(run_dir: Path) -> float:
    import score_bulge as sb

    from bigcat.analysis.gradient import GradientParams

    df = sb.load(run_dir)
    p = GradientParams(n_bootstrap=20)
    rt = np.hypot(df["true_x_gc"], df["true_y_gc"])
    recipe = (df["quality_ok"] & df["is_giant"]).to_numpy(bool) & (rt < 2.5).to_numpy()
    recipe &= (df["true_z_gc"].abs() < p.max_abs_z_kpc).to_numpy()
    r = sb.fit(df["true_z_gc"].to_numpy()[recipe], df["true_feh"].to_numpy()[recipe], p)
    return float(r["slope_dex_per_kpc"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", type=Path, required=True)
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--rows", type=int, default=500_000)
    ap.add_argument("--galaxy", default="default")
    ap.add_argument("--seed", type=int, default=1000)
    args = ap.parse_args()

    import bigcat
    from bigcat.cluster import dask_client
    from bigcat.config import Config
    from bigcat.stages.analyze import run_gradient

    rng = np.random.default_rng(args.seed)
    injected = rng.uniform(-0.6, -0.2, args.n)
    config = Config().replace("process", analyses=False, report=False)
    rows = []
    with dask_client(config.cluster) as client:
        for i, g in enumerate(injected):
            t0 = time.perf_counter()
            out = args.work / f"r{i:02d}"
            mock_cfg = {"mock": {"seed": args.seed + i, "feh_gradient": float(g)}}
            bigcat.mock(args.rows, out / "mock", galaxy=args.galaxy, config=mock_cfg, client=client)
            run = bigcat.predict(
                models=args.models,
                input=out / "mock" / "photometry.parquet",
                out=out / "run",
                config=config,
                client=client,
            )
            (run.path / "mock").symlink_to((out / "mock").resolve(), target_is_directory=True)
            res = run_gradient(client, run.path, config)
            truth = truth_recipe(run.path)
            slope, err = res["slope_dex_per_kpc"], res["slope_error"]
            rows.append(
                {
                    "injected": float(g),
                    "truth_recipe": truth,
                    "slope": slope,
                    "error": err,
                    "error_statistical": res.get("slope_error_statistical"),
                    "pull": (slope - truth) / err,
                }
            )
            print(
                f"{i:2d} injected {g:+.3f} truth recipe {truth:+.3f} measured {slope:+.3f} +- "
                f"{err:.3f} pull {(slope - truth) / err:+.2f} ({time.perf_counter() - t0:.0f} s)",
                flush=True,
            )
    t = np.array([r["truth_recipe"] for r in rows])
    m = np.array([r["slope"] for r in rows])
    z = np.array([r["pull"] for r in rows])
    coef = np.polyfit(t, m, 1)
    resp = np.polyfit(np.array([r["injected"] for r in rows]), m, 1)[0]
    print(
        f"\nmeasured vs truth recipe: slope {coef[0]:.3f} (target 1 +- 0.05), intercept "
        f"{coef[1]:+.3f}; measured vs injected: slope {resp:.3f}; pulls: mean {z.mean():+.2f}, "
        f"sd {z.std(ddof=1):.2f} (target 0.8-1.2), n = {len(z)}"
    )
    (args.work / "gradient_calibration.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
