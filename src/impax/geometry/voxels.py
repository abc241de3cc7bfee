"""Voxel grids: IM-NET occupancy voxels and LDIF's coarse signed-distance grid.

* :func:`occupancy_grid`: occupancy at the *cell centres* of a ``res``^3 grid over
  ``[-half, half]^3`` (IM-NET convention, ``impax.conventions``: cell ``i`` spans
  ``[i/res, (i+1)/res] * 2 half - half``, centre ``(i + 0.5) / res * 2 half - half``); index order
  (x, y, z). Evaluated in chunks of z-slabs so 256^3 never holds more than a few million query
  points at a time.
* :func:`sdf_grid`: LDIF's ``coarse_grid.grd`` (``msh2df -bbox -0.7 ... 0.7 -border 0 -spacing
  0.044 -estimate_sign``, GAPS frame). What GAPS does (read in tomfunkhouser/gaps
  ``pkgs/R3Shapes/R3Grid.cpp`` ``SetWorldToGridTransformation(R3Box)``; behaviour only): the grid
  resolution is ``int(1.4 / 0.044 + 0.5) = 32`` and the world box is mapped onto grid coordinates
  ``[0, res-1]``, i.e. values sit at **grid nodes**, the first at ``-0.7`` and the last at ``+0.7``
  (spacing ``1.4 / 31``), not at cell centres. ``world2grid`` maps world points to *continuous
  grid-index coordinates* ``g = (x + half) * (res - 1) / (2 half)`` (x, y, z order in the matrix).
  Values are stored like a GAPS ``.grd`` file and as LDIF's ``interpolate_util`` reads it:
  array index order **[z, y, x]** (``grid[k, j, i]`` is the node with grid coordinates (i, j, k)).
  Here the values are exact point-to-mesh distances signed by the winding number, rather than
  GAPS' grid distance transform + flood-fill sign (which agree with these up to GAPS' own
  discretisation).
"""

from __future__ import annotations

import numpy as np
import trimesh

from impax.conventions import GAPS_BBOX_HALF
from impax.geometry.inside import occupancy, signed_distance

#: Number of query points per chunk when evaluating large grids.
CHUNK_POINTS = 1 << 21


def cell_centres(res: int, half: float) -> np.ndarray:
    """1-D cell-centre coordinates of a ``res`` grid over ``[-half, half]``."""
    return ((np.arange(res, dtype=np.float64) + 0.5) / res * 2.0 - 1.0) * half


def occupancy_grid(mesh: trimesh.Trimesh, res: int, half: float = 0.5) -> np.ndarray:
    """Cell-centre occupancy of a ``res``^3 grid over ``[-half, half]^3`` → bool[res,res,res], (x, y, z)."""
    c = cell_centres(res, half)
    out = np.empty((res, res, res), dtype=bool)
    slab = max(1, CHUNK_POINTS // (res * res))
    gx, gy = np.meshgrid(c, c, indexing="ij")
    for z0 in range(0, res, slab):
        zs = c[z0:z0 + slab]
        pts = np.empty((res, res, len(zs), 3), dtype=np.float64)
        pts[..., 0] = gx[:, :, None]
        pts[..., 1] = gy[:, :, None]
        pts[..., 2] = zs[None, None, :]
        out[:, :, z0:z0 + len(zs)] = occupancy(mesh, pts.reshape(-1, 3)).reshape(res, res, len(zs))
    return out


def gaps_world2grid(res: int = 32, half: float = GAPS_BBOX_HALF) -> np.ndarray:
    """GAPS world→grid matrix for a ``res``^3 node grid over ``[-half, half]^3`` → f32[4,4]."""
    s = (res - 1) / (2.0 * half)
    m = np.eye(4)
    m[:3, :3] *= s
    m[:3, 3] = s * half
    return m.astype(np.float32)


def grid_node_coordinates(res: int = 32, half: float = GAPS_BBOX_HALF) -> np.ndarray:
    """1-D world coordinates of the GAPS grid nodes: ``linspace(-half, half, res)``."""
    return np.linspace(-half, half, res)


def sdf_grid(mesh: trimesh.Trimesh, res: int = 32, half: float = GAPS_BBOX_HALF) -> tuple[np.ndarray, np.ndarray]:
    """LDIF's coarse SDF grid → (f32[res,res,res] in [z, y, x] order, world2grid f32[4,4]).

    Negative inside. See the module doc for the node layout (GAPS ``msh2df``).
    """
    c = grid_node_coordinates(res, half)
    gz, gy, gx = np.meshgrid(c, c, c, indexing="ij")  # [z, y, x]
    pts = np.stack([gx, gy, gz], axis=-1).reshape(-1, 3)
    values = np.empty(len(pts), dtype=np.float32)
    for s in range(0, len(pts), CHUNK_POINTS):
        values[s:s + CHUNK_POINTS] = signed_distance(mesh, pts[s:s + CHUNK_POINTS])
    return values.reshape(res, res, res), gaps_world2grid(res, half)


def interpolate_grid(grid: np.ndarray, world2grid: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Trilinear interpolation of a [z, y, x] node grid at world ``points`` → f32[N].

    Same convention as LDIF's ``interpolate_util.interpolate`` (points mapped with ``world2grid``,
    grid indexed [z, y, x]); points outside the grid are clamped to its boundary.
    """
    g = np.asarray(grid, dtype=np.float64)
    p = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    m = np.asarray(world2grid, dtype=np.float64)
    q = p @ m[:3, :3].T + m[:3, 3]
    dims = np.array([g.shape[2], g.shape[1], g.shape[0]])  # x, y, z sizes
    q = np.clip(q, 0.0, dims - 1.0)
    lo = np.minimum(np.floor(q).astype(np.int64), dims - 2)
    t = q - lo
    out = np.zeros(len(p))
    for dx in (0, 1):
        wx = t[:, 0] if dx else 1.0 - t[:, 0]
        for dy in (0, 1):
            wy = t[:, 1] if dy else 1.0 - t[:, 1]
            for dz in (0, 1):
                wz = t[:, 2] if dz else 1.0 - t[:, 2]
                out += wx * wy * wz * g[lo[:, 2] + dz, lo[:, 1] + dy, lo[:, 0] + dx]
    return out.astype(np.float32)
