"""A distance prior learnt from the catalogue itself: per HEALPix level-5 pixel and apparent-
magnitude bin, the distance distribution of the giants, deconvolved from their parallaxes.

Model
-----
In each cell c = (level-5 pixel, G-magnitude bin) the giants' distances r are drawn from a
distribution p_c(u), u = ln r, represented on a fixed grid ``u_j`` (``GRID``: 30 pc to 100 kpc)
as weights ``w_cj``; each star's parallax (here the combined Gaia + photometric parallax) is
``N(parallax | 1000 / r, sigma)``. The weights maximise the marginal likelihood of the observed
parallaxes, ``sum_i ln sum_j w_cj N(parallax_i | 1000 / r_j, sigma_i)``, by EM (the E-step gives
each star's posterior over the grid, the M-step sets w_c to the mean of its stars'), i.e. a
non-parametric empirical-Bayes deconvolution; each M-step is followed by a small Gaussian
smoothing in u (EMS, Silverman et al. 1990), which regularises the deconvolution.

Hierarchical pooling
--------------------
A level-5 pixel of the thin halo sky holds a handful of giants; the bulge pixels thousands. The
cells are fitted top down over HEALPix orders (``ORDERS``: the whole sky per magnitude bin, then
orders 1, 3 and 5), each cell's M-step adding ``pool_strength`` pseudo-stars distributed as its
parent's fit (a Dirichlet prior centred on the parent, i.e. MAP-EM):
``w_cj = (sum_i R_ij + kappa q_j) / (n_c + kappa)``. A cell with many giants is its own fit; a
cell with few is its parent's, which pools the neighbouring sky. Magnitude bins are kept apart
at every order (faint giants are farther away): conditioning the prior on apparent magnitude
is what removes the bias of distances by magnitude that a prior shared by all magnitudes of a
pixel leaves (bright giants pulled out, faint ones in).

Using it
--------
A star's log prior is interpolated linearly in G between the centres of the two nearest
magnitude bins of its pixel (so the prior varies smoothly with magnitude), with a floor
``FLOOR`` of a density uniform in u mixed in, so that no star falls where the prior is exactly
zero. :func:`bigcat.astrometry.distance.grid_distance_posterior` turns it into distances.

Everything here is numpy on arrays; the stage (``bigcat.stages.distance``) gathers the stars and
maps the posterior over partitions.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bigcat.atomic import write_bytes_atomic, write_json_atomic
from bigcat.errors import CatalogError

logger = logging.getLogger(__name__)

#: Level-5 pixels (nside 32) of the prior, as the Bailer-Jones et al. (2021) priors.
ORDER = 5
N_PIXELS = 12 * 4**ORDER
#: The distance grid: ln r (pc), uniform, 30 pc .. 100 kpc (steps of 8.5% in distance).
GRID = np.linspace(np.log(30.0), np.log(1.0e5), 96)
GRID_STEP = float(GRID[1] - GRID[0])
#: HEALPix orders fitted top down (the first is the whole sky: "order -1").
ORDERS = (-1, 1, 3, 5)
#: Weight of a density uniform in ln r mixed into every cell's prior.
FLOOR = 1e-3


@dataclass(frozen=True)
class LearntPriorSettings:
    """Settings of the learnt distance prior (``[stage1] prior_*``).

    Attributes
    ----------
    mag_edges : tuple of float
        Interior edges (G, mag) of the apparent-magnitude bins.
    pool_strength : float
        Pseudo-stars a cell borrows from its parent cell (see the module docstring).
    smoothing : float
        Standard deviation (in ln r) of the Gaussian smoothing after each M-step.
    iterations : int
        EM iterations at each HEALPix order below 5 (each starts from its parent's fit).
    iterations_finest : int
        EM iterations at order 5, where most cells hold few giants and start close to their
        parent's fit.
    cap_per_cell : int
        At most this many giants per (level-5 pixel, magnitude bin) are used (chosen by a hash
        of source_id, the same whatever the partitioning).
    """

    mag_edges: tuple[float, ...] = (13.0, 14.0, 15.0, 16.0, 17.0, 18.0)
    pool_strength: float = 20.0
    smoothing: float = 0.08
    iterations: int = 30
    iterations_finest: int = 10
    cap_per_cell: int = 400

    def to_dict(self) -> dict:
        """Plain-data form."""
        return {
            "mag_edges": list(self.mag_edges),
            "pool_strength": self.pool_strength,
            "smoothing": self.smoothing,
            "iterations": self.iterations,
            "iterations_finest": self.iterations_finest,
            "cap_per_cell": self.cap_per_cell,
        }


#: Salt of the hash that splits the stars into the two halves of the cross-fitting.
HALF_SALT = 11


def prior_half(source_id: np.ndarray) -> np.ndarray:
    """0 or 1 per star: its half of the cross-fitting (by a hash of source_id)."""
    from bigcat.catalog.sampling import unit_hash

    return (unit_hash(np.asarray(source_id), salt=HALF_SALT) >= 0.5).astype(np.int64)


def mag_bin(mag: np.ndarray, edges: tuple[float, ...]) -> np.ndarray:
    """Magnitude bin of each star (0 .. len(edges)); NaN magnitudes go to the last bin."""
    m = np.asarray(mag, dtype=np.float64)
    return np.searchsorted(np.asarray(edges, dtype=np.float64), np.where(np.isnan(m), np.inf, m))


def mag_centres(edges: tuple[float, ...]) -> np.ndarray:
    """Representative magnitude of each bin: midpoints, the open end bins one bin-width out."""
    e = np.asarray(edges, dtype=np.float64)
    if e.size == 1:
        return np.array([e[0] - 0.5, e[0] + 0.5])
    mids = 0.5 * (e[1:] + e[:-1])
    return np.concatenate([[e[0] - 0.5 * (e[1] - e[0])], mids, [e[-1] + 0.5 * (e[-1] - e[-2])]])


@dataclass(frozen=True)
class LearntPrior:
    """A fitted prior: log density in u = ln r on ``GRID`` per (level-5 pixel, magnitude bin),
    cross-fitted: the stars are split in two halves by a hash of source_id, each half's prior
    is fitted to the other half's stars, and a star's distance uses the prior fitted without
    it (a prior fitted to a star's own parallax would narrow that star's posterior).

    Attributes
    ----------
    log_density : numpy.ndarray, shape (2, N_PIXELS, n_bins, len(GRID))
        ln p(u) (normalised: sum_j exp(.) GRID_STEP = 1), floor included, float16; index 0 is
        the prior for stars of half 0 (fitted to half 1's stars), index 1 the other.
    settings : LearntPriorSettings
    info : dict
        Counts and provenance (stars used, per order).
    """

    log_density: np.ndarray
    settings: LearntPriorSettings
    info: dict = field(default_factory=dict, compare=False)

    @property
    def source(self) -> str:
        """One line saying what this prior is."""
        return (
            "learnt from the catalogue: per level-5 pixel and G bin, giants' distances "
            f"deconvolved from their parallaxes ({self.info.get('stars_used', '?')} giants)"
        )

    def log_prior_rows(
        self, healpix5: np.ndarray, mag: np.ndarray, source_id: np.ndarray
    ) -> np.ndarray:
        """ln p(u) on ``GRID`` for each star, shape (n, len(GRID)), float32: the prior fitted
        without the star's half, of its pixel, linearly interpolated in G between the two
        nearest bin centres (clamped at the end bins)."""
        pix = np.clip(np.asarray(healpix5, dtype=np.int64), 0, N_PIXELS - 1)
        half = prior_half(source_id)
        centres = mag_centres(self.settings.mag_edges)
        m = np.asarray(mag, dtype=np.float64)
        m = np.where(np.isfinite(m), m, centres[-1])
        pos = np.interp(m, centres, np.arange(centres.size, dtype=np.float64))
        lo = np.floor(pos).astype(np.int64)
        hi = np.minimum(lo + 1, centres.size - 1)
        t = (pos - lo)[:, None].astype(np.float32)
        table = self.log_density
        a = table[half, pix, lo].astype(np.float32)
        b = table[half, pix, hi].astype(np.float32)
        return (1.0 - t) * a + t * b

    def fingerprint(self) -> str:
        """sha256 prefix of the table and settings."""
        h = hashlib.sha256(np.ascontiguousarray(self.log_density).tobytes())
        h.update(json.dumps(self.settings.to_dict(), sort_keys=True).encode())
        return h.hexdigest()[:16]

    def save(self, path: str | Path) -> None:
        """Write ``path`` (.npz: the table) and ``path`` with .json (settings, info)."""
        path = Path(path)
        buffer = io.BytesIO()  # np.savez would add ".npz" to a temporary name
        np.savez_compressed(buffer, log_density=self.log_density, grid=GRID)
        write_bytes_atomic(buffer.getvalue(), path)
        meta = {"settings": self.settings.to_dict(), "info": self.info, "sha": self.fingerprint()}
        write_json_atomic(meta, path.with_suffix(".json"), indent=1, default=float)

    @classmethod
    def load(cls, path: str | Path) -> LearntPrior:
        """Read what :meth:`save` wrote (checked against its recorded hash)."""
        path = Path(path)
        try:
            with np.load(path) as data:
                table = data["log_density"]
                grid = data["grid"]
            meta = json.loads(path.with_suffix(".json").read_text())
        except (OSError, KeyError, ValueError) as exc:
            raise CatalogError(
                f"{path}: cannot read the learnt distance prior ({exc}). Delete it and run "
                "`bigcat process` again to refit it."
            ) from exc
        s = meta["settings"]
        settings = LearntPriorSettings(
            tuple(float(x) for x in s["mag_edges"]),
            float(s["pool_strength"]),
            float(s["smoothing"]),
            int(s["iterations"]),
            int(s["iterations_finest"]),
            int(s["cap_per_cell"]),
        )
        prior = cls(table, settings, meta.get("info", {}))
        if not np.allclose(grid, GRID) or prior.fingerprint() != meta.get("sha"):
            raise CatalogError(
                f"{path}: the learnt distance prior does not match its sidecar (a partial or "
                "edited file). Delete it and run `bigcat process` again to refit it."
            )
        return prior


def selection_log_factor(model_plx: np.ndarray, sig: np.ndarray, bound: np.ndarray) -> np.ndarray:
    """-ln P(selected | r) of a star kept only because its observed parallax was below
    ``bound`` (mas; the giant cut in parallax units): ``-ln Phi((bound - 1000/r) / sigma)``,
    0 where the bound is not finite. Shapes broadcast."""
    from scipy.special import log_ndtr

    b = np.asarray(bound, dtype=np.float64)
    finite = np.isfinite(b)
    z = (np.where(finite, b, 0.0) - model_plx) / sig
    return np.where(finite, -log_ndtr(z), 0.0)


def _likelihood_rows(plx: np.ndarray, sig: np.ndarray, bound: np.ndarray | None) -> np.ndarray:
    """Each star's parallax likelihood on the grid (n, len(GRID)), float32, each row scaled to
    a peak of 1 (per-star constants do not matter to EM); with ``bound``, the likelihood of a
    star selected by parallax < bound (truncated Gaussian)."""
    model = 1000.0 * np.exp(-GRID)  # mas
    out = np.empty((plx.size, GRID.size), dtype=np.float32)
    for start in range(0, plx.size, 32768):
        sl = slice(start, start + 32768)
        z = (plx[sl, None] - model[None, :]) / sig[sl, None]
        log_l = -0.5 * z * z
        if bound is not None:
            log_l += selection_log_factor(model[None, :], sig[sl, None], bound[sl, None])
        log_l -= log_l.max(axis=1, keepdims=True)
        out[sl] = np.exp(log_l)
    return out


def _smooth_kernel(width: float) -> np.ndarray:
    half = max(1, int(np.ceil(4 * width / GRID_STEP)))
    x = np.arange(-half, half + 1) * GRID_STEP
    k = np.exp(-0.5 * (x / max(width, 1e-9)) ** 2)
    return k / k.sum()


def _smooth(w: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Convolve each row of ``w`` (cells, J) with ``kernel`` (reflecting at the grid ends)."""
    from scipy.ndimage import convolve1d

    return convolve1d(w, kernel, axis=1, mode="mirror")


def _em(
    like: np.ndarray,
    starts: np.ndarray,
    prior_w: np.ndarray,
    settings: LearntPriorSettings,
    iterations: int,
) -> np.ndarray:
    """MAP-EM with smoothing for groups of stars: ``like`` (n, J) sorted by group, group g
    being rows ``starts[g]:starts[g + 1]`` (every group non-empty), ``prior_w`` (groups, J)
    each group's parent distribution. Returns the groups' weights (groups, J).

    With the rows sorted by group an iteration is two passes over ``like``: each star's
    evidence (its likelihood dotted with its group's weights), then one sparse product, the
    segment sums of likelihood / evidence per group, which times the weights are the expected
    counts of the M-step."""
    import scipy.sparse as sp

    n = like.shape[0]
    kappa = settings.pool_strength
    counts = np.diff(np.append(starts, n))
    kernel = _smooth_kernel(settings.smoothing)
    w = prior_w.astype(np.float32)
    prior32 = prior_w.astype(np.float32)
    denom = (counts + kappa).astype(np.float32)[:, None]
    indptr = np.append(starts, n)
    indices = np.arange(n)
    for _ in range(iterations):
        evidence = np.einsum("ij,ij->i", like, np.repeat(w, counts, axis=0))
        inv = 1.0 / np.maximum(evidence, np.float32(1e-30))
        per_group = sp.csr_matrix((inv, indices, indptr), shape=(starts.size, n)) @ like
        w = (w * per_group + kappa * prior32) / denom
        w = _smooth(w, kernel)
        w /= w.sum(axis=1, keepdims=True)
    return w.astype(np.float64)


def fit_learnt_prior(
    source_id: np.ndarray,
    healpix5: np.ndarray,
    mag: np.ndarray,
    parallax: np.ndarray,
    parallax_error: np.ndarray,
    settings: LearntPriorSettings | None = None,
    upper_bound: np.ndarray | None = None,
) -> LearntPrior:
    """Fit the hierarchical deconvolved prior to giants' parallaxes, cross-fitted by halves.

    Parameters
    ----------
    source_id : numpy.ndarray of int
        Gaia source id of each star (decides its half).
    healpix5 : numpy.ndarray of int
        Nested level-5 pixel of each star.
    mag : numpy.ndarray
        Apparent G magnitude (mag).
    parallax, parallax_error : numpy.ndarray
        Parallax and its uncertainty (mas): Gaia's, whose errors are independent of the
        star's distance (a photometric parallax's are not: it regresses towards its training
        set's typical luminosity).
    settings : LearntPriorSettings, optional
    upper_bound : numpy.ndarray, optional
        Per star, the parallax (mas) below which the sample's selection kept it (the giant
        cut, eq. 7, in parallax units): the likelihood becomes the truncated Gaussian, so the
        cut's preference for low-noise draws does not push the prior out.

    Returns
    -------
    LearntPrior
        Every pixel and magnitude bin (cells without giants get their parents' fit), for the
        stars of each half fitted to the other half.
    """
    s = settings or LearntPriorSettings()
    fits = [
        fit_learnt_prior_half(h, source_id, healpix5, mag, parallax, parallax_error, s, upper_bound)
        for h in (0, 1)
    ]
    return combine_halves(fits, s, len(source_id))


def fit_learnt_prior_half(
    h: int, source_id: np.ndarray, healpix5: np.ndarray, mag: np.ndarray,
    parallax: np.ndarray, parallax_error: np.ndarray,
    settings: LearntPriorSettings | None = None, upper_bound: np.ndarray | None = None,
) -> tuple[np.ndarray, dict]:  # fmt: skip
    """The prior applied to the stars of half ``h`` (0 or 1): fitted to the other half's
    stars (:func:`fit_learnt_prior`'s arguments). The two halves are independent, so a
    stage fits them as two tasks; :func:`combine_halves` joins them."""
    s = settings or LearntPriorSettings()
    healpix5, mag, parallax, parallax_error = (
        np.asarray(a) for a in (healpix5, mag, parallax, parallax_error)
    )
    other = prior_half(source_id) != h
    bound = None if upper_bound is None else np.asarray(upper_bound, dtype=np.float64)[other]
    return _fit_one(healpix5[other], mag[other], parallax[other], parallax_error[other], s, bound)


def combine_halves(
    fits: list[tuple[np.ndarray, dict]], settings: LearntPriorSettings, n_given: int
) -> LearntPrior:
    """The :class:`LearntPrior` from the two halves' fits (half 0, then half 1) of
    :func:`fit_learnt_prior_half` over ``n_given`` stars."""
    s = settings
    tables = [dens for dens, _ in fits]
    infos = [info for _, info in fits]
    info = {
        "stars_used": sum(i["stars_used"] for i in infos),
        "stars_given": int(n_given),
        "halves": infos,
    }
    logger.info(
        "learnt distance prior: %d giants, %d pixels x %d G bins, cross-fitted halves",
        info["stars_used"], N_PIXELS, len(s.mag_edges) + 1,
    )  # fmt: skip
    return LearntPrior(np.stack(tables).astype(np.float16), s, info)


def _fit_one(
    healpix5: np.ndarray,
    mag: np.ndarray,
    parallax: np.ndarray,
    parallax_error: np.ndarray,
    s: LearntPriorSettings,
    bound: np.ndarray | None = None,
) -> tuple[np.ndarray, dict]:
    """One hierarchical fit: ln p(u), shape (N_PIXELS, n_bins, J), and its counts."""
    pix = np.asarray(healpix5, dtype=np.int64)
    plx = np.asarray(parallax, dtype=np.float64)
    sig = np.asarray(parallax_error, dtype=np.float64)
    mb = mag_bin(mag, s.mag_edges)
    ok = np.isfinite(plx) & np.isfinite(sig) & (sig > 0) & (pix >= 0) & (pix < N_PIXELS)
    pix, plx, sig, mb = pix[ok], plx[ok], sig[ok], mb[ok]
    n_bins = len(s.mag_edges) + 1
    # sorted by (magnitude bin, pixel): at every order the stars of a cell are contiguous
    order_idx = np.lexsort((pix, mb))
    pix, mb = pix[order_idx], mb[order_idx]
    like = _likelihood_rows(
        plx[order_idx], sig[order_idx], None if bound is None else bound[ok][order_idx]
    )
    J = GRID.size
    parent = np.full((n_bins, J), 1.0 / J)  # the whole sky starts from uniform in ln r
    info: dict = {"stars_used": int(ok.sum()), "orders": {}}
    prev_order = None
    for order in ORDERS:
        iters = s.iterations if order < 0 else s.iterations_finest
        if order < 0:
            cell = mb
            cell_parent = parent
        else:
            shift = 2 * (ORDER - order)
            n_pix = 12 * 4**order
            cell = (pix >> shift) * n_bins + mb
            # parent of each cell: the previous order's cell containing it
            if prev_order is None or prev_order < 0:
                parent_cells = np.tile(np.arange(n_bins), n_pix)
            else:
                up = np.arange(n_pix) >> (2 * (order - prev_order))
                parent_cells = (up[:, None] * n_bins + np.arange(n_bins)[None, :]).ravel()
            cell_parent = parent[parent_cells]
        w = cell_parent.copy()
        if cell.size:
            starts = np.flatnonzero(np.r_[True, cell[1:] != cell[:-1]])
            occupied = cell[starts]
            w[occupied] = _em(like, starts, cell_parent[occupied], s, iters)
        info["orders"][str(order)] = {
            "cells": int(cell_parent.shape[0]),
            "cells_with_stars": int(np.unique(cell).size),
        }
        parent, prev_order = w, order
    dens = (1.0 - FLOOR) * parent + FLOOR / J  # (N_PIXELS * n_bins, J), sums to 1
    return np.log(dens / GRID_STEP).reshape(N_PIXELS, n_bins, J), info


def learnt_distance_quantiles(
    prior: LearntPrior,
    parallax: np.ndarray,
    parallax_error: np.ndarray,
    healpix5: np.ndarray,
    mag: np.ndarray,
    source_id: np.ndarray,
    selection_bound: np.ndarray | None = None,
    selection_sigma: np.ndarray | None = None,
    chunk: int = 8192,
) -> np.ndarray:
    """Posterior median, 16th and 84th percentile distances (pc), shape (n, 3), of stars
    with their learnt prior (:meth:`LearntPrior.log_prior_rows`) and the likelihood of
    ``parallax`` (e.g. the combined parallax). With ``selection_bound``/``selection_sigma``
    (the Gaia parallax bound of the giant cut and Gaia's parallax error), the prior, which
    describes *selected* giants, is divided by the probability of selection at r, as the
    truncated likelihood of its fit requires (see :func:`fit_learnt_prior`)."""
    from bigcat.astrometry.distance import grid_distance_posterior

    n = len(parallax)
    out = np.full((n, 3), np.nan)
    for start in range(0, n, chunk):
        sl = slice(start, start + chunk)
        rows = prior.log_prior_rows(healpix5[sl], mag[sl], source_id[sl])
        if selection_bound is not None and selection_sigma is not None:
            model = 1000.0 * np.exp(-GRID)[None, :]
            rows = rows + selection_log_factor(
                model, selection_sigma[sl, None], selection_bound[sl, None]
            ).astype(np.float32)
        out[sl] = grid_distance_posterior(parallax[sl], parallax_error[sl], rows, GRID)
    return out
