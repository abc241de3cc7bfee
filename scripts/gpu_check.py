"""The Python half of ``scripts/gpu-check.sh``: encoder-path equivalence at two precisions and the
``paper`` training-step rates of IM-AE and LDIF, as one table.

    python scripts/gpu_check.py [--cpu-smoke] [--steps N] [--warmup N] [--store PREPARED] [--json OUT]

1. **Encoder paths.** The IM-NET encoder (``paper`` widths) on random voxels by both paths of
   ``fast_encoder`` (space-to-depth and ``nnx.Conv``), at JAX's default precision (TF32 on recent
   NVIDIA GPUs) and at ``highest`` (exact float32): the max abs difference of the codes for each.
   At ``highest`` it must be <= 1e-5 (as the CPU tests check); at the default it shows what TF32
   does.
2. **Training steps.** The recipes' own model, loss and Adam (``impax.train.make_optimizer``,
   ``impax.train.loss_step``) at the ``paper`` preset's batch — IM-AE's 64³ stage (32 shapes ×
   4096 points) with ``fast_encoder="auto"`` and, for comparison, forced space-to-depth; LDIF's
   24 shapes × (1024 uniform + 1024 near) samples, 20 depth views at 224², 10k surface points —
   jitted with donated state, ``--warmup`` steps then ``--steps`` timed. Synthetic batches live on
   the device (the step alone); with ``--store`` the same steps are fed by the real loaders
   (``impax prepare`` output) through the trainer's prefetcher (loader + transfer + step).
3. **Device utilisation.** ``nvidia-smi`` sampled every 200 ms during each timed row (when
   present), and the device's peak memory where the backend reports it.

``--cpu-smoke``: tiny models and batches (the ``quick`` presets, 2 shapes) so every code path runs
on a CPU in seconds; the tests run this. Not a measurement.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np


# ---------------------------------------------------------------------------------------------- helpers


class UtilSampler:
    """``nvidia-smi`` utilisation / memory samples (GPU 0) while the context is open; no-op without it."""

    def __init__(self) -> None:
        self.samples: list[tuple[float, float]] = []
        self._proc: subprocess.Popen | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> UtilSampler:
        exe = shutil.which("nvidia-smi")
        if exe:
            try:
                self._proc = subprocess.Popen(
                    [exe, "--query-gpu=utilization.gpu,memory.used", "--format=csv,noheader,nounits",
                     "-i", "0", "-lms", "200"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            except OSError:
                self._proc = None
        if self._proc is not None:
            self._thread = threading.Thread(target=self._read, daemon=True)
            self._thread.start()
        return self

    def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for line in self._proc.stdout:
            try:
                util, mem = (float(x) for x in line.strip().split(","))
            except ValueError:
                continue
            self.samples.append((util, mem))

    def __exit__(self, *exc: Any) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def mean_util(self) -> float | None:
        return float(np.mean([u for u, _ in self.samples])) if self.samples else None

    def max_mem_mib(self) -> float | None:
        return float(max(m for _, m in self.samples)) if self.samples else None


def peak_device_mib() -> float | None:
    import jax

    try:
        stats = jax.devices()[0].memory_stats()
    except Exception:  # noqa: BLE001 - backends without statistics
        return None
    if not stats or "peak_bytes_in_use" not in stats:
        return None
    return stats["peak_bytes_in_use"] / 2 ** 20


def compiled_step(build: Any, train_cfg: Any, loss_fn: Any):
    """``(step, fresh_state)``: one jitted training step of the trainer's kind (``loss_step`` + Adam
    of ``train_cfg``) over the state of ``(model, optimizer)`` (donated), and a function giving a new
    state of ``build()`` (a fresh model; the same compiled step serves every such state)."""
    import jax
    from flax import nnx

    from impax.train import loss_step, make_optimizer

    def fresh_state():
        model = build()
        return nnx.split((model, make_optimizer(model, train_cfg)))

    graphdef, _ = fresh_state()
    step_fn = loss_step(loss_fn, nnx.Param)

    def pure(state, batch, key):
        m, o = nnx.merge(graphdef, state)
        loss, _ = step_fn(m, o, batch, key)
        return nnx.state((m, o)), loss

    return jax.jit(pure, donate_argnums=0), lambda: fresh_state()[1]


def time_steps(name: str, step: Any, state: Any, batches: Any, warmup: int, steps: int, shapes: int,
               samples: int) -> dict[str, Any]:
    """Run ``warmup`` then ``steps`` steps on ``batches`` (an iterator of device batches) and time the latter."""
    import jax

    key = jax.random.key(0)
    t0 = time.perf_counter()
    loss = None
    for _ in range(warmup):
        state, loss = step(state, next(batches), key)
    if loss is not None:
        loss.block_until_ready()
    compile_s = time.perf_counter() - t0
    with UtilSampler() as util:
        t1 = time.perf_counter()
        for _ in range(steps):
            state, loss = step(state, next(batches), key)
        loss.block_until_ready()
        sec = time.perf_counter() - t1
    row = {"name": name, "shapes": shapes, "samples_per_shape": samples, "steps": steps,
           "steps_per_s": steps / sec, "ms_per_step": 1000.0 * sec / steps, "warmup_s": compile_s,
           "gpu_util_pct": util.mean_util(), "gpu_mem_mib": util.max_mem_mib(),
           "peak_device_mib": peak_device_mib(), "loss": float(loss)}
    if not np.isfinite(row["loss"]):
        row["note"] = "non-finite loss"
    return row


def repeat_batch(batch: Any):
    while True:
        yield batch


def loader_batches(loader: Any, prefetch: int = 2):
    """Device batches from a loader through the trainer's prefetcher (epoch after epoch)."""
    from impax.train import DataParallel, Prefetcher

    dp = DataParallel(1)
    epoch = 0
    while True:
        with Prefetcher(loader.iterate(epoch), dp.put_batch, prefetch) as it:
            yield from it
        epoch += 1


# ---------------------------------------------------------------------------------------------- checks


def encoder_check(smoke: bool) -> list[dict[str, Any]]:
    """Max abs difference of the IM-NET codes by the two encoder paths, at the default and at
    ``highest`` matmul precision."""
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from impax.models.imnet import IMNET_PYTORCH, IMNetConfig, VoxelEncoder
    from impax.models.imnet_s2d import encode

    cfg = IMNetConfig(ef_dim=4, z_dim=16) if smoke else IMNET_PYTORCH
    n = 2 if smoke else 8
    enc = VoxelEncoder(cfg, rngs=nnx.Rngs(0))
    vox = jnp.asarray(np.random.default_rng(0).random((n, 64, 64, 64)) > 0.6, jnp.float32)
    out = []
    for precision in (None, "highest"):
        ctx = jax.default_matmul_precision(precision) if precision else contextlib.nullcontext()
        with ctx:
            codes = {p: np.asarray(nnx.jit(lambda e, v, p=p: encode(e, v, p))(enc, vox)) for p in ("s2d", "conv")}
        diff = float(np.abs(codes["s2d"] - codes["conv"]).max())
        out.append({"precision": precision or "default", "max_abs_diff": diff, "shapes": n,
                    "ok": diff <= 1e-5 if precision == "highest" else None})
    return out


def loader_workers() -> int:
    """Reading processes of the loader rows: ``IMPAX_GPU_CHECK_WORKERS`` or min(4, CPUs)."""
    import os

    return int(os.environ.get("IMPAX_GPU_CHECK_WORKERS", min(4, os.cpu_count() or 1)))


def store_layout(store: Any) -> str:
    """``"packed, N workers"`` / ``"prepared, N workers"`` for a row's name: a prepared (gzip'd) store
    reads far slower than a packed one (``impax pack``)."""
    return f"{'packed' if store.layout() else 'prepared: impax pack it'}, {loader_workers()} workers"


def imnet_rows(smoke: bool, warmup: int, steps: int, store: str | None) -> list[dict[str, Any]]:
    import jax
    import jax.numpy as jnp

    from impax.train.recipes import imnet as R

    cfg = R.PRESETS["quick" if smoke else "paper"]
    last = cfg.stages[-1]
    shapes, points = (2, 256) if smoke else (last.batch_size, last.points)
    label = "imnet-ae quick (smoke)" if smoke else f"imnet-ae paper 64^3 {shapes}x{points}"
    rng = np.random.default_rng(0)
    batch = jax.device_put({"voxels": jnp.asarray(rng.random((shapes, 64, 64, 64, 1)) > 0.7, jnp.uint8),
                            "points": jnp.asarray(rng.random((shapes, points, 3)) - 0.5, jnp.float32),
                            "values": jnp.asarray(rng.random((shapes, points, 1)) > 0.5, jnp.float32)})
    rows = []
    # "auto" and, for comparison, the other path (on a full-size CPU run the conv path's gradient
    # takes minutes per step: left out there)
    other = "conv" if jax.default_backend() == "cpu" else "s2d"
    paths = [("auto", steps)] + ([(other, max(1, steps // 4))] if smoke or other == "s2d" else [])
    compiled = {}
    for path, n in paths:
        compiled[path] = compiled_step(lambda: R.build_model(cfg), cfg.train,
                                       R.make_loss(path, cfg.grid_fraction, cfg.snap_points))
        step, fresh = compiled[path]
        rows.append(time_steps(f"{label} fast_encoder={path} synthetic", step, fresh(), repeat_batch(batch),
                               warmup, n, shapes, points))
    if store:
        try:
            from impax.data.voxel_source import VoxelSource

            src = VoxelSource(store)
            loader = src.loader(cfg.train_split, last.level, shapes, points, 0, cfg.point_mode,
                                workers=loader_workers(), cache_mb=0)
            step, fresh = compiled["auto"]
            rows.append(time_steps(f"{label} fast_encoder=auto loader ({store_layout(src.store)})", step, fresh(),
                                   loader_batches(loader), warmup, steps, shapes, points))
            loader.close()
        except Exception as e:  # noqa: BLE001 - reported in the table, the other rows still count
            rows.append({"name": f"{label} loader", "note": f"{type(e).__name__}: {e}"})
    return rows


def ldif_rows(smoke: bool, warmup: int, steps: int, store: str | None) -> list[dict[str, Any]]:
    import jax

    from impax.models.ldif_model import set_training
    from impax.train.recipes import ldif as L

    cfg = L.PRESETS["ldif"]["quick" if smoke else "paper"]
    if smoke:
        cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, batch_size=2))
    shapes = cfg.model.batch_size
    label = "ldif quick (smoke)" if smoke else f"ldif paper B={shapes} spc={cfg.model.sample_count}"

    def build():
        model = L.build_model(cfg)
        set_training(model, True)
        return model

    step, fresh = compiled_step(build, cfg.train, L.make_loss(cfg.model, cfg.decoder_topk))
    batch = jax.device_put(L.synthetic_batch(cfg, shapes, 64 if smoke else 224, np.random.default_rng(0)))
    rows = [time_steps(f"{label} synthetic", step, fresh(), repeat_batch(batch), warmup, steps, shapes,
                       2 * cfg.model.sample_count)]
    if store:
        try:
            from impax.data.store import ShapeStore

            st = ShapeStore(store)
            lcfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, loader_workers=loader_workers(),
                                                                      cache_mb=0))
            loader = L.make_loader(st, lcfg, cfg.train_split, 0, "ec" in L.active_loss_terms(cfg.model))
            rows.append(time_steps(f"{label} loader ({store_layout(st)})", step, fresh(), loader_batches(loader),
                                   warmup, steps, shapes, 2 * cfg.model.sample_count))
            loader.close()
        except Exception as e:  # noqa: BLE001 - reported in the table
            rows.append({"name": f"{label} loader", "note": f"{type(e).__name__}: {e}"})
    return rows


# ---------------------------------------------------------------------------------------------- output


def _fmt(v: Any, spec: str) -> str:
    return "n/a" if v is None else format(v, spec)


def table(rows: list[dict[str, Any]]) -> str:
    head = ["workload", "steps/s", "ms/step", "shapes/s", "GPU util %", "GPU mem MiB", "peak dev MiB", "warm-up s"]
    lines = []
    for r in rows:
        if "steps_per_s" not in r:
            lines.append([r["name"], "-", "-", "-", "-", "-", "-", "-", r.get("note", "")])
            continue
        lines.append([r["name"], _fmt(r["steps_per_s"], ".2f"), _fmt(r["ms_per_step"], ".1f"),
                      _fmt(r["steps_per_s"] * r["shapes"], ".1f"), _fmt(r["gpu_util_pct"], ".0f"),
                      _fmt(r["gpu_mem_mib"], ".0f"), _fmt(r["peak_device_mib"], ".0f"), _fmt(r["warmup_s"], ".1f"),
                      r.get("note", "")])
    widths = [max(len(str(x)) for x in col) for col in zip(head, *(r[:-1] for r in lines))]

    def fmt(cells: list[Any], note: str = "") -> str:
        text = " | ".join(str(c).ljust(w) for c, w in zip(cells, widths))
        return (text + ("  " + note if note else "")).rstrip()

    return "\n".join([fmt(head), "-+-".join("-" * w for w in widths)] + [fmt(r[:-1], r[-1]) for r in lines])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cpu-smoke", action="store_true", help="tiny sizes on the CPU: runs every path, measures nothing")
    ap.add_argument("--steps", type=int, default=None, help="timed steps per row (default 20; smoke 2)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed steps first, compilation included (default 3; smoke 1)")
    ap.add_argument("--store", default=None, help="a prepared store (impax prepare): also time the steps fed by the loaders")
    ap.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = ap.parse_args(argv)
    steps = args.steps or (2 if args.cpu_smoke else 20)
    warmup = args.warmup if args.warmup is not None else (1 if args.cpu_smoke else 3)

    import jax

    print(f"backend {jax.default_backend()}, {jax.device_count()} device(s): {jax.devices()[0].device_kind}",
          flush=True)
    print("== encoder paths (IM-NET encoder codes, space-to-depth vs nnx.Conv)", flush=True)
    enc = encoder_check(args.cpu_smoke)
    for r in enc:
        verdict = "" if r["ok"] is None else ("  ok (<= 1e-5)" if r["ok"] else "  FAIL (> 1e-5)")
        print(f"precision {r['precision']:>8}: max |s2d - conv| = {r['max_abs_diff']:.3g}{verdict}", flush=True)
    print("== training steps" + (" (smoke: tiny sizes, not a measurement)" if args.cpu_smoke else ""), flush=True)
    rows = imnet_rows(args.cpu_smoke, warmup, steps, args.store)
    rows += ldif_rows(args.cpu_smoke, warmup, steps, args.store)
    print(table(rows), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"encoder": enc, "steps": rows}, indent=2) + "\n")
    return 0 if all(r["ok"] is not False for r in enc) else 1


if __name__ == "__main__":
    sys.exit(main())
