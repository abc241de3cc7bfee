"""LDIF's local decoder: the small OccNet with conditional batch norm (google/ldif ``nets/occnet.py``).

Shared by all elements (``npe='f'``), with ``ips=32`` latents, width 32 and one residual block
(``orc=1``); the skip connection starts after CBN1 (``fon='t'``); no output sigmoid::

    h  = CBN1(W_in x + b_in; z)
    h2 = ReLU(CBN2(W_1 ReLU(h) + b_1; z))
    h  = h + W_2 h2 + b_2
    f  = w_out^T CBN_f(h; z) + b_out
    CBN(h; z) = gamma(z) * (h - m) / sqrt(v + 1e-5) + beta(z),   gamma, beta: Linear(L -> d)

``m`` and ``v`` are *scalar* running statistics (initialised to 0). As in the original
(``batched_cbn_layer``), in training mode they are first updated by an EMA
``m <- 0.995 m + 0.005 mean_b(mean(h_b))``, ``v <- 0.995 v + 0.005 mean_b(var(h_b))`` — moments
over samples and channels of each decoded element ``b``, averaged over elements — and the
*updated running values* normalise the activations; evaluation mode uses them unchanged.

The weights are a plain dict (:func:`init_weights`, the layout of ``extracted.occnet``; see
:mod:`impax.models.sif_format`) evaluated by the pure :func:`occnet_forward`; the Flax NNX
module :class:`OccNetDecoder` holds the same arrays as ``nnx.Param`` / ``nnx.BatchStat`` and calls
the same function.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

SQRT_EPS = 1e-5
EMA_DECAY = 0.995

Weights = dict[str, Any]


def _cbn_names(num_blocks: int) -> list[str]:
    names = []
    for i in range(num_blocks):
        names += [f"block{i}.cbn1", f"block{i}.cbn2"]
    return names + ["cbn_final"]


def weight_layout(width: int = 32, latent_size: int = 32, num_blocks: int = 1) -> list[tuple[str, tuple[int, ...]]]:
    """The arrays of the decoder in ``extracted.occnet`` order: ``(name, shape)``.

    Input FC; per block: CBN1 (beta FC, gamma FC, mean, var), FC1, CBN2, FC2; final CBN; output FC.
    FC weights are input-major ``[in, out]``, each followed by its bias.
    """
    def fc(name, i, o):
        return [(f"{name}.kernel", (i, o)), (f"{name}.bias", (o,))]

    def cbn(name):
        return fc(f"{name}.beta", latent_size, width) + fc(f"{name}.gamma", latent_size, width) + [
            (f"{name}.mean", ()), (f"{name}.var", ())]

    out = fc("input", 3, width)
    for i in range(num_blocks):
        out += cbn(f"block{i}.cbn1") + fc(f"block{i}.fc1", width, width)
        out += cbn(f"block{i}.cbn2") + fc(f"block{i}.fc2", width, width)
    out += cbn("cbn_final") + fc("output", width, 1)
    return out


def parameter_count(width: int = 32, latent_size: int = 32, num_blocks: int = 1) -> int:
    return int(sum(int(np.prod(s)) for _, s in weight_layout(width, latent_size, num_blocks)))


def init_weights(key: jax.Array, width: int = 32, latent_size: int = 32, num_blocks: int = 1) -> Weights:
    """Random weights (LeCun-normal kernels like ``layers.fully_connected``' Xavier scale, zero
    biases, zero running statistics as the original's ``zeros_initializer``)."""
    w: Weights = {}
    layout = weight_layout(width, latent_size, num_blocks)
    keys = jax.random.split(key, len(layout))
    for k, (name, shape) in zip(keys, layout):
        if name.endswith(".kernel"):
            fan_in, fan_out = shape
            lim = np.sqrt(6.0 / (fan_in + fan_out))  # Glorot uniform, contrib.layers default
            w[name] = jax.random.uniform(k, shape, jnp.float32, -lim, lim)
        else:
            w[name] = jnp.zeros(shape, jnp.float32)
    return w


def infer_sizes(weights: Weights) -> tuple[int, int, int]:
    """``(width, latent_size, num_blocks)`` of a weight dict."""
    width = int(np.shape(weights["input.kernel"])[1])
    latent = int(np.shape(weights["cbn_final.beta.kernel"])[0])
    blocks = 0
    while f"block{blocks}.fc1.kernel" in weights:
        blocks += 1
    return width, latent, blocks


def occnet_forward(weights: Weights, latents: jax.Array, points: jax.Array, update_stats: bool = False,
                   decay: float = EMA_DECAY) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Evaluate the decoder for ``B`` elements at once.

    Args:
        weights: dict as :func:`weight_layout`.
        latents: ``[B, L]`` one latent per decoded element.
        points: ``[B, P, 3]`` samples in each element's local frame.
        update_stats: training mode: EMA-update each CBN's running mean/variance with this batch's
            moments and normalise with the updated values (``batched_cbn_layer``).

    Returns:
        ``(f [B, P], stats)`` with ``stats`` the (possibly updated) ``"<cbn>.mean"/"<cbn>.var"``.
    """
    _, _, blocks = infer_sizes(weights)
    stats: dict[str, jax.Array] = {}

    def lin(name, x):
        # one 2-D product over all samples (XLA's CPU backward of the batched form is ~2x slower)
        y = x.reshape(-1, x.shape[-1]) @ weights[f"{name}.kernel"]
        return y.reshape(x.shape[:-1] + y.shape[-1:]) + weights[f"{name}.bias"]

    def cbn(name, h):
        beta = latents @ weights[f"{name}.beta.kernel"] + weights[f"{name}.beta.bias"]     # [B, d]
        gamma = latents @ weights[f"{name}.gamma.kernel"] + weights[f"{name}.gamma.bias"]
        mean, var = weights[f"{name}.mean"], weights[f"{name}.var"]
        if update_stats:
            bm = jnp.mean(h, axis=(1, 2))
            bv = jnp.mean(jnp.square(h - bm[:, None, None]), axis=(1, 2))
            mean = decay * mean + (1.0 - decay) * jnp.mean(bm)
            var = decay * var + (1.0 - decay) * jnp.mean(bv)
        stats[f"{name}.mean"], stats[f"{name}.var"] = mean, var
        return gamma[:, None, :] * ((h - mean) / jnp.sqrt(var + SQRT_EPS)) + beta[:, None, :]

    h = cbn("block0.cbn1", lin("input", points)) if blocks else lin("input", points)
    for i in range(blocks):
        if i:
            h = cbn(f"block{i}.cbn1", h)
        h2 = lin(f"block{i}.fc1", jax.nn.relu(h))
        h2 = jax.nn.relu(cbn(f"block{i}.cbn2", h2))
        h = h + lin(f"block{i}.fc2", h2)
    h = cbn("cbn_final", h)
    f = lin("output", h)[..., 0]
    return f, stats


def occnet_forward_pairs(weights: Weights, latents: jax.Array, element: jax.Array, points: jax.Array,
                         update_stats: bool = False, decay: float = EMA_DECAY
                         ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """The decoder at ``M`` (element, point) pairs per shape: ``latents [B, E, L]``, ``element [B, M]``
    (which element each pair decodes with), ``points [B, M, 3]`` (in that element's frame) → ``(f
    [B, M], stats)``. The same layers as :func:`occnet_forward`; each CBN's ``gamma``/``beta`` are
    computed once per element and gathered per pair. In training mode (``update_stats``) the
    batch moments are those of all pairs together, ``m = mean(h)``, ``v = mean((h - m)^2)`` over
    pairs and channels (:func:`occnet_forward` averages per-element moments; with pairs of
    different elements mixed, the pooled moments are the natural analogue)."""
    _, _, blocks = infer_sizes(weights)
    stats: dict[str, jax.Array] = {}

    def lin(name, x):
        y = x.reshape(-1, x.shape[-1]) @ weights[f"{name}.kernel"]
        return y.reshape(x.shape[:-1] + y.shape[-1:]) + weights[f"{name}.bias"]

    def gathered(name):
        v = latents @ weights[f"{name}.kernel"] + weights[f"{name}.bias"]                 # [B, E, d]
        return jnp.take_along_axis(v, element[..., None], axis=1)                          # [B, M, d]

    def cbn(name, h):
        mean, var = weights[f"{name}.mean"], weights[f"{name}.var"]
        if update_stats:
            bm = jnp.mean(h)
            mean = decay * mean + (1.0 - decay) * bm
            var = decay * var + (1.0 - decay) * jnp.mean(jnp.square(h - bm))
        stats[f"{name}.mean"], stats[f"{name}.var"] = mean, var
        return gathered(f"{name}.gamma") * ((h - mean) / jnp.sqrt(var + SQRT_EPS)) + gathered(f"{name}.beta")

    h = cbn("block0.cbn1", lin("input", points)) if blocks else lin("input", points)
    for i in range(blocks):
        if i:
            h = cbn(f"block{i}.cbn1", h)
        h2 = jax.nn.relu(cbn(f"block{i}.cbn2", lin(f"block{i}.fc1", jax.nn.relu(h))))
        h = h + lin(f"block{i}.fc2", h2)
    f = lin("output", cbn("cbn_final", h))[..., 0]
    return f, stats


def make_decoder_fn(weights: Weights):
    """A pure evaluation-mode decoder ``(latents [E, L], local [E, P, 3]) -> f [E, P]`` for
    :func:`impax.models.sif.shape_function`."""
    w = {k: jnp.asarray(v) for k, v in weights.items()}

    def decoder(latents, points):
        return occnet_forward(w, latents, points)[0]

    return decoder


class OccNetDecoder(nnx.Module):
    """Flax NNX version of the shared local decoder (see the module docstring).

    ``use_running_average=True`` (``.eval()``, the default) uses the stored running statistics;
    ``False`` (``.train()``) EMA-updates them first, as the original does in training.
    Call: ``decoder(latents [B, L], local_points [B, P, 3]) -> [B, P]``.
    """

    def __init__(self, width: int = 32, latent_size: int = 32, num_blocks: int = 1, *,
                 rngs: nnx.Rngs, use_running_average: bool = True, decay: float = EMA_DECAY):
        self.width, self.latent_size, self.num_blocks = width, latent_size, num_blocks
        self.use_running_average = use_running_average
        self.decay = decay
        w = init_weights(rngs.params(), width, latent_size, num_blocks)
        self._load(w)

    def _load(self, weights: Weights) -> None:
        stat_names = {f"{c}.{s}" for c in _cbn_names(self.num_blocks) for s in ("mean", "var")}
        params, stats = {}, {}
        for name, shape in weight_layout(self.width, self.latent_size, self.num_blocks):
            arr = jnp.asarray(weights[name], jnp.float32).reshape(shape)
            key = name.replace(".", "__")
            (stats if name in stat_names else params)[key] = arr
        self.params = nnx.Dict({k: nnx.Param(v) for k, v in params.items()})
        self.stats = nnx.Dict({k: nnx.BatchStat(v) for k, v in stats.items()})

    @classmethod
    def from_weights(cls, weights: Weights, **kw) -> OccNetDecoder:
        width, latent, blocks = infer_sizes(weights)
        model = cls(width, latent, blocks, rngs=nnx.Rngs(0), **kw)
        model._load(weights)
        return model

    def weights(self) -> Weights:
        """The current arrays as a dict in :func:`weight_layout` naming."""
        out = {k.replace("__", "."): v[...] for k, v in self.params.items()}
        out.update({k.replace("__", "."): v[...] for k, v in self.stats.items()})
        return out

    def _update(self, stats: dict[str, jax.Array]) -> None:
        if not self.use_running_average:
            for name, value in stats.items():
                self.stats[name.replace(".", "__")][...] = value

    def __call__(self, latents: jax.Array, points: jax.Array) -> jax.Array:
        f, stats = occnet_forward(self.weights(), latents, points,
                                  update_stats=not self.use_running_average, decay=self.decay)
        self._update(stats)
        return f

    def pairs(self, latents: jax.Array, element: jax.Array, points: jax.Array) -> jax.Array:
        """``f [B, M]`` at (element, point) pairs (:func:`occnet_forward_pairs`), as
        :func:`impax.models.sif.shape_function_topk` calls it."""
        f, stats = occnet_forward_pairs(self.weights(), latents, element, points,
                                        update_stats=not self.use_running_average, decay=self.decay)
        self._update(stats)
        return f
