"""IM-NET decoder forward throughput on large point batches (the cost of mesh extraction).

The decoder is :class:`impax.models.imnet.ImplicitDecoder` (paper size: IM-NET-pytorch layout
259 → 1024 → 1024 → 1024 → 512 → 256 → 128 → 1, and the TF1 layout with skips), evaluated the way
inference does: the z-part of the layers that see ``[xyz, z]`` is computed once per shape
(``precompute``) and only the per-point part (``apply``) is timed. FLOP per point are counted from
the layer sizes: ``2 · in · out`` per layer, with ``in`` the per-point inputs (xyz rows, hidden
rows), activations not counted.

Variants: batch size (points per call) and the matmul precision (JAX default vs ``"highest"``);
``--short`` uses a narrow model and small batches (smoke test).

    python -m benchmarks --only decoder
    python -m benchmarks.bench_decoder [--short]
"""

from __future__ import annotations

import dataclasses
import sys

import numpy as np

from benchmarks.common import Result, measure


def flops_per_point(cfg) -> float:
    """Per-point FLOP of ``ImplicitDecoder.apply`` (z-part precomputed)."""
    widths = cfg.decoder_widths()
    skips = cfg.decoder_skip_layers()
    total, prev = 0.0, 0
    for i, w in enumerate(widths):
        fan_in = prev + (cfg.point_dim if i in skips else 0)
        total += 2.0 * fan_in * w
        prev = w
    return total


def _bench(cfg, batch: int, name: str, repeat: int = 3) -> Result:
    import jax
    from flax import nnx

    from impax.models.imnet import ImplicitDecoder

    dec = ImplicitDecoder(cfg, rngs=nnx.Rngs(0))
    rng = np.random.default_rng(0)
    z = rng.random((1, cfg.z_dim), dtype=np.float32)
    pts = (rng.random((1, batch, 3), dtype=np.float32) - 0.5)
    zp = nnx.jit(lambda d, z: d.precompute(z))(dec, z)
    graphdef, state = nnx.split(dec)

    @jax.jit
    def apply(state, p, zp):
        return nnx.merge(graphdef, state).apply(p, zp)

    p = jax.device_put(pts)
    f = flops_per_point(cfg)
    return measure(name, lambda: apply(state, p, zp).block_until_ready(), items=batch, unit="points",
                   flops=f * batch, repeat=repeat, min_time=0.2, flop_per_point=int(f),
                   layout=cfg.layout, precision=cfg.precision or "default")


def decoder_workload(short: bool) -> list[Result]:
    from impax.models.imnet import IMNET_PYTORCH, IMNET_TF1

    if short:
        small = dataclasses.replace(IMNET_PYTORCH, gf_dim=16, z_dim=32)
        return [_bench(small, 4096, "decoder imnet gf16 B=4096", repeat=2)]
    import jax

    out = []
    big = () if jax.devices()[0].platform == "cpu" else (262144,)
    for batch in (16384, 65536, *big):
        out.append(_bench(IMNET_PYTORCH, batch, f"decoder imnet pytorch B={batch}"))
    out.append(_bench(dataclasses.replace(IMNET_PYTORCH, precision="highest"), 65536,
                      "decoder imnet pytorch B=65536 highest"))
    out.append(_bench(IMNET_TF1, 65536, "decoder imnet tf1 B=65536"))
    return out


WORKLOADS = {"decoder imnet": decoder_workload}


if __name__ == "__main__":
    from benchmarks.__main__ import main

    sys.exit(main(["--only", "decoder"] + (["--short"] if "--short" in sys.argv else [])))
