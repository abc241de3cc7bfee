"""LDIF inference on a tiny trained run: reconstruct from depth/mesh/points writes meshes (original
frame), SIF v1 files and transforms; `impax mesh` on a written SIF file with the run's
extracted.occnet gives the same mesh; bad inputs become failed rows.

Precision: the tolerances here assume exact float32, i.e. the CPU backend tests/conftest.py pins; on a
GPU run with JAX_DEFAULT_MATMUL_PRECISION=highest (TF32 otherwise; docs/gpu.md).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import trimesh

from impax.conventions import Transform
from impax.data.pipeline import PrepareConfig
from impax.data.prepare import prepare
from impax.data.store import ShapeStore
from impax.geometry.shapes import generate

TINY = {"model.element_count": 4, "model.symmetric_count": 2, "model.latent_size": 8, "model.decoder_width": 8,
        "model.image_size": 24, "model.fc_width": 16, "model.simple_cnn_features": 16,
        "model.local_point_count": 16, "model.pointnet_maxpool_features": 16, "model.batch_size": 1,
        "model.sample_count": 64, "surface_points": 128, "epochs": 2, "train.log_every_steps": 1,
        "train.async_checkpointing": False}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, Path]:
    """3 built-in shapes prepared tiny (depth 24^2), and a tiny LDIF run trained for 4 steps."""
    from impax.train.recipes.ldif import train

    root = tmp_path_factory.mktemp("ldif_inf")
    generate(root / "shapes", 3, seed=0)
    (root / "train.lst").write_text("box_000\nsphere_000\n")
    (root / "test.lst").write_text("torus_000\n")
    cfg = PrepareConfig.quick(imnet=False, views=False, occupancy=False, n_uniform=512, n_near=512, n_surface=512,
                              sdf_grid_res=8, depth_size=24)
    res = prepare(root / "shapes", root / "data", cfg, workers=1, progress=False,
                  split_lists={"train": root / "train.lst", "test": root / "test.lst"})
    assert res.status == 0
    train("ldif", root / "data", root / "run", "cpu", TINY, progress=False)
    return {"root": root, "data": root / "data", "run": root / "run", "shapes": root / "shapes"}


def test_reconstruct_depth_sif_file_meshes_to_the_same_mesh(tiny, tmp_path):
    from impax.cli import main
    from impax.geometry.normalize import gaps_transform
    from impax.inference.ldif import reconstruct
    from impax.models.sif_format import read_sif

    out = tmp_path / "rec"
    rows = reconstruct(tiny["run"], "depth", [tiny["data"], "torus_torus_000", "no_such_shape"], out, resolution=32)
    assert [r["id"] for r in rows] == ["torus_torus_000", "no_such_shape"]
    row, bad = rows
    assert row["ok"], row
    assert not bad["ok"] and "no_such_shape" in bad["reason"] and bad["path"] is None
    assert Path(row["path"]).is_file() and row["queries"] > 0 and row["seconds"] >= 0
    sif = read_sif(row["sif"])
    assert sif.element_count == 4 and sif.symmetric_count == 2 and sif.latent_size == 8

    # the stored transform, and GAPS' normalisation of the source file computed here independently
    t = Transform.from_dict(json.loads((out / "torus_torus_000.gaps.json").read_text()))
    assert t == ShapeStore(tiny["data"]).attrs("torus_torus_000")["gaps_transform"]
    src = trimesh.load(tiny["shapes"] / "torus" / "torus_000.ply", process=False)
    np.testing.assert_allclose(t.as_matrix(), gaps_transform(src).as_matrix(), atol=1e-9)

    # `impax mesh` on the SIF file alone + the run's exported decoder: the same surface
    gaps_mesh = tmp_path / "from_file.ply"
    assert main(["mesh", row["sif"], "--decoder", str(tiny["run"] / "extracted.occnet"), "--resolution", "32",
                 "--out", str(gaps_mesh)]) == 0
    a = trimesh.load(row["path"], process=False)
    b = trimesh.load(gaps_mesh, process=False)
    assert len(a.faces) > 0
    np.testing.assert_array_equal(a.faces, b.faces)
    np.testing.assert_allclose(a.vertices, t.inverse().apply(np.asarray(b.vertices, np.float64)), atol=1e-5)


def test_reconstruct_mesh_input_renders_like_training(tiny, tmp_path):
    """A mesh file is normalised, rendered and sampled like `impax prepare`: its depth images equal
    the stored ones, so the explicit SIF parameters (from depth) equal those of the stored shape."""
    from impax.inference.ldif import reconstruct
    from impax.models.sif_format import read_sif

    mesh_file = tiny["shapes"] / "box" / "box_000.ply"
    rows = reconstruct(tiny["run"], "mesh", [mesh_file, tmp_path / "missing.ply"], tmp_path / "m", resolution=32)
    assert rows[0]["ok"] and not rows[1]["ok"] and "missing.ply" in rows[1]["reason"]
    ref = reconstruct(tiny["run"], "depth", [tiny["data"], "box_box_000"], tmp_path / "d", resolution=32)[0]
    a, b = read_sif(rows[0]["sif"]), read_sif(ref["sif"])
    for name in ("constants", "centers", "sigmas", "rotations"):
        np.testing.assert_allclose(getattr(a, name), getattr(b, name), atol=1e-5, err_msg=name)
    # the reconstruction lies in the source file's frame: near the source mesh's bounding box
    src = trimesh.load(mesh_file, process=False)
    rec = trimesh.load(rows[0]["path"], process=False)
    size = np.linalg.norm(src.bounds[1] - src.bounds[0])
    assert np.all(rec.bounds[0] > src.bounds[0] - size) and np.all(rec.bounds[1] < src.bounds[1] + size)


def test_points_need_a_point_run_and_load_ldif_exports_decoder(tiny, tmp_path):
    from impax.inference.ldif import load_ldif, reconstruct
    from impax.models.sif_format import read_occnet

    pts = tmp_path / "cloud.xyz"
    np.savetxt(pts, np.random.default_rng(0).normal(size=(200, 6)))
    rows = reconstruct(tiny["run"], "points", [pts], tmp_path / "p", resolution=32)
    assert len(rows) == 1 and not rows[0]["ok"] and "input=points" in rows[0]["reason"]
    bad = reconstruct(tiny["run"], "image", ["x.png"], tmp_path / "q")
    assert not bad[0]["ok"] and "depth, points or mesh" in bad[0]["reason"]

    dec = tiny["run"] / "extracted.occnet"
    saved = dec.read_bytes()
    dec.unlink()
    model, cfg, weights = load_ldif(tiny["run"])
    assert dec.read_bytes() == saved  # re-exported from the newest checkpoint
    assert cfg.model.latent_size == 8 and model.decoder is not None
    w = read_occnet(dec)
    assert set(w) == set(weights) and all(np.array_equal(w[k], weights[k]) for k in w)


def test_point_cloud_run_reconstructs_from_a_cloud_file(tiny, tmp_path):
    """A run trained with input=points reconstructs from an .npz cloud (points + normals) sampled
    from a mesh; the cloud's normalisation approximates GAPS' mesh normalisation."""
    from impax.geometry.normalize import gaps_transform
    from impax.geometry.sampling import surface_samples
    from impax.inference.ldif import reconstruct
    from impax.train.recipes.ldif import train

    run = tmp_path / "prun"
    train("sifpp", tiny["data"], run, "cpu", {**TINY, "input": "points", "model.latent_size": 0, "epochs": 1},
          progress=False)
    src = trimesh.load(tiny["shapes"] / "sphere" / "sphere_000.ply", process=False)
    p, n = surface_samples(src, 4000, np.random.default_rng(1))
    cloud = tmp_path / "sphere.npz"
    np.savez(cloud, points=p, normals=n)
    rows = reconstruct(run, "points", [cloud], tmp_path / "out", resolution=32)
    assert rows[0]["sif"] and Path(rows[0]["sif"]).is_file(), rows[0]
    t = Transform.from_dict(json.loads((tmp_path / "out" / "sphere.gaps.json").read_text()))
    np.testing.assert_allclose(t.as_matrix(), gaps_transform(src).as_matrix(), atol=0.05)
