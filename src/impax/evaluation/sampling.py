"""Surface and volume samples for evaluation (deterministic by seed).

``impax.geometry.sampling`` did not exist when this was written, so evaluation keeps its own small
area-weighted sampler; both follow the same definition (Occupancy Networks' ``sample_mesh.py`` and
LDIF's 100k-point evaluation clouds: faces chosen with probability proportional to area, a
uniform point in the chosen triangle, the face normal attached).
"""

from __future__ import annotations

from typing import Any

import numpy as np


def area_weighted_samples(mesh: Any, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` points uniformly distributed over the surface area of ``mesh``, with face normals.

    Returns float64 ``[n, 3]`` points and unit normals. An empty or zero-area mesh gives ``[0, 3]``.
    """
    v = np.asarray(mesh.vertices, dtype=np.float64)
    f = np.asarray(mesh.faces, dtype=np.int64)
    if len(f) == 0 or n <= 0:
        return np.zeros((0, 3)), np.zeros((0, 3))
    a, b, c = v[f[:, 0]], v[f[:, 1]], v[f[:, 2]]
    cross = np.cross(b - a, c - a)
    dbl_area = np.linalg.norm(cross, axis=1)
    total = dbl_area.sum()
    if not np.isfinite(total) or total <= 0:
        return np.zeros((0, 3)), np.zeros((0, 3))
    rng = np.random.default_rng(seed)
    face = rng.choice(len(f), size=n, p=dbl_area / total)
    u, w = rng.random(n), rng.random(n)
    flip = u + w > 1.0  # reflect into the triangle: uniform barycentric coordinates
    u[flip], w[flip] = 1.0 - u[flip], 1.0 - w[flip]
    pts = a[face] + u[:, None] * (b[face] - a[face]) + w[:, None] * (c[face] - a[face])
    nrm = cross[face] / np.where(dbl_area[face] > 0, dbl_area[face], 1.0)[:, None]
    return pts, nrm


def uniform_box_samples(n: int, lo: np.ndarray, hi: np.ndarray, seed: int = 0) -> np.ndarray:
    """``n`` points uniform in the box ``[lo, hi]`` (float64)."""
    rng = np.random.default_rng(seed)
    lo, hi = np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)
    return lo + rng.random((n, 3)) * (hi - lo)


def inside_mesh(mesh: Any, points: np.ndarray) -> np.ndarray:
    """Occupancy of ``points``: generalised winding number > 0.5 (libigl's fast winding number).

    Robust to holes and flipped parts (Jacobson et al. 2013; Barill et al. 2018). An empty mesh
    contains nothing.
    """
    import igl

    pts = np.ascontiguousarray(points, dtype=np.float64)
    if len(mesh.faces) == 0 or len(pts) == 0:
        return np.zeros(len(pts), dtype=bool)
    v = np.ascontiguousarray(mesh.vertices, dtype=np.float64)
    f = np.ascontiguousarray(mesh.faces, dtype=np.int64)
    return np.asarray(igl.fast_winding_number(v, f, pts)) > 0.5
