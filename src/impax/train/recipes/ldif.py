"""The ``ldif``, ``sif`` and ``sifpp`` recipes: SIF (Genova et al. 2019), SIF++ and LDIF (Genova et al. 2020).

``impax train ldif|sif|sifpp --data DATA --out RUN [--preset paper|cpu]`` runs :func:`train`:

1. ``RUN/run.json`` records the recipe, the full :class:`LdifRecipeConfig` and the data path; running
   the command again with the same settings resumes from the newest checkpoint.
2. :func:`impax.train.fit` trains :class:`~impax.models.ldif_model.LdifModel` on a prepared store
   (``impax prepare``, GAPS frame) as google/ldif's ``train.py`` does: per step ``batch_size``
   shapes, each with ``spc`` random uniform and ``spc`` random near-surface samples, its coarse SDF
   grid, its depth images (``input="depth"``) and surface points with normals (LDIF's local
   PointNet; the encoder's input for ``input="points"``). The loss terms and weights are those of
   the preset's :class:`~impax.models.ldif_config.LdifConfig` (``training/loss.py``): LDIF
   ``'unsbbgi'`` (uniform 1, near-surface 0.1, box 10, grid-inside 1), SIF ``'unsec'`` (uniform,
   near-surface, element centres; inside weight 10). Adam as ``shared_launcher.py``
   (``tf.train.AdamOptimizer``: beta1 0.9, beta2 0.999, eps 1e-8) at the preset's learning rate.
   A store prepared from OccNet's data (``impax prepare --from-occnet``) has occupancies but no
   signed distances (the sample losses read only their sign: :func:`sign_labels`) and no depth
   images (``--set input=points``); :func:`check_store` names a missing dataset in one line.
   One decoder call covers both sample sets of a step (the original evaluates them in two calls,
   each EMA-updating the CBN statistics; here they are updated once per step).
3. At the end ``RUN/extracted.occnet`` holds the local decoder (LDIF/``impax mesh --decoder``),
   written after every call of :func:`train` that has a decoder, and — once every epoch is done —
   the IoU of LDIF's evaluation (``eval.py``: ``|P ∩ G| / |P ∪ G|`` on the stored uniform samples of
   each shape, 100k with the default ``impax prepare``; P is ``F < -0.07`` evaluated as the TF graph
   does, without the CUDA kernel's RBF skipping; G the stored occupancy) on the training split and
   the held-out splits goes to ``RUN/eval_iou.json`` and the summary.

Presets (:data:`PRESETS`, per recipe name):

* ``paper``: the published hparams (``build_ldif_hparams``, ``build_sif_hparams``,
  ``build_improved_sif_hparams``): LDIF 32+16 ``cov`` elements with 32-d latents, ResNet-50 on 20
  depth views at 137^2, batch 24, spc 1024, Adam 5e-5; SIF 100 ``aa`` elements, the 5-conv CNN on
  one view, batch 16, spc 3000. Epochs: ~3.5M steps (LDIF) / 700k (SIF) on ShapeNet-13's ~35k
  training shapes, as the README reports.
* ``cpu``: the same representations (element counts, symmetry, radius types, latent size, decoder,
  loss terms) with the small CNN encoder (20 views for LDIF/SIF++, one for SIF, at 64^2 — the
  ``impax prepare --quick`` depth size), narrow FCs, a light local PointNet (128 points per
  element), batch 4, spc 256 (LDIF/SIF++; SIF: 3000); SIF/SIF++ at Adam 1e-4 for 30 epochs.
  ``ldif`` (not in the original, impax's short-budget choices, measured below): the local
  decoder's output kernel starts at zero (``decoder_output_init="zeros"``: the LDIF starts as its
  SIF), the near-surface weight is 1 (the original 0.1: with 256 uniform samples of which ~3% are
  inside, the uniform term alone drives the shapes to shrink), Adam 5e-4 with a cosine decay,
  elements started spread over the shape (``element_init="spread"``), hardness 20, each local
  decoder evaluated only for its point's 8 strongest elements (``decoder_topk``), and a budget of
  :data:`LDIF_CPU_STEPS` steps whatever the data size (``budget_steps``).
* ``demo`` (what ``impax demo`` trains: 22 training shapes of its 33, ~150 s on 2 cores): the cpu
  models; ``ldif`` 44 epochs (220 steps; the demo starts it from ``pretrained:ldif-cpu``), ``sif``
  160 epochs (800 steps) at Adam 5e-4.
* ``pretrain``: the ``ldif`` cpu model for 80 epochs with a cosine decay on the ``pretrain`` stream
  of built-in shapes (``scripts/pretrain.sh``; the shipped ``pretrained:ldif-cpu``).
* ``quick``: smoke runs (8 + 4 elements with 8-d latents, 32^2 views, spc 128, 2 epochs, Adam
  1e-3): ~15 s of training, mostly compilation (``ldif``; ``sif`` ~7 s) on the quick demo's store.

Measurements behind these choices and the alternatives tried: ``docs/tuning.md`` (LDIF / SIF).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from impax.configs import to_dict
from impax.conventions import LDIF_ISO_LEVEL
from impax.geometry.voxels import occupancy_iou
from impax.models.ldif_config import LDIF, LDIF_CPU, SIF, SIF_PLUS_PLUS, LdifConfig
from impax.models.ldif_model import decoder_weights, encode, set_training, shape_inputs
from impax.models.sif_format import DECODER_FILE, write_decoder_file
from impax.train.config import RESUMABLE, TrainConfig
from impax.train.recipes.common import (LR_SCHEDULES, Recipe, budget_epochs, record_iou, run_summary, scheduled_adam,
                                        loader_options, start_config, write_run)
from impax.train.recipes.common import init_from as common_init_from

EVAL_FILE = "eval_iou.json"
#: Values of :attr:`LdifRecipeConfig.decoder_output_init`.
DECODER_OUTPUT_INITS = ("glorot", "zeros")
#: Values of :attr:`LdifRecipeConfig.element_init`.
ELEMENT_INITS = ("zero", "spread")


@dataclasses.dataclass(frozen=True)
class LdifRecipeConfig:
    """Everything a SIF/LDIF run depends on (defaults: the LDIF ``paper`` preset).

    - ``model``: :class:`~impax.models.ldif_config.LdifConfig` (representation, encoder, losses,
      ``batch_size``, ``sample_count`` = spc, ``learning_rate``).
    - ``train``: :class:`~impax.train.TrainConfig`; its ``learning_rate`` is set from ``model``.
    - ``input``: ``"depth"`` (depth images → explicit parameters) or ``"points"`` (surface points).
    - ``epochs``: passes over the training split.
    - ``surface_points``: surface points (with normals) per shape per step for the local PointNet /
      point encoder (LDIF: 10k, ``surface_samples_from_dodeca`` subsampled).
    - ``train_split`` / ``heldout_splits``: split names of the prepared store.
    - ``eval_points``: uniform samples per shape for the IoU (``None``: all stored, 100k as LDIF).
    - ``eval_batch``: points per shape-function call during evaluation.
    - ``decoder_output_init``: initial output layer of the local decoder: ``"glorot"`` (the
      original's ``layers.fully_connected`` default, as every other decoder layer) or ``"zeros"``
      (not in the original; impax's short-budget option): a zero output kernel (its bias is zero
      anyway) makes ``f = 0``, so an LDIF starts exactly as the SIF++ of its explicit parameters,
      ``F = sum_i c_i g_i``, and the local decoders only add detail from there instead of starting
      as noise. Gradients still reach every decoder weight from the first update on.
    - ``element_init``: ``"zero"`` (the original: the explicit head starts near zero, every
      element within ~0.075 of the origin) or ``"spread"`` (not in the original;
      :func:`~impax.models.ldif_model.spread_elements`: element centres start at
      ``U(-spread_half, spread_half)^3`` with ``c = -spread_constant``).
    - ``decoder_topk``: 0 (the original: the local decoder runs on every element at every
      sample) or ``k`` (not in the original; :func:`~impax.models.sif.shape_function_topk`: only
      each sample's ``k`` largest elements are decoded in training). Inference always evaluates
      the full shape function.
    - ``lr_schedule``: ``"constant"`` (the original) or ``"cosine"`` from the learning rate to
      ``lr_end_factor`` times it over the run (:func:`~impax.train.recipes.common.scheduled_adam`).
    - ``budget_steps``: ``None`` (``epochs`` passes) or the steps of the run, whatever the data size
      (epochs chosen by :func:`~impax.train.recipes.common.budget_epochs`).
    """

    model: LdifConfig = LDIF
    train: TrainConfig = TrainConfig(learning_rate=LDIF.learning_rate, beta1=0.9, log_every_steps=100,
                                     checkpoint_every_steps=5000)
    input: str = "depth"
    epochs: int = 2400
    surface_points: int = 10_000
    train_split: str = "train"
    heldout_splits: tuple[str, ...] = dataclasses.field(default=("val", "test"), metadata=RESUMABLE)
    eval_points: int | None = dataclasses.field(default=None, metadata=RESUMABLE)
    eval_batch: int = dataclasses.field(default=16384, metadata=RESUMABLE)
    decoder_output_init: str = "glorot"
    element_init: str = "zero"
    spread_half: float = 0.4
    spread_constant: float = 0.1
    decoder_topk: int = 0
    lr_schedule: str = "constant"
    lr_end_factor: float = 0.1
    budget_steps: int | None = None

    def __post_init__(self) -> None:
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}")
        if self.element_init not in ELEMENT_INITS:
            raise ValueError(f"element_init must be one of {ELEMENT_INITS}, got {self.element_init!r}")
        if self.decoder_topk < 0:
            raise ValueError("decoder_topk must be >= 0 (0: decode every element)")
        if self.input not in ("depth", "points"):
            raise ValueError(f"input must be 'depth' or 'points', got {self.input!r}")
        if self.decoder_output_init not in DECODER_OUTPUT_INITS:
            raise ValueError(f"decoder_output_init must be one of {DECODER_OUTPUT_INITS}, "
                             f"got {self.decoder_output_init!r}")
        if self.epochs < 0:
            raise ValueError("epochs must be >= 0")


def _paper(model: LdifConfig, epochs: int) -> LdifRecipeConfig:
    return LdifRecipeConfig(model=model, train=dataclasses.replace(LdifRecipeConfig.train, learning_rate=model.learning_rate),
                         epochs=epochs)


_CPU_TRAIN = TrainConfig(learning_rate=LDIF_CPU.learning_rate, beta1=0.9, log_every_steps=25,
                         checkpoint_every_steps=500, checkpoint_every_seconds=120.0)
#: CPU variant of SIF: the cpu encoder and batch of ``ldif-cpu`` with SIF's representation.
SIF_CPU = dataclasses.replace(SIF, name="sif-cpu", image_size=64, fc_width=256, simple_cnn_features=256,
                              batch_size=4, learning_rate=1e-4)
#: The ``ldif`` cpu model: ``ldif-cpu`` with the near-surface weight raised to the uniform one,
#: Adam at 5e-4, a class hardness of 20 (the original 100 leaves almost no gradient where no element
#: reaches yet) and 64 points per local view (see docs/tuning.md for the measurements).
LDIF_CPU_RECIPE = dataclasses.replace(LDIF_CPU, near_surface_weight=1.0, learning_rate=5e-4, hardness=20.0,
                                      local_point_count=64)
SIF_PLUS_PLUS_CPU_RECIPE = dataclasses.replace(LDIF_CPU_RECIPE, name="sif++-cpu", latent_size=0)
#: Epochs of the cpu presets: sized on the built-in shapes (``impax shapes --count 88``: ~70
#: training shapes, 17 steps per epoch at batch 4) for <= 10 minutes on 2 cores; see docs/tuning.md.
CPU_EPOCHS = 30
LDIF_CPU_EPOCHS = 180
#: The ``ldif`` cpu preset's step budget (180 epochs of the 88-shape store): the same steps on any data.
LDIF_CPU_STEPS = 3060
#: The short-budget start of the ldif/sifpp cpu presets (see :class:`LdifRecipeConfig`): elements spread
#: over the box, and the decoder on each sample's 8 largest elements only.
_FAST_START = dict(element_init="spread", decoder_topk=8)


def _cpu(model: LdifConfig, epochs: int = CPU_EPOCHS, **kw: Any) -> LdifRecipeConfig:
    return LdifRecipeConfig(model=model, train=dataclasses.replace(_CPU_TRAIN, learning_rate=model.learning_rate),
                         epochs=epochs, surface_points=1024, **kw)


#: ``pretrain``: the ``ldif`` cpu model trained long (cosine to 1/10 of the rate) on the ``pretrain``
#: stream of built-in shapes; what made the shipped ``pretrained:ldif-cpu`` (see :mod:`impax.train.pretrained`).
LDIF_PRETRAIN_EPOCHS = 80


#: ``quick`` (smoke runs, a few seconds): 8 + 4 elements with 8-d latents, 32^2 views, spc 128.
_QUICK = dict(element_count=8, symmetric_count=4, image_size=32, fc_width=64, simple_cnn_features=64,
              local_point_count=32, pointnet_maxpool_features=32, sample_count=128, learning_rate=1e-3)
LDIF_QUICK = dataclasses.replace(LDIF_CPU_RECIPE, name="ldif-quick", latent_size=8, decoder_width=8, **_QUICK)
SIF_QUICK = dataclasses.replace(SIF_CPU, name="sif-quick", **{**_QUICK, "element_count": 16, "symmetric_count": 0})
SIF_PLUS_PLUS_QUICK = dataclasses.replace(LDIF_QUICK, name="sif++-quick", latent_size=0)


def _quick(model: LdifConfig) -> LdifRecipeConfig:
    init = "zeros" if model.uses_local_decoder else "glorot"
    return dataclasses.replace(_cpu(model, 2, decoder_output_init=init), surface_points=256, eval_points=4096,
                               train=dataclasses.replace(_CPU_TRAIN, learning_rate=model.learning_rate,
                                                         log_every_steps=5))


#: ``demo`` (``impax demo``: 22 training shapes = 5 steps per epoch): the ``ldif`` cpu model,
#: fine-tuned from ``pretrained:ldif-cpu`` by the demo (``--init-from``); SIF at Adam 5e-4 (better
#: than 1e-4 at short budgets), from scratch.
LDIF_DEMO_EPOCHS = 44
SIF_DEMO_EPOCHS = 160
SIF_DEMO = dataclasses.replace(SIF_CPU, learning_rate=5e-4)

#: recipe name → preset name → config.
PRESETS: dict[str, dict[str, LdifRecipeConfig]] = {
    "ldif": {"paper": _paper(LDIF, 2400),
             "cpu": _cpu(LDIF_CPU_RECIPE, LDIF_CPU_EPOCHS, decoder_output_init="zeros", budget_steps=LDIF_CPU_STEPS,
                         lr_schedule="cosine", **_FAST_START),
             "demo": _cpu(LDIF_CPU_RECIPE, LDIF_DEMO_EPOCHS, decoder_output_init="zeros", **_FAST_START),
             "pretrain": _cpu(LDIF_CPU_RECIPE, LDIF_PRETRAIN_EPOCHS, decoder_output_init="zeros", lr_schedule="cosine",
                              **_FAST_START),
             "quick": _quick(LDIF_QUICK)},
    "sif": {"paper": _paper(SIF, 320), "cpu": _cpu(SIF_CPU), "demo": _cpu(SIF_DEMO, SIF_DEMO_EPOCHS),
            "quick": _quick(SIF_QUICK)},
    "sifpp": {"paper": _paper(SIF_PLUS_PLUS, 2400), "cpu": _cpu(SIF_PLUS_PLUS_CPU_RECIPE, **_FAST_START),
              "demo": _cpu(SIF_PLUS_PLUS_CPU_RECIPE, LDIF_DEMO_EPOCHS, **_FAST_START),
              "quick": _quick(SIF_PLUS_PLUS_QUICK)},
}

def couple_learning_rate(cfg: LdifRecipeConfig, overrides: Mapping[str, Any]) -> LdifRecipeConfig:
    """``model.learning_rate`` (the original's ``lr``) also sets the optimiser's rate unless
    ``train.learning_rate`` is overridden too."""
    if "model.learning_rate" in overrides and "train.learning_rate" not in overrides:
        return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, learning_rate=cfg.model.learning_rate))
    return cfg


# ----------------------------------------------------------------------------------------------
# model, loss, data


def build_model(cfg: LdifRecipeConfig, seed: int = 0) -> Any:
    """The :class:`~impax.models.ldif_model.LdifModel` of ``cfg`` with the weights of ``seed``;
    ``decoder_output_init="zeros"`` zeroes the local decoder's output kernel (see
    :class:`LdifRecipeConfig`)."""
    import jax.numpy as jnp
    from flax import nnx

    from impax.models.ldif_model import LdifModel

    model = LdifModel(cfg.model, cfg.input, rngs=nnx.Rngs(seed))
    if cfg.decoder_output_init == "zeros" and model.decoder is not None:
        kernel = model.decoder.params["output__kernel"]
        kernel[...] = jnp.zeros_like(kernel[...])
    if cfg.element_init == "spread":
        import jax

        from impax.models.ldif_model import spread_elements

        spread_elements(model, jax.random.key(int(seed) + 7919), cfg.spread_half, cfg.spread_constant)
    return model


def active_loss_terms(cfg: LdifConfig) -> tuple[str, ...]:
    from impax.models.ldif_losses import active_terms

    return active_terms(cfg.loss)


def make_loss(cfg: LdifConfig, decoder_topk: int = 0):
    """The original's ``compute_loss`` for ``cfg.loss`` as a trainer ``loss_fn`` (see module doc);
    ``decoder_topk`` > 0 decodes only each sample's ``k`` largest elements (see
    :class:`LdifRecipeConfig`)."""
    import jax.numpy as jnp

    from impax.models import ldif_losses as L
    from impax.models.sif import class_probability, shape_function, shape_function_topk

    terms = active_loss_terms(cfg)

    def loss_fn(model: Any, batch: Mapping[str, Any], rng: Any):
        sif = model.encode(rng, depth=batch.get("depth"), surface_points=batch.get("surface_points"),
                           surface_normals=batch.get("surface_normals"))
        decoder = model.decoder if sif.latents is not None else None
        nu = batch["uniform_points"].shape[1]
        pts = jnp.concatenate([batch["uniform_points"], batch["near_points"]], axis=1)
        if decoder is not None and decoder_topk:
            f = shape_function_topk(sif, pts, decoder.pairs, decoder_topk)
        else:
            f = shape_function(sif, pts, decoder)
        parts: dict[str, Any] = {}
        if "u" in terms:
            parts["u"] = L.uniform_sample_loss(cfg, f[:, :nu], batch["uniform_sdf"])
        if "ns" in terms:
            parts["ns"] = L.near_surface_sample_loss(cfg, f[:, nu:], batch["near_sdf"])
        if "ec" in terms:
            cls = class_probability(shape_function(sif, sif.centers, decoder), cfg.hardness, cfg.iso_level)
            parts["ec"] = L.element_center_loss(cfg, sif.centers, cls, batch["box_lower"], batch["box_upper"])
        if "m" in terms:
            parts["m"] = L.center_magnitude_loss(cfg, sif.centers)
        if "gi" in terms:
            parts["gi"] = L.grid_inside_loss(cfg, sif.centers, batch["sdf_grid"], batch["world2grid"])
        if "bb" in terms:
            parts["bb"] = L.bounding_box_loss(cfg, sif.centers)
        loss = sum(parts.values())
        gt_in = batch["uniform_sdf"] < 0
        pred_in = f[:, :nu] < cfg.iso_level
        acc = jnp.mean((gt_in == pred_in).astype(jnp.float32))
        return loss, {**{f"loss_{k}": v for k, v in parts.items()}, "uniform_accuracy": acc}

    return loss_fn


def stored_inside(f: Any, group: str, n: int | None = None) -> np.ndarray:
    """Inside flags of the first ``n`` (all) samples of a record's ``group`` (``"uniform"``,
    ``"near"``): ``sdf < 0``, or the stored occupancy for a record without signed distances (one
    prepared from OccNet data)."""
    rows = slice(None) if n is None else slice(0, n)
    if f"{group}_sdf" in f:
        return f[f"{group}_sdf"][rows] < 0
    return f[f"{group}_occupancy"][rows] > 0


def sign_labels(batch: Mapping[str, np.ndarray], group: str) -> np.ndarray:
    """A batch's ``{group}_sdf`` as float32, or — for samples stored with occupancies only (OccNet
    data) — -1 inside / +1 outside: every loss term reads only its sign (:func:`sample_loss
    <impax.models.ldif_losses.sample_loss>`)."""
    if f"{group}_sdf" in batch:
        return batch[f"{group}_sdf"].astype(np.float32)
    return np.where(batch[f"{group}_occupancy"] > 0, -1.0, 1.0).astype(np.float32)


def inside_boxes(store: Any, ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """``sample_bounding_box`` of the original per shape: the box of all stored uniform samples with
    the outside ones moved to the origin (so it always holds the origin) → (lower, upper) ``[n, 3]``."""
    lo, hi = [], []
    for sid in ids:
        with store.open(sid) as f:
            p = f["uniform_points"][()].astype(np.float32)
            inside = stored_inside(f, "uniform")
        p = np.where(inside[:, None], p, 0.0)
        lo.append(p.min(0))
        hi.append(p.max(0))
    return np.stack(lo).astype(np.float32), np.stack(hi).astype(np.float32)


def needed_arrays(cfg: LdifRecipeConfig) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """What training ``cfg`` reads of each shape: (whole arrays, sample sets' point arrays)."""
    m = cfg.model
    arrays = (("sdf_grid", "world2grid") if "gi" in active_loss_terms(m) else ()) + \
        (("depth",) if cfg.input == "depth" else ())
    points = ("uniform_points", "near_points") + \
        (("surface_points", "surface_normals") if cfg.input == "points" or m.uses_local_decoder else ())
    return arrays, points


def check_store(store: Any, cfg: LdifRecipeConfig, name: str) -> None:
    """A one-line ``ValueError`` when the training split lacks a dataset ``cfg`` needs (a store
    prepared from OccNet data has no depth images: ``--set input=points``)."""
    arrays, points = needed_arrays(cfg)
    hints = {"depth": "train on surface points instead: --set input=points",
             "sdf_grid": "drop the grid-inside loss term: --set model.loss=unsbb"}
    for a in (*arrays, *points):
        store.require([a], cfg.train_split, f"impax train {name}", hints.get(a, ""))
    for group in ("uniform", "near"):
        for e in store.entries(cfg.train_split):
            if not {f"{group}_sdf", f"{group}_occupancy"} & set(e.get("arrays", {})):
                raise ValueError(f"{store.root}: shape {e['id']} has neither {group}_sdf nor {group}_occupancy "
                                 f"(impax train {name} needs inside labels)")


def make_loader(store: Any, cfg: LdifRecipeConfig, split: str, seed: int, need_boxes: bool) -> Any:
    """Training batches: uniform + near-surface samples with their signed distances (or, for data
    without them, ±1 from the occupancies: :func:`sign_labels`), the coarse grid (when the loss has
    the ``gi`` term), depth and/or surface points."""
    from impax.data.loader import StoreLoader
    from impax.models.ldif_model import select_views

    m = cfg.model
    arrays, _ = needed_arrays(cfg)
    samples = {"uniform": m.sample_count, "near": m.sample_count}
    if cfg.input == "points" or m.uses_local_decoder:
        samples["surface"] = cfg.surface_points
    ids = store.ids(split)
    boxes = inside_boxes(store, ids) if need_boxes else None

    def post(b: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = {k: b[k].astype(np.float32) for k in ("uniform_points", "near_points", *arrays) if k != "depth"}
        out["uniform_sdf"], out["near_sdf"] = sign_labels(b, "uniform"), sign_labels(b, "near")
        if "depth" in b:  # float16 from a packed store: cast on the device (LdifModel.encode)
            out["depth"] = np.asarray(select_views(b["depth"], m.image_count))
        if "surface_points" in b:
            out["surface_points"] = b["surface_points"].astype(np.float32)
            out["surface_normals"] = b["surface_normals"].astype(np.float32)
        if boxes is not None:
            out["box_lower"], out["box_upper"] = boxes[0][b["shape_index"]], boxes[1][b["shape_index"]]
        return out

    return StoreLoader(store, ids, batch_size=m.batch_size, arrays=arrays, samples=samples, point_mode="random",
                       seed=seed, postprocess=post, **loader_options(cfg.train))


def synthetic_batch(cfg: LdifRecipeConfig, shapes: int, depth_size: int, rng: np.random.Generator,
                    depth_dtype: Any = np.float32) -> dict[str, np.ndarray]:
    """A synthetic training batch with the arrays and sizes :func:`make_loader` yields for ``cfg``
    (GAPS frame; random values): for timing steps (``benchmarks``, ``scripts/gpu_check.py``)."""
    m = cfg.model
    spc, res = m.sample_count, 32
    w2g = np.tile(np.diag([res / 1.4, res / 1.4, res / 1.4, 1.0]).astype(np.float32), (shapes, 1, 1))
    w2g[:, :3, 3] = res / 2
    return {"uniform_points": rng.uniform(-0.7, 0.7, (shapes, spc, 3)).astype(np.float32),
            "uniform_sdf": rng.normal(size=(shapes, spc)).astype(np.float32),
            "near_points": rng.uniform(-0.5, 0.5, (shapes, spc, 3)).astype(np.float32),
            "near_sdf": rng.normal(scale=0.05, size=(shapes, spc)).astype(np.float32),
            "sdf_grid": rng.normal(scale=0.1, size=(shapes, res, res, res)).astype(np.float32),
            "world2grid": w2g,
            "depth": rng.uniform(0.5, 2.0, (shapes, m.image_count, depth_size, depth_size)).astype(depth_dtype),
            "surface_points": rng.uniform(-0.5, 0.5, (shapes, cfg.surface_points, 3)).astype(np.float32),
            "surface_normals": rng.normal(size=(shapes, cfg.surface_points, 3)).astype(np.float32),
            "box_lower": np.full((shapes, 3), -0.5, np.float32), "box_upper": np.full((shapes, 3), 0.5, np.float32)}


# ----------------------------------------------------------------------------------------------
# encoding and IoU

def evaluate_iou(model: Any, store: Any, ids: Sequence[str], cfg: LdifRecipeConfig) -> dict[str, Any]:
    """Mean uniform-sample IoU (see the module doc, step 3) over ``ids``."""
    from impax.models.ldif_model import shape_values, unbatch

    weights = decoder_weights(model)
    per = {}
    for sid in ids:
        one = unbatch(encode(model, shape_inputs(store, sid, cfg.model, cfg.input, cfg.surface_points)))
        with store.open(sid) as f:
            n = f["uniform_points"].shape[0] if cfg.eval_points is None else min(cfg.eval_points,
                                                                                 f["uniform_points"].shape[0])
            pts = f["uniform_points"][:n].astype(np.float32)
            gt = stored_inside(f, "uniform", n)
        vals = shape_values(one, weights, pts, skip=False, batch=min(cfg.eval_batch, len(pts)))
        per[sid] = occupancy_iou(vals < LDIF_ISO_LEVEL, gt)
    v = list(per.values())
    return {"mean_iou": float(np.mean(v)) if v else float("nan"), "count": len(v), "per_shape": per}


def export_decoder(model: Any, out: str | Path) -> Path | None:
    """Write ``out/extracted.occnet`` (atomically; by the primary process); ``None`` for models
    without a local decoder."""
    from impax.train.distributed import is_primary

    w = decoder_weights(model)
    if w is None:
        return None
    return write_decoder_file(out, w) if is_primary() else Path(out) / DECODER_FILE


# ----------------------------------------------------------------------------------------------
# the recipe


def resolve_config(name: str, preset: str, overrides: Mapping[str, Any] | None = None) -> LdifRecipeConfig:
    """The config of recipe ``name`` (``ldif``, ``sif``, ``sifpp``) for ``preset`` with ``overrides``."""
    return RECIPES[name].resolve(preset, overrides)


def train(name: str, data: str | Path, out: str | Path, preset: str = "cpu",
          overrides: Mapping[str, Any] | None = None, seed: int = 0, max_steps: int | None = None,
          progress: bool = True, init_from: str | None = None) -> dict[str, Any]:
    """Train (or resume) a SIF/SIF++/LDIF run; see the module docstring. Returns a JSON-able summary
    with ``stopped`` (``"done"``, ``"max_steps"`` or ``"signal"``), the step, the last loss, and once
    every epoch is done ``iou_train`` / ``iou_heldout`` (mean uniform-sample IoU)."""
    from impax.data.store import ShapeStore
    from impax.train import Stage, fit

    recipe = RECIPES[name]
    cfg = start_config(recipe, preset, overrides, seed, max_steps, progress)
    out, data = Path(out), Path(data)
    if not (data / "index.json").is_file():
        raise FileNotFoundError(f"{data}: not a prepared store (no index.json); run `impax prepare` first")
    store = ShapeStore(data)
    check_store(store, cfg, name)

    need_boxes = "ec" in active_loss_terms(cfg.model)
    loader = make_loader(store, cfg, cfg.train_split, seed, need_boxes)
    model = build_model(cfg, seed)
    set_training(model, True)
    write_run(out, recipe, preset, cfg, data, seed, common_init_from(model, out, init_from))
    t0 = time.perf_counter()
    epochs = budget_epochs(cfg.budget_steps, cfg.epochs, len(loader))
    tx = scheduled_adam(cfg.train, cfg.lr_schedule, cfg.lr_end_factor, epochs * len(loader))
    res = fit(model, [Stage("main", loader, epochs, loss_fn=make_loss(cfg.model, cfg.decoder_topk))], out, cfg.train,
              tx=tx,
              extra_meta={"recipe": name, "model": to_dict(cfg.model), "input": cfg.input})
    train_s = time.perf_counter() - t0
    set_training(model, False)
    summary = run_summary(name, out, preset, res, train_s)
    dec = export_decoder(model, out)
    if dec is not None:
        summary["decoder"] = str(dec)
    if res.stopped != "done":
        return summary

    t1 = time.perf_counter()
    report: dict[str, Any] = {"train": evaluate_iou(model, store, store.ids(cfg.train_split), cfg)}
    splits = {e["split"] for e in store.entries()}
    held = [s for s in cfg.heldout_splits if s in splits]
    if held:
        report["heldout"] = evaluate_iou(model, store, [i for s in held for i in store.ids(s)], cfg)
        report["heldout"]["splits"] = held
    report["global_step"] = res.global_step
    report["rule"] = "F < -0.07 at the stored uniform samples vs stored sdf < 0"
    record_iou(out, EVAL_FILE, report, summary)
    summary["eval_seconds"] = round(time.perf_counter() - t1, 1)
    return summary


#: ``impax train ldif|sif|sifpp`` (see :mod:`impax.train.registry`).
RECIPES = {name: Recipe(name, LdifRecipeConfig, presets, train, build_model, couple_learning_rate)
           for name, presets in PRESETS.items()}
