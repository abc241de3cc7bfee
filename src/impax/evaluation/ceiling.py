"""What a perfect model would score: the ground truth's own field, meshed on the extraction grid.

A model's surface comes out of marching cubes on a grid of ``resolution`` cells over its box (the
IM-NET box ``[-0.5, 0.5]^3`` of the ``gt-unit`` frame for ``impax test``). Parts thinner than a cell
are lost or misplaced by that grid whatever the model knows. The ground truth's own signed distance
(sign from the winding number, :func:`impax.geometry.inside.signed_distance`) is the field marching
cubes places best — linear across a cell, so its vertices land on the surface where a binary
inside test would put them half a cell off — and its metrics against the ground truth
(:func:`impax.evaluation.metrics.mesh_metrics`) estimate what a model can reach on that grid. On real
meshes with sheet-thin walls this bound is far below 1 (see ``docs/tuning.md``); on the closed,
≥ 0.03-thick built-in shapes it is ≈ 1.

:func:`voxel_label_iou` asks the same of a family's training labels: the IoU of a voxel grid held
constant over each cell (IM-AE's 64³ max-pooled voxels) — what a decoder that reproduced its
labels exactly would score.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from impax.conventions import IMNET_BOX_HALF
from impax.evaluation.metrics import MetricsConfig, inside_mesh, iou_points, mesh_metrics
from impax.geometry.inside import signed_distance
from impax.geometry.normalize import imnet_transform, transform_mesh
from impax.geometry.voxels import occupancy_iou
from impax.inference.extract import coarse_resolution, extract_mesh


def grid_ceiling(gt_mesh: Any, resolution: int = 128, cfg: MetricsConfig = MetricsConfig()) -> dict[str, Any]:
    """:func:`mesh_metrics` of the ground truth's signed distance meshed on ``resolution`` cells over the
    IM-NET box of its ``gt-unit`` frame (centred, diagonal 1), scored against it in that frame."""
    gt = transform_mesh(gt_mesh, imnet_transform(gt_mesh))

    def sdf(points: np.ndarray) -> np.ndarray:
        return signed_distance(gt, np.asarray(points, np.float64))

    # a signed distance is 1-Lipschitz: the multi-resolution extractor with that bound queries only
    # near the surface and misses nothing the dense grid would find
    res = extract_mesh(sdf, resolution, half=IMNET_BOX_HALF, coarse=coarse_resolution(resolution), inside="below",
                       margin=0.0, lipschitz=1.0)
    return mesh_metrics(res.mesh, gt, cfg)


def voxel_label_iou(gt_mesh: Any, voxels: np.ndarray, cfg: MetricsConfig = MetricsConfig()) -> float:
    """The volumetric IoU (``iou`` of :func:`mesh_metrics`: the same uniform points in OccNet's cube)
    of ``voxels`` — an ``R``³ occupancy grid over the IM-NET box of the ``gt-unit`` frame, axes x, y,
    z = 0, 1, 2 (as ``impax prepare`` stores them) — each cell's value held over the whole cell,
    against the ground truth."""
    gt = transform_mesh(gt_mesh, imnet_transform(gt_mesh))
    v = np.asarray(voxels) > 0
    res = v.shape[0]
    pts = iou_points(gt, cfg.iou_samples, seed=cfg.seed + 2, padding=cfg.iou_padding)
    idx = np.floor((pts + IMNET_BOX_HALF) / (2 * IMNET_BOX_HALF) * res).astype(np.int64)
    ok = np.all((idx >= 0) & (idx < res), axis=1)
    pred = np.zeros(len(pts), dtype=bool)
    pred[ok] = v[idx[ok, 0], idx[ok, 1], idx[ok, 2]]
    return occupancy_iou(pred, inside_mesh(gt, pts))
