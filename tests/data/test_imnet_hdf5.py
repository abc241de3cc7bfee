"""IM-NET HDF5 layout: exact names/shapes/dtypes of the official files, round trip, lazy reader."""

from __future__ import annotations

import h5py
import numpy as np

from impax.data.imnet_hdf5 import (IMNetHdf5, IMNetHdf5Writer, check_layout, names_path,
                                   points_to_coords, write_imnet_hdf5)

# The official all_vox256_img_*.hdf5 layout ([I] 2_gather_256vox_16_32_64.py + 3_gather_img.py).
OFFICIAL = {
    "voxels": (64, 64, 64, 1), "points_16": (4096, 3), "values_16": (4096, 1),
    "points_32": (4096, 3), "values_32": (4096, 1), "points_64": (16384, 3), "values_64": (16384, 1),
    "pixels": (24, 137, 137),
}


def _random_shapes(n, rng):
    vox = rng.integers(0, 2, (n, 64, 64, 64, 1), dtype=np.uint8)
    pts = {lv: rng.integers(0, 256, (n, OFFICIAL[f"points_{lv}"][0], 3), dtype=np.uint8) for lv in (16, 32, 64)}
    val = {lv: rng.integers(0, 2, (n, OFFICIAL[f"values_{lv}"][0], 1), dtype=np.uint8) for lv in (16, 32, 64)}
    pix = rng.integers(0, 256, (n, 24, 137, 137), dtype=np.uint8)
    return vox, pts, val, pix


def test_written_file_has_official_layout_and_round_trips(tmp_path, rng):
    n = 3
    vox, pts, val, pix = _random_shapes(n, rng)
    names = [f"03001627/model{i:03d}" for i in range(n)]
    path = write_imnet_hdf5(tmp_path / "all_vox256_img_train.hdf5", names, vox, pts, val, pix)
    with h5py.File(path, "r") as f:
        assert sorted(f.keys()) == sorted(OFFICIAL)
        for key, shape in OFFICIAL.items():
            assert f[key].shape == (n, *shape), key
            assert f[key].dtype == np.uint8, key
    assert check_layout(path, require_pixels=True) == []
    assert names_path(path).read_text() == "".join(s + "\n" for s in names)
    with IMNetHdf5(path) as r:
        assert len(r) == n and r.names == names and r.levels == (16, 32, 64) and r.has_pixels
        np.testing.assert_array_equal(r.voxels(slice(None)), vox)
        np.testing.assert_array_equal(r.pixels(1), pix[1])
        for lv in (16, 32, 64):
            np.testing.assert_array_equal(r.points(lv, 2), pts[lv][2])
            np.testing.assert_array_equal(r.values(lv, slice(0, 2)), val[lv][:2])
        # IM-NET-pytorch's reading: (p + 0.5) / 256 - 0.5
        np.testing.assert_allclose(points_to_coords(r.points(64, 0)), (pts[64][0].astype(np.float64) + 0.5) / 256 - 0.5)


def test_reader_accepts_official_like_file_without_pixels_and_with_extras(tmp_path, rng):
    """A file laid out as the official ones (plain h5py, extra dataset, no pixels, no .txt)."""
    n = 2
    vox, pts, val, _ = _random_shapes(n, rng)
    path = tmp_path / "official_like.hdf5"
    with h5py.File(path, "w") as f:
        f.create_dataset("voxels", data=vox)
        for lv in (16, 32, 64):
            f.create_dataset(f"points_{lv}", data=pts[lv])
            f.create_dataset(f"values_{lv}", data=val[lv])
        f.create_dataset("zs", data=np.zeros((n, 256), np.float32))  # unknown extra dataset
    assert check_layout(path) == []
    assert check_layout(path, require_pixels=True) == ["missing dataset 'pixels'"]
    with IMNetHdf5(path) as r:
        assert not r.has_pixels and r.names == ["0", "1"] and r.levels == (16, 32, 64)
        np.testing.assert_array_equal(r.values(32, 1), val[32][1])


def test_incremental_writer_is_deterministic(tmp_path, rng):
    vox, pts, val, pix = _random_shapes(2, rng)
    blobs = []
    for k in range(2):
        p = tmp_path / f"f{k}.hdf5"
        with IMNetHdf5Writer(p, pixels=False) as w:
            for i in range(2):
                w.append(f"c/{i}", vox[i, ..., 0].astype(bool), {lv: pts[lv][i] for lv in (16, 32, 64)},
                         {lv: val[lv][i, :, 0] for lv in (16, 32, 64)})
        blobs.append(p.read_bytes())
    assert blobs[0] == blobs[1]
    assert check_layout(tmp_path / "f0.hdf5") == []
