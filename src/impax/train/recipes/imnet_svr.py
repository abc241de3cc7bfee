"""The ``imnet-svr`` recipe: IM-SVR, single-view reconstruction by regressing a trained IM-AE's
latent codes from one rendered view (Chen & Zhang, CVPR 2019; IM-NET-pytorch ``modelSVR.py``).

``impax train imnet-svr --data STORE --set ae_run=AE_RUN --out RUN [--preset paper|cpu|quick|demo]``
runs :func:`train`:

1. ``data`` is a prepared store with gray ``views`` (``impax prepare``; 24 × 137² per shape) — or
   an IM-NET HDF5 file with ``pixels`` — and ``ae_run`` a finished ``imnet-ae`` run. The targets
   are the AE's exported codes (``AE_RUN/zs_train.hdf5`` + ``zs_train.txt``), matched by shape
   name; the training shapes are those of ``train_split`` that have both views and a code.
2. :func:`impax.train.fit` trains the image encoder only (``wrt`` = encoder parameters; the AE
   decoder sits in the same module, frozen, so the run is self-contained for inference) with the
   IM-SVR loss ``mean((E(image) - z_AE)²)``. Each step takes ``batch_size`` shapes and one random
   view: the same view for the whole batch (``view_mode="batch"``, IM-NET-pytorch) or one per shape
   (``"shape"``); the view is centre-cropped 137 → 128 and fed as ``pixel/255`` (the encoder
   computes ``1 - x``), no flip, as IM-NET-pytorch. Running the command again resumes.
3. At the end, single-view reconstruction on held-out shapes (``heldout_splits``): for each view
   in ``eval_views`` the predicted code is decoded at the 64³ cell centres (threshold 0.5) and
   compared with the stored voxels (IoU); the same for a constant-mean-latent baseline (the mean
   of the training codes) and, as an upper reference, the AE's own code of the voxels. Written to
   ``RUN/eval_svr.json`` and the summary (``iou_svr``, ``iou_mean_latent``, ``iou_ae``).

Presets (:data:`PRESETS`): ``paper`` (IM-NET-pytorch: ``img_ef_dim`` 64, batch 64, Adam 1e-4 /
β1 0.5, 1000 epochs, test view 23), ``cpu`` (``img_ef_dim`` 4, batch 16, Adam 1e-3, a few minutes
on 2 cores for ~70 shapes, four evaluation views), ``demo`` and ``quick`` (smoke runs, tests).
The encoder layout is the paper's in every preset; only its width changes.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from flax import nnx

from impax.configs import to_dict
from impax.data.latents import ZS_FILE, read_codes
from impax.models.imnet import IMNetConfig
from impax.models.imnet_svr import VIEW_SIZE, SVRConfig, SVRModel, crop_views, encode_images
from impax.train.config import RESUMABLE, TrainConfig
from impax.train.recipes.common import Recipe, run_summary, start_config, write_run
from impax.train.recipes.common import init_from as common_init_from
from impax.train.runs import load_imnet_ae

EVAL_FILE = "eval_svr.json"


@dataclasses.dataclass(frozen=True)
class IMNetSVRRecipeConfig:
    """Everything an ``imnet-svr`` run depends on (defaults: the ``paper`` preset).

    - ``model``: :class:`~impax.models.imnet_svr.SVRConfig` (``z_dim`` is replaced by the AE's).
    - ``train``: Adam 1e-4, β1 0.5 over the encoder only (IM-NET-pytorch ``IM_SVR``).
    - ``batch_size`` 64 shapes, ``epochs`` 1000, ``view_mode`` ``"batch"`` or ``"shape"``.
    - ``ae_run``: the ``imnet-ae`` run (required; ``--set ae_run=PATH``).
    - ``train_split``, ``heldout_splits``: split names of the store.
    - ``eval_views``: view indices rendered for each held-out shape (IM-NET-pytorch tests view 23);
      ``eval_batch``: decoder points per call; ``threshold``: occupancy iso-level (0.5).
    - ``preload_mb``: keep the training views in memory when they take at most this much,
      otherwise read one view per shape per step from the store.
    """

    model: SVRConfig = SVRConfig()
    train: TrainConfig = TrainConfig(learning_rate=1e-4, checkpoint_every_steps=1000)
    batch_size: int = 64
    epochs: int = 1000
    view_mode: str = "batch"
    ae_run: str = ""
    train_split: str = "train"
    heldout_splits: tuple[str, ...] = dataclasses.field(default=("val", "test"), metadata=RESUMABLE)
    eval_views: tuple[int, ...] = dataclasses.field(default=(23,), metadata=RESUMABLE)
    eval_batch: int = dataclasses.field(default=65536, metadata=RESUMABLE)
    threshold: float = 0.5
    preload_mb: float = dataclasses.field(default=2048.0, metadata=RESUMABLE)

    def __post_init__(self) -> None:
        if self.view_mode not in ("batch", "shape"):
            raise ValueError(f"view_mode must be 'batch' or 'shape', got {self.view_mode!r}")
        if self.batch_size < 1 or self.epochs < 0:
            raise ValueError("batch_size must be >= 1 and epochs >= 0")


#: IM-NET-pytorch ``train_svr.sh``: ResNet-18-like encoder (64), batch 64, Adam 1e-4, 1000 epochs.
PAPER = IMNetSVRRecipeConfig()

#: A few minutes on 2 CPU cores for the ~70 training shapes of ``impax shapes --count 88``.
CPU = IMNetSVRRecipeConfig(
    model=dataclasses.replace(SVRConfig(), img_ef_dim=4),
    train=TrainConfig(learning_rate=1e-3, log_every_steps=20, checkpoint_every_steps=200,
                      checkpoint_every_seconds=120.0),
    batch_size=16, epochs=100, view_mode="shape", eval_views=(0, 8, 16, 23),
)
#: Short smoke run (not used by ``impax demo``, which trains no SVR).
DEMO = dataclasses.replace(CPU, epochs=20, eval_views=(23,))
#: Seconds (plus compilation): tests.
QUICK = dataclasses.replace(
    CPU, model=dataclasses.replace(SVRConfig(), img_ef_dim=2), batch_size=4, epochs=20, eval_views=(23,),
    train=dataclasses.replace(CPU.train, learning_rate=3e-3, log_every_steps=5, checkpoint_every_steps=10,
                              tensorboard=False))

PRESETS: dict[str, IMNetSVRRecipeConfig] = {"paper": PAPER, "cpu": CPU, "demo": DEMO, "quick": QUICK}


# ----------------------------------------------------------------------------------------------
# images


class ViewSource:
    """Views, voxels and names of a prepared store or an IM-NET HDF5 file (``pixels``)."""

    def __init__(self, path: str | Path):
        from impax.data.store import ShapeStore, data_kind

        self.path = Path(path)
        self.kind = data_kind(self.path, strict=True)
        if self.kind == "store":
            self.store = ShapeStore(self.path)
        else:
            from impax.data.imnet_hdf5 import IMNetHdf5

            with IMNetHdf5(self.path) as f:
                if not f.has_pixels:
                    raise ValueError(f"{self.path} has no 'pixels' dataset (rendered views) to train IM-SVR")
                self._names = list(f.names)
            self._index = {n: i for i, n in enumerate(self._names)}

    def names(self, split: str | None) -> list[str]:
        """Shapes of ``split`` that have views (an HDF5 file is one split: all its shapes)."""
        if self.kind == "hdf5":
            return list(self._names)
        return [e["id"] for e in self.store.entries(split) if "views" in e.get("arrays", {})]

    def splits(self) -> list[str]:
        return sorted({e["split"] for e in self.store.entries()}) if self.kind == "store" else ["train"]

    def views(self, name: str, rows: Any = None) -> np.ndarray:
        """uint8 ``[V, 137, 137]`` (or the ``rows`` asked for)."""
        if self.kind == "store":
            return self.store.read(name, "views", rows)
        from impax.data.imnet_hdf5 import IMNetHdf5

        with IMNetHdf5(self.path) as f:
            v = np.asarray(f.pixels(self._index[name]))
        return v if rows is None else v[rows]

    def num_views(self, name: str) -> int:
        if self.kind == "store":
            if not hasattr(self, "_nviews"):
                self._nviews = {e["id"]: int(e["arrays"]["views"][0]) for e in self.store.entries()
                                if "views" in e.get("arrays", {})}
            if name in self._nviews:
                return self._nviews[name]
        return int(self.views(name).shape[0])

    def voxels(self, name: str) -> np.ndarray:
        if self.kind == "store":
            return self.store.read(name, "voxels").reshape(64, 64, 64)
        from impax.data.imnet_hdf5 import IMNetHdf5

        with IMNetHdf5(self.path) as f:
            return np.asarray(f.voxels(self._index[name])).reshape(64, 64, 64)


class ViewLoader:
    """Batches ``{"images": f32 [B, 128, 128], "z": f32 [B, z_dim]}``: shapes shuffled per
    (seed, epoch), one random view per batch or per shape (also fixed by (seed, epoch)), so a
    resumed run sees the same batches. ``B = min(batch_size, N)``; ``N // B`` batches per epoch."""

    def __init__(self, source: ViewSource, names: Sequence[str], targets: np.ndarray, batch_size: int,
                 num_views: int, seed: int = 0, view_mode: str = "batch", image_size: int = 128,
                 preload_mb: float = 2048.0):
        self.source, self.names = source, list(names)
        self.targets = np.asarray(targets, np.float32)
        self.batch_size = max(1, min(int(batch_size), len(self.names)))
        self.num_views, self.seed, self.view_mode, self.size = int(num_views), int(seed), view_mode, image_size
        mb = len(self.names) * self.num_views * VIEW_SIZE * VIEW_SIZE / 2 ** 20
        self.cache = (np.stack([source.views(n)[:self.num_views] for n in self.names])
                      if mb <= preload_mb else None)

    def __len__(self) -> int:
        return len(self.names) // self.batch_size

    def iterate(self, epoch: int, start: int = 0):
        rng = np.random.default_rng([self.seed, 5, int(epoch)])
        perm = rng.permutation(len(self.names))
        if self.view_mode == "batch":
            which = np.repeat(rng.integers(0, self.num_views, len(self)), self.batch_size)
        else:
            which = rng.integers(0, self.num_views, len(self) * self.batch_size)
        b = self.batch_size
        for i in range(start, len(self)):
            idx, v = perm[i * b:(i + 1) * b], which[i * b:(i + 1) * b]
            if self.cache is not None:
                pix = self.cache[idx, v]
            else:
                pix = np.stack([self.source.views(self.names[j], [int(k)])[0] for j, k in zip(idx, v)])
            yield {"images": crop_views(pix, self.size), "z": self.targets[idx]}


# ----------------------------------------------------------------------------------------------
# model


def build_model(cfg: IMNetSVRRecipeConfig, seed: int = 0, ae_cfg: IMNetConfig | None = None) -> SVRModel:
    """A fresh :class:`~impax.models.imnet_svr.SVRModel`: ``cfg.model``'s image encoder and an
    IM-NET decoder of ``ae_cfg`` (the AE's config; default IM-NET-pytorch's)."""
    return SVRModel(cfg.model, ae_cfg if ae_cfg is not None else IMNetConfig(), rngs=nnx.Rngs(int(seed)))


def encoder_filter() -> Any:
    """The trainer's ``wrt``: the image encoder's parameters only (IM-SVR's frozen decoder)."""
    return nnx.All(nnx.Param, nnx.PathContains("encoder"))


def svr_loss(model: SVRModel, batch: Mapping[str, Any], rng: Any):
    """IM-SVR loss ``mean((E(image) - z_AE)²)`` (IM-NET-pytorch ``IM_SVR.network_loss``)."""
    from impax.models.imnet_svr import latent_mse

    loss = latent_mse(model.encoder(batch["images"]), batch["z"])
    return loss, {"mse": loss}


# ----------------------------------------------------------------------------------------------
# evaluation


def evaluate(model: SVRModel, ae: Any, source: ViewSource, names: Sequence[str], mean_z: np.ndarray,
             views: Sequence[int], batch: int = 65536, threshold: float = 0.5) -> dict[str, Any]:
    """Mean 64³ IoU on ``names``: SVR from each of ``views``, the mean latent, the AE's own code."""
    from impax.models.imnet_codes import decode_grid, encode_voxels
    from impax.geometry.voxels import occupancy_iou as voxel_iou

    per: dict[str, dict[str, Any]] = {}
    base_occ = decode_grid(model.generator, mean_z[None], 64, batch)[0] > threshold
    for name in names:
        gt = source.voxels(name) > 0
        nv = source.num_views(name)
        vs = [v for v in views if v < nv] or [nv - 1]
        imgs = crop_views(source.views(name, vs), model.encoder.cfg.image_size)
        zs = encode_images(model.encoder, imgs)
        occ = decode_grid(model.generator, zs, 64, batch) > threshold
        z_ae = encode_voxels(ae, gt[None].astype(np.float32))
        ae_occ = decode_grid(model.generator, z_ae, 64, batch)[0] > threshold  # the AE's decoder, frozen
        per[name] = {"svr": [voxel_iou(o, gt) for o in occ], "views": vs, "mean_latent": voxel_iou(base_occ, gt),
                     "ae": voxel_iou(ae_occ, gt)}
    svr = [x for p in per.values() for x in p["svr"]]
    return {"iou_svr": float(np.mean(svr)) if svr else float("nan"),
            "iou_mean_latent": float(np.mean([p["mean_latent"] for p in per.values()])) if per else float("nan"),
            "iou_ae": float(np.mean([p["ae"] for p in per.values()])) if per else float("nan"),
            "shapes": len(per), "predictions": len(svr), "per_shape": per}


# ----------------------------------------------------------------------------------------------
# the recipe


def train(name: str, data: str | Path, out: str | Path, preset: str = "cpu",
          overrides: Mapping[str, Any] | None = None, seed: int = 0, max_steps: int | None = None,
          progress: bool = True, init_from: str | None = None) -> dict[str, Any]:
    """Train (or resume) an IM-SVR run; see the module docstring. Returns a JSON-able summary with
    ``stopped``, ``global_step``, the last loss and, once done, ``iou_svr`` / ``iou_mean_latent`` /
    ``iou_ae`` on the held-out shapes."""
    import jax

    from impax.train import Stage, fit

    recipe = RECIPES[name]
    cfg = start_config(recipe, preset, overrides, seed, max_steps, progress)
    if not cfg.ae_run:
        raise ValueError("imnet-svr needs the IM-AE run whose codes it regresses: --set ae_run=PATH")
    ae_run = Path(cfg.ae_run)
    zs_path = ae_run / ZS_FILE
    if not zs_path.is_file():
        raise FileNotFoundError(f"{zs_path} missing: the imnet-ae run has not finished")
    ae, _ = load_imnet_ae(ae_run)
    zs, znames = read_codes(zs_path)
    if zs.shape[1] != ae.cfg.z_dim:
        raise ValueError(f"{zs_path}: codes of size {zs.shape[1]}, the AE has z_dim {ae.cfg.z_dim}")
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, z_dim=ae.cfg.z_dim),
                              ae_run=str(ae_run.absolute()))

    source = ViewSource(data)
    code_of = {n: i for i, n in enumerate(znames)}
    names = [n for n in source.names(cfg.train_split) if n in code_of]
    if not names:
        raise ValueError(f"no shape of split {cfg.train_split!r} in {data} has both views and a code in {zs_path}")
    targets = zs[[code_of[n] for n in names]]
    num_views = min(source.num_views(n) for n in names)
    out = Path(out)
    loader = ViewLoader(source, names, targets, cfg.batch_size, num_views, seed, cfg.view_mode,
                        cfg.model.image_size, cfg.preload_mb)
    model = build_model(cfg, seed, ae.cfg)
    # a copy: the trainer donates the module's buffers, the AE's must stay valid
    nnx.update(model.generator, jax.tree.map(np.array, nnx.state(ae.generator)))
    write_run(out, recipe, preset, cfg, data, seed, common_init_from(model, out, init_from), ae_run=cfg.ae_run,
              ae_model=to_dict(ae.cfg), n_train=len(names))
    model.train()
    t0 = time.perf_counter()
    res = fit(model, [Stage("svr", loader, cfg.epochs, loss_fn=svr_loss)], out, cfg.train, wrt=encoder_filter(),
              extra_meta={"recipe": name, "model": to_dict(cfg.model), "ae_model": to_dict(ae.cfg)})
    model.eval()
    summary = run_summary(name, out, preset, res, time.perf_counter() - t0, n_train=len(names))
    if res.stopped != "done":
        return summary
    t1 = time.perf_counter()
    held = [n for s in cfg.heldout_splits if s in source.splits() for n in source.names(s)]
    mean_z = zs.mean(axis=0).astype(np.float32)
    report: dict[str, Any] = {"heldout": evaluate(model, ae, source, held, mean_z, cfg.eval_views, cfg.eval_batch,
                                                  cfg.threshold) if held else None,
                              "splits": [s for s in cfg.heldout_splits if s in source.splits()],
                              "eval_views": list(cfg.eval_views), "global_step": res.global_step,
                              "baseline": "constant code: mean of the AE's training codes"}
    (out / EVAL_FILE).write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    if report["heldout"]:
        for k in ("iou_svr", "iou_mean_latent", "iou_ae"):
            summary[k] = report["heldout"][k]
        summary["n_heldout"] = report["heldout"]["shapes"]
    else:
        summary["eval"] = f"no held-out shapes with views in splits {list(cfg.heldout_splits)}"
    summary["eval_seconds"] = round(time.perf_counter() - t1, 1)
    return summary


#: ``impax train imnet-svr`` (see :mod:`impax.train.registry`).
RECIPES = {"imnet-svr": Recipe("imnet-svr", IMNetSVRRecipeConfig, PRESETS, train, build_model)}
