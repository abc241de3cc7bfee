"""IM-NET inference: reconstruct (voxels, meshes; images via IM-SVR), interpolate, sample (IM-GAN).

Follows IM-NET-pytorch's ``test_mesh`` / ``test_z`` flow (encode 64³ voxels, decode, mesh at 0.5),
with impax's multi-resolution extractor (:func:`impax.inference.extract.extract_mesh`, the idea of
IM-NET's ``z2voxel``) instead of the original's Python loops, and the decoder's per-shape fast path
(:meth:`~impax.models.imnet.ImplicitDecoder.precompute` once per shape, then
:meth:`~impax.models.imnet.ImplicitDecoder.apply` per point batch; compiled once per run).

Frames: the model lives in the IM-NET frame (bounding box centred, diagonal 1). A mesh input is
normalised with :func:`impax.geometry.normalize.imnet_transform`, voxelised at 64³ cell centres like
``impax prepare`` does, and the result is mapped back to the input's original frame with the inverse
transform. Shapes of a prepared store are mapped back with the record's stored ``imnet_transform``;
shapes of an IM-NET HDF5 file (no transform stored) and interpolations stay in the IM-NET frame.

Every function returns one row per output, ``{"id", "path", "ok", "queries", "seconds", ...}``;
a failing input gives ``ok: False`` and a one-line ``reason``, never an exception mid-batch.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from impax.conventions import IMNET_BOX_HALF, IMNET_ISO_LEVEL, Transform
from impax.inference.extract import safe_name, save_row
from impax.inference.imnet_decode import DecoderQuery, extract, load_ae

def mesh_to_voxels(path: str | Path) -> tuple[np.ndarray, Transform]:
    """A mesh file → (uint8 64³ cell-centre voxels in the IM-NET frame, its original → IM-NET
    transform), as ``impax prepare`` voxelises training shapes."""
    from impax.geometry.mesh_io import MeshError, load_mesh
    from impax.geometry.normalize import imnet_transform, transform_mesh
    from impax.geometry.voxels import occupancy_grid

    mesh = load_mesh(path)
    t = imnet_transform(mesh)
    vox = occupancy_grid(transform_mesh(mesh, t), 64, IMNET_BOX_HALF)
    if not vox.any():
        raise MeshError(path, "encloses no volume: no voxel of the 64^3 grid is inside")
    return vox.astype(np.uint8), t


# ----------------------------------------------------------------------------------------------
# voxel sources


def _voxel_items(inputs: Sequence[str | Path]) -> list[dict[str, Any]]:
    """Parse ``inputs``: a store folder or IM-NET .hdf5 file starts a source; ``split=NAME`` keeps one
    split of the current store; any other word is a shape id (store id or HDF5 name) of it.
    A source without ids means all of its shapes."""
    from impax.data.store import data_kind
    from impax.inference.families import group_sources

    sources = group_sources(inputs, lambda p: data_kind(p) is not None, "not a prepared store or IM-NET .hdf5")
    items = []
    for src in sources:
        p = src["path"]
        if "error" in src:
            items.append({"id": p.stem, "source": str(p), "error": src["error"]})
            continue
        if p.is_dir():
            from impax.data.store import ShapeStore

            store = ShapeStore(p)
            known = store.ids(src["split"])
            for sid in src["ids"] or known:
                if sid not in known:
                    items.append({"id": sid, "source": str(p), "error": f"no shape {sid!r} in {p}"})
                    continue
                items.append({"id": sid, "source": str(p), "store": store})
        else:
            from impax.data.imnet_hdf5 import IMNetHdf5

            with IMNetHdf5(p) as f:
                names = list(f.names)
            index = {n: i for i, n in enumerate(names)}
            for name in src["ids"] or names:
                if name not in index:
                    items.append({"id": name, "source": str(p), "error": f"no shape {name!r} in {p}"})
                    continue
                items.append({"id": name, "source": str(p), "hdf5": p, "index": index[name]})
    return items


def _load_item(item: dict[str, Any]) -> tuple[np.ndarray, Transform | None]:
    if "store" in item:
        store = item["store"]
        vox = store.read(item["id"], "voxels").reshape(64, 64, 64)
        t = store.attrs(item["id"]).get("imnet_transform")
        if isinstance(t, str):
            t = json.loads(t)
        if isinstance(t, dict):
            t = Transform.from_dict(t)
        return vox, (t if isinstance(t, Transform) else None)
    from impax.data.imnet_hdf5 import IMNetHdf5

    with IMNetHdf5(item["hdf5"]) as f:
        return np.asarray(f.voxels(item["index"])).reshape(64, 64, 64), None


# ----------------------------------------------------------------------------------------------
# public API


def _pooled(item: dict[str, Any]) -> bool:
    """Whether an input's 64³ voxels are max-pooled from a finer grid (IM-NET HDF5 files, stores
    prepared with ``voxels_256``) rather than cell-centre occupancy (stores without it, meshes)."""
    if "store" in item:
        return bool(item["store"].prepare_config().get("voxels_256", False))
    return "hdf5" in item


def reconstruct(run: str | Path, kind: str, inputs: Sequence[str | Path], out: str | Path,
                resolution: int = 128, mesh_format: str = "ply", refine: int = 0, **kw: Any) -> list[dict[str, Any]]:
    """Meshes of ``inputs`` through the run's auto-encoder, written to ``out/<id>.<mesh_format>``.

    ``kind``: ``"voxels"`` (see :func:`_voxel_items` for the input syntax), ``"mesh"`` (mesh files)
    or ``"image"`` (delegated to :func:`impax.inference.imnet_svr.reconstruct_images`).
    ``refine``: Adam steps of test-time optimisation of each code against its input voxels
    (:func:`impax.inference.refine.refine_code`; 0: the encoder's code as it is).
    """
    if kind == "image":
        from impax.inference.imnet_svr import reconstruct_images

        return reconstruct_images(run, inputs, out, resolution=resolution, mesh_format=mesh_format, **kw)
    if kind not in ("voxels", "mesh"):
        return [{"id": str(p), "path": None, "ok": False,
                 "reason": f"IM-NET runs reconstruct from voxels, mesh or image, not {kind!r}"} for p in inputs]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model, _ = load_ae(run)
    query = DecoderQuery(model.generator)
    from impax.models.imnet_codes import encode_voxels

    if kind == "mesh":
        items = [{"id": Path(p).stem, "source": str(p), "mesh": Path(p)} for p in inputs]
    else:
        items = _voxel_items(inputs)
    rows = []
    for item in items:
        t0 = time.perf_counter()
        row: dict[str, Any] = {"id": item["id"], "input": item["source"], "path": None, "ok": False}
        try:
            if "error" in item:
                raise ValueError(item["error"])
            if kind == "mesh":
                vox, transform = mesh_to_voxels(item["mesh"])
            else:
                vox, transform = _load_item(item)
            z = encode_voxels(model, vox[None])[0]
            if refine:
                from impax.inference.refine import RefineConfig, refine_code

                t1 = time.perf_counter()
                z, stats = refine_code(model.generator, z, vox, RefineConfig(steps=int(refine)),
                                       pooled=_pooled(item))
                row["refine"] = {"steps": int(refine), **stats, "seconds": round(time.perf_counter() - t1, 3)}
            res = extract(query, z, resolution, transform)
            save_row(row, res, out / f"{safe_name(item['id'])}.{mesh_format}",
                     "original" if transform is not None else "imnet")
        except Exception as e:  # one bad input must not stop the batch
            row["reason"] = f"{type(e).__name__}: {e}".splitlines()[0]
        row["seconds"] = round(time.perf_counter() - t0, 3)
        rows.append(row)
    return rows


def _code_of(model: Any, spec: str, data: str | None) -> tuple[np.ndarray, str]:
    """Latent code of a mesh file or of a shape id of the run's data."""
    from impax.models.imnet_codes import encode_voxels

    p = Path(spec)
    if p.is_file() and p.suffix.lower() not in (".hdf5", ".h5"):
        vox, _ = mesh_to_voxels(p)
        return encode_voxels(model, vox[None])[0], p.stem
    if data is None:
        raise ValueError(f"{spec!r} is not a mesh file and the run names no data")
    items = _voxel_items([data, spec])
    if not items or "error" in items[0]:
        raise ValueError(items[0]["error"] if items else f"no shape {spec!r} in {data}")
    vox, _ = _load_item(items[0])
    return encode_voxels(model, vox[None])[0], spec


def interpolate(run: str | Path, a: str, b: str, steps: int, out: str | Path, resolution: int = 128,
                mesh_format: str = "ply", **kw: Any) -> list[dict[str, Any]]:
    """Meshes ``out/step_000 .. step_{steps-1}`` decoded from ``(1 - t) z_a + t z_b``, ``t`` evenly
    from 0 to 1 (IM-NET's latent interpolation figures), in the IM-NET frame. ``a``/``b``: mesh
    files or shape ids of the run's data."""
    from impax.inference.families import read_run

    if steps < 1:
        raise ValueError("steps must be >= 1")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model, _ = load_ae(run)
    data = read_run(run).get("data")
    za, name_a = _code_of(model, a, data)
    zb, name_b = _code_of(model, b, data)
    query = DecoderQuery(model.generator)
    rows = []
    ts = np.linspace(0.0, 1.0, steps) if steps > 1 else np.zeros(1)
    for k, t in enumerate(ts):
        t0 = time.perf_counter()
        row: dict[str, Any] = {"id": f"step_{k:03d}", "t": float(t), "a": name_a, "b": name_b, "path": None,
                               "ok": False}
        try:
            res = extract(query, ((1.0 - t) * za + t * zb).astype(np.float32), resolution)
            path = out / f"step_{k:03d}.{mesh_format}"
            res.save(path)
            row.update(path=str(path), ok=not res.empty, queries=res.queries, faces=int(len(res.mesh.faces)),
                       frame="imnet")
            if res.empty:
                row["reason"] = res.message
        except Exception as e:
            row["reason"] = f"{type(e).__name__}: {e}".splitlines()[0]
        row["seconds"] = round(time.perf_counter() - t0, 3)
        rows.append(row)
    return rows


def sample(run: str | Path, count: int, out: str | Path, **kw: Any) -> list[dict[str, Any]]:
    """New shapes from an IM-GAN run (delegated to :func:`impax.inference.imnet_gan.sample`)."""
    from impax.inference.imnet_gan import sample as gan_sample

    return gan_sample(run, count, out, **kw)
