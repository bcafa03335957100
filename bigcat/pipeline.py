"""Stage order, resume, provenance and the run log of `bigcat process`.

A run directory holds (SCHEMA.md)::

    RUN_DIR/mock/          the synthetic survey, when no input was given
    RUN_DIR/input/         the ingested input catalogue, when raw files were given
    RUN_DIR/stages/photometry/  the photometry stage's catalogue (HATS layout)
    RUN_DIR/stages/stage1/ the stage-1 catalogue (photometric and combined parallaxes)
    RUN_DIR/stages/distance/ the distance catalogue (distances, absolute magnitudes)
    RUN_DIR/models/stage1/ the stage-1 fold models (state dict + JSON sidecar each)
    RUN_DIR/models/prior/  the deconvolved distance prior (with [stage1] prior = "deconvolved")
    RUN_DIR/models/stage2/ the [Fe/H] model, its validation products and the label report
    RUN_DIR/catalog/       the processed catalogue (HATS layout): [Fe/H] and kinematics added
    RUN_DIR/run.log        log lines of every run in this directory
    RUN_DIR/run.json       the last run: config, cluster, per-stage timings and row counts
"""

from __future__ import annotations

import json
import logging
import platform
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from distributed import Client

from bigcat import __version__
from bigcat.atomic import write_json_atomic
from bigcat.catalog.store import Catalog
from bigcat.cluster import dask_client, describe_cluster
from bigcat.config import Config
from bigcat.errors import InputError
from bigcat.runlock import run_dir_lock
from bigcat.stages.distance import load_distance_prior, load_run_prior, run_distances
from bigcat.stages.ingest import ingest
from bigcat.stages.metallicity import (
    FehDebias,
    TooFewLabelsError,
    load_stage2_model,
    run_final,
    train_or_load_stage2,
)
from bigcat.stages.parallax import load_stage1, run_stage1, train_or_load_stage1
from bigcat.stages.photometry import run_photometry_stage

logger = logging.getLogger(__name__)


@dataclass
class RunLog:
    """Per-stage timings and row counts of one run, saved as run.json."""

    run_dir: Path
    stages: list[dict] = field(default_factory=list)
    info: dict = field(default_factory=dict)
    #: called with each stage's name as it starts (the live sky map's board)
    on_stage: Callable[[str], None] | None = None

    @contextmanager
    def stage(self, name: str) -> Iterator[dict]:
        """Time a stage; the yielded dict collects its row counts."""
        record: dict = {"stage": name, "started_at": round(time.time(), 3)}
        t0 = time.perf_counter()
        logger.info("stage %s: started", name)
        if self.on_stage is not None:
            self.on_stage(name)
        yield record
        record["seconds"] = round(time.perf_counter() - t0, 3)
        self.stages.append(record)
        logger.debug(
            "stage %s: %.1f s %s",
            name,
            record["seconds"],
            {k: v for k, v in record.items() if k not in ("stage", "seconds", "started_at")},
        )
        logger.info("%s", stage_line(record), extra={"stage_line": True})
        self.save()

    def save(self) -> None:
        """Write run.json atomically."""
        write_json_atomic(
            {**self.info, "stages": self.stages}, self.run_dir / "run.json", indent=2, default=str
        )


def _count(record: dict, key: str) -> str:
    value = record.get(key)
    return f"{value:,}" if isinstance(value, int) else "-"


def _pct(part: int | None, whole: int | None) -> str:
    return f"{100 * part / whole:.1f}%" if part is not None and whole else "-"


def _stage_figure(record: dict) -> tuple[str, str, str]:
    """(count, what is counted, one key figure) of a finished stage's record."""
    name, r = record["stage"], record
    reused = " (reused)" if r.get("models_reused") else ""
    computed = r.get("partitions_computed")
    parts = (
        f"{computed:,} of {r['partitions']:,} partitions computed"
        if isinstance(computed, int) and isinstance(r.get("partitions"), int)
        else ""
    )
    if name == "mock":
        return _count(r, "rows"), "stars", "synthetic survey with known truth"
    if name == "ingest":
        return _count(r, "rows"), "rows", f"{_count(r, 'partitions')} partitions"
    if name == "photometry":
        return (
            _count(r, "rows"),
            "rows",
            (f"{_count(r, 'giants')} giants ({_pct(r.get('giants'), r.get('rows'))}); {parts}"),
        )
    if name == "stage1-train":
        losses = [x for x in r.get("val_loss") or [] if x == x]
        loss = f"median validation loss {sorted(losses)[len(losses) // 2]:.3f}" if losses else ""
        return _count(r, "training_rows"), "giants", f"{len(losses)} fold models{reused}; {loss}"
    if name == "prior":
        return "", "", str(r.get("source", ""))
    if name == "stage1":
        return (
            _count(r, "giants_predicted"),
            "giants",
            (
                f"NN sigma below Gaia's for "
                f"{_pct(r.get('nn_better_than_gaia'), r.get('giants_predicted'))}; {parts}"
            ),
        )
    if name == "distance":
        return _count(r, "with_distance"), "giants", f"{parts}"
    if name == "stage2-train":
        if "skipped" in r:
            return "", "", f"skipped: {r['skipped']}"
        scatter = r.get("validation_robust_scatter")
        text = f"validation scatter {scatter:.3f} dex" if isinstance(scatter, float) else ""
        return _count(r, "labelled_giants"), "labels", f"{text}{reused}"
    if name == "stage2":
        return (
            _count(r, "with_feh"),
            "[Fe/H]",
            (f"{_count(r, 'with_velocity')} with velocities; {parts}"),
        )
    if name == "analyze-gradient":
        slope, err = r.get("slope_dex_per_kpc"), r.get("slope_error")
        text = f"{slope:+.3f} +/- {err:.3f} dex/kpc" if slope is not None and err else "no fit"
        return _count(r, "n_stars"), "stars", f"gradient {text}"
    if name == "analyze-vertex":
        angle, err = r.get("metal_rich_fitted_deg"), r.get("metal_rich_fitted_err_deg")
        text = (
            f"metal-rich vertex {angle:+.1f} +/- {err:.1f} deg"
            if angle is not None
            else "metal-rich vertex not fitted"
        )
        return _count(r, "n_stars"), "stars", text
    if name == "report":
        return "", "", str(r.get("path", ""))
    return _count(r, "rows"), "rows" if "rows" in r else "", ""


def stage_line(record: dict) -> str:
    """The one line ``bigcat process`` prints when a stage ends: name, count, seconds, one
    key figure (the whole record is in run.json and, at DEBUG, in run.log)."""
    count, what, figure = _stage_figure(record)
    return f"  {record['stage']:<17}{count:>11} {what:<7}{record['seconds']:>7.1f} s  {figure}"


@contextmanager
def run_log_file(run_dir: Path) -> Iterator[None]:
    """Append bigcat's log records to RUN_DIR/run.log while the run lasts."""
    run_dir.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(run_dir / "run.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("bigcat")
    root.addHandler(handler)
    old_level = root.level
    if not root.isEnabledFor(logging.INFO):
        root.setLevel(logging.INFO)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
        handler.close()


def is_catalog(path: Path) -> bool:
    """True for a HATS catalogue directory."""
    return path.is_dir() and (path / "partition_info.csv").exists()


def check_catalog_layout(
    catalog: Catalog, nside: int | None = None, partition_rows: int | None = None
) -> None:
    """Refuse an explicit ``--nside`` / ``--partition-rows`` that an existing input catalogue
    was not made with (its layout is used as it is; nothing is re-partitioned silently).

    Raises
    ------
    InputError
        Naming the catalogue, its layout, the request and the fix.
    """
    from bigcat.catalog.healpix import order_from_nside

    problems = []
    finest = max((o for o, _ in catalog.pixels), default=0)
    recorded_nside = catalog.properties.get("nside")
    have_order = order_from_nside(int(recorded_nside)) if recorded_nside else finest
    if nside is not None and order_from_nside(nside) != have_order:
        problems.append(
            f"--nside {nside} (the catalogue's finest order is {have_order}, nside {2**have_order})"
        )
    have_rows = catalog.properties.get("partition_threshold")
    if partition_rows is not None and have_rows is not None and partition_rows != int(have_rows):
        problems.append(f"--partition-rows {partition_rows} (it was made with {have_rows})")
    if problems:
        raise InputError(
            f"{catalog.root} is already a HEALPix catalogue, used as it is, but "
            f"{' and '.join(problems)} asks for another layout. Drop the option to use the "
            "catalogue's own layout, or re-partition it first with `bigcat ingest "
            f"{catalog.root} --out NEW_CATALOG --nside N --partition-rows M` and pass that."
        )


@dataclass
class RunResult:
    """What `bigcat process` made."""

    run_dir: Path
    catalog: Catalog
    log: RunLog
    photometry: dict
    stage1: dict
    stage2: dict = field(default_factory=dict)
    final: dict = field(default_factory=dict)
    analyses: dict = field(default_factory=dict)


def process_with_client(
    config: Config,
    client: Client,
    inputs: list[str] | None = None,
    run_dir: str | Path = "bigcat-run",
    labels: list[str] | None = None,
    requested_layout: dict | None = None,
    models_from: str | Path | None = None,
) -> RunResult:
    """Run every stage of `bigcat process` on an existing Dask client.

    The run directory is locked for the whole run (:mod:`bigcat.runlock`): a second
    command on it is refused, naming this one.

    ``models_from``: a finished run directory whose models (stage-1 folds and calibration,
    distance prior, stage-2 network) are applied instead of training (`bigcat predict`; use
    :func:`predict_with_client`, which also takes that run's settings). It is only read.

    ``requested_layout`` (``nside``, ``partition_rows``): what the user asked for explicitly;
    given an existing catalogue as input, a different layout is an error
    (:func:`check_catalog_layout`).

    ``labels``: APOGEE / LAMOST tables for stage 2 (the synthetic survey's own when no input
    is given). Without labels a stage-2 model saved in RUN_DIR/models/stage2 is used; without
    either, [Fe/H] is NaN (and the summary says so) while the kinematics are still computed.
    """
    # absolute paths: tasks may run on workers started from other directories
    run_dir = Path(run_dir).resolve()
    inputs = [str(Path(i).resolve()) for i in inputs] if inputs else None
    label_paths = [str(Path(x).resolve()) for x in labels] if labels else None
    models_run = Path(models_from).resolve() if models_from is not None else None
    command = "bigcat predict" if models_run is not None else "bigcat process"
    with run_dir_lock(run_dir, command):
        return _process_locked(
            config, client, inputs, run_dir, label_paths, requested_layout, models_run
        )


def _process_locked(
    config: Config,
    client: Client,
    inputs: list[str] | None,
    run_dir: Path,
    label_paths: list[str] | None,
    requested_layout: dict | None,
    models_run: Path | None,
) -> RunResult:
    """:func:`process_with_client` under the run directory's lock."""
    mock_labels = False
    t0 = time.perf_counter()
    with run_log_file(run_dir):
        from bigcat.dashboard import Board, NullBoard, attach_dashboard

        board: Board | NullBoard
        try:  # the live sky map on the dashboard (docs/dashboard.md); never fails a run
            board = attach_dashboard(client, run_dir)
        except Exception as exc:  # noqa: BLE001
            logger.warning("the live sky map is not available: %s", exc)
            board = NullBoard()
        log = RunLog(run_dir)
        log.on_stage = board.stage_started
        log.info = {
            "bigcat_version": __version__,
            "python": platform.python_version(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "config": config.to_dict(),
            "cluster": describe_cluster(client),
            "inputs": list(inputs or []),
        }
        if models_run is not None:
            log.info["models_from"] = model_run_provenance(models_run)
        logger.info(
            "bigcat %s process -> %s (dashboard %s)", __version__, run_dir, client.dashboard_link
        )
        if not inputs:
            from bigcat.stages.mock import make_mock  # the synthetic survey: only without input

            mock_dir = run_dir / "mock"
            with log.stage("mock") as rec:
                params = config.mock
                summary = make_mock(client, params, config.process.default_mock_rows, mock_dir)
                rec["rows"] = summary["rows"]
            inputs = [str(mock_dir / "photometry.parquet")]
            log.info["inputs"] = inputs
            if label_paths is None:
                label_paths = [str(mock_dir / "apogee.parquet"), str(mock_dir / "lamost.parquet")]
                mock_labels = True
        log.info["labels"] = list(label_paths or [])
        if len(inputs) == 1 and is_catalog(Path(inputs[0])):
            catalog = Catalog.open(inputs[0])
            check_catalog_layout(catalog, **(requested_layout or {}))
        else:
            with log.stage("ingest") as rec:
                catalog = ingest(inputs, run_dir / "input", config, client)
                rec["rows"] = catalog.n_rows()
                rec["partitions"] = len(catalog.pixels)
        with log.stage("photometry") as rec:
            phot, totals = run_photometry_stage(
                client,
                catalog,
                run_dir / "stages" / "photometry",
                config,
                on_done=board.on_done("photometry"),
            )
            rec.update(totals)
        with log.stage("stage1-train" if models_run is None else "stage1-models") as rec:
            if models_run is None:
                models, calibration, info = train_or_load_stage1(
                    client, phot, config, run_dir / "models" / "stage1"
                )
            else:
                models, calibration, info = load_stage1(models_run / "models" / "stage1")
            rec.update(info)
        with log.stage("stage1") as rec:
            stage1_cat, stage1 = run_stage1(
                client,
                phot,
                run_dir / "stages" / "stage1",
                models,
                config.stage1.mc_passes,
                config.process.seed,
                config.process.target_task_rows,
                extra_fingerprint=json.dumps(
                    {
                        "models": [m.training_fingerprint for m in models],
                        "config": config.to_dict()["stage1"],
                        "seed": config.process.seed,
                    },
                    sort_keys=True,
                ),
                calibration=calibration,
                on_done=board.on_done("stage1"),
            )
            rec.update(stage1)
        with log.stage("prior") as rec:  # learnt from the catalogue unless set otherwise
            if models_run is None:
                prior, prior_info = load_distance_prior(
                    client, stage1_cat, config, run_dir / "models" / "prior"
                )
            else:
                prior, prior_info = load_run_prior(models_run, config)
            rec.update(prior_info)
            rec["source"] = prior.source
        with log.stage("distance") as rec:
            dist_cat, dist = run_distances(
                client,
                stage1_cat,
                run_dir / "stages" / "distance",
                prior,
                config.photometry,
                config.process.target_task_rows,
                on_done=board.on_done("distance"),
            )
            rec.update(dist)
        stage1["with_distance"] = dist["with_distance"]
        models2 = run_dir / "models" / "stage2"
        stage2: dict = {}
        feh_model = None
        label_range = (float("nan"), float("nan"))
        c_weight = config.stage2.c_weight
        sigma_scale = 1.0
        debias = None
        if models_run is not None:
            feh_model, label_range, c_weight, sigma_scale, debias = load_stage2_model(
                models_run / "models" / "stage2"
            )
            stage2 = {"models_from": str(models_run / "models" / "stage2")}
        elif label_paths:
            with log.stage("stage2-train") as rec:
                try:
                    feh_model, label_range, stage2 = train_or_load_stage2(
                        client, dist_cat, label_paths, config, models2
                    )
                except TooFewLabelsError as exc:
                    if not mock_labels:
                        raise
                    # a small synthetic survey: say so, and go on without [Fe/H]
                    stage2 = {"skipped": "too few labelled giants in the synthetic survey"}
                    logger.warning("stage 2 skipped: %s", exc)
                rec.update(stage2)
        elif (models2 / "model.json").exists():
            feh_model, label_range, c_weight, sigma_scale, debias = load_stage2_model(models2)
            stage2 = {"models_reused": True, "label_range": list(label_range)}
            logger.info("stage 2: no labels given; using the saved model in %s", models2)
        else:
            stage2 = {"skipped": "no label tables (--labels) and no saved stage-2 model"}
            logger.warning(
                "stage 2 skipped: no label tables were given (--labels) and %s holds no model; "
                "[Fe/H] columns will be NaN.",
                models2,
            )
        with log.stage("stage2") as rec:
            out, final = run_final(
                client,
                dist_cat,
                run_dir / "catalog",
                feh_model,
                label_range,
                config.stage2.mc_passes,
                config.process.seed,
                config.process.target_task_rows,
                extra_fingerprint=json.dumps(
                    {"config": config.to_dict()["stage2"], "seed": config.process.seed},
                    sort_keys=True,
                ),
                c_weight=c_weight,
                sigma_scale=stage2.get("sigma_scale", sigma_scale),
                debias=FehDebias.from_dict(stage2["debias"]) if "debias" in stage2 else debias,
                on_done=board.on_done("stage2"),
            )
            rec.update({k: v for k, v in final.items() if k != "table2"})
        log.info["table2"] = final["table2"]
        analyses = run_analyses(client, config, run_dir, log, final)
        log.info["seconds"] = round(time.perf_counter() - t0, 3)
        log.info["output"] = str(out.root)
        log.save()
        if config.process.report:
            from bigcat.report import build_report

            with log.stage("report") as rec:
                rec["path"] = str(build_report(run_dir, client))
            log.info["seconds"] = round(time.perf_counter() - t0, 3)
            log.save()
        board.close()
    return RunResult(
        run_dir=run_dir,
        catalog=out,
        log=log,
        photometry=totals,
        stage1=stage1,
        stage2=stage2,
        final=final,
        analyses=analyses,
    )


def model_run_provenance(models_run: Path) -> dict:
    """What identifies the models a `bigcat predict` run applied: their directory, bigcat
    version and the sha256 of every model file (provenance; also what the read-only test
    compares)."""
    import hashlib

    files = {}
    for path in sorted((models_run / "models").rglob("*")):
        if path.is_file() and path.suffix in (".pt", ".json", ".npz"):
            files[str(path.relative_to(models_run))] = hashlib.sha256(
                path.read_bytes()
            ).hexdigest()[:16]
    run_json = models_run / "run.json"
    version = json.loads(run_json.read_text()).get("bigcat_version") if run_json.exists() else None
    return {"run_dir": str(models_run), "bigcat_version": version, "files": files}


def model_run_config(models_run: Path, config: Config) -> Config:
    """``config`` with a finished run's photometry, stage-1 and stage-2 settings (the models
    were made with them), for `bigcat predict`.

    Raises
    ------
    InputError
        When ``models_run`` is not a finished run, was made by another bigcat version, or
        ``config`` asks for other photometry/stage settings (naming each difference).
    """
    from bigcat.config import config_from_dict

    run_json = models_run / "run.json"
    missing = [
        p
        for p in (run_json, models_run / "models" / "stage1", models_run / "models" / "stage2")
        if not p.exists()
    ]
    if missing:
        raise InputError(
            f"{models_run}: not a finished `bigcat process` run ({', '.join(map(str, missing))} "
            "missing). Give --models the run directory whose models to apply."
        )
    info = json.loads(run_json.read_text())
    version = info.get("bigcat_version")
    if version != __version__:
        raise InputError(
            f"{models_run}: its models were made by bigcat {version}, this is bigcat "
            f"{__version__}; their inputs or settings may differ. Retrain with `bigcat process` "
            "(or use the bigcat version that made them)."
        )
    made = config_from_dict(info["config"], str(run_json))
    default = Config()
    differences = []
    for section in ("photometry", "stage1", "stage2"):
        mine = getattr(config, section).__dict__
        theirs = getattr(made, section).__dict__
        base = getattr(default, section).__dict__
        for key, value in mine.items():
            if value != base[key] and value != theirs[key]:
                differences.append(f"[{section}] {key} = {value!r} (the models: {theirs[key]!r})")
    if differences:
        raise InputError(
            f"The models of {models_run} were made with other settings than asked for: "
            + "; ".join(differences)
            + ". Drop those settings to apply the models as they are, or retrain with "
            "`bigcat process`."
        )
    import dataclasses

    return dataclasses.replace(
        config, photometry=made.photometry, stage1=made.stage1, stage2=made.stage2
    )


def predict_with_client(
    config: Config,
    client: Client,
    models_run: str | Path,
    inputs: list[str],
    run_dir: str | Path,
) -> RunResult:
    """`bigcat predict`: apply a finished run's models to another catalogue, no training.

    The model run's photometry, stage-1 and stage-2 settings are used (refused when
    ``config`` asks for others); each star is predicted by the stage-1 model of its own fold
    (:func:`bigcat.catalog.sampling.fold_of`), which never saw it, exactly as inside `bigcat
    process` (a star of the model run's own catalogue gets the same value; a new star is one
    no fold trained on, so any fold would do, and its hashed fold is the one used); the
    model run's distance prior and stage-2 network follow. Provenance (run.json
    ``models_from``) names the model run and the hash of every model file. Nothing is
    written to ``models_run``.
    """
    models_run = Path(models_run).resolve()
    if not inputs:
        raise InputError(
            "bigcat predict needs --input: the catalogue or files to apply the models to."
        )
    if Path(run_dir).resolve() == models_run:
        raise InputError(
            f"--out {run_dir} is the model run itself: give a new run directory (the model run "
            "is only read)."
        )
    config = model_run_config(models_run, config)
    return process_with_client(config, client, inputs, run_dir, models_from=models_run)


def run_analyses(client: Client, config: Config, run_dir: Path, log: RunLog, final: dict) -> dict:
    """`bigcat analyze gradient` and `vertex` on the processed catalogue (when enabled)."""
    from bigcat.stages.analyze import run_gradient, run_vertex

    if not config.process.analyses:
        return {"skipped": "process.analyses = false"}
    if not final.get("with_feh"):
        logger.warning("analyses skipped: the catalogue has no [Fe/H] (stage 2 did not run)")
        return {"skipped": "no [Fe/H] in the catalogue"}
    results: dict = {}
    with log.stage("analyze-gradient") as rec:
        g = run_gradient(client, run_dir, config)
        rec.update(
            {
                k: g.get(k)
                for k in ("n_stars", "slope_dex_per_kpc", "slope_error", "partitions_read")
            }
        )
        results["gradient"] = rec
    with log.stage("analyze-vertex") as rec:
        v = run_vertex(client, run_dir, config)
        rich = v.get("samples", {}).get("metal_rich", {}).get("fitted", {})
        fits = [
            f
            for smp in v.get("samples", {}).values()
            for f in (smp.get("fitted"), smp.get("zeroed"))
            if isinstance(f, dict) and f.get("vertex_deg") is not None
        ]
        rec.update(
            {
                "metal_rich_fitted_deg": rich.get("vertex_deg"),
                "metal_rich_fitted_err_deg": rich.get("vertex_err_deg"),
                "n_stars": rich.get("n_stars"),
                "partitions_read": v.get("partitions_read"),
                "fits_converged": sum(bool(f.get("converged")) for f in fits),
                "fits": len(fits),
            }
        )
        results["vertex"] = rec
    return results


def process(
    config: Config,
    inputs: list[str] | None = None,
    run_dir: str | Path = "bigcat-run",
    labels: list[str] | None = None,
) -> RunResult:
    """`bigcat process`: start (or connect to) the cluster named by ``config`` and run."""
    with dask_client(config.cluster) as client:
        return process_with_client(config, client, inputs, run_dir, labels)
