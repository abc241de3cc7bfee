"""IM-SVR image encoder (Chen & Zhang 2019; structure of IM-NET-pytorch ``modelSVR.py::img_encoder``).

A ResNet-18-like 2D CNN regresses the latent code of a trained IM-AE from one 128×128 grayscale
view; only the encoder is trained, against the AE's stored latents (loss :func:`latent_mse`), the
AE decoder being frozen (it is not even needed for the loss).

Layout (``img_ef_dim`` = 64, batch norm, LeakyReLU 0.02):

    input x = pixels/255 (white background = 1) → 1 - x
    conv_0 7×7 s2 pad 3 (64, no bias) → BN → LReLU                      128² → 64²
    res_1, res_2 (64) · res_3 (128, ↓2) · res_4 (128) · res_5 (256, ↓2) · res_6 (256)
    · res_7 (512, ↓2) · res_8 (512)                                     → 8²
    conv_9 4×4 s2 pad 1 (512, no bias) → BN → LReLU                     → 4²
    conv_10 4×4 VALID (z_dim, bias) → sigmoid                           → 1²

Residual block (IM-NET-pytorch ``resnet_block``): ``conv 3×3 (stride 1, or 2 when the width
changes, pad 1, no bias) → BN → LReLU → conv 3×3 → BN``, plus the input (or, when the width
changes, ``conv 1×1 s2 → BN`` of it), then LReLU. Padding is explicit (as PyTorch), not TF "SAME".

Batch norm follows ``nn.BatchNorm2d``: ε = 1e-5, running averages with momentum 0.1 (``nnx``
momentum 0.9); ``module.eval()`` switches to the running statistics. One difference: PyTorch
updates ``running_var`` with the unbiased batch variance, nnx with the biased one (the
normalisation itself uses the biased variance in both).

The TF1 originals differ in details (conv "SAME" padding, BN decay 0.999, 20 views with random
crops); the pytorch structure is the one whose released weights :mod:`impax.models.imnet_import`
loads.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from impax.models.imnet import IMNetConfig, ImplicitDecoder, leaky_relu, xavier_uniform_init


@dataclasses.dataclass(frozen=True)
class SVRConfig:
    """Image-encoder hyper-parameters (IM-NET-pytorch ``IM_SVR``): ``img_ef_dim`` 64, ``z_dim``
    256 (the AE's), ``image_size`` 128 (centre crop of the 137² renders), ``leaky_slope`` 0.02,
    ``bn_momentum`` 0.9 (= PyTorch 0.1), ``bn_eps`` 1e-5. Training settings of the original (for
    the trainer): batch 64, Adam 1e-4 / β1 0.5 over the encoder only, 1000 epochs, one random view
    of 24 per batch, no flip."""

    img_ef_dim: int = 64
    z_dim: int = 256
    image_size: int = 128
    leaky_slope: float = 0.02
    bn_momentum: float = 0.9
    bn_eps: float = 1e-5


def _conv(n_in: int, n_out: int, k: int, stride: int, pad: int, bias: bool, rngs: nnx.Rngs) -> nnx.Conv:
    return nnx.Conv(n_in, n_out, (k, k), strides=stride, padding=((pad, pad), (pad, pad)), use_bias=bias,
                    kernel_init=xavier_uniform_init(), rngs=rngs)


def _bn(n: int, cfg: SVRConfig, rngs: nnx.Rngs) -> nnx.BatchNorm:
    return nnx.BatchNorm(n, momentum=cfg.bn_momentum, epsilon=cfg.bn_eps, rngs=rngs)


class ResBlock(nnx.Module):
    """IM-NET-pytorch ``resnet_block(dim_in, dim_out)``; downsamples by 2 when the widths differ."""

    def __init__(self, dim_in: int, dim_out: int, cfg: SVRConfig, *, rngs: nnx.Rngs):
        self.slope = cfg.leaky_slope
        self.down = dim_in != dim_out
        self.conv_1 = _conv(dim_in, dim_out, 3, 2 if self.down else 1, 1, False, rngs)
        self.bn_1 = _bn(dim_out, cfg, rngs)
        self.conv_2 = _conv(dim_out, dim_out, 3, 1, 1, False, rngs)
        self.bn_2 = _bn(dim_out, cfg, rngs)
        if self.down:
            self.conv_s = _conv(dim_in, dim_out, 1, 2, 0, False, rngs)
            self.bn_s = _bn(dim_out, cfg, rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        h = leaky_relu(self.bn_1(self.conv_1(x)), self.slope)
        h = self.bn_2(self.conv_2(h))
        skip = self.bn_s(self.conv_s(x)) if self.down else x
        return leaky_relu(h + skip, self.slope)


class ImageEncoder(nnx.Module):
    """``images [B, 128, 128] (or [B, 128, 128, 1])``, float ``pixel/255`` → z ``[B, z_dim]`` in (0, 1).

    Attribute names follow the IM-NET-pytorch ``img_encoder`` state dict. Call ``.eval()`` for
    inference (running batch-norm statistics) and ``.train()`` for training (batch statistics).
    """

    def __init__(self, cfg: SVRConfig = SVRConfig(), *, rngs: nnx.Rngs):
        self.cfg = cfg
        e = cfg.img_ef_dim
        self.conv_0 = _conv(1, e, 7, 2, 3, False, rngs)
        self.bn_0 = _bn(e, cfg, rngs)
        widths = (e, e, e, 2 * e, 2 * e, 4 * e, 4 * e, 8 * e, 8 * e)
        for i in range(8):
            setattr(self, f"res_{i + 1}", ResBlock(widths[i], widths[i + 1], cfg, rngs=rngs))
        self.conv_9 = _conv(8 * e, 8 * e, 4, 2, 1, False, rngs)
        self.bn_9 = _bn(8 * e, cfg, rngs)
        self.conv_10 = nnx.Conv(8 * e, cfg.z_dim, (4, 4), strides=1, padding="VALID", use_bias=True,
                                kernel_init=xavier_uniform_init(), rngs=rngs)

    def __call__(self, images: jax.Array) -> jax.Array:
        x = jnp.asarray(images, jnp.float32)
        if x.ndim == 3:
            x = x[..., None]
        s = self.cfg.image_size
        if x.shape[1:] != (s, s, 1):
            raise ValueError(f"ImageEncoder expects [B, {s}, {s}(, 1)] images, got {images.shape}")
        slope = self.cfg.leaky_slope
        h = leaky_relu(self.bn_0(self.conv_0(1.0 - x)), slope)
        for i in range(8):
            h = getattr(self, f"res_{i + 1}")(h)
        h = leaky_relu(self.bn_9(self.conv_9(h)), slope)
        h = self.conv_10(h)
        return jax.nn.sigmoid(h.reshape(h.shape[0], self.cfg.z_dim))


def images_from_pixels(pixels, size: int = 128):
    """uint8 renders ``[..., H, W]`` (IM-NET's 137² ``pixels``) → float32 ``pixel/255``, centre
    cropped to ``size`` with IM-NET's offset ``(H - size) // 2`` (pytorch/improved-TF1 test-time
    crop)."""
    x = jnp.asarray(pixels)
    h, w = x.shape[-2:]
    oy, ox = (h - size) // 2, (w - size) // 2
    return x[..., oy:oy + size, ox:ox + size].astype(jnp.float32) / 255.0


def latent_mse(z_pred: jax.Array, z_target: jax.Array) -> jax.Array:
    """IM-SVR loss ``mean((z_pred - z_AE)²)`` (IM-NET-pytorch ``IM_SVR.network_loss``)."""
    return jnp.mean(jnp.square(jnp.asarray(z_pred, jnp.float32) - jnp.asarray(z_target, jnp.float32)))


#: IM-NET's render size; the encoder sees a centre crop of ``SVRConfig.image_size``.
VIEW_SIZE = 137


def crop_views(pixels: np.ndarray, size: int = 128) -> np.ndarray:
    """uint8 ``[..., H, W]`` renders → float32 ``pixel/255`` centre-cropped to ``size`` (offset
    ``(H - size) // 2``, IM-NET-pytorch's test-time and training crop)."""
    x = np.asarray(pixels)
    h, w = x.shape[-2:]
    oy, ox = (h - size) // 2, (w - size) // 2
    return x[..., oy:oy + size, ox:ox + size].astype(np.float32) / 255.0


class SVRModel(nnx.Module):
    """``encoder`` (:class:`ImageEncoder`, trained) and ``generator``
    (:class:`~impax.models.imnet.ImplicitDecoder`, the AE's, frozen) in one checkpointed module —
    IM-NET-pytorch's ``im_network`` of ``modelSVR.py`` (``img_encoder`` + ``generator``)."""

    def __init__(self, cfg: SVRConfig, ae_cfg: IMNetConfig, *, rngs: nnx.Rngs):
        self.encoder = ImageEncoder(cfg, rngs=rngs)
        self.generator = ImplicitDecoder(ae_cfg, rngs=rngs)


@functools.cache
def _encode_fn():
    return nnx.jit(lambda e, x: e(x))


def encode_images(encoder: ImageEncoder, images: np.ndarray, batch: int = 16) -> np.ndarray:
    """Codes ``[n, z_dim]`` of float ``pixel/255`` images ``[n, 128, 128]`` (running BN statistics)."""
    encoder.eval()
    out = []
    for i in range(0, len(images), batch):
        x = np.asarray(images[i:i + batch], np.float32)
        n = len(x)
        if n < batch:  # pad: one compiled shape for every call
            x = np.concatenate([x, np.repeat(x[-1:], batch - n, 0)])
        out.append(np.asarray(_encode_fn()(encoder, x))[:n])
    return np.concatenate(out).astype(np.float32) if out else np.zeros((0, encoder.cfg.z_dim), np.float32)
