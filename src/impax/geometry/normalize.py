"""Normalising transforms of the two papers (see :mod:`impax.conventions` for the frames).

* :func:`imnet_transform` follows IM-NET's data preparation (Chen & Zhang 2019): the mesh's
  axis-aligned bounding box is centred at the origin and uniformly scaled so its *diagonal* has
  length 1, so the shape lies inside (-0.5, 0.5)^3.
* :func:`gaps_transform` reproduces LDIF's first preprocessing step (Genova et al. 2020,
  ``process_mesh_local.sh``): GAPS ``msh2msh in out -scale_by_pca -translate_by_centroid -scale 0.25``.

What GAPS does for those flags (read in tomfunkhouser/gaps ``apps/msh2msh/msh2msh.cpp``,
``pkgs/R3Shapes/R3Mesh.cpp`` and ``pkgs/R3Shapes/R4Matrix.cpp``; behaviour only, no code copied):

* ``-scale 0.25`` is parsed first and sets ``xform = S(0.25)``; the two flags are applied
  afterwards in ``main`` regardless of their order on the command line.
* ``-scale_by_pca``: ``xform.Scale(1 / sqrt(variances[0]))`` where ``variances`` come from
  ``R3Mesh::PrincipleAxes(&centroid)``: the covariance of the **face centroids weighted by face
  area** (normalised by total area) about the centroid below; ``variances[0]`` is the *largest*
  singular value (= eigenvalue) of that 3x3 matrix. The scale is uniform; there is **no rotation**
  (rotation is the separate ``-rotate_by_pca``/``-align_by_pca`` flags, not used by LDIF).
* ``-translate_by_centroid``: ``xform.Translate(-centroid)`` with ``R3Mesh::Centroid()``, the
  **area-weighted mean of face centroids** (the vertex mean is commented out in msh2msh).
* ``R4Matrix`` operations post-multiply, so ``xform = S(0.25) * S(1/sqrt(l_max)) * T(-c)``, i.e.
  ``x' = 0.25 / sqrt(l_max) * (x - c)``. This is the matrix msh2msh writes to
  ``orig_to_gaps.txt`` (``-debug_matrix``).
"""

from __future__ import annotations

import numpy as np
import trimesh

from impax.conventions import EVAL_FRAMES, Transform

#: ``msh2msh -scale`` factor used by LDIF's ``process_mesh_local.sh``.
GAPS_SCALE = 0.25


def _face_stats(mesh: trimesh.Trimesh) -> tuple[np.ndarray, np.ndarray]:
    v = np.asarray(mesh.vertices, dtype=np.float64)
    f = np.asarray(mesh.faces, dtype=np.int64)
    tri = v[f]
    areas = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    return tri.mean(axis=1), areas


def gaps_centroid(mesh: trimesh.Trimesh) -> np.ndarray:
    """GAPS ``R3Mesh::Centroid``: area-weighted mean of the face centroids (vertex mean if no area)."""
    centres, areas = _face_stats(mesh)
    total = areas.sum()
    if len(areas) == 0 or total <= 0:
        return np.asarray(mesh.vertices, dtype=np.float64).mean(axis=0)
    return (areas[:, None] * centres).sum(axis=0) / total


def gaps_pca_variances(mesh: trimesh.Trimesh, centroid: np.ndarray | None = None) -> np.ndarray:
    """GAPS ``R3Mesh::PrincipleAxes`` variances, largest first: eigenvalues of the area-weighted
    covariance of the face centroids about ``centroid`` (default: :func:`gaps_centroid`)."""
    c = gaps_centroid(mesh) if centroid is None else np.asarray(centroid, dtype=np.float64)
    centres, areas = _face_stats(mesh)
    d = centres - c
    cov = (areas[:, None, None] * d[:, :, None] * d[:, None, :]).sum(axis=0) / areas.sum()
    return np.sort(np.linalg.eigvalsh(cov))[::-1]


def imnet_transform(mesh: trimesh.Trimesh) -> Transform:
    """original → "imnet": centre the bounding box, scale its diagonal to 1 (IM-NET preparation)."""
    lo, hi = np.asarray(mesh.bounds, dtype=np.float64)
    diag = float(np.linalg.norm(hi - lo))
    if not diag > 0:
        raise ValueError("mesh has a zero-size bounding box")
    return Transform.similarity(1.0 / diag, -(lo + hi) / 2.0, source="original", target="imnet")


def gaps_transform(mesh: trimesh.Trimesh) -> Transform:
    """original → "gaps": GAPS ``msh2msh -scale_by_pca -translate_by_centroid -scale 0.25``.

    ``x' = 0.25 / sqrt(l_max) * (x - c)`` with ``c`` the area-weighted face-centroid mean and
    ``l_max`` the largest eigenvalue of the area-weighted face-centroid covariance (module doc).
    As in GAPS, the scale factor is skipped (left at 0.25) when ``l_max`` is not positive.
    """
    c = gaps_centroid(mesh)
    lmax = float(gaps_pca_variances(mesh, c)[0])
    scale = GAPS_SCALE / np.sqrt(lmax) if lmax > 0 else GAPS_SCALE
    return Transform.similarity(scale, -c, source="original", target="gaps")


def gaps_transform_of_samples(points: np.ndarray) -> Transform:
    """original → "gaps" estimated from area-weighted surface samples (``[n, 3]``, original frame)
    when the mesh itself is not at hand (OccNet's ``pointcloud.npz``).

    The centroid is the samples' mean: GAPS' area-weighted mean of face centroids is the surface's
    mean point, which the samples estimate without bias. The scale uses the samples' covariance
    where GAPS uses the area-weighted covariance of the face centroids; the two agree for a finely
    tessellated surface and differ by the faces' own spread for large triangles (a 12-triangle box:
    a few percent). Raises ``ValueError`` for samples that span no volume."""
    p = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    if len(p) < 2 or not np.all(np.isfinite(p)):
        raise ValueError("too few (or non-finite) surface samples to estimate the GAPS frame")
    c = p.mean(axis=0)
    d = p - c
    lmax = float(np.linalg.eigvalsh(d.T @ d / len(p))[-1])
    if not lmax > 0:
        raise ValueError("the surface samples are all one point: no GAPS scale")
    return Transform.similarity(GAPS_SCALE / np.sqrt(lmax), -c, source="original", target="gaps")


def occnet_transform_of(mesh: trimesh.Trimesh, padding: float = 0.0) -> Transform:
    """original → "occnet": centre the bounding box, scale its largest extent to ``1 - padding``
    (OccNet ``sample_mesh.py``: ``scale = max extent / (1 - bbox_padding)``, padding 0 by default)."""
    lo, hi = np.asarray(mesh.bounds, dtype=np.float64)
    extent = float(np.max(hi - lo))
    if not extent > 0:
        raise ValueError("mesh has a zero-size bounding box")
    return Transform.similarity((1.0 - padding) / extent, -(lo + hi) / 2.0, source="original", target="occnet")


def frame_transform(mesh: trimesh.Trimesh, frame: str) -> Transform:
    """The transform of ``mesh`` (a ground truth) into one of :data:`impax.conventions.EVAL_FRAMES`."""
    if frame == "gt-unit":
        return imnet_transform(mesh)
    if frame == "occnet":
        return occnet_transform_of(mesh)
    if frame == "gaps":
        return gaps_transform(mesh)
    if frame == "original":
        return Transform.identity("original")
    raise ValueError(f"unknown frame {frame!r}; choose from {', '.join(EVAL_FRAMES)}")


def transform_mesh(mesh: trimesh.Trimesh, transform: Transform) -> trimesh.Trimesh:
    """A transformed copy of ``mesh`` (faces flipped if the transform mirrors, keeping orientation)."""
    m = transform.as_matrix()
    v = np.asarray(mesh.vertices, dtype=np.float64) @ m[:3, :3].T + m[:3, 3]
    f = np.asarray(mesh.faces, dtype=np.int64).copy()
    if np.linalg.det(m[:3, :3]) < 0:
        f = f[:, ::-1].copy()
    return trimesh.Trimesh(vertices=v, faces=f, process=False)
