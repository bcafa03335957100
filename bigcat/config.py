"""Typed settings, one dataclass per concern; a TOML file and CLI options override the defaults.

Defaults are the paper's values (METHOD.md). A TOML file has one table per section::

    [cluster]
    n_workers = 4
    [ingest]
    nside = 32
    [photometry]
    max_ruwe = 1.4
    [columns]            # bigcat name = your file's name
    source_id = "SOURCE_ID"
    [columns.tmass]      # `bigcat crossmatch`: the same for one survey's own table
    designation = "DESIGNATION"

A misspelt section or key is an error with "Did you mean ...?".
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bigcat.analysis.gradient import GradientParams
from bigcat.analysis.mixture import MixturePrior
from bigcat.analysis.vertex import VertexParams
from bigcat.catalog.crossmatch import CrossmatchParams
from bigcat.catalog.healpix import order_from_nside
from bigcat.errors import ConfigError, did_you_mean
from bigcat.photometry.params import PhotometryParams
from bigcat.schema import INPUT_COLUMNS, SURVEY_COLUMNS
from bigcat.synthetic.params import MockParams


@dataclass(frozen=True)
class ClusterConfig:
    """Which Dask cluster runs the work (one of three kinds; see bigcat/cluster.py).

    Attributes
    ----------
    scheduler
        Address of an existing scheduler (``tcp://HOST:PORT`` or ``tls://HOST:PORT``; TLS
        credentials come from Dask's ``distributed.comm.tls`` settings). Empty: start an embedded
        LocalCluster (or use ``DASK_SCHEDULER_ADDRESS`` when that is set), or a dask-jobqueue
        cluster when ``jobqueue`` is set.
    n_workers
        Workers of the embedded cluster; 0 = one per core.
    threads_per_worker
        Threads per embedded worker.
    memory_limit
        Memory limit per embedded worker ("auto" = machine memory / workers, or e.g. "4GiB").
    dashboard_address
        Where the embedded cluster's dashboard listens; loopback only by default.
    host
        Interface the embedded scheduler listens on; loopback only by default.
    jobqueue
        Batch system of a dask-jobqueue cluster started for the run: "slurm", "pbs", "sge",
        "lsf", "oar", "moab" or "htcondor"; empty = none. Job sizes, queue, account, walltime
        and the scheduler's interface are dask-jobqueue's own settings (``jobqueue.<system>`` in
        the Dask config, e.g. deploy/slurm/jobqueue.yaml). Needs ``pip install dask-jobqueue``.
    jobqueue_jobs
        Batch jobs submitted for a dask-jobqueue cluster (each runs the workers its
        ``processes`` setting says).
    """

    scheduler: str = ""
    n_workers: int = 0
    threads_per_worker: int = 1
    memory_limit: str = "auto"
    dashboard_address: str = "127.0.0.1:8787"
    host: str = "127.0.0.1"
    jobqueue: str = ""
    jobqueue_jobs: int = 1

    def __post_init__(self) -> None:
        if self.n_workers < 0:
            raise ConfigError(f"cluster.n_workers = {self.n_workers}: must be 0 (auto) or more.")
        if self.threads_per_worker < 1:
            raise ConfigError(
                f"cluster.threads_per_worker = {self.threads_per_worker}: must be at least 1."
            )
        systems = ("slurm", "pbs", "sge", "lsf", "oar", "moab", "htcondor")  # dask-jobqueue's
        if self.jobqueue and self.jobqueue not in systems:
            raise ConfigError(
                f"cluster.jobqueue = {self.jobqueue!r}: not a batch system dask-jobqueue "
                f"knows.{did_you_mean(self.jobqueue, systems)} Choose one of "
                f"{', '.join(systems)}, or leave it empty."
            )
        if self.jobqueue_jobs < 1:
            raise ConfigError(f"cluster.jobqueue_jobs = {self.jobqueue_jobs}: must be at least 1.")
        if self.scheduler and self.jobqueue:
            raise ConfigError(
                f"cluster.scheduler = {self.scheduler!r} and cluster.jobqueue = "
                f"{self.jobqueue!r} are both set (the scheduler may come from --scheduler or "
                "DASK_SCHEDULER_ADDRESS): use an existing scheduler or start a jobqueue "
                "cluster, not both."
            )


@dataclass(frozen=True)
class IngestConfig:
    """How raw tables become a HEALPix catalogue.

    Attributes
    ----------
    nside
        HEALPix nside of the partitions (power of two; 32 = order 5, the Bailer-Jones prior order).
    chunk_rows
        Rows read per input chunk (bounds memory: inputs may be larger than memory).
    partition_rows
        HATS adaptive partitions, as hats-import makes them (the default, N = 50,000): ``nside``
        is the finest order, and the four pixels of a parent are merged into the parent
        (repeatedly, down to order 0) while it holds at most N rows. Sparse sky then comes in
        few large partitions instead of many files of a few rows each, so the per-file cost
        stops dominating. 0: one partition per pixel at the ``nside`` order (fixed layout).
        The default was chosen by measurement (benchmarks/partition_threshold.py; figures in
        benchmarks/README.md). Results do not depend on the layout.
    keep_columns
        Which input columns outside the input contract (the user's own ids, flags, survey
        designations) are carried unchanged through every stage to the final catalogue:
        ``"all"`` (the default: every such column that every input file has), ``"none"``, or
        a list of names (each must be in every input file).
    """

    nside: int = 32
    chunk_rows: int = 250_000
    partition_rows: int = 50_000
    keep_columns: str | tuple[str, ...] = "all"

    def __post_init__(self) -> None:
        keep = self.keep_columns
        if isinstance(keep, str) and keep not in ("all", "none"):
            keep = tuple(c.strip() for c in keep.split(",") if c.strip())
        elif isinstance(keep, list | tuple):
            keep = tuple(str(c) for c in keep)
        elif not isinstance(keep, str):
            raise ConfigError(
                f'ingest.keep_columns = {keep!r}: use "all", "none" or a list of column names.'
            )
        object.__setattr__(self, "keep_columns", keep)
        order_from_nside(self.nside)
        if self.chunk_rows < 1:
            raise ConfigError(f"ingest.chunk_rows = {self.chunk_rows}: must be at least 1.")
        if self.partition_rows < 0:
            raise ConfigError(
                f"ingest.partition_rows = {self.partition_rows}: must be 0 (one partition per "
                "nside pixel) or a positive row threshold for adaptive partitions."
            )

    @property
    def order(self) -> int:
        """HEALPix order of ``nside``."""
        return order_from_nside(self.nside)


@dataclass(frozen=True)
class ProcessConfig:
    """How per-partition stages are scheduled.

    Attributes
    ----------
    target_task_rows
        Small neighbouring partitions are grouped into one Dask task of about this many rows
        (each partition is still written to its own file): fewer, larger tasks cost less
        scheduling per row. A stage's kernel is called on at most this many rows at a time (a
        larger partition is processed in pieces), which bounds a worker's memory.
    default_mock_rows
        Rows of the synthetic survey made when ``bigcat process`` is given no input.
    seed
        Seed of every random stream (keyed by stage and pixel).
    analyses
        Run `bigcat analyze gradient` and `vertex` at the end of `bigcat process`.
    report
        Write report.html at the end of `bigcat process`.
    """

    target_task_rows: int = 60_000
    default_mock_rows: int = 200_000
    seed: int = 42
    analyses: bool = True
    report: bool = True

    def __post_init__(self) -> None:
        if self.target_task_rows < 1:
            raise ConfigError(
                f"process.target_task_rows = {self.target_task_rows}: must be at least 1."
            )


#: The default distance prior (see ``Stage1Config.prior``).
PRIOR_DEFAULT = "deconvolved"


@dataclass(frozen=True)
class Stage1Config:
    """Stage 1: photometric parallaxes by cross-training (METHOD.md section 4).

    Attributes
    ----------
    n_folds
        Cross-training folds (fold = hash(source_id) mod n_folds); the paper used 8.
    training_cap
        At most this many giants are gathered for training, capped per HEALPix pixel so that
        the dense bulge does not dominate (every giant is still predicted).
    mc_passes
        Monte-Carlo dropout passes per prediction (the paper gives no number).
    max_epochs, patience, batch_size, learning_rate, lr_schedule
        Training settings of each fold model (Adam, early stopping on a 15% validation split).
        ``lr_schedule = "cosine"`` (default): the learning rate falls from ``learning_rate``
        to 0 along a half cosine over ``max_epochs``; "plateau": torch's ReduceLROnPlateau.
        The cosine schedule over 30 epochs reaches the held-out loss the plateau schedule
        reached in ~60 (benchmarks/README.md, "Stage-1 training").
    prior
        The distance prior. Both of the first two are learnt from the catalogue itself:

        * "deconvolved" (default): per level-5 pixel and G bin, the giants' distance
          distribution deconvolved from their Gaia parallaxes (EM on a grid in ln r with the
          giant cut's truncation of the noisy parallaxes modelled, pooled hierarchically over
          HEALPix orders, cross-fitted by halves; ``bigcat.astrometry.learnt_prior``), applied
          to the combined parallax.
        * "network": no prior beyond the stage-1 network's predictive distribution of the
          parallax given colours, apparent magnitude and direction (``features``; learnt from
          the other stars' Gaia parallaxes), which times the Gaia likelihood is the combined
          parallax; the distances are that posterior's quantiles.
        * "model": a GGD per pixel from an assumed literature Galaxy
          (``bigcat.astrometry.model_prior``).
        * "table": the Bailer-Jones et al. (2021) GGD table ``prior_table``.

        Giving ``prior_table`` (``--prior-table``) with the default means "table". Figures for
        each on the default and the validation Galaxies are in benchmarks/README.md.
    prior_table
        Bailer-Jones et al. (2021) prior CSV (healpix, GGDrlen, GGDalpha, GGDbeta).
    prior_mag_edges
        Interior G edges (mag) of the learnt prior's apparent-magnitude bins.
    prior_pool_strength
        Pseudo-stars each cell of the learnt prior borrows from its parent cell (hierarchical
        pooling over HEALPix orders: a cell with few giants takes its neighbourhood's fit).
    prior_smoothing
        Gaussian smoothing (in ln r) after each EM step of the deconvolution.
    prior_iterations, prior_iterations_finest
        EM iterations for the whole sky, and at each finer HEALPix order.
    prior_cap_per_cell
        At most this many giants per (level-5 pixel, G bin) are used for the fit.
    features
        The network's inputs: "colours+j0+sky" (default): the 16 dereddened colours, the
        dereddened apparent magnitude J0 and the Galactic direction (sin l, cos l, sin b);
        "colours+j0"; "colours": the paper's 16 colours only. With the colours alone the
        network predicts the luminosity typical of its training giants' colours, so faint
        giants (intrinsically fainter than that, near the survey limit) get parallaxes 6-10%
        too small and bright ones 5% too large; with J0 and the direction the prediction is
        the expectation given everything observed (bias within 2-4% per magnitude bin; the
        figures are in benchmarks/README.md, "Stage-1 inputs").
    truncation_likelihood
        Train with a likelihood that models the giant cut applied to the noisy target
        (a truncated Gaussian: the sample only holds stars with M_pseudo below the eq. 7
        boundary). False = the paper's eq. 3, which biases faint giants' predictions bright.
    recalibrate_sigma
        Rescale the NN's M_pseudo uncertainty (hence ``parallax_nn_error`` and the combined
        parallax and its error) by a factor per cell of apparent magnitude J0, predicted
        absolute magnitude and predicted parallax over the Gaia error, measured after training
        on held-out giants against their Gaia parallaxes
        (``bigcat.stages.parallax.fit_sigma_calibration``; saved as
        ``models/stage1/calibration.json``). False = the network's sigma_total as it is and
        the paper's eqs. 9-10.
    calibration_j0_bins, calibration_mj_bins
        Equally populated bins of J0 and of predicted M_J for the recalibration.
    calibration_margin
        Only giants whose predicted M_pseudo lies more than this many combined sigmas below
        the giant cut's boundary are used to measure the factors: for them the cut (applied
        to the noisy Gaia parallax) does not truncate the Gaia error distribution.
    calibration_max_error_ratio
        Only giants whose Gaia M_pseudo error is below this multiple of the NN sigma are used
        (the others add noise to the estimate and nothing else).
    calibration_snr_bins
        A third dimension of the cells: equally populated bins of the predicted parallax over
        the Gaia parallax error (noise-free: it uses the prediction, not the star's Gaia
        parallax). 1 = none. Within one J0 x M_J cell the network's sigma is too large for
        faint, distant giants and too small for bright, near ones.
    calibration_statistic
        "mixture" (default): the NN error is a mixture of a core (factor k per cell) and a
        fraction f of outliers with b times the core's sigma (f and b shared by all cells),
        fitted by maximum likelihood to the held-out residuals; the combined parallax is then
        the mean and standard deviation of the two-component posterior, which equals eqs. 9-10
        where Gaia and the NN agree and leans on Gaia where they conflict. "variance": each
        factor makes the mean squared held-out pull 1, combination by eqs. 9-10; "coverage":
        each factor makes +-1 sigma hold 68.27% of the held-out residuals. Figures per
        choice on the paper-size mock are in benchmarks/README.md.
    calibration_sample
        "uniform" (default): the factors are measured on a random subset of all quality giants
        (``calibration_cap`` rows, chosen by a hash of source_id), whose mix of sky regions,
        distances and magnitudes is the catalogue's. "training": on the training sample, which
        is capped per sky pixel and so under-represents the dense bulge and disc.
    calibration_cap
        Rows of the uniform calibration sample (at most).
    """

    n_folds: int = 8
    training_cap: int = 200_000
    mc_passes: int = 50
    max_epochs: int = 30
    patience: int = 8
    batch_size: int = 1024
    learning_rate: float = 3e-3
    lr_schedule: str = "cosine"
    features: str = "colours+j0+sky"
    prior: str = PRIOR_DEFAULT
    prior_table: str = ""
    prior_mag_edges: tuple[float, ...] = (13.0, 14.0, 15.0, 16.0, 17.0, 18.0)
    prior_pool_strength: float = 20.0
    prior_smoothing: float = 0.08
    prior_iterations: int = 30
    prior_iterations_finest: int = 10
    prior_cap_per_cell: int = 400
    truncation_likelihood: bool = True
    recalibrate_sigma: bool = True
    calibration_j0_bins: int = 6
    calibration_mj_bins: int = 3
    calibration_margin: float = 3.0
    calibration_max_error_ratio: float = 5.0
    calibration_snr_bins: int = 3
    calibration_statistic: str = "mixture"
    calibration_sample: str = "uniform"
    calibration_cap: int = 200_000

    @property
    def prior_kind(self) -> str:
        """The prior actually used: "table" when a table is given with the default setting."""
        return "table" if self.prior_table and self.prior == PRIOR_DEFAULT else self.prior

    def __post_init__(self) -> None:
        for name in (
            "n_folds",
            "training_cap",
            "mc_passes",
            "max_epochs",
            "patience",
            "batch_size",
            "calibration_j0_bins",
            "calibration_mj_bins",
            "calibration_snr_bins",
            "calibration_cap",
        ):
            if getattr(self, name) < (2 if name == "n_folds" else 1):
                raise ConfigError(f"stage1.{name} = {getattr(self, name)}: too small.")
        if not math.isfinite(self.calibration_margin):
            raise ConfigError(
                f"stage1.calibration_margin = {self.calibration_margin}: must be finite."
            )
        if not self.calibration_max_error_ratio > 0:
            raise ConfigError(
                f"stage1.calibration_max_error_ratio = {self.calibration_max_error_ratio}: "
                "must be positive."
            )
        object.__setattr__(self, "prior_mag_edges", tuple(float(x) for x in self.prior_mag_edges))
        kinds = ["network", "deconvolved", "model", "table"]
        if self.prior not in kinds:
            raise ConfigError(
                f'stage1.prior = {self.prior!r}: must be "deconvolved" (the default), '
                '"network", "model" or "table" (with prior_table).'
                f"{did_you_mean(self.prior, kinds)}"
            )
        if self.prior == "table" and not self.prior_table:
            raise ConfigError(
                'stage1.prior = "table" needs stage1.prior_table (or --prior-table CSV): the '
                "Bailer-Jones et al. (2021) prior_summary.csv."
            )
        if self.prior == "model" and self.prior_table:
            raise ConfigError(
                f'stage1.prior = "model" and prior_table = {self.prior_table!r} are both set: '
                'drop prior_table, or set prior = "table".'
            )
        edges = self.prior_mag_edges
        if not edges or any(b <= a for a, b in zip(edges, edges[1:], strict=False)):
            raise ConfigError(
                f"stage1.prior_mag_edges = {list(edges)}: give one or more increasing G edges."
            )
        if not (self.prior_pool_strength >= 0 and self.prior_smoothing > 0):
            raise ConfigError(
                f"stage1.prior_pool_strength = {self.prior_pool_strength}, prior_smoothing = "
                f"{self.prior_smoothing}: need pool_strength >= 0 and smoothing > 0."
            )
        for name in ("prior_iterations", "prior_iterations_finest", "prior_cap_per_cell"):
            if getattr(self, name) < 1:
                raise ConfigError(f"stage1.{name} = {getattr(self, name)}: must be at least 1.")
        feature_sets = ("colours", "colours+j0", "colours+j0+sky")
        if self.features not in feature_sets:
            raise ConfigError(
                f"stage1.features = {self.features!r}: must be one of {', '.join(feature_sets)}."
                f"{did_you_mean(self.features, feature_sets)}"
            )
        if self.lr_schedule not in ("cosine", "plateau"):
            raise ConfigError(
                f'stage1.lr_schedule = {self.lr_schedule!r}: must be "cosine" or "plateau".'
            )
        if self.calibration_statistic not in ("coverage", "mixture", "variance"):
            raise ConfigError(
                f"stage1.calibration_statistic = {self.calibration_statistic!r}: must be "
                '"mixture", "variance" or "coverage".'
            )
        if self.calibration_sample not in ("training", "uniform"):
            raise ConfigError(
                f"stage1.calibration_sample = {self.calibration_sample!r}: must be "
                '"uniform" or "training".'
            )


@dataclass(frozen=True)
class Stage2Config:
    """Stage 2: [Fe/H] from spectroscopic labels (METHOD.md section 5).

    Attributes
    ----------
    c_weight
        C of the training weight W = |[Fe/H]| + C (eq. 11); large C = unweighted.
    mc_passes
        Monte-Carlo dropout passes per prediction.
    max_epochs, patience, batch_size, learning_rate
        Training settings (Adam, early stopping on the validation split).
    validation_fraction
        Labelled giants held out for validation (paper: 0.15), chosen by hashed source_id.
    match_radius_arcsec
        Positional match radius for labels without a Gaia source id.
    min_labels
        Fewer matched labelled giants than this is an error (the network would not train).
    recalibrate_sigma
        Scale sigma_total by one factor measured on the validation stars (variance matching,
        ``bigcat.stages.metallicity.sigma_scale_from_validation``).
    """

    c_weight: float = 0.5
    mc_passes: int = 50
    max_epochs: int = 200
    patience: int = 15
    batch_size: int = 512
    learning_rate: float = 1e-3
    validation_fraction: float = 0.15
    match_radius_arcsec: float = 1.0
    min_labels: int = 200
    recalibrate_sigma: bool = True

    def __post_init__(self) -> None:
        for name in ("mc_passes", "max_epochs", "patience", "batch_size", "min_labels"):
            if getattr(self, name) < 1:
                raise ConfigError(f"stage2.{name} = {getattr(self, name)}: too small.")
        if not self.c_weight > 0:
            raise ConfigError(f"stage2.c_weight = {self.c_weight}: must be positive.")
        if not 0 < self.validation_fraction < 1:
            raise ConfigError(
                f"stage2.validation_fraction = {self.validation_fraction}: must be in (0, 1)."
            )
        if not self.match_radius_arcsec > 0:
            raise ConfigError(
                f"stage2.match_radius_arcsec = {self.match_radius_arcsec}: must be positive."
            )


@dataclass(frozen=True)
class Config:
    """All of bigcat's settings."""

    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    ingest: IngestConfig = field(default_factory=IngestConfig)
    process: ProcessConfig = field(default_factory=ProcessConfig)
    photometry: PhotometryParams = field(default_factory=PhotometryParams)
    mock: MockParams = field(default_factory=MockParams)
    stage1: Stage1Config = field(default_factory=Stage1Config)
    stage2: Stage2Config = field(default_factory=Stage2Config)
    gradient: GradientParams = field(default_factory=GradientParams)
    vertex: VertexParams = field(default_factory=VertexParams)
    crossmatch: CrossmatchParams = field(default_factory=CrossmatchParams)
    columns: dict[str, str] = field(default_factory=dict)
    #: `bigcat crossmatch`: per survey ("gaia", "tmass", "unwise"), bigcat name -> file's name
    #: (TOML ``[columns.gaia]`` etc.)
    survey_columns: dict[str, dict[str, str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for key in self.columns:
            if key not in INPUT_COLUMNS:
                raise ConfigError(
                    f"[columns] {key} = ...: '{key}' is not a bigcat input column."
                    f"{did_you_mean(key, INPUT_COLUMNS)} The left side is bigcat's name "
                    "(SCHEMA.md), the right side your file's name."
                )
        for survey, mapping in self.survey_columns.items():
            if survey not in SURVEY_COLUMNS:
                raise ConfigError(
                    f"[columns.{survey}]: no survey '{survey}'.{did_you_mean(survey, SURVEY_COLUMNS)} "
                    f"The survey tables of `bigcat crossmatch` are {', '.join(SURVEY_COLUMNS)}."
                )
            for key in mapping:
                if key not in SURVEY_COLUMNS[survey]:
                    raise ConfigError(
                        f"[columns.{survey}] {key} = ...: '{key}' is not a column bigcat reads "
                        f"from the {survey} table.{did_you_mean(key, SURVEY_COLUMNS[survey])} "
                        f"Its columns: {', '.join(SURVEY_COLUMNS[survey])} (docs/crossmatch.md)."
                    )

    def replace(self, section: str, **changes: Any) -> Config:
        """A copy with ``changes`` applied to one section (None values are ignored)."""
        changes = {k: v for k, v in changes.items() if v is not None}
        if not changes:
            return self
        new_section = dataclasses.replace(getattr(self, section), **changes)
        return dataclasses.replace(self, **{section: new_section})

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (for provenance and fingerprints; :func:`config_from_dict` reads
        it back)."""

        def plain(obj: Any) -> Any:
            if hasattr(obj, "items"):  # read-only mappings (extinction ratios)
                return dict(obj.items())
            return str(obj)

        return json.loads(json.dumps(dataclasses.asdict(self), default=plain))

    def section_hash(self, *sections: str) -> str:
        """Stable hash of some sections: what decides whether a stage's output can be reused."""
        d = self.to_dict()
        blob = json.dumps({s: d[s] for s in sections}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


_SECTIONS = {
    "cluster": ClusterConfig,
    "ingest": IngestConfig,
    "process": ProcessConfig,
    "photometry": PhotometryParams,
    "mock": MockParams,
    "stage1": Stage1Config,
    "stage2": Stage2Config,
    "gradient": GradientParams,
    "vertex": VertexParams,
    "crossmatch": CrossmatchParams,
}


def _build_section(name: str, cls: type, values: dict[str, Any], source: str) -> Any:
    names = [f.name for f in dataclasses.fields(cls)]
    for key in values:
        if key not in names:
            raise ConfigError(
                f"{source}: [{name}] has no setting '{key}'.{did_you_mean(key, names)} "
                f"Settings of [{name}]: {', '.join(names)}."
            )
    if cls is VertexParams and isinstance(values.get("prior"), dict):
        values = {
            **values,
            "prior": _build_section("vertex.prior", MixturePrior, values["prior"], source),
        }
    if cls is MockParams:  # `galaxy = "NAME"` applies that Galaxy, the other keys on top
        try:
            return MockParams.from_dict(values)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{source}: [{name}]: {exc}") from exc
    try:
        return cls(**values)
    except TypeError as exc:
        raise ConfigError(f"{source}: [{name}]: {exc}") from exc


def load_config(path: str | Path | None = None) -> Config:
    """Read settings from a TOML file (None: all defaults).

    Raises
    ------
    ConfigError
        For an unreadable file, an unknown section or key, or an invalid value.
    """
    if path is None:
        return Config()
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: configuration file not found.") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc}).") from exc
    kwargs: dict[str, Any] = {}
    for name, values in data.items():
        if name == "columns":
            kwargs["columns"] = {
                str(k): str(v) for k, v in values.items() if not isinstance(v, dict)
            }
            kwargs["survey_columns"] = {
                str(k): {str(a): str(b) for a, b in v.items()}
                for k, v in values.items()
                if isinstance(v, dict)
            }
            continue
        if name not in _SECTIONS:
            raise ConfigError(
                f"{path}: unknown section [{name}].{did_you_mean(name, [*_SECTIONS, 'columns'])} "
                f"Sections: {', '.join([*_SECTIONS, 'columns'])}."
            )
        kwargs[name] = _build_section(name, _SECTIONS[name], dict(values), str(path))
    return Config(**kwargs)


def scheduler_from_env(config: Config) -> Config:
    """Use ``DASK_SCHEDULER_ADDRESS`` when no scheduler was given explicitly."""
    env = os.environ.get("DASK_SCHEDULER_ADDRESS", "")
    if not config.cluster.scheduler and env:
        return config.replace("cluster", scheduler=env)
    return config


def config_from_dict(data: dict[str, Any], source: str) -> Config:
    """A :class:`Config` from its plain-data form (``Config.to_dict``, as run.json keeps it)."""
    kwargs: dict[str, Any] = {}
    for name, values in data.items():
        if name in _SECTIONS:
            kwargs[name] = _build_section(name, _SECTIONS[name], dict(values), source)
        elif name in ("columns", "survey_columns"):
            kwargs[name] = values
    return Config(**kwargs)
