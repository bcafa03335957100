"""`bigcat` command line: argv -> configuration -> pipeline. Nothing else lives here."""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

import click

from bigcat import __version__
from bigcat.config import Config, load_config, scheduler_from_env
from bigcat.errors import BigcatError

_config_option = click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="TOML file of settings (sections [cluster], [ingest], [process], [photometry], [mock], [columns]).",
)
_scheduler_option = click.option(
    "--scheduler",
    default=None,
    metavar="tcp://HOST:PORT",
    help="Use this Dask scheduler instead of an embedded local cluster (also DASK_SCHEDULER_ADDRESS).",
)
_workers_option = click.option(
    "--workers",
    "n_workers",
    type=int,
    default=None,
    help="Workers of the embedded local cluster (default: one per core).",
)


def _config(config_path: str | None, scheduler: str | None, n_workers: int | None = None) -> Config:
    config = load_config(config_path)
    config = config.replace("cluster", scheduler=scheduler, n_workers=n_workers)
    return scheduler_from_env(config)


def _client(config: Config):
    from bigcat.cluster import dask_client

    return dask_client(config.cluster)


def _announce(client) -> None:
    from bigcat.cluster import dashboard_link

    link = dashboard_link(client)
    click.echo(f"Dask dashboard: {link or 'not served by this scheduler'}", err=True)


@click.group()
@click.version_option(__version__, prog_name="bigcat")
@click.option("-v", "--verbose", is_flag=True, help="Log progress details to stderr.")
def cli(verbose: bool) -> None:
    """bigcat: photometric metallicities and distances of red giants, on Dask."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )


@cli.command()
@click.option("--rows", type=int, required=True, help="Number of stars in the survey.")
@click.option("--seed", type=int, default=42, show_default=True, help="Random seed.")
@click.option("--out", type=click.Path(file_okay=False), required=True, help="Output directory.")
@click.option(
    "--gradient",
    type=float,
    default=None,
    help="Injected vertical [Fe/H] gradient of the bulge (dex/kpc).",
)
@click.option(
    "--vertex-deg",
    type=float,
    default=None,
    help="Injected vertex deviation of the metal-rich bar population (deg).",
)
@click.option(
    "--apogee-fraction",
    type=float,
    default=None,
    help="Fraction of eligible giants (H < 12.2) with an APOGEE-like label [0.2].",
)
@click.option(
    "--lamost-fraction",
    type=float,
    default=None,
    help="Fraction of eligible stars (dec > -10, G < 17) with a LAMOST-like label [0.25].",
)
@click.option("--chunk-rows", type=int, default=None, help="Rows per generation task.")
@_config_option
@_scheduler_option
@_workers_option
def mock(
    rows,
    seed,
    out,
    gradient,
    vertex_deg,
    apogee_fraction,
    lamost_fraction,
    chunk_rows,
    config_path,
    scheduler,
    n_workers,
):
    """Make a synthetic Milky Way survey with known truth."""
    from bigcat.stages.mock import DEFAULT_CHUNK_ROWS, make_mock

    config = _config(config_path, scheduler, n_workers)
    config = config.replace(
        "mock",
        seed=seed,
        feh_gradient=gradient,
        vertex_deg=vertex_deg,
        label_fraction_apogee=apogee_fraction,
        label_fraction_lamost=lamost_fraction,
    )
    t0 = time.perf_counter()
    with _client(config) as client:
        _announce(client)
        summary = make_mock(client, config.mock, rows, out, chunk_rows or DEFAULT_CHUNK_ROWS)
    dt = time.perf_counter() - t0
    click.echo(
        f"Wrote {summary['rows']:,} stars to {out} in {dt:.1f} s ({summary['rows'] / dt:,.0f} rows/s); "
        f"truth in {Path(out) / 'truth.json'}."
    )


@cli.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option(
    "--out", type=click.Path(file_okay=False), required=True, help="Catalogue directory to create."
)
@click.option("--nside", type=int, default=None, help="HEALPix nside of the partitions [32].")
@_config_option
@_scheduler_option
@_workers_option
def ingest(inputs, out, nside, config_path, scheduler, n_workers):
    """Ingest Parquet/CSV/FITS tables into a HEALPix catalogue (HATS layout)."""
    from bigcat.catalog.ingest import ingest as run_ingest

    config = _config(config_path, scheduler, n_workers).replace("ingest", nside=nside)
    t0 = time.perf_counter()
    with _client(config) as client:
        _announce(client)
        catalog = run_ingest(list(inputs), out, config, client)
    click.echo(
        f"Catalogue {catalog.root}: {catalog.n_rows():,} rows in {len(catalog.pixels):,} partitions "
        f"(nside {config.ingest.nside}), {time.perf_counter() - t0:.1f} s."
    )


@cli.command()
@click.option(
    "--input",
    "inputs",
    multiple=True,
    help="Input catalogue or raw files (repeatable). None: a synthetic survey is made.",
)
@click.option(
    "--out",
    "run_dir",
    type=click.Path(file_okay=False),
    default="bigcat-run",
    show_default=True,
    help="Run directory.",
)
@click.option("--nside", type=int, default=None, help="HEALPix nside of the partitions [32].")
@click.option(
    "--rows",
    type=int,
    default=None,
    help="Rows of the synthetic survey made when no --input is given [200000].",
)
@click.option("--seed", type=int, default=None, help="Seed of the synthetic survey [42].")
@click.option(
    "--prior-table",
    type=click.Path(dir_okay=False, exists=True),
    default=None,
    help="Bailer-Jones et al. (2021) prior CSV (healpix, GGDrlen, GGDalpha, GGDbeta); "
    "default: bigcat's prior from its Galaxy model.",
)
@_config_option
@_scheduler_option
@_workers_option
def process(inputs, run_dir, nside, rows, seed, prior_table, config_path, scheduler, n_workers):
    """Run the pipeline over every partition on a Dask cluster."""
    from bigcat.pipeline import process_with_client

    config = _config(config_path, scheduler, n_workers).replace("ingest", nside=nside)
    config = config.replace("process", default_mock_rows=rows).replace("mock", seed=seed)
    config = config.replace("stage1", prior_table=prior_table)
    with _client(config) as client:
        _announce(client)
        result = process_with_client(config, client, list(inputs) or None, run_dir)
    click.echo(format_summary(result))


@cli.command()
@click.argument("stage", type=click.Choice(["stage1"]))
@click.argument("run_dir", type=click.Path(file_okay=False, exists=True))
@_config_option
@_scheduler_option
@_workers_option
def train(stage, run_dir, config_path, scheduler, n_workers):
    """Train a stage's networks alone on a run's catalogue and write the checkpoints."""
    from bigcat.catalog.store import Catalog
    from bigcat.stages.parallax import train_or_load_stage1

    config = _config(config_path, scheduler, n_workers)
    catalog = Catalog.open(Path(run_dir) / "stages" / "photometry")
    t0 = time.perf_counter()
    with _client(config) as client:
        _announce(client)
        models, info = train_or_load_stage1(
            client, catalog, config, Path(run_dir) / "models" / stage, force=True
        )
    click.echo(
        f"Trained {len(models)} {stage} fold models on {info['training_rows']:,} giants in "
        f"{time.perf_counter() - t0:.1f} s (best validation losses {info['val_loss']}); "
        f"checkpoints in {Path(run_dir) / 'models' / stage}."
    )


def format_summary(result) -> str:
    """The short summary `bigcat process` ends with."""
    p = result.photometry
    rows = max(p["rows"], 1)
    lines = [
        f"bigcat process: {p['rows']:,} rows in {p['partitions']:,} partitions "
        f"({p['partitions_computed']:,} computed, {p['partitions'] - p['partitions_computed']:,} reused)",
        "  rows failing each cut:",
    ]
    for name, n in p["flags"].items():
        lines.append(f"    {name:<24} {n:>12,}  {100 * n / rows:6.2f}%")
    lines += [
        f"  passing quality cuts       {p['quality_ok']:>12,}  {100 * p['quality_ok'] / rows:6.2f}%",
        f"  giants                     {p['giants']:>12,}  {100 * p['giants'] / rows:6.2f}%",
        f"  stage 1: {result.stage1['giants_predicted']:,} giants with NN parallaxes; NN sigma "
        f"below Gaia's for {result.stage1['nn_better_than_gaia']:,} "
        f"({100 * result.stage1['nn_better_than_gaia'] / max(result.stage1['giants_predicted'], 1):.1f}%); "
        f"{result.stage1['with_distance']:,} distances",
        f"  time {result.log.info.get('seconds', 0):.1f} s; per stage: "
        + ", ".join(f"{s['stage']} {s['seconds']:.1f} s" for s in result.log.stages),
        f"  output: {result.catalog.root}  (run log: {result.run_dir / 'run.log'})",
    ]
    return "\n".join(lines)


def main() -> None:
    """Entry point: bigcat's errors become a one-paragraph message and exit status 1."""
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except BigcatError as exc:
        click.echo(f"bigcat: error: {exc}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        click.echo("Interrupted; run the same command again to resume.", err=True)
        sys.exit(130)
