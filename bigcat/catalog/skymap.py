"""The sky map of a run's partitions as data: outlines, per-partition state and statistics.

Pure functions and one plain class, no Dask and no I/O, shared by the live sky map of the
Dask dashboard (``bigcat.dashboard``) and the report's partition map
(``bigcat.report.skymap``), so both draw the same polygons from the same per-partition
summaries.

* **Outlines**: each partition ``(order, pixel)`` (nested HEALPix, equatorial ICRS, any order:
  adaptive partitions mix orders 0..5) is traced with ``healpy.boundaries`` (more points per
  side for coarser orders), rotated to **Galactic** coordinates and projected to **Mollweide**
  with l = 0 at the centre and l increasing to the left (as ``healpy.mollview`` draws).
  Projected coordinates: x in [-2 sqrt 2, 2 sqrt 2], y in [-sqrt 2, sqrt 2] (north up). A
  partition cut by the l = 180 deg edge comes as two rings (one shifted by 360 deg in l); a
  ring reaches past the ellipse there and is drawn clipped to it. A partition holding a
  Galactic pole is closed along the meridians and the pole.
* **State**: :class:`SkyState` follows the per-partition stages (photometry, stage1, distance,
  stage2) from the summaries their tasks return and gives the status (``status()``), one
  column per quantity aligned with the partition list (``columns()``), and both together
  (``to_dict()``, what ``bigcat.report.skymap.write_skymap_png`` draws).
* **[Fe/H] per partition**: stage 2's summary holds a histogram of [Fe/H] in
  :data:`FEH_HIST` bins (:func:`feh_histogram`), which adds up across the pieces of a
  partition as every summary field does; the median is taken from it
  (:func:`histogram_median`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

#: The per-partition stages, in pipeline order (their task names are ``<stage>-pix<N>``).
PARTITION_STAGES = ("photometry", "stage1", "distance", "stage2")
#: [Fe/H] histogram of the stage-2 summary: (low edge, high edge, bins), dex; values outside
#: go into the end bins.
FEH_HIST = (-2.5, 1.0, 40)
#: The frame and projection of the outlines.
FRAME = "galactic"
PROJECTION = "mollweide"
X_MAX = 2.0 * math.sqrt(2.0)
Y_MAX = math.sqrt(2.0)
SKY_DEG2 = 4.0 * math.pi * (180.0 / math.pi) ** 2


def feh_histogram(feh: np.ndarray) -> list[int]:
    """Counts of the finite ``feh`` values in the :data:`FEH_HIST` bins (a plain list)."""
    lo, hi, nb = FEH_HIST
    v = np.asarray(feh, dtype=np.float64)
    v = v[np.isfinite(v)]
    b = np.clip(np.floor((v - lo) / (hi - lo) * nb).astype(np.int64), 0, nb - 1)
    return [int(c) for c in np.bincount(b, minlength=nb)]


def histogram_median(counts: Sequence[float] | None, spec: tuple = FEH_HIST) -> float | None:
    """Median of a fixed-bin histogram (linear within the bin), None when it is empty."""
    if not counts:
        return None
    lo, hi, nb = spec
    c = np.asarray(counts, dtype=np.float64)
    total = c.sum()
    if not total > 0 or len(c) != nb:
        return None
    cum = np.cumsum(c)
    k = int(np.searchsorted(cum, total / 2.0))
    before = cum[k - 1] if k > 0 else 0.0
    frac = (total / 2.0 - before) / c[k] if c[k] > 0 else 0.5
    return float(lo + (k + frac) * (hi - lo) / nb)


def partition_area_deg2(order: int) -> float:
    """Area of one HEALPix pixel of ``order`` (deg^2)."""
    return SKY_DEG2 / (12 * 4**order)


# --- outlines -----------------------------------------------------------------------------


def mollweide(lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mollweide x, y of longitudes and latitudes (radians; x grows to the east = left is
    +l: x = -2 sqrt2 / pi * lon * cos(theta)). Longitudes beyond +-pi extend linearly (outside
    the ellipse), which is what the clipped second ring of an edge partition needs."""
    lon = np.asarray(lon, dtype=np.float64)
    lat = np.asarray(lat, dtype=np.float64)
    target = math.pi * np.sin(lat)
    t = 2.0 * lat  # t = 2 theta: t + sin t = pi sin(lat)
    for _ in range(60):
        denom = 1.0 + np.cos(t)
        ok = denom > 1e-12
        step = np.where(ok, (t + np.sin(t) - target) / np.where(ok, denom, 1.0), 0.0)
        t = t - step
        if np.max(np.abs(step), initial=0.0) < 1e-12:
            break
    theta = np.where(np.abs(lat) >= math.pi / 2 - 1e-12, lat, t / 2.0)
    x = -(X_MAX / math.pi) * lon * np.cos(theta)
    y = Y_MAX * np.sin(theta)
    return x, y


def _steps(order: int) -> int:
    """Points per pixel side for ``order``: edges stay a few degrees long at most."""
    return int(min(32, max(1, 2 ** (6 - order))))


def _wrap(a: np.ndarray) -> np.ndarray:
    return (a + math.pi) % (2 * math.pi) - math.pi


def _lonlat_rings(lon: np.ndarray, lat: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """One pixel outline (radians, closed implicitly) as rings in an unwrapped longitude,
    with copies shifted by 360 deg where the outline crosses l = +-180 deg."""
    d = _wrap(np.diff(np.r_[lon, lon[0]]))
    winding = float(d.sum())
    ul = lon[0] + np.r_[0.0, np.cumsum(d[:-1])]
    ub = lat
    if abs(winding) > math.pi:  # the outline goes round a pole: close it along the meridians
        pole = math.copysign(math.pi / 2, float(np.mean(lat)))
        end = ul[0] + winding
        up = np.linspace(lat[0], pole, 16)
        ul = np.r_[ul, np.full(16, end), np.full(16, ul[0])]
        ub = np.r_[ub, up, up[::-1]]
    centre = 0.5 * (ul.min() + ul.max())
    ul = ul - 2 * math.pi * round(centre / (2 * math.pi))
    out = []
    for shift in (-2 * math.pi, 0.0, 2 * math.pi):
        s = ul + shift
        if s.min() < math.pi and s.max() > -math.pi:
            out.append((s, ub))
    return out


def partition_outlines(
    pixels: Sequence[tuple[int, int]], decimals: int = 4
) -> list[list[list[float]]]:
    """Mollweide outlines (Galactic) of nested HEALPix partitions of any orders.

    Returns, per partition in the order given, a list of rings, each a flat list
    ``[x0, y0, x1, y1, ...]`` rounded to ``decimals`` (what the page and the PNG draw).
    """
    import healpy as hp

    rot = hp.Rotator(coord=["C", "G"]).mat
    out: list[list[list[float]]] = [[] for _ in pixels]
    by_order: dict[int, list[int]] = {}
    for i, (order, _) in enumerate(pixels):
        by_order.setdefault(int(order), []).append(i)
    for order, idx in by_order.items():
        ipix = np.array([pixels[i][1] for i in idx], dtype=np.int64)
        vec = hp.boundaries(2**order, ipix, step=_steps(order), nest=True)  # (n, 3, 4 step)
        g = np.einsum("ij,njk->nik", rot, vec.reshape(len(ipix), 3, -1))
        lon = np.arctan2(g[:, 1], g[:, 0])
        lat = np.arcsin(np.clip(g[:, 2], -1.0, 1.0))
        # the common case at once: outlines inside -180 < l < 180 once unwrapped
        d = _wrap(np.diff(np.concatenate([lon, lon[:, :1]], axis=1), axis=1))
        ul = lon[:, :1] + np.concatenate([np.zeros((len(ipix), 1)), np.cumsum(d[:, :-1], 1)], 1)
        ul -= 2 * math.pi * np.round(0.5 * (ul.min(1) + ul.max(1)) / (2 * math.pi))[:, None]
        simple = (np.abs(d.sum(1)) < math.pi) & (ul.min(1) > -math.pi) & (ul.max(1) < math.pi)
        x, y = mollweide(ul, lat)
        flat = np.round(np.stack([x, y], axis=2).reshape(len(ipix), -1), decimals)
        for row, i in enumerate(idx):
            if simple[row]:
                out[i].append(flat[row].tolist())
                continue
            for rl, rb in _lonlat_rings(lon[row], lat[row]):
                rx, ry = mollweide(rl, rb)
                out[i].append(np.round(np.column_stack([rx, ry]).ravel(), decimals).tolist())
    return out


def graticule(step_lat: int = 30, step_lon: int = 60, decimals: int = 4) -> list[list[float]]:
    """Graticule polylines (flat ``[x0, y0, ...]``): parallels every ``step_lat`` deg and
    meridians every ``step_lon`` deg, Galactic, projected as the outlines are."""
    lines = []
    t = np.radians(np.linspace(-180.0, 180.0, 121))
    for b in range(-90 + step_lat, 90, step_lat):
        x, y = mollweide(t, np.full_like(t, math.radians(b)))
        lines.append(np.round(np.column_stack([x, y]).ravel(), decimals).tolist())
    p = np.radians(np.linspace(-90.0, 90.0, 91))
    for lon in range(-180 + step_lon, 180, step_lon):
        x, y = mollweide(np.full_like(p, math.radians(lon)), p)
        lines.append(np.round(np.column_stack([x, y]).ravel(), decimals).tolist())
    return lines


# --- per-partition state ------------------------------------------------------------------


class SkyState:
    """What the sky map shows: per partition the last stage done and its counts; per run the
    stage, progress and an estimate of the time left in the current per-partition stage.

    Fed with :meth:`stage_started` (every stage of ``bigcat process``) and
    :meth:`partitions_done` (a per-partition stage's summaries as its tasks finish; a
    summary with ``planned: True`` announces a partition the stage is about to process).
    Not thread-safe by itself (``bigcat.dashboard.Board`` holds a lock around it).
    """

    def __init__(self, run_dir: str = "") -> None:
        self.run_dir = str(run_dir)
        self.started = time.time()
        self.updated = self.started
        self.stage = "waiting"
        self.stage_t0 = self.started
        self.stages_seen: list[str] = []
        self.labelled: int | None = None
        self.finished = False
        #: (order, pixel) -> {"done": 0..4, "rows", "giants", "with_feh", "feh_hist"}
        self.pixels: dict[tuple[int, int], dict[str, Any]] = {}
        #: stage -> {(order, pixel): summary} of the partitions done in this run
        self.done: dict[str, dict[tuple[int, int], dict]] = {s: {} for s in PARTITION_STAGES}
        #: bumped whenever the partition list changes (the outlines are then sent again)
        self.layout_version = 0
        #: the [Fe/H] histograms of the partitions done by stage 2, summed
        self.feh_hist_total = np.zeros(FEH_HIST[2], dtype=np.int64)

    # -- events --

    def stage_started(self, name: str, now: float | None = None) -> None:
        """A stage of the run started (any stage, per-partition or not)."""
        now = time.time() if now is None else now
        self.stage, self.stage_t0, self.updated = name, now, now
        self.stages_seen.append(name)
        if name in self.done:  # a stage run again in this process starts from zero
            self.done[name] = {}

    def partitions_done(
        self, stage: str, summaries: Iterable[dict], now: float | None = None
    ) -> None:
        """Summaries (one per partition, with ``order`` and ``pixel``) of ``stage``."""
        now = time.time() if now is None else now
        rank = PARTITION_STAGES.index(stage) + 1 if stage in PARTITION_STAGES else 0
        for s in summaries:
            key = (int(s["order"]), int(s["pixel"]))
            if not (0 <= key[0] <= 29 and 0 <= key[1] < 12 * 4 ** key[0]):
                raise ValueError(f"no HEALPix pixel {key[1]} at order {key[0]}")
            px = self.pixels.get(key)
            if px is None:
                px = self.pixels[key] = {"done": 0}
                self.layout_version += 1
            if s.get("planned") or not rank:
                continue
            self.done[stage][key] = s
            px["done"] = max(px["done"], rank)
            if isinstance(s.get("rows"), int):
                px["rows"] = s["rows"]
            if stage == "photometry" and "giants" in s:
                px["giants"] = int(s["giants"])
                px["giants_per_deg2"] = round(px["giants"] / partition_area_deg2(key[0]), 4)
            if stage == "stage2":
                px["with_feh"] = s.get("with_feh")
                old, hist = px.get("feh_hist"), s.get("feh_hist")
                if old is not None:
                    self.feh_hist_total -= np.asarray(old, dtype=np.int64)
                if hist is not None and len(hist) == FEH_HIST[2]:
                    self.feh_hist_total += np.asarray(hist, dtype=np.int64)
                else:
                    hist = None
                px["feh_hist"] = hist
                median = histogram_median(hist)
                px["feh_median"] = None if median is None else round(median, 4)
        self.updated = now

    def set_labelled(self, n: int | None) -> None:
        """The stage-2 training sample's size (labelled giants), from its stage record."""
        if n is not None and n != self.labelled:
            self.labelled = int(n)
            self.updated = time.time()

    def finish(self, now: float | None = None) -> None:
        self.finished = True
        self.stage = "finished"
        self.updated = time.time() if now is None else now

    # -- views --

    def keys(self) -> list[tuple[int, int]]:
        """The partitions, in the order of :meth:`columns` and the outlines."""
        return sorted(self.pixels)

    def _eta(self, now: float) -> float | None:
        """Seconds left in the current per-partition stage (None when not in one): the work
        left at the rate of the partitions computed since the stage started (reused ones
        count as done but not in the rate); work in rows once photometry has counted them."""
        stage = self.stage
        if stage not in self.done or not self.pixels:
            return None
        done = self.done[stage]
        rows = [p.get("rows") for p in self.pixels.values()]
        if None in rows:  # not all counted yet (photometry): work in partitions
            total, finished = float(len(rows)), float(len(done))
            computed = float(sum(1 for s in done.values() if s.get("computed", True)))
        else:
            total = float(sum(r for r in rows if r is not None))
            finished = float(sum(self.pixels[k]["rows"] for k in done))
            computed = float(
                sum(self.pixels[k]["rows"] for k, s in done.items() if s.get("computed", True))
            )
        elapsed = now - self.stage_t0
        if finished >= total:
            return 0.0
        if computed <= 0 or elapsed <= 0:
            return None
        return round((total - finished) * elapsed / computed, 1)

    def status(self, now: float | None = None) -> dict[str, Any]:
        """The document of ``/bigcat/status.json``."""
        now = time.time() if now is None else now
        current = self.stage if self.stage in self.done else None
        last = current or next((s for s in reversed(self.stages_seen) if s in self.done), None)
        rows_done = sum(int(s.get("rows", 0) or 0) for s in self.done[last].values()) if last else 0
        pxs = self.pixels.values()
        rows_known = [p["rows"] for p in pxs if "rows" in p]
        giants = [p["giants"] for p in pxs if "giants" in p]
        with_feh = [p["with_feh"] for p in pxs if isinstance(p.get("with_feh"), int)]
        return {
            "stage": self.stage,
            "stages": list(self.stages_seen),
            "pixels_total": len(self.pixels),
            "pixels_done": {s: len(self.done[s]) for s in PARTITION_STAGES},
            "rows_total": sum(rows_known)
            if rows_known and len(rows_known) == len(self.pixels)
            else None,
            "rows_done": rows_done,
            "rows_stage": last,
            "giants": sum(giants) if giants else None,
            "labelled": self.labelled,
            "with_feh": sum(with_feh) if with_feh else None,
            "feh_median": histogram_median(self.feh_hist_total.tolist()),
            "eta_s": self._eta(now),
            "run_dir": self.run_dir,
            "started": round(self.started, 3),
            "updated": round(self.updated, 3),
            "now": round(now, 3),
            "finished": self.finished,
            "layout_version": self.layout_version,
            "frame": FRAME,
            "projection": PROJECTION,
        }

    def columns(self) -> dict[str, list]:
        """Per-partition values, one list per quantity in the order of :meth:`keys`:
        ``order``, ``pixel``, ``done`` (0 none, 1..4 the index in
        :data:`PARTITION_STAGES` + 1 of the last stage done), ``rows``, ``giants``,
        ``giants_per_deg2``, ``with_feh``, ``feh_median`` (None where unknown)."""
        keys = self.keys()
        px = [self.pixels[k] for k in keys]
        return {
            "order": [k[0] for k in keys],
            "pixel": [k[1] for k in keys],
            "done": [p["done"] for p in px],
            "rows": [p.get("rows") for p in px],
            "giants": [p.get("giants") for p in px],
            "giants_per_deg2": [p.get("giants_per_deg2") for p in px],
            "with_feh": [p.get("with_feh") for p in px],
            "feh_median": [p.get("feh_median") for p in px],
        }

    def to_dict(self, now: float | None = None) -> dict[str, Any]:
        """Status and per-partition columns together (``{**status, "columns": ...}``)."""
        return {
            **self.status(now),
            "stage_names": list(PARTITION_STAGES),
            "columns": self.columns(),
        }
