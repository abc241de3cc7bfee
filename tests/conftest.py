"""Shared test fixtures.

``shared_dir`` points at ``../shared`` beside the checkout (LDIF fixtures, anchors); tests that
need it fail loudly when it is missing rather than skipping.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

# Keep JAX on the CPU and quiet in tests, whatever the machine has.
os.environ.setdefault("JAX_PLATFORMS", "cpu")

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    assert SHARED.is_dir(), f"expected the shared folder beside the checkout at {SHARED}"
    return SHARED


@pytest.fixture(scope="session")
def ldif_fixtures(shared_dir: Path) -> Path:
    d = shared_dir / "ldif-fixtures"
    assert (d / "test-sif.txt").is_file(), f"LDIF fixtures missing under {d}"
    return d


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)
