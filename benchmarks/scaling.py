"""Per-partition stages at 1M and 10M rows, and 1 worker against 2 on 1M rows.

For each size this runs `bigcat process` on a synthetic survey (mock and ingest first) with
the networks' training cut short (``--quick``: the trainings are not what is measured here;
paper_scale.py times them), and reads from run.json the three per-partition stages:
``photometry`` (quality, zero-point, RJCE, giant cut, features), ``stage1`` (MC-dropout
parallaxes, distances) and ``stage2`` ([Fe/H] inference and kinematics). It prints per stage
the per-row cost (CPU-core microseconds per row = wall x cores / rows) and the peak RSS of each
worker during the stage, the 10M/1M ratios (target: within 10%), and the speed-up of 2
workers over 1 on the same 1M catalogue (target: at least 1.7x).

Then (``--repeats``, default 3) each of the three stages runs alone over each size's own
inputs and models, on a fresh cluster per stage, the workers settled (garbage collected, heap
trimmed) before each repeat, the sizes alternating within each round (the smallest three
times per round) so that a change of the machine's speed during the benchmark hits both
alike. Per stage and size it prints the median wall time, the per-row cost from it and from
the core time inside tasks (Dask's task stream) and from the wall time until the stage's output
is on disk (``os.sync()`` before each repeat, untimed, and after it, timed: a 1M-row stage's
output fits in the page cache and is written back after the stage ends, a 10M-row stage's
does not and waits for the disk while it runs), and each repeat's peak worker RSS. In the
full run a stage's window also holds what the stage before it left in the workers, and a
1M-row stage lasts only a few seconds, so one run's figures move by tens of percent; the
repeated, isolated figures are the ones to compare.

Partitions are HATS adaptive ones of at most ``--partition-rows`` rows (default 50,000;
nside 32 the finest order), so both sizes run partitions of similar size; ``--partition-rows 0``
measures the fixed nside-32 layout, whose 12,288 partitions hold ~80 rows each at 1M rows and
whose per-file cost then dominates the per-row figure.

Usage: python benchmarks/scaling.py [--rows 1000000 10000000] [--work DIR] [--no-workers-test]
                                    [--partition-rows N] [--repeats 3] [--isolated-only]
       python benchmarks/scaling.py --workers-only RUN/input [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from _rss import peak_in, rss_samples, start_rss_sampler

STAGES = ("photometry", "stage1", "stage2")


def run(
    rows: int,
    run_dir: Path,
    workers: int,
    inputs: list[str] | None,
    quick: bool,
    partition_rows: int,
    labels: list[str] | None = None,
) -> dict:
    from bigcat.cluster import dask_client
    from bigcat.config import Config

    config = Config().replace("process", default_mock_rows=rows, analyses=False, report=False)
    config = config.replace("ingest", partition_rows=partition_rows)
    config = config.replace("cluster", n_workers=workers, dashboard_address=":0")
    if quick:
        config = config.replace("stage1", max_epochs=3, training_cap=50_000)
        config = config.replace("stage2", max_epochs=10)
    from bigcat.pipeline import process_with_client

    with dask_client(config.cluster) as client:
        client.run(start_rss_sampler)
        process_with_client(config, client, inputs, run_dir, labels)
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


def _settle(dask_worker=None) -> None:
    """In a worker: collect garbage and return freed heap memory to the OS."""
    import gc

    from bigcat.stages.tasks import _libc

    gc.collect()
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)


def stage_calls(run_dir: Path, config, catalog: Path | None = None) -> tuple[int, dict]:
    """The run's rows, and per stage a call ``(client, out)`` running it alone over the run's
    own inputs and models (``catalog``: the ingested input, if not RUN_DIR/input)."""
    from bigcat.catalog.store import Catalog
    from bigcat.nn.checkpoint import load_checkpoint
    from bigcat.stages.metallicity import load_stage2_model, run_final
    from bigcat.stages.parallax import SigmaCalibration, load_prior, run_stage1
    from bigcat.stages.photometry import run_photometry_stage

    m1 = run_dir / "models" / "stage1"
    models = [load_checkpoint(m1 / f"fold{k}") for k in range(config.stage1.n_folds)]
    calibration = None
    if (m1 / "calibration.json").exists():
        calibration = SigmaCalibration.from_dict(json.loads((m1 / "calibration.json").read_text()))
    model2, label_range, c_weight, sigma_scale = load_stage2_model(run_dir / "models" / "stage2")
    inputs = {
        "photometry": Catalog.open(catalog or run_dir / "input"),
        "stage1": Catalog.open(run_dir / "stages" / "photometry"),
        "stage2": Catalog.open(run_dir / "stages" / "stage1"),
    }
    rows = inputs["photometry"].n_rows()
    task_rows = config.process.target_task_rows
    calls = {
        "photometry": lambda c, out: run_photometry_stage(c, inputs["photometry"], out, config),
        "stage1": lambda c, out: run_stage1(
            c,
            inputs["stage1"],
            out,
            models,
            load_prior(config),
            config.stage1.mc_passes,
            config.process.seed,
            task_rows,
            "isolated",
            calibration=calibration,
        ),
        "stage2": lambda c, out: run_final(
            c,
            inputs["stage2"],
            out,
            model2,
            label_range,
            config.stage2.mc_passes,
            config.process.seed,
            task_rows,
            "isolated",
            c_weight=c_weight,
            sigma_scale=sigma_scale,
        ),
    }
    return rows, calls


def isolated(
    run_dirs: list[Path],
    workers: int,
    repeats: int,
    partition_rows: int,
    catalog: Path | None = None,
) -> list:
    """Each per-partition stage alone over each run's own inputs and models, into scratch
    directories: per stage and run the wall times, the core time inside tasks and each
    repeat's peak worker RSS.

    In the full run a stage's window also holds what the stage before it left in the workers
    (a training's arrays, ingest's buffers, still being freed when the next stage starts);
    here each stage gets a fresh cluster and the workers are settled (garbage collected, heap
    trimmed) before each repeat. The sizes alternate within each round of repeats, so a
    change in the machine's speed over the minutes of the benchmark hits both alike; the
    smallest run, whose stages last seconds, runs three times per round.
    """
    import os
    import shutil
    import time

    from distributed import get_task_stream

    from bigcat.cluster import dask_client
    from bigcat.config import Config

    config = Config().replace("cluster", n_workers=workers, dashboard_address=":0")
    config = config.replace("ingest", partition_rows=partition_rows)
    built = [stage_calls(d, config, catalog) for d in run_dirs]
    smallest = min(rows for rows, _ in built)
    results: list[dict] = [
        {
            "rows": rows,
            "stages": {
                name: {"seconds": [], "durable_seconds": [], "task_seconds": [], "peak_mib": []}
                for name in STAGES
            },
        }
        for rows, _ in built
    ]
    for name in STAGES:  # a fresh cluster per stage: no other stage's memory in its workers
        with dask_client(config.cluster) as client:
            n_workers = len(client.scheduler_info()["workers"])
            client.run(start_rss_sampler)
            windows = []
            for _ in range(repeats):
                for i, (rows, calls) in enumerate(built):
                    for _ in range(3 if rows == smallest else 1):
                        out = run_dirs[i] / "isolated" / name
                        shutil.rmtree(out, ignore_errors=True)
                        client.run(_settle)
                        os.sync()  # the window starts with nothing left to write back
                        time.sleep(1.0)
                        with get_task_stream(client) as stream:
                            t0 = time.time()
                            calls[name](client, out)
                            t1 = time.time()
                        os.sync()
                        t_sync = time.time() - t1
                        busy = sum(
                            s["stop"] - s["start"]
                            for task in stream.data
                            for s in task["startstops"]
                            if s["action"] == "compute"
                        )
                        windows.append((i, t0, t1, busy, t_sync))
                        shutil.rmtree(out, ignore_errors=True)
            samples = client.run(rss_samples)
        for i, t0, t1, busy, t_sync in windows:
            results[i]["workers"] = n_workers
            st = results[i]["stages"][name]
            st["seconds"].append(t1 - t0)
            st["durable_seconds"].append(t1 - t0 + t_sync)
            st["task_seconds"].append(busy)
            st["peak_mib"].append(max(peak_in(samples, t0, t1)))
    return results


def _median(values: list[float]) -> float:
    v = sorted(values)
    return v[len(v) // 2] if len(v) % 2 else 0.5 * (v[len(v) // 2 - 1] + v[len(v) // 2])


def print_speedup(one: dict[str, float], two: dict[str, float]) -> None:
    """Per stage and in total: seconds with 1 and with 2 workers, and the speed-up."""
    for name in STAGES:
        s1, s2 = one[name], two[name]
        print(f"  {name:<11} 1 worker {s1:7.1f} s   2 workers {s2:7.1f} s   {s1 / s2:.2f}x")
    t1, t2 = sum(one.values()), sum(two.values())
    print(f"  {'all three':<11} 1 worker {t1:7.1f} s   2 workers {t2:7.1f} s   {t1 / t2:.2f}x")


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
    ap.add_argument(
        "--partition-rows",
        type=int,
        default=50_000,
        help="adaptive HATS partitions of at most this many rows (0: one partition per "
        "nside-32 pixel, the default layout of `bigcat process`) [50000]",
    )
    ap.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="times each per-partition stage is then run alone per size (0: skip) [3]",
    )
    ap.add_argument(
        "--isolated-only",
        action="store_true",
        help="skip the full runs: only the stages alone, on the runs an earlier call of this "
        "script left in --work",
    )
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="bigcat-scaling-"))
    quick = not args.full_training
    sizes = [] if args.workers_only else args.rows
    full = [] if args.isolated_only else sizes
    results = [run(n, work / f"run-{n}", 0, None, quick, args.partition_rows) for n in full]
    print(f"partitions: nside 32, adaptive threshold {args.partition_rows:,} rows (0 = fixed)")
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
    if args.repeats and len(sizes) > 1:
        alone = isolated([work / f"run-{n}" for n in sizes], 0, args.repeats, args.partition_rows)
        print(
            "\neach stage alone on a fresh cluster, repeated (workers settled before each): "
            "per-row cost from the median wall time x workers, and from the median core time "
            "inside tasks (Dask task stream); peak worker RSS of each repeat"
        )
        print(
            f"{'rows':>12}{'stage':>12}{'median s':>10}{'core-us/row':>13}{'task-us/row':>13}"
            f"{'+flush us/row':>15}  peak RSS (MiB)  walls (s)"
        )
        for r in alone:
            for name, st in r["stages"].items():
                st["us_per_row"] = _median(st["seconds"]) * r["workers"] / r["rows"] * 1e6
                st["task_us_per_row"] = _median(st["task_seconds"]) / r["rows"] * 1e6
                st["durable_us_per_row"] = (
                    _median(st["durable_seconds"]) * r["workers"] / r["rows"] * 1e6
                )
                print(
                    f"{r['rows']:>12,}{name:>12}{_median(st['seconds']):>10.1f}"
                    f"{st['us_per_row']:>13.1f}{st['task_us_per_row']:>13.1f}"
                    f"{st['durable_us_per_row']:>15.1f}  "
                    + ", ".join(f"{p:,.0f}" for p in st["peak_mib"])
                    + "  "
                    + ", ".join(f"{t:.1f}" for t in st["seconds"])
                )
        a, b = alone[0], alone[-1]
        print(f"ratios {b['rows']:,} / {a['rows']:,} rows, stages alone (target within 10%):")
        for name in STAGES:
            sa, sb = a["stages"][name], b["stages"][name]
            print(
                f"  {name:<11} per-row cost {sb['us_per_row'] / sa['us_per_row']:.2f} (wall), "
                f"{sb['task_us_per_row'] / sa['task_us_per_row']:.2f} (task time), "
                f"{sb['durable_us_per_row'] / sa['durable_us_per_row']:.2f} (output on disk)   "
                "peak worker "
                f"RSS {_median(sb['peak_mib']) / _median(sa['peak_mib']):.2f} (median repeat), "
                f"{max(sb['peak_mib']) / max(sa['peak_mib']):.2f} (largest)"
            )
    if args.workers_only or not (args.no_workers_test or args.isolated_only):
        from bigcat.catalog.store import Catalog

        catalog = str(args.workers_only or work / f"run-{args.rows[0]}" / "input")
        n = Catalog.open(Path(catalog)).n_rows()
        # the synthetic survey's labels, when the catalogue is one this script made (else
        # stage 2 computes the kinematics only: no [Fe/H] model)
        mock = Path(catalog).parent / "mock"
        labels = [str(mock / f) for f in ("apogee.parquet", "lamost.parquet")]
        labels = labels if all(Path(x).exists() for x in labels) else None
        one = run(n, work / f"run-{n}-1w", 1, [catalog], quick, args.partition_rows, labels)
        two = run(n, work / f"run-{n}-2w", 2, [catalog], quick, args.partition_rows, labels)
        print(f"\n1 vs 2 workers on the same {n:,}-row catalogue (target at least 1.7x):")
        print_speedup(
            {name: one["stages"][name]["seconds"] for name in STAGES},
            {name: two["stages"][name]["seconds"] for name in STAGES},
        )
        if args.repeats:
            # each stage alone, 1 and 2 workers alternating (rounds of `repeats` each): one
            # in-process run of a few seconds per stage moves by tens of percent
            walls: dict[int, dict[str, list[float]]] = {1: {}, 2: {}}
            for _ in range(2):
                for w in (1, 2):
                    [r] = isolated(
                        [work / f"run-{n}-2w"],
                        w,
                        args.repeats,
                        args.partition_rows,
                        catalog=Path(catalog),
                    )
                    for name in STAGES:
                        walls[w].setdefault(name, []).extend(r["stages"][name]["seconds"])
            print(
                f"each stage alone, 1 and 2 workers alternating, median of {2 * args.repeats} "
                "repeats each:"
            )
            print_speedup(
                {name: _median(walls[1][name]) for name in STAGES},
                {name: _median(walls[2][name]) for name in STAGES},
            )


if __name__ == "__main__":
    main()
