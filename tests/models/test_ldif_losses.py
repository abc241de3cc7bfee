"""Loss terms against numpy formulas on small inputs; presets against the original hparams.

Precision: the tolerances here assume exact float32, i.e. the CPU backend tests/conftest.py pins; on a
GPU run with JAX_DEFAULT_MATMUL_PRECISION=highest (TF32 otherwise; docs/gpu.md).
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np
import pytest
from scipy.ndimage import map_coordinates

from impax.models import ldif_losses as L
from impax.models.ldif_config import LDIF, PRESETS, SIF, SIF_PLUS_PLUS, preset


def test_presets_reproduce_original_configs():
    assert (LDIF.element_count, LDIF.symmetric_count, LDIF.latent_size, LDIF.radius_type) == (32, 16, 32, "cov")
    assert LDIF.effective_element_count == 48 and LDIF.element_count * (10 + 32) == 1344
    assert (SIF_PLUS_PLUS.element_count, SIF_PLUS_PLUS.symmetric_count, SIF_PLUS_PLUS.latent_size) == (32, 16, 0)
    assert (SIF.element_count, SIF.symmetric_count, SIF.radius_type, SIF.latent_size) == (100, 0, "aa", 0)
    assert SIF.element_count * SIF.explicit_dof == 700 and SIF.image_count == 1 and SIF.encoder == "cnn"
    assert (SIF.loss, SIF.inside_weight, SIF.sample_count, SIF.batch_size) == ("unsec", 10.0, 3000, 16)
    assert L.active_terms(LDIF.loss) == ("u", "ns", "gi", "bb")
    assert L.active_terms(SIF.loss) == ("u", "ns", "ec")
    assert preset("ldif-cpu").latent_size == 32 and set(PRESETS) >= {"sif", "sif++", "ldif"}
    with pytest.raises(ValueError):
        preset("nope")


def test_sample_losses(rng):
    f = rng.normal(scale=0.05, size=(2, 40)).astype(np.float32) - 0.07
    sdf = rng.normal(size=(2, 40)).astype(np.float32)
    cls = (sdf > 0).astype(np.float64)
    p = 1 / (1 + np.exp(-100 * (f.astype(np.float64) + 0.07)))
    for cfg in (LDIF, SIF):
        w = np.where(cls > 0.5, 1.0, cfg.inside_weight)
        base = np.mean(w * (p - cls) ** 2)
        np.testing.assert_allclose(float(L.uniform_sample_loss(cfg, jnp.asarray(f), jnp.asarray(sdf))),
                                   cfg.uniform_weight * base, rtol=1e-5)
        np.testing.assert_allclose(float(L.near_surface_sample_loss(cfg, jnp.asarray(f), jnp.asarray(sdf))),
                                   0.1 * base, rtol=1e-5)


def test_box_and_center_losses(rng):
    mu = rng.uniform(-1, 1, size=(2, 5, 3)).astype(np.float32)
    err = np.maximum(-0.7 - mu, 0) ** 2 + np.maximum(mu - 0.7, 0) ** 2
    np.testing.assert_allclose(float(L.bounding_box_loss(LDIF, jnp.asarray(mu))), 10 * err.mean(), rtol=1e-5)
    np.testing.assert_allclose(float(L.center_magnitude_loss(SIF, jnp.asarray(mu))),
                               0.1 * np.mean((mu + 1e-4) ** 2) + 1e-5, rtol=1e-5)
    cls = rng.uniform(size=(2, 5)).astype(np.float32)
    lo, hi = np.full((2, 3), -0.5, np.float32), np.full((2, 3), 0.6, np.float32)
    e = (np.maximum(lo[:, None] - mu, 0) ** 2 + np.maximum(mu - hi[:, None], 0) ** 2).mean(-1)
    want = np.mean(0.01 * (e <= 0) * cls ** 2 + 10 * e)
    got = L.element_center_loss(SIF, jnp.asarray(mu), jnp.asarray(cls), jnp.asarray(lo), jnp.asarray(hi))
    np.testing.assert_allclose(float(got), want, rtol=1e-5)


def test_grid_inside_loss_trilinear(rng):
    grid = rng.normal(scale=0.1, size=(1, 32, 32, 32)).astype(np.float32)
    w2g = np.eye(4, dtype=np.float32)
    w2g[:3, :3] *= 1 / 0.044
    w2g[:3, 3] = 0.7 / 0.044 - 0.5  # GAPS-style: cell centres of [-0.7, 0.7]^3
    mu = rng.uniform(-0.65, 0.65, size=(1, 20, 3)).astype(np.float32)
    mu[0, 0] = [0.9, 0.0, 0.0]  # outside the grid: value 1e-5
    got = np.asarray(L.interpolate_grid(jnp.asarray(grid), jnp.asarray(mu), jnp.asarray(w2g)))
    idx = (mu[0] @ w2g[:3, :3].T + w2g[:3, 3]).T          # (i, j, k) = (x, y, z) grid coordinates
    want = map_coordinates(grid[0].astype(np.float64), idx[::-1], order=1)   # grid is [z, y, x]
    want[0] = 1e-5
    np.testing.assert_allclose(got[0], want, atol=2e-5)
    s = np.where(want > 0.044, want, 0.0)
    np.testing.assert_allclose(float(L.grid_inside_loss(LDIF, jnp.asarray(mu), jnp.asarray(grid), jnp.asarray(w2g))),
                               np.mean((s + 1e-4) ** 2) + 1e-5, rtol=1e-4)
    cfg = dataclasses.replace(LDIF, grid_inside_weight=0.0)
    assert float(L.grid_inside_loss(cfg, jnp.asarray(mu), jnp.asarray(grid), jnp.asarray(w2g))) == pytest.approx(1e-5)


def test_gi_interpolation_of_prepared_grid_matches_mesh_sdf(rng):
    """The gi loss reads the coarse grid exactly as ``impax prepare`` stores it (``sdf_grid``: [z, y, x]).

    Reference: the mesh's own signed distance at random points (not at the grid nodes). The box is
    asymmetric (different extents per axis, off-centre), so reading the grid with swapped axes fails.
    """
    import trimesh

    from impax.geometry.inside import signed_distance
    from impax.geometry.voxels import sdf_grid

    box = trimesh.creation.box(extents=(0.9, 0.5, 0.24))
    box.apply_translation((0.12, -0.06, 0.03))
    grid, w2g = sdf_grid(box, 32, 0.7)
    pts = rng.uniform(-0.6, 0.6, size=(1, 400, 3)).astype(np.float32)
    want = signed_distance(box, pts[0])

    def interp(g):
        return np.asarray(L.interpolate_grid(jnp.asarray(g[None]), jnp.asarray(pts), jnp.asarray(w2g)))[0]

    err = np.abs(interp(grid) - want)
    assert err.mean() < 2e-3 and err.max() < 0.02, (err.mean(), err.max())
    swapped = np.abs(interp(np.ascontiguousarray(grid.transpose(2, 1, 0))) - want)
    assert swapped.mean() > 10 * err.mean()
    # and the loss uses that lookup: one centre deep outside the box (s > igt) is penalised by s^2
    mu = np.array([[[-0.55, 0.5, -0.5]]], np.float32)
    s = float(signed_distance(box, mu[0])[0])
    got = float(L.grid_inside_loss(LDIF, jnp.asarray(mu), jnp.asarray(grid[None]), jnp.asarray(w2g)))
    assert got == pytest.approx((s + 1e-4) ** 2 + 1e-5, rel=0.05)
