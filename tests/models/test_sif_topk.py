"""Training-time options of the LDIF model: top-k decoding, the pair decoder, activations and the spread start.

Precision: the tolerances here assume exact float32, i.e. the CPU backend tests/conftest.py pins; on a
GPU run with JAX_DEFAULT_MATMUL_PRECISION=highest (TF32 otherwise; docs/gpu.md).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from test_sif_shape import _np_decoder

from impax.models import occnet, sif as S
from impax.models.ldif_config import LDIF_CPU
from impax.models.ldif_model import LdifModel, spread_elements


def _weights(rng, width=8, latent=8):
    w = {k: np.asarray(v) for k, v in occnet.init_weights(jax.random.key(1), width, latent, 1).items()}
    for k in w:
        if k.endswith(".bias"):
            w[k] = rng.normal(scale=0.3, size=w[k].shape).astype(np.float32)
    for name in ("block0.cbn1", "block0.cbn2", "cbn_final"):
        w[f"{name}.mean"] = np.float32(rng.normal(scale=0.2))
        w[f"{name}.var"] = np.float32(rng.uniform(0.5, 2.0))
    return w


def _shape(rng, n=6, sym=3, latent=8, batch=2):
    act = rng.normal(size=(batch, n, 10 + latent)).astype(np.float32)
    act[..., 1:4] = rng.uniform(-0.8, 0.8, size=(batch, n, 3))
    act[..., 4:7] += 2.0
    return S.from_activation(jnp.asarray(act), "cov", sym, latent)


def test_pair_decoder_matches_numpy(rng):
    """``occnet_forward_pairs`` at (element, point) pairs = the README's decoder for that element."""
    w = _weights(rng)
    lat = rng.normal(size=(2, 5, 8)).astype(np.float32)
    elem = rng.integers(0, 5, size=(2, 40))
    pts = rng.normal(size=(2, 40, 3)).astype(np.float32)
    got = np.asarray(occnet.occnet_forward_pairs(w, jnp.asarray(lat), jnp.asarray(elem), jnp.asarray(pts))[0])
    want = np.array([[_np_decoder(w, lat[b, elem[b, m]], pts[b, m:m + 1])[0] for m in range(40)] for b in range(2)])
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_pair_decoder_training_statistics(rng):
    """Training mode: the scalar running statistics move by the EMA of the pooled moments."""
    w = _weights(rng)
    lat = jnp.asarray(rng.normal(size=(1, 3, 8)), jnp.float32)
    elem = jnp.asarray(rng.integers(0, 3, size=(1, 64)))
    pts = jnp.asarray(rng.normal(size=(1, 64, 3)), jnp.float32)
    _, stats = occnet.occnet_forward_pairs(w, lat, elem, pts, update_stats=True)
    h = np.asarray(pts[0]) @ w["input.kernel"] + w["input.bias"]   # the first CBN's input
    m = 0.995 * w["block0.cbn1.mean"] + 0.005 * h.mean()
    v = 0.995 * w["block0.cbn1.var"] + 0.005 * np.mean((h - h.mean()) ** 2)
    assert float(stats["block0.cbn1.mean"]) == pytest.approx(m, rel=1e-5)
    assert float(stats["block0.cbn1.var"]) == pytest.approx(v, rel=1e-5)


def test_topk_with_every_element_is_the_shape_function(rng):
    w = _weights(rng)
    s = _shape(rng)
    pts = jnp.asarray(rng.uniform(-0.6, 0.6, size=(2, 200, 3)), jnp.float32)
    dense = np.asarray(S.shape_function(s, pts, occnet.make_decoder_fn(w)))
    pairs = (lambda lat, e, q: occnet.occnet_forward_pairs(w, lat, e, q)[0])
    e = s.effective_element_count
    got = np.asarray(S.shape_function_topk(s, pts, pairs, e))
    assert np.abs(dense).max() > 0.05
    np.testing.assert_allclose(got, dense, rtol=1e-4, atol=1e-5)


def test_topk_keeps_the_largest_elements(rng):
    """``k`` < E: F = sum of all c g + decoder corrections of the k largest |c g| (numpy reference)."""
    w = _weights(rng)
    s = _shape(rng, batch=1)
    pts = rng.uniform(-0.6, 0.6, size=(1, 120, 3)).astype(np.float32)
    pairs = (lambda lat, e, q: occnet.occnet_forward_pairs(w, lat, e, q)[0])
    got = np.asarray(S.shape_function_topk(s, jnp.asarray(pts), pairs, 2))[0]
    consts, g, local, lat, _ = S.element_terms(s, jnp.asarray(pts))
    cg = np.asarray(consts[0])[:, None] * np.asarray(g[0])                   # [E, P]
    want = cg.sum(0)
    for p in range(120):
        for i in np.argsort(-np.abs(cg[:, p]))[:2]:
            want[p] += cg[i, p] * _np_decoder(w, np.asarray(lat[0, i]), np.asarray(local[0, i, p:p + 1]))[0]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    # and it differs from the dense value (the left-out corrections are not all zero)
    dense = np.asarray(S.shape_function(s, jnp.asarray(pts), occnet.make_decoder_fn(w)))[0]
    assert np.abs(dense - got).max() > 1e-4


@pytest.mark.parametrize("radius_type", ["iso", "aa", "cov"])
def test_to_activation_inverts_from_activation(radius_type, rng):
    dof = S.EXPLICIT_DOF[radius_type]
    act = rng.normal(size=(7, dof)).astype(np.float32)
    act[:, 0] = np.abs(act[:, 0])                        # c = -|a|: the sign of a is not recoverable
    if radius_type == "cov":
        act[:, 7:10] = np.clip(act[:, 7:10], -0.7, 0.7)   # inside the +-pi/4 clip
    s = S.from_activation(jnp.asarray(act), radius_type)
    back = np.asarray(S.to_activation(s))
    np.testing.assert_allclose(back, act, rtol=1e-4, atol=1e-4)


def test_spread_elements_starts_every_shape_spread_and_active():
    cfg = dataclasses.replace(LDIF_CPU, image_size=32, fc_width=32, simple_cnn_features=32, element_count=12,
                              symmetric_count=4, latent_size=8, decoder_width=8, local_point_count=16,
                              pointnet_maxpool_features=16)
    model = LdifModel(cfg, "depth", rngs=nnx.Rngs(0))
    depth = jax.random.uniform(jax.random.key(1), (3, 20, 32, 32))
    pts = jax.random.normal(jax.random.key(2), (3, 64, 3)) * 0.3
    nrm = pts / jnp.linalg.norm(pts, axis=-1, keepdims=True)
    before = model.encode(jax.random.key(0), depth=depth, surface_points=pts, surface_normals=nrm)
    spread_elements(model, jax.random.key(5), half=0.4, constant=0.1)
    after = model.encode(jax.random.key(0), depth=depth, surface_points=pts, surface_normals=nrm)
    # the original start: every element near the origin and nearly off
    assert float(jnp.max(jnp.abs(before.centers))) < 0.2
    # spread: centres cover the box (per axis ~ U(-0.4, 0.4)), constants active (c ~ -0.1 < -0.07)
    c = np.asarray(after.centers)
    assert c.min() < -0.25 and c.max() > 0.25 and c.std(axis=1).min() > 0.15
    k = np.asarray(after.constants)
    assert k.mean() < -0.09 and np.all(k < -0.05)
    # the same start for every input; the encoder still adds per-input offsets
    assert np.abs(c[0] - c[1]).max() < 0.1
