"""SIF/LDIF inference: reconstruct shapes with a trained run, mesh SIF/LDIF shapes.

Follows google/ldif ``predict.py``: encode the inputs to a SIF/LDIF (``DepthEncoder``), write the
SIF v1 text file, and mesh the surface ``F = -0.07`` over ``[-0.75, 0.75]^3`` with the CUDA
kernel's rule of skipping RBFs below ``1e-4`` — here with impax's multi-resolution extractor
(:func:`impax.inference.extract.extract_mesh`, a ``R + 1`` node grid spanning the box) and one
jitted shape function (:func:`shape_values`) whose decoder weights are arguments, so a run compiles
once for all shapes. ``impax mesh`` meshes SIF files through the same :func:`extract_sif`, so a
SIF file written by :func:`reconstruct` plus the run's ``extracted.occnet`` gives the same mesh.

Frames: the model lives in the GAPS frame. Store shapes are mapped back to their original frame by
the inverse of the record's ``gaps_transform``; mesh inputs are normalised with
:func:`impax.geometry.normalize.gaps_transform`, rendered (20 dodecahedron depth views, the run's
stored size) and surface-sampled like ``impax prepare``; point clouds are normalised the same way
with the points' centroid and largest principal variance (GAPS' transform of a mesh, estimated
from its surface samples). Per shape :func:`reconstruct` writes ``<id>.<fmt>`` (original frame),
``<id>.sif.txt`` (GAPS frame) and ``<id>.gaps.json`` (the original → GAPS :class:`Transform`).

Rows: ``{"id", "path", "sif", "ok", "queries", "seconds", ...}``; a failing input gives
``ok: False`` and a one-line ``reason``, never an exception mid-batch.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from flax import nnx

from impax.configs import from_dict
from impax.conventions import LDIF_EXTRACT_HALF, LDIF_ISO_LEVEL, Transform
from impax.inference.extract import LEARNED_FRAME, coarse_resolution, safe_name, save_row
from impax.models.ldif_config import LdifConfig
from impax.models.ldif_model import (QUERY_BATCH, LdifModel, decoder_weights, encode, set_training, shape_inputs,
                                     shape_values, sif_query, unbatch)
from impax.models.platform import query_batch
from impax.models.sif_format import DECODER_FILE, write_decoder_file

__all__ = ["QUERY_BATCH", "extract_sif", "load_ldif", "reconstruct", "shape_values", "sif_query", "unbatch"]


# ----------------------------------------------------------------------------------------------
# meshing


def extract_sif(sif: Any, weights: Mapping[str, np.ndarray] | None, resolution: int = 128,
                transform: Transform | None = None, skip: bool = True) -> Any:
    """Mesh ``F = -0.07`` of one shape over ``[-0.75, 0.75]^3`` (GAPS frame; mapped to the original
    frame by the inverse of ``transform``, original → GAPS, when given) →
    :class:`~impax.inference.extract.ExtractionResult`."""
    from impax.inference.extract import extract_mesh

    return extract_mesh(sif_query(sif, weights, skip), resolution, level=LDIF_ISO_LEVEL, half=LDIF_EXTRACT_HALF,
                        coarse=coarse_resolution(resolution, LEARNED_FRAME), inside="below", batch_size=query_batch(),
                        transform=transform, frame="gaps" if transform is not None else None)


# ----------------------------------------------------------------------------------------------
# loading a run


@dataclasses.dataclass(frozen=True)
class LdifRun:
    """What inference needs of a ``ldif``/``sif``/``sifpp`` run's ``run.json``: the network's config,
    its input (``"depth"``/``"points"``), the surface points per shape its local PointNet saw, and
    its training-time decoder top-k (``--refine`` optimises the same way)."""

    model: LdifConfig
    input: str = "depth"
    surface_points: int = 10_000
    decoder_topk: int = 0

    @classmethod
    def from_run_json(cls, info: Mapping[str, Any]) -> LdifRun:
        c = info["config"]
        return cls(from_dict(LdifConfig, c["model"]), str(c.get("input", "depth")),
                   int(c.get("surface_points", 10_000)), int(c.get("decoder_topk", 0)))


def load_ldif(run: str | Path) -> tuple[Any, LdifRun, dict[str, np.ndarray] | None]:
    """The trained network of a ``ldif``/``sif``/``sifpp`` run: ``(model, run_info, decoder_weights)``.

    ``model`` is an :class:`~impax.models.ldif_model.LdifModel` (evaluation mode) rebuilt from
    ``run.json`` with the newest checkpoint's state, ``decoder_weights`` the local decoder as an
    ``extracted.occnet`` dict (``None`` for SIF/SIF++). Writes ``RUN/extracted.occnet`` when the run
    has a decoder and the file is missing.
    """
    from impax.inference.families import read_run
    from impax.train import load_model

    info = read_run(run)
    if info.get("recipe") not in ("ldif", "sif", "sifpp"):
        raise ValueError(f"{run}: a ldif/sif/sifpp run is needed, run.json says {info.get('recipe')!r}")
    spec = LdifRun.from_run_json(info)
    model = LdifModel(spec.model, spec.input, rngs=nnx.Rngs(0))
    load_model(run, model)
    set_training(model, False)
    w = decoder_weights(model)
    if w is not None and not (Path(run) / DECODER_FILE).is_file():
        write_decoder_file(run, w)
    return model, spec, w


# ----------------------------------------------------------------------------------------------
# inputs


def _store_items(inputs: Sequence[str | Path]) -> list[dict[str, Any]]:
    """A store folder starts a source; ``split=NAME`` keeps one split; other words are shape ids."""
    from impax.data.store import ShapeStore

    from impax.data.store import data_kind
    from impax.inference.families import group_sources

    sources = group_sources(inputs, lambda p: data_kind(p) == "store", "not a prepared store (no index.json)")
    items = []
    for src in sources:
        if "error" in src:
            items.append({"id": src["path"].stem, "source": str(src["path"]), "error": src["error"]})
            continue
        store = ShapeStore(src["path"])
        known = store.ids(src["split"])
        for sid in src["ids"] or known:
            if sid not in known:
                items.append({"id": sid, "source": str(src["path"]), "error": f"no shape {sid!r} in {src['path']}"})
            else:
                items.append({"id": sid, "source": str(src["path"]), "store": store})
    return items


def _stored_transform(store: Any, sid: str) -> Transform | None:
    t = store.attrs(sid).get("gaps_transform")
    if isinstance(t, str):
        t = json.loads(t)
    if isinstance(t, dict):
        t = Transform.from_dict(t)
    return t if isinstance(t, Transform) else None


def _depth_size(cfg: Any, data: str | None) -> int:
    """Render size for mesh inputs: the run's stored depth size (what the encoder saw), else the
    encoder's image size."""
    if data and (Path(data) / "index.json").is_file():
        from impax.data.store import ShapeStore

        store = ShapeStore(data)
        for e in store.entries():
            shape = e.get("arrays", {}).get("depth")
            if shape:
                return int(shape[-1])
    return int(cfg.model.image_size)


def mesh_inputs(path: str | Path, cfg: Any, depth_size: int, seed: int = 0) -> tuple[dict[str, np.ndarray], Transform]:
    """A mesh file → (encoder inputs in the GAPS frame, original → GAPS transform), as ``impax prepare``."""
    from impax.geometry.mesh_io import load_mesh
    from impax.geometry.normalize import gaps_transform, transform_mesh
    from impax.geometry.render import dodecahedron_cameras, render_depth
    from impax.geometry.sampling import surface_samples
    from impax.models.ldif_model import select_views

    mesh = load_mesh(path)
    t = gaps_transform(mesh)
    m = transform_mesh(mesh, t)
    out: dict[str, np.ndarray] = {}
    if cfg.input == "depth":
        d = render_depth(m, dodecahedron_cameras(), size=depth_size)[None].astype(np.float32)
        out["depth"] = np.asarray(select_views(d, cfg.model.image_count), np.float32)
    if cfg.input == "points" or cfg.model.uses_local_decoder:
        p, n = surface_samples(m, cfg.surface_points, np.random.default_rng(seed))
        out["surface_points"], out["surface_normals"] = p[None].astype(np.float32), n[None].astype(np.float32)
    return out, t


def read_point_cloud(path: str | Path) -> tuple[np.ndarray, np.ndarray | None]:
    """Points ``[N, 3]`` (+ normals ``[N, 3]`` when the file has them) of ``.npy``/``.npz``
    (``points``/``normals``), ``.xyz``/``.txt``/``.pts`` (3 or 6 columns) or ``.ply`` files."""
    p = Path(path)
    suf = p.suffix.lower()
    if suf == ".npy":
        a = np.load(p)
    elif suf == ".npz":
        z = np.load(p)
        pts = np.asarray(z["points"], np.float32)
        return pts, (np.asarray(z["normals"], np.float32) if "normals" in z else None)
    elif suf in (".xyz", ".txt", ".pts"):
        a = np.loadtxt(p, ndmin=2)
    elif suf == ".ply":
        import trimesh

        pc = trimesh.load(p, process=False)
        if isinstance(pc, trimesh.Trimesh):
            raise ValueError(f"{p}: a mesh, not a point cloud (use --input mesh)")
        pts = np.asarray(pc.vertices, np.float32)
        nrm = pc.metadata.get("_ply_raw", {}).get("vertex", {}).get("data") if hasattr(pc, "metadata") else None
        if nrm is not None and all(k in nrm.dtype.names for k in ("nx", "ny", "nz")):
            return pts, np.stack([nrm["nx"], nrm["ny"], nrm["nz"]], -1).astype(np.float32)
        return pts, None
    else:
        raise ValueError(f"{p}: unknown point cloud format {suf!r} (.npy .npz .xyz .txt .pts .ply)")
    a = np.asarray(a, np.float32)
    if a.ndim != 2 or a.shape[1] not in (3, 6):
        raise ValueError(f"{p}: expected N x 3 or N x 6 values, got shape {a.shape}")
    return a[:, :3], (a[:, 3:] if a.shape[1] == 6 else None)


def point_cloud_transform(points: np.ndarray) -> Transform:
    """original → GAPS for a point cloud: ``0.25 / sqrt(l_max) (x - mean)`` (see the module doc)."""
    c = points.astype(np.float64).mean(0)
    lmax = float(np.linalg.eigvalsh(np.cov((points - c).T))[-1])
    return Transform.similarity(0.25 / np.sqrt(lmax) if lmax > 0 else 0.25, -c, source="original", target="gaps")


def points_inputs(path: str | Path, cfg: Any, seed: int = 0) -> tuple[dict[str, np.ndarray], Transform]:
    pts, nrm = read_point_cloud(path)
    if len(pts) < 16 or not np.all(np.isfinite(pts)):
        raise ValueError(f"{path}: needs at least 16 finite points, got {len(pts)}")
    if cfg.model.use_normals and nrm is None:
        raise ValueError(f"{path}: this run's PointNet needs normals (6 columns / npz 'normals')")
    t = point_cloud_transform(pts)
    g = t.apply(pts).astype(np.float32)
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(g), cfg.surface_points, replace=len(g) < cfg.surface_points)
    out = {"surface_points": g[idx][None]}
    out["surface_normals"] = (t.apply_vectors(nrm)[idx][None].astype(np.float32) if nrm is not None
                              else np.zeros_like(out["surface_points"]))
    return out, t


# ----------------------------------------------------------------------------------------------
# public API


def observations(inp: Mapping[str, np.ndarray], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Labelled points (GAPS frame) of one shape from its encoder inputs, for ``--refine``: from
    the depth views (:func:`impax.geometry.carve.depth_observations`) when there are any, else
    from the oriented surface points (:func:`impax.inference.refine.point_observations`)."""
    from impax.geometry.camera import dodecahedron_cameras

    rng = np.random.default_rng(seed)
    cams = dodecahedron_cameras()
    if "depth" in inp and np.asarray(inp["depth"]).shape[1] == len(cams):
        from impax.geometry.carve import depth_observations

        return depth_observations(np.asarray(inp["depth"])[0], cams, rng)
    if "surface_points" not in inp:
        raise ValueError(f"--refine needs all {len(cams)} depth views or oriented surface points; this "
                         "run's encoder input has neither")
    from impax.inference.refine import point_observations

    normals = inp.get("surface_normals")
    if normals is not None and not np.any(normals):
        normals = None
    return point_observations(np.asarray(inp["surface_points"])[0], None if normals is None else normals[0], rng)


def reconstruct(run: str | Path, kind: str, inputs: Sequence[str | Path], out: str | Path,
                resolution: int = 128, mesh_format: str = "ply", refine: int = 0, **kw: Any) -> list[dict[str, Any]]:
    """Reconstruct ``inputs`` with the run's network (see the module doc).

    ``kind``: ``"depth"`` (a prepared store folder, optionally followed by shape ids and/or
    ``split=NAME``: the stored depth images, plus stored surface points for LDIF's latents),
    ``"points"`` (point-cloud files, or a store folder as for ``depth``: its surface points; needs
    a run trained with ``--set input=points``) or ``"mesh"`` (mesh files).
    ``refine``: Adam steps of test-time optimisation of each shape's elements and latents against
    points labelled from its own input (:func:`observations`, :func:`impax.inference.refine.refine_sif`;
    0: the encoder's shape as it is). Depth inputs need all 20 views for it.
    """
    from impax.models.sif_format import write_sif

    if kind not in ("depth", "points", "mesh"):
        return [{"id": str(p), "path": None, "sif": None, "ok": False,
                 "reason": f"SIF/LDIF runs reconstruct from depth, points or mesh, not {kind!r}"} for p in inputs]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model, cfg, weights = load_ldif(run)
    from impax.inference.families import read_run

    data = read_run(run).get("data")
    if kind == "mesh" or (kind == "points" and not any((Path(str(p)) / "index.json").is_file() for p in inputs)):
        items = [{"id": Path(p).stem, "source": str(p), "file": Path(p)} for p in inputs]
    else:
        items = _store_items(inputs)
    size = _depth_size(cfg, data) if kind == "mesh" else None
    rows = []
    for item in items:
        t0 = time.perf_counter()
        row: dict[str, Any] = {"id": item["id"], "input": item["source"], "path": None, "sif": None, "ok": False}
        try:
            if "error" in item:
                raise ValueError(item["error"])
            if kind == "points" and cfg.input != "points":
                raise ValueError("this run encodes depth images; reconstruct from points needs a run trained "
                                 "with --set input=points")
            if kind == "depth" and cfg.input != "depth":
                raise ValueError("this run encodes point clouds (input=points); use --input points")
            if "store" in item:
                inp = shape_inputs(item["store"], item["id"], cfg.model, cfg.input, cfg.surface_points)
                transform = _stored_transform(item["store"], item["id"])
            elif kind == "mesh":
                inp, transform = mesh_inputs(item["file"], cfg, size)
            else:
                inp, transform = points_inputs(item["file"], cfg)
            sif = unbatch(encode(model, inp))
            if refine:
                from impax.inference.refine import RefineConfig, refine_sif

                t1 = time.perf_counter()
                pts, inside = observations(inp)
                sif, stats = refine_sif(sif, weights, pts, inside, cfg.model, RefineConfig(steps=int(refine)),
                                        topk=cfg.decoder_topk)
                row["refine"] = {"steps": int(refine), **stats, "seconds": round(time.perf_counter() - t1, 3)}
            name = safe_name(item["id"])
            sif_path = out / f"{name}.sif.txt"
            write_sif(sif_path, sif)
            row["sif"] = str(sif_path)
            if transform is not None:
                (out / f"{name}.gaps.json").write_text(json.dumps(transform.to_dict()) + "\n")
            res = extract_sif(sif, weights, resolution, transform)
            save_row(row, res, out / f"{name}.{mesh_format}", "original" if transform is not None else "gaps")
        except Exception as e:  # one bad input must not stop the batch
            row["reason"] = f"{type(e).__name__}: {e}".splitlines()[0]
        row["seconds"] = round(time.perf_counter() - t0, 3)
        rows.append(row)
    return rows
