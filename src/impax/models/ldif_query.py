"""Fast queries of one LDIF shape: only the (point, element) pairs that the kernel's rule keeps are decoded.

The original meshes LDIF with a CUDA kernel (``ldif2mesh.cu``) that skips an element wherever its
RBF is ``g <= 1e-4``. With that rule ``F(x) = sum_e c_e g_e(x) (1 + f(z_e, T_e x))`` only needs the
decoder for the pairs ``(x, e)`` with ``g_e(x) > 1e-4`` — typically a few of the ``E`` elements per
point — while the dense evaluator (:func:`impax.models.sif.shape_function`) decodes all ``E``
elements at every point and masks afterwards. :class:`SparseLdifQuery` computes the same value
(up to float summation order) in two compiled steps per batch:

1. ``mask [E, N] = g > t`` for all pairs (one ``[N, 3] @ [3, 3E]`` product: cheap);
2. the active pairs (element-major) are grouped by element into tiles of fixed size and go
   through the decoder, a fixed number of tiles per compiled call; the decoder's conditional
   batch norms are folded per element beforehand (evaluation mode: ``gamma (h - m) / sqrt(v + eps)
   + beta = a_e h + b_e``), so a pair costs the decoder's point path only (~2.2k multiply-adds at
   width 32), and the terms ``c g (1 + f)`` are scatter-added per point on the device.

Where the pairs are found depends on the platform (``device_masks``, default
:func:`impax.models.platform.device_masks`):

* **host** (CPU): the mask comes to the host, ``np.nonzero`` lists the pairs and numpy builds the
  tiles, which go back in calls of ``tiles_per_call`` tiles. On CPU host and device share memory
  and this is the faster path.
* **device** (GPU/TPU): one compiled call per batch and no transfer at all — the pairs are
  compacted on the device (``jnp.nonzero`` with the static bound ``E · N``), each tile finds its
  element by a search over the cumulative tile counts, and a ``lax.while_loop`` runs the tiles in
  groups of ``tiles_per_call`` until the (device-side) tile count is reached. The result stays on
  the device, so the mesh extractor can queue the next batches before reading it back. Same
  tiles in the same order as the host path (tested equal on CPU).

Shapes without latents (SIF, SIF++) keep the dense evaluator: without a decoder it is already
cheap, and the SIF group rule (a group counts where any of its RBFs exceeds ``t``) is not per pair.

Layering: models only (JAX/numpy and :mod:`impax.models.sif`, :mod:`impax.models.occnet`).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from impax.models.occnet import SQRT_EPS, infer_sizes
from impax.models.platform import device_masks as default_device_masks
from impax.models.sif import KERNEL_SKIP_THRESHOLD, effective_elements



def fold_cbn(weights: Mapping[str, Any], latents: jax.Array) -> dict[str, tuple[jax.Array, jax.Array]]:
    """Per-element affine form ``(a [E, d], b [E, d])`` of every evaluation-mode CBN of the decoder."""
    _, _, blocks = infer_sizes(weights)
    names = [n for i in range(blocks) for n in (f"block{i}.cbn1", f"block{i}.cbn2")] + ["cbn_final"]
    out = {}
    for name in names:
        beta = latents @ weights[f"{name}.beta.kernel"] + weights[f"{name}.beta.bias"]
        gamma = latents @ weights[f"{name}.gamma.kernel"] + weights[f"{name}.gamma.bias"]
        a = gamma / jnp.sqrt(weights[f"{name}.var"] + SQRT_EPS)
        out[name] = (a, beta - a * weights[f"{name}.mean"])
    return out


def _active_mask(g_all, g_off, points, limit):
    """``[E, N]``: ``g_e(x_n) > t``, i.e. ``|G_e x + h_e|^2 < 2 ln(1/t)``, as one ``[N, 3] @ [3, 3E]`` product."""
    y = (points @ g_all + g_off).reshape(points.shape[0], -1, 3)
    return (jnp.sum(y * y, axis=-1) < limit).T


_active = jax.jit(_active_mask)


def _tile_terms(out, eff, weights, cbn, points, tile_elem, slot_point, slot_valid, threshold):
    """Add the terms ``c g (1 + f)`` of ``T`` tiles of pairs to ``out [N]``.

    ``tile_elem [T]``: the element of each tile; ``slot_point [T, S]``: the point of each slot,
    ``slot_valid [T, S]``: 0 for padding slots.
    """
    e = tile_elem
    x = points[slot_point]                                                      # [T, S, 3]
    y = jnp.einsum("tsj,tij->tsi", x, eff.g_lin[e]) + eff.g_off[e][:, None]
    g = jnp.exp(-0.5 * jnp.sum(y * y, axis=-1))                                 # [T, S]
    local = jnp.einsum("tsj,tij->tsi", x, eff.loc_lin[e]) + eff.loc_off[e][:, None]
    f = decode_tiles(weights, cbn, e, local)
    terms = jnp.where((g > threshold) & (slot_valid > 0), eff.constants[e][:, None] * g * (1.0 + f), 0.0)
    return out.at[slot_point.reshape(-1)].add(terms.reshape(-1))


_add_tiles = jax.jit(_tile_terms, donate_argnums=0)


@functools.partial(jax.jit, static_argnames=("tile", "tiles_per_call"))
def _query_on_device(eff, weights, cbn, points, g_all, g_off, limit, threshold, *, tile: int, tiles_per_call: int):
    """The device path of :class:`SparseLdifQuery` for one batch: ``(F [N], active pairs)``, both on
    the device. The tiles are those of the host path: element ``e``'s active points in increasing
    order, ``tile`` per tile, tile ``j`` belonging to the element whose cumulative tile count
    first exceeds ``j``; ``tiles_per_call`` tiles per loop iteration."""
    mask = _active_mask(g_all, g_off, points, limit)                             # [E, N]
    n_elem, n = mask.shape
    counts = jnp.sum(mask, axis=1, dtype=jnp.int32)                             # pairs per element
    tiles = (counts + tile - 1) // tile
    cum_tiles = jnp.cumsum(tiles)
    first_tile = cum_tiles - tiles
    first_pair = jnp.cumsum(counts) - counts
    n_tiles = cum_tiles[-1]
    bound = n_elem * n                                                          # static: every pair active
    (flat,) = jnp.nonzero(mask.reshape(-1), size=bound, fill_value=0)           # element-major, as np.nonzero
    pair_point = (flat % n).astype(jnp.int32)
    slots = jnp.arange(tile, dtype=jnp.int32)[None]

    def cond(carry):
        return carry[0] * tiles_per_call < n_tiles

    def body(carry):
        i, out = carry
        j = i * tiles_per_call + jnp.arange(tiles_per_call, dtype=jnp.int32)
        e = jnp.minimum(jnp.searchsorted(cum_tiles, j, side="right"), n_elem - 1).astype(jnp.int32)
        rank = (j - first_tile[e])[:, None] * tile + slots                      # the pair's rank in its element
        valid = (j < n_tiles)[:, None] & (rank < counts[e][:, None])
        point = jnp.where(valid, pair_point[jnp.clip(first_pair[e][:, None] + rank, 0, bound - 1)], 0)
        out = _tile_terms(out, eff, weights, cbn, points, e, point, valid.astype(jnp.float32), threshold)
        return i + 1, out

    _, out = jax.lax.while_loop(cond, body, (jnp.int32(0), jnp.zeros(n, jnp.float32)))
    return out, jnp.sum(counts)


def decode_tiles(weights: Mapping[str, Any], cbn: Mapping[str, tuple[jax.Array, jax.Array]],
                 tile_elem: jax.Array, local: jax.Array) -> jax.Array:
    """The local decoder ``f`` at ``local [T, S, 3]``, tile ``t`` belonging to element ``tile_elem[t]``
    (the layers of :func:`impax.models.occnet.occnet_forward` in evaluation mode, CBNs from
    :func:`fold_cbn`, gathered once per tile)."""
    _, _, blocks = infer_sizes(weights)

    def lin(name, h):
        y = h.reshape(-1, h.shape[-1]) @ weights[f"{name}.kernel"] + weights[f"{name}.bias"]
        return y.reshape(h.shape[:-1] + y.shape[-1:])

    def norm(name, h):
        a, b = cbn[name]
        return a[tile_elem][:, None] * h + b[tile_elem][:, None]

    h = lin("input", local)
    if blocks:
        h = norm("block0.cbn1", h)
    for i in range(blocks):
        if i:
            h = norm(f"block{i}.cbn1", h)
        h2 = jax.nn.relu(norm(f"block{i}.cbn2", lin(f"block{i}.fc1", jax.nn.relu(h))))
        h = h + lin(f"block{i}.fc2", h2)
    return lin("output", norm("cbn_final", h))[..., 0]


class SparseLdifQuery:
    """``points [N, 3] -> F [N]`` float32 of one unbatched LDIF under the kernel's skip rule.

    Equal to ``shape_function(sif, points, decoder, skip_threshold=threshold)`` (tested to 1e-5)
    but decodes only the active pairs; see the module docstring. The active pairs of a call are
    grouped by element into tiles of ``tile`` slots (one element per tile, so its folded CBNs and
    frame are gathered once per tile, not per pair), and ``tiles_per_call`` tiles go through one
    compiled call (one compilation; padding is wasted work only in the last call of a batch and
    in the last tile of each element).

    ``device_masks``: find the pairs on the device (one compiled call per batch, no host round
    trip; the result is a ``jax.Array`` still on the device) or on the host (``np.nonzero``; the
    result is a numpy array); ``None``: by platform (:func:`impax.models.platform.device_masks`:
    the host on CPU, the device elsewhere).
    """

    def __init__(self, sif: Any, weights: Mapping[str, Any], threshold: float = KERNEL_SKIP_THRESHOLD,
                 tile: int = 256, tiles_per_call: int = 128, device_masks: bool | None = None):
        if sif.latents is None:
            raise ValueError("SparseLdifQuery needs a shape with latents (LDIF); use the dense evaluator for SIF")
        if np.ndim(sif.constants) != 1:
            raise ValueError("SparseLdifQuery needs an unbatched StructuredImplicit")
        s = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float32), sif)
        self.eff = jax.tree_util.tree_map(lambda a: a[0], effective_elements(s))
        self.weights = {k: jnp.asarray(v, jnp.float32) for k, v in weights.items()}
        self.cbn = fold_cbn(self.weights, self.eff.latents)
        self.threshold = jnp.float32(threshold)
        e = self.eff.g_lin.shape[0]
        self._g_all = jnp.transpose(self.eff.g_lin, (2, 0, 1)).reshape(3, 3 * e)       # x -> all G_e x
        self._g_off = self.eff.g_off.reshape(-1)
        self._limit = jnp.float32(2.0 * np.log(1.0 / float(threshold)))
        self.tile, self.tiles_per_call = int(tile), int(tiles_per_call)
        self.device_masks = default_device_masks() if device_masks is None else bool(device_masks)
        self._pairs = 0  # active pairs decoded so far (statistics; device counts summed when read)
        self._device_pairs: list[Any] = []
        self.points = 0

    @property
    def pairs(self) -> int:
        """Active (point, element) pairs decoded so far (reading it waits for the device path's calls)."""
        if self._device_pairs:
            self._pairs += int(sum(int(c) for c in self._device_pairs))
            self._device_pairs.clear()
        return self._pairs

    def __call__(self, points: np.ndarray) -> Any:
        pts = np.ascontiguousarray(np.asarray(points, np.float32).reshape(-1, 3))
        n = len(pts)
        if n == 0:
            return np.zeros(0, np.float32)
        pts_j = jnp.asarray(pts)
        if self.device_masks:
            out, pairs = _query_on_device(self.eff, self.weights, self.cbn, pts_j, self._g_all, self._g_off,
                                          self._limit, self.threshold, tile=self.tile,
                                          tiles_per_call=self.tiles_per_call)
            self._device_pairs.append(pairs)
            if len(self._device_pairs) > 64:  # fold the oldest counts (long done) into the total
                old, self._device_pairs = self._device_pairs[:32], self._device_pairs[32:]
                self._pairs += int(sum(int(c) for c in old))
            self.points += n
            return out
        mask = np.asarray(_active(self._g_all, self._g_off, pts_j, self._limit))   # [E, N]
        e_idx, p_idx = np.nonzero(mask)                                            # sorted by element
        m = len(p_idx)
        self._pairs += m
        self.points += n
        out = jnp.zeros(n, jnp.float32)
        if m == 0:
            return np.asarray(out)
        # group the pairs by element into tiles of `tile` slots
        t = self.tile
        counts = np.bincount(e_idx, minlength=mask.shape[0])
        tiles = -(-counts // t)                                                    # tiles per element
        first_pair = np.concatenate([[0], np.cumsum(counts)[:-1]])
        first_slot = np.concatenate([[0], np.cumsum(tiles)[:-1]]) * t
        slot = first_slot[e_idx] + (np.arange(m) - first_pair[e_idx])
        n_tiles = int(tiles.sum())
        k = self.tiles_per_call
        total = -(-n_tiles // k) * k
        slot_point = np.zeros(total * t, np.int32)
        slot_valid = np.zeros(total * t, np.float32)
        slot_point[slot] = p_idx
        slot_valid[slot] = 1.0
        tile_elem = np.zeros(total, np.int32)
        tile_elem[:n_tiles] = np.repeat(np.arange(len(counts)), tiles)
        slot_point, slot_valid = slot_point.reshape(total, t), slot_valid.reshape(total, t)
        for s in range(0, total, k):
            out = _add_tiles(out, self.eff, self.weights, self.cbn, pts_j, jnp.asarray(tile_elem[s:s + k]),
                             jnp.asarray(slot_point[s:s + k]), jnp.asarray(slot_valid[s:s + k]), self.threshold)
        return np.asarray(out)
