"""A small OccNet-format dataset built from closed-form shapes (spheres and boxes), written the way
OccNet's ``scripts/sample_mesh.py`` writes its files: bounding-box normalisation (``loc`` = box
centre, ``scale`` = largest extent, padding 0), uniform points in the 1.1 cube plus near-surface
points (surface + N(0, 0.01^2)), occupancies of the float64 points, then the float16 cast and
``np.packbits``; ``pointcloud.npz`` holds surface samples with their exact normals. Split lists
``<class>/{train,val,test}.lst``; one listed model has a corrupt ``points.npz``."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import trimesh


@dataclasses.dataclass(frozen=True)
class Shape:
    kind: str  # "sphere" or "box"
    centre: tuple[float, float, float]
    size: tuple[float, float, float]  # sphere: (r, r, r); box: extents

    @property
    def lo(self) -> np.ndarray:
        c, s = np.array(self.centre), np.array(self.size)
        return c - (s if self.kind == "sphere" else s / 2)

    @property
    def hi(self) -> np.ndarray:
        c, s = np.array(self.centre), np.array(self.size)
        return c + (s if self.kind == "sphere" else s / 2)

    @property
    def loc(self) -> np.ndarray:
        return (self.lo + self.hi) / 2

    @property
    def scale(self) -> float:
        return float((self.hi - self.lo).max())

    def inside(self, p: np.ndarray) -> np.ndarray:
        """Exact inside test of points in the ORIGINAL frame."""
        d = np.asarray(p, np.float64) - np.array(self.centre)
        if self.kind == "sphere":
            return np.linalg.norm(d, axis=-1) < self.size[0]
        return np.all(np.abs(d) < np.array(self.size) / 2, axis=-1)

    def distance(self, p: np.ndarray) -> np.ndarray:
        """Unsigned distance to the surface (original frame)."""
        d = np.asarray(p, np.float64) - np.array(self.centre)
        if self.kind == "sphere":
            return np.abs(np.linalg.norm(d, axis=-1) - self.size[0])
        q = np.abs(d) - np.array(self.size) / 2
        outside = np.linalg.norm(np.maximum(q, 0), axis=-1)
        return np.where(np.all(q < 0, axis=-1), -q.max(axis=-1), outside)

    def surface(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """``n`` area-uniform surface points and outward normals (original frame)."""
        c = np.array(self.centre)
        if self.kind == "sphere":
            d = rng.normal(size=(n, 3))
            d /= np.linalg.norm(d, axis=1, keepdims=True)
            return c + self.size[0] * d, d
        e = np.array(self.size)
        areas = np.array([e[1] * e[2], e[0] * e[2], e[0] * e[1]])
        axis = rng.choice(3, size=n, p=areas / areas.sum())
        sign = rng.choice([-1.0, 1.0], size=n)
        p = (rng.random((n, 3)) - 0.5) * e
        p[np.arange(n), axis] = sign * e[axis] / 2
        normals = np.zeros((n, 3))
        normals[np.arange(n), axis] = sign
        return c + p, normals

    def mesh(self, shrink: float = 1.0) -> trimesh.Trimesh:
        """The shape as a trimesh primitive in the original frame (``shrink`` scales it about its centre)."""
        if self.kind == "sphere":
            m = trimesh.creation.icosphere(subdivisions=4, radius=self.size[0] * shrink)
        else:
            m = trimesh.creation.box(extents=np.array(self.size) * shrink)
        return m.apply_translation(self.centre)


#: class → model → shape; splits below. Sizes differ so that each frame is really exercised.
SHAPES: dict[str, dict[str, Shape]] = {
    "02691156": {
        "sph_a": Shape("sphere", (3.0, -1.0, 2.0), (5.0, 5.0, 5.0)),
        "box_a": Shape("box", (0.5, 0.2, -0.3), (2.0, 1.0, 0.6)),
        "sph_t": Shape("sphere", (-2.0, 0.5, 1.0), (0.8, 0.8, 0.8)),
    },
    "03001627": {
        "sph_b": Shape("sphere", (0.0, 0.0, 0.0), (0.4, 0.4, 0.4)),
        "box_b": Shape("box", (10.0, 5.0, 0.0), (3.0, 4.0, 2.5)),
        "box_t": Shape("box", (1.0, 2.0, 3.0), (0.5, 1.5, 1.0)),
        "box_v": Shape("box", (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),
    },
}
SPLITS = {"02691156": {"train": ["sph_a", "box_a", "broken"], "val": [], "test": ["sph_t"]},
          "03001627": {"train": ["sph_b", "box_b"], "val": ["box_v"], "test": ["box_t"]}}
BROKEN = "02691156/broken"


def shape_of(rel: str) -> Shape:
    cls, model = rel.split("/")
    return SHAPES[cls][model]


def write_shape(folder: Path, shape: Shape, rng: np.random.Generator, n_points: int = 20000,
                uniform_ratio: float = 0.75, n_surface: int = 10000, padding: float = 0.1) -> None:
    """``points.npz`` and ``pointcloud.npz`` of one shape (see the module doc)."""
    folder.mkdir(parents=True, exist_ok=True)
    loc, scale = shape.loc, shape.scale
    n_uni = int(n_points * uniform_ratio)
    uni = (1 + padding) * (rng.random((n_uni, 3)) - 0.5)
    surf, _ = shape.surface(n_points - n_uni, rng)
    near = (surf - loc) / scale + 0.01 * rng.normal(size=surf.shape)
    pts = np.concatenate([uni, near])  # OccNet's frame
    occ = shape.inside(pts * scale + loc)
    np.savez(folder / "points.npz", points=pts.astype(np.float16), occupancies=np.packbits(occ),
             loc=loc.astype(np.float32), scale=np.float32(scale))
    sp, sn = shape.surface(n_surface, rng)
    np.savez(folder / "pointcloud.npz", points=((sp - loc) / scale).astype(np.float16),
             normals=sn.astype(np.float16), loc=loc.astype(np.float32), scale=np.float32(scale))


def write_dataset(root: Path, seed: int = 0, **kw) -> Path:
    """The whole dataset under ``root`` (see the module doc); returns ``root``."""
    rng = np.random.default_rng(seed)
    for cls, models in SHAPES.items():
        for model, shape in models.items():
            write_shape(root / cls / model, shape, rng, **kw)
        for split, names in SPLITS[cls].items():
            (root / cls / f"{split}.lst").write_text("".join(f"{n}\n" for n in names))
    broken = root / BROKEN
    broken.mkdir(parents=True, exist_ok=True)
    (broken / "points.npz").write_bytes(b"PK\x03\x04 this is not a zip archive")
    write_shape(root / "tmp-pc", SHAPES["02691156"]["sph_a"], rng, n_points=100, n_surface=100)
    (root / "tmp-pc" / "pointcloud.npz").replace(broken / "pointcloud.npz")
    for f in (root / "tmp-pc").iterdir():
        f.unlink()
    (root / "tmp-pc").rmdir()
    (root / "metadata.yaml").write_text("02691156: {id: '02691156', name: airplane}\n"
                                        "03001627: {id: '03001627', name: chair}\n")
    return root
