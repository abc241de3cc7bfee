"""A store laid out for training: ``impax pack SRC OUT`` (:func:`pack_store`).

A prepared store (:mod:`impax.data.store`) is made to be exact and small: full-size depth renders,
point sets in the order they were sampled, gzip. Training reads a few random rows of each set and
the depth at the model's size many thousand times, so a packed copy trades disk for reads:

* **Point sets pre-shuffled.** Each set of :data:`SHUFFLED_GROUPS` (all datasets of a set with one
  permutation, seeded by the pack seed and the shape id) is stored in a random order, so ``k``
  random rows are ``k`` consecutive rows from a random start — one contiguous read instead of a
  gather across the file (:class:`impax.data.loader.StoreLoader` reads them so, ``"window"``).
  Every window is a uniformly random subset; windows of one shape overlap across steps (two draws
  share rows more often than two independent subsets would), which at 100k rows and 1024 per step
  is immaterial. IM-NET's point sets keep their order (IM-NET-pytorch reads one aligned block).
* **Depth at the model's size in float16.** The 224² renders are resized once to ``depth_size``
  (137², what the encoders see; :func:`resize_bilinear` is the model's own resize,
  ``jax.image.resize(..., "linear", antialias=False)``) and rounded to float16 (depth ≈ 1–3 units:
  a rounding error below 2e-3, far under the renderer's own): 0.75 MB instead of 4 MB a shape.
* **No compression** (default; ``"lzf"`` is the fast-decoding alternative): a row range is one
  ``pread``. Measured on 2 cores (``python -m benchmarks --only loader``): about 15x more LDIF
  batches per second than the prepared layout.

Everything else is copied as it is (attributes, splits, voxels, grids), ``index.json`` is rebuilt,
and ``OUT/pack.json`` records what was done (the loader reads it: :meth:`ShapeStore.layout`).
A packed store is for training: evaluate against the prepared store (full-size depth, sampled
order). Packing is resumable (records already in OUT are kept) and deterministic.
"""

from __future__ import annotations

import json
import sys
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from impax.data.safety import atomic_write_text
from impax.data.store import COMPRESSIONS, PACK_JSON, RecordError, ShapeStore

PACK_FORMAT = "impax-pack/1"

#: Point sets stored in a random order: set → its aligned datasets (the loader's point groups).
SHUFFLED_GROUPS: dict[str, tuple[str, ...]] = {
    "uniform": ("uniform_points", "uniform_sdf", "uniform_occupancy"),
    "near": ("near_points", "near_sdf", "near_occupancy"),
    "surface": ("surface_points", "surface_normals"),
    "occ": ("occ_points", "occ_values"),
}


def _axis_weights(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bilinear taps of one axis with half-pixel centres: output ``i`` samples input position
    ``x = (i + 0.5) n_in / n_out - 0.5``, between ``floor(x)`` and ``floor(x) + 1`` (clamped)."""
    x = (np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5
    x = np.clip(x, 0.0, n_in - 1)
    lo = np.floor(x).astype(np.int64)
    hi = np.minimum(lo + 1, n_in - 1)
    return lo, hi, x - lo


def resize_bilinear(images: np.ndarray, size: int) -> np.ndarray:
    """``[..., H, W]`` → ``[..., size, size]``, bilinear without anti-aliasing (float32), as
    ``jax.image.resize(images, ..., method="linear", antialias=False)``: the encoder's resize."""
    a = np.asarray(images, np.float32)
    h, w = a.shape[-2:]
    if (h, w) == (size, size):
        return a
    lo, hi, t = _axis_weights(h, size)
    a = a[..., lo, :] * (1 - t)[:, None].astype(np.float32) + a[..., hi, :] * t[:, None].astype(np.float32)
    lo, hi, t = _axis_weights(w, size)
    return (a[..., lo] * (1 - t).astype(np.float32) + a[..., hi] * t.astype(np.float32)).astype(np.float32)


def shape_permutation(shape_id: str, n: int, seed: int) -> np.ndarray:
    """The row order of a point set of ``n`` rows of shape ``shape_id`` (deterministic)."""
    return np.random.default_rng([int(seed), zlib.crc32(shape_id.encode())]).permutation(n)


def pack_arrays(shape_id: str, arrays: dict[str, np.ndarray], seed: int = 0,
                depth_size: int | None = 137) -> dict[str, np.ndarray]:
    """One record's datasets in the training layout (see the module doc)."""
    out = dict(arrays)
    for group, names in SHUFFLED_GROUPS.items():
        present = [n for n in names if n in out]
        if not present:
            continue
        n = len(out[present[0]])
        if any(len(out[k]) != n for k in present):
            raise ValueError(f"{shape_id}: the datasets of the {group} samples differ in length")
        perm = shape_permutation(f"{shape_id}/{group}", n, seed)
        for k in present:
            out[k] = np.asarray(out[k])[perm]
    if "depth" in out and depth_size:
        out["depth"] = resize_bilinear(out["depth"], int(depth_size)).astype(np.float16)
    return out


def pack_store(src: str | Path | ShapeStore, out: str | Path, *, seed: int = 0, depth_size: int | None = 137,
               compression: str | None = None, progress: bool = True) -> dict[str, Any]:
    """Write the training layout of every record of ``src`` to ``out`` (see the module doc);
    returns the ``pack.json`` content. Records already in ``out`` are kept (resume)."""
    src = src if isinstance(src, ShapeStore) else ShapeStore(src)
    if compression not in COMPRESSIONS:
        raise ValueError(f"compression must be one of {sorted(map(str, COMPRESSIONS))}, got {compression!r}")
    if src.layout():
        raise ValueError(f"{src.root} is packed already ({PACK_JSON}); pack the prepared store it came from")
    ids = src.ids()
    if not ids:
        raise ValueError(f"{src.root}: no records to pack (no index.json entries)")
    dst = ShapeStore(out)
    if Path(out).resolve() == src.root.resolve():
        raise ValueError("OUT must differ from SRC")
    info = {"format": PACK_FORMAT, "source": str(src.root), "seed": int(seed),
            "shuffled_groups": sorted(SHUFFLED_GROUPS), "depth_size": depth_size,
            "depth_dtype": "float16" if depth_size else None, "compression": compression}
    old = dst.layout() if (dst.root / PACK_JSON).is_file() else None
    if old is not None and {k: old.get(k) for k in info if k != "source"} != {k: info[k] for k in info if k != "source"}:
        raise ValueError(f"{dst.root} was packed with other settings ({PACK_JSON}); use an empty folder")
    dst.shapes_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(dst.root / PACK_JSON, json.dumps(info, indent=1, sort_keys=True) + "\n")
    for name in ("prepare.json",):
        if (src.root / name).is_file():
            atomic_write_text(dst.root / name, (src.root / name).read_text())
    done, skipped = 0, []
    for k, sid in enumerate(ids):
        if dst.has(sid):
            continue
        try:
            with src.open(sid) as f:
                arrays = {n: f[n][()] for n in f.keys()}
                attrs = dict(f.attrs.items())  # as stored (JSON strings stay the same strings)
        except (OSError, RuntimeError, KeyError) as e:
            err = RecordError(src.path(sid), f"unreadable record, not packed ({' '.join(str(e).split())[:120]})")
            print(f"\nwarning: {err}", file=sys.stderr)
            skipped.append(sid)
            continue
        attrs.pop("shape_id", None)
        dst.write(sid, pack_arrays(sid, arrays, seed, depth_size), attrs, compression)
        done += 1
        if progress:
            print(f"\rpack: {k + 1}/{len(ids)}", end="", file=sys.stderr, flush=True)
    if progress and done:
        print(file=sys.stderr)
    dst.build_index()
    return {**info, "packed": done, "skipped": skipped}
