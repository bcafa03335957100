"""Fixtures for the mock tests: small seeded chunks, simulated once per session."""

from __future__ import annotations

import pytest

from bigcat.synthetic import MockChunk, MockParams, simulate_chunk

N_ROWS = 20_000


@pytest.fixture(scope="session")
def params() -> MockParams:
    return MockParams(seed=7)


@pytest.fixture(scope="session")
def chunk0(params: MockParams) -> MockChunk:
    return simulate_chunk(params, 0, N_ROWS)


@pytest.fixture(scope="session")
def chunk1(params: MockParams) -> MockChunk:
    return simulate_chunk(params, 1, 5_000)
