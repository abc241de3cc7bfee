"""Coordinate conventions, in one place.

impax works with three frames and converts between them explicitly, never implicitly:

* **original**: the frame of the user's mesh file, whatever it is.
* **IM-NET frame** (Chen & Zhang 2019): the mesh's bounding box is centred at the origin and
  scaled so that its diagonal is 1, so the shape lies inside the open box (-0.5, 0.5)^3.
  IM-NET's 256^3 point coordinates are voxel centres ``(i + 0.5) / 256 - 0.5``; its voxel grids
  cover the same box, cell ``i`` spanning ``[i/R - 0.5, (i+1)/R - 0.5]``.
* **GAPS / LDIF frame** (Genova et al. 2020, ``process_mesh_local.sh``): GAPS ``msh2msh
  -scale_by_pca -translate_by_centroid -scale 0.25``. Training data live in the box
  [-0.7, 0.7]^3 (``GAPS_BBOX_HALF``); meshes are extracted on [-0.75, 0.75]^3.

A normalisation is stored as a :class:`Transform` (a 4x4 similarity mapping original → frame),
so every result can be mapped back to the user's original frame with :meth:`Transform.inverse`.
Converting between two normalised frames of the same shape goes through the original frame:
:func:`convert`.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import numpy as np

#: Half-size of IM-NET's normalised box: shapes lie in (-0.5, 0.5)^3.
IMNET_BOX_HALF = 0.5
#: Half-size of the GAPS box in which LDIF samples uniform points and its coarse SDF grid.
GAPS_BBOX_HALF = 0.7
#: Half-size of the box on which LDIF extracts meshes (``predict.py``).
LDIF_EXTRACT_HALF = 0.75
#: LDIF's iso-level: a point is inside where F(x) < LDIF_ISO_LEVEL.
LDIF_ISO_LEVEL = -0.07
#: IM-NET's occupancy threshold (the SVR test script of the TF1 original uses 0.6).
IMNET_ISO_LEVEL = 0.5

FRAMES = ("original", "imnet", "gaps")
#: Frames a mesh pair can be scored in (``impax evaluate --frame``; the ground truth's transform is
#: applied to both meshes): ``gt-unit`` = IM-NET's (bounding box centred, diagonal 1; IM-NET
#: preparation), ``occnet`` = OccNet's (centred, largest extent 1; OccNet ``sample_mesh.py``),
#: ``gaps`` = LDIF's (GAPS ``msh2msh -scale_by_pca -translate_by_centroid -scale 0.25``), ``original``
#: = no transform.
EVAL_FRAMES = ("gt-unit", "occnet", "gaps", "original")


@dataclasses.dataclass(frozen=True)
class Transform:
    """A 4x4 homogeneous transform ``matrix`` mapping points from ``source`` to ``target``.

    ``matrix`` is stored as a tuple of 16 floats (row-major) so the dataclass stays frozen,
    hashable and JSON-serialisable.
    """

    matrix: tuple[float, ...]
    source: str = "original"
    target: str = "imnet"

    def __post_init__(self) -> None:
        if len(self.matrix) != 16:
            raise ValueError(f"Transform.matrix needs 16 values, got {len(self.matrix)}")
        if not np.all(np.isfinite(self.matrix)):
            raise ValueError("Transform.matrix has non-finite values")

    @classmethod
    def from_matrix(cls, m: np.ndarray, source: str = "original", target: str = "imnet") -> Transform:
        m = np.asarray(m, dtype=np.float64)
        if m.shape != (4, 4):
            raise ValueError(f"expected a 4x4 matrix, got shape {m.shape}")
        return cls(tuple(float(v) for v in m.reshape(-1)), source, target)

    @classmethod
    def similarity(cls, scale: float, translation: np.ndarray, rotation: np.ndarray | None = None,
                   source: str = "original", target: str = "imnet") -> Transform:
        """x' = scale * R @ (x + translation)."""
        r = np.eye(3) if rotation is None else np.asarray(rotation, dtype=np.float64)
        m = np.eye(4)
        m[:3, :3] = scale * r
        m[:3, 3] = scale * r @ np.asarray(translation, dtype=np.float64)
        return cls.from_matrix(m, source, target)

    @classmethod
    def identity(cls, frame: str = "original") -> Transform:
        return cls.from_matrix(np.eye(4), frame, frame)

    def as_matrix(self) -> np.ndarray:
        return np.asarray(self.matrix, dtype=np.float64).reshape(4, 4)

    @property
    def scale(self) -> float:
        """Uniform scale factor (cube root of |det| of the linear part)."""
        return float(abs(np.linalg.det(self.as_matrix()[:3, :3])) ** (1.0 / 3.0))

    def apply(self, points: np.ndarray) -> np.ndarray:
        """Map an ``[..., 3]`` array of points; keeps the input's float dtype."""
        p = np.asarray(points)
        m = self.as_matrix()
        out = p.astype(np.float64) @ m[:3, :3].T + m[:3, 3]
        return out.astype(p.dtype if np.issubdtype(p.dtype, np.floating) else np.float64)

    def apply_vectors(self, vectors: np.ndarray) -> np.ndarray:
        """Map directions (normals of a similarity transform): rotate, no translation, unit length kept."""
        v = np.asarray(vectors, dtype=np.float64)
        lin = self.as_matrix()[:3, :3]
        out = v @ np.linalg.inv(lin)  # inverse-transpose for normals
        n = np.linalg.norm(out, axis=-1, keepdims=True)
        return out / np.where(n > 0, n, 1.0)

    def inverse(self) -> Transform:
        return Transform.from_matrix(np.linalg.inv(self.as_matrix()), self.target, self.source)

    def then(self, other: Transform) -> Transform:
        """Compose: first ``self``, then ``other``."""
        if self.target != other.source:
            raise ValueError(f"cannot compose {self.source}->{self.target} with {other.source}->{other.target}")
        return Transform.from_matrix(other.as_matrix() @ self.as_matrix(), self.source, other.target)

    def to_dict(self) -> dict[str, Any]:
        return {"matrix": list(self.matrix), "source": self.source, "target": self.target}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Transform:
        return cls(tuple(float(v) for v in d["matrix"]), d.get("source", "original"), d.get("target", "imnet"))

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_json(cls, s: str) -> Transform:
        return cls.from_dict(json.loads(s))


def convert(points: np.ndarray, from_frame: Transform, to_frame: Transform) -> np.ndarray:
    """Convert points between two normalised frames of the same shape.

    ``from_frame`` and ``to_frame`` are the shape's original→frame transforms (for example its
    IM-NET and GAPS normalisations); the conversion goes through the original frame.
    """
    if from_frame.source != to_frame.source:
        raise ValueError("both transforms must start from the same (original) frame")
    return from_frame.inverse().then(to_frame).apply(points)


def imnet_grid_centres(res: int) -> np.ndarray:
    """Cell centres of a ``res``^3 grid over IM-NET's box, shape [res, res, res, 3], axis order (x, y, z)."""
    c = (np.arange(res, dtype=np.float64) + 0.5) / res - IMNET_BOX_HALF
    return np.stack(np.meshgrid(c, c, c, indexing="ij"), axis=-1)


def imnet_points_from_grid256(idx: np.ndarray) -> np.ndarray:
    """IM-NET's [I]/[P] point coordinates: integer 256-grid indices → ``(p + 0.5) / 256 - 0.5``."""
    return (np.asarray(idx, dtype=np.float32) + 0.5) / 256.0 - 0.5


def grid256_from_imnet_points(p: np.ndarray) -> np.ndarray:
    """Inverse of :func:`imnet_points_from_grid256` (rounds to the nearest index)."""
    return np.rint((np.asarray(p, dtype=np.float64) + 0.5) * 256.0 - 0.5).astype(np.int64)


def ldif_grid_index_to_world(v: np.ndarray, res: int = 128, half: float = LDIF_EXTRACT_HALF) -> np.ndarray:
    """Map the original ldif2mesh kernel's grid-index vertex coordinates to world (GAPS) coordinates.

    The kernel maps index v to ``(0.5 + (res - 0.5) * v / res) / res * 2h - h``
    (see ``shared/ldif-fixtures/README.md``).
    """
    v = np.asarray(v, dtype=np.float64)
    return (0.5 + (res - 0.5) * v / res) / res * (2 * half) - half
