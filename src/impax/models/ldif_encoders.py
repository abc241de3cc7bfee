"""Encoders of google/ldif as Flax NNX modules.

* :class:`DepthEncoder` — ``cnn.early_fusion_cnn``: the V depth images are stacked as channels;
  backbone ``resnet50`` (slim ``resnet_v2_50`` trained from scratch, ``num_classes=2048``, then
  L2-normalised; ``cnna='s50'``) or ``cnn`` (``net_util.inputs_to_feature_vector``: five 3x3
  stride-2 convs 16-32-64-128-128 with leaky ReLU, then FC); then 2 x FC(2048, leaky ReLU) and a
  linear layer to ``N x dof`` activations.
* :class:`PointNet` — ``pointnet.pointnet_depr`` without the learned transforms (``p64='f'``):
  per-point 64-64 | 64-128-mfc (ReLU), global max-pool, FC 512-256 (ReLU), linear output.
* :class:`PointCloudEncoder` — ``model.pointnet_sif_predictor``: a PointNet on surface points
  (+ normals) predicting all element activations.
* :func:`local_views_of_shape` + :class:`LocalPointEncoder` — LDIF's ``ia='p'``: each element's
  latent from ``lpc`` surface points moved into its local frame (random points within local radius
  4, otherwise the nearest; normals by the inverse transpose), through a shared PointNet.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from impax.models.ldif_config import LdifConfig


def _leaky(x):
    return jax.nn.leaky_relu(x, 0.2)  # tf.nn.leaky_relu default alpha


class SimpleCNN(nnx.Module):
    """SIF's ``inputs_to_feature_vector``: 5 strided 3x3 convs then FC(features), leaky ReLU."""

    DEPTHS = (16, 32, 64, 128, 128)

    def __init__(self, in_channels: int, image_size: int, features: int, *, rngs: nnx.Rngs):
        convs, c, s = [], in_channels, image_size
        for d in self.DEPTHS:
            convs.append(nnx.Conv(c, d, (3, 3), strides=2, padding="SAME", rngs=rngs))
            c, s = d, -(-s // 2)
        self.convs = nnx.List(convs)
        self.fc = nnx.Linear(s * s * c, features, rngs=rngs)

    def __call__(self, x):
        for conv in self.convs:
            x = _leaky(conv(x))
        return _leaky(self.fc(x.reshape(x.shape[0], -1)))


class _Bottleneck(nnx.Module):
    """Pre-activation bottleneck unit of ResNet v2 (slim ``resnet_v2.bottleneck``)."""

    def __init__(self, cin: int, depth: int, bottleneck: int, stride: int, *, rngs: nnx.Rngs):
        self.stride = stride
        self.preact = nnx.BatchNorm(cin, momentum=0.997, epsilon=1e-5, rngs=rngs)
        self.shortcut = nnx.Conv(cin, depth, (1, 1), strides=stride, rngs=rngs) if cin != depth else None
        self.conv1 = nnx.Conv(cin, bottleneck, (1, 1), use_bias=False, rngs=rngs)
        self.bn1 = nnx.BatchNorm(bottleneck, momentum=0.997, epsilon=1e-5, rngs=rngs)
        # slim's conv2d_same: SAME at stride 1; at stride 2 an explicit (k - 1) // 2 = 1 on both sides
        # (SAME would pad 0/1 at even sizes, shifting every window by one pixel)
        pad = "SAME" if stride == 1 else ((1, 1), (1, 1))
        self.conv2 = nnx.Conv(bottleneck, bottleneck, (3, 3), strides=stride, padding=pad, use_bias=False, rngs=rngs)
        self.bn2 = nnx.BatchNorm(bottleneck, momentum=0.997, epsilon=1e-5, rngs=rngs)
        self.conv3 = nnx.Conv(bottleneck, depth, (1, 1), rngs=rngs)

    def __call__(self, x):
        pre = jax.nn.relu(self.preact(x))
        if self.shortcut is not None:
            short = self.shortcut(pre)
        else:
            short = x[:, ::self.stride, ::self.stride] if self.stride > 1 else x
        h = jax.nn.relu(self.bn1(self.conv1(pre)))
        h = jax.nn.relu(self.bn2(self.conv2(h)))
        return short + self.conv3(h)


class ResNet50V2(nnx.Module):
    """slim ``resnet_v2_50(num_classes, global_pool=True)``: 7x7/2 root conv, 3x3/2 max-pool, units
    [3, 4, 6, 3] (stride 2 on the last unit of the first three blocks), post-norm, global average
    pool, 1x1 logits conv."""

    BLOCKS = ((256, 64, 3, 2), (512, 128, 4, 2), (1024, 256, 6, 2), (2048, 512, 3, 1))

    def __init__(self, in_channels: int, num_classes: int = 2048, *, rngs: nnx.Rngs):
        self.root = nnx.Conv(in_channels, 64, (7, 7), strides=2, padding=((3, 3), (3, 3)), rngs=rngs)  # conv2d_same
        units, c = [], 64
        for depth, bott, n, stride in self.BLOCKS:
            for i in range(n):
                units.append(_Bottleneck(c, depth, bott, stride if i == n - 1 else 1, rngs=rngs))
                c = depth
        self.units = nnx.List(units)
        self.postnorm = nnx.BatchNorm(c, momentum=0.997, epsilon=1e-5, rngs=rngs)
        self.logits = nnx.Linear(c, num_classes, rngs=rngs)  # a 1x1 conv on the pooled vector

    def __call__(self, x):
        x = self.root(x)
        x = nnx.max_pool(x, (3, 3), strides=(2, 2), padding="SAME")
        for u in self.units:
            x = u(x)
        x = jax.nn.relu(self.postnorm(x))
        return self.logits(jnp.mean(x, axis=(1, 2)))


class DepthEncoder(nnx.Module):
    """Early-fusion CNN: ``[B, V, H, W]`` depth images -> ``[B, N, dof + L_explicit]`` activations."""

    def __init__(self, cfg: LdifConfig, out_per_element: int | None = None, *, rngs: nnx.Rngs):
        self.element_count = cfg.element_count
        # LDIF takes its latents from the local PointNet (ia='p'), so the CNN predicts explicit parameters.
        self.out_per_element = out_per_element or cfg.explicit_dof
        if cfg.encoder == "resnet50":
            self.backbone = ResNet50V2(cfg.image_count, 2048, rngs=rngs)
            feat, self.normalize = 2048, True
        elif cfg.encoder == "cnn":
            self.backbone = SimpleCNN(cfg.image_count, cfg.image_size, cfg.simple_cnn_features, rngs=rngs)
            feat, self.normalize = cfg.simple_cnn_features, False
        else:
            raise ValueError(f"unknown encoder {cfg.encoder!r}")
        self.fc1 = nnx.Linear(feat, cfg.fc_width, rngs=rngs)
        self.fc2 = nnx.Linear(cfg.fc_width, cfg.fc_width, rngs=rngs)
        self.out = nnx.Linear(cfg.fc_width, cfg.element_count * self.out_per_element, rngs=rngs)

    def __call__(self, images):
        x = jnp.transpose(images, (0, 2, 3, 1))           # views become channels
        e = self.backbone(x)
        if self.normalize:
            e = e / jnp.maximum(jnp.linalg.norm(e, axis=-1, keepdims=True), 1e-12)
        h = _leaky(self.fc2(_leaky(self.fc1(e))))
        return self.out(h).reshape(images.shape[0], self.element_count, self.out_per_element)


class PointNet(nnx.Module):
    """``pointnet_depr`` (no learned transforms): ``[B, P, F] -> [B, out]``."""

    def __init__(self, in_features: int, out_features: int, maxpool_features: int = 1024, *, rngs: nnx.Rngs):
        widths = (64, 64, 64, 128, maxpool_features)
        layers, c = [], in_features
        for w in widths:
            layers.append(nnx.Linear(c, w, rngs=rngs))
            c = w
        self.point_layers = nnx.List(layers)
        self.fc1 = nnx.Linear(c, 512, rngs=rngs)
        self.fc2 = nnx.Linear(512, 256, rngs=rngs)
        self.out = nnx.Linear(256, out_features, rngs=rngs)

    def __call__(self, points):
        h = points
        for layer in self.point_layers:
            h = jax.nn.relu(layer(h))
        h = jnp.max(h, axis=-2)
        return self.out(jax.nn.relu(self.fc2(jax.nn.relu(self.fc1(h)))))


class PointCloudEncoder(nnx.Module):
    """``pointnet_sif_predictor``: surface points (+ normals) ``[B, P, 3|6]`` -> ``[B, N, dof]``."""

    def __init__(self, cfg: LdifConfig, *, rngs: nnx.Rngs):
        self.element_count, self.dof = cfg.element_count, cfg.explicit_dof
        self.net = PointNet(6 if cfg.use_normals else 3, self.element_count * self.dof,
                            cfg.pointnet_maxpool_features, rngs=rngs)

    def __call__(self, points):
        return self.net(points).reshape(points.shape[0], self.element_count, self.dof)


def local_views_of_shape(key: jax.Array, points: jax.Array, world2local: jax.Array, count: int,
                         normals: jax.Array | None = None, threshold: float = 4.0):
    """``geom_util.local_views_of_shape``: ``count`` points per frame.

    Args:
        points: ``[B, P, 3]`` world points; world2local: ``[B, N, 4, 4]``; normals: ``[B, P, 3]``.

    Points within local distance ``threshold`` are chosen at random (uniform priority); if fewer
    than ``count`` qualify the nearest others fill in (priority ``-distance``). Returns
    ``(local_points [B, N, count, 3], local_normals | None)``; normals are mapped by the inverse
    transpose of the linear part and re-normalised.
    """
    lin, off = world2local[..., :3, :3], world2local[..., :3, 3]
    local = jnp.einsum("bnij,bpj->bnpi", lin, points) + off[:, :, None, :]
    dist = jnp.linalg.norm(local, axis=-1)
    prio = jnp.where(dist < threshold, jax.random.uniform(key, dist.shape), -dist)
    _, idx = jax.lax.top_k(prio, count)                                       # [B, N, count]
    chosen = jnp.take_along_axis(local, idx[..., None], axis=2)
    if normals is None:
        return chosen, None
    inv_t = jnp.swapaxes(jnp.linalg.inv(lin), -1, -2)
    ln = jnp.einsum("bnij,bpj->bnpi", inv_t, normals)
    ln = jnp.take_along_axis(ln, idx[..., None], axis=2)
    ln = ln / jnp.maximum(jnp.linalg.norm(ln, axis=-1, keepdims=True), 1e-12)
    return chosen, ln


class LocalPointEncoder(nnx.Module):
    """LDIF's per-element latents (``ia='p'``): a PointNet shared by all elements on each element's
    local view; ``(key, points, normals, world2local [B, N, 4, 4]) -> [B, N, L]``."""

    def __init__(self, cfg: LdifConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        self.net = PointNet(6 if cfg.use_normals else 3, cfg.latent_size, cfg.pointnet_maxpool_features, rngs=rngs)

    def __call__(self, key, points, normals, world2local):
        lp, ln = local_views_of_shape(key, points, world2local, self.cfg.local_point_count,
                                      normals if self.cfg.use_normals else None, self.cfg.local_radius)
        feats = jnp.concatenate([lp, ln], axis=-1) if ln is not None else lp
        b, n = feats.shape[:2]
        return self.net(feats.reshape(b * n, *feats.shape[2:])).reshape(b, n, -1)
