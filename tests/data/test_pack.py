"""Packed stores (impax pack) and the loader features made for them: pre-shuffled point sets read as
windows, depth at the model's size in float16, pread of contiguous datasets, worker processes,
per-process rows, uint8 voxels."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from impax.data.loader import StoreLoader, default_cache_mb, imnet_loader, ldif_loader
from impax.data.pack import SHUFFLED_GROUPS, pack_store, resize_bilinear
from impax.data.store import RecordError, ShapeStore

N_SHAPES, N_PTS = 8, 3000


@pytest.fixture(scope="module")
def stores(tmp_path_factory) -> tuple[ShapeStore, ShapeStore]:
    src = ShapeStore(tmp_path_factory.mktemp("prepared"))
    rng = np.random.default_rng(0)
    for s in range(N_SHAPES):
        up = rng.uniform(-0.7, 0.7, (N_PTS, 3)).astype(np.float32)
        near = rng.normal(0, 0.3, (N_PTS, 3)).astype(np.float32)
        p64 = rng.integers(0, 256, (16384, 3), dtype=np.uint8)
        rec = {  # values are functions of their points and of the shape number: alignment is checkable
            "uniform_points": up, "uniform_sdf": up.sum(1) + 10 * s, "uniform_occupancy": (up[:, 0] > 0),
            "near_points": near, "near_sdf": near[:, 0] * 2 + 10 * s, "near_occupancy": near[:, 1] > 0,
            "surface_points": near, "surface_normals": near * 2,
            "sdf_grid": np.full((32, 32, 32), s, np.float32), "world2grid": np.eye(4, dtype=np.float32) * s,
            "depth": rng.uniform(0.5, 3.0, (20, 40, 40)).astype(np.float32),
            "voxels": (rng.random((64, 64, 64)) < 0.3).astype(np.uint8),
            "points_64": p64, "values_64": ((p64[:, :1].astype(int) + s) % 2).astype(np.uint8),
        }
        src.write(f"shape{s}", rec, {"class": "c", "split": "train", "model_id": f"m{s}", "source": f"s{s}.obj"})
    src.build_index()
    out = tmp_path_factory.mktemp("packed") / "p"
    pack_store(src, out, depth_size=24, progress=False)
    return src, ShapeStore(out)


def test_resize_is_the_models_resize():
    x = np.random.default_rng(1).uniform(0, 3, (2, 3, 40, 40)).astype(np.float32)
    for size in (24, 17, 64):
        ref = np.asarray(jax.image.resize(jnp.asarray(x), (2, 3, size, size), method="linear", antialias=False))
        np.testing.assert_allclose(resize_bilinear(x, size), ref, atol=1e-5)


def test_pack_keeps_every_row_and_value(stores):
    src, dst = stores
    assert dst.layout()["shuffled_groups"] == sorted(SHUFFLED_GROUPS) and src.layout() == {}
    assert dst.ids() == src.ids() and dst.ids("train") == src.ids("train")
    for sid in src.ids():
        a, b = src.attrs(sid), dst.attrs(sid)
        assert a == b
        with src.open(sid) as f, dst.open(sid) as g:
            assert sorted(f.keys()) == sorted(g.keys())
            for name in f.keys():
                x, y = f[name][()], g[name][()]
                assert g[name].compression is None and g[name].chunks is None  # contiguous
                if name == "depth":
                    assert y.dtype == np.float16 and y.shape == (20, 24, 24)
                    np.testing.assert_allclose(y, resize_bilinear(x, 24), rtol=1e-3)
                elif any(name in group for group in SHUFFLED_GROUPS.values()):
                    assert not np.array_equal(x, y)  # shuffled ...
                    order_x, order_y = np.lexsort(np.atleast_2d(x.T)), np.lexsort(np.atleast_2d(y.T))
                    np.testing.assert_array_equal(x[order_x], y[order_y])  # ... but the same rows
                else:
                    np.testing.assert_array_equal(x, y)
            # aligned: every set's datasets were shuffled together
            np.testing.assert_allclose(g["uniform_sdf"][()], g["uniform_points"][()].sum(1) + 10 * int(sid[5:]),
                                       rtol=1e-6)
    entry = dst.entries()[0]
    assert set(entry["direct"]) == set(entry["arrays"])  # every dataset readable by offset
    assert "direct" not in src.entries()[0]


def test_pack_is_deterministic_and_resumes(stores, tmp_path):
    src, dst = stores
    again = tmp_path / "again"
    pack_store(src, again, depth_size=24, progress=False)
    for sid in src.ids():
        assert (again / "shapes" / f"{sid}.h5").read_bytes() == dst.path(sid).read_bytes()
    os.remove(again / "shapes" / "shape3.h5")
    info = pack_store(src, again, depth_size=24, progress=False)
    assert info["packed"] == 1 and (again / "shapes" / "shape3.h5").read_bytes() == dst.path("shape3").read_bytes()
    with pytest.raises(ValueError, match="other settings"):
        pack_store(src, again, depth_size=32, progress=False)
    with pytest.raises(ValueError, match="packed already"):
        pack_store(dst, tmp_path / "twice", progress=False)


def test_packed_reads_are_windows_of_the_stored_order(stores):
    _, dst = stores
    ld = ldif_loader(dst, split=None, batch_size=4, n_uniform=256, n_near=128, seed=3, cache_mb=0)
    assert ld.point_mode_of("uniform") == "window"
    for b in list(ld.iterate(0)):
        for row, i in enumerate(b["shape_index"]):
            stored = dst.read(ld.ids[int(i)], "uniform_points")
            hits = np.flatnonzero((stored == b["uniform_points"][row][0]).all(1))
            assert len(hits) == 1
            np.testing.assert_array_equal(stored[hits[0]:hits[0] + 256], b["uniform_points"][row])
        assert b["depth"].dtype == np.float16 and b["depth"].shape == (4, 20, 24, 24)


def test_pread_and_h5py_give_the_same_batches(stores):
    _, dst = stores
    fast = ldif_loader(dst, split=None, batch_size=4, inputs="surface", n_surface=500, seed=2, cache_mb=0)
    slow = ldif_loader(dst, split=None, batch_size=4, inputs="surface", n_surface=500, seed=2, cache_mb=0)
    slow._direct = {}
    for e in range(2):
        for b in range(len(fast)):
            x, y = fast.batch(e, b), slow.batch(e, b)
            assert sorted(x) == sorted(y)
            for k in x:
                np.testing.assert_array_equal(x[k], y[k])


def _copy(store: ShapeStore, tmp_path) -> Path:
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(store.root, copy)
    return copy


def test_truncated_packed_record_is_named(stores, tmp_path):
    copy = _copy(stores[1], tmp_path)
    ld = imnet_loader(copy, split=None, batch_size=8, points=1024, cache_mb=0, shuffle=False)
    rec = copy / "shapes" / "shape5.h5"
    with open(rec, "r+b") as f:
        f.truncate(os.path.getsize(rec) // 2)
    with pytest.raises(RecordError, match="shape5.h5"):
        ld.batch(0, 0)


def _equal_batches(a: StoreLoader, b: StoreLoader, epochs=(0, 1)) -> None:
    for e in epochs:
        xs, ys = list(a.iterate(e)), list(b.iterate(e))
        assert len(xs) == len(ys) == len(a)
        for x, y in zip(xs, ys):
            assert sorted(x) == sorted(y)
            for k in x:
                np.testing.assert_array_equal(x[k], y[k])


def test_worker_processes_give_the_same_batches(stores):
    src, dst = stores

    def post(b):
        return {**b, "double": b["uniform_points"] * 2}  # a closure: runs in this process

    for store in (src, dst):
        kw = dict(split=None, batch_size=2, n_uniform=64, n_near=64, seed=4, postprocess=post)
        threads = ldif_loader(store, **kw)
        procs = ldif_loader(store, workers=2, **kw)
        try:
            _equal_batches(threads, procs)
            rest = list(procs.iterate(1, start=2))  # resume inside an epoch
            _equal_batches_list(rest, list(threads.iterate(1, start=2)))
            pids = [p.pid for p in procs._pool._pool]
            assert len(pids) == 2 and os.getpid() not in pids
        finally:
            procs.close()


def _shared_blocks() -> set[str]:
    return {n for n in os.listdir("/dev/shm") if n.startswith("psm_")} if os.path.isdir("/dev/shm") else set()


def test_worker_batches_travel_in_shared_memory_and_leave_none_behind(stores):
    from impax.data import transport

    batch = {"a": np.arange(10, dtype=np.float16).reshape(2, 5), "b": np.ones((3, 1, 7), np.uint8), "n": 3}
    msg = transport.share(batch)
    assert isinstance(msg, transport.Shared) and msg.other == {"n": 3}
    back = transport.receive(msg)
    assert back.keys() == batch.keys() and back["n"] == 3
    for k in ("a", "b"):
        assert back[k].dtype == batch[k].dtype
        np.testing.assert_array_equal(back[k], batch[k])
    with pytest.raises(FileNotFoundError):  # received once: the block is gone
        transport.receive(msg)

    before = _shared_blocks()
    ld = ldif_loader(stores[1], split=None, batch_size=2, n_uniform=64, n_near=64, workers=2, prefetch=2)
    try:
        it = ld.iterate(0)
        next(it)  # the other reads of this epoch are in flight ...
        it.close()  # ... and abandoned
        assert len(list(ld.iterate(1))) == len(ld)
    finally:
        ld.close()
    assert _shared_blocks() == before


def _equal_batches_list(xs, ys) -> None:
    assert len(xs) == len(ys)
    for x, y in zip(xs, ys):
        for k in x:
            np.testing.assert_array_equal(x[k], y[k])


def test_a_worker_error_names_the_file(stores, tmp_path):
    copy = _copy(stores[0], tmp_path)
    ld = imnet_loader(copy, split=None, batch_size=8, points=1024, cache_mb=0, workers=1, shuffle=False)
    (copy / "shapes" / "shape2.h5").write_bytes(b"not hdf5" * 10)
    try:
        with pytest.raises(RecordError, match="shape2.h5"):
            list(ld.iterate(0))
    finally:
        ld.close()


def test_process_shards_are_the_blocks_of_the_global_batch(stores):
    src, dst = stores
    from impax.data.loader import process_rows

    for store in (src, dst):
        kw = dict(split=None, batch_size=4, n_uniform=64, n_near=64, seed=9, cache_mb=0)
        whole = ldif_loader(store, **kw)
        parts = [ldif_loader(store, shard=(i, 2), **kw) for i in range(2)]
        assert parts[0].process_local and parts[0].local_batch_size == 2
        for e in range(2):
            for b in range(len(whole)):
                full = whole.batch(e, b)
                for i, part in enumerate(parts):
                    mine = part.batch(e, b)
                    for k in full:
                        np.testing.assert_array_equal(mine[k], full[k][process_rows(4, i, 2)])
    with pytest.raises(ValueError, match="multiple of 3"):
        ldif_loader(src, split=None, batch_size=4, shard=(0, 3))


def test_voxels_stay_uint8_to_the_device(stores):
    _, dst = stores
    b = imnet_loader(dst, split=None, batch_size=2, points=1024, cache_mb=0).batch(0, 0)
    assert b["voxels"].dtype == np.uint8 and b["voxels"].shape == (2, 64, 64, 64, 1)
    assert b["points"].dtype == np.float32


def test_default_cache_is_a_quarter_of_available_memory():
    with open("/proc/meminfo") as f:
        avail = next(int(line.split()[1]) for line in f if line.startswith("MemAvailable:")) / 1024
    assert 0.2 * avail < default_cache_mb() < 0.3 * avail


def test_pack_command_line(stores, tmp_path):
    src, _ = stores
    res = subprocess.run([sys.executable, "-m", "impax", "pack", str(src.root), str(tmp_path / "o"), "--quiet",
                          "--compression", "lzf", "--depth-size", "0"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert "packed 8 record(s)" in res.stdout
    info = json.loads((tmp_path / "o" / "pack.json").read_text())
    assert info["compression"] == "lzf" and info["depth_size"] is None
    with h5py.File(tmp_path / "o" / "shapes" / "shape0.h5") as f:
        assert f["depth"].dtype == np.float32 and f["depth"].shape == (20, 40, 40)
        assert f["uniform_points"].compression == "lzf"
    bad = subprocess.run([sys.executable, "-m", "impax", "pack", str(tmp_path / "nothing"), str(tmp_path / "x")],
                         capture_output=True, text=True)
    assert bad.returncode != 0 and len(bad.stderr.strip().splitlines()) == 1
