"""Test-time optimisation: fit a reconstruction to its own input (``impax reconstruct --refine STEPS``).

An encoder gives a guess in one forward pass; DeepSDF (Park et al. 2019) instead *optimises* a
shape's latent code against observations of that shape. ``--refine`` does both: start from the
encoder's guess and take ``STEPS`` Adam steps on the shape's own parameters, with the network's
weights fixed, against observations made from the input itself:

* **IM-AE from voxels** — the parameters are the code ``z = sigmoid(u)`` (the encoder's output
  range), the observations the input's 64³ voxels. IM-NET's voxels are max-pooled from a finer
  grid (a voxel is 1 when any part of its cell is inside), so the loss compares each voxel with
  the decoder's occupancy *max-pooled over points of its cell* (one random point in each octant
  of the cell)::

      L(u) = mean_c (max_s G(p_cs, sigmoid(u)) - v_c)^2

  over cells drawn half from the boundary band (cells whose 3³ neighbourhood is mixed) and half
  uniformly. ``pooled=False`` compares cell centres instead (voxels of cell-centre occupancy).
* **SIF/LDIF from depth** — the parameters are every element's activations (constant, centre,
  radii, angles: :func:`~impax.models.sif.to_activation`) and, for LDIF, its latent; the
  observations are points labelled by the depth views alone (:func:`impax.geometry.carve.depth_observations`),
  and the loss is the training loss on them, ``mean(w (sigmoid(h (F - l)) - outside)^2)``.
* **SIF/LDIF from a point cloud** — the same, with points labelled from the cloud's own samples
  (see :func:`point_observations`).

Nothing here looks at a ground truth the input does not contain.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

#: Default Adam step sizes (measured on the built-in shapes, see docs/quality.md).
IMNET_LR = 2e-2
SIF_LR = 5e-3


@dataclasses.dataclass(frozen=True)
class RefineConfig:
    """``steps`` Adam steps at ``learning_rate`` with ``batch`` observations (cells / points) per step."""

    steps: int = 0
    learning_rate: float | None = None
    batch: int = 2048
    seed: int = 0

    def __post_init__(self) -> None:
        if self.steps < 0:
            raise ValueError(f"refine steps must be >= 0, got {self.steps}")
        if self.batch < 1:
            raise ValueError(f"refine batch must be >= 1, got {self.batch}")


# ----------------------------------------------------------------------------------------------
# IM-AE


def boundary_cells(voxels: np.ndarray) -> np.ndarray:
    """Flat indices of the cells of a ``[R, R, R]`` grid whose 3³ neighbourhood holds both values."""
    from scipy.ndimage import maximum_filter, minimum_filter

    v = np.asarray(voxels) > 0
    mixed = maximum_filter(v, size=3, mode="nearest") != minimum_filter(v, size=3, mode="nearest")
    return np.flatnonzero(mixed)


def _cell_points(key: jax.Array, cells: jax.Array, res: int, pooled: bool) -> jax.Array:
    """Points ``[C, S, 3]`` in IM-NET's box: one uniform point per octant of each cell (``S = 8``), or
    the centre (``S = 1``)."""
    ijk = jnp.stack(jnp.unravel_index(cells, (res, res, res)), axis=-1).astype(jnp.float32)   # [C, 3]
    if not pooled:
        return ((ijk + 0.5) / res - 0.5)[:, None, :]
    octant = jnp.stack(jnp.meshgrid(*(jnp.arange(2.0),) * 3, indexing="ij"), -1).reshape(8, 3)
    u = jax.random.uniform(key, (cells.shape[0], 8, 3))
    return (ijk[:, None, :] + 0.5 * (octant[None] + u)) / res - 0.5


def _code_loss(gd: Any, state: Any, u: jax.Array, key: jax.Array, flat: jax.Array, band: jax.Array,
               n_band: jax.Array, res: int, batch: int, pooled: bool) -> jax.Array:
    from flax import nnx

    k1, k2, k3 = jax.random.split(key, 3)
    half = batch // 2
    cells = jnp.concatenate([band[jax.random.randint(k1, (half,), 0, n_band)],
                             jax.random.randint(k2, (batch - half,), 0, res ** 3)])
    pts = _cell_points(k3, cells, res, pooled)
    occ = nnx.merge(gd, state)(pts.reshape(1, -1, 3), jax.nn.sigmoid(u)[None])[0].reshape(pts.shape[:2])
    return jnp.mean(jnp.square(jnp.max(occ, axis=1) - flat[cells]))


@functools.partial(jax.jit, static_argnums=(0, 7, 8, 9, 10, 11))
def _run_code(gd, state, u, key, flat, band, n_band, res, batch, pooled, steps, lr):
    tx = optax.adam(lr)

    def body(carry, k):
        u, opt = carry
        g = jax.grad(lambda v: _code_loss(gd, state, v, k, flat, band, n_band, res, batch, pooled))(u)
        upd, opt = tx.update(g, opt, u)
        return (optax.apply_updates(u, upd), opt), None

    (u, _), _ = jax.lax.scan(body, (u, tx.init(u)), jax.random.split(key, steps))
    probe = _code_loss(gd, state, u, jax.random.key(0), flat, band, n_band, res, batch, pooled)
    return u, probe


def refine_code(decoder: Any, z0: np.ndarray, voxels: np.ndarray, cfg: RefineConfig, pooled: bool = True
                ) -> tuple[np.ndarray, dict[str, float]]:
    """Optimise an IM-AE code against its 64³ input voxels (see the module doc) → ``(z, stats)``;
    ``stats["loss"]``: the loss after the last step on one fixed draw of cells. One compilation per
    decoder structure and settings (the weights are arguments)."""
    from flax import nnx

    if cfg.steps == 0:
        return np.asarray(z0, np.float32), {}
    vox = np.asarray(voxels).reshape((voxels.shape[-1],) * 3)
    res = vox.shape[0]
    band = boundary_cells(vox)
    if len(band) == 0:
        band = np.arange(vox.size)
    n_band = len(band)
    band = np.pad(band, (0, vox.size - n_band))  # one array shape for every shape: one compilation
    gd, state = nnx.split(decoder)
    z0 = np.clip(np.asarray(z0, np.float32), 1e-4, 1.0 - 1e-4)
    u0 = jnp.asarray(np.log(z0) - np.log1p(-z0))
    u, probe = _run_code(gd, state, u0, jax.random.key(cfg.seed), jnp.asarray(vox.reshape(-1) > 0, jnp.float32),
                         jnp.asarray(band, jnp.int32), jnp.int32(n_band), res, int(cfg.batch), bool(pooled), int(cfg.steps),
                         float(cfg.learning_rate or IMNET_LR))
    return np.asarray(jax.nn.sigmoid(u), np.float32), {"loss": float(probe)}


# ----------------------------------------------------------------------------------------------
# SIF / LDIF


def _sif_values(p: Mapping[str, jax.Array], x: jax.Array, w: Mapping[str, jax.Array] | None, static: tuple) -> jax.Array:
    from impax.models.occnet import occnet_forward, occnet_forward_pairs
    from impax.models.sif import from_activation, shape_function, shape_function_topk

    radius_type, sym, cmode, _, _, _, topk = static
    shape = from_activation(p["act"], radius_type, sym, 0, cmode).replace(latents=p.get("latents"))
    b = jax.tree_util.tree_map(lambda a: a[None], shape)
    if w is None:
        return shape_function(b, x[None])[0]
    if topk:
        return shape_function_topk(b, x[None], lambda lat, e, q: occnet_forward_pairs(w, lat, e, q)[0], topk)[0]
    return shape_function(b, x[None], lambda lat, q: occnet_forward(w, lat, q)[0])[0]


def _sif_loss(p, w, pts, gt, idx, static):
    from impax.models.ldif_losses import sample_loss

    _, _, _, inside_weight, hardness, level, _ = static
    return sample_loss(_sif_values(p, pts[idx], w, static), gt[idx], inside_weight, hardness, level)


@functools.partial(jax.jit, static_argnums=(4, 5, 6, 7))
def _run_sif(p, w, pts, gt, static, batch, steps, lr):
    tx = optax.adam(lr)
    n = pts.shape[0]

    def body(carry, k):
        p, opt = carry
        g = jax.grad(_sif_loss)(p, w, pts, gt, jax.random.randint(k, (batch,), 0, n), static)
        upd, opt = tx.update(g, opt, p)
        return (optax.apply_updates(p, upd), opt), None

    (p, _), _ = jax.lax.scan(body, (p, tx.init(p)), jax.random.split(jax.random.key(0), steps))
    return p, _sif_loss(p, w, pts, gt, jnp.arange(min(n, 8192)), static)


def refine_sif(sif: Any, weights: Mapping[str, np.ndarray] | None, points: np.ndarray, inside: np.ndarray,
               model_cfg: Any, cfg: RefineConfig, topk: int = 0) -> tuple[Any, dict[str, float]]:
    """Optimise one unbatched SIF/LDIF (explicit parameters and latents) against labelled points
    (``points [M, 3]`` in its frame, ``inside [M]``) → ``(sif, stats)``; ``model_cfg`` is the run's
    :class:`~impax.models.ldif_config.LdifConfig` (hardness, level, inside weight, radius type);
    ``weights`` the decoder (``None`` for SIF); ``topk`` > 0 decodes only each point's ``k``
    largest elements in the optimisation (the run's training setting). ``stats["loss"]``: the
    loss after the last step on the first 8192 points. One compilation per shape structure,
    settings and number of points (the decoder weights are arguments)."""
    from impax.models.sif import from_activation, to_activation

    if cfg.steps == 0:
        return sif, {}
    s = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float32), sif)
    w = None if (weights is None or s.latents is None) else {k: jnp.asarray(v, jnp.float32)
                                                             for k, v in weights.items()}
    params = {"act": to_activation(s, model_cfg.constant_mode)}
    if w is not None:
        params["latents"] = s.latents
    static = (s.radius_type, int(s.symmetric_count), model_cfg.constant_mode, float(model_cfg.inside_weight),
              float(model_cfg.hardness), float(model_cfg.iso_level), int(topk) if w is not None else 0)
    pts = jnp.asarray(points, jnp.float32)
    gt = jnp.where(jnp.asarray(inside, bool), -1.0, 1.0)
    params, probe = _run_sif(params, w, pts, gt, static, min(int(cfg.batch), pts.shape[0]), int(cfg.steps),
                             float(cfg.learning_rate or SIF_LR))
    out = from_activation(params["act"], s.radius_type, s.symmetric_count, 0, model_cfg.constant_mode)
    return out.replace(latents=params.get("latents")).as_numpy(), {"loss": float(probe)}


def point_observations(points: np.ndarray, normals: np.ndarray | None, rng: np.random.Generator,
                       n_near: int = 8192, offset: float = 0.01) -> tuple[np.ndarray, np.ndarray]:
    """Labelled points from an oriented point cloud: each chosen point moved ``offset`` along its
    normal (outside) and against it (inside). ``normals`` are needed (a cloud without them gives
    no inside/outside evidence)."""
    if normals is None:
        raise ValueError("--refine from a point cloud needs normals")
    p = np.asarray(points, np.float32).reshape(-1, 3)
    nrm = np.asarray(normals, np.float32).reshape(-1, 3)
    nrm = nrm / np.maximum(np.linalg.norm(nrm, axis=1, keepdims=True), 1e-12)
    pick = rng.integers(0, len(p), int(n_near))
    sign = np.where(np.arange(int(n_near)) % 2 == 0, 1.0, -1.0)
    pts = p[pick] + (sign * offset)[:, None] * nrm[pick]
    return pts.astype(np.float32), sign < 0
