"""Watertight, minimum-thickness versions of imperfect meshes (what OccNet's TSDF fusion gives).

IM-NET, OccNet and LDIF all train and score on *watertight* meshes: OccNet fuses depth maps of
each ShapeNet model into a TSDF at 256^3 (``scripts/dataset_shapenet``: render → fuse), LDIF uses
those fused meshes, IM-NET uses flood-filled voxels. Real models are open (a chair's seat is one
sheet of triangles) and have walls far thinner than a 128^3 cell; on them "inside" is barely defined
and such walls vanish between the nodes of an evaluation grid. No pip-installable fusion exists here, so
impax builds the same kind of mesh from the mesh's own fields:

    phi(x) = s(x) d(x) - delta,     s = -1 where the generalised winding number w(x) > 0.5, else +1,

with ``d`` the unsigned distance to the triangles (:mod:`impax.geometry.inside`). The output is the
surface ``phi = 0`` extracted with :func:`impax.inference.extract.extract_mesh` at ``resolution``
cells across the mesh's largest extent: every closed part grows outward by ``delta``, every open
sheet becomes a slab of thickness ``2 delta`` — the Minkowski sum of the solid with a ball of radius
``delta``, as fusion wraps a sheet in a shell about one voxel away. ``d`` is 1-Lipschitz, so
``lipschitz=1`` in the extractor misses no part however thin; the sign changes where ``w`` crosses
0.5 across a hole (the mouth of a cup) are found where coarse nodes differ in sign. Inside is the
winding number's, as in every label impax computes: a shallow open cup (a cube missing its top,
w = 5/6 within) comes out filled, where fusion from outside views would keep its hollow.

The default ``delta`` is one cell of the extraction grid: walls at least two cells thick, i.e. at
``resolution=256`` one cell of a 128^3 evaluation grid.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import trimesh

from impax.geometry.inside import signed_distance
from impax.inference.extract import coarse_resolution, extract_mesh


@dataclasses.dataclass(frozen=True)
class WatertightResult:
    mesh: trimesh.Trimesh
    delta: float  # outward offset, in the mesh's units
    resolution: int
    queries: int
    seconds: float

    @property
    def watertight(self) -> bool:
        return bool(len(self.mesh.faces)) and bool(self.mesh.is_watertight)


def offset_field(mesh: trimesh.Trimesh, delta: float):
    """``phi(x) = s(x) d(x) - delta`` of the module docstring as a function of ``[N, 3]`` points:
    :func:`impax.geometry.inside.signed_distance` moved out by ``delta``."""

    def fn(points: np.ndarray) -> np.ndarray:
        return signed_distance(mesh, points) - np.float32(delta)

    return fn


def watertight(mesh: trimesh.Trimesh, resolution: int = 256, offset_cells: float = 1.0) -> WatertightResult:
    """The watertight offset surface of ``mesh`` (see the module docstring), in the mesh's frame.

    ``resolution``: cells per axis of the extraction cube (``coarse * 2^k`` as for
    :func:`extract_mesh`, e.g. 256), which spans the mesh's largest extent grown by the offset and
    two cells on every side. ``offset_cells``: ``delta`` in cells of that grid (walls become at least
    ``2 * offset_cells`` cells thick).
    """
    if resolution < 16:
        raise ValueError(f"resolution must be at least 16, got {resolution}")
    if not 0 < offset_cells <= resolution / 8:
        raise ValueError(f"offset_cells must be in (0, resolution / 8], got {offset_cells}")
    t0 = time.perf_counter()
    lo, hi = np.asarray(mesh.bounds, np.float64)
    extent = float(np.max(hi - lo))
    if not extent > 0:
        raise ValueError("mesh has an empty bounding box")
    cell = extent / (resolution - 2 * offset_cells - 4)
    delta = offset_cells * cell
    centre = 0.5 * (lo + hi)
    half = 0.5 * resolution * cell
    ext = extract_mesh(offset_field(mesh, delta), resolution, half=None, bounds=(centre - half, centre + half),
                       coarse=coarse_resolution(resolution), inside="below", margin=0.0, lipschitz=1.0)
    out = ext.mesh if ext.mesh is not None else trimesh.Trimesh()
    return WatertightResult(mesh=out, delta=delta, resolution=resolution, queries=ext.queries,
                            seconds=time.perf_counter() - t0)
