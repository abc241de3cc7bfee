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

Files are read with ``allow_pickle=False``; every problem is a ``ValueError`` naming the file.
"""

from __future__ import annotations

import dataclasses
import zipfile
from pathlib import Path

import numpy as np

from impax.conventions import Transform

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
