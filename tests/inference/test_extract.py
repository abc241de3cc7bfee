"""Multi-resolution extraction against dense marching cubes, closed forms and the LDIF fixtures.

Precision: the tolerances here assume exact float32, i.e. the CPU backend tests/conftest.py pins; on a
GPU run with JAX_DEFAULT_MATMUL_PRECISION=highest (TF32 otherwise; docs/gpu.md).
"""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from impax.conventions import LDIF_EXTRACT_HALF, LDIF_ISO_LEVEL, Transform, ldif_grid_index_to_world
from impax.geometry.mesh_io import save_mesh as write_mesh
from impax.inference.extract import batch_buckets, dense_grid, extract_dense, extract_mesh, warm_up


def sphere_box_sdf(p: np.ndarray) -> np.ndarray:
    """Union of a sphere and a box, exact signed distance outside (Lipschitz 1); no sub-cell features."""
    p = np.asarray(p, dtype=np.float64)
    s = np.linalg.norm(p - [0.1, 0.0, 0.0], axis=1) - 0.3
    q = np.abs(p - [-0.15, 0.05, 0.02]) - [0.12, 0.2, 0.15]
    b = np.linalg.norm(np.maximum(q, 0), axis=1) + np.minimum(q.max(axis=1), 0)
    return np.minimum(s, b).astype(np.float32)


def sorted_rows(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    return a[np.lexsort(a.T[::-1])]


def nn_mean_sq(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.spatial import cKDTree

    d, _ = cKDTree(b).query(a)
    return float(np.mean(d ** 2))


@pytest.mark.parametrize("res", [128, 256])
def test_multires_equals_dense(res):
    multi = extract_mesh(sphere_box_sdf, res, coarse=32, level=0.0, half=0.5)
    dense = extract_dense(sphere_box_sdf, res, level=0.0, half=0.5)
    assert dense.queries == (res + 1) ** 3
    assert multi.queries < dense.queries
    assert multi.mesh.vertices.shape == dense.mesh.vertices.shape
    assert len(multi.mesh.faces) == len(dense.mesh.faces) > 1000
    # Chamfer-L2 relative to the box side (1.0) between the two meshes' vertices
    va, vd = np.asarray(multi.mesh.vertices), np.asarray(dense.mesh.vertices)
    assert nn_mean_sq(va, vd) + nn_mean_sq(vd, va) <= 1e-6
    np.testing.assert_allclose(sorted_rows(va), sorted_rows(vd), atol=1e-6)
    if res == 256:
        assert multi.query_fraction <= 0.15, multi.levels


def test_dense_grid_node_convention():
    g = dense_grid(lambda p: p[:, 0] + 10 * p[:, 1] + 100 * p[:, 2], 4, half=1.0, batch_size=7)
    x = np.linspace(-1, 1, 5)
    ref = x[:, None, None] + 10 * x[None, :, None] + 100 * x[None, None, :]
    np.testing.assert_allclose(g, ref, atol=1e-4)


def test_volume_and_orientation_of_sphere():
    r = 0.35
    res = extract_mesh(lambda p: np.linalg.norm(p, axis=1) - r, 128, coarse=32)
    assert res.mesh.is_watertight
    assert res.mesh.volume == pytest.approx(4 / 3 * np.pi * r ** 3, rel=2e-3)  # positive: outward faces
    np.testing.assert_allclose(np.linalg.norm(res.mesh.vertices, axis=1), r, atol=2e-4)


def test_occupancy_inside_above_imnet_style():
    """IM-NET convention: occupancy in [0, 1], inside where o > 0.5."""
    r = 0.3

    def occ(p):
        return 1.0 / (1.0 + np.exp((np.linalg.norm(p, axis=1) - r) / 0.01))

    res = extract_mesh(occ, 64, coarse=32, level=0.5, inside="above")
    assert res.mesh.volume == pytest.approx(4 / 3 * np.pi * r ** 3, rel=1e-2)
    assert res.mesh.volume > 0


def _thin_plate_sdf(p):
    """A sphere plus a detached plate 0.01 thick (under a third of a 1/32 coarse cell) between coarse nodes."""
    p = np.asarray(p, dtype=np.float64)
    s = np.linalg.norm(p - [-0.2, 0, 0], axis=1) - 0.2
    c = np.array([0.25, 0.0, 0.0 + 1.5 / 32])  # plate normal along z, centred mid-way between coarse nodes
    q = np.abs(p - c) - [0.15, 0.3, 0.005]
    b = np.linalg.norm(np.maximum(q, 0), axis=1) + np.minimum(q.max(axis=1), 0)
    return np.minimum(s, b).astype(np.float32)


def test_thin_feature_recovered_by_default_margin():
    from impax.evaluation.metrics import iou_uniform

    dense = extract_dense(_thin_plate_sdf, 128)
    default = extract_mesh(_thin_plate_sdf, 128, coarse=32)  # the default safety margin
    lipschitz = extract_mesh(_thin_plate_sdf, 128, coarse=32, margin=0.0, lipschitz=1.0)
    without = extract_mesh(_thin_plate_sdf, 128, coarse=32, margin=0.0)  # default dilation, no margin
    iou_0 = iou_uniform(without.mesh, dense.mesh, n=200_000, seed=1)
    for with_margin in (default, lipschitz):
        assert iou_uniform(with_margin.mesh, dense.mesh, n=200_000, seed=1) >= 0.99
        assert np.sum(with_margin.mesh.vertices[:, 0] > 0.08) > 100
        assert with_margin.queries < 0.3 * dense.queries
    # without the margin the plate (5% of the volume) is lost entirely: the test can tell
    assert iou_0 < 0.97
    assert np.sum(without.mesh.vertices[:, 0] > 0.08) == 0


def _clipped_thin_plate_occupancy(p):
    """IM-NET-like output (clipped linear, exactly 0 or 1 a quarter cell away from the surface) of
    the sphere and a detached plate 0.02 thick (between 1/64 and 1/32) centred mid-way between
    32-grid nodes, i.e. on a 64-grid node."""
    p = np.asarray(p, dtype=np.float64)
    s = np.linalg.norm(p - [-0.2, 0, 0], axis=1) - 0.2
    q = np.abs(p - [0.25, 0.0, 1.5 / 32]) - [0.15, 0.3, 0.01]
    b = np.linalg.norm(np.maximum(q, 0), axis=1) + np.minimum(q.max(axis=1), 0)
    return np.clip(0.5 - np.minimum(s, b) / 0.005, 0.0, 1.0).astype(np.float32)


def test_learned_fields_start_on_imnets_64_frame_which_sees_a_plate_the_32_frame_misses():
    """A field without a Lipschitz bound (a learned occupancy) shows nothing of a part between its
    first grid's nodes; learned fields therefore start at 64³ (LEARNED_FRAME), which finds the plate
    and equals dense marching cubes, where a 32³ start loses it."""
    from impax.evaluation.metrics import iou_uniform
    from impax.inference.extract import LEARNED_FRAME, coarse_resolution

    assert coarse_resolution(128) == 32 and coarse_resolution(256) == 32
    assert coarse_resolution(128, LEARNED_FRAME) == 64 and coarse_resolution(256, LEARNED_FRAME) == 64
    assert coarse_resolution(32, LEARNED_FRAME) == 32
    kw = dict(level=0.5, inside="above")
    dense = extract_dense(_clipped_thin_plate_occupancy, 128, **kw)
    from32 = extract_mesh(_clipped_thin_plate_occupancy, 128, coarse=32, **kw)
    from64 = extract_mesh(_clipped_thin_plate_occupancy, 128, coarse=coarse_resolution(128, LEARNED_FRAME), **kw)
    assert np.sum(dense.mesh.vertices[:, 0] > 0.08) > 100  # the plate is there at 128^3
    assert np.sum(from32.mesh.vertices[:, 0] > 0.08) == 0  # and lost from a 32^3 start
    assert iou_uniform(from64.mesh, dense.mesh, n=200_000, seed=1) >= 0.99
    assert np.sum(from64.mesh.vertices[:, 0] > 0.08) > 100
    assert from64.queries < 0.3 * dense.queries


def test_jitted_fn_compiles_once_with_padding():
    import jax
    import jax.numpy as jnp

    traces = []

    def f(p):
        traces.append(p.shape)
        return jnp.linalg.norm(p, axis=1) - 0.3

    res = extract_mesh(jax.jit(f), 64, coarse=16, batch_size=5000)
    assert batch_buckets(5000) == (5000, 625, 78)
    # every batch has one of the three bucket shapes, and each shape is traced once
    assert len(traces) == len(set(traces)) and {t[0] for t in traces} <= {5000, 625, 78}
    assert res.padded_queries >= res.queries and res.calls >= res.padded_queries // 5000
    assert res.queries == sum(lv["queries"] for lv in res.levels)
    assert res.seconds > 0
    # after warm_up a second extraction traces nothing new
    traces.clear()
    g = jax.jit(lambda p: f(p))  # a new function: jit's cache does not know it yet
    warm_up(g, 5000)
    assert sorted(t[0] for t in traces) == [78, 625, 5000]
    traces.clear()
    extract_mesh(g, 64, coarse=16, batch_size=5000)
    assert traces == []


def _tilted_disk_sdf(p: np.ndarray) -> np.ndarray:
    """A 0.008-thick disk (radius 0.4) in a tilted plane: far thinner than a 16^3 cell (0.0625)."""
    p = np.asarray(p, dtype=np.float64)
    n = np.array([0.3, 0.5, 0.81])
    n /= np.linalg.norm(n)
    slab = np.abs(p @ n - 0.03) - 0.004
    ball = np.linalg.norm(p, axis=1) - 0.4
    return np.maximum(slab, ball).astype(np.float32)


def test_surface_following_recovers_what_the_coarse_grid_only_touches():
    # With no margin and no dilation the 16^3 grid sees the disk only where it passes near a
    # node; following the surface from there must recover the whole disk (as the dense grid).
    dense = extract_dense(_tilted_disk_sdf, 128)
    follow = extract_mesh(_tilted_disk_sdf, 128, coarse=16, margin=0.0, dilate=0, follow=True)
    blind = extract_mesh(_tilted_disk_sdf, 128, coarse=16, margin=0.0, dilate=0, follow=False)
    assert len(dense.mesh.faces) > 5000
    assert sum(lv.get("follow_rounds", 0) for lv in follow.levels) > 0
    assert follow.mesh.area == pytest.approx(dense.mesh.area, rel=1e-3)
    assert len(follow.mesh.faces) == len(dense.mesh.faces)
    assert blind.mesh.area < 0.9 * dense.mesh.area  # the test can tell the difference
    assert follow.queries < 0.3 * dense.queries


def test_transform_maps_back_to_original_frame():
    t = Transform.similarity(0.5, np.array([1.0, -2.0, 3.0]), source="original", target="imnet")
    res = extract_mesh(lambda p: np.linalg.norm(p, axis=1) - 0.3, 64, coarse=32, transform=t, frame="imnet")
    v = np.asarray(res.mesh.vertices)
    # x' = 0.5 (x + t): the unit-0.3 sphere at the origin of the frame is radius 0.6 at -t originally
    np.testing.assert_allclose(np.linalg.norm(v - [-1.0, 2.0, -3.0], axis=1), 0.6, atol=2e-3)
    assert res.mesh.volume > 0 and res.frame == "original"
    with pytest.raises(ValueError, match="frame mismatch"):
        extract_mesh(lambda p: np.linalg.norm(p, axis=1) - 0.3, 64, coarse=32, transform=t, frame="gaps")


def test_no_surface_and_nan_fields_give_defined_results():
    full = extract_mesh(lambda p: -np.ones(len(p)), 64, coarse=32)
    empty = extract_mesh(lambda p: np.ones(len(p)), 64, coarse=32)
    nan = extract_mesh(lambda p: np.full(len(p), np.nan), 64, coarse=32)
    for r, side in ((full, "inside"), (empty, "outside"), (nan, "outside")):
        assert r.empty and len(r.mesh.vertices) == 0
        assert "no surface" in r.message and side in r.message
    assert nan.nan_count == 33 ** 3 and "NaN" in nan.message

    def half_nan(p):  # NaN where x > 0.1: treated as outside, the sphere is cut there
        d = (np.linalg.norm(p, axis=1) - 0.3).astype(np.float32)
        d[p[:, 0] > 0.1] = np.nan
        return d

    cut = extract_mesh(half_nan, 64, coarse=32)
    assert not cut.empty and cut.nan_count > 0
    assert cut.mesh.vertices[:, 0].max() <= 0.1 + 1e-6
    assert cut.mesh.vertices[:, 0].min() == pytest.approx(-0.3, abs=2e-3)


@pytest.mark.parametrize("suffix", [".ply", ".obj", ".glb"])
def test_save_formats_roundtrip(tmp_path, suffix):
    res = extract_mesh(lambda p: np.linalg.norm(p, axis=1) - 0.3, 32, coarse=32)
    path = res.save(tmp_path / f"m{suffix}")
    back = trimesh.load(path, force="mesh")
    assert back.volume == pytest.approx(res.mesh.volume, rel=1e-4)
    empty = extract_mesh(lambda p: np.ones(len(p)), 32, coarse=32)
    path = write_mesh(empty.mesh, tmp_path / f"e{suffix}")
    assert len(trimesh.load(path, force="mesh").faces) == 0


def test_bad_arguments_are_clear():
    with pytest.raises(ValueError, match="power of two"):
        extract_mesh(lambda p: p[:, 0], 96, coarse=64)
    with pytest.raises(ValueError, match="inside"):
        extract_mesh(lambda p: p[:, 0], 64, inside="in")


# ----------------------------------------------------------------------------- LDIF fixture
def _read_sif(path):
    lines = path.read_text().split("\n")
    n = int(lines[1].split()[0])
    rows = np.array([[float(t) for t in ln.split()] for ln in lines[2:2 + n]])
    return rows


def _rot(rpy):
    r, p, y = rpy
    rx = np.array([[1, 0, 0], [0, np.cos(r), -np.sin(r)], [0, np.sin(r), np.cos(r)]])
    ry = np.array([[np.cos(p), 0, np.sin(p)], [0, 1, 0], [-np.sin(p), 0, np.cos(p)]])
    rz = np.array([[np.cos(y), -np.sin(y), 0], [np.sin(y), np.cos(y), 0], [0, 0, 1]])
    return rz @ ry @ rx


def _sif_fn(rows):
    """F(x) = sum_i c_i g_i(x) over elements and z-mirrored twins (SIF, f = 0), written from the fixture README."""

    def f(p):
        p = np.asarray(p, dtype=np.float64)
        out = np.zeros(len(p))
        for row in rows:
            c, mu, s, rpy, sym = row[0], row[1:4], row[4:7], row[7:10], row[10]
            rt = _rot(rpy).T
            for q in ([p, p * [1, 1, -1]] if sym > 0.5 else [p]):
                loc = (q - mu) @ rt.T
                g = np.exp(-0.5 * np.sum(loc ** 2 / (s ** 2 + 1e-8), axis=1))
                out += np.where(g >= 1e-4, c * g, 0.0)
        return out.astype(np.float32)

    return f


def test_sif_fixture_matches_original_kernel_mesh(ldif_fixtures):
    """LDIF-like field: our 128^3 multi-resolution mesh of test-sif.txt vs the original pipeline's mesh."""
    from impax.evaluation.metrics import point_metrics
    from impax.evaluation.sampling import area_weighted_samples

    fn = _sif_fn(_read_sif(ldif_fixtures / "test-sif.txt"))
    res = extract_mesh(fn, 128, coarse=32, level=LDIF_ISO_LEVEL, inside="below", half=LDIF_EXTRACT_HALF)
    ref = trimesh.load(ldif_fixtures / "test-sif-output.ply", process=False)
    ref.vertices = ldif_grid_index_to_world(np.asarray(ref.vertices))
    # both meshes sit on F = -0.07 up to linear-interpolation error
    assert np.median(np.abs(fn(np.asarray(ref.vertices)) - LDIF_ISO_LEVEL)) < 2e-3
    assert np.median(np.abs(fn(np.asarray(res.mesh.vertices)) - LDIF_ISO_LEVEL)) < 2e-3
    m = point_metrics(*area_weighted_samples(res.mesh, 50_000, 0), *area_weighted_samples(ref, 50_000, 0))
    # the kernel's grid nodes are offset from ours by under one cell (1.5/128 = 0.0117)
    assert m["chamfer_l1"] < 0.003
    assert m["fscore"] > 99.5
    assert m["normal_consistency"] > 0.95
    assert res.query_fraction < 0.1


def test_512_stays_under_4gib(tmp_path):
    """Peak resident memory of a 512^3 extraction, measured in a fresh process."""
    import subprocess
    import sys

    code = (
        "import resource, numpy as np\n"
        "from impax.inference.extract import extract_mesh\n"
        "r = extract_mesh(lambda p: np.linalg.norm(p, axis=1) - 0.3, 512, coarse=32)\n"
        "assert r.query_fraction < 0.05 and len(r.mesh.faces) > 100000\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    peak_gib = int(out.stdout.split()[-1]) / 1024 ** 2
    assert peak_gib < 4.0
