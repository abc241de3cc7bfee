"""Acceptance: impax reproduces google/ldif's own kernel test vectors (shared/ldif-fixtures).

The reference meshes were made by the original CUDA kernel (128^3, [-0.75, 0.75]^3) and GAPS
``grd2msh -threshold -0.07``; their vertices are in grid-index units. The comparison metrics are
computed here with scipy cKDTree on area-weighted surface samples (an independent reference).

Precision: the tolerances here assume exact float32, i.e. the CPU backend tests/conftest.py pins; on a
GPU run with JAX_DEFAULT_MATMUL_PRECISION=highest (TF32 otherwise; docs/gpu.md).
"""

from __future__ import annotations

import numpy as np
import pytest
import trimesh
from scipy.spatial import cKDTree

from impax.commands.mesh import dense_kernel_grid_mesh
from impax.conventions import ldif_grid_index_to_world
from impax.models.occnet import make_decoder_fn
from impax.models.sif import KERNEL_SKIP_THRESHOLD, make_grid_evaluator
from impax.models.sif_format import read_occnet, read_sif


def _load(ldif_fixtures, name):
    sif = read_sif(ldif_fixtures / f"test-{name}.txt")
    dec = make_decoder_fn(read_occnet(ldif_fixtures / "extracted.occnet")) if name == "ldif" else None
    ref = trimesh.load(ldif_fixtures / f"test-{name}-output.ply", process=False)
    return sif, dec, ref


def _surface_samples(mesh: trimesh.Trimesh, n: int, seed: int) -> np.ndarray:
    """Area-weighted uniform samples written out here (barycentric formula), independent of impax."""
    rng = np.random.default_rng(seed)
    tri = np.asarray(mesh.vertices)[np.asarray(mesh.faces)]
    area = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    face = rng.choice(len(tri), size=n, p=area / area.sum())
    u, v = rng.random(n), rng.random(n)
    flip = u + v > 1
    u[flip], v[flip] = 1 - u[flip], 1 - v[flip]
    t = tri[face]
    return t[:, 0] + u[:, None] * (t[:, 1] - t[:, 0]) + v[:, None] * (t[:, 2] - t[:, 0])


@pytest.mark.parametrize("name", ["sif", "ldif"])
def test_reference_vertices_lie_on_the_level_set(ldif_fixtures, name):
    """Each reference vertex sits on a grid edge; linear interpolation of our F between the two grid
    nodes of that edge (mapped with ldif_grid_index_to_world) must give -0.07, as the anchor's check."""
    sif, dec, ref = _load(ldif_fixtures, name)
    v = np.asarray(ref.vertices, dtype=np.float64)
    v = v[np.random.default_rng(0).choice(len(v), 12000, replace=False)]
    frac = np.abs(v - np.rint(v))
    axis = np.argmax(frac, axis=1)
    assert np.sort(frac, axis=1)[:, 1].max() < 1e-6, "vertices must lie on grid edges"
    rows = np.arange(len(v))
    lo, hi = np.rint(v), np.rint(v)
    lo[rows, axis] = np.floor(v[rows, axis])
    hi[rows, axis] = np.ceil(v[rows, axis])
    t = v[rows, axis] - lo[rows, axis]
    ev = make_grid_evaluator(sif, dec, chunk=16384, skip_threshold=KERNEL_SKIP_THRESHOLD)
    f_lo = ev(ldif_grid_index_to_world(lo))
    f_hi = ev(ldif_grid_index_to_world(hi))
    err = np.abs(f_lo * (1 - t) + f_hi * t + 0.07)
    # The anchor's independent evaluator: SIF median 2e-8, LDIF median 2.5e-7 / max 2.4e-6.
    assert np.median(err) < 1e-6
    assert err.max() < 2e-5
    # The grid-index formula matters: a plain linspace over [-0.75, 0.75] is measurably off.
    wrong = lambda idx: idx / 127.0 * 1.5 - 0.75  # noqa: E731
    err_wrong = np.abs(ev(wrong(lo)) * (1 - t) + ev(wrong(hi)) * t + 0.07)
    assert np.median(err_wrong) > 20 * np.median(err)


@pytest.mark.parametrize("name", ["sif", "ldif"])
def test_meshes_match_reference(ldif_fixtures, name):
    sif, dec, ref = _load(ldif_fixtures, name)
    mesh = dense_kernel_grid_mesh(sif, dec, resolution=128, skip=True)
    assert mesh is not None and len(mesh.faces) > 1000
    ref_world = trimesh.Trimesh(ldif_grid_index_to_world(np.asarray(ref.vertices)), ref.faces, process=False)
    # Few query samples against dense samples of the other mesh, so the sampling noise of the
    # nearest-neighbour distances (~ spacing^2) stays far below the 1e-5 bound.
    d_ab = cKDTree(_surface_samples(ref_world, 400_000, 2)).query(_surface_samples(mesh, 20_000, 1))[0]
    d_ba = cKDTree(_surface_samples(mesh, 400_000, 3)).query(_surface_samples(ref_world, 20_000, 4))[0]
    tau = 0.01
    precision, recall = np.mean(d_ab <= tau), np.mean(d_ba <= tau)
    fscore = 2 * precision * recall / (precision + recall)
    chamfer_l2 = np.mean(d_ab ** 2) + np.mean(d_ba ** 2)
    assert fscore >= 0.99
    assert chamfer_l2 <= 1e-5
    # The bound is meaningful: the reference moved by one voxel (0.0117) fails it.
    shifted = _surface_samples(ref_world, 20_000, 4) + np.array([0.0117, 0.0, 0.0])
    d_shift = cKDTree(_surface_samples(mesh, 400_000, 3)).query(shifted)[0]
    assert np.mean(d_ab ** 2) + np.mean(d_shift ** 2) > 1e-5
    # Outward orientation (inside is F < -0.07): positive signed volume, close to the reference's.
    assert mesh.volume > 0
    assert abs(mesh.volume - abs(ref_world.volume)) < 0.02 * abs(ref_world.volume)
