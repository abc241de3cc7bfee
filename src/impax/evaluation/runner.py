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

MESH_SUFFIXES = (".ply", ".obj", ".off", ".stl", ".glb", ".gltf")


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


def evaluate_pair(pair: Pair, cfg: MetricsConfig = MetricsConfig()) -> dict[str, Any]:
    """Metrics of one pair as a flat record; never raises for bad data (status/message say what happened)."""
    rec: dict[str, Any] = {"id": pair.shape_id, "class": pair.cls, "pred": str(pair.pred) if pair.pred else "",
                           "gt": str(pair.gt)}
    nan = {k: float("nan") for k in METRICS}
    try:
        gt_mesh = load_mesh_lenient(pair.gt)
    except ValueError as e:
        return {**rec, **nan, "status": "invalid-gt", "message": str(e)}
    if pair.pred is None:
        if len(gt_mesh.faces) == 0:
            return {**rec, **nan, "status": "invalid-gt", "message": f"{pair.gt}: ground truth is empty"}
        return {**rec, **empty_prediction_metrics(gt_mesh, cfg), "status": "missing",
                "message": "no prediction found: scored as an empty surface"}
    try:
        pred_mesh = load_mesh_lenient(pair.pred)
    except ValueError as e:
        import trimesh

        pred_mesh, msg = trimesh.Trimesh(), str(e)
        out = mesh_metrics(pred_mesh, gt_mesh, cfg)
        return {**rec, **out, "status": "unreadable-prediction" if out["status"] != "invalid-gt" else out["status"],
                "message": msg + "; scored as an empty surface"}
    try:
        out = mesh_metrics(pred_mesh, gt_mesh, cfg)
    except Exception as e:  # last resort: one broken shape must not stop an evaluation of many
        return {**rec, **nan, "status": "error", "message": f"{type(e).__name__}: {e}"}
    return {**rec, **out}


def evaluate_pairs(pairs: Iterable[Pair], cfg: MetricsConfig = MetricsConfig(),
                   progress: Callable[[int, dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
    """Evaluate every pair in order; ``progress(i, record)`` is called after each."""
    records = []
    for i, p in enumerate(pairs):
        r = evaluate_pair(p, cfg)
        records.append(r)
        if progress is not None:
            progress(i, r)
    return records


def sample_set(paths: Iterable[Path], n_points: int, seed: int = 0) -> tuple[list[np.ndarray], list[str]]:
    """Area-weighted point clouds of the readable, non-empty meshes among ``paths`` (for generation metrics)."""
    from impax.evaluation.sampling import area_weighted_samples

    clouds, problems = [], []
    for k, p in enumerate(paths):
        try:
            m = load_mesh_lenient(p)
        except ValueError as e:
            problems.append(str(e))
            continue
        pts, _ = area_weighted_samples(m, n_points, seed=seed + k)
        if len(pts) == 0:
            problems.append(f"{p}: empty mesh, left out")
            continue
        clouds.append(pts)
    return clouds, problems
