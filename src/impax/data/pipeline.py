"""Per-shape preparation: one mesh file → every training/evaluation array impax needs.

Follows the two original pipelines, with impax's own geometry (generalised winding numbers for
inside/outside, so meshes need not be watertight):

* **LDIF** (google/ldif ``scripts/process_mesh_local.sh``), in the GAPS frame
  (:func:`impax.geometry.normalize.gaps_transform`): 100k uniform samples in [-0.7, 0.7]^3 and 100k
  near-surface samples with signed distances (``msh2pts``), a 32^3 coarse SDF grid on the same box
  (``msh2df``; stored in GAPS' [z, y, x] order with its ``world2grid``), 20 dodecahedron depth images
  at 224^2 (``scn2img``), and 100k surface points with normals (LDIF back-projects them from the depth
  images; impax samples the mesh surface by area, which is what GAPS ``msh2pts`` does for its
  surface sets).
* **IM-NET** ([I] ``point_sampling/``), in the IM-NET frame (:func:`impax.geometry.normalize.imnet_transform`,
  bounding-box diagonal 1): 64^3 voxels (256^3 with ``voxels_256``), the hierarchical point–value
  samples of :mod:`impax.data.imnet_sampling`, and 24 grayscale views at 137^2 (the SVR input).
  Also OccNet-style uniform occupancy samples in IM-NET's box (for IoU evaluation in that frame).

Randomness: every stage draws from its own generator seeded by (global seed, shape id, stage name),
so a shape's data never depends on the processing order, the worker count, or which other stages
are switched on.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from impax.configs import to_dict
from impax.conventions import GAPS_BBOX_HALF, IMNET_BOX_HALF
from impax.data.imnet_hdf5 import IMNET_LEVELS


@dataclasses.dataclass(frozen=True)
class PrepareConfig:
    """What to compute per shape. Defaults reproduce the LDIF and IM-NET data (see module doc)."""

    # LDIF side (GAPS frame)
    uniform: bool = True
    n_uniform: int = 100_000  # msh2pts -uniform_in_bbox -npoints 100000
    uniform_half: float = GAPS_BBOX_HALF  # ±0.7
    near: bool = True
    n_near: int = 100_000  # msh2pts -near_surface -num_points 100000
    near_sigma: float | None = None  # None: impax.geometry.sampling.NEAR_SURFACE_SIGMA (RMS of GAPS' 0.04)
    surface: bool = True
    n_surface: int = 100_000  # surface_samples_from_dodeca.pts holds 100k points
    sdf_grid: bool = True
    sdf_grid_res: int = 32  # msh2df -bbox ±0.7 -spacing 0.044
    depth: bool = True
    n_depth_views: int = 20  # dodecahedron cameras
    depth_size: int = 224
    depth_dtype: str = "float32"  # or "float16" (halves the store)
    # IM-NET side (IM-NET frame)
    imnet: bool = True
    voxels_256: bool = True  # IM-NET's own sampling: 64^3 voxels max-pooled from 256^3, points on the 256 grid
    # (labels exact at every point); False: 64^3 cell-centre voxels (faster, ~6 % of level-64 labels off)
    imnet_levels: tuple[int, ...] = IMNET_LEVELS
    imnet_counts: tuple[int, ...] = (4096, 4096, 16384)
    views: bool = True
    n_views: int = 24  # 3D-R2N2 renders
    view_size: int = 137
    occupancy: bool = True
    n_occupancy: int = 100_000  # OccNet's points.npz holds 100k uniform points

    def __post_init__(self) -> None:
        if len(self.imnet_levels) != len(self.imnet_counts):
            raise ValueError("imnet_levels and imnet_counts must have the same length")
        if self.depth_dtype not in ("float32", "float16"):
            raise ValueError(f"depth_dtype must be float32 or float16, got {self.depth_dtype!r}")

    @classmethod
    def quick(cls, **overrides: Any) -> PrepareConfig:
        """Small sizes for smoke runs and tests (``impax prepare --quick``)."""
        base = dict(n_uniform=4096, n_near=4096, n_surface=4096, sdf_grid_res=16, depth_size=64,
                    n_occupancy=4096)
        return cls(**{**base, **overrides})

    def to_json(self) -> str:
        return json.dumps(to_dict(self), sort_keys=True)


def id_hash(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def stage_rng(seed: int, shape_id: str, stage: str) -> np.random.Generator:
    """The generator of one stage of one shape: a function of (global seed, shape id, stage) only."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), id_hash(shape_id), id_hash(stage)]))


class _Timer:
    def __init__(self, sink: dict[str, float] | None) -> None:
        self.sink = sink

    def __call__(self, name: str):
        timer = self

        class _T:
            def __enter__(self):
                self.t0 = time.perf_counter()

            def __exit__(self, *exc):
                if timer.sink is not None:
                    timer.sink[name] = timer.sink.get(name, 0.0) + time.perf_counter() - self.t0

        return _T()


def count_faces(path: str | Path) -> int | None:
    """The number of faces a mesh file announces, read without loading it: PLY and OFF headers,
    binary STL's count, ``facet`` blocks of ASCII STL, ``f`` lines of OBJ (a polygon counts once,
    so this is a lower bound of the triangles). ``None`` for other formats or unreadable headers."""
    p = Path(path)
    suffix = p.suffix.lower()
    try:
        with open(p, "rb") as f:
            if suffix == ".ply":
                head = f.read(1 << 16)
                end = head.find(b"end_header")
                for line in (head[:end] if end >= 0 else head).splitlines():
                    parts = line.split()
                    if len(parts) == 3 and parts[0] == b"element" and parts[1] == b"face":
                        return int(parts[2])
                return None
            if suffix == ".off":
                words: list[bytes] = []
                for line in f.read(1 << 16).splitlines():
                    line = line.split(b"#", 1)[0]
                    words += line.split()
                    if len(words) >= 4:
                        break
                if words and words[0].upper().endswith(b"OFF"):
                    words = words[1:]
                return int(words[1]) if len(words) >= 2 else None
            if suffix == ".stl":
                size = p.stat().st_size
                head = f.read(84)
                if len(head) == 84:
                    n = int.from_bytes(head[80:84], "little")
                    if 84 + 50 * n == size:
                        return n
                return _count_token(f, b"endfacet", head)
            if suffix == ".obj":
                return _count_token(f, b"\nf ", b"\n")
    except (OSError, ValueError):
        return None
    return None


def _count_token(f: Any, token: bytes, start: bytes = b"") -> int:
    """Occurrences of ``token`` in ``start`` + the rest of ``f``, read in blocks (an occurrence cut
    by a block boundary is found in the next round, one inside the kept tail cannot exist)."""
    count, tail, keep = 0, start, len(token) - 1
    while True:
        block = f.read(1 << 22)
        if not block:
            return count + (tail.count(token) if tail is start else 0)
        data = tail + block
        count += data.count(token)
        tail = data[len(data) - keep:] if keep else b""


def check_face_count(path: str | Path, max_faces: int | None) -> None:
    """Raise :class:`~impax.geometry.mesh_io.MeshError` when the file announces more than
    ``max_faces`` faces (see :func:`count_faces`); nothing is loaded."""
    if not max_faces:
        return
    n = count_faces(path)
    if n is not None and n > max_faces:
        from impax.geometry.mesh_io import MeshError

        raise MeshError(path, _too_many(n, max_faces))


def _too_many(n: int, max_faces: int) -> str:
    return (f"{n:,} faces, more than the limit of {max_faces:,} (--max-faces); simplify the mesh first "
            "or raise the limit")


def prepare_shape(mesh_path: str | Path, cfg: PrepareConfig = PrepareConfig(), seed: int = 0,
                  shape_id: str | None = None, timings: dict[str, float] | None = None,
                  max_faces: int | None = None) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """All arrays of one shape and its attributes (see :data:`impax.data.store.SCHEMA`).

    Raises :class:`impax.geometry.mesh_io.MeshError` for unusable input (unreadable, empty, no faces,
    non-finite vertices, degenerate, or enclosing no volume) and, with ``max_faces``, for a file
    that announces (:func:`count_faces`, before loading) or holds more faces than that; the mesh is
    refused, never simplified. ``timings``, if given, receives seconds per stage.
    """
    from impax.geometry import inside, sampling, voxels
    from impax.geometry.mesh_io import MeshError, load_mesh
    from impax.geometry.normalize import gaps_transform, imnet_transform, transform_mesh

    shape_id = shape_id if shape_id is not None else Path(mesh_path).stem
    t = _Timer(timings)
    check_face_count(mesh_path, max_faces)
    with t("load"):
        mesh = load_mesh(mesh_path)
    if max_faces and len(mesh.faces) > max_faces:
        raise MeshError(mesh_path, _too_many(len(mesh.faces), max_faces))
    with t("normalize"):
        t_imnet, t_gaps = imnet_transform(mesh), gaps_transform(mesh)
        m_imnet, m_gaps = transform_mesh(mesh, t_imnet), transform_mesh(mesh, t_gaps)
    out: dict[str, np.ndarray] = {}
    attrs: dict[str, Any] = {
        "imnet_transform": t_imnet, "gaps_transform": t_gaps, "config": to_dict(cfg), "seed": int(seed),
        "n_vertices": int(len(mesh.vertices)), "n_faces": int(len(mesh.faces)),
    }

    if cfg.imnet:
        with t("voxels"):
            fine = voxels.occupancy_grid(m_imnet, 256 if cfg.voxels_256 else 64, IMNET_BOX_HALF)
        if not fine.any():
            raise MeshError(mesh_path, "encloses no volume: no voxel of the 64^3 grid is inside"
                            + ("" if cfg.voxels_256 else " (thin parts may be caught without --fast-voxels)"))
        with t("imnet_points"):
            from impax.data.imnet_sampling import sample_imnet

            counts = dict(zip(cfg.imnet_levels, cfg.imnet_counts))
            s = sample_imnet(fine, stage_rng(seed, shape_id, "imnet"), cfg.imnet_levels, counts)
            out["voxels"] = s["voxels"][..., 0]
            for lv in cfg.imnet_levels:
                out[f"points_{lv}"], out[f"values_{lv}"] = s[f"points_{lv}"], s[f"values_{lv}"]
            attrs["imnet_exceeded"] = [int(lv) for lv in cfg.imnet_levels if s[f"exceeded_{lv}"]]
    if cfg.occupancy:
        with t("occupancy"):
            p = sampling.uniform_samples(cfg.n_occupancy, IMNET_BOX_HALF, stage_rng(seed, shape_id, "occupancy"))
            out["occ_points"], out["occ_values"] = p, inside.occupancy(m_imnet, p).astype(np.uint8)
    if cfg.uniform:
        with t("uniform"):
            p = sampling.uniform_samples(cfg.n_uniform, cfg.uniform_half, stage_rng(seed, shape_id, "uniform"))
            sdf = inside.signed_distance(m_gaps, p)
            out["uniform_points"], out["uniform_sdf"] = p, sdf
            out["uniform_occupancy"] = np.signbit(sdf).astype(np.uint8)
        if not cfg.imnet and not out["uniform_occupancy"].any():
            raise MeshError(mesh_path, "encloses no volume: no uniform sample is inside")
    if cfg.near:
        with t("near"):
            p = sampling.near_surface_samples(m_gaps, cfg.n_near, cfg.near_sigma, stage_rng(seed, shape_id, "near"))
            sdf = inside.signed_distance(m_gaps, p)
            out["near_points"], out["near_sdf"] = p, sdf
            out["near_occupancy"] = np.signbit(sdf).astype(np.uint8)
    if cfg.surface:
        with t("surface"):
            p, n = sampling.surface_samples(m_gaps, cfg.n_surface, stage_rng(seed, shape_id, "surface"))
            out["surface_points"], out["surface_normals"] = p, n
    if cfg.sdf_grid:
        with t("sdf_grid"):
            g, w2g = voxels.sdf_grid(m_gaps, cfg.sdf_grid_res, cfg.uniform_half)
            out["sdf_grid"], out["world2grid"] = g.astype(np.float32), w2g.astype(np.float32)
    if cfg.depth:
        with t("depth"):
            from impax.geometry.render import dodecahedron_cameras, render_depth

            cams = dodecahedron_cameras()
            if cfg.n_depth_views != len(cams):
                cams = cams[: cfg.n_depth_views]
            d = render_depth(m_gaps, cams, size=cfg.depth_size)
            out["depth"] = np.asarray(d, dtype=np.dtype(cfg.depth_dtype))
    if cfg.views:
        with t("views"):
            from impax.geometry.render import render_views

            vseed = int(stage_rng(seed, shape_id, "views").integers(0, 2**31 - 1))
            out["views"] = np.asarray(render_views(m_imnet, n_views=cfg.n_views, size=cfg.view_size, seed=vseed),
                                      dtype=np.uint8)
            attrs["views_seed"] = vseed
    return out, attrs
