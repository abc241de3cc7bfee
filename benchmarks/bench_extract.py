"""Multi-resolution against dense mesh extraction: queries made and wall time.

Shapes (all ``[B, 3] -> [B]`` functions, jitted, fixed batch):

* ``imnet-mlp``: the cost of an IM-NET decoder (259 -> 1024 -> 1024 -> 1024 -> 512 -> 256 -> 128 -> 1,
  LReLU 0.02, leaky clip; randomly initialised, plain JAX, z fixed) whose output is added, scaled by
  1e-3, to the occupancy of an analytic chair-like union of boxes: the surface is shape-like, the
  cost per query is the real decoder's (the trained model lands later in ``impax.models``). In
  ``--short`` mode on a CPU the MLP is 8x narrower (smoke test only).
* ``imnet-ae``: the same surface through impax's own IM-AE decoder (``IMNET_PYTORCH``) and the
  real query path (``impax.inference.imnet.DecoderQuery``), the figure the issue's targets are about.
* ``ldif-like``: a SIF-like sum of 32 anisotropic Gaussians, inside where F < -0.07, box [-0.75, 0.75].
* ``analytic``: exact signed distance of a sphere-and-box union, inside below 0; ``extract 512
  memory`` extracts it at 512^3 (multi-resolution only) for the peak-RSS row (< 4 GiB target).

Dense extraction of the MLP at 256^3 (17M queries, 1e14 FLOP) is only run on an accelerator;
on a CPU its time is estimated from the measured per-query time (``dense_estimated`` in the table).

    python -m benchmarks --only extract          # through the suite
    python -m benchmarks.bench_extract [--short] # this table alone
"""

from __future__ import annotations

import sys
import time

import numpy as np

from benchmarks.common import Result, compile_count, peak_rss_mib

IMNET_SIZES = (259, 1024, 1024, 1024, 512, 256, 128, 1)
BATCH = 32768


def _mlp_params(sizes: tuple[int, ...], seed: int = 0):
    rng = np.random.default_rng(seed)
    ps = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:], strict=True):
        w = rng.normal(0, np.sqrt(2.0 / fan_in), (fan_in, fan_out)).astype(np.float32)
        ps.append((w, np.zeros(fan_out, np.float32)))
    return ps


def _chair_sdf(jnp, p):
    def box(c, h):
        q = jnp.abs(p - jnp.asarray(c)) - jnp.asarray(h)
        return jnp.linalg.norm(jnp.maximum(q, 0), axis=1) + jnp.minimum(q.max(axis=1), 0)

    parts = [box([0, 0, 0], [0.25, 0.03, 0.25]),  # seat
             box([0, 0.22, -0.22], [0.25, 0.22, 0.03])]  # back
    for sx in (-0.21, 0.21):
        for sz in (-0.21, 0.21):
            parts.append(box([sx, -0.22, sz], [0.025, 0.22, 0.025]))  # legs
    d = parts[0]
    for q in parts[1:]:
        d = jnp.minimum(d, q)
    return d


def make_imnet_mlp(sizes: tuple[int, ...] = IMNET_SIZES):
    """The decoder as a ``[B,3] -> [B]`` function; weights and z are jit arguments (no constant folding)."""
    import jax
    import jax.numpy as jnp

    params = [(jnp.asarray(w), jnp.asarray(b)) for w, b in _mlp_params(sizes)]
    z = jnp.asarray(np.random.default_rng(1).uniform(0, 1, 256).astype(np.float32))

    @jax.jit
    def decoder(params, z, p):
        h = jnp.concatenate([p, jnp.broadcast_to(z, (p.shape[0], 256))], axis=1)
        for i, (w, b) in enumerate(params):
            h = h @ w + b
            if i < len(params) - 1:
                h = jnp.where(h > 0, h, 0.02 * h)
        h = jnp.maximum(jnp.minimum(h, 0.01 * h + 0.99), 0.01 * h)[:, 0]  # IM-NET-pytorch's leaky clip
        occ = jax.nn.sigmoid(-_chair_sdf(jnp, p) / 0.004)
        return occ + 1e-3 * jnp.tanh(h)

    def fn(p):
        return decoder(params, z, p)

    flops = 2.0 * sum(a * b for a, b in zip(sizes[:-1], sizes[1:], strict=True))
    return fn, flops


def make_imnet_ae(short: bool = False):
    """impax's own IM-AE decoder (``IMNET_PYTORCH``, randomly initialised) through the real query path
    (:class:`impax.inference.imnet.DecoderQuery`: the z-part of the first layer computed once per
    shape), its output added, scaled by 1e-3, to the chair occupancy: a shape-like surface at the
    real per-query cost. ``short``: ``gf_dim=16`` (smoke test)."""
    import dataclasses

    import jax
    import jax.numpy as jnp
    from flax import nnx

    from impax.inference.imnet import DecoderQuery
    from impax.models.imnet import IMNET_PYTORCH, ImplicitDecoder

    cfg = dataclasses.replace(IMNET_PYTORCH, gf_dim=16) if short else IMNET_PYTORCH
    dec = ImplicitDecoder(cfg, rngs=nnx.Rngs(0))
    z = np.random.default_rng(1).uniform(0, 1, cfg.z_dim).astype(np.float32)
    query = DecoderQuery(dec)(z)
    surface = jax.jit(lambda p, h: jax.nn.sigmoid(-_chair_sdf(jnp, p) / 0.004) + 1e-3 * jnp.tanh(h))

    def fn(p):
        return surface(p, query(p))

    return fn, cfg


def make_ldif_like():
    import jax
    import jax.numpy as jnp

    rng = np.random.default_rng(2)
    n = 32
    c = jnp.asarray(-rng.uniform(0.3, 1.0, n).astype(np.float32))
    mu = jnp.asarray(rng.uniform(-0.35, 0.35, (n, 3)).astype(np.float32))
    sig = jnp.asarray(rng.uniform(0.04, 0.15, (n, 3)).astype(np.float32))
    rot = []
    for _ in range(n):
        q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
        rot.append(q)
    rot = jnp.asarray(np.stack(rot).astype(np.float32))

    @jax.jit
    def fn(p):
        d = p[:, None, :] - mu[None]  # [B, n, 3]
        loc = jnp.einsum("bnk,nkj->bnj", d, rot)
        g = jnp.exp(-0.5 * jnp.sum(loc ** 2 / (sig[None] ** 2 + 1e-8), axis=-1))
        return jnp.sum(c[None] * g, axis=1)

    return fn


def make_analytic():
    import jax
    import jax.numpy as jnp

    @jax.jit
    def fn(p):
        s = jnp.linalg.norm(p - jnp.array([0.1, 0.0, 0.0]), axis=1) - 0.3
        q = jnp.abs(p - jnp.array([-0.15, 0.05, 0.02])) - jnp.array([0.12, 0.2, 0.15])
        b = jnp.linalg.norm(jnp.maximum(q, 0), axis=1) + jnp.minimum(q.max(axis=1), 0)
        return jnp.minimum(s, b)

    return fn


def _run(name: str, fn, res: int, kw: dict, run_dense: bool, flops_per_query: float | None) -> list[Result]:
    from impax.inference.extract import extract_dense, extract_mesh, warm_up

    warm_up(fn, kw["batch_size"])  # compiles fn for every batch shape the extractor sends
    extract_mesh(fn, min(res, 64), **kw)
    c0 = compile_count()
    t0 = time.perf_counter()
    multi = extract_mesh(fn, res, **kw)
    t_multi = time.perf_counter() - t0
    compiles = compile_count() - c0
    dense_q = (res + 1) ** 3
    extra = {"queries": multi.queries, "dense_queries": dense_q,
             "query_fraction": round(multi.queries / dense_q, 4), "faces": len(multi.mesh.faces),
             "fn_seconds": round(multi.eval_seconds, 3)}
    if run_dense:
        dkw = {k: v for k, v in kw.items() if k in ("level", "half", "inside", "batch_size")}
        t0 = time.perf_counter()
        dense = extract_dense(fn, res, **dkw)
        t_dense = time.perf_counter() - t0
        extra.update(dense_seconds=round(t_dense, 3), dense_faces=len(dense.mesh.faces))
    else:
        t_dense = multi.eval_seconds / max(multi.padded_queries, 1) * (-(-dense_q // BATCH) * BATCH)
        extra.update(dense_seconds_estimated=round(t_dense, 3))
    extra["speedup"] = round(t_dense / t_multi, 2)
    flops = None if flops_per_query is None else flops_per_query * multi.padded_queries
    return [Result(f"extract {name} {res}^3 multi-res", multi.queries / t_multi, "queries", t_multi, flops,
                   compiles, peak_rss_mib(), extra)]


def _workload(kind: str):
    def run(short: bool) -> list[Result]:
        import jax

        accel = jax.devices()[0].platform != "cpu"
        out = []
        resolutions = (64, 128) if short else (128, 256)
        if kind == "imnet-ae":
            fn, cfg = make_imnet_ae(short and not accel)
            kw = dict(level=0.5, inside="above", half=0.5, coarse=32, batch_size=BATCH)
            for res in resolutions:
                out += _run(f"imnet-ae gf{cfg.gf_dim}", fn, res, kw, run_dense=accel, flops_per_query=None)
        elif kind == "imnet":
            # short (CI smoke) mode on a CPU: an 8x narrower MLP, dense time estimated
            small = short and not accel
            fn, fl = make_imnet_mlp(IMNET_SIZES if not small else (259, 128, 128, 128, 64, 32, 16, 1))
            kw = dict(level=0.5, inside="above", half=0.5, coarse=32, batch_size=BATCH)
            # full mode: 128^3 only (a FLOP/s reference for the plain MLP; ``extract imnet-ae`` has 256^3)
            for res in resolutions[:1] if not short else resolutions:
                out += _run("imnet-mlp" + ("/8" if small else ""), fn, res, kw, run_dense=accel,
                            flops_per_query=fl)
        elif kind == "ldif":
            fn = make_ldif_like()
            kw = dict(level=-0.07, inside="below", half=0.75, coarse=32, batch_size=BATCH)
            for res in resolutions:
                out += _run("ldif-like", fn, res, kw, run_dense=True, flops_per_query=None)
        elif kind == "analytic":
            fn = make_analytic()
            kw = dict(level=0.0, inside="below", half=0.5, coarse=32, batch_size=BATCH)
            for res in resolutions:
                out += _run("analytic", fn, res, kw, run_dense=True, flops_per_query=None)
        else:  # memory: multi-resolution only, so the row's RSS (own process in the suite) is its peak
            fn = make_analytic()
            kw = dict(level=0.0, inside="below", half=0.5, coarse=32, batch_size=BATCH)
            res = 128 if short else 512
            out += _run("analytic memory", fn, res, kw, run_dense=False, flops_per_query=None)
        return out

    return run


WORKLOADS = {
    "extract imnet-ae": _workload("imnet-ae"),
    "extract imnet-mlp": _workload("imnet"),
    "extract ldif-like": _workload("ldif"),
    "extract analytic": _workload("analytic"),
    "extract 512 memory": _workload("memory"),
}


def main(argv: list[str] | None = None) -> int:
    short = "--short" in (argv if argv is not None else sys.argv[1:])
    import jax

    print(f"device: {jax.devices()[0].device_kind}")
    print(f"{'workload':34s} {'queries':>10s} {'dense':>10s} {'frac':>7s} {'multi s':>8s} {'dense s':>9s} "
          f"{'speedup':>7s} {'compiles':>8s} {'RSS MiB':>8s}")
    for name, fn in WORKLOADS.items():
        for r in fn(short):
            e = r.extra
            ds = e.get("dense_seconds", e.get("dense_seconds_estimated"))
            est = "" if "dense_seconds" in e else "*"
            print(f"{r.name:34s} {e['queries']:>10d} {e['dense_queries']:>10d} {e['query_fraction']:>7.3f} "
                  f"{r.seconds:>8.2f} {ds:>8.2f}{est:1s} {e['speedup']:>7.1f} {r.steady_compiles:>8d} "
                  f"{r.peak_rss_mib:>8.0f}", flush=True)
    print("* dense time estimated from the measured per-query time (not run on this device)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
