"""IM-AE codes of voxel grids, and decoder occupancy grids of codes (batched, one compilation each).

:func:`encode_voxels` runs the encoder over batches of voxel grids, by the path
:func:`impax.models.imnet_s2d.resolve_encoder` picks (``"auto"``: the space-to-depth form on CPU —
the same outputs, faster there — and the module's ``nnx.Conv`` layers elsewhere); :func:`decode_grid` evaluates the
decoder at the ``res``³ cell centres of IM-NET's box, with the per-shape part of the first layer
computed once per code (:meth:`~impax.models.imnet.ImplicitDecoder.precompute`). The compiled
functions take the modules as arguments, so every model of one structure shares them.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import numpy as np
from flax import nnx

from impax.conventions import imnet_grid_centres
from impax.models.imnet_s2d import encode, resolve_encoder


@functools.cache
def _encode(path: str):
    return nnx.jit(lambda enc, v: encode(enc, v, path))  # "s2d" = enc(v), faster on CPU


@functools.cache
def _precompute():
    return nnx.jit(lambda dec, z: dec.precompute(z))


@functools.cache
def _apply():
    return nnx.jit(lambda dec, p, zp: dec.apply(p, zp))


def encode_voxels(model: Any, voxels: np.ndarray, batch: int = 8, encoder: Any = "auto") -> np.ndarray:
    """Latent codes ``[n, z_dim]`` float32 of uint8/float voxels ``[n, 64, 64, 64]`` (``model``: an
    :class:`~impax.models.imnet.IMNetAE`); ``encoder``: a ``fast_encoder`` setting
    (:func:`~impax.models.imnet_s2d.resolve_encoder`, ``"auto"``: by platform)."""
    fn = _encode(resolve_encoder(encoder))
    out = [np.asarray(fn(model.encoder, np.asarray(voxels[i:i + batch], np.float32)))
           for i in range(0, len(voxels), batch)]
    return np.concatenate(out).astype(np.float32) if out else np.zeros((0, model.cfg.z_dim), np.float32)


def decoder_query(decoder: Any, z: np.ndarray):
    """``points [B, 3] -> occupancy [B]`` of one code (the decoder's per-shape part computed once)."""
    zp = _precompute()(decoder, np.asarray(z, np.float32).reshape(1, -1))
    app = _apply()

    def fn(points: np.ndarray) -> np.ndarray:
        return app(decoder, np.asarray(points, np.float32)[None], zp)[0]

    return fn


def decode_grid(decoder: Any, zs: np.ndarray, res: int = 64, batch: int = 65536) -> np.ndarray:
    """Decoder occupancy at the ``res``³ cell centres of IM-NET's box for every code: float32
    ``[n, res, res, res]`` (index order x, y, z; :func:`impax.conventions.imnet_grid_centres`)."""
    pts = imnet_grid_centres(res).reshape(-1, 3).astype(np.float32)
    batch = min(batch, len(pts))
    pad = (-len(pts)) % batch
    pts = np.concatenate([pts, np.repeat(pts[-1:], pad, 0)])
    out = np.empty((len(zs), res ** 3), np.float32)
    for s, z in enumerate(zs):
        fn = decoder_query(decoder, z)
        vals = [fn(pts[i:i + batch]) for i in range(0, len(pts), batch)]
        out[s] = np.concatenate([np.asarray(jax.device_get(v)) for v in vals])[:res ** 3]
    return out.reshape(len(zs), res, res, res)
