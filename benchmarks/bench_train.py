"""Training-step throughput (shapes × points per second). IM-AE part: the 64³ stage of
IM-NET-pytorch (paper-size model: encoder ef 32, decoder gf 128, z 256), Adam, the recipe's loss
(:func:`impax.train.recipes.imnet.make_loss`, ``fast_encoder="auto"``: space-to-depth on a CPU,
cuDNN convolutions elsewhere). LDIF part: :func:`ldif_workload`, the ``paper`` step.

FLOP per step ≈ 3 × forward (forward + two backward products): encoder forward per shape
(``2 · out_voxels · 4³ · c_in · c_out`` per conv) plus decoder forward per point (with the z-part
of the first layer counted once per shape, as :mod:`benchmarks.bench_decoder`).

    python -m benchmarks --only train
    python -m benchmarks.bench_train [--short]
"""

from __future__ import annotations

import dataclasses
import sys

import numpy as np

from benchmarks.common import Result, measure


def encoder_flops(cfg) -> float:
    e, r, total, cin = cfg.ef_dim, cfg.input_size, 0.0, 1
    for i in range(4):
        cout, r = e * 2 ** i, r // 2
        total += 2.0 * r ** 3 * 64 * cin * cout
        cin = cout
    return total + 2.0 * 64 * cin * cfg.z_dim


def _imae_step(cfg, shapes: int, points: int, fast: bool | str, name: str, repeat: int) -> Result:
    import jax
    import jax.numpy as jnp
    import optax
    from flax import nnx

    from benchmarks.bench_decoder import flops_per_point
    from impax.models.imnet import IMNetAE
    from impax.train.recipes.imnet import make_loss

    model = IMNetAE(cfg, rngs=nnx.Rngs(0))
    opt = nnx.Optimizer(model, optax.adam(5e-5, b1=0.5), wrt=nnx.Param)
    loss_fn = make_loss(fast)
    rng = np.random.default_rng(0)
    batch = {"voxels": jnp.asarray(rng.random((shapes, 64, 64, 64, 1)) > 0.7, jnp.uint8),  # as the loader
             "points": jnp.asarray(rng.random((shapes, points, 3)) - 0.5, jnp.float32),
             "values": jnp.asarray(rng.random((shapes, points, 1)) > 0.5, jnp.float32)}
    graphdef, state = nnx.split((model, opt))

    @jax.jit
    def step(state, b):
        m, o = nnx.merge(graphdef, state)
        (loss, _), g = nnx.value_and_grad(lambda mm: loss_fn(mm, b, None), has_aux=True)(m)
        o.update(m, g)
        return nnx.state((m, o)), loss

    box = [state]

    def run():
        box[0], loss = step(box[0], batch)
        loss.block_until_ready()

    zpart = 2.0 * cfg.z_dim * cfg.decoder_widths()[0]
    fwd = shapes * (encoder_flops(cfg) + zpart) + shapes * points * flops_per_point(cfg)
    return measure(name, run, items=shapes * points, unit="shape-points", flops=3.0 * fwd, repeat=repeat,
                   shapes=shapes, points=points, fast_encoder=fast)


def imae_workload(short: bool) -> list[Result]:
    from impax.models.imnet import IMNET_PYTORCH

    if short:
        small = dataclasses.replace(IMNET_PYTORCH, ef_dim=4, gf_dim=8, z_dim=32)
        return [_imae_step(small, 2, 1024, "auto", "train imnet-ae small 2x1024", repeat=2)]
    import jax

    cpu = jax.devices()[0].platform == "cpu"
    s, p = (4, 4096) if cpu else (32, 4096)
    return [_imae_step(IMNET_PYTORCH, s, p, "auto", f"train imnet-ae 64^3 {s}x{p}", repeat=2)]


def ldif_workload(short: bool) -> list[Result]:
    """The ``ldif`` recipe's ``paper`` step (ResNet50 early-fusion on 20 depth views at 137² in
    float16 as a packed store gives them, 32 + 16 mirrored elements, local PointNet on 10k surface
    points, the 1024 + 1024 sample losses, Adam): the trainer's ``loss_step`` jitted with donated
    state on a synthetic batch of the recipe's arrays. Batch 24 on an accelerator; 2 shapes on a CPU
    (a 24-shape step takes minutes there) and with ``short`` (the ``quick`` preset)."""
    import jax
    from flax import nnx

    from impax.models.ldif_model import set_training
    from impax.train import loss_step, make_optimizer
    from impax.train.recipes import ldif as L

    cfg = L.PRESETS["ldif"]["quick" if short else "paper"]
    shapes = 2 if short or jax.devices()[0].platform == "cpu" else cfg.model.batch_size
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, batch_size=shapes))
    model = L.build_model(cfg)
    set_training(model, True)
    graphdef, state = nnx.split((model, make_optimizer(model, cfg.train)))
    step_fn = loss_step(L.make_loss(cfg.model, cfg.decoder_topk), nnx.Param)

    def pure(state, batch, key):
        m, o = nnx.merge(graphdef, state)
        loss, _ = step_fn(m, o, batch, key)
        return nnx.state((m, o)), loss

    step = jax.jit(pure, donate_argnums=0)
    batch = jax.device_put(L.synthetic_batch(cfg, shapes, cfg.model.image_size, np.random.default_rng(0),
                                             depth_dtype=np.float16))
    key, box = jax.random.key(0), [state]

    def run():
        box[0], loss = step(box[0], batch, key)
        loss.block_until_ready()

    name = f"train ldif {'quick' if short else 'paper'} B={shapes} spc={cfg.model.sample_count}"
    return [measure(name, run, items=shapes * 2 * cfg.model.sample_count, unit="shape-samples",
                    repeat=2 if short else 3, shapes=shapes, paper_batch=L.PRESETS["ldif"]["paper"].model.batch_size)]


WORKLOADS = {"train imnet-ae": imae_workload, "train ldif": ldif_workload}


if __name__ == "__main__":
    from benchmarks.__main__ import main

    sys.exit(main(["--only", "train"] + (["--short"] if "--short" in sys.argv else [])))
