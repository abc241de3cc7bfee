"""The shape function against an independent numpy transcription of the published formulas.

Precision: the tolerances here assume exact float32, i.e. the CPU backend tests/conftest.py pins; on a
GPU run with JAX_DEFAULT_MATMUL_PRECISION=highest (TF32 otherwise; docs/gpu.md).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import expit

from impax.models import occnet, sif as S


def _rx(a):
    c, s = np.cos(a), np.sin(a)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def _ry(a):
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def _rz(a):
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def _np_decoder(w, z, x):
    """The occnet forward of the fixtures README, one element: z [L], x [P, 3] -> [P]."""
    def cbn(name, h):
        beta = z @ w[f"{name}.beta.kernel"] + w[f"{name}.beta.bias"]
        gamma = z @ w[f"{name}.gamma.kernel"] + w[f"{name}.gamma.bias"]
        return gamma * (h - w[f"{name}.mean"]) / np.sqrt(w[f"{name}.var"] + 1e-5) + beta

    h = cbn("block0.cbn1", x @ w["input.kernel"] + w["input.bias"])
    h2 = np.maximum(h, 0) @ w["block0.fc1.kernel"] + w["block0.fc1.bias"]
    h2 = np.maximum(cbn("block0.cbn2", h2), 0)
    h = h + h2 @ w["block0.fc2.kernel"] + w["block0.fc2.bias"]
    return (cbn("cbn_final", h) @ w["output.kernel"] + w["output.bias"])[:, 0]


def _np_shape_function(act, radius_type, sym, latent, points, w=None):
    """F(x) from raw activations, written from the LDIF paper/original formulas with loops."""
    act = np.asarray(act, np.float64)
    pts = np.asarray(points, np.float64)
    total = np.zeros(len(pts))
    for i in range(act.shape[0]):
        a = act[i]
        c = -abs(a[0])
        mu = a[1:4] / 2
        if radius_type == "iso":
            var = np.full(3, (0.15 / (1 + np.exp(-a[4]))) ** 2)
            euler = np.zeros(3)
            z = a[5:]
        elif radius_type == "aa":
            var = (0.15 / (1 + np.exp(-a[4:7]))) ** 2
            euler = np.zeros(3)
            z = a[7:]
        else:
            var = (0.15 / (1 + np.exp(-a[4:7]))) ** 2
            euler = np.clip(a[7:10], -np.pi / 4, np.pi / 4)
            z = a[10:]
        rot = _rz(euler[2]) @ _ry(euler[1]) @ _rx(euler[0])
        copies = [pts] + ([pts * np.array([1, 1, -1])] if i < sym else [])
        for x in copies:
            d = x - mu
            if radius_type == "iso":
                g = np.exp(-0.5 * np.sum(d * d, axis=1) / max(var[0], 1e-4))
                local = d
            elif radius_type == "aa":
                g = np.exp(np.sum(d * d / np.minimum(-2 * var, -1e-8), axis=1))
                local = d / (np.sqrt(var + 1e-8) + 1e-8)
            else:
                inv_cov = rot @ np.diag(1 / (var + 1e-8)) @ rot.T
                g = np.exp(-0.5 * np.einsum("pi,ij,pj->p", d, inv_cov, d))
                local = (d @ rot) / (np.sqrt(var + 1e-8) + 1e-8)  # rows: R^T d
            f = _np_decoder(w, z, local) if (w is not None and latent) else 0.0
            total += c * g * (1 + f)
    return total


@pytest.mark.parametrize("radius_type", ["iso", "aa", "cov"])
@pytest.mark.parametrize("ldif", [False, True])
def test_shape_function_matches_numpy(radius_type, ldif, rng):
    n, sym, latent = 6, 3, (8 if ldif else 0)
    dof = S.EXPLICIT_DOF[radius_type]
    act = rng.normal(size=(n, dof + latent)).astype(np.float32)
    act[:, 1:4] = rng.uniform(-0.8, 0.8, size=(n, 3))
    act[:, 4:dof if radius_type != "cov" else 7] += 2.0        # broad enough elements to matter
    if radius_type == "cov":
        act[:, 7:10] = rng.uniform(-1.2, 1.2, size=(n, 3))     # some beyond pi/4: clipped
    pts = rng.uniform(-0.6, 0.6, size=(300, 3)).astype(np.float32)
    w = None
    if ldif:
        w = {k: np.asarray(v) for k, v in occnet.init_weights(jax.random.key(1), 8, 8, 1).items()}
        for k in w:  # non-trivial biases and running statistics
            if k.endswith(".bias"):
                w[k] = rng.normal(scale=0.3, size=w[k].shape).astype(np.float32)
        for name in ("block0.cbn1", "block0.cbn2", "cbn_final"):
            w[f"{name}.mean"] = np.float32(rng.normal(scale=0.2))
            w[f"{name}.var"] = np.float32(rng.uniform(0.5, 2.0))
    sif = S.from_activation(jnp.asarray(act), radius_type, sym, latent)
    dec = occnet.make_decoder_fn(w) if ldif else None
    got = np.asarray(S.shape_function(sif, jnp.asarray(pts), dec))
    want = _np_shape_function(act, radius_type, sym, latent, pts, w)
    assert np.abs(want).max() > 0.05  # the test points see the elements
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-5)

    def loss(a):
        s = S.from_activation(a, radius_type, sym, latent)
        return jnp.mean(S.class_probability(S.shape_function(s, jnp.asarray(pts), dec)))

    grad = np.asarray(jax.grad(loss)(jnp.asarray(act)))
    assert np.all(np.isfinite(grad)) and np.abs(grad).sum() > 0


def test_batched_matches_unbatched(rng):
    act = rng.normal(size=(2, 5, 10 + 4)).astype(np.float32)
    act[..., 4:7] += 2.0
    pts = rng.uniform(-0.5, 0.5, size=(2, 50, 3)).astype(np.float32)
    w = occnet.init_weights(jax.random.key(0), 4, 4, 1)
    dec = occnet.make_decoder_fn(w)
    batched = S.from_activation(jnp.asarray(act), "cov", 2, 4)
    f = np.asarray(S.shape_function(batched, jnp.asarray(pts), dec))
    for b in range(2):
        one = S.from_activation(jnp.asarray(act[b]), "cov", 2, 4)
        np.testing.assert_allclose(f[b], np.asarray(S.shape_function(one, jnp.asarray(pts[b]), dec)), rtol=1e-5, atol=1e-6)


def test_from_activation_rules():
    a = np.array([[0.7, 0.4, -0.2, 1.0, 0.0, 2.0, -2.0, 2.0, -0.1, -3.0]], np.float32)
    s = S.from_activation(jnp.asarray(a), "cov")
    assert float(s.constants[0]) == pytest.approx(-0.7)
    np.testing.assert_allclose(np.asarray(s.centers[0]), [0.2, -0.1, 0.5], atol=1e-7)
    sig = 1 / (1 + np.exp(-np.array([0.0, 2.0, -2.0])))
    np.testing.assert_allclose(np.asarray(s.variances[0]), (0.15 * sig) ** 2, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(s.rotations[0]), [np.pi / 4, -0.1, -np.pi / 4], atol=1e-7)
    r = np.asarray(S.rotation_matrices(jnp.asarray([0.3, -0.2, 0.5])))
    np.testing.assert_allclose(r, _rz(0.5) @ _ry(-0.2) @ _rx(0.3), atol=1e-6)


def test_world2local_matches_formula(rng):
    act = rng.normal(size=(4, 10)).astype(np.float32)
    s = S.from_activation(jnp.asarray(act), "cov")
    m = np.asarray(S.world2local(s))
    x = rng.normal(size=3)
    for i in range(4):
        var = np.asarray(s.variances[i], np.float64)
        rot = np.asarray(S.rotation_matrices(s.rotations[i]), np.float64)
        want = (rot.T @ (x - np.asarray(s.centers[i]))) / (np.sqrt(var + 1e-8) + 1e-8)
        np.testing.assert_allclose(m[i, :3, :3] @ x + m[i, :3, 3], want, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(m[i, 3], [0, 0, 0, 1])


def test_skip_rule_and_inside_rule(rng):
    act = rng.normal(size=(5, 10 + 4)).astype(np.float32)
    act[:, 4:7] += 1.0
    pts = jnp.asarray(rng.uniform(-0.7, 0.7, size=(400, 3)).astype(np.float32))
    w = occnet.init_weights(jax.random.key(3), 4, 4, 1)
    dec = occnet.make_decoder_fn(w)
    s = S.from_activation(jnp.asarray(act), "cov", 2, 4)
    consts, g, local, lat, _ = S.element_terms(s, pts)
    f = dec(lat[0], local[0])
    terms = np.asarray(consts[0][:, None] * g[0] * (1 + f))
    want = np.where(np.asarray(g[0]) > 1e-4, terms, 0).sum(0)
    got = np.asarray(S.shape_function(s, pts, dec, skip_threshold=1e-4))
    np.testing.assert_allclose(got, want, atol=1e-6)
    full = np.asarray(S.shape_function(s, pts, dec))
    np.testing.assert_allclose(full, terms.sum(0), atol=1e-6)
    assert np.any(np.abs(full - got) > 0)  # the rule changes something
    p = np.asarray(S.class_probability(jnp.asarray(full)))
    np.testing.assert_allclose(p, expit(100 * (full + 0.07)), rtol=1e-5, atol=1e-6)
    assert np.array_equal(np.asarray(S.is_inside(full)), full < -0.07)


def test_grid_evaluator_block_sparse_equals_dense(rng):
    act = rng.normal(size=(6, 10 + 4)).astype(np.float32)
    act[:, 4:7] += 1.0
    act[:, 1:4] = rng.uniform(-1.2, 1.2, size=(6, 3))
    w = occnet.init_weights(jax.random.key(2), 4, 4, 1)
    dec = occnet.make_decoder_fn(w)
    s = S.from_activation(jnp.asarray(act), "cov", 3, 4)
    coords = np.linspace(-0.75, 0.75, 20).astype(np.float32)
    grid = S.evaluate_grid(s, coords, dec, block=8)
    pts = np.stack(np.meshgrid(coords, coords, coords, indexing="ij"), -1).reshape(-1, 3)
    dense = np.asarray(S.shape_function(s, jnp.asarray(pts), dec, skip_threshold=1e-4)).reshape(20, 20, 20)
    assert np.abs(dense).max() > 0.01
    # equal up to float32 summation order (the random decoder reaches large values far from centres)
    np.testing.assert_allclose(grid, dense, rtol=1e-4, atol=1e-6 * np.abs(dense).max())
