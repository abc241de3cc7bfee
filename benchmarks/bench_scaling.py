"""Data-parallel training throughput on 1, 2, 4, ... devices (issue 8, acceptance 4; issue 18).

On a machine with two or more accelerators the rows use its own devices (the first N, the paper
model and batch: 32 shapes x 4096 points). Without them, each device count runs in its own
subprocess with ``XLA_FLAGS=--xla_force_host_platform_device_count=N`` (JAX reads it once, at
start-up) and ``JAX_PLATFORMS=cpu``, labelled "forced cpu". The timed call is the trainer's own
compiled step (:func:`impax.train.trainer._compile` over :class:`impax.train.DataParallel`:
batch sharded over a ``data`` mesh axis, parameters and Adam state replicated and donated) for the
``imnet-ae`` recipe's loss at a fixed *global* batch, so the rows differ only in the device count.
The batch is placed on the devices once; loading is not timed.

On a CPU the forced devices share the same cores, so these rows show the overhead of the sharded
step (collectives, per-device dispatch) rather than a speed-up; on a machine with N accelerators
the same code splits the batch over N real devices. FLOP per step as :mod:`benchmarks.bench_train`.

    python -m benchmarks --only scaling
    python -m benchmarks.bench_scaling [--short]
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

import numpy as np

from benchmarks.common import Result, measure

DEVICE_COUNTS = (1, 2, 4)


def _child(devices: int, short: bool, real: bool = False) -> dict:
    """Runs inside the subprocess: time the trainer's step on ``devices`` devices."""
    import jax
    from flax import nnx

    from benchmarks.bench_decoder import flops_per_point
    from benchmarks.bench_train import encoder_flops
    from impax.models.imnet import IMNetAE
    from impax.train import DataParallel, TrainConfig, loss_step, make_optimizer
    from impax.train.recipes.imnet import CPU, make_loss
    from impax.train.trainer import _compile

    if real and jax.device_count() < devices or not real and jax.device_count() != devices:
        raise RuntimeError(f"expected {devices} devices, JAX has {jax.device_count()}")
    if short:
        cfg = dataclasses.replace(CPU.model, ef_dim=4, gf_dim=8, z_dim=32)
        shapes, points = 8, 1024
    elif real:  # accelerators: the paper model and batch (32 shapes x 4096 points)
        from impax.models.imnet import IMNET_PYTORCH

        cfg, shapes, points = IMNET_PYTORCH, 32, 4096
    else:  # the cpu preset's model and per-step batch (16 shapes x 2048 points)
        cfg, shapes, points = CPU.model, 16, 2048
    model = IMNetAE(cfg, rngs=nnx.Rngs(0))
    optimizer = make_optimizer(model, TrainConfig(learning_rate=1e-3))
    graphdef, state = nnx.split((model, optimizer))
    leaves, treedef = jax.tree.flatten(state)
    dp = DataParallel(devices)
    step = _compile(graphdef, treedef, loss_step(make_loss("auto")), dp)
    rng = np.random.default_rng(0)
    batch = dp.put_batch({
        "voxels": (rng.random((shapes, 64, 64, 64, 1)) > 0.7).astype(np.uint8),
        "points": (rng.random((shapes, points, 3)) - 0.5).astype(np.float32),
        "values": (rng.random((shapes, points, 1)) > 0.5).astype(np.float32)})
    box = [dp.put_replicated(leaves)]
    key = dp.put_replicated(np.asarray(jax.random.key_data(jax.random.key(0))))

    def run():
        box[0], loss, _ = step(box[0], batch, key, np.uint32(0))
        loss.block_until_ready()

    zpart = 2.0 * cfg.z_dim * cfg.decoder_widths()[0]
    fwd = shapes * (encoder_flops(cfg) + zpart) + shapes * points * flops_per_point(cfg)
    kind = jax.devices()[0].platform if real else "forced cpu"
    r = measure(f"train scaling imnet-ae {devices} {kind} dev {shapes}x{points}", run,
                items=shapes * points, unit="shape-points", flops=3.0 * fwd,
                repeat=2 if short else 3, devices=devices, global_batch=f"{shapes}x{points}",
                per_device_shapes=shapes // devices)
    return dataclasses.asdict(r)


def accelerator_count() -> int:
    """How many accelerators (GPU/TPU) JAX sees here, asked in a fresh process (0 on a CPU-only machine)."""
    code = "import jax; d = jax.devices(); print(len(d) if d[0].platform != 'cpu' else 0)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    try:
        return int(done.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return 0


def scaling_workload(short: bool) -> list[Result]:
    """1, 2, 4, ... real accelerators where there are at least 2; else 1, 2, 4 forced CPU devices."""
    results: list[Result] = []
    base = None
    real = accelerator_count()
    counts = [n for n in (1, 2, 4, 8, 16) if n <= real] if real >= 2 else list(DEVICE_COUNTS)
    for n in counts:
        if real >= 2:  # the machine's own devices: the first n of them (DataParallel(n))
            env = dict(os.environ)
        else:
            env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=f"--xla_force_host_platform_device_count={n}")
        args = [sys.executable, "-m", "benchmarks.bench_scaling", "--child", str(n)] + (["--real"] if real >= 2 else [])
        if short:
            args.append("--short")
        done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            raise RuntimeError(f"{n} devices: {done.stderr[-2000:]}")
        row = json.loads(done.stdout.strip().splitlines()[-1])
        r = Result(**row)
        base = r.throughput if base is None else base
        r.extra["vs_1_device"] = f"{r.throughput / base:.2f}x"
        results.append(r)
    return results


WORKLOADS = {"train scaling 1/2/4 devices": scaling_workload}


if __name__ == "__main__":
    if "--child" in sys.argv:
        n = int(sys.argv[sys.argv.index("--child") + 1])
        print(json.dumps(_child(n, "--short" in sys.argv, "--real" in sys.argv), default=str))
        sys.exit(0)
    from benchmarks.__main__ import format_table
    from benchmarks.common import matmul_peak

    print(format_table(matmul_peak(1024), scaling_workload("--short" in sys.argv)))
