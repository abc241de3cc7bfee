"""IM-NET inference: load_ae, reconstruct (mesh, voxels), interpolate, and frame mapping.

The run is built by hand: a tiny IM-AE whose decoder is a smooth random field (scaled init, final
bias set so the 0.5 level crosses the box) saved as a checkpoint with a run.json. References:
the decoder itself evaluated at the output vertices (they must sit on its 0.5 level set once
mapped into the IM-NET frame with the input's own transform), and similarity-related inputs,
whose outputs must be related by the same similarity.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import trimesh
from flax import nnx

from impax.configs import override, to_dict
from impax.conventions import Transform, imnet_grid_centres
from impax.geometry.mesh_io import load_mesh
from impax.geometry.normalize import imnet_transform
from impax.inference import imnet as I
from impax.train import named_leaves
from impax.train.checkpoint import CheckpointStore, to_host
from impax.train.recipes import imnet as R

CFG = override(R.CPU, {"model.ef_dim": 4, "model.gf_dim": 4, "model.z_dim": 16})


def _box(centre, extents) -> trimesh.Trimesh:
    m = trimesh.creation.box(extents=extents)
    m.apply_translation(centre)
    return m


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("imnet_inf")
    # meshes in arbitrary original frames
    a = _box((3.0, -2.0, 1.0), (6.0, 4.0, 3.0))
    a.export(root / "a.ply")
    b = a.copy()
    b.apply_scale(0.25)
    b.apply_translation((-1.0, 0.5, 2.0))  # b = 0.25 a + t
    b.export(root / "b.obj")
    sphere = trimesh.creation.icosphere(subdivisions=3, radius=2.0)
    sphere.apply_translation((10.0, 0.0, 0.0))
    (root / "garbage.ply").write_bytes(b"\x00\x01 not a mesh")

    # a prepared-like store with the sphere and the box (voxels + stored transforms)
    from impax.data.store import ShapeStore

    store = ShapeStore(root / "data")
    for sid, mesh in (("sphere_0", sphere), ("box_0", a)):
        path = root / f"{sid}.ply"
        mesh.export(path)
        vox, t = I.mesh_to_voxels(path)
        store.write(sid, {"voxels": vox}, {"split": "train", "class": sid[:-2], "imnet_transform": t})
    store.build_index()

    # the model: smooth random decoder whose 0.5 level crosses the box for the box's code
    model = R.build_model(CFG, 0)  # with the scaled decoder init of the cpu preset
    vox_a, _ = I.mesh_to_voxels(root / "a.ply")
    z = np.asarray(model.encoder(vox_a[None].astype(np.float32)))
    pts = imnet_grid_centres(32).reshape(1, -1, 3).astype(np.float32)
    vals = np.asarray(model.generator(pts, z))
    last = model.generator.layers[-1]
    last.bias[...] = last.bias[...] + (0.5 - float(np.median(vals)))

    run = root / "run"
    store_ck = CheckpointStore(run, keep=None, async_save=False)
    store_ck.save(1, to_host(named_leaves(nnx.state(model))), {"unused": np.zeros(1, np.float32)},
                  {"position": {"stage": 0, "epoch": 0, "step": 0, "global_step": 1}})
    store_ck.close()
    (run / "run.json").write_text(json.dumps({"recipe": "imnet-ae", "config": to_dict(CFG),
                                              "data": str(root / "data"), "seed": 0}))
    return root, run, model, store


def _decoder_at(model, z, pts) -> np.ndarray:
    return np.asarray(model.generator(np.asarray(pts, np.float32)[None], np.asarray(z, np.float32)[None]))[0]


def _code(model, vox) -> np.ndarray:
    return np.asarray(model.encoder(np.asarray(vox, np.float32)[None]))[0]


def test_load_ae_restores_the_checkpoint(setup):
    _, run, model, _ = setup
    loaded, info = I.load_ae(run)
    assert loaded.cfg == CFG.model and info["recipe"] == "imnet-ae"
    want = named_leaves(nnx.state(model, nnx.Param))
    got = named_leaves(nnx.state(loaded, nnx.Param))
    assert want.keys() == got.keys()
    for k in want:
        np.testing.assert_array_equal(np.asarray(got[k]), np.asarray(want[k]), err_msg=k)


def test_reconstruct_mesh_maps_back_to_the_original_frame(setup, capsys):
    from impax.cli import main

    root, run, model, _ = setup
    out = root / "rec_mesh"
    status = main(["reconstruct", str(run), "--input", "mesh", str(root / "a.ply"), str(root / "garbage.ply"),
                   str(root / "b.obj"), "--out", str(out), "--resolution", "64"])
    captured = capsys.readouterr()
    rows = json.loads(captured.out)
    assert status == 3  # partial success: the garbage file failed, the batch went on
    assert [r["id"] for r in rows] == ["a", "garbage", "b"]
    assert [r["ok"] for r in rows] == [True, False, True]
    assert rows[1]["reason"] and rows[1]["path"] is None
    # the failure is named on stderr (one line: the file and why) and listed in failed.txt/report.json
    garbage = str(root / "garbage.ply")
    lines = [ln for ln in captured.err.splitlines() if ln.startswith("impax reconstruct: failed ")]
    assert lines == [f"impax reconstruct: failed {garbage}: {rows[1]['reason']}"]
    assert "2 of 3 inputs reconstructed, 1 failed" in captured.err
    assert (out / "failed.txt").read_text() == f"{garbage}: {rows[1]['reason']}\n"
    rep = json.loads((out / "report.json").read_text())
    assert (rep["status"], rep["exit_code"], rep["total"], rep["reconstructed"]) == ("partial", 3, 3, 2)
    assert rep["failed"] == [{"id": "garbage", "input": garbage, "reason": rows[1]["reason"]}]
    assert [r["ok"] for r in rep["outputs"]] == [True, False, True]
    assert all(r["queries"] > 0 and r["seconds"] >= 0 for r in (rows[0], rows[2]))

    src_a = load_mesh(root / "a.ply")
    t_a = imnet_transform(src_a)
    rec_a = trimesh.load(rows[0]["path"], process=False)
    # in the original frame: inside the input's bounding cube (IM-NET box mapped back)
    lo, hi = t_a.inverse().apply(np.array([[-0.5] * 3, [0.5] * 3]))
    assert np.all(rec_a.vertices >= lo - 1e-6) and np.all(rec_a.vertices <= hi + 1e-6)
    assert np.ptp(rec_a.vertices, axis=0).max() > 1.0  # original-frame scale (the box is 6 long), not IM-NET's
    # mapped into the IM-NET frame, the vertices lie on the decoder's 0.5 level set
    z = _code(model, I.mesh_to_voxels(root / "a.ply")[0])
    vals = _decoder_at(model, z, t_a.apply(np.asarray(rec_a.vertices)))
    field = _decoder_at(model, z, imnet_grid_centres(16).reshape(-1, 3))
    assert np.abs(vals - 0.5).max() < 0.02 * (field.max() - field.min())
    # b = 0.25 a + t: same voxels and code, so rec_b = 0.25 rec_a + t vertex for vertex
    rec_b = trimesh.load(rows[2]["path"], process=False)
    assert rec_b.vertices.shape == rec_a.vertices.shape
    np.testing.assert_allclose(rec_b.vertices, 0.25 * rec_a.vertices + np.array([-1.0, 0.5, 2.0]), atol=1e-4)


def test_reconstruct_exit_status_all_or_nothing(setup, tmp_path, capsys):
    from impax.cli import main

    root, run, _, _ = setup
    out = tmp_path / "none"
    missing = tmp_path / "missing.ply"
    status = main(["reconstruct", str(run), "--input", "mesh", str(root / "garbage.ply"), str(missing),
                   "--out", str(out), "--resolution", "16"])
    err = capsys.readouterr().err
    assert status == 1  # nothing reconstructed
    assert f"impax reconstruct: failed {missing}: " in err and "does not exist" in err
    assert len((out / "failed.txt").read_text().splitlines()) == 2
    assert json.loads((out / "report.json").read_text())["status"] == "failed"
    status = main(["reconstruct", str(run), "--input", "mesh", str(root / "a.ply"), "--out", str(out),
                   "--resolution", "16"])
    err = capsys.readouterr().err
    assert status == 0 and "failed" not in err
    assert (out / "failed.txt").read_text() == ""  # rewritten by the new run
    assert json.loads((out / "report.json").read_text())["status"] == "complete"


def test_reconstruct_voxels_from_a_store_uses_the_stored_transform(setup, tmp_path):
    root, run, model, store = setup
    rows = I.reconstruct(run, "voxels", [root / "data", "split=train", "box_0", "missing"], tmp_path, resolution=64)
    assert [(r["id"], r["ok"]) for r in rows] == [("box_0", True), ("missing", False)]
    assert "missing" in rows[1]["reason"]
    t = store.attrs("box_0")["imnet_transform"]
    t = t if isinstance(t, Transform) else Transform.from_dict(t)
    assert rows[0]["frame"] == "original"
    rec = trimesh.load(rows[0]["path"], process=False)
    z = _code(model, store.read("box_0", "voxels"))
    field = _decoder_at(model, z, imnet_grid_centres(16).reshape(-1, 3))
    vals = _decoder_at(model, z, t.apply(np.asarray(rec.vertices)))
    assert np.abs(vals - 0.5).max() < 0.02 * (field.max() - field.min())
    every = I.reconstruct(run, "voxels", [root / "data"], tmp_path / "all", resolution=32)
    assert sorted(r["id"] for r in every) == ["box_0", "sphere_0"]
    assert I.reconstruct(run, "depth", ["x"], tmp_path)[0]["ok"] is False


def test_interpolate_writes_k_meshes_from_a_to_b(setup, tmp_path):
    root, run, model, store = setup
    rows = I.interpolate(run, str(root / "a.ply"), "sphere_0", 3, tmp_path, resolution=64)
    assert [r["id"] for r in rows] == ["step_000", "step_001", "step_002"]
    assert [Path(r["path"]).name for r in rows] == ["step_000.ply", "step_001.ply", "step_002.ply"]
    assert [r["t"] for r in rows] == [0.0, 0.5, 1.0]
    za = _code(model, I.mesh_to_voxels(root / "a.ply")[0])
    zb = _code(model, store.read("sphere_0", "voxels"))
    for r, z in zip(rows, (za, 0.5 * (za + zb), zb)):
        m = trimesh.load(r["path"], process=False)
        if len(m.faces) == 0:
            continue
        assert np.all(np.abs(m.vertices) <= 0.5 + 1e-6)  # IM-NET frame
        field = _decoder_at(model, z, imnet_grid_centres(16).reshape(-1, 3))
        vals = _decoder_at(model, z, m.vertices)
        assert np.abs(vals - 0.5).max() < 0.02 * (field.max() - field.min())
    assert rows[0]["ok"]
    # step 0 is a's reconstruction, seen in the IM-NET frame
    rec = I.reconstruct(run, "mesh", [root / "a.ply"], tmp_path / "rec", resolution=64)[0]
    rec_a = trimesh.load(rec["path"], process=False)
    s0 = trimesh.load(rows[0]["path"], process=False)
    np.testing.assert_allclose(imnet_transform(load_mesh(root / "a.ply")).apply(np.asarray(rec_a.vertices)),
                               s0.vertices, atol=1e-5)


def test_impax_test_reconstructs_a_split_and_scores_it_like_evaluate(setup, tmp_path, capsys):
    """``impax test``: every shape of the split reconstructed from its stored voxels, scored against
    ``--meshes/<source>`` in the gt-unit frame; the numbers equal ``impax evaluate`` on the same files."""
    import csv

    from impax.cli import main
    from impax.data.store import ShapeStore

    root, run, _, _ = setup
    store = ShapeStore(tmp_path / "data")
    for sid in ("sphere_0", "box_0"):
        vox, t = I.mesh_to_voxels(root / f"{sid}.ply")
        store.write(sid, {"voxels": vox}, {"split": "test", "class": sid[:-2], "imnet_transform": t,
                                           "source": f"{sid}.ply"})
    store.build_index()
    fast = ["--samples", "3000", "--iou-samples", "4000"]
    out = tmp_path / "t"
    rc = main(["test", str(run), "--data", str(tmp_path / "data"), "--meshes", str(root), "--out", str(out),
               "--resolution", "32", *fast])
    err = capsys.readouterr().err
    assert rc == 0, err
    assert "[2/2]" in err and "ETA" in err
    rows = {r["id"]: r for r in csv.DictReader((out / "per_shape.csv").open())}
    assert set(rows) == {"sphere_0", "box_0"} and all(r["frame"] == "gt-unit" for r in rows.values())
    assert (out / "summary.md").read_text().startswith("# run on test of data")
    ev = tmp_path / "ev"
    for sid in ("sphere_0", "box_0"):
        assert main(["evaluate", str(out / "meshes" / f"{sid}.ply"), str(root / f"{sid}.ply"), "--out",
                     str(ev / sid), "--quiet", *fast]) == 0
        want = next(csv.DictReader((ev / sid / "per_shape.csv").open()))
        for k in ("chamfer_l1", "fscore", "iou"):
            assert float(rows[sid][k]) == pytest.approx(float(want[k]), rel=1e-6), (sid, k)
