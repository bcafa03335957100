"""bigcat against the tool a user would pick instead, each pair measured in one run.

* **ingest** (`bigcat ingest` against hats-import's catalogue pipeline): the same Parquet
  input (a `bigcat mock` survey's merged table, ``photometry.parquet``), the same adaptive threshold
  (``--threshold``, default bigcat's ``[ingest] partition_rows``), the same finest order
  (``--order``, default 5 = nside 32) and the same 2-worker embedded cluster; interleaved, ``--repeats`` times
  each, in-pipeline seconds (the cluster is started once, outside the timing). Both
  outputs are opened with ``hats.read_hats`` and their row counts and partition counts
  printed beside the times.
* **crossmatch** and **MC-dropout inference** have their own scripts with the peer in the
  same run: ``score_crossmatch.py`` (bigcat crossmatch against ``lsdb.crossmatch``) and
  ``mc_dropout.py`` (bigcat's batched passes against a plain per-row-mask torch loop).

hats-import is not a bigcat dependency: ``pip install hats-import`` (the version matching
the installed hats) before running this.

Usage: python benchmarks/peers.py [--rows 1000000] [--repeats 2] [--threshold N]
                                  [--order 5] [--work DIR]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path


def _bigcat_ingest(client, inputs: list[Path], out: Path, threshold: int, order: int) -> float:
    from bigcat.config import Config
    from bigcat.stages.ingest import ingest

    cfg = Config().replace("ingest", nside=2**order, partition_rows=threshold)
    t0 = time.perf_counter()
    ingest([str(p) for p in inputs], out, cfg, client)
    return time.perf_counter() - t0


def _hats_import(client, inputs: list[Path], out: Path, threshold: int, order: int) -> float:
    from hats_import.catalog.arguments import ImportArguments
    from hats_import.pipeline import pipeline_with_client

    args = ImportArguments(
        output_artifact_name="catalog",
        input_file_list=[str(p) for p in inputs],
        file_reader="parquet",
        ra_column="ra",
        dec_column="dec",
        sort_columns="source_id",
        highest_healpix_order=order,
        pixel_threshold=threshold,
        output_path=str(out),
        tmp_dir=str(out / "tmp"),
        resume=False,
        progress_bar=False,
    )
    t0 = time.perf_counter()
    pipeline_with_client(args, client)
    return time.perf_counter() - t0


def _summary(path: Path) -> tuple[int, int]:
    import hats

    cat = hats.read_hats(path)
    return int(cat.catalog_info.total_rows), len(cat.get_healpix_pixels())


def main() -> None:
    from bigcat.cluster import dask_client
    from bigcat.config import Config

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threshold", type=int, default=Config().ingest.partition_rows)
    ap.add_argument(
        "--order",
        type=int,
        default=5,
        help="finest HEALPix order (5 = nside 32, bigcat's default); hats-import refuses a "
        "pixel over the threshold at it, so 10M rows need 6",
    )
    ap.add_argument("--work", type=Path, default=None)
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="bigcat-peers-"))
    mock_dir = work / f"mock{args.rows}"
    config = Config()
    with dask_client(config.cluster) as client:
        if not mock_dir.exists():
            from bigcat.stages.mock import DEFAULT_CHUNK_ROWS, make_mock

            make_mock(client, config.mock, args.rows, mock_dir, DEFAULT_CHUNK_ROWS)
        inputs = sorted((mock_dir / "photometry.parquet").glob("part-*.parquet"))
        if not inputs:
            raise SystemExit(f"no survey Parquet files under {mock_dir}")
        n_workers = len(client.scheduler_info()["workers"])
        print(
            f"ingest of {args.rows:,} rows ({len(inputs)} Parquet files), threshold "
            f"{args.threshold:,} rows, finest order {args.order}, {n_workers} workers; "
            f"{args.repeats} interleaved repeats"
        )
        times: dict[str, list[float]] = {"bigcat ingest": [], "hats-import": []}
        outputs: dict[str, Path] = {}
        for r in range(args.repeats):
            for name, fn in (("bigcat ingest", _bigcat_ingest), ("hats-import", _hats_import)):
                out = work / f"{name.split()[0]}-{r}"
                shutil.rmtree(out, ignore_errors=True)
                times[name].append(fn(client, inputs, out, args.threshold, args.order))
                if name == "hats-import":
                    out = out / "catalog"
                outputs[name] = out
    print(f"{'tool':<16}{'best (s)':>10}{'all (s)':>22}{'rows':>12}{'partitions':>12}")
    for name, ts in times.items():
        rows, parts = _summary(outputs[name])
        print(
            f"{name:<16}{min(ts):>10.1f}{', '.join(f'{t:.1f}' for t in ts):>22}"
            f"{rows:>12,}{parts:>12,}"
        )
    ratio = min(times["bigcat ingest"]) / min(times["hats-import"])
    print(f"bigcat / hats-import: {ratio:.2f}x (best of each; < 1 = bigcat faster)")


if __name__ == "__main__":
    main()
