"""IM-NET's voxel encoder in space-to-depth form: the same function of the same parameters, fast on CPU.

XLA's CPU backend computes the *input* gradient of a stride-2 ``conv3d`` very slowly (measured:
11.5 s for one 32³×16 → 16³×32 layer on a 16-shape batch, against 0.14 s for the same maths written
as space-to-depth + a dense product). :func:`encode_s2d` is :class:`~impax.models.imnet.VoxelEncoder`
written that way — same parameters, same outputs (tests check 1e-5 against the module) — with
hand-written gradients where autodiff's own are slow on CPU (:func:`_shifted_sum`,
:func:`_matmul_narrow`) and the one-channel first layer run one shape at a time
(:func:`conv_s2d_per_shape`). Measurements: docs/tuning.md.

That speed is a CPU matter: on a GPU the per-shape loop and the optimisation barriers serialise a
batch that cuDNN runs as one convolution. :func:`resolve_encoder` turns a recipe's
``fast_encoder`` setting (``"auto"``, ``True``/``False``, ``"s2d"``/``"conv"``) into the path for a
platform — ``"auto"``: space-to-depth on CPU, the module's own ``nnx.Conv`` elsewhere — and
:func:`encode` runs the chosen one. Training (``impax.train.recipes.imnet``) and inference
(:func:`impax.models.imnet_codes.encode_voxels`) both go through them.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from impax.models.imnet import leaky_relu
from impax.models.platform import is_cpu

#: The encoder paths: ``"s2d"`` (:func:`encode_s2d`) and ``"conv"`` (``VoxelEncoder.__call__``).
ENCODER_PATHS = ("s2d", "conv")
#: Every accepted ``fast_encoder`` value (booleans: what run configs recorded before ``"auto"``).
ENCODER_CHOICES = ("auto", "s2d", "conv", True, False)


def check_encoder_choice(choice: Any) -> None:
    """``ValueError`` unless ``choice`` is one of :data:`ENCODER_CHOICES` (``1`` is not ``True``)."""
    if not (isinstance(choice, bool) or (isinstance(choice, str) and choice in ("auto",) + ENCODER_PATHS)):
        raise ValueError(f"fast_encoder must be 'auto', 's2d', 'conv', true or false, got {choice!r}")


def resolve_encoder(choice: Any = "auto", platform: str | None = None) -> str:
    """The encoder path (``"s2d"`` or ``"conv"``) of a ``fast_encoder`` setting on ``platform``
    (``None``: the current backend): ``"auto"`` is ``"s2d"`` on CPU and ``"conv"`` elsewhere;
    ``True``/``False`` (older run configs) mean ``"s2d"``/``"conv"`` on every platform."""
    check_encoder_choice(choice)
    if isinstance(choice, bool):
        return "s2d" if choice else "conv"
    if choice == "auto":
        return "s2d" if is_cpu(platform) else "conv"
    return choice


def encode(encoder: Any, voxels: Any, choice: Any = "auto") -> Any:
    """``encoder(voxels)`` (a :class:`~impax.models.imnet.VoxelEncoder`) by the path
    :func:`resolve_encoder` picks for ``choice`` on the current backend (resolved when traced)."""
    if resolve_encoder(choice) == "s2d":
        return encode_s2d(encoder, voxels)
    return encoder(voxels)


#: The 8 block offsets (a, e, f) of a 2×2×2 window, in the order of the space-to-depth kernels.
_OFFSETS = tuple((a, e, f) for a in (0, 1) for e in (0, 1) for f in (0, 1))


def _conv_s2d(x: Any, kernel: Any, form: str = "auto", matmul: Any = None) -> Any:
    """``conv3d(k=4, stride=2, pad=1)`` of channels-last ``x`` [B,D,H,W,C] with ``kernel``
    [4,4,4,C,O], as space-to-depth (2×2×2 blocks → 8C channels) then a 2×2×2 stride-1 window
    product. Equal to ``lax.conv_general_dilated`` (cross-correlation, as ``nnx.Conv``).

    Two forms of the window product (``form``; ``"auto"``: ``"columns"`` for one input channel,
    else ``"product"``): ``"columns"`` gathers the 8 shifted blocks (8·8C columns) and multiplies
    once by the [64C, O] kernel; ``"product"`` multiplies the blocks once by all 8 offsets' kernels
    ([8C, 8O]) and adds the 8 shifted results, which never copies the input 8 times. Measured on
    one core (8 shapes, ef 8, forward + backward): layer 2 0.44 → 0.15 s, layer 3 0.10 → 0.04 s;
    on the 1-channel first layer the columns form is as fast and simpler. ``matmul``: the
    columns form's product (default ``@``)."""

    b, d, h, w, c = x.shape
    o = kernel.shape[-1]
    xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (1, 1), (0, 0)))
    d2, h2, w2 = (d + 2) // 2, (h + 2) // 2, (w + 2) // 2
    y = xp.reshape(b, d2, 2, h2, 2, w2, 2, c).transpose(0, 1, 3, 5, 2, 4, 6, 7).reshape(b, d2, h2, w2, 8 * c)
    # kernel offset k = 2a + p (a: block offset 0/1, p: position inside the block)
    k = kernel.reshape(2, 2, 2, 2, 2, 2, c, o)  # a1 p1 a2 p2 a3 p3 c o
    if form == "auto":
        form = "columns" if c == 1 else "product"
    if form == "columns":
        k = k.transpose(0, 2, 4, 1, 3, 5, 6, 7).reshape(8 * 8 * c, o)  # (a, p, c) rows
        cols = jnp.concatenate([y[:, a:a + d2 - 1, e:e + h2 - 1, f:f + w2 - 1] for a, e, f in _OFFSETS], axis=-1)
        return cols @ k if matmul is None else matmul(cols, k)
    if form != "product":
        raise ValueError(f"form must be 'auto', 'columns' or 'product', got {form!r}")
    k = k.transpose(1, 3, 5, 6, 0, 2, 4, 7).reshape(8 * c, 8 * o)  # rows (p, c), columns (a, o)
    z = (y.reshape(-1, 8 * c) @ k).reshape(b, d2, h2, w2, 8, o)
    return _shifted_sum(z)


def _shifted_sum(z: Any) -> Any:
    """``out[b, i, j, l] = Σ_{(a, e, f)} z[b, i + a, j + e, l + f, 4a + 2e + f]`` for ``z``
    [B, D, H, W, 8, O] → [B, D-1, H-1, W-1, O] (the window sum of the ``"product"`` form).

    Its gradient is written out (pad the incoming gradient once, stack 8 shifted windows) behind an
    optimisation barrier: autodiff's own transpose is a sum of 8 pads into which XLA fuses the
    producer of the gradient (an instance-norm backward), recomputing it 8 times per element —
    measured 15.9 ms of a 165 ms training step for layer 2 alone."""

    @jax.custom_vjp
    def ssum(z):
        _, d2, h2, w2 = z.shape[:4]
        out = None
        for i, (a, e, f) in enumerate(_OFFSETS):
            t = z[:, a:a + d2 - 1, e:e + h2 - 1, f:f + w2 - 1, i]
            out = t if out is None else out + t
        return out

    def fwd(z):
        return ssum(z), z.shape[1:4]

    def bwd(dims, g):
        d2, h2, w2 = dims
        gp = jnp.pad(jax.lax.optimization_barrier(g), ((0, 0), (1, 1), (1, 1), (1, 1), (0, 0)))
        return (jnp.stack([gp[:, 1 - a:1 - a + d2, 1 - e:1 - e + h2, 1 - f:1 - f + w2] for a, e, f in _OFFSETS],
                          axis=4),)

    ssum.defvjp(fwd, bwd)
    return ssum(z)


def _matmul_narrow(a: Any, w: Any) -> Any:
    """``a @ w`` for a tall ``a`` [..., K] and a narrow ``w`` [K, N], whose weight gradient is
    computed as ``(gᵀ a)ᵀ`` with ``gᵀ`` materialised. XLA's CPU backend runs the ``aᵀ g`` product
    that autodiff emits ~3-4× slower when N is small (measured: [32768, 64]ᵀ [32768, 8] 2.1 ms
    against 0.53 ms for the materialised form); the optimisation barriers keep XLA from folding
    the transposes back into that product. Same values as plain ``a @ w`` (tested)."""

    @jax.custom_vjp
    def mm(a, w):
        return a @ w

    def fwd(a, w):
        return a @ w, (a, w)

    def bwd(res, g):
        a, w = res
        gt = jax.lax.optimization_barrier(g.reshape(-1, g.shape[-1]).T)
        dw = jax.lax.optimization_barrier(gt @ a.reshape(-1, a.shape[-1])).T
        return g @ w.T, dw

    mm.defvjp(fwd, bwd)
    return mm(a, w)


def conv_s2d_per_shape(x: Any, kernel: Any) -> Any:
    """:func:`_conv_s2d` (``"columns"`` form, :func:`_matmul_narrow` product) one shape at a time
    (``lax.map`` over the batch, each step rematerialised in the backward pass).

    For the encoder's first layer (1 input channel) the column matrix of a batch is 64 floats per
    output cell (67 MB for 8 shapes at 64³): built and read whole it runs at this machine's memory
    bandwidth, one shape's 8 MB stays in cache. Measured on 2 cores, 8 shapes, forward + kernel
    gradient of layer 1: 61 ms whole batch → 16 ms per shape with the narrow-product gradient."""

    body = jax.checkpoint(lambda xs: _conv_s2d(xs[None], kernel, "columns", matmul=_matmul_narrow)[0])
    return jax.lax.map(body, x)


def encode_s2d(encoder: Any, voxels: Any) -> Any:
    """:class:`~impax.models.imnet.VoxelEncoder` forward with every stride-2 conv computed by
    :func:`_conv_s2d` and the final 4³ VALID conv as one matrix product: the same function of the
    same parameters, with a backward pass XLA's CPU backend runs ~50× faster."""


    cfg = encoder.cfg
    x = jnp.asarray(voxels, jnp.float32)
    if x.ndim == 4:
        x = x[..., None]
    for i in range(4):
        conv = getattr(encoder, f"conv_{i + 1}")
        x = conv_s2d_per_shape(x, conv.kernel[...]) if i == 0 else _conv_s2d(x, conv.kernel[...])
        x = leaky_relu(encoder.norm(i + 1, x), cfg.leaky_slope)
    c5 = encoder.conv_5
    z = x.reshape(x.shape[0], -1) @ c5.kernel[...].reshape(-1, cfg.z_dim) + c5.bias[...]
    return jax.nn.sigmoid(z)
