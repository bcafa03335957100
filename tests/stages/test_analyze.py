"""`bigcat analyze gradient|vertex` on a small HATS catalogue: pruning, outputs, figures."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from bigcat.analysis.gradient import GradientParams, gradient_sample
from bigcat.analysis.region import BulgeCylinder, GalacticBox, pixels_for_region
from bigcat.analysis.vertex import VERTEX_CUTS, VertexParams, selection_masks, vertex_samples
from bigcat.astrometry import frames
from bigcat.catalog.healpix import healpix29, pixel_at_order
from bigcat.catalog.store import Catalog, finalize_catalog, partition_path, write_frame_atomic
from bigcat.cli import cli
from bigcat.config import Config
from bigcat.errors import InputError
from bigcat.stages.analyze import (
    AnalysisParams,
    run_gradient,
    run_vertex,
    select_partitions,
)

BASE_ORDER = 1  # nside 2: 48 partitions over the sky, small enough for a test
FAST = AnalysisParams(
    gradient=GradientParams(n_bootstrap=40),
    vertex=VertexParams(n_walkers=38, n_burn=10, n_steps=20, min_stars=100),
    seed=3,
)
INJECTED_SLOPE = -0.5


def _to_sky(xyz_gc: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Galactocentric positions (n, 3) kpc -> ICRS ra, dec (deg) and distance (kpc)."""
    m, o, _, _ = frames.frame_constants()
    r = (xyz_gc - o) @ m  # rows of m.T @ (r - o)
    d = np.linalg.norm(r, axis=1)
    u = r / d[:, None]
    ra = np.degrees(np.arctan2(u[:, 1], u[:, 0])) % 360
    dec = np.degrees(np.arcsin(u[:, 2]))
    return ra, dec, d


def _from_galactic(l_deg: np.ndarray, b_deg: np.ndarray, d_kpc: np.ndarray) -> np.ndarray:
    """Galactic (l, b, d) -> Galactocentric positions (n, 3) kpc."""
    m, o, _, g = frames.frame_constants()
    lr, br = np.radians(l_deg), np.radians(b_deg)
    gal = np.column_stack([np.cos(br) * np.cos(lr), np.cos(br) * np.sin(lr), np.sin(br)])
    icrs = gal @ g  # g: ICRS -> Galactic, so g.T maps back
    return (d_kpc[:, None] * icrs) @ m.T + o


def synthetic_rows(seed: int = 0) -> pd.DataFrame:
    """Processed-catalogue rows: a bulge with a known gradient, field stars everywhere, and a
    bar sample in the vertex box with velocities (metal-rich stars rotated by -25 deg)."""
    rng = np.random.default_rng(seed)
    # bulge cylinder
    nb = 4000
    r = 2.45 * np.sqrt(rng.uniform(0, 1, nb))
    phi = rng.uniform(0, 2 * np.pi, nb)
    z = rng.uniform(-2.9, 2.9, nb)
    bulge = np.column_stack([r * np.cos(phi), r * np.sin(phi), z])
    # field: all directions, 0.3-6 kpc from the Sun
    nf = 3000
    u = rng.normal(size=(nf, 3))
    u /= np.linalg.norm(u, axis=1)[:, None]
    field = frames.sun_position_kpc() + rng.uniform(0.3, 6, nf)[:, None] * u
    # vertex box
    nv = 1500
    box = _from_galactic(
        rng.uniform(-4.8, 4.8, nv), rng.uniform(-9.5, 9.5, nv), rng.uniform(6.1, 9.9, nv)
    )
    xyz = np.vstack([bulge, field, box])
    n = len(xyz)
    ra, dec, d = _to_sky(xyz)
    kind = np.repeat(["bulge", "field", "box"], [nb, nf, nv])
    feh = 0.2 + INJECTED_SLOPE * np.abs(xyz[:, 2]) + rng.normal(0, 0.15, n)
    feh[kind == "field"] = rng.normal(-0.3, 0.3, nf)
    rich = rng.random(nv) < 0.6
    feh[kind == "box"] = np.where(rich, rng.normal(0.1, 0.15, nv), rng.normal(-1.0, 0.2, nv))
    feh_error = rng.uniform(0.05, 0.3, n)
    feh_error[rng.random(n) < 0.05] = 0.8
    # velocities: the box always has one, others 30% of the time
    has_v = (kind == "box") | (rng.random(n) < 0.3)
    a = np.radians(-25.0)
    rot = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    cov_rich = rot @ np.diag([120.0**2, 60.0**2, 70.0**2]) @ rot.T
    cov_poor = np.diag([100.0**2, 100.0**2, 90.0**2])
    v = np.empty((n, 3))
    is_rich = np.zeros(n, bool)
    is_rich[kind == "box"] = rich
    v[is_rich] = rng.multivariate_normal([0, 0, 0], cov_rich, is_rich.sum())
    v[~is_rich] = rng.multivariate_normal([0, 0, 0], cov_poor, (~is_rich).sum())
    v_err = np.where(has_v, 5.0, np.nan)
    v[~has_v] = np.nan
    pos_err = np.full(n, 0.15)
    pos_err[rng.random(n) < 0.03] = 1.5
    df = pd.DataFrame(
        {
            "source_id": np.arange(n, dtype=np.int64) * 13 + 5,
            "ra": ra,
            "dec": dec,
            "distance_pc": 1e3 * d,
            "distance_pc_p16": 1e3 * (d - 0.3),
            "distance_pc_p84": 1e3 * (d + 0.3),
            "feh": feh,
            "feh_error": feh_error,
            "x_gc": xyz[:, 0],
            "y_gc": xyz[:, 1],
            "z_gc": xyz[:, 2],
            "x_gc_error": pos_err,
            "y_gc_error": pos_err,
            "z_gc_error": pos_err,
            "radial_velocity": np.where(has_v, rng.normal(0, 100, n), np.nan),
            "vx_gc": v[:, 0],
            "vy_gc": v[:, 1],
            "vz_gc": v[:, 2],
            "vx_gc_error": v_err,
            "vy_gc_error": v_err,
            "vz_gc_error": v_err,
            "v_cov_xy": np.where(has_v, 0.0, np.nan),
            "v_cov_xz": np.where(has_v, 0.0, np.nan),
            "v_cov_yz": np.where(has_v, 0.0, np.nan),
            # a truth column with nonsense: reading it would change the answers
            "true_feh": rng.normal(5, 1, n),
        }
    )
    df["_healpix_29"] = healpix29(df["ra"].to_numpy(), df["dec"].to_numpy())
    return df


def write_catalog(df: pd.DataFrame, root: Path) -> Catalog:
    """HATS catalogue at BASE_ORDER, with the busiest bulge partition split one order deeper."""
    h = df["_healpix_29"].to_numpy()
    base = pixel_at_order(h, BASE_ORDER)
    bulge_pix = set(pixels_for_region("bulge", BASE_ORDER).tolist())
    counts = pd.Series(base[np.isin(base, list(bulge_pix))]).value_counts()
    split = int(counts.index[0])
    order = np.where(base == split, BASE_ORDER + 1, BASE_ORDER)
    pix = np.where(base == split, pixel_at_order(h, BASE_ORDER + 1), base)
    pixels = []
    for (o, p), part in df.groupby([order, pix]):
        part = part.sort_values("_healpix_29")
        write_frame_atomic(part, partition_path(root, int(o), int(p)))
        pixels.append((int(o), int(p)))
    return finalize_catalog(root, pixels, "analysis-test", len(df), {"fingerprint": "test"})


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("run")
    df = synthetic_rows()
    write_catalog(df, run / "catalog")
    df.to_parquet(run / "all_rows.parquet")
    (run / "mock").mkdir()
    (run / "mock" / "truth.json").write_text(
        json.dumps(
            {
                "gradient": {
                    "feh_gradient_dex_per_kpc": INJECTED_SLOPE,
                    "median_line_intercept": 0.2,
                },
                "vertex": {"vertex_deg_metal_rich": -25.0, "vertex_deg_metal_poor": 0.0},
            }
        )
    )
    return run


def test_pruning_maps_each_order(run_dir):
    catalog = Catalog.open(run_dir / "catalog")
    orders = {o for o, _ in catalog.pixels}
    assert orders == {BASE_ORDER, BASE_ORDER + 1}
    for region in (BulgeCylinder(), GalacticBox()):
        keep = select_partitions(catalog, region)
        assert 0 < len(keep) < len(catalog.pixels)
        for o, p in catalog.pixels:
            assert ((o, p) in keep) == (p in set(pixels_for_region(region, o).tolist()))
        assert select_partitions(catalog, region, full_scan=True) == list(catalog.pixels)


def _figure_ok(path: str) -> None:
    p = Path(path)
    assert p.exists() and p.stat().st_size > 5_000
    assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_run_gradient(client, run_dir, assert_gradient_keys):
    out = run_gradient(client, run_dir, Config(), params=FAST)
    on_disk = json.loads((run_dir / "analysis" / "gradient.json").read_text())
    assert on_disk == out
    assert_gradient_keys(out, "partitions_read", "partitions_total", "seconds", "frame", "truth")
    catalog = Catalog.open(run_dir / "catalog")
    expected = select_partitions(catalog, BulgeCylinder())
    assert out["partitions_total"] == len(catalog.pixels)
    assert out["partitions_read"] == len(expected) < len(catalog.pixels)
    assert out["pixels_read"] == [f"{o}/{p}" for o, p in expected]
    assert not any(c.startswith("true_") for c in out["columns_read"])
    # the pruned scan loses no star: same sample as the kernel over every row
    all_rows = pd.read_parquet(run_dir / "all_rows.parquet")
    assert out["n_stars"] == len(gradient_sample(all_rows)) > 2000
    assert out["cut_counts"]["velocity_sigma"] == out["n_stars"]
    assert out["rows_read"] < len(all_rows)
    assert abs(out["slope_dex_per_kpc"] - INJECTED_SLOPE) < max(5 * out["slope_error"], 0.05)
    assert out["truth"]["slope_dex_per_kpc"] == INJECTED_SLOPE
    assert out["frame"]["galcen_distance_kpc"] == pytest.approx(8.122)
    assert out["seed"] == 3
    _figure_ok(out["files"]["fig11"])

    # full scan: every partition read, same answer
    full = run_gradient(
        client,
        run_dir,
        Config(),
        params=AnalysisParams(gradient=FAST.gradient, seed=3, figures=False),
        full_scan=True,
        out_dir=run_dir / "full",
    )
    assert full["partitions_read"] == full["partitions_total"] == len(catalog.pixels)
    assert full["rows_read"] == len(all_rows)
    for key in ("n_stars", "slope_dex_per_kpc", "slope_error", "binned_abs_z", "peak"):
        assert full[key] == out[key], key

    # a partition outside the region is never opened: corrupt it, the pruned run still works
    outside = next(op for op in catalog.pixels if op not in expected)
    catalog.partition_path(*outside).write_bytes(b"not parquet")
    quick = AnalysisParams(gradient=FAST.gradient, seed=3, figures=False)
    again = run_gradient(client, run_dir, Config(), params=quick, out_dir=run_dir / "again")
    assert again["n_stars"] == out["n_stars"]
    # restore it for the other tests
    part = all_rows[
        pixel_at_order(all_rows["_healpix_29"].to_numpy(), outside[0]) == outside[1]
    ].sort_values("_healpix_29")
    write_frame_atomic(part, catalog.partition_path(*outside))


def test_run_vertex(client, run_dir):
    out = run_vertex(client, run_dir, Config(), params=FAST)
    on_disk = json.loads((run_dir / "analysis" / "vertex.json").read_text())
    assert on_disk == out
    catalog = Catalog.open(run_dir / "catalog")
    expected = select_partitions(catalog, GalacticBox())
    assert out["partitions_read"] == len(expected) < out["partitions_total"]
    assert out["pixels_read"] == [f"{o}/{p}" for o, p in expected]
    all_rows = pd.read_parquet(run_dir / "all_rows.parquet")
    assert out["n_stars_selected"] == len(vertex_samples(all_rows)) > 800
    # the cut cascade over the partitions read: every row read, then each cut in turn
    counts = out["cut_counts"]
    assert list(counts) == list(VERTEX_CUTS) and counts["rows"] == out["rows_read"]
    assert counts["position_sigma"] == out["n_stars_selected"]
    in_box = selection_masks(all_rows)["box"].sum()
    assert counts["box"] == in_box > counts["distance_window"] >= counts["position_sigma"]
    samples = out["samples"]
    assert {"metal_poor", "metal_rich"} <= set(samples)
    bins = [s for s in samples.values() if s["kind"] == "bin"]
    assert len(bins) == 7
    # bins below min_stars are reported but not fitted
    sparse = [s for s in bins if s["n_stars"] < 100]
    assert sparse and all(s["fitted"]["vertex_deg"] is None for s in sparse)
    assert all(s["fitted"]["vertex_deg"] is not None for s in bins if s["n_stars"] >= 100)
    for name in ("metal_poor", "metal_rich"):
        for variant in ("fitted", "zeroed"):
            fit = samples[name][variant]
            for key in (
                "vertex_deg",
                "vertex_err_deg",
                "range_deg",
                "n_stars",
                "acceptance_fraction",
                "autocorr_time",
            ):
                assert key in fit, (name, variant, key)
            assert -45 <= fit["vertex_deg"] <= 45
    assert out["truth"]["metal_rich"]["vertex_deg"] == -25.0
    assert [r["sample"] for r in out["table3"]] == ["metal_poor"] * 2 + ["metal_rich"] * 2
    for key in ("seconds", "seconds_fit", "frame", "rows_read"):
        assert key in out
    for key in ("fig12", "fig13"):
        _figure_ok(out["files"][key])
    csv = pd.read_csv(out["files"]["table3_csv"])
    assert len(csv) == 4 and math.isclose(csv["truth_vertex_deg"].iloc[2], -25.0)
    assert "| metal-rich |" in Path(out["files"]["table3_md"]).read_text()


def test_missing_columns_say_run_process(tmp_path, client):
    df = synthetic_rows(seed=1).drop(columns=["feh", "feh_error", "z_gc_error"])
    write_catalog(df, tmp_path / "run" / "catalog")
    with pytest.raises(InputError, match=r"feh, feh_error.*bigcat process"):
        run_gradient(client, tmp_path / "run", Config())
    result = CliRunner().invoke(cli, ["analyze", "vertex", str(tmp_path / "run")])
    assert result.exit_code != 0
    assert "bigcat process" in str(result.exception)
    result = CliRunner().invoke(cli, ["analyze", "gradient", str(tmp_path / "nowhere")])
    assert result.exit_code != 0


def test_cli_gradient_on_existing_scheduler(client, run_dir, tmp_path):
    result = CliRunner().invoke(
        cli,
        [
            "analyze",
            "gradient",
            str(run_dir),
            "--scheduler",
            client.scheduler.address,
            "--bootstrap",
            "20",
            "--out",
            str(tmp_path / "cli"),
        ],
    )
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert "dex/kpc" in result.output
    assert (tmp_path / "cli" / "gradient.json").exists()
