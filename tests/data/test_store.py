"""Per-shape store: atomic deterministic records, lazy reads, index, export to IM-NET HDF5."""

from __future__ import annotations

import json
import time

import h5py
import numpy as np
import pytest

from impax.conventions import Transform
from impax.data.imnet_hdf5 import IMNetHdf5, check_layout
from impax.data.store import ShapeStore, export_imnet_hdf5, file_sha256


def _record(rng, n=5000):
    return {
        "uniform_points": rng.uniform(-0.7, 0.7, (n, 3)).astype(np.float32),
        "uniform_sdf": rng.normal(size=n).astype(np.float32),
        "uniform_occupancy": rng.integers(0, 2, n).astype(bool),
        "voxels": rng.integers(0, 2, (64, 64, 64), dtype=np.uint8),
        "points_16": rng.integers(0, 256, (4096, 3), dtype=np.uint8),
        "values_16": rng.integers(0, 2, (4096, 1), dtype=np.uint8),
        "points_32": rng.integers(0, 256, (4096, 3), dtype=np.uint8),
        "values_32": rng.integers(0, 2, (4096, 1), dtype=np.uint8),
        "points_64": rng.integers(0, 256, (16384, 3), dtype=np.uint8),
        "values_64": rng.integers(0, 2, (16384, 1), dtype=np.uint8),
        "views": rng.integers(0, 256, (24, 137, 137), dtype=np.uint8),
    }


def _attrs(cls, split, model):
    t = Transform.similarity(0.5, np.array([1.0, 2.0, 3.0]))
    return {"class": cls, "split": split, "model_id": model, "source": f"{cls}/{model}.obj",
            "imnet_transform": t, "gaps_transform": t.inverse().inverse(), "config": {"a": 1}}


def test_record_roundtrip_partial_reads_and_determinism(tmp_path, rng):
    rec = _record(rng)
    s1, s2 = ShapeStore(tmp_path / "a"), ShapeStore(tmp_path / "b")
    p1 = s1.write("chair_m1", rec, _attrs("chair", "train", "m1"))
    time.sleep(1.1)  # a timestamp anywhere in the file would now differ
    p2 = s2.write("chair_m1", rec, _attrs("chair", "train", "m1"))
    assert p1.read_bytes() == p2.read_bytes()
    assert not list(p1.parent.glob("*.tmp"))
    np.testing.assert_array_equal(s1.read("chair_m1", "uniform_sdf"), rec["uniform_sdf"])
    np.testing.assert_array_equal(s1.read("chair_m1", "uniform_points", slice(100, 200)), rec["uniform_points"][100:200])
    idx = np.array([4999, 3, 3, 1234, 0])
    np.testing.assert_array_equal(s1.read("chair_m1", "uniform_points", idx), rec["uniform_points"][idx])
    sub = rng.choice(5000, 100, replace=False)  # sparse subset: the h5py selection path
    np.testing.assert_array_equal(s1.read("chair_m1", "uniform_sdf", sub), rec["uniform_sdf"][sub])
    assert s1.read("chair_m1", "uniform_occupancy").dtype == np.uint8
    a = s1.attrs("chair_m1")
    assert a["class"] == "chair" and a["shape_id"] == "chair_m1" and a["config"] == {"a": 1}
    np.testing.assert_allclose(a["imnet_transform"].as_matrix(), _attrs("c", "s", "m")["imnet_transform"].as_matrix())
    with h5py.File(p1, "r") as f:  # chunked + compressed
        assert f["uniform_points"].compression == "gzip" and f["uniform_points"].chunks is not None


def test_index_and_export(tmp_path, rng):
    store = ShapeStore(tmp_path / "store")
    recs = {}
    for cls, model, split in [("chair", "b", "train"), ("plane", "a", "train"), ("chair", "c", "test")]:
        recs[f"{cls}_{model}"] = _record(rng, 100)
        store.write(f"{cls}_{model}", recs[f"{cls}_{model}"], _attrs(cls, split, model))
    index = store.build_index()
    on_disk = json.loads((tmp_path / "store" / "index.json").read_text())
    assert on_disk == index and index["count"] == 3 and index["splits"] == {"test": 1, "train": 2}
    assert [e["id"] for e in index["shapes"]] == ["chair_b", "chair_c", "plane_a"]
    e = index["shapes"][0]
    assert e["arrays"]["uniform_points"] == [100, 3] and e["sha256"] == file_sha256(store.path("chair_b"))
    assert ShapeStore(tmp_path / "store").ids("train") == ["chair_b", "plane_a"]

    out = export_imnet_hdf5(store, "train", tmp_path / "all_vox256_img_train.hdf5")
    assert check_layout(out, require_pixels=True) == []
    with IMNetHdf5(out) as r:
        assert r.names == ["chair/b", "plane/a"]
        np.testing.assert_array_equal(r.voxels(1)[..., 0], recs["plane_a"]["voxels"])
        np.testing.assert_array_equal(r.points(64, 0), recs["chair_b"]["points_64"])
        np.testing.assert_array_equal(r.pixels(0), recs["chair_b"]["views"])


def test_export_without_official_views_leaves_out_pixels(tmp_path, rng):
    store = ShapeStore(tmp_path / "store")
    rec = _record(rng, 10)
    rec["views"] = rec["views"][:4]  # a quick run's 4 views: not the official 24
    store.write("c_m", rec, _attrs("c", "train", "m"))
    store.build_index()
    out = export_imnet_hdf5(store, "train", tmp_path / "x.hdf5")
    assert check_layout(out) == [] and not IMNetHdf5(out).has_pixels
    with pytest.raises(ValueError, match="views"):
        export_imnet_hdf5(store, "train", tmp_path / "y.hdf5", pixels=True)


def test_data_kind_tells_a_store_from_an_imnet_hdf5_file(tmp_path):
    from impax.data.store import data_kind

    (tmp_path / "store").mkdir()
    (tmp_path / "store" / "index.json").write_text("{}")
    (tmp_path / "f.hdf5").write_bytes(b"")
    (tmp_path / "f.txt").write_text("")
    assert data_kind(tmp_path / "store") == "store" and data_kind(tmp_path / "f.hdf5") == "hdf5"
    assert data_kind(tmp_path / "f.txt") is None and data_kind(tmp_path / "missing") is None
    with pytest.raises(FileNotFoundError, match="neither a prepared store"):
        data_kind(tmp_path / "f.txt", strict=True)
