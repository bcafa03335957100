"""Ingest cost per row from 1M to 10M rows, for an input in sky order and one in none.

`bigcat ingest` splits every input chunk into a shard sorted on the sky, then each merge
task reads its sky range from every shard whose recorded range meets it. Gaia DR3's own
files come in source_id order, which is sky order (the source_id holds the level-12 HEALPix
index), so each merge task reads a few shards; a `bigcat mock` survey writes its chunks in
no sky order, so every merge task reads a slice of every shard, and the number of (task,
shard) reads grows as the square of the rows. This script takes the merged tables of two
mock surveys (``--small`` and ``--large``, e.g. 1M and 10M rows), writes a sky-ordered copy
of each (sorted by source_id, the same number of files of the same size), and times
`bigcat ingest` (default settings, nside 32, the default 2-worker cluster started once) on
all four inputs, interleaved, ``--repeats`` times each. It prints the in-pipeline seconds,
the median per size and order, and the per-row ratio large / small.

Usage: python benchmarks/ingest_order.py --small MOCK_1M --large MOCK_10M [--repeats 2]
       [--work DIR]      (MOCK_*: `bigcat mock --rows N --out MOCK_*` directories)
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path


def sky_ordered_copy(src: Path, out: Path) -> Path:
    """``src`` (a Parquet file or directory) sorted by source_id, written as as many files of
    the same size as ``src`` has."""
    import pyarrow.compute as pc
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq

    if out.exists():
        return out
    dataset = ds.dataset(src, format="parquet")
    n_files = max(1, len(dataset.files))
    table = dataset.to_table()
    table = table.take(pc.sort_indices(table["source_id"]))
    per_file = -(-table.num_rows // n_files)
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for i in range(n_files):
        pq.write_table(table.slice(i * per_file, per_file), tmp / f"part-{i:05d}.parquet")
    tmp.rename(out)
    return out


def main() -> None:
    import pyarrow.dataset as ds

    from bigcat.cluster import dask_client
    from bigcat.config import Config
    from bigcat.stages.ingest import ingest

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--small", type=Path, required=True, help="mock directory, e.g. 1M rows")
    ap.add_argument("--large", type=Path, required=True, help="mock directory, e.g. 10M rows")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--work", type=Path, default=None)
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="bigcat-ingest-order-"))
    work.mkdir(parents=True, exist_ok=True)
    inputs = {}
    for size, mock in (("small", args.small), ("large", args.large)):
        merged = mock / "photometry.parquet"
        inputs[(size, "no sky order (mock)")] = merged
        inputs[(size, "sky order (by source_id)")] = sky_ordered_copy(merged, work / f"sky-{size}")
    rows = {}
    for (size, _), path in inputs.items():
        rows[size] = ds.dataset(path, format="parquet").count_rows()
    config = Config()
    times: dict[tuple[str, str], list[float]] = {k: [] for k in inputs}
    with dask_client(config.cluster) as client:
        for _ in range(args.repeats):
            for key, path in inputs.items():
                out = work / "catalog"
                shutil.rmtree(out, ignore_errors=True)
                t0 = time.perf_counter()
                ingest([str(path)], out, config, client)
                times[key].append(time.perf_counter() - t0)
                print(f"{key[0]:>5} {rows[key[0]]:>11,} rows, {key[1]:<26} {times[key][-1]:6.1f} s")
    shutil.rmtree(work / "catalog", ignore_errors=True)
    print("\nmedian seconds, per-row microseconds (2 workers: x 2 for core-us), ratio large/small:")
    for order in ("no sky order (mock)", "sky order (by source_id)"):
        small = statistics.median(times[("small", order)])
        large = statistics.median(times[("large", order)])
        ratio = (large / rows["large"]) / (small / rows["small"])
        print(
            f"  {order:<26} {small:6.1f} s ({1e6 * small / rows['small']:.2f} us/row)  "
            f"{large:6.1f} s ({1e6 * large / rows['large']:.2f} us/row)  ratio {ratio:.2f}x"
        )


if __name__ == "__main__":
    main()
