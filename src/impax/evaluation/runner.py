"""Evaluate many predicted meshes against their ground truth without stopping at a bad one.

File matching: ``PRED`` and ``GT`` are two files, or two folders. In folders, ground-truth meshes are
found recursively; a prediction matches when it has the same relative path without suffix
(``chair/abc.ply`` <-> ``chair/abc.obj``), or else the same file stem anywhere under ``PRED``. The
class of a shape is the first folder of its relative path under ``GT`` (``"all"`` when flat).
A missing prediction is scored as an empty one (``status = "missing"``); a prediction that matches
no ground-truth mesh is not scored (:func:`unmatched_predictions` lists them, and ``impax evaluate``
warns).

OccNet's data as the ground truth (``impax evaluate PRED --occnet ROOT``): :func:`pair_occnet` pairs
the shapes of a split of an OccNet dataset (``ROOT/<class>/<model>/``) with predictions named
``<class>/<model>.*``, ``<class>_<model>.*`` (the shape ids of a store prepared from that data, as
``impax test`` and ``impax reconstruct`` name their meshes) or ``<model>.*``; :func:`evaluate_occnet_pair`
scores one as OccNet's ``eval_meshes.py`` does (:func:`impax.evaluation.metrics.array_metrics`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from impax.conventions import Transform
from impax.evaluation.metrics import METRICS, MetricsConfig, array_metrics, empty_prediction_metrics, mesh_metrics
from impax.geometry.mesh_io import MESH_SUFFIXES
from impax.geometry.normalize import frame_transform, transform_mesh


@dataclasses.dataclass(frozen=True)
class Pair:
    shape_id: str
    cls: str
    pred: Path | None
    gt: Path


def load_mesh_lenient(path: str | Path) -> Any:
    """Load a mesh file as one ``trimesh.Trimesh``; an empty file gives an empty mesh.

    Raises ``ValueError`` with the path for unreadable files or non-finite vertices.
    """
    import trimesh

    path = Path(path)
    try:
        m = trimesh.load(str(path), force="mesh", process=False)
    except Exception as e:  # trimesh raises many types for a broken file
        raise ValueError(f"{path}: cannot read mesh ({type(e).__name__}: {e})") from e
    if isinstance(m, trimesh.Scene):  # an empty scene
        return trimesh.Trimesh()
    if not isinstance(m, trimesh.Trimesh):  # point cloud or other geometry: no surface
        return trimesh.Trimesh()
    if len(m.vertices) and not np.all(np.isfinite(np.asarray(m.vertices))):
        raise ValueError(f"{path}: mesh has non-finite vertex coordinates")
    return m


def _mesh_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in MESH_SUFFIXES)


def pair_files(pred: str | Path, gt: str | Path) -> list[Pair]:
    """Match predictions to ground-truth meshes (see the module docstring)."""
    pred, gt = Path(pred), Path(gt)
    if gt.is_file():
        if pred.is_dir():
            raise ValueError(f"GT {gt} is a file but PRED {pred} is a folder")
        return [Pair(gt.stem, "all", pred if pred.exists() else None, gt)]
    if not gt.is_dir():
        raise ValueError(f"GT {gt} does not exist")
    if not pred.is_dir():
        raise ValueError(f"GT {gt} is a folder but PRED {pred} is not")
    by_rel: dict[str, Path] = {}
    by_stem: dict[str, list[Path]] = {}
    for p in _mesh_files(pred):
        by_rel.setdefault(str(p.relative_to(pred).with_suffix("")), p)
        by_stem.setdefault(p.stem, []).append(p)
    pairs = []
    for g in _mesh_files(gt):
        rel = g.relative_to(gt).with_suffix("")
        cls = rel.parts[0] if len(rel.parts) > 1 else "all"
        p = by_rel.get(str(rel))
        if p is None and len(by_stem.get(g.stem, [])) == 1:
            p = by_stem[g.stem][0]
        pairs.append(Pair(str(rel), cls, p, g))
    return pairs


def unmatched_predictions(pred: str | Path, pairs: Iterable[Pair]) -> list[Path]:
    """Mesh files under the folder ``pred`` that no pair uses (predictions without ground truth)."""
    pred = Path(pred)
    if not pred.is_dir():
        return []
    used = {p.pred.resolve() for p in pairs if p.pred is not None}
    return [p for p in _mesh_files(pred) if p.resolve() not in used]


def evaluate_pair(pair: Pair, cfg: MetricsConfig = MetricsConfig(), frame: str = "original") -> dict[str, Any]:
    """Metrics of one pair as a flat record, both meshes mapped first into ``frame`` by the ground
    truth's transform (:data:`impax.conventions.EVAL_FRAMES`). Besides the metrics the record
    has ``frame``, ``gt_diagonal`` (the ground truth's bounding-box diagonal in its own units) and
    ``gt_closed`` (1 when the ground truth is watertight; the IoU of an open one rests on the
    winding-number inside test and is marked in the tables). Never raises for bad data
    (``status``/``message`` say what happened)."""
    rec: dict[str, Any] = {"id": pair.shape_id, "class": pair.cls, "pred": str(pair.pred) if pair.pred else "",
                           "gt": str(pair.gt), "frame": frame}
    nan = {k: float("nan") for k in METRICS}
    try:
        gt_mesh = load_mesh_lenient(pair.gt)
        if len(gt_mesh.faces) == 0:
            raise ValueError(f"{pair.gt}: ground truth is empty")
        t = frame_transform(gt_mesh, frame)
    except ValueError as e:
        return {**rec, **nan, "status": "invalid-gt", "message": str(e)}
    lo, hi = np.asarray(gt_mesh.bounds, np.float64)
    rec.update(gt_diagonal=float(np.linalg.norm(hi - lo)), gt_closed=int(bool(gt_mesh.is_watertight)))
    gt_mesh = transform_mesh(gt_mesh, t)
    if pair.pred is None:
        return {**rec, **empty_prediction_metrics(gt_mesh, cfg), "status": "missing",
                "message": "no prediction found: scored as an empty surface"}
    try:
        pred_mesh = load_mesh_lenient(pair.pred)
    except ValueError as e:
        return {**rec, **empty_prediction_metrics(gt_mesh, cfg), "status": "unreadable-prediction",
                "message": f"{e}; scored as an empty surface"}
    try:
        if len(pred_mesh.faces):
            pred_mesh = transform_mesh(pred_mesh, t)
        out = mesh_metrics(pred_mesh, gt_mesh, cfg)
    except Exception as e:  # last resort: one broken shape must not stop an evaluation of many
        return {**rec, **nan, "status": "error", "message": f"{type(e).__name__}: {e}"}
    return {**rec, **out}


#: Frames an OccNet ground truth can be scored in, and those a prediction can be given in.
OCCNET_EVAL_FRAMES = ("occnet", "original")


def pair_occnet(pred: str | Path, root: str | Path, split: str | None = "test") -> list[Pair]:
    """Pairs of the shapes of ``split`` (every shape folder with ``None``) of the OccNet dataset
    ``root`` with the mesh files under ``pred`` (see the module doc); ``Pair.gt`` is the shape
    folder, ``Pair.shape_id`` ``<class>/<model>``. A shape without a prediction gets ``pred=None``."""
    from impax.data.occnet import list_shapes
    from impax.data.sources import shape_id_of

    pred = Path(pred)
    if not pred.is_dir():
        raise ValueError(f"PRED {pred} is not a folder (with --occnet, PRED is a folder of meshes)")
    by_key: dict[str, list[Path]] = {}
    for f in _mesh_files(pred):
        rel = f.relative_to(pred).with_suffix("")
        for key in {rel.as_posix(), f"stem:{f.stem}"}:
            by_key.setdefault(key, []).append(f)
    pairs = []
    for cls, model, folder in list_shapes(root, split):
        found = None
        for key in (f"{cls}/{model}", f"stem:{shape_id_of(cls, model)}", f"stem:{model}"):
            if len(by_key.get(key, [])) == 1:
                found = by_key[key][0]
                break
        pairs.append(Pair(f"{cls}/{model}", cls, found, folder))
    return pairs


def evaluate_occnet_pair(pair: Pair, cfg: MetricsConfig = MetricsConfig(), frame: str = "occnet",
                         pred_frame: str = "original") -> dict[str, Any]:
    """Metrics of a prediction against an OccNet shape folder ``pair.gt`` (``points.npz`` occupancies
    for ``iou``, ``pointcloud.npz`` for the surface metrics; :func:`impax.data.occnet.evaluation_shape`),
    in ``frame`` (``"occnet"``: OccNet's unit cube, as ``eval_meshes.py``; ``"original"``: the
    mesh's own units). ``pred_frame`` is the frame the prediction is in: ``"original"`` (impax's
    reconstructions) or ``"occnet"`` (OccNet's ``generate.py`` output). The record is that of
    :func:`evaluate_pair` (``gt_diagonal`` in original units; no ``gt_closed``: OccNet's
    occupancies are the ground truth's inside test). Never raises for bad data."""
    from impax.data.occnet import evaluation_shape

    for name, value in (("frame", frame), ("pred_frame", pred_frame)):
        if value not in OCCNET_EVAL_FRAMES:
            raise ValueError(f"{name} {value!r}: an OccNet ground truth is scored in {' or '.join(OCCNET_EVAL_FRAMES)}")
    rec: dict[str, Any] = {"id": pair.shape_id, "class": pair.cls, "pred": str(pair.pred) if pair.pred else "",
                           "gt": str(pair.gt), "frame": frame}
    nan = {k: float("nan") for k in METRICS}
    try:
        occ_shape = evaluation_shape(pair.gt, pair.cls)
    except (ValueError, OSError) as e:
        return {**rec, **nan, "status": "invalid-gt", "message": " ".join(str(e).split())}
    shape = occ_shape.in_original() if frame == "original" else occ_shape
    ref = shape.surface_points if shape.surface_points is not None else shape.iou_points
    if ref is not None and len(ref):
        rec["gt_diagonal"] = float(np.linalg.norm(np.ptp(ref, axis=0))) / (1.0 if frame == "original"
                                                                          else occ_shape.transform.scale)

    def scored(pred_mesh: Any) -> dict[str, Any]:
        return array_metrics(pred_mesh, shape.surface_points, shape.surface_normals, shape.iou_points,
                             shape.iou_occupancies, dataclasses.replace(cfg, compute_voxel_iou=False))

    import trimesh

    if pair.pred is None:
        out = scored(trimesh.Trimesh())
        return {**rec, **out, "status": "missing" if out["status"] == "empty-prediction" else out["status"],
                "message": "no prediction found: scored as an empty surface"}
    try:
        pred_mesh = load_mesh_lenient(pair.pred)
    except ValueError as e:
        out = scored(trimesh.Trimesh())
        return {**rec, **out, "status": "unreadable-prediction" if out["status"] == "empty-prediction"
                else out["status"], "message": f"{e}; scored as an empty surface"}
    try:
        to_frame = _occnet_pred_map(pred_frame, frame, occ_shape.transform)
        if len(pred_mesh.faces) and to_frame is not None:
            pred_mesh = transform_mesh(pred_mesh, to_frame)
        out = scored(pred_mesh)
    except Exception as e:  # last resort: one broken shape must not stop an evaluation of many
        return {**rec, **nan, "status": "error", "message": f"{type(e).__name__}: {e}"}
    return {**rec, **out}


def _occnet_pred_map(pred_frame: str, frame: str, original_to_occnet: Transform) -> Transform | None:
    """The map taking a prediction from ``pred_frame`` to ``frame`` (``None``: the same frame)."""
    if pred_frame == frame:
        return None
    return original_to_occnet if pred_frame == "original" else original_to_occnet.inverse()


def scale_spread(records: Iterable[dict[str, Any]]) -> float:
    """Largest over smallest ground-truth bounding-box diagonal (original units) of the scored
    records; 1.0 with fewer than two. Above 2, means taken in the ``original`` frame mix scales."""
    d = [r["gt_diagonal"] for r in records if r.get("gt_diagonal", 0) > 0]
    return max(d) / min(d) if len(d) > 1 else 1.0


def evaluate_pairs(pairs: Iterable[Pair], cfg: MetricsConfig = MetricsConfig(),
                   progress: Callable[[int, dict[str, Any]], None] | None = None,
                   frame: str = "original", occnet_pred_frame: str | None = None) -> list[dict[str, Any]]:
    """Evaluate every pair in order (in ``frame``); ``progress(i, record)`` is called after each.
    With ``occnet_pred_frame`` the pairs are :func:`pair_occnet`'s, scored by
    :func:`evaluate_occnet_pair` with that prediction frame."""
    records = []
    for i, p in enumerate(pairs):
        r = (evaluate_pair(p, cfg, frame) if occnet_pred_frame is None
             else evaluate_occnet_pair(p, cfg, frame, occnet_pred_frame))
        records.append(r)
        if progress is not None:
            progress(i, r)
    return records


def sample_set(paths: Iterable[Path], n_points: int, seed: int = 0,
               frame: str = "original") -> tuple[list[np.ndarray], list[str]]:
    """Area-weighted point clouds of the readable, non-empty meshes among ``paths``, each in its own
    ``frame`` (for generation metrics)."""
    from impax.evaluation.sampling import area_weighted_samples

    clouds, problems = [], []
    for k, p in enumerate(paths):
        try:
            m = load_mesh_lenient(p)
            if len(m.faces) and frame != "original":
                m = transform_mesh(m, frame_transform(m, frame))
        except ValueError as e:
            problems.append(str(e))
            continue
        pts, _ = area_weighted_samples(m, n_points, seed=seed + k)
        if len(pts) == 0:
            problems.append(f"{p}: empty mesh, left out")
            continue
        clouds.append(pts)
    return clouds, problems
