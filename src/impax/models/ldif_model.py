"""The whole SIF/LDIF network of google/ldif (``model/model.py::StructuredImplicitModel``) as one NNX module.

:class:`LdifModel` = an explicit-parameter encoder, then (LDIF only) the per-element local PointNet
that gives each element its latent, then the shared local decoder:

* ``input="depth"`` (the published configs, ``samp='imdpn'`` / ``'im1dpn'``): :class:`DepthEncoder`
  on the depth images. LDIF stacks the 20 dodecahedron views; SIF uses one view, index 1
  (``didx=1``). Images are resized (bilinear, no anti-aliasing, like TF1's ``resize_images``) to
  ``image_size`` when the stored size differs (the original renders 224^2 and resizes to 137^2).
* ``input="points"``: :class:`PointCloudEncoder` (``pointnet_sif_predictor``) on surface points with
  normals (impax's point-cloud variant; the paper's point-cloud results use the same head).
* LDIF's latents (``ia='p'``): :class:`LocalPointEncoder` on the surface points moved into each
  element's frame (``local_views_of_shape``); mirrored twins share their element's latent.

``encode`` returns a batched :class:`~impax.models.sif.StructuredImplicit`; ``decoder`` (``None``
for SIF/SIF++) is the :class:`~impax.models.occnet.OccNetDecoder` to pass to
:func:`~impax.models.sif.shape_function`. ``model.train()`` makes the decoder EMA-update its CBN
statistics as the original does in training; ``model.eval()`` freezes them.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from impax.models.ldif_config import LdifConfig
from impax.models.ldif_encoders import DepthEncoder, LocalPointEncoder, PointCloudEncoder
from impax.models.occnet import OccNetDecoder, occnet_forward
from impax.models.platform import QUERY_BATCH_CPU, query_batch
from impax.models.sif import (KERNEL_SKIP_THRESHOLD, StructuredImplicit, from_activation, shape_function,
                              world2local)

INPUTS = ("depth", "points")
#: Query batch of :func:`shape_values` on CPU (fixed, so it compiles once per shape structure); the
#: default is :func:`impax.models.platform.query_batch` (larger off CPU).
QUERY_BATCH = QUERY_BATCH_CPU
#: SIF's single depth image is view 1 of the 20 (``didx=1``).
SINGLE_VIEW_INDEX = 1


def select_views(depth, image_count: int):
    """The views an encoder sees: all (first ``image_count``) or, for one image, view 1 (``didx``)."""
    if image_count == 1:
        i = SINGLE_VIEW_INDEX if depth.shape[1] > SINGLE_VIEW_INDEX else 0
        return depth[:, i:i + 1]
    if depth.shape[1] < image_count:
        raise ValueError(f"the encoder needs {image_count} depth views, the data have {depth.shape[1]}")
    return depth[:, :image_count]


def resize_images(images, size: int):
    """``[B, V, H, W]`` → ``[B, V, size, size]`` bilinear (no-op when already that size)."""
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    return jax.image.resize(images, images.shape[:2] + (size, size), method="linear", antialias=False)


class LdifModel(nnx.Module):
    """SIF / SIF++ / LDIF network (see the module doc)."""

    def __init__(self, cfg: LdifConfig, input: str = "depth", *, rngs: nnx.Rngs):
        if input not in INPUTS:
            raise ValueError(f"input must be one of {INPUTS}, got {input!r}")
        if cfg.uses_local_decoder and cfg.decoder_width != cfg.latent_size:
            raise ValueError("the local decoder's width must equal the latent size (extracted.occnet layout)")
        self.cfg, self.input = cfg, input
        self.encoder = DepthEncoder(cfg, rngs=rngs) if input == "depth" else PointCloudEncoder(cfg, rngs=rngs)
        if cfg.uses_local_decoder:
            self.local = LocalPointEncoder(cfg, rngs=rngs)
            self.decoder = OccNetDecoder(cfg.decoder_width, cfg.latent_size, cfg.decoder_blocks, rngs=rngs,
                                         use_running_average=True)
        else:
            self.local = None
            self.decoder = None

    def encode(self, key: jax.Array, depth=None, surface_points=None, surface_normals=None) -> StructuredImplicit:
        """Batched shapes from ``depth [B, V, H, W]`` and/or surface points/normals ``[B, P, 3]``."""
        cfg = self.cfg
        if self.input == "depth":
            if depth is None:
                raise ValueError("this model encodes depth images")
            imgs = resize_images(select_views(jnp.asarray(depth, jnp.float32), cfg.image_count), cfg.image_size)
            act = self.encoder(imgs)
        else:
            if surface_points is None:
                raise ValueError("this model encodes surface points")
            feats = (jnp.concatenate([surface_points, surface_normals], -1) if cfg.use_normals
                     else surface_points)
            act = self.encoder(feats)
        sif = from_activation(act, cfg.radius_type, cfg.symmetric_count, 0, cfg.constant_mode)
        if self.local is None:
            return sif
        if surface_points is None:
            raise ValueError("LDIF's latents need surface points (with normals)")
        latents = self.local(key, surface_points, surface_normals, world2local(sif))
        return sif.replace(latents=latents)


def set_training(model: Any, training: bool) -> None:
    """Training mode: the decoder's CBN EMA-updates its statistics (and ResNet BN uses batch stats)."""
    for _, m in nnx.iter_graph(model):
        if isinstance(m, nnx.Module) and hasattr(m, "use_running_average"):
            m.use_running_average = not training


#: Key of the local-view sampling at inference (the original draws it at random per call).
INFERENCE_KEY = 0


def shape_inputs(store: Any, sid: str, cfg: LdifConfig, input: str = "depth",
                 surface_points: int = 10_000) -> dict[str, np.ndarray]:
    """One stored shape's encoder inputs (batch of 1): its depth views (``input="depth"``) and/or its
    first ``surface_points`` surface points with normals (point input, LDIF's local PointNet)."""
    out: dict[str, np.ndarray] = {}
    with store.open(sid) as f:
        if input == "depth":
            out["depth"] = np.asarray(select_views(f["depth"][()][None], cfg.image_count), np.float32)
        if input == "points" or cfg.uses_local_decoder:
            n = min(int(surface_points), f["surface_points"].shape[0])
            out["surface_points"] = f["surface_points"][:n][None].astype(np.float32)
            out["surface_normals"] = f["surface_normals"][:n][None].astype(np.float32)
    return out


@functools.cache
def _encode_fn():
    return nnx.jit(lambda m, key, d, p, n: m.encode(key, depth=d, surface_points=p, surface_normals=n))


def encode(model: LdifModel, inputs: Mapping[str, np.ndarray]) -> StructuredImplicit:
    """A batched :class:`~impax.models.sif.StructuredImplicit` (numpy float32) of encoder inputs, in
    evaluation mode with the fixed local-view key :data:`INFERENCE_KEY`."""
    set_training(model, False)
    sif = _encode_fn()(model, jax.random.key(INFERENCE_KEY), inputs.get("depth"), inputs.get("surface_points"),
                       inputs.get("surface_normals"))
    return sif.as_numpy()


def decoder_weights(model: LdifModel) -> dict[str, np.ndarray] | None:
    """The local decoder's arrays (float32 numpy, :func:`impax.models.occnet.weight_layout` names)."""
    if getattr(model, "decoder", None) is None:
        return None
    return {k: np.asarray(v, np.float32) for k, v in model.decoder.weights().items()}


def spread_elements(model: LdifModel, key: jax.Array, half: float = 0.4, constant: float = 0.1) -> None:
    """Start every shape as elements spread over the box instead of a clump at the origin (in place).

    Sets the bias of the explicit-parameter head so that, before training, element ``i`` sits at a
    centre ``mu_i ~ U(-half, half)^3`` (drawn once from ``key``, the same for every input) with
    constant ``c = -constant`` (``-|a|``: active; ``c < -0.07`` alone makes an element's centre
    inside) and the default ``sigma = 0.15 sigmoid(0)``; the head's weights keep their initial
    values, so the encoder adds per-shape offsets from there. Not in the original, which starts
    with every activation near zero (all elements within ~0.075 of the origin, ``|c| ~ 0.03``:
    the same small sphere for every input) and escapes that start only over many steps. With the
    elements spread out, each part of a shape has an element nearby whose gradient can reach it."""
    head = model.encoder.out if isinstance(model.encoder, DepthEncoder) else model.encoder.net.out
    n, dof = model.cfg.element_count, model.cfg.explicit_dof
    bias = np.array(head.bias[...], np.float32).reshape(n, dof)
    centres = np.asarray(jax.random.uniform(key, (n, 3), jnp.float32, -half, half))
    bias[:, 0] = constant                 # c = -|a|
    bias[:, 1:4] = 2.0 * centres          # mu = a / 2
    head.bias[...] = jnp.asarray(bias.reshape(-1))


# ----------------------------------------------------------------------------------------------
# evaluating one shape with the decoder weights as arguments (one compilation per structure)


@functools.lru_cache(maxsize=None)
def _values_fn(skip: bool):
    @jax.jit
    def f(sif, weights, points):
        dec = None if weights is None else (lambda lat, p: occnet_forward(weights, lat, p)[0])
        return shape_function(sif, points, dec, KERNEL_SKIP_THRESHOLD if skip else None)

    return f


def unbatch(sif: Any, i: int = 0) -> Any:
    """Shape ``i`` of a batched :class:`~impax.models.sif.StructuredImplicit`."""
    return sif.replace(constants=sif.constants[i], centers=sif.centers[i], sigmas=sif.sigmas[i],
                       rotations=sif.rotations[i], latents=None if sif.latents is None else sif.latents[i])


def sif_query(sif: Any, weights: Mapping[str, np.ndarray] | None, skip: bool = True,
              device_masks: bool | None = None):
    """``points [B, 3] -> F [B]`` float32 of one unbatched shape; the decoder ``weights`` (an
    ``extracted.occnet`` dict) are used when the shape has latents. ``skip``: the kernel's rule
    (an LDIF then goes through :class:`~impax.models.ldif_query.SparseLdifQuery`, which decodes
    only the element/point pairs the rule keeps; ``device_masks`` chooses its path, ``None``: by
    platform). The values may come back as a ``jax.Array`` not yet computed (the call only
    dispatches), so a caller such as the mesh extractor can queue several batches; ``np.asarray``
    reads them."""
    s = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float32), sif.as_numpy())
    w = None if (weights is None or s.latents is None) else {k: jnp.asarray(v, jnp.float32) for k, v in weights.items()}
    if s.latents is not None and w is None:
        raise ValueError("this shape has latents: its decoder weights are needed")
    if skip and w is not None:  # LDIF under the kernel's rule: decode only the active (point, element) pairs
        from impax.models.ldif_query import SparseLdifQuery

        return SparseLdifQuery(s, w, device_masks=device_masks)
    f = _values_fn(bool(skip))

    def fn(points: np.ndarray) -> Any:
        return f(s, w, jnp.asarray(points, jnp.float32))

    return fn


def shape_values(sif: Any, weights: Mapping[str, np.ndarray] | None, points: np.ndarray, skip: bool = True,
                 batch: int | None = None) -> np.ndarray:
    """F of one unbatched shape at ``points [M, 3]`` in fixed-size (padded) batches → f32 ``[M]``;
    ``batch``: points per call (``None``: :func:`impax.models.platform.query_batch`)."""
    batch = query_batch() if batch is None else int(batch)
    fn = sif_query(sif, weights, skip)
    pts = np.asarray(points, np.float32).reshape(-1, 3)
    out = np.empty(len(pts), np.float32)
    pending = []  # dispatch every batch first, read back after: the device never waits for the host
    for s in range(0, len(pts), batch):
        blk = pts[s:s + batch]
        n = len(blk)
        if n < batch:
            blk = np.concatenate([blk, np.zeros((batch - n, 3), np.float32)])
        pending.append((s, n, fn(blk)))
    for s, n, vals in pending:
        out[s:s + n] = np.asarray(vals)[:n]
    return out
