from __future__ import annotations

from bigcat.nn.bench import benchmark_mc_dropout


def test_benchmark_reports_rates():
    r = benchmark_mc_dropout(n_rows=3000, n_passes=10, reference_rows=500, num_threads=1)
    assert r["threads"] == 1
    for key in ("rows_per_s", "gflops", "matmul_gflops", "reference_rows_per_s"):
        assert r[key] > 0
    assert r["fraction_of_matmul"] == r["gflops"] / r["matmul_gflops"]
