"""Hashed folds and capped samples depend on source_id only."""

from __future__ import annotations

import numpy as np

from bigcat.catalog.sampling import capped_sample, fair_pixel_cap, fold_of, splitmix64, unit_hash


def test_folds_balanced_and_order_independent():
    ids = np.arange(1, 80_001, dtype=np.int64) * 34_359_738_368 + 17  # Gaia-like ids share low bits
    folds = fold_of(ids)
    counts = np.bincount(folds, minlength=8)
    assert counts.min() > 9_600 and counts.max() < 10_400
    perm = np.random.default_rng(0).permutation(len(ids))
    np.testing.assert_array_equal(fold_of(ids[perm]), folds[perm])


def test_salts_give_independent_streams():
    ids = np.arange(50_000, dtype=np.int64)
    assert abs(np.corrcoef(unit_hash(ids, 2), unit_hash(ids, 3))[0, 1]) < 0.02
    assert splitmix64(ids, 1)[5] != splitmix64(ids, 2)[5]
    u = unit_hash(ids)
    assert 0 <= u.min() and u.max() < 1 and abs(u.mean() - 0.5) < 0.01


def test_fair_pixel_cap_water_filling():
    counts = np.array([5, 10, 1000, 3000])
    cap = fair_pixel_cap(counts, 1015)
    assert np.minimum(counts, cap).sum() <= 1015
    assert np.minimum(counts, cap + 1).sum() > 1015
    assert cap == 500  # 5 + 10 + 500 + 500
    assert fair_pixel_cap(counts, 10**6) == 3000


def test_capped_sample_is_subset_and_order_free():
    rng = np.random.default_rng(1)
    ids = rng.integers(0, 2**62, 1000)
    eligible = rng.random(1000) < 0.7
    keep = capped_sample(ids, eligible, 100)
    assert keep.sum() == 100 and not (keep & ~eligible).any()
    perm = rng.permutation(1000)
    np.testing.assert_array_equal(capped_sample(ids[perm], eligible[perm], 100), keep[perm])
    assert capped_sample(ids, eligible, 10_000).sum() == eligible.sum()


def test_capped_sample_per_group_equals_one_call_per_group():
    rng = np.random.default_rng(2)
    n = 3000
    ids = rng.integers(0, 2**62, n)
    eligible = rng.random(n) < 0.6
    group = np.sort(rng.integers(0, 12, n))
    group[group == 5] = 4  # an empty label in between
    keep = capped_sample(ids, eligible, 40, group=group)
    for g in np.unique(group):
        m = group == g
        np.testing.assert_array_equal(keep[m], capped_sample(ids[m], eligible[m], 40))
    # groups need not be contiguous
    perm = rng.permutation(n)
    np.testing.assert_array_equal(
        capped_sample(ids[perm], eligible[perm], 40, group=group[perm]), keep[perm]
    )
    assert not capped_sample(ids, np.zeros(n, bool), 40, group=group).any()
