"""Evaluate many predicted meshes against their ground truth without stopping at a bad one.

File matching: ``PRED`` and ``GT`` are two files, or two folders. In folders, ground-truth meshes are
found recursively; a prediction matches when it has the same relative path without suffix
(``chair/abc.ply`` <-> ``chair/abc.obj``), or else the same file stem anywhere under ``PRED``. The
class of a shape is the first folder of its relative path under ``GT`` (``"all"`` when flat).
A missing prediction is scored as an empty one (``status = "missing"``); a prediction that matches
no ground-truth mesh is not scored (:func:`unmatched_predictions` lists them, and ``impax evaluate``
warns).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from impax.evaluation.metrics import METRICS, MetricsConfig, empty_prediction_metrics, mesh_metrics
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


def scale_spread(records: Iterable[dict[str, Any]]) -> float:
    """Largest over smallest ground-truth bounding-box diagonal (original units) of the scored
    records; 1.0 with fewer than two. Above 2, means taken in the ``original`` frame mix scales."""
    d = [r["gt_diagonal"] for r in records if r.get("gt_diagonal", 0) > 0]
    return max(d) / min(d) if len(d) > 1 else 1.0


def evaluate_pairs(pairs: Iterable[Pair], cfg: MetricsConfig = MetricsConfig(),
                   progress: Callable[[int, dict[str, Any]], None] | None = None,
                   frame: str = "original") -> list[dict[str, Any]]:
    """Evaluate every pair in order (in ``frame``); ``progress(i, record)`` is called after each."""
    records = []
    for i, p in enumerate(pairs):
        r = evaluate_pair(p, cfg, frame)
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
