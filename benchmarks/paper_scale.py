"""A paper-size survey end to end on the embedded cluster: wall time, rows/s, worker memory.

Makes a synthetic survey of ``--rows`` stars (default 1.7M, the paper's output sample is
1,689,885 giants with radial velocities), then runs `bigcat process` on it exactly as the
command does (mock, ingest, photometry, stage-1 training and inference, labels and stage-2
training, [Fe/H] inference and kinematics, both analyses, the report) on the default embedded
LocalCluster, and prints per stage: wall time, rows/s (survey rows), and the peak RSS of the
worker processes during the stage (each worker samples its own RSS every 100 ms). The stage
records come from the run's own run.json.

Usage: python benchmarks/paper_scale.py [--rows 1700000] [--work DIR] [--workers N]
                                        [--partition-rows N]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from _rss import machine_speed, peak_in, rss_samples, start_rss_sampler


def main() -> None:
    from bigcat.cluster import dask_client
    from bigcat.config import Config
    from bigcat.pipeline import process_with_client

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=1_700_000)
    ap.add_argument("--work", type=Path, default=None)
    ap.add_argument("--workers", type=int, default=0, help="0 = one per core (the default)")
    ap.add_argument(
        "--partition-rows",
        type=int,
        default=None,
        help="default: bigcat's default layout (adaptive HATS partitions of at most "
        "[ingest] partition_rows rows); 0: one partition per nside-32 pixel; N: adaptive "
        "partitions of at most N rows (`bigcat process --partition-rows N`)",
    )
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="bigcat-paper-scale-"))
    run_dir = work / "run"
    config = Config().replace("process", default_mock_rows=args.rows)
    config = config.replace("cluster", n_workers=args.workers or None)
    if args.partition_rows is not None:
        config = config.replace("ingest", partition_rows=args.partition_rows)
    threshold = config.ingest.partition_rows
    speed_before = machine_speed()
    t0 = time.time()
    with dask_client(config.cluster) as client:
        client.run(start_rss_sampler)
        result = process_with_client(config, client, None, run_dir)
        samples = client.run(rss_samples)
    total = time.time() - t0
    speed_after = machine_speed()
    log = json.loads((run_dir / "run.json").read_text())
    workers = log["cluster"].get("n_workers")
    print(
        f"bigcat process, synthetic survey of {args.rows:,} rows, partition threshold "
        f"{threshold:,} (0 = fixed nside 32), {workers} workers "
        f"({log['cluster'].get('threads_per_worker', 1)} thread each); run dir {run_dir}"
    )
    print(f"{'stage':<18}{'seconds':>9}{'rows/s':>12}{'peak worker RSS (MiB)':>24}")
    for st in log["stages"]:
        start, end = st["started_at"], st["started_at"] + st["seconds"]
        peaks = peak_in(samples, start, end)
        rate = args.rows / st["seconds"] if st["seconds"] > 0 else float("nan")
        print(
            f"{st['stage']:<18}{st['seconds']:>9.1f}{rate:>12,.0f}"
            f"{'  '.join(f'{p:,.0f}' for p in peaks):>24}"
        )
    peak_all = peak_in(samples)
    print(
        f"{'total':<18}{total:>9.1f}{args.rows / total:>12,.0f}"
        f"{'  '.join(f'{p:,.0f}' for p in peak_all):>24}"
    )
    print(
        f"giants {result.photometry['giants']:,}; with [Fe/H] {result.final.get('with_feh', 0):,}; "
        f"with velocities {result.final.get('with_velocity', 0):,}"
        + (
            f"; target at paper size <= 150 s: {'met' if total <= 150 else 'NOT met'}"
            if args.rows >= 1_700_000
            else ""
        )
    )
    for name, rec in result.analyses.items():
        print(f"{name}: {rec}")
    print(
        f"machine speed reference (benchmarks/_rss.py machine_speed, lower is faster): "
        f"{speed_before:.2f} s before, {speed_after:.2f} s after the run"
    )


if __name__ == "__main__":
    main()
