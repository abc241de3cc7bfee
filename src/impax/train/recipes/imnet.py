"""The ``imnet-ae`` recipe: IM-AE (Chen & Zhang, CVPR 2019) trained progressively 16³ → 32³ → 64³.

``impax train imnet-ae --data DATA --out RUN [--preset paper|cpu]`` runs :func:`train`:

1. ``RUN/run.json`` records the recipe, the full :class:`IMNetAERecipeConfig` and the data path; running
   the command again with the same settings resumes (the trainer restores parameters, Adam state,
   RNG and data position from the newest checkpoint).
2. :func:`impax.train.fit` runs one :class:`~impax.train.Stage` per level with
   :func:`impax.data.loader.imnet_loader` batches (or :class:`~impax.data.loader.IMNetHdf5Loader`
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
  ``"scaled"`` decoder init (see :class:`IMNetAERecipeConfig`).
  Measurements and the alternatives tried: ``docs/tuning.md`` (IM-AE).
* ``demo``: what ``impax demo`` trains — the ``cpu`` recipe with its own stages (2/2 epochs of
  4 × 4096 points, then 72 epochs of 2 × 8192 level-64 points), TensorBoard
  on, a checkpoint every 30 s, no held-out evaluation.
* ``pretrain`` / ``quick``: the shipped starting weights (``scripts/pretrain.sh``) and smoke runs.

The encoder path follows ``fast_encoder`` (:func:`~impax.models.imnet_s2d.resolve_encoder`): with
``"auto"`` (the default) the training loss and the exports encode with
:func:`~impax.models.imnet_s2d.encode_s2d` on CPU — the IM-NET encoder written as space-to-depth +
dense products, same parameters and outputs, much faster gradients on XLA's CPU backend
(``docs/tuning.md``) — and with the model's own ``nnx.Conv`` layers (cuDNN) on a GPU.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from impax.configs import to_dict
from impax.data.latents import ZS_FILE, write_codes
from impax.data.voxel_source import VoxelSource
from impax.geometry.voxels import occupancy_iou
from impax.models.imnet import IMNET_PYTORCH, IMNetConfig
from impax.models.imnet_codes import decode_grid, encode_voxels
from impax.models.imnet_s2d import check_encoder_choice, encode
from impax.train.config import RESUMABLE, TrainConfig
from impax.train.recipes.common import Recipe, budget_epochs, record_iou, run_summary, scheduled_adam, start_config
from impax.train.recipes.common import init_from as common_init_from
from impax.train.recipes.common import loader_options, write_run

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
class IMNetAERecipeConfig:
    """Everything an ``imnet-ae`` run depends on (the defaults are the ``paper`` preset).

    - ``model``: :class:`~impax.models.imnet.IMNetConfig` (IM-NET-pytorch layout by default).
    - ``train``: :class:`~impax.train.TrainConfig` (Adam 5e-5, β1 0.5).
    - ``stages``: the progressive levels, in order (16 → 32 → 64).
    - ``point_mode``: ``"chunk"`` (IM-NET-pytorch: one random aligned block of the level's points)
      or ``"random"`` (a random subset every step).
    - ``reset_optimizer``: fresh Adam state at each new level (IM-NET-pytorch) or carried over (TF1).
    - ``train_split`` / ``heldout_splits``: split names of a prepared store (``impax prepare``).
    - ``fast_encoder``: the encoder path of the training loss and the exports: ``"auto"``
      (space-to-depth on CPU, ``nnx.Conv`` elsewhere), ``"s2d"`` / ``true`` (always
      space-to-depth), ``"conv"`` / ``false`` (always ``nnx.Conv``). The same function of the same
      parameters either way (tested to 1e-5), so a resumed run may change it.
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
    - ``near_fraction``: 0 (IM-NET) or the fraction of each shape's points per step drawn from the
      store's near-surface samples (Gaussian offsets of surface points, OccNet / DeepSDF / LDIF
      style) with their exact inside labels, instead of the level's points. IM-NET's level points
      carry the fine voxel's value but are only drawn where it agrees with the max-pooled cell, so no
      point ever says "outside" in a coarse cell that a thin part touches: the decoder is free to
      fill the whole cell. Not the paper's; see docs/tuning.md (issue 14, fifth run).
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
    fast_encoder: bool | str = dataclasses.field(default="auto", metadata=RESUMABLE)
    decoder_init: str = "imnet"
    xyz_init_std: float = 4.0
    lr_schedule: str = "constant"
    lr_end_factor: float = 0.1
    grid_fraction: float = 0.0
    snap_points: bool = False
    near_fraction: float = 0.0
    budget_steps: int | None = None
    eval_batch: int = dataclasses.field(default=65536, metadata=RESUMABLE)

    def __post_init__(self) -> None:
        if not self.stages:
            raise ValueError("IMNetAERecipeConfig.stages must not be empty")
        if self.decoder_init not in ("imnet", "scaled"):
            raise ValueError(f"decoder_init must be 'imnet' or 'scaled', got {self.decoder_init!r}")
        if self.lr_schedule not in ("constant", "cosine"):
            raise ValueError(f"lr_schedule must be 'constant' or 'cosine', got {self.lr_schedule!r}")
        if not 0.0 <= self.grid_fraction <= 1.0:
            raise ValueError(f"grid_fraction must be in [0, 1], got {self.grid_fraction!r}")
        if not 0.0 <= self.near_fraction <= 1.0:
            raise ValueError(f"near_fraction must be in [0, 1], got {self.near_fraction!r}")
        if self.near_fraction > 0 and (self.grid_fraction > 0 or self.snap_points):
            raise ValueError("near_fraction cannot be combined with grid_fraction or snap_points "
                             "(those replace or move voxel-labelled points)")
        if self.point_mode not in ("chunk", "random"):
            raise ValueError(f"point_mode must be 'chunk' or 'random', got {self.point_mode!r}")
        check_encoder_choice(self.fast_encoder)


#: IM-NET-pytorch's recipe (``train_ae.sh``: 200/200/400 epochs, 32 shapes × 4096 points).
PAPER = IMNetAERecipeConfig()

#: Sized for 2 CPU cores on the built-in shapes (``impax shapes --count 330``, 255 training shapes: 4156
#: steps, ~8 min); measured in the module docstring. Same encoder/decoder family, narrower (ef 8, gf 16, z 256).
CPU = IMNetAERecipeConfig(
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

#: ``cpu-wide``: the ``cpu`` recipe for real, thin-walled meshes — a 4x wider decoder (gf 64, half of
#: IM-NET's 128) and half of each step's points from the store's near-surface samples with exact labels
#: (``near_fraction`` 0.5), the preset's 4156 steps. No weights of this size are shipped: it trains from
#: scratch (one core: ~28 min). Measured on 35 watertight real meshes (docs/tuning.md, issue 14 fifth
#: run): training fit IoU 0.853 against 0.719 for ``cpu``.
CPU_WIDE = dataclasses.replace(CPU, model=dataclasses.replace(CPU.model, gf_dim=64), near_fraction=0.5)

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

#: ``quick`` (``impax demo --quick``, smoke tests: seconds): a tiny model (ef 4, gf 8, z 32), 4/4/12
#: epochs of 8 × 1024 points, a constant rate (decaying it over so few steps saturates the codes at
#: 0/1, which the quick GAN cannot follow: tests/train/test_recipe_imnet_gan.py).
QUICK = dataclasses.replace(
    DEMO, model=dataclasses.replace(CPU.model, ef_dim=4, gf_dim=8, z_dim=32),
    stages=(LevelStage(16, 4, 8, 1024), LevelStage(32, 4, 8, 1024), LevelStage(64, 12, 8, 1024)),
    train=dataclasses.replace(DEMO.train, log_every_steps=2), lr_schedule="constant")

PRESETS: dict[str, IMNetAERecipeConfig] = {"paper": PAPER, "cpu": CPU, "cpu-wide": CPU_WIDE, "demo": DEMO,
                                           "pretrain": PRETRAIN, "quick": QUICK}

# ----------------------------------------------------------------------------------------------
# loss


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


def make_loss(fast_encoder: bool | str = "auto", grid_fraction: float = 0.0, snap_points: bool = False):
    """IM-AE loss ``mean((G(p, E(v)) - value)²)`` (IM-NET ``network_loss``) as a trainer ``loss_fn``.

    ``fast_encoder``: the encoder path (:func:`~impax.models.imnet_s2d.resolve_encoder`; ``"auto"``
    is resolved for the backend the loss is traced on).

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
        z = encode(model.encoder, batch["voxels"], fast_encoder)
        pred = model.generator(points, z)
        loss = occupancy_mse(pred, values)
        return loss, {"mse": loss}

    return loss_fn


# ----------------------------------------------------------------------------------------------
# encoding, IoU, export


def evaluate_iou(model: Any, voxels: np.ndarray, names: Sequence[str], batch: int = 65536,
                 threshold: float = 0.5, zs: np.ndarray | None = None, encoder: bool | str = "auto") -> dict[str, Any]:
    """Mean 64³ voxel IoU of the AE reconstruction of every shape (see the module doc, step 4);
    ``zs``: the shapes' codes when already computed (default: encode ``voxels`` by the path of
    ``encoder``, a ``fast_encoder`` setting)."""
    if zs is None:
        zs = encode_voxels(model, voxels, encoder=encoder)
    per = {}
    for i, name in enumerate(names):
        occ = decode_grid(model.generator, zs[i:i + 1], 64, batch)[0] > threshold
        per[name] = occupancy_iou(occ, np.asarray(voxels[i]) > 0)
    vals = list(per.values())
    return {"mean_iou": float(np.mean(vals)) if vals else float("nan"), "count": len(vals), "per_shape": per}


def export_latents(model: Any, voxels: np.ndarray, names: Sequence[str], out: str | Path,
                   encoder: bool | str = "auto") -> tuple[Path, np.ndarray]:
    """Encode ``voxels`` (by the path of ``encoder``, a ``fast_encoder`` setting) and write the codes
    to ``out/zs_train.hdf5`` with the names beside them (:mod:`impax.data.latents`; by the primary
    process); returns the file's path and the codes."""
    from impax.train.distributed import is_primary

    zs = encode_voxels(model, voxels, encoder=encoder)
    path = write_codes(out, zs, names) if is_primary() else Path(out) / ZS_FILE
    return path, zs


# ----------------------------------------------------------------------------------------------
# the recipe


def build_model(cfg: IMNetAERecipeConfig, seed: int = 0) -> Any:
    """A fresh :class:`~impax.models.imnet.IMNetAE` of ``cfg.model`` with ``cfg.decoder_init`` applied."""
    from flax import nnx

    from impax.models.imnet import IMNetAE

    model = IMNetAE(cfg.model, rngs=nnx.Rngs(seed))
    init_decoder(model, cfg, seed)
    return model


def init_decoder(model: Any, cfg: IMNetAERecipeConfig, seed: int = 0) -> None:
    """Apply ``cfg.decoder_init`` (see :class:`IMNetAERecipeConfig`) to a fresh model, in place."""
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


def make_tx(cfg: IMNetAERecipeConfig, total_steps: int) -> Any:
    """The optimiser of a run (:func:`impax.train.recipes.common.scheduled_adam` of ``cfg``)."""
    return scheduled_adam(cfg.train, cfg.lr_schedule, cfg.lr_end_factor, total_steps)


def train(name: str, data: str | Path, out: str | Path, preset: str = "cpu",
          overrides: Mapping[str, Any] | None = None, seed: int = 0, max_steps: int | None = None,
          progress: bool = True, init_from: str | None = None) -> dict[str, Any]:
    """Train (or resume) an IM-AE run; see the module docstring. Returns a JSON-able summary with
    ``stopped`` (``"done"``, ``"max_steps"`` or ``"signal"``), the step, the last loss, and, once
    all stages are done, ``iou_train`` / ``iou_heldout`` (mean 64³ voxel IoU)."""
    from impax.train import Stage, fit

    recipe = RECIPES[name]
    cfg = start_config(recipe, preset, overrides, seed, max_steps, progress)
    out, data = Path(out), Path(data)
    src = VoxelSource(data)

    loss_fn = make_loss(cfg.fast_encoder, cfg.grid_fraction, cfg.snap_points)
    stages = []
    for i, st in enumerate(cfg.stages):
        loader = src.loader(cfg.train_split, st.level, st.batch_size, st.points, seed, cfg.point_mode,
                            near_points=int(round(cfg.near_fraction * st.points)), **loader_options(cfg.train))
        epochs = st.epochs
        if i == len(cfg.stages) - 1:
            epochs = budget_epochs(cfg.budget_steps, st.epochs, len(loader),
                                   sum(s.epochs * len(s.loader) for s in stages))
        stages.append(Stage(f"level{st.level}", loader, epochs,
                            loss_fn=loss_fn, reset_optimizer=cfg.reset_optimizer and i > 0))
    model = build_model(cfg, seed)
    write_run(out, recipe, preset, cfg, data, seed, common_init_from(model, out, init_from))
    tx = make_tx(cfg, sum(s.epochs * len(s.loader) for s in stages))
    t0 = time.perf_counter()
    res = fit(model, stages, out, cfg.train, tx=tx, extra_meta={"recipe": name, "model": to_dict(cfg.model)})
    train_s = time.perf_counter() - t0
    summary = run_summary(name, out, preset, res, train_s)
    if res.stopped != "done":
        return summary

    t1 = time.perf_counter()
    names = src.names(cfg.train_split)
    vox = src.voxels(cfg.train_split, names)
    zs_path, zs = export_latents(model, vox, names, out, cfg.fast_encoder)
    summary["zs"] = str(zs_path)
    report: dict[str, Any] = {"train": evaluate_iou(model, vox, names, cfg.eval_batch, zs=zs)}
    held = [s for s in cfg.heldout_splits if s in src.splits()]
    if held:
        hnames = [n for s in held for n in src.names(s)]
        hvox = np.concatenate([src.voxels(s, src.names(s)) for s in held])
        report["heldout"] = evaluate_iou(model, hvox, hnames, cfg.eval_batch, encoder=cfg.fast_encoder)
        report["heldout"]["splits"] = held
    report["global_step"] = res.global_step
    record_iou(out, EVAL_FILE, report, summary)
    summary["eval_seconds"] = round(time.perf_counter() - t1, 1)
    return summary


#: ``impax train imnet-ae`` (see :mod:`impax.train.registry`).
RECIPES = {"imnet-ae": Recipe("imnet-ae", IMNetAERecipeConfig, PRESETS, train, build_model)}
