"""Loss terms of google/ldif ``training/loss.py`` as pure JAX functions (the trainer composes them).

Terms are selected by *substring* of the loss string as the original (``'unsbbgi'`` for LDIF:
``u``, ``ns``, ``bb``, ``gi``; ``'unsec'`` for SIF: ``u``, ``ns``, ``ec``), see
:func:`active_terms`. Weights come from :class:`impax.models.ldif_config.LdifConfig`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from impax.models.ldif_config import LdifConfig

#: Keys in the original's dictionary order.
TERM_KEYS = ("u", "ns", "ec", "oc", "m", "gd", "gs", "gi", "gf", "bb", "xv", "xp", "xw")
SUPPORTED = ("u", "ns", "ec", "m", "gi", "bb")


def active_terms(loss: str) -> tuple[str, ...]:
    """The terms a loss string selects (``key in loss``, as ``compute_loss``)."""
    keys = tuple(k for k in TERM_KEYS if k in loss)
    unsupported = [k for k in keys if k not in SUPPORTED]
    if unsupported:
        raise ValueError(f"loss terms {unsupported} are off in every published config and not implemented")
    if not keys:
        raise ValueError(f"loss string {loss!r} selects no term")
    return keys


def sample_loss(pred_f: jax.Array, gt_sdf: jax.Array, inside_weight: float = 1.0, hardness: float = 100.0,
                level: float = -0.07) -> jax.Array:
    """``mean(w (sigmoid(hdn (F - lset)) - 1[sdf > 0])^2)`` with ``w = ucf`` inside, 1 outside."""
    gt_class = (gt_sdf > 0).astype(pred_f.dtype)
    pred = jax.nn.sigmoid(hardness * (pred_f - level))
    w = jnp.where(gt_class > 0.5, 1.0, inside_weight)
    return jnp.mean(w * jnp.square(pred - gt_class))


def uniform_sample_loss(cfg: LdifConfig, pred_f, gt_sdf):
    """``l2w`` x the sample loss on uniform samples (``uniform_sample_loss``)."""
    return cfg.uniform_weight * sample_loss(pred_f, gt_sdf, cfg.inside_weight, cfg.hardness, cfg.iso_level)


def near_surface_sample_loss(cfg: LdifConfig, pred_f, gt_sdf):
    """``a2w`` x the sample loss on near-surface samples; ``ucf`` applies here too (as the original)."""
    return cfg.near_surface_weight * sample_loss(pred_f, gt_sdf, cfg.inside_weight, cfg.hardness, cfg.iso_level)


def _box_error(centers, lower, upper):
    lo = jnp.maximum(lower - centers, 0.0)
    hi = jnp.maximum(centers - upper, 0.0)
    return lo * lo + hi * hi


def bounding_box_loss(cfg: LdifConfig, centers: jax.Array) -> jax.Array:
    """``ibblw * mean(max(-0.7 - mu, 0)^2 + max(mu - 0.7, 0)^2)`` over batch, elements, axes."""
    return cfg.bbox_weight * jnp.mean(_box_error(centers, -cfg.bbox_half, cfg.bbox_half))


def center_magnitude_loss(cfg: LdifConfig, centers: jax.Array) -> jax.Array:
    """``cm * mean((mu + 1e-4)^2) + 1e-5`` (``shape_element_center_magnitude_loss``)."""
    return cfg.center_magnitude_weight * jnp.mean(jnp.square(centers + 1e-4)) + 1e-5


def interpolate_grid(grid: jax.Array, points: jax.Array, world2grid: jax.Array) -> jax.Array:
    """Trilinear interpolation as ``interpolate_util.interpolate`` (google/ldif).

    Args:
        grid: ``[B, Z, Y, X]`` node values in GAPS ``.grd`` order, as the original reads
            ``coarse_grid.grd`` (``[depth, height, width]``) and as
            :func:`impax.geometry.voxels.sdf_grid` stores it: ``grid[b, k, j, i]`` is the node with
            grid coordinates ``(i, j, k)``.
        points: ``[B, M, 3]`` world (x, y, z) points. world2grid: ``[B, 4, 4]`` (or ``[4, 4]``) world
            → continuous grid coordinates ``(i, j, k)`` (x, y, z order, as GAPS' matrix).

    Returns ``[B, M]``; fractional weights are clipped to ``[1e-5, 1 - 1e-5]`` and points whose
    cell leaves the grid get ``1e-5`` (no gradient), as the original. Same values as the numpy
    :func:`impax.geometry.voxels.interpolate_grid` inside the grid.
    """
    w2g = jnp.broadcast_to(world2grid, points.shape[:1] + (4, 4))
    gp = jnp.einsum("bij,bmj->bmi", w2g[:, :3, :3], points) + w2g[:, None, :3, 3]   # (i, j, k)
    lower = jnp.floor(gp)
    alpha = jnp.clip(gp - lower, 1e-5, 1 - 1e-5)
    lo = lower.astype(jnp.int32)
    hi = jnp.ceil(gp).astype(jnp.int32)
    size = jnp.array([grid.shape[3], grid.shape[2], grid.shape[1]], jnp.int32)       # x, y, z sizes
    invalid = jnp.any(lo < 0, axis=-1) | jnp.any(hi > size - 1, axis=-1)
    lo = jnp.where(invalid[..., None], 0, lo)
    hi = jnp.where(invalid[..., None], 0, hi)

    def gather(ix, iy, iz):
        return jax.vmap(lambda g, a, b, c: g[c, b, a])(grid, ix, iy, iz)

    ax, ay, az = alpha[..., 0], alpha[..., 1], alpha[..., 2]
    out = 0.0
    for cx, wx in ((lo[..., 0], 1 - ax), (hi[..., 0], ax)):
        for cy, wy in ((lo[..., 1], 1 - ay), (hi[..., 1], ay)):
            for cz, wz in ((lo[..., 2], 1 - az), (hi[..., 2], az)):
                out = out + wx * wy * wz * gather(cx, cy, cz)
    return jnp.where(invalid, 1e-5, out)


def grid_inside_loss(cfg: LdifConfig, centers: jax.Array, grid: jax.Array, world2grid: jax.Array) -> jax.Array:
    """``ig * mean((s(mu) 1[s(mu) > igt] + 1e-4)^2) + 1e-5``, s = trilinear lookup of the coarse SDF
    grid ``[B, Z, Y, X]`` (GAPS order, as stored by ``impax prepare``; see :func:`interpolate_grid`)."""
    s = interpolate_grid(grid, centers, world2grid)
    s = jnp.where(s > cfg.grid_inside_threshold, s, 0.0)
    return cfg.grid_inside_weight * jnp.mean(jnp.square(s + 1e-4)) + 1e-5


def element_center_loss(cfg: LdifConfig, centers: jax.Array, class_at_centers: jax.Array,
                        box_lower: jax.Array, box_upper: jax.Array) -> jax.Array:
    """SIF's ``ec`` loss (``shape_element_center_loss``).

    Args:
        centers: ``[B, N, 3]``; class_at_centers: ``[B, N]`` = sigmoid(hdn (F(mu) - lset));
        box_lower/upper: ``[B, 3]`` (or broadcastable) GT sample bounding box.

    ``mean(cc 1[mu in box] class^2 + ibblw * mean_xyz(box error))``.
    """
    lower = jnp.asarray(box_lower)
    upper = jnp.asarray(box_upper)
    lower = lower[:, None, :] if lower.ndim == 2 else lower
    upper = upper[:, None, :] if upper.ndim == 2 else upper
    err = jnp.mean(_box_error(centers, lower, upper), axis=-1)                 # [B, N]
    inside = (err <= 0.0).astype(centers.dtype)
    class_loss = cfg.center_class_weight * inside * jnp.square(class_at_centers)
    return jnp.mean(class_loss + cfg.bbox_weight * err)
