"""A small real run (mock -> photometry -> stage 1 on the session cluster) and, for the parts of
the pipeline not built yet, synthetic files made from the mock's truth: [Fe/H] and kinematics
columns in the catalogue, the stage-2 model and validation files, gradient.json and vertex.json.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from bigcat.catalog.store import Catalog
from bigcat.config import Config, IngestConfig, ProcessConfig, Stage1Config
from bigcat.pipeline import process_with_client
from bigcat.synthetic import MockParams

ROWS = 4_000
CONFIG = Config(
    ingest=IngestConfig(nside=2, partition_rows=0),
    process=ProcessConfig(default_mock_rows=ROWS, target_task_rows=3_000),
    mock=MockParams(seed=11),
    stage1=Stage1Config(max_epochs=3, patience=2, mc_passes=8, training_cap=4_000),
)


@pytest.fixture(scope="session")
def stage1_run(tmp_path_factory, client) -> Path:
    """A run directory as `bigcat process` makes it today (through stage 1)."""
    run_dir = tmp_path_factory.mktemp("report-run") / "run"
    process_with_client(CONFIG, client, None, run_dir)
    return run_dir


@pytest.fixture(scope="session")
def full_run(stage1_run, tmp_path_factory) -> Path:
    """A copy of ``stage1_run`` completed with synthetic stage-2, kinematics and analysis files."""
    run_dir = tmp_path_factory.mktemp("report-full") / "run"
    shutil.copytree(stage1_run, run_dir)
    complete_run(run_dir)
    return run_dir


def _truth(run_dir: Path) -> pd.DataFrame:
    return (
        ds.dataset(run_dir / "mock" / "truth.parquet", format="parquet")
        .to_table()
        .to_pandas()
        .set_index("source_id")
    )


def complete_run(run_dir: Path, seed: int = 3) -> None:
    """Add what stage 2, the kinematics stage and the analyses will write (from the truth)."""
    rng = np.random.default_rng(seed)
    truth = _truth(run_dir)
    catalog = Catalog.open(run_dir / "catalog")
    for order, pixel in catalog.pixels:
        path = catalog.partition_path(order, pixel)
        table = pq.read_table(path)
        sid = table.column("source_id").to_numpy()
        t = truth.loc[sid]
        n = len(sid)
        giant = table.column("is_giant").to_numpy(zero_copy_only=False)
        rv = np.isfinite(table.column("radial_velocity").to_numpy(zero_copy_only=False))
        feh_err = np.abs(rng.normal(0.15, 0.05, n)) + 0.02
        cols: dict[str, np.ndarray] = {
            "feh": np.where(giant, t["true_feh"] + rng.normal(0, feh_err), np.nan),
            "feh_error": np.where(giant, feh_err, np.nan),
            "feh_extrapolated": giant & (t["true_feh"].to_numpy() > 0.74),
        }
        for axis in "xyz":
            err = np.full(n, 0.2)
            cols[f"{axis}_gc"] = np.where(giant, t[f"true_{axis}_gc"] + rng.normal(0, err), np.nan)
            cols[f"{axis}_gc_error"] = np.where(giant, err, np.nan)
        for axis in "xyz":
            err = np.full(n, 12.0)
            ok = giant & rv
            cols[f"v{axis}_gc"] = np.where(ok, t[f"true_v{axis}"] + rng.normal(0, err), np.nan)
            cols[f"v{axis}_gc_error"] = np.where(ok, err, np.nan)
        for name in ("v_cov_xy", "v_cov_xz", "v_cov_yz"):
            cols[name] = np.where(giant & rv, 0.0, np.nan)
        for name, values in cols.items():
            if name in table.column_names:
                have = table.column(name).to_numpy(zero_copy_only=False).astype(float)
                if np.isfinite(have).any():
                    continue  # made by the pipeline itself: keep it
                table = table.set_column(table.column_names.index(name), name, pa.array(values))
            else:
                table = table.append_column(name, pa.array(values))
        pq.write_table(table, path)

    # stage 2: model sidecar, validation set and its summary, labels report
    s2 = run_dir / "models" / "stage2"
    s2.mkdir(parents=True, exist_ok=True)
    labelled = truth[truth["true_is_giant"]].sample(600, random_state=seed)
    label = labelled["true_feh"].to_numpy() + rng.normal(0, 0.05, len(labelled))
    sig_pred = 0.1 + 0.05 * np.abs(label)
    pred = labelled["true_feh"].to_numpy() + rng.normal(0, sig_pred)
    val = pd.DataFrame(
        {
            "source_id": labelled.index.to_numpy(),
            "survey": np.where(rng.random(len(label)) < 0.5, "apogee", "lamost"),
            "feh_label": label,
            "feh_label_err": 0.05,
            "feh_pred": pred,
            "feh_error": np.hypot(sig_pred, 0.03),
            "sigma_drop": 0.03,
            "sigma_pred": sig_pred,
        }
    )
    val.to_parquet(s2 / "validation.parquet")
    bins = []
    for lo in np.arange(-2.0, 0.75, 0.25):
        m = (val["feh_label"] >= lo) & (val["feh_label"] < lo + 0.25)
        if m.sum() < 3:
            continue
        r = val.loc[m, "feh_pred"] - val.loc[m, "feh_label"]
        bins.append(
            {
                "lo": float(lo),
                "hi": float(lo + 0.25),
                "n": int(m.sum()),
                "median_residual": float(r.median()),
                "robust_scatter": float(1.4826 * (r - r.median()).abs().median()),
                "mean_nn_sigma": float(val.loc[m, "feh_error"].mean()),
            }
        )
    (s2 / "validation.json").write_text(json.dumps({"bins": bins, "n": len(val)}))
    (s2 / "labels_report.json").write_text(
        json.dumps({"apogee_read": 900, "lamost_read": 1100, "matched": 1500, "dropped": 12})
    )
    (s2 / "model.json").write_text(
        json.dumps(
            {
                "format_version": 1,
                "weights_sha256": "ab" * 32,
                "feature_names": ["c_j_ks", "abs_ks"],
                "training_fingerprint": "synthetic",
                "metrics": {"best_val_loss": -0.5, "epochs_run": 20, "n_train": 1000},
                "config": {"hidden": [80, 80]},
                "extra": {"stage": "stage2"},
            }
        )
    )

    # analyses
    an = run_dir / "analysis"
    an.mkdir(exist_ok=True)
    (an / "gradient.json").write_text(
        json.dumps(
            {
                "slope_dex_per_kpc": -0.47,
                "slope_error": 0.03,
                "n_stars": 800,
                "z_range_kpc": [0.7, 1.6],
                "intercept_dex": 0.05,
                "truth": {"slope_dex_per_kpc": -0.5, "median_line_intercept_dex": 0.1},
            }
        )
    )
    samples: dict[str, dict] = {}

    def fit(angle: float, err: float, n: int, mean: list[float]) -> dict:
        c, s = np.cos(np.radians(angle)), np.sin(np.radians(angle))
        rot = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
        cov = rot @ np.diag([120.0**2, 70.0**2, 80.0**2]) @ rot.T
        return {
            "n_stars": n,
            "vertex_deg": angle,
            "vertex_err_deg": err,
            "range_deg": [angle - 3 * err, angle + 3 * err],
            "acceptance_fraction": 0.3,
            "autocorr_time": 40.0,
            "mean_major_kms": mean,
            "cov_major_kms2": cov.tolist(),
        }

    samples["metal_poor"] = {
        "kind": "summary",
        "feh_range": [None, -0.6],
        "n_stars": 120,
        "fitted": fit(4.0, 12.0, 120, [10.0, -20.0, 0.0]),
        "zeroed": fit(2.0, 14.0, 120, [0.0, 0.0, 0.0]),
    }
    samples["metal_rich"] = {
        "kind": "summary",
        "feh_range": [-0.4, None],
        "n_stars": 400,
        "fitted": fit(-19.0, 3.0, 400, [30.0, -60.0, 0.0]),
        "zeroed": fit(-40.0, 4.0, 400, [0.0, 0.0, 0.0]),
    }
    edges = np.round(np.arange(-1.65, 0.81, 0.35), 2)
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        ang = 0.0 if hi <= -0.6 else -20.0
        samples[f"{lo:+.2f}_{hi:+.2f}"] = {
            "kind": "bin",
            "feh_range": [float(lo), float(hi)],
            "n_stars": 50,
            "fitted": fit(ang + 2, 6.0, 50, [20.0, -40.0, 0.0]),
            "zeroed": fit(ang - 10, 7.0, 50, [0.0, 0.0, 0.0]),
        }
    (an / "vertex.json").write_text(
        json.dumps(
            {
                "samples": samples,
                "n_stars_selected": 600,
                "seed": 1,
                "settings": {"metal_poor_max": -0.6, "metal_rich_min": -0.4},
                "truth": {"metal_rich": {"vertex_deg": -20.0}, "metal_poor": {"vertex_deg": 0.0}},
            }
        )
    )
