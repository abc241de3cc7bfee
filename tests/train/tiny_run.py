"""A tiny model, loader and training script for the trainer tests.

Imported by ``tests/train/test_*.py`` and run as a subprocess script (SIGKILL resume, 4 CPU
devices)::

    python tests/train/tiny_run.py RUN_DIR --out params.npz [--kill-at STEP] [--devices N]

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
    args = ap.parse_args(argv)

    import jax

    from impax.train import TrainConfig, fit

    config = TrainConfig(learning_rate=args.lr, seed=3, log_every_steps=2,
                         checkpoint_every_steps=args.ckpt_every, checkpoint_every_seconds=None,
                         keep_checkpoints=3, num_devices=args.devices, progress=False)

    def on_step(pos):
        if args.kill_at is not None and pos.global_step >= args.kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    stages = make_stages(tuple(args.epochs), batch_size=args.batch_size)
    result = fit(make_model(), stages, args.run_dir, config, on_step=on_step)
    np.savez(args.out, **params_of(result.model))
    info = {"global_step": result.global_step, "stopped": result.stopped,
            "num_devices": result.num_devices, "jax_devices": len(jax.devices()),
            "config": dataclasses.asdict(config)}
    if result.num_devices > 1:  # how batches and parameters were placed
        from impax.train import DataParallel

        batch = DataParallel(result.num_devices).put_batch(next(stages[0].loader.iterate(0)))
        info["batch_shard_rows"] = [int(s.data.shape[0]) for s in batch["x"].addressable_shards]
        kernel = result.model.l1.kernel.value
        info["params_replicated"] = bool(kernel.sharding.is_fully_replicated)
        info["params_devices"] = len(kernel.sharding.device_set)
    Path(args.out).with_suffix(".json").write_text(json.dumps(info))
    return 0


if __name__ == "__main__":
    sys.exit(main())
