"""SIF/LDIF: shape-function evaluation, the LDIF training step, and LDIF mesh extraction.

* ``sif eval``: points/s of ``F(x)`` for one shape with the paper's representation (32 + 16 mirrored
  ``cov`` elements) as SIF++ (no decoder) and LDIF (32-d latents, the CBN occnet on every element),
  through :func:`impax.models.ldif_model.shape_values`'s jitted function with the kernel's RBF skip,
  one fixed batch per call.
* ``ldif train``: steps/s of the ``ldif`` ``cpu`` preset's training step (encoder, local PointNet,
  decoder on 2 x spc samples per shape, all losses, Adam) on a synthetic batch of the preset's shapes.
* ``ldif extract``: seconds and shape-function queries of :func:`impax.inference.ldif.extract_sif`
  at 128^3 and 256^3 (short: 64^3) for an LDIF whose elements cover a blob-shaped surface
  (multi-resolution extraction; each query decodes only the elements whose RBF passes the
  kernel's 1e-4 rule, :class:`impax.models.ldif_query.SparseLdifQuery`).

    python -m benchmarks --only sif
    python -m benchmarks.bench_sif [--short]
"""

from __future__ import annotations

import sys

import numpy as np

from benchmarks.common import Result, measure


def _random_ldif(latent: int = 32, seed: int = 0):
    import jax.numpy as jnp

    from impax.models.sif import from_activation

    rng = np.random.default_rng(seed)
    act = rng.normal(size=(32, 10 + latent)).astype(np.float32)
    act[:, 0] = rng.uniform(0.5, 1.5, 32)          # constants -|a|
    act[:, 1:4] = rng.uniform(-0.6, 0.6, (32, 3))   # centres in [-0.3, 0.3]
    act[:, 4:7] = rng.uniform(0.5, 2.0, (32, 3))    # sigma ~ 0.1
    act[:, 10:] *= 0.1
    return from_activation(jnp.asarray(act), "cov", 16, latent).as_numpy()


def _weights(latent: int = 32):
    """Random decoder weights with the running statistics of a trained decoder (mean 0, variance
    1): with the initial zeros every CBN divides by sqrt(1e-5), so an untrained decoder's ``f``
    reaches 1e4 and the surface becomes noise, not a shape."""
    import jax

    from impax.models.occnet import init_weights

    w = {k: np.asarray(v) for k, v in init_weights(jax.random.key(0), latent, latent, 1).items()}
    for k in w:
        if k.endswith(".var"):
            w[k] = np.float32(1.0)
    return w


def eval_workload(short: bool) -> list[Result]:
    from impax.models.ldif_model import sif_query

    batch = 4096 if short else 32768
    pts = np.random.default_rng(1).uniform(-0.75, 0.75, (batch, 3)).astype(np.float32)
    out = []
    for name, latent in (("sif++ 48 cov", 0), ("ldif 48 cov L32", 32)):
        sif = _random_ldif(max(latent, 1))
        if latent == 0:
            sif = sif.replace(latents=None)
        fn = sif_query(sif, _weights() if latent else None, skip=True)
        out.append(measure(f"sif eval {name} B={batch}", lambda fn=fn: np.asarray(fn(pts)), items=batch, unit="points",
                           repeat=2 if short else 3, min_time=0.2))
    return out


def train_workload(short: bool) -> list[Result]:
    import dataclasses

    import jax
    from flax import nnx

    from impax.train.recipes.ldif import PRESETS, build_model, make_loss, set_training
    from impax.train.trainer import adam

    cfg = PRESETS["ldif"]["cpu"]
    if short:
        cfg = dataclasses.replace(cfg, surface_points=256, model=dataclasses.replace(
            cfg.model, sample_count=64, local_point_count=32, batch_size=2))
    m = cfg.model
    b = m.batch_size
    rng = np.random.default_rng(0)
    grid = rng.normal(scale=0.1, size=(b, 16, 16, 16)).astype(np.float32)
    w2g = np.tile(np.diag([15 / 1.4, 15 / 1.4, 15 / 1.4, 1.0]).astype(np.float32), (b, 1, 1))
    w2g[:, :3, 3] = 7.5
    batch = {"uniform_points": rng.uniform(-0.7, 0.7, (b, m.sample_count, 3)).astype(np.float32),
             "uniform_sdf": rng.normal(size=(b, m.sample_count)).astype(np.float32),
             "near_points": rng.uniform(-0.5, 0.5, (b, m.sample_count, 3)).astype(np.float32),
             "near_sdf": rng.normal(size=(b, m.sample_count)).astype(np.float32),
             "sdf_grid": grid, "world2grid": w2g,
             "depth": rng.uniform(0, 1.5, (b, 20, 64, 64)).astype(np.float32),
             "surface_points": rng.uniform(-0.5, 0.5, (b, cfg.surface_points, 3)).astype(np.float32),
             "surface_normals": rng.normal(size=(b, cfg.surface_points, 3)).astype(np.float32)}
    model = build_model(cfg)
    set_training(model, True)
    opt = nnx.Optimizer(model, adam(cfg.train), wrt=nnx.Param)
    loss_fn = make_loss(m)

    @nnx.jit
    def step(model, opt, batch, key):
        (loss, _), g = nnx.value_and_grad(lambda mm: loss_fn(mm, batch, key), has_aux=True)(model)
        opt.update(model, g)
        return loss

    key = jax.random.key(0)
    return [measure(f"ldif train cpu preset B={b} spc={m.sample_count}",
                    lambda: step(model, opt, batch, key).block_until_ready(), items=1, unit="steps",
                    repeat=2, min_time=0.0, samples_per_step=b * 2 * m.sample_count)]


def extract_workload(short: bool) -> list[Result]:
    import time

    from benchmarks.common import compile_count, peak_rss_mib
    from impax.inference.ldif import extract_sif

    sif, w = _random_ldif(), _weights()
    out = []
    for res in ((64,) if short else (128, 256)):
        extract_sif(sif, w, res)  # warm-up (compiles the query's functions for its batch shapes)
        c0 = compile_count()
        t0 = time.perf_counter()
        r = extract_sif(sif, w, res)
        sec = time.perf_counter() - t0
        out.append(Result(f"ldif extract {res}^3", r.queries / sec, "queries", sec, None, compile_count() - c0,
                          peak_rss_mib(),
                          {"queries": r.queries, "dense_queries": r.dense_queries,
                           "query_fraction": round(r.queries / r.dense_queries, 4),
                           "fn_seconds": round(r.eval_seconds, 3),
                           "faces": 0 if r.mesh is None else int(len(r.mesh.faces))}))
    return out


WORKLOADS = {"sif eval": eval_workload, "ldif train": train_workload, "ldif extract": extract_workload}


if __name__ == "__main__":
    from benchmarks.__main__ import main

    sys.exit(main(["--only", "sif"] + (["--short"] if "--short" in sys.argv else [])))
