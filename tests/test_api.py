"""The Python API (bigcat.api): the documented example runs as written; `predict` applies a
run's models to a catalogue and reproduces what the same models gave inside `process`,
reading the model run only; bad model runs are refused with the reason."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.dataset as ds
import pytest

import bigcat
from bigcat import __version__
from bigcat.config import Config
from bigcat.errors import CatalogError, InputError
from bigcat.pipeline import model_run_config

DOC = Path(__file__).resolve().parents[1] / "docs" / "api.md"


def _python_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.S)


def _hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_open_run_and_missing_parts(tmp_path):
    with pytest.raises(CatalogError, match="not a bigcat run directory"):
        bigcat.open_run(tmp_path)
    (tmp_path / "run.json").write_text(json.dumps({"bigcat_version": __version__}))
    run = bigcat.open_run(tmp_path)
    assert run.provenance["bigcat_version"] == __version__
    with pytest.raises(CatalogError, match="no 'stage1' catalogue"):
        run.stage("stage1")
    with pytest.raises(CatalogError, match="gradient.json: not in this run"):
        _ = run.gradient
    assert run.report_path == tmp_path.resolve() / "report.html"


def _fake_model_run(tmp_path: Path, version: str = __version__, **stage1) -> Path:
    config = Config().replace("stage1", **stage1).to_dict() if stage1 else Config().to_dict()
    (tmp_path / "models" / "stage1").mkdir(parents=True)
    (tmp_path / "models" / "stage2").mkdir(parents=True)
    (tmp_path / "run.json").write_text(json.dumps({"bigcat_version": version, "config": config}))
    return tmp_path


def test_predict_takes_the_model_runs_settings_and_refuses_others(tmp_path):
    run = _fake_model_run(tmp_path / "a", max_epochs=7, mc_passes=12)
    cfg = model_run_config(run, Config())
    assert cfg.stage1.max_epochs == 7 and cfg.stage1.mc_passes == 12
    with pytest.raises(InputError, match=r"\[stage1\] mc_passes = 30 \(the models: 12\)"):
        model_run_config(run, Config().replace("stage1", mc_passes=30))
    old = _fake_model_run(tmp_path / "b", version="0.0.1")
    with pytest.raises(InputError, match="made by bigcat 0.0.1"):
        model_run_config(old, Config())
    with pytest.raises(InputError, match="not a finished `bigcat process` run"):
        model_run_config(tmp_path / "nothing", Config())


@pytest.mark.slow
def test_documented_example_and_predict_reproduces_process(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    [block] = _python_blocks(DOC)
    exec(compile(block, str(DOC), "exec"), {})  # the example runs as written
    run, applied = bigcat.open_run("api-demo/run"), bigcat.open_run("api-demo/applied")
    # the model run was only read: its files now are the ones predict hashed when it started
    recorded = applied.provenance["models_from"]["files"]
    now = {k: v[:16] for k, v in _hashes(run.path).items() if k in recorded}
    assert now == recorded and len(recorded) >= 10
    assert "stage1-train" not in [s["stage"] for s in applied.provenance["stages"]]

    def read(r):
        cols = ["source_id", "parallax_nn", "parallax_combined", "distance_pc", "feh", "feh_error"]
        t = ds.dataset(r.path / "catalog" / "dataset", format="parquet").to_table(columns=cols)
        return t.to_pandas().sort_values("source_id", ignore_index=True)

    a, b = read(run), read(applied)
    assert np.isfinite(a["feh"]).sum() > 1000
    pd.testing.assert_frame_equal(a, b, atol=1e-6, rtol=1e-6)


def test_api_names_are_not_shadowed_by_subpackages() -> None:
    """`bigcat.mock(...)` stays the API function however many bigcat modules are imported
    (a subpackage named like an API function would replace it on first import)."""
    import importlib
    import pkgutil

    import bigcat

    for mod in pkgutil.walk_packages(bigcat.__path__, "bigcat."):
        if not mod.name.startswith(("bigcat.__main__", "bigcat.dashboard")):
            importlib.import_module(mod.name)
    for name in ("process", "open_run", "predict", "mock", "ingest", "crossmatch"):
        assert callable(getattr(bigcat, name)), name
        assert not isinstance(getattr(bigcat, name), type(bigcat)), name
