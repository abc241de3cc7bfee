"""Scoring frames (``impax evaluate --frame``): closed-form spheres at two scales."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import trimesh

from impax.cli import main
from impax.evaluation.metrics import MetricsConfig
from impax.evaluation.runner import Pair, evaluate_pair
from impax.geometry.mesh_io import save_mesh

CFG = MetricsConfig(n_samples=20_000, iou_samples=20_000, voxel_resolution=16)
R_GT, R_PRED = 0.5, 0.52  # concentric spheres: Chamfer ~ |R_PRED - R_GT| in the frame's units


def _pair(tmp_path, scale: float) -> Pair:
    d = tmp_path / f"s{scale:g}"
    gt = save_mesh(trimesh.creation.icosphere(5, radius=R_GT * scale), d / "gt.ply")
    pred = save_mesh(trimesh.creation.icosphere(5, radius=R_PRED * scale), d / "pred.ply")
    return Pair("ball", "all", pred, gt)


def _frame_radius(frame: str) -> float:
    """The ground-truth sphere's radius in ``frame`` (closed form)."""
    return {"gt-unit": 1 / (2 * math.sqrt(3)),      # bounding-box diagonal 2 r sqrt(3) -> 1
            "occnet": 0.5,                         # largest extent 2 r -> 1
            "gaps": 0.25 * math.sqrt(3),           # surface covariance r^2/3 I -> 0.25 / sqrt(r^2/3) scale
            "original": R_GT}[frame]


@pytest.mark.parametrize("frame", ["gt-unit", "occnet", "gaps"])
def test_scale_free_frames_give_the_same_numbers_at_scale_1_and_100(tmp_path, frame):
    a = evaluate_pair(_pair(tmp_path, 1.0), CFG, frame)
    b = evaluate_pair(_pair(tmp_path, 100.0), CFG, frame)
    assert a["status"] == b["status"] == "ok" and a["frame"] == frame
    for k in ("chamfer_l1", "chamfer_l2", "fscore", "fscore_2tau", "fscore_bbox", "normal_consistency", "iou"):
        assert a[k] == pytest.approx(b[k], rel=1e-4, abs=1e-6), (k, a[k], b[k])
    # Chamfer-L1 is the radial gap of the two spheres in the frame's units
    gap = _frame_radius(frame) * (R_PRED / R_GT - 1)
    assert a["chamfer_l1"] == pytest.approx(gap, rel=0.05), (a["chamfer_l1"], gap)
    assert a["iou"] == pytest.approx((R_GT / R_PRED) ** 3, abs=0.02)   # volume ratio of nested balls
    assert a["gt_closed"] == 1 and b["gt_diagonal"] == pytest.approx(100 * a["gt_diagonal"])


def test_original_frame_keeps_units_and_the_command_warns_about_mixed_scales(tmp_path, capsys):
    a = evaluate_pair(_pair(tmp_path, 1.0), CFG, "original")
    b = evaluate_pair(_pair(tmp_path, 100.0), CFG, "original")
    assert b["chamfer_l1"] == pytest.approx(100 * a["chamfer_l1"], rel=1e-4)
    assert a["chamfer_l1"] == pytest.approx(R_PRED - R_GT, rel=0.05)
    assert b["fscore"] == 0.0 and a["fscore_bbox"] == pytest.approx(b["fscore_bbox"], abs=1e-6)
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    for s in (1.0, 100.0):
        save_mesh(trimesh.creation.icosphere(4, radius=R_GT * s), gt / f"b{s:g}.ply")
        save_mesh(trimesh.creation.icosphere(4, radius=R_PRED * s), pred / f"b{s:g}.ply")
    fast = ["--samples", "3000", "--iou-samples", "4000", "--voxel-res", "16", "--quiet"]
    assert main(["evaluate", str(pred), str(gt), "--out", str(tmp_path / "o"), "--frame", "original", *fast]) == 0
    err = capsys.readouterr().err
    assert "sizes differ by 100x" in err and "--frame gt-unit" in err
    assert main(["evaluate", str(pred), str(gt), "--out", str(tmp_path / "u"), *fast]) == 0
    assert "sizes differ" not in capsys.readouterr().err
    rows = list(csv.DictReader((tmp_path / "u" / "per_shape.csv").open()))
    assert [r["frame"] for r in rows] == ["gt-unit", "gt-unit"]
    assert float(rows[0]["chamfer_l1"]) == pytest.approx(float(rows[1]["chamfer_l1"]), rel=1e-4)
    assert (tmp_path / "u" / "summary.md").read_text().startswith("Frame: gt-unit")
    assert json.loads((tmp_path / "u" / "summary.json").read_text())["summary"]["frame"] == "gt-unit"


def test_open_ground_truth_is_marked(tmp_path):
    ball = trimesh.creation.icosphere(3, radius=0.5)
    open_ball = trimesh.Trimesh(ball.vertices, ball.faces[ball.vertices[ball.faces].mean(1)[:, 2] < 0.4])
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    save_mesh(open_ball, gt / "a.ply")
    save_mesh(ball, gt / "b.ply")
    save_mesh(ball, pred / "a.ply")
    save_mesh(ball, pred / "b.ply")
    fast = ["--samples", "2000", "--iou-samples", "4000", "--voxel-res", "16", "--quiet"]
    assert main(["evaluate", str(pred), str(gt), "--out", str(tmp_path / "o"), *fast]) == 0
    rows = {r["id"]: r for r in csv.DictReader((tmp_path / "o" / "per_shape.csv").open())}
    assert (rows["a"]["gt_closed"], rows["b"]["gt_closed"]) == ("0", "1")
    assert "1 of 2 ground truths are open" in (tmp_path / "o" / "summary.md").read_text()


def test_unknown_frame_is_refused(tmp_path):
    r = evaluate_pair(_pair(tmp_path, 1.0), CFG, "nope")
    assert r["status"] == "invalid-gt" and "unknown frame" in r["message"] and np.isnan(r["chamfer_l1"])
