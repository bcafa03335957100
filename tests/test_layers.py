"""The house: bigcat's modules import downwards only (docs/design.md, "Three layers").

Layers, bottom up: base (errors, schema, atomic, runlock) < kernels (photometry, astrometry, nn, analysis,
catalog, mock) < settings (config) < stages (stages, report) < orchestration (pipeline,
cluster, cli, api, dashboard). A module may import its own layer and those below. Besides:
kernels never import Dask; the synthetic-survey generator (``bigcat.synthetic``) is imported only by
the mock stage, the orchestration (the mock command) and the settings (its parameter class);
every module may read ``bigcat.__version__`` from the package root.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "bigcat"
LAYERS = {
    "errors": 0,
    "schema": 0,
    "atomic": 0,
    "runlock": 0,
    "photometry": 1,
    "astrometry": 1,
    "nn": 1,
    "analysis": 1,
    "catalog": 1,
    "synthetic": 1,
    "config": 2,
    "stages": 3,
    "report": 3,
    "pipeline": 4,
    "cluster": 4,
    "cli": 4,
    "api": 4,
    "dashboard": 4,
    "__main__": 4,
    "__init__": 4,
}
MOCK_USERS = ("bigcat.synthetic", "bigcat.stages.mock", "bigcat.config")


def _modules() -> list[tuple[str, Path]]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        out.append((".".join(rel.parts), path))
    return out


def _layer(module: str) -> int:
    parts = module.split(".")
    if len(parts) == 1:  # the package root
        return LAYERS["__init__"]
    return LAYERS[parts[1]]


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "bigcat":
                found += [
                    f"bigcat.{a.name}" if a.name != "__version__" else "bigcat" for a in node.names
                ]
            else:
                found.append(node.module)
        elif isinstance(node, ast.Import):
            found += [a.name for a in node.names]
    return found


@pytest.mark.parametrize(("module", "path"), _modules(), ids=lambda x: str(x))
def test_imports_run_downwards(module, path):
    mine = _layer(module)
    for imported in _imports(path):
        if imported == "bigcat" or not imported.startswith("bigcat"):
            continue
        theirs = _layer(imported)
        assert theirs <= mine, f"{module} (layer {mine}) imports {imported} (layer {theirs})"


@pytest.mark.parametrize(("module", "path"), _modules(), ids=lambda x: str(x))
def test_kernels_do_not_import_dask_and_production_does_not_import_the_mock(module, path):
    imports = _imports(path)
    if _layer(module) <= 1:
        dask = [i for i in imports if i.split(".")[0] in ("dask", "distributed")]
        assert not dask, f"kernel module {module} imports {dask}"
    if not module.startswith(MOCK_USERS) and _layer(module) < 4:
        mock = [i for i in imports if i == "bigcat.synthetic" or i.startswith("bigcat.synthetic.")]
        assert not mock, f"{module} imports the synthetic-survey generator {mock}"


def test_every_subpackage_has_a_layer():
    tops = {p.name if p.is_dir() else p.stem for p in PACKAGE.iterdir() if p.suffix in ("", ".py")}
    tops -= {"__pycache__"}
    assert tops <= set(LAYERS), tops - set(LAYERS)
