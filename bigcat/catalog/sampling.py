"""Deterministic, partition-independent selection of rows by hashed source_id.

Cross-training folds and training subsamples must not depend on how the catalogue is
partitioned or scheduled, so both are functions of ``source_id`` alone (a SplitMix64 hash
with a per-purpose salt).
"""

from __future__ import annotations

import numpy as np

_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def splitmix64(values: np.ndarray, salt: int = 0) -> np.ndarray:
    """SplitMix64 hash of int64 values (uint64 out); ``salt`` gives independent streams."""
    with np.errstate(over="ignore"):
        z = np.asarray(values).astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15) * np.uint64(
            salt + 1
        )
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def fold_of(source_id: np.ndarray, n_folds: int = 8, salt: int = 1) -> np.ndarray:
    """Cross-training fold (0..n_folds-1) of each star: hash(source_id) mod n_folds."""
    return (splitmix64(source_id, salt) % np.uint64(n_folds)).astype(np.int8)


def unit_hash(source_id: np.ndarray, salt: int = 2) -> np.ndarray:
    """A uniform number in [0, 1) per star, from its source_id."""
    return (splitmix64(source_id, salt) >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def fair_pixel_cap(counts: np.ndarray, total_cap: int) -> int:
    """Per-pixel cap c with sum(min(counts, c)) <= total_cap, as large as possible.

    Sparse pixels keep all their stars; dense ones (the bulge) are thinned to c, so a training
    sample of at most ``total_cap`` rows covers the sky fairly.
    """
    counts = np.asarray(counts, dtype=np.int64)
    if counts.sum() <= total_cap:
        return int(counts.max(initial=0))
    lo, hi = 0, int(counts.max())
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if np.minimum(counts, mid).sum() <= total_cap:
            lo = mid
        else:
            hi = mid - 1
    return lo


def capped_sample(
    source_id: np.ndarray,
    eligible: np.ndarray,
    cap: int,
    salt: int = 2,
    group: np.ndarray | None = None,
) -> np.ndarray:
    """Mask of at most ``cap`` eligible rows (per ``group``, if given): those with the smallest
    hash of source_id.

    Depends only on the rows' source_ids (and groups), never on their order or partitioning.
    ``group`` (integer labels, e.g. the partition of each row) lets one call cap many
    partitions at once, exactly as one call per partition would.
    """
    eligible = np.asarray(eligible, dtype=bool)
    keep = np.zeros(len(eligible), dtype=bool)
    idx = np.flatnonzero(eligible)
    if len(idx) == 0:
        return keep
    g = np.zeros(len(idx), dtype=np.int64) if group is None else np.asarray(group)[idx]
    h = splitmix64(np.asarray(source_id)[idx], salt)
    order = np.lexsort((h, g))  # by group, then hash (stable: ties keep row order)
    gs = g[order]
    starts = np.flatnonzero(np.r_[True, gs[1:] != gs[:-1]])
    sizes = np.diff(np.r_[starts, len(order)])
    rank = np.arange(len(order)) - np.repeat(starts, sizes)
    keep[idx[order[rank < cap]]] = True
    return keep
