"""Occupancy Networks' preprocessed ShapeNet data (autonomousvision/occupancy_networks).

OccNet's ``scripts/sample_mesh.py`` writes, per shape folder ``<root>/<class>/<model>/``:

* ``points.npz``: ``points`` ``[N, 3]`` (float16 with ``--float16``, else float32) — uniform samples
  in the padded unit cube (side ``1 + points_padding``, 1.1) plus optional near-surface ones;
  ``occupancies`` — inside flags, ``np.packbits``-packed with ``--packbits`` (the released data),
  else one ``bool`` per point; ``loc`` ``[3]`` and ``scale`` (a scalar).
* ``pointcloud.npz``: ``points`` ``[M, 3]`` surface samples and their face ``normals`` ``[M, 3]``,
  ``loc``, ``scale``.

Both are in **OccNet's frame**: the mesh was translated by ``-loc`` (its bounding-box centre) and
divided by ``scale`` (its largest extent, over ``1 - bbox_padding``), so ``p_occnet = (p - loc) /
scale``. :func:`occnet_transform` returns that map as an :class:`impax.conventions.Transform`
(``original → occnet``); its :meth:`~impax.conventions.Transform.inverse` takes results back to the
mesh's own frame. A split is listed in ``<root>/<class>/<split>.lst`` (one model name per line).

OccNet's loader (``im2mesh/data/fields.py``) unpacks with ``np.unpackbits(occ)[:N]`` and, for
float16 points, adds 1e-4 Gaussian noise to break ties when training; :func:`read_points` does the
unpacking and offers the noise as ``jitter``. Evaluation (``eval_meshes.py``) scores IoU on
``points.npz`` (the predicted mesh's inside test at those points against ``occupancies``) and
Chamfer / normal consistency / F-score against ``pointcloud.npz``, all in OccNet's frame:
:func:`evaluation_shape` gathers exactly those arrays (see its docstring for scoring them with
:mod:`impax.evaluation.metrics`).

Training data: :func:`prepare_occnet_shape` turns one shape folder into impax store arrays in the
GAPS frame (``impax prepare SRC OUT --from-occnet``, :func:`discover_occnet` lists the shapes and
OccNet's splits); see :class:`OccNetPrepareConfig` for what is made and what cannot be.

Files are read with ``allow_pickle=False``; every problem is a ``ValueError`` naming the file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from impax.configs import to_dict
from impax.conventions import GAPS_BBOX_HALF, Transform
from impax.data.sources import SPLITS, SourceShape, shape_id_of
from impax.geometry.mesh_io import MeshError

OCCNET_FRAME = "occnet"
POINTS_FILE = "points.npz"
POINTCLOUD_FILE = "pointcloud.npz"


def occnet_transform(loc: np.ndarray, scale: float) -> Transform:
    """``original → occnet``: ``p' = (p - loc) / scale``."""
    return Transform.similarity(1.0 / float(scale), -np.asarray(loc, np.float64), source="original",
                                target=OCCNET_FRAME)


def _load(path: str | Path, keys: tuple[str, ...]) -> dict[str, np.ndarray]:
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            files = set(z.files)
            missing = [k for k in keys if k not in files]
            if missing:
                raise ValueError(f"{path}: not an OccNet file: no {', '.join(repr(k) for k in missing)} "
                                 f"(it has {sorted(files)})")
            return {k: np.asarray(z[k]) for k in files}
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such file") from None
    except (zipfile.BadZipFile, EOFError, OSError) as e:
        raise ValueError(f"{path}: not a readable .npz file ({type(e).__name__}: {e})") from None
    except ValueError as e:
        if str(e).startswith(str(path)):
            raise
        raise ValueError(f"{path}: cannot read ({' '.join(str(e).split())[:160]})") from None


def _frame(path: Path, d: dict[str, np.ndarray]) -> Transform:
    loc = np.asarray(d.get("loc", np.zeros(3)), np.float64).reshape(-1)
    scale = np.asarray(d.get("scale", 1.0), np.float64)
    if loc.shape != (3,) or scale.size != 1:
        raise ValueError(f"{path}: 'loc' must hold 3 values and 'scale' one, got {loc.shape} and {scale.shape}")
    s = float(scale.reshape(-1)[0])
    if not (np.isfinite(s) and s > 0 and np.all(np.isfinite(loc))):
        raise ValueError(f"{path}: invalid loc/scale ({loc.tolist()}, {s})")
    return occnet_transform(loc, s)


def _xyz(path: Path, a: np.ndarray, what: str) -> np.ndarray:
    if a.ndim != 2 or a.shape[1] != 3 or not np.issubdtype(a.dtype, np.floating):
        raise ValueError(f"{path}: '{what}' must be a float [N, 3] array, got {a.dtype} {list(a.shape)}")
    out = a.astype(np.float32)
    if not np.all(np.isfinite(out)):
        raise ValueError(f"{path}: '{what}' has non-finite values")
    return out


@dataclasses.dataclass
class OccNetPoints:
    """``points.npz``: ``points`` ``[N, 3]`` float32 and ``occupancies`` ``[N]`` bool, in OccNet's
    frame; ``transform`` maps the original frame to it."""

    points: np.ndarray
    occupancies: np.ndarray
    transform: Transform
    float16: bool = False


@dataclasses.dataclass
class OccNetPointCloud:
    """``pointcloud.npz``: surface ``points`` and unit ``normals`` ``[M, 3]`` float32, in OccNet's frame."""

    points: np.ndarray
    normals: np.ndarray
    transform: Transform


def unpack_occupancies(occ: np.ndarray, n: int, path: str | Path = "<array>") -> np.ndarray:
    """``[n]`` bool occupancies from OccNet's packed (``np.packbits``, ``ceil(n / 8)`` uint8) or plain
    (``n`` bool / 0-1) form."""
    occ = np.asarray(occ).reshape(-1)
    if len(occ) == n and (occ.dtype == bool or np.isin(occ, (0, 1)).all()):
        return occ.astype(bool)
    if occ.dtype == np.uint8 and len(occ) == (n + 7) // 8:
        return np.unpackbits(occ)[:n].astype(bool)
    raise ValueError(f"{path}: 'occupancies' has {len(occ)} {occ.dtype} values, which is neither {n} flags nor "
                     f"{(n + 7) // 8} packed bytes for the {n} points")


def read_points(path: str | Path, jitter: bool = False, rng: np.random.Generator | None = None) -> OccNetPoints:
    """Read an OccNet ``points.npz`` (packed or plain occupancies). ``jitter``: add OccNet's 1e-4
    Gaussian noise to float16 points, as its training loader does."""
    path = Path(path)
    d = _load(path, ("points", "occupancies"))
    half = d["points"].dtype == np.float16
    pts = _xyz(path, d["points"], "points")
    if jitter and half:
        pts = pts + (1e-4 * (rng or np.random.default_rng()).standard_normal(pts.shape)).astype(np.float32)
    occ = unpack_occupancies(d["occupancies"], len(pts), path)
    return OccNetPoints(pts, occ, _frame(path, d), half)


def read_pointcloud(path: str | Path) -> OccNetPointCloud:
    """Read an OccNet ``pointcloud.npz``; normals are returned unit length."""
    path = Path(path)
    d = _load(path, ("points", "normals"))
    pts, nrm = _xyz(path, d["points"], "points"), _xyz(path, d["normals"], "normals")
    if len(nrm) != len(pts):
        raise ValueError(f"{path}: {len(pts)} points but {len(nrm)} normals")
    length = np.linalg.norm(nrm, axis=1, keepdims=True)
    nrm = np.where(length > 0, nrm / np.where(length > 0, length, 1), 0).astype(np.float32)
    return OccNetPointCloud(pts, nrm, _frame(path, d))


def subsample(points: OccNetPoints, count: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``count`` random ``(points, occupancies)`` of a shape (OccNet's ``SubsamplePoints``: 2048 per
    shape per step, drawn with replacement only when the file has fewer)."""
    n = len(points.points)
    idx = rng.choice(n, count, replace=count > n)
    return points.points[idx], points.occupancies[idx]


# ----------------------------------------------------------------------------------------------
# datasets


def list_shapes(root: str | Path, split: str | None = None, classes: list[str] | None = None
                ) -> list[tuple[str, str, Path]]:
    """``(class, model, folder)`` of every shape folder under ``root`` holding ``points.npz`` or
    ``pointcloud.npz``; with ``split`` only the models named in ``<class>/<split>.lst``."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such OccNet dataset folder")
    out = []
    cats = sorted(p for p in root.iterdir() if p.is_dir() and (classes is None or p.name in classes))
    for cat in cats:
        if split is not None:
            lst = cat / f"{split}.lst"
            if not lst.is_file():
                continue
            names = [ln.strip() for ln in lst.read_text().splitlines() if ln.strip()]
        else:
            names = sorted(p.name for p in cat.iterdir() if p.is_dir())
        for name in names:
            d = cat / name
            if (d / POINTS_FILE).is_file() or (d / POINTCLOUD_FILE).is_file():
                out.append((cat.name, name, d))
            elif split is not None:
                raise FileNotFoundError(f"{d}: listed in {cat / f'{split}.lst'} but has no {POINTS_FILE} or "
                                        f"{POINTCLOUD_FILE}")
    if not out:
        what = f"split {split!r} " if split else ""
        raise ValueError(f"{root}: no OccNet shapes found for {what}(expected <class>/<model>/{POINTS_FILE})")
    return out


@dataclasses.dataclass
class EvalShape:
    """What OccNet scores a reconstruction against, in OccNet's frame.

    * IoU: ``occupancy(pred_mesh, iou_points)`` against ``iou_occupancies``
      (:func:`impax.geometry.voxels.occupancy_iou` with
      :func:`impax.geometry.inside.occupancy`);
    * surface metrics: the prediction's surface samples against ``surface_points`` /
      ``surface_normals`` (:func:`impax.evaluation.metrics.point_metrics`).

    ``transform`` maps the shape's original frame to OccNet's (a prediction made in the original
    frame is brought over with ``transform.apply``); :meth:`in_original` gives the arrays in the
    original frame instead.
    """

    id: str
    category: str
    iou_points: np.ndarray | None
    iou_occupancies: np.ndarray | None
    surface_points: np.ndarray | None
    surface_normals: np.ndarray | None
    transform: Transform

    def in_original(self) -> EvalShape:
        inv = self.transform.inverse()
        return EvalShape(
            self.id, self.category,
            None if self.iou_points is None else inv.apply(self.iou_points),
            self.iou_occupancies,
            None if self.surface_points is None else inv.apply(self.surface_points),
            None if self.surface_normals is None else inv.apply_vectors(self.surface_normals).astype(np.float32),
            Transform.identity("original"))


def evaluation_shape(folder: str | Path, category: str | None = None) -> EvalShape:
    """The evaluation arrays of one shape folder (either file may be absent, not both; when both are
    present their ``loc``/``scale`` must agree)."""
    folder = Path(folder)
    pf, cf = folder / POINTS_FILE, folder / POINTCLOUD_FILE
    if not pf.is_file() and not cf.is_file():
        raise FileNotFoundError(f"{folder}: neither {POINTS_FILE} nor {POINTCLOUD_FILE}")
    pts = read_points(pf) if pf.is_file() else None
    pc = read_pointcloud(cf) if cf.is_file() else None
    t = (pts or pc).transform  # type: ignore[union-attr]
    if pts is not None and pc is not None and not np.allclose(pts.transform.as_matrix(), pc.transform.as_matrix(),
                                                              rtol=1e-5, atol=1e-6):
        raise ValueError(f"{folder}: {POINTS_FILE} and {POINTCLOUD_FILE} disagree on loc/scale")
    return EvalShape(folder.name, category if category is not None else folder.parent.name,
                     None if pts is None else pts.points, None if pts is None else pts.occupancies,
                     None if pc is None else pc.points, None if pc is None else pc.normals, t)


def evaluation_data(root: str | Path, split: str | None = "test", classes: list[str] | None = None
                    ) -> list[EvalShape]:
    """:func:`evaluation_shape` of every shape of an OccNet dataset split."""
    return [evaluation_shape(d, cat) for cat, _, d in list_shapes(root, split, classes)]


# ----------------------------------------------------------------------------------------------
# training data: an OccNet dataset → impax's per-shape store (``impax prepare SRC OUT --from-occnet``)


@dataclasses.dataclass(frozen=True)
class OccNetPrepareConfig:
    """What ``impax prepare --from-occnet`` makes of each OccNet shape (see :func:`prepare_occnet_shape`).

    * ``uniform``: OccNet's ``points.npz`` samples (exact occupancies) inside the GAPS box
      ``[-uniform_half, uniform_half]^3``; with ``fill_outside`` the part of that box OccNet did not
      sample (outside its padded unit cube, hence outside the shape) is filled with samples labelled
      outside, at the file's density, so the set covers the box as LDIF's does.
    * ``near``: the ``points.npz`` samples within ``near_distance`` (GAPS units; LDIF's ``msh2pts
      -near_surface -max_distance 0.04``) of the surface, measured to the nearest ``pointcloud.npz``
      sample.
    * ``surface``: ``pointcloud.npz``'s surface samples and normals.
    * ``sdf_grid``: an approximate ``sdf_grid_res``^3 coarse SDF grid from the oriented surface
      samples (:func:`impax.geometry.voxels.sdf_grid_from_oriented_points`).
    """

    uniform: bool = True
    uniform_half: float = GAPS_BBOX_HALF
    fill_outside: bool = True
    near: bool = True
    near_distance: float = 0.04
    surface: bool = True
    sdf_grid: bool = True
    sdf_grid_res: int = 32

    def __post_init__(self) -> None:
        if not (self.uniform_half > 0 and self.near_distance > 0 and self.sdf_grid_res >= 2):
            raise ValueError("uniform_half and near_distance must be > 0 and sdf_grid_res >= 2")

    @classmethod
    def quick(cls, **overrides: Any) -> OccNetPrepareConfig:
        """Smaller coarse grid for smoke runs (``impax prepare --from-occnet --quick``)."""
        return cls(**{"sdf_grid_res": 16, **overrides})


def looks_like_occnet(root: str | Path) -> bool:
    """Whether ``root`` has OccNet's layout: some ``<class>/<model>/points.npz``."""
    root = Path(root)
    if not root.is_dir():
        return False
    for cat in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))[:50]:
        for model in sorted(cat.iterdir())[:50]:
            if (model / POINTS_FILE).is_file() or (model / POINTCLOUD_FILE).is_file():
                return True
    return False


def _list_names(path: Path) -> list[str]:
    return [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]


def discover_occnet(root: str | Path) -> tuple[list[SourceShape], str]:
    """The shapes of an OccNet dataset folder and the sha256 of its split lists.

    A shape is a model folder ``<class>/<model>/`` holding ``points.npz`` or ``pointcloud.npz``,
    or one named in ``<class>/{train,val,test}.lst`` (a listed model without its files is kept, so
    that preparing it fails and the report names it). Its split is the list naming it
    (``"unlisted"`` when the class has lists but none names it); in a class without lists the split
    is left empty (the caller hashes it). Shape ids are ``<class>_<model>``
    (:func:`impax.data.sources.shape_id_of`), ``rel`` is ``<class>/<model>``."""
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"source folder {root} does not exist")
    if not root.is_dir():
        raise ValueError(f"source {root} is not a folder")
    found: list[tuple[str, str, str]] = []
    digest = hashlib.sha256()
    for cat in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        split_of: dict[str, str] = {}
        lists = [s for s in SPLITS if (cat / f"{s}.lst").is_file()]
        for s in reversed(lists):  # a model in two lists gets the first of train, val, test
            text = (cat / f"{s}.lst").read_text()
            digest.update(f"{cat.name}/{s}.lst\n{text}\n".encode())
            for name in _list_names(cat / f"{s}.lst"):
                split_of[name] = s
        names = {p.name for p in cat.iterdir() if p.is_dir() and not p.name.startswith(".")
                 and ((p / POINTS_FILE).is_file() or (p / POINTCLOUD_FILE).is_file())}
        for name in sorted(names | set(split_of)):
            found.append((cat.name, name, split_of.get(name, "unlisted" if lists else "")))
    counts: dict[str, int] = {}
    for cls, model, _ in found:
        sid = shape_id_of(cls, model)
        counts[sid] = counts.get(sid, 0) + 1
    shapes = []
    for cls, model, split in found:
        rel = f"{cls}/{model}"
        sid = shape_id_of(cls, model)
        if counts[sid] > 1:
            sid = f"{sid}-{hashlib.sha256(rel.encode()).hexdigest()[:8]}"
        shapes.append(SourceShape(sid, cls, model, (root / cls / model).absolute(), rel, split))
    return sorted(shapes, key=lambda s: s.shape_id), digest.hexdigest()


def _shape_error(folder: Path, e: Exception) -> MeshError:
    """A reader's error as a one-line :class:`MeshError` of the shape folder (its file named relative)."""
    text = " ".join(str(e).split())
    prefix = f"{folder}/"
    return MeshError(folder, text[len(prefix):] if text.startswith(prefix) else text)


def prepare_occnet_shape(folder: str | Path, cfg: OccNetPrepareConfig = OccNetPrepareConfig(), seed: int = 0,
                         shape_id: str | None = None) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The store arrays and attributes of one OccNet shape folder, in the GAPS frame.

    Frames: OccNet's files are in its unit-cube frame; ``occnet_transform`` (original → occnet,
    exact, from ``loc``/``scale``) is stored, and so is ``gaps_transform`` (original → gaps) — the
    frame the LDIF/SIF recipes train in — estimated from the surface samples since OccNet ships no
    mesh (:func:`impax.geometry.normalize.gaps_transform_of_samples`). Samples are mapped
    occnet → original → gaps. Datasets: see :class:`OccNetPrepareConfig`; there are no signed
    distances (``uniform_sdf``/``near_sdf``: the recipes use the occupancies), no depth images, no
    IM-NET voxels, points or views.

    Raises :class:`impax.geometry.mesh_io.MeshError` (one line) for a missing, unreadable or
    unusable file."""
    from scipy.spatial import cKDTree

    from impax.data.pipeline import stage_rng
    from impax.geometry.normalize import gaps_transform_of_samples
    from impax.geometry.voxels import sdf_grid_from_oriented_points

    folder = Path(folder)
    shape_id = shape_id if shape_id is not None else folder.name
    pf, cf = folder / POINTS_FILE, folder / POINTCLOUD_FILE
    if not folder.is_dir():
        raise MeshError(folder, "listed in a split list but the folder does not exist")
    need_points = cfg.uniform or cfg.near
    for f, needed, why in ((pf, need_points, "its occupancy samples"),
                           (cf, True, "its surface samples, which set the GAPS frame")):
        if needed and not f.is_file():
            raise MeshError(folder, f"no {f.name} ({why})")
    try:
        pc = read_pointcloud(cf)
        pts = read_points(pf) if need_points else None
    except (ValueError, OSError) as e:
        raise _shape_error(folder, e) from None
    if len(pc.points) < 2:
        raise MeshError(folder, f"{POINTCLOUD_FILE} holds {len(pc.points)} surface points")
    t_occ = pc.transform
    if pts is not None and not np.allclose(pts.transform.as_matrix(), t_occ.as_matrix(), rtol=1e-5, atol=1e-6):
        raise MeshError(folder, f"{POINTS_FILE} and {POINTCLOUD_FILE} disagree on loc/scale")
    try:
        t_gaps = gaps_transform_of_samples(t_occ.inverse().apply(pc.points.astype(np.float64)))
    except ValueError as e:
        raise MeshError(folder, f"{POINTCLOUD_FILE}: {e}") from None
    to_gaps = t_occ.inverse().then(t_gaps)  # occnet → gaps: a scale and a translation
    surf = to_gaps.apply(pc.points.astype(np.float64)).astype(np.float32)
    nrm = to_gaps.apply_vectors(pc.normals).astype(np.float32)
    out: dict[str, np.ndarray] = {}
    attrs: dict[str, Any] = {
        "source_format": "occnet", "source_frame": OCCNET_FRAME, "occnet_transform": t_occ, "gaps_transform": t_gaps,
        "gaps_transform_estimate": "mean and covariance of the pointcloud.npz surface samples",
        "config": to_dict(cfg), "seed": int(seed), "occnet_surface_points": int(len(pc.points)),
    }
    if pts is not None:
        occ = pts.occupancies
        if not occ.any():
            raise MeshError(folder, f"encloses no volume: no {POINTS_FILE} sample is inside")
        p = to_gaps.apply(pts.points.astype(np.float64))
        attrs.update(occnet_points=int(len(occ)), occnet_float16=int(pts.float16))
        if cfg.uniform:
            h = float(cfg.uniform_half)
            keep = np.all(np.abs(p) <= h, axis=1)
            up, uo = p[keep], occ[keep]
            fill = _outside_fill(pts, to_gaps, h, stage_rng(seed, shape_id, "occnet-fill")) if cfg.fill_outside \
                else np.zeros((0, 3))
            up = np.concatenate([up, fill])
            uo = np.concatenate([uo, np.zeros(len(fill), bool)])
            order = stage_rng(seed, shape_id, "occnet-uniform").permutation(len(up))
            out["uniform_points"] = up[order].astype(np.float32)
            out["uniform_occupancy"] = uo[order].astype(np.uint8)
            attrs["uniform_outside_fill"] = int(len(fill))
        if cfg.near:
            d, _ = cKDTree(surf.astype(np.float64)).query(p, k=1, workers=-1)
            near = d <= cfg.near_distance
            if not near.any():
                raise MeshError(folder, f"no {POINTS_FILE} sample lies within {cfg.near_distance:g} (GAPS units) "
                                f"of the surface")
            order = stage_rng(seed, shape_id, "occnet-near").permutation(int(near.sum()))
            out["near_points"] = p[near][order].astype(np.float32)
            out["near_occupancy"] = occ[near][order].astype(np.uint8)
    if cfg.surface:
        out["surface_points"], out["surface_normals"] = surf, nrm
    if cfg.sdf_grid:
        g, w2g = sdf_grid_from_oriented_points(surf, nrm, cfg.sdf_grid_res, cfg.uniform_half)
        out["sdf_grid"], out["world2grid"] = g, w2g
        attrs["sdf_grid_estimate"] = "distance to the nearest surface sample, sign from the 8 nearest normals"
    return out, attrs


def _outside_fill(pts: OccNetPoints, to_gaps: Transform, half: float, rng: np.random.Generator) -> np.ndarray:
    """Uniform samples of the GAPS box ``[-half, half]^3`` outside the region OccNet sampled, at the
    file's density (GAPS frame). The excluded box holds OccNet's unit cube (where its normalisation
    puts the whole shape), every sample of the file and every inside sample, so each fill sample is
    outside the shape."""
    p = pts.points.astype(np.float64)
    lo = np.minimum(p.min(axis=0), -0.5)
    hi = np.maximum(p.max(axis=0), 0.5)
    corners = to_gaps.apply(np.stack([lo, hi]))
    glo, ghi = corners.min(axis=0), corners.max(axis=0)
    sampled = float(np.prod(hi - lo)) * to_gaps.scale ** 3  # the sampled box's volume in GAPS units
    overlap = float(np.prod(np.clip(np.minimum(ghi, half) - np.maximum(glo, -half), 0, None)))
    n = int(round(len(p) / sampled * ((2 * half) ** 3 - overlap)))
    chunks, have = [], 0
    while have < n:
        c = rng.uniform(-half, half, size=(max(1024, 2 * (n - have)), 3))
        c = c[np.any((c < glo) | (c > ghi), axis=1)]
        chunks.append(c)
        have += len(c)
    return np.concatenate(chunks)[:n] if chunks else np.zeros((0, 3))
