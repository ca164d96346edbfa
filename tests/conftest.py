"""Shared fixtures: synthetic banks generated once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.synth import SynthConfig, generate_bank

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = PROJECT_ROOT.parent / "shared" / "data"

# A bank big enough for stable rates, small enough to build in a few seconds.
BANK = SynthConfig(customers=20_000, months=12, seed=7, chunk_size=10_000)
DIRTY_BANK = SynthConfig(customers=3_000, months=4, seed=11, chunk_size=1_000, dirty=True)


@pytest.fixture(scope="session")
def bank(tmp_path_factory) -> Path:
    """Data folder of a clean 20k-customer, 12-month bank (lake/ and truth/)."""
    out = tmp_path_factory.mktemp("bank")
    generate_bank(BANK, out, progress=None)
    return out


@pytest.fixture(scope="session")
def dirty_bank(tmp_path_factory) -> Path:
    """Data folder of a small bank with every fault class of ``--dirty`` injected."""
    out = tmp_path_factory.mktemp("dirty_bank")
    generate_bank(DIRTY_BANK, out, progress=None)
    return out


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"public data sets not available: {SHARED_DATA} is absent")
    return SHARED_DATA
