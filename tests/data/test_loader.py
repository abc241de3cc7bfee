"""Loaders: determinism in (seed, epoch), exact resume with start=k, batch shapes, aligned rows."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from impax.data.loader import IMNetHdf5Loader, StoreLoader, imnet_loader, ldif_loader
from impax.data.store import ShapeStore, export_imnet_hdf5

N_SHAPES, N_PTS = 7, 3000


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> ShapeStore:
    st = ShapeStore(tmp_path_factory.mktemp("store"))
    rng = np.random.default_rng(0)
    for s in range(N_SHAPES):
        up = rng.uniform(-0.7, 0.7, (N_PTS, 3)).astype(np.float32)
        near = rng.normal(0, 0.3, (N_PTS, 3)).astype(np.float32)
        p64 = rng.integers(0, 256, (16384, 3), dtype=np.uint8)
        rec = {
            # each value is a known function of its point and of the shape number: alignment is checkable
            "uniform_points": up, "uniform_sdf": up.sum(1) + 10 * s, "uniform_occupancy": (up[:, 0] > 0),
            "near_points": near, "near_sdf": near[:, 0] * 2 + 10 * s, "near_occupancy": near[:, 1] > 0,
            "surface_points": near, "surface_normals": near * 2,
            "sdf_grid": np.full((32, 32, 32), s, np.float32), "world2grid": np.eye(4, dtype=np.float32) * s,
            "depth": np.full((20, 8, 8), s, np.float32),
            "voxels": np.full((64, 64, 64), s % 2, np.uint8),
            "points_64": p64, "values_64": ((p64[:, :1].astype(int) + s) % 2).astype(np.uint8),
            "points_16": p64[:4096], "values_16": np.zeros((4096, 1), np.uint8),
            "points_32": p64[:4096], "values_32": np.zeros((4096, 1), np.uint8),
        }
        st.write(f"shape{s}", rec, {"class": "c", "split": "train", "model_id": f"m{s}", "source": ""})
    st.build_index()
    return st


def _same(a: list[dict], b: list[dict]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert sorted(x) == sorted(y)
        for k in x:
            np.testing.assert_array_equal(x[k], y[k])


def test_ldif_batches_shapes_alignment_and_determinism(store):
    ld = ldif_loader(store, batch_size=3, n_uniform=256, n_near=128, seed=5)
    assert len(ld) == 2  # 7 shapes, drop_last
    assert len(ldif_loader(store, batch_size=3, drop_last=False)) == 3
    batches = list(ld.iterate(0))
    assert len(batches) == 2
    b = batches[0]
    assert b["uniform_points"].shape == (3, 256, 3) and b["uniform_sdf"].shape == (3, 256)
    assert b["near_points"].shape == (3, 128, 3) and b["near_occupancy"].shape == (3, 128)
    assert b["sdf_grid"].shape == (3, 32, 32, 32) and b["depth"].shape == (3, 20, 8, 8)
    seen = []
    for b in batches:
        s = b["shape_index"]
        seen.extend(s.tolist())
        np.testing.assert_allclose(b["uniform_sdf"], b["uniform_points"].sum(-1) + 10 * s[:, None], rtol=1e-6)
        np.testing.assert_array_equal(b["uniform_occupancy"], b["uniform_points"][..., 0] > 0)
        np.testing.assert_allclose(b["near_sdf"], b["near_points"][..., 0] * 2 + 10 * s[:, None], rtol=1e-6)
        np.testing.assert_array_equal(b["sdf_grid"][:, 0, 0, 0], s)
        for row in b["uniform_points"]:  # distinct rows of the shape, not repeats
            assert len(np.unique(row, axis=0)) == 256
    assert len(set(seen)) == 6  # one epoch: no shape twice
    # same seed, fresh loader -> same batches; other epoch -> other batches; start=k skips exactly
    _same(batches, list(ldif_loader(store, batch_size=3, n_uniform=256, n_near=128, seed=5).iterate(0)))
    _same(batches[1:], list(ld.iterate(0, start=1)))
    other = list(ld.iterate(1))
    assert not all(np.array_equal(x["uniform_points"], y["uniform_points"]) for x, y in zip(batches, other))
    seed6 = list(ldif_loader(store, batch_size=3, n_uniform=256, n_near=128, seed=6).iterate(0))
    assert not np.array_equal(seed6[0]["uniform_points"], batches[0]["uniform_points"])


def test_surface_inputs(store):
    ld = ldif_loader(store, batch_size=2, inputs="surface", n_surface=500, seed=1)
    b = next(iter(ld.iterate(0)))
    assert "depth" not in b and b["surface_points"].shape == (2, 500, 3)
    np.testing.assert_allclose(b["surface_normals"], 2 * b["surface_points"])


def test_imnet_store_loader_matches_in_memory_hdf5_loader(store, tmp_path):
    ld = imnet_loader(store, level=64, batch_size=2, points=4096, seed=3)
    batches = list(ld.iterate(2))
    assert len(batches) == 3
    b = batches[0]
    assert b["voxels"].shape == (2, 64, 64, 64, 1) and b["voxels"].dtype == np.uint8  # cast on the device
    assert b["points"].shape == (2, 4096, 3) and b["values"].shape == (2, 4096, 1)
    s = b["shape_index"]
    raw = np.rint((b["points"] + 0.5) * 256 - 0.5).astype(int)
    np.testing.assert_array_equal(b["values"][..., 0], (raw[..., 0] + s[:, None]) % 2)
    np.testing.assert_array_equal(b["voxels"][:, 0, 0, 0, 0], s % 2)
    # chunk mode (IM-NET-pytorch): one aligned quarter of the 16384 points
    full = store.read(f"shape{s[0]}", "points_64")
    starts = [q for q in range(4) if np.array_equal(full[q * 4096:(q + 1) * 4096], raw[0])]
    assert len(starts) == 1
    # the official-layout export read by the in-memory loader gives the very same batches
    path = export_imnet_hdf5(store, "train", tmp_path / "all_vox256_img_train.hdf5", pixels=False)
    for in_memory in (True, False):
        h5 = IMNetHdf5Loader(path, level=64, batch_size=2, points=4096, seed=3, in_memory=in_memory)
        assert len(h5) == len(ld)
        _same(batches, list(h5.iterate(2)))
    rnd = IMNetHdf5Loader(path, level=64, batch_size=2, points=1000, seed=3, point_mode="random")
    assert next(iter(rnd.iterate(0)))["points"].shape == (2, 1000, 3)


def test_breaking_out_stops_the_prefetch_thread(store):
    ld = StoreLoader(store, split="train", batch_size=1, arrays=("sdf_grid",), samples={"uniform": 10}, prefetch=1)
    before = threading.active_count()
    it = ld.iterate(0)
    next(it)
    it.close()
    assert threading.active_count() == before
    with pytest.raises(ValueError, match="only"):
        next(iter(StoreLoader(store, batch_size=1, samples={"near": N_PTS + 1}).iterate(0)))


def test_memory_cache_gives_the_same_batches_and_respects_its_budget(store):
    kw = dict(batch_size=3, n_uniform=256, n_near=128, seed=5)
    nocache = ldif_loader(store, cache_mb=0, **kw)
    cached = ldif_loader(store, **kw)
    ref = [list(nocache.iterate(e)) for e in range(3)]
    _same(ref[0], list(cached.iterate(0)))
    assert len(cached._cache) == 6  # the 6 shapes two batches of 3 touch (7 shapes, drop_last)
    for e in (1, 2):  # later epochs mostly read from memory
        _same(ref[e], list(cached.iterate(e)))
    assert nocache._cached_bytes == 0 and not nocache._cache
    assert cached._cached_bytes == sum(a.nbytes for d in cached._cache.values() for a in d.values())
    one = store.read("shape0", "sdf_grid").nbytes
    small = ldif_loader(store, cache_mb=1.5 * one / 2 ** 20, **kw)  # room for one shape's data at most
    _same(ref[1], list(small.iterate(1)))
    assert len(small._cache) <= 1 and small._cached_bytes <= small.cache_bytes
    im = imnet_loader(store, level=64, batch_size=2, points=1000, seed=3, point_mode="random")
    im0 = imnet_loader(store, level=64, batch_size=2, points=1000, seed=3, point_mode="random", cache_mb=0)
    for e in range(2):
        _same(list(im0.iterate(e)), list(im.iterate(e)))
    with pytest.raises(ValueError, match="cache_mb"):
        ldif_loader(store, cache_mb=-1)


def test_imnet_near_points_are_mapped_into_imnet_box_with_exact_labels(tmp_path):
    """``near_points``: the record's near-surface samples (GAPS frame) follow the level points, mapped
    into IM-NET's box; against a closed-form box (off-centre, so the two frames differ) every label
    is the exact inside test of its mapped point."""
    import trimesh

    from impax.data.pipeline import PrepareConfig, prepare_shape

    extents, centre = np.array([1.0, 0.6, 0.4]), np.array([0.3, -0.2, 0.5])
    mesh = trimesh.creation.box(extents=extents)
    mesh.apply_translation(centre)
    mesh.export(tmp_path / "box.ply")
    cfg = PrepareConfig.quick(depth=False, views=False, sdf_grid=False, surface=False, occupancy=False)
    st = ShapeStore(tmp_path / "store")
    for sid in ("a", "b"):
        arrays, attrs = prepare_shape(tmp_path / "box.ply", cfg, seed=0, shape_id=sid)
        st.write(sid, arrays, {**attrs, "class": "c", "split": "train", "model_id": sid, "source": ""})
    st.build_index()

    ld = imnet_loader(st, level=64, batch_size=2, points=1024, seed=0, point_mode="random", near_points=384)
    b = next(iter(ld.iterate(0)))
    assert b["points"].shape == (2, 1024, 3) and b["values"].shape == (2, 1024, 1)
    half = extents / 2 / np.linalg.norm(extents)  # IM-NET box: bbox centred, diagonal 1
    near, labels = b["points"][:, 640:].astype(np.float64), b["values"][:, 640:, 0]
    clear = np.all(np.abs(np.abs(near) - half) > 1e-5, axis=-1)  # not on a face, up to float32
    inside = np.all(np.abs(near) < half, axis=-1)
    np.testing.assert_array_equal(labels[clear], inside[clear])
    assert 0.1 < labels.mean() < 0.9  # both sides of the surface are sampled
    # the level points keep IM-NET's 256-grid coordinates; all-near batches have no level points
    grid = (b["points"][:, :640] + 0.5) * 256 - 0.5
    np.testing.assert_allclose(grid, np.rint(grid), atol=1e-4)
    only = next(iter(imnet_loader(st, level=64, batch_size=2, points=256, seed=0, point_mode="random",
                                  near_points=256).iterate(0)))
    assert only["points"].shape == (2, 256, 3)
    assert not np.allclose(((only["points"] + 0.5) * 256 - 0.5) % 1, 0, atol=1e-4)
    with pytest.raises(ValueError, match="near_points"):
        imnet_loader(st, level=64, batch_size=2, points=256, near_points=300)


def test_imnet_near_points_need_the_records_frame_transforms(store):
    """A record without its GAPS / IM-NET transforms cannot place near-surface samples: named error."""
    with pytest.raises(ValueError, match=r"shape\d\.h5: the record lacks gaps_transform/imnet_transform"):
        imnet_loader(store, level=64, batch_size=2, points=512, near_points=128)
