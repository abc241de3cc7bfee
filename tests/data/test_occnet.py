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


# ----------------------------------------------------------------------------------------------
# impax prepare --from-occnet: an OccNet dataset of spheres and boxes (tests/data/_occnet_data.py)

import json  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from _occnet_data import BROKEN, SHAPES, SPLITS, shape_of, write_dataset  # noqa: E402


@pytest.fixture(scope="module")
def occnet_store(tmp_path_factory):
    """(OccNet root, store prepared from it by the CLI with one worker process, exit status); --quick:
    a 16^3 coarse grid."""
    from impax.cli import main

    base = tmp_path_factory.mktemp("occnet")
    root = write_dataset(base / "ShapeNet")
    out = base / "store"
    rc = main(["prepare", str(root), str(out), "--from-occnet", "--quick", "--workers", "1", "--quiet"])
    return root, out, rc


def test_prepare_from_occnet_reports_the_corrupt_file_and_keeps_the_splits(occnet_store):
    from impax.data.store import ShapeStore

    root, out, rc = occnet_store
    assert rc == 3  # partial success: the corrupt points.npz
    report = json.loads((out / "report.json").read_text())
    assert [f["path"] for f in report["failed"]] == [BROKEN]
    assert "points.npz" in report["failed"][0]["reason"] and "\n" not in report["failed"][0]["reason"]
    assert (out / "failed.txt").read_text().startswith(f"{BROKEN}: points.npz")
    store = ShapeStore(out)
    assert store.source_format() == "occnet"
    want = {f"{c}_{m}": s for c, lists in SPLITS.items() for s, names in lists.items() for m in names}
    want.pop("02691156_broken")
    assert {e["id"]: e["split"] for e in store.entries()} == want
    e = store.entries()[0]
    assert e["source"] == "02691156/box_a"
    assert not {"uniform_sdf", "near_sdf", "depth", "voxels", "views"} & set(e["arrays"])
    settings = json.loads((out / "prepare.json").read_text())
    assert settings["source_format"] == "occnet" and len(settings["split"]["occnet_lists_sha256"]) == 64


def test_prepared_occnet_samples_agree_with_the_analytic_shapes_in_the_gaps_frame(occnet_store):
    from impax.data.store import ShapeStore
    from impax.geometry.voxels import grid_nodes

    _, out, _ = occnet_store
    store = ShapeStore(out)
    for e in store.entries():
        shape, a = shape_of(e["source"]), store.attrs(e["id"])
        t_occ, t_gaps = a["occnet_transform"], a["gaps_transform"]
        assert (a["source_frame"], t_occ.target, t_gaps.target) == ("occnet", "occnet", "gaps")
        np.testing.assert_allclose(t_occ.inverse().apply(np.zeros((1, 3)))[0], shape.loc, atol=1e-5 * shape.scale)
        assert t_occ.scale == pytest.approx(1 / shape.scale, rel=1e-6)
        to_orig = t_gaps.inverse()
        tol = 1e-3 * shape.scale  # float16 points: labels may differ only this close to the surface
        for group in ("uniform", "near"):
            p = to_orig.apply(store.read(e["id"], f"{group}_points").astype(np.float64))
            occ = store.read(e["id"], f"{group}_occupancy").astype(bool)
            far = shape.distance(p) > tol
            assert far.mean() > 0.9 and occ.any() and not occ.all()
            np.testing.assert_array_equal(occ[far], shape.inside(p[far]), err_msg=f"{e['id']} {group}")
        # the uniform set covers LDIF's box [-0.7, 0.7]^3 (OccNet's cube + outside samples)
        up = store.read(e["id"], "uniform_points")
        assert np.all(np.abs(up) <= 0.7 + 1e-6) and np.all(up.min(0) < -0.69) and np.all(up.max(0) > 0.69)
        assert a["uniform_outside_fill"] > 0
        # near-surface samples lie within 0.04 (GAPS units) of the surface (+ the surface samples' gap)
        near = to_orig.apply(store.read(e["id"], "near_points").astype(np.float64))
        assert np.all(shape.distance(near) * t_gaps.scale < 0.04 + 0.02)
        # surface points and normals
        sp = to_orig.apply(store.read(e["id"], "surface_points").astype(np.float64))
        assert np.all(shape.distance(sp) < tol)
        sn = store.read(e["id"], "surface_normals")
        np.testing.assert_allclose(np.linalg.norm(sn, axis=1), 1, atol=1e-3)
        # the approximate coarse SDF grid: sign right except next to the surface, magnitude within the gap
        grid = store.read(e["id"], "sdf_grid").reshape(-1)
        nodes = to_orig.apply(grid_nodes(round(len(grid) ** (1 / 3))))
        d = shape.distance(nodes) * t_gaps.scale
        clear = d > 0.01
        np.testing.assert_array_equal(grid[clear] < 0, shape.inside(nodes[clear]))
        assert np.abs(np.abs(grid) - d).max() < 0.03
    # the GAPS frame estimated from the surface samples is the sphere's exact one: centre, 0.25 sqrt(3) / r
    a = store.attrs("02691156_sph_a")
    sph = SHAPES["02691156"]["sph_a"]
    np.testing.assert_allclose(a["gaps_transform"].apply(np.array([sph.centre]))[0], 0, atol=0.01)
    assert a["gaps_transform"].scale == pytest.approx(0.25 * np.sqrt(3) / sph.size[0], rel=0.02)


def test_prepare_from_occnet_resumes_and_needs_the_flag(occnet_store, tmp_path, capsys):
    from impax.cli import main

    root, out, _ = occnet_store
    before = {p.name: p.read_bytes() for p in (out / "shapes").iterdir()}
    assert main(["prepare", str(root), str(out), "--from-occnet", "--quick", "--workers", "0", "--quiet"]) == 3
    assert "0 prepared now, 7 already present" in capsys.readouterr().out
    assert {p.name: p.read_bytes() for p in (out / "shapes").iterdir()} == before
    # without --from-occnet: one line naming the flag, nothing written
    assert main(["prepare", str(root), str(tmp_path / "o2")]) == 1
    err = capsys.readouterr().err.strip()
    assert "--from-occnet" in err and "\n" not in err and not (tmp_path / "o2").exists()


def test_recipes_name_what_an_occnet_store_lacks(occnet_store, tmp_path, capsys):
    from impax.cli import main

    _, out, _ = occnet_store
    for recipe, field, hint in (("imnet-ae", "'voxels'", "OccNet"), ("sif", "'depth'", "--set input=points")):
        assert main(["train", recipe, "--data", str(out), "--out", str(tmp_path / recipe), "--preset", "quick",
                     "--no-progress"]) == 1
        err = capsys.readouterr().err.strip()
        assert field in err and hint in err and "\n" not in err, err
        assert not (tmp_path / recipe).exists()


def test_ldif_batches_from_an_occnet_store_carry_sign_labels_and_the_grid(occnet_store):
    import jax.numpy as jnp

    from impax.data.store import ShapeStore
    from impax.models import ldif_losses as L
    from impax.train.recipes.ldif import make_loader, resolve_config

    _, out, _ = occnet_store
    store = ShapeStore(out)
    cfg = resolve_config("ldif", "quick", {"input": "points", "model.batch_size": 2})
    batch = make_loader(store, cfg, "train", 0, True).batch(0, 0)
    # no signed distances in the store: -1 inside / +1 outside from the occupancies (the loss reads the sign)
    for g in ("uniform", "near"):
        assert set(np.unique(batch[f"{g}_sdf"])) == {-1.0, 1.0}
    assert batch["sdf_grid"].shape == (2, 16, 16, 16) and batch["surface_points"].shape == (2, 256, 3)
    assert "depth" not in batch and np.all(batch["box_lower"] <= 0) and np.all(batch["box_upper"] >= 0)
    m = cfg.model
    right = jnp.where(batch["near_sdf"] < 0, m.iso_level - 1, m.iso_level + 1)
    assert float(L.near_surface_sample_loss(m, right, batch["near_sdf"])) < 1e-6
    assert float(L.near_surface_sample_loss(m, -right + 2 * m.iso_level, batch["near_sdf"])) > 0.5
    # the approximate grid: element centres at the shapes' centres are inside (no grid-inside penalty)
    centre = jnp.asarray(store.attrs("02691156_sph_a")["gaps_transform"].apply(np.array([[3.0, -1.0, 2.0]])))
    inside = L.interpolate_grid(jnp.asarray(store.read("02691156_sph_a", "sdf_grid"))[None], centre[None],
                                jnp.asarray(store.read("02691156_sph_a", "world2grid")))
    assert float(inside[0, 0]) < -0.3


@pytest.mark.slow
def test_sif_trains_on_an_occnet_store_and_impax_test_scores_it_against_occnet(occnet_store, tmp_path):
    """~70 s on 2 busy cores (JAX compilation): a 2-step SIF run, then impax test --occnet."""
    from impax.cli import main

    root, out, _ = occnet_store
    run = tmp_path / "sif"
    assert main(["train", "sif", "--data", str(out), "--out", str(run), "--preset", "quick", "--no-progress",
                 "--set", "input=points"]) == 0
    assert json.loads((run / "eval_iou.json").read_text())["train"]["count"] == 4
    assert main(["test", str(run), "--data", str(out), "--meshes", str(root), "--quiet"]) == 1  # wrong flag
    assert main(["test", str(run), "--data", str(out), "--occnet", str(root), "--resolution", "32",
                 "--samples", "2000", "--quiet"]) == 0
    summary = json.loads((run / "test-test" / "summary.json").read_text())
    assert summary["summary"]["count"] == 2 and summary["summary"]["frame"] == "occnet"
    assert {r["id"] for r in summary["shapes"]} == {"02691156_sph_t", "03001627_box_t"}
    assert all(0 <= r["iou"] <= 1 and r["chamfer_l1"] > 0 for r in summary["shapes"])
