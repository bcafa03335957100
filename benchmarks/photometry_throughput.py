"""Walking-skeleton throughput, measured in one run per size.

For each size (default 1M and 10M rows) this makes a synthetic survey with `bigcat mock`
(rows/s), ingests it (rows/s), then on the same catalogue measures:

  (a) plain ``pyarrow.parquet.read_table`` of every partition, one process;
  (b) the same work as (c) in one process with pandas: read each partition, run the
      photometry kernel, write the output partition;
  (c) `bigcat process`'s photometry stage on the embedded LocalCluster (all cores);

and prints rows/s, the ratios (c)/(a) and (c)/(b), and the peak RSS of each worker process
(a fresh cluster per size, so the peak belongs to that size).

Usage: python benchmarks/photometry_throughput.py [--rows 1000000 10000000] [--work DIR]
"""

from __future__ import annotations

import argparse
import resource
import shutil
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(rows: int, work: Path, workers: int) -> dict:
    from bigcat.catalog.ingest import ingest
    from bigcat.catalog.store import partition_path, write_frame_atomic
    from bigcat.cluster import dask_client
    from bigcat.config import ClusterConfig, Config
    from bigcat.photometry import run_photometry
    from bigcat.stages.mock import make_mock
    from bigcat.stages.photometry import run_photometry_stage

    config = Config(cluster=ClusterConfig(n_workers=workers, dashboard_address=":0"))
    out: dict = {"rows": rows}
    mock_dir, cat_dir = work / f"mock-{rows}", work / f"cat-{rows}"
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

    # (b) single process: read, kernel, write
    scratch = work / f"serial-{rows}"
    t = time.perf_counter()
    for o, p in catalog.pixels:
        df = pq.read_table(catalog.partition_path(o, p)).to_pandas()
        write_frame_atomic(run_photometry(df, config.photometry), partition_path(scratch, o, p))
    out["b_s"] = time.perf_counter() - t
    shutil.rmtree(scratch)

    # (c) the photometry stage on a fresh local cluster
    with dask_client(config.cluster) as client:
        t = time.perf_counter()
        _, totals = run_photometry_stage(client, catalog, work / f"processed-{rows}", config)
        out["c_s"] = time.perf_counter() - t
        out["worker_peak_mib"] = sorted(client.run(_peak_rss_mib).values())
        out["n_workers"] = len(out["worker_peak_mib"])
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
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="bigcat-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    results = [measure(r, work, args.workers) for r in args.rows]
    print(
        f"{'rows':>11} {'parts':>6} {'mock r/s':>10} {'ingest r/s':>11} {'(a) read r/s':>13} "
        f"{'(b) serial r/s':>15} {'(c) bigcat r/s':>15} {'c/a':>6} {'c/b':>6}  peak worker RSS (MiB)"
    )
    for r in results:
        n = r["rows"]
        print(
            f"{n:>11,} {r['partitions']:>6} {n / r['mock_s']:>10,.0f} {n / r['ingest_s']:>11,.0f} "
            f"{n / r['a_s']:>13,.0f} {n / r['b_s']:>15,.0f} {n / r['c_s']:>15,.0f} "
            f"{r['a_s'] / r['c_s']:>6.2f} {r['b_s'] / r['c_s']:>6.2f}  "
            f"{', '.join(f'{m:,.0f}' for m in r['worker_peak_mib'])}"
        )
    if len(results) > 1:
        small, big = results[0], results[-1]
        ratio = max(big["worker_peak_mib"]) / max(small["worker_peak_mib"])
        print(f"peak worker memory {big['rows']:,} vs {small['rows']:,} rows: x{ratio:.2f}")
    if not args.keep and args.work is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
