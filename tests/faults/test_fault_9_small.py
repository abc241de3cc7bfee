"""Issue 15, item 9: SIGTERM'd training exits 143 with a checkpoint; symlinked sub-folders are
followed; two files mapping to one shape id both get prepared; ``evaluate --samples 0`` is refused;
a prediction without ground truth is named; a resume is "partial" only when inputs failed."""

from __future__ import annotations

import json
import os
import shutil
import signal

import pytest
import trimesh
from faults.faultlib import GAN, QUICK, impax, one_line_error, report, start, wait_for, write_meshes

from impax.data.store import ShapeStore


@pytest.mark.slow
def test_sigterm_stops_training_with_143_and_a_checkpoint(tmp_path, codes):
    run = tmp_path / "run"
    proc = start("train", "imnet-gan", "--data", codes, "--out", run, *GAN, "--max-steps", "100000")
    wait_for(lambda: (run / "metrics.jsonl").is_file() or proc.poll() is not None, what="training to start")
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 143, stderr
    summary = json.loads(stdout)
    assert summary["stopped"] == "signal" and "stopped by SIGTERM" in stderr and "Traceback" not in stderr
    step = summary["global_step"]
    assert str(step) in os.listdir(run / "checkpoints")  # saved where it stopped
    res = impax("train", "imnet-gan", "--data", codes, "--out", run, *GAN, "--max-steps", str(step + 5))
    assert res.returncode == 0 and json.loads(res.stdout)["global_step"] == step + 5


def test_symlinked_sub_folders_are_followed(tmp_path):
    elsewhere, src = tmp_path / "elsewhere", tmp_path / "src"
    write_meshes(elsewhere, 2)
    src.mkdir()
    os.symlink(elsewhere / "box", src / "box")  # a class folder that is a link
    os.symlink(elsewhere / "ball", src / "ball")
    os.symlink(src, src / "ball" / "loop")  # a loop is walked once, not forever
    res = impax("prepare", src, tmp_path / "out", *QUICK, "--workers", "1")
    assert res.returncode == 0, res.stderr
    assert ShapeStore(tmp_path / "out").ids() == ["ball_m01", "box_m00"]


def test_two_files_with_one_shape_id_are_both_prepared(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    trimesh.creation.box().export(src / "a b.ply")
    trimesh.creation.icosphere(2).export(src / "a-b.ply")
    trimesh.creation.box(extents=(1, 2, 3)).export(src / "c.ply")
    res = impax("prepare", src, tmp_path / "out", *QUICK, "--workers", "1")
    assert res.returncode == 0, res.stderr
    store = ShapeStore(tmp_path / "out")
    ids = store.ids()
    assert len(ids) == 3 and "c" in ids and all(i.startswith("a-b-") for i in ids if i != "c")
    assert sorted(store.attrs(i)["source"] for i in ids) == ["a b.ply", "a-b.ply", "c.ply"]


def test_evaluate_samples_zero_is_refused(tmp_path, mesh_src):
    line = one_line_error(impax("evaluate", mesh_src, mesh_src, "--samples", "0", "--out", tmp_path / "e"))
    assert "--samples must be >= 1" in line and not (tmp_path / "e").exists()


def test_prediction_without_ground_truth_is_named(tmp_path):
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    gt.mkdir()
    pred.mkdir()
    trimesh.creation.box().export(gt / "a.ply")
    trimesh.creation.box().export(pred / "a.ply")
    trimesh.creation.icosphere(1).export(pred / "stray.ply")
    res = impax("evaluate", pred, gt, "--samples", "2000", "--iou-samples", "2000", "--voxel-res", "16",
                "--out", tmp_path / "e", "--quiet")
    assert res.returncode == 0, res.stderr
    assert "warning: 1 prediction(s) have no ground truth" in res.stderr and str(pred / "stray.ply") in res.stderr


def test_resume_is_partial_only_when_inputs_failed(tmp_path, mesh_src):
    out = tmp_path / "out"
    first = impax("prepare", mesh_src, out, *QUICK, "--workers", "1")
    assert first.returncode == 0, first.stderr
    again = impax("prepare", mesh_src, out, *QUICK, "--workers", "1")
    assert again.returncode == 0 and "0 prepared now, 4 already present" in again.stdout
    src = tmp_path / "src"
    shutil.copytree(mesh_src, src)
    (src / "box" / "broken.obj").write_text("v 0 0 0\nf 1 1 1\n")
    out2 = tmp_path / "out2"
    assert impax("prepare", src, out2, *QUICK, "--workers", "1").returncode == 3
    assert impax("prepare", src, out2, *QUICK, "--workers", "1").returncode == 3  # failed before, still there
    (src / "box" / "broken.obj").unlink()
    final = impax("prepare", src, out2, *QUICK, "--workers", "1")
    assert final.returncode == 0, final.stdout
    assert report(out2)["failed"] == [] and not (out2 / "failed" / "box_broken.json").exists()
