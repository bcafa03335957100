"""bigcat's Python face: everything the command line does, for notebooks and scripts.

::

    import bigcat

    run = bigcat.process(out="runs/quick", config={"process": {"default_mock_rows": 50_000}})
    run.gradient["slope_dex_per_kpc"]
    giants = run.catalog.query("is_giant").compute()      # an lsdb.Catalog
    new = bigcat.predict(models=run, input="other_sky.parquet", out="runs/other")

Each function takes an optional ``client`` (a ``distributed.Client``); without one it starts
the embedded local cluster the configuration describes (``[cluster]``) for the call, as the
CLI does. ``config`` is a :class:`bigcat.config.Config`, a TOML path, or a dict of sections
(``{"stage1": {"max_epochs": 10}}``); keyword settings of each function win over it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bigcat.config import Config, config_from_dict, load_config, scheduler_from_env
from bigcat.errors import CatalogError

ConfigLike = Config | str | Path | dict | None


def _config(config: ConfigLike) -> Config:
    if isinstance(config, Config):
        return config
    if isinstance(config, dict):
        return scheduler_from_env(config_from_dict(config, "config dict"))
    return scheduler_from_env(load_config(config))


@contextlib.contextmanager
def _client(config: Config, client: Any = None) -> Iterator[Any]:
    if client is not None:
        yield client
        return
    from bigcat.cluster import dask_client

    with dask_client(config.cluster) as c:
        yield c


def _paths(x: str | Path | Sequence[str | Path] | None) -> list[str] | None:
    if x is None:
        return None
    if isinstance(x, str | Path):
        return [str(x)]
    return [str(p) for p in x]


@dataclass(frozen=True)
class Run:
    """A run directory of `bigcat process` or `bigcat predict` (see docs/schema.md).

    Attributes
    ----------
    path : pathlib.Path
        The run directory.
    """

    path: Path

    @property
    def catalog(self) -> Any:
        """The processed catalogue as an ``lsdb.Catalog`` (lazy)."""
        return self.stage("catalog")

    def stage(self, name: str) -> Any:
        """A stage's output catalogue as an ``lsdb.Catalog``: "input", "photometry",
        "stage1", "distance" or "catalog" (the final one)."""
        import lsdb

        root = {
            "catalog": self.path / "catalog",
            "input": self.path / "input",
        }.get(name, self.path / "stages" / name)
        if not (root / "partition_info.csv").exists():
            raise CatalogError(
                f"{root}: no '{name}' catalogue in this run (stages: input, photometry, stage1, "
                "distance, catalog). Run `bigcat process` to make it."
            )
        return lsdb.read_hats(root)

    def _json(self, *parts: str) -> dict:
        path = self.path.joinpath(*parts)
        if not path.exists():
            raise CatalogError(f"{path}: not in this run; `bigcat process` writes it.")
        return dict(json.loads(path.read_text()))

    @property
    def gradient(self) -> dict:
        """analysis/gradient.json."""
        return self._json("analysis", "gradient.json")

    @property
    def vertex(self) -> dict:
        """analysis/vertex.json."""
        return self._json("analysis", "vertex.json")

    @property
    def provenance(self) -> dict:
        """run.json: versions, configuration, inputs, cluster, per-stage timings and counts,
        and for a `predict` run the model run and the hashes of its model files."""
        return self._json("run.json")

    @property
    def models(self) -> dict[str, Path]:
        """The model directories this run made or applied ("stage1", "prior", "stage2")."""
        src = Path(self.provenance.get("models_from", {}).get("run_dir", self.path))
        return {
            name: src / "models" / name
            for name in ("stage1", "prior", "stage2")
            if (src / "models" / name).exists()
        }

    @property
    def report_path(self) -> Path:
        """report.html (made by `bigcat process` or `bigcat report`)."""
        return self.path / "report.html"


def open_run(path: str | Path) -> Run:
    """A finished (or partly finished) run directory.

    Raises
    ------
    CatalogError
        When ``path`` is not a run directory.
    """
    path = Path(path)
    if not (path / "run.json").exists():
        raise CatalogError(
            f"{path}: not a bigcat run directory (no run.json). `bigcat process --out {path}` "
            "makes one."
        )
    return Run(path.resolve())


def process(
    input: str | Path | Sequence[str | Path] | None = None,
    labels: str | Path | Sequence[str | Path] | None = None,
    out: str | Path = "bigcat-run",
    nside: int | None = None,
    partition_rows: int | None = None,
    rows: int | None = None,
    galaxy: str | None = None,
    config: ConfigLike = None,
    client: Any = None,
    keep_columns: str | Sequence[str] | None = None,
) -> Run:
    """`bigcat process`: the whole pipeline (a synthetic survey when ``input`` is None).
    ``keep_columns``: the input's own extra columns carried to the catalogue (``"all"``,
    ``"none"`` or names; ``[ingest] keep_columns``)."""
    from bigcat.pipeline import process_with_client

    cfg = _config(config).replace(
        "ingest", nside=nside, partition_rows=partition_rows, keep_columns=keep_columns
    )
    cfg = cfg.replace("process", default_mock_rows=rows)
    if galaxy is not None:
        from bigcat.synthetic.params import MockParams

        cfg = dataclasses.replace(cfg, mock=MockParams.for_galaxy(galaxy, **cfg.mock.overrides()))
    requested = {k: v for k, v in {"nside": nside, "partition_rows": partition_rows}.items() if v}
    with _client(cfg, client) as c:
        result = process_with_client(
            cfg, c, _paths(input), out, _paths(labels), requested_layout=requested
        )
    return Run(result.run_dir)


def predict(
    models: Run | str | Path,
    input: str | Path | Sequence[str | Path],
    out: str | Path,
    config: ConfigLike = None,
    client: Any = None,
) -> Run:
    """`bigcat predict`: apply a finished run's models to another catalogue (no training)."""
    from bigcat.pipeline import predict_with_client

    cfg = _config(config)
    src = models.path if isinstance(models, Run) else Path(models)
    with _client(cfg, client) as c:
        result = predict_with_client(cfg, c, src, _paths(input) or [], out)
    return Run(result.run_dir)


def mock(
    rows: int,
    out: str | Path,
    galaxy: str | None = None,
    seed: int | None = None,
    config: ConfigLike = None,
    client: Any = None,
) -> Path:
    """`bigcat mock`: a synthetic survey with known truth in ``out``; returns ``out``."""
    from bigcat.stages.mock import DEFAULT_CHUNK_ROWS, make_mock
    from bigcat.synthetic.params import MockParams

    cfg = _config(config)
    explicit: dict[str, Any] = {} if seed is None else {"seed": seed}
    params = (
        MockParams.for_galaxy(galaxy, **{**cfg.mock.overrides(), **explicit})
        if galaxy is not None
        else dataclasses.replace(cfg.mock, **explicit)
    )
    with _client(cfg, client) as c:
        make_mock(c, params, rows, out, DEFAULT_CHUNK_ROWS)
    return Path(out)


def ingest(
    inputs: str | Path | Sequence[str | Path],
    out: str | Path,
    nside: int | None = None,
    partition_rows: int | None = None,
    config: ConfigLike = None,
    client: Any = None,
    keep_columns: str | Sequence[str] | None = None,
) -> Any:
    """`bigcat ingest`: tables into a HEALPix (HATS) catalogue; returns it as an
    ``lsdb.Catalog``. ``keep_columns``: as for :func:`process`."""
    import lsdb

    from bigcat.stages.ingest import ingest as run_ingest

    cfg = _config(config).replace(
        "ingest", nside=nside, partition_rows=partition_rows, keep_columns=keep_columns
    )
    with _client(cfg, client) as c:
        catalog = run_ingest(_paths(inputs) or [], out, cfg, c)
    return lsdb.read_hats(catalog.root)


def crossmatch(
    gaia: str | Path,
    tmass: str | Path,
    unwise: str | Path,
    out: str | Path,
    radius_arcsec: float | None = None,
    nside: int | None = None,
    partition_rows: int | None = None,
    config: ConfigLike = None,
    client: Any = None,
) -> Any:
    """`bigcat crossmatch`: Gaia DR3, 2MASS PSC and unWISE tables into one photometric
    catalogue (HATS); returns it as an ``lsdb.Catalog``."""
    import lsdb

    from bigcat.stages.crossmatch import crossmatch as run_crossmatch

    cfg = _config(config).replace("ingest", nside=nside, partition_rows=partition_rows)
    kwargs = {} if radius_arcsec is None else {"radius_arcsec": radius_arcsec}
    with _client(cfg, client) as c:
        catalog = run_crossmatch(gaia, tmass, unwise, out, cfg, c, **kwargs)
    return lsdb.read_hats(catalog.root)
