"""Mesh discovery (layouts, ids, splits) and per-shape preparation (frames, seeds, stages)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import trimesh

from impax.conventions import imnet_points_from_grid256
from impax.data.pipeline import PrepareConfig, prepare_shape
from impax.data.sources import assign_splits, discover, hash_split, shard_of
from impax.geometry.mesh_io import MeshError


def _touch(path, mesh=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    (mesh or trimesh.creation.box()).export(path)


def test_discover_layouts_and_unique_ids(tmp_path):
    _touch(tmp_path / "02691156" / "abc" / "models" / "model_normalized.obj")  # ShapeNet v2
    _touch(tmp_path / "03001627" / "def" / "model.obj")  # ShapeNet v1
    (tmp_path / "03001627" / "def" / "model.mtl").write_text("newmtl x\n")  # ignored
    _touch(tmp_path / "chair" / "a b.ply")  # class folder; space is cleaned
    _touch(tmp_path / "flat.off")  # flat
    _touch(tmp_path / "dup.obj")
    _touch(tmp_path / "dup.ply")  # same stem: both get their suffix
    shapes = {s.shape_id: s for s in discover(tmp_path)}
    assert sorted(shapes) == ["02691156_abc", "03001627_def", "chair_a-b", "dup_obj", "dup_ply", "flat"]
    assert (shapes["02691156_abc"].cls, shapes["02691156_abc"].model_id) == ("02691156", "abc")
    assert (shapes["03001627_def"].cls, shapes["03001627_def"].model_id) == ("03001627", "def")
    assert shapes["chair_a-b"].cls == "chair" and shapes["flat"].cls == ""
    assert shapes["03001627_def"].rel == "03001627/def/model.obj"


def test_hash_split_fractions_and_lists(tmp_path):
    ids = [f"shape{i}" for i in range(4000)]
    splits = [hash_split(i) for i in ids]
    frac = {s: splits.count(s) / len(ids) for s in ("train", "val", "test")}
    assert abs(frac["train"] - 0.8) < 0.03 and abs(frac["val"] - 0.1) < 0.02 and abs(frac["test"] - 0.1) < 0.02
    assert [hash_split(i) for i in ids] == splits  # stable
    assert {hash_split(i, (0.5, 0.0, 0.5)) for i in ids} == {"train", "test"}
    shards = [shard_of(i, 3) for i in ids]
    assert set(shards) == {0, 1, 2} and min(shards.count(k) for k in range(3)) > 1200
    _touch(tmp_path / "src" / "c" / "m1.obj")
    _touch(tmp_path / "src" / "c" / "m2.obj")
    _touch(tmp_path / "src" / "c" / "m3.obj")
    (tmp_path / "train.lst").write_text("c/m1\n# comment\nc_m2\n")
    (tmp_path / "test.lst").write_text("m3\n")
    got = {s.shape_id: s.split for s in assign_splits(discover(tmp_path / "src"),
                                                      lists={"train": tmp_path / "train.lst", "test": tmp_path / "test.lst"})}
    assert got == {"c_m1": "train", "c_m2": "train", "c_m3": "test"}


@pytest.fixture(scope="module")
def box_path(tmp_path_factory):
    p = tmp_path_factory.mktemp("m") / "box.obj"
    m = trimesh.creation.box(extents=(2.0, 1.0, 0.5))
    m.apply_translation([3.0, -1.0, 2.0])
    m.export(p)
    return p


def test_prepare_shape_frames_stages_and_seeds(box_path):
    cfg = PrepareConfig.quick(n_uniform=2000, n_near=500, n_surface=300, depth_size=24, n_depth_views=20,
                              n_views=2, depth_dtype="float16", n_occupancy=2000)
    a, attrs = prepare_shape(box_path, cfg, seed=1, shape_id="box")
    assert a["depth"].shape == (20, 24, 24) and a["depth"].dtype == np.float16 and (a["depth"] > 0).any()
    assert a["views"].shape == (2, 137, 137) and a["views"].dtype == np.uint8 and a["views"].min() < 255
    assert a["sdf_grid"].shape == (16, 16, 16) and a["world2grid"].shape == (4, 4)
    # IM-NET frame: bbox centred, diagonal 1 -> the box is [-a, a] with a = extents / 2 / |extents|
    half = np.array([2.0, 1.0, 0.5]) / 2 / np.linalg.norm([2.0, 1.0, 0.5])
    inside = np.all(np.abs(a["occ_points"]) < half, axis=1)
    assert np.mean(inside == a["occ_values"].astype(bool)) > 0.999
    t = attrs["imnet_transform"]
    np.testing.assert_allclose(t.apply(np.array([[3.0, -1.0, 2.0]])), 0, atol=1e-9)
    # the 64^3 voxels are the cell-centre occupancy of that box
    c = (np.arange(64) + 0.5) / 64 - 0.5
    ref = (np.abs(c)[:, None, None] < half[0]) & (np.abs(c)[None, :, None] < half[1]) & (np.abs(c)[None, None, :] < half[2])
    assert np.mean(a["voxels"].astype(bool) == ref) > 0.995
    # surface points lie on the GAPS-frame box surface
    sp = attrs["gaps_transform"].inverse().apply(a["surface_points"].astype(np.float64)) - [3.0, -1.0, 2.0]
    q = np.abs(sp) - [1.0, 0.5, 0.25]
    assert np.abs(np.max(q, axis=1)).max() < 1e-4
    # same (seed, id) -> same data; another id or seed -> other samples; stages do not disturb each other
    b, _ = prepare_shape(box_path, cfg, seed=1, shape_id="box")
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    c1, _ = prepare_shape(box_path, dataclasses.replace(cfg, near=False, depth=False, views=False, imnet=False),
                          seed=1, shape_id="box")
    np.testing.assert_array_equal(c1["uniform_points"], a["uniform_points"])
    c2, _ = prepare_shape(box_path, dataclasses.replace(cfg, depth=False, views=False, imnet=False), seed=1, shape_id="other")
    assert not np.array_equal(c2["uniform_points"], a["uniform_points"])


def test_open_surface_without_volume_is_rejected(tmp_path):
    # one tilted triangle: a non-degenerate bounding box, yet it subtends less than half of any
    # point's sphere of directions (winding number < 0.5 everywhere), so it encloses nothing
    p = tmp_path / "sheet.obj"
    p.write_text("v 0 0 0\nv 1 0 0\nv 0 1 1\nf 1 2 3\n")
    with pytest.raises(MeshError, match="no volume"):
        prepare_shape(p, PrepareConfig.quick(depth=False, views=False), seed=0)


def test_default_imnet_sampling_labels_agree_with_an_analytic_sphere(tmp_path):
    """``impax prepare``'s default IM-NET sampling (256^3, as IM-NET's own data): every level-16/32/64
    label equals the analytic inside test of the sphere the mesh approximates (points within the
    facets' distance of the sphere aside); ``--fast-voxels`` (64^3 cell centres) does not."""
    r = 0.4
    p = tmp_path / "ball.ply"
    trimesh.creation.icosphere(6, radius=r).export(p)   # facet error r (1 - cos(edge/2)) < 1e-4 r
    only = dict(uniform=False, near=False, surface=False, sdf_grid=False, depth=False, views=False, occupancy=False)
    a, attrs = prepare_shape(p, PrepareConfig.quick(**only), seed=0, shape_id="ball")
    radius = r / np.linalg.norm(np.full(3, 2 * r))  # IM-NET frame: bounding-box diagonal 1
    assert attrs["imnet_transform"].as_matrix()[0, 0] * r == pytest.approx(radius, rel=1e-3)
    for level in (16, 32, 64):
        # points are stored as IM-NET stores them: indices of the 256^3 grid
        pts, vals = imnet_points_from_grid256(a[f"points_{level}"]), a[f"values_{level}"][:, 0] > 0
        d = np.linalg.norm(pts, axis=1) - radius
        far = np.abs(d) > 2e-4   # the facets lie within 0.4 * 1e-4 * 0.72 = 3e-5 of the sphere
        assert far.mean() > 0.9
        assert np.array_equal(vals[far], d[far] < 0), (level, np.mean(vals[far] != (d[far] < 0)))
    b, _ = prepare_shape(p, PrepareConfig.quick(voxels_256=False, **only), seed=0, shape_id="ball")
    pts, vals = imnet_points_from_grid256(b["points_64"]), b["values_64"][:, 0] > 0
    d = np.linalg.norm(pts, axis=1) - radius
    assert np.mean(vals != (d < 0)) > 0.01   # the cell-centre labels of the fast mode are not exact
