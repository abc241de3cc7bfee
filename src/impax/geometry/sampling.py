"""Point samplers (vectorised numpy; every random draw comes from the ``rng`` passed in).

* :func:`surface_samples`: area-weighted uniform points on the surface with their face normals,
  as OccNet/LDIF evaluation and LDIF's point-cloud inputs use (GAPS ``msh2pts`` also weights faces
  by area).
* :func:`uniform_samples`: uniform in the box ``[-half, half]^3`` (LDIF: ``msh2pts
  -uniform_in_bbox`` over ±0.7 in the GAPS frame; IM-NET/OccNet: the unit box).
* :func:`near_surface_samples`: surface points plus isotropic Gaussian offsets N(0, sigma^2 I).

About the default ``sigma`` (:data:`NEAR_SURFACE_SIGMA`): LDIF's near-surface set comes from GAPS
``msh2pts -near_surface -max_distance 0.04`` (GAPS frame). GAPS offsets a surface point along its
interpolated normal by ``±t * U^2`` (U uniform in [0,1], ``t`` = min(0.04, distance to the next
hit along the ray)) and writes one point on each side; the RMS offset is ``0.04 / sqrt(5) = 0.0179``.
The default here is that RMS as a per-axis Gaussian sigma (the normal component of an isotropic
Gaussian has the same RMS), so it fits the GAPS frame. Other references: DeepSDF draws from
variances 0.0025 and 0.00025 (sigma 0.05 / 0.0158, unit-sphere frame); OccNet's training set is
uniform plus surface-perturbed points. Callers working in the IM-NET frame (diagonal 1, about twice
smaller than the GAPS frame's typical extent) may pass a smaller sigma.
"""

from __future__ import annotations

import numpy as np
import trimesh

#: Default near-surface sigma, GAPS frame: the RMS of LDIF's ``-max_distance 0.04`` offsets.
NEAR_SURFACE_SIGMA = 0.04 / np.sqrt(5.0)


def _triangles(mesh: trimesh.Trimesh, orient: bool) -> np.ndarray:
    if orient:
        from impax.geometry.inside import prepare_mesh

        pm = prepare_mesh(mesh)
        v, f = pm.vertices, pm.faces
    else:
        v = np.asarray(mesh.vertices, dtype=np.float64)
        f = np.asarray(mesh.faces, dtype=np.int64)
    if len(f) == 0:
        raise ValueError("cannot sample the surface of a mesh without faces")
    return v[f]


def surface_samples(mesh: trimesh.Trimesh, n: int, rng: np.random.Generator,
                    orient: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """``n`` area-weighted uniform surface points and their unit face normals → (f32[n,3], f32[n,3]).

    Faces are chosen with probability proportional to area; the point inside a face uses the
    square-root barycentric trick ``(1 - sqrt(r1), sqrt(r1) (1 - r2), sqrt(r1) r2)``, which is
    uniform on the triangle. With ``orient`` (default) the normals come from the consistently
    outward-oriented faces of :func:`impax.geometry.inside.prepare_mesh`, so they point outward
    even for meshes with flipped faces; without it they follow the file's winding.
    """
    tri = _triangles(mesh, orient)
    cross = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    dbl_area = np.linalg.norm(cross, axis=1)
    total = dbl_area.sum()
    if not total > 0:
        raise ValueError("cannot sample the surface of a mesh with zero area")
    cdf = np.cumsum(dbl_area)
    face = np.searchsorted(cdf, rng.random(n) * cdf[-1], side="right")
    face = np.minimum(face, len(tri) - 1)
    r1 = np.sqrt(rng.random(n))
    r2 = rng.random(n)
    a, b, c = tri[face, 0], tri[face, 1], tri[face, 2]
    pts = (1.0 - r1)[:, None] * a + (r1 * (1.0 - r2))[:, None] * b + (r1 * r2)[:, None] * c
    normals = cross[face] / np.where(dbl_area[face] > 0, dbl_area[face], 1.0)[:, None]
    return pts.astype(np.float32), normals.astype(np.float32)


def uniform_samples(n: int, half: float, rng: np.random.Generator) -> np.ndarray:
    """``n`` points uniform in ``[-half, half]^3`` → f32[n,3]."""
    return rng.uniform(-half, half, size=(n, 3)).astype(np.float32)


def near_surface_samples(mesh: trimesh.Trimesh, n: int, sigma: float | None,
                         rng: np.random.Generator) -> np.ndarray:
    """``n`` points: area-weighted surface samples plus N(0, sigma^2 I) offsets → f32[n,3].

    ``sigma=None`` means :data:`NEAR_SURFACE_SIGMA` (GAPS frame; see the module doc).
    """
    sigma = NEAR_SURFACE_SIGMA if sigma is None else float(sigma)
    pts, _ = surface_samples(mesh, n, rng)
    return (pts.astype(np.float64) + rng.normal(0.0, sigma, size=(n, 3))).astype(np.float32)
