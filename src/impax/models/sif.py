"""Structured implicit functions (SIF, Genova et al. 2019) and LDIF (Genova et al. 2020).

A shape is a set of N Gaussian *elements* ``(c, mu, sigma, euler)`` with optional per-element
latent vectors ``z``; the first ``symmetric_count`` elements have a mirrored twin evaluated at
z-reflected samples ``(x, y, -z)`` (google/ldif ``_tile_for_symgroups`` /
``_generate_symgroup_samples``). The shape function follows ``class_at_samples`` with the
published settings (``ipe='t'``, ``ag='s'``, ``pou='f'``)::

    F(x) = sum_i c_i g_i(x) (1 + f(z_i, T_i x))        # SIF: f = 0
    inside  <=>  F(x) < -0.07                           # LDIF_ISO_LEVEL
    P(outside) = sigmoid(100 (F(x) + 0.07))             # hdn = 100, lset = -0.07

Storage convention: :class:`StructuredImplicit` stores the per-axis standard deviation
``sigmas`` (the value written to SIF v1 files), so files round-trip bit-identically; the
variance used by the RBF is ``sigmas**2`` (as the ldif2mesh kernel squares the file value).
The network activation decoding (:func:`from_activation`) follows
``StructuredImplicit.from_activation``: ``c = -|a0|``, ``mu = a1:4 / 2``,
``sigma = 0.15 sigmoid(a4:7)`` (so the variance is ``(0.15 sigmoid)^2``), Euler angles clipped
to ``[-pi/4, pi/4]`` and ``R = Rz(yaw) Ry(pitch) Rx(roll)``.

RBF per radius type (``quadrics.py``):

* ``iso``: ``g = exp(-0.5 |x-mu|^2 / max(var, 1e-4))``; local frame ``x - mu``.
* ``aa``:  ``g = exp(-sum_k d_k^2 / max(2 var_k, 1e-8))``; local ``diag(1/(sqrt(var+1e-8)+1e-8)) (x-mu)``.
* ``cov``: ``g = exp(-0.5 d^T R diag(1/(var+1e-8)) R^T d)``; local
  ``diag(1/(sqrt(var+1e-8)+1e-8)) R^T (x-mu)`` (``tx='crs'``).

The original CUDA kernel (``ldif2mesh.cu``) skips small RBFs: an LDIF element contributes only
where ``g > 1e-4``, and a SIF group (the elements, or their mirrored twins) contributes only
where at least one of its RBFs exceeds ``1e-4``. :func:`shape_function` reproduces this with
``skip_threshold=KERNEL_SKIP_THRESHOLD`` (what fixture-faithful meshing uses); training uses
``skip_threshold=None`` (the TensorFlow graph of the original has no skip).

Layering: this module imports only JAX/numpy and :mod:`impax.conventions`.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from impax.conventions import LDIF_ISO_LEVEL

RADIUS_TYPES = ("iso", "aa", "cov")
#: Number of activation floats per element for each radius type (constant + centre + radius).
EXPLICIT_DOF = {"iso": 5, "aa": 7, "cov": 10}
#: ``max_blob_radius`` of ``from_activation``: sigma = 0.15 * sigmoid(a).
MAX_SIGMA = 0.15
#: Euler angles are clipped to +-pi/4 (``max_euler_angle``).
MAX_EULER = np.pi / 4.0
#: The ldif2mesh kernel treats an RBF as negligible when g <= 1e-4.
KERNEL_SKIP_THRESHOLD = 1e-4
#: ``hdn``: hardness of the soft class transfer.
CLASS_HARDNESS = 100.0

DecoderFn = Callable[[jax.Array, jax.Array], jax.Array]
"""``decoder(latents [E, L], local_points [E, P, 3]) -> f [E, P]`` evaluated for all elements at once."""


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class StructuredImplicit:
    """A (batch of) SIF/LDIF shape(s). Arrays may carry leading batch dimensions ``[...]``.

    Attributes:
        constants: ``[..., N]`` element constants c (<= 0 for trained shapes).
        centers: ``[..., N, 3]`` element centres mu.
        sigmas: ``[..., N, 3]`` per-axis standard deviations (``iso``: three equal values).
        rotations: ``[..., N, 3]`` roll, pitch, yaw in radians (zeros unless ``cov``).
        latents: ``[..., N, L]`` LDIF latent vectors, or ``None`` for a SIF.
        symmetric_count: the first ``symmetric_count`` elements get a z-mirrored twin (``lyr``).
        radius_type: ``"iso"``, ``"aa"`` or ``"cov"``.
    """

    constants: jax.Array
    centers: jax.Array
    sigmas: jax.Array
    rotations: jax.Array
    latents: jax.Array | None = None
    symmetric_count: int = dataclasses.field(default=0, metadata=dict(static=True))
    radius_type: str = dataclasses.field(default="cov", metadata=dict(static=True))

    def __post_init__(self) -> None:
        if self.radius_type not in RADIUS_TYPES:
            raise ValueError(f"radius_type must be one of {RADIUS_TYPES}, got {self.radius_type!r}")

    @property
    def element_count(self) -> int:
        return int(np.shape(self.constants)[-1])

    @property
    def effective_element_count(self) -> int:
        return self.element_count + self.symmetric_count

    @property
    def latent_size(self) -> int:
        return 0 if self.latents is None else int(np.shape(self.latents)[-1])

    @property
    def variances(self) -> jax.Array:
        """Per-axis variances sigma^2 (``radius[..., 0:3]`` of the original)."""
        return self.sigmas * self.sigmas

    def as_numpy(self) -> StructuredImplicit:
        return jax.tree_util.tree_map(lambda a: np.asarray(a, dtype=np.float32), self)

    def replace(self, **kw) -> StructuredImplicit:
        return dataclasses.replace(self, **kw)


def rotation_matrices(euler: jax.Array) -> jax.Array:
    """``R = Rz(yaw) Ry(pitch) Rx(roll)`` for ``[..., 3]`` (roll, pitch, yaw); ``camera_util``."""
    cx, cy, cz = (jnp.cos(euler[..., i]) for i in range(3))
    sx, sy, sz = (jnp.sin(euler[..., i]) for i in range(3))
    rows = [
        cz * cy, cz * sy * sx - sz * cx, cz * sy * cx + sz * sx,
        sz * cy, sz * sy * sx + cz * cx, sz * sy * cx - cz * sx,
        -sy, cy * sx, cy * cx,
    ]
    return jnp.stack(rows, axis=-1).reshape(euler.shape[:-1] + (3, 3))


def from_activation(activation: jax.Array, radius_type: str = "cov", symmetric_count: int = 0,
                    latent_size: int = 0, constant_mode: str = "a") -> StructuredImplicit:
    """Decode network activations ``[..., N, dof (+L)]`` as ``StructuredImplicit.from_activation``.

    ``constant_mode='a'`` gives ``c = -|a|`` (``cp='a'``, the default); ``'s'`` gives
    ``sigmoid(a) - 1``. For ``iso`` the single radius activation gives one sigma for all axes.
    """
    if radius_type not in RADIUS_TYPES:
        raise ValueError(f"unknown radius_type {radius_type!r}")
    activation = jnp.asarray(activation)
    dof = EXPLICIT_DOF[radius_type]
    if activation.shape[-1] != dof + latent_size:
        raise ValueError(f"expected {dof}+{latent_size} activations per element for radius_type="
                         f"{radius_type!r}, got {activation.shape[-1]}")
    a_c = activation[..., 0]
    if constant_mode == "a":
        constants = -jnp.abs(a_c)
    elif constant_mode == "s":
        constants = jax.nn.sigmoid(a_c) - 1.0
    else:
        raise ValueError(f"unknown constant_mode {constant_mode!r}")
    centers = activation[..., 1:4] / 2.0
    n_rad = {"iso": 1, "aa": 3, "cov": 3}[radius_type]
    sig = MAX_SIGMA * jax.nn.sigmoid(activation[..., 4:4 + n_rad])
    sigmas = jnp.broadcast_to(sig, centers.shape)
    if radius_type == "cov":
        rotations = jnp.clip(activation[..., 7:10], -MAX_EULER, MAX_EULER)
    else:
        rotations = jnp.zeros_like(centers)
    latents = activation[..., dof:] if latent_size else None
    return StructuredImplicit(constants, centers, sigmas, rotations, latents, symmetric_count, radius_type)


def to_activation(sif: StructuredImplicit, constant_mode: str = "a") -> jax.Array:
    """The activations ``[..., N, dof]`` that :func:`from_activation` decodes to ``sif``'s explicit
    parameters (its inverse on the decoded range; latents are not included): ``a0 = -c``
    (``'a'``) or ``logit(c + 1)`` (``'s'``), ``a1:4 = 2 mu``, ``a4:7 = logit(sigma / 0.15)``
    (``iso``: one value), ``a7:10 = euler`` (``cov``). Sigmas are clipped into (0, 0.15) first."""
    c = jnp.asarray(sif.constants)
    if constant_mode == "a":
        a_c = -c
    elif constant_mode == "s":
        a_c = jax.scipy.special.logit(jnp.clip(c + 1.0, 1e-6, 1.0 - 1e-6))
    else:
        raise ValueError(f"unknown constant_mode {constant_mode!r}")
    sig = jnp.clip(jnp.asarray(sif.sigmas) / MAX_SIGMA, 1e-6, 1.0 - 1e-6)
    a_s = jax.scipy.special.logit(sig)
    if sif.radius_type == "iso":
        a_s = jnp.mean(a_s, axis=-1, keepdims=True)
    parts = [a_c[..., None], 2.0 * jnp.asarray(sif.centers), a_s]
    if sif.radius_type == "cov":
        parts.append(jnp.asarray(sif.rotations))
    return jnp.concatenate(parts, axis=-1)


def _effective(sif: StructuredImplicit, arr: jax.Array | None, axis: int = -2) -> jax.Array | None:
    """Tile the first ``symmetric_count`` elements at the end (``_tile_for_symgroups``)."""
    if arr is None or not sif.symmetric_count:
        return arr
    n = sif.element_count
    ax = axis % arr.ndim
    first = jax.lax.slice_in_dim(arr, 0, sif.symmetric_count, axis=ax)
    del n
    return jnp.concatenate([arr, first], axis=ax)


def world2local(sif: StructuredImplicit) -> jax.Array:
    """``[..., N, 4, 4]`` world→local transforms (``_compute_world2local``, ``tx='crs'``).

    ``iso``: translation only; ``aa``: scale then translate; ``cov``: scale, inverse rotation,
    translate, with scale ``1 / (sqrt(var + 1e-8) + 1e-8)``.
    """
    lin = _local_linear(sif)
    t = -jnp.einsum("...ij,...j->...i", lin, sif.centers)
    top = jnp.concatenate([lin, t[..., None]], axis=-1)
    bottom = jnp.broadcast_to(jnp.array([0.0, 0.0, 0.0, 1.0], dtype=top.dtype), top.shape[:-2] + (1, 4))
    return jnp.concatenate([top, bottom], axis=-2)


def _local_linear(sif: StructuredImplicit) -> jax.Array:
    """``[..., N, 3, 3]`` linear part of world→local."""
    shape = sif.centers.shape[:-1]
    if sif.radius_type == "iso":
        return jnp.broadcast_to(jnp.eye(3, dtype=sif.centers.dtype), shape + (3, 3))
    scale = 1.0 / (jnp.sqrt(sif.variances + 1e-8) + 1e-8)
    if sif.radius_type == "aa":
        return scale[..., :, None] * jnp.eye(3, dtype=scale.dtype)
    rot_t = jnp.swapaxes(rotation_matrices(sif.rotations), -1, -2)
    return scale[..., :, None] * rot_t


def _flatten_batch(sif: StructuredImplicit, points: jax.Array):
    """Bring ``sif`` to ``[B, N, ...]`` and points to ``[B, P, 3]``; returns the batch shape."""
    batch = tuple(np.shape(sif.constants)[:-1])
    b = int(np.prod(batch)) if batch else 1

    def flat(a, tail):
        return None if a is None else jnp.reshape(a, (b,) + tuple(np.shape(a)[len(batch):]))

    fsif = jax.tree_util.tree_map(lambda a: flat(a, None), sif)
    pts = jnp.asarray(points)
    if pts.ndim == 2:
        pts = jnp.broadcast_to(pts, (b,) + pts.shape)
    else:
        pts = jnp.reshape(pts, (b,) + pts.shape[-2:])
    return fsif, pts, batch


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class EffectiveElements:
    """All effective elements (twins included) as affine maps, ``[B, E, ...]``.

    A mirrored twin evaluated at ``S x`` (``S = diag(1, 1, -1)``) is the same as an ordinary element
    whose linear maps are right-multiplied by ``S``, so every element is::

        g_e(x)     = exp(-0.5 |G_e x + h_e|^2)           (the radius-type RBF)
        local_e(x) = L_e x + l_e                         (world2local, tx='crs')

    which turns the per-element work into matrix products.
    """

    constants: jax.Array      # [B, E]
    g_lin: jax.Array          # [B, E, 3, 3]
    g_off: jax.Array          # [B, E, 3]
    loc_lin: jax.Array        # [B, E, 3, 3]
    loc_off: jax.Array        # [B, E, 3]
    centers: jax.Array        # [B, E, 3] world-space centre (twins: reflected)
    latents: jax.Array | None  # [B, E, L]


def effective_elements(sif: StructuredImplicit) -> EffectiveElements:
    """The affine form of every effective element of a (flattened-batch) shape; see :class:`EffectiveElements`."""
    b = int(np.prod(np.shape(sif.constants)[:-1])) if np.ndim(sif.constants) > 1 else 1
    fsif = jax.tree_util.tree_map(lambda a: jnp.reshape(a, (b,) + tuple(np.shape(a)[np.ndim(sif.constants) - 1:])), sif)
    refl = jnp.array([1.0, 1.0, -1.0], dtype=fsif.centers.dtype)
    k = fsif.symmetric_count

    def with_twins(lin):  # twins evaluate at S x: right-multiply by S (negate the z column)
        return jnp.concatenate([lin, lin[:, :k] * refl], axis=1) if k else lin

    g_plain, l_plain = _g_lin_plain(fsif), _local_linear(fsif)
    mu = _effective(fsif, fsif.centers)
    g_off = -jnp.einsum("beij,bej->bei", _effective(fsif, g_plain, axis=-3), mu)
    loc_off = -jnp.einsum("beij,bej->bei", _effective(fsif, l_plain, axis=-3), mu)
    centers = jnp.concatenate([mu[:, :fsif.element_count], mu[:, fsif.element_count:] * refl], axis=1)
    return EffectiveElements(_effective(fsif, fsif.constants, axis=-1), with_twins(g_plain), g_off,
                             with_twins(l_plain), loc_off, centers, _effective(fsif, fsif.latents))


def _g_lin_plain(fsif: StructuredImplicit) -> jax.Array:
    var = fsif.variances
    if fsif.radius_type == "iso":
        return (1.0 / jnp.sqrt(jnp.maximum(var, 1e-4)))[..., :, None] * jnp.eye(3, dtype=var.dtype)
    if fsif.radius_type == "aa":
        return (1.0 / jnp.sqrt(jnp.maximum(var, 5e-9)))[..., :, None] * jnp.eye(3, dtype=var.dtype)
    rot_t = jnp.swapaxes(rotation_matrices(fsif.rotations), -1, -2)
    return (1.0 / jnp.sqrt(var + 1e-8))[..., :, None] * rot_t


def evaluate_elements(eff: EffectiveElements, points: jax.Array):
    """``g [B, E, P]`` and ``local [B, E, P, 3]`` of elements ``eff`` at ``points [B, P, 3]``."""
    y = jnp.einsum("bpj,beij->bepi", points, eff.g_lin) + eff.g_off[:, :, None, :]
    g = jnp.exp(-0.5 * jnp.sum(y * y, axis=-1))
    local = jnp.einsum("bpj,beij->bepi", points, eff.loc_lin) + eff.loc_off[:, :, None, :]
    return g, local


def element_terms(sif: StructuredImplicit, points: jax.Array):
    """RBF weights and local coordinates of every *effective* element at every sample.

    Args:
        sif: an unbatched-or-batched :class:`StructuredImplicit` ``[B?, N, ...]``.
        points: ``[P, 3]`` or ``[B, P, 3]`` world (GAPS-frame) samples.

    Returns:
        ``(constants [B, E], g [B, E, P], local [B, E, P, 3], latents [B, E, L] | None, batch)`` with
        ``E = N + symmetric_count``; mirrored twins see z-reflected samples.
    """
    fsif, pts, batch = _flatten_batch(sif, points)
    eff = effective_elements(fsif)
    g, local = evaluate_elements(eff, pts)
    return eff.constants, g, local, eff.latents, batch


def shape_function(sif: StructuredImplicit, points: jax.Array, decoder: DecoderFn | None = None,
                   skip_threshold: float | None = None) -> jax.Array:
    """``F(x) = sum_i c_i g_i(x) (1 + f(z_i, T_i x))`` at ``points``; shape ``[..., P]``.

    Args:
        sif: the shape(s); leading batch dims of ``sif`` are kept in the output.
        points: ``[P, 3]`` (shared by the batch) or ``[..., P, 3]``.
        decoder: the shared local decoder ``f`` for LDIF (called once on all ``B*E`` elements);
            ``None`` (or a SIF without latents) gives the SIF sum ``sum_i c_i g_i``.
        skip_threshold: ``None`` (training, the TF graph) or the kernel rule (``1e-4``): LDIF
            elements contribute only where ``g > t``; a SIF group contributes only where one of its
            RBFs exceeds ``t`` (see the module docstring).
    """
    consts, g, local, lat, batch = element_terms(sif, points)
    b, e, p = g.shape
    use_decoder = decoder is not None and lat is not None
    if use_decoder:
        f = decoder(lat.reshape(b * e, -1), local.reshape(b * e, p, 3)).reshape(b, e, p)
        terms = consts[:, :, None] * g * (1.0 + f)
    else:
        terms = consts[:, :, None] * g
    if skip_threshold is not None:
        big = g > skip_threshold
        if use_decoder:
            terms = jnp.where(big, terms, 0.0)
        else:
            n = sif.element_count
            keep_main = jnp.any(big[:, :n], axis=1, keepdims=True)
            mask = jnp.broadcast_to(keep_main, (b, n, p))
            if sif.symmetric_count:
                keep_sym = jnp.any(big[:, n:], axis=1, keepdims=True)
                mask = jnp.concatenate([mask, jnp.broadcast_to(keep_sym, (b, e - n, p))], axis=1)
            terms = jnp.where(mask, terms, 0.0)
    out = jnp.sum(terms, axis=1)
    return out.reshape(batch + (p,))


PairDecoderFn = Callable[[jax.Array, jax.Array, jax.Array], jax.Array]
"""``decoder(latents [B, E, L], element [B, M], local_points [B, M, 3]) -> f [B, M]``: the local
decoder at ``M`` (element, point) pairs per shape (:meth:`impax.models.occnet.OccNetDecoder.pairs`)."""


def shape_function_topk(sif: StructuredImplicit, points: jax.Array, decoder: PairDecoderFn,
                        k: int) -> jax.Array:
    """``F`` with the local decoder run only on each sample's ``k`` largest elements (training).

    ``F(x) = sum_i c_i g_i(x) + sum_{i in top_k(x)} c_i g_i(x) f(z_i, T_i x)``, where ``top_k(x)``
    are the ``k`` effective elements with the largest ``|c_i g_i(x)|`` at ``x``. Equal to
    :func:`shape_function` with a decoder when ``k`` is the effective element count; for smaller
    ``k`` it leaves out the decoder's correction of elements that barely reach ``x``. Not in the
    original (whose TF graph decodes every element at every sample): a training option that makes
    the decoder's cost ``k / E`` of the dense one (measured on the ``ldif`` cpu model, 4 shapes x
    512 samples, 48 elements: decoder forward + backward 125 ms dense, 11 ms at ``k = 8``).
    The selection is not differentiated (it is piecewise constant). ``points`` ``[B, P, 3]``.
    """
    consts, g, local, lat, batch = element_terms(sif, points)
    b, e, p = g.shape
    cg = consts[:, :, None] * g                                            # [B, E, P]
    base = jnp.sum(cg, axis=1)                                             # [B, P]
    if lat is None:
        return base.reshape(batch + (p,))
    k = min(int(k), e)
    _, idx = jax.lax.top_k(jax.lax.stop_gradient(jnp.abs(jnp.swapaxes(cg, 1, 2))), k)   # [B, P, k]
    sel_cg = jnp.take_along_axis(jnp.swapaxes(cg, 1, 2), idx, axis=2)                   # [B, P, k]
    sel_local = jnp.take_along_axis(jnp.swapaxes(local, 1, 2), idx[..., None], axis=2)  # [B, P, k, 3]
    f = decoder(lat, idx.reshape(b, p * k), sel_local.reshape(b, p * k, 3)).reshape(b, p, k)
    out = base + jnp.sum(sel_cg * f, axis=2)
    return out.reshape(batch + (p,))


def class_probability(f_values: jax.Array, hardness: float = CLASS_HARDNESS,
                      level: float = LDIF_ISO_LEVEL) -> jax.Array:
    """Soft class transfer ``sigmoid(hdn (F - lset))``: the probability of being *outside*."""
    return jax.nn.sigmoid(hardness * (f_values - level))


def is_inside(f_values, level: float = LDIF_ISO_LEVEL):
    """The inside rule ``F < -0.07``."""
    return f_values < level


def make_grid_evaluator(sif: StructuredImplicit, decoder: DecoderFn | None = None,
                        chunk: int = 32768, skip_threshold: float | None = KERNEL_SKIP_THRESHOLD):
    """A function ``points [M, 3] (numpy) -> F [M] (numpy)`` for one unbatched shape.

    Points are evaluated in fixed-size chunks by one jitted function (one compilation for any M),
    vectorised over elements and with the decoder run on all elements at once.
    """
    if np.ndim(sif.constants) != 1:
        raise ValueError("make_grid_evaluator needs an unbatched StructuredImplicit")
    sif_j = jax.tree_util.tree_map(jnp.asarray, sif)

    @jax.jit
    def _eval(s, pts):
        return shape_function(s, pts, decoder, skip_threshold)

    def evaluate(points: np.ndarray) -> np.ndarray:
        pts = np.asarray(points, dtype=np.float32).reshape(-1, 3)
        m = pts.shape[0]
        out = np.empty(m, dtype=np.float32)
        for start in range(0, m, chunk):
            block = pts[start:start + chunk]
            nb = block.shape[0]
            if nb < chunk:
                block = np.concatenate([block, np.zeros((chunk - nb, 3), np.float32)])
            out[start:start + nb] = np.asarray(_eval(sif_j, block))[:nb]
        return out

    return evaluate


def evaluate_grid(sif: StructuredImplicit, axis_coords: np.ndarray, decoder: DecoderFn | None = None,
                  skip_threshold: float | None = KERNEL_SKIP_THRESHOLD, block: int = 8,
                  pairs_per_call: int = 64) -> np.ndarray:
    """F on the grid ``axis_coords^3`` (the same coordinates on x, y, z); returns ``[R, R, R]`` indexed (x, y, z).

    SIFs are evaluated densely. For an LDIF with the kernel's skip rule the evaluation is
    *block-sparse and exact*: the grid is cut into ``block^3`` cells; an element whose RBF cannot
    exceed ``skip_threshold`` anywhere in a cell (conservative bound ``|G (x - mu)| >=
    s_min(G) |x - mu|``) contributes exactly zero there and is not decoded. Only the remaining
    (cell, element) pairs are decoded, ``pairs_per_call`` at a time by one jitted function.
    """
    c = np.asarray(axis_coords, dtype=np.float32)
    r = c.shape[0]
    if np.ndim(sif.constants) != 1:
        raise ValueError("evaluate_grid needs an unbatched StructuredImplicit")
    use_decoder = decoder is not None and sif.latents is not None
    if not use_decoder or skip_threshold is None:
        pts = np.stack(np.meshgrid(c, c, c, indexing="ij"), axis=-1).reshape(-1, 3)
        return make_grid_evaluator(sif, decoder, chunk=8192, skip_threshold=skip_threshold)(pts).reshape(r, r, r)

    nb = -(-r // block)
    pad = nb * block - r
    cp = np.concatenate([c, np.full(pad, c[-1], np.float32)]) if pad else c
    eff = jax.tree_util.tree_map(lambda a: np.asarray(a)[0], effective_elements(jax.tree_util.tree_map(jnp.asarray, sif)))
    # Cull (cell, element) pairs: inactive if dist(centre, cell box)^2 * s_min(G)^2 > 2 ln(1/t).
    smin = np.linalg.svd(eff.g_lin.astype(np.float64), compute_uv=False).min(axis=-1)
    cells = cp.reshape(nb, block)
    lo, hi = cells.min(axis=1), cells.max(axis=1)                         # per axis cell bounds [nb]

    def axis_gap(mu):                                                     # [E, nb] distance along an axis
        return np.maximum(0.0, np.maximum(lo[None, :] - mu[:, None], mu[:, None] - hi[None, :]))

    dx, dy, dz = (axis_gap(eff.centers[:, i].astype(np.float64)) for i in range(3))
    d2 = dx[:, :, None, None] ** 2 + dy[:, None, :, None] ** 2 + dz[:, None, None, :] ** 2   # [E, nb, nb, nb]
    limit = 2.0 * np.log(1.0 / skip_threshold) * 1.0001 + 1e-6
    active = d2 * (smin[:, None, None, None] ** 2) < limit
    e_idx, ix, iy, iz = np.nonzero(active)
    m = e_idx.size
    total = max(1, -(-m // pairs_per_call)) * pairs_per_call
    padn = total - m
    e_all = np.concatenate([e_idx, np.zeros(padn, np.int64)]).astype(np.int32)
    cell = (np.stack([ix, iy, iz], -1) if m else np.zeros((0, 3), np.int64))
    cell = np.concatenate([cell, np.zeros((padn, 3), np.int64)]).astype(np.int32)
    weight = np.concatenate([np.ones(m, np.float32), np.zeros(padn, np.float32)])
    step = _pair_evaluator(decoder, skip_threshold, block, nb)
    effj = jax.tree_util.tree_map(jnp.asarray, eff)
    cj = jnp.asarray(cp)
    out = jnp.zeros((nb ** 3, block ** 3), jnp.float32)
    for s0 in range(0, total, pairs_per_call):
        sl = slice(s0, s0 + pairs_per_call)
        out = step(out, effj, cj, jnp.asarray(e_all[sl]), jnp.asarray(cell[sl]), jnp.asarray(weight[sl]))
    out = np.asarray(out).reshape(nb, nb, nb, block, block, block)
    grid = out.transpose(0, 3, 1, 4, 2, 5).reshape(nb * block, nb * block, nb * block)
    return grid[:r, :r, :r]


_PAIR_CACHE: dict = {}


def _pair_evaluator(decoder: DecoderFn, skip_threshold: float, block: int, nb: int):
    key = (id(decoder), skip_threshold, block, nb)
    if key not in _PAIR_CACHE:
        base = np.stack(np.meshgrid(*(np.arange(block),) * 3, indexing="ij"), -1).reshape(-1, 3)

        @functools.partial(jax.jit, donate_argnums=0)
        def step(out, eff, coords, e_idx, cell, weight):
            sub = jax.tree_util.tree_map(lambda a: a[e_idx][:, None], eff)
            pts = coords[cell[:, None, :] * block + base[None]]          # [K, P, 3]
            g, local = evaluate_elements(sub, pts)                        # [K, 1, P]
            f = decoder(sub.latents[:, 0], local[:, 0])                   # [K, P]
            terms = sub.constants * g[:, 0] * (1.0 + f)
            vals = jnp.where(g[:, 0] > skip_threshold, terms, 0.0) * weight[:, None]
            flat = (cell[:, 0] * nb + cell[:, 1]) * nb + cell[:, 2]
            return out.at[flat].add(vals)

        _PAIR_CACHE.clear()
        _PAIR_CACHE[key] = (step, decoder)
    return _PAIR_CACHE[key][0]
