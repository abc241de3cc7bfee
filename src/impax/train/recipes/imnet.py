"""The ``imnet-ae`` recipe: IM-AE (Chen & Zhang, CVPR 2019) trained progressively 16³ → 32³ → 64³.

``impax train imnet-ae --data DATA --out RUN [--preset paper|cpu]`` runs :func:`train`:

1. ``RUN/run.json`` records the recipe, the full :class:`ImnetAEConfig` and the data path; running
   the command again with the same settings resumes (the trainer restores parameters, Adam state,
   RNG and data position from the newest checkpoint).
2. :func:`impax.train.fit` runs one :class:`~impax.train.Stage` per level with
   :func:`impax.data.loader.imnet_loader` batches (or :class:`~impax.data.loader.ImnetHdf5Loader`
   for an official ``all_vox256_img_*.hdf5`` file) and the occupancy MSE of IM-NET.
3. At the end, like IM-NET-pytorch's ``--ae`` export (``modelAE.py::get_z``, whose own version is
   broken there), the training set's latent codes go to ``RUN/zs_train.hdf5`` (dataset ``zs``,
   ``[N, z_dim]`` float32) with the shape names in ``RUN/zs_train.txt`` (one per line, same order).
4. Mean 64³ voxel IoU on the training split and on the held-out splits: each shape's voxels are
   encoded, the decoder is evaluated at the 64³ cell centres (IM-NET's box, threshold 0.5) and
   compared with the stored voxels (also cell-centre occupancy). Written to
   ``RUN/eval_voxel_iou.json`` and returned in the summary.

Presets (:data:`PRESETS`):

* ``paper``: IM-NET-pytorch (``train_ae.sh``): z 256, ef 32, gf 128, 32 shapes × 4096 points per
  step, one random contiguous quarter of the 16384 level-64 points (``point_mode="chunk"``),
  200/200/400 epochs, Adam 5e-5, β1 0.5, and a fresh Adam per level (IM-NET-pytorch runs one
  process per level and saves only the network).
* ``cpu``: the same architecture family shrunk for 2 CPU cores (ef 8, gf 16, z 256 as the paper:
  decoder 259 → 128 → 128 → 128 → 64 → 32 → 16 → 1), Adam 1e-3 (β1 0.5) with a cosine decay to
  1e-5 (``lr_end_factor`` 0.01), 1/1 epochs of 4 shapes × 4096 points at levels 16/32, then 130
  epochs of 8 shapes × 1024 random level-64 points, Adam state kept across levels, and the
  ``"scaled"`` decoder init (see :class:`ImnetAEConfig`).
  Measured (2 cores, ``impax shapes --out S --count 330 --seed 0``; ``impax prepare S D --quick
  --voxels-256 --skip uniform,near,surface,sdf_grid,depth,views --split-fractions 0.8,0,0.2``:
  255 train / 75 held-out, IM-NET's 64³ voxels max-pooled from 256³; ``time impax train imnet-ae
  --data D --out RUN``): 4156 steps, 481 s training + 69 s evaluation (9 min 14 s wall), mean 64³
  IoU **0.857 train / 0.756 held-out** (held-out per family: box 0.93, sphere 0.94, ellipsoid
  0.92, mug 0.81, cylinder 0.77, chair 0.75, capsule 0.73, lamp 0.68, airplane 0.67, table 0.63,
  torus 0.61). How it got there (same data): the previous preset (z 128, 68 epochs of 8 × 2048)
  gave 0.772 / 0.712 in 485 s; a faster step (see the speed note: 2234 → 3071 steps in the same
  time) 0.825 / 0.734; 1024 instead of 2048 points per shape learns as much per step for ~20%
  less time (one core, 95 epochs: 0.829 / 0.752); z 256 0.841 / 0.753 (95 epochs, one core).
  Tried and not kept (one core, 95 epochs of 8 × 1024, against 0.829 / 0.752): Adam 2e-3 (loss
  clearly higher, stopped), decoder gf 20 (0.806 / 0.727 at 2048 points), encoder ef 12 (30%
  slower per step, no lower loss, stopped), 25% of the points as random 64³ cell centres
  (``grid_fraction`` 0.25: 0.828 / 0.751), training at the cell centres (``snap_points``:
  0.822 / 0.731 — spheres reach 1.00, thin shapes drop). Single runs differ by about ±0.01.
  Earlier (88 shapes, one core): 64³ cell-centre voxels alias the 1-cell-thin walls (lamp 0.35
  vs 0.60 on max-pooled 256³ voxels); 2 × 8192 points per step learned slower than 8 × 2048;
  a sigmoid + cross-entropy head, Adam 3e-4 and larger xyz/encoder rates were worse.
* ``demo``: what ``impax demo`` trains — the ``cpu`` recipe with its own stages (2/2 epochs of
  4 × 4096 points, then 72 epochs of 2 × 8192 level-64 points), TensorBoard
  on, a checkpoint every 30 s, no held-out evaluation. Measured with 40 epochs (one core,
  ``impax shapes --count 33``, 25 train / 8 held-out): 128 s training, IoU 0.51 / 0.45; in the
  full ``impax demo`` on 2 cores 40 epochs took 88 s of the stage's 170 s budget, hence 72.

Speed note (CPU): the cpu preset's level-64 step (8 shapes × 2048 points, 2 cores) went from
187 ms to ~150 ms with :func:`conv_s2d_per_shape` for the first layer and the explicit gradient
of :func:`_shifted_sum`, and the trainer's rate from 4.7 to 6.7 steps/s with the loader's memory
cache (:class:`~impax.data.loader.StoreLoader`). XLA's CPU backend computes the *input* gradient
of a stride-2 ``conv3d`` very slowly (measured: 11.5 s for one 32³×16 → 16³×32 layer on a
16-shape batch, against 0.14 s for the same maths written as space-to-depth + a dense product).
:func:`encode_s2d` is the IM-NET encoder written that way — same parameters, same outputs (tests
check 1e-5 against :class:`~impax.models.imnet.VoxelEncoder`) — and is what the training loss uses
when ``fast_encoder`` is on (the default).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from impax.configs import from_dict, to_dict
from impax.models.imnet import IMNET_PYTORCH, IMNetConfig
from impax.train.config import TrainConfig
from impax.train.recipes.common import apply_dotted, budget_epochs, record_iou, scheduled_adam, write_run_json
from impax.train.recipes.common import init_from as common_init_from

ZS_FILE = "zs_train.hdf5"
ZS_NAMES = "zs_train.txt"
EVAL_FILE = "eval_voxel_iou.json"


@dataclasses.dataclass(frozen=True)
class LevelStage:
    """One progressive level: ``epochs`` epochs of ``batch_size`` shapes × ``points`` points from
    the level-``level`` samples (IM-NET-pytorch: 32 × 4096 at every level)."""

    level: int
    epochs: int
    batch_size: int = 32
    points: int = 4096


@dataclasses.dataclass(frozen=True)
class ImnetAEConfig:
    """Everything an ``imnet-ae`` run depends on (the defaults are the ``paper`` preset).

    - ``model``: :class:`~impax.models.imnet.IMNetConfig` (IM-NET-pytorch layout by default).
    - ``train``: :class:`~impax.train.TrainConfig` (Adam 5e-5, β1 0.5).
    - ``stages``: the progressive levels, in order (16 → 32 → 64).
    - ``point_mode``: ``"chunk"`` (IM-NET-pytorch: one random aligned block of the level's points)
      or ``"random"`` (a random subset every step).
    - ``reset_optimizer``: fresh Adam state at each new level (IM-NET-pytorch) or carried over (TF1).
    - ``train_split`` / ``heldout_splits``: split names of a prepared store (``impax prepare``).
    - ``fast_encoder``: use :func:`encode_s2d` in the training loss (identical maths; see module doc).
    - ``decoder_init``: ``"imnet"`` keeps the model's N(0, 0.02²) init (IM-NET-pytorch);
      ``"scaled"`` re-draws the decoder kernels He-style, N(0, 2/fan_in), and the first layer's xyz
      rows N(0, ``xyz_init_std``²). Measured on the built-in shapes: with narrow decoders the
      0.02 init leaves the xyz signal ~10x below the z signal and the loss stays at the
      constant-predictor value (0.19) for hundreds of Adam steps; the scaled init starts learning
      at once. A recipe-level choice for small CPU models, not the paper's.
    - ``lr_schedule``: ``"constant"`` (IM-NET) or ``"cosine"``: Adam's step size decays by a cosine
      from ``train.learning_rate`` to ``lr_end_factor`` times it over all steps of all stages
      (``optax.cosine_decay_schedule``; a recipe-level choice for short CPU runs).
    - ``grid_fraction``: 0 (IM-NET: only the level's stored, surface-biased samples) or the fraction
      of each shape's points per step replaced by uniformly random 64³ cell centres labelled by the
      shape's own voxels (:func:`grid_points`, drawn in the loss with the step's RNG) — the points
      the 64³ IoU is measured at. A recipe-level sampling choice for short CPU runs, not the paper's.
    - ``budget_steps``: ``None`` (every stage runs its ``epochs``) or the steps of the whole run:
      the last stage's epochs are then chosen to fill it (:func:`~impax.train.recipes.common.budget_epochs`).
    - ``eval_batch``: decoder points per call when measuring IoU / exporting.
    """

    model: IMNetConfig = IMNET_PYTORCH
    train: TrainConfig = TrainConfig()
    stages: tuple[LevelStage, ...] = (LevelStage(16, 200), LevelStage(32, 200), LevelStage(64, 400))
    point_mode: str = "chunk"
    reset_optimizer: bool = True
    train_split: str = "train"
    heldout_splits: tuple[str, ...] = ("val", "test")
    fast_encoder: bool = True
    decoder_init: str = "imnet"
    xyz_init_std: float = 4.0
    lr_schedule: str = "constant"
    lr_end_factor: float = 0.1
    grid_fraction: float = 0.0
    snap_points: bool = False
    budget_steps: int | None = None
    eval_batch: int = 65536

    def __post_init__(self) -> None:
        if not self.stages:
            raise ValueError("ImnetAEConfig.stages must not be empty")
        if self.decoder_init not in ("imnet", "scaled"):
            raise ValueError(f"decoder_init must be 'imnet' or 'scaled', got {self.decoder_init!r}")
        if self.lr_schedule not in ("constant", "cosine"):
            raise ValueError(f"lr_schedule must be 'constant' or 'cosine', got {self.lr_schedule!r}")
        if not 0.0 <= self.grid_fraction <= 1.0:
            raise ValueError(f"grid_fraction must be in [0, 1], got {self.grid_fraction!r}")
        if self.point_mode not in ("chunk", "random"):
            raise ValueError(f"point_mode must be 'chunk' or 'random', got {self.point_mode!r}")


#: IM-NET-pytorch's recipe (``train_ae.sh``: 200/200/400 epochs, 32 shapes × 4096 points).
PAPER = ImnetAEConfig()

#: Sized for 2 CPU cores on the built-in shapes (``impax shapes --count 330``, 255 training shapes: 4156
#: steps, ~8 min); measured in the module docstring. Same encoder/decoder family, narrower (ef 8, gf 16, z 256).
CPU = ImnetAEConfig(
    model=dataclasses.replace(IMNET_PYTORCH, ef_dim=8, gf_dim=16, z_dim=256),
    train=TrainConfig(learning_rate=1e-3, log_every_steps=20, checkpoint_every_steps=200,
                      checkpoint_every_seconds=120.0),
    stages=(LevelStage(16, 1, 4, 4096), LevelStage(32, 1, 4, 4096), LevelStage(64, 130, 8, 1024)),
    point_mode="random",
    reset_optimizer=False,
    decoder_init="scaled",
    lr_schedule="cosine",
    lr_end_factor=0.01,
    budget_steps=4156,
)

#: What ``impax demo`` trains (≈ 150 s on 2 cores for the demo's ~26 training shapes of 11
#: families): the ``cpu`` recipe with its own stages (2 × 8192 points, 72 level-64 epochs),
#: TensorBoard on, a checkpoint every 30 s and no held-out evaluation (the demo reconstructs and
#: scores its held-out shapes itself).
DEMO = dataclasses.replace(
    CPU, stages=(LevelStage(16, 2, 4, 4096), LevelStage(32, 2, 4, 4096), LevelStage(64, 72, 2, 8192)),
    train=dataclasses.replace(CPU.train, tensorboard=True, checkpoint_every_seconds=30.0),
    heldout_splits=(), budget_steps=None,
)

#: ``pretrain``: the ``cpu`` recipe trained long (80 level-64 epochs) on the ``pretrain`` stream of
#: built-in shapes; what made the shipped ``pretrained:imnet-ae-cpu`` (see :mod:`impax.train.pretrained`).
PRETRAIN = dataclasses.replace(
    CPU, stages=(LevelStage(16, 1, 4, 4096), LevelStage(32, 1, 4, 4096), LevelStage(64, 80, 8, 1024)),
    budget_steps=None)

PRESETS: dict[str, ImnetAEConfig] = {"paper": PAPER, "cpu": CPU, "demo": DEMO, "pretrain": PRETRAIN}

#: Fields that may change when a run is resumed (they do not change the maths).
_RESUMABLE = {"train.max_steps", "train.progress", "train.log_every_steps", "train.checkpoint_every_steps",
              "train.checkpoint_every_seconds", "train.keep_checkpoints", "train.prefetch",
              "train.num_devices", "train.async_checkpointing", "train.handle_signals", "train.tensorboard",
              "eval_batch"}


# ----------------------------------------------------------------------------------------------
# config handling


def apply_overrides(cfg: ImnetAEConfig, overrides: Mapping[str, Any] | None) -> ImnetAEConfig:
    """``{"train.learning_rate": 1e-4, "model.gf_dim": 32, "stages.2.epochs": 5, "stages": [...]}``
    → a new config (dotted paths into :func:`~impax.configs.to_dict`; list indices allowed)."""
    if not overrides:
        return cfg
    return config_from_dict(apply_dotted(to_dict(cfg), overrides))


def config_from_dict(d: Mapping[str, Any]) -> ImnetAEConfig:
    d = dict(d)
    stages = tuple(LevelStage(**s) if isinstance(s, Mapping) else s for s in d.pop("stages", PAPER.stages))
    out = from_dict(ImnetAEConfig, d)
    return dataclasses.replace(out, stages=stages)


# ----------------------------------------------------------------------------------------------
# fast encoder


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
    import jax.numpy as jnp

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
    import jax
    import jax.numpy as jnp

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
    import jax

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
    import jax

    body = jax.checkpoint(lambda xs: _conv_s2d(xs[None], kernel, "columns", matmul=_matmul_narrow)[0])
    return jax.lax.map(body, x)


def encode_s2d(encoder: Any, voxels: Any) -> Any:
    """:class:`~impax.models.imnet.VoxelEncoder` forward with every stride-2 conv computed by
    :func:`_conv_s2d` and the final 4³ VALID conv as one matrix product: the same function of the
    same parameters, with a backward pass XLA's CPU backend runs ~50× faster."""
    import jax
    import jax.numpy as jnp

    from impax.models.imnet import instance_norm, leaky_relu

    cfg = encoder.cfg
    x = jnp.asarray(voxels, jnp.float32)
    if x.ndim == 4:
        x = x[..., None]
    for i in range(4):
        conv = getattr(encoder, f"conv_{i + 1}")
        x = conv_s2d_per_shape(x, conv.kernel[...]) if i == 0 else _conv_s2d(x, conv.kernel[...])
        x = leaky_relu(instance_norm(x, cfg.norm_eps), cfg.leaky_slope)
    c5 = encoder.conv_5
    z = x.reshape(x.shape[0], -1) @ c5.kernel[...].reshape(-1, cfg.z_dim) + c5.bias[...]
    return jax.nn.sigmoid(z)


def grid_points(voxels: Any, count: int, rng: Any) -> tuple[Any, Any]:
    """``count`` uniformly random cell centres per shape of a voxel batch ``[B, R, R, R(, 1)]`` and
    their occupancy: ``(points [B, count, 3], values [B, count, 1])`` float32, points in IM-NET's
    box (:func:`impax.conventions.imnet_grid_centres`: ``(i + 0.5) / R - 0.5``, axes x, y, z = voxel
    axes 0, 1, 2) — the same points and labels the 64³ IoU of :func:`evaluate_iou` counts."""
    import jax
    import jax.numpy as jnp

    v = jnp.asarray(voxels, jnp.float32)
    b, res = v.shape[0], v.shape[1]
    idx = jax.random.randint(rng, (b, int(count)), 0, res ** 3)
    values = jnp.take_along_axis(v.reshape(b, -1), idx, axis=1)[..., None]
    ijk = jnp.stack(jnp.unravel_index(idx, (res, res, res)), axis=-1).astype(jnp.float32)
    return (ijk + 0.5) / res - 0.5, values


def snap_to_cells(points: Any, res: int = 64) -> Any:
    """Points in IM-NET's box moved to the centre of their ``res``³ cell (``(⌊(p + 0.5)·res⌋ + 0.5)
    / res - 0.5``, clipped to the grid)."""
    import jax.numpy as jnp

    i = jnp.clip(jnp.floor((points + 0.5) * res), 0, res - 1)
    return (i + 0.5) / res - 0.5


def make_loss(fast_encoder: bool = True, grid_fraction: float = 0.0, snap_points: bool = False):
    """IM-AE loss ``mean((G(p, E(v)) - value)²)`` (IM-NET ``network_loss``) as a trainer ``loss_fn``.

    With ``grid_fraction`` > 0 the last ``round(grid_fraction * n)`` of each shape's ``n`` batch
    points are replaced by :func:`grid_points` drawn with the step's ``rng`` (see
    :class:`ImnetAEConfig`)."""
    import jax.numpy as jnp

    from impax.models.imnet import occupancy_mse

    def loss_fn(model: Any, batch: Mapping[str, Any], rng: Any):
        points, values = batch["points"], batch["values"]
        if snap_points:
            points = snap_to_cells(points)
        k = int(round(float(grid_fraction) * points.shape[1]))
        if k > 0:
            gp, gv = grid_points(batch["voxels"], k, rng)
            points = jnp.concatenate([points[:, :points.shape[1] - k], gp], axis=1)
            values = jnp.concatenate([values[:, :values.shape[1] - k], gv], axis=1)
        z = encode_s2d(model.encoder, batch["voxels"]) if fast_encoder else model.encoder(batch["voxels"])
        pred = model.generator(points, z)
        loss = occupancy_mse(pred, values)
        return loss, {"mse": loss}

    return loss_fn


# ----------------------------------------------------------------------------------------------
# data


class _Data:
    """A prepared store folder or an IM-NET HDF5 file, seen as splits of (name, voxels)."""

    def __init__(self, path: str | Path):
        from impax.data.store import ShapeStore, data_kind

        self.path = Path(path)
        self.kind = data_kind(self.path, strict=True)
        if self.kind == "store":
            self.store = ShapeStore(self.path)

    def loader(self, split: str, st: LevelStage, seed: int, point_mode: str) -> Any:
        if self.kind == "store":
            from impax.data.loader import imnet_loader

            return imnet_loader(self.store, split, level=st.level, batch_size=st.batch_size, points=st.points,
                                seed=seed, point_mode=point_mode)
        from impax.data.loader import ImnetHdf5Loader

        return ImnetHdf5Loader(self.path, level=st.level, batch_size=st.batch_size, points=st.points,
                               seed=seed, point_mode=point_mode)

    def splits(self) -> list[str]:
        if self.kind == "store":
            return sorted({e["split"] for e in self.store.entries()})
        return ["train"]

    def names(self, split: str) -> list[str]:
        if self.kind == "store":
            return self.store.ids(split)
        from impax.data.imnet_hdf5 import ImnetHdf5

        with ImnetHdf5(self.path) as f:
            return list(f.names)

    def voxels(self, split: str, names: Sequence[str]) -> np.ndarray:
        """uint8 [n, 64, 64, 64] in the order of ``names``."""
        if self.kind == "store":
            return np.stack([self.store.read(n, "voxels") for n in names]).reshape(-1, 64, 64, 64)
        from impax.data.imnet_hdf5 import ImnetHdf5

        with ImnetHdf5(self.path) as f:
            index = {n: i for i, n in enumerate(f.names)}
            return np.stack([f.voxels(index[n]) for n in names]).reshape(-1, 64, 64, 64)


# ----------------------------------------------------------------------------------------------
# encoding, IoU, export


_JIT: dict[str, Any] = {}


def _jitted() -> dict[str, Any]:
    """Module-level ``nnx.jit`` functions (one trace per model structure and batch shape, reused
    across shapes and calls)."""
    if not _JIT:
        from flax import nnx

        _JIT["encode"] = nnx.jit(lambda enc, v: encode_s2d(enc, v))  # = enc(v), faster on CPU
        _JIT["precompute"] = nnx.jit(lambda dec, z: dec.precompute(z))
        _JIT["apply"] = nnx.jit(lambda dec, p, zp: dec.apply(p, zp))
    return _JIT


def encode_voxels(model: Any, voxels: np.ndarray, batch: int = 8) -> np.ndarray:
    """Latent codes ``[n, z_dim]`` float32 of uint8/float voxels ``[n, 64, 64, 64]``."""
    f = _jitted()["encode"]
    out = [np.asarray(f(model.encoder, np.asarray(voxels[i:i + batch], np.float32)))
           for i in range(0, len(voxels), batch)]
    return np.concatenate(out).astype(np.float32) if out else np.zeros((0, model.cfg.z_dim), np.float32)


def decode_grid(decoder: Any, zs: np.ndarray, res: int = 64, batch: int = 65536) -> np.ndarray:
    """Decoder occupancy at the ``res``³ cell centres of IM-NET's box for every code: float32
    ``[n, res, res, res]`` (index order x, y, z; :func:`impax.conventions.imnet_grid_centres`)."""
    import jax

    from impax.conventions import imnet_grid_centres

    pts = imnet_grid_centres(res).reshape(-1, 3).astype(np.float32)
    batch = min(batch, len(pts))
    pad = (-len(pts)) % batch
    pts = np.concatenate([pts, np.repeat(pts[-1:], pad, 0)])
    pre, app = _jitted()["precompute"], _jitted()["apply"]
    out = np.empty((len(zs), res ** 3), np.float32)
    for s, z in enumerate(zs):
        zp = pre(decoder, np.asarray(z, np.float32)[None])
        vals = [app(decoder, pts[None, i:i + batch], zp) for i in range(0, len(pts), batch)]
        out[s] = np.concatenate([np.asarray(jax.device_get(v))[0] for v in vals])[:res ** 3]
    return out.reshape(len(zs), res, res, res)


def voxel_iou(pred: np.ndarray, gt: np.ndarray) -> float:
    """``|P ∧ G| / |P ∨ G|`` of two boolean grids (1.0 when both are empty)."""
    union = np.count_nonzero(pred | gt)
    return 1.0 if union == 0 else float(np.count_nonzero(pred & gt) / union)


def evaluate_iou(model: Any, voxels: np.ndarray, names: Sequence[str], batch: int = 65536,
                 threshold: float = 0.5, zs: np.ndarray | None = None) -> dict[str, Any]:
    """Mean 64³ voxel IoU of the AE reconstruction of every shape (see the module doc, step 4);
    ``zs``: the shapes' codes when already computed (default: encode ``voxels``)."""
    if zs is None:
        zs = encode_voxels(model, voxels)
    per = {}
    for i, name in enumerate(names):
        occ = decode_grid(model.generator, zs[i:i + 1], 64, batch)[0] > threshold
        per[name] = voxel_iou(occ, np.asarray(voxels[i]) > 0)
    vals = list(per.values())
    return {"mean_iou": float(np.mean(vals)) if vals else float("nan"), "count": len(vals), "per_shape": per}


def export_latents(model: Any, voxels: np.ndarray, names: Sequence[str], out: str | Path) -> tuple[Path, np.ndarray]:
    """Write ``zs`` [N, z] float32 to ``out/zs_train.hdf5`` and the names to ``out/zs_train.txt``;
    returns the file's path and the codes."""
    import h5py

    from impax.train.distributed import is_primary

    out = Path(out)
    zs = encode_voxels(model, voxels)
    path = out / ZS_FILE
    if not is_primary():  # one writer in a multi-process run
        return path, zs
    tmp = path.with_suffix(".hdf5.tmp")
    with h5py.File(tmp, "w") as f:
        f.create_dataset("zs", data=zs.astype(np.float32))
    tmp.replace(path)
    (out / ZS_NAMES).write_text("".join(f"{n}\n" for n in names))
    return path, zs


# ----------------------------------------------------------------------------------------------
# the recipe


def build_model(cfg: IMNetConfig, seed: int = 0) -> Any:
    from flax import nnx

    from impax.models.imnet import IMNetAE

    return IMNetAE(cfg, rngs=nnx.Rngs(seed))


def init_decoder(model: Any, cfg: ImnetAEConfig, seed: int = 0) -> None:
    """Apply ``cfg.decoder_init`` (see :class:`ImnetAEConfig`) to a fresh model, in place."""
    if cfg.decoder_init == "imnet":
        return
    import jax.numpy as jnp

    rng = np.random.default_rng([int(seed), 17])
    layers = model.generator.layers
    for i, layer in enumerate(layers):
        fan_in, fan_out = layer.kernel[...].shape
        gain = 2.0 if i < len(layers) - 1 else 1.0
        k = rng.normal(0.0, np.sqrt(gain / fan_in), (fan_in, fan_out))
        if i == 0:
            k[:cfg.model.point_dim] = rng.normal(0.0, cfg.xyz_init_std, (cfg.model.point_dim, fan_out))
        layer.kernel[...] = jnp.asarray(k, jnp.float32)


def make_tx(cfg: ImnetAEConfig, total_steps: int) -> Any:
    """The optimiser of a run (:func:`impax.train.recipes.common.scheduled_adam` of ``cfg``)."""
    return scheduled_adam(cfg.train, cfg.lr_schedule, cfg.lr_end_factor, total_steps)


def _write_run_json(out: Path, name: str, preset: str, cfg: ImnetAEConfig, data: Path, seed: int,
                    init: dict[str, Any] | None = None) -> None:
    write_run_json(out, {"recipe": name, "family": "imnet", "preset": preset, "config": to_dict(cfg),
                         "data": str(data.absolute()), "seed": int(seed),
                         **({"init_from": init} if init else {})}, _RESUMABLE,
                   normalize=lambda d: to_dict(config_from_dict(d)))


def train(name: str, data: str | Path, out: str | Path, preset: str = "cpu",
          overrides: Mapping[str, Any] | None = None, seed: int = 0, max_steps: int | None = None,
          progress: bool = True, init_from: str | None = None) -> dict[str, Any]:
    """Train (or resume) an IM-AE run; see the module docstring. Returns a JSON-able summary with
    ``stopped`` (``"done"``, ``"max_steps"`` or ``"signal"``), the step, the last loss, and, once
    all stages are done, ``iou_train`` / ``iou_heldout`` (mean 64³ voxel IoU)."""
    from impax.train import Stage, fit

    if preset not in PRESETS:
        raise ValueError(f"unknown imnet-ae preset {preset!r}; choose from {sorted(PRESETS)}")
    cfg = apply_overrides(PRESETS[preset], overrides)
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, seed=int(seed), max_steps=max_steps,
                                                             progress=bool(progress)))
    out, data = Path(out), Path(data)
    src = _Data(data)

    loss_fn = make_loss(cfg.fast_encoder, cfg.grid_fraction, cfg.snap_points)
    stages = []
    for i, st in enumerate(cfg.stages):
        loader = src.loader(cfg.train_split, st, seed, cfg.point_mode)
        epochs = st.epochs
        if i == len(cfg.stages) - 1:
            epochs = budget_epochs(cfg.budget_steps, st.epochs, len(loader),
                                   sum(s.epochs * len(s.loader) for s in stages))
        stages.append(Stage(f"level{st.level}", loader, epochs,
                            loss_fn=loss_fn, reset_optimizer=cfg.reset_optimizer and i > 0))
    model = build_model(cfg.model, seed)
    init_decoder(model, cfg, seed)
    _write_run_json(out, name, preset, cfg, data, seed, common_init_from(model, out, init_from))
    tx = make_tx(cfg, sum(s.epochs * len(s.loader) for s in stages))
    t0 = time.perf_counter()
    res = fit(model, stages, out, cfg.train, tx=tx, extra_meta={"recipe": name, "model": to_dict(cfg.model)})
    train_s = time.perf_counter() - t0
    stopped = "done" if res.stopped == "completed" else res.stopped
    summary: dict[str, Any] = {"recipe": name, "run": str(out), "preset": preset, "stopped": stopped,
                               "global_step": res.global_step, "loss": res.metrics.get("loss"),
                               "train_seconds": round(train_s, 1)}
    if stopped != "done":
        return summary

    t1 = time.perf_counter()
    names = src.names(cfg.train_split)
    vox = src.voxels(cfg.train_split, names)
    zs_path, zs = export_latents(model, vox, names, out)
    summary["zs"] = str(zs_path)
    report: dict[str, Any] = {"train": evaluate_iou(model, vox, names, cfg.eval_batch, zs=zs)}
    held = [s for s in cfg.heldout_splits if s in src.splits()]
    if held:
        hnames = [n for s in held for n in src.names(s)]
        hvox = np.concatenate([src.voxels(s, src.names(s)) for s in held])
        report["heldout"] = evaluate_iou(model, hvox, hnames, cfg.eval_batch)
        report["heldout"]["splits"] = held
    report["global_step"] = res.global_step
    record_iou(out, EVAL_FILE, report, summary)
    summary["eval_seconds"] = round(time.perf_counter() - t1, 1)
    return summary
