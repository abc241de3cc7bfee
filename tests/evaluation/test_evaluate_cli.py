"""``impax evaluate`` on folders with good, empty, missing and broken predictions."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import trimesh

from impax.cli import main
from impax.geometry.mesh_io import save_mesh as write_mesh

FAST = ["--samples", "3000", "--iou-samples", "8000", "--voxel-res", "16", "--quiet"]


@pytest.fixture
def folders(tmp_path):
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    shapes = {"ball/s1": trimesh.creation.icosphere(3, radius=0.4),
              "ball/s2": trimesh.creation.icosphere(3, radius=0.3),
              "cube/c1": trimesh.creation.box(extents=(0.6, 0.6, 0.6)),
              "cube/c2": trimesh.creation.box(extents=(0.5, 0.7, 0.4)),
              "cube/c3": trimesh.creation.box(extents=(0.5, 0.5, 0.5))}
    for k, m in shapes.items():
        write_mesh(m, gt / f"{k}.ply")
    write_mesh(shapes["ball/s1"], pred / "ball/s1.obj")  # identical, other format
    shifted = shapes["cube/c1"].copy()
    shifted.apply_translation([0.05, 0, 0])
    write_mesh(shifted, pred / "cube/c1.ply")
    write_mesh(trimesh.Trimesh(), pred / "cube/c2.ply")  # empty prediction
    (pred / "cube").mkdir(parents=True, exist_ok=True)
    (pred / "cube/c3.ply").write_text("not a mesh")  # unreadable
    # ball/s2 is missing
    return pred, gt, tmp_path / "out"


def test_folder_evaluation_never_stops_and_reports(folders):
    pred, gt, out = folders
    rc = main(["evaluate", str(pred), str(gt), "--out", str(out), *FAST])
    assert rc == 3  # partial: some predictions empty / missing / unreadable
    rows = {r["id"]: r for r in csv.DictReader((out / "per_shape.csv").open())}
    assert set(rows) == {"ball/s1", "ball/s2", "cube/c1", "cube/c2", "cube/c3"}
    assert rows["ball/s1"]["status"] == "ok" and float(rows["ball/s1"]["fscore"]) == 100.0
    assert float(rows["ball/s1"]["chamfer_l1"]) < 1e-6  # .obj stores ~8 significant digits
    assert rows["ball/s2"]["status"] == "missing" and float(rows["ball/s2"]["fscore"]) == 0.0
    assert rows["cube/c2"]["status"] == "empty-prediction" and float(rows["cube/c2"]["iou"]) == 0.0
    assert rows["cube/c3"]["status"] == "unreadable-prediction" and "cannot read" in rows["cube/c3"]["message"]
    assert rows["cube/c1"]["status"] == "ok" and 0.5 < float(rows["cube/c1"]["iou"]) < 1.0
    summary = json.loads((out / "summary.json").read_text())["summary"]
    assert summary["classes"]["ball"]["count"] == 2
    f_ball = np.mean([100.0, 0.0])
    assert summary["classes"]["ball"]["fscore"] == pytest.approx(f_ball)
    f_all = [float(r["fscore"]) for r in rows.values()]
    assert summary["shape_mean"]["fscore"] == pytest.approx(np.mean(f_all), rel=1e-5)
    assert summary["class_mean"]["fscore"] == pytest.approx(
        np.mean([f_ball, np.mean([float(rows[k]["fscore"]) for k in ("cube/c1", "cube/c2", "cube/c3")])]), rel=1e-5)
    md = (out / "summary.md").read_text()
    assert summary["empty"] == 3
    assert "| ball | 2 |" in md and "class mean" in md and "shape mean" in md


def test_single_pair_ok_and_deterministic(folders, tmp_path):
    pred, gt, _ = folders
    outs = []
    for k in range(2):
        o = tmp_path / f"o{k}"
        assert main(["evaluate", str(pred / "cube/c1.ply"), str(gt / "cube/c1.ply"), "--out", str(o), *FAST]) == 0
        outs.append((o / "per_shape.csv").read_text())
    assert outs[0] == outs[1]


def test_bad_paths_fail_cleanly(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path / "nope"), str(tmp_path / "nope_gt"), *FAST]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_generation_mode(folders, tmp_path):
    _, gt, _ = folders
    o = tmp_path / "gen"
    rc = main(["evaluate", str(gt), str(gt), "--generation", "--gen-points", "256", "--out", str(o), "--quiet",
               "--frame", "original"])
    assert rc == 0
    res = json.loads((o / "generation.json").read_text())["generation"]
    assert res["coverage"] == 1.0 and res["mmd"] < 0.01
    # scale-free (the default): the two balls become one shape, and so do the cubes c1 and c3, so
    # matching the set against itself covers 3 of 5 (each sample's nearest is the first of its twins)
    rc = main(["evaluate", str(gt), str(gt), "--generation", "--gen-points", "256", "--out", str(o), "--quiet"])
    res = json.loads((o / "generation.json").read_text())
    assert rc == 0 and res["frame"] == "gt-unit" and res["generation"]["coverage"] == pytest.approx(0.6)
