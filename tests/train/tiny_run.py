"""A tiny model, loader and training script for the trainer tests.

Imported by ``tests/train/test_*.py`` and run as a subprocess script (SIGKILL resume, 4 CPU
devices, several processes)::

    python tests/train/tiny_run.py RUN_DIR --out params.npz [--kill-at STEP] [--devices N]
        [--model mlp|imae|ldif] [--coordinator HOST:PORT --num-processes N --process-id I]

``--model imae`` is IM-AE (the real :class:`~impax.models.imnet.IMNetAE` at tiny widths with the
``imnet-ae`` recipe's loss) on 64^3 voxels of random spheres; ``--model ldif`` is LDIF-like: the
SIF CNN depth encoder (:class:`~impax.models.ldif_encoders.DepthEncoder`), a structured implicit
with latents and the occnet CBN decoder in training mode (its batch statistics are EMA-updated
from each global batch), scored with LDIF's sample loss against sphere SDFs.

The loader follows the contract of docs/CONTRACTS.md: ``len`` batches per epoch and
``iterate(epoch, start)`` deterministic in (seed, epoch). The loss uses the step RNG (input
jitter), so a resume that got the RNG wrong would change the result.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import sys
from pathlib import Path

import numpy as np


class ToyLoader:
    """``n`` points in R^3 with targets ``sin(x0) + x1 * x2``; shuffled per (seed, epoch)."""

    def __init__(self, n: int = 48, batch_size: int = 8, seed: int = 0, level: int = 0,
                 nan_from_batch: int | None = None):
        rng = np.random.default_rng([seed, level])
        self.x = rng.normal(size=(n, 3)).astype(np.float32) * (1.0 + 0.5 * level)
        self.y = (np.sin(self.x[:, 0]) + self.x[:, 1] * self.x[:, 2]).astype(np.float32)
        self.batch_size, self.seed, self.level = batch_size, seed, level
        self.nan_from_batch = nan_from_batch  # global batch counter from which targets are NaN
        self.served = 0

    def __len__(self) -> int:
        return len(self.x) // self.batch_size

    def iterate(self, epoch: int, start: int = 0):
        perm = np.random.default_rng([self.seed, self.level, epoch]).permutation(len(self.x))
        for i in range(start, len(self)):
            idx = perm[i * self.batch_size:(i + 1) * self.batch_size]
            y = self.y[idx].copy()
            if self.nan_from_batch is not None and epoch * len(self) + i >= self.nan_from_batch:
                y[:] = np.nan
            yield {"x": self.x[idx], "y": y}


def make_model(seed: int = 0, hidden: int = 16):
    import jax
    from flax import nnx

    class TinyMLP(nnx.Module):
        def __init__(self, rngs: nnx.Rngs):
            self.l1 = nnx.Linear(3, hidden, rngs=rngs)
            self.l2 = nnx.Linear(hidden, hidden, rngs=rngs)
            self.l3 = nnx.Linear(hidden, 1, rngs=rngs)

        def __call__(self, x):
            return self.l3(jax.nn.tanh(self.l2(jax.nn.tanh(self.l1(x)))))[..., 0]

    return TinyMLP(nnx.Rngs(seed))


def mse_loss(model, batch, rng):
    import jax
    import jax.numpy as jnp

    x = batch["x"] + 0.05 * jax.random.normal(rng, batch["x"].shape)
    err = model(x) - batch["y"]
    loss = jnp.mean(err ** 2)
    return loss, {"mae": jnp.mean(jnp.abs(err))}


class SphereLoader:
    """Random spheres: 64^3 voxels + occupancy samples (``imae``) or depth-like images + SDF
    samples (``ldif``); ``n`` shapes, shuffled per (seed, epoch), points drawn per (epoch, batch)."""

    def __init__(self, kind: str, n: int = 16, batch_size: int = 8, seed: int = 0, points: int = 64):
        rng = np.random.default_rng([seed, 7])
        self.kind, self.batch_size, self.seed, self.points = kind, batch_size, seed, points
        self.centers = rng.uniform(-0.15, 0.15, size=(n, 3)).astype(np.float32)
        self.radii = rng.uniform(0.15, 0.35, size=n).astype(np.float32)

    def __len__(self) -> int:
        return len(self.radii) // self.batch_size

    def _sdf(self, idx, p):
        return np.linalg.norm(p - self.centers[idx, None], axis=-1) - self.radii[idx, None]

    def iterate(self, epoch: int, start: int = 0):
        perm = np.random.default_rng([self.seed, epoch]).permutation(len(self.radii))
        for i in range(start, len(self)):
            idx = perm[i * self.batch_size:(i + 1) * self.batch_size]
            rng = np.random.default_rng([self.seed, epoch, i])
            scale = 0.5 if self.kind == "imae" else 0.2  # LDIF: where the initial elements are
            p = rng.uniform(-scale, scale, size=(len(idx), self.points, 3)).astype(np.float32)
            sdf = self._sdf(idx, p).astype(np.float32)
            if self.kind == "imae":
                g = (np.arange(64, dtype=np.float32) + 0.5) / 64 - 0.5
                grid = np.stack(np.meshgrid(g, g, g, indexing="ij"), -1)
                vox = np.stack([(np.linalg.norm(grid - self.centers[j], axis=-1) < self.radii[j])
                                for j in idx]).astype(np.float32)[..., None]
                yield {"voxels": vox, "points": p, "values": (sdf < 0).astype(np.float32)[..., None]}
            else:
                u = (np.arange(16, dtype=np.float32) + 0.5) / 16 - 0.5
                uu, vv = np.meshgrid(u, u, indexing="ij")
                views = []
                for axis in range(2):  # two orthographic "depth" images along x and y
                    c = self.centers[idx]
                    a, b = (1, 2) if axis == 0 else (0, 2)
                    d2 = (self.radii[idx, None, None] ** 2 - (uu - c[:, a, None, None]) ** 2
                          - (vv - c[:, b, None, None]) ** 2)
                    views.append(np.where(d2 > 0, 1.0 - np.sqrt(np.maximum(d2, 0)), 1.5))
                yield {"images": np.stack(views, 1).astype(np.float32), "points": p, "sdf": sdf}


def _ldif_cfg():
    import dataclasses as dc

    from impax.models.ldif_config import LDIF

    return dc.replace(LDIF, element_count=4, symmetric_count=0, latent_size=8, decoder_width=8,
                      encoder="cnn", image_count=2, image_size=16, simple_cnn_features=16,
                      fc_width=16)


def numpy_init(build, seed: int = 0):
    """``build()``'s module with numpy-drawn values: kernels N(0, 1/fan_in), biases and means 0,
    variances 1. The real modules, without compiling one XLA program per initialiser (the
    truncated-normal initialisers cost ~1 s of compilation each on a busy 2-core machine)."""
    import jax
    from flax import nnx

    graphdef, state = nnx.split(nnx.eval_shape(build))
    rng = np.random.default_rng(seed)

    def fill(path, leaf):
        name = ".".join(str(getattr(k, "key", getattr(k, "name", k))) for k in path).lower()
        if name.endswith("var"):
            return np.ones(leaf.shape, leaf.dtype)
        if leaf.ndim <= 1 or "bias" in name or "mean" in name:
            return np.zeros(leaf.shape, leaf.dtype)
        fan_in = int(np.prod(leaf.shape[:-1]))
        return (rng.normal(size=leaf.shape) / np.sqrt(fan_in)).astype(leaf.dtype)

    values = jax.tree_util.tree_map_with_path(fill, state)
    return nnx.merge(graphdef, jax.tree.map(jax.numpy.asarray, values))


def make_imae_model(seed: int = 0):
    from flax import nnx

    from impax.models.imnet import IMNetAE, IMNetConfig

    return numpy_init(lambda: IMNetAE(IMNetConfig(ef_dim=2, gf_dim=4, z_dim=8),
                                      rngs=nnx.Rngs(seed)), seed)


def make_ldif_model(seed: int = 0):
    from flax import nnx

    from impax.models.ldif_encoders import DepthEncoder
    from impax.models.occnet import OccNetDecoder

    cfg = _ldif_cfg()

    class TinyLDIF(nnx.Module):
        def __init__(self, rngs: nnx.Rngs):
            self.encoder = DepthEncoder(cfg, cfg.explicit_dof + cfg.latent_size, rngs=rngs)
            self.decoder = OccNetDecoder(cfg.decoder_width, cfg.latent_size, cfg.decoder_blocks,
                                         rngs=rngs, use_running_average=False)

    return numpy_init(lambda: TinyLDIF(nnx.Rngs(seed)), seed)


def ldif_loss(model, batch, rng):
    from impax.models import sif
    from impax.models.ldif_losses import sample_loss

    cfg = _ldif_cfg()
    act = model.encoder(batch["images"])
    shape = sif.from_activation(act, cfg.radius_type, cfg.symmetric_count, cfg.latent_size)
    f = sif.shape_function(shape, batch["points"], decoder=model.decoder)
    loss = sample_loss(f, batch["sdf"], cfg.inside_weight, cfg.hardness, cfg.iso_level)
    return loss, {"f_mean": f.mean()}


MODELS = {"mlp": make_model, "imae": make_imae_model, "ldif": make_ldif_model}


def make_model_stages(kind: str, epochs=(2,), batch_size: int = 8):
    """Model and stages of ``kind`` (``mlp`` | ``imae`` | ``ldif``)."""
    if kind == "mlp":
        return make_model(), make_stages(tuple(epochs) if len(epochs) > 1 else (epochs[0], 1),
                                         batch_size=batch_size)
    from impax.train import Stage

    if kind == "imae":
        from impax.train.recipes.imnet import make_loss

        loss = make_loss(True)
    else:
        loss = ldif_loss
    return MODELS[kind](), [Stage(f"{kind}{k}", SphereLoader(kind, 16, batch_size, seed=k), e,
                                  loss_fn=loss) for k, e in enumerate(epochs)]


def make_stages(epochs=(2, 2), n=48, batch_size=8, seed=0, nan_from_batch=None):
    from impax.train import Stage

    return [Stage(f"level{k}", ToyLoader(n, batch_size, seed, level=k,
                                         nan_from_batch=nan_from_batch if k == 0 else None),
                  e, loss_fn=mse_loss)
            for k, e in enumerate(epochs)]


def params_of(model) -> dict[str, np.ndarray]:
    from flax import nnx

    from impax.train import named_leaves

    return {k: np.asarray(v) for k, v in named_leaves(nnx.state(model, nnx.Param)).items()}


def state_of(model) -> dict[str, np.ndarray]:
    """Every variable of the module (parameters and batch statistics)."""
    from flax import nnx

    from impax.train import named_leaves

    return {k: np.asarray(v) for k, v in named_leaves(nnx.state(model)).items()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("run_dir")
    ap.add_argument("--out", required=True)
    ap.add_argument("--kill-at", type=int, default=None, help="SIGKILL itself after this step")
    ap.add_argument("--devices", type=int, default=None)
    ap.add_argument("--epochs", type=int, nargs="+", default=[3, 3])
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--ckpt-every", type=int, default=4)
    ap.add_argument("--lr", type=float, default=1e-2)
    ap.add_argument("--model", default="mlp",
                    help="mlp | imae | ldif, or several comma separated (outputs OUT-<model>.npz)")
    ap.add_argument("--max-steps", type=int, default=None)
    ap.add_argument("--tensorboard", action="store_true")
    ap.add_argument("--coordinator", default=None)
    ap.add_argument("--num-processes", type=int, default=None)
    ap.add_argument("--process-id", type=int, default=None)
    args = ap.parse_args(argv)

    from impax.train.distributed import initialize, spec_from

    dist = initialize(spec_from(args.coordinator, args.num_processes, args.process_id),
                      timeout_s=60)

    from impax.train import TrainConfig

    config = TrainConfig(learning_rate=args.lr, seed=3, log_every_steps=2,
                         checkpoint_every_steps=args.ckpt_every, checkpoint_every_seconds=None,
                         keep_checkpoints=3, num_devices=args.devices, progress=False,
                         max_steps=args.max_steps, tensorboard=args.tensorboard)
    kinds = args.model.split(",")
    for kind in kinds:
        if kind not in MODELS:
            ap.error(f"unknown model {kind!r}")
        out = Path(args.out)
        if len(kinds) > 1:
            out = out.with_name(f"{out.stem}-{kind}{out.suffix}")
        _train_one(kind, Path(args.run_dir) / kind if len(kinds) > 1 else Path(args.run_dir),
                   out, config, args, dist)
    return 0


def _train_one(kind, run_dir, out_path, config, args, dist) -> None:
    import jax
    from flax import nnx

    from impax.train import fit

    def on_step(pos):
        if args.kill_at is not None and pos.global_step >= args.kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    if kind == "mlp":
        model, stages = make_model(), make_stages(tuple(args.epochs), batch_size=args.batch_size)
    else:
        model, stages = make_model_stages(kind, tuple(args.epochs), args.batch_size)
    result = fit(model, stages, run_dir, config, on_step=on_step)
    np.savez(out_path, **state_of(result.model))
    info = {"global_step": result.global_step, "stopped": result.stopped,
            "num_devices": result.num_devices, "jax_devices": len(jax.devices()),
            "num_processes": result.num_processes, "metrics": result.metrics,
            "checkpoint_step": result.checkpoint_step, **dist,
            "config": dataclasses.asdict(config)}
    if result.num_devices > 1 and result.num_processes == 1:  # how batches and params were placed
        from impax.train import DataParallel

        batch = DataParallel(result.num_devices).put_batch(next(stages[0].loader.iterate(0)))
        first = jax.tree.leaves(batch)[0]
        info["batch_shard_rows"] = [int(s.data.shape[0]) for s in first.addressable_shards]
        kernel = jax.tree.leaves(nnx.state(result.model, nnx.Param))[0]
        info["params_replicated"] = bool(kernel.sharding.is_fully_replicated)
        info["params_devices"] = len(kernel.sharding.device_set)
    out_path.with_suffix(".json").write_text(json.dumps(info))


if __name__ == "__main__":
    sys.exit(main())
