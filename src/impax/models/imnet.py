"""IM-NET auto-encoder (Chen & Zhang, "Learning Implicit Fields for Generative Shape Modeling",
CVPR 2019) in Flax NNX: the 3D-CNN voxel encoder, the implicit decoder and the AE occupancy loss.

Two decoder layouts, chosen by :attr:`IMNetConfig.layout`:

* ``"pytorch"`` (default): IM-NET-pytorch ``modelAE.py::generator`` (also the improved TF1 IM-NET):
  ``[xyz, z]`` (3 + 256) → 1024 → 1024 → 1024 → 512 → 256 → 128 → 1, LeakyReLU 0.02 on the hidden
  layers, and the *leaky clip* ``max(min(h, 0.01 h + 0.99), 0.01 h)`` that IM-NET-pytorch actually
  ships (its README says hard clip). About 3.05M parameters.
* ``"tf1"``: the original TF1 implicit-decoder ``IMGAN/model.py::generator``: ``[xyz, z]``
  (3 + 128) → 2048 → 1024 → 512 → 256 → 128 → 1, where the outputs of h1–h4 are concatenated with
  ``[xyz, z]`` again before the next layer (order ``[h, xyz, z]`` as in the original), sigmoid output.
  About 3.31M parameters. Preset :data:`IMNET_TF1` (z = 128).

Axis conventions: voxels are ``[B, R, R, R]`` (or ``[B, R, R, R, 1]``) float, and point coordinate
``d`` runs along voxel axis ``d`` (IM-NET indexes ``voxels[i, j, k]`` with point ``(i, j, k)``),
coordinates in the IM-NET frame ``(-0.5, 0.5)^3`` (``impax.conventions``).

Performance: the z-part of every layer that sees ``[xyz, z]`` is the same for all points of a
shape, so :meth:`ImplicitDecoder.precompute` computes ``z @ W[z rows] + b`` once per shape and
:meth:`ImplicitDecoder.apply` adds it to ``xyz @ W[xyz rows]`` for every point; this removes
256 of the 259 input rows of the first (and, in the TF1 layout, of the skip) matmuls from the
per-point work. All parameters and activations are float32; ``IMNetConfig.precision`` is passed to
the matmuls (``None``: JAX's default, the same setting the benchmark's matmul peak uses).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

LAYOUTS = ("pytorch", "tf1")
OUTPUTS = ("auto", "leaky_clip", "clip", "sigmoid")


@dataclasses.dataclass(frozen=True)
class IMNetConfig:
    """IM-AE hyper-parameters; the defaults are IM-NET-pytorch's (``modelAE.py::IM_AE``).

    - ``layout``: ``"pytorch"`` (no skips, leaky clip) or ``"tf1"`` (skip concatenations, sigmoid).
    - ``z_dim``: latent size (256 in IM-NET / IM-NET-pytorch, 128 in the TF1 original).
    - ``ef_dim``: encoder base width (conv channels ef, 2ef, 4ef, 8ef = 32, 64, 128, 256).
    - ``gf_dim``: decoder base width (128: widths 8gf, 8gf, 8gf, 4gf, 2gf, gf in the pytorch layout,
      16gf, 8gf, 4gf, 2gf, gf in the tf1 layout).
    - ``point_dim``: 3.
    - ``input_size``: voxel resolution of the encoder input (64; 16·2^4 → the final 4³ VALID conv).
    - ``leaky_slope``: 0.02 everywhere in IM-NET.
    - ``norm_eps``: instance-norm epsilon (``nn.InstanceNorm3d`` default 1e-5).
    - ``norm_affine``: instance norms with a learned per-channel scale and offset (IM-NET TF1's
      ``tf.contrib.layers.instance_norm``; IM-NET-pytorch has none, the default).
    - ``output``: ``"auto"`` (the layout's own: leaky clip for pytorch, sigmoid for tf1), or force
      ``"leaky_clip"``, ``"clip"`` (the improved TF1 IM-NET's hard clip) or ``"sigmoid"``.
    - ``precision``: ``jax.lax.Precision`` name for the decoder matmuls (``None``: JAX default).
    """

    layout: str = "pytorch"
    z_dim: int = 256
    ef_dim: int = 32
    gf_dim: int = 128
    point_dim: int = 3
    input_size: int = 64
    leaky_slope: float = 0.02
    norm_eps: float = 1e-5
    norm_affine: bool = False
    output: str = "auto"
    precision: str | None = None

    def __post_init__(self) -> None:
        if self.layout not in LAYOUTS:
            raise ValueError(f"IMNetConfig.layout must be one of {LAYOUTS}, got {self.layout!r}")
        if self.output not in OUTPUTS:
            raise ValueError(f"IMNetConfig.output must be one of {OUTPUTS}, got {self.output!r}")
        if self.input_size != 64:
            raise ValueError("IMNetConfig.input_size: the IM-NET encoder is defined for 64^3 voxels")

    @property
    def output_activation(self) -> str:
        if self.output != "auto":
            return self.output
        return "leaky_clip" if self.layout == "pytorch" else "sigmoid"

    def decoder_widths(self) -> tuple[int, ...]:
        """Output width of every decoder layer, last one 1."""
        g = self.gf_dim
        if self.layout == "pytorch":
            return (8 * g, 8 * g, 8 * g, 4 * g, 2 * g, g, 1)
        return (16 * g, 8 * g, 4 * g, 2 * g, g, 1)

    def decoder_skip_layers(self) -> tuple[int, ...]:
        """Indices of the decoder layers whose input contains ``[xyz, z]`` (after the hidden ``h``)."""
        return (0,) if self.layout == "pytorch" else (0, 1, 2, 3, 4)


#: IM-NET-pytorch (and improved TF1 IM-NET) architecture: z 256, no skips, leaky clip.
IMNET_PYTORCH = IMNetConfig()
#: The original TF1 implicit-decoder (CVPR 2019 paper): z 128, skip concatenations, sigmoid.
IMNET_TF1 = IMNetConfig(layout="tf1", z_dim=128)
PRESETS: dict[str, IMNetConfig] = {"imnet-pytorch": IMNET_PYTORCH, "imnet-tf1": IMNET_TF1}


def preset(name: str) -> IMNetConfig:
    """A named :class:`IMNetConfig` preset (``"imnet-pytorch"`` or ``"imnet-tf1"``)."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown IM-NET preset {name!r}; choose from {sorted(PRESETS)}") from None


# ----------------------------------------------------------------------------------------------
# building blocks


def leaky_relu(x: jax.Array, slope: float = 0.02) -> jax.Array:
    """``max(x, slope·x)`` (IM-NET's ``lrelu``; slope 0.02)."""
    return jnp.maximum(x, slope * x)


def leaky_clip(x: jax.Array) -> jax.Array:
    """IM-NET-pytorch's output ``max(min(x, 0.01x + 0.99), 0.01x)``: identity on [0, 1], slope 0.01
    outside, so gradients never vanish (commit f45d185)."""
    return jnp.maximum(jnp.minimum(x, 0.01 * x + 0.99), 0.01 * x)


def apply_output(x: jax.Array, kind: str) -> jax.Array:
    if kind == "leaky_clip":
        return leaky_clip(x)
    if kind == "clip":
        return jnp.clip(x, 0.0, 1.0)
    if kind == "sigmoid":
        return jax.nn.sigmoid(x)
    raise ValueError(f"unknown output activation {kind!r}")


def instance_norm(x: jax.Array, eps: float = 1e-5) -> jax.Array:
    """Instance normalisation without affine parameters (``nn.InstanceNorm3d`` defaults): per sample
    and channel over the spatial axes of a channels-last ``[B, *spatial, C]`` array, biased
    variance."""
    axes = tuple(range(1, x.ndim - 1))
    mean = jnp.mean(x, axis=axes, keepdims=True)
    var = jnp.mean(jnp.square(x - mean), axis=axes, keepdims=True)
    return (x - mean) * jax.lax.rsqrt(var + eps)


def _host_rng(key: jax.Array) -> np.random.Generator:
    return np.random.default_rng([int(v) for v in np.asarray(jax.random.key_data(key)).ravel()])


def normal_init(std: float, mean: float = 0.0) -> Callable[..., jax.Array]:
    """Initializer N(mean, std²) (IM-NET's ``random_normal_initializer`` / ``nn.init.normal_``).

    With a concrete key the values are drawn on the host (numpy, seeded from the key): drawing with
    ``jax.random`` compiles one XLA program per parameter shape, about 1–2 s each on 2 CPU cores,
    which dominated model construction. Under tracing (``nnx.eval_shape``, ``jit``) it falls back to
    ``jax.random``.
    """

    def init(key: jax.Array, shape: tuple[int, ...], dtype: Any = jnp.float32) -> jax.Array:
        if isinstance(key, jax.core.Tracer):
            return (mean + std * jax.random.normal(key, shape, jnp.float32)).astype(dtype)
        return jnp.asarray(_host_rng(key).normal(mean, std, shape), dtype)

    return init


def xavier_uniform_init() -> Callable[..., jax.Array]:
    """Glorot/Xavier-uniform (``nn.init.xavier_uniform_``) for kernels ``[*k, in, out]``:
    U(±sqrt(6 / (fan_in + fan_out))) with fans ``in·prod(k)`` and ``out·prod(k)``; host-side like
    :func:`normal_init`."""
    fallback = nnx.initializers.xavier_uniform()

    def init(key: jax.Array, shape: tuple[int, ...], dtype: Any = jnp.float32) -> jax.Array:
        if isinstance(key, jax.core.Tracer):
            return fallback(key, shape, dtype)
        receptive = int(np.prod(shape[:-2])) if len(shape) > 2 else 1
        limit = float(np.sqrt(6.0 / ((shape[-2] + shape[-1]) * receptive)))
        return jnp.asarray(_host_rng(key).uniform(-limit, limit, shape), dtype)

    return init


def count_params(module: nnx.Module) -> int:
    """Number of trainable parameters (``nnx.Param`` leaves; batch-norm statistics excluded)."""
    return int(sum(x.size for x in jax.tree.leaves(nnx.state(module, nnx.Param))))


# ----------------------------------------------------------------------------------------------
# encoder


class VoxelEncoder(nnx.Module):
    """IM-NET 3D-CNN encoder (IM-NET-pytorch ``modelAE.py::encoder``): 64³×1 →
    4 × [conv3d k4 s2 pad 1 (no bias) → instance norm (no affine) → LeakyReLU 0.02] with ef, 2ef,
    4ef, 8ef channels → conv3d k4 s1 VALID (with bias) → sigmoid → z in (0, 1)^z_dim.

    Initialisation as the original: Xavier-uniform kernels, zero bias. Attribute names follow the
    IM-NET-pytorch state dict (``conv_1`` … ``conv_5``).
    """

    def __init__(self, cfg: IMNetConfig = IMNET_PYTORCH, *, rngs: nnx.Rngs):
        self.cfg = cfg
        e = cfg.ef_dim
        chans = (1, e, 2 * e, 4 * e, 8 * e)
        init = xavier_uniform_init()
        for i in range(4):
            setattr(self, f"conv_{i + 1}", nnx.Conv(chans[i], chans[i + 1], (4, 4, 4), strides=2,
                                                     padding=((1, 1),) * 3, use_bias=False,
                                                     kernel_init=init, rngs=rngs))
        self.conv_5 = nnx.Conv(8 * e, cfg.z_dim, (4, 4, 4), strides=1, padding="VALID", use_bias=True,
                               kernel_init=init, rngs=rngs)
        if cfg.norm_affine:
            for k, c in enumerate((e, 2 * e, 4 * e, 8 * e)):
                setattr(self, f"norm_{k + 1}_scale", nnx.Param(jnp.ones((c,), jnp.float32)))
                setattr(self, f"norm_{k + 1}_bias", nnx.Param(jnp.zeros((c,), jnp.float32)))

    def __call__(self, voxels: jax.Array) -> jax.Array:
        """``voxels`` float ``[B, 64, 64, 64]`` or ``[B, 64, 64, 64, 1]`` → z ``[B, z_dim]``."""
        x = jnp.asarray(voxels, jnp.float32)
        if x.ndim == 4:
            x = x[..., None]
        r = self.cfg.input_size
        if x.shape[1:] != (r, r, r, 1):
            raise ValueError(f"VoxelEncoder expects [B, {r}, {r}, {r}(, 1)] voxels, got {voxels.shape}")
        for k in range(1, 5):
            x = leaky_relu(self.norm(k, getattr(self, f"conv_{k}")(x)), self.cfg.leaky_slope)
        x = self.conv_5(x)
        return jax.nn.sigmoid(x.reshape(x.shape[0], self.cfg.z_dim))

    def norm(self, k: int, x: jax.Array) -> jax.Array:
        """The normalisation after ``conv_k``: instance norm, then ``norm_k_scale · x + norm_k_bias``
        when ``cfg.norm_affine``."""
        x = instance_norm(x, self.cfg.norm_eps)
        if self.cfg.norm_affine:
            x = x * getattr(self, f"norm_{k}_scale")[...] + getattr(self, f"norm_{k}_bias")[...]
        return x


# ----------------------------------------------------------------------------------------------
# decoder


class ImplicitDecoder(nnx.Module):
    """IM-NET implicit decoder ``f(xyz, z) → occupancy`` in either layout (see the module docstring).

    ``layers[i]`` is an ``nnx.Linear`` whose kernel is ``[in, out]``; for a layer that sees
    ``[xyz, z]`` the input rows are ordered ``[h (hidden, tf1 skips only), xyz, z]``, the original
    concatenation order. Initialisation as IM-NET-pytorch: weights N(0, 0.02²) (last layer mean
    1e-5), zero biases.
    """

    def __init__(self, cfg: IMNetConfig = IMNET_PYTORCH, *, rngs: nnx.Rngs):
        self.cfg = cfg
        widths = cfg.decoder_widths()
        skips = cfg.decoder_skip_layers()
        pz = cfg.point_dim + cfg.z_dim
        layers = []
        prev = 0
        for i, w in enumerate(widths):
            fan_in = prev + (pz if i in skips else 0)
            kinit = normal_init(0.02, 1e-5 if i == len(widths) - 1 else 0.0)
            layers.append(nnx.Linear(fan_in, w, kernel_init=kinit, rngs=rngs))
            prev = w
        self.layers = nnx.List(layers)
        self._skips = skips
        self._hidden_in = tuple(0 if i == 0 else widths[i - 1] for i in range(len(widths)))

    def _mm(self, a: jax.Array, b: jax.Array) -> jax.Array:
        return jnp.matmul(a, b, precision=self.cfg.precision)

    def precompute(self, z: jax.Array) -> tuple[jax.Array, ...]:
        """Per-shape constants: for each layer that sees ``[xyz, z]``, ``z @ W[z rows] + b``.

        ``z`` ``[S, z_dim]`` → tuple of ``[S, width_i]`` float32 arrays (one per such layer).
        """
        z = jnp.asarray(z, jnp.float32)
        if z.ndim != 2 or z.shape[1] != self.cfg.z_dim:
            raise ValueError(f"ImplicitDecoder expects z [S, {self.cfg.z_dim}], got {z.shape}")
        parts = []
        for i in self._skips:
            layer = self.layers[i]
            start = self._hidden_in[i] + self.cfg.point_dim
            parts.append(self._mm(z, layer.kernel[...][start:]) + layer.bias[...])
        return tuple(parts)

    def apply(self, points: jax.Array, zparts: tuple[jax.Array, ...]) -> jax.Array:
        """Occupancy ``[S, P]`` of ``points`` ``[S, P, 3]`` given :meth:`precompute` output."""
        points = jnp.asarray(points, jnp.float32)
        if points.ndim != 3 or points.shape[-1] != self.cfg.point_dim:
            raise ValueError(f"ImplicitDecoder expects points [S, P, {self.cfg.point_dim}], got {points.shape}")
        slope = self.cfg.leaky_slope
        d = self.cfg.point_dim
        n = len(self.layers)
        h = None
        k = 0
        for i in range(n):
            layer = self.layers[i]
            w = layer.kernel[...]
            if i in self._skips:
                off = self._hidden_in[i]
                a = self._mm(points, w[off:off + d]) + zparts[k][:, None, :]
                if off:
                    a = a + self._mm(h, w[:off])
                k += 1
            else:
                a = self._mm(h, w) + layer.bias[...]
            h = leaky_relu(a, slope) if i < n - 1 else apply_output(a, self.cfg.output_activation)
        return h[..., 0]

    def __call__(self, points: jax.Array, z: jax.Array) -> jax.Array:
        """``points`` ``[S, P, 3]``, ``z`` ``[S, z_dim]`` → occupancy ``[S, P]``."""
        return self.apply(points, self.precompute(z))

    def for_shape(self, z: jax.Array) -> Callable[[jax.Array], jax.Array]:
        """A compiled function ``points [P, 3] → occupancy [P]`` for one latent ``z`` ``[z_dim]``,
        with the z-part of the first (and skip) layers computed once, here (used by extraction).

        The weights are passed to one jitted program as arguments (not baked in as constants), so
        every shape and every call with the same ``P`` reuses one compilation. The returned function
        sees the weights as they are now (later in-place updates of the module are not reflected).
        """
        graphdef, state = nnx.split(self)
        zparts = _precompute_jit(graphdef, state, jnp.asarray(z, jnp.float32).reshape(1, -1))

        def query(points: jax.Array) -> jax.Array:
            return _apply_jit(graphdef, state, jnp.asarray(points, jnp.float32)[None], zparts)[0]

        return query


@functools.partial(jax.jit, static_argnums=0)
def _precompute_jit(graphdef: Any, state: Any, z: jax.Array) -> tuple[jax.Array, ...]:
    return nnx.merge(graphdef, state).precompute(z)


@functools.partial(jax.jit, static_argnums=0)
def _apply_jit(graphdef: Any, state: Any, points: jax.Array, zparts: tuple[jax.Array, ...]) -> jax.Array:
    return nnx.merge(graphdef, state).apply(points, zparts)


# ----------------------------------------------------------------------------------------------
# auto-encoder and loss


class IMNetAE(nnx.Module):
    """IM-AE: :class:`VoxelEncoder` + :class:`ImplicitDecoder` (IM-NET-pytorch ``im_network`` of
    ``modelAE.py``; attribute names ``encoder`` and ``generator`` as its state dict)."""

    def __init__(self, cfg: IMNetConfig = IMNET_PYTORCH, *, rngs: nnx.Rngs):
        self.cfg = cfg
        self.encoder = VoxelEncoder(cfg, rngs=rngs)
        self.generator = ImplicitDecoder(cfg, rngs=rngs)

    @property
    def decoder(self) -> ImplicitDecoder:
        return self.generator

    def __call__(self, voxels: jax.Array, points: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``voxels`` ``[S, 64, 64, 64]``, ``points`` ``[S, P, 3]`` → ``(z [S, Z], occupancy [S, P])``."""
        z = self.encoder(voxels)
        return z, self.generator(points, z)


def occupancy_mse(pred: jax.Array, target: jax.Array) -> jax.Array:
    """IM-AE loss: ``mean((pred - target)²)`` over all shapes and points (IM-NET ``network_loss``)."""
    pred = jnp.asarray(pred, jnp.float32)
    target = jnp.asarray(target, jnp.float32).reshape(pred.shape)
    return jnp.mean(jnp.square(pred - target))


def ae_loss(model: IMNetAE, batch: dict[str, Any]) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Occupancy MSE of ``model`` on a batch ``{"voxels": [S,64,64,64], "points": [S,P,3],
    "values": [S,P] or [S,P,1]}``; returns ``(loss, {"mse": loss})``."""
    _, pred = model(batch["voxels"], batch["points"])
    loss = occupancy_mse(pred, batch["values"])
    return loss, {"mse": loss}
