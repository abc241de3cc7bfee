"""Surface samples for evaluation, deterministic by seed.

A thin layer over :func:`impax.geometry.sampling.surface_samples` (area-weighted faces, a uniform
point in the chosen triangle, the outward face normal attached: Occupancy Networks'
``sample_mesh.py`` and LDIF's 100k-point evaluation clouds) that adds what evaluation needs:

* the random stream is ``np.random.default_rng(seed)``, fresh at every call, so a prediction and
  its ground truth sampled with the same seed use the same random numbers (identical meshes give
  identical samples: Chamfer exactly 0, F = 100, NC = 1);
* an empty or zero-area mesh gives ``[0, 3]`` arrays instead of an error (the metrics score it);
* float64 output with normals renormalised in float64.

Occupancy for the IoU metrics is :func:`impax.geometry.inside.occupancy` (generalised winding number
on the cleaned, consistently oriented mesh).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from impax.geometry.sampling import surface_samples


def area_weighted_samples(mesh: Any, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` points uniformly distributed over the surface area of ``mesh``, with unit outward normals.

    Returns float64 ``[n, 3]`` points and normals. An empty or zero-area mesh gives ``[0, 3]``.
    """
    empty = (np.zeros((0, 3)), np.zeros((0, 3)))
    if n <= 0 or len(mesh.faces) == 0:
        return empty
    try:
        pts, nrm = surface_samples(mesh, int(n), np.random.default_rng(seed))
    except ValueError:  # no faces left after cleaning, or zero area
        return empty
    nrm = nrm.astype(np.float64)
    length = np.linalg.norm(nrm, axis=1, keepdims=True)
    return pts.astype(np.float64), nrm / np.where(length > 0, length, 1.0)
