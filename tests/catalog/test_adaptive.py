"""HATS adaptive partitions: bigcat's alignment is hats-import's, and keeps oversize pixels."""

from __future__ import annotations

import numpy as np
import pytest
from hats.pixel_math import generate_alignment

from bigcat.catalog.healpix import adaptive_partitions, first_index


def _counts(order: int, n: int, seed: int) -> dict[int, int]:
    rng = np.random.default_rng(seed)
    npix = 12 * 4**order
    pix = rng.integers(0, npix, n)
    pix[: n // 3] = rng.integers(npix // 3, npix // 3 + 40, n // 3)  # a dense region
    u, c = np.unique(pix, return_counts=True)
    return dict(zip(u.tolist(), c.tolist(), strict=True))


@pytest.mark.parametrize(("order", "threshold"), [(5, 50_000), (4, 1_000), (3, 2_000)])
def test_alignment_equals_hats(order, threshold):
    counts = _counts(order, 100_000, order)
    assert max(counts.values()) <= threshold
    histogram = np.zeros(12 * 4**order, dtype=np.int64)
    histogram[list(counts)] = list(counts.values())
    alignment = generate_alignment(histogram, highest_order=order, threshold=threshold)
    expected = {tuple(int(v) for v in alignment[p]) for p in counts}
    got = adaptive_partitions(counts, order, threshold)
    assert set(got) == expected and len(got) == len(expected)
    assert [first_index(o, p) for o, p, _ in got] == sorted(first_index(o, p) for o, p, _ in got)
    assert sum(n for *_, n in got) == 100_000


def test_oversize_pixels_stay_at_the_finest_order_and_zero_keeps_all():
    counts = _counts(3, 100_000, 1)
    got = adaptive_partitions(counts, 3, 200)
    assert sum(n for *_, n in got) == 100_000
    big = [(o, p, n) for o, p, n in got if n > 200]
    assert big and all(o == 3 and counts[p] == n for o, p, n in big)
    assert adaptive_partitions(counts, 3, 0) == [(3, p, n) for p, n in sorted(counts.items())]
    assert adaptive_partitions({}, 3, 200) == []
