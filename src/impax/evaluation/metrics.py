"""Reconstruction metrics between a predicted and a ground-truth mesh.

Each definition names the paper and code it follows; the names keep the conventions apart,
because "Chamfer" means three different numbers in the literature (see ``docs/metrics.md``).

Point-set metrics are computed on ``n_samples`` (100k, as in OccNet and LDIF) area-weighted surface
samples per mesh, with nearest neighbours from ``scipy.spatial.cKDTree`` (``workers=-1``);
``d_pg`` are the distances from predicted samples to their nearest ground-truth sample
(accuracy direction), ``d_gp`` from ground truth to prediction (completeness direction).

* ``chamfer_l1``  Occupancy Networks (Mescheder et al. 2019, ``im2mesh/eval.py``):
  ``0.5 * (mean d_pg + mean d_gp)``. OccNet's tables print this x10.
* ``chamfer_l2``  LDIF (Genova et al. 2020, ``ldif/inference/metrics.py``):
  ``1000 * (mean d_pg^2 + mean d_gp^2)``.
* ``chamfer_l2_occnet``  OccNet's "Chamfer-L2": ``0.5 * (mean d_pg^2 + mean d_gp^2)``.
* ``normal_consistency``  OccNet: ``0.5 * (mean |n_p . n_g(nn)| + mean |n_g . n_p(nn)|)``; the absolute
  value because generated normals may be flipped (LDIF copies it).
* ``fscore``  LDIF / Tatarchenko et al. 2019: harmonic mean of precision (% of predicted samples with
  ``d_pg <= tau``) and recall (% of ground-truth samples with ``d_gp <= tau``), x100, ``tau = 0.01``
  (LDIF tests ``d^2 <= 1e-4``). ``fscore_2tau`` is LDIF's "F(2 tau)", which tests ``d^2 <= 2 tau^2``,
  i.e. ``d <= sqrt(2) tau``. ``fscore_bbox`` uses ``tau`` = 1% of the ground truth's bounding-box
  diagonal (the scale-free convention).
Both meshes are sampled with the same random stream (seed ``cfg.seed``), so identical meshes
get identical samples (Chamfer exactly 0, F = 100, NC = 1).

* ``iou``  OccNet / LDIF volumetric IoU on ``iou_samples`` (100k) points uniform in a cube around the
  ground truth (OccNet: centred on its bounding box, side ``(1 + 0.1) x`` its largest extent), each
  classified inside either mesh by the generalised winding number of the cleaned, consistently
  oriented mesh (``impax.geometry.inside.occupancy``). LDIF reports it x100; here in [0, 1].
* ``iou_voxels``  IM-NET (Chen & Zhang 2019): IoU of the two meshes' voxelisations, cell-centre
  occupancy on a ``voxel_resolution``^3 (64) grid over the same cube.

:func:`array_metrics` scores a prediction against ground-truth arrays instead of a mesh (OccNet's
``pointcloud.npz`` for the surface metrics, ``points.npz`` occupancies for ``iou``), with the same
functions.

Defined results where a metric cannot be computed (never an exception):
an empty prediction (no faces, no area) scores F = 0, IoU = 0, normal consistency 0 and the Chamfer
distances obtained if every distance were the ground truth's bounding-box diagonal (the OccNet
evaluator similarly substitutes fixed maxima); its ``status`` is ``"empty-prediction"``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from impax.evaluation.sampling import area_weighted_samples
from impax.geometry.inside import occupancy as inside_mesh
from impax.geometry.sampling import uniform_samples
from impax.geometry.voxels import occupancy_iou

#: Metric names in table order, with the direction that is better.
METRICS: dict[str, str] = {
    "chamfer_l1": "lower",
    "chamfer_l2": "lower",
    "chamfer_l2_occnet": "lower",
    "normal_consistency": "higher",
    "fscore": "higher",
    "fscore_2tau": "higher",
    "fscore_bbox": "higher",
    "iou": "higher",
    "iou_voxels": "higher",
}


@dataclasses.dataclass(frozen=True)
class MetricsConfig:
    """Evaluation settings; the defaults reproduce OccNet/LDIF (100k samples, tau = 0.01) and IM-NET (64^3 voxels)."""

    n_samples: int = 100_000  # surface samples per mesh (OccNet, LDIF)
    seed: int = 0  # sampling seed: results are deterministic given it
    tau: float = 0.01  # LDIF's F-score threshold (d^2 <= 1e-4)
    tau_bbox_fraction: float = 0.01  # fscore_bbox: tau = this x the GT bounding-box diagonal
    iou_samples: int = 100_000  # uniform points for the volumetric IoU (OccNet, LDIF)
    iou_padding: float = 0.1  # OccNet's box padding: cube side = (1 + padding) x largest GT extent
    voxel_resolution: int = 64  # IM-NET's voxel IoU resolution
    compute_iou: bool = True
    compute_voxel_iou: bool = True


# --------------------------------------------------------------------------- point-set metrics
def nearest(query: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distance from each ``query`` point to its nearest ``ref`` point, and that point's index (cKDTree)."""
    from scipy.spatial import cKDTree

    d, i = cKDTree(np.asarray(ref, dtype=np.float64)).query(np.asarray(query, dtype=np.float64), k=1, workers=-1)
    return d, i


def chamfer_l1(d_pg: np.ndarray, d_gp: np.ndarray) -> float:
    """OccNet's Chamfer-L1: ``0.5 (mean accuracy + mean completeness)``."""
    return float(0.5 * (np.mean(d_pg) + np.mean(d_gp)))


def chamfer_l2(d_pg: np.ndarray, d_gp: np.ndarray) -> float:
    """LDIF's Chamfer: ``1000 (mean d_pg^2 + mean d_gp^2)``."""
    return float(1000.0 * (np.mean(np.square(d_pg)) + np.mean(np.square(d_gp))))


def chamfer_l2_occnet(d_pg: np.ndarray, d_gp: np.ndarray) -> float:
    """OccNet's Chamfer-L2: ``0.5 (mean d_pg^2 + mean d_gp^2)``."""
    return float(0.5 * (np.mean(np.square(d_pg)) + np.mean(np.square(d_gp))))


def normal_consistency(n_p: np.ndarray, n_g: np.ndarray, idx_pg: np.ndarray, idx_gp: np.ndarray) -> float:
    """OccNet's normal consistency: mean absolute dot product with the nearest neighbour's normal, both ways."""
    acc = np.abs(np.sum(n_p * n_g[idx_pg], axis=1))
    comp = np.abs(np.sum(n_g * n_p[idx_gp], axis=1))
    return float(0.5 * (acc.mean() + comp.mean()))


def fscore(d_pg: np.ndarray, d_gp: np.ndarray, tau: float) -> tuple[float, float, float]:
    """(F, precision, recall), each x100, counting ``d <= tau`` (LDIF's ``d^2 <= tau^2``)."""
    t2 = float(tau) ** 2
    p = 100.0 * float(np.mean(np.square(d_pg) <= t2))
    r = 100.0 * float(np.mean(np.square(d_gp) <= t2))
    f = 0.0 if p + r == 0 else 2.0 * p * r / (p + r)
    return f, p, r


def point_metrics(pred_pts: np.ndarray, pred_nrm: np.ndarray, gt_pts: np.ndarray, gt_nrm: np.ndarray,
                  tau: float = 0.01, tau_bbox: float | None = None) -> dict[str, float]:
    """All surface metrics between two oriented point sets (see the module docstring)."""
    d_pg, i_pg = nearest(pred_pts, gt_pts)
    d_gp, i_gp = nearest(gt_pts, pred_pts)
    f, p, r = fscore(d_pg, d_gp, tau)
    out = {
        "chamfer_l1": chamfer_l1(d_pg, d_gp),
        "chamfer_l2": chamfer_l2(d_pg, d_gp),
        "chamfer_l2_occnet": chamfer_l2_occnet(d_pg, d_gp),
        "accuracy": float(np.mean(d_pg)),
        "completeness": float(np.mean(d_gp)),
        "normal_consistency": normal_consistency(pred_nrm, gt_nrm, i_pg, i_gp),
        "fscore": f,
        "precision": p,
        "recall": r,
        "fscore_2tau": fscore(d_pg, d_gp, np.sqrt(2.0) * tau)[0],
    }
    if tau_bbox is not None:
        out["fscore_bbox"] = fscore(d_pg, d_gp, tau_bbox)[0]
    return out


# --------------------------------------------------------------------------- volumetric metrics
def evaluation_cube(gt_mesh: Any, padding: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """OccNet's box: centred on the GT bounding box, side ``(1 + padding) x`` its largest extent."""
    b = np.asarray(gt_mesh.bounds, dtype=np.float64)
    centre = 0.5 * (b[0] + b[1])
    half = 0.5 * (1.0 + padding) * float(np.max(b[1] - b[0]))
    return centre - half, centre + half


def iou_points(gt_mesh: Any, n: int = 100_000, seed: int = 0, padding: float = 0.1) -> np.ndarray:
    """The ``n`` uniform points of :func:`iou_uniform`: OccNet's cube around the ground truth."""
    lo, hi = evaluation_cube(gt_mesh, padding)
    return 0.5 * (lo + hi) + uniform_samples(n, 0.5 * float(hi[0] - lo[0]), np.random.default_rng(seed))


def iou_uniform(pred_mesh: Any, gt_mesh: Any, n: int = 100_000, seed: int = 0, padding: float = 0.1) -> float:
    """Volumetric IoU on ``n`` uniform samples in OccNet's cube around the ground truth."""
    pts = iou_points(gt_mesh, n, seed, padding)
    return occupancy_iou(inside_mesh(pred_mesh, pts), inside_mesh(gt_mesh, pts))


def voxel_centres(lo: np.ndarray, hi: np.ndarray, res: int) -> np.ndarray:
    """Cell centres of a ``res``^3 grid over the box, ``[res^3, 3]`` in (x, y, z) raster order."""
    axes = [lo[k] + (np.arange(res) + 0.5) * (hi[k] - lo[k]) / res for k in range(3)]
    return np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)


def iou_voxels(pred_mesh: Any, gt_mesh: Any, res: int = 64, padding: float = 0.1) -> float:
    """IM-NET's voxel IoU: cell-centre occupancy of both meshes on a ``res``^3 grid over the cube."""
    lo, hi = evaluation_cube(gt_mesh, padding)
    c = voxel_centres(lo, hi, res)
    return occupancy_iou(inside_mesh(pred_mesh, c), inside_mesh(gt_mesh, c))


# --------------------------------------------------------------------------- mesh-level entry point
def bbox_diagonal(mesh: Any) -> float:
    b = np.asarray(mesh.bounds, dtype=np.float64)
    return float(np.linalg.norm(b[1] - b[0]))


def frame_warning(pred_mesh: Any, gt_mesh: Any) -> str:
    """A message when the two meshes do not look like they share a frame (else ``""``).

    Mismatched frames (a prediction left in the normalised frame and a ground truth in the original
    one) show as very different scales or far-apart bounding boxes.
    """
    if len(pred_mesh.faces) == 0 or len(gt_mesh.faces) == 0:
        return ""
    return bounds_warning(np.asarray(pred_mesh.bounds), np.asarray(gt_mesh.bounds))


def bounds_warning(pred_bounds: np.ndarray, gt_bounds: np.ndarray) -> str:
    """:func:`frame_warning` of two bounding boxes (``[2, 3]``: lower and upper corner)."""
    pb, gb = np.asarray(pred_bounds, np.float64), np.asarray(gt_bounds, np.float64)
    dp, dg = float(np.linalg.norm(pb[1] - pb[0])), float(np.linalg.norm(gb[1] - gb[0]))
    cp, cg = pb.mean(axis=0), gb.mean(axis=0)
    ratio = dp / dg if dg > 0 else float("inf")
    shift = float(np.linalg.norm(cp - cg)) / dg if dg > 0 else float("inf")
    if not (1 / 3 <= ratio <= 3) or shift > 0.5:
        return (f"frames look mismatched: prediction bbox diagonal {dp:.4g} at {np.round(cp, 4).tolist()}, "
                f"ground truth {dg:.4g} at {np.round(cg, 4).tolist()} (was the prediction mapped back to the "
                f"original frame?)")
    return ""


def empty_prediction_metrics(gt_mesh: Any, cfg: MetricsConfig) -> dict[str, float]:
    """The defined score of an empty prediction (see the module docstring)."""
    return empty_metrics(bbox_diagonal(gt_mesh), cfg)


def empty_metrics(d: float, cfg: MetricsConfig) -> dict[str, float]:
    """The defined score of an empty prediction against a ground truth of bounding-box diagonal ``d``."""
    out = {
        "chamfer_l1": d, "chamfer_l2": 1000.0 * 2.0 * d * d, "chamfer_l2_occnet": d * d,
        "accuracy": d, "completeness": d, "normal_consistency": 0.0,
        "fscore": 0.0, "precision": 0.0, "recall": 0.0, "fscore_2tau": 0.0, "fscore_bbox": 0.0,
    }
    if cfg.compute_iou:
        out["iou"] = 0.0
    if cfg.compute_voxel_iou:
        out["iou_voxels"] = 0.0
    return out


def mesh_metrics(pred_mesh: Any, gt_mesh: Any, cfg: MetricsConfig = MetricsConfig()) -> dict[str, Any]:
    """All metrics of one prediction against its ground truth, plus ``status`` and ``message``.

    ``status`` is ``"ok"``, ``"empty-prediction"`` (defined penalty scores), or ``"invalid-gt"``
    (NaN metrics: a ground truth without area cannot be scored). Both meshes must be in the same
    frame; :func:`frame_warning` reports a likely mismatch in ``message``.
    """
    gt_pts, gt_nrm = area_weighted_samples(gt_mesh, cfg.n_samples, seed=cfg.seed)
    if len(gt_pts) == 0:
        nan = {k: float("nan") for k in METRICS}
        return {**nan, "status": "invalid-gt", "message": "ground truth has no surface area"}
    # the same random stream for both meshes (common random numbers): identical meshes get identical
    # samples, hence exactly CD 0 / F 100 / NC 1, and comparisons between methods vary less
    pred_pts, pred_nrm = area_weighted_samples(pred_mesh, cfg.n_samples, seed=cfg.seed)
    if len(pred_pts) == 0:
        return {**empty_prediction_metrics(gt_mesh, cfg), "status": "empty-prediction",
                "message": "prediction is empty (no faces or no area): scored as an empty surface"}
    out: dict[str, Any] = point_metrics(pred_pts, pred_nrm, gt_pts, gt_nrm, tau=cfg.tau,
                                        tau_bbox=cfg.tau_bbox_fraction * bbox_diagonal(gt_mesh))
    if cfg.compute_iou:
        out["iou"] = iou_uniform(pred_mesh, gt_mesh, cfg.iou_samples, seed=cfg.seed + 2, padding=cfg.iou_padding)
    if cfg.compute_voxel_iou:
        out["iou_voxels"] = iou_voxels(pred_mesh, gt_mesh, cfg.voxel_resolution, padding=cfg.iou_padding)
    out["status"] = "ok"
    out["message"] = frame_warning(pred_mesh, gt_mesh)
    return out


def array_metrics(pred_mesh: Any, gt_points: np.ndarray | None, gt_normals: np.ndarray | None,
                  iou_points: np.ndarray | None = None, iou_occupancies: np.ndarray | None = None,
                  cfg: MetricsConfig = MetricsConfig()) -> dict[str, Any]:
    """All metrics of one prediction against ground-truth *arrays* instead of a mesh, as OccNet's
    ``eval_meshes.py`` scores against its ``pointcloud.npz`` and ``points.npz``: the surface metrics
    (:func:`point_metrics`) of ``cfg.n_samples`` area-weighted samples of the prediction against
    ``gt_points``/``gt_normals``, and ``iou`` = :func:`~impax.geometry.voxels.occupancy_iou` of the
    prediction's inside test at ``iou_points`` against ``iou_occupancies`` (no ``iou_voxels``: the
    ground truth has no inside test at other points). Both must be in the prediction's frame.

    A missing array leaves its metrics NaN; ``fscore_bbox`` and the empty-prediction penalty use
    the bounding box of ``gt_points`` (else of the inside ``iou_points``). ``status`` and
    ``message`` as :func:`mesh_metrics`."""
    nan = {k: float("nan") for k in METRICS}
    has_surface = gt_points is not None and len(gt_points) > 0
    has_iou = iou_points is not None and iou_occupancies is not None and len(iou_points) > 0
    ref = gt_points if has_surface else (iou_points[np.asarray(iou_occupancies, bool)] if has_iou else None)
    if ref is None or len(ref) == 0:
        return {**nan, "status": "invalid-gt", "message": "ground truth has neither surface points nor an inside point"}
    gt_bounds = np.stack([np.min(ref, axis=0), np.max(ref, axis=0)]).astype(np.float64)
    diag = float(np.linalg.norm(gt_bounds[1] - gt_bounds[0]))
    pred_pts, pred_nrm = area_weighted_samples(pred_mesh, cfg.n_samples, seed=cfg.seed)
    if len(pred_pts) == 0:
        out = {**nan, **empty_metrics(diag, dataclasses.replace(cfg, compute_voxel_iou=False))}
        if not (cfg.compute_iou and has_iou):
            out["iou"] = float("nan")
        if not has_surface:
            out.update({k: float("nan") for k in METRICS if k != "iou"})
        return {**out, "status": "empty-prediction",
                "message": "prediction is empty (no faces or no area): scored as an empty surface"}
    out: dict[str, Any] = dict(nan)
    if has_surface:
        out.update(point_metrics(pred_pts, pred_nrm, gt_points, gt_normals if gt_normals is not None
                                 else np.zeros_like(gt_points), tau=cfg.tau, tau_bbox=cfg.tau_bbox_fraction * diag))
        if gt_normals is None:
            out["normal_consistency"] = float("nan")
    if cfg.compute_iou and has_iou:
        out["iou"] = occupancy_iou(inside_mesh(pred_mesh, iou_points), iou_occupancies)
    out["status"] = "ok"
    out["message"] = bounds_warning(np.asarray(pred_mesh.bounds), gt_bounds)
    return out
