"""IM-GAN evaluation: sample shapes from an ``imnet-gan`` run and score them against the training set.

What the original never shipped: the fraction of non-empty meshes and COV / MMD (Chamfer-L2) /
1-NNA (:func:`impax.evaluation.generation.generation_metrics`, the protocol of Achlioptas et al.
2018 and of the IM-NET paper's tables) against the AE's training shapes. ``impax train imnet-gan``
runs :func:`after_training` when training ends; ``impax evaluate`` and the demo use the same
functions.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from impax.conventions import IMNET_BOX_HALF

#: Where the end-of-training evaluation writes its report and its sample meshes (in the GAN run).
EVAL_FILE = "eval_generation.json"
SAMPLES_DIR = "samples"


def voxel_surface(voxels: np.ndarray) -> Any:
    """The 0.5 iso-surface of 64³ cell-centre voxels as a mesh in the IM-NET frame (the grid is
    padded by one empty cell so closed surfaces come out closed)."""
    import trimesh
    from skimage.measure import marching_cubes

    v = np.pad(np.asarray(voxels, np.float32), 1)
    res = voxels.shape[0]
    verts, faces, _, _ = marching_cubes(v, 0.5)
    cell = 2.0 * IMNET_BOX_HALF / res
    verts = -IMNET_BOX_HALF + (verts - 1.0 + 0.5) * cell
    return trimesh.Trimesh(verts, faces[:, ::-1], process=False)


def reference_points(ae_run: str | Path, kind: str, n_points: int, max_reference: int = 0, seed: int = 0,
                     ae: Any = None, resolution: int = 64) -> tuple[list[np.ndarray], str, list[str]]:
    """Point clouds ``[n_points, 3]`` (IM-NET frame) of the AE's training shapes, the kind used
    (``surface``: stored ground-truth surface samples; ``voxels``: surface of the stored 64³
    voxels; ``recon``: meshes of the AE's decoded training codes) and the shape names.
    ``kind="auto"`` prefers ``surface``, then ``voxels``."""
    from impax.data.latents import ZS_FILE, read_codes
    from impax.data.voxel_source import VoxelSource
    from impax.geometry.sampling import surface_samples
    from impax.train.runs import read_run

    ae_run = Path(ae_run)
    info = read_run(ae_run)
    zs, names = read_codes(ae_run / ZS_FILE)
    idx = np.arange(len(names))
    if max_reference and len(idx) > max_reference:
        idx = np.unique(np.linspace(0, len(idx) - 1, max_reference).round().astype(int))
    names = [names[i] for i in idx]
    rng = np.random.default_rng([int(seed), 11])
    src = None
    try:
        src = VoxelSource(info["data"])
    except Exception:
        if kind in ("surface", "voxels"):
            raise
    if kind == "auto":
        if src is not None and src.kind == "store" and all("surface_points" in src.store.arrays(n) for n in names):
            kind = "surface"
        elif src is not None:
            kind = "voxels"
        else:
            kind = "recon"
    clouds: list[np.ndarray] = []
    if kind == "surface":
        if src is None or src.kind != "store":
            raise ValueError("reference 'surface' needs a prepared store with surface_points")
        for n in names:
            pts = src.store.read(n, "surface_points")
            pts = src.store.frame_map(n, "gaps", "imnet").apply(pts)
            take = rng.choice(len(pts), size=min(n_points, len(pts)), replace=False)
            clouds.append(np.asarray(pts[take], np.float32))
    elif kind == "voxels":
        split = info["config"].get("train_split", "train")
        vox = src.voxels(split, names)
        for v in vox:
            pts, _ = surface_samples(voxel_surface(v), n_points, rng)
            clouds.append(pts)
    else:
        if ae is None:
            from impax.inference.imnet_decode import load_ae

            ae, _ = load_ae(ae_run)
        from impax.inference.imnet_decode import DecoderQuery, extract

        query = DecoderQuery(ae.generator)
        for i in idx:
            res = extract(query, zs[i], resolution)
            if res.empty:
                continue
            pts, _ = surface_samples(res.mesh, n_points, rng)
            clouds.append(pts)
    return clouds, kind, names


def evaluate(run: str | Path, count: int = 32, resolution: int = 64, n_points: int = 2048,
             reference: str = "auto", max_reference: int = 0, seed: int = 0, model: Any = None,
             out: str | Path | None = None) -> dict[str, Any]:
    """Sample ``count`` shapes (``out``, default ``RUN/samples``), and score them against the
    training set: ``nonempty_fraction`` and, over the non-empty samples, ``coverage``, ``mmd``
    and ``one_nna`` with the Chamfer-L2 distance of ``n_points``-point surface samples
    (:func:`impax.evaluation.generation.generation_metrics`). ``model``: an in-memory
    :class:`~impax.models.imnet_gan.LatentGAN` to use instead of the run's checkpoint."""
    from impax.evaluation.generation import generation_metrics
    from impax.geometry.sampling import surface_samples
    from impax.inference.imnet_decode import load_ae
    from impax.inference.imnet_gan import GANRun, decode_and_save, generate_codes, load_gan
    from impax.train.runs import read_run

    t0 = time.perf_counter()
    gan, cfg, _ = load_gan(run) if model is None else (model, GANRun.from_run_json(read_run(run)), None)
    if not cfg.ae_run:
        raise ValueError(f"{run}: run.json names no imnet-ae run to decode the codes")
    ae, _ = load_ae(cfg.ae_run)
    zs = generate_codes(gan, cfg, count, seed)
    out = Path(run) / SAMPLES_DIR if out is None else Path(out)
    rows, meshes = decode_and_save(ae, zs, out, resolution, "ply")
    rng = np.random.default_rng([int(seed), 13])
    gen = [surface_samples(m, n_points, rng)[0] for m in meshes if m is not None]
    ref, kind, names = reference_points(cfg.ae_run, reference, n_points, max_reference, seed, ae, resolution)
    report: dict[str, Any] = {
        "count": int(count), "nonempty": len(gen), "nonempty_fraction": len(gen) / count if count else float("nan"),
        "resolution": int(resolution), "n_points": int(n_points), "reference": kind,
        "reference_shapes": names, "chamfer": "l2: mean d_ab^2 + mean d_ba^2 (IM-NET frame, unit diagonal)",
        "samples": rows, "seed": int(seed),
    }
    if gen and ref:
        m = generation_metrics(gen, ref, "l2")
        report.update(coverage=m["coverage"], mmd=m["mmd"], one_nna=m["one_nna"], n_generated=len(gen),
                      n_reference=len(ref))
    else:
        report.update(coverage=None, mmd=None, one_nna=None, n_generated=len(gen), n_reference=len(ref),
                      note="no non-empty samples: metrics undefined")
    report["seconds"] = round(time.perf_counter() - t0, 1)
    return report


def after_training(run: str | Path, summary: dict[str, Any]) -> dict[str, Any]:
    """The end-of-training evaluation of ``impax train imnet-gan``: when the run finished and its
    config asks for it (``eval_samples > 0``), :func:`evaluate` with the config's ``eval_*``
    settings, the report written to ``RUN/eval_generation.json``; returns ``summary`` with the
    headline numbers added (or the reason it was skipped)."""
    from impax.inference.imnet_gan import GANRun
    from impax.train.runs import read_run

    if summary.get("stopped") != "done":
        return summary
    info = read_run(run)
    c = info["config"]
    if int(c.get("eval_samples", 0)) <= 0:
        return summary
    if not GANRun.from_run_json(info).ae_run:
        return {**summary, "eval": "skipped: no imnet-ae run known to decode the codes (--set ae_run=PATH)"}
    t1 = time.perf_counter()
    report = evaluate(run, count=int(c["eval_samples"]), resolution=int(c["eval_resolution"]),
                      n_points=int(c["eval_points"]), reference=str(c["eval_reference"]),
                      max_reference=int(c["eval_max_reference"]), seed=int(c["eval_seed"]))
    report["global_step"] = summary.get("global_step")
    (Path(run) / EVAL_FILE).write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    out = dict(summary)
    for k in ("nonempty_fraction", "coverage", "mmd", "one_nna", "reference", "n_generated", "n_reference"):
        out[k] = report.get(k)
    out["eval_seconds"] = round(time.perf_counter() - t1, 1)
    return out


__all__ = ["after_training", "evaluate", "reference_points", "voxel_surface"]
