"""Test-time optimisation (``--refine``): it must move a wrong start towards what the input shows.

References are closed-form: a sphere seen only through its 20 depth views (SIF/LDIF), and the
decoder's own occupancy at a target code (IM-AE), so "better" is measured against the truth.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import trimesh
from flax import nnx

from impax.geometry.camera import dodecahedron_cameras
from impax.geometry.carve import depth_observations
from impax.geometry.render import render_depth
from impax.inference.refine import RefineConfig, boundary_cells, point_observations, refine_code, refine_sif
from impax.models import occnet, sif as S
from impax.models.imnet import IMNetAE
from impax.models.ldif_config import LDIF_CPU

CENTRE = np.array([0.12, -0.05, 0.04])
RADIUS = 0.28


def _iou(a, b):
    return np.count_nonzero(a & b) / max(np.count_nonzero(a | b), 1)


@pytest.fixture(scope="module")
def sphere_obs():
    mesh = trimesh.creation.icosphere(subdivisions=5, radius=RADIUS)
    mesh.apply_translation(CENTRE)
    cams = dodecahedron_cameras()
    pts, inside = depth_observations(render_depth(mesh, cams, size=64), cams, np.random.default_rng(0))
    probe = np.random.default_rng(1).uniform(-0.7, 0.7, (20000, 3)).astype(np.float32)
    return pts, inside, probe, np.linalg.norm(probe - CENTRE, axis=1) < RADIUS


def _start(latent: int):
    """A wrong start: 6 small elements clumped near the origin (as an untrained encoder gives)."""
    act = np.zeros((6, 10 + latent), np.float32)
    act[:, 0] = 0.05
    act[:, 1:4] = np.random.default_rng(2).normal(scale=0.05, size=(6, 3))
    act[:, 4:7] = -1.0
    act[:, 10:] = np.random.default_rng(3).normal(scale=0.5, size=(6, latent))
    s = S.from_activation(jnp.asarray(act), "cov", 2, latent)
    return s.as_numpy()


@pytest.mark.parametrize("ldif", [False, True])
def test_refine_sif_fits_the_sphere_its_depth_views_show(sphere_obs, ldif):
    pts, inside, probe, gt = sphere_obs
    cfg = dataclasses.replace(LDIF_CPU, hardness=20.0)
    w = None
    if ldif:
        w = {k: np.asarray(v) for k, v in occnet.init_weights(jax.random.key(0), 8, 8, 1).items()}
        w = {k: (v * 0.1 if k == "output.kernel" else v) for k, v in w.items()}
    sif = _start(8 if ldif else 0)
    dec = occnet.make_decoder_fn(w) if ldif else None

    def iou_of(s):
        return _iou(np.asarray(S.shape_function(s, jnp.asarray(probe), dec)) < -0.07, gt)

    before = iou_of(sif)
    out, stats = refine_sif(sif, w, pts, inside, cfg, RefineConfig(steps=300, learning_rate=2e-2),
                            topk=4 if ldif else 0)
    after = iou_of(out)
    assert before < 0.3
    assert after > 0.85, (before, after, stats)
    assert np.isfinite(stats["loss"])
    assert out.element_count == 6 and out.symmetric_count == 2 and (out.latents is not None) == ldif


def test_refine_code_moves_towards_the_input_voxels():
    """The input: the decoder's own 32³ occupancy at a target code; refinement from another code
    must raise the IoU with it (pooled and cell-centre observations)."""
    from impax.train.recipes.imnet import CPU, init_decoder

    cfg = dataclasses.replace(CPU, model=dataclasses.replace(CPU.model, ef_dim=4, gf_dim=8, z_dim=16))
    model = IMNetAE(cfg.model, rngs=nnx.Rngs(0))
    init_decoder(model, cfg, 0)
    dec = model.generator
    res = 32
    pts = ((np.stack(np.meshgrid(*(np.arange(res),) * 3, indexing="ij"), -1).reshape(-1, 3) + 0.5) / res - 0.5)
    occ = jax.jit(lambda z: dec(jnp.asarray(pts, jnp.float32)[None], z[None])[0])
    rng = np.random.default_rng(0)
    z_target = rng.uniform(0.2, 0.8, 16).astype(np.float32)
    # a sharp field (the output layer's kernel x3) whose 0.5 level leaves ~30% of the box inside:
    # bisect the output bias (the occupancy is monotone in it)
    last = dec.layers[-1]
    last.kernel[...] = last.kernel[...] * 3.0
    base = np.asarray(last.bias[...])
    lo, hi = -50.0, 50.0
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        last.bias[...] = jnp.asarray(base + mid)
        frac = float(np.mean(np.asarray(dec(jnp.asarray(pts, jnp.float32)[None], jnp.asarray(z_target)[None])) > 0.5))
        lo, hi = (lo, mid) if frac > 0.3 else (mid, hi)
    occ = jax.jit(lambda z: dec(jnp.asarray(pts, jnp.float32)[None], z[None])[0])
    vox = (np.asarray(occ(jnp.asarray(z_target))) > 0.5).reshape(res, res, res)
    assert 0.05 < vox.mean() < 0.95 and len(boundary_cells(vox)) > 0
    z0 = rng.uniform(0.2, 0.8, 16).astype(np.float32)
    before = _iou(np.asarray(occ(jnp.asarray(z0))).reshape(vox.shape) > 0.5, vox)
    for pooled in (False, True):
        z, stats = refine_code(dec, z0, vox, RefineConfig(steps=150, learning_rate=5e-2, batch=1024), pooled=pooled)
        after = _iou(np.asarray(occ(jnp.asarray(z))).reshape(vox.shape) > 0.5, vox)
        assert np.all((z > 0) & (z < 1))                  # stays in the encoder's output range
        assert after > before + 0.1 and after > 0.8, (pooled, before, after, stats)


def test_point_observations_and_zero_steps(rng):
    p = rng.normal(size=(100, 3)).astype(np.float32)
    n = p / np.linalg.norm(p, axis=1, keepdims=True)
    pts, inside = point_observations(p, n, rng, n_near=50, offset=0.05)
    assert pts.shape == (50, 3) and inside.sum() == 25
    with pytest.raises(ValueError, match="normals"):
        point_observations(p, None, rng)
    sif = _start(0)
    same, stats = refine_sif(sif, None, pts, inside, LDIF_CPU, RefineConfig(steps=0))
    assert same is sif and stats == {}
    with pytest.raises(ValueError, match="steps"):
        RefineConfig(steps=-1)
