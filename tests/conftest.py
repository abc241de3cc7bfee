"""Shared test fixtures.

``ldif_fixtures`` is ``tests/fixtures/ldif``: google/ldif's kernel test vectors, kept in the
repository with their licence and provenance (see its README). The suite reads nothing outside the
checkout.

:func:`require` imports an optional test dependency (torch for the weight-importer test). Under
``IMPAX_TEST_STRICT=1`` — which ``scripts/test.sh``, the README's test command, sets after installing
everything — a missing one fails the test; elsewhere the test is skipped with the line that installs it.

Precision: the suite runs JAX on the CPU (``JAX_PLATFORMS=cpu`` below unless set), where float32
matmuls and convolutions are exact and kernels deterministic. Every exactness claim in it — the
1e-5 / 1e-6 tolerances, ``array_equal``, "bit-identical" resume — assumes that. On a GPU, JAX may
use TF32 for float32 products: run with ``JAX_DEFAULT_MATMUL_PRECISION=highest`` and, for the
resume and multi-device equalities, ``XLA_FLAGS=--xla_gpu_deterministic_ops=true`` (docs/gpu.md).
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

# Keep JAX on the CPU and quiet in tests, whatever the machine has.
os.environ.setdefault("JAX_PLATFORMS", "cpu")

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def require(module: str, install: str) -> ModuleType:
    """Import ``module`` for a test module; skip (or fail under IMPAX_TEST_STRICT) with ``install``."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        msg = f"this test needs {module!r} ({e}); install it with: {install}"
        if os.environ.get("IMPAX_TEST_STRICT") == "1":
            pytest.fail(msg, pytrace=False)
        pytest.skip(msg, allow_module_level=True)


@pytest.fixture(scope="session")
def ldif_fixtures() -> Path:
    d = FIXTURES / "ldif"
    assert (d / "test-sif.txt").is_file(), f"LDIF fixtures missing under {d}"
    return d


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)
