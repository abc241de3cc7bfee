"""Training-loader throughput: can the loaders feed a GPU? (issue 18)

Builds a store of full-size records on disk — every dataset of :data:`impax.data.store.SCHEMA` at
the size ``impax prepare`` writes without ``--quick`` (100k uniform / near / surface / occupancy
samples, 20 depth renders of 224², the 32³ SDF grid, 64³ voxels, IM-NET's 16384 level-64 points),
with shape-like contents (a sphere of random radius: depth discs, signed distances, voxels) so that
gzip compresses them as it does real ones — then packs it (:mod:`impax.data.pack`) and times the
recipes' own loaders (:func:`impax.train.recipes.ldif.make_loader`,
:meth:`impax.data.voxel_source.VoxelSource.loader`) with the ``paper`` presets' batches:

* LDIF ``paper``: 24 shapes × (1024 uniform + 1024 near samples, SDF grid, 20 depth views);
* IM-AE ``paper`` (level 64): 32 shapes × (64³ voxels, one 4096-point block of the 16384).

Rates are steady state: from the first batch of an epoch to its last (120 shapes: epochs of 5
LDIF / 3 IM-AE batches). Every row reads from the files (``cache_mb=0``: the loader's memory cache
is off; the records do sit in the OS page cache, as a training set smaller than RAM would). Rows: the prepared layout on
one thread, the packed layout on one thread, the packed layout with 2 worker processes. The
per-core rate is batches/s divided by the cores used; ``feeds`` is the GPU step rate that one core's
batches sustain, and ``cores_for_100_steps_s`` how many cores keep a GPU at 100 steps/s (a 10 ms
step; an H100 step of the ``paper`` models takes ~10–40 ms).

    python -m benchmarks --only loader
"""

from __future__ import annotations

import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import Result, peak_rss_mib


def _record(s: int, rng: np.random.Generator, n: int, depth: int) -> dict[str, np.ndarray]:
    r = float(rng.uniform(0.25, 0.45))
    uni = rng.uniform(-0.7, 0.7, (n, 3)).astype(np.float32)
    sdir = rng.normal(size=(n, 3)).astype(np.float32)
    surf = (sdir / np.linalg.norm(sdir, axis=1, keepdims=True) * r).astype(np.float32)
    near = (surf + rng.normal(0, 0.015, (n, 3))).astype(np.float32)
    occ = rng.uniform(-0.5, 0.5, (n, 3)).astype(np.float32)
    yy, xx = np.mgrid[-1:1:depth * 1j, -1:1:depth * 1j]
    rr = (xx ** 2 + yy ** 2) / (r / 0.7) ** 2
    disc = np.where(rr < 1, 2.0 - np.sqrt(np.clip(1 - rr, 0, 1)) * r, 0).astype(np.float32)
    g = (np.indices((64, 64, 64)).transpose(1, 2, 3, 0) + 0.5) / 64 - 0.5
    p64 = rng.integers(0, 256, (16384, 3), dtype=np.uint8)
    p32 = rng.integers(0, 256, (4096, 3), dtype=np.uint8)

    def inside(p: np.ndarray) -> np.ndarray:
        return (np.linalg.norm(p, axis=-1) < r).astype(np.uint8)

    return {
        "uniform_points": uni, "uniform_sdf": np.linalg.norm(uni, axis=1) - r, "uniform_occupancy": inside(uni),
        "near_points": near, "near_sdf": np.linalg.norm(near, axis=1) - r, "near_occupancy": inside(near),
        "surface_points": surf, "surface_normals": surf / r,
        "occ_points": occ, "occ_values": inside(occ),
        "sdf_grid": (np.linalg.norm(g * 1.4, axis=-1)[::2, ::2, ::2] - r).astype(np.float32),
        "world2grid": np.eye(4, dtype=np.float32),
        "depth": np.repeat(disc[None], 20, 0) + np.float32(0.001 * s),
        "voxels": inside(g),
        "points_16": p32, "values_16": inside(p32 / 256.0 - 0.5)[:, None],
        "points_32": p32, "values_32": inside(p32 / 256.0 - 0.5)[:, None],
        "points_64": p64, "values_64": inside(p64 / 256.0 - 0.5)[:, None],
    }


def build_stores(root: Path, shapes: int, n: int, depth: int) -> tuple[Path, Path, float]:
    """A prepared-layout store of ``shapes`` records and its packed copy; returns the seconds packing took."""
    from impax.data.pack import pack_store
    from impax.data.store import ShapeStore

    rng = np.random.default_rng(0)
    src = ShapeStore(root / "prepared")
    for s in range(shapes):
        src.write(f"s{s:03d}", _record(s, rng, n, depth), {"class": "sphere", "split": "train", "model_id": f"s{s}"})
    src.build_index()
    t0 = time.perf_counter()
    pack_store(src, root / "packed", progress=False)
    return src.root, root / "packed", time.perf_counter() - t0


def _loader(kind: str, root: Path, batch: int, workers: int):
    if kind == "ldif":
        import dataclasses

        from impax.data.store import ShapeStore
        from impax.train.recipes.ldif import PRESETS, make_loader

        cfg = PRESETS["ldif"]["paper"]
        cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, batch_size=batch),
                                  train=dataclasses.replace(cfg.train, loader_workers=workers, cache_mb=0))
        return make_loader(ShapeStore(root), cfg, "train", 0, need_boxes=False)
    from impax.data.voxel_source import VoxelSource

    return VoxelSource(root).loader("train", 64, batch, 4096, 0, "chunk", workers=workers, cache_mb=0)


def _rate(loader, epochs: int) -> tuple[float, float]:
    """Steady-state batches per second (from each epoch's first batch to its last, so the start
    of the pipeline — the first read, the worker processes' start — is not counted) and MB per batch."""
    first = next(iter(loader.iterate(0)))
    mb = sum(a.nbytes for a in first.values()) / 1e6
    count, seconds = 0, 0.0
    for e in range(1, epochs + 1):
        t_first = None
        for _ in loader.iterate(e):
            now = time.perf_counter()
            if t_first is None:
                t_first = now
            else:
                count += 1
        seconds += now - t_first
    return count / seconds, mb


def loader_workload(short: bool) -> list[Result]:
    shapes, n, depth, epochs = (12, 12_000, 64, 2) if short else (120, 100_000, 224, 4)
    batches = {"ldif": 4 if short else 24, "imnet-ae": 4 if short else 32}
    out = []
    with tempfile.TemporaryDirectory(prefix="impax-bench-loader-") as tmp:
        prepared, packed, pack_s = build_stores(Path(tmp), shapes, n, depth)
        for kind in ("ldif", "imnet-ae"):
            for layout, root, workers in (("prepared", prepared, 0), ("packed", packed, 0), ("packed", packed, 2)):
                ld = _loader(kind, root, batches[kind], workers)
                try:
                    rate, mb = _rate(ld, epochs)
                finally:
                    ld.close()
                cores = max(1, workers)
                per_core = rate / cores
                name = f"loader {kind} paper {layout}" + (f" {workers} workers" if workers else " 1 thread")
                out.append(Result(name, rate, "batches", 1.0 / rate, peak_rss_mib=peak_rss_mib(), extra={
                    "batch": batches[kind], "MB_per_batch": round(mb, 1), "cores": cores,
                    "batches_per_s_per_core": round(per_core, 2),
                    "feeds_gpu_steps_per_s_per_core": round(per_core, 1),
                    "cores_for_100_steps_s": math.ceil(100 / per_core),
                    "pack_seconds_per_shape": round(pack_s / shapes, 3)}))
                print(f"{name}: {rate:.2f} batches/s = {per_core:.2f} per core ({mb:.1f} MB/batch)",
                      file=sys.stderr, flush=True)
    return out


WORKLOADS = {"loader": loader_workload}


if __name__ == "__main__":
    from benchmarks.__main__ import main

    sys.exit(main(["--only", "loader"] + (["--short"] if "--short" in sys.argv else [])))
