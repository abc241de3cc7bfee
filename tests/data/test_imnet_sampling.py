"""IM-NET hierarchical sampling against a brute-force loop of the [I] rule written here."""

from __future__ import annotations

import numpy as np
import pytest

from impax.conventions import imnet_points_from_grid256
from impax.data.imnet_sampling import sample_imnet


def _blob(res: int, seed: int) -> np.ndarray:
    """A random union of balls on a res^3 grid (index order x, y, z)."""
    r = np.random.default_rng(seed)
    c = (np.arange(res) + 0.5) / res - 0.5
    x, y, z = np.meshgrid(c, c, c, indexing="ij")
    occ = np.zeros((res,) * 3, bool)
    for _ in range(5):
        ctr = r.uniform(-0.25, 0.25, 3)
        rad = r.uniform(0.08, 0.2)
        occ |= (x - ctr[0]) ** 2 + (y - ctr[1]) ** 2 + (z - ctr[2]) ** 2 < rad**2
    return occ


def _reference_selection(fine: np.ndarray, level: int, budget: int):
    """Loop version of the rule: pooled grid and the near-surface cells in visiting order."""
    f = fine.shape[0]
    m = f // level
    pooled = np.zeros((level,) * 3, np.uint8)
    for i in range(level):
        for j in range(level):
            for k in range(level):
                pooled[i, j, k] = fine[i * m:(i + 1) * m, j * m:(j + 1) * m, k * m:(k + 1) * m].max()
    if budget == level**3:
        return pooled, [(i, j, k) for i in range(level) for j in range(level) for k in range(level)]
    order = [a for s in (1, 2, 3, 4) for a in range(s, level - 1, 4)]
    sel = []
    for j in order:
        for i in order:
            for k in order:
                if len(sel) >= budget:
                    return pooled, sel
                w = pooled[i - 1:i + 2, j - 1:j + 2, k - 1:k + 2]
                if w.max() != w.min():
                    sel.append((i, j, k))
    return pooled, sel


@pytest.mark.parametrize(
    "fine_res,counts",
    [
        (64, {16: 4096, 32: 4096, 64: 16384}),  # official budgets; a 64^3 grid as the fine grid
        (128, {16: 4096, 32: 300, 64: 1500}),  # small budgets: the strided order overflows
    ],
)
def test_sampling_matches_loop_reference(fine_res, counts):
    fine = _blob(fine_res, seed=fine_res)
    out = sample_imnet(fine, seed=3, counts=counts)
    up = 256 // fine_res
    fine256_value = lambda p: fine[p[:, 0] // up, p[:, 1] // up, p[:, 2] // up]  # noqa: E731
    # voxels: 64^3 max-pool of the fine grid
    m = fine_res // 64
    ref_vox = fine.reshape(64, m, 64, m, 64, m).max(axis=(1, 3, 5))
    assert out["voxels"].shape == (64, 64, 64, 1) and out["voxels"].dtype == np.uint8
    np.testing.assert_array_equal(out["voxels"][..., 0], ref_vox)
    for level, budget in counts.items():
        pts, vals = out[f"points_{level}"], out[f"values_{level}"]
        assert pts.shape == (budget, 3) and pts.dtype == np.uint8
        assert vals.shape == (budget, 1) and vals.dtype == np.uint8
        pooled, sel = _reference_selection(fine, level, budget)
        cells = pts.astype(np.int64) // (256 // level)
        # the near-surface cells come first, in the original's order
        np.testing.assert_array_equal(cells[:len(sel)], np.array(sel))
        assert bool(out[f"exceeded_{level}"]) == (len(sel) >= budget and budget < level**3)
        # every cell at most once; the fill uses cells not selected before
        flat = np.ravel_multi_index(cells.T, (level,) * 3)
        assert len(np.unique(flat)) == budget
        # value = pooled value of the cell = the fine value at the sampled 256 voxel
        np.testing.assert_array_equal(vals[:, 0], pooled[cells[:, 0], cells[:, 1], cells[:, 2]])
        np.testing.assert_array_equal(vals[:, 0], fine256_value(pts.astype(np.int64)))
        # both classes present near the surface
        assert 0 < vals[:len(sel)].mean() < 1
    # coordinates lie in IM-NET's box
    c = imnet_points_from_grid256(out["points_64"])
    assert c.min() > -0.5 and c.max() < 0.5


def test_sampling_deterministic_by_seed():
    fine = _blob(64, seed=1)
    a, b, c = sample_imnet(fine, seed=7), sample_imnet(fine, seed=7), sample_imnet(fine, seed=8)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    assert not np.array_equal(a["points_64"], c["points_64"])
