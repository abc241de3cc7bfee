"""IM-GAN latent WGAN-GP: shapes/parameter counts against the original's layer list, forwards and the
gradient penalty against a numpy MLP with hand-written backpropagation.

Precision: the tolerances here assume exact float32, i.e. the CPU backend tests/conftest.py pins; on a
GPU run with JAX_DEFAULT_MATMUL_PRECISION=highest (TF32 otherwise; docs/gpu.md).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from impax.models.imnet import count_params
from impax.models.imnet_gan import (GAN_TF1, GANConfig, LatentCritic, LatentGenerator, critic_loss,
                                    generator_loss, gradient_penalty, interpolates, sample_noise)

SMALL = GANConfig(noise_dim=8, hidden=32, z_dim=12)


def _fc_count(sizes):
    return sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))


@pytest.mark.parametrize("cfg", [GANConfig(), GAN_TF1], ids=["z256", "tf1"])
def test_parameter_counts_match_modelz(cfg):
    # ZGAN: g_1 (128→2048), g_2 (2048→2048), g_3 (2048→z); d_1 (z→2048), d_2 (2048→2048), d_3 (2048→1)
    g = nnx.eval_shape(lambda: LatentGenerator(cfg, rngs=nnx.Rngs(0)))
    d = nnx.eval_shape(lambda: LatentCritic(cfg, rngs=nnx.Rngs(0)))
    assert count_params(g) == _fc_count([128, 2048, 2048, cfg.z_dim])
    assert count_params(d) == _fc_count([cfg.z_dim, 2048, 2048, 1])


def _weights(module):
    return [(np.asarray(getattr(module, f"linear_{i}").kernel[...], np.float64),
             np.asarray(getattr(module, f"linear_{i}").bias[...], np.float64)) for i in (1, 2, 3)]


def _randomise(module, rng):
    for i in (1, 2, 3):
        lin = getattr(module, f"linear_{i}")
        n_in, n_out = lin.kernel[...].shape
        lin.kernel[...] = jnp.asarray(rng.normal(0, np.sqrt(2 / n_in), (n_in, n_out)), jnp.float32)
        lin.bias[...] = jnp.asarray(rng.normal(0, 0.1, n_out), jnp.float32)


def _np_mlp(x, weights, slope=0.02):
    """Forward of a 3-layer LReLU MLP and d(sum of outputs)/dx by hand (chain rule)."""
    (w1, b1), (w2, b2), (w3, b3) = weights
    a1 = x @ w1 + b1
    h1 = np.where(a1 > 0, a1, slope * a1)
    a2 = h1 @ w2 + b2
    h2 = np.where(a2 > 0, a2, slope * a2)
    out = h2 @ w3 + b3
    d2 = np.where(a2 > 0, 1.0, slope) * w3[:, 0]  # [B, H]
    d1 = np.where(a1 > 0, 1.0, slope) * (d2 @ w2.T)
    return out, d1 @ w1.T


def test_generator_and_critic_forward_match_numpy():
    rng = np.random.default_rng(0)
    gen, critic = LatentGenerator(SMALL, rngs=nnx.Rngs(0)), LatentCritic(SMALL, rngs=nnx.Rngs(1))
    _randomise(gen, rng)
    _randomise(critic, rng)
    noise = rng.normal(0, 0.2, (5, 8)).astype(np.float32)
    out, _ = _np_mlp(noise.astype(np.float64), _weights(gen))
    z = np.asarray(gen(noise))
    np.testing.assert_allclose(z, 1 / (1 + np.exp(-out)), atol=1e-5)
    assert z.shape == (5, 12) and np.all((z > 0) & (z < 1))
    d, _ = _np_mlp(z.astype(np.float64), _weights(critic))
    np.testing.assert_allclose(np.asarray(critic(z)), d[:, 0], atol=1e-5)


def test_gradient_penalty_matches_hand_backprop():
    rng = np.random.default_rng(1)
    critic = LatentCritic(SMALL, rngs=nnx.Rngs(0))
    _randomise(critic, rng)
    x = rng.uniform(0, 1, (6, 12)).astype(np.float32)
    _, grad = _np_mlp(x.astype(np.float64), _weights(critic))
    want = np.mean((np.linalg.norm(grad, axis=1) - 1.0) ** 2)
    np.testing.assert_allclose(float(gradient_penalty(critic, jnp.asarray(x))), want, rtol=1e-4)


def test_interpolation_eps_per_sample_and_per_batch():
    rng = np.random.default_rng(2)
    real = rng.uniform(0.6, 1, (64, 12)).astype(np.float32)  # apart, so ε is well conditioned
    fake = rng.uniform(0, 0.4, (64, 12)).astype(np.float32)
    key = jax.random.key(3)
    for per_sample in (True, False):
        x = np.asarray(interpolates(key, real, fake, per_sample))
        eps = (x - fake) / (real - fake)  # the ε of every entry
        assert np.all((eps > -1e-4) & (eps < 1 + 1e-4))
        np.testing.assert_allclose(eps, np.broadcast_to(eps[:, :1], eps.shape), atol=1e-3)  # one ε per row
        if per_sample:
            assert eps[:, 0].std() > 0.15  # ~U(0,1): std 0.29
        else:
            np.testing.assert_allclose(eps, np.full(eps.shape, eps[0, 0]), atol=1e-3)  # the original's quirk


def test_critic_and_generator_losses():
    rng = np.random.default_rng(4)
    critic = LatentCritic(SMALL, rngs=nnx.Rngs(0))
    _randomise(critic, rng)
    real = rng.uniform(0, 1, (8, 12)).astype(np.float32)
    fake = rng.uniform(0, 1, (8, 12)).astype(np.float32)
    key = jax.random.key(5)
    loss, m = critic_loss(critic, real, fake, key)
    w = _weights(critic)
    d_real, _ = _np_mlp(real.astype(np.float64), w)
    d_fake, _ = _np_mlp(fake.astype(np.float64), w)
    x_hat = np.asarray(interpolates(key, real, fake, True), np.float64)
    _, g = _np_mlp(x_hat, w)
    gp = np.mean((np.linalg.norm(g, axis=1) - 1) ** 2)
    np.testing.assert_allclose(float(m["wasserstein"]), d_real.mean() - d_fake.mean(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(float(m["gp"]), gp, rtol=1e-4)
    np.testing.assert_allclose(float(loss), d_fake.mean() - d_real.mean() + 10.0 * gp, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(float(generator_loss(critic, fake)), -d_fake.mean(), rtol=1e-5, atol=1e-6)


def test_wgan_gp_steps_move_both_players():
    """A few SGD steps: the critic loss decreases for the critic, and the generator's gradient only
    reaches the generator through the critic (its loss decreases for a fixed critic)."""
    rng = np.random.default_rng(6)
    gen, critic = LatentGenerator(SMALL, rngs=nnx.Rngs(0)), LatentCritic(SMALL, rngs=nnx.Rngs(1))
    real = jnp.asarray(rng.uniform(0.6, 0.9, (16, 12)), jnp.float32)
    noise = sample_noise(jax.random.key(0), 16, SMALL)

    def sgd(module, grads, lr=1e-2):
        nnx.update(module, jax.tree.map(lambda p, g: p - lr * g, nnx.state(module, nnx.Param), grads))

    @nnx.jit
    def critic_step(critic, gen):
        loss, grads = nnx.value_and_grad(lambda c: critic_loss(c, real, gen(noise), jax.random.key(1))[0])(critic)
        sgd(critic, grads)
        return loss

    @nnx.jit
    def generator_step(gen, critic):
        loss, grads = nnx.value_and_grad(lambda g: generator_loss(critic, g(noise)))(gen)
        sgd(gen, grads)
        return loss

    c_losses = [float(critic_step(critic, gen)) for _ in range(6)]
    assert c_losses[-1] < c_losses[0]
    g_losses = [float(generator_step(gen, critic)) for _ in range(6)]
    assert g_losses[-1] < g_losses[0]


def test_noise_distribution():
    n = np.asarray(sample_noise(jax.random.key(7), 4096, GANConfig()))
    assert n.shape == (4096, 128)
    assert abs(n.std() - 0.2) < 0.003 and abs(n.mean()) < 0.003
