"""Acceptance: multi-resolution extraction makes at most 15% of the dense queries at 256^3.

Uses the benchmark's own shapes (an IM-NET-style chair occupancy through a narrow MLP, and the
LDIF-like Gaussian sum), so the default suite checks what ``benchmarks/bench_extract.py`` reports.
"""

from __future__ import annotations

import pytest

from benchmarks.bench_extract import BATCH, make_imnet_mlp, make_ldif_like
from impax.inference.extract import extract_mesh


@pytest.mark.parametrize("kind", ["imnet", "ldif"])
def test_query_fraction_at_256(kind):
    if kind == "imnet":
        fn, _ = make_imnet_mlp((259, 8, 1))  # same surface as the benchmark, cheap decoder
        kw = dict(level=0.5, inside="above", half=0.5)
    else:
        fn = make_ldif_like()
        kw = dict(level=-0.07, inside="below", half=0.75)
    res = extract_mesh(fn, 256, coarse=32, batch_size=BATCH, **kw)
    assert res.queries <= 0.15 * (257 ** 3), res.levels
    assert len(res.mesh.faces) > 10_000
    assert res.mesh.is_watertight
