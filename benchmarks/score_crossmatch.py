"""Score `bigcat crossmatch` on a synthetic survey's own tables, and time it against LSDB alone.

Runs ``bigcat.stages.crossmatch.crossmatch`` on MOCK_DIR's ``gaia_source``, ``tmass_psc`` and
``unwise`` tables and counts, against ``crossmatch_truth``, for 2MASS and unWISE: the stars that
have a true counterpart and got it (right), got another source (wrong) or none (missed), and
the stars without one that got a source (spurious). Targets: right >= 99.5% (2MASS) / 99%
(unWISE) of the stars that have one; wrong + spurious <= 0.3% / 0.5%.

Speed: rows/s of bigcat crossmatch (read, match, write the HATS catalogue) against
``lsdb.crossmatch`` alone on the same inputs and cluster: the three tables read with pyarrow,
``lsdb.from_dataframe`` (margin caches for 2MASS and unWISE), Gaia x 2MASS x unWISE as two
nearest-neighbour left joins within the radius, computed to pandas (no proper motions, no
one-to-one resolution, nothing written). Both run after a small warm-up (worker imports, numba),
alternately, ``--repeat`` times; the best of each is reported (target: within 1.5x). LSDB
alone's pairs are scored too, to show what the epoch propagation and one-to-one rule change.

Usage: python benchmarks/score_crossmatch.py RUN_OR_MOCK_DIR [--workers 2] [--repeat 2]
       [--scheduler tcp://HOST:PORT] [--radius-arcsec 1.0] [--work DIR]
(RUN_OR_MOCK_DIR: a `bigcat mock --out` directory, or a run directory with mock/ inside.)
This script, not the pipeline, reads the truth table.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.dataset as ds

TABLES = ("gaia_source", "tmass_psc", "unwise")


def read(path: Path, columns: list[str] | None = None) -> pd.DataFrame:
    return ds.dataset(path, format="parquet").to_table(columns=columns).to_pandas()


def score(found: pd.DataFrame, truth: pd.DataFrame) -> dict[str, dict[str, float]]:
    """right / wrong / missed / spurious per survey; ``found``: source_id + the two id columns."""
    j = truth.merge(found, on="source_id", how="left", suffixes=("_true", ""), validate="1:1")
    out = {}
    for survey, col in (("2MASS", "tmass_designation"), ("unWISE", "unwise_objid")):
        t, o = j[f"{col}_true"], j[col]
        has, got = t.notna().to_numpy(), o.notna().to_numpy()
        same = has & got & (o.astype(object) == t.astype(object)).to_numpy()
        n_has, n_not = int(has.sum()), int((~has).sum())
        out[survey] = {
            "with": n_has,
            "without": n_not,
            "right": int(same.sum()),
            "wrong": int((has & got & ~same).sum()),
            "missed": int((has & ~got).sum()),
            "spurious": int((~has & got).sum()),
        }
    return out


def print_score(label: str, s: dict[str, dict[str, float]]) -> None:
    targets = {"2MASS": (99.5, 0.3), "unWISE": (99.0, 0.5)}
    print(label)
    for survey, c in s.items():
        right = 100 * c["right"] / max(c["with"], 1)
        bad = 100 * (c["wrong"] + c["spurious"]) / max(c["with"] + c["without"], 1)
        r_t, b_t = targets[survey]
        print(
            f"  {survey:<7} stars with a counterpart {c['with']:,}: right {c['right']:,} "
            f"({right:.3f}%, target >= {r_t}%: {'met' if right >= r_t else 'NOT met'}), wrong "
            f"{c['wrong']:,} ({100 * c['wrong'] / max(c['with'], 1):.3f}%), missed {c['missed']:,} "
            f"({100 * c['missed'] / max(c['with'], 1):.3f}%); stars without {c['without']:,}: "
            f"spurious {c['spurious']:,}; wrong + spurious {bad:.3f}% of all stars (target <= "
            f"{b_t}%: {'met' if bad <= b_t else 'NOT met'})"
        )


def lsdb_alone(mock: Path, radius: float, margin: float) -> tuple[pd.DataFrame, int]:
    """The baseline: plain lsdb.crossmatch of the three tables, computed to pandas."""
    import lsdb

    g, t, u = (read(mock / f"{name}.parquet") for name in TABLES)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gc = lsdb.from_dataframe(
            g, catalog_name="gaia", margin_threshold=None, use_pyarrow_types=False
        )
        tc = lsdb.from_dataframe(
            t, catalog_name="tmass", margin_threshold=margin, use_pyarrow_types=False
        )
        uc = lsdb.from_dataframe(
            u, catalog_name="unwise", margin_threshold=margin, use_pyarrow_types=False
        )
        args = dict(
            radius_arcsec=radius,
            n_neighbors=1,
            how="left",
            suffix_method="overlapping_columns",
            log_changes=False,
        )
        x = gc.crossmatch(tc, suffixes=("", "_tmass"), **args).rename({"_dist_arcsec": "tmass_sep"})
        x = x.crossmatch(uc, suffixes=("", "_unwise"), **args)
        result = x.compute(progress_bar=False)
    found = pd.DataFrame(
        {
            "source_id": result["source_id"].to_numpy(),
            "tmass_designation": result["designation"]
            .astype(object)
            .where(result["designation"].notna(), None)
            .to_numpy(),
            "unwise_objid": result["unwise_objid"]
            .astype(object)
            .where(result["unwise_objid"].notna(), None)
            .to_numpy(),
        }
    )
    return found, len(g)


def bigcat_run(mock: Path, out: Path, client, radius: float):
    from bigcat.config import Config
    from bigcat.stages.crossmatch import crossmatch

    shutil.rmtree(out, ignore_errors=True)
    return crossmatch(
        mock / "gaia_source.parquet",
        mock / "tmass_psc.parquet",
        mock / "unwise.parquet",
        out,
        Config(),
        client,
        radius_arcsec=radius,
    )


def warm_up(mock: Path, work: Path, client, radius: float, margin: float) -> None:
    """A small region of the same tables through both, so imports and numba compilation in the
    client and the workers are not timed."""
    small = work / "warmup"
    g = read(mock / "gaia_source.parquet")
    lo, hi = np.quantile(g["dec"], [0.5, 0.52])
    for name in TABLES:
        df = read(mock / f"{name}.parquet")
        df = df[(df["dec"] > lo) & (df["dec"] < hi)]
        (small / f"{name}.parquet").mkdir(parents=True, exist_ok=True)
        df.to_parquet(small / f"{name}.parquet" / "part-0.parquet", index=False)
    lsdb_alone(small, radius, margin)
    bigcat_run(small, work / "warmup-catalog", client, radius)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("mock_dir", type=Path)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--scheduler", default=None)
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--radius-arcsec", type=float, default=1.0)
    p.add_argument("--work", type=Path, default=None)
    a = p.parse_args()
    mock = (
        a.mock_dir / "mock"
        if (a.mock_dir / "mock" / "gaia_source.parquet").exists()
        else a.mock_dir
    )
    work = a.work or Path(tempfile.mkdtemp(prefix="bigcat-xm-bench-"))
    from bigcat.cluster import dask_client
    from bigcat.config import ClusterConfig, Config
    from bigcat.stages.crossmatch import summary_line

    margin = Config().crossmatch.margin_arcsec
    truth = read(mock / "crossmatch_truth.parquet")
    cluster = ClusterConfig(scheduler=a.scheduler or "", n_workers=0 if a.scheduler else a.workers)
    with dask_client(cluster) as client:
        n_workers = len(client.scheduler_info()["workers"])
        warm_up(mock, work, client, a.radius_arcsec, margin)
        times = {"bigcat": [], "lsdb": []}
        catalog = base = None
        for _ in range(a.repeat):
            t0 = time.perf_counter()
            catalog = bigcat_run(mock, work / "catalog", client, a.radius_arcsec)
            times["bigcat"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            base, n_rows = lsdb_alone(mock, a.radius_arcsec, margin)
            times["lsdb"].append(time.perf_counter() - t0)
    found = (
        ds.dataset(catalog.root / "dataset", format="parquet", exclude_invalid_files=True)
        .to_table(columns=["source_id", "tmass_designation", "unwise_objid"])
        .to_pandas()
    )
    assert len(found) == len(truth) and found["source_id"].is_unique, "every Gaia row exactly once"
    print(
        f"bigcat crossmatch on {mock}: {n_rows:,} Gaia rows, radius {a.radius_arcsec} arcsec, "
        f"{n_workers} workers"
    )
    print(f"  {summary_line(catalog)}")
    print_score("bigcat crossmatch (proper motions, one-to-one):", score(found, truth))
    print_score(
        "lsdb.crossmatch alone (positions as given, nearest neighbour):", score(base, truth)
    )
    b, base_t = min(times["bigcat"]), min(times["lsdb"])
    print(
        f"speed: bigcat crossmatch {b:.1f} s ({n_rows / b:,.0f} rows/s; runs "
        f"{', '.join(f'{t:.1f}' for t in times['bigcat'])} s), lsdb.crossmatch alone {base_t:.1f} s "
        f"({n_rows / base_t:,.0f} rows/s; runs {', '.join(f'{t:.1f}' for t in times['lsdb'])} s): "
        f"ratio {b / base_t:.2f}x (target <= 1.5x: {'met' if b / base_t <= 1.5 else 'NOT met'})"
    )
    phases = catalog.properties.get("crossmatch", {}).get("phases")
    if phases:
        print("  bigcat phases (s): " + ", ".join(f"{k} {v:.1f}" for k, v in phases.items()))


if __name__ == "__main__":
    main()
