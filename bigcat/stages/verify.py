"""`bigcat verify RUN_DIR`: find damaged or incomplete files in a run directory.

Read only; checks, without a cluster:

* every catalogue of the run (``input/``, ``stages/*/``, ``catalog/``; or the directory
  itself when it is one catalogue, e.g. the output of `bigcat ingest` or `bigcat crossmatch`):
  complete (``partition_info.csv`` and ``bigcat.json``), and each partition file present, its
  Parquet footer readable, its row count, size and sha256 those recorded when it was written
  (:func:`bigcat.catalog.store.catalog_problems`);
* every model checkpoint (``models/**/*.json`` sidecars): its ``.pt`` file present and of
  the recorded sha256; the learnt distance prior readable and of its recorded hash;
* every other bigcat JSON file (``run.json``, ``analysis/*.json``, model reports): parseable;
* the synthetic survey's parts (``mock/*.parquet/``, or the directory itself when it is the
  output of `bigcat mock`): footers readable, and each part of the rows, size and sha256
  recorded in the survey's stamp (``.bigcat-mock.json``) when it was finished;
* leftovers of interrupted writes (``.*.tmp``) are listed as notes, not problems.

A damaged partition is recomputed (with a warning naming it) by running the same
``bigcat process`` (``ingest``, ``crossmatch``, ``mock``) again; a damaged checkpoint by
`bigcat train`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from bigcat.atomic import file_sha256, is_temporary
from bigcat.catalog.store import BIGCAT_PROPERTIES, Catalog, catalog_problems, check_file_record
from bigcat.errors import CatalogError, InputError
from bigcat.runlock import staging_dir
from bigcat.stages.mock import MOCK_STAMP, recorded_parts
from bigcat.stages.partitions import next_root

#: The catalogues of a run directory, in pipeline order.
RUN_CATALOGS = (
    "input",
    "stages/photometry",
    "stages/stage1",
    "stages/distance",
    "catalog",
)


@dataclass
class Verification:
    """The outcome of :func:`verify_run`."""

    path: Path
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    checked: dict[str, int] = field(
        default_factory=lambda: {"catalogs": 0, "partitions": 0, "checkpoints": 0, "files": 0}
    )

    @property
    def ok(self) -> bool:
        """True when nothing is wrong."""
        return not self.problems


def _is_catalog(path: Path) -> bool:
    return (path / "partition_info.csv").exists()


def _verify_catalog(root: Path, out: Verification) -> None:
    if not _is_catalog(root):
        out.problems.append(
            f"{root}: incomplete catalogue (no partition_info.csv): its stage was interrupted. "
            "Run the same `bigcat process` again to finish it."
        )
        return
    if not (root / BIGCAT_PROPERTIES).exists():
        out.notes.append(f"{root}: no {BIGCAT_PROPERTIES}: row counts cannot be checked")
    try:
        catalog = Catalog.open(root)
    except (CatalogError, ValueError) as exc:
        out.problems.append(f"{root}: cannot be opened ({exc})")
        return
    out.checked["catalogs"] += 1
    out.checked["partitions"] += len(catalog.pixels)
    if "partition_files" not in catalog.properties:
        out.notes.append(
            f"{root}: no file checksums recorded (written by an older bigcat): footers and "
            "row counts checked only"
        )
    out.problems.extend(catalog_problems(catalog, checksums=True))


def _verify_checkpoints(models: Path, out: Verification) -> None:
    for sidecar in sorted(models.rglob("*.json")):
        try:
            meta = json.loads(sidecar.read_text())
        except (OSError, ValueError) as exc:
            out.problems.append(f"{sidecar}: not readable JSON ({exc})")
            continue
        out.checked["files"] += 1
        if not isinstance(meta, dict):
            continue
        if "weights_sha256" in meta:
            out.checked["checkpoints"] += 1
            pt = sidecar.with_name(str(meta.get("weights_file") or sidecar.with_suffix(".pt").name))
            if not pt.exists():
                out.problems.append(f"{pt}: missing (its sidecar {sidecar.name} names it)")
            elif file_sha256(pt) != meta["weights_sha256"]:
                out.problems.append(
                    f"{pt}: its sha256 differs from the one in {sidecar.name}: the checkpoint is "
                    "damaged. Retrain it with `bigcat train` (or delete it and run `bigcat "
                    "process` again)."
                )
        elif "sha" in meta and sidecar.with_suffix(".npz").exists():
            out.checked["checkpoints"] += 1
            from bigcat.astrometry.learnt_prior import LearntPrior

            try:
                prior = LearntPrior.load(sidecar.with_suffix(".npz"))
            except Exception as exc:  # noqa: BLE001 - any failure to load is the finding
                out.problems.append(f"{sidecar.with_suffix('.npz')}: {exc}")
                continue
            if prior.fingerprint() != meta["sha"]:
                out.problems.append(
                    f"{sidecar.with_suffix('.npz')}: its content differs from the hash in "
                    f"{sidecar.name}: damaged. Delete both and run `bigcat process` again."
                )


def _verify_json(paths: list[Path], out: Verification) -> None:
    for path in paths:
        try:
            json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            out.problems.append(f"{path}: not readable JSON ({exc})")
        else:
            out.checked["files"] += 1


def _is_mock(path: Path) -> bool:
    return (path / MOCK_STAMP).exists()


def _verify_mock(root: Path, out: Verification) -> None:
    """The parts of a synthetic survey: footers readable; with the records in its stamp (a
    finished survey), rows, size and sha256 too, and none missing."""
    records = recorded_parts(root)
    if not records:
        out.notes.append(
            f"{root}: no file checksums recorded in {MOCK_STAMP} (the survey is unfinished, or "
            "was written by an older bigcat): footers checked only"
        )
    seen = set()
    for path in sorted(root.rglob("*.parquet")):
        if not path.is_file() or is_temporary(path):
            continue
        name = path.relative_to(root).as_posix()
        seen.add(name)
        problem = check_file_record(path, records.get(name))
        if problem is not None:
            out.problems.append(f"{path}: {problem}")
        else:
            out.checked["files"] += 1
    out.problems.extend(
        f"{root / name}: the file is missing (the survey's stamp records it)"
        for name in sorted(set(records) - seen)
    )


def verify_run(path: str | Path) -> Verification:
    """Check a run directory (or one catalogue) for damaged or incomplete files.

    Raises
    ------
    InputError
        If ``path`` is not a directory, or holds neither a run nor a catalogue.
    """
    path = Path(path).resolve()
    if not path.is_dir():
        raise InputError(
            f"{path}: not a directory. Pass a run directory of `bigcat process` (its --out) or "
            "a catalogue made by `bigcat ingest`."
        )
    out = Verification(path)
    if _is_catalog(path):
        _verify_catalog(path, out)
    elif _is_mock(path):
        _verify_mock(path, out)
    else:
        known = [path / name for name in RUN_CATALOGS if (path / name).is_dir()]
        staged = [
            staging_dir(path / name) for name in RUN_CATALOGS if staging_dir(path / name).is_dir()
        ]
        started = (path / "run.json").exists() or (path / "run.log").exists()
        if not known and not staged and not started and not (path / "models").is_dir():
            raise InputError(
                f"{path}: neither a run directory of `bigcat process` (no run.json, catalog/, "
                f"stages/ or models/) nor a catalogue (no partition_info.csv) nor a synthetic "
                f"survey of `bigcat mock` (no {MOCK_STAMP})."
            )
        for root in known:
            _verify_catalog(root, out)
        out.problems.extend(
            f"{stage}: an interrupted ingest (incomplete catalogue); the same command resumes it"
            for stage in staged
        )
        out.notes.extend(
            f"{next_root(path / name)}: the unfinished new output of a run with other settings "
            f"(incomplete); the finished {path / name} is whole until it replaces it"
            for name in RUN_CATALOGS
            if next_root(path / name).is_dir()
        )
        if (path / "models").is_dir():
            _verify_checkpoints(path / "models", out)
        _verify_json(
            [
                p
                for p in [path / "run.json", *sorted((path / "analysis").glob("*.json"))]
                if p.exists()
            ],
            out,
        )
        if (path / "mock").is_dir():
            _verify_mock(path / "mock", out)
    out.notes.extend(
        f"{p}: left by an interrupted write (harmless; removed by the next run)"
        for p in sorted(path.rglob(".*"))
        if is_temporary(p)
    )
    return out


def format_verification(result: Verification) -> str:
    """The report `bigcat verify` prints."""
    c = result.checked
    head = (
        f"bigcat verify {result.path}: {c['catalogs']} catalogues, {c['partitions']:,} "
        f"partitions, {c['checkpoints']} checkpoints, {c['files']} other files checked"
    )
    lines = [head]
    if result.problems:
        lines.append(f"  {len(result.problems)} problem(s):")
        lines += [f"    {p}" for p in result.problems]
        lines.append(
            "  Run the same `bigcat process` (or `ingest`, `crossmatch`, `mock`: the command "
            "that wrote the file) again to recompute damaged files (each is named in a "
            "warning), `bigcat train` for a damaged checkpoint."
        )
    else:
        lines.append("  no problems found")
    lines += [f"  note: {n}" for n in result.notes]
    return "\n".join(lines)
