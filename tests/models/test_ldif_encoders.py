"""Encoder output shapes and parameter counts per preset; local views against a numpy reference.

Precision: the tolerances here assume exact float32, i.e. the CPU backend tests/conftest.py pins; on a
GPU run with JAX_DEFAULT_MATMUL_PRECISION=highest (TF32 otherwise; docs/gpu.md).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from impax.models import sif as S
from impax.models.ldif_config import LDIF, LDIF_CPU, SIF
from impax.models.ldif_encoders import (DepthEncoder, LocalPointEncoder, PointCloudEncoder, local_views_of_shape)


def _count(module) -> int:
    return sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(nnx.state(module, nnx.Param)))


def _resnet50v2_params(cin: int, classes: int) -> int:
    """Closed-form count: conv kernels k*k*cin*cout (+bias where the original has one), BN 2 per channel."""
    n = 7 * 7 * cin * 64 + 64
    c = 64
    for depth, bott, units, _ in ((256, 64, 3, 2), (512, 128, 4, 2), (1024, 256, 6, 2), (2048, 512, 3, 1)):
        for _ in range(units):
            n += 2 * c                                     # pre-activation BN
            if c != depth:
                n += c * depth + depth                     # projection shortcut
            n += c * bott + 2 * bott + 9 * bott * bott + 2 * bott + bott * depth + depth
            c = depth
    return n + 2 * c + c * classes + classes


def _fc(i, o):
    return i * o + o


def test_ldif_depth_encoder_full_size_parameters():
    model = nnx.eval_shape(lambda: DepthEncoder(LDIF, rngs=nnx.Rngs(0)))
    want = _resnet50v2_params(20, 2048) + _fc(2048, 2048) * 2 + _fc(2048, 32 * 10)
    assert _count(model) == want
    assert 35e6 < want < 40e6
    out = jax.eval_shape(lambda m, x: m(x), model, jax.ShapeDtypeStruct((2, 20, 137, 137), jnp.float32))
    assert out.shape == (2, 32, 10)


def _simple_cnn_params(cin, size, feat):
    n, c, s = 0, cin, size
    for d in (16, 32, 64, 128, 128):
        n += 9 * c * d + d
        c, s = d, -(-s // 2)
    return n + _fc(s * s * c, feat)


def test_sif_encoder_parameters_and_shape():
    model = nnx.eval_shape(lambda: DepthEncoder(SIF, rngs=nnx.Rngs(0)))
    want = _simple_cnn_params(1, 137, 1024) + _fc(1024, 2048) + _fc(2048, 2048) + _fc(2048, 700)
    assert _count(model) == want
    out = jax.eval_shape(lambda m, x: m(x), model, jax.ShapeDtypeStruct((3, 1, 137, 137), jnp.float32))
    assert out.shape == (3, 100, 7)


def test_cpu_preset_runs_and_is_small(rng):
    enc = DepthEncoder(LDIF_CPU, rngs=nnx.Rngs(0))
    local = LocalPointEncoder(LDIF_CPU, rngs=nnx.Rngs(1))
    n_params = _count(enc) + _count(local)
    assert n_params < 2_000_000  # vs ~37M for the full LDIF encoder
    assert _count(enc) == _simple_cnn_params(20, 64, 256) + _fc(256, 256) * 2 + _fc(256, 320)
    assert _count(local) == (_fc(6, 64) + _fc(64, 64) * 2 + _fc(64, 128) + _fc(128, 128) + _fc(128, 512)
                             + _fc(512, 256) + _fc(256, 32))
    depth = jnp.asarray(rng.uniform(size=(2, 20, 64, 64)).astype(np.float32))
    act = enc(depth)
    assert act.shape == (2, 32, 10)
    sif = S.from_activation(act, "cov", 16)
    pts = jnp.asarray(rng.uniform(-0.5, 0.5, size=(2, 600, 3)).astype(np.float32))
    nrm = jnp.asarray(rng.normal(size=(2, 600, 3)).astype(np.float32))
    lat = local(jax.random.key(0), pts, nrm, S.world2local(sif))
    assert lat.shape == (2, 32, 32) and np.all(np.isfinite(np.asarray(lat)))


def test_point_cloud_encoder_shape():
    model = PointCloudEncoder(LDIF_CPU, rngs=nnx.Rngs(0))
    out = model(jnp.zeros((2, 100, 6)))
    assert out.shape == (2, 32, 10)


def test_local_views_numpy_reference(rng):
    pts = rng.uniform(-1, 1, size=(1, 200, 3)).astype(np.float32)
    nrm = rng.normal(size=(1, 200, 3)).astype(np.float32)
    act = rng.normal(size=(1, 3, 10)).astype(np.float32)
    act[..., 4:7] = 3.0  # sigma ~ 0.14: local radius 4 ~ 0.57 in world units
    w2l = np.asarray(S.world2local(S.from_activation(jnp.asarray(act), "cov")))
    k = 30
    lp, ln = local_views_of_shape(jax.random.key(0), jnp.asarray(pts), jnp.asarray(w2l), k, jnp.asarray(nrm))
    lp, ln = np.asarray(lp), np.asarray(ln)
    for e in range(3):
        local = pts[0] @ w2l[0, e, :3, :3].T + w2l[0, e, :3, 3]
        d = np.linalg.norm(local, axis=1)
        n_in = int((d < 4).sum())
        got_d = np.linalg.norm(lp[0, e], axis=1)
        if n_in >= k:
            assert np.all(got_d < 4)
        else:  # every point inside plus the nearest outside ones
            np.testing.assert_allclose(np.sort(got_d), np.sort(d)[:k], rtol=1e-5)
        # chosen points are real transformed points; normals by the inverse transpose
        j = np.argmin(np.linalg.norm(local[None] - lp[0, e][:, None], axis=-1), axis=1)
        np.testing.assert_allclose(lp[0, e], local[j], atol=1e-5)
        nn = nrm[0, j] @ np.linalg.inv(w2l[0, e, :3, :3])
        nn /= np.linalg.norm(nn, axis=1, keepdims=True)
        np.testing.assert_allclose(ln[0, e], nn, atol=1e-4)
