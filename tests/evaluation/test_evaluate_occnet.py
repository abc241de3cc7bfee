"""``impax evaluate PRED --occnet ROOT``: predictions scored against OccNet's ``points.npz`` /
``pointcloud.npz`` (as OccNet's ``eval_meshes.py``), on the sphere/box dataset of
``tests/data/_occnet_data.py`` whose shapes are known exactly."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from impax.cli import main
from impax.geometry.mesh_io import save_mesh

sys.path.insert(0, str(Path(__file__).parents[1] / "data"))
from _occnet_data import SHAPES, SPLITS, write_dataset  # noqa: E402

FAST = ["--samples", "20000", "--quiet"]
TEST = [(c, m) for c, lists in SPLITS.items() for m in lists["test"]]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """(root, base folder) with predictions: ``exact`` (the true shapes, original frame, named
    <class>/<model>), ``small`` (shrunk by 0.8, named <class>_<model> as impax test names store
    shapes) and ``occ`` (the true shapes in OccNet's frame, named <model>)."""
    base = tmp_path_factory.mktemp("occnet-eval")
    root = write_dataset(base / "ShapeNet")
    for cls, model in TEST:
        shape = SHAPES[cls][model]
        save_mesh(shape.mesh(), base / "exact" / cls / f"{model}.ply")
        save_mesh(shape.mesh(0.8), base / "small" / f"{cls}_{model}.obj")
        occ = shape.mesh().apply_translation(-shape.loc).apply_scale(1 / shape.scale)
        save_mesh(occ, base / "occ" / f"{model}.off")
    return root, base


def _run(pred: Path, root: Path, *extra: str) -> tuple[int, dict]:
    rc = main(["evaluate", str(pred), "--occnet", str(root), "--out", str(pred / "eval"), *FAST, *extra])
    path = pred / "eval" / "summary.json"
    return rc, (json.loads(path.read_text()) if path.is_file() else {})


def test_exact_shapes_score_perfectly_and_shrunken_ones_worse(data):
    root, base = data
    rc, res = _run(base / "exact", root)
    assert rc == 0
    assert res["summary"]["frame"] == "occnet" and res["summary"]["count"] == 2
    assert "iou_voxels" not in res["summary"]["shape_mean"]  # no inside test of the ground truth on a grid
    exact = {r["id"]: r for r in res["shapes"]}
    assert set(exact) == {f"{c}/{m}" for c, m in TEST}
    for r in exact.values():
        assert r["status"] == "ok" and not r["message"]
        assert r["iou"] > 0.98, r  # the icosphere is inscribed in the true sphere
        # Chamfer-L1 is limited by the 10k ground-truth points (~0.02 apart in the unit cube)
        assert r["chamfer_l1"] < 0.012 and r["normal_consistency"] > 0.97 and r["fscore_2tau"] > 80, r
    rc, res = _run(base / "small", root)
    assert rc == 0
    for r in res["shapes"]:
        e = exact[r["id"]]
        assert r["iou"] < 0.6 < e["iou"] and r["chamfer_l1"] > 0.04 > e["chamfer_l1"], (r, e)
        assert r["fscore"] < e["fscore"]


def test_frames_of_the_prediction_and_of_the_scores(data):
    root, base = data
    _, exact = _run(base / "exact", root)
    _, occ = _run(base / "occ", root, "--pred-frame", "occnet")
    _, orig = _run(base / "exact", root, "--frame", "original")
    by = {r["id"]: r for r in exact["shapes"]}
    for r in occ["shapes"]:  # the same meshes given in OccNet's frame: the same scores
        assert r["status"] == "ok"
        for k in ("iou", "chamfer_l1", "normal_consistency", "fscore"):
            assert r[k] == pytest.approx(by[r["id"]][k], rel=1e-3, abs=1e-4), k
    assert orig["summary"]["frame"] == "original"
    for r in orig["shapes"]:  # IoU does not depend on the frame; distances scale with OccNet's scale
        cls, model = r["id"].split("/")
        shape = SHAPES[cls][model]
        assert r["iou"] == pytest.approx(by[r["id"]]["iou"], abs=1e-6)
        assert r["chamfer_l1"] == pytest.approx(by[r["id"]]["chamfer_l1"] * shape.scale, rel=1e-3)
        for rec in (r, by[r["id"]]):  # in the ground truth's own units, whatever the scoring frame
            assert rec["gt_diagonal"] == pytest.approx(np.linalg.norm(shape.hi - shape.lo), rel=0.02)


def test_missing_predictions_broken_ground_truth_and_bad_arguments(data, tmp_path, capsys):
    root, base = data
    pred = tmp_path / "pred"
    shape = SHAPES["02691156"]["sph_t"]
    save_mesh(shape.mesh(), pred / "02691156" / "sph_t.ply")
    rc, res = _run(pred, root, "--split", "all")
    assert rc == 3
    status = {r["id"]: r["status"] for r in res["shapes"]}
    assert status["02691156/sph_t"] == "ok" and status["03001627/box_t"] == "missing"
    assert status["02691156/broken"] == "invalid-gt"  # its points.npz is corrupt
    assert len(status) == sum(len(m) for m in SHAPES.values()) + 1
    capsys.readouterr()
    for args in (["--frame", "gaps"], ["--generation"]):
        assert main(["evaluate", str(pred), "--occnet", str(root), *args]) == 1
        err = capsys.readouterr().err.strip()
        assert "--occnet" in err and "\n" not in err, err
    assert main(["evaluate", str(pred), str(root), "--occnet", str(root)]) == 1
    assert "not both" in capsys.readouterr().err
