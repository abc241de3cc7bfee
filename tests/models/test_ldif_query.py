"""The sparse LDIF query (only active element/point pairs decoded) against the dense evaluator and numpy,
and its device path (masks kept on the device, used off CPU) against its host path.

Tolerances (1e-5) assume exact float32, i.e. the CPU backend the suite pins; on a GPU see docs/gpu.md.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from impax.models import occnet, sif as S
from impax.models.ldif_model import sif_query
from impax.models.ldif_query import SparseLdifQuery, fold_cbn


def _weights(rng, width, latent, blocks):
    w = {k: np.asarray(v) for k, v in occnet.init_weights(jax.random.key(4), width, latent, blocks).items()}
    for k in w:  # non-trivial biases and running statistics, like a trained decoder
        if k.endswith(".bias"):
            w[k] = rng.normal(scale=0.3, size=w[k].shape).astype(np.float32)
        elif k.endswith(".mean"):
            w[k] = np.float32(rng.normal(scale=0.2))
        elif k.endswith(".var"):
            w[k] = np.float32(rng.uniform(0.5, 2.0))
    return w


def _np_skip_rule(sif, w, pts):
    """F with the kernel's rule, from the per-element terms of the dense evaluator and a numpy decoder."""
    consts, g, local, lat, _ = S.element_terms(sif, jnp.asarray(pts))
    consts, g, local, lat = (np.asarray(a[0], np.float64) for a in (consts, g, local, lat))
    f = np.stack([np.asarray(occnet.occnet_forward(w, jnp.asarray(lat[e:e + 1], jnp.float32),
                                                   jnp.asarray(local[e:e + 1], jnp.float32))[0][0])
                  for e in range(len(consts))])
    return np.where(g > 1e-4, consts[:, None] * g * (1.0 + f), 0.0).sum(0)


@pytest.mark.parametrize("blocks", [1, 2])
def test_sparse_query_equals_the_skip_rule(blocks, rng):
    n, sym, latent = 12, 5, 8
    act = rng.normal(size=(n, 10 + latent)).astype(np.float32)
    act[:, 1:4] = rng.uniform(-1.0, 1.0, size=(n, 3))
    act[:, 4:7] += 0.5
    sif = S.from_activation(jnp.asarray(act), "cov", sym, latent)
    w = _weights(rng, latent, latent, blocks)
    pts = rng.uniform(-0.75, 0.75, size=(3000, 3)).astype(np.float32)
    # small tiles so that several tiles per element and several calls per batch are exercised
    q = SparseLdifQuery(sif, w, tile=16, tiles_per_call=8)
    got = q(pts)
    want = _np_skip_rule(sif, w, pts)
    assert got.dtype == np.float32 and got.shape == (3000,)
    assert np.abs(want).max() > 0.1 and np.mean(want == 0) > 0.05  # elements seen, some points far from all
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())
    # it decoded only the active pairs: far fewer than points x elements
    assert 0 < q.pairs < 0.5 * len(pts) * (n + sym)
    # same values as the dense evaluator with the rule
    dense = np.asarray(S.shape_function(sif, jnp.asarray(pts), occnet.make_decoder_fn(w), skip_threshold=1e-4))
    np.testing.assert_allclose(got, dense, rtol=1e-5, atol=1e-5 * np.abs(dense).max())


def test_folded_cbn_equals_the_decoder(rng):
    w = _weights(rng, 8, 8, 1)
    lat = rng.normal(size=(5, 8)).astype(np.float32)
    h = rng.normal(size=(5, 7, 8)).astype(np.float32)
    a, b = fold_cbn({k: jnp.asarray(v) for k, v in w.items()}, jnp.asarray(lat))["block0.cbn2"]
    beta = lat @ w["block0.cbn2.beta.kernel"] + w["block0.cbn2.beta.bias"]
    gamma = lat @ w["block0.cbn2.gamma.kernel"] + w["block0.cbn2.gamma.bias"]
    want = gamma[:, None] * (h - w["block0.cbn2.mean"]) / np.sqrt(w["block0.cbn2.var"] + 1e-5) + beta[:, None]
    np.testing.assert_allclose(np.asarray(a)[:, None] * h + np.asarray(b)[:, None], want, rtol=1e-5, atol=1e-5)


def test_sif_query_routes_ldif_to_the_sparse_path_and_handles_edge_cases(rng):
    act = rng.normal(size=(4, 10 + 4)).astype(np.float32)
    sif = S.from_activation(jnp.asarray(act), "cov", 0, 4).as_numpy()
    w = _weights(rng, 4, 4, 1)
    assert isinstance(sif_query(sif, w, skip=True), SparseLdifQuery)
    assert not isinstance(sif_query(sif, w, skip=False), SparseLdifQuery)
    q = SparseLdifQuery(sif, w)
    assert q(np.zeros((0, 3), np.float32)).shape == (0,)
    far = np.full((5, 3), 50.0, np.float32)  # no element is active: exactly zero, nothing decoded
    assert np.array_equal(q(far), np.zeros(5, np.float32)) and q.pairs == 0
    with pytest.raises(ValueError, match="latents"):
        SparseLdifQuery(sif.replace(latents=None), w)


def _random_ldif(rng, n=12, sym=5, latent=8, blocks=1):
    act = rng.normal(size=(n, 10 + latent)).astype(np.float32)
    act[:, 1:4] = rng.uniform(-1.0, 1.0, size=(n, 3))
    act[:, 4:7] += 0.5
    return S.from_activation(jnp.asarray(act), "cov", sym, latent), _weights(rng, latent, latent, blocks)


def test_device_path_equals_the_host_path(rng):
    from impax.models import platform

    sif, w = _random_ldif(rng, blocks=2)
    host = SparseLdifQuery(sif, w, tile=16, tiles_per_call=8, device_masks=False)
    dev = SparseLdifQuery(sif, w, tile=16, tiles_per_call=8, device_masks=True)
    assert SparseLdifQuery(sif, w).device_masks is False  # CPU: the host path by default
    assert platform.device_masks("gpu") and platform.device_masks("tpu") and not platform.device_masks("cpu")
    for n in (3000, 7):  # several calls, two compiled shapes
        pts = rng.uniform(-0.75, 0.75, size=(n, 3)).astype(np.float32)
        want = host(pts)
        got = dev(pts)
        assert isinstance(got, jax.Array) and isinstance(want, np.ndarray)  # device path: no read-back
        got = np.asarray(got)
        assert got.dtype == np.float32 and got.shape == (n,)
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6 * max(1.0, np.abs(want).max()))
    assert dev.pairs == host.pairs > 0 and dev.points == host.points == 3007
    # nothing active: exactly zero, nothing decoded; no points: an empty result
    far = np.full((5, 3), 50.0, np.float32)
    before = dev.pairs
    assert np.array_equal(np.asarray(dev(far)), np.zeros(5, np.float32)) and dev.pairs == before
    assert np.asarray(dev(np.zeros((0, 3), np.float32))).shape == (0,)
    # sif_query passes the choice on; its values go through unread (the extractor reads them)
    assert sif_query(sif.as_numpy(), w, skip=True, device_masks=True).device_masks is True
    dense = sif_query(sif.as_numpy(), w, skip=False)(pts)
    assert isinstance(dense, jax.Array) and dense.shape == (7,)


def test_query_batch_by_platform():
    from impax.models import platform
    from impax.models.ldif_model import QUERY_BATCH

    assert platform.query_batch("cpu") == QUERY_BATCH == 32768
    assert platform.query_batch("gpu") == platform.query_batch("tpu") > 32768
    assert platform.query_batch() == 32768  # this suite runs on the CPU backend
