"""IM-GAN: the latent WGAN-GP of IM-NET (Chen & Zhang 2019; TF1 ``IMGAN/modelz.py::ZGAN``).

The GAN is trained on the latent codes of a trained IM-AE, not on shapes:

* generator: noise N(0, 0.2²)^128 → FC 2048 → FC 2048 (LeakyReLU 0.02) → FC z_dim → sigmoid;
* critic: z → FC 2048 → FC 2048 (LeakyReLU 0.02) → FC 1 (linear);
* WGAN-GP with λ = 10, one critic step per generator step (n_critic = 1, the original's).

Choices (documented deviations from the original):

* **Sign convention.** The original minimises ``mean D(real) - mean D(fake) + GP`` for the critic
  and ``mean D(fake)`` for the generator, i.e. its critic scores *fake* high. impax uses the usual
  WGAN convention (critic scores *real* high): critic loss ``mean D(fake) - mean D(real) + GP``,
  generator loss ``-mean D(fake)``. The two are the same game with ``D ↦ -D``.
* **Interpolation ε.** The original draws one scalar ε per batch for the gradient-penalty
  interpolates ``x̂ = ε·real + (1-ε)·fake``, a known quirk (Gulrajani et al. draw one per sample).
  impax draws one per sample by default; ``GANConfig.per_sample_eps=False`` restores the original.
* ``z_dim`` defaults to 256 to match the default IM-AE (IM-NET / IM-NET-pytorch latents); the TF1
  original's is 128 (the improved TF1 IM-NET ships ZGAN with 128 and so refuses its own 256-d codes).

Initialisation as the TF1 ``linear``: weights N(0, 0.02²), zero biases.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from impax.models.imnet import leaky_relu, normal_init


@dataclasses.dataclass(frozen=True)
class GANConfig:
    """Latent WGAN-GP hyper-parameters (defaults: the original's, except ``z_dim``, see module doc).

    ``noise_dim`` 128, ``hidden`` 2048 (both networks), ``z_dim`` 256, ``noise_std`` 0.2,
    ``gp_weight`` λ = 10, ``per_sample_eps`` True (False: one ε per batch, as the original),
    ``leaky_slope`` 0.02. Training settings of the original (for the trainer's config): batch 50,
    Adam 5e-5 / β1 0.5, 10000 epochs.
    """

    noise_dim: int = 128
    hidden: int = 2048
    z_dim: int = 256
    noise_std: float = 0.2
    gp_weight: float = 10.0
    per_sample_eps: bool = True
    leaky_slope: float = 0.02


#: The TF1 original (``IMGAN/modelz.py``) with its 128-d latents and one ε per batch.
GAN_TF1 = GANConfig(z_dim=128, per_sample_eps=False)


def _linear(n_in: int, n_out: int, rngs: nnx.Rngs) -> nnx.Linear:
    return nnx.Linear(n_in, n_out, kernel_init=normal_init(0.02), rngs=rngs)


class LatentGenerator(nnx.Module):
    """``noise [B, noise_dim] → z [B, z_dim]`` in (0, 1) (``ZGAN.generator``: g_1, g_2, g_3)."""

    def __init__(self, cfg: GANConfig = GANConfig(), *, rngs: nnx.Rngs):
        self.cfg = cfg
        self.linear_1 = _linear(cfg.noise_dim, cfg.hidden, rngs)
        self.linear_2 = _linear(cfg.hidden, cfg.hidden, rngs)
        self.linear_3 = _linear(cfg.hidden, cfg.z_dim, rngs)

    def __call__(self, noise: jax.Array) -> jax.Array:
        s = self.cfg.leaky_slope
        h = leaky_relu(self.linear_1(noise), s)
        h = leaky_relu(self.linear_2(h), s)
        return jax.nn.sigmoid(self.linear_3(h))


class LatentCritic(nnx.Module):
    """``z [B, z_dim] → score [B]`` (``ZGAN.discriminator``: d_1, d_2, d_3; no sigmoid)."""

    def __init__(self, cfg: GANConfig = GANConfig(), *, rngs: nnx.Rngs):
        self.cfg = cfg
        self.linear_1 = _linear(cfg.z_dim, cfg.hidden, rngs)
        self.linear_2 = _linear(cfg.hidden, cfg.hidden, rngs)
        self.linear_3 = _linear(cfg.hidden, 1, rngs)

    def __call__(self, z: jax.Array) -> jax.Array:
        s = self.cfg.leaky_slope
        h = leaky_relu(self.linear_1(z), s)
        h = leaky_relu(self.linear_2(h), s)
        return self.linear_3(h)[..., 0]


class LatentGAN(nnx.Module):
    """``generator`` (:class:`LatentGenerator`) and ``critic`` (:class:`LatentCritic`) in one module,
    as the trainer checkpoints it."""

    def __init__(self, cfg: GANConfig = GANConfig(), *, rngs: nnx.Rngs):
        self.generator = LatentGenerator(cfg, rngs=rngs)
        self.critic = LatentCritic(cfg, rngs=rngs)


def sample_noise(key: jax.Array, n: int, cfg: GANConfig = GANConfig()) -> jax.Array:
    """Generator input: ``n`` draws of N(0, noise_std²)^noise_dim (the original's
    ``np.random.normal(0, 0.2, [n, 128])``)."""
    return cfg.noise_std * jax.random.normal(key, (n, cfg.noise_dim), jnp.float32)


def interpolates(key: jax.Array, real: jax.Array, fake: jax.Array, per_sample_eps: bool = True) -> jax.Array:
    """``ε·real + (1-ε)·fake`` with ε ~ U[0, 1): one ε per sample, or one per batch (original)."""
    shape = (real.shape[0], 1) if per_sample_eps else ()
    eps = jax.random.uniform(key, shape, jnp.float32)
    return eps * real + (1.0 - eps) * fake


def gradient_penalty(critic: LatentCritic, x_hat: jax.Array) -> jax.Array:
    """``mean_i (‖∇_x D(x̂_i)‖₂ - 1)²`` (unweighted). The critic is per-sample (no batch
    statistics), so the gradient of ``sum_i D(x̂_i)`` gives every sample's own gradient."""
    grads = jax.grad(lambda x: jnp.sum(critic(x)))(x_hat)
    norms = jnp.sqrt(jnp.sum(jnp.square(grads), axis=-1))
    return jnp.mean(jnp.square(norms - 1.0))


def critic_loss(critic: LatentCritic, real: jax.Array, fake: jax.Array, key: jax.Array,
                cfg: GANConfig | None = None) -> tuple[jax.Array, dict[str, jax.Array]]:
    """WGAN-GP critic loss ``mean D(fake) - mean D(real) + λ·GP`` on ``real``/``fake`` latents
    ``[B, z_dim]`` (``fake`` is treated as a constant: pass ``jax.lax.stop_gradient`` of the
    generator output, or differentiate w.r.t. the critic only). ``key`` draws the interpolation ε.
    Returns ``(loss, {"wasserstein": mean D(real) - mean D(fake), "gp": GP})``."""
    cfg = critic.cfg if cfg is None else cfg
    fake = jax.lax.stop_gradient(fake)
    d_real = jnp.mean(critic(real))
    d_fake = jnp.mean(critic(fake))
    gp = gradient_penalty(critic, interpolates(key, real, fake, cfg.per_sample_eps))
    loss = d_fake - d_real + cfg.gp_weight * gp
    return loss, {"wasserstein": d_real - d_fake, "gp": gp}


def generator_loss(critic: LatentCritic, fake: jax.Array) -> jax.Array:
    """WGAN generator loss ``-mean D(fake)`` (differentiate w.r.t. the generator only)."""
    return -jnp.mean(critic(fake))
