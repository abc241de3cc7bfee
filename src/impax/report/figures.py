"""Pictures for reports: SIF elements as ellipsoids, placeholder-safe mesh renders.

**SIF elements as ellipsoids.** A SIF/LDIF element (Genova et al. 2019/2020) is a scaled Gaussian
``c * g(x)`` with ``g(x) = exp(-0.5 d^T R diag(1/sigma^2) R^T d)``, ``d = x - mu`` and
``R = Rz(yaw) Ry(pitch) Rx(roll)`` (google/ldif ``camera_util.roll_pitch_yaw_to_rotation_matrices``;
:func:`impax.models.sif.rotation_matrices`). Its level sets are ellipsoids
``{mu + R diag(k sigma) u : |u| = 1}``. We draw each element at the level set where the element
alone reaches LDIF's iso-level, ``c g = -0.07`` (:data:`impax.conventions.LDIF_ISO_LEVEL`), i.e.

    k = sqrt(2 ln(c / -0.07))          when c < -0.07   (the region the element makes "inside")
    k = 1                              otherwise         (a fixed 1-sigma ellipsoid; "weak" element)

The first ``symmetric_count`` elements have a mirrored twin, evaluated at ``(x, y, -z)``
(``_tile_for_symgroups``): its ellipsoid is the element's ellipsoid reflected through ``z = 0``.
Ellipsoids are built in the GAPS frame (the frame of SIF files) and mapped to a shape's original
frame with the inverse of its stored original→GAPS :class:`impax.conventions.Transform`.

Layering: this module uses :mod:`impax.geometry.render` and the SIF element arrays of
:class:`impax.models.sif.StructuredImplicit` (plain numpy here, no JAX computation).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np
import trimesh

from impax.conventions import LDIF_ISO_LEVEL, Transform

#: Colours (RGB in [0, 1]) of the element ellipsoids, cycled by element index.
ELEMENT_PALETTE = (
    (0.894, 0.102, 0.110),
    (0.216, 0.494, 0.722),
    (0.302, 0.686, 0.290),
    (0.596, 0.306, 0.639),
    (1.000, 0.498, 0.000),
)
#: Colour of elements with c >= -0.07 (drawn at 1 sigma; they cannot make a point inside alone).
WEAK_COLOR = (0.62, 0.62, 0.62)
#: Colours of the three model families in report renders.
MODEL_COLORS = {
    "gt": (0.72, 0.72, 0.74),
    "imnet": (0.40, 0.62, 0.86),
    "ldif": (0.92, 0.62, 0.34),
    "gan": (0.55, 0.75, 0.55),
}


def euler_rotation(rpy: np.ndarray) -> np.ndarray:
    """``R = Rz(yaw) Ry(pitch) Rx(roll)`` for ``[..., 3]`` (roll, pitch, yaw) radians, float64 ``[..., 3, 3]``."""
    a = np.asarray(rpy, dtype=np.float64)
    r, p, y = a[..., 0], a[..., 1], a[..., 2]
    cr, sr, cp, sp, cy, sy = np.cos(r), np.sin(r), np.cos(p), np.sin(p), np.cos(y), np.sin(y)
    row0 = np.stack([cy * cp, cy * sp * sr - sy * cr, cy * sp * cr + sy * sr], -1)
    row1 = np.stack([sy * cp, sy * sp * sr + cy * cr, sy * sp * cr - cy * sr], -1)
    row2 = np.stack([-sp, cp * sr, cp * cr], -1)
    return np.stack([row0, row1, row2], -2)


def level_scale(constant: float, level: float = LDIF_ISO_LEVEL) -> float:
    """The Mahalanobis radius ``k`` of the drawn ellipsoid (see the module docstring)."""
    c = float(constant)
    if level < 0 and c < level:
        return math.sqrt(2.0 * math.log(c / level))
    return 1.0


@dataclasses.dataclass(frozen=True)
class ElementEllipsoid:
    """One drawn element: its mesh, index in the file, whether it is a mirrored twin, ``k``, and
    whether it reaches the iso-level alone (``strong``: ``c < -0.07``)."""

    mesh: trimesh.Trimesh
    index: int
    twin: bool
    k: float
    strong: bool


def sif_ellipsoids(sif, to_original: Transform | None = None, subdivisions: int = 2,
                   level: float = LDIF_ISO_LEVEL) -> list[ElementEllipsoid]:
    """Ellipsoid meshes of every element of an (unbatched) SIF, mirrored twins included, in the
    GAPS frame or, with ``to_original`` (a GAPS→original transform), in the original frame."""
    s = sif.as_numpy() if hasattr(sif, "as_numpy") else sif
    consts = np.asarray(s.constants, dtype=np.float64).reshape(-1)
    centres = np.asarray(s.centers, dtype=np.float64).reshape(-1, 3)
    sigmas = np.asarray(s.sigmas, dtype=np.float64).reshape(-1, 3)
    n = len(consts)
    rots = (euler_rotation(np.asarray(s.rotations, dtype=np.float64).reshape(-1, 3))
            if getattr(s, "rotations", None) is not None else np.broadcast_to(np.eye(3), (n, 3, 3)))
    unit = trimesh.creation.icosphere(subdivisions=subdivisions)
    uv, faces = np.asarray(unit.vertices, dtype=np.float64), np.asarray(unit.faces)
    mirror = np.array([1.0, 1.0, -1.0])
    out = []
    for twin in (False, True):
        for i in range(int(getattr(s, "symmetric_count", 0)) if twin else n):
            k = level_scale(consts[i], level)
            v = centres[i] + (uv * (k * sigmas[i])) @ rots[i].T
            f = faces
            if twin:  # evaluated at (x, y, -z): the reflected ellipsoid; keep the winding outward
                v, f = v * mirror, faces[:, ::-1]
            if to_original is not None:
                v = to_original.apply(v)
                if np.linalg.det(to_original.as_matrix()[:3, :3]) < 0:
                    f = f[:, ::-1]
            out.append(ElementEllipsoid(trimesh.Trimesh(v, f, process=False), i, twin, k,
                                        bool(level < 0 and consts[i] < level)))
    return out


def ellipsoid_layers(ellipsoids: Sequence[ElementEllipsoid], alpha: float = 0.8,
                     weak_alpha: float = 0.35) -> list[tuple[trimesh.Trimesh, tuple, float]]:
    """``(mesh, rgb, alpha)`` layers for :func:`impax.geometry.render.render_shaded`: strong
    elements grouped by palette colour (element ``i`` and its twin share colour ``i mod 5``),
    weak ones in one pale layer. Grouping keeps the number of ray-cast layers small."""
    groups: dict[int, list[trimesh.Trimesh]] = {}
    weak: list[trimesh.Trimesh] = []
    for e in ellipsoids:
        if e.strong:
            groups.setdefault(e.index % len(ELEMENT_PALETTE), []).append(e.mesh)
        else:
            weak.append(e.mesh)
    layers = [(trimesh.util.concatenate(ms), ELEMENT_PALETTE[c], alpha) for c, ms in sorted(groups.items())]
    if weak:
        layers.append((trimesh.util.concatenate(weak), WEAK_COLOR, weak_alpha))
    return layers

