"""`bigcat report`: every table and figure of a small run is present and non-empty; missing
parts become placeholders naming the command; the page is self-contained and renders in
headless Chromium."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from bigcat.cli import cli
from bigcat.errors import InputError
from bigcat.report import build_report
from bigcat.report.collect import hash_unit
from bigcat.report.figures import column_quantiles

TABLES = ["table1", "table2", "table3"]
FIGURES = ["fig3", "fig4", "fig5", "fig8", "fig9", "fig10", "fig11", "fig12", "fig13"]
SKY = ["sky_counts", "sky_feh", "sky_aks", "sky_aks_truth"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


class _Page(HTMLParser):
    """Tables (by data-table) with their cell texts, figure blocks with their images."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[str]] = {}
        self.figures: dict[str, list[str]] = {}
        self.external: list[str] = []
        self._table: str | None = None
        self._figure: str | None = None
        self._cell = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table" and a.get("data-table"):
            self._table = a["data-table"]
            self.tables[self._table] = []
        if tag in ("td", "th") and self._table:
            self._cell = True
        if tag == "figure":
            self._figure = a.get("data-figure")
            self.figures[self._figure or ""] = []
        if tag == "img" and self._figure is not None:
            self.figures[self._figure].append(a["src"])
        for key in ("src", "href"):
            v = a.get(key) or ""
            if re.match(r"(https?:)?//", v) or tag in ("script", "link"):
                self.external.append(f"{tag} {v}")

    def handle_endtag(self, tag):
        if tag == "table":
            self._table = None
        if tag in ("td", "th"):
            self._cell = False
        if tag == "figure":
            self._figure = None

    def handle_data(self, data):
        if self._table and self._cell and data.strip():
            self.tables[self._table].append(data.strip())


def _parse(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text())
    return page


def _assert_png(path: Path, min_bytes: int = 8_000) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > min_bytes, (path, len(data))
    import matplotlib.image as mpimg

    img = mpimg.imread(path)
    assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100
    colours = np.unique((img[..., :3] * 255).astype(np.uint8).reshape(-1, 3), axis=0)
    assert len(colours) > 10, f"{path} looks blank ({len(colours)} colours)"


@pytest.fixture(scope="module")
def full_report(full_run, client) -> Path:
    return build_report(full_run, client)


def test_full_report_has_every_table_and_figure(full_report, full_run):
    assert full_report == full_run / "report.html"
    page = _parse(full_report)
    text = full_report.read_text()
    assert not page.external, page.external  # offline: no CDN, scripts or remote images
    for key in TABLES:
        cells = page.tables.get(key)
        assert cells, f"{key} missing or empty"
        assert any(re.search(r"\d", c) for c in cells), (key, cells[:10])
        assert (full_run / "report" / f"{key}.csv").stat().st_size > 50
    for key in [*FIGURES, *SKY]:
        srcs = page.figures.get(key)
        assert srcs, f"{key}: no image in the report"
        png = full_report.parent / srcs[0]
        assert png.parent == full_run / "report"
        _assert_png(png)
    assert 'class="placeholder"' not in text, re.findall(r'placeholder">([^<]*)', text)
    # Table 1 has the paper's five distance bins; Table 2 the overall row plus six bins
    assert sum("< d <" in c for c in page.tables["table1"]) == 5
    assert sum("< [Fe/H] <" in c for c in page.tables["table2"]) == 7
    # the truth is shown (synthetic run) and the analyses' numbers reach Table 3
    assert "Truth" in text and "-19.0000" in text and "-20.00" in text
    # provenance: version, stages with timings, models, cluster, fingerprints
    for needle in (
        "bigcat version",
        "stage1-train",
        "fold0.json",
        "n_workers",
        "input_fingerprint",
        "weights_sha256",
        "apogee_read",
        "run.log",
    ):
        assert needle in text, needle
    assert set(page.tables) >= {"stages", "stage1-models"}


def test_missing_parts_are_placeholders_naming_the_command(stage1_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(stage1_run, run)
    path = build_report(run)  # serially, without a cluster
    page = _parse(path)
    text = path.read_text()
    assert "not run yet: run `bigcat analyze vertex RUN_DIR`" in text
    assert "not run yet: run `bigcat analyze gradient RUN_DIR`" in text
    assert "stage 2 (metallicities) not run yet" in text
    for key in ("fig3", "fig4", "fig5", "sky_counts", "sky_aks"):
        assert page.figures.get(key), key
        _assert_png(path.parent / page.figures[key][0])
    for key in ("fig8", "fig9", "fig10", "fig11", "fig12", "fig13", "sky_feh"):
        assert key in page.figures and not page.figures[key], key
    assert page.tables.get("table1") and "table2" not in page.tables


def test_empty_and_missing_directories(tmp_path):
    path = build_report(tmp_path)
    text = path.read_text()
    assert text.count('class="placeholder"') >= len(TABLES) + len(FIGURES)
    assert "no run.json" in text
    with pytest.raises(InputError, match="not a directory"):
        build_report(tmp_path / "nowhere")


def test_cli_report(stage1_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(stage1_run, run)
    result = CliRunner().invoke(cli, ["report", str(run)])
    assert result.exit_code == 0, result.output
    assert f"Report: {run.resolve() / 'report.html'}" in result.output
    assert (run / "report" / "fig3_giant_cut.png").exists()


def test_report_in_headless_chromium(full_report, tmp_path):
    if not CHROMIUM:
        pytest.skip(
            "chromium is not installed (Debian package `chromium`; .ci/run installs it with "
            "apt-get): the report screenshot cannot be taken"
        )
    png = tmp_path / "report-screenshot.png"
    profile = tempfile.mkdtemp(prefix="bigcat-chromium-")
    proc = subprocess.Popen(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            "--hide-scrollbars",
            "--window-size=1400,3000",
            f"--screenshot={png}",
            full_report.as_uri(),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        proc.wait(timeout=90)
    finally:
        if proc.poll() is None:
            import os

            os.killpg(proc.pid, signal.SIGKILL)  # its own session: chromium and its helpers
            proc.wait()
        shutil.rmtree(profile, ignore_errors=True)
    print(f"report screenshot: {png}")
    assert png.exists(), "chromium wrote no screenshot"
    _assert_png(png, min_bytes=50_000)


def test_subsample_hash_and_histogram_quantiles():
    ids = np.arange(1, 200_001, dtype=np.int64) * 7919
    u = hash_unit(ids)
    assert np.array_equal(u, hash_unit(ids.copy())) and 0 <= u.min() and u.max() < 1
    assert abs((u < 0.1).mean() - 0.1) < 0.005  # uniform: a 10% subsample keeps ~10%
    # one column holding 0..99 uniformly in 100 unit bins: quantiles are exact
    hist = np.ones((1, 100))
    q = column_quantiles(hist, np.arange(101.0), (0.16, 0.5, 0.84))
    assert np.allclose(q[:, 0], [16, 50, 84])
    assert np.isnan(column_quantiles(np.zeros((1, 100)), np.arange(101.0), (0.5,))).all()


def test_a_figure_that_fails_to_draw_becomes_a_note(tmp_path):
    """Each figure is its own job (a cluster task in the pipeline): one that raises gives a
    note naming the error, and the order of the report's figures is FIGURE_JOBS'."""
    from bigcat.report.figures import FIGURE_JOBS, all_figures, draw_figure

    [note] = draw_figure("fig3", None, tmp_path)  # no data at all: fig3 raises
    assert note.path is None and note.missing.startswith("could not be drawn: AttributeError")
    calls = []

    def run(names):
        calls.append(list(names))
        return [draw_figure(n, None, tmp_path) for n in names]

    figs = all_figures(None, tmp_path, run)
    assert calls == [list(FIGURE_JOBS)]
    assert [f.key for f in figs][:3] == ["fig3", "fig4", "fig5"]
    assert all(f.missing for f in figs)
