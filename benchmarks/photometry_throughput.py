"""Walking-skeleton throughput, measured in one run per size.

For each size (default 1M and 10M rows) this makes a synthetic survey with `bigcat mock`
(rows/s), ingests it (rows/s), then on the same catalogue measures:

  (a) plain ``pyarrow.parquet.read_table`` of every partition, one process;
  (b0) one process with pandas, partition by partition: read, ``run_photometry``, write;
  (b) the same work as (c) in one process without Dask: the same per-group code path
      (read partitions, photometry kernel, write each partition), run serially;
  (c) `bigcat process`'s photometry stage on the embedded LocalCluster (all cores);

and prints rows/s, the ratios (c)/(a) and (c)/(b), and the peak RSS of each worker process
during (c), sampled every 20 ms (a fresh cluster per size).

Usage: python benchmarks/photometry_throughput.py [--rows 1000000 10000000] [--work DIR]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq
from _rss import peak_in, rss_samples, start_rss_sampler


def measure(rows: int, work: Path, workers: int, scaling: bool) -> dict:
    from bigcat.catalog.store import Catalog, partition_path, write_frame_atomic
    from bigcat.cluster import dask_client
    from bigcat.config import ClusterConfig, Config
    from bigcat.photometry import run_photometry
    from bigcat.stages.ingest import ingest
    from bigcat.stages.mock import make_mock
    from bigcat.stages.partitions import group_partitions, process_partition_group
    from bigcat.stages.photometry import (
        photometry_kernel,
        run_photometry_stage,
        stage_fingerprint,
        summarise_photometry,
    )

    config = Config(cluster=ClusterConfig(n_workers=workers, dashboard_address=":0"))
    out: dict = {"rows": rows}
    mock_dir, cat_dir = work / f"mock-{rows}", work / f"cat-{rows}"
    if (cat_dir / "partition_info.csv").exists():  # --work reused: time only (a)-(c)
        catalog = Catalog.open(cat_dir)
        out["mock_s"] = out["ingest_s"] = float("nan")
    else:
        with dask_client(config.cluster) as client:
            t = time.perf_counter()
            make_mock(client, config.mock, rows, mock_dir)
            out["mock_s"] = time.perf_counter() - t
            t = time.perf_counter()
            catalog = ingest([mock_dir / "photometry.parquet"], cat_dir, config, client)
            out["ingest_s"] = time.perf_counter() - t
    out["partitions"] = len(catalog.pixels)

    # (a) plain read of every partition
    t = time.perf_counter()
    n = 0
    for o, p in catalog.pixels:
        n += pq.read_table(catalog.partition_path(o, p)).num_rows
    out["a_s"] = time.perf_counter() - t
    assert n == rows, (n, rows)

    # (b0) one process, pandas, partition by partition: read, run_photometry, write
    scratch = work / f"serial0-{rows}"
    t = time.perf_counter()
    for o, p in catalog.pixels:
        df = pq.read_table(catalog.partition_path(o, p)).to_pandas()
        write_frame_atomic(run_photometry(df, config.photometry), partition_path(scratch, o, p))
    out["b0_s"] = time.perf_counter() - t
    shutil.rmtree(scratch)

    # (b) one process, no Dask: the same per-group code path as (c), run serially
    scratch = work / f"serial-{rows}"
    fingerprint = stage_fingerprint(catalog, config)
    t = time.perf_counter()
    for group in group_partitions(catalog, config.process.target_task_rows):
        process_partition_group(
            group,
            str(catalog.root),
            str(scratch),
            photometry_kernel,
            config.photometry,
            summarise_photometry,
            fingerprint,
        )
    out["b_s"] = time.perf_counter() - t
    shutil.rmtree(scratch)

    # (c) the photometry stage on a fresh local cluster; with --scaling also on one worker
    for label, n in [("c", workers)] + ([("c1", 1)] if scaling else []):
        cfg = Config(cluster=ClusterConfig(n_workers=n, dashboard_address=":0"))
        with dask_client(cfg.cluster) as client:
            client.run(start_rss_sampler)
            t = time.perf_counter()
            _, totals = run_photometry_stage(
                client, catalog, work / f"processed-{label}-{rows}", cfg
            )
            out[f"{label}_s"] = time.perf_counter() - t
            peaks = sorted(peak_in(client.run(rss_samples)))
        if label == "c":
            out["worker_peak_mib"] = peaks
            out["n_workers"] = len(peaks)
    assert totals["rows"] == rows
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument(
        "--work", type=Path, default=None, help="scratch directory (default: a temp dir)"
    )
    parser.add_argument("--workers", type=int, default=0, help="local workers (0 = one per core)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    parser.add_argument("--scaling", action="store_true", help="also run (c) on 1 worker")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="bigcat-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    results = [measure(r, work, args.workers, args.scaling) for r in args.rows]
    print(
        f"{'rows':>11} {'parts':>6} {'mock r/s':>9} {'ingest r/s':>10} {'(a) read':>9} "
        f"{'(b0) pandas':>11} {'(b) serial':>10} {'(c) bigcat':>10} {'c/a':>5} {'c/b0':>5} "
        f"{'c/b':>5}  peak worker RSS (MiB)"
    )
    for r in results:
        n = r["rows"]
        print(
            f"{n:>11,} {r['partitions']:>6} {n / r['mock_s']:>9,.0f} {n / r['ingest_s']:>10,.0f} "
            f"{n / r['a_s']:>9,.0f} {n / r['b0_s']:>11,.0f} {n / r['b_s']:>10,.0f} "
            f"{n / r['c_s']:>10,.0f} {r['a_s'] / r['c_s']:>5.2f} {r['b0_s'] / r['c_s']:>5.2f} "
            f"{r['b_s'] / r['c_s']:>5.2f}  {', '.join(f'{m:,.0f}' for m in r['worker_peak_mib'])}"
        )
    print("(rows/s; (c) includes writing the HATS metadata with hats, which (b0) and (b) do not)")
    for r in results:
        if "c1_s" in r:
            print(
                f"{r['rows']:,} rows: {r['n_workers']} workers vs 1 worker: x{r['c1_s'] / r['c_s']:.2f}"
            )
    if len(results) > 1:
        small, big = results[0], results[-1]
        ratio = max(big["worker_peak_mib"]) / max(small["worker_peak_mib"])
        print(f"peak worker memory {big['rows']:,} vs {small['rows']:,} rows: x{ratio:.2f}")
    if not args.keep and args.work is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
