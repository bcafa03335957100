"""`bigcat` command line: argv -> configuration -> pipeline. Nothing else lives here."""

from __future__ import annotations

import contextlib
import logging
import math
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from bigcat import __version__
from bigcat.config import Config, load_config, scheduler_from_env
from bigcat.errors import BigcatError, ConfigError
from bigcat.synthetic.galaxies import DESCRIPTIONS as GALAXY_DESCRIPTIONS
from bigcat.synthetic.galaxies import GALAXIES

_config_option = click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="TOML file of settings (sections [cluster], [ingest], [process], [photometry], [mock], "
    "[stage1], [stage2], [gradient], [vertex], [crossmatch], [columns], [columns.gaia|tmass|"
    "unwise]; every key in docs/settings.md).",
)
_scheduler_option = click.option(
    "--scheduler",
    default=None,
    metavar="tcp://HOST:PORT",
    help="Use this Dask scheduler instead of an embedded local cluster (also DASK_SCHEDULER_ADDRESS).",
)
_partition_rows_option = click.option(
    "--partition-rows",
    type=int,
    default=None,
    metavar="N",
    help="HATS adaptive partitions: sparse pixels are merged into lower-order partitions of "
    "at most N rows, --nside being the finest order [[ingest] partition_rows, 50000]; 0: one "
    "partition per --nside pixel.",
)
_keep_columns_option = click.option(
    "--keep-columns",
    default=None,
    metavar="all|none|A,B",
    help="Input columns outside the contract (your own ids, flags) carried to the final "
    "catalogue: all, none, or a comma-separated list [[ingest] keep_columns, all].",
)
_workers_option = click.option(
    "--workers",
    "n_workers",
    type=int,
    default=None,
    help="Workers of the embedded local cluster (default: one per core).",
)


class MultiValueOption(click.Option):
    """An option that takes one or more values after one flag, and may also be repeated:
    ``--labels a.parquet b.parquet`` and ``--labels a.parquet --labels b.parquet`` both give
    ``("a.parquet", "b.parquet")``. Values are taken up to the next token that starts with
    ``-`` (the next option)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["multiple"] = True
        super().__init__(*args, **kwargs)

    def add_to_parser(self, parser: Any, ctx: click.Context) -> None:
        super().add_to_parser(parser, ctx)
        for name in self.opts:
            option = parser._long_opt.get(name) or parser._short_opt.get(name)
            if option is None:
                continue
            single = option.process

            def process(value: Any, state: Any, single: Any = single) -> None:
                single(value, state)
                while state.rargs and not str(state.rargs[0]).startswith("-"):
                    single(state.rargs.pop(0), state)

            option.process = process


def configure_logging(verbosity: int) -> None:
    """What reaches stderr: warnings and one line per finished stage by default; bigcat's
    INFO records with ``-v``; DEBUG records and Dask's own INFO with ``-vv``. (Every run also
    writes INFO detail to RUN_DIR/run.log, whatever the verbosity.)"""
    level = logging.WARNING if verbosity <= 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_StderrFormatter())

    def keep(record: logging.LogRecord) -> bool:
        if getattr(record, "stage_line", False):
            return True
        if record.name == "py.warnings":  # Python warnings of the libraries underneath
            return verbosity >= 1
        if record.levelno >= logging.WARNING:
            return True
        if verbosity >= 2:
            return True
        return record.name.startswith("bigcat") and record.levelno >= level

    handler.addFilter(keep)
    logging.captureWarnings(True)
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_bigcat", False)]:
        root.removeHandler(old)
    handler._bigcat = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbosity >= 2 else logging.INFO)
    logging.getLogger("bigcat").setLevel(logging.DEBUG if verbosity >= 2 else logging.INFO)
    # Dask's loggers have their own levels and handlers; below -vv only their warnings show
    for name in ("distributed", "bokeh", "tornado"):
        logging.getLogger(name).setLevel(logging.DEBUG if verbosity >= 2 else logging.WARNING)
    # the nanny warns when it kills a worker slow to exit at shutdown: not the user's concern
    logging.getLogger("distributed.nanny").setLevel(
        logging.DEBUG if verbosity >= 2 else logging.ERROR
    )


class _StderrFormatter(logging.Formatter):
    """Stage lines as they are; other records as ``LEVEL name: message``."""

    def format(self, record: logging.LogRecord) -> str:
        if getattr(record, "stage_line", False):
            return record.getMessage()
        if record.name.startswith("bigcat") and record.levelno == logging.WARNING:
            return f"  warning: {record.getMessage()}"
        return f"{record.levelname} {record.name}: {record.getMessage()}"


def _config(config_path: str | None, scheduler: str | None, n_workers: int | None = None) -> Config:
    config = load_config(config_path)
    config = config.replace("cluster", scheduler=scheduler, n_workers=n_workers)
    return scheduler_from_env(config)


def _client(config: Config):
    from bigcat.cluster import dask_client

    return dask_client(config.cluster)


def _announce(client, skymap: bool = False) -> None:
    from bigcat.cluster import dashboard_link

    link = dashboard_link(client)
    click.echo(f"Dask dashboard: {link or 'not served by this scheduler'}", err=True)
    if skymap and link:
        from bigcat.dashboard import skymap_link

        sky = skymap_link(client)
        if sky:
            click.echo(f"Live sky map:   {sky}", err=True)


@click.group()
@click.version_option(__version__, "--version", prog_name="bigcat", message="%(prog)s %(version)s")
@click.option(
    "-v",
    "--verbose",
    count=True,
    help="More detail on stderr: -v bigcat's INFO records, -vv DEBUG and Dask's own (all of "
    "it is in RUN_DIR/run.log in any case).",
)
def cli(verbose: int) -> None:
    """bigcat: photometric metallicities and distances of red giants, on Dask."""
    configure_logging(verbose)


def _with_mock_settings(config: Config, galaxy: str | None, explicit: dict) -> Config:
    """``config`` with the synthetic survey's settings: the named Galaxy (when given), the
    config's own [mock] keys that differ from its Galaxy, then the explicit options."""
    import dataclasses

    from bigcat.synthetic.params import MockParams

    try:
        if galaxy is not None:
            params = MockParams.for_galaxy(galaxy, **{**config.mock.overrides(), **explicit})
            return dataclasses.replace(config, mock=params)
        return config.replace("mock", **explicit)
    except ValueError as exc:
        raise ConfigError(f"mock settings: {exc}") from exc


_galaxy_option = click.option(
    "--galaxy",
    type=click.Choice(list(GALAXIES)),
    default=None,
    help="Named Galaxy to simulate [[mock] galaxy, default]: "
    + "; ".join(f"{k}: {v}" for k, v in GALAXY_DESCRIPTIONS.items())
    + ". The other options and the config's [mock] keys win over the Galaxy's values "
    "(docs/galaxies.md).",
)


@cli.command()
@click.option("--rows", type=int, required=True, help="Number of stars in the survey.")
@click.option("--seed", type=int, default=None, help="Random seed [[mock] seed, 42].")
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
    help="Fraction of eligible giants (default Galaxy: H < 12.2) with an APOGEE-like label [0.2].",
)
@click.option(
    "--lamost-fraction",
    type=float,
    default=None,
    help="Fraction of eligible stars (default Galaxy: dec > -10, G < 17) with a LAMOST-like "
    "label [0.25].",
)
@_galaxy_option
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
    galaxy,
    chunk_rows,
    config_path,
    scheduler,
    n_workers,
):
    """Make a synthetic Milky Way survey with known truth."""
    from bigcat.runlock import output_lock
    from bigcat.stages.mock import DEFAULT_CHUNK_ROWS, make_mock

    config = _config(config_path, scheduler, n_workers)
    explicit = {
        k: v
        for k, v in {
            "seed": seed,
            "feh_gradient": gradient,
            "vertex_deg": vertex_deg,
            "label_fraction_apogee": apogee_fraction,
            "label_fraction_lamost": lamost_fraction,
        }.items()
        if v is not None
    }
    config = _with_mock_settings(config, galaxy, explicit)
    t0 = time.perf_counter()
    # the output's lock before the cluster starts (re-entrant: the stage takes it again)
    with output_lock(out, "bigcat mock"), _client(config) as client:
        _announce(client, skymap=True)
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
@_partition_rows_option
@_keep_columns_option
@_config_option
@_scheduler_option
@_workers_option
def ingest(inputs, out, nside, partition_rows, keep_columns, config_path, scheduler, n_workers):
    """Ingest Parquet/CSV/FITS tables into a HEALPix catalogue (HATS layout)."""
    from bigcat.stages.ingest import ingest as run_ingest
    from bigcat.stages.ingest import ingest_lock

    config = _config(config_path, scheduler, n_workers).replace(
        "ingest", nside=nside, partition_rows=partition_rows, keep_columns=keep_columns
    )
    t0 = time.perf_counter()
    with ingest_lock(out), _client(config) as client:  # locked before the cluster starts
        _announce(client)
        catalog = run_ingest(list(inputs), out, config, client)
    click.echo(
        f"Catalogue {catalog.root}: {catalog.n_rows():,} rows in {len(catalog.pixels):,} partitions "
        f"(nside {config.ingest.nside}), {time.perf_counter() - t0:.1f} s."
    )


_SURVEY_HELP = (
    "{name} table(s): Parquet/CSV/FITS files, directories or globs (one or more after the flag, "
    "or the flag repeated), or one HATS catalogue; columns as in docs/crossmatch.md, other names "
    "mapped in [columns.{key}]."
)


def _survey_option(key: str, name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--KEY FILES_OR_CATALOG...``: one survey's tables for ``bigcat crossmatch``."""
    return click.option(
        f"--{key}",
        cls=MultiValueOption,
        required=True,
        metavar="FILES_OR_CATALOG...",
        help=_SURVEY_HELP.format(name=name, key=key),
    )


@cli.command()
@_survey_option("gaia", "Gaia DR3 gaia_source")
@_survey_option("tmass", "2MASS PSC")
@_survey_option("unwise", "unWISE")
@click.option(
    "--out", type=click.Path(file_okay=False), required=True, help="Catalogue directory to create."
)
@click.option(
    "--radius-arcsec",
    type=float,
    default=1.0,
    show_default=True,
    help="Match radius, at each counterpart's epoch (Gaia moved by its proper motion).",
)
@click.option("--nside", type=int, default=None, help="HEALPix nside of the partitions [32].")
@_partition_rows_option
@_config_option
@_scheduler_option
@_workers_option
def crossmatch(
    gaia,
    tmass,
    unwise,
    out,
    radius_arcsec,
    nside,
    partition_rows,
    config_path,
    scheduler,
    n_workers,
):
    """Cross-match Gaia DR3, 2MASS PSC and unWISE into a photometric catalogue (HATS) that
    `bigcat process --input` takes."""
    from bigcat.stages.crossmatch import crossmatch as run_crossmatch
    from bigcat.stages.crossmatch import crossmatch_lock, summary_line

    config = _config(config_path, scheduler, n_workers).replace(
        "ingest", nside=nside, partition_rows=partition_rows
    )
    t0 = time.perf_counter()
    with crossmatch_lock(out), _client(config) as client:  # locked before the cluster starts
        _announce(client)
        catalog = run_crossmatch(
            list(gaia), list(tmass), list(unwise), out, config, client, radius_arcsec=radius_arcsec
        )
    click.echo(summary_line(catalog, time.perf_counter() - t0))


@cli.command()
@click.option(
    "--input",
    "inputs",
    cls=MultiValueOption,
    metavar="CATALOG_OR_FILES...",
    help="Input catalogue or raw files (one or more after the flag, or the flag repeated). "
    "None: a synthetic survey is made.",
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
@_partition_rows_option
@_keep_columns_option
@click.option(
    "--rows",
    type=int,
    default=None,
    help="Rows of the synthetic survey made when no --input is given [200000].",
)
@click.option("--seed", type=int, default=None, help="Seed of the synthetic survey [42].")
@_galaxy_option
@click.option(
    "--prior-table",
    type=click.Path(dir_okay=False, exists=True),
    default=None,
    help="Bailer-Jones et al. (2021) prior CSV (healpix, GGDrlen, GGDalpha, GGDbeta); "
    'sets [stage1] prior = "table"; default: the prior deconvolved from the catalogue\'s '
    'own Gaia parallaxes ([stage1] prior = "deconvolved").',
)
@click.option(
    "--labels",
    "labels",
    cls=MultiValueOption,
    type=click.Path(exists=True),
    metavar="LABEL_FILES...",
    help="APOGEE or LAMOST label tables (Parquet/CSV/FITS; one or more after the flag, or the "
    "flag repeated) for the [Fe/H] network. Default: the synthetic survey's own tables when "
    "no --input is given.",
)
@_config_option
@_scheduler_option
@_workers_option
def process(
    inputs,
    run_dir,
    nside,
    partition_rows,
    keep_columns,
    rows,
    seed,
    galaxy,
    prior_table,
    labels,
    config_path,
    scheduler,
    n_workers,
):
    """Run the pipeline over every partition on a Dask cluster."""
    from bigcat.pipeline import process_with_client

    config = _config(config_path, scheduler, n_workers).replace(
        "ingest", nside=nside, partition_rows=partition_rows, keep_columns=keep_columns
    )
    config = config.replace("process", default_mock_rows=rows)
    config = _with_mock_settings(config, galaxy, {} if seed is None else {"seed": seed})
    config = config.replace("stage1", prior_table=prior_table)
    from bigcat.runlock import run_dir_lock

    # locked before the cluster starts, so a second run on the directory fails at once
    with run_dir_lock(Path(run_dir).resolve(), "bigcat process"), _client(config) as client:
        _announce(client)
        result = process_with_client(
            config,
            client,
            list(inputs) or None,
            run_dir,
            list(labels) or None,
            requested_layout={
                k: v
                for k, v in {"nside": nside, "partition_rows": partition_rows}.items()
                if v is not None
            },
        )
    click.echo(format_summary(result))


@cli.command()
@click.option(
    "--models",
    "models_run",
    type=click.Path(file_okay=False, exists=True),
    required=True,
    metavar="RUN_DIR",
    help="A finished `bigcat process` run whose models (stage-1 folds and calibration, distance "
    "prior, stage-2 network) and settings to apply; it is only read.",
)
@click.option(
    "--input",
    "inputs",
    cls=MultiValueOption,
    required=True,
    metavar="CATALOG_OR_FILES...",
    help="The catalogue or raw files to apply them to (one or more after the flag, or the flag "
    "repeated).",
)
@click.option(
    "--out",
    "run_dir",
    type=click.Path(file_okay=False),
    required=True,
    metavar="RUN_DIR2",
    help="New run directory for the results.",
)
@_config_option
@_scheduler_option
@_workers_option
def predict(models_run, inputs, run_dir, config_path, scheduler, n_workers):
    """Apply a finished run's models to another catalogue: no training."""
    from bigcat.pipeline import predict_with_client
    from bigcat.runlock import run_dir_lock

    config = _config(config_path, scheduler, n_workers)
    if Path(run_dir).resolve() == Path(models_run).resolve():  # said by predict_with_client
        run_dir_lock_ctx: Any = contextlib.nullcontext()
    else:
        run_dir_lock_ctx = run_dir_lock(Path(run_dir).resolve(), "bigcat predict")
    with run_dir_lock_ctx, _client(config) as client:
        _announce(client, skymap=True)
        result = predict_with_client(config, client, models_run, list(inputs), run_dir)
    click.echo(format_summary(result))


@cli.command()
@click.argument("stage", type=click.Choice(["stage1", "stage2"]))
@click.argument("run_dir", type=click.Path(file_okay=False, exists=True))
@click.option(
    "--labels",
    "labels",
    cls=MultiValueOption,
    type=click.Path(exists=True),
    metavar="LABEL_FILES...",
    help="stage2 only: APOGEE or LAMOST label tables (one or more after the flag, or the flag "
    "repeated). Default: RUN_DIR/mock's tables.",
)
@_config_option
@_scheduler_option
@_workers_option
def train(stage, run_dir, labels, config_path, scheduler, n_workers):
    """Train a stage's networks alone on a run's catalogue and write the checkpoints."""
    from bigcat.runlock import run_dir_lock

    config = _config(config_path, scheduler, n_workers)
    run = Path(run_dir).resolve()
    with run_dir_lock(run, f"bigcat train {stage}", create=False):
        _train(stage, run, labels, config)


def _train(stage: str, run: Path, labels: tuple, config: Config) -> None:
    """`bigcat train` under the run directory's lock."""
    from bigcat.catalog.store import Catalog

    t0 = time.perf_counter()
    if stage == "stage1":
        from bigcat.stages.parallax import train_or_load_stage1

        if labels:
            raise click.UsageError(
                "--labels is for `bigcat train stage2`: stage 1 trains on the catalogue's own "
                "Gaia parallaxes and uses no spectroscopic labels. Drop --labels."
            )

        catalog = Catalog.open(run / "stages" / "photometry")
        with _client(config) as client:
            _announce(client)
            models, _, info = train_or_load_stage1(
                client, catalog, config, run / "models" / stage, force=True
            )
        click.echo(
            f"Trained {len(models)} {stage} fold models on {info['training_rows']:,} giants in "
            f"{time.perf_counter() - t0:.1f} s (best validation losses {info['val_loss']}); "
            f"checkpoints in {run / 'models' / stage}."
        )
        return
    from bigcat.errors import InputError
    from bigcat.stages.metallicity import train_or_load_stage2

    label_paths = [str(x) for x in labels] or [
        str(run / "mock" / t) for t in ("apogee.parquet", "lamost.parquet")
    ]
    missing = [x for x in label_paths if not Path(x).exists()]
    if missing:
        raise InputError(
            f"No label tables: {', '.join(missing)} not found. Give APOGEE / LAMOST tables "
            "with --labels (the synthetic survey's own are used only for a mock run)."
        )
    catalog = Catalog.open(run / "stages" / "distance")
    with _client(config) as client:
        _announce(client)
        _, _, info = train_or_load_stage2(
            client, catalog, label_paths, config, run / "models" / stage, force=True
        )
    click.echo(
        f"Trained the [Fe/H] network on {info['train']:,} labelled giants "
        f"({info['validation']:,} validation) in {time.perf_counter() - t0:.1f} s; validation "
        f"robust scatter {info['validation_robust_scatter']:.3f} dex, pull std "
        f"{info['validation_pull_std_core']:.2f} (-1.5 < [Fe/H] < 0.5); checkpoint and "
        f"validation products in {run / 'models' / stage}."
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
        _stage2_line(result),
        *_analysis_lines(result),
        f"  time {result.log.info.get('seconds', 0):.1f} s (per stage above and in run.json)",
        f"  output: {result.catalog.root}  (run log: {result.run_dir / 'run.log'})",
    ]
    return "\n".join(lines)


def _stage2_line(result) -> str:
    s2, fin = result.stage2, result.final
    if "skipped" in s2:
        head = f"  stage 2: skipped ({s2['skipped']}); "
    elif "train" in s2:
        head = (
            f"  stage 2: {s2['labelled_giants']:,} labelled giants ({s2['train']:,} train); "
            f"validation scatter {s2['validation_robust_scatter']:.3f} dex; "
        )
    else:
        head = "  stage 2: saved model; "
    return (
        head + f"{fin.get('with_feh', 0):,} [Fe/H] ({fin.get('feh_extrapolated', 0):,} "
        f"extrapolated); {fin.get('with_position', 0):,} positions, "
        f"{fin.get('with_velocity', 0):,} velocities"
    )


def _analysis_lines(result) -> list[str]:
    a = result.analyses
    if not a or "skipped" in a:
        return [f"  analyses: skipped ({a.get('skipped', 'not run')})"] if a else []
    g, v = a.get("gradient", {}), a.get("vertex", {})
    lines = []
    if g.get("slope_dex_per_kpc") is not None:
        lines.append(
            f"  gradient: {g['slope_dex_per_kpc']:+.3f} +/- {g['slope_error']:.3f} dex/kpc "
            f"({g['n_stars']:,} bulge giants, {g['partitions_read']:,} partitions read)"
        )
    if v.get("metal_rich_fitted_deg") is not None:
        lines.append(
            f"  vertex: metal-rich {v['metal_rich_fitted_deg']:+.1f} +/- "
            f"{v['metal_rich_fitted_err_deg']:.1f} deg (fitted; {v['n_stars']:,} stars; "
            f"{v.get('fits_converged', '?')} of {v.get('fits', '?')} fits converged)"
        )
    else:
        lines.append("  vertex: too few stars in the metal-rich sample to fit")
    return lines


class Stopped(KeyboardInterrupt):
    """A stop signal (SIGTERM, SIGHUP) raised as an exception in the main thread, so that a
    ``bigcat`` command unwinds as on Ctrl-C: ``finally`` blocks run, temporaries are removed,
    the run lock is released (bigcat.runlock) and the cluster is shut down."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


#: The signals turned into :class:`Stopped` while a command runs (SIGINT already raises
#: KeyboardInterrupt).
STOP_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name)
)


def _raise_stopped(signum: int, frame: Any) -> None:
    # a second stop signal while cleaning up ends the process at once (the default action)
    signal.signal(signum, signal.SIG_DFL)
    raise Stopped(signum)


@contextlib.contextmanager
def stop_signals_raise() -> Any:
    """While the block runs, SIGTERM and SIGHUP raise :class:`Stopped` in the main thread
    (elsewhere, or for signals already ignored, nothing changes); the old handlers are put
    back afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {}
    for signum in STOP_SIGNALS:
        old = signal.getsignal(signum)
        if old is signal.SIG_IGN:  # e.g. SIGHUP under nohup: keep ignoring it
            continue
        previous[signum] = old
        signal.signal(signum, _raise_stopped)
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


def interrupted_message(exc: BaseException) -> tuple[str, int]:
    """The line a stopped command ends with, and its exit status (128 + the signal)."""
    signum = exc.signum if isinstance(exc, Stopped) else signal.SIGINT
    what = (
        "interrupted (Ctrl-C)"
        if signum == signal.SIGINT
        else f"stopped by {signal.Signals(signum).name}"
    )
    return (
        f"bigcat: {what}; finished work is kept and nothing partial is left: run the same "
        "command again to resume.",
        128 + int(signum),
    )


def main() -> None:
    """Entry point: bigcat's errors become a one-paragraph message and exit status 1; Ctrl-C,
    SIGTERM and SIGHUP stop the command cleanly (one line, exit status 128 + the signal)."""
    try:
        with stop_signals_raise():
            try:
                cli.main(standalone_mode=False)
            except click.exceptions.Abort as exc:
                # click turns KeyboardInterrupt into Abort; the cause says which signal it was
                if isinstance(exc.__cause__, KeyboardInterrupt):
                    raise exc.__cause__ from None
                click.echo("Aborted.", err=True)
                sys.exit(130)
            except click.ClickException as exc:
                exc.show()
                sys.exit(exc.exit_code)
            except BigcatError as exc:
                click.echo(f"bigcat: error: {exc}", err=True)
                sys.exit(1)
    except KeyboardInterrupt as exc:  # also Stopped; a second Ctrl-C during clean-up too
        message, status = interrupted_message(exc)
        click.echo(message, err=True)
        sys.exit(status)


# --------------------------------------------------------------------------------------------
# bigcat analyze gradient|vertex RUN_DIR  (paper Section 5; bigcat/stages/analyze.py)


@cli.group()
def analyze() -> None:
    """Section 5 analyses of a processed run: the bulge's vertical [Fe/H] gradient, the bar's
    vertex deviation. Results go to RUN_DIR/analysis/ (JSON, figures, Table 3)."""


_analysis_out_option = click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Directory for the JSON, figures and tables [RUN_DIR/analysis].",
)
_full_scan_option = click.option(
    "--full-scan",
    is_flag=True,
    help="Read every partition instead of only those the sky region can reach (for comparison).",
)
_no_figures_option = click.option(
    "--no-figures", is_flag=True, help="Write the JSON only (no PNG figures or tables)."
)
_analysis_seed_option = click.option(
    "--seed", type=int, default=None, help="Seed of the bootstrap / emcee [process.seed]."
)


def _analysis_options(command):
    """The options every `bigcat analyze` subcommand takes."""
    for option in reversed(
        [
            _analysis_out_option,
            _full_scan_option,
            _no_figures_option,
            _analysis_seed_option,
            _config_option,
            _scheduler_option,
            _workers_option,
        ]
    ):
        command = option(command)
    return command


def _analysis_settings(config: Config, seed, no_figures, gradient=None, vertex=None):
    import dataclasses

    from bigcat.stages.analyze import AnalysisParams, analysis_params

    params = analysis_params(config)
    return AnalysisParams(
        gradient=dataclasses.replace(params.gradient, **(gradient or {})),
        vertex=dataclasses.replace(params.vertex, **(vertex or {})),
        seed=params.seed if seed is None else seed,
        region_refine=params.region_refine,
        figures=not no_figures,
    )


@analyze.command("gradient")
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option(
    "--bootstrap", type=int, default=None, help="Bootstrap resamples of the slope error [300]."
)
@_analysis_options
def analyze_gradient(
    run_dir, bootstrap, out_dir, full_scan, no_figures, seed, config_path, scheduler, n_workers
):
    """Vertical metallicity gradient of the bulge (R < 2.5 kpc): gradient.json and Fig. 11."""
    from bigcat.runlock import run_dir_lock
    from bigcat.stages.analyze import open_analysis_catalog, run_gradient

    config = _config(config_path, scheduler, n_workers)
    gradient = {"n_bootstrap": bootstrap} if bootstrap is not None else None
    params = _analysis_settings(config, seed, no_figures, gradient=gradient)
    # the lock first (a run in progress is reported as such), then the catalogue's check,
    # before a cluster is started
    with run_dir_lock(Path(run_dir).resolve(), "bigcat analyze gradient", create=False):
        open_analysis_catalog(run_dir, "gradient")
        with _client(config) as client:
            _announce(client)
            out = run_gradient(
                client, run_dir, config, params=params, full_scan=full_scan, out_dir=out_dir
            )
    peak = out.get("peak") or {}
    peak_text = (
        f"; median peaks at |Z| = {1000 * peak['abs_z_kpc']:.0f} pc, {peak['feh']:.3f} dex"
        if peak.get("abs_z_kpc") is not None
        else ""
    )
    slope, err = out.get("slope_dex_per_kpc"), out.get("slope_error")
    slope_text = (
        f"{slope:.4f} +/- {err:.4f} dex/kpc"
        if slope is not None and err is not None
        else "n/a dex/kpc"
    )
    truth = out.get("truth") or {}
    truth_text = (
        f" (injected {truth['slope_dex_per_kpc']})"
        if truth.get("slope_dex_per_kpc") is not None
        else ""
    )
    lo, hi = out["z_range_kpc"]
    click.echo(
        f"bigcat analyze gradient: {slope_text}{truth_text} over {lo} <= |Z| <= {hi} kpc from "
        f"{out['n_stars']:,} stars{peak_text}.\n  read {out['partitions_read']:,} of "
        f"{out['partitions_total']:,} partitions in {out['seconds']:.1f} s; "
        f"output {out['files']['json']}"
    )


@analyze.command("vertex")
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--walkers", type=int, default=None, help="emcee walkers per fit [48].")
@click.option("--burn", type=int, default=None, help="emcee burn-in steps [1000].")
@click.option("--steps", type=int, default=None, help="emcee production steps [4000].")
@_analysis_options
def analyze_vertex_cmd(
    run_dir,
    walkers,
    burn,
    steps,
    out_dir,
    full_scan,
    no_figures,
    seed,
    config_path,
    scheduler,
    n_workers,
):
    """Vertex deviation of the bar per [Fe/H] sample: vertex.json, Fig. 12, 13 and Table 3."""
    from bigcat.analysis.vertex import describe_cut_counts
    from bigcat.stages.analyze import open_analysis_catalog, run_vertex

    config = _config(config_path, scheduler, n_workers)
    vertex = {
        k: v
        for k, v in {"n_walkers": walkers, "n_burn": burn, "n_steps": steps}.items()
        if v is not None
    }
    params = _analysis_settings(config, seed, no_figures, vertex=vertex)  # checks the values
    from bigcat.runlock import run_dir_lock

    with run_dir_lock(Path(run_dir).resolve(), "bigcat analyze vertex", create=False):
        open_analysis_catalog(run_dir, "vertex")  # fail before starting a cluster
        with _client(config) as client:
            _announce(client)
            out = run_vertex(
                client, run_dir, config, params=params, full_scan=full_scan, out_dir=out_dir
            )
    lines = [
        f"bigcat analyze vertex: {out['n_stars_selected']:,} stars selected; read "
        f"{out['partitions_read']:,} of {out['partitions_total']:,} partitions; "
        f"{out['seconds']:.1f} s",
    ]
    cascade = describe_cut_counts(out.get("cut_counts"))
    if cascade:
        lines.append(f"  selection: {cascade}")
    for row in out.get("table3", []):
        angle, err = row["vertex_deg"], row["vertex_err_deg"]
        value = f"{angle:.2f} +/- {err:.2f} deg" if angle is not None else "not fitted"
        if angle is not None and not row.get("converged"):
            mc = row.get("mcse_vertex_deg")
            mc_text = f"{mc:.2f} deg" if mc is not None and math.isfinite(mc) else "unknown"
            value += (
                " (chains NOT converged by the tau rule; Monte-Carlo error of the angle "
                f"{mc_text}; the fit's verdict in vertex.json says by how much)"
            )
        lines.append(
            f"  {row['sample']:<10} {row['variant']:<6} ({row['feh_range']}, n = {row['n_stars']:,}): {value}"
        )
    lines.append(f"  output {out['files']['json']}")
    click.echo("\n".join(lines))


@cli.command()
@click.argument("run_dir", type=click.Path(file_okay=False, exists=True))
def verify(run_dir):
    """Check a run directory (or a catalogue, or a `bigcat mock` survey) for damaged or
    unfinished files: partition footers, row counts and checksums, checkpoints, the survey's
    parts. Exit status 1 listing what is wrong, 0 when clean."""
    from bigcat.stages.verify import format_verification, verify_run

    result = verify_run(run_dir)
    click.echo(format_verification(result))
    if not result.ok:
        sys.exit(1)


@cli.command()
@click.argument("run_dir", type=click.Path(file_okay=False, exists=True))
@click.option(
    "--scheduler",
    default=None,
    metavar="tcp://HOST:PORT",
    help="Aggregate the catalogue on this Dask scheduler (default: in this process).",
)
@click.option(
    "--workers",
    "n_workers",
    type=int,
    default=None,
    help="Aggregate on an embedded local cluster of this many workers (default: in this process).",
)
@_config_option
def report(run_dir, scheduler, n_workers, config_path):
    """Write RUN_DIR/report.html: Tables 1-3, the paper's figures, sky maps and provenance."""
    from bigcat.report import build_report

    t0 = time.perf_counter()
    if scheduler or n_workers:
        config = _config(config_path, scheduler, n_workers)
        with _client(config) as client:
            _announce(client)
            path = build_report(run_dir, client)
    else:
        path = build_report(run_dir)
    click.echo(
        f"Report: {path} ({time.perf_counter() - t0:.1f} s; figures in {path.parent / 'report'})"
    )
