"""Per-partition stages at 1M and 10M rows, and 1 worker against 2 on 1M rows.

For each size this runs `bigcat process` on a synthetic survey (mock and ingest first) with
the networks' training cut short (``--quick``: the trainings are not what is measured here;
paper_scale.py times them), and reads from run.json the three per-partition stages:
``photometry`` (quality, zero-point, RJCE, giant cut, features), ``stage1`` (MC-dropout
parallaxes, distances) and ``stage2`` ([Fe/H] inference and kinematics). It prints per stage
the per-row cost (CPU-core microseconds per row = wall x cores / rows) and the peak RSS of each
worker during the stage, the 10M/1M ratios (target: within 10%), and the speed-up of 2
workers over 1 on the same 1M catalogue (target: at least 1.7x).

Usage: python benchmarks/scaling.py [--rows 1000000 10000000] [--work DIR] [--no-workers-test]
       python benchmarks/scaling.py --workers-only RUN/input [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from _rss import peak_in, rss_samples, start_rss_sampler

STAGES = ("photometry", "stage1", "stage2")


def run(rows: int, run_dir: Path, workers: int, inputs: list[str] | None, quick: bool) -> dict:
    from bigcat.cluster import dask_client
    from bigcat.config import Config

    config = Config().replace("process", default_mock_rows=rows, analyses=False, report=False)
    config = config.replace("cluster", n_workers=workers, dashboard_address=":0")
    if quick:
        config = config.replace("stage1", max_epochs=3, training_cap=50_000)
        config = config.replace("stage2", max_epochs=10)
    from bigcat.pipeline import process_with_client

    with dask_client(config.cluster) as client:
        client.run(start_rss_sampler)
        process_with_client(config, client, inputs, run_dir)
        samples = client.run(rss_samples)
    log = json.loads((run_dir / "run.json").read_text())
    out = {"rows": rows, "workers": len(samples), "stages": {}}
    for st in log["stages"]:
        if st["stage"] in STAGES:
            start = st["started_at"]
            out["stages"][st["stage"]] = {
                "seconds": st["seconds"],
                "peak_mib": peak_in(samples, start, start + st["seconds"]),
            }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 10_000_000])
    ap.add_argument("--work", type=Path, default=None)
    ap.add_argument("--full-training", action="store_true", help="train as `process` does")
    ap.add_argument("--no-workers-test", action="store_true", help="skip 1 vs 2 workers")
    ap.add_argument(
        "--workers-only",
        type=Path,
        default=None,
        metavar="CATALOG",
        help="only the 1 vs 2 workers test, on this ingested catalogue (e.g. RUN/input of an "
        "earlier run of this script)",
    )
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="bigcat-scaling-"))
    quick = not args.full_training
    sizes = [] if args.workers_only else args.rows
    results = [run(n, work / f"run-{n}", 0, None, quick) for n in sizes]
    print(f"{'rows':>12}{'stage':>12}{'wall s':>9}{'core-us/row':>13}  peak worker RSS (MiB)")
    for r in results:
        for name, st in r["stages"].items():
            st["us_per_row"] = st["seconds"] * r["workers"] / r["rows"] * 1e6
            print(
                f"{r['rows']:>12,}{name:>12}{st['seconds']:>9.1f}{st['us_per_row']:>13.1f}  "
                + ", ".join(f"{p:,.0f}" for p in st["peak_mib"])
            )
    if len(results) > 1:
        a, b = results[0], results[-1]
        print(f"\nratios {b['rows']:,} / {a['rows']:,} rows (target within 10%):")
        for name in STAGES:
            sa, sb = a["stages"][name], b["stages"][name]
            print(
                f"  {name:<11} per-row cost {sb['us_per_row'] / sa['us_per_row']:.2f}   "
                f"peak worker RSS {max(sb['peak_mib']) / max(sa['peak_mib']):.2f}"
            )
    if args.workers_only or not args.no_workers_test:
        from bigcat.catalog.store import Catalog

        catalog = str(args.workers_only or work / f"run-{args.rows[0]}" / "input")
        n = Catalog.open(Path(catalog)).n_rows()
        one = run(n, work / f"run-{n}-1w", 1, [catalog], quick)
        two = run(n, work / f"run-{n}-2w", 2, [catalog], quick)
        print(f"\n1 vs 2 workers on the same {n:,}-row catalogue (target at least 1.7x):")
        for name in STAGES:
            s1, s2 = one["stages"][name]["seconds"], two["stages"][name]["seconds"]
            print(f"  {name:<11} 1 worker {s1:7.1f} s   2 workers {s2:7.1f} s   {s1 / s2:.2f}x")
        t1 = sum(one["stages"][s]["seconds"] for s in STAGES)
        t2 = sum(two["stages"][s]["seconds"] for s in STAGES)
        print(f"  {'all three':<11} 1 worker {t1:7.1f} s   2 workers {t2:7.1f} s   {t1 / t2:.2f}x")


if __name__ == "__main__":
    main()
