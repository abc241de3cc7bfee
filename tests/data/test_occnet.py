"""OccNet's per-shape ``points.npz`` / ``pointcloud.npz`` (:mod:`impax.data.occnet`), written here the
way OccNet's ``scripts/sample_mesh.py`` writes them (bounding-box normalisation, uniform points in
the 1.1 cube, inside flags of the float64 points, float16 cast, ``np.packbits``, ``loc``/``scale``),
for a sphere whose inside is known exactly; then scored with :mod:`impax.evaluation.metrics`."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from impax.data.occnet import (EvalShape, evaluation_data, evaluation_shape, list_shapes, read_pointcloud,
                               read_points, subsample, unpack_occupancies)

CENTRE = np.array([3.0, -1.0, 2.0])
RADIUS = 5.0


def write_shape(folder, rng, n_points=20000, n_surface=5000, packbits=True, float16=True):
    """sample_mesh.py for a sphere of RADIUS at CENTRE (bbox_padding 0, points_padding 0.1)."""
    folder.mkdir(parents=True, exist_ok=True)
    lo, hi = CENTRE - RADIUS, CENTRE + RADIUS
    loc = (lo + hi) / 2
    scale = float((hi - lo).max() / (1 - 0.0))
    # export_points: uniform in the padded unit cube, occupancy of the float64 points, then the casts
    pts = 1.1 * (rng.random((n_points, 3)) - 0.5)
    occ = np.linalg.norm(pts, axis=1) < RADIUS / scale
    dtype = np.float16 if float16 else np.float32
    np.savez(folder / "points.npz", points=pts.astype(dtype), occupancies=np.packbits(occ) if packbits else occ,
             loc=loc, scale=scale)
    # export_pointcloud: surface samples and their normals
    d = rng.normal(size=(n_surface, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    np.savez(folder / "pointcloud.npz", points=(0.5 * d).astype(dtype), normals=d.astype(dtype), loc=loc, scale=scale)
    return pts, occ, loc, scale


def sphere_mesh():
    return trimesh.creation.icosphere(subdivisions=5, radius=RADIUS).apply_translation(CENTRE)


def test_points_are_unpacked_and_mapped_back(tmp_path):
    rng = np.random.default_rng(0)
    pts, occ, loc, scale = write_shape(tmp_path / "02691156" / "a1", rng)
    p = read_points(tmp_path / "02691156" / "a1" / "points.npz")
    assert p.points.dtype == np.float32 and p.points.shape == (20000, 3) and p.float16
    assert p.occupancies.dtype == bool
    np.testing.assert_array_equal(p.occupancies, occ)
    assert abs(occ.mean() - (4 / 3) * np.pi * 0.5 ** 3 / 1.1 ** 3) < 0.02  # ball volume / cube volume
    np.testing.assert_allclose(p.points, pts, atol=1e-3)  # float16
    assert p.transform.source == "original" and p.transform.target == "occnet"
    back = p.transform.inverse().apply(p.points.astype(np.float64))
    np.testing.assert_allclose(back, pts * scale + loc, atol=1e-3 * scale)
    assert abs(p.transform.scale - 1 / scale) < 1e-12
    j = read_points(tmp_path / "02691156" / "a1" / "points.npz", jitter=True, rng=np.random.default_rng(1))
    dev = np.abs(j.points - p.points)
    assert 0 < dev.max() < 1e-3 and np.array_equal(j.occupancies, p.occupancies)
    sp, so = subsample(p, 2048, np.random.default_rng(2))
    assert sp.shape == (2048, 3) and so.shape == (2048,)
    assert all(np.linalg.norm(sp, axis=1)[so] < 0.5 + 1e-3)


def test_evaluation_arrays_score_a_matching_mesh(tmp_path):
    from impax.evaluation.metrics import point_metrics
    from impax.geometry.voxels import occupancy_iou
    from impax.evaluation.sampling import area_weighted_samples
    from impax.geometry.inside import occupancy

    rng = np.random.default_rng(3)
    write_shape(tmp_path / "c" / "m", rng, n_points=8000, n_surface=4000)
    shape = evaluation_shape(tmp_path / "c" / "m")
    assert isinstance(shape, EvalShape) and (shape.id, shape.category) == ("m", "c")
    # a prediction in the original frame, brought into OccNet's frame with the shape's transform
    pred = sphere_mesh()
    pred_occ = pred.copy().apply_transform(shape.transform.as_matrix())
    iou = occupancy_iou(occupancy(pred_occ, shape.iou_points), shape.iou_occupancies)
    assert iou > 0.98
    pp, pn = area_weighted_samples(pred_occ, 4000, seed=0)
    m = point_metrics(pp, pn, shape.surface_points, shape.surface_normals, tau=0.05)
    # 4000 samples on a sphere of radius 0.5 are ~0.03 apart: Chamfer-L1 is sampling-limited near 0.014
    assert m["chamfer_l1"] < 0.02 and m["normal_consistency"] > 0.98 and m["fscore"] > 95
    # the prediction left in its original frame is far off
    wp, wn = area_weighted_samples(pred, 4000, seed=0)
    assert point_metrics(wp, wn, shape.surface_points, shape.surface_normals, tau=0.05)["chamfer_l1"] > 1.0
    # a wrong prediction scores worse
    small = trimesh.creation.icosphere(subdivisions=3, radius=0.3)
    assert occupancy_iou(occupancy(small, shape.iou_points), shape.iou_occupancies) < 0.3
    # the same IoU in the original frame (occupancy is invariant under the similarity)
    orig = shape.in_original()
    iou_orig = occupancy_iou(occupancy(pred, orig.iou_points), orig.iou_occupancies)
    assert abs(iou_orig - iou) < 2e-3
    np.testing.assert_allclose(np.linalg.norm(orig.surface_points - CENTRE, axis=1), RADIUS, rtol=2e-3)
    np.testing.assert_allclose(np.linalg.norm(orig.surface_normals, axis=1), 1.0, atol=1e-5)


def test_dataset_split_listing(tmp_path):
    rng = np.random.default_rng(4)
    for cat, models in {"chairs": ["a", "b", "c"], "planes": ["x", "y"]}.items():
        for m in models:
            write_shape(tmp_path / cat / m, rng, n_points=800, n_surface=200, packbits=(m != "b"), float16=(m != "c"))
    (tmp_path / "chairs" / "test.lst").write_text("a\nb\n")
    (tmp_path / "planes" / "test.lst").write_text("y\n")
    (tmp_path / "planes" / "train.lst").write_text("x\n")
    (tmp_path / "metadata.yaml").write_text("{}\n")
    assert [(c, m) for c, m, _ in list_shapes(tmp_path, "test")] == [("chairs", "a"), ("chairs", "b"), ("planes", "y")]
    assert len(list_shapes(tmp_path)) == 5
    data = evaluation_data(tmp_path, "test", classes=["chairs"])
    assert [s.id for s in data] == ["a", "b"]
    assert data[1].iou_occupancies.dtype == bool  # plain (unpacked) occupancies
    (tmp_path / "chairs" / "test.lst").write_text("a\nmissing\n")
    with pytest.raises(FileNotFoundError, match="missing"):
        list_shapes(tmp_path, "test")
    with pytest.raises(ValueError, match="no OccNet shapes"):
        list_shapes(tmp_path, "val")


def test_bad_files_give_one_line_errors(tmp_path):
    rng = np.random.default_rng(5)
    write_shape(tmp_path / "s", rng, n_points=100, n_surface=50)
    bad = tmp_path / "bad"
    bad.mkdir()
    np.savez(bad / "points.npz", points=np.zeros((10, 3), np.float32), occupancies=np.array([{"x": 1}], dtype=object))
    with pytest.raises(ValueError) as err:
        read_points(bad / "points.npz")
    assert str(bad / "points.npz") in str(err.value) and "\n" not in str(err.value)
    np.savez(bad / "pointcloud.npz", points=np.zeros((10, 3), np.float32))
    with pytest.raises(ValueError, match="no 'normals'"):
        read_pointcloud(bad / "pointcloud.npz")
    with pytest.raises(ValueError, match="neither 10 flags nor 2 packed bytes"):
        unpack_occupancies(np.zeros(3, np.uint8), 10)
    (bad / "points.npz").write_bytes(b"not a zip file at all")
    with pytest.raises(ValueError, match="points.npz"):
        read_points(bad / "points.npz")
    with pytest.raises(FileNotFoundError):
        read_points(tmp_path / "nope.npz")
    # the two files of one shape must agree on the normalisation
    d = dict(np.load(tmp_path / "s" / "pointcloud.npz"))
    d["scale"] = d["scale"] * 2
    np.savez(tmp_path / "s" / "pointcloud.npz", **d)
    with pytest.raises(ValueError, match="disagree on loc/scale"):
        evaluation_shape(tmp_path / "s")
