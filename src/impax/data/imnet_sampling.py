"""IM-NET's hierarchical point–value sampling ([I]: ``point_sampling/2_gather_256vox_16_32_64.py``), vectorised.

The rule, per level R in (16, 32, 64), from a boolean fine grid (256^3 in the original):

1. max-pool the fine grid to R^3 (a coarse cell is occupied if any fine voxel inside it is);
2. if the budget covers every cell (level 16: 4096 = 16^3) take all cells in raster order
   (i outer, k inner);
3. otherwise visit the interior cells (1 .. R-2 per axis) in the original's *strided* order — axis
   values ``1,5,9,…, 2,6,10,…, 3,7,…, 4,8,…`` with the loops nested j (outer), i, k (inner) — and
   select a cell when its 3x3x3 window is mixed (max != min), up to the budget
   (4096 at 32, 16384 at 64); the strided order spreads the points when the budget overflows;
4. if the budget is not reached, fill the rest with distinct random cells not selected yet (any
   cell, border included), as the original's random fill does;
5. every selected cell yields one fine voxel *inside it* whose value equals the cell's pooled value;
   the sample is that voxel's index on the 256 grid, the value is the pooled value.

The fine voxel is chosen as the original does first (up to 100 uniform random tries inside the
cell); where all tries miss, impax picks uniformly among the matching voxels (the original then
searches outwards from the cell centre — this only changes *which* matching voxel, never a value).
The original's "carve" pass that fills cavities of HSP voxels is not needed: impax's grids come
from generalised winding numbers, which already count cavities enclosed by the surface as inside.

If only a 64^3 (or 128^3) grid is available, it stands for the 256 grid upsampled by repetition:
the chosen fine voxel becomes a uniformly random 256 voxel inside it.

Coordinates on the 256 grid map to IM-NET's box as ``(p + 0.5) / 256 - 0.5``
(:func:`impax.conventions.imnet_points_from_grid256`), axis order (x, y, z) = voxel axes (0, 1, 2).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from impax.data.imnet_hdf5 import IMNET_LEVELS, IMNET_POINT_COUNTS, IMNET_VOXEL_RES

#: Random tries per cell before the exhaustive choice (the original's ``range(100)``).
_TRIES = 100


def max_pool(grid: np.ndarray, res: int) -> np.ndarray:
    """Max-pool a cubic boolean/uint8 grid to ``res``^3 (uint8)."""
    g = np.asarray(grid)
    f = g.shape[0]
    if g.shape != (f, f, f) or f % res:
        raise ValueError(f"cannot pool a grid of shape {g.shape} to {res}^3")
    m = f // res
    return g.reshape(res, m, res, m, res, m).max(axis=(1, 3, 5)).astype(np.uint8)


def strided_order(res: int) -> np.ndarray:
    """Interior cells of a ``res``^3 grid in the original's visiting order, int64 [M, 3] as (i, j, k)."""
    axis = np.concatenate([np.arange(s, res - 1, 4) for s in (1, 2, 3, 4)])
    jj, ii, kk = np.meshgrid(axis, axis, axis, indexing="ij")  # j outer, then i, then k
    return np.stack([ii.ravel(), jj.ravel(), kk.ravel()], axis=1)


def _window3(a: np.ndarray, op) -> np.ndarray:
    """``op`` (np.maximum / np.minimum) over every 3x3x3 window, separably; shape [R-2]^3 (interior)."""
    a = op(op(a[:-2], a[1:-1]), a[2:])
    a = op(op(a[:, :-2], a[:, 1:-1]), a[:, 2:])
    return op(op(a[:, :, :-2], a[:, :, 1:-1]), a[:, :, 2:])


def mixed_cells(pooled: np.ndarray) -> np.ndarray:
    """bool [R,R,R]: interior cells whose 3x3x3 window holds both values (border cells are False)."""
    p = np.asarray(pooled)
    mixed = np.zeros(p.shape, dtype=bool)
    mixed[1:-1, 1:-1, 1:-1] = _window3(p, np.maximum) != _window3(p, np.minimum)
    return mixed


def select_cells(pooled: np.ndarray, count: int, rng: np.random.Generator) -> tuple[np.ndarray, bool]:
    """Cells of one level in the original's order: int64 [count, 3] and whether the budget overflowed."""
    res = pooled.shape[0]
    if count > res**3:
        raise ValueError(f"budget {count} exceeds the {res}^3 cells")
    if count == res**3:
        return np.stack(np.unravel_index(np.arange(res**3), (res,) * 3), axis=1), False
    order = strided_order(res)
    mixed = mixed_cells(pooled)
    sel = order[mixed[order[:, 0], order[:, 1], order[:, 2]]]
    if len(sel) >= count:
        return sel[:count], True
    taken = np.zeros(res**3, dtype=bool)
    taken[np.ravel_multi_index(sel.T, (res,) * 3)] = True
    free = np.flatnonzero(~taken)
    fill = rng.choice(free, size=count - len(sel), replace=False)
    fill_cells = np.stack(np.unravel_index(fill, (res,) * 3), axis=1)
    return np.concatenate([sel, fill_cells]).astype(np.int64), False


def _pick_fine(fine: np.ndarray, cells: np.ndarray, target: np.ndarray, m: int,
               rng: np.random.Generator) -> np.ndarray:
    """For each cell (units of ``m`` fine voxels), a fine voxel inside it with value ``target``: int64 [K,3]."""
    k = len(cells)
    base = cells * m
    if m == 1:
        return base
    tries = min(_TRIES, m**3)
    off = rng.integers(0, m, size=(k, tries, 3))
    pos = base[:, None, :] + off
    hit = fine[pos[..., 0], pos[..., 1], pos[..., 2]] == target[:, None].astype(bool)
    first = hit.argmax(axis=1)
    out = pos[np.arange(k), first]
    miss = np.flatnonzero(~hit.any(axis=1))
    # exhaustive fallback: uniform among the matching voxels of the cell (chunked to bound memory)
    grid = np.stack(np.meshgrid(*(np.arange(m),) * 3, indexing="ij"), axis=-1).reshape(-1, 3)
    for s in range(0, len(miss), 256):
        idx = miss[s:s + 256]
        p = base[idx][:, None, :] + grid[None]
        match = fine[p[..., 0], p[..., 1], p[..., 2]] == target[idx][:, None].astype(bool)
        key = np.where(match, rng.random(match.shape, dtype=np.float32), -1.0)
        out[idx] = p[np.arange(len(idx)), key.argmax(axis=1)]
    return out


def sample_level(fine: np.ndarray, level: int, count: int, rng: np.random.Generator,
                 pooled: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, bool]:
    """One level: uint8 points [count, 3] on the 256 grid, uint8 values [count, 1], overflow flag."""
    f = fine.shape[0]
    if 256 % f or f % level:
        raise ValueError(f"fine grid {f}^3 must divide 256 and be a multiple of level {level}")
    pooled = max_pool(fine, level) if pooled is None else pooled
    cells, exceeded = select_cells(pooled, count, rng)
    values = pooled[cells[:, 0], cells[:, 1], cells[:, 2]]
    fine_idx = _pick_fine(fine, cells, values, f // level, rng)
    s = 256 // f
    p256 = fine_idx * s + (rng.integers(0, s, size=fine_idx.shape) if s > 1 else 0)
    return p256.astype(np.uint8), values.reshape(-1, 1).astype(np.uint8), exceeded


def sample_imnet(voxels: np.ndarray, seed: int | np.random.Generator = 0,
                 levels: Sequence[int] = IMNET_LEVELS, counts: dict[int, int] | None = None) -> dict[str, np.ndarray]:
    """IM-NET training data from a boolean fine grid (256^3, 128^3 or 64^3, index order (x, y, z)).

    Returns uint8 arrays ``voxels`` [64,64,64,1] and, per level R, ``points_R`` [n,3], ``values_R`` [n,1],
    plus bool ``exceeded_R`` (the budget overflowed: the original's statistics). Deterministic in ``seed``.
    """
    fine = np.asarray(voxels).astype(bool)
    counts = IMNET_POINT_COUNTS if counts is None else counts
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {"voxels": max_pool(fine, IMNET_VOXEL_RES)[..., None]}
    # the original samples 64, then 32, then 16; keep that order so the random streams match its structure
    for lv in sorted(levels, reverse=True):
        p, v, ex = sample_level(fine, lv, counts[lv], rng)
        out[f"points_{lv}"], out[f"values_{lv}"], out[f"exceeded_{lv}"] = p, v, np.bool_(ex)
    return out
